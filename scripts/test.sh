#!/usr/bin/env bash
# Runs kurz's whole test suite, including the tests against a real PostgreSQL (a
# primary and one streaming replica) and a real Redis.
#
# On a fresh Debian machine it installs PostgreSQL and redis-server if they are
# missing (as root: apt-get), starts throwaway instances on free loopback ports in a
# temporary directory (scripts/services.sh), runs the tests, then stops exactly what
# it started. The Redis Cluster of the cluster test, and the PostgreSQL primaries and
# replicas the failover tests kill and promote (tests/production/pg_servers.rs), are
# started by those tests.
#
#   1. unit, property and SQLite tests; the store conformance suite on SQLite and
#      PostgreSQL; the multi-instance, replica, cluster, outage, failover (C-01, C-02,
#      C-03, C-05) and crashed-instance tests;
#   2. the HTTP integration suite again, on PostgreSQL + Redis (KURZ_TEST_BACKEND);
#   3. deploy/test.sh: HAProxy in front of two instances, each restarted under traffic;
#   4. tests/browser: the web interface in headless Chromium (Playwright);
#   5. deploy/check.sh: the Containerfile, the Kubernetes overlays and the compose file
#      checked by the tools that read them, and the image built offline and run;
#   6. deploy/backup/test.sh: PostgreSQL (dump, base backup + WAL) and SQLite
#      (`kurz backup`/`kurz restore`) backups taken under write load, restored, checked;
#   7. scripts/deny.sh: cargo deny check licenses bans sources (deny.toml);
#   8. deploy/monitoring: promtool rule tests, amtool, dashboard schemas, and the
#      live test (Prometheus + Alertmanager scraping two instances, an outage paged);
#   9. tests/fuzz: Schemathesis against a live kurz, from its own OpenAPI document.
#
# Tests that need these servers are #[ignore]d for a plain `cargo test`; this script
# runs them too (nextest --run-ignored all, cargo test --include-ignored), so a full
# run skips none, and nextest's summary says how many ran.
# The TLS tests get a PostgreSQL and a Redis that speak TLS only, with a test CA.
#
# Extra arguments go to the test runner (e.g. a test name filter) and skip steps 3-9.
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
services_start_postgres_tls
services_start_redis_tls
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
    kurz_bin=$(realpath "${CARGO_TARGET_DIR:-target}/debug/kurz")
    DEPLOY_KURZ="$kurz_bin" timeout --kill-after=10 300 bash deploy/test.sh || status=1
    # API fuzzing (issue 23): Schemathesis from kurz's own OpenAPI document, every
    # check and phase, 120 s of cases; any failure or server error fails the suite.
    printf '== %s\n' "schema-driven API fuzzing (tests/fuzz, Schemathesis)" >&2
    KURZ_BIN="$kurz_bin" timeout --kill-after=10 600 bash tests/fuzz/run.sh || status=1
    printf '== %s\n' "the web interface in a real browser (tests/browser)" >&2
    KURZ_BIN="$kurz_bin" timeout --kill-after=10 900 bash tests/browser/run.sh || status=1
    printf '== %s\n' "the deployment files and the container image (deploy/check.sh)" >&2
    KURZ_BIN="$kurz_bin" timeout --kill-after=10 1200 bash deploy/check.sh || status=1
    printf '== %s\n' "backups under write load, restored and checked (deploy/backup/test.sh)" >&2
    KURZ_BIN="$kurz_bin" timeout --kill-after=10 600 bash deploy/backup/test.sh || status=1
    printf '== %s\n' "supply chain: cargo deny check licenses bans sources (scripts/deny.sh)" >&2
    timeout --kill-after=10 1800 bash scripts/deny.sh || status=1
    printf '== %s\n' "monitoring rules, Alertmanager and dashboards (deploy/monitoring/check.sh)" >&2
    timeout --kill-after=10 600 bash deploy/monitoring/check.sh || status=1
    printf '== %s\n' "monitoring live: Prometheus + Alertmanager on two instances (deploy/monitoring/live_test.sh)" >&2
    KURZ_BIN="$kurz_bin" timeout --kill-after=10 900 bash deploy/monitoring/live_test.sh || status=1
fi
exit $status
