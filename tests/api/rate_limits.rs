//! Tiered token buckets beyond F-11: anonymous per IP, trusted proxies, tiers,
//! admin, the redirect limit.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn anonymous_is_limited_per_client_ip_via_trusted_proxy() {
    let app = spawn_with(|c| {
        c.limits.anonymous = 2;
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let create = |ip: &'static str| {
        app.client
            .post(app.url("/api/v1/urls"))
            .header("X-Forwarded-For", ip)
            .json(&json!({ "original_url": "https://example.com" }))
            .send()
    };
    assert_eq!(create("198.51.100.1").await.unwrap().status(), 201);
    assert_eq!(create("198.51.100.1").await.unwrap().status(), 201);
    assert_eq!(create("198.51.100.1").await.unwrap().status(), 429);
    // Another client behind the same proxy has its own bucket.
    assert_eq!(create("198.51.100.2").await.unwrap().status(), 201);
}

#[tokio::test]
async fn forwarded_for_is_ignored_from_untrusted_peers() {
    let app = spawn_with(|c| c.limits.anonymous = 1).await;
    let create = |ip: &'static str| {
        app.client
            .post(app.url("/api/v1/urls"))
            .header("X-Forwarded-For", ip)
            .json(&json!({ "original_url": "https://example.com" }))
            .send()
    };
    assert_eq!(create("198.51.100.1").await.unwrap().status(), 201);
    // Spoofing a new address does not buy a new bucket.
    assert_eq!(create("198.51.100.2").await.unwrap().status(), 429);
}

#[tokio::test]
async fn tiers_get_their_configured_limits_and_admin_is_unlimited() {
    let app = spawn_with(|c| {
        c.limits.free = 1;
        c.limits.pro = 3;
    })
    .await;
    let free = app.user("f@example.com", "free").await;
    let pro = app.user("p@example.com", "pro").await;
    let body = json!({ "original_url": "https://example.com" });
    assert_eq!(app.create(Some(&free), &body).await.status(), 201);
    assert_eq!(app.create(Some(&free), &body).await.status(), 429);
    for _ in 0..3 {
        let res = app.create(Some(&pro), &body).await;
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["x-ratelimit-limit"], "3");
    }
    assert_eq!(app.create(Some(&pro), &body).await.status(), 429);
    for _ in 0..20 {
        let res = app.create(Some(ADMIN_KEY), &body).await;
        assert_eq!(res.status(), 201);
        assert!(!res.headers().contains_key("x-ratelimit-limit"));
    }
}

#[tokio::test]
async fn redirect_limit_is_off_by_default_and_per_ip_when_on() {
    let app = spawn_app().await;
    let code = app.create_code("https://example.com").await;
    for _ in 0..50 {
        assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
    }
    let app = spawn_with(|c| c.limits.redirect = 3).await;
    let code = app.create_code("https://example.com").await;
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
    }
    let res = app.get(&format!("/{code}"), None).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(error_code(res).await, "RATE_LIMIT_EXCEEDED");
}
