# Shared by the scripts that start a kurz of their own (tests/fuzz/run.sh,
# tests/browser/run.sh): is it up, and wait until it is. Source it; it sets no
# shell options of its own.

# kurz_healthy BASE: whether BASE/health answers 2xx.
kurz_healthy() {
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)' \
        "$1" >/dev/null 2>&1
}

# kurz_wait_healthy BASE PID LOG: waits up to 10 s for BASE/health; exits 1 with
# LOG on stderr if the process PID ends first or never answers.
kurz_wait_healthy() {
    local base=$1 pid=$2 log_file=$3
    for _ in $(seq 1 100); do
        if kurz_healthy "$base"; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log_file" >&2
            echo "kurz exited at start" >&2
            exit 1
        fi
        sleep 0.1
    done
    kurz_healthy "$base" || { cat "$log_file" >&2; echo "kurz did not answer /health" >&2; exit 1; }
}
