//! Link behaviour beyond the seed table: listing, QR codes, group commit, the key
//! generator's fallback and the cache's negative entries.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn list_pages_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let key = app.user("lister@example.com", "free").await;
    let mut created = Vec::new();
    for i in 0..7 {
        let res = app
            .create(
                Some(&key),
                &json!({ "original_url": format!("https://example.com/{i}") }),
            )
            .await;
        created.push(short_code(res).await);
    }
    app.create_code("https://example.com/admins-own").await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/urls?limit=3".to_owned();
    loop {
        let body: Value = app.get(&path, Some(&key)).await.json().await.unwrap();
        for item in body["items"].as_array().unwrap() {
            seen.push(item["short_code"].as_str().unwrap().to_owned());
            assert!(item["click_count"].is_i64());
        }
        match body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/urls?limit=3&cursor={c}"),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(
        seen, created,
        "all of the caller's links, newest first, no one else's"
    );
    for bad in ["limit=0", "limit=101", "limit=abc", "cursor=zz%20"] {
        let res = app.get(&format!("/api/v1/urls?{bad}"), Some(&key)).await;
        assert_eq!(res.status(), 400, "{bad}");
    }
    assert_eq!(app.get("/api/v1/urls", None).await.status(), 401);
}

/// A page of the largest size still says when more links follow: the extra row that
/// tells is asked for beyond the page size, not clamped away (with 101 links and
/// limit=100 the first page used to end the list).
#[tokio::test]
async fn a_full_page_of_the_largest_size_still_has_a_next_cursor() {
    let app = spawn_app().await;
    let key = app.user("many@example.com", "free").await;
    let urls: Vec<Value> = (0..101)
        .map(|i| json!({ "original_url": format!("https://example.com/many/{i}") }))
        .collect();
    assert_eq!(app.bulk(Some(&key), &json!({ "urls": urls })).await.status(), 201);
    let body: Value = app
        .get("/api/v1/urls?limit=100", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 100);
    let cursor = body["next_cursor"].as_str().expect("a next page");
    let body: Value = app
        .get(&format!("/api/v1/urls?limit=100&cursor={cursor}"), Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert!(body["next_cursor"].is_null());
}

/// `q` finds links by code or target, `order=asc` lists oldest first, and the cursor
/// pages through either.
#[tokio::test]
async fn list_searches_and_orders() {
    let app = spawn_app().await;
    let key = app.user("searcher@example.com", "free").await;
    for (alias, url) in [
        ("sale-one", "https://shop.example/a"),
        ("news-one", "https://news.example/SALE"),
        ("sale-two", "https://shop.example/b"),
        ("misc-one", "https://other.example/"),
    ] {
        let res = app
            .create(Some(&key), &json!({ "original_url": url, "custom_alias": alias }))
            .await;
        assert_eq!(res.status(), 201);
    }
    let codes = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["short_code"].as_str().unwrap().to_owned())
            .collect()
    };
    let body: Value = app
        .get("/api/v1/urls?q=sale", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(codes(&body), ["sale-two", "news-one", "sale-one"]);
    let body: Value = app
        .get("/api/v1/urls?q=sale&order=asc&limit=2", Some(&key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(codes(&body), ["sale-one", "news-one"]);
    let cursor = body["next_cursor"].as_str().unwrap();
    let body: Value = app
        .get(
            &format!("/api/v1/urls?q=sale&order=asc&limit=2&cursor={cursor}"),
            Some(&key),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(codes(&body), ["sale-two"]);
    assert!(body["next_cursor"].is_null());
    for bad in ["order=up", &format!("q={}", "x".repeat(201))] {
        let res = app.get(&format!("/api/v1/urls?{bad}"), Some(&key)).await;
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(error_code(res).await, "INVALID_REQUEST");
    }
}

#[tokio::test]
async fn qr_code_as_png_and_svg() {
    let app = spawn_app().await;
    let code = app.create_code("https://example.com/qr").await;
    let res = app.get(&format!("/api/v1/urls/{code}/qr"), None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    let png = res.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let res = app
        .get(&format!("/api/v1/urls/{code}/qr?format=svg&size=512"), None)
        .await;
    assert_eq!(res.headers()["content-type"], "image/svg+xml");
    let svg = res.text().await.unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("width=\"512\""));
    assert_eq!(app.get("/api/v1/urls/nosuch1/qr", None).await.status(), 404);
    for bad in ["format=gif", "size=10", "size=99999", "size=-1"] {
        let res = app.get(&format!("/api/v1/urls/{code}/qr?{bad}"), None).await;
        assert_eq!(res.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn concurrent_creates_are_group_committed_without_failures() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = app.client.clone();
        let url = app.url("/api/v1/urls");
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .header("X-API-Key", ADMIN_KEY)
                .json(&json!({ "original_url": format!("https://example.com/{i}") }))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            let body: Value = res.json().await.unwrap();
            (i, body["short_code"].as_str().unwrap().to_owned())
        }));
    }
    let mut codes = HashSet::new();
    let mut pairs = Vec::new();
    for t in tasks {
        let (i, code) = t.await.unwrap();
        assert!(codes.insert(code.clone()));
        pairs.push((i, code));
    }
    for (i, code) in pairs.iter().step_by(20) {
        assert_eq!(
            location(&app.get(&format!("/{code}"), None).await),
            format!("https://example.com/{i}")
        );
    }
}

#[tokio::test]
async fn c04_kgs_cannot_lease_so_creates_use_random_fallback_codes() {
    // A real fault, not a mock: the counter is moved to the end of the code space, so
    // the store refuses every lease, exactly as when the KGS table is unusable.
    let app = spawn_with(|c| c.keys.block_size = 2).await;
    let first = app.create_code("https://example.com/before").await;
    app.sql("UPDATE kgs_counter SET next_value = 3521614606208").await;
    let health: Value = app.get("/health", None).await.json().await.unwrap();
    assert_eq!(health["components"]["kgs"], "healthy");
    let mut codes = HashSet::from([first]);
    for i in 0..20 {
        let code = app
            .create_code(&format!("https://example.com/fallback/{i}"))
            .await;
        assert_eq!(code.len(), 7);
        assert!(codes.insert(code.clone()));
        assert_eq!(
            location(&app.get(&format!("/{code}"), None).await),
            format!("https://example.com/fallback/{i}")
        );
    }
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), 200);
    let health: Value = res.json().await.unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["components"]["kgs"], "degraded");
}

#[tokio::test]
async fn a_link_created_after_a_cached_miss_redirects_at_once() {
    let app = spawn_app().await;
    // The miss is cached (negative caching)…
    assert_eq!(app.get("/later1", None).await.status(), 404);
    assert_eq!(app.get("/later1", None).await.status(), 404);
    // …but creating the alias replaces that entry.
    app.create(
        None,
        &json!({ "original_url": "https://example.com/l", "custom_alias": "later1" }),
    )
    .await;
    assert_eq!(app.get("/later1", None).await.status(), 302);
}

#[tokio::test]
async fn metadata_round_trips_and_is_bounded() {
    let app = spawn_app().await;
    let meta = json!({ "campaign": "launch", "source": "newsletter" });
    let res = app
        .create(
            Some(ADMIN_KEY),
            &json!({ "original_url": "https://example.com", "metadata": meta }),
        )
        .await;
    let code = short_code(res).await;
    let info: Value = app
        .get(&format!("/api/v1/urls/{code}"), Some(ADMIN_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["metadata"], meta);
    for analytics in ["clicks_24h", "clicks_7d"] {
        assert!(info["analytics"][analytics].is_u64());
    }
    assert!(info["analytics"]["top_countries"].is_array());
    assert!(info["analytics"]["top_referrers"].is_array());
    for bad in [
        json!({ "a": 1 }),
        json!({ "a": { "b": "c" } }),
        json!(["x"]),
        json!({ "a": "x".repeat(5000) }),
    ] {
        let res = app
            .create(
                None,
                &json!({ "original_url": "https://example.com", "metadata": bad }),
            )
            .await;
        assert_eq!(res.status(), 400);
        assert_eq!(error_code(res).await, "INVALID_REQUEST");
    }
}

/// A new instance loads the links clicked in the last day into its cache before it
/// is asked for them: their first redirects are cache hits (the seed's cache
/// warming), and a link nobody clicked is not loaded.
#[tokio::test]
async fn a_starting_instance_warms_its_cache_with_the_links_clicked_lately() {
    let app = spawn_app().await;
    let clicked: Vec<String> = {
        let mut codes = Vec::new();
        for i in 0..3 {
            codes.push(app.create_code(&format!("https://example.com/hot/{i}")).await);
        }
        codes
    };
    let cold = app.create_code("https://example.com/cold").await;
    for code in &clicked {
        assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
    }
    let poll = std::time::Duration::from_millis(50);
    crate::support::wait_for("the clicks in the store", poll, async || {
        app.count("SELECT COUNT(DISTINCT code) FROM click_rollups").await == 3
    })
    .await;
    let fresh = app.twin().await;
    crate::support::wait_for("the warm-up", poll, async || {
        let text = fresh.get("/metrics", None).await.text().await.unwrap();
        metric(&text, "kurz_cache_entries ") >= 3.0
    })
    .await;
    let text = fresh.get("/metrics", None).await.text().await.unwrap();
    let misses = metric(&text, "kurz_cache_requests_total{result=\"miss\"} ");
    for code in &clicked {
        assert_eq!(fresh.get(&format!("/{code}"), None).await.status(), 302);
    }
    let text = fresh.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(
        metric(&text, "kurz_cache_requests_total{result=\"miss\"} "),
        misses,
        "the warmed links were hits"
    );
    assert_eq!(fresh.get(&format!("/{cold}"), None).await.status(), 302);
    let text = fresh.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(
        metric(&text, "kurz_cache_requests_total{result=\"miss\"} "),
        misses + 1.0,
        "the unclicked link was not loaded"
    );
}

/// A starting instance loads its hot links before it answers: the first request it
/// answers already finds them all cached. Before, the warm-up ran beside the first
/// requests, and under the bench's load each of them was a store lookup until it
/// got there (over a second of the first five).
#[tokio::test]
async fn a_starting_instance_answers_once_its_hot_links_are_cached() {
    const HOT: usize = 2_000;
    // A wait no CI machine runs out of: the test is about the order, not the bound.
    let app = spawn_with(|c| c.cache.warm_wait_ms = 60_000).await;
    let mut codes = Vec::with_capacity(HOT);
    for batch in 0..HOT / 1_000 {
        let urls = (0..1_000).map(|i| format!("https://example.com/warm/{batch}/{i}"));
        codes.extend(app.create_codes(urls).await);
    }
    for code in &codes {
        assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
    }
    let poll = std::time::Duration::from_millis(50);
    crate::support::wait_for("the clicks in the store", poll, async || {
        app.count("SELECT COUNT(DISTINCT code) FROM click_rollups").await == HOT as i64
    })
    .await;
    let fresh = app.twin().await;
    let text = fresh.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(
        metric(&text, "kurz_cache_entries "),
        HOT as f64,
        "every hot link was cached before the first answer"
    );
}
