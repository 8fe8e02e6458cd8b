#!/usr/bin/env python3
"""Side-by-side redirect benchmark: kurz (and an older kurz) against the bare hyper
reference server, in one run, on this machine. Driven by bench/run.sh.

Every server binds 127.0.0.1. Each kurz gets a fresh SQLite database with the same
number of links (created through the bulk API), analytics on, its defaults; the
reference answers 302s from a map of the newest kurz's codes. Requests pick a random
code and a random browser User-Agent (a mix of six), so clicks are human clicks.

The same binaries also run with KURZ_ANALYTICS=false ("-off"): what a redirect costs
without recording its click.

Per round (rounds rotate the servers' order, so drift favours none):
  - warm-up: wrk, 64 connections, BENCH_WARM seconds (fills each cache);
  - saturation: wrk, 64 connections, BENCH_SECONDS: redirects/s, and the server's
    own CPU time per redirect (utime + stime from /proc) at saturation;
  - fixed rate: BENCH_FIXED_RATE redirects/s for BENCH_FIXED_SECONDS from four oha
    processes (a quarter of the rate each, one browser UA each, latency correction):
    p99 (the worst of the four) and the server's CPU time per redirect.
Then, for each kurz: peak RSS (VmHWM); redirects/s in the first BENCH_COLD seconds
after a restart on its database, from the first answer to /health (kurz loads its
hot links before it answers, for up to KURZ_CACHE_WARM_WAIT_MS) against the warm
figure; creates at a fixed 300/s and 1,000/s while the saturating redirect load runs
(p50/p99; any answer other than 201 is counted and shown). With --pg URL, the creates-under-load part is
repeated on PostgreSQL (one kurz per version, fresh database each).

The servers' own CPU per request is the stable figure on a 2-core machine shared
with the load generator; throughput at saturation is reported beside it.
"""

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import harness  # noqa: E402  (load, wait-health)

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
]
TICKS = os.sysconf("SC_CLK_TCK")
PROCS = []


def log(msg):
    print(f"== {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, name, kind, binary, work, env=None):
        self.name, self.kind, self.binary, self.work = name, kind, binary, work
        self.env = env or {}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.db = work / f"{name}.db"
        self.urls = work / f"{name}-urls.txt"
        self.codes = work / f"{name}-codes.txt"
        self.key = "bench-admin-key-" + "x" * 32

    def start(self, env_extra=None, map_file=None):
        out = open(self.work / f"{self.name}.log", "a")
        if self.kind == "reference":
            cmd = [self.binary, "--listen", f"127.0.0.1:{self.port}", "--map", str(map_file)]
            env = dict(os.environ)
        else:
            cmd = [self.binary, "serve"]
            env = dict(os.environ)
            env.update({
                "KURZ_LISTEN": f"127.0.0.1:{self.port}",
                "KURZ_DATABASE_URL": env_extra.pop("db") if env_extra and "db" in env_extra else f"sqlite://{self.db}",
                "KURZ_ANALYTICS_SPOOL_DIR": str(self.work / f"{self.name}-spool"),
                "KURZ_PUBLIC_BASE_URL": self.base,
                "KURZ_ADMIN_API_KEY": self.key,
                "KURZ_JWT_SECRET": "bench-jwt-secret-" + "y" * 32,
                "KURZ_LOG": "warn",
                "KURZ_RATE_LIMIT_ANONYMOUS": "0",
                "KURZ_RATE_LIMIT_FREE": "0",
            })
            env.update(self.env)
            env.update(env_extra or {})
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env)
        PROCS.append(self.proc)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.base + ("/health" if self.kind != "reference" else "/nope"), timeout=1)
                return
            except urllib.error.HTTPError:
                return  # the reference answers 404: it is up
            except Exception:
                if self.proc.poll() is not None:
                    sys.exit(f"{self.name} exited at start; see {self.work}/{self.name}.log")
                time.sleep(0.1)
        sys.exit(f"{self.name} did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu(self):
        return cpu_seconds(self.proc.pid)


def create_links(server, n, map_file):
    """n links through the bulk API; writes the code->URL map and the URL list."""
    codes = []
    for start in range(0, n, 1000):
        urls = [f"https://example.com/bench/{i}" for i in range(start, min(start + 1000, n))]
        status, results, _ = harness.post_bulk(server.base, server.key, urls)
        if status != 201 or any(r.get("status") != "created" for r in results):
            sys.exit(f"{server.name}: bulk at {start} failed (HTTP {status})")
        codes.extend((r["short_code"], r["original_url"]) for r in sorted(results, key=lambda r: r["index"]))
    if map_file:
        map_file.write_text("".join(f"{c}\t{u}\n" for c, u in codes))
    server.codes.write_text("".join(f"{c}\n" for c, _ in codes))
    return codes


def lua_script(work, codes_file):
    path = work / f"mix-{codes_file.stem}.lua"
    uas = ",\n".join(json.dumps(ua) for ua in USER_AGENTS)
    path.write_text(f"""
local codes = {{}}
for line in io.lines("{codes_file}") do codes[#codes + 1] = "/" .. line end
local uas = {{ {uas} }}
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
request = function()
  return wrk.format("GET", codes[math.random(#codes)], {{ ["User-Agent"] = uas[math.random(#uas)] }})
end
""")
    return path


def run_wrk(server, seconds, connections=64, threads=1):
    """wrk against a server; returns (requests, seconds, server CPU seconds)."""
    script = lua_script(server.work, server.codes)
    cpu0 = server.cpu()
    out = subprocess.run(
        ["timeout", str(seconds + 30), "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
         "-s", str(script), server.base],
        capture_output=True, text=True, check=True).stdout
    cpu = server.cpu() - cpu0
    requests = next(int(line.split()[0]) for line in out.splitlines() if "requests in" in line)
    non2xx = sum(int(line.split(":")[1]) for line in out.splitlines() if "Non-2xx or 3xx" in line)
    if non2xx:
        sys.exit(f"{server.name}: {non2xx} answers were neither 2xx nor 3xx:\n{out}")
    return requests, seconds, cpu


def oha(args, out):
    cmd = [OHA, "--no-tui", "--output-format", "json", "--redirect", "0"] + args
    with open(out, "w") as f:
        subprocess.run(["timeout", "120"] + cmd, stdout=f, stderr=subprocess.DEVNULL, check=True)
    return json.loads(pathlib.Path(out).read_text())


def statuses(result):
    return {int(k): v for k, v in result.get("statusCodeDistribution", {}).items()}


def run_fixed(server, rate, seconds, tag):
    """rate/s from four oha processes (one UA each); p99 (worst of four), CPU/req."""
    urls = server.work / f"{server.name}-urls-abs.txt"
    if not urls.exists():
        urls.write_text("".join(f"{server.base}/{c}" for c in server.codes.read_text().splitlines(True)))
    cpu0 = server.cpu()
    procs, outs = [], []
    for i in range(4):
        out = server.work / f"fixed-{server.name}-{tag}-{i}.json"
        outs.append(out)
        cmd = [OHA, "--no-tui", "--output-format", "json", "--redirect", "0", "-z", f"{seconds}s",
               "-c", "8", "-q", str(rate // 4), "--latency-correction", "--urls-from-file",
               "-H", f"User-Agent: {USER_AGENTS[i]}", str(urls)]
        procs.append(subprocess.Popen(["timeout", str(seconds + 60)] + cmd, stdout=open(out, "w"),
                                      stderr=subprocess.DEVNULL))
    for p in procs:
        p.wait()
    cpu = server.cpu() - cpu0
    results = [json.loads(o.read_text()) for o in outs]
    served = sum(statuses(r).get(302, 0) for r in results)
    bad = sum(n for r in results for code, n in statuses(r).items() if code != 302)
    if bad:
        sys.exit(f"{server.name}: {bad} non-302 answers at the fixed rate")
    p99 = max(r["latencyPercentiles"]["p99"] for r in results) * 1000
    achieved = served / seconds
    return {"p99_ms": p99, "cpu_us_per_req": cpu / served * 1e6, "achieved": achieved}


def creates_under_load(server, rates, seconds):
    """Creates at each fixed rate while wrk saturates the server with redirects."""
    out = {}
    for rate in rates:
        wrk = subprocess.Popen(
            ["timeout", str(seconds + 40), "wrk", "-t", "1", "-c", "64", "-d", f"{seconds + 6}s",
             "-s", str(lua_script(server.work, server.codes)), server.base],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)
        body = json.dumps({"original_url": "https://example.com/created-under-load"})
        result = oha(["-z", f"{seconds}s", "-c", "16", "-q", str(rate), "--latency-correction", "-m", "POST",
                      "-H", "content-type: application/json", "-H", f"X-API-Key: {server.key}", "-d", body,
                      f"{server.base}/api/v1/urls"], server.work / f"creates-{server.name}-{rate}.json")
        wrk.wait()
        codes = statuses(result)
        # A create that is not a 201 is a failure of the server measured, not of the run: it is
        # counted and shown beside the latencies (an older revision may shed a few under load).
        failed = {str(code): n for code, n in codes.items() if code != 201}
        # oha ends the run at its deadline with requests in flight: those are not answers.
        failed.update((k, n) for k, n in (result.get("errorDistribution") or {}).items()
                      if k != "aborted due to deadline")
        if failed:
            log(f"{server.name}: creates under load at {rate}/s answered {codes}")
        out[rate] = {"p50_ms": result["latencyPercentiles"]["p50"] * 1000,
                     "p99_ms": result["latencyPercentiles"]["p99"] * 1000,
                     "created": codes.get(201, 0), "asked": rate * seconds, "failed": failed}
    return out


def median_spread(values):
    return statistics.median(values), min(values), max(values)


def fmt(values, digits=1):
    m, lo, hi = median_spread(values)
    return f"{m:,.{digits}f} ({lo:,.{digits}f}–{hi:,.{digits}f})"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kurz", required=True, help="the kurz binary to measure")
    p.add_argument("--old", help="an older kurz binary, measured beside it")
    p.add_argument("--old-label", default="old")
    p.add_argument("--new-label", default="new")
    p.add_argument("--reference", required=True)
    p.add_argument("--oha", required=True)
    p.add_argument("--links", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warm", type=int, default=15)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--fixed-rate", type=int, default=10_000)
    p.add_argument("--fixed-seconds", type=int, default=30)
    p.add_argument("--fixed-settle", type=int, default=30,
                   help="seconds at the fixed rate before the measured window, unmeasured")
    p.add_argument("--cold", type=int, default=5)
    p.add_argument("--pg", help="a PostgreSQL admin URL: also measure creates under load there")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    global OHA
    OHA = args.oha
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="kurz-compare-"))
    try:
        run(args, work, out_dir)
    finally:
        for proc in PROCS:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def run(args, work, out_dir):
    kurzes = [Server(args.new_label, "kurz", args.kurz, work)]
    if args.old:
        kurzes.append(Server(args.old_label, "kurz", args.old, work))
    # The same binaries with the click pipeline off: what a redirect alone costs.
    offs = [Server(k.name + "-off", "kurz", k.binary, work, {"KURZ_ANALYTICS": "false"}) for k in kurzes]
    ref = Server("reference", "reference", args.reference, work)
    map_file = work / "map.tsv"
    for k in kurzes + offs:
        k.start()
        log(f"{k.name}: creating {args.links:,} links")
        create_links(k, args.links, map_file if k is kurzes[0] else None)
    ref.codes = kurzes[0].codes
    ref.start(map_file=map_file)
    servers = [ref] + kurzes + offs
    figures = {s.name: {"sat_rps": [], "sat_cpu_us": [], "fixed_p99": [], "fixed_cpu_us": [], "fixed_rate": []}
               for s in servers}
    for rnd in range(args.rounds):
        order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
        for s in order:
            log(f"round {rnd + 1}/{args.rounds}: {s.name}: warm-up {args.warm}s, saturation {args.seconds}s, "
                f"fixed {args.fixed_rate:,}/s {args.fixed_settle}s + {args.fixed_seconds}s")
            run_wrk(s, args.warm)
            req, secs, cpu = run_wrk(s, args.seconds)
            figures[s.name]["sat_rps"].append(req / secs)
            figures[s.name]["sat_cpu_us"].append(cpu / req * 1e6)
            # The saturating load leaves a backlog of clicks that kurz's store writer
            # works off for seconds afterwards. Without a settle at the fixed rate first,
            # the measured window pays for clicks of the saturation, not its own.
            if args.fixed_settle > 0:
                run_fixed(s, args.fixed_rate, args.fixed_settle, f"r{rnd}-settle")
            fixed = run_fixed(s, args.fixed_rate, args.fixed_seconds, f"r{rnd}")
            figures[s.name]["fixed_p99"].append(fixed["p99_ms"])
            figures[s.name]["fixed_cpu_us"].append(fixed["cpu_us_per_req"])
            figures[s.name]["fixed_rate"].append(fixed["achieved"])
    for s in servers:
        figures[s.name]["rss_mib"] = peak_rss_mib(s.proc.pid)
    for s in [ref] + offs:
        s.stop()
    extra = {}
    for k in kurzes:
        warm_rps = statistics.median(figures[k.name]["sat_rps"])
        log(f"{k.name}: single creates (10 s, 32 clients) and one bulk of 1,000 (5 times)")
        body = json.dumps({"original_url": "https://example.com/created"})
        single = oha(["-z", "10s", "-c", "32", "-m", "POST", "-H", "content-type: application/json",
                      "-H", f"X-API-Key: {k.key}", "-d", body, f"{k.base}/api/v1/urls"],
                     k.work / f"creates-{k.name}.json")
        if set(statuses(single)) != {201}:
            sys.exit(f"{k.name}: single creates answered {statuses(single)}")
        bulks = []
        for run in range(5):
            urls = [f"https://example.com/bulk-timing/{run}/{i}" for i in range(1000)]
            status, results, secs = harness.post_bulk(k.base, k.key, urls)
            if status != 201:
                sys.exit(f"{k.name}: timed bulk answered {status}")
            bulks.append(secs * 1000)
        extra.setdefault(k.name, {})["creates_per_s"] = statuses(single)[201] / 10
        extra[k.name]["bulk_ms"] = statistics.median(bulks)
        log(f"{k.name}: creates under redirect load (300/s, 1,000/s)")
        extra.setdefault(k.name, {})["creates_sqlite"] = creates_under_load(k, [300, 1000], 10)
        k.stop()
        log(f"{k.name}: restart, then {args.cold}s of load at once")
        k.start()
        req, secs, _ = run_wrk(k, args.cold)
        extra[k.name]["cold_rps"] = req / secs
        extra[k.name]["cold_vs_warm"] = (req / secs) / warm_rps
        k.stop()
    if args.pg:
        for k in kurzes:
            db = harness_fresh_pg(args.pg, k.name)
            pg = Server(k.name + "-pg", "kurz", k.binary, work)
            subprocess.run([k.binary, "migrate"], env={**os.environ, "KURZ_DATABASE_URL": db, "KURZ_LOG": "warn"},
                           check=True, capture_output=True)
            pg.start({"db": db})
            log(f"{pg.name}: creating {min(args.links, 20_000):,} links on PostgreSQL")
            create_links(pg, min(args.links, 20_000), None)
            extra[k.name]["creates_pg"] = creates_under_load(pg, [300, 1000], 10)
            pg.stop()
    result = {"figures": figures, "extra": extra, "args": vars(args), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "nproc": os.cpu_count()}
    (out_dir / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    table = summary(result, [s.name for s in servers], [k.name for k in kurzes], [o.name for o in offs])
    (out_dir / "summary.md").write_text(table)
    print(table)


def harness_fresh_pg(admin_url, name):
    """A fresh database on the PostgreSQL server of `admin_url`; returns its URL."""
    db = f"kurz_bench_{name.replace('-', '_')}_{random.randrange(1 << 30)}"
    subprocess.run(["psql", admin_url, "-qc", f"CREATE DATABASE {db}"], check=True, capture_output=True)
    return admin_url.rsplit("/", 1)[0] + "/" + db


def creates_txt(c):
    """p50 / p99 of one creates-under-load rate; how many were created if short of the rate,
    and the answers that were not 201, if any."""
    text = f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f}"
    failed = c.get("failed") or {}
    if c.get("asked") and c["created"] < 0.99 * c["asked"]:
        text += f" ({c['created']:,} of {c['asked']:,} created)"
    if failed:
        text += " (not 201: " + ", ".join(f"{n} × {code}" for code, n in sorted(failed.items())) + ")"
    return text


def summary(result, names, kurzes, offs):
    f, e = result["figures"], result["extra"]
    ref = f["reference"]
    lines = [f"Redirect benchmark — {result['date']}, nproc {result['nproc']}, "
             f"{result['args']['links']:,} links, {result['args']['rounds']} rounds; medians (min–max)", "",
             "| | redirects/s at saturation | CPU µs per redirect at saturation | CPU µs per redirect at "
             f"{result['args']['fixed_rate']:,}/s | p99 ms at {result['args']['fixed_rate']:,}/s | peak RSS MiB |",
             "|---|---|---|---|---|---|"]
    for n in names:
        x = f[n]
        lines.append(f"| {n} | {fmt(x['sat_rps'], 0)} | {fmt(x['sat_cpu_us'], 2)} | {fmt(x['fixed_cpu_us'], 2)} "
                     f"| {fmt(x['fixed_p99'], 2)} | {x['rss_mib']:,.0f} |")
    lines += ["", "Ratios to the reference (medians): CPU per redirect at the fixed rate (target ≤ 1.5× with "
              "analytics on, ≤ 1.25× off), p99 at the fixed rate (target ≤ 1.3×, analytics on), per-busy-core "
              "throughput (1 / CPU at saturation).", "",
              "| | CPU at fixed rate | p99 at fixed rate | per busy core | saturation throughput |", "|---|---|---|---|---|"]
    med = lambda v: statistics.median(v)
    for n in kurzes + offs:
        x = f[n]
        lines.append(f"| {n} | {med(x['fixed_cpu_us']) / med(ref['fixed_cpu_us']):.2f}× "
                     f"| {med(x['fixed_p99']) / med(ref['fixed_p99']):.2f}× "
                     f"| {med(ref['sat_cpu_us']) / med(x['sat_cpu_us']):.2f}× "
                     f"| {med(x['sat_rps']) / med(ref['sat_rps']):.2f}× |")
    lines += ["", "| | redirects/s in the first seconds after a restart (× warm) | creates under load, SQLite: "
              "p50 / p99 ms at 300/s; at 1,000/s | creates under load, PostgreSQL: at 300/s; at 1,000/s "
              "| single creates/s (32 clients) | bulk of 1,000, ms |",
              "|---|---|---|---|---|---|"]
    for n in kurzes:
        x = e[n]
        c = x["creates_sqlite"]
        pg = x.get("creates_pg")
        pg_txt = f"{creates_txt(pg[300])}; {creates_txt(pg[1000])}" if pg else "—"
        lines.append(f"| {n} | {x['cold_rps']:,.0f} ({x['cold_vs_warm']:.2f}×) "
                     f"| {creates_txt(c[300])}; {creates_txt(c[1000])} "
                     f"| {pg_txt} | {x['creates_per_s']:,.0f} | {x['bulk_ms']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
