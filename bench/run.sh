#!/usr/bin/env bash
# kurz load benchmark, side by side with bench/reference.rs (the "speed of light").
#
# Measures, on this machine, loopback only (every server binds 127.0.0.1):
#   - redirect throughput of kurz vs. the reference (oha -c 64, alternating rounds),
#     with p50/p99 and the status codes; ratio = kurz req/s / reference req/s
#   - wrong Locations: one GET per code against both servers (also warms kurz's cache)
#   - latency at a fixed 10,000 redirects/s (oha -q, latency correction on)
#   - single creates/s on SQLite with 32 concurrent clients
#   - latency of one 1,000-URL bulk create (median of 5)
#   - peak RSS of both servers; Criterion keygen codes/s if BENCH_CRITERION=1
# Writes bench/results/ (raw oha JSON, logs, summary.md) and prints the summary table.
# Takes about 3 minutes after the release build. Exits 1 if a target is missed.
#
# Usage: bash bench/run.sh
# Knobs (environment): BENCH_LINKS=100000 BENCH_ROUNDS=2 BENCH_SECONDS=20
#   BENCH_FIXED_SECONDS=20 BENCH_FIXED_RATE=10000 BENCH_CREATE_SECONDS=10
#   BENCH_SKIP_BUILD=1 (reuse target/release) BENCH_CRITERION=1 (also run keygen bench)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=$ROOT/bench/results
HARNESS=(python3 "$ROOT/bench/harness.py")

LINKS=${BENCH_LINKS:-100000}
ROUNDS=${BENCH_ROUNDS:-2}
SECONDS_PER_RUN=${BENCH_SECONDS:-20}
FIXED_SECONDS=${BENCH_FIXED_SECONDS:-20}
FIXED_RATE=${BENCH_FIXED_RATE:-10000}
CREATE_SECONDS=${BENCH_CREATE_SECONDS:-10}

PIDS=()          # every process this script started; the only ones it kills
TMP=""

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# Every long step runs under a hard time limit, so the benchmark is bounded.
# --foreground keeps Ctrl-C reaching the command (nothing here forks grandchildren).
bounded() { local limit=$1; shift; timeout --foreground --kill-after=10 "$limit" "$@"; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $TMP ]]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT

require_tools() {
    command -v python3 >/dev/null || die "python3 is required"
    command -v oha >/dev/null || die "oha is required: cargo install oha --locked"
    command -v timeout >/dev/null || die "timeout (coreutils) is required"
}

# Adapts to the installed oha: fills OHA_COMMON, OHA_CORRECTION, OHA_VERSION.
detect_oha() {
    local help
    help=$(oha --help 2>&1)
    OHA_VERSION=$(oha --version 2>&1 | head -n1)
    grep -q -- '--urls-from-file' <<<"$help" \
        || die "$OHA_VERSION has no --urls-from-file; cargo install oha --locked"
    OHA_COMMON=(--no-tui --redirect 0)
    if grep -q -- '--output-format' <<<"$help"; then
        OHA_COMMON+=(--output-format json)
    elif grep -q -- '--json' <<<"$help"; then
        OHA_COMMON+=(--json)
    else
        die "$OHA_VERSION has neither --output-format json nor --json"
    fi
    OHA_CORRECTION=()
    if grep -q -- '--latency-correction' <<<"$help"; then
        OHA_CORRECTION=(--latency-correction)
    else
        printf 'bench: %s has no --latency-correction; fixed-rate p99 suffers coordinated omission\n' \
            "$OHA_VERSION" >&2
    fi
}

build() {
    if [[ ${BENCH_SKIP_BUILD:-0} == 1 ]]; then return; fi
    say "cargo build --release (kurz + bench_reference)"
    (cd "$ROOT" && cargo build --release --bin kurz --example bench_reference)
}

start_kurz() {
    say "starting kurz on 127.0.0.1:$PORT"
    KURZ_LISTEN=127.0.0.1:$PORT \
    KURZ_DATABASE_URL=sqlite://$TMP/kurz.db \
    KURZ_ANALYTICS_SPOOL_DIR=$TMP/spool \
    KURZ_PUBLIC_BASE_URL=$KURZ \
    KURZ_ADMIN_API_KEY=$ADMIN \
    KURZ_LOG=warn \
    KURZ_CACHE_CAPACITY=200000 \
        "$ROOT/target/release/kurz" serve >"$RESULTS/kurz.log" 2>&1 &
    KURZ_PID=$!
    PIDS+=("$KURZ_PID")
    "${HARNESS[@]}" wait-health "$KURZ" --timeout 60 --pid "$KURZ_PID" \
        || { tail -n 20 "$RESULTS/kurz.log" >&2; die "kurz did not become healthy"; }
}

load_links() {
    say "creating $LINKS links with the bulk API"
    bounded 600 "${HARNESS[@]}" load "$KURZ" "$ADMIN" "$LINKS" \
        "$TMP/map.tsv" "$TMP/kurz-urls.txt" "$TMP/reference-urls.txt" "$REF"
    say "timing one 1,000-URL bulk create, 5 times"
    bounded 120 "${HARNESS[@]}" bulk-latency "$KURZ" "$ADMIN" 5 "$RESULTS/bulk.json"
}

start_reference() {
    say "starting the reference on 127.0.0.1:$RPORT"
    "$ROOT/target/release/examples/bench_reference" --listen "127.0.0.1:$RPORT" --map "$TMP/map.tsv" \
        >"$RESULTS/reference.log" 2>&1 &
    REF_PID=$!
    PIDS+=("$REF_PID")
    # It has no /health; any HTTP answer (a 404) means it is listening.
    for _ in $(seq 100); do
        python3 -c 'import sys,http.client as h; c=h.HTTPConnection("127.0.0.1",int(sys.argv[1]),timeout=1); c.request("GET","/"); c.getresponse()' \
            "$RPORT" 2>/dev/null && return
        kill -0 "$REF_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$RESULTS/reference.log" >&2
    die "the reference server did not start"
}

check_locations() {
    say "correctness pass over every code (warms kurz's cache)"
    bounded 600 "${HARNESS[@]}" check "$KURZ" "$TMP/map.tsv" "$RESULTS/check-kurz.json"
    bounded 600 "${HARNESS[@]}" check "$REF" "$TMP/map.tsv" "$RESULTS/check-reference.json"
}

# run_oha SECONDS OUT_JSON ARGS... — one oha run, JSON on stdout, chatter in OUT.log
run_oha() {
    local seconds=$1 out=$2
    shift 2
    bounded $((seconds + 60)) oha -z "${seconds}s" "${OHA_COMMON[@]}" "$@" >"$out" 2>"${out%.json}.log" \
        || die "oha failed, see ${out%.json}.log"
}

throughput() {
    local round
    for round in $(seq "$ROUNDS"); do
        say "throughput round $round/$ROUNDS: kurz, then reference (${SECONDS_PER_RUN}s each, c=64)"
        run_oha "$SECONDS_PER_RUN" "$RESULTS/redirect-kurz-$round.json" \
            -c 64 --urls-from-file "$TMP/kurz-urls.txt"
        run_oha "$SECONDS_PER_RUN" "$RESULTS/redirect-reference-$round.json" \
            -c 64 --urls-from-file "$TMP/reference-urls.txt"
    done
}

fixed_rate() {
    say "fixed rate: $FIXED_RATE req/s for ${FIXED_SECONDS}s, c=32, kurz then reference"
    run_oha "$FIXED_SECONDS" "$RESULTS/fixed-kurz.json" \
        -c 32 -q "$FIXED_RATE" "${OHA_CORRECTION[@]}" --urls-from-file "$TMP/kurz-urls.txt"
    run_oha "$FIXED_SECONDS" "$RESULTS/fixed-reference.json" \
        -c 32 -q "$FIXED_RATE" "${OHA_CORRECTION[@]}" --urls-from-file "$TMP/reference-urls.txt"
}

# Peak resident set size in KiB, from the kernel's high-water mark.
peak_rss() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

creates() {
    say "single creates for ${CREATE_SECONDS}s, c=32"
    run_oha "$CREATE_SECONDS" "$RESULTS/create-kurz.json" -c 32 -m POST \
        -H 'content-type: application/json' -H "X-API-Key: $ADMIN" \
        -d '{"original_url":"https://example.com/created"}' "$KURZ/api/v1/urls"
}

criterion() {
    CRITERION_OUT=""
    if [[ ${BENCH_CRITERION:-0} != 1 ]]; then return; fi
    say "cargo bench --bench keygen"
    CRITERION_OUT=$RESULTS/criterion.txt
    (cd "$ROOT" && bounded 900 cargo bench --bench keygen -- --noplot) | tee "$CRITERION_OUT" >&2
}

summarize() {
    local correction=()
    if [[ ${#OHA_CORRECTION[@]} -gt 0 ]]; then correction=(--latency-correction); fi
    "${HARNESS[@]}" summarize "$RESULTS" \
        --rounds "$ROUNDS" --seconds "$SECONDS_PER_RUN" --fixed-rate "$FIXED_RATE" \
        --kurz-rss-kib "$KURZ_RSS" --ref-rss-kib "$REF_RSS" "${correction[@]}" \
        --criterion "$CRITERION_OUT" \
        --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
        --nproc "$(nproc)" \
        --cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
        --oha-version "$OHA_VERSION" \
        --revision "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'no commit yet')"
}

main() {
    require_tools
    detect_oha
    build
    mkdir -p "$RESULTS"
    rm -f "$RESULTS"/*.json "$RESULTS"/*.log "$RESULTS/criterion.txt"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/kurz-bench.XXXXXX")

    local ports
    ports=$("${HARNESS[@]}" ports 2)
    PORT=$(sed -n 1p <<<"$ports")
    RPORT=$(sed -n 2p <<<"$ports")
    KURZ=http://127.0.0.1:$PORT
    REF=http://127.0.0.1:$RPORT
    ADMIN=$(python3 -c 'import secrets; print(secrets.token_hex(20))')

    start_kurz
    load_links
    start_reference
    check_locations
    throughput
    fixed_rate
    KURZ_RSS=$(peak_rss "$KURZ_PID")
    REF_RSS=$(peak_rss "$REF_PID")
    creates
    criterion

    say "summary (also in bench/results/summary.md)"
    summarize
}

main "$@"
