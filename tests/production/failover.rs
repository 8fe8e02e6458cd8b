//! Failovers for real (seed tests C-02, C-03, C-05, and codes across a promotion):
//! PostgreSQL servers this file starts itself (`pg_servers`), killed with SIGKILL and
//! promoted with `pg_ctl promote`, as an orchestrator would; the network between two
//! "regions" is a `ChaosProxy` the test cuts. kurz is given the primary as a
//! libpq-style host list and finds the read-write host by itself.
//!
//! Each test prints one `FAILOVER-FIGURES scenario=…` line with what it measured
//! (docs/failover.md cites a run): how long redirects and creates failed, the
//! acknowledged writes and clicks lost, and what recovery needed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::pg_servers::{PgServer, pg_bin, query_one};
use crate::proxy::ChaosProxy;
use crate::support;

/// A kurz instance on `db` (one URL or a host list), reading `read_urls`, with a
/// Redis prefix of its own on `redis`. Short timeouts: a dead server is seen fast.
async fn instance(db: &str, read_urls: Vec<String>, redis: Option<&str>) -> TestApp {
    static N: AtomicU64 = AtomicU64::new(0);
    let (mut config, _, dir) = test_config().await;
    config.database.url = db.to_owned();
    config.database.read_urls = read_urls;
    config.database.auto_migrate = Some(true);
    config.database.max_connections = 8;
    config.database.min_connections = 0;
    config.database.acquire_timeout_ms = 500;
    config.redis.url = redis.map(|r| r.parse().unwrap());
    config.redis.prefix = format!(
        "kurz-failover-{}-{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    config.analytics.sink_timeout_secs = 2;
    // Small blocks: leases happen during the test, across the failover.
    config.keys.block_size = 10;
    start(config, Backend::Postgres(db.to_owned()), dir).await
}

/// `postgres://kurz@h1,h2/db?target_session_attrs=read-write` for database `db`.
fn host_list(hosts: &[std::net::SocketAddr], db: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    format!(
        "postgres://kurz@{}/{db}?target_session_attrs=read-write",
        hosts.join(",")
    )
}

fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}

/// The PostgreSQL programs, once the test script's servers are known to run (so a
/// run by hand without the script skips, and CI fails rather than skips).
fn programs() -> Option<std::path::PathBuf> {
    support::server("KURZ_TEST_PG")?;
    Some(pg_bin().expect("PostgreSQL programs under /usr/lib/postgresql"))
}

/// What one instance answered while a fault was under way.
#[derive(Default)]
struct Tally {
    redirects: u64,
    redirects_failed: u64,
    /// Every create that answered 201: (code, target).
    acked: Vec<(String, String)>,
    creates_failed: u64,
    n: u64,
}

impl Tally {
    /// Redirects every link in `links` (each must 302 to its target) and makes one create.
    async fn round(&mut self, app: &TestApp, links: &[(String, String)], tag: &str) {
        for (code, target) in links {
            let res = app.get(&format!("/{code}"), None).await;
            self.redirects += 1;
            if res.status() != 302 || location(&res) != *target {
                self.redirects_failed += 1;
            }
        }
        self.create(app, tag).await;
    }

    async fn create(&mut self, app: &TestApp, tag: &str) -> bool {
        self.n += 1;
        let target = format!("https://example.com/{tag}/{}", self.n);
        let res = app
            .create(Some(ADMIN_KEY), &json!({ "original_url": target }))
            .await;
        if res.status() == 201 {
            self.acked.push((short_code(res).await, target));
            true
        } else {
            assert_eq!(res.status(), 503, "a create fails only as unavailable");
            self.creates_failed += 1;
            false
        }
    }
}

/// How many of `codes` the database at `url` holds.
async fn present(url: &str, codes: &[&str]) -> i64 {
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT count(*) FROM links WHERE code = ANY($1)")
        .bind(codes)
        .fetch_one(&mut c)
        .await
        .unwrap()
}

/// Clicks stored in the database at `url`, once the number has stopped moving for
/// a few seconds (spooled clicks are replayed every second).
async fn settled_clicks(url: &str, expected: u64) -> u64 {
    let count = async || -> i64 {
        query_one::<Option<i64>>(url, "SELECT sum(click_count)::int8 FROM links")
            .await
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut since) = (-1, Instant::now());
    loop {
        let now = count().await;
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if now as u64 == expected || since.elapsed() > Duration::from_secs(4) || Instant::now() > deadline {
            return now as u64;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn c02_postgres_failover(sync: bool) {
    let Some(bin) = programs() else { return };
    let Some(redis) = support::server("KURZ_TEST_REDIS") else {
        return;
    };
    let mode = if sync { "sync" } else { "async" };
    let primary = PgServer::primary(&bin, "c02-primary");
    let replica = Arc::new(primary.replica_of(primary.addr(), "c02-replica"));
    if sync {
        primary.synchronous().await;
    }
    let db = support::fresh_pg_database(&primary.url("postgres")).await;
    let url = host_list(&[primary.addr(), replica.addr()], db_name(&db));
    let app = instance(&url, vec![], Some(&redis)).await;
    let mut links = Vec::new();
    for i in 0..20 {
        let target = format!("https://example.com/c02/{i}");
        let code = app.create_code(&target).await;
        assert_eq!(location(&app.get(&format!("/{code}"), None).await), target);
        links.push((code, target));
    }
    let mut tally = Tally {
        redirects: links.len() as u64,
        ..Tally::default()
    };
    // The pipeline is running (its user-agent rules compiled, a first write done)
    // before the fault, so the clicks of the switch meet a failing store.
    support::wait_for(
        "the first clicks written",
        Duration::from_millis(50),
        async || {
            let m = app.get("/metrics", None).await.text().await.unwrap();
            metric(&m, "kurz_click_events_written_total{sink=\"store\"}") >= links.len() as f64
        },
    )
    .await;

    // Traffic; the primary is killed after 1 s and the replica promoted 0.5 s later,
    // as an orchestrator would once it has seen the primary gone.
    let t0 = Instant::now();
    let (mut killed, mut promote, mut promoting) = (None, None, false);
    let mut promoted_at: Option<Instant> = None;
    let mut back_at: Option<Instant> = None;
    loop {
        let t = t0.elapsed();
        if killed.is_none() && t >= Duration::from_secs(1) {
            primary.kill();
            killed = Some(Instant::now());
        }
        if !promoting && t >= Duration::from_millis(1500) {
            promoting = true;
            let r = replica.clone();
            promote = Some(tokio::task::spawn_blocking(move || {
                r.promote();
                Instant::now()
            }));
        }
        if promoted_at.is_none() && promote.as_ref().is_some_and(|p| p.is_finished()) {
            promoted_at = Some(promote.take().unwrap().await.unwrap());
        }
        let failed_before = tally.creates_failed;
        tally.round(&app, &links, &format!("c02-{mode}")).await;
        if killed.is_some() && tally.creates_failed == failed_before {
            back_at.get_or_insert(Instant::now());
        } else {
            back_at = None;
        }
        // Done once creates have worked for a second after the promotion.
        if promoted_at.is_some() && back_at.is_some_and(|b| b.elapsed() > Duration::from_secs(1)) {
            break;
        }
        assert!(t < Duration::from_secs(30), "creates never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(tally.redirects_failed, 0, "cached redirects answered throughout");
    let new_primary = replica.url(db_name(&db));
    let codes: Vec<&str> = tally.acked.iter().map(|(c, _)| c.as_str()).collect();
    let distinct: HashSet<&str> = codes.iter().copied().collect();
    assert_eq!(distinct.len(), codes.len(), "a code issued twice");
    let lost = codes.len() as i64 - present(&new_primary, &codes).await;
    let clicks = settled_clicks(&new_primary, tally.redirects).await;
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let spooled = metric(&metrics, "kurz_click_events_spooled_total{sink=\"store\"}");
    assert_eq!(metric(&metrics, "kurz_click_events_dropped_total"), 0.0);
    assert!(metric(&metrics, "kurz_database_primary_switches_total") >= 1.0);
    println!(
        "FAILOVER-FIGURES scenario=C-02-{mode} redirects_failed_ms=0 creates_failed_ms={} \
         acked_writes_lost={lost} clicks_lost={} recovery=one-command(pg_ctl-promote) \
         creates_ok_after_promote_ms={} redirects={} creates_acked={} creates_503={} clicks_spooled={spooled}",
        // From the kill, and from the promotion, to the first create that succeeded.
        back_at.map_or(0, |b| b.saturating_duration_since(killed.unwrap()).as_millis()),
        tally.redirects as i64 - clicks as i64,
        back_at.map_or(0, |b| b
            .saturating_duration_since(promoted_at.unwrap())
            .as_millis()),
        tally.redirects,
        tally.acked.len(),
        tally.creates_failed,
    );
    if sync {
        assert_eq!(lost, 0, "synchronous replication loses no acknowledged create");
        assert_eq!(clicks, tally.redirects, "every click counted exactly once");
        assert!(spooled > 0.0, "clicks were spooled during the switch");
    } else {
        assert!(clicks <= tally.redirects, "a click counted twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c02_postgres_primary_killed_replica_promoted_synchronous_loses_nothing() {
    c02_postgres_failover(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c02_postgres_primary_killed_replica_promoted_asynchronous_reports_losses() {
    c02_postgres_failover(false).await;
}

/// Two regions: A's PostgreSQL primary, B's a streaming replica of it through the
/// inter-region link (a proxy the test can cut).
struct Regions {
    a: PgServer,
    link: ChaosProxy,
    b: Arc<PgServer>,
    db: String,
}

async fn two_regions(bin: &std::path::Path, name: &str) -> Regions {
    let a = PgServer::primary(bin, &format!("{name}-a"));
    let link = ChaosProxy::start(a.addr()).await;
    let b = Arc::new(a.replica_of(link.addr, &format!("{name}-b")));
    let db = db_name(&support::fresh_pg_database(&a.url("postgres")).await).to_owned();
    Regions { a, link, b, db }
}

impl Regions {
    /// Region B's view of the primary: A across the link, then its own server.
    fn b_primary(&self) -> String {
        host_list(&[self.link.addr, self.b.addr()], &self.db)
    }
}

/// C-03: region A goes down whole (its PostgreSQL primary, its Redis, its kurz).
/// Region B serves every link created before from its replica at once, refuses
/// creates until an operator promotes its replica, then serves creates without a
/// restart. Replication is asynchronous: the links lost (RPO) are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c03_region_a_lost_region_b_serves_then_is_promoted() {
    let Some(bin) = programs() else { return };
    let Some(redis_server) = support::server("KURZ_TEST_REDIS_SERVER") else {
        return;
    };
    let r = two_regions(&bin, "c03").await;
    let dir = tempfile::tempdir().unwrap();
    let redis_a = crate::cluster::start_node(&redis_server, dir.path(), 0, false);
    let redis_b = crate::cluster::start_node(&redis_server, dir.path(), 1, false);
    let redis = |p: u16| format!("redis://127.0.0.1:{p}");
    let a1 = instance(&r.a.url(&r.db), vec![], Some(&redis(redis_a.port))).await;
    let b1 = instance(&r.b_primary(), vec![r.b.url(&r.db)], Some(&redis(redis_b.port))).await;
    let mut before = Tally::default();
    for _ in 0..60 {
        assert!(before.create(&a1, "c03-a").await);
    }
    for _ in 0..20 {
        assert!(before.create(&b1, "c03-b").await);
    }
    // Some links are in B's cache, most are not.
    for (code, _) in before.acked.iter().step_by(4) {
        assert_eq!(b1.get(&format!("/{code}"), None).await.status(), 302);
    }

    // Region A is lost: no goodbye from any of its parts.
    let outage = Instant::now();
    r.a.kill();
    drop(redis_a);
    drop(a1);
    let mut served = 0;
    let mut failed = Vec::new();
    for (code, target) in &before.acked {
        let res = b1.get(&format!("/{code}"), None).await;
        if res.status() == 302 && location(&res) == *target {
            served += 1;
        } else {
            failed.push((code.clone(), res.status().as_u16()));
        }
    }
    let served_all_ms = outage.elapsed().as_millis();
    let mut after = Tally::default();
    assert!(
        !after.create(&b1, "c03-b-before-promotion").await,
        "B has no primary yet"
    );

    // The operator (or the orchestrator) promotes B: one command.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = r.b.clone();
    tokio::task::spawn_blocking(move || b.promote()).await.unwrap();
    let promoted = Instant::now();
    while !after.create(&b1, "c03-b-after").await {
        assert!(
            promoted.elapsed() < Duration::from_secs(20),
            "B never took creates"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered = outage.elapsed();
    let after_promotion = promoted.elapsed();
    for _ in 0..30 {
        assert!(after.create(&b1, "c03-b-after").await);
    }
    let old: HashSet<&str> = before.acked.iter().map(|(c, _)| c.as_str()).collect();
    for (code, _) in &after.acked {
        assert!(
            !old.contains(code.as_str()),
            "{code} issued again after the promotion"
        );
    }
    // Every link B has still redirects, old and new.
    for (code, target) in before.acked.iter().chain(&after.acked) {
        let res = b1.get(&format!("/{code}"), None).await;
        if !failed.iter().any(|(c, _)| c == code) {
            assert_eq!(location(&res), *target);
        }
    }
    let codes: Vec<&str> = before.acked.iter().map(|(c, _)| c.as_str()).collect();
    let lost = codes.len() as i64 - present(&r.b.url(&r.db), &codes).await;
    assert_eq!(
        failed.len() as i64,
        lost,
        "B served every link its replica had: {failed:?}"
    );
    println!(
        "FAILOVER-FIGURES scenario=C-03 redirects_failed_ms=0 creates_failed_ms={} acked_writes_lost={lost} \
         clicks_lost=n/a recovery=one-command(pg_ctl-promote) served_all_old_links_ms={served_all_ms} \
         links_served={served}/{} creates_ok_after_promote_ms={}",
        recovered.as_millis(),
        codes.len(),
        after_promotion.as_millis()
    );
}

/// Codes across a promotion that lost leases: the link between the servers is cut,
/// so the leases (and links) granted by the primary meanwhile never reach the
/// replica; the primary dies and the replica is promoted. The new primary sees a new
/// server history at its first lease and skips the counter ahead: no code issued
/// before the failover is issued again (without the skip, the codes granted during
/// the cut came out a second time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_code_is_issued_twice_across_a_promotion_that_lost_leases() {
    let Some(bin) = programs() else { return };
    let r = two_regions(&bin, "codes").await;
    let app = instance(&host_list(&[r.a.addr(), r.b.addr()], &r.db), vec![], None).await;
    let mut before = Tally::default();
    for _ in 0..20 {
        assert!(before.create(&app, "codes-before").await);
    }
    r.b.caught_up_with(&r.a).await;
    r.link.cut();
    for _ in 0..35 {
        assert!(before.create(&app, "codes-during-cut").await);
    }
    r.a.kill();
    let b = r.b.clone();
    tokio::task::spawn_blocking(move || b.promote()).await.unwrap();
    let mut after = Tally::default();
    let promoted = Instant::now();
    while after.acked.len() < 60 {
        if !after.create(&app, "codes-after").await {
            assert!(
                promoted.elapsed() < Duration::from_secs(20),
                "creates never came back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let old: HashSet<&str> = before.acked.iter().map(|(c, _)| c.as_str()).collect();
    let mut all = old.clone();
    for (code, _) in &after.acked {
        assert!(
            !old.contains(code.as_str()),
            "{code} was issued before the failover"
        );
        assert!(all.insert(code), "{code} issued twice after the failover");
    }
    let codes: Vec<&str> = old.iter().copied().collect();
    let lost = codes.len() as i64 - present(&r.b.url(&r.db), &codes).await;
    assert!(lost >= 30, "the links created during the cut are lost: {lost}");
    let counter: i64 = query_one(&r.b.url(&r.db), "SELECT next_value FROM kgs_counter").await;
    assert!(counter >= 100_000_000, "the counter skipped ahead: {counter}");
    println!(
        "FAILOVER-FIGURES scenario=codes-across-promotion acked_writes_lost={lost} codes_reissued=0 \
         codes_before={} codes_after={} counter_after={counter}",
        before.acked.len(),
        after.acked.len()
    );
}

/// C-05: the network between the regions is cut. Region B cannot reach the primary:
/// its creates answer 503 (never 201), its redirects keep working from its cache and
/// its replica; region A goes on. When the cut heals, B takes creates again, and no
/// code was issued twice across both regions (every code checked on both sides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c05_split_brain_the_side_without_the_primary_refuses_writes() {
    let Some(bin) = programs() else { return };
    let Some(redis) = support::server("KURZ_TEST_REDIS") else {
        return;
    };
    let r = two_regions(&bin, "c05").await;
    let a1 = instance(&r.a.url(&r.db), vec![], Some(&redis)).await;
    let b1 = instance(&r.b_primary(), vec![r.b.url(&r.db)], Some(&redis)).await;
    let (mut on_a, mut on_b) = (Tally::default(), Tally::default());
    for _ in 0..20 {
        assert!(on_a.create(&a1, "c05-a").await);
    }
    for _ in 0..10 {
        assert!(on_b.create(&b1, "c05-b").await);
    }
    r.b.caught_up_with(&r.a).await;
    // B caches its own links and half of A's; the rest it must read from its replica.
    let links: Vec<(String, String)> = on_a.acked.iter().chain(&on_b.acked).cloned().collect();
    for (code, _) in on_b.acked.iter().chain(on_a.acked.iter().step_by(2)) {
        assert_eq!(b1.get(&format!("/{code}"), None).await.status(), 302);
    }

    r.link.cut();
    let cut = Instant::now();
    let (b_acked, a_acked) = (on_b.acked.len(), on_a.acked.len());
    let mut b_during = Tally::default();
    while cut.elapsed() < Duration::from_secs(3) {
        b_during.round(&b1, &links, "c05-b-cut").await;
        assert!(on_a.create(&a1, "c05-a-cut").await, "A keeps its primary");
    }
    assert_eq!(b_during.redirects_failed, 0, "B's redirects work during the cut");
    assert!(
        b_during.acked.is_empty(),
        "B accepted a write without the primary"
    );
    r.link.restore();
    let healed = Instant::now();
    let cut_ms = (healed - cut).as_millis();
    while !on_b.create(&b1, "c05-b-healed").await {
        assert!(
            healed.elapsed() < Duration::from_secs(20),
            "B never took creates again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b_back_ms = healed.elapsed().as_millis();
    for _ in 0..10 {
        assert!(on_a.create(&a1, "c05-a-after").await);
        assert!(on_b.create(&b1, "c05-b-after").await);
    }
    assert_eq!(on_b.acked.len(), b_acked + 11);
    assert!(on_a.acked.len() > a_acked);

    // Every code, from both regions, once; each redirects to its own target on both.
    r.b.caught_up_with(&r.a).await;
    let mut seen = HashSet::new();
    for (code, target) in on_a.acked.iter().chain(&on_b.acked) {
        assert!(seen.insert(code.clone()), "{code} issued twice");
        assert_eq!(location(&a1.get(&format!("/{code}"), None).await), *target);
        assert_eq!(location(&b1.get(&format!("/{code}"), None).await), *target);
    }
    println!(
        "FAILOVER-FIGURES scenario=C-05 redirects_failed_ms=0 creates_failed_ms={} acked_writes_lost=0 \
         clicks_lost=n/a recovery=automatic b_creates_503={} b_creates_ok_after_heal_ms={b_back_ms} \
         codes_checked={}",
        cut_ms + b_back_ms,
        b_during.creates_failed,
        seen.len()
    );
}
