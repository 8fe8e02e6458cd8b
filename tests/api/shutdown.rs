//! Graceful shutdown of the real binary: SIGTERM lets in-flight requests finish and
//! the process exits 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kurz"))
        .arg("serve")
        .env("KURZ_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "KURZ_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("k.db").display()),
        )
        .env("KURZ_ANALYTICS_SPOOL_DIR", dir.path().join("spool"))
        .env("KURZ_ADMIN_API_KEY", "shutdown-admin-key")
        .env("KURZ_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A stream of creates is in flight when SIGTERM arrives.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = client.clone();
        let url = format!("{base}/api/v1/urls");
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("X-API-Key", "shutdown-admin-key")
                .json(&json!({ "original_url": format!("https://example.com/{i}") }))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let mut answered = 0;
    for t in tasks {
        match t.await.unwrap() {
            // Every request that got an answer got a real one.
            Ok(code) => {
                assert_eq!(code, 201);
                answered += 1;
            }
            // Requests that had not connected yet are refused: that is fine.
            Err(e) => assert!(e.is_connect() || e.is_request(), "{e}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    assert!(answered > 0, "some requests were in flight");
}
