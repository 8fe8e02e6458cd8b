//! Graceful shutdown of the real binary: SIGTERM lets in-flight requests finish and
//! the process exits 0.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// The real binary on `port`, with its database and click spool in `dir`.
fn kurz_process(dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kurz"))
        .arg("serve")
        .env("KURZ_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "KURZ_DATABASE_URL",
            format!("sqlite://{}", dir.join("k.db").display()),
        )
        .env("KURZ_ANALYTICS_SPOOL_DIR", dir.join("spool"))
        .env("KURZ_ADMIN_API_KEY", "shutdown-admin-key-0123456789abcdef0123")
        .env("KURZ_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (at most 20 s) until `/health` answers.
/// The exit status of a process that was sent SIGTERM; fails if it runs 20 s more.
async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_up(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let mut child = kurz_process(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    wait_up(&client, &base).await;

    // A stream of creates is in flight when SIGTERM arrives: it is sent once the
    // server has answered the first of them. (A fixed 5 ms wait instead once sent it
    // before any request had reached a server busy with other tests: nothing was in
    // flight, and the test failed without testing anything.)
    let first_answer = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = client.clone();
        let url = format!("{base}/api/v1/urls");
        let first_answer = first_answer.clone();
        tasks.push(tokio::spawn(async move {
            let sent = client
                .post(url)
                .header("X-API-Key", "shutdown-admin-key-0123456789abcdef0123")
                .json(&json!({ "original_url": format!("https://example.com/{i}") }))
                .send()
                .await
                .map(|r| r.status().as_u16());
            first_answer.notify_one();
            sent
        }));
    }
    tokio::time::timeout(Duration::from_secs(20), first_answer.notified())
        .await
        .expect("no create was answered within 20 s");
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
    let exit = wait_exit(&mut child).await;
    assert!(exit.success(), "exit status {exit:?}");
    assert!(answered > 0, "some requests were in flight");
}

/// SIGTERM in the middle of redirect traffic: after a restart on the same database and
/// spool, every click that got a 302 is counted, none twice.
#[tokio::test]
async fn sigterm_during_redirect_traffic_every_302_is_counted_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0")
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut child = kurz_process(dir.path(), port);
    wait_up(&client, &base).await;
    let res = client
        .post(format!("{base}/api/v1/urls"))
        .header("X-API-Key", "shutdown-admin-key-0123456789abcdef0123")
        .json(&json!({ "original_url": "https://example.com/term" }))
        .send()
        .await
        .unwrap();
    let code = res.json::<serde_json::Value>().await.unwrap()["short_code"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url) = (client.clone(), format!("{base}/{code}"));
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            loop {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 302 => ok += 1,
                    Ok(r) => panic!("unexpected {}", r.status()),
                    Err(_) => return ok,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut redirected = 0;
    for t in tasks {
        redirected += t.await.unwrap();
    }
    let exit = wait_exit(&mut child).await;
    assert!(exit.success(), "exit status {exit:?}");
    assert!(redirected > 20, "traffic was running: {redirected}");

    let mut child = kurz_process(dir.path(), port);
    wait_up(&client, &base).await;
    let info = || async {
        client
            .get(format!("{base}/api/v1/urls/{code}"))
            .header("X-API-Key", "shutdown-admin-key-0123456789abcdef0123")
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counted = info().await["click_count"].as_u64().unwrap();
        assert!(
            counted <= redirected,
            "counted {counted} of {redirected}: some twice"
        );
        if counted == redirected {
            break;
        }
        assert!(Instant::now() < deadline, "counted {counted} of {redirected}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
