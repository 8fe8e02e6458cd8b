//! No credential is kept in clear anywhere kurz writes (issue 23, bug 2): the
//! database, Redis, the click spool, `/metrics` and the logs.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::support;

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Every file under `dir`, as lossy text (SQLite's database, WAL and shared memory;
/// the spool's segments).
fn files_text(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.push_str(&files_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
            out.push('\n');
        }
    }
    out
}

/// Every row of every table of the PostgreSQL database, as JSON text (`bytea` shows
/// as hex there, which the scan also looks for).
async fn postgres_text(url: &str) -> String {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "idempotency_keys"), "{tables:?}");
    let mut out = String::new();
    for t in tables {
        let rows: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT string_agg(row_to_json(t)::text, E'\\n') FROM \"{t}\" t"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        out.push_str(&rows.unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Every key under `prefix` with its value, whatever its type.
async fn redis_text(url: &str, prefix: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut c)
        .await
        .unwrap();
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut c).await.unwrap();
        let read = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).clone(),
            "hash" => redis::cmd("HGETALL").arg(&key).clone(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .clone(),
            "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
            _ => continue,
        };
        let value: redis::Value = read.query_async(&mut c).await.unwrap();
        out.push_str(&format!("{key} {value:?}\n"));
    }
    out
}

/// Sends a request that answers a credential in `field`, with `X-Idempotency-Key`
/// if given; returns the credential, or `None` when the key was refused (400).
async fn issue(req: reqwest::RequestBuilder, idem: Option<&str>, ok: u16, field: &str) -> Option<String> {
    let req = match idem {
        Some(k) => req.header("X-Idempotency-Key", k),
        None => req,
    };
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    match (idem, status) {
        (_, s) if s == ok => Some(body[field].as_str().unwrap().to_owned()),
        (Some(_), 400) => {
            assert_eq!(body["code"], "INVALID_REQUEST");
            None
        }
        _ => panic!("{status} {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_is_stored_or_logged_in_clear() {
    let (config, backend, _db_dir) = test_config().await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let admin = format!("kurz_admin_{}", random_hex(24));
    let jwt_secret = random_hex(32);
    let log_path = dir.path().join("kurz.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kurz"));
    cmd.arg("serve")
        .env("KURZ_LISTEN", format!("127.0.0.1:{port}"))
        .env("KURZ_PUBLIC_BASE_URL", &base)
        .env("KURZ_DATABASE_URL", &config.database.url)
        .env("KURZ_AUTO_MIGRATE", "true")
        .env("KURZ_ANALYTICS_SPOOL_DIR", dir.path().join("spool"))
        .env("KURZ_ANALYTICS_FLUSH_MS", "50")
        .env("KURZ_ADMIN_API_KEY", &admin)
        .env("KURZ_JWT_SECRET", &jwt_secret)
        // As talkative as an operator could make it.
        .env("KURZ_LOG", "debug")
        .env("KURZ_LOG_FORMAT", "json")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some(redis) = &config.redis.url {
        cmd.env("KURZ_REDIS_URL", redis.expose())
            .env("KURZ_REDIS_PREFIX", &config.redis.prefix);
    }
    let mut child = support::Running(cmd.spawn().unwrap());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    support::wait_for("kurz to start", Duration::from_millis(50), async || {
        client.get(format!("{base}/health")).send().await.is_ok()
    })
    .await;

    // Every way the API hands out a credential, with and without an idempotency key.
    let mut secrets = vec![admin.clone(), jwt_secret.clone()];
    for (i, idem) in [None, Some("user-1")].into_iter().enumerate() {
        let req = client
            .post(format!("{base}/api/v1/users"))
            .header("X-API-Key", &admin)
            .json(&json!({ "email": format!("secret-user{i}@example.com") }));
        secrets.extend(issue(req, idem, 201, "api_key").await);
    }
    let user_key = secrets[2].clone();
    for idem in [None, Some("token-1")] {
        let req = client
            .post(format!("{base}/api/v1/auth/token"))
            .header("X-API-Key", &user_key);
        secrets.extend(issue(req, idem, 200, "access_token").await);
    }
    let token = secrets[secrets.len() - 1].clone();
    // The credentials at work: an idempotent create with the token, a redirect, and
    // two credentials at once (refused, without echoing either).
    let res = client
        .post(format!("{base}/api/v1/urls"))
        .bearer_auth(&token)
        .header("X-Idempotency-Key", "create-1")
        .json(&json!({ "original_url": "https://example.com/secret-scan" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let code = res.json::<Value>().await.unwrap()["short_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        client
            .get(format!("{base}/{code}"))
            .send()
            .await
            .unwrap()
            .status(),
        302
    );
    client
        .get(format!("{base}/api/v1/urls"))
        .header("X-API-Key", &user_key)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    // The operator's way: `kurz users create` prints the key once, on stdout; its
    // logs go to stderr.
    let cli = Command::new(env!("CARGO_BIN_EXE_kurz"))
        .args(["users", "create", "--email", "secret-cli@example.com"])
        .env("KURZ_DATABASE_URL", &config.database.url)
        .env("KURZ_LOG", "debug")
        .env("KURZ_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let printed = String::from_utf8_lossy(&cli.stdout);
    let cli_key = printed
        .split_whitespace()
        .find(|w| w.starts_with("kurz_"))
        .unwrap_or_else(|| panic!("no key printed: {printed}"))
        .to_owned();
    secrets.push(cli_key);

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Let the click reach the store, then stop kurz so every write is on disk.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.0.wait().unwrap().success());

    let store = match &backend {
        Backend::Sqlite(path) => files_text(path.parent().unwrap()),
        Backend::Postgres(url) => postgres_text(url).await,
    };
    let redis = match &config.redis.url {
        Some(url) => redis_text(url.expose(), &config.redis.prefix).await,
        None => String::new(),
    };
    let logs = format!(
        "{}\n{}",
        std::fs::read_to_string(&log_path).unwrap(),
        String::from_utf8_lossy(&cli.stderr)
    );
    let spool = files_text(&dir.path().join("spool"));
    // The scan reads real data: a scan of nothing must not pass.
    assert!(
        store.contains("secret-user0@example.com"),
        "the store was not read"
    );
    assert!(
        store.contains("https://example.com/secret-scan"),
        "the store was not read"
    );
    assert!(logs.contains("kurz is serving"), "the logs were not captured");
    assert!(metrics.contains("kurz_http_requests_total"));
    if config.redis.url.is_some() {
        assert!(
            !redis.is_empty(),
            "nothing under {} in Redis",
            config.redis.prefix
        );
    }
    for secret in &secrets {
        for (place, text) in [
            ("the database", &store),
            ("Redis", &redis),
            ("the logs", &logs),
            ("the click spool", &spool),
            ("/metrics", &metrics),
        ] {
            assert!(
                !text.contains(secret.as_str()) && !text.contains(&hex::encode(secret)),
                "a credential ({}…) is in {place} in clear",
                &secret[..8]
            );
        }
    }
}
