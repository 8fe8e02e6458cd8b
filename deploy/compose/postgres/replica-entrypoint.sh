#!/bin/sh
# Entrypoint of the PostgreSQL replica: on first start (empty data folder) it copies the
# primary with pg_basebackup and configures itself as a standby streaming from it
# (-R: standby.signal + primary_conninfo); later starts just start the standby. Extra
# arguments go to postgres. deploy/compose/test-replication.sh runs it (and primary-init.sh)
# against a local PostgreSQL.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    exec gosu postgres /bin/sh "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    until pg_isready -q -h "$PRIMARY_HOST" -U replicator; do
        echo "waiting for the primary at $PRIMARY_HOST"
        sleep 1
    done
    # -R writes standby.signal and primary_conninfo (with this password) into PGDATA.
    PGPASSWORD=$POSTGRES_REPLICATION_PASSWORD pg_basebackup -h "$PRIMARY_HOST" -U replicator \
        -D "$PGDATA" -R -X stream
fi
exec postgres -c hot_standby=on "$@"
