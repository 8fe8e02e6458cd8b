#!/usr/bin/env python3
"""Prints the table of a bench/run_k6.sh run from k6's summary JSON files.

Reads DIR/runs.tsv (scenario, k6 exit code, kurz RSS before and after, MiB) and
DIR/<scenario>.json (`k6 run --summary-export`). Exits 1 if a scenario crossed a
threshold, k6 failed, or a summary is missing. Standard library only.
"""

import argparse
import json
import pathlib
import sys


def fmt_count(n):
    return f"{int(n):,}"


def row(name, rc, rss_before, rss_after, path):
    if not path.exists():
        return [[name, "—", "—", "—", "—", "—", "—", f"**FAIL**: no summary (k6 exit {rc})"]], False
    metrics = json.loads(path.read_text())["metrics"]
    crossed = [
        f"{metric} {expr}"
        for metric, values in metrics.items()
        for expr, failed in values.get("thresholds", {}).items()
        if failed
    ]
    cells = []
    for kind in ("redirect", "create"):
        reqs = metrics.get(f"http_reqs{{name:{kind}}}")
        if not reqs:
            continue
        dur = metrics[f"http_req_duration{{name:{kind}}}"]
        failed = metrics.get(f"http_req_failed{{name:{kind}}}")
        errors = f"{failed['value'] * 100:.3f} %" if failed else "—"
        cells.append(
            (
                kind,
                fmt_count(reqs["count"]),
                f"{dur['med']:.2f} / {dur['p(99)']:.2f}",
                errors,
            )
        )
    dropped = fmt_count(metrics.get("dropped_iterations", {}).get("count", 0))
    ok = rc == "0" and not crossed
    if ok:
        verdict = "PASS"
    elif rc in ("0", "99"):
        verdict = "**FAIL**: " + "; ".join(crossed)
    else:
        verdict = f"**FAIL**: k6 exit {rc}"
    rss = f"{rss_before} → {rss_after}"
    rows = []
    for i, (kind, count, p50_p99, errors) in enumerate(cells):
        first = i == 0
        rows.append([name if first else "", kind, count, p50_p99, errors,
                     dropped if first else "", rss if first else "", verdict if first else ""])
    return rows or [[name, "—", "—", "—", "—", dropped, rss, verdict]], ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=pathlib.Path)
    for opt in ("--kurz", "--backend", "--links", "--smoke", "--k6", "--nproc", "--date"):
        ap.add_argument(opt, default="?")
    args = ap.parse_args()

    runs = [line.split("\t") for line in (args.dir / "runs.tsv").read_text().splitlines() if line]
    smoke = " — **smoke run: its latencies are not results**" if args.smoke == "1" else ""
    print(f"k6 scenarios — {args.date}{smoke}\n")
    print(f"- kurz: {args.kurz}; backend: {args.backend}; {args.links} links")
    print(f"- {args.k6}; nproc {args.nproc}, k6 on the same machine")
    print(f"- k6 summaries: {args.dir}/<scenario>.json\n")
    header = ["scenario", "requests of", "count", "p50 / p99, ms", "errors", "dropped", "kurz RSS MiB", "thresholds"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    all_ok = bool(runs)
    for name, rc, before, after in runs:
        rows, ok = row(name, rc, before, after, args.dir / f"{name}.json")
        all_ok &= ok
        for cells in rows:
            print("| " + " | ".join(cells) + " |")
    print()
    print("all scenarios passed their thresholds" if all_ok else "FAILED: see the thresholds column")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
