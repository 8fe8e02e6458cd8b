#!/usr/bin/env bash
# Backs up kurz's PostgreSQL store while kurz keeps serving (deploy/backup/README.md).
#
#   pg_backup.sh dump DATABASE_URL FILE
#       Small installs: one pg_dump in custom format (-Fc). pg_dump reads everything
#       in one snapshot taken when it starts, so the file holds exactly the
#       transactions committed before then: every link kurz acknowledged (201) before
#       the dump started, none half-written. Written to FILE.partial, checked with
#       `pg_restore --list`, then renamed to FILE.
#       KURZ_BACKUP_RAW_CLICKS=0 leaves out the rows of the raw click events (the
#       daily partitions click_events_YYYYMMDD; the hourly rollups that stats read
#       are kept), which are most of a busy store.
#
#   pg_backup.sh base DATABASE_URL DIR
#       Large installs: a physical base backup (pg_basebackup, tar format, gzip, the
#       WAL needed to make it consistent streamed into it) into DIR, which must not
#       exist. Needs a role with REPLICATION and a `replication` line in pg_hba.conf.
#       For point-in-time recovery, also archive WAL continuously (README.md).
#
# PG_BIN: the PostgreSQL client programs to use (default: the newest
# /usr/lib/postgresql/*/bin, else PATH). They must be at least the server's version.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { printf 'pg_backup: %s\n' "$*" >&2; exit 1; }

pg_bin() {
    if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n $d && -x $d/pg_dump ]]; then echo "$d"; return; fi
    d=$(command -v pg_dump || true)
    [[ -n $d ]] || die "no pg_dump found: install postgresql-client or set PG_BIN"
    dirname "$d"
}

dump() {
    local url=$1 file=$2 bin tmp started opts=()
    bin=$(pg_bin)
    tmp=$file.partial
    opts=(--format=custom --compress=6 --no-password
          # Rows go in through the partitioned parent, so a restore does not depend on
          # the hash of each code landing in the same partition on the new server.
          --load-via-partition-root)
    if [[ ${KURZ_BACKUP_RAW_CLICKS:-1} == 0 ]]; then
        opts+=(--exclude-table-data='public.click_events_*')
    fi
    started=$(date +%s%N)
    "$bin/pg_dump" "${opts[@]}" --file="$tmp" "$url" || { rm -f "$tmp"; die "pg_dump failed"; }
    "$bin/pg_restore" --list "$tmp" >/dev/null || { rm -f "$tmp"; die "the dump is not readable"; }
    mv "$tmp" "$file"
    printf 'pg_backup: %s (%s bytes) in %s ms\n' "$file" "$(stat -c %s "$file")" \
        "$(( ($(date +%s%N) - started) / 1000000 ))" >&2
}

base() {
    local url=$1 dir=$2 bin
    bin=$(pg_bin)
    [[ ! -e $dir ]] || die "$dir exists: a base backup goes into a new directory"
    "$bin/pg_basebackup" --dbname="$url" --pgdata="$dir" --format=tar --gzip \
        --wal-method=stream --checkpoint=fast --manifest-checksums=SHA256 --no-password \
        || { rm -rf "$dir"; die "pg_basebackup failed"; }
    local f
    for f in base.tar.gz pg_wal.tar.gz backup_manifest; do
        [[ -s $dir/$f ]] || { rm -rf "$dir"; die "pg_basebackup wrote no $f"; }
    done
    printf 'pg_backup: base backup in %s (base.tar.gz, pg_wal.tar.gz, backup_manifest)\n' "$dir" >&2
}

[[ $# -eq 3 ]] || usage
case $1 in
    dump) dump "$2" "$3" ;;
    base) base "$2" "$3" ;;
    *) usage ;;
esac
