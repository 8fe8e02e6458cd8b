#!/usr/bin/env python3
"""Load kurz click events into an in-process ClickHouse (chdb) and print kurz-style stats.

    python3 check_with_chdb.py EVENTS.jsonl [--dedupe]

EVENTS.jsonl holds one click event per line, exactly as kurz produces them to its
Kafka topic. The script creates a throwaway chdb session, runs schema.sql, inserts the
lines into kurz_clicks (so kurz_clicks_hourly_mv fills the hourly rollup, as in
production), runs the stats.sql queries for every short code over all time, and
prints one JSON object:

    {"<code>": {"total_clicks": n, "bots": n, "unique_visitors": n,
                "countries": {"US": n, ...}, "referrers": {...}, "devices": {...},
                "browsers": {...}, "operating_systems": {...}}, ...}

--dedupe drops exact duplicate lines first: kurz delivers at least once, so a
message can appear twice. Needs only the standard library and chdb (pip install chdb).
"""

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# stats.sql's range over all time: DateTime runs from 1970 to 2106-02-07.
ALL_TIME = {"start": "1970-01-01 00:00:00", "end": "2106-01-01 00:00:00"}
BREAKDOWNS = ("countries", "referrers", "devices", "browsers", "operating_systems")
DEVICES = ("mobile", "desktop", "tablet", "other")  # kurz always reports all four


class CheckError(Exception):
    pass


def read_events(path, dedupe):
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except OSError as e:
        raise CheckError(f"cannot read {path}: {e}") from e
    lines = [line for line in lines if line]
    if dedupe:
        lines = list(dict.fromkeys(lines))  # first occurrence of each, order kept
    return lines


def named_queries(sql):
    """stats.sql's queries by the name on their `-- name: x` line."""
    parts = re.split(r"^-- name: (\w+)\s*$", sql, flags=re.MULTILINE)
    return {name: body.strip().rstrip(";") for name, body in zip(parts[1::2], parts[2::2])}


def rows(sess, sql, params=None):
    try:
        out = sess.query(sql, "JSONEachRow", params=params or {})
    except Exception as e:  # chdb raises its own error type, with ClickHouse's message
        raise CheckError(f"ClickHouse: {e}") from e
    return [json.loads(line) for line in str(out).splitlines() if line.strip()]


def load(sess, lines):
    rows(sess, "SET session_timezone = 'UTC'")  # stats.sql's DateTime parameters are UTC
    rows(sess, (HERE / "schema.sql").read_text())
    if lines:
        # best_effort: the server's default DateTime parser rejects RFC 3339's 'T'/'Z'.
        # Unknown fields are an error: a new field in kurz's events needs a schema change.
        rows(
            sess,
            "INSERT INTO kurz_clicks SETTINGS date_time_input_format = 'best_effort', "
            "input_format_skip_unknown_fields = 0 FORMAT JSONEachRow\n" + "\n".join(lines),
        )
    # Every line is one row, and the view rolled every row up.
    raw = int(rows(sess, "SELECT count() AS n FROM kurz_clicks")[0]["n"])
    rolled = int(rows(sess, "SELECT sum(clicks) AS n FROM kurz_clicks_hourly")[0]["n"])
    if raw != len(lines) or rolled != raw:
        raise CheckError(f"{len(lines)} lines, {raw} rows in kurz_clicks, {rolled} clicks in the rollup")


def stats(sess, queries, code):
    params = {"code": code, **ALL_TIME}
    totals = rows(sess, queries["totals"], params)[0]
    out = {k: int(totals[k]) for k in ("total_clicks", "bots", "unique_visitors")}
    for name in BREAKDOWNS:
        counts = {d: 0 for d in DEVICES} if name == "devices" else {}
        for r in rows(sess, queries[name], params):
            counts[r["value"]] = int(r["clicks"])
        out[name] = counts
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", help="JSON lines, one kurz click event per line")
    ap.add_argument("--dedupe", action="store_true", help="drop exact duplicate lines first")
    args = ap.parse_args()
    try:
        from chdb import session as chdb_session
    except ImportError:
        sys.exit("check_with_chdb: chdb is not installed (pip install chdb)")

    try:
        lines = read_events(args.events, args.dedupe)
        queries = named_queries((HERE / "stats.sql").read_text())
        missing = {"totals", *BREAKDOWNS} - queries.keys()
        if missing:
            raise CheckError(f"stats.sql lacks queries: {', '.join(sorted(missing))}")
        with tempfile.TemporaryDirectory(prefix="kurz-chdb-") as tmp:
            sess = chdb_session.Session(tmp)
            try:
                load(sess, lines)
                codes = [r["short_code"] for r in rows(
                    sess, "SELECT DISTINCT short_code FROM kurz_clicks ORDER BY short_code")]
                result = {code: stats(sess, queries, code) for code in codes}
            finally:
                sess.close()
    except CheckError as e:
        sys.exit(f"check_with_chdb: {e}")
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
