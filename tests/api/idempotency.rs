//! `X-Idempotency-Key` beyond F-13: concurrency, scoping, failures.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_link() {
    let app = spawn_app().await;
    let key = app.user("idem@example.com", "free").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = app.client.clone();
        let url = app.url("/api/v1/urls");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .header("X-API-Key", key)
                .header("X-Idempotency-Key", "same-key")
                .json(&json!({ "original_url": "https://example.com/one" }))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.bytes().await.unwrap())
        }));
    }
    let mut bodies = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201);
        bodies.insert(body);
    }
    assert_eq!(bodies.len(), 1, "every response is the first one, byte for byte");
    let list: Value = app.get("/api/v1/urls", Some(&key)).await.json().await.unwrap();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "exactly one link was created"
    );
}

#[tokio::test]
async fn keys_are_scoped_per_caller_and_errors_are_replayed_too() {
    let app = spawn_app().await;
    let alice = app.user("a@example.com", "free").await;
    let bob = app.user("b@example.com", "free").await;
    let send = |k: &str, body: Value| {
        app.client
            .post(app.url("/api/v1/urls"))
            .header("X-API-Key", k.to_owned())
            .header("X-Idempotency-Key", "shared")
            .json(&body)
            .send()
    };
    let a: Value = send(&alice, json!({ "original_url": "https://example.com/a" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = send(&bob, json!({ "original_url": "https://example.com/a" }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(
        a["short_code"], b["short_code"],
        "one key, two callers, two links"
    );

    // A 4xx is a final answer and is replayed as well.
    let k = "err-key";
    let bad = json!({ "original_url": "javascript:1" });
    for replayed in [false, true] {
        let res = app
            .client
            .post(app.url("/api/v1/urls"))
            .header("X-API-Key", &alice)
            .header("X-Idempotency-Key", k)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers().contains_key("idempotent-replayed"), replayed);
    }
}

#[tokio::test]
async fn bad_idempotency_keys_are_400() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/v1/urls"))
        .header("X-Idempotency-Key", "k".repeat(300))
        .json(&json!({ "original_url": "https://example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(error_code(res).await, "INVALID_REQUEST");
}

#[tokio::test]
async fn bulk_is_idempotent_too() {
    let app = spawn_app().await;
    let body = json!({ "urls": [{ "original_url": "https://example.com/1" }, { "original_url": "https://example.com/2" }] });
    let mut seen = Vec::new();
    for _ in 0..2 {
        let res = app
            .client
            .post(app.url("/api/v1/urls/bulk"))
            .header("X-API-Key", ADMIN_KEY)
            .header("X-Idempotency-Key", "bulk-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        seen.push(res.bytes().await.unwrap());
    }
    assert_eq!(seen[0], seen[1]);
    let list: Value = app
        .get("/api/v1/urls", Some(ADMIN_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
}
