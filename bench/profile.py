#!/usr/bin/env python3
"""Where a cache-hit redirect's CPU goes: `perf record` of one server under the load of
bench/compare.py. A diagnostic beside bench/run.sh, not a target of its own.

    python3 bench/profile.py --binary target/release/kurz [--off] [--name new]
    python3 bench/profile.py --reference target/release/examples/bench_reference \\
        --binary target/release/kurz      # the reference, on the links kurz made

The server gets a fresh SQLite database with --links links (as in compare.py), is
warmed by wrk (64 connections, browser User-Agent mix) for --warm seconds, then
`perf record -F 999 -g` follows it for --seconds under the same saturating load.
Prints, and writes to --out: the share of samples per binary/kernel (`--sort dso`)
and the hottest symbols without children (`--sort sym`). Needs `perf` (apt
linux-perf) and permission to profile another process (root, or
kernel.perf_event_paranoid <= 1). Loopback only; every run is bounded in time.
"""

import argparse
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import compare  # noqa: E402  (Server, create_links, run_wrk)


def report(data, sort, limit):
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", sort,
                          "--percent-limit", str(limit), "-g", "none"],
                         capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if line.strip() and not line.startswith("#")) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True, help="kurz: the server profiled, or the links' maker")
    p.add_argument("--reference", help="profile this reference server instead, on kurz's links")
    p.add_argument("--off", action="store_true", help="kurz with KURZ_ANALYTICS=false")
    p.add_argument("--name", default="kurz")
    p.add_argument("--links", type=int, default=100_000)
    p.add_argument("--warm", type=int, default=15)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="kurz-profile-"))
    out = pathlib.Path(args.out or work)
    out.mkdir(parents=True, exist_ok=True)
    try:
        env = {"KURZ_ANALYTICS": "false"} if args.off else {}
        kurz = compare.Server(args.name, "kurz", args.binary, work, env)
        kurz.start()
        compare.log(f"{args.name}: creating {args.links:,} links")
        map_file = work / "map.tsv"
        compare.create_links(kurz, args.links, map_file)
        target = kurz
        if args.reference:
            target = compare.Server("reference", "reference", args.reference, work)
            target.codes = kurz.codes
            kurz.stop()
            target.start(map_file=map_file)
        compare.log(f"{target.name}: warm-up {args.warm}s, then perf record for {args.seconds}s under wrk")
        compare.run_wrk(target, args.warm)
        data = out / f"perf-{target.name}.data"
        load = threading.Thread(target=compare.run_wrk, args=(target, args.seconds + 4))
        load.start()
        subprocess.run(["timeout", str(args.seconds + 30), "perf", "record", "-F", "999", "-g", "-o", str(data),
                        "-p", str(target.proc.pid), "--", "sleep", str(args.seconds)],
                       check=True, capture_output=True)
        load.join()
        text = (f"# {target.name}{' (analytics off)' if args.off else ''}: samples by binary\n"
                + report(data, "dso", 1.0)
                + f"\n# {target.name}: hottest symbols (self time, >= 1%)\n"
                + report(data, "sym", 1.0))
        (out / f"profile-{target.name}.txt").write_text(text)
        print(text)
        target.stop()
    finally:
        for proc in compare.PROCS:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
