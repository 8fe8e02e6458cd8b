#!/usr/bin/env bash
# kurz on PostgreSQL + Redis, measured beside kurz on SQLite in the same run.
#
#   - cache-hit redirect throughput: kurz-pg (PostgreSQL + Redis) vs kurz-sqlite,
#     oha -c 64 over 100,000 links each, alternating rounds; target: within 10%
#   - creates/s on PostgreSQL with 64 concurrent clients; target >= 5,000/s (P-05)
#   - cold-cache redirect latency: an instance with its caches turned off (L1 TTL 0,
#     no Redis), so every request is a PostgreSQL query; oha at a fixed 1,000 req/s
#     with latency correction; target p99 < 5 ms (P-02: 50 ms)
#
# Starts throwaway PostgreSQL and Redis servers (scripts/services.sh), loopback only,
# and stops everything it started. About 4 minutes after the release build.
# Writes bench/results/production/ and prints a summary table.
# Knobs: BENCH_LINKS=100000 BENCH_ROUNDS=2 BENCH_SECONDS=20 BENCH_SKIP_BUILD=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=$ROOT/bench/results/production
HARNESS=(python3 "$ROOT/bench/harness.py")
LINKS=${BENCH_LINKS:-100000}
ROUNDS=${BENCH_ROUNDS:-2}
SECS=${BENCH_SECONDS:-20}
KURZ_BIN=$ROOT/target/release/kurz

source "$ROOT/scripts/services.sh"
source "$ROOT/bench/lib.sh"
KURZ_PIDS=()
cleanup() {
    local pid
    for pid in "${KURZ_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${KURZ_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    services_stop
}
trap cleanup EXIT

command -v oha >/dev/null || die "oha is required: cargo install oha --locked"
OHA=(--no-tui --redirect 0 --output-format json)

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    say "cargo build --release"
    (cd "$ROOT" && cargo build --release --bin kurz)
fi
mkdir -p "$RESULTS"
rm -f "$RESULTS"/*
WORK=$SERVICES_TMP
ADMIN=$(python3 -c 'import secrets; print(secrets.token_hex(20))')

services_install
services_start_postgres
services_start_redis


mapfile -t PORTS < <("${HARNESS[@]}" ports 3)
P_SQLITE=${PORTS[0]} P_PG=${PORTS[1]} P_COLD=${PORTS[2]}
PG_URL=$KURZ_TEST_PG
env KURZ_DATABASE_URL="$PG_URL" "$KURZ_BIN" migrate >/dev/null

start_kurz kurz-sqlite "$P_SQLITE" KURZ_DATABASE_URL="sqlite://$WORK/kurz.db"
start_kurz kurz-pg "$P_PG" KURZ_DATABASE_URL="$PG_URL" KURZ_REDIS_URL="$KURZ_TEST_REDIS"

for name in sqlite pg; do
    port_var=P_${name^^}
    base=http://127.0.0.1:${!port_var}
    say "creating $LINKS links on kurz-$name"
    bounded 900 "${HARNESS[@]}" load "$base" "$ADMIN" "$LINKS" \
        "$WORK/map-$name.tsv" "$WORK/urls-$name.txt" "$WORK/unused-$name.txt" http://127.0.0.1:1
    say "correctness pass on kurz-$name (warms its caches)"
    bounded 900 "${HARNESS[@]}" check "$base" "$WORK/map-$name.tsv" "$RESULTS/check-$name.json"
done

for round in $(seq "$ROUNDS"); do
    say "cache-hit throughput round $round/$ROUNDS: kurz-sqlite, then kurz-pg (${SECS}s each, c=64)"
    run_oha "$SECS" "$RESULTS/hit-sqlite-$round.json" -c 64 --urls-from-file "$WORK/urls-sqlite.txt"
    run_oha "$SECS" "$RESULTS/hit-pg-$round.json" -c 64 --urls-from-file "$WORK/urls-pg.txt"
done

say "creates on PostgreSQL, c=64, 10s"
run_oha 10 "$RESULTS/create-pg.json" -c 64 -m POST -H 'content-type: application/json' \
    -H "X-API-Key: $ADMIN" -d '{"original_url":"https://example.com/created"}' \
    "http://127.0.0.1:$P_PG/api/v1/urls"

say "cold cache: every redirect a PostgreSQL query, fixed 1,000 req/s for ${SECS}s"
start_kurz kurz-pg-cold "$P_COLD" KURZ_DATABASE_URL="$PG_URL" \
    KURZ_CACHE_TTL_SECS=0 KURZ_CACHE_NEGATIVE_TTL_SECS=0
sed "s#127.0.0.1:$P_PG/#127.0.0.1:$P_COLD/#" "$WORK/urls-pg.txt" >"$WORK/urls-cold.txt"
run_oha "$SECS" "$RESULTS/cold-pg.json" -c 16 -q 1000 --latency-correction --urls-from-file "$WORK/urls-cold.txt"

say "summary (also in bench/results/production/summary.md)"
hit_files() { local n=$1 r; for r in $(seq "$ROUNDS"); do echo "$RESULTS/hit-$n-$r.json"; done; }
mapfile -t SQLITE_FILES < <(hit_files sqlite)
mapfile -t PG_FILES < <(hit_files pg)
"${HARNESS[@]}" figures 302 "${SQLITE_FILES[@]}" >"$RESULTS/fig-hit-sqlite.json"
"${HARNESS[@]}" figures 302 "${PG_FILES[@]}" >"$RESULTS/fig-hit-pg.json"
"${HARNESS[@]}" figures 201 "$RESULTS/create-pg.json" >"$RESULTS/fig-create-pg.json"
"${HARNESS[@]}" figures 302 "$RESULTS/cold-pg.json" >"$RESULTS/fig-cold-pg.json"
python3 - "$RESULTS" "$LINKS" "$ROUNDS" "$SECS" "$(oha --version | head -n1)" \
    "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" "$(nproc)" <<'PY' | tee "$RESULTS/summary.md"
import datetime, json, pathlib, sys
d, links, rounds, secs, oha, rev, nproc = sys.argv[1:8]
f = lambda name: json.loads(pathlib.Path(d, f"fig-{name}.json").read_text())
wrong = lambda name: json.loads(pathlib.Path(d, f"check-{name}.json").read_text())
hs, hp, cr, cold = f("hit-sqlite"), f("hit-pg"), f("create-pg"), f("cold-pg")
def codes(x):
    parts = [f"{k}: {v:,}" for k, v in sorted(x["codes"].items())] + [f"error {k}: {v:,}" for k, v in sorted(x["errors"].items())]
    return ", ".join(parts) or "none"
ratio = hp["rps"] / hs["rps"] if hs["rps"] else 0
ok = lambda b: "PASS" if b else "**FAIL**"
print(f"# kurz on PostgreSQL + Redis — {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
print()
print(f"- machine: nproc {nproc}, load generator on the same machine; {oha}; kurz {rev}")
print(f"- {int(links):,} links per instance; cache-hit runs: {rounds} × {secs}s per instance, alternating, medians")
print()
print("| metric | kurz-pg (PostgreSQL + Redis) | kurz-sqlite | target |")
print("|---|---|---|---|")
print(f"| cache-hit redirects/s (302s, c=64) | {hp['rps']:,.0f} | {hs['rps']:,.0f} | within 10%: {ratio:.2f}× {ok(ratio >= 0.9)} |")
print(f"| cache-hit p50 / p99, ms | {hp['p50']:.3f} / {hp['p99']:.3f} | {hs['p50']:.3f} / {hs['p99']:.3f} | |")
print(f"| status codes | {codes(hp)} | {codes(hs)} | all 302 {ok(hp['clean'] and hs['clean'])} |")
print(f"| wrong Locations | {wrong('pg').get('wrong', '?')} | {wrong('sqlite').get('wrong', '?')} | 0 |")
print(f"| creates/s on PostgreSQL (c=64) | {cr['rps']:,.0f} | — | ≥ 5,000 {ok(cr['rps'] >= 5000 and cr['clean'])} |")
print(f"| create status codes | {codes(cr)} | — | all 201 |")
print(f"| cold-cache redirect at 1,000/s: p50 / p99, ms | {cold['p50']:.3f} / {cold['p99']:.3f} | — | p99 < 5 ms {ok(cold['p99'] < 5 and cold['clean'])} |")
print(f"| cold-cache achieved req/s, status codes | {cold['all_rps']:,.0f}; {codes(cold)} | — | ≈ 1,000 |")
PY
