# Shared by check.sh and live_test.sh (source it): installs what the monitoring checks
# need on a fresh Debian machine, pinned.
#
#   monitoring_install_tools  promtool/prometheus (apt prometheus), amtool/alertmanager
#                             (apt prometheus-alertmanager), envsubst (apt gettext-base)
#   monitoring_venv           target/monitoring-venv with the pinned Python packages;
#                             exports MONITORING_PYTHON

MONITORING_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MONITORING_ROOT=$(cd "$MONITORING_DIR/../.." && pwd)
# Pinned. grafana-foundation-sdk versions carry an epoch (a build stamp) before the
# Grafana version they model: this is the Grafana 11.6 schema.
MONITORING_PY_PACKAGES=('grafana-foundation-sdk==1769699379!11.6.0' 'PyYAML==6.0.3')

_monitoring_log() { printf '== %s\n' "$*" >&2; }

_monitoring_apt() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "need root to install $* (or install them yourself)" >&2
        return 1
    fi
    _monitoring_log "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

monitoring_install_tools() {
    local missing=()
    command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
    command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
    command -v envsubst >/dev/null || missing+=(gettext-base)
    ((${#missing[@]} == 0)) || _monitoring_apt "${missing[@]}"
}

monitoring_venv() {
    local venv=$MONITORING_ROOT/target/monitoring-venv
    local want
    want=$(printf '%s\n' "${MONITORING_PY_PACKAGES[@]}")
    if [[ ! -x $venv/bin/python || $(cat "$venv/.kurz-pins" 2>/dev/null) != "$want" ]]; then
        if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
            _monitoring_apt python3 python3-venv python3-pip
        fi
        _monitoring_log "installing ${MONITORING_PY_PACKAGES[*]} into target/monitoring-venv"
        rm -rf "$venv"
        mkdir -p "$MONITORING_ROOT/target"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "${MONITORING_PY_PACKAGES[@]}"
        printf '%s\n' "$want" >"$venv/.kurz-pins"
    fi
    export MONITORING_PYTHON=$venv/bin/python
}
