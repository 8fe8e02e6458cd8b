#!/usr/bin/env bash
# The backup test: a backup taken under write load restores to a store on which every
# link acknowledged (201) before the backup started resolves (302 to its URL).
#
#   1. PostgreSQL, pg_dump (pg_backup.sh dump / pg_restore.sh dump): kurz on a
#      throwaway PostgreSQL (scripts/services.sh), 4 clients creating links through
#      the API; the dump is taken while they go on; restored into a new database; a
#      second kurz on it must redirect every link acknowledged before the dump
#      started, and a create there must not get a code handed out before.
#   2. PostgreSQL, base backup + WAL archive, point in time (pg_backup.sh base /
#      pg_restore.sh base): the same server archives its WAL (archive_mode, set by
#      this test); a base backup under the same load; the load goes on past a
#      recovery target time; the backup is restored into a new data directory and
#      recovered from the archive up to that time; a kurz on it must redirect every
#      link acknowledged before the target.
#   3. SQLite (`kurz backup --to FILE` / `kurz restore --from FILE`): kurz on a SQLite
#      file under the same kind of load, the backup taken while it goes on, restored
#      into a new file, a second kurz on it (see the marked section below).
#
# Prints counts per part; exits 1 if a part failed. A skipped part prints SKIP.
# Uses KURZ_BIN (default target/debug/kurz, built with cargo if missing). As root
# on a fresh Debian it installs PostgreSQL (services_install). About 1 minute.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/deploy/backup
LOAD=(python3 "$HERE/load.py")
CLIENTS=4

PIDS=()
PG_EXTRA=()   # data directories of servers this script started itself
WORK=""
PGWORK=""
RESULTS=()
FAILED=0

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'backup test: %s\n' "$*" >&2; exit 1; }
bounded() { local limit=$1; shift; timeout --foreground --kill-after=10 "$limit" "$@"; }
now() { date +%s.%N; }
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

stop_pid() {
    local pid=$1
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid d
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for d in "${PG_EXTRA[@]}"; do
        as_pg "$SERVICES_PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
    done
    if declare -F services_stop >/dev/null; then services_stop; fi
    if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
    if [[ -n $PGWORK ]]; then rm -rf "$PGWORK"; fi
}
trap cleanup EXIT

find_kurz() {
    if [[ -z ${KURZ_BIN:-} ]]; then
        KURZ_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/kurz
        if [[ ! -x $KURZ_BIN ]]; then
            say "cargo build --bin kurz"
            (cd "$ROOT" && cargo build --locked --bin kurz)
        fi
    fi
    [[ -x $KURZ_BIN ]] || die "KURZ_BIN=$KURZ_BIN is not an executable"
}

# start_kurz NAME DATABASE_URL — one kurz on a free port; sets KURZ_URL, KURZ_PID.
start_kurz() {
    local name=$1 db=$2 port
    port=$(free_port)
    KURZ_URL=http://127.0.0.1:$port
    KURZ_LISTEN=127.0.0.1:$port KURZ_PUBLIC_BASE_URL=$KURZ_URL KURZ_DATABASE_URL=$db \
        KURZ_ADMIN_API_KEY=$ADMIN KURZ_LOG=warn KURZ_ANALYTICS_SPOOL_DIR=$WORK/spool-$name \
        "$KURZ_BIN" serve >"$WORK/$name.log" 2>&1 &
    KURZ_PID=$!
    PIDS+=("$KURZ_PID")
    python3 "$ROOT/bench/harness.py" wait-health "$KURZ_URL" --timeout 60 --pid "$KURZ_PID" \
        || { tail -n 20 "$WORK/$name.log" >&2; die "kurz $name did not become healthy"; }
}

migrate() {
    KURZ_DATABASE_URL=$1 KURZ_LOG=warn "$KURZ_BIN" migrate >>"$WORK/migrate.log" 2>&1 \
        || { cat "$WORK/migrate.log" >&2; die "kurz migrate failed on $1"; }
}

psql_q() { "$SERVICES_PGBIN/psql" --no-psqlrc -X -q -At -v ON_ERROR_STOP=1 --dbname="$1" -c "$2"; }

# start_load ACKS — CLIENTS creating links until the stop file exists; sets LOAD_PID.
start_load() {
    rm -f "$WORK/stop"
    "${LOAD[@]}" load "$KURZ_URL" "$ADMIN" "$1" --clients "$CLIENTS" \
        --stop-file "$WORK/stop" --max-seconds 120 &
    LOAD_PID=$!
    PIDS+=("$LOAD_PID")
}

stop_load() {
    touch "$WORK/stop"
    local rc=0
    wait "$LOAD_PID" || rc=$?
    [[ $rc == 0 ]] || { printf 'backup test: the write load saw errors (above)\n' >&2; return 1; }
}

record() { RESULTS+=("$1"); if [[ $1 == FAIL* ]]; then FAILED=1; fi; }

# Part 1 and 2 share one server, one kurz and one write load.
postgres_parts() {
    # shellcheck disable=SC1091  # scripts/services.sh
    source "$ROOT/scripts/services.sh"
    services_install
    services_start_postgres
    PGWORK=$(mktemp -d "${TMPDIR:-/tmp}/kurz-backup-pg.XXXXXX")
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$PGWORK"; fi
    as_pg mkdir "$PGWORK/wal-archive"

    say "PostgreSQL: archive WAL into $PGWORK/wal-archive (archive_mode needs a restart)"
    psql_q "$KURZ_TEST_PG" "ALTER SYSTEM SET archive_mode = 'on'"
    psql_q "$KURZ_TEST_PG" \
        "ALTER SYSTEM SET archive_command = 'test ! -f $PGWORK/wal-archive/%f && cp %p $PGWORK/wal-archive/%f'"
    as_pg "$SERVICES_PGBIN/pg_ctl" -D "${SERVICES_PG_DIRS[0]}" -w restart >/dev/null
    [[ $(psql_q "$KURZ_TEST_PG" 'SHOW archive_mode') == on ]] || die "archive_mode did not turn on"

    local src=${KURZ_TEST_PG%/*}/kurz_src
    psql_q "$KURZ_TEST_PG" 'CREATE DATABASE kurz_src'
    migrate "$src"
    start_kurz pg-source "$src"
    local source_pid=$KURZ_PID

    say "write load: $CLIENTS clients creating links"
    start_load "$WORK/acks-pg.tsv"
    sleep 3

    say "part 1: pg_backup.sh dump while the load goes on"
    local dump_start dump_end base_start base_end target
    dump_start=$(now)
    bounded 300 bash "$HERE/pg_backup.sh" dump "$src" "$WORK/kurz.dump"
    dump_end=$(now)
    sleep 1

    say "part 2: pg_backup.sh base while the load goes on"
    base_start=$(now)
    as_pg env PG_BIN="$SERVICES_PGBIN" bash "$HERE/pg_backup.sh" base "$src" "$PGWORK/base"
    base_end=$(now)
    printf '  base backup took %s s\n' "$(python3 -c 'import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))' "$base_start" "$base_end")" >&2
    sleep 2
    target=$(now)
    sleep 2
    stop_load || record "FAIL load: creates failed during the backups"
    kill -0 "$source_pid" 2>/dev/null || die "the source kurz exited"

    # Everything up to now into the archive: close the current WAL segment, wait for it.
    local segment
    segment=$(psql_q "$src" 'SELECT pg_walfile_name(pg_current_wal_lsn())')
    psql_q "$src" 'SELECT pg_switch_wal()' >/dev/null
    for _ in $(seq 100); do [[ -f $PGWORK/wal-archive/$segment ]] && break; sleep 0.1; done
    [[ -f $PGWORK/wal-archive/$segment ]] || die "WAL segment $segment was not archived"

    say "part 1: pg_restore.sh dump into a new database, a kurz on it"
    local restored=${KURZ_TEST_PG%/*}/kurz_restored
    psql_q "$KURZ_TEST_PG" 'CREATE DATABASE kurz_restored'
    bash "$HERE/pg_restore.sh" dump "$WORK/kurz.dump" "$restored"
    migrate "$restored"
    start_kurz pg-restored "$restored"
    if "${LOAD[@]}" check "$KURZ_URL" "$WORK/acks-pg.tsv" --label "pg_dump" --key "$ADMIN" \
        --backup-start "$dump_start" --backup-end "$dump_end"; then
        record "PASS PostgreSQL pg_dump: every link acknowledged before the dump started resolves"
    else
        record "FAIL PostgreSQL pg_dump: links acknowledged before the dump started are missing"
    fi

    say "part 2: pg_restore.sh base + WAL archive up to the target time, a kurz on it"
    local port target_sql url
    port=$(free_port)
    target_sql=$(python3 -c 'import sys, datetime as d; print(d.datetime.fromtimestamp(float(sys.argv[1]), d.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00"))' "$target")
    as_pg env PG_BIN="$SERVICES_PGBIN" bash "$HERE/pg_restore.sh" base "$PGWORK/base" "$PGWORK/data" \
        "$PGWORK/wal-archive" "$target_sql"
    as_pg "$SERVICES_PGBIN/pg_ctl" -D "$PGWORK/data" -l "$PGWORK/recovered.log" -w \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PGWORK -c archive_mode=off" \
        start >/dev/null || { tail -n 20 "$PGWORK/recovered.log" >&2; die "the recovered server did not start"; }
    PG_EXTRA+=("$PGWORK/data")
    url=postgres://kurz@127.0.0.1:$port/kurz_src
    for _ in $(seq 300); do
        [[ $(psql_q "$url" 'SELECT pg_is_in_recovery()' 2>/dev/null) == f ]] && break
        sleep 0.1
    done
    [[ $(psql_q "$url" 'SELECT pg_is_in_recovery()') == f ]] \
        || { tail -n 20 "$PGWORK/recovered.log" >&2; die "recovery did not finish"; }
    grep -E 'recovery stopping|last completed transaction' "$PGWORK/recovered.log" | sed 's/^/  /' >&2 || true
    bash "$HERE/pg_restore.sh" skip-codes "$url"
    migrate "$url"
    start_kurz pg-recovered "$url"
    if "${LOAD[@]}" check "$KURZ_URL" "$WORK/acks-pg.tsv" --label "base + WAL" --key "$ADMIN" \
        --point "the recovery target ($target_sql)" \
        --backup-start "$target" --backup-end "$target"; then
        record "PASS PostgreSQL base backup + WAL: every link acknowledged before the recovery target resolves"
    else
        record "FAIL PostgreSQL base backup + WAL: links acknowledged before the recovery target are missing"
    fi
}

# =====================================================================================
# SQLite: `kurz backup --to FILE` and `kurz restore` — the lead's commands.
# This part runs once `kurz backup --help` succeeds. It assumes the CLI:
#   KURZ_DATABASE_URL=sqlite://live.db kurz backup --to FILE      (online, while serving)
#   KURZ_DATABASE_URL=sqlite://new.db  kurz restore --from FILE
# Adjust the two command lines marked CLI below if the final commands differ.
# =====================================================================================
sqlite_part() {
    if ! "$KURZ_BIN" backup --help >/dev/null 2>&1; then
        record "SKIP SQLite kurz backup/restore: this kurz has no 'backup' command yet"
        return 0
    fi
    local live=sqlite://$WORK/live.db new=sqlite://$WORK/restored.db start end
    start_kurz sqlite-source "$live"
    say "SQLite: write load, then kurz backup --to while it goes on"
    start_load "$WORK/acks-sqlite.tsv"
    sleep 3
    start=$(now)
    KURZ_DATABASE_URL=$live bounded 300 "$KURZ_BIN" backup --to "$WORK/sqlite-backup.db"   # CLI
    end=$(now)
    sleep 2
    stop_load || record "FAIL load: creates failed during the SQLite backup"
    say "SQLite: kurz restore into a new file, a kurz on it"
    KURZ_DATABASE_URL=$new bounded 300 "$KURZ_BIN" restore --from "$WORK/sqlite-backup.db"   # CLI
    start_kurz sqlite-restored "$new"
    if "${LOAD[@]}" check "$KURZ_URL" "$WORK/acks-sqlite.tsv" --label "SQLite" --key "$ADMIN" \
        --backup-start "$start" --backup-end "$end"; then
        record "PASS SQLite kurz backup: every link acknowledged before the backup started resolves"
    else
        record "FAIL SQLite kurz backup: links acknowledged before the backup started are missing"
    fi
}

main() {
    command -v python3 >/dev/null || die "python3 is required"
    find_kurz
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/kurz-backup.XXXXXX")
    ADMIN=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
    postgres_parts
    sqlite_part
    printf '\n== backup test results (kurz: %s)\n' "$KURZ_BIN" >&2
    printf '%s\n' "${RESULTS[@]}" >&2
    exit "$FAILED"
}

main "$@"
