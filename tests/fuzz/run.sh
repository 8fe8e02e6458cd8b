#!/usr/bin/env bash
# Schema-driven API fuzzing of kurz: Schemathesis reads the server's own OpenAPI
# document (/api/v1/openapi.json) and attacks every operation in it.
#
#   bash tests/fuzz/run.sh [extra schemathesis run options]
#
# It installs what is missing: python3-venv (apt, as root) and a venv in
# target/fuzz-venv with the hash-pinned packages of tests/fuzz/requirements.txt.
# Then it starts KURZ_BIN (default target/debug/kurz) on a free loopback port with a
# throwaway SQLite database and spool, seeds it (tests/fuzz/seed.py), runs
# schemathesis with --checks all and the examples, coverage, fuzzing and stateful
# phases (settings in tests/fuzz/schemathesis.toml), prints a summary, and stops kurz.
# Reports (JSON, JUnit) go to target/fuzz-report/. Exits non-zero on any failure, on
# any error of the run, and when nothing was tested.
#
#   KURZ_FUZZ_MAX_TIME      seconds of fuzzing (default 120); fuzzing and stateful
#                           phases repeat until it is spent
#   KURZ_FUZZ_MAX_EXAMPLES  test cases per operation and pass (default 50)
#   KURZ_FUZZ_SEED          the generator's seed (default 1). With a time budget the
#                           number of passes depends on speed, so two runs with one
#                           seed may still differ
#   KURZ_FUZZ_SCHEMA        the document to test from, a URL or a file (default: the
#                           server's own), e.g. a draft of a corrected document
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

VENV=$ROOT/target/fuzz-venv
REQS=$ROOT/tests/fuzz/requirements.txt
REPORT_DIR=$ROOT/target/fuzz-report
MAX_TIME=${KURZ_FUZZ_MAX_TIME:-120}
MAX_EXAMPLES=${KURZ_FUZZ_MAX_EXAMPLES:-50}
SEED=${KURZ_FUZZ_SEED:-1}

log() { printf '== %s\n' "$*" >&2; }
source "$ROOT/scripts/kurz_process.sh"

# 1. The venv, rebuilt whenever requirements.txt changes.
stamp=$(sha256sum "$REQS" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/schemathesis || $(cat "$VENV/.requirements.sha256" 2>/dev/null) != "$stamp" ]]; then
    log "installing schemathesis (tests/fuzz/requirements.txt) into target/fuzz-venv"
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        if [[ $(id -u) -ne 0 ]]; then
            echo "need python3-venv (or root to install it)" >&2
            exit 1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip >/dev/null
    fi
    rm -rf "$VENV"
    mkdir -p "$ROOT/target"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes --only-binary=:all: -r "$REQS"
    echo "$stamp" >"$VENV/.requirements.sha256"
fi

# 2. The server under test, on a free port with throwaway state.
KURZ_BIN=${KURZ_BIN:-$ROOT/target/debug/kurz}
if [[ ! -x $KURZ_BIN ]]; then
    echo "no kurz binary at $KURZ_BIN: build it (cargo build --bin kurz) or set KURZ_BIN" >&2
    exit 1
fi
KURZ_PID=
TMP=$(mktemp -d /tmp/kurz-fuzz.XXXXXX)
cleanup() {
    if [[ -n $KURZ_PID ]]; then
        kill "$KURZ_PID" 2>/dev/null || true
        wait "$KURZ_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$port
secret() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }
export KURZ_FUZZ_ADMIN_KEY=kurz_fuzz_$(secret)
log "starting $KURZ_BIN on $BASE"
# Every API limit is far above what the fuzzer sends (1 worker for MAX_TIME seconds),
# so no answer is a 429 and the limiter code still runs on every request. That holds
# for failed authentication too: the fuzzer sends wrong credentials on purpose, and
# each must be answered 401, not the 429 that stops a guesser.
KURZ_LISTEN=127.0.0.1:$port \
KURZ_PUBLIC_BASE_URL=$BASE \
KURZ_DATABASE_URL=sqlite://$TMP/kurz.db \
KURZ_ANALYTICS_SPOOL_DIR=$TMP/spool \
KURZ_ANALYTICS_FLUSH_MS=200 \
KURZ_ANALYTICS_STORE_HOLD_MS=200 \
KURZ_ADMIN_API_KEY=$KURZ_FUZZ_ADMIN_KEY \
KURZ_JWT_SECRET=$(secret) \
KURZ_RATE_LIMIT_ANONYMOUS=1000000 \
KURZ_RATE_LIMIT_FREE=1000000 \
KURZ_RATE_LIMIT_PRO=1000000 \
KURZ_RATE_LIMIT_ENTERPRISE=1000000 \
KURZ_RATE_LIMIT_AUTH_FAILURES=1000000 \
KURZ_REDIRECT_RATE_LIMIT=0 \
KURZ_LOG_FORMAT=json \
KURZ_LOG=warn \
    "$KURZ_BIN" serve >"$TMP/kurz.log" 2>&1 &
KURZ_PID=$!
kurz_wait_healthy "$BASE" "$KURZ_PID" "$TMP/kurz.log"

# 3. The links the fuzzer works on (their aliases are in schemathesis.toml).
"$VENV/bin/python" "$ROOT/tests/fuzz/seed.py" "$BASE" "$KURZ_FUZZ_ADMIN_KEY" >&2

# 4. The fuzzer. It runs in $TMP so that its caches (.hypothesis, .schemathesis) go
# with it; the hard timeout only guards against a hang, MAX_TIME bounds the run.
# hooks.py drops the failures where the contract deliberately differs from what
# schemathesis expects. One worker: with two, Hypothesis parses lambdas' source in two
# threads at once, which CPython 3.11's ast module does not survive ("AST constructor
# recursion depth mismatch", see CPython gh-106905): the run ends in an error.
rm -rf "$REPORT_DIR"
SCHEMA=${KURZ_FUZZ_SCHEMA:-$BASE/api/v1/openapi.json}
[[ $SCHEMA == http* ]] || SCHEMA=$(realpath "$SCHEMA")
log "schemathesis: ${MAX_TIME}s, seed $SEED, up to $MAX_EXAMPLES cases per operation and pass"
status=0
(cd "$TMP" && SCHEMATHESIS_HOOKS=$ROOT/tests/fuzz/hooks.py timeout --kill-after=10 $((MAX_TIME + 120)) "$VENV/bin/schemathesis" \
    --config-file "$ROOT/tests/fuzz/schemathesis.toml" --no-color \
    run "$SCHEMA" --url "$BASE" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" --seed "$SEED" --max-time "$MAX_TIME" \
    --workers 1 \
    --generation-database none \
    --report json,junit --report-dir "$REPORT_DIR" \
    --report-json-path "$REPORT_DIR/report.json" --report-junit-path "$REPORT_DIR/junit.xml" \
    "$@") || status=$?

if ! kill -0 "$KURZ_PID" 2>/dev/null; then
    log "kurz died during the run"
    tail -n 50 "$TMP/kurz.log" >&2
    status=1
fi

# 5. The summary, from the JSON report; no report or nothing tested is a failure.
"$VENV/bin/python" - "$REPORT_DIR/report.json" "$status" <<'PY' || status=1
import json, sys
path, status = sys.argv[1], int(sys.argv[2])
try:
    r = json.load(open(path))
except OSError:
    sys.exit(f"fuzz: no report at {path} (schemathesis exited {status}): nothing counts as passed")
ops, cases = r["operations"], r["test_cases"]
failures = sum(f["count"] for f in r["failures"])
print("\n== fuzz summary")
print(f"operations: {ops['tested']} tested of {ops['total']} ({ops['errored']} errored, {ops['skipped']} skipped)")
print(f"test cases: {cases['generated']} generated, {cases['with_failures']} failing "
      f"({cases['unique_failures']} unique), stop: {r['stop_reason']}, {r['running_time']:.0f}s")
print(f"dropped by tests/fuzz/hooks.py (the contract's own answers): {r['filtered']}")
for f in sorted(r["failures"], key=lambda f: -f["count"]):
    print(f"  {f['code']} {f['title']}: {f['count']} ({', '.join(f['operations'])})")
for e in r["errors"]:
    print(f"  error: {json.dumps(e)[:300]}")
print(f"fuzz: {ops['tested']} operations, {cases['generated']} test cases, "
      f"{failures} failures, {len(r['errors'])} errors")
if ops["tested"] == 0 or cases["generated"] == 0:
    sys.exit("fuzz: nothing was tested")
if failures or r["errors"]:
    sys.exit(1)
PY
exit $status
