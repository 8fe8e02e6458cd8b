#!/usr/bin/env bash
# The compose stack's PostgreSQL scripts, run against a local PostgreSQL (the images
# cannot be pulled here): postgres/primary-init.sh on a fresh primary (password auth on,
# as in the postgres image), then postgres/replica-entrypoint.sh as the replica's
# entrypoint. Passes when the replica is a hot standby that has a row written on the
# primary after it started, and the primary shows it streaming as `replicator`.
#
#   bash deploy/compose/test-replication.sh     (installs postgresql if missing, as root)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/scripts/services.sh"
services_install
PGBIN=$(services_pg_bin)
SERVICES_PGBIN=$PGBIN # services_stop stops every server in SERVICES_PG_DIRS with it
T=$SERVICES_TMP
trap services_stop EXIT
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[[ $(id -u) -eq 0 ]] && chown postgres "$T"
P1=$(services_free_port)
P2=$(services_free_port)

echo secret-primary >"$T/pw"
[[ $(id -u) -eq 0 ]] && chown postgres "$T/pw"
as_pg "$PGBIN/initdb" -D "$T/primary" -U kurz --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$T/pw" >"$T/initdb.log"
printf "listen_addresses='127.0.0.1'\nport=%s\nunix_socket_directories='%s'\n" "$P1" "$T" \
    >>"$T/primary/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$T/primary" -l "$T/primary.log" -w start >/dev/null
SERVICES_PG_DIRS+=("$T/primary")
as_pg env PGHOST="$T" PGPORT="$P1" PGDATA="$T/primary" POSTGRES_USER=kurz POSTGRES_DB=postgres \
    POSTGRES_REPLICATION_PASSWORD=secret-replication PATH="$PGBIN:$PATH" \
    sh "$ROOT/deploy/compose/postgres/primary-init.sh" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$T/primary" reload >/dev/null

mkdir -p "$T/home"
[[ $(id -u) -eq 0 ]] && chown postgres "$T/home"
as_pg env HOME="$T/home" PATH="$PGBIN:$PATH" PGDATA="$T/replica" PGPORT="$P1" \
    PRIMARY_HOST=127.0.0.1 POSTGRES_REPLICATION_PASSWORD=secret-replication \
    sh "$ROOT/deploy/compose/postgres/replica-entrypoint.sh" \
    -c port="$P2" -c unix_socket_directories="$T" -c listen_addresses=127.0.0.1 \
    >"$T/replica.log" 2>&1 &
SERVICES_PG_DIRS+=("$T/replica")
for _ in $(seq 100); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$P2" && break
    sleep 0.1
done
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$P2" || { cat "$T/replica.log" >&2; exit 1; }

q() { PGPASSWORD=secret-primary "$PGBIN/psql" -h 127.0.0.1 -p "$1" -U kurz -d postgres -Atqc "$2"; }
q "$P1" "CREATE TABLE probe (x int); INSERT INTO probe VALUES (42);"
got=""
for _ in $(seq 50); do
    got=$(q "$P2" "SELECT pg_is_in_recovery(), (SELECT x FROM probe)" 2>/dev/null || true)
    [[ $got == "t|42" ]] && break
    sleep 0.1
done
[[ $got == "t|42" ]] || { echo "FAIL: replica answered '$got', want a standby with the row" >&2; exit 1; }
streaming=$(q "$P1" "SELECT usename || ' ' || state FROM pg_stat_replication")
[[ $streaming == "replicator streaming" ]] || { echo "FAIL: primary shows '$streaming'" >&2; exit 1; }
echo "compose PostgreSQL scripts: passed (replica set up by pg_basebackup streams from the primary as replicator)"
