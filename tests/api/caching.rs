//! `Cache-Control` as a CDN in front of kurz reads it (deploy/README.md, "CDN and
//! WAF"): redirects cached as configured and never past a link's expiry; errors and
//! API answers `no-store`, except the QR image.

use chrono::Utc;
use serde_json::json;

use crate::helpers::{ADMIN_KEY, TestApp, location, metric, on_postgres, short_code, spawn_app, spawn_with};

fn cache_control(res: &reqwest::Response) -> String {
    res.headers()
        .get("cache-control")
        .unwrap_or_else(|| panic!("no Cache-Control on a {}", res.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn max_age(value: &str) -> i64 {
    value
        .strip_prefix("public, max-age=")
        .unwrap_or_else(|| panic!("not a public max-age: {value}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn redirects_carry_the_configured_cache_control_per_type() {
    let app = spawn_app().await;
    let temporary = app.create_code("https://example.com/temporary").await;
    let res = app.get(&format!("/{temporary}"), None).await;
    assert_eq!(res.status(), 302);
    assert_eq!(cache_control(&res), "no-store", "302s are not cached by default");
    let res = app
        .create(
            Some(ADMIN_KEY),
            &json!({ "original_url": "https://example.com/permanent", "redirect_type": 301 }),
        )
        .await;
    let permanent = short_code(res).await;
    let res = app.get(&format!("/{permanent}"), None).await;
    assert_eq!(res.status(), 301);
    assert_eq!(cache_control(&res), "public, max-age=86400");
    // HEAD answers as GET does.
    let res = app
        .client
        .head(app.url(&format!("/{permanent}")))
        .send()
        .await
        .unwrap();
    assert_eq!(cache_control(&res), "public, max-age=86400");

    let app = spawn_with(|c| {
        c.server.cache_control_permanent_secs = 0;
        c.server.cache_control_temporary_secs = 300;
    })
    .await;
    let code = app.create_code("https://example.com/t").await;
    let res = app.get(&format!("/{code}"), None).await;
    assert_eq!(cache_control(&res), "public, max-age=300");
    let res = app
        .create(
            Some(ADMIN_KEY),
            &json!({ "original_url": "https://example.com/p", "redirect_type": 301 }),
        )
        .await;
    let code = short_code(res).await;
    assert_eq!(
        cache_control(&app.get(&format!("/{code}"), None).await),
        "no-store"
    );
}

#[tokio::test]
async fn an_expiring_link_is_never_cached_past_its_expiry() {
    let app = spawn_with(|c| c.server.cache_control_temporary_secs = 3600).await;
    let expires_at = Utc::now() + chrono::Duration::seconds(120);
    for redirect_type in [301, 302] {
        let res = app
            .create(
                Some(ADMIN_KEY),
                &json!({ "original_url": "https://example.com/soon", "expires_at": expires_at.to_rfc3339(),
                         "redirect_type": redirect_type }),
            )
            .await;
        assert_eq!(res.status(), 201);
        let code = short_code(res).await;
        let asked = Utc::now();
        let res = app.get(&format!("/{code}"), None).await;
        assert_eq!(res.status(), redirect_type);
        let age = max_age(&cache_control(&res));
        let left = (expires_at - asked).num_seconds();
        assert!(age <= left && age >= left - 5, "max-age {age}, {left} s left");
    }
    // Longer than the configured time left: the configured value.
    let later = Utc::now() + chrono::Duration::days(3);
    let res = app
        .create(
            Some(ADMIN_KEY),
            &json!({ "original_url": "https://example.com/later", "expires_at": later.to_rfc3339() }),
        )
        .await;
    let code = short_code(res).await;
    assert_eq!(
        cache_control(&app.get(&format!("/{code}"), None).await),
        "public, max-age=3600"
    );
}

/// Redirects to cached links are answered before the router (`FastRedirect` in
/// src/http/redirect.rs): with the same answer, request id and metrics as the
/// `/{code}` route gives, and never for a link that expired while it was cached.
#[tokio::test]
async fn a_cached_link_answers_as_its_route_does_until_it_expires() {
    let app = spawn_with(|c| c.server.cache_control_temporary_secs = 3600).await;
    let expires_at = Utc::now() + chrono::Duration::seconds(3);
    let res = app
        .create(
            Some(ADMIN_KEY),
            &json!({ "original_url": "https://example.com/cached", "expires_at": expires_at.to_rfc3339() }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let path = format!("/{}", short_code(res).await);
    let mut ids = std::collections::HashSet::new();
    for _ in 0..3 {
        let res = app.get(&path, None).await;
        assert_eq!(res.status(), 302);
        assert_eq!(location(&res), "https://example.com/cached");
        assert!(
            max_age(&cache_control(&res)) <= 3,
            "cached past the link's expiry"
        );
        ids.insert(res.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 3, "each redirect is named on its own");
    let head = app.client.head(app.url(&path)).send().await.unwrap();
    assert_eq!(head.status(), 302);
    assert_eq!(location(&head), "https://example.com/cached");
    let text = app.get("/metrics", None).await.text().await.unwrap();
    for (method, n) in [("GET", 3.0), ("HEAD", 1.0)] {
        let series =
            format!("kurz_http_requests_total{{route=\"/{{code}}\",method=\"{method}\",status=\"302\"}}");
        assert_eq!(metric(&text, &series), n, "{series}");
    }
    assert!(metric(&text, "kurz_cache_requests_total{result=\"hit\"}") >= 3.0);
    let wait = (expires_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(200)).await;
    let res = app.get(&path, None).await;
    assert_eq!(
        res.status(),
        410,
        "a cached link past its expiry still redirected"
    );
    assert_eq!(cache_control(&res), "no-store");
}

/// A request id is a counter per request. The redirect fast path takes one only for a
/// redirect it answers, so a request it leaves to the router (here an unknown code)
/// is not counted twice, and neither is its turn in the access log's sampling.
#[tokio::test]
async fn request_ids_count_requests_whichever_path_answers_them() {
    let app = spawn_app().await;
    let path = format!("/{}", app.create_code("https://example.com/counted").await);
    let counter = |res: &reqwest::Response| {
        let id = res.headers()["x-request-id"].to_str().unwrap();
        let (_, hex) = id.rsplit_once('-').unwrap();
        u64::from_str_radix(hex, 16).unwrap()
    };
    assert_eq!(app.get(&path, None).await.status(), 302);
    let mut ids = Vec::new();
    for p in [path.as_str(), "/nosuch77", path.as_str(), "/nosuch78"] {
        ids.push(counter(&app.get(p, None).await));
    }
    let steps: Vec<u64> = ids.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(steps, [1, 1, 1], "request ids {ids:?}");
}

#[tokio::test]
async fn disabled_deleted_expired_and_unknown_links_are_no_store() {
    let app = spawn_with(|c| {
        c.server.cache_control_temporary_secs = 300;
        c.cache.negative_ttl_secs = 0;
    })
    .await;
    let disabled = app.create_code("https://example.com/off").await;
    // Cached first, so the answer below comes from a cached entry turned off.
    assert_eq!(app.get(&format!("/{disabled}"), None).await.status(), 302);
    let res = app
        .patch(&disabled, ADMIN_KEY, &json!({ "is_active": false }))
        .await;
    assert_eq!(res.status(), 200);
    let res = app.get(&format!("/{disabled}"), None).await;
    assert_eq!(res.status(), 410);
    assert_eq!(cache_control(&res), "no-store");

    let deleted = app.create_code("https://example.com/gone").await;
    assert_eq!(app.delete(&deleted, ADMIN_KEY).await.status(), 204);
    let res = app.get(&format!("/{deleted}"), None).await;
    assert_eq!(res.status(), 404);
    assert_eq!(cache_control(&res), "no-store");

    let soon = (Utc::now() + chrono::Duration::milliseconds(1200)).to_rfc3339();
    let res = app
        .create(
            Some(ADMIN_KEY),
            &json!({ "original_url": "https://example.com/e", "expires_at": soon }),
        )
        .await;
    let expired = short_code(res).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let res = app.get(&format!("/{expired}"), None).await;
    assert_eq!(res.status(), 410);
    assert_eq!(cache_control(&res), "no-store");

    let res = app.get("/nosuchcode", None).await;
    assert_eq!(res.status(), 404);
    assert_eq!(cache_control(&res), "no-store");
}

#[tokio::test]
async fn api_answers_are_no_store_except_the_qr_image() {
    let app = spawn_app().await;
    let res = app
        .create(
            Some(ADMIN_KEY),
            &json!({ "original_url": "https://example.com/api" }),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(cache_control(&res), "no-store");
    let code = short_code(res).await;
    for path in [
        format!("/api/v1/urls/{code}"),
        format!("/api/v1/urls/{code}/stats"),
        "/api/v1/urls".to_owned(),
        "/api/v1/openapi.json".to_owned(),
        "/api/v1/urls/nosuchcode".to_owned(),
    ] {
        let res = app.get(&path, Some(ADMIN_KEY)).await;
        assert_eq!(cache_control(&res), "no-store", "{path} ({})", res.status());
    }
    // An error before any handler runs (a wrong key) is no-store as well.
    let res = app.get(&format!("/api/v1/urls/{code}"), Some("wrong")).await;
    assert_eq!(res.status(), 401);
    assert_eq!(cache_control(&res), "no-store");
    let res = app.get(&format!("/api/v1/urls/{code}/qr"), None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(cache_control(&res), "public, max-age=86400");
}

/// A hot link that has not changed is kept fresh without reading it again, from its
/// first refresh on: on SQLite the store's links version says nothing changed since
/// it was loaded (PostgreSQL keeps none, and its refreshes read). A change made behind kurz's back
/// (another process on the same database) moves the version, so the link is read
/// again and the change is served within a TTL.
#[tokio::test]
async fn an_unchanged_hot_link_is_kept_without_a_read_and_a_change_behind_its_back_shows() {
    let app = spawn_with(|c| c.cache.ttl_secs = 2).await;
    let code = app.create_code("https://example.com/before").await;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(5_500) {
        let res = app.get(&format!("/{code}"), None).await;
        assert_eq!(location(&res), "https://example.com/before");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let kept = metric(&text, "kurz_cache_revalidations_total ");
    let refreshed = metric(&text, "kurz_cache_refreshes_total ");
    assert!(refreshed >= 2.0, "two TTLs passed: {refreshed}");
    if on_postgres() {
        assert_eq!(kept, 0.0, "PostgreSQL keeps no links version");
    } else {
        // Every refresh, the first after the start included: the link was loaded
        // after the version was first read, and no link changed since.
        assert_eq!(kept, refreshed, "each refresh kept the link without a read");
    }
    let update =
        format!("UPDATE links SET original_url = 'https://example.com/behind' WHERE code = '{code}'");
    app.sql(Box::leak(update.into_boxed_str())).await;
    served_within(&app, &code, "https://example.com/behind", 2_500).await;
}

/// A link not clicked for a whole TTL is never queued for a refresh; on SQLite its
/// next click renews it without a read when no link changed since it was loaded (the
/// last refresh round read the links version), where it used to be a miss.
/// PostgreSQL keeps no links version: the click reads it. A change behind kurz's
/// back still shows within a TTL.
#[tokio::test]
async fn a_link_idle_past_its_ttl_is_renewed_without_a_read_and_a_change_still_shows() {
    let app = spawn_with(|c| c.cache.ttl_secs = 2).await;
    let code = app.create_code("https://example.com/before").await;
    let misses = |text: &str| metric(text, "kurz_cache_requests_total{result=\"miss\"} ");
    // Refresh rounds run every 250 ms: let one see the create's version first, so
    // the load below comes after the last change it knows of.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let res = app.get(&format!("/{code}"), None).await;
    assert_eq!(location(&res), "https://example.com/before");
    tokio::time::sleep(std::time::Duration::from_millis(2_300)).await;
    let before = misses(&app.get("/metrics", None).await.text().await.unwrap());
    let res = app.get(&format!("/{code}"), None).await;
    assert_eq!(location(&res), "https://example.com/before");
    let after = misses(&app.get("/metrics", None).await.text().await.unwrap());
    if on_postgres() {
        assert_eq!(after, before + 1.0, "PostgreSQL: the expired link is read again");
    } else {
        assert_eq!(after, before, "renewed from the last refresh round, not read");
    }
    let update =
        format!("UPDATE links SET original_url = 'https://example.com/behind' WHERE code = '{code}'");
    app.sql(Box::leak(update.into_boxed_str())).await;
    served_within(&app, &code, "https://example.com/behind", 2_500).await;
}

/// Clicks `code` until it redirects to `url`, failing after `ms` milliseconds.
async fn served_within(app: &TestApp, code: &str, url: &str, ms: u64) {
    let changed = std::time::Instant::now();
    loop {
        let res = app.get(&format!("/{code}"), None).await;
        if location(&res) == url {
            return;
        }
        assert!(
            changed.elapsed() < std::time::Duration::from_millis(ms),
            "still the old target {:?} after the change",
            changed.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A link clicked all the time stays in the L1 cache past its TTL: it is reloaded in
/// the background late in its freshness, so only the first click after its create
/// misses (before, each TTL ended in a miss on the redirect path). The TTL still
/// bounds staleness: a change made through another instance (no Redis here to tell
/// this one) is served within a TTL.
#[tokio::test]
async fn a_hot_link_is_refreshed_before_it_expires_and_changes_still_show_within_the_ttl() {
    let app = spawn_with(|c| c.cache.ttl_secs = 2).await;
    let code = app.create_code("https://example.com/before").await;
    let misses = |text: &str| metric(text, "kurz_cache_requests_total{result=\"miss\"} ");
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let misses_before = misses(&text);
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(5_500) {
        let res = app.get(&format!("/{code}"), None).await;
        assert_eq!(res.status(), 302);
        assert_eq!(location(&res), "https://example.com/before");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(misses(&text) - misses_before, 1.0, "only the first click missed");
    assert!(
        metric(&text, "kurz_cache_refreshes_total ") >= 2.0,
        "two TTLs passed"
    );

    let other = app.twin().await;
    let res = other
        .patch(
            &code,
            ADMIN_KEY,
            &json!({ "original_url": "https://example.com/after" }),
        )
        .await;
    assert_eq!(res.status(), 200);
    served_within(&app, &code, "https://example.com/after", 2_500).await;
}
