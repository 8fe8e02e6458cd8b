#!/usr/bin/env bash
# Browser tests of kurz's web interface (/app/): Debian's Chromium, headless,
# driven by Python Playwright (tests/browser/test_ui.py).
#
#   bash tests/browser/run.sh [pytest args, e.g. -k bulk]
#
# It installs what is missing: chromium (apt, as root), a venv in
# target/browser-venv with the pinned packages of requirements.txt (Playwright is
# never allowed to download a browser), and axe-core (npm, pinned) in
# target/browser-npm. Then it tests the kurz at KURZ_UI_URL (admin key in
# KURZ_UI_ADMIN_KEY) or, without it, starts KURZ_BIN (default target/debug/kurz)
# on a free loopback port with a throwaway SQLite database, and stops it after.
# Screenshots of every page (desktop 1280x800, phone 390x844) go to
# target/screenshots/. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

AXE_VERSION=4.14.1
VENV=$ROOT/target/browser-venv
NPM_DIR=$ROOT/target/browser-npm
CHROMIUM=${KURZ_UI_CHROMIUM:-/usr/bin/chromium}

log() { printf '== %s\n' "$*" >&2; }
source "$ROOT/scripts/kurz_process.sh"

apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "need root to install $* (or install them yourself)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z ${_APT_UPDATED:-} ]]; then apt-get update -qq; _APT_UPDATED=1; fi
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. Chromium from Debian.
if [[ ! -x $CHROMIUM ]]; then
    log "installing chromium (apt)"
    apt_install chromium fonts-dejavu-core
fi

# 2. The Python venv with Playwright and pytest, pinned.
if ! "$VENV/bin/python" - "$ROOT/tests/browser/requirements.txt" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, want = line.split("==")
        assert version(name) == want, (name, version(name), want)
PY
then
    log "installing the browser test venv into target/browser-venv"
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3 python3-venv python3-pip
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$VENV/bin/pip" install -q --disable-pip-version-check \
        -r "$ROOT/tests/browser/requirements.txt"
fi

# 3. axe-core from npm, pinned.
AXE_JS=$NPM_DIR/axe-core/axe.min.js
if [[ ! -f $AXE_JS ]] || ! grep -q "\"version\": \"$AXE_VERSION\"" "$NPM_DIR/axe-core/package.json"; then
    log "fetching axe-core $AXE_VERSION (npm) into target/browser-npm"
    command -v npm >/dev/null || apt_install nodejs npm
    rm -rf "$NPM_DIR"
    mkdir -p "$NPM_DIR/axe-core"
    tgz=$(cd "$NPM_DIR" && npm pack --silent "axe-core@$AXE_VERSION")
    tar -xzf "$NPM_DIR/$tgz" -C "$NPM_DIR/axe-core" --strip-components=1
fi
export KURZ_UI_AXE_JS=$AXE_JS KURZ_UI_CHROMIUM=$CHROMIUM

# 4. The server under test.
KURZ_PID=
TMP=$(mktemp -d /tmp/kurz-browser.XXXXXX)
cleanup() {
    if [[ -n $KURZ_PID ]]; then
        kill "$KURZ_PID" 2>/dev/null || true
        wait "$KURZ_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

if [[ -n ${KURZ_UI_URL:-} ]]; then
    : "${KURZ_UI_ADMIN_KEY:?set KURZ_UI_ADMIN_KEY with KURZ_UI_URL}"
    log "testing the kurz at $KURZ_UI_URL"
else
    KURZ_BIN=${KURZ_BIN:-$ROOT/target/debug/kurz}
    if [[ ! -x $KURZ_BIN ]]; then
        echo "no kurz binary at $KURZ_BIN: build it (cargo build --bin kurz), or set KURZ_BIN or KURZ_UI_URL" >&2
        exit 1
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    export KURZ_UI_URL=http://127.0.0.1:$port
    export KURZ_UI_ADMIN_KEY=kurz_browser_test_$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    log "starting $KURZ_BIN on $KURZ_UI_URL"
    KURZ_LISTEN=127.0.0.1:$port \
    KURZ_DATABASE_URL=sqlite://$TMP/kurz.db \
    KURZ_ADMIN_API_KEY=$KURZ_UI_ADMIN_KEY \
    KURZ_PUBLIC_BASE_URL=$KURZ_UI_URL \
    KURZ_ANALYTICS_FLUSH_MS=200 \
    KURZ_ANALYTICS_STORE_HOLD_MS=200 \
    KURZ_ANALYTICS_SPOOL_DIR=$TMP/spool \
    KURZ_LOG_FORMAT=json \
        "$KURZ_BIN" serve >"$TMP/kurz.log" 2>&1 &
    KURZ_PID=$!
    kurz_wait_healthy "$KURZ_UI_URL" "$KURZ_PID" "$TMP/kurz.log"
fi

# 5. The tests. Exit code 5 (no test ran) counts as a failure.
rm -rf "$ROOT/target/screenshots"
status=0
(cd "$ROOT/tests/browser" && "$VENV/bin/python" -m pytest -p no:cacheprovider -rs -s -q test_ui.py "$@") || status=$?
if [[ $status -ne 0 && -n $KURZ_PID && -n ${TEST_LOG:-} ]]; then tail -n 50 "$TMP/kurz.log" >&2; fi
if [[ $status -eq 0 ]]; then
    log "screenshots in target/screenshots/"
fi
exit $status
