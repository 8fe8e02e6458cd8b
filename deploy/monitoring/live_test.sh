#!/usr/bin/env bash
# The monitoring layer against real servers, all on loopback (about 1.5-2 minutes):
# PostgreSQL (a primary and a streaming replica) and Redis from scripts/services.sh,
# two kurz instances, Prometheus scraping them every second with rules/kurz.rules.yml
# loaded, Alertmanager with the rendered alertmanager.yml.tmpl, and a small webhook
# receiver standing in for the pager and the chat. live_test.py drives traffic, checks
# every dashboard and rule expression through Prometheus's HTTP API, stops PostgreSQL,
# checks the alerts reach the right receiver, and restores PostgreSQL.
#
#   KURZ_BIN=/path/to/kurz bash deploy/monitoring/live_test.sh
#
# KURZ_BIN defaults to target/debug/kurz (built with cargo if missing). Installs
# postgresql, redis-server, prometheus, prometheus-alertmanager and gettext-base (apt)
# and a venv under target/ if missing. MONITORING_STRICT=1 also fails when a catalog
# metric the rules or dashboards use is missing from /metrics. Exits non-zero on failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MONITORING_ROOT"
source scripts/services.sh
trap services_stop EXIT

if [[ -z ${KURZ_BIN:-} ]]; then
    KURZ_BIN=${CARGO_TARGET_DIR:-target}/debug/kurz
    [[ -x $KURZ_BIN ]] || cargo build --locked --bin kurz
fi
[[ -x $KURZ_BIN ]] || { echo "KURZ_BIN=$KURZ_BIN is not an executable" >&2; exit 1; }
KURZ_BIN=$(cd "$(dirname "$KURZ_BIN")" && pwd)/$(basename "$KURZ_BIN")

services_install
monitoring_install_tools
monitoring_venv
services_start_postgres replica
services_start_redis

export KURZ_BIN SERVICES_TMP SERVICES_PGBIN
timeout --kill-after=15 540 "$MONITORING_PYTHON" "$MONITORING_DIR/live_test.py"
