//! Click analytics end to end (DESIGN.md §5): real redirects through a real server,
//! counted by the real pipeline into the real store, read back through the stats API.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
const WIN_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const MAC_FIREFOX: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// (user agent, device, browser, os, is bot)
const AGENTS: [(&str, &str, &str, &str, bool); 5] = [
    (IPHONE, "mobile", "Mobile Safari", "iOS", false),
    (IPAD, "tablet", "Mobile Safari", "iOS", false),
    (WIN_CHROME, "desktop", "Chrome", "Windows", false),
    (MAC_FIREFOX, "desktop", "Firefox", "Mac OS X", false),
    (GOOGLEBOT, "other", "Googlebot", "Other", true),
];
/// (Referer header, expected source)
const REFERRERS: [(Option<&str>, &str); 3] = [
    (None, "direct"),
    (Some("https://twitter.com/someone/status/1"), "twitter.com"),
    (
        Some("https://news.ycombinator.com/item?id=1"),
        "news.ycombinator.com",
    ),
];
const COUNTRIES: [&str; 4] = ["DE", "US", "FR", "US"];

/// Polls the stats until `done` says so, or fails after 20 s.
pub async fn stats_when(app: &TestApp, code: &str, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = app
            .get(&format!("/api/v1/urls/{code}/stats?{query}"), Some(ADMIN_KEY))
            .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "stats never got there: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn counts(list: &Value, key: &str) -> BTreeMap<String, u64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| (e[key].as_str().unwrap().to_owned(), e["clicks"].as_u64().unwrap()))
        .collect()
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    *map.entry(key.to_owned()).or_default() += 1;
}

#[tokio::test]
async fn f07_stats_count_a_known_click_mix_exactly() {
    let app = spawn_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let code = app.create_code("https://example.com/f07").await;

    // N = 60 clicks from K = 6 client IPs (given by the trusted proxy), with known
    // user agents, referrers and countries; the expected figures are counted as the
    // clicks are made.
    let (n, k) = (60, 6);
    let mut humans = 0u64;
    let mut bots = 0u64;
    let mut visitors = BTreeSet::new();
    let (mut devices, mut browsers, mut oses, mut sources, mut countries) = (
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
    );
    let hour = |t: chrono::DateTime<chrono::Utc>| {
        chrono::DurationRound::duration_trunc(t, chrono::Duration::hours(1)).unwrap()
    };
    let first_hour = hour(chrono::Utc::now());
    for i in 0..n {
        let (ua, device, browser, os, is_bot) = AGENTS[i % AGENTS.len()];
        let (referer, source) = REFERRERS[i % REFERRERS.len()];
        let country = COUNTRIES[i % COUNTRIES.len()];
        let ip = format!("192.0.2.{}", 10 + i % k);
        let mut req = app
            .client
            .get(app.url(&format!("/{code}")))
            .header("User-Agent", ua)
            .header("X-Forwarded-For", &ip)
            .header("CF-IPCountry", country);
        if let Some(r) = referer {
            req = req.header("Referer", r);
        }
        assert_eq!(req.send().await.unwrap().status(), 302);
        if is_bot {
            bots += 1;
            continue;
        }
        humans += 1;
        visitors.insert(ip);
        bump(&mut devices, device);
        bump(&mut browsers, browser);
        bump(&mut oses, os);
        bump(&mut sources, source);
        bump(&mut countries, country);
    }
    let last_hour = hour(chrono::Utc::now());
    // HEAD checks the link without being a click.
    let head = app
        .client
        .head(app.url(&format!("/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 302);

    let s = stats_when(&app, &code, "", |s| {
        s["total_clicks"].as_u64().unwrap() + s["bots"].as_u64().unwrap() >= n as u64
    })
    .await;
    assert_eq!(s["total_clicks"], humans, "{s}");
    assert_eq!(s["bots"], bots);
    assert_eq!(s["unique_visitors"], visitors.len() as u64);
    assert_eq!(counts(&s["geographic"], "country"), countries);
    assert_eq!(counts(&s["referrers"], "source"), sources);
    assert_eq!(counts(&s["browsers"], "name"), browsers);
    assert_eq!(counts(&s["operating_systems"], "name"), oses);
    for d in ["mobile", "desktop", "tablet", "other"] {
        assert_eq!(s["devices"][d], devices.get(d).copied().unwrap_or(0), "{d}");
    }
    let series: u64 = s["time_series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["clicks"].as_u64().unwrap())
        .sum();
    assert_eq!(series, humans);
    // Sorted by clicks: US (2 of every 4) leads.
    assert_eq!(s["geographic"][0]["country"], "US");

    // Hourly: all of it in the buckets of the hours the clicks were made in (one, or
    // two if an hour began meanwhile), zeros before them. Checking only the last
    // bucket failed when the query ran in the hour after the clicks.
    let s = stats_when(&app, &code, "granularity=hour", |_| true).await;
    let series = s["time_series"].as_array().unwrap();
    let hour_of = |b: &Value| {
        chrono::DateTime::parse_from_rfc3339(b["timestamp"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    assert_eq!(
        series.iter().map(|b| b["clicks"].as_u64().unwrap()).sum::<u64>(),
        humans
    );
    assert!(
        series
            .iter()
            .filter(|b| b["clicks"] != 0)
            .all(|b| hour_of(b) >= first_hour && hour_of(b) <= last_hour),
        "{series:?}"
    );

    // Info: every redirect in click_count (bots too), humans in the summary.
    let info: Value = app
        .get(&format!("/api/v1/urls/{code}"), Some(ADMIN_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["click_count"], n as u64, "{info}");
    assert!(info["last_accessed_at"].is_string());
    assert_eq!(info["analytics"]["clicks_24h"], humans);
    assert_eq!(info["analytics"]["clicks_7d"], humans);
    assert_eq!(info["analytics"]["top_countries"][0]["country"], "US");
    assert_eq!(info["analytics"]["top_countries"].as_array().unwrap().len(), 3);

    // The raw events are there too, with the IP only as a hash.
    assert_eq!(app.count("SELECT COUNT(*) FROM click_events").await, n as i64);
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT visitor_hash) FROM click_events")
            .await,
        k as i64
    );
    if let Backend::Sqlite(path) = &app.backend {
        let mut bytes = std::fs::read(path).unwrap();
        bytes.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
        let needle = b"192.0.2.1";
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "a raw IP was written to the database"
        );
    }
}

#[tokio::test]
async fn stats_before_any_click_are_zeros_and_other_links_do_not_leak_in() {
    let app = spawn_app().await;
    let a = app.create_code("https://example.com/a").await;
    let b = app.create_code("https://example.com/b").await;
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/{a}"), None).await.status(), 302);
    }
    stats_when(&app, &a, "", |s| s["total_clicks"] == 3).await;
    let s = stats_when(&app, &b, "", |_| true).await;
    assert_eq!(s["total_clicks"], 0);
    assert_eq!(s["unique_visitors"], 0);
    assert_eq!(s["geographic"], serde_json::json!([]));
    // A range that ends before the clicks does not see them.
    let s = stats_when(&app, &a, "start_date=2026-01-01&end_date=2026-01-02", |_| true).await;
    assert_eq!(s["total_clicks"], 0);
}

#[tokio::test]
async fn geoip_country_and_city_come_from_the_mmdb_and_cf_ipcountry_fills_gaps() {
    let app = spawn_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.analytics.geoip_db =
            Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/geoip-test.mmdb").into());
    })
    .await;
    let code = app.create_code("https://example.com/geo").await;
    // (client IP, CF-IPCountry sent by the proxy)
    let clicks = [
        ("203.0.113.5", Some("US")), // in the database (flat shape): NZ, header ignored
        ("203.0.113.6", None),       // NZ
        ("198.51.100.7", None),      // GeoIP2 shape: JP, Osaka
        ("2001:db8::1", None),       // IPv6: CH
        ("192.0.2.1", Some("BR")),   // not in the database: the trusted header
        ("192.0.2.2", None),         // neither: unknown
    ];
    for (ip, cf) in clicks {
        let mut req = app
            .client
            .get(app.url(&format!("/{code}")))
            .header("User-Agent", WIN_CHROME)
            .header("X-Forwarded-For", ip);
        if let Some(c) = cf {
            req = req.header("CF-IPCountry", c);
        }
        assert_eq!(req.send().await.unwrap().status(), 302);
    }
    let s = stats_when(&app, &code, "", |s| s["total_clicks"] == 6).await;
    let expected: BTreeMap<String, u64> = [("NZ", 2), ("JP", 1), ("CH", 1), ("BR", 1), ("unknown", 1)]
        .into_iter()
        .map(|(c, n)| (c.to_owned(), n))
        .collect();
    assert_eq!(counts(&s["geographic"], "country"), expected);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM click_events WHERE city = 'Osaka'")
            .await,
        1
    );
}

#[tokio::test]
async fn cf_ipcountry_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app().await;
    let code = app.create_code("https://example.com/cf").await;
    let res = app
        .client
        .get(app.url(&format!("/{code}")))
        .header("CF-IPCountry", "DE")
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let s = stats_when(&app, &code, "", |s| s["total_clicks"] == 1).await;
    assert_eq!(s["geographic"][0]["country"], "unknown");
    // The visitor is the peer, not the forged header.
    assert_eq!(app.count("SELECT COUNT(*) FROM click_events").await, 1);
}

#[tokio::test]
async fn analytics_off_records_nothing_and_redirects_still_work() {
    let app = spawn_with(|c| c.analytics.enabled = false).await;
    let code = app.create_code("https://example.com/off").await;
    assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = stats_when(&app, &code, "", |_| true).await;
    assert_eq!(s["total_clicks"], 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM click_events").await, 0);
}

/// C-07 adapted: a sudden spike (64 clients at once against a queue of 8 clicks and
/// a flush every 2 s). Every redirect is answered 302, the queue never holds more than
/// its bound, clicks that find it full are spooled from the request (the overflow
/// counter shows they did), and afterwards every click is counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c07_traffic_spike_overflows_the_queue_into_the_spool_and_loses_nothing() {
    let app = spawn_with(|c| {
        c.analytics.queue = 8;
        c.analytics.batch = 1_000;
        c.analytics.flush_ms = 2_000;
    })
    .await;
    let code = app.create_code("https://example.com/spike").await;
    let (clients, each) = (64_u64, 40_u64);
    let mut spike = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url) = (app.client.clone(), app.url(&format!("/{code}")));
        spike.spawn(async move {
            let mut answered = BTreeMap::<u16, u64>::new();
            for _ in 0..each {
                let status = client.get(&url).send().await.unwrap().status().as_u16();
                *answered.entry(status).or_default() += 1;
            }
            answered
        });
    }
    let mut answered = BTreeMap::<u16, u64>::new();
    while let Some(done) = spike.join_next().await {
        for (status, n) in done.unwrap() {
            *answered.entry(status).or_default() += n;
        }
    }
    let total = clients * each;
    assert_eq!(
        answered,
        BTreeMap::from([(302, total)]),
        "every redirect answered"
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metric(&metrics, "kurz_click_events_overflow_total") > 0.0,
        "the spike never filled the queue: {metrics}"
    );
    assert!(metric(&metrics, "kurz_click_queue_depth") <= 8.0);
    let s = stats_when(&app, &code, "", |s| s["total_clicks"].as_u64().unwrap() >= total).await;
    assert_eq!(s["total_clicks"], total, "each click exactly once");
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(metric(&metrics, "kurz_click_events_dropped_total"), 0.0);
}

/// C-08 adapted: the sink is slow (another connection holds the write lock on the
/// click tables for 3 s). The queue stays within its bound, every redirect is
/// answered quickly, and afterwards every click is counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c08_slow_sink_keeps_the_queue_bounded_and_loses_nothing() {
    let app = spawn_with(|c| {
        c.analytics.queue = 16;
        c.analytics.batch = 8;
        c.analytics.sink_timeout_secs = 1;
    })
    .await;
    let code = app.create_code("https://example.com/slow").await;
    assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
    stats_when(&app, &code, "", |s| s["total_clicks"] == 1).await;

    let lock = app.hold_write_lock(Duration::from_secs(3)).await;
    let mut slowest = Duration::ZERO;
    let total = 300;
    for _ in 0..total {
        let started = Instant::now();
        assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
        slowest = slowest.max(started.elapsed());
    }
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    lock.await.unwrap();
    assert!(
        slowest < Duration::from_millis(500),
        "a redirect waited {slowest:?} for the sink"
    );
    assert!(
        metric(&metrics, "kurz_click_events_spooled_total{sink=\"store\"}") > 0.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "kurz_click_queue_depth") <= 16.0);
    let s = stats_when(&app, &code, "", |s| s["total_clicks"].as_u64().unwrap() > total).await;
    assert_eq!(s["total_clicks"], total + 1, "each click exactly once");
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(metric(&metrics, "kurz_click_events_dropped_total"), 0.0);
}
