#!/usr/bin/env bash
# Runs kurz's whole test suite, including the tests against a real PostgreSQL (a
# primary and one streaming replica) and a real Redis.
#
# On a fresh Debian machine it installs PostgreSQL and redis-server if they are
# missing (as root: apt-get), starts throwaway instances on free loopback ports in a
# temporary directory, runs the tests, then stops exactly what it started. A Redis
# Cluster for the cluster tests is started by those tests themselves.
#
#   1. unit, property and SQLite tests, the store conformance suite on SQLite and
#      PostgreSQL, and the multi-instance / replica / chaos tests;
#   2. the HTTP integration suite again, on PostgreSQL + Redis (KURZ_TEST_BACKEND).
#
# Extra arguments go to the test runner (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*" >&2; }

pg_bin_dir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n $d && -x $d/postgres ]] && echo "$d"
}

install_servers() {
    local missing=()
    [[ -n $(pg_bin_dir) ]] || missing+=(postgresql)
    command -v redis-server >/dev/null || missing+=(redis-server)
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "need root to install ${missing[*]} (or install them yourself)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The Debian package starts a cluster of its own on 5432; we never use it.
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

TMP=$(mktemp -d /tmp/kurz-test.XXXXXX)
PIDS=()
PG_DIRS=()

# PostgreSQL refuses to run as root: run its tools as the `postgres` user then.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
    local d pid
    for d in "${PG_DIRS[@]}"; do
        as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
    done
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

start_postgres() {
    PGBIN=$(pg_bin_dir)
    PG_PORT=$(free_port)
    PG_REPLICA_PORT=$(free_port)
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$TMP"; fi
    log "starting PostgreSQL primary on 127.0.0.1:$PG_PORT"
    as_pg "$PGBIN/initdb" -D "$TMP/pg" -U kurz --auth=trust -E UTF8 >"$TMP/initdb.log"
    cat >>"$TMP/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$TMP'
max_connections = 400
wal_level = replica
max_wal_senders = 4
# A throwaway test instance: durability buys nothing here.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    as_pg "$PGBIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w start >/dev/null
    PG_DIRS+=("$TMP/pg")

    log "starting a streaming replica on 127.0.0.1:$PG_REPLICA_PORT (pg_basebackup)"
    as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U kurz -D "$TMP/pg-replica" -R -X stream
    echo "port = $PG_REPLICA_PORT" >>"$TMP/pg-replica/postgresql.conf"
    as_pg "$PGBIN/pg_ctl" -D "$TMP/pg-replica" -l "$TMP/pg-replica.log" -w start >/dev/null
    PG_DIRS+=("$TMP/pg-replica")

    export KURZ_TEST_PG="postgres://kurz@127.0.0.1:$PG_PORT/postgres"
    export KURZ_TEST_PG_REPLICA="postgres://kurz@127.0.0.1:$PG_REPLICA_PORT/postgres"
}

start_redis() {
    REDIS_PORT=$(free_port)
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
        --dir "$TMP" --logfile "$TMP/redis.log" &
    PIDS+=($!)
    for _ in $(seq 50); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$REDIS_PORT" ping >/dev/null
    export KURZ_TEST_REDIS="redis://127.0.0.1:$REDIS_PORT"
    KURZ_TEST_REDIS_SERVER=$(command -v redis-server)
    export KURZ_TEST_REDIS_SERVER
}

run_tests() {
    if cargo nextest --version >/dev/null 2>&1; then
        # Retries stay off: a flaky test is a bug to fix, not to hide.
        cargo nextest run --locked --no-fail-fast "$@"
    else
        cargo test --locked --no-fail-fast "$@"
    fi
}

install_servers
start_postgres
start_redis

status=0
log "tests (SQLite, PostgreSQL conformance, multi-instance, chaos)"
run_tests "$@" || status=1
log "the HTTP integration suite again, on PostgreSQL + Redis"
KURZ_TEST_BACKEND=postgres run_tests --test api "$@" || status=1
exit $status
