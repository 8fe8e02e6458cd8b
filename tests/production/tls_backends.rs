//! kurz through TLS to its backends, against the servers `scripts/test.sh` starts with
//! TLS on (scripts/services.sh: `services_start_postgres_tls`, which takes TLS
//! connections only, and `services_start_redis_tls`, a TLS port only), their
//! certificates from a test CA made for the run (`KURZ_TEST_TLS_CA`): PostgreSQL with
//! `sslmode=verify-full`, Redis over `rediss://`, and a CA that did not sign the
//! server's certificate refused by both.

use std::time::Duration;

use kurz::Application;
use serde_json::Value;

use crate::helpers::{self, Backend};
use crate::support::{self, pki::Ca};

/// A PEM file of a CA that signed nothing the servers show.
fn wrong_ca() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), Ca::new("not the servers' CA").pem()).unwrap();
    file
}

async fn health(app: &helpers::TestApp) -> Value {
    app.get("/health", None).await.json().await.unwrap()
}

#[tokio::test]
async fn postgres_over_verify_full_tls_serves_and_a_wrong_ca_is_refused() {
    let Some(url) = support::server("KURZ_TEST_PG_TLS") else {
        return;
    };
    let database = support::fresh_pg_database(&url).await;
    // The server takes TLS only, so whatever kurz does below, it does over TLS.
    let plain = database.split_once('?').unwrap().0.to_owned() + "?sslmode=disable";
    let refused = <sqlx::PgConnection as sqlx::Connection>::connect(&plain).await;
    assert!(refused.is_err(), "the TLS server took a plain connection");

    let (mut config, _, dir) = helpers::test_config().await;
    config.database.url = database.clone();
    config.database.auto_migrate = Some(true);
    config.database.min_connections = 0;
    config.redis.url = None;
    let wrong = wrong_ca();
    let mut wrong_config = config.clone();
    wrong_config.database.url = database.replace(
        &url.split_once("sslrootcert=").unwrap().1.to_owned(),
        &wrong.path().display().to_string(),
    );
    assert_ne!(wrong_config.database.url, database);

    let app = helpers::start(config, Backend::Postgres(database.clone()), dir).await;
    assert_eq!(health(&app).await["components"]["database"], "healthy");
    let code = app.create_code("https://example.com/pg-tls").await;
    let res = app.get(&format!("/{code}"), None).await;
    assert_eq!(res.status(), 302);
    assert_eq!(helpers::location(&res), "https://example.com/pg-tls");

    let spool = helpers::fresh_spool_dir();
    wrong_config.analytics.spool_dir = spool.path().to_path_buf();
    let started = tokio::time::timeout(Duration::from_secs(30), Application::build(wrong_config))
        .await
        .expect("a refused certificate must fail fast, not hang");
    let err = started
        .err()
        .expect("kurz started on a server its CA did not sign");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn redis_over_tls_serves_and_a_wrong_ca_is_refused() {
    let (Some(redis), Some(ca)) = (
        support::server("KURZ_TEST_REDIS_TLS"),
        support::server("KURZ_TEST_TLS_CA"),
    ) else {
        return;
    };
    let (mut config, backend, dir) = helpers::test_config().await;
    config.redis.url = Some(redis.parse().unwrap());
    config.redis.ca_file = Some(ca.clone().into());
    config.redis.prefix = format!("kurz-tls-{}-{}:", std::process::id(), support::free_port());
    let prefix = config.redis.prefix.clone();
    let mut wrong_config = config.clone();
    let wrong = wrong_ca();
    wrong_config.redis.ca_file = Some(wrong.path().to_path_buf());

    let app = helpers::start(config, backend.clone(), dir.clone()).await;
    let h = health(&app).await;
    assert_eq!(h["components"]["cache"], "healthy", "{h}");
    let code = app.create_code("https://example.com/redis-tls").await;
    assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
    // The redirect's miss put the link into Redis (L2), over TLS.
    let client = redis::Client::build_with_tls(
        redis.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&ca).unwrap()),
        },
    )
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}link:{code}");
    support::wait_for("the link in Redis", Duration::from_millis(50), async || {
        redis::cmd("EXISTS")
            .arg(&key)
            .query_async::<i64>(&mut conn)
            .await
            .unwrap()
            == 1
    })
    .await;

    // With a CA that did not sign Redis's certificate, kurz refuses the connection and
    // runs without Redis (DESIGN.md §6): degraded, still redirecting.
    let app = helpers::start(wrong_config, backend, dir).await;
    let h = health(&app).await;
    assert_eq!(h["components"]["cache"], "unhealthy", "{h}");
    assert_eq!(h["status"], "degraded");
    assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
}
