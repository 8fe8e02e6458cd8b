#!/usr/bin/env python3
"""The capacity plan of docs/capacity.md, from one table of inputs.

    python3 docs/capacity.py            print the inputs and the derived table (Markdown)
    python3 docs/capacity.py --update   rewrite the generated part of docs/capacity.md
    python3 docs/capacity.py --check    exit 1 if docs/capacity.md is not up to date

Change a figure in INPUTS (for example after a new benchmark run: say which run in
its source), then run --update. Standard library only.
"""

import math
import pathlib
import sys

MEASURED, SEED, ASSUMED = "measured", "seed", "assumption"

# name: (value, unit, kind, what and where from)
INPUTS = {
    # --- the load (seeds 000 and 004) ---
    "redirects_peak": (40_000, "/s", SEED, "peak redirects (seed 004 capacity table)"),
    "creates_peak": (400, "/s", SEED, "peak creates (seed 004)"),
    "links_month": (500e6, "links", SEED, "new links a month (seed 004)"),
    "clicks_month": (10e9, "clicks", SEED, "click events a month: seed 004's 1 TB at 100 B each"),
    # --- kurz, measured on this project's 2-core benchmark machine ---
    "cpu_redirect_us": (15.9, "µs", MEASURED,
                        "kurz CPU per redirect, analytics on, fixed 15,000/s, Zipf: median of 5 rounds "
                        "(15.2, 20.0, 18.7, 15.9, 14.4) — bench/results/2026-11-22_to_2026-12-04.md, click analytics benchmark, "
                        "run of 2026-12-04 (night), kurz be448a5; on SQLite, whose click writes run inside kurz's "
                        "process, so on PostgreSQL kurz's own share is if anything lower"),
    "cpu_create_us": (146, "µs", MEASURED,
                      "upper bound: 2 cores / 13,724 creates/s on PostgreSQL, the whole machine "
                      "(kurz + PostgreSQL + oha) — bench/results/2026-11-22_to_2026-12-04.md, production benchmark, 2026-11-22 00:26 UTC"),
    "pg_cpu_per_click_us": (31, "µs", MEASURED,
                            "upper bound: 2 cores / 64,105 clicks stored per s end to end on PostgreSQL, "
                            "the whole machine (kurz + PostgreSQL + oha, fsync off) — bench/results/2026-11-22_to_2026-12-04.md, "
                            "click analytics benchmark, 2026-12-04 (night)"),
    "kurz_rss_mib": (154, "MiB", MEASURED,
                     "kurz peak RSS, 100,000 links, analytics on, saturating redirect load — the largest of four "
                     "redirect benchmarks: 2026-12-06 23:06 UTC, kurz cc13673 (66 MiB with analytics off); "
                     "149 MiB on 2026-12-07 01:53 UTC, kurz 7cea7f4 (same code); 147 MiB at 04:10 UTC, "
                     "kurz 622ee4d; 140 MiB at 06:32 UTC, kurz e24e10c (bench/README.md); "
                     "134.1–142.8 MiB in 3 one-round runs of the same build, 137 MiB at 20:11 (e450c41), "
                     "255 MiB on 2026-12-05 (08408d5) (bench/results/2026-12-06.md)"),
    "pg_link_bytes": (272, "B", MEASURED,
                      "a link in PostgreSQL 15: heap + indexes of all `links` partitions / rows, "
                      "50,000 links of 100-byte URLs (SQLite: 172 B)"),
    "pg_click_bytes": (152, "B", MEASURED,
                       "a raw click event in PostgreSQL: `click_events` heap 108 + index 44, 23,508 "
                       "clicks with browser User-Agents (SQLite: 104 B)"),
    "pg_click_index_bytes": (44, "B", MEASURED, "of which the index (code, clicked_at), same run"),
    "pg_rollup_bytes": (493, "B", MEASURED,
                        "an hourly rollup row (`click_rollups`, heap + PK), at ~5 clicks and 1 visitor "
                        "a link-hour (SQLite: 250 B)"),
    "redis_link_bytes": (294, "B", MEASURED,
                         "a link in the Redis L2 cache (src/cache/l2.rs format, 100-byte URL, 1 h TTL), "
                         "Redis 7.0.15, 100,000 keys"),
    # --- assumptions ---
    "url_bytes": (100, "B", ASSUMED, "average target URL length (the rows above were measured at 100)"),
    "clicks_per_link_hour": (10, "clicks", ASSUMED,
                             "average clicks of a link in an hour in which it is clicked at all"),
    "link_hours_per_day": (4, "hours", ASSUMED, "hours with clicks of a link on a day with clicks"),
    "visitor_sketch_bytes": (3, "B", ASSUMED, "per distinct visitor in a sparse HyperLogLog (src/analytics/hll.rs)"),
    "daily_sketch_row_bytes": (90, "B", ASSUMED, "a `click_visitors_daily` row without its sketch (not measured)"),
    "l1_hit": (0.95, "", ASSUMED, "redirects answered from kurz's in-process cache (P-07: > 95 %)"),
    "l2_hit": (0.90, "", ASSUMED, "of the rest, answered from Redis"),
    "utilisation": (0.5, "", ASSUMED, "target CPU use at peak: 2× headroom"),
    "pod_cores": (1, "cores", ASSUMED, "CPU of one kurz pod"),
    "raw_retention_days": (90, "days", ASSUMED, "KURZ_ANALYTICS_RETENTION_DAYS (the default)"),
    "pg_copies": (3, "", ASSUMED, "PostgreSQL primary + 2 replicas (seeds 000 and 004)"),
    "redis_copies": (2, "", ASSUMED, "each Redis shard has one replica (seed 004)"),
    "redis_overhead": (2, "×", ASSUMED, "Redis memory headroom (fragmentation, fork for replication)"),
    "write_amplification": (2, "×", ASSUMED, "WAL + checkpoint writes per byte of rows written"),
    "stats_queries": (20, "/s", ASSUMED, "stats queries at peak, ~10 ms of PostgreSQL CPU each (P-10 runs: 5–10 ms)"),
}

MONTH_S = 30 * 86400


def v(name):
    return INPUTS[name][0]


def derive():
    """[(what, value, how)] — every figure from INPUTS only."""
    out = []

    def add(what, value, how):
        out.append((what, value, how))

    url_extra = v("url_bytes") - 100
    link_b = v("pg_link_bytes") + url_extra
    clicks_avg = v("clicks_month") / MONTH_S
    link_hours_month = v("clicks_month") / v("clicks_per_link_hour")
    rollup_b = v("pg_rollup_bytes") + v("visitor_sketch_bytes") * v("clicks_per_link_hour")

    # kurz
    kurz_cpu = (v("redirects_peak") * v("cpu_redirect_us") + v("creates_peak") * v("cpu_create_us")) / 1e6
    kurz_cores = kurz_cpu / v("utilisation")
    pods = max(3, math.ceil(kurz_cores / v("pod_cores")) + 1)
    add("kurz CPU at peak", f"{kurz_cpu:.2f} cores", "redirects × CPU/redirect + creates × CPU/create")
    add("kurz pods", f"{pods} × {v('pod_cores')} core, {math.ceil(v('kurz_rss_mib') * 1.25 / 256) * 256} MiB",
        f"{kurz_cores:.2f} cores at {v('utilisation'):.0%} use, + 1 (N+1), at least 3 (one per zone); "
        f"memory: peak RSS + 25 % headroom, rounded up to 256 MiB")

    # reads that reach PostgreSQL
    pg_reads = v("redirects_peak") * (1 - v("l1_hit")) * (1 - v("l2_hit"))
    add("PostgreSQL link reads at peak", f"{pg_reads:,.0f}/s", "redirects × L1 misses × L2 misses (replicas)")

    # PostgreSQL CPU
    pg_cpu = (v("redirects_peak") * v("pg_cpu_per_click_us") + v("creates_peak") * v("cpu_create_us")
              + v("stats_queries") * 10_000) / 1e6
    pg_cores = pg_cpu / v("utilisation")
    add("PostgreSQL primary CPU", f"{pg_cores:.1f} cores → {2 ** math.ceil(math.log2(pg_cores))} vCPU",
        "(clicks at peak × CPU/click + creates × CPU/create + stats queries) at "
        f"{v('utilisation'):.0%} use, rounded up to a power of 2")

    # PostgreSQL memory: what the click writes touch all day long should stay cached.
    day_s = 86400
    hot_gb = (clicks_avg * day_s * v("pg_click_index_bytes")
              + link_hours_month / 30 * rollup_b) / 1e9
    add("PostgreSQL primary memory", f"{math.ceil(2 * hot_gb / 16) * 16} GB",
        f"2 × the day's hot set ({hot_gb:.0f} GB: today's raw-event index + today's rollup rows), "
        "rounded up to 16 GB")

    # storage growth
    links_gb = v("links_month") * link_b / 1e9
    raw_gb = v("clicks_month") * v("pg_click_bytes") / 1e9
    rollup_gb = link_hours_month * rollup_b / 1e9
    link_days = link_hours_month / v("link_hours_per_day")
    daily_b = v("daily_sketch_row_bytes") + v("visitor_sketch_bytes") * v("clicks_per_link_hour") * v("link_hours_per_day")
    daily_gb = link_days * daily_b / 1e9
    raw_window_gb = raw_gb * v("raw_retention_days") / 30
    kept_gb = links_gb + rollup_gb + daily_gb
    add("links, a month", f"{links_gb:,.0f} GB", "new links × bytes a link")
    add("hourly rollups, a month (kept)", f"{rollup_gb:,.0f} GB",
        f"{link_hours_month / 1e9:.1f} G link-hours × {rollup_b:.0f} B")
    add("daily visitor sketches, a month (kept)", f"{daily_gb:,.0f} GB",
        f"{link_days / 1e6:,.0f} M link-days × {daily_b:.0f} B")
    add("raw click events, a month", f"{raw_gb:,.0f} GB",
        f"clicks × bytes a click; dropped after {v('raw_retention_days')} days")
    add("PostgreSQL data after 12 months, one copy", f"{(12 * kept_gb + raw_window_gb) / 1e3:.1f} TB",
        f"12 × {kept_gb:,.0f} GB kept + {raw_window_gb:,.0f} GB of raw events in the retention window")
    add("… all copies", f"{v('pg_copies') * (12 * kept_gb + raw_window_gb) / 1e3:.1f} TB",
        f"× {v('pg_copies')} (primary + replicas), before backups")

    # writes and IOPS
    def write_mb_s(clicks_s, creates_s):
        # Worst case for rollups: every click rewrites its link-hour row (clicks of one
        # link in one store write are folded into one upsert, so real traffic writes less).
        return (clicks_s * (v("pg_click_bytes") + rollup_b) + creates_s * link_b) / 1e6

    peak_mb = write_mb_s(v("redirects_peak"), v("creates_peak"))
    avg_mb = write_mb_s(clicks_avg, v("links_month") / MONTH_S)
    wa = v("write_amplification")
    add("rows written at peak", f"{peak_mb:.0f} MB/s",
        "every redirect a click: raw event + a rollup upsert (worst case); + creates")
    add("disk writes at peak / average", f"{peak_mb * wa:.0f} / {avg_mb * wa:.0f} MB/s",
        f"× {wa} write amplification (average: {clicks_avg:,.0f} clicks/s from the monthly total)")
    add("write IOPS at peak (8 KiB)", f"{peak_mb * wa * 1e6 / 8192:,.0f}",
        "upper bound: WAL and heap appends are sequential, so fewer, larger writes in practice")
    add("WAL archive a day (average)", f"{avg_mb * wa * 86400 / 1e3:,.0f} GB",
        "for base backup + WAL retention (deploy/backup/README.md)")

    # Redis
    hot_links_hour = v("redirects_peak") * 3600 / v("clicks_per_link_hour")
    redis_gb = hot_links_hour * v("redis_link_bytes") / 1e9
    add("Redis: links in the L2 cache at peak", f"{hot_links_hour / 1e6:,.1f} M",
        "links clicked within the L2 TTL (1 h) at the peak rate")
    add("Redis memory", f"{redis_gb:.1f} GB data → {redis_gb * v('redis_overhead') * v('redis_copies'):.0f} GB in all",
        f"× {v('redis_overhead')} headroom × {v('redis_copies')} copies")
    return out


def render():
    lines = ["| input | value | kind | source |", "|---|---|---|---|"]
    for name, (value, unit, kind, source) in INPUTS.items():
        if isinstance(value, float) and value < 1:
            shown = f"{value:.0%}"
        elif isinstance(value, float) and value >= 1e6:
            shown = f"{value / 1e6:,.0f} M {unit}"
        else:
            shown = f"{value:,} {unit}".strip()
        lines.append(f"| `{name}` | {shown} | {kind} | {source} |")
    lines += ["", "| derived | value | how |", "|---|---|---|"]
    lines += [f"| {what} | **{value}** | {how} |" for what, value, how in derive()]
    return "\n".join(lines) + "\n"


BEGIN = "<!-- generated by docs/capacity.py: edit INPUTS there, then run it with --update -->\n"
END = "<!-- end of generated part -->\n"


def main():
    doc = pathlib.Path(__file__).with_name("capacity.md")
    table = render()
    if len(sys.argv) == 1:
        sys.stdout.write(table)
        return
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{doc}: the markers of the generated part are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + table + END + tail
    if sys.argv[1:] == ["--update"]:
        doc.write_text(new)
    elif sys.argv[1:] == ["--check"]:
        if new != text:
            sys.exit(f"{doc} is not up to date: run python3 docs/capacity.py --update")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
