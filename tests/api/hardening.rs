//! What attacking the service from outside found (issue 23), each answered as the
//! contract says: self-redirects, malformed bulk items, two credentials, guessing
//! credentials, bulk against the rate limit, tokens of removed users, weak secrets,
//! connection floods, slow bodies, and the order of checks on stats.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

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

/// `KURZ_LISTEN` alone: short URLs use the port kurz listens on, not 8080.
#[tokio::test]
async fn the_listen_address_alone_sets_the_short_urls() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kurz"))
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
        .unwrap();
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
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
