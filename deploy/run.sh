#!/usr/bin/env bash
# Runs kurz as it runs in production, on one machine, without Docker:
# PostgreSQL + Redis + two kurz instances + HAProxy in front, all on loopback.
#
#   bash deploy/run.sh            # starts everything, prints the address, Ctrl-C stops it
#   source deploy/run.sh --lib    # only defines the functions (deploy/test.sh does this)
#
# Installs postgresql, redis-server and haproxy if missing (Debian, as root). Uses the
# release binary (built if missing). State lives in a temporary directory and is
# removed on exit: this is a demonstration and test rig, not a data home.
set -euo pipefail

DEPLOY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$DEPLOY_ROOT/scripts/services.sh"
DEPLOY_KURZ_PIDS=(0 0)
DEPLOY_HAPROXY_PID=""

deploy_log() { printf '== %s\n' "$*" >&2; }

# True when GET URL answers 200 (python: curl may not be installed).
deploy_http_ok() {
    python3 -c 'import sys, urllib.request as u; sys.exit(0 if u.urlopen(sys.argv[1], timeout=2).status == 200 else 1)' \
        "$1" >/dev/null 2>&1
}

deploy_install() {
    services_install
    if ! command -v haproxy >/dev/null; then
        deploy_log "installing haproxy"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null
    fi
}

# deploy_start_kurz N — (re)starts instance N (1 or 2) and waits until it is healthy.
deploy_start_kurz() {
    local n=$1 port_var=DEPLOY_PORT$1
    local port=${!port_var}
    env KURZ_LISTEN="127.0.0.1:$port" KURZ_DATABASE_URL="$KURZ_TEST_PG" KURZ_REDIS_URL="$KURZ_TEST_REDIS" \
        KURZ_PUBLIC_BASE_URL="http://127.0.0.1:$DEPLOY_PORT" KURZ_ADMIN_API_KEY="$DEPLOY_ADMIN_KEY" \
        KURZ_JWT_SECRET="$DEPLOY_JWT_SECRET" KURZ_TRUSTED_PROXIES=127.0.0.1/32 KURZ_LOG=warn \
        KURZ_ANALYTICS_SPOOL_DIR="$SERVICES_TMP/spool$n" \
        "$DEPLOY_KURZ" serve >>"$SERVICES_TMP/kurz$n.log" 2>&1 &
    DEPLOY_KURZ_PIDS[n - 1]=$!
    local _
    for _ in $(seq 100); do
        deploy_http_ok "http://127.0.0.1:$port/health" && return 0
        sleep 0.1
    done
    tail -n 20 "$SERVICES_TMP/kurz$n.log" >&2
    return 1
}

# deploy_stop_kurz N — SIGTERM: the instance drains in-flight requests and exits 0.
deploy_stop_kurz() {
    local pid=${DEPLOY_KURZ_PIDS[$1 - 1]}
    kill -TERM "$pid"
    wait "$pid"
}

deploy_start() {
    local release=${CARGO_TARGET_DIR:-$DEPLOY_ROOT/target}/release/kurz
    DEPLOY_KURZ=${DEPLOY_KURZ:-$release}
    if [[ ! -x $DEPLOY_KURZ ]]; then
        (cd "$DEPLOY_ROOT" && cargo build --release --bin kurz)
        DEPLOY_KURZ=$release
    fi
    deploy_install
    services_start_postgres
    services_start_redis
    DEPLOY_PORT=${DEPLOY_PORT:-$(services_free_port)}
    DEPLOY_PORT1=$(services_free_port)
    DEPLOY_PORT2=$(services_free_port)
    DEPLOY_ADMIN_KEY=${DEPLOY_ADMIN_KEY:-$(python3 -c 'import secrets; print("kurz_" + secrets.token_urlsafe(24))')}
    DEPLOY_JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    env KURZ_DATABASE_URL="$KURZ_TEST_PG" "$DEPLOY_KURZ" migrate >/dev/null
    deploy_log "starting kurz on 127.0.0.1:$DEPLOY_PORT1 and 127.0.0.1:$DEPLOY_PORT2"
    deploy_start_kurz 1
    deploy_start_kurz 2
    sed -e "s/@PORT@/$DEPLOY_PORT/" -e "s/@PORT1@/$DEPLOY_PORT1/" -e "s/@PORT2@/$DEPLOY_PORT2/" \
        "$DEPLOY_ROOT/deploy/haproxy.cfg.template" >"$SERVICES_TMP/haproxy.cfg"
    haproxy -f "$SERVICES_TMP/haproxy.cfg" -db >"$SERVICES_TMP/haproxy.log" 2>&1 &
    DEPLOY_HAPROXY_PID=$!
    local _
    for _ in $(seq 100); do
        deploy_http_ok "http://127.0.0.1:$DEPLOY_PORT/health" && break
        sleep 0.1
    done
    deploy_http_ok "http://127.0.0.1:$DEPLOY_PORT/health" || { cat "$SERVICES_TMP/haproxy.log" >&2; return 1; }
    deploy_log "kurz is served through HAProxy at http://127.0.0.1:$DEPLOY_PORT"
}

deploy_stop() {
    local pid
    for pid in "$DEPLOY_HAPROXY_PID" "${DEPLOY_KURZ_PIDS[@]}"; do
        if [[ -n $pid && $pid != 0 ]]; then
            kill "$pid" 2>/dev/null || true
            # Only our own processes: a bare `wait` would also wait for redis-server.
            wait "$pid" 2>/dev/null || true
        fi
    done
    services_stop
}

if [[ ${1:-} != --lib ]]; then
    trap deploy_stop EXIT
    deploy_start
    echo "admin API key: $DEPLOY_ADMIN_KEY"
    echo "try: curl -s -X POST http://127.0.0.1:$DEPLOY_PORT/api/v1/urls -H 'content-type: application/json' -d '{\"original_url\":\"https://example.com\"}'"
    echo "Ctrl-C stops everything."
    wait "$DEPLOY_HAPROXY_PID"
fi
