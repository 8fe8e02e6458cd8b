#!/usr/bin/env bash
# Runs kurz's whole test suite, including the tests against a real PostgreSQL (a
# primary and one streaming replica) and a real Redis.
#
# On a fresh Debian machine it installs PostgreSQL and redis-server if they are
# missing (as root: apt-get), starts throwaway instances on free loopback ports in a
# temporary directory (scripts/services.sh), runs the tests, then stops exactly what
# it started. The Redis Cluster of the cluster test is started by that test.
#
#   1. unit, property and SQLite tests; the store conformance suite on SQLite and
#      PostgreSQL; the multi-instance, replica, cluster and outage tests;
#   2. the HTTP integration suite again, on PostgreSQL + Redis (KURZ_TEST_BACKEND);
#   3. deploy/test.sh: HAProxy in front of two instances, each restarted under traffic;
#   4. tests/browser: the web interface in headless Chromium (Playwright);
#   5. tests/fuzz: Schemathesis against a live kurz, from its own OpenAPI document.
#
# Tests that need these servers are #[ignore]d for a plain `cargo test`; this script
# runs them too (nextest --run-ignored all, cargo test --include-ignored), so a full
# run skips none, and nextest's summary says how many ran.
#
# Extra arguments go to the test runner (e.g. a test name filter) and skip steps 3-5.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
trap services_stop EXIT

run_tests() {
    if cargo nextest --version >/dev/null 2>&1; then
        # Retries stay off: a flaky test is a bug to fix, not to hide.
        cargo nextest run --locked --no-fail-fast --run-ignored all "$@"
    else
        cargo test --locked --no-fail-fast "$@" -- --include-ignored
    fi
}

services_install
services_start_postgres replica
services_start_redis
services_install_pytools
services_start_s3

status=0
printf '== %s\n' "tests (SQLite, PostgreSQL conformance, instances, replica, cluster, outages)" >&2
run_tests "$@" || status=1
printf '== %s\n' "the HTTP integration suite again, on PostgreSQL + Redis" >&2
KURZ_TEST_BACKEND=postgres run_tests --test api "$@" || status=1
if [[ $# -eq 0 ]]; then
    printf '== %s\n' "the deployment test: HAProxy + 2 instances, each restarted under traffic" >&2
    cargo build --locked --bin kurz
    DEPLOY_KURZ="${CARGO_TARGET_DIR:-target}/debug/kurz" timeout --kill-after=10 300 bash deploy/test.sh || status=1
    # API fuzzing (issue 23): Schemathesis from kurz's own OpenAPI document, every
    # check and phase, 120 s of cases; any failure or server error fails the suite.
    printf '== %s\n' "schema-driven API fuzzing (tests/fuzz, Schemathesis)" >&2
    KURZ_BIN="${CARGO_TARGET_DIR:-target}/debug/kurz" timeout --kill-after=10 600 bash tests/fuzz/run.sh || status=1
    printf '== %s\n' "the web interface in a real browser (tests/browser)" >&2
    KURZ_BIN="${CARGO_TARGET_DIR:-target}/debug/kurz" timeout --kill-after=10 900 bash tests/browser/run.sh || status=1
fi
exit $status
