//! Several stateless instances on one PostgreSQL + Redis, and a read replica.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::{spawn_pg, support};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: run scripts/test.sh"]
async fn create_on_a_redirects_on_b() {
    let Some(a) = spawn_pg(|_| {}).await else { return };
    let b = a.twin().await;
    for i in 0..20 {
        let code = a.create_code(&format!("https://example.com/ab/{i}")).await;
        let res = b.get(&format!("/{code}"), None).await;
        assert_eq!(res.status(), 302, "{code}");
        assert_eq!(location(&res), format!("https://example.com/ab/{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: run scripts/test.sh"]
async fn patch_on_a_is_seen_on_b_within_one_second() {
    let Some(a) = spawn_pg(|_| {}).await else { return };
    let b = a.twin().await;
    let code = a.create_code("https://example.com/before").await;
    // B has it cached (L1) before the change.
    for _ in 0..3 {
        assert_eq!(
            location(&b.get(&format!("/{code}"), None).await),
            "https://example.com/before"
        );
    }
    let t0 = Instant::now();
    let res = a
        .patch(
            &code,
            ADMIN_KEY,
            &json!({ "original_url": "https://example.com/after" }),
        )
        .await;
    assert_eq!(res.status(), 200);
    loop {
        let loc = location(&b.get(&format!("/{code}"), None).await);
        if loc == "https://example.com/after" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "B still redirects to {loc} after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Disabling and deleting propagate the same way.
    a.patch(&code, ADMIN_KEY, &json!({ "is_active": false })).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.get(&format!("/{code}"), None).await.status(), 410);
    a.delete(&code, ADMIN_KEY).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.get(&format!("/{code}"), None).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: run scripts/test.sh"]
async fn a_rate_limit_of_n_per_minute_is_n_across_instances() {
    let Some(a) = spawn_pg(|c| c.limits.free = 7).await else {
        return;
    };
    let b = a.twin().await;
    let key = a.user("limited@example.com", "free").await;
    let mut created = 0;
    let mut limited = 0;
    for i in 0..14 {
        let app = if i % 2 == 0 { &a } else { &b };
        let res = app
            .create(Some(&key), &json!({ "original_url": "https://example.com" }))
            .await;
        match res.status().as_u16() {
            201 => created += 1,
            429 => limited += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(created, 7, "the bucket is shared");
    assert_eq!(limited, 7);
}

/// An anonymous caller's bucket is shared through Redis under the keyed hash of its
/// IP: the limit holds across instances, and no Redis key holds the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: run scripts/test.sh"]
async fn anonymous_limits_are_shared_under_a_hashed_ip_never_the_ip() {
    let Some(a) = spawn_pg(|c| c.limits.anonymous = 4).await else {
        return;
    };
    let b = a.twin().await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let app = if i % 2 == 0 { &a } else { &b };
        let res = app
            .create(
                None,
                &json!({ "original_url": format!("https://example.com/anon/{i}") }),
            )
            .await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 4, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 4, "{statuses:?}");

    let url = a.config.redis.url.as_ref().unwrap().expose().to_owned();
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", a.config.redis.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    let anon: Vec<&String> = keys.iter().filter(|k| k.contains("rl:anon:")).collect();
    assert_eq!(anon.len(), 1, "one shared bucket: {keys:?}");
    let subject = anon[0].rsplit(':').next().unwrap();
    assert!(
        subject.len() == 16 && subject.bytes().all(|c| c.is_ascii_hexdigit()),
        "the bucket is named by a 64-bit hash: {subject}"
    );
    for k in &keys {
        assert!(!k.contains("127.0.0.1"), "a raw IP in a Redis key: {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: run scripts/test.sh"]
async fn idempotency_keys_hold_across_instances() {
    let Some(a) = spawn_pg(|_| {}).await else { return };
    let b = a.twin().await;
    let body = json!({ "original_url": "https://example.com/idem" });
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = if i % 2 == 0 { &a } else { &b };
        let req = app
            .client
            .post(app.url("/api/v1/urls"))
            .header("X-API-Key", ADMIN_KEY)
            .header("X-Idempotency-Key", "cross-instance")
            .json(&body);
        tasks.push(tokio::spawn(async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.bytes().await.unwrap())
        }));
    }
    let mut bodies = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201);
        bodies.insert(body);
    }
    assert_eq!(
        bodies.len(),
        1,
        "one link, one response, whichever instance answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: run scripts/test.sh"]
async fn instances_never_hand_out_the_same_code() {
    let Some(a) = spawn_pg(|c| c.keys.block_size = 10).await else {
        return;
    };
    let b = a.twin().await;
    let mut tasks = Vec::new();
    for app in [&a, &b] {
        let urls: Vec<Value> = (0..500)
            .map(|i| json!({ "original_url": format!("https://example.com/{i}") }))
            .collect();
        let req = app
            .client
            .post(app.url("/api/v1/urls/bulk"))
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({ "urls": urls }));
        tasks.push(tokio::spawn(async move {
            req.send().await.unwrap().json::<Value>().await.unwrap()
        }));
    }
    let mut codes = HashSet::new();
    for t in tasks {
        let body = t.await.unwrap();
        for r in body["results"].as_array().unwrap() {
            assert_eq!(r["status"], "created");
            assert!(codes.insert(r["short_code"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(codes.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL with a replica, and Redis: run scripts/test.sh"]
async fn redirects_read_the_replica_and_never_404_right_after_a_create() {
    let Some(replica_server) = support::server("KURZ_TEST_PG_REPLICA") else {
        return;
    };
    let Some(primary) = spawn_pg(|_| {}).await else {
        return;
    };
    let Backend::Postgres(url) = primary.backend.clone() else {
        unreachable!()
    };
    let replica = support::same_database_on(&url, &replica_server);
    // Wait until the replica has the schema, then start an instance that reads it.
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&replica).await
            && sqlx::query("SELECT 1 FROM links LIMIT 1")
                .execute(&mut c)
                .await
                .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready);
    let mut config = primary.config.clone();
    config.database.read_urls = vec![replica.clone()];
    let app = start(config, primary.backend.clone(), None).await;
    for i in 0..100 {
        let code = app.create_code(&format!("https://example.com/r/{i}")).await;
        let res = app.get(&format!("/{code}"), None).await;
        assert_eq!(res.status(), 302, "link {i} 404'd right after its create");
    }
    // Links made by another instance are read from the replica (this instance has
    // no recent write of them); the replica's own statistics show the index scans.
    let other = primary.twin().await;
    let mut codes = Vec::new();
    for i in 0..20 {
        codes.push(
            other
                .create_code(&format!("https://example.com/elsewhere/{i}"))
                .await,
        );
    }
    for code in &codes {
        assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
    }
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&replica)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let scans: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(idx_scan), 0)::int8 FROM pg_stat_user_tables WHERE relname LIKE 'links_p%'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        if scans > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never served a link lookup"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn serve_refuses_to_start_with_pending_migrations() {
    let Some(admin) = support::server("KURZ_TEST_PG") else {
        return;
    };
    let url = support::fresh_pg_database(&admin).await;
    let (mut config, _, _) = test_config().await;
    config.database.url = url;
    config.database.auto_migrate = None;
    config.redis.url = None;
    let err = kurz::Application::build(config).await.err().expect("must refuse");
    assert!(err.to_string().contains("kurz migrate"), "{err}");
}
