#!/usr/bin/env bash
# Where a click's CPU goes: the analytics pipeline cut after each of its stages.
#
# A diagnostic for issue 4's on/off target, not a target of its own. It builds kurz
# with bench/stages.patch applied (in a temporary git worktree, into target/stages,
# so target/release is left alone): the patch adds KURZ_BENCH_STAGE, which stops the
# pipeline after a stage. Then it runs one SQLite database with one instance per stage,
# all with the same links and caches warmed:
#
#   off     analytics off (KURZ_ANALYTICS=false)
#   take    the handler captures and queues; the batcher takes the clicks and drops them
#   enrich  ... and enriches each one (user agent, referrer, visitor hash), then drops it
#   fold    ... and the store's writer holds and folds them (rollup deltas, raw JSON
#           blocks, link counters) but writes nothing
#   noraw   everything, without raw events (KURZ_ANALYTICS_RAW_EVENTS=false)
#   full    everything (the shipped default)
#
# For each instance, in turn (the order rotated by one each round), BENCH_ROUNDS
# times: oha at a fixed BENCH_CPU_RATE (Zipf mix, the same browser User-Agent and
# Referer as bench/run_analytics.sh) for BENCH_SECONDS, then 12 s more for the held
# write; the figure is the kurz process's utime + stime per redirect over both. With
# BENCH_SATURATE=1 oha sends as fast as it can instead (c=64), and req/s is printed
# too. The difference between two adjacent stages is what that stage costs per click.
# Rounds on a shared VM vary by ±1–2 µs: read medians of several rounds.
#
# Knobs: BENCH_LINKS=20000 BENCH_ROUNDS=3 BENCH_SECONDS=20 BENCH_CPU_RATE=15000
# BENCH_SATURATE=0 BENCH_SKIP_BUILD=1 (reuse target/stages/release/kurz).
# About 10 minutes after the build (6 instances x 3 rounds x 32 s).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=$ROOT/bench/results/stages
HARNESS=(python3 "$ROOT/bench/harness.py")
LINKS=${BENCH_LINKS:-20000}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-20}
RATE=${BENCH_CPU_RATE:-15000}
SATURATE=${BENCH_SATURATE:-0}
KURZ_BIN=$ROOT/target/stages/release/kurz
WORK=$(mktemp -d /tmp/kurz-stages.XXXXXX)

source "$ROOT/bench/lib.sh"
KURZ_PIDS=()
TREE=""
cleanup() {
    local pid
    for pid in "${KURZ_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${KURZ_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -z $TREE ]] || git -C "$ROOT" worktree remove --force "$TREE" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v oha >/dev/null || die "oha is required: cargo install oha --locked"
OHA=(--no-tui --redirect 0 --output-format json)

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    TREE=$WORK/src
    say "building kurz with bench/stages.patch in $TREE (target/stages)"
    git -C "$ROOT" worktree add --detach "$TREE" HEAD >/dev/null
    git -C "$TREE" apply "$ROOT/bench/stages.patch"
    (cd "$TREE" && CARGO_TARGET_DIR=$ROOT/target/stages cargo build --release --bin kurz)
fi
[[ -x $KURZ_BIN ]] || die "no $KURZ_BIN: run without BENCH_SKIP_BUILD=1 first"
mkdir -p "$RESULTS"
rm -f "$RESULTS"/*
ADMIN=$(python3 -c 'import secrets; print(secrets.token_hex(20))')

STAGES=(off take enrich fold noraw full)
declare -A STAGE_ENV=(
    [off]=KURZ_ANALYTICS=false [take]=KURZ_BENCH_STAGE=take [enrich]=KURZ_BENCH_STAGE=enrich
    [fold]=KURZ_BENCH_STAGE=fold [noraw]=KURZ_ANALYTICS_RAW_EVENTS=false [full]=KURZ_BENCH_STAGE=
)
mapfile -t PORTS < <("${HARNESS[@]}" ports ${#STAGES[@]})
declare -A PORT PID
for i in "${!STAGES[@]}"; do
    s=${STAGES[$i]}
    PORT[$s]=${PORTS[$i]}
    start_kurz "$s" "${PORT[$s]}" KURZ_DATABASE_URL="sqlite://$WORK/stages.db" KURZ_CACHE_TTL_SECS=3600 \
        "${STAGE_ENV[$s]}"
    PID[$s]=${KURZ_PIDS[$i]}
done
say "creating $LINKS links"
bounded 600 "${HARNESS[@]}" load "http://127.0.0.1:${PORT[full]}" "$ADMIN" "$LINKS" \
    "$WORK/map.tsv" "$WORK/full-urls.txt" "$WORK/off-urls.txt" "http://127.0.0.1:${PORT[off]}"
for s in "${STAGES[@]}"; do
    bounded 600 "${HARNESS[@]}" check "http://127.0.0.1:${PORT[$s]}" "$WORK/map.tsv" "$RESULTS/check-$s.json"
done
# The same Zipf (s=1) pick of codes for every instance, as in run_analytics.sh.
python3 - "$WORK" <<'ZIPF'
import pathlib, random, sys
work = pathlib.Path(sys.argv[1])
urls = (work / "full-urls.txt").read_text().split()
paths = ["/" + u.split("/", 3)[3] for u in urls]
rng = random.Random(7)
picks = rng.choices(paths, weights=[1 / (r + 1) for r in range(len(paths))], k=200_000)
(work / "paths.txt").write_text("\n".join(picks) + "\n")
ZIPF

RATE_ARGS=(-q "$RATE")
[[ $SATURATE == 1 ]] && RATE_ARGS=()
TCK=$(getconf CLK_TCK)
for round in $(seq "$ROUNDS"); do
    # Each round starts one stage later: A/Bs in a fixed order disagreed by up to ~2 µs
    # once their order was reversed, so no stage keeps one place in the round.
    shift_by=$(( (round - 1) % ${#STAGES[@]} ))
    ORDER=("${STAGES[@]:shift_by}" "${STAGES[@]:0:shift_by}")
    for s in "${ORDER[@]}"; do
        say "round $round/$ROUNDS: $s"
        sed "s|^|http://127.0.0.1:${PORT[$s]}|" "$WORK/paths.txt" >"$WORK/urls-$s.txt"
        before=$(cpu_ticks "${PID[$s]}")
        run_oha "$SECS" "$RESULTS/$s-$round.json" -c 64 "${RATE_ARGS[@]}" "${CLICK[@]}" --urls-from-file "$WORK/urls-$s.txt"
        sleep 12
        echo "$(( $(cpu_ticks "${PID[$s]}") - before )) $TCK" >"$RESULTS/$s-$round.ticks"
    done
done

python3 - "$RESULTS" "$ROUNDS" "${STAGES[@]}" <<'TABLE'
import json, pathlib, statistics, sys
res, rounds, stages = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def figures(s, r):
    d = json.loads((res / f"{s}-{r}.json").read_text())
    n = d["statusCodeDistribution"].get("302", 0)
    ticks, tck = map(int, (res / f"{s}-{r}.ticks").read_text().split())
    return ticks / tck * 1e6 / max(n, 1), d["summary"]["requestsPerSec"]
rows = {s: [figures(s, r) for r in range(1, rounds + 1)] for s in stages}
off = statistics.median(us for us, _ in rows["off"])
print(f"{'stage':8} {'µs CPU/redirect (median)':>26} {'- off':>7} {'rounds':>24} {'req/s (median)':>15}")
for s in stages:
    us = [u for u, _ in rows[s]]
    med = statistics.median(us)
    print(f"{s:8} {med:26.2f} {med - off:+7.2f} {', '.join(f'{u:.2f}' for u in us):>24} "
          f"{statistics.median(r for _, r in rows[s]):15,.0f}")
TABLE
