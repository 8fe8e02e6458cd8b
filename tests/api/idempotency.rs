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

/// The app's database, one connection kept open (a poll must be quicker than the
/// request it watches).
enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    async fn open(app: &TestApp) -> Self {
        match &app.backend {
            Backend::Sqlite(path) => Db::Sqlite(
                sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap(),
            ),
            Backend::Postgres(url) => Db::Postgres(sqlx::PgPool::connect(url).await.unwrap()),
        }
    }

    async fn count(&self, sql: &'static str) -> i64 {
        match self {
            Db::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Db::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }
}

/// Bug 1 of issue 23: a bulk create whose client resets the connection while the
/// server is working on it left its key claimed for good, and every retry waited 10 s
/// for a 503. Now the first run goes on in a task of its own and keeps its answer, so
/// a retry gets that answer as soon as it is done (or runs again if it failed).
///
/// The reset is sent only once the key's record is claimed and still has no answer,
/// so the request is cut mid-way. On PostgreSQL a lock on `links` holds the insert
/// until then. SQLite has one lock for the whole file, which would hold the claim
/// too, so there the first link's insert is made slow in the database itself: a
/// trigger that counts a cross join of a helper table. That delay is the one fake
/// here (nothing else can hold an SQLite insert back while a claim goes through);
/// without it a busy machine could finish the bulk between two polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_mid_request_does_not_keep_its_key_claimed() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let db = Db::open(&app).await;
    let n = 1000;
    let urls: Vec<Value> = (0..n)
        .map(|i| json!({ "original_url": format!("https://example.com/reset/{i}/{}", "p".repeat(1500)) }))
        .collect();
    let body = serde_json::to_vec(&json!({ "urls": urls })).unwrap();
    let port = app.addr.rsplit(':').next().unwrap();
    let head = format!(
        "POST /api/v1/urls/bulk HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {ADMIN_KEY}\r\n\
         X-Idempotency-Key: reset-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );

    // On PostgreSQL, inserts into `links` wait behind this lock; the claim does not.
    let lock = match &app.backend {
        Backend::Postgres(url) => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("LOCK TABLE links IN EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .unwrap();
            Some(c)
        }
        Backend::Sqlite(_) => {
            let Db::Sqlite(pool) = &db else {
                unreachable!("the test database matches the app's backend")
            };
            for sql in [
                "CREATE TABLE slow (x INTEGER)",
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 400) \
                 INSERT INTO slow SELECT x FROM c",
                "CREATE TRIGGER slow_first_link AFTER INSERT ON links \
                 WHEN NEW.original_url LIKE 'https://example.com/reset/0/%' \
                 BEGIN SELECT count(*) FROM slow a, slow b, slow c; END",
            ] {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
            None
        }
    };
    let mut stream = tokio::net::TcpStream::connect(&app.addr["http://".len()..])
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // One read of the key's state, so a claim made between two reads cannot look
    // like an answer: 0 = not claimed yet, 1 = claimed and running, 2 = answered.
    loop {
        let state = db
            .count(
                "SELECT CAST(COALESCE(MAX(CASE WHEN status IS NULL THEN 1 ELSE 2 END), 0) AS BIGINT) \
                 FROM idempotency_keys",
            )
            .await;
        assert!(
            state < 2,
            "the bulk finished before the test could reset its connection: make it slower"
        );
        if state == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the request never claimed its key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // A zero linger turns the close into a TCP reset.
    stream.set_zero_linger().unwrap();
    drop(stream);
    if let Some(mut c) = lock {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
    }

    // The retry, as a client does it: on 503 "still running" it waits the
    // Retry-After and sends again. A claim left behind by the reset request answers
    // 503 for the key's whole lifetime (24 h), so the bound only has to be far below
    // that and above a debug build's 1,000 creates on a busy machine.
    let (res, took) = app
        .post_idempotent_retrying(
            "/api/v1/urls/bulk",
            "reset-1",
            body,
            std::time::Duration::from_secs(60),
        )
        .await;
    assert_eq!(
        res.status(),
        201,
        "after {took:?} the key is still claimed by the reset request: {:?}",
        res.text().await
    );
    let results: Value = res.json().await.unwrap();
    assert_eq!(results["results"].as_array().unwrap().len(), n);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM links").await,
        n as i64,
        "each link once: the retry replayed the first run or ran alone"
    );
}

/// Bug 5 of issue 23: a replay carries the original's status, body, `Location` and
/// content type.
#[tokio::test]
async fn a_replay_carries_the_original_location_and_content_type() {
    let app = spawn_app().await;
    let send = || {
        app.client
            .post(app.url("/api/v1/urls"))
            .header("X-API-Key", ADMIN_KEY)
            .header("X-Idempotency-Key", "loc-1")
            .json(&json!({ "original_url": "https://example.com/loc" }))
            .send()
    };
    let first = send().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(first.status(), 201);
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    for h in ["location", "content-type"] {
        assert_eq!(first.headers().get(h), again.headers().get(h), "{h}");
    }
    assert!(location(&again).starts_with("/api/v1/urls/"));
    assert_eq!(first.bytes().await.unwrap(), again.bytes().await.unwrap());
}
