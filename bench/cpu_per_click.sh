#!/usr/bin/env bash
# kurz's own CPU per redirect, two release binaries side by side (e.g. before and after
# a change to the click pipeline), at a paced rate well under saturation.
#
#   bash bench/cpu_per_click.sh BIN_A BIN_B
#
# Each binary serves its own SQLite store on loopback, with analytics on and the
# default flush and hold, over 1,000 links. wrk sends human clicks (a browser
# User-Agent and a Referer, so every click is enriched and sketched) over 32
# connections, each pausing DELAY_MS between requests (wrk's Lua `delay`): a paced
# load of a few thousand redirects a second, the same for both. A round is SECS of
# load, then 12 s more so the held store writes of that load land in it too; the
# figure is the process's utime + stime (from /proc) over the round per redirect
# answered. Rounds alternate A, B, A, B… (ROUNDS each), as the machine is shared.
# Needs wrk and python3; bounded: each load run has a time limit, and both servers
# are stopped on exit.
set -euo pipefail
A=${1:?binary A}
B=${2:?binary B}
ROUNDS=${ROUNDS:-4}
SECS=${SECS:-15}
DELAY_MS=${DELAY_MS:-8}
CONNS=${CONNS:-32}
KEY=bench-cpu-admin-key-0123456789abcdef0123456789
WORK=$(mktemp -d /tmp/kurz-cpu.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
TCK=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start() { # NAME BIN -> sets PORT_<NAME>, PID_<NAME>
    local name=$1 bin=$2 port
    port=$(free_port)
    mkdir -p "$WORK/$name"
    KURZ_LISTEN=127.0.0.1:$port KURZ_DATABASE_URL="sqlite://$WORK/$name/k.db" \
        KURZ_ANALYTICS_SPOOL_DIR="$WORK/$name/spool" KURZ_ADMIN_API_KEY=$KEY KURZ_LOG=warn \
        KURZ_RATE_LIMIT_ANONYMOUS=0 KURZ_CACHE_TTL_SECS=3600 \
        "$bin" serve >"$WORK/$name/log" 2>&1 &
    PIDS+=($!)
    printf -v "PID_$name" %s $!
    printf -v "PORT_$name" %s "$port"
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/health" >/dev/null && return 0
        sleep 0.1
    done
    echo "kurz $name did not start" >&2
    exit 1
}

links() { # PORT -> a wrk Lua script over 1,000 new links in $WORK/script-PORT.lua
    local port=$1
    python3 - "$port" "$KEY" "$DELAY_MS" >"$WORK/script-$port.lua" <<'PY'
import json, sys, urllib.request
port, key, delay = sys.argv[1], sys.argv[2], sys.argv[3]
urls = [{"original_url": f"https://example.com/cpu/{i}"} for i in range(1000)]
req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/urls/bulk",
    data=json.dumps({"urls": urls}).encode(), method="POST",
    headers={"X-API-Key": key, "content-type": "application/json"})
codes = [r["short_code"] for r in json.load(urllib.request.urlopen(req, timeout=60))["results"]]
print("local codes = {" + ",".join(f'"{c}"' for c in codes) + "}")
print("local i = 0")
print('local headers = {["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", ["Referer"] = "https://news.example.com/post"}')
print("request = function() i = i + 1; return wrk.format('GET', '/' .. codes[(i % #codes) + 1], headers) end")
print(f"delay = function() return {delay} end")
PY
}

start A "$A"
start B "$B"
links "$PORT_A"
links "$PORT_B"
printf 'round binary redirects cpu_seconds us_per_redirect\n'
for round in $(seq "$ROUNDS"); do
    for name in A B; do
        port_var=PORT_$name pid_var=PID_$name
        port=${!port_var} pid=${!pid_var}
        before=$(ticks "$pid")
        out=$(timeout $((SECS + 30)) wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$WORK/script-$port.lua" \
            "http://127.0.0.1:$port")
        sleep 12
        after=$(ticks "$pid")
        n=$(awk '/requests in/ { print $1 }' <<<"$out")
        awk -v r="$round" -v b="$name" -v n="$n" -v t=$((after - before)) -v hz="$TCK" \
            'BEGIN { printf "%s %s %d %.2f %.2f\n", r, b, n, t / hz, t / hz * 1e6 / n }'
    done
done
