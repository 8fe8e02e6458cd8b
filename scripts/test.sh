#!/usr/bin/env bash
# Runs kurz's whole test suite: unit and property tests, the store conformance suite,
# and the HTTP integration suite (each test starts a real server on a random loopback
# port with its own SQLite database).
#
# Works on a fresh Debian machine with only the Rust toolchain: SQLite is compiled in,
# so nothing else needs installing yet. (The PostgreSQL and Redis suites of the
# production-backends issue will start throwaway servers from here.)
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo nextest --version >/dev/null 2>&1; then
    # Retries stay off: a flaky test is a bug to fix, not to hide.
    cargo nextest run --locked --no-fail-fast "$@"
else
    cargo test --locked --no-fail-fast "$@"
fi
