//! The store contract, checked against every backend with the same tests.
//!
//! Each backend provides a `fresh()` store (a new, migrated database) and runs the
//! `conformance!` suite. A new backend passes this file unchanged or it is not done.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{Duration, DurationRound, SubsecRound, Utc};
use kurz::analytics::click_writer::ClickWriter;
use kurz::analytics::event::{ClickEvent, Device};
use kurz::analytics::port::ClickStore;
use kurz::analytics::{batch, plan, rows};
use kurz::domain::{Metadata, RedirectType, ShortCode, TargetUrl, Tier};
use kurz::store::{
    IdempotencyClaim, LinkPatch, LinkStore, ListQuery, NewLink, NewUser, PgStore, PoolBounds, StoreError,
};

#[path = "support/mod.rs"]
mod support;

/// A backend under test through both of its ports: the link store (what `Deref`
/// gives), and the click store, written through the one click writer as the
/// pipeline writes it.
#[derive(Clone)]
pub struct Backend {
    links: Arc<dyn LinkStore>,
    clicks: Arc<dyn ClickStore>,
    writer: Arc<ClickWriter>,
}

impl Backend {
    fn of<S: LinkStore + ClickStore>(store: S) -> Self {
        let store = Arc::new(store);
        Self {
            links: store.clone(),
            clicks: store.clone(),
            writer: Arc::new(ClickWriter::new(store, true)),
        }
    }
}

impl AsRef<dyn LinkStore> for Backend {
    fn as_ref(&self) -> &dyn LinkStore {
        self.links.as_ref()
    }
}

impl std::ops::Deref for Backend {
    type Target = dyn LinkStore;
    fn deref(&self) -> &Self::Target {
        self.links.as_ref()
    }
}

fn new_link(code: &str, url: &str, owner: Option<i64>) -> NewLink {
    NewLink {
        code: ShortCode::parse(code).unwrap(),
        original_url: TargetUrl::parse(url, None).unwrap(),
        owner_id: owner,
        created_at: Utc::now().trunc_subsecs(3),
        expires_at: None,
        redirect_type: RedirectType::Temporary,
        metadata: Metadata::from_json(serde_json::json!({ "campaign": "c" })).unwrap(),
    }
}

async fn user(store: &dyn LinkStore, email: &str) -> i64 {
    store
        .create_user(&NewUser {
            email: email.into(),
            tier: Tier::Free,
            api_key_hash: format!("hash-of-{email}"),
        })
        .await
        .unwrap()
        .id
}

pub async fn insert_then_get_round_trips(store: Backend) {
    let owner = user(store.as_ref(), "o@example.com").await;
    let mut l = new_link("abc1234", "https://example.com/x", Some(owner));
    l.expires_at = Some(Utc::now().trunc_subsecs(3) + Duration::days(1));
    l.redirect_type = RedirectType::Permanent;
    let created = store
        .insert_links(std::slice::from_ref(&l))
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    let got = store.get_link("abc1234").await.unwrap().unwrap();
    assert_eq!(got, created);
    assert_eq!(got.original_url.as_str(), "https://example.com/x");
    assert_eq!(got.owner_id, Some(owner));
    assert_eq!(got.expires_at, l.expires_at);
    assert_eq!(got.created_at, l.created_at);
    assert_eq!(got.redirect_type, RedirectType::Permanent);
    assert_eq!(got.metadata, l.metadata);
    assert!(got.is_active);
    assert_eq!(got.click_count, 0);
    assert!(store.get_link("nope123").await.unwrap().is_none());
}

/// The cache's refresh keeps a hot link without reading it again while the links
/// version stands still, so every change and delete must move it, and a create (the
/// busiest write) need not. A backend that keeps none says so every time.
pub async fn the_links_version_moves_with_every_change_and_delete(store: Backend) {
    let Some(start) = store.links_version().await.unwrap() else {
        store
            .insert_links(&[new_link("ver0001", "https://example.com/v", None)])
            .await
            .unwrap();
        assert_eq!(store.links_version().await.unwrap(), None);
        return;
    };
    let links = [
        new_link("ver0001", "https://example.com/v1", None),
        new_link("ver0002", "https://example.com/v2", None),
    ];
    store.insert_links(&links).await.unwrap();
    let created = store.links_version().await.unwrap().unwrap();
    assert_eq!(created, start, "a create leaves the version");
    let patch = LinkPatch {
        original_url: Some(TargetUrl::from_trusted("https://example.com/v1b".into())),
        expires_at: None,
        is_active: None,
        redirect_type: None,
        metadata: None,
    };
    store.update_link("ver0001", &patch).await.unwrap().unwrap();
    let changed = store.links_version().await.unwrap().unwrap();
    assert_ne!(changed, created, "a change moves the version");
    assert!(store.delete_link("ver0002").await.unwrap());
    let deleted = store.links_version().await.unwrap().unwrap();
    assert_ne!(deleted, changed, "a delete moves the version");
}

/// The cache's warm-up and refreshes read targets: the live links asked for, each
/// with what a redirect needs, exactly as the link itself says.
pub async fn targets_are_what_a_redirect_needs_of_live_links(store: Backend) {
    let mut permanent = new_link("tgt0001", "https://example.com/p", None);
    permanent.expires_at = Some(Utc::now().trunc_subsecs(3) + Duration::days(1));
    permanent.redirect_type = RedirectType::Permanent;
    let links = [
        permanent,
        new_link("tgt0002", "https://example.com/off", None),
        new_link("tgt0003", "https://example.com/gone", None),
    ];
    store.insert_links(&links).await.unwrap();
    let patch = LinkPatch {
        original_url: None,
        expires_at: None,
        is_active: Some(false),
        redirect_type: None,
        metadata: None,
    };
    store.update_link("tgt0002", &patch).await.unwrap().unwrap();
    assert!(store.delete_link("tgt0003").await.unwrap());
    let asked: Vec<String> = ["tgt0001", "tgt0002", "tgt0003", "nosuch1"]
        .map(String::from)
        .to_vec();
    let mut got = store.get_targets(&asked).await.unwrap();
    got.sort_by(|a, b| a.code.as_str().cmp(b.code.as_str()));
    assert_eq!(
        got.len(),
        2,
        "the deleted and the unknown code are left out: {got:?}"
    );
    for target in &got {
        let link = store.get_link(target.code.as_str()).await.unwrap().unwrap();
        assert_eq!(target.original_url, link.original_url);
        assert_eq!(target.expires_at, link.expires_at);
        assert_eq!(target.is_active, link.is_active);
        assert_eq!(target.redirect_type, link.redirect_type);
    }
    assert_eq!(got[0].redirect_type, RedirectType::Permanent);
    assert!(got[0].expires_at.is_some());
    assert!(!got[1].is_active);
    assert!(store.get_targets(&[]).await.unwrap().is_empty());
}

pub async fn codes_are_case_sensitive_and_conflicts_are_per_item(store: Backend) {
    let out = store
        .insert_links(&[
            new_link("Code1", "https://a.example/", None),
            new_link("code1", "https://b.example/", None),
            new_link("Code1", "https://c.example/", None),
        ])
        .await
        .unwrap();
    assert!(out[0].is_some());
    assert!(out[1].is_some(), "codes differ only by case are distinct");
    assert!(out[2].is_none(), "the duplicate alone is refused");
    assert_eq!(
        store
            .get_link("Code1")
            .await
            .unwrap()
            .unwrap()
            .original_url
            .as_str(),
        "https://a.example/"
    );
    // Ids grow with insertion order (the list cursor relies on it).
    assert!(out[1].as_ref().unwrap().id > out[0].as_ref().unwrap().id);
}

pub async fn delete_keeps_the_code_reserved(store: Backend) {
    store
        .insert_links(&[new_link("gone123", "https://a.example/", None)])
        .await
        .unwrap();
    assert!(store.delete_link("gone123").await.unwrap());
    assert!(store.get_link("gone123").await.unwrap().is_none());
    assert!(!store.delete_link("gone123").await.unwrap());
    let again = store
        .insert_links(&[new_link("gone123", "https://b.example/", None)])
        .await
        .unwrap();
    assert!(again[0].is_none(), "a deleted code is never reissued");
    assert!(
        store
            .update_link(
                "gone123",
                &LinkPatch {
                    is_active: Some(true),
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn patch_changes_only_given_fields(store: Backend) {
    let mut l = new_link("pat1234", "https://a.example/", None);
    l.expires_at = Some(Utc::now().trunc_subsecs(3) + Duration::days(3));
    store.insert_links(std::slice::from_ref(&l)).await.unwrap();
    let patch = LinkPatch {
        is_active: Some(false),
        ..Default::default()
    };
    let got = store.update_link("pat1234", &patch).await.unwrap().unwrap();
    assert!(!got.is_active);
    assert_eq!(got.original_url.as_str(), "https://a.example/");
    assert_eq!(got.expires_at, l.expires_at);
    assert_eq!(got.metadata, l.metadata);
    let patch = LinkPatch {
        original_url: Some(TargetUrl::parse("https://b.example/", None).unwrap()),
        expires_at: Some(None),
        redirect_type: Some(RedirectType::Permanent),
        metadata: Some(Metadata::default()),
        is_active: None,
    };
    let got = store.update_link("pat1234", &patch).await.unwrap().unwrap();
    assert_eq!(got.original_url.as_str(), "https://b.example/");
    assert_eq!(got.expires_at, None, "Some(None) clears the expiry");
    assert_eq!(got.redirect_type, RedirectType::Permanent);
    assert_eq!(got.metadata, Metadata::default());
    assert!(!got.is_active);
    assert_eq!(store.get_link("pat1234").await.unwrap().unwrap(), got);
    assert!(store.update_link("nothere", &patch).await.unwrap().is_none());
}

pub async fn list_is_per_owner_newest_first_with_cursor(store: Backend) {
    let a = user(store.as_ref(), "a@example.com").await;
    let b = user(store.as_ref(), "b@example.com").await;
    for i in 0..5 {
        store
            .insert_links(&[new_link(&format!("a{i}xxxx"), "https://a.example/", Some(a))])
            .await
            .unwrap();
        store
            .insert_links(&[new_link(&format!("b{i}xxxx"), "https://b.example/", Some(b))])
            .await
            .unwrap();
    }
    store.delete_link("a2xxxx").await.unwrap();
    let page = |after_id, limit| ListQuery {
        after_id,
        limit,
        ..Default::default()
    };
    let page1 = store.list_links(a, &page(None, 2)).await.unwrap();
    let codes: Vec<&str> = page1.iter().map(|l| l.code.as_str()).collect();
    assert_eq!(codes, ["a4xxxx", "a3xxxx"]);
    let page2 = store.list_links(a, &page(Some(page1[1].id), 10)).await.unwrap();
    let codes: Vec<&str> = page2.iter().map(|l| l.code.as_str()).collect();
    assert_eq!(codes, ["a1xxxx", "a0xxxx"], "deleted links are not listed");
}

pub async fn list_searches_code_and_target_and_pages_both_ways(store: Backend) {
    let a = user(store.as_ref(), "s@example.com").await;
    for (code, url) in [
        ("Promo01", "https://shop.example/spring"),
        ("news002", "https://NEWS.example/a_b"),
        ("other03", "https://x.example/100%25"),
        ("promo04", "https://shop.example/winter"),
    ] {
        store.insert_links(&[new_link(code, url, Some(a))]).await.unwrap();
    }
    let codes = |links: Vec<kurz::domain::Link>| -> Vec<String> {
        links.into_iter().map(|l| l.code.into_string()).collect()
    };
    let query = |search: &str, oldest_first, after_id, limit| ListQuery {
        after_id,
        limit,
        search: Some(search.into()),
        oldest_first,
    };
    // Code or target, ASCII case ignored; newest first by default.
    let got = codes(
        store
            .list_links(a, &query("PROMO", false, None, 10))
            .await
            .unwrap(),
    );
    assert_eq!(got, ["promo04", "Promo01"]);
    let got = codes(
        store
            .list_links(a, &query("news.EXAMPLE", false, None, 10))
            .await
            .unwrap(),
    );
    assert_eq!(got, ["news002"]);
    // % and _ are literal characters, not wildcards.
    let got = codes(store.list_links(a, &query("_", false, None, 10)).await.unwrap());
    assert_eq!(got, ["news002"]);
    let got = codes(store.list_links(a, &query("%", false, None, 10)).await.unwrap());
    assert_eq!(got, ["other03"]);
    // Oldest first, paged by the cursor.
    let first = store.list_links(a, &query("", true, None, 2)).await.unwrap();
    let last_id = first[1].id;
    assert_eq!(codes(first), ["Promo01", "news002"]);
    let rest = codes(
        store
            .list_links(a, &query("", true, Some(last_id), 2))
            .await
            .unwrap(),
    );
    assert_eq!(rest, ["other03", "promo04"]);
}

pub async fn leases_are_disjoint_and_bounded(store: Backend) {
    let mut starts = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.lease_block(100, 1_000_000).await.unwrap()
        }));
    }
    for t in tasks {
        starts.push(t.await.unwrap());
    }
    starts.sort();
    for w in starts.windows(2) {
        assert!(w[1] >= w[0] + 100, "blocks overlap: {w:?}");
    }
    // Past the bound the lease fails instead of wrapping around.
    let err = store.lease_block(10_000_000, 1_000_000).await;
    assert!(err.is_err());
}

pub async fn settings_keep_the_first_value(store: Backend) {
    assert_eq!(store.setting_get_or_init("k", "first").await.unwrap(), "first");
    assert_eq!(store.setting_get_or_init("k", "second").await.unwrap(), "first");
}

pub async fn users_unique_email_and_key_lookup(store: Backend) {
    let u = store
        .create_user(&NewUser {
            email: "u@example.com".into(),
            tier: Tier::Pro,
            api_key_hash: "h1".into(),
        })
        .await
        .unwrap();
    assert_eq!(u.tier, Tier::Pro);
    let dup = store
        .create_user(&NewUser {
            email: "u@example.com".into(),
            tier: Tier::Free,
            api_key_hash: "h2".into(),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict)));
    assert_eq!(store.user_by_key_hash("h1").await.unwrap().unwrap().id, u.id);
    assert!(store.user_by_key_hash("h2").await.unwrap().is_none());
    assert_eq!(store.user_by_id(u.id).await.unwrap().unwrap(), u);
    assert!(store.user_by_id(u.id + 1000).await.unwrap().is_none());
    assert!(!store.has_admin().await.unwrap());
    let admin = store.upsert_admin("admin@x.example", "ha").await.unwrap();
    assert_eq!(admin.tier, Tier::Admin);
    assert!(store.has_admin().await.unwrap());
    let again = store.upsert_admin("admin@x.example", "hb").await.unwrap();
    assert_eq!(again.id, admin.id, "re-keying keeps the user");
    assert!(store.user_by_key_hash("ha").await.unwrap().is_none());
    assert_eq!(store.user_by_key_hash("hb").await.unwrap().unwrap().id, admin.id);
}

/// Instances started together all make sure of the one admin: none of them fails
/// on the others' insert (the monitoring test started two and lost one to this).
pub async fn concurrent_admin_upserts_all_succeed(store: Backend) {
    // The race is narrow (two inserts between PostgreSQL's conflict check and their
    // index entries): many rounds make it likely to be hit without the fix.
    for round in 0..50 {
        let email = format!("admin{round}@x.example");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (s, email) = (store.clone(), email.clone());
            let hash = format!("key-{round}");
            tasks.push(tokio::spawn(async move { s.upsert_admin(&email, &hash).await }));
        }
        let mut ids = std::collections::HashSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap().expect("every instance's upsert succeeds").id);
        }
        assert_eq!(ids.len(), 1, "one admin");
        let user = store.user_by_key_hash(&format!("key-{round}")).await.unwrap();
        assert_eq!(user.map(|u| u.tier), Some(Tier::Admin));
    }
}

pub async fn idempotency_claims(store: Backend) {
    let now = Utc::now();
    let old = now - Duration::hours(24);
    assert_eq!(
        store.idempotency_claim("k", "h", now, old).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        store.idempotency_claim("k", "h", now, old).await.unwrap(),
        IdempotencyClaim::Existing {
            request_hash: "h".into(),
            response: None
        }
    );
    store.idempotency_complete("k", 201, b"{\"a\":1}").await.unwrap();
    assert_eq!(
        store.idempotency_claim("k", "h", now, old).await.unwrap(),
        IdempotencyClaim::Existing {
            request_hash: "h".into(),
            response: Some((201, b"{\"a\":1}".to_vec()))
        }
    );
    // Released claims can be taken again; completed ones cannot be released.
    assert_eq!(
        store.idempotency_claim("r", "h", now, old).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    store.idempotency_release("r").await.unwrap();
    assert_eq!(
        store.idempotency_claim("r", "h2", now, old).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    store.idempotency_release("k").await.unwrap();
    assert!(matches!(
        store.idempotency_claim("k", "h", now, old).await.unwrap(),
        IdempotencyClaim::Existing { .. }
    ));
    // Purging removes only records older than the cut-off.
    assert_eq!(
        store.purge_idempotency(now - Duration::hours(1)).await.unwrap(),
        0
    );
    assert!(store.purge_idempotency(now + Duration::seconds(1)).await.unwrap() >= 2);
    assert_eq!(
        store.idempotency_claim("k", "h", now, old).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    // After the time-to-live a key is fresh again.
    let later = now + Duration::hours(25);
    assert_eq!(
        store
            .idempotency_claim("k", "other", later, later - Duration::hours(24))
            .await
            .unwrap(),
        IdempotencyClaim::Claimed
    );
}

pub async fn concurrent_idempotency_claims_have_one_winner(store: Backend) {
    let now = Utc::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.idempotency_claim("race", "h", now, now - Duration::hours(24))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap() == IdempotencyClaim::Claimed {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

fn click(code: &str, at: chrono::DateTime<Utc>, visitor: u64, bot: bool) -> ClickEvent {
    ClickEvent {
        short_code: code.into(),
        clicked_at: at,
        referrer: "t.co".into(),
        device: Device::Mobile,
        browser: "Chrome Mobile".into(),
        os: "Android".into(),
        is_bot: bot,
        country: "DE".into(),
        city: Some("Berlin".into()),
        visitor_hash: visitor.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (visitor << 40),
    }
}

/// Batches add up: rollup rows, daily and hourly sketches, and the link's counters.
pub async fn clicks_add_up_across_batches(store: Backend) {
    store
        .insert_links(&[
            new_link("clk1234", "https://example.com/c", None),
            new_link("clk5678", "https://example.com/d", None),
        ])
        .await
        .unwrap();
    let day = Utc::now().duration_trunc(Duration::days(1)).unwrap() - Duration::days(3);
    let h = |hours: i64, min: i64| day + Duration::hours(hours) + Duration::minutes(min);
    let first = vec![
        click("clk1234", h(10, 1), 1, false),
        click("clk1234", h(10, 2), 2, false),
        click("clk1234", h(11, 0), 1, true),
        click("clk5678", h(10, 3), 7, false),
    ];
    let second = vec![
        click("clk1234", h(10, 30), 2, false),
        click("clk1234", h(30, 0), 3, false),
    ];
    store.writer.record(&batch::fold(&first)).await.unwrap();
    store.writer.record(&batch::fold(&second)).await.unwrap();

    let rows = store
        .clicks
        .rollups("clk1234", day, day + Duration::days(3))
        .await
        .unwrap();
    let per_hour: Vec<(i64, i64, i64)> = rows
        .iter()
        .map(|r| ((r.hour - day).num_hours(), r.clicks, r.bots))
        .collect();
    assert_eq!(per_hour, vec![(10, 3, 0), (11, 0, 1), (30, 1, 0)]);
    let dims = rows::Dims::from_json(&rows[0].dims);
    assert_eq!(dims.country.get("DE"), Some(3));
    assert_eq!(dims.referrer.get("t.co"), Some(3));

    // Whole day 0 from the daily table, the 6 hours of day 1 from hourly rows.
    let plan = plan::sketch_plan(day, day + Duration::hours(30) + Duration::minutes(1));
    assert_eq!(plan.days, Some((day, day + Duration::days(1))));
    let sketches = store.clicks.sketches("clk1234", &plan).await.unwrap();
    assert_eq!(sketches.len(), 2);
    let mut all = kurz::analytics::hll::Hll::new();
    for s in &sketches {
        all.merge_encoded(s).unwrap();
    }
    assert_eq!(all.estimate(), 3, "visitors 1, 2 and 3; the bot is not one");

    let link = store.get_link("clk1234").await.unwrap().unwrap();
    assert_eq!(link.click_count, 5);
    assert_eq!(link.last_accessed_at, Some(h(30, 0)));
    assert_eq!(store.get_link("clk5678").await.unwrap().unwrap().click_count, 1);

    // Retention removes raw events (SQLite counts events, PostgreSQL day partitions:
    // something the first time, nothing left the second), never rollups.
    let cutoff = Utc::now() + Duration::days(1);
    assert!(
        store.clicks.purge_events(cutoff).await.unwrap() > 0,
        "raw events purged"
    );
    assert_eq!(store.clicks.purge_events(cutoff).await.unwrap(), 0, "none left");
    assert_eq!(
        store
            .clicks
            .rollups("clk1234", day, day + Duration::days(3))
            .await
            .unwrap(),
        rows
    );
}

/// A chunk replayed from a spool is applied once, however often it is handed over:
/// the store records (spool generation, end offset) in the chunk's own transaction.
pub async fn a_replayed_chunk_is_counted_once(store: Backend) {
    store
        .insert_links(&[new_link("rpl1234", "https://example.com/r", None)])
        .await
        .unwrap();
    let at = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let chunk = vec![click("rpl1234", at, 1, false), click("rpl1234", at, 2, false)];
    let replay = |spool: &str, through| {
        let mut b = batch::fold(&chunk);
        b.replay = Some(batch::Replay {
            spool: spool.into(),
            through,
        });
        b
    };
    store.writer.record(&replay("gen-a", 100)).await.unwrap();
    // The same chunk again, as after a crash before the spool saved its position.
    store.writer.record(&replay("gen-a", 100)).await.unwrap();
    let count = || async { store.get_link("rpl1234").await.unwrap().unwrap().click_count };
    assert_eq!(count().await, 2, "a repeated chunk is skipped");
    let rows = store
        .clicks
        .rollups("rpl1234", at, at + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(rows[0].clicks, 2, "the rollup is not counted twice either");
    // The next chunk of that spool, and a chunk of another spool, count.
    store.writer.record(&replay("gen-a", 200)).await.unwrap();
    store.writer.record(&replay("gen-b", 100)).await.unwrap();
    // A live batch (no replay) always counts.
    store.writer.record(&batch::fold(&chunk)).await.unwrap();
    assert_eq!(count().await, 8);
}

/// A writer's name is claimed at 0 and moves with each write recorded under it; the
/// batcher asks how far it got before replaying a write whose answer it lost.
pub async fn a_write_marker_says_how_far_its_writes_got(store: Backend) {
    store
        .insert_links(&[new_link("wmk1234", "https://example.com/w", None)])
        .await
        .unwrap();
    assert_eq!(store.clicks.name_through("w-test").await.unwrap(), None);
    store.clicks.claim_name("w-test").await.unwrap();
    assert_eq!(store.clicks.name_through("w-test").await.unwrap(), Some(0));
    let at = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let chunk = vec![click("wmk1234", at, 1, false)];
    for n in 1..=2 {
        let mut b = batch::fold(&chunk);
        b.replay = Some(batch::Replay {
            spool: "w-test".into(),
            through: n,
        });
        store.writer.record(&b).await.unwrap();
        // Claiming again (a restart cannot, names are random; but it must not reset).
        store.clicks.claim_name("w-test").await.unwrap();
        assert_eq!(store.clicks.name_through("w-test").await.unwrap(), Some(n));
    }
    assert_eq!(store.get_link("wmk1234").await.unwrap().unwrap().click_count, 2);
    assert_eq!(store.clicks.name_through("w-other").await.unwrap(), None);
}

/// Writer names and spool generations last written before the cutoff are deleted,
/// later ones kept; a write under a deleted name records it again.
pub async fn old_write_markers_are_pruned_and_come_back_with_a_write(store: Backend) {
    store
        .insert_links(&[new_link("wpr1234", "https://example.com/p", None)])
        .await
        .unwrap();
    store.clicks.claim_name("w-old").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let cutoff = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    store.clicks.claim_name("w-new").await.unwrap();
    let at = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let chunk = vec![click("wpr1234", at, 1, false)];
    let mut b = batch::fold(&chunk);
    b.replay = Some(batch::Replay {
        spool: "g-recent".into(),
        through: 3,
    });
    store.writer.record(&b).await.unwrap();

    assert_eq!(store.clicks.purge_names(cutoff).await.unwrap(), 1, "only w-old");
    assert_eq!(store.clicks.name_through("w-old").await.unwrap(), None);
    assert_eq!(store.clicks.name_through("w-new").await.unwrap(), Some(0));
    assert_eq!(store.clicks.name_through("g-recent").await.unwrap(), Some(3));

    // A write under a pruned name records it again.
    b.replay = Some(batch::Replay {
        spool: "w-old".into(),
        through: 7,
    });
    store.writer.record(&b).await.unwrap();
    assert_eq!(store.clicks.name_through("w-old").await.unwrap(), Some(7));
    assert_eq!(store.get_link("wpr1234").await.unwrap().unwrap().click_count, 2);

    // A write refreshes its name: nothing is older than a cutoff taken before it.
    let before_writes = Utc::now() - Duration::seconds(1);
    assert_eq!(store.clicks.purge_names(before_writes).await.unwrap(), 0);
    let after_all = Utc::now() + Duration::seconds(1);
    assert_eq!(store.clicks.purge_names(after_all).await.unwrap(), 3);
    assert_eq!(store.clicks.name_through("g-recent").await.unwrap(), None);
}

/// A day's visitor sketch is built from its hours once the day is over; until then
/// (and if it is never built) stats read the hours, with the same answer.
pub async fn daily_sketches_are_built_once_the_day_is_over(store: Backend) {
    store
        .insert_links(&[new_link("day1234", "https://example.com/day", None)])
        .await
        .unwrap();
    let today = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    let at = |hours: i64| today + Duration::hours(hours) + Duration::minutes(1);
    let clicks = vec![
        click("day1234", at(1), 1, false),
        click("day1234", at(1), 2, false),
        click("day1234", at(5), 3, false),
        click("day1234", at(5), 9, true),
    ];
    store.writer.record(&batch::fold(&clicks)).await.unwrap();
    let whole_day = plan::sketch_plan(today, today + Duration::days(1));
    let visitors = |sketches: &[Vec<u8>]| {
        let mut all = kurz::analytics::hll::Hll::new();
        for s in sketches {
            all.merge_encoded(s).unwrap();
        }
        all.estimate()
    };
    let before = store.clicks.sketches("day1234", &whole_day).await.unwrap();
    assert_eq!(before.len(), 2, "today's visitors come from its two hourly rows");
    assert_eq!(visitors(&before), 3);

    // The day is over: one daily sketch for the link, then nothing left to do.
    let tomorrow = today + Duration::days(1) + Duration::hours(1);
    assert_eq!(store.writer.compact_days(tomorrow).await.unwrap(), 1);
    assert_eq!(store.writer.compact_days(tomorrow).await.unwrap(), 0);
    let after = store.clicks.sketches("day1234", &whole_day).await.unwrap();
    assert_eq!(after.len(), 1, "the whole day is read from its daily sketch");
    assert_eq!(visitors(&after), 3);

    // A late click for that day (a replayed outage) goes into its daily sketch itself.
    let late = vec![click("day1234", at(2), 4, false)];
    store.writer.record(&batch::fold(&late)).await.unwrap();
    let late_read = store.clicks.sketches("day1234", &whole_day).await.unwrap();
    assert_eq!(late_read.len(), 1);
    assert_eq!(visitors(&late_read), 4);
    assert_eq!(store.get_link("day1234").await.unwrap().unwrap().click_count, 5);
}

/// Click writes racing the day's compaction lose no visitor and no click: a write that
/// read the old mark (and so wrote no daily sketch) must land before the daily sketch
/// is built from the hours, and one after it must merge into that sketch itself.
/// The writers also race to create the day's raw-event partition on PostgreSQL, which
/// failed a write ("relation already exists") before migration 0005.
pub async fn click_writes_racing_a_compaction_lose_nothing(store: Backend) {
    const WRITERS: u64 = 4;
    const WRITES: u64 = 15;
    const PER_WRITE: u64 = 3;
    store
        .insert_links(&[new_link("race123", "https://example.com/race", None)])
        .await
        .unwrap();
    let today = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (store, started) = (store.clone(), started.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..WRITES {
                let clicks: Vec<ClickEvent> = (0..PER_WRITE)
                    .map(|k| {
                        let visitor = (w * WRITES + i) * PER_WRITE + k + 1;
                        let at = today + Duration::hours(((w + i) % 24) as i64) + Duration::minutes(1);
                        click("race123", at, visitor, false)
                    })
                    .collect();
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                store.writer.record(&batch::fold(&clicks)).await.unwrap();
            }
        }));
    }
    // Compact while the writers are in full flight, not before or after them.
    while started.load(std::sync::atomic::Ordering::SeqCst) < WRITERS * WRITES / 3 {
        tokio::task::yield_now().await;
    }
    let tomorrow = today + Duration::days(1) + Duration::hours(1);
    let compacted = store.writer.compact_days(tomorrow).await.unwrap();
    assert_eq!(compacted, 1, "one link had clicks that day");
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(
        started.load(std::sync::atomic::Ordering::SeqCst),
        WRITERS * WRITES
    );

    let total = WRITERS * WRITES * PER_WRITE;
    let mut expected = kurz::analytics::hll::Hll::new();
    for visitor in 1..=total {
        expected.insert(click("race123", today, visitor, false).visitor_hash);
    }
    let whole_day = plan::sketch_plan(today, today + Duration::days(1));
    let sketches = store.clicks.sketches("race123", &whole_day).await.unwrap();
    assert_eq!(sketches.len(), 1, "the day is read from its daily sketch");
    let mut stored = kurz::analytics::hll::Hll::new();
    stored.merge_encoded(&sketches[0]).unwrap();
    assert_eq!(
        stored.estimate(),
        expected.estimate(),
        "no write's visitors are missing"
    );
    assert_eq!(
        store.get_link("race123").await.unwrap().unwrap().click_count,
        total as i64
    );
    let rows = store
        .clicks
        .rollups("race123", today, today + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.clicks).sum::<i64>(), total as i64);
}

/// Generates one `#[tokio::test]` per contract check for a backend's `fresh()`.
macro_rules! conformance {
    ($backend:ident, $fresh:expr $(, #[$attr:meta])?) => {
        mod $backend {
            use super::*;
            conformance!(@tests $fresh; $(#[$attr];)?
                insert_then_get_round_trips,
                targets_are_what_a_redirect_needs_of_live_links,
                the_links_version_moves_with_every_change_and_delete,
                codes_are_case_sensitive_and_conflicts_are_per_item,
                delete_keeps_the_code_reserved,
                patch_changes_only_given_fields,
                list_is_per_owner_newest_first_with_cursor,
                list_searches_code_and_target_and_pages_both_ways,
                leases_are_disjoint_and_bounded,
                settings_keep_the_first_value,
                users_unique_email_and_key_lookup,
                concurrent_admin_upserts_all_succeed,
                idempotency_claims,
                concurrent_idempotency_claims_have_one_winner,
                clicks_add_up_across_batches,
                a_replayed_chunk_is_counted_once,
                a_write_marker_says_how_far_its_writes_got,
                old_write_markers_are_pruned_and_come_back_with_a_write,
                daily_sketches_are_built_once_the_day_is_over,
                click_writes_racing_a_compaction_lose_nothing,
            );
        }
    };
    // With an attribute for every test (`ignore` for a backend that needs a server).
    (@tests $fresh:expr; #[$attr:meta]; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[$attr]
            async fn $name() {
                let Some((store, _guard)) = $fresh.await else { return };
                super::$name(store).await;
            }
        )*
    };
    (@tests $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((store, _guard)) = $fresh.await else { return };
                super::$name(store).await;
            }
        )*
    };
}

/// A migrated SQLite database in a temporary directory, removed with the guard.
async fn fresh_sqlite() -> Option<(Backend, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
    let store = kurz::store::SqliteStore::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    Some((Backend::of(store), dir))
}

const PG_BOUNDS: PoolBounds = PoolBounds {
    max_connections: 8,
    min_connections: 0,
    acquire_timeout: std::time::Duration::from_secs(5),
};

/// A fresh, migrated database on the test PostgreSQL (primary only).
async fn fresh_postgres() -> Option<(Backend, String)> {
    let admin = support::server("KURZ_TEST_PG")?;
    let url = support::fresh_pg_database(&admin).await;
    let store = PgStore::connect(&url, &[], PG_BOUNDS).await.unwrap();
    store.migrate().await.unwrap();
    Some((Backend::of(store), url))
}

conformance!(sqlite, fresh_sqlite());
conformance!(postgres, fresh_postgres(), #[ignore = "needs PostgreSQL: run scripts/test.sh"]);

/// Migrations are checked: a fresh database has them all pending, none after.
#[tokio::test]
async fn pending_migrations_are_counted_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let sqlite = kurz::store::SqliteStore::connect(&url, 1).await.unwrap();
    assert!(sqlite.pending_migrations().await.unwrap() > 0);
    sqlite.migrate().await.unwrap();
    assert_eq!(sqlite.pending_migrations().await.unwrap(), 0);
}

/// The same on PostgreSQL.
#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn pending_migrations_are_counted_on_postgres() {
    let Some(admin) = support::server("KURZ_TEST_PG") else {
        return;
    };
    let url = support::fresh_pg_database(&admin).await;
    let pg = PgStore::connect(&url, &[], PG_BOUNDS).await.unwrap();
    assert!(pg.pending_migrations().await.unwrap() > 0);
    pg.migrate().await.unwrap();
    assert_eq!(pg.pending_migrations().await.unwrap(), 0);
}

/// On PostgreSQL a write that lost its answer may still be running (or committing)
/// on the server. `marker_through` waits for it: a write under a marker holds the
/// marker's row locked, here by hand, until it commits; the answer comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn a_marker_is_read_only_after_the_write_holding_it_ends() {
    let Some((store, url)) = fresh_postgres().await else {
        return;
    };
    store.clicks.claim_name("w-held").await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT through FROM click_replays WHERE spool = 'w-held' FOR UPDATE")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE click_replays SET through = 5 WHERE spool = 'w-held'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let asked = tokio::spawn({
        let store = store.clone();
        async move { store.clicks.name_through("w-held").await.unwrap() }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!asked.is_finished(), "answered while the write was still open");
    tx.commit().await.unwrap();
    assert_eq!(asked.await.unwrap(), Some(5), "the committed write's mark");
}

/// The same wait when the marker's row was pruned: a write under it inserts the row
/// again, and until that write commits its row is invisible to a plain read. The
/// answer still comes only after the commit, so a replay cannot count it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn a_pruned_marker_is_read_only_after_the_write_recreating_it_ends() {
    let Some((store, url)) = fresh_postgres().await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO click_replays (spool, through) VALUES ('w-pruned', 4)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let asked = tokio::spawn({
        let store = store.clone();
        async move { store.clicks.name_through("w-pruned").await.unwrap() }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!asked.is_finished(), "answered while the write was still open");
    tx.commit().await.unwrap();
    assert_eq!(asked.await.unwrap(), Some(4), "the committed write's mark");
    // Asking about a name no write used leaves no row behind.
    assert_eq!(store.clicks.name_through("w-never").await.unwrap(), None);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM click_replays WHERE spool = 'w-never'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

/// Reads go to the replica; a link just written is still found at once
/// (read-your-writes), even though the replica may not have it yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL with a replica: run scripts/test.sh"]
async fn replica_reads_keep_read_your_writes() {
    let Some(admin) = support::server("KURZ_TEST_PG") else {
        return;
    };
    let Some(replica_server) = support::server("KURZ_TEST_PG_REPLICA") else {
        return;
    };
    let url = support::fresh_pg_database(&admin).await;
    // The new database exists on the replica once replication has caught up.
    let replica = support::same_database_on(&url, &replica_server);
    let primary = PgStore::connect(&url, &[], PG_BOUNDS).await.unwrap();
    primary.migrate().await.unwrap();
    let poll = std::time::Duration::from_millis(10);
    support::wait_for("the schema on the replica", poll, async || {
        match <sqlx::PgConnection as sqlx::Connection>::connect(&replica).await {
            Ok(mut c) => sqlx::query("SELECT 1 FROM kgs_counter")
                .execute(&mut c)
                .await
                .is_ok(),
            Err(_) => false,
        }
    })
    .await;
    let store = PgStore::connect(&url, std::slice::from_ref(&replica), PG_BOUNDS)
        .await
        .unwrap();

    // Read-your-writes: every create is visible immediately through the store.
    for i in 0..200 {
        let code = format!("ryw{i:04}");
        store
            .insert_links(&[new_link(&code, "https://example.com/ryw", None)])
            .await
            .unwrap();
        assert!(
            store.get_link(&code).await.unwrap().is_some(),
            "{code} missing right after its create"
        );
    }

    // Reads do go to the replica: a row that exists only on the replica (the
    // primary's copy is deleted behind the store's back, and that delete has not
    // replicated yet or the replica is checked before it does) proves the source.
    // More simply: pause replay on the replica, write on the primary directly, and
    // a store that was not told about the write still answers from the replica.
    let mut rc = <sqlx::PgConnection as sqlx::Connection>::connect(&replica)
        .await
        .unwrap();
    // The creates above must have reached the replica before replay is paused: a
    // replica without `ryw0000` answers "no such code", the store rightly asks the
    // primary, and the check below would see the primary's row (this test once
    // failed that way in CI). WAL replays in order, so the last create is enough.
    support::wait_for("the creates on the replica", poll, async || {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM links WHERE code = 'ryw0199'")
            .fetch_optional(&mut rc)
            .await
            .unwrap();
        found.is_some()
    })
    .await;
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut rc)
        .await
        .unwrap();
    // The call only requests the pause: wait until replay has really stopped, or the
    // write below may still be replayed (this test once failed that way).
    support::wait_for("the replica's replay to pause", poll, async || {
        let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
            .fetch_one(&mut rc)
            .await
            .unwrap();
        state == "paused"
    })
    .await;
    let other = Backend::of(PgStore::connect(&url, &[], PG_BOUNDS).await.unwrap());
    let patch = LinkPatch {
        original_url: Some(TargetUrl::parse("https://example.com/new", None).unwrap()),
        ..Default::default()
    };
    // Written through another store (another instance): this one does not know.
    other.update_link("ryw0000", &patch).await.unwrap();
    let fresh_reader = Backend::of(
        PgStore::connect(&url, std::slice::from_ref(&replica), PG_BOUNDS)
            .await
            .unwrap(),
    );
    let seen = fresh_reader.get_link("ryw0000").await.unwrap().unwrap();
    assert_eq!(
        seen.original_url.as_str(),
        "https://example.com/ryw",
        "served by the (paused) replica"
    );
    let code = ["ryw0000".to_owned()];
    let target = |targets: Vec<kurz::domain::LinkTarget>| targets[0].original_url.as_str().to_owned();
    assert_eq!(
        target(fresh_reader.get_targets(&code).await.unwrap()),
        "https://example.com/ryw",
        "the cache's refreshes read the replica too"
    );
    // Told about the change (as the invalidation bus does), it reads the primary,
    // for a redirect's miss and for the cache's refresh alike.
    fresh_reader.note_changed("ryw0000");
    let seen = fresh_reader.get_link("ryw0000").await.unwrap().unwrap();
    assert_eq!(seen.original_url.as_str(), "https://example.com/new");
    assert_eq!(
        target(fresh_reader.get_targets(&code).await.unwrap()),
        "https://example.com/new",
        "a refresh of a link changed elsewhere must not put the replica's old copy back"
    );
    // A create made elsewhere is found through the primary fallback despite the pause.
    other
        .insert_links(&[new_link("elsewhere1", "https://example.com/e", None)])
        .await
        .unwrap();
    assert!(fresh_reader.get_link("elsewhere1").await.unwrap().is_some());

    // Stats read the replica too: clicks recorded on the primary during the pause
    // are not in them until replay resumes.
    let at = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let (from, to) = (at - Duration::days(1), at + Duration::hours(1));
    let b = batch::fold(&[click("ryw0001", at, 1, false), click("ryw0001", at, 2, false)]);
    other.writer.record(&b).await.unwrap();
    assert_eq!(other.clicks.rollups("ryw0001", from, to).await.unwrap().len(), 1);
    assert!(
        fresh_reader
            .clicks
            .rollups("ryw0001", from, to)
            .await
            .unwrap()
            .is_empty(),
        "stats served by the (paused) replica"
    );
    let plan = plan::sketch_plan(from, to);
    assert!(
        fresh_reader
            .clicks
            .sketches("ryw0001", &plan)
            .await
            .unwrap()
            .is_empty()
    );
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut rc)
        .await
        .unwrap();
    support::wait_for("the clicks on the replica", poll, async || {
        fresh_reader
            .clicks
            .rollups("ryw0001", from, to)
            .await
            .unwrap()
            .len()
            == 1
    })
    .await;
    assert_eq!(
        fresh_reader
            .clicks
            .sketches("ryw0001", &plan)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Retention on PostgreSQL drops whole daily partitions of raw click events (never a
/// row-by-row DELETE) and leaves newer days and every rollup alone.
#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn click_retention_drops_old_day_partitions_only() {
    let Some((store, url)) = fresh_postgres().await else {
        return;
    };
    store
        .insert_links(&[new_link("ret1234", "https://example.com/r", None)])
        .await
        .unwrap();
    let today = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    let old = today - Duration::days(10);
    let events = vec![
        click("ret1234", old + Duration::hours(1), 1, false),
        click("ret1234", today + Duration::minutes(1), 2, false),
    ];
    store.writer.record(&batch::fold(&events)).await.unwrap();
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let partitions = "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
                      WHERE p.relname = 'click_events'";
    assert_eq!(
        sqlx::query_scalar::<_, i64>(partitions)
            .fetch_one(&mut c)
            .await
            .unwrap(),
        2
    );

    let dropped = store
        .clicks
        .purge_events(today - Duration::days(5))
        .await
        .unwrap();
    assert_eq!(dropped, 1);
    assert_eq!(
        sqlx::query_scalar::<_, i64>(partitions)
            .fetch_one(&mut c)
            .await
            .unwrap(),
        1
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM click_events")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 1, "today's event stays");
    let rows = store
        .clicks
        .rollups("ret1234", old, today + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.clicks).sum::<i64>(), 2, "rollups are kept");
    // A click for a dropped day can still be recorded: its partition comes back.
    store
        .writer
        .record(&batch::fold(&[click(
            "ret1234",
            old + Duration::hours(2),
            3,
            false,
        )]))
        .await
        .unwrap();
}

/// An instance that knows a day's partition exists still writes that day after another
/// instance's retention dropped it: a failed write makes it ask the database again, so
/// at worst one write fails (in the pipeline, its batch is spooled and replayed).
#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn a_partition_dropped_by_another_instance_is_created_again() {
    let Some((a, url)) = fresh_postgres().await else {
        return;
    };
    let b = Backend::of(PgStore::connect(&url, &[], PG_BOUNDS).await.unwrap());
    a.insert_links(&[new_link("drp1234", "https://example.com/d", None)])
        .await
        .unwrap();
    let today = Utc::now().duration_trunc(Duration::days(1)).unwrap();
    let at = today - Duration::days(10) + Duration::hours(1);
    a.writer
        .record(&batch::fold(&[click("drp1234", at, 1, false)]))
        .await
        .unwrap();
    assert_eq!(b.clicks.purge_events(today - Duration::days(5)).await.unwrap(), 1);

    let late = batch::fold(&[click("drp1234", at, 2, false)]);
    if a.writer.record(&late).await.is_err() {
        a.writer.record(&late).await.unwrap();
    }
    assert_eq!(a.get_link("drp1234").await.unwrap().unwrap().click_count, 2);
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let raw: i64 = sqlx::query_scalar("SELECT count(*) FROM click_events")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(raw, 1, "the late click is stored in the partition made again");
}
