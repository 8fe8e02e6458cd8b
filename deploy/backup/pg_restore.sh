#!/usr/bin/env bash
# Restores a backup made by pg_backup.sh (deploy/backup/README.md).
#
#   pg_restore.sh dump FILE DATABASE_URL
#       Restores a `pg_backup.sh dump` file into DATABASE_URL, an existing empty
#       database (e.g. `createdb -O kurz kurz`), in one transaction (all or nothing),
#       without the old owners and grants (everything belongs to the URL's user).
#       Then runs `skip-codes` (below) and ANALYZE.
#
#   pg_restore.sh base DIR DATA_DIR [WAL_ARCHIVE [TARGET_TIME]]
#       Unpacks a `pg_backup.sh base` backup into DATA_DIR (new or empty), ready for
#       PostgreSQL of the same major version to start on. With WAL_ARCHIVE (the
#       directory archive_command copies WAL into), recovery then replays the archived
#       WAL written after the backup: up to TARGET_TIME (e.g. '2026-12-05 10:00:00+00')
#       if given, else to the end of the archive; the server then promotes itself.
#       Run as the user PostgreSQL runs as (or chown -R DATA_DIR to it); start the
#       server; then run `pg_restore.sh skip-codes` against it.
#
#   pg_restore.sh skip-codes DATABASE_URL [N]
#       Moves kurz's key generator counter (table kgs_counter) on by N, default
#       100,000,000 (about 6 days of the seeds' 17 M creates a day). Links created
#       after the backup point are not in the restored store, but their short URLs
#       are out in the world; without the skip, kurz would hand the same codes out
#       again for other URLs. The code space is 62^7 ≈ 3.5e12 codes, so the skip
#       costs nothing. Run it before any kurz serves the restored store.
#
# PG_BIN: the PostgreSQL programs to use (default: the newest
# /usr/lib/postgresql/*/bin, else PATH).
set -euo pipefail

SKIP_DEFAULT=100000000

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { printf 'pg_restore: %s\n' "$*" >&2; exit 1; }
say() { printf 'pg_restore: %s\n' "$*" >&2; }

pg_bin() {
    if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n $d && -x $d/pg_restore ]]; then echo "$d"; return; fi
    d=$(command -v pg_restore || true)
    [[ -n $d ]] || die "no pg_restore found: install postgresql-client or set PG_BIN"
    dirname "$d"
}

skip_codes() {
    local url=$1 n=${2:-$SKIP_DEFAULT} bin value
    [[ $n =~ ^[0-9]+$ ]] || die "skip-codes: N must be a number"
    bin=$(pg_bin)
    value=$("$bin/psql" --no-psqlrc -X -q -At -v ON_ERROR_STOP=1 --dbname="$url" \
        -c "UPDATE kgs_counter SET next_value = next_value + $n WHERE id = 1 RETURNING next_value") \
        || die "skip-codes: cannot update kgs_counter"
    [[ -n $value ]] || die "skip-codes: kgs_counter has no row: is this a kurz database?"
    say "key generator counter moved on by $n to $value"
}

dump() {
    local file=$1 url=$2 bin tables links
    [[ -f $file ]] || die "no such file: $file"
    bin=$(pg_bin)
    tables=$("$bin/psql" --no-psqlrc -X -At -v ON_ERROR_STOP=1 --dbname="$url" \
        -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") \
        || die "cannot connect to the target database"
    [[ $tables == 0 ]] || die "the target database has $tables tables: restore into an empty one"
    "$bin/pg_restore" --exit-on-error --single-transaction --no-owner --no-privileges \
        --dbname="$url" "$file" || die "pg_restore failed (nothing was restored)"
    skip_codes "$url" "${KURZ_RESTORE_SKIP_CODES:-$SKIP_DEFAULT}"
    "$bin/psql" --no-psqlrc -X -q -v ON_ERROR_STOP=1 --dbname="$url" -c 'ANALYZE' \
        || die "ANALYZE failed"
    links=$("$bin/psql" --no-psqlrc -X -At --dbname="$url" \
        -c 'SELECT count(*) FROM links WHERE deleted_at IS NULL')
    say "restored $file: $links links"
}

base() {
    local dir=$1 data=$2 archive=${3:-} target=${4:-}
    local f
    for f in base.tar.gz pg_wal.tar.gz; do
        [[ -s $dir/$f ]] || die "$dir/$f is missing: not a pg_backup.sh base backup"
    done
    if [[ -e $data && -n $(ls -A "$data") ]]; then die "$data is not empty"; fi
    mkdir -p "$data"
    chmod 700 "$data"
    tar -xzf "$dir/base.tar.gz" -C "$data"
    mkdir -p "$data/pg_wal"
    tar -xzf "$dir/pg_wal.tar.gz" -C "$data/pg_wal"
    cp "$dir/backup_manifest" "$data/backup_manifest.restored" 2>/dev/null || true
    if [[ -n $archive ]]; then
        [[ -d $archive ]] || die "no WAL archive directory $archive"
        {
            printf '\n# Added by deploy/backup/pg_restore.sh: recover from the WAL archive.\n'
            printf "restore_command = 'cp %s/%%f %%p'\n" "$archive"
            if [[ -n $target ]]; then
                printf "recovery_target_time = '%s'\n" "$target"
            fi
            printf "recovery_target_action = 'promote'\n"
        } >>"$data/postgresql.auto.conf"
        touch "$data/recovery.signal"
        say "$data: recovery from $archive${target:+ up to $target} on the next start"
    else
        say "$data: the base backup alone (its own WAL); start PostgreSQL on it"
    fi
    say "after the server is up: pg_restore.sh skip-codes DATABASE_URL"
}

case ${1:-} in
    dump) [[ $# -eq 3 ]] || usage; dump "$2" "$3" ;;
    base) [[ $# -ge 3 && $# -le 5 ]] || usage; base "$2" "$3" "${4:-}" "${5:-}" ;;
    skip-codes) [[ $# -ge 2 && $# -le 3 ]] || usage; skip_codes "$2" "${3:-}" ;;
    *) usage ;;
esac
