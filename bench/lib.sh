# Helpers shared by bench/run_production.sh and bench/run_analytics.sh. Source it after
# setting RESULTS, WORK, ADMIN, KURZ_BIN, HARNESS, OHA and KURZ_PIDS=().

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
# Every long step runs under a hard time limit, so a benchmark is bounded.
bounded() { local limit=$1; shift; timeout --foreground --kill-after=10 "$limit" "$@"; }

# start_kurz NAME PORT ENV... — one instance with its own spool, waits for /health.
start_kurz() {
    local name=$1 port=$2
    shift 2
    say "starting $name on 127.0.0.1:$port"
    env KURZ_LISTEN=127.0.0.1:$port KURZ_PUBLIC_BASE_URL=http://127.0.0.1:$port \
        KURZ_ADMIN_API_KEY=$ADMIN KURZ_LOG=warn KURZ_CACHE_CAPACITY=200000 \
        KURZ_ANALYTICS_SPOOL_DIR="$WORK/spool-$name" "$@" \
        "$KURZ_BIN" serve >"$RESULTS/$name.log" 2>&1 &
    KURZ_PIDS+=($!)
    "${HARNESS[@]}" wait-health "http://127.0.0.1:$port" --timeout 60 --pid "$!" \
        || { tail -n 20 "$RESULTS/$name.log" >&2; die "$name did not start"; }
}

# run_oha SECONDS OUT_JSON ARGS... — one bounded oha run, JSON in OUT, chatter in OUT.log
run_oha() {
    local seconds=$1 out=$2
    shift 2
    bounded $((seconds + 60)) oha -z "${seconds}s" "${OHA[@]}" "$@" >"$out" 2>"${out%.json}.log" \
        || die "oha failed, see ${out%.json}.log"
}

# cpu_ticks PID — user + system CPU of a process so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# oha arguments that make each request a human click: a desktop browser's User-Agent
# and a Referer (oha's own User-Agent is classified as a bot, which skips the
# breakdowns and the visitor sketch). Used by run_analytics.sh and run_stages.sh.
CLICK=(-H "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
       -H "Referer: https://news.example.com/item?id=1")
