//! The store contract, checked against every backend with the same tests.
//!
//! Each backend provides a `fresh()` store (a new, migrated database) and runs the
//! `conformance!` suite. A new backend passes this file unchanged or it is not done.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{Duration, SubsecRound, Utc};
use kurz::domain::{Metadata, RedirectType, ShortCode, TargetUrl, Tier};
use kurz::store::{IdempotencyClaim, LinkPatch, NewLink, NewUser, Store, StoreError};

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

async fn user(store: &dyn Store, email: &str) -> i64 {
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

pub async fn insert_then_get_round_trips(store: Arc<dyn Store>) {
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

pub async fn codes_are_case_sensitive_and_conflicts_are_per_item(store: Arc<dyn Store>) {
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

pub async fn delete_keeps_the_code_reserved(store: Arc<dyn Store>) {
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

pub async fn patch_changes_only_given_fields(store: Arc<dyn Store>) {
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

pub async fn list_is_per_owner_newest_first_with_cursor(store: Arc<dyn Store>) {
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
    let page1 = store.list_links(a, None, 2).await.unwrap();
    let codes: Vec<&str> = page1.iter().map(|l| l.code.as_str()).collect();
    assert_eq!(codes, ["a4xxxx", "a3xxxx"]);
    let page2 = store.list_links(a, Some(page1[1].id), 10).await.unwrap();
    let codes: Vec<&str> = page2.iter().map(|l| l.code.as_str()).collect();
    assert_eq!(codes, ["a1xxxx", "a0xxxx"], "deleted links are not listed");
}

pub async fn leases_are_disjoint_and_bounded(store: Arc<dyn Store>) {
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

pub async fn settings_keep_the_first_value(store: Arc<dyn Store>) {
    assert_eq!(store.setting_get_or_init("k", "first").await.unwrap(), "first");
    assert_eq!(store.setting_get_or_init("k", "second").await.unwrap(), "first");
}

pub async fn users_unique_email_and_key_lookup(store: Arc<dyn Store>) {
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
    assert!(!store.has_admin().await.unwrap());
    let admin = store.upsert_admin("admin@x.example", "ha").await.unwrap();
    assert_eq!(admin.tier, Tier::Admin);
    assert!(store.has_admin().await.unwrap());
    let again = store.upsert_admin("admin@x.example", "hb").await.unwrap();
    assert_eq!(again.id, admin.id, "re-keying keeps the user");
    assert!(store.user_by_key_hash("ha").await.unwrap().is_none());
    assert_eq!(store.user_by_key_hash("hb").await.unwrap().unwrap().id, admin.id);
}

pub async fn idempotency_claims(store: Arc<dyn Store>) {
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

pub async fn concurrent_idempotency_claims_have_one_winner(store: Arc<dyn Store>) {
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

/// Generates one `#[tokio::test]` per contract check for a backend's `fresh()`.
macro_rules! conformance {
    ($backend:ident, $fresh:expr) => {
        mod $backend {
            use super::*;
            conformance!(@tests $fresh;
                insert_then_get_round_trips,
                codes_are_case_sensitive_and_conflicts_are_per_item,
                delete_keeps_the_code_reserved,
                patch_changes_only_given_fields,
                list_is_per_owner_newest_first_with_cursor,
                leases_are_disjoint_and_bounded,
                settings_keep_the_first_value,
                users_unique_email_and_key_lookup,
                idempotency_claims,
                concurrent_idempotency_claims_have_one_winner,
            );
        }
    };
    (@tests $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $fresh.await;
                super::$name(store).await;
            }
        )*
    };
}

/// A migrated SQLite database in a temporary directory, removed with the guard.
async fn fresh_sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("conformance.db").display());
    let store = kurz::store::SqliteStore::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    (Arc::new(store), dir)
}

conformance!(sqlite, fresh_sqlite());
