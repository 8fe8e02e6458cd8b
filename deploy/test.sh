#!/usr/bin/env bash
# The deployment test: traffic through HAProxy while each kurz instance in turn is
# restarted (SIGTERM, drain, start again). Passes only if every request succeeded:
# HAProxy's health checks and retries must hide the restarts completely.
#
#   bash deploy/test.sh        (DEPLOY_KURZ=path/to/kurz to use another binary)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/run.sh" --lib
trap deploy_stop EXIT
deploy_start

TRAFFIC_OUT=$SERVICES_TMP/traffic.json
python3 "$HERE/traffic.py" "http://127.0.0.1:$DEPLOY_PORT" "$DEPLOY_ADMIN_KEY" 14 "$TRAFFIC_OUT" &
TRAFFIC_PID=$!
sleep 3
for n in 1 2; do
    deploy_log "restarting kurz$n under traffic"
    deploy_stop_kurz "$n"
    sleep 1
    deploy_start_kurz "$n"
    sleep 2
done
wait "$TRAFFIC_PID"
python3 - "$TRAFFIC_OUT" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"deploy test: {r['ok']:,} requests succeeded, {r['failed']} failed "
      f"({r['redirects']:,} redirects, {r['creates']:,} creates, both instances restarted)")
if r["failed"] or r["ok"] == 0:
    print("failures:", r["examples"])
    sys.exit(1)
PY
