#!/usr/bin/env bash
# The redirect benchmark, side by side in one run: kurz (this checkout), optionally an
# older kurz (BENCH_OLD_REV, e.g. the main before a change), and bench/reference.rs,
# a bare hyper server answering 302s from a HashMap (the speed of light for a
# redirect here). What it measures and how: bench/compare.py's header and
# bench/README.md. Every server binds 127.0.0.1; every load run is bounded in time.
#
# Usage: bash bench/run.sh
# Knobs (environment):
#   BENCH_OLD_REV=<git revision>   also build and measure that revision's kurz
#   BENCH_PG=1                     also measure creates under load on PostgreSQL
#   BENCH_LINKS=100000 BENCH_ROUNDS=3 BENCH_WARM=15 BENCH_SECONDS=10
#   BENCH_FIXED_RATE=10000 BENCH_FIXED_SETTLE=30 BENCH_FIXED_SECONDS=30 BENCH_COLD=5
#   BENCH_SKIP_BUILD=1             reuse target/release
# Needs: wrk (apt, installed if missing as root), oha (`cargo install oha --locked`,
# found on PATH or in /work/tools/bin), python3. Results: bench/results/<date>/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bench/results/$(date -u +%Y-%m-%d-%H%M)
say() { printf '== %s\n' "$*" >&2; }

command -v wrk >/dev/null || {
    [[ $(id -u) -eq 0 ]] || { echo "bench: wrk is required (apt-get install wrk)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}
OHA=$(command -v oha || true)
[[ -n $OHA ]] || OHA=$(ls /work/tools/bin/oha 2>/dev/null || true)
[[ -n $OHA ]] || { echo "bench: oha is required: cargo install oha --locked" >&2; exit 1; }

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    say "cargo build --release (kurz + bench_reference)"
    (cd "$ROOT" && cargo build --release --bin kurz --example bench_reference)
fi
args=(--kurz "$ROOT/target/release/kurz" --reference "$ROOT/target/release/examples/bench_reference"
      --oha "$OHA" --out "$OUT"
      --new-label "$(git -C "$ROOT" describe --always --dirty)")
if [[ -n ${BENCH_OLD_REV:-} ]]; then
    old_tree=$ROOT/target/bench-old-tree
    old_target=$ROOT/target/bench-old
    if [[ ! -x $old_target/release/kurz-$BENCH_OLD_REV ]]; then
        say "building kurz at $BENCH_OLD_REV (its own worktree and target dir)"
        git -C "$ROOT" worktree remove --force "$old_tree" 2>/dev/null || true
        git -C "$ROOT" worktree add --detach "$old_tree" "$BENCH_OLD_REV" >/dev/null
        (cd "$old_tree" && CARGO_TARGET_DIR=$old_target cargo build --release --bin kurz)
        cp "$old_target/release/kurz" "$old_target/release/kurz-$BENCH_OLD_REV"
        git -C "$ROOT" worktree remove --force "$old_tree"
    fi
    args+=(--old "$old_target/release/kurz-$BENCH_OLD_REV" --old-label "$BENCH_OLD_REV")
fi
if [[ ${BENCH_PG:-0} == 1 ]]; then
    source "$ROOT/scripts/services.sh"
    trap services_stop EXIT
    services_install
    services_start_postgres
    args+=(--pg "$KURZ_TEST_PG")
fi
args+=(--links "${BENCH_LINKS:-100000}" --rounds "${BENCH_ROUNDS:-3}" --warm "${BENCH_WARM:-15}"
       --seconds "${BENCH_SECONDS:-10}" --fixed-rate "${BENCH_FIXED_RATE:-10000}"
       --fixed-settle "${BENCH_FIXED_SETTLE:-30}" --fixed-seconds "${BENCH_FIXED_SECONDS:-30}" --cold "${BENCH_COLD:-5}")
timeout --foreground 3600 python3 "$ROOT/bench/compare.py" "${args[@]}"
say "results in $OUT"
