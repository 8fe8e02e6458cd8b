//! Users, API keys, JWTs and the ownership rule.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn users_are_created_by_admins_only() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/v1/users"))
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({ "email": "Pat@Example.com", "tier": "pro" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["email"], "pat@example.com");
    assert_eq!(body["tier"], "pro");
    assert!(body["id"].is_i64());
    assert!(body["rate_limit"].is_u64());
    let key = body["api_key"].as_str().unwrap();
    assert!(key.len() >= 32);

    // A non-admin may not create users; nobody may without credentials.
    let res = app
        .client
        .post(app.url("/api/v1/users"))
        .header("X-API-Key", key)
        .json(&json!({ "email": "x@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(error_code(res).await, "FORBIDDEN");
    let res = app
        .client
        .post(app.url("/api/v1/users"))
        .json(&json!({ "email": "y@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Duplicate email, bad email, bad tier.
    for (body, status) in [
        (json!({ "email": "pat@example.com" }), 409),
        (json!({ "email": "not-an-email" }), 400),
        (json!({ "email": "z@example.com", "tier": "platinum" }), 400),
    ] {
        let res = app
            .client
            .post(app.url("/api/v1/users"))
            .header("X-API-Key", ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{body}");
    }
}

#[tokio::test]
async fn api_keys_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    let key = app.user("hash@example.com", "free").await;
    // Everything the database holds, as text: the files for SQLite, a dump of every
    // user row for PostgreSQL.
    let hay = match &app.backend {
        Backend::Sqlite(path) => {
            let raw = std::fs::read(path).unwrap();
            let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
            format!(
                "{}{}",
                String::from_utf8_lossy(&raw),
                String::from_utf8_lossy(&wal)
            )
        }
        Backend::Postgres(url) => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                .await
                .unwrap();
            let rows: Vec<String> = sqlx::query_scalar("SELECT row_to_json(u)::text FROM users u")
                .fetch_all(&mut c)
                .await
                .unwrap();
            assert!(rows.len() >= 2);
            rows.join("\n")
        }
    };
    assert!(!hay.contains(&key), "the API key must not be stored in clear");
    assert!(!hay.contains(ADMIN_KEY), "nor the admin key");
}

#[tokio::test]
async fn api_key_exchanges_for_a_jwt_that_authenticates() {
    let app = spawn_app().await;
    let key = app.user("jwt@example.com", "free").await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let token = body["access_token"].as_str().unwrap();

    let res = app
        .client
        .post(app.url("/api/v1/urls"))
        .bearer_auth(token)
        .json(&json!({ "original_url": "https://example.com/jwt" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let code = short_code(res).await;
    // The link belongs to the key's user: readable with the key.
    assert_eq!(
        app.get(&format!("/api/v1/urls/{code}"), Some(&key))
            .await
            .status(),
        200
    );

    // Without a key, or with a wrong one, no token.
    let res = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("X-API-Key", "bad")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A tampered token is refused. The first signature character always carries six
    // signature bits (the last one may carry padding bits only), so change that one.
    let sig_start = token.rfind('.').unwrap() + 1;
    let first = token.as_bytes()[sig_start];
    let replacement = if first == b'A' { "B" } else { "A" };
    let tampered = format!(
        "{}{}{}",
        &token[..sig_start],
        replacement,
        &token[sig_start + 1..]
    );
    let res = app
        .client
        .get(app.url("/api/v1/urls"))
        .bearer_auth(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn only_the_owner_or_an_admin_manages_a_link() {
    let app = spawn_app().await;
    let alice = app.user("alice@example.com", "free").await;
    let bob = app.user("bob@example.com", "free").await;
    let res = app
        .create(Some(&alice), &json!({ "original_url": "https://example.com/a" }))
        .await;
    let code = short_code(res).await;

    let info = format!("/api/v1/urls/{code}");
    let stats = format!("/api/v1/urls/{code}/stats");
    assert_eq!(app.get(&info, Some(&alice)).await.status(), 200);
    assert_eq!(app.get(&info, Some(ADMIN_KEY)).await.status(), 200);
    for path in [&info, &stats] {
        let res = app.get(path, Some(&bob)).await;
        assert_eq!(res.status(), 403, "{path}");
        assert_eq!(error_code(res).await, "FORBIDDEN");
        assert_eq!(app.get(path, None).await.status(), 401, "{path}");
    }
    assert_eq!(
        app.patch(&code, &bob, &json!({ "is_active": false }))
            .await
            .status(),
        403
    );
    let res = app
        .client
        .delete(app.url(&info))
        .header("X-API-Key", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Bob's attempts changed nothing.
    assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
    assert_eq!(
        app.patch(&code, &alice, &json!({ "is_active": false }))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn anonymous_creation_can_be_turned_off() {
    let app = spawn_with(|c| c.auth.allow_anonymous = false).await;
    let res = app
        .create(None, &json!({ "original_url": "https://example.com" }))
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(error_code(res).await, "UNAUTHORIZED");
    assert_eq!(
        app.create(Some(ADMIN_KEY), &json!({ "original_url": "https://example.com" }))
            .await
            .status(),
        201
    );
}
