"""Summary table of bench/run_analytics.sh: python3 bench/analytics_summary.py RESULTS LINKS

A part run alone (BENCH_PARTS) leaves the other parts' files of an earlier run in
place, so each part counts its own rounds from the files it finds."""
import json, pathlib, re, statistics, sys
res = pathlib.Path(sys.argv[1]); links = int(sys.argv[2])
def rounds_of(prefix):
    n = 0
    while (res / f"{prefix}{n + 1}.json").exists():
        n += 1
    return n
def oha(p):
    d = json.loads((res / p).read_text())
    codes = {str(k): int(v) for k, v in d.get("statusCodeDistribution", {}).items()}
    return d, codes
def rps(p):
    d, codes = oha(p)
    return codes.get("302", 0) / float(d["summary"]["total"]), codes
SPOOLED = 'kurz_click_events_spooled_total{sink="store"}'
WRITTEN = 'kurz_click_events_written_total{sink="store"}'
DROPPED = 'kurz_click_events_dropped_total'
def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0
rows = []
if (res / "click-count-on.txt").exists():
    rounds = rounds_of("redirect-on-zipf-")
    served = links  # the warm-up pass
    for mix in ("zipf", "uniform"):
        on = [rps(f"redirect-on-{mix}-{r}.json") for r in range(1, rounds + 1)]
        off = [rps(f"redirect-off-{mix}-{r}.json") for r in range(1, rounds + 1)]
        served += sum(c.get("302", 0) for _, c in on)
        on_rps = statistics.median(r for r, _ in on); off_rps = statistics.median(r for r, _ in off)
        ratio = on_rps / off_rps
        rows.append((f"{mix} mix: redirects/s analytics on / off (medians, same run)", f"{on_rps:,.0f} / {off_rps:,.0f}", ""))
        rows.append((f"{mix} mix: ratio on / off", f"{ratio:.3f}", "PASS" if ratio >= 0.9 else "MISS (>= 0.9)"))
    onoff_clicks = int((res / "click-count-on.txt").read_text())
    m = (res / "metrics-on.txt").read_text()
    # oha may drop requests in flight at its deadline after kurz served (and counted)
    # them: up to c=64 per run more in click_count than oha saw.
    slack = 64 * rounds * 2
    drain = ", ".join(sorted(p.read_text().strip() for p in res.glob("drain-seconds-on-*.txt")))
    rows.append(("302s seen by oha (+ warm-up) / click_count, 'on' instance", f"{served:,} / {onoff_clicks:,}", "PASS" if served <= onoff_clicks <= served + slack else "MISS"))
    rows.append(("events spooled / dropped ('on'); seconds to drain after each run", f"{metric(m, SPOOLED):.0f} / {metric(m, DROPPED):.0f}; {drain}", ""))
if (res / "cpu-on-1.ticks").exists():
    def cpu_us(name, r):
        d, codes = oha(f"cpu-{name}-{r}.json")
        ticks, hz = (res / f"cpu-{name}-{r}.ticks").read_text().split()
        return int(ticks) / int(hz) * 1e6 / max(codes.get("302", 0), 1), codes.get("302", 0) / float(d["summary"]["total"])
    rounds = rounds_of("cpu-on-")
    on = [cpu_us("on", r) for r in range(1, rounds + 1)]
    off = [cpu_us("off", r) for r in range(1, rounds + 1)]
    rows.append(("fixed rate, Zipf: redirects/s reached, on / off (medians)", f"{statistics.median(x for _, x in on):,.0f} / {statistics.median(x for _, x in off):,.0f}", ""))
    rows.append(("fixed rate, Zipf: kurz CPU per redirect, on (rounds)", ", ".join(f"{u:.1f}" for u, _ in on) + " µs", ""))
    rows.append(("fixed rate, Zipf: kurz CPU per redirect, off (rounds)", ", ".join(f"{u:.1f}" for u, _ in off) + " µs", ""))
    u_on = statistics.median(u for u, _ in on); u_off = statistics.median(u for u, _ in off)
    rows.append(("fixed rate, Zipf: CPU per click / off-CPU per on-CPU (medians)", f"+{u_on - u_off:.1f} µs / {u_off / u_on:.3f}", ""))
if (res / "clickgen-postgres.json").exists():
    for backend in ("sqlite", "postgres"):
        gen = json.loads((res / f"clickgen-{backend}.json").read_text())
        d, _ = oha(f"p10-{backend}.json"); p = d["latencyPercentiles"]
        dh, _ = oha(f"p10-{backend}-hourly.json"); ph = dh["latencyPercentiles"]
        ans = json.loads((res / f"p10-{backend}-answer.json").read_text())
        truth = gen["distinct_human_visitors"]; est = ans["unique_visitors"]
        rows.append((f"P-10 {backend}: clicks loaded (clickgen, events/s)", f"{gen['clicks']:,} ({gen['events_per_second']:,.0f}/s)", ""))
        rows.append((f"P-10 {backend}: 30-day stats p50 / p99 / max (ms)", f"{p['p50']*1000:.1f} / {p['p99']*1000:.1f} / {d['summary']['slowest']*1000:.1f}", "PASS" if p['p99'] < 0.05 else "MISS (< 50 ms)"))
        rows.append((f"P-10 {backend}: same, hourly buckets (720) p50 / p99 (ms)", f"{ph['p50']*1000:.1f} / {ph['p99']*1000:.1f}", ""))
        rows.append((f"P-10 {backend}: unique visitors, sketch vs true", f"{est:,} vs {truth:,} ({(est-truth)/truth*100:+.2f}%)", "PASS" if abs(est-truth)/truth < 0.02 else "MISS"))
    gen = json.loads((res / "clickgen-postgres.json").read_text())
    rows.append(("ingestion into PostgreSQL (clickgen, batches of 10,000)", f"{gen['events_per_second']:,.0f} events/s", "PASS" if gen['events_per_second'] >= 20000 else "MISS (>= 20,000)"))
if (res / "click-count-pg.txt").exists():
    e2e_clicks = int((res / "click-count-pg.txt").read_text())
    d, codes = oha("redirect-pg.json"); pg_secs = float(d["summary"]["total"])
    mpg = (res / "metrics-pg.txt").read_text()
    written = metric(mpg, WRITTEN)
    pg_served = codes.get("302", 0) + links
    rows.append(("end to end on PostgreSQL: redirects/s with analytics on", f"{codes.get('302', 0)/pg_secs:,.0f}", ""))
    rows.append(("end to end on PostgreSQL: 302s seen / click_count / spooled", f"{pg_served:,} / {e2e_clicks:,} / {metric(mpg, SPOOLED):.0f}", "PASS" if pg_served <= e2e_clicks <= pg_served + 64 else "MISS"))
    drain_pg = (res / "drain-seconds-pg.txt").read_text().strip()
    rows.append(("end to end on PostgreSQL: seconds to drain after the load", drain_pg, ""))
    rate = e2e_clicks / (pg_secs + float(drain_pg))
    rows.append(("end to end on PostgreSQL: clicks stored / (load + drain seconds)", f"{rate:,.0f} events/s", "PASS" if rate >= 20000 else "MISS (>= 20,000)"))
out = ["| figure | value | target |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
text = "\n".join(out) + "\n"
(res / "summary.md").write_text(text)
print(text)
