//! The logs of the real binary: JSON lines with the request id on each request's
//! lines (a trusted proxy's, or a new one, sent back in `X-Request-Id`), the W3C trace
//! id, the sampled access log, and never a credential or a raw client IP.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN_KEY: &str = "logs-admin-key-0123456789abcdef0123";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn request_ids_trace_ids_and_access_lines_are_logged_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::support::free_port();
    let log_path = dir.path().join("kurz.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kurz"))
        .arg("serve")
        .env("KURZ_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "KURZ_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("k.db").display()),
        )
        .env("KURZ_ANALYTICS_SPOOL_DIR", dir.path().join("spool"))
        .env("KURZ_ADMIN_API_KEY", ADMIN_KEY)
        .env("KURZ_TRUSTED_PROXIES", "127.0.0.1/32")
        .env("KURZ_LOG", "info")
        .env("KURZ_LOG_FORMAT", "json")
        .env("KURZ_ACCESS_LOG", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
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

    // A create named by the (trusted) proxy, inside a trace.
    let res = client
        .post(format!("{base}/api/v1/urls"))
        .header("x-api-key", ADMIN_KEY)
        .header("x-request-id", "req-from-proxy-1")
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&json!({ "original_url": "https://example.com/logged" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-request-id"], "req-from-proxy-1");
    let code = res.json::<Value>().await.unwrap()["short_code"]
        .as_str()
        .unwrap()
        .to_owned();
    // Credentials issued every way the API allows: a user's key, then a JWT.
    let user: Value = client
        .post(format!("{base}/api/v1/users"))
        .header("x-api-key", ADMIN_KEY)
        .json(&json!({ "email": "logged@example.com" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_key = user["api_key"].as_str().unwrap().to_owned();
    let token: Value = client
        .post(format!("{base}/api/v1/auth/token"))
        .header("x-api-key", &user_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = token["access_token"].as_str().unwrap().to_owned();
    let res = client
        .get(format!("{base}/api/v1/urls"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!generated.is_empty() && generated != "req-from-proxy-1");
    // A redirect from a client behind the proxy; a bad key.
    let res = client
        .get(format!("{base}/{code}"))
        .header("x-forwarded-for", "203.0.113.45")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert!(res.headers().contains_key("x-request-id"));
    let res = client
        .get(format!("{base}/api/v1/urls"))
        .header("x-api-key", "kurz_not-a-real-key-but-still-a-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&Value> = lines.iter().filter(|l| l["target"] == "kurz::access").collect();
    let create = access
        .iter()
        .find(|l| l["fields"]["request_id"] == "req-from-proxy-1")
        .unwrap_or_else(|| panic!("no access line of the create:\n{log}"));
    let f = &create["fields"];
    assert_eq!(f["method"], "POST");
    assert_eq!(f["route"], "/api/v1/urls");
    assert_eq!(f["status"], 201);
    assert!(f["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(f["bytes"].as_u64().unwrap() > 0);
    let client_hash = f["client"].as_str().unwrap();
    assert!(client_hash.len() == 16 && client_hash.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(
        access
            .iter()
            .any(|l| l["fields"]["request_id"] == generated.as_str()),
        "the generated id is logged"
    );
    assert!(
        access
            .iter()
            .any(|l| l["fields"]["route"] == "/{code}" && l["fields"]["status"] == 302),
        "redirects are in the access log"
    );
    // Lines logged while the create runs carry its span: its id and trace id.
    assert_eq!(create["span"]["request_id"], "req-from-proxy-1", "{create}");
    assert_eq!(create["span"]["trace_id"], TRACE, "{create}");
    for secret in [
        ADMIN_KEY,
        user_key.as_str(),
        jwt.as_str(),
        "kurz_not-a-real-key-but-still-a-secret",
        "203.0.113.45",
    ] {
        assert!(!log.contains(secret), "{secret} is in the logs");
    }
}
