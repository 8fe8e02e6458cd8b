#!/usr/bin/env python3
"""Write load and the restore check of deploy/backup/test.sh. Standard library only.

  load BASE KEY OUT --clients N --stop-file F --max-seconds S
      N threads, each on one keep-alive connection, POST /api/v1/urls with the admin
      key until F exists (or S seconds pass). Every 201 appends
      "<unix time the 201 was read>\t<code>\t<url>" to OUT, flushed at once; any
      other answer or a connection error is counted. Prints the counts at the end;
      exits 1 if anything but 201 came back.
  check BASE ACKS --backup-start T --backup-end T2 [--label L] [--point P] [--key K]
      One GET per acknowledged code against BASE (a kurz on the restored store).
      Every code acknowledged before T must be a 302 to its URL. With --key, one
      create on the restored store must get a code that none of ACKS has (the key
      generator was moved on). Prints the counts; exits 1 if a check fails, or if
      fewer than --min-before creates were acknowledged before T.
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse


def connect(base):
    u = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def cmd_load(args):
    out = open(args.out, "a", buffering=1)
    lock = threading.Lock()
    counts = {"created": 0, "other": 0, "errors": 0}
    deadline = time.monotonic() + args.max_seconds
    body_errors = []

    def client(n):
        conn = connect(args.base)
        i = 0
        while not os.path.exists(args.stop_file) and time.monotonic() < deadline:
            url = f"https://example.com/backup-test/{n}/{i}"
            i += 1
            body = json.dumps({"original_url": url})
            try:
                conn.request("POST", "/api/v1/urls", body=body,
                             headers={"content-type": "application/json", "x-api-key": args.key})
                resp = conn.getresponse()
                payload = resp.read()
                acked = time.time()
            except (OSError, http.client.HTTPException) as err:
                with lock:
                    counts["errors"] += 1
                    body_errors.append(f"client {n}: {err}")
                conn.close()
                conn = connect(args.base)
                time.sleep(0.05)
                continue
            with lock:
                if resp.status == 201:
                    created = json.loads(payload)
                    out.write(f"{acked:.6f}\t{created['short_code']}\t{created['original_url']}\n")
                    counts["created"] += 1
                else:
                    counts["other"] += 1
                    body_errors.append(f"client {n}: HTTP {resp.status} {payload[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()
    print(f"  load: {counts['created']} creates acknowledged (201), {counts['other']} other answers, "
          f"{counts['errors']} connection errors", file=sys.stderr)
    for line in body_errors[:5]:
        print(f"    {line}", file=sys.stderr)
    sys.exit(0 if counts["other"] == 0 and counts["errors"] == 0 else 1)


def cmd_check(args):
    acks = []
    with open(args.acks) as f:
        for line in f:
            t, code, url = line.rstrip("\n").split("\t")
            acks.append((float(t), code, url))
    conn = connect(args.base)
    before = {"total": 0, "ok": 0}
    during = {"total": 0, "present": 0}
    after = {"total": 0, "present": 0}
    missing = []
    for t, code, url in acks:
        conn.request("GET", f"/{code}", headers={"user-agent": "kurz-backup-test"})
        resp = conn.getresponse()
        resp.read()
        ok = resp.status == 302 and resp.getheader("location") == url
        if t < args.backup_start:
            before["total"] += 1
            if ok:
                before["ok"] += 1
            else:
                missing.append(f"{code} -> HTTP {resp.status} {resp.getheader('location')!r}, want 302 {url}")
        elif t <= args.backup_end:
            during["total"] += 1
            during["present"] += ok
        else:
            after["total"] += 1
            after["present"] += ok
    conn.close()
    label = args.label
    print(f"  {label}: acknowledged before {args.point}: {before['total']}, "
          f"resolve on the restored store (302 to their URL): {before['ok']}", file=sys.stderr)
    if args.backup_end > args.backup_start:
        print(f"  {label}: acknowledged while the backup ran: {during['total']} "
              f"(restored: {during['present']}); after it: {after['total']} "
              f"(restored: {after['present']})", file=sys.stderr)
    else:
        print(f"  {label}: acknowledged after {args.point}: {after['total']} "
              f"(restored: {after['present']})", file=sys.stderr)
    reissued = False
    if args.key:
        codes = {code for _, code, _ in acks}
        conn = connect(args.base)
        conn.request("POST", "/api/v1/urls", body=json.dumps({"original_url": "https://example.com/after-restore"}),
                     headers={"content-type": "application/json", "x-api-key": args.key})
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        if resp.status != 201:
            sys.exit(f"  {label}: a create on the restored store got HTTP {resp.status}: {payload[:200]!r}")
        code = json.loads(payload)["short_code"]
        reissued = code in codes
        print(f"  {label}: a new create on the restored store got code {code}: "
              f"{'ALREADY HANDED OUT before the restore' if reissued else 'not one handed out before'}",
              file=sys.stderr)
    for line in missing[:10]:
        print(f"    missing: {line}", file=sys.stderr)
    if before["total"] < args.min_before:
        sys.exit(f"  {label}: only {before['total']} creates were acknowledged before the backup "
                 f"started (want at least {args.min_before}): the test proved nothing")
    sys.exit(0 if not missing and not reissued else 1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("base")
    p.add_argument("key")
    p.add_argument("out")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--max-seconds", type=float, default=120)
    p.set_defaults(func=cmd_load)
    p = sub.add_parser("check")
    p.add_argument("base")
    p.add_argument("acks")
    p.add_argument("--backup-start", type=float, required=True)
    p.add_argument("--backup-end", type=float, required=True)
    p.add_argument("--min-before", type=int, default=100)
    p.add_argument("--label", default="restore")
    p.add_argument("--point", default="the backup started")
    p.add_argument("--key", default="")
    p.set_defaults(func=cmd_check)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
