//! What attacking the service from outside found (issue 23), each answered as the
//! contract says: self-redirects, malformed bulk items, two credentials, guessing
//! credentials, bulk against the rate limit, tokens of removed users, weak secrets,
//! connection floods, slow bodies, and the order of checks on stats.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// A JWT for an API key.
async fn token(app: &TestApp, key: &str) -> String {
    let res: Value = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["access_token"].as_str().unwrap().to_owned()
}

/// The app's `host:port`.
fn host_port(app: &TestApp) -> &str {
    &app.addr["http://".len()..]
}

/// Bug 3: every spelling of this service's host is refused, on create, bulk and
/// PATCH: the public base URL's (`kurz.test` in the tests), the listen address's
/// (127.0.0.1, so every loopback and `localhost` spelling), and `KURZ_SELF_HOSTS`.
#[tokio::test]
async fn links_to_this_service_are_refused_in_every_spelling() {
    let app = spawn_with(|c| c.server.self_hosts = vec!["cdn.kurz.test".into()]).await;
    let port = app.addr.rsplit(':').next().unwrap().to_owned();
    let targets = [
        "http://kurz.test./x".to_owned(),
        "http://kurz.test%2e/x".to_owned(),
        "http://KURZ.Test/x".to_owned(),
        format!("http://localhost:{port}/x"),
        format!("http://localhost.:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://127.1:{port}/x"),
        format!("http://0.0.0.0:{port}/x"),
        "https://cdn.kurz.test/x".to_owned(),
    ];
    let code = app.create_code("https://example.com/patched").await;
    for target in &targets {
        let res = app
            .create(Some(ADMIN_KEY), &json!({ "original_url": target }))
            .await;
        assert_eq!(res.status(), 400, "{target}");
        assert_eq!(error_code(res).await, "INVALID_URL", "{target}");
        let res = app
            .patch(&code, ADMIN_KEY, &json!({ "original_url": target }))
            .await;
        assert_eq!(res.status(), 400, "PATCH {target}");
    }
    let res = app
        .bulk(
            Some(ADMIN_KEY),
            &json!({ "urls": targets.iter().map(|t| json!({ "original_url": t })).collect::<Vec<_>>() }),
        )
        .await;
    assert_eq!(res.status(), 207);
    let body: Value = res.json().await.unwrap();
    for item in body["results"].as_array().unwrap() {
        assert_eq!(item["code"], "INVALID_URL", "{item}");
    }
    // Other hosts are fine, the look-alikes too.
    for ok in [
        "http://kurz.testing/x",
        "http://a.kurz.test/x",
        "http://10.1.2.3/x",
    ] {
        let res = app.create(Some(ADMIN_KEY), &json!({ "original_url": ok })).await;
        assert_eq!(res.status(), 201, "{ok}");
    }
}

/// Bug 4: a malformed item (wrong type, unknown field) fails alone, in a 207; an
/// integral float is an integer, as in JSON Schema.
#[tokio::test]
async fn a_malformed_bulk_item_fails_alone() {
    let app = spawn_app().await;
    let res = app
        .bulk(
            Some(ADMIN_KEY),
            &json!({ "urls": [
                { "original_url": "https://example.com/1" },
                { "original_url": 5 },
                { "original_url": "https://example.com/3", "nope": true },
                { "original_url": "https://example.com/4", "expires_in_days": 163.0 },
                "not an object",
            ] }),
        )
        .await;
    assert_eq!(res.status(), 207);
    let body: Value = res.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    let status: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["created", "failed", "failed", "created", "failed"]);
    for i in [1, 2, 4] {
        assert_eq!(results[i]["code"], "INVALID_REQUEST", "{}", results[i]);
        assert_eq!(results[i]["index"], i);
    }
    assert_eq!(results[2]["original_url"], "https://example.com/3");
    // The envelope is still checked as a whole.
    let res = app.bulk(Some(ADMIN_KEY), &json!({ "urls": [], "x": 1 })).await;
    assert_eq!(res.status(), 400);
}

/// Bug 6: two credentials (a key and a token, or a header twice) are 400.
#[tokio::test]
async fn two_credentials_are_refused() {
    let app = spawn_app().await;
    let key = app.user("two@example.com", "free").await;
    let token = &token(&app, &key).await;
    let body = json!({ "original_url": "https://example.com/two" });
    let sends = [
        app.client
            .post(app.url("/api/v1/urls"))
            .header("X-API-Key", ADMIN_KEY)
            .bearer_auth(token),
        app.client
            .post(app.url("/api/v1/urls"))
            .header("X-API-Key", &key)
            .header("X-API-Key", ADMIN_KEY),
        app.client
            .post(app.url("/api/v1/urls"))
            .bearer_auth(token)
            .header("Authorization", "Bearer x"),
    ];
    for send in sends {
        let res = send.json(&body).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(error_code(res).await, "INVALID_REQUEST");
    }
}

/// Bug 6: wrong credentials are limited per client (20 a minute by default); past
/// that, 429 with the usual headers, before any lookup. Requests without
/// credentials are not affected.
#[tokio::test]
async fn failed_authentication_is_rate_limited_per_client() {
    let app = spawn_app().await;
    let bad = |i: usize| {
        app.client
            .get(app.url("/api/v1/urls"))
            .header("X-API-Key", format!("kurz_guess{i}"))
            .send()
    };
    for i in 0..20 {
        let res = bad(i).await.unwrap();
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    let res = bad(20).await.unwrap();
    assert_eq!(res.status(), 429);
    for h in [
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(res.headers().contains_key(h), "{h}");
    }
    assert_eq!(res.headers()["x-ratelimit-limit"], "20");
    assert_eq!(error_code(res).await, "RATE_LIMIT_EXCEEDED");
    // Even a right key waits now: the client is out of attempts.
    assert_eq!(app.get("/api/v1/urls", Some(ADMIN_KEY)).await.status(), 429);
    assert_eq!(
        app.create(None, &json!({ "original_url": "https://example.com/anon" }))
            .await
            .status(),
        201
    );
}

/// Bug 6: a bulk costs one request of the caller's budget per link.
#[tokio::test]
async fn a_bulk_is_charged_per_link() {
    let app = spawn_with(|c| c.limits.free = 10).await;
    let key = app.user("bulk@example.com", "free").await;
    let links = |n: usize| json!({ "urls": (0..n).map(|i| json!({ "original_url": format!("https://example.com/b{i}") })).collect::<Vec<_>>() });
    let res = app.bulk(Some(&key), &links(4)).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "6");
    let res = app.bulk(Some(&key), &links(7)).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let res = app.bulk(Some(&key), &links(11)).await;
    assert_eq!(res.status(), 429);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("at most 10"), "{body}");
}

/// Bug 6: a token of a user that is gone stops working within the auth cache's TTL.
#[tokio::test]
async fn a_token_of_a_deleted_user_stops_working() {
    let app = spawn_with(|c| c.auth.cache_ttl_secs = 1).await;
    let key = app.user("gone@example.com", "pro").await;
    let token = token(&app, &key).await;
    let list = || app.client.get(app.url("/api/v1/urls")).bearer_auth(&token).send();
    assert_eq!(list().await.unwrap().status(), 200);
    app.sql("DELETE FROM users WHERE email = 'gone@example.com'")
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let res = list().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(error_code(res).await, "UNAUTHORIZED");
    assert_eq!(app.get("/api/v1/urls", Some(&key)).await.status(), 401);
}

/// Bug 6: an admin key or JWT secret short enough to guess stops the start, saying
/// which and why.
#[tokio::test]
async fn short_secrets_refuse_to_start() {
    for (name, set) in [
        (
            "KURZ_ADMIN_API_KEY",
            (|c: &mut kurz::Config| c.auth.admin_api_key = Some("a".parse().unwrap()))
                as fn(&mut kurz::Config),
        ),
        ("KURZ_JWT_SECRET", |c: &mut kurz::Config| {
            c.auth.jwt_secret = Some("x".repeat(31).parse().unwrap())
        }),
    ] {
        let (mut config, _backend, _dir) = test_config().await;
        config.analytics.spool_dir = fresh_spool_dir().path().to_path_buf();
        set(&mut config);
        let Err(e) = kurz::Application::build(config).await else {
            panic!("{name}: started with a short secret");
        };
        let e = e.to_string();
        assert!(e.contains(name) && e.contains("at least 32"), "{e}");
    }
}

/// Bug 6: past `KURZ_MAX_CONNECTIONS`, a connection is answered 503 and closed and
/// counted; a head over 16 KiB is 431, however long the client keeps sending.
#[tokio::test]
async fn connections_and_headers_are_bounded() {
    let app = spawn_with(|c| c.server.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(host_port(&app)).await.unwrap());
    }
    let mut third = tokio::net::TcpStream::connect(host_port(&app)).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
        .await
        .expect("the connection over the cap was neither answered nor closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("SERVICE_UNAVAILABLE"), "{answer}");
    drop(held);

    let mut c = tokio::net::TcpStream::connect(host_port(&app)).await.unwrap();
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let _ = c.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert!(metric(&text, "kurz_http_connections_rejected_total") >= 1.0);
    assert!(metric(&text, "kurz_http_connections_open") >= 1.0);
}

/// Bug 6: a body that does not arrive in time ends in 408 REQUEST_TIMEOUT (the
/// client's fault), not 503 (the server's).
#[tokio::test]
async fn a_slow_body_is_408() {
    let app = spawn_with(|c| c.server.request_timeout_secs = 1).await;
    let mut c = tokio::net::TcpStream::connect(host_port(&app)).await.unwrap();
    c.write_all(
        b"POST /api/v1/urls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"original_url\":",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut answer))
        .await
        .expect("no answer to a slow body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
}

/// Bug 6: stats say who may see a link before what is wrong with the question.
#[tokio::test]
async fn stats_check_the_caller_before_the_parameters() {
    let app = spawn_app().await;
    let alice = app.user("alice@example.com", "free").await;
    let code = app.create_code("https://example.com/s").await;
    let bad = "granularity=month";
    let res = app.get(&format!("/api/v1/urls/nope1/stats?{bad}"), None).await;
    assert_eq!(res.status(), 401);
    let res = app
        .get(&format!("/api/v1/urls/{code}/stats?{bad}"), Some(&alice))
        .await;
    assert_eq!(res.status(), 403);
    let res = app
        .get(&format!("/api/v1/urls/nope1/stats?{bad}"), Some(&alice))
        .await;
    assert_eq!(res.status(), 404);
    let res = app
        .get(&format!("/api/v1/urls/{code}/stats?{bad}"), Some(ADMIN_KEY))
        .await;
    assert_eq!(res.status(), 400);
}

/// A QR code is exactly as wide and high as asked.
#[tokio::test]
async fn qr_codes_are_exactly_the_size_asked() {
    let app = spawn_app().await;
    let code = app.create_code("https://example.com/qr").await;
    for (query, size) in [
        ("", 256),
        ("?size=512", 512),
        ("?size=64", 64),
        ("?size=2048", 2048),
    ] {
        let res = app.get(&format!("/api/v1/urls/{code}/qr{query}"), None).await;
        assert_eq!(res.status(), 200);
        let bytes = res.bytes().await.unwrap();
        let reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        assert_eq!(
            (reader.info().width, reader.info().height),
            (size, size),
            "{query}"
        );
    }
}

/// Stats echo the range they used (from the hour holding the start) and instants
/// as the rest of the API writes them, to the millisecond; a create answers
/// `expires_at` as it is stored.
#[tokio::test]
async fn timestamps_are_answered_as_used_and_stored() {
    let app = spawn_app().await;
    let res = app
        .create(
            Some(ADMIN_KEY),
            &json!({ "original_url": "https://example.com/t", "expires_at": "2031-01-01T00:00:00.123456789Z" }),
        )
        .await;
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["expires_at"], "2031-01-01T00:00:00.123Z");
    let code = created["short_code"].as_str().unwrap();
    let info: Value = app
        .get(&format!("/api/v1/urls/{code}"), Some(ADMIN_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["expires_at"], created["expires_at"]);

    let stats: Value = app
        .get(
            &format!("/api/v1/urls/{code}/stats?start_date=2026-01-01T10:30:00Z&end_date=2026-01-01T12:00:00.123456Z&granularity=hour"),
            Some(ADMIN_KEY),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["start_date"], "2026-01-01T10:00:00Z");
    assert_eq!(stats["end_date"], "2026-01-01T12:00:00.123Z");
    assert_eq!(stats["time_series"][0]["timestamp"], "2026-01-01T10:00:00Z");
    let stats: Value = app
        .get(&format!("/api/v1/urls/{code}/stats"), Some(ADMIN_KEY))
        .await
        .json()
        .await
        .unwrap();
    let start = stats["start_date"].as_str().unwrap();
    assert!(start.ends_with(":00:00Z"), "{start}");
    let end = stats["end_date"].as_str().unwrap();
    let fraction = end.split('.').nth(1).map_or(0, |f| f.len() - 1);
    assert!(fraction <= 3, "{end}");
}

/// Every metric the README names that kurz has is on `/metrics` from the start, at
/// zero, so that dashboards and alerts see it before its first event (the Redis
/// errors counter when Redis is configured).
#[tokio::test]
async fn metrics_are_registered_at_zero() {
    let app = spawn_app().await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    if on_postgres() {
        metric(&text, "kurz_redis_errors_total");
    }
    for name in [
        "kurz_links_created_total",
        "kurz_http_connections_open",
        "kurz_http_connections_rejected_total",
        "kurz_cache_requests_total{result=\"hit\"}",
        "kurz_cache_entries",
        "kurz_kgs_keys_left",
        "kurz_click_events_enqueued_total",
        "kurz_click_events_dropped_total",
        "kurz_click_events_overflow_total",
        "kurz_click_spool_corrupt_records_total",
        "kurz_click_queue_depth",
        "kurz_click_events_written_total{sink=\"store\"}",
        "kurz_click_events_already_written_total{sink=\"store\"}",
        "kurz_click_spool_bytes{sink=\"store\"}",
    ] {
        metric(&text, name);
    }
}

/// `KURZ_LISTEN` alone: short URLs use the port kurz listens on, not 8080.
#[tokio::test]
async fn the_listen_address_alone_sets_the_short_urls() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _kurz = crate::support::Running(
        Command::new(env!("CARGO_BIN_EXE_kurz"))
            .arg("serve")
            .env("KURZ_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("KURZ_PUBLIC_BASE_URL")
            .env(
                "KURZ_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("k.db").display()),
            )
            .env("KURZ_ANALYTICS_SPOOL_DIR", dir.path().join("spool"))
            .env("KURZ_ADMIN_API_KEY", ADMIN_KEY)
            .env("KURZ_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    crate::support::wait_for("kurz to start", Duration::from_millis(50), async || {
        client.get(format!("{base}/health")).send().await.is_ok()
    })
    .await;
    let create = |url: &str| {
        client
            .post(format!("{base}/api/v1/urls"))
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({ "original_url": url }))
            .send()
    };
    let res = create("https://example.com/port").await.unwrap();
    let body: Value = res.json().await.unwrap();
    let short = body["short_url"].as_str().unwrap();
    assert!(short.starts_with(&format!("{base}/")), "{short}");
    assert_eq!(
        create(short).await.unwrap().status(),
        400,
        "a short link to itself"
    );
}

/// Slow-loris: a client that never finishes its request head is cut off after
/// `KURZ_HEADER_TIMEOUT_SECS`, so it cannot hold a connection slot for ever.
#[tokio::test]
async fn a_head_that_never_ends_is_cut_off_after_the_header_timeout() {
    let app = spawn_with(|c| c.server.header_timeout_secs = 1).await;
    let mut c = tokio::net::TcpStream::connect(host_port(&app)).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // Well past the 1 s timeout, well short of the 30 s request timeout.
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut answer))
        .await
        .expect("a connection with an unfinished head was kept open past the header timeout")
        .unwrap_or_default();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}
