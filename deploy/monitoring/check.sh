#!/usr/bin/env bash
# Static checks of deploy/monitoring (no server is started; well under a minute):
#   1. promtool check rules, and the promtool unit tests in tests/ (every alert fires on
#      series that breach it and stays silent on series that do not);
#   2. the Alertmanager template renders (render-alertmanager.sh), amtool accepts it, and
#      amtool routes critical → pager, warning → chat;
#   3. validate.py: dashboards valid against grafana-foundation-sdk's dashboard models and
#      identical to what grafana/generate.py builds, provisioning files, every alert's
#      labels/annotations/runbook anchor, and unit tests covering every alert both ways.
# Installs prometheus, prometheus-alertmanager, gettext-base (apt) and a venv under
# target/ if missing. Exits non-zero on any failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$MONITORING_DIR"

monitoring_install_tools
monitoring_venv

status=0
step() { printf '== %s\n' "$*" >&2; }
bad() { printf 'FAILED: %s\n' "$*" >&2; status=1; }

step "promtool check rules"
promtool check rules rules/kurz.rules.yml || bad "promtool check rules"

step "promtool test rules (tests/*.yml)"
promtool test rules tests/*.yml || bad "promtool test rules"

step "Alertmanager config: render, amtool check-config, routing"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if KURZ_PAGER_WEBHOOK_URL=http://127.0.0.1:9/pager KURZ_CHAT_WEBHOOK_URL=http://127.0.0.1:9/chat \
    bash render-alertmanager.sh "$tmp/alertmanager.yml"; then
    amtool check-config "$tmp/alertmanager.yml" || bad "amtool check-config"
    route() {
        local want=$1
        shift
        amtool config routes test --config.file="$tmp/alertmanager.yml" --verify.receivers="$want" "$@" \
            >/dev/null 2>&1 || bad "amtool: $* should go to $want"
    }
    route pager severity=critical alertname=KurzStoreUnavailable
    route chat severity=warning alertname=KurzErrorRate
    route chat alertname=SomethingWithoutSeverity
    ((status == 0)) && echo "routes: critical → pager, warning → chat, unlabelled → chat"
else
    bad "render-alertmanager.sh"
fi

step "dashboards, provisioning, alert annotations and test coverage (validate.py)"
"$MONITORING_PYTHON" validate.py || bad "validate.py"

if ((status == 0)); then
    echo "deploy/monitoring/check.sh: all checks passed"
else
    echo "deploy/monitoring/check.sh: FAILED" >&2
fi
exit $status
