"""Builds kurz's Grafana dashboards as code with grafana-foundation-sdk and writes them
to grafana/dashboards/*.json (committed; check.sh verifies they match this script).

    python generate.py [OUT_DIR]        # default: the dashboards/ folder beside this file

Every query is PromQL on the metric catalog in ../README.md. Panels use two dashboard
variables: `datasource` (any Prometheus data source) and `instance` (multi-select,
"All" = `.*`). Rates use `$__rate_interval`.
"""

import json
import pathlib
import sys

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DataSourceRef, Threshold, ThresholdsMode, VariableRefresh
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
I = 'instance=~"$instance"'  # the instance filter every kurz_* selector carries
RI = "$__rate_interval"
REDIRECT = 'route="/{code}"'
HIT = 'result="hit"'
LIMITED = 'result="limited"'
API = 'route=~"/api/v1/.+"'


def rate(metric, sel="", by=None, window=RI):
    labels = ",".join(x for x in (I, sel) if x)
    inner = f"rate({metric}{{{labels}}}[{window}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q, metric, sel="", by=""):
    labels = ",".join(x for x in (I, sel) if x)
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{labels}}}[{RI}])))"


def thresholds(*steps):
    """steps: (value or None, color) from the lowest up."""
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in steps])
    )


def _targets(panel, queries, instant=False, fmt=None):
    for n, (expr, legend) in enumerate(queries):
        q = prometheus.Dataquery().expr(expr).ref_id(chr(ord("A") + n)).legend_format(legend)
        if instant:
            q = q.instant()
        else:
            q = q.range()
        if fmt is not None:
            q = q.format(fmt)
        panel = panel.with_target(q)
    return panel


def ts(title, desc, queries, unit, w=12, h=8, steps=None, stacked=False, min_zero=True):
    p = (
        timeseries.Panel()
        .title(title)
        .description(desc)
        .datasource(DS)
        .unit(unit)
        .span(w)
        .height(h)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
        )
    )
    if min_zero:
        p = p.min(0)
    if stacked:
        p = p.stacking(common.StackingConfig().mode(StackingMode.NORMAL))
    if steps:
        p = p.thresholds(thresholds(*steps)).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.LINE)
        )
    return _targets(p, queries)


def single(title, desc, expr, unit, w=6, h=4, steps=None, legend=""):
    p = (
        stat.Panel()
        .title(title)
        .description(desc)
        .datasource(DS)
        .unit(unit)
        .span(w)
        .height(h)
        .graph_mode(BigValueGraphMode.AREA)
        .color_mode(BigValueColorMode.VALUE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    )
    p = p.thresholds(thresholds(*(steps or [(None, "green")])))
    return _targets(p, [(expr, legend)])


def bars(title, desc, expr, legend, unit, w=12, h=8):
    p = (
        bargauge.Panel()
        .title(title)
        .description(desc)
        .datasource(DS)
        .unit(unit)
        .span(w)
        .height(h)
        .orientation(VizOrientation.HORIZONTAL)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(thresholds((None, "blue")))
    )
    return _targets(p, [(expr, legend)], instant=True)


def grid(title, desc, expr, w=12, h=6):
    p = table.Panel().title(title).description(desc).datasource(DS).span(w).height(h)
    return _targets(p, [(expr, "")], instant=True, fmt=PromQueryFormat.TABLE)


def board(uid, title, desc, rows):
    d = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(desc)
        .tags(["kurz"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("instance")
            .label("Instance")
            .datasource(DS)
            .query('label_values(kurz_http_requests_total, instance)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .link(
            dashboard.DashboardLink("kurz dashboards")
            .type("dashboards")
            .tags(["kurz"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    next_id = 1
    for row_title, panels in rows:
        d = d.with_row(dashboard.Row(row_title).id(next_id))
        next_id += 1
        for p in panels:
            d = d.with_panel(p.id(next_id))
            next_id += 1
    return d.build()


# ---------------------------------------------------------------- the boards

def overview():
    http = "kurz_http_requests_total"
    dur = "kurz_http_request_duration_seconds"
    not_metrics = 'route!="/metrics"'
    five = 'status=~"5..|other_5xx"'
    error_ratio = (
        f'(sum(rate({http}{{{I},{not_metrics},{five}}}[{RI}])) or vector(0))'
        f' / sum(rate({http}{{{I},{not_metrics}}}[{RI}]))'
    )
    pct = [(None, "green"), (0.01, "orange"), (0.05, "red")]
    lat = [(None, "green"), (0.2, "orange"), (0.5, "red")]
    return board(
        "kurz-overview",
        "kurz / Service overview",
        "Traffic, errors, latency and saturation of every kurz instance (seed: the four golden signals).",
        [
            ("Traffic", [
                single("Requests/s", "All HTTP requests answered, every route.", rate(http), "reqps"),
                single("5xx ratio", "5xx answers / all answers (excluding /metrics). Alerts: 1% warning, 5% critical.",
                       error_ratio, "percentunit", steps=pct),
                single("Redirect p99", "99th percentile latency of GET/HEAD /{code}. Alerts: 200 ms warning, 500 ms critical.",
                       quantile(0.99, dur, REDIRECT), "s", steps=lat),
                single("Instances up", "Targets of the `kurz` scrape job that answered the last scrape.",
                       'sum(up{job="kurz",instance=~"$instance"})', "none", steps=[(None, "red"), (1, "green")]),
                ts("Requests/s by route class", "Redirects (/{code}), API (/api/v1/…) and the rest (health, metrics, UI, unmatched).", [
                    (rate(http, REDIRECT), "redirect"),
                    (rate(http, API), "api"),
                    (rate(http, 'route!="/{code}",route!~"/api/v1/.+"'), "other"),
                ], "reqps"),
                ts("Requests/s by status", "Every answer by HTTP status.", [(rate(http, by="status"), "{{status}}")], "reqps", stacked=True),
            ]),
            ("Errors", [
                ts("5xx ratio", "Share of answers that were 5xx (excluding /metrics); the alert thresholds are drawn.",
                   [(error_ratio, "5xx ratio")], "percentunit", w=8, steps=pct),
                ts("5xx/s by route", "Server errors by route and status: 503 = store unavailable or request timeout.",
                   [(rate(http, five, by="route, status"), "{{route}} {{status}}")], "reqps", w=8),
                ts("4xx/s by route", "Client errors by route and status (404 unknown code, 410 expired, 429 rate limited, …).",
                   [(rate(http, 'status=~"4..|other_4xx"', by="route, status"), "{{route}} {{status}}")], "reqps", w=8),
            ]),
            ("Latency", [
                ts("Redirect latency", "p50, p95 and p99 of GET/HEAD /{code}, all instances together.", [
                    (quantile(0.5, dur, REDIRECT), "p50"),
                    (quantile(0.95, dur, REDIRECT), "p95"),
                    (quantile(0.99, dur, REDIRECT), "p99"),
                ], "s", w=8, steps=lat),
                ts("API latency", "p50, p95 and p99 of every /api/v1/… route together.", [
                    (quantile(0.5, dur, API), "p50"),
                    (quantile(0.95, dur, API), "p95"),
                    (quantile(0.99, dur, API), "p99"),
                ], "s", w=8, steps=lat),
                ts("Create latency", "p50, p95 and p99 of POST /api/v1/urls (the seed's 'creates').", [
                    (quantile(0.5, dur, 'route="/api/v1/urls",method="POST"'), "p50"),
                    (quantile(0.95, dur, 'route="/api/v1/urls",method="POST"'), "p95"),
                    (quantile(0.99, dur, 'route="/api/v1/urls",method="POST"'), "p99"),
                ], "s", w=8, steps=lat),
                ts("p99 by route", "99th percentile latency of each route.",
                   [(quantile(0.99, dur, by="route"), "{{route}}")], "s", w=24),
            ]),
            ("Saturation", [
                ts("CPU", "CPU cores used by each instance (process_cpu_seconds_total).",
                   [(f'rate(process_cpu_seconds_total{{job="kurz",{I}}}[{RI}])', "{{instance}}")], "none", w=8),
                ts("Resident memory", "Resident set size of each instance.",
                   [(f'process_resident_memory_bytes{{job="kurz",{I}}}', "{{instance}}")], "bytes", w=8),
                ts("File descriptors used", "Open file descriptors / the process limit. Alert at 80%.",
                   [(f'process_open_fds{{job="kurz",{I}}} / process_max_fds{{job="kurz",{I}}}', "{{instance}}")],
                   "percentunit", w=8, steps=[(None, "green"), (0.8, "red")]),
                ts("Open connections", "HTTP connections open on each instance, and those refused over KURZ_MAX_CONNECTIONS (per second).", [
                    (f"kurz_http_connections_open{{{I}}}", "{{instance}} open"),
                    (f"rate(kurz_http_connections_rejected_total{{{I}}}[{RI}])", "{{instance}} rejected/s"),
                ], "none", w=8),
                ts("Store calls in flight", "Store calls waiting for or holding a database connection.",
                   [(f"kurz_store_operations_in_flight{{{I}}}", "{{instance}}")], "none", w=8),
                ts("Threads", "OS threads of each instance.",
                   [(f'process_threads{{job="kurz",{I}}}', "{{instance}}")], "none", w=8),
            ]),
            ("Instances", [
                grid("Build and uptime", "Version and commit each instance runs (kurz_build_info).",
                     f"kurz_build_info{{{I}}}", w=12),
                ts("Uptime", "Seconds since each process started; a drop is a restart.",
                   [(f'time() - process_start_time_seconds{{job="kurz",{I}}}', "{{instance}}")], "s", w=12, h=6),
            ]),
        ],
    )


def cache():
    l1 = "kurz_cache_requests_total"
    l2 = "kurz_cache_l2_requests_total"
    return board(
        "kurz-cache",
        "kurz / Cache and Redis",
        "L1 (in-process) and L2 (Redis) link cache, and Redis itself.",
        [
            ("L1 (in-process)", [
                single("L1 hit ratio", "Hits / lookups of the in-process cache over the range's rate interval. Alert below 90%.",
                       f'{rate(l1, HIT)} / {rate(l1)}', "percentunit",
                       steps=[(None, "red"), (0.9, "green")]),
                single("L1 entries", "Links in the in-process caches of the selected instances.",
                       f"sum(kurz_cache_entries{{{I}}})", "none"),
                single("L1 evictions/s", "Entries evicted to make room (not invalidations).",
                       rate("kurz_cache_evictions_total"), "ops"),
                single("L2 hit ratio", "Hits / lookups of the Redis cache (only after an L1 miss).",
                       f'{rate(l2, HIT)} / {rate(l2)}', "percentunit"),
                ts("L1 hit ratio by instance", "Each instance's own L1 hit ratio (a cold cache after a restart shows here).",
                   [(f'{rate(l1, HIT, by="instance")} / {rate(l1, by="instance")}', "{{instance}}")],
                   "percentunit", steps=[(None, "red"), (0.9, "green")]),
                ts("L1 lookups/s", "Lookups by result.", [(rate(l1, by="result"), "{{result}}")], "ops", stacked=True),
                ts("L1 fill", "Entries / capacity (KURZ_CACHE_CAPACITY) of each instance.",
                   [(f"kurz_cache_entries{{{I}}} / kurz_cache_capacity{{{I}}}", "{{instance}}")], "percentunit"),
                ts("L1 evictions/s by instance", "Evictions for room: a steady rate means the capacity is too small for the hot set.",
                   [(rate("kurz_cache_evictions_total", by="instance"), "{{instance}}")], "ops"),
            ]),
            ("L2 (Redis)", [
                ts("L2 lookups/s", "Redis cache lookups by result (error = Redis did not answer).",
                   [(rate(l2, by="result"), "{{result}}")], "ops", stacked=True),
                ts("Redis command latency p99", "99th percentile of Redis command time by operation.",
                   [(quantile(0.99, "kurz_redis_command_duration_seconds", by="op"), "{{op}}")], "s"),
                ts("Redis errors/s", "Failed Redis commands per instance.",
                   [(rate("kurz_redis_errors_total", by="instance"), "{{instance}}")], "ops"),
                ts("Redis circuit open", "1 while an instance skips Redis after errors (alert after 2 minutes).",
                   [(f"kurz_redis_circuit_open{{{I}}}", "{{instance}}")], "none", steps=[(None, "green"), (1, "red")]),
            ]),
        ],
    )


def store():
    dur = "kurz_store_operation_duration_seconds"
    return board(
        "kurz-store",
        "kurz / Store and replicas",
        "Database calls, connection pools and PostgreSQL replica lag as kurz sees them.",
        [
            ("Operations", [
                ts("Store calls/s by operation", "Calls to the store by operation.",
                   [(rate(f"{dur}_count", by="op"), "{{op}}")], "ops", stacked=True),
                ts("Store errors/s", "Failed store calls by operation and kind (unavailable = no connection / database down).",
                   [(rate("kurz_store_errors_total", by="op, kind"), "{{op}} {{kind}}")], "ops"),
                ts("Store latency p99", "99th percentile duration of store calls by operation.",
                   [(quantile(0.99, dur, by="op"), "{{op}}")], "s"),
                ts("Store latency p50", "Median duration of store calls by operation.",
                   [(quantile(0.5, dur, by="op"), "{{op}}")], "s"),
                ts("503 answers/s", "Requests answered 503: the store could not be reached in time (or the request timed out).",
                   [(rate("kurz_http_requests_total", 'status="503"', by="instance"), "{{instance}}")], "reqps"),
                ts("Calls in flight", "Store calls waiting for or holding a connection.",
                   [(f"kurz_store_operations_in_flight{{{I}}}", "{{instance}}")], "none"),
            ]),
            ("Connection pools", [
                ts("Pool connections", "Connections by pool (primary, replicaN; SQLite: primary = writer, read = readers) and state.",
                   [(f"sum by (pool, state) (kurz_store_pool_connections{{{I}}})", "{{pool}} {{state}}")], "none"),
                ts("Pool usage", "In use / max for each instance's pools. Alert at 90% for 5 minutes.",
                   [(f'sum by (instance, pool) (kurz_store_pool_connections{{{I},state="in_use"}})'
                     f' / sum by (instance, pool) (kurz_store_pool_connections{{{I},state="max"}})', "{{instance}} {{pool}}")],
                   "percentunit", steps=[(None, "green"), (0.9, "red")]),
            ]),
            ("Replicas", [
                ts("Replica lag", "How far each PostgreSQL replica's replay is behind, measured by kurz every 10 s (-1 = unreachable). Alert above 5 s.",
                   [(f"kurz_store_replica_lag_seconds{{{I}}}", "{{instance}} {{pool}}")], "s", w=24,
                   steps=[(None, "green"), (5, "red")], min_zero=False),
            ]),
        ],
    )


def kgs():
    return board(
        "kurz-kgs",
        "kurz / Key generation",
        "Leased counter blocks (kurz's answer to the seed's key pool) and fallback codes.",
        [
            ("Pool", [
                single("Counter space left", "Counter values never leased (62^7 at the start), as read at the last lease. Alerts below 100K / 10K.",
                       f"min(kurz_kgs_space_left{{{I}}})", "short",
                       steps=[(None, "red"), (10000, "orange"), (100000, "green")]),
                single("Fallback codes (range)", "Random fallback codes issued in the dashboard's time range (no lease available). Alert on any.",
                       f"sum(increase(kurz_kgs_fallback_codes_total{{{I}}}[$__range]))", "short",
                       steps=[(None, "green"), (1, "red")]),
                single("Instances degraded", "Instances whose last lease attempt failed (kurz_kgs_degraded).",
                       f"sum(kurz_kgs_degraded{{{I}}})", "none", steps=[(None, "green"), (1, "red")]),
                single("Block size", "Counter values per lease (KURZ_KGS_BLOCK_SIZE).",
                       f"max(kurz_kgs_block_size{{{I}}})", "short"),
                ts("Codes left in the current lease", "Per instance; it leases a new block when this reaches 0.",
                   [(f"kurz_kgs_keys_left{{{I}}}", "{{instance}}")], "short"),
                ts("Degraded", "1 while an instance's last lease attempt failed.",
                   [(f"kurz_kgs_degraded{{{I}}}", "{{instance}}")], "none", steps=[(None, "green"), (1, "red")]),
            ]),
            ("Generation", [
                ts("Codes/s", "Codes handed out from leases, fallback codes, and links created.", [
                    (rate("kurz_kgs_codes_issued_total"), "from leases"),
                    (rate("kurz_kgs_fallback_codes_total"), "fallback"),
                    (rate("kurz_links_created_total"), "links created"),
                ], "ops"),
                ts("Leases/s", "Blocks leased from the store, and failed lease attempts.", [
                    (rate("kurz_kgs_leases_total"), "leases"),
                    (rate("kurz_kgs_lease_failures_total"), "failures"),
                ], "ops"),
            ]),
        ],
    )


def ratelimits():
    dec = "kurz_rate_limit_decisions_total"
    return board(
        "kurz-ratelimits",
        "kurz / Rate limits",
        "Rate-limit decisions by tier (anonymous, free, pro, enterprise, admin, redirect, auth_failure).",
        [
            ("Decisions", [
                ts("Decisions/s by tier", "Allowed and limited decisions by tier.",
                   [(rate(dec, by="tier, result"), "{{tier}} {{result}}")], "ops", w=24),
                ts("Limited share by tier", "Limited / all decisions of each tier.",
                   [(f'{rate(dec, LIMITED, by="tier")} / {rate(dec, by="tier")}', "{{tier}}")],
                   "percentunit"),
                ts("429 answers/s by route", "Requests answered 429 RATE_LIMIT_EXCEEDED.",
                   [(rate("kurz_http_requests_total", 'status="429"', by="route"), "{{route}}")], "reqps"),
                ts("Failed authentication limited/s", "Clients limited after failed authentication (credential guessing).",
                   [(rate(dec, 'tier="auth_failure",result="limited"', by="instance"), "{{instance}}")], "ops"),
                ts("401 answers/s", "Requests with a present but wrong credential.",
                   [(rate("kurz_http_requests_total", 'status="401"', by="route"), "{{route}}")], "reqps"),
            ]),
        ],
    )


def clicks():
    sink = "sink"
    return board(
        "kurz-clicks",
        "kurz / Click pipeline",
        "Click events from the redirect to the store (and Kafka): queue, batches, spool and lag.",
        [
            ("Flow", [
                single("Clicks written/s", "Click events committed by every sink.",
                       rate("kurz_click_events_written_total"), "ops"),
                single("Dropped (range)", "Click events lost in the time range (queue full and spool failing). Critical alert on any.",
                       f"sum(increase(kurz_click_events_dropped_total{{{I}}}[$__range]))", "short",
                       steps=[(None, "green"), (1, "red")]),
                single("Spool", "Bytes waiting in the local spools for a sink to come back.",
                       f"sum(kurz_click_spool_bytes{{{I}}})", "bytes", steps=[(None, "green"), (1, "orange")]),
                single("Click lag p99", "From a redirect to its click being committed (oldest click of each write). Alert above 60 s.",
                       quantile(0.99, "kurz_click_lag_seconds"), "s", steps=[(None, "green"), (60, "red")]),
                ts("Events/s", "Enqueued by redirects, written by each sink, and overflow (queue full, straight to the spool).", [
                    (rate("kurz_click_events_enqueued_total"), "enqueued"),
                    (rate("kurz_click_events_written_total", by=sink), "written {{sink}}"),
                    (rate("kurz_click_events_overflow_total"), "overflow"),
                ], "ops"),
                ts("Spool traffic/s", "Events spooled (sink failed), replayed from the spool, already written (replay duplicates skipped), dropped.", [
                    (rate("kurz_click_events_spooled_total", by=sink), "spooled {{sink}}"),
                    (rate("kurz_click_events_replayed_total", by=sink), "replayed {{sink}}"),
                    (rate("kurz_click_events_already_written_total", by=sink), "already written {{sink}}"),
                    (rate("kurz_click_events_dropped_total"), "dropped"),
                ], "ops"),
            ]),
            ("Backlog", [
                ts("Queue depth", "Click events in memory waiting for the next batch.",
                   [(f"kurz_click_queue_depth{{{I}}}", "{{instance}}")], "short", w=8),
                ts("Spool size", "Bytes in each instance's spool per sink. Alert when it grows for 10 minutes.",
                   [(f"kurz_click_spool_bytes{{{I}}}", "{{instance}} {{sink}}")], "bytes", w=8),
                ts("Corrupt spool records", "Unreadable spool records skipped (their clicks are lost).",
                   [(f"increase(kurz_click_spool_corrupt_records_total{{{I}}}[{RI}])", "{{instance}}")], "short", w=8),
            ]),
            ("Timing", [
                ts("Click lag", "p50 and p99 from redirect to stored, by sink.", [
                    (quantile(0.5, "kurz_click_lag_seconds", by=sink), "p50 {{sink}}"),
                    (quantile(0.99, "kurz_click_lag_seconds", by=sink), "p99 {{sink}}"),
                ], "s", steps=[(None, "green"), (60, "red")]),
                ts("Flush duration p99", "99th percentile time of one batch write, by sink.",
                   [(quantile(0.99, "kurz_click_flush_duration_seconds", by=sink), "{{sink}}")], "s"),
            ]),
        ],
    )


def business():
    return board(
        "kurz-business",
        "kurz / Business",
        "Links created, active links, clicks and where they come from.",
        [
            ("Links", [
                single("Active links", "Live links in the store (not deleted, active, not expired), counted every 5 minutes.",
                       f"max(kurz_links_active{{{I}}})", "short", w=8),
                single("Links created (range)", "Links created in the dashboard's time range.",
                       f"sum(increase(kurz_links_created_total{{{I}}}[$__range]))", "short", w=8),
                single("Clicks (range)", "Human clicks recorded in the dashboard's time range.",
                       f"sum(increase(kurz_clicks_total{{{I}}}[$__range]))", "short", w=8),
                ts("Links created/s", "New links per second (API and bulk).",
                   [(rate("kurz_links_created_total"), "created")], "ops"),
                ts("Redirects and clicks/s", "Redirects answered 301/302, and human clicks recorded.", [
                    (rate("kurz_http_requests_total", 'route="/{code}",status=~"301|302"'), "redirects"),
                    (rate("kurz_clicks_total"), "human clicks"),
                ], "ops"),
            ]),
            ("Geography", [
                bars("Top countries", "The 10 countries with most clicks in the time range (ISO 3166-1; 'unknown' = no country).",
                     f"topk(10, sum by (country) (increase(kurz_clicks_total{{{I}}}[$__range])))", "{{country}}", "short"),
                ts("Clicks/s by country (top 5)", "The five busiest countries over time.",
                   [(f"topk(5, {rate('kurz_clicks_total', by='country')})", "{{country}}")], "ops"),
            ]),
        ],
    )


BOARDS = {
    "kurz-overview.json": overview,
    "kurz-cache.json": cache,
    "kurz-store.json": store,
    "kurz-kgs.json": kgs,
    "kurz-ratelimits.json": ratelimits,
    "kurz-clicks.json": clicks,
    "kurz-business.json": business,
}


def render(build):
    return json.dumps(build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def main():
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "dashboards"
    out.mkdir(parents=True, exist_ok=True)
    for name, build in BOARDS.items():
        (out / name).write_text(render(build))
    print(f"wrote {len(BOARDS)} dashboards to {out}")


if __name__ == "__main__":
    main()
