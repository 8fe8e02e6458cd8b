//! `spawn_app()`: one real server per test, on `127.0.0.1:0`, with its own database.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use kurz::{Application, Config};
use reqwest::{Client, Response};
use serde_json::{Value, json};

use crate::support;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef0123456789";
pub const BASE: &str = "http://kurz.test";

/// Which store a test app runs on: SQLite by default, PostgreSQL + Redis when the
/// suite is re-run with `KURZ_TEST_BACKEND=postgres` (scripts/test.sh does both).
#[derive(Clone)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

pub struct TestApp {
    pub addr: String,
    pub client: Client,
    pub backend: Backend,
    /// The configuration this instance runs with; `twin()` starts another with it.
    pub config: Config,
    _dir: Option<std::sync::Arc<tempfile::TempDir>>,
    _spool: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Set `TEST_LOG=1` to see the server's logs.
fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        kurz::telemetry::init_logging(&kurz::config::LogConfig {
            filter: "info".into(),
            format: "pretty".into(),
            access_log: 0.0,
        });
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub fn on_postgres() -> bool {
    std::env::var("KURZ_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

fn unique_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "kurz-test-{}-{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test configuration on a fresh PostgreSQL database and the test Redis, with a
/// Redis prefix of its own.
pub async fn pg_redis_config() -> (Config, Backend, Option<std::sync::Arc<tempfile::TempDir>>) {
    let mut config = Config::defaults();
    base(&mut config);
    pg_redis_config_from(config).await
}

async fn pg_redis_config_from(
    mut config: Config,
) -> (Config, Backend, Option<std::sync::Arc<tempfile::TempDir>>) {
    let admin = support::server("KURZ_TEST_PG").expect("needs KURZ_TEST_PG");
    let redis = support::server("KURZ_TEST_REDIS").expect("needs KURZ_TEST_REDIS");
    let url = support::fresh_pg_database(&admin).await;
    config.database.url = url.clone();
    config.database.auto_migrate = Some(true);
    config.database.max_connections = 8;
    config.database.min_connections = 0;
    config.redis.url = Some(redis.parse().unwrap());
    config.redis.prefix = unique_prefix();
    (config, Backend::Postgres(url), None)
}

fn base(config: &mut Config) {
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.public_base_url = Some(BASE.into());
    config.auth.admin_api_key = Some(ADMIN_KEY.parse().unwrap());
    config.limits.anonymous = 0;
    config.limits.free = 0;
    config.limits.pro = 0;
    config.limits.enterprise = 0;
    // Clicks show up in stats within a poll or two; the store's writer still holds
    // batches (briefly), as it does by default.
    config.analytics.flush_ms = 50;
    config.analytics.store_hold_ms = 100;
}

/// A new, empty folder for an instance's click spool, removed when the test's
/// instance is dropped. (A test that restarts kurz on the same spool runs it as a
/// process with a folder of its own: see `shutdown.rs`.)
pub fn fresh_spool_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kurz-test-spool-")
        .tempdir()
        .unwrap()
}

/// A configuration for a fresh test instance on a fresh database. Rate limits are
/// off unless a test turns them on, so tests can't trip each other.
pub async fn test_config() -> (Config, Backend, Option<std::sync::Arc<tempfile::TempDir>>) {
    let mut config = Config::defaults();
    base(&mut config);
    if on_postgres() {
        return pg_redis_config_from(config).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("kurz.db");
    config.database.url = format!("sqlite://{}", db_path.display());
    (config, Backend::Sqlite(db_path), Some(std::sync::Arc::new(dir)))
}

pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let (mut config, backend, dir) = test_config().await;
    adjust(&mut config);
    start(config, backend, dir).await
}

/// Starts an instance with this configuration, but a click spool of its own: two
/// live instances may never share one (kurz refuses to start on a locked spool).
pub async fn start(
    mut config: Config,
    backend: Backend,
    dir: Option<std::sync::Arc<tempfile::TempDir>>,
) -> TestApp {
    init_logs();
    let spool = fresh_spool_dir();
    config.analytics.spool_dir = spool.path().to_path_buf();
    let app = Application::build(config.clone()).await.expect("app builds");
    let addr = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    // A browser's user agent: a request without one counts as a bot click.
    let client = Client::builder()
        .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0")
        .redirect(reqwest::redirect::Policy::none())
        // A request the server never answers fails the test here, with its place,
        // instead of hanging it until the runner's timeout.
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp {
        addr,
        client,
        backend,
        config,
        _dir: dir,
        _spool: spool,
        stop: Some(stop),
    }
}

impl TestApp {
    /// Another instance on the same database (and Redis), as behind a load balancer.
    pub async fn twin(&self) -> TestApp {
        start(self.config.clone(), self.backend.clone(), self._dir.clone()).await
    }

    /// Runs one SQL statement on the app's database, behind its back.
    pub async fn sql(&self, statement: &'static str) {
        match &self.backend {
            Backend::Sqlite(path) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query(statement).execute(&pool).await.unwrap();
            }
            Backend::Postgres(url) => {
                let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                    .await
                    .unwrap();
                sqlx::query(statement).execute(&mut c).await.unwrap();
            }
        }
    }

    /// Runs one `SELECT COUNT(*)`-style query on the app's database.
    pub async fn count(&self, statement: &'static str) -> i64 {
        match &self.backend {
            Backend::Sqlite(path) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
                sqlx::query_scalar(statement).fetch_one(&pool).await.unwrap()
            }
            Backend::Postgres(url) => {
                let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                    .await
                    .unwrap();
                sqlx::query_scalar(statement).fetch_one(&mut c).await.unwrap()
            }
        }
    }

    /// Makes the click sink slow for real: another connection takes the write lock
    /// the sink needs and keeps it for `hold`. Returns once the lock is held; the
    /// handle finishes when it is released.
    pub async fn hold_write_lock(&self, hold: std::time::Duration) -> tokio::task::JoinHandle<()> {
        use sqlx::Connection;
        let (held, is_held) = tokio::sync::oneshot::channel();
        let backend = self.backend.clone();
        let task = tokio::spawn(async move {
            match backend {
                Backend::Sqlite(path) => {
                    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                    sqlx::query("BEGIN IMMEDIATE").execute(&mut c).await.unwrap();
                    let _ = held.send(());
                    tokio::time::sleep(hold).await;
                    sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
                }
                Backend::Postgres(url) => {
                    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                    sqlx::query("BEGIN").execute(&mut c).await.unwrap();
                    sqlx::query("LOCK TABLE click_rollups IN EXCLUSIVE MODE")
                        .execute(&mut c)
                        .await
                        .unwrap();
                    let _ = held.send(());
                    tokio::time::sleep(hold).await;
                    sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
                }
            }
        });
        is_held.await.unwrap();
        task
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.addr, path)
    }

    /// POST /api/v1/urls with an optional API key.
    pub async fn create(&self, key: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.post(self.url("/api/v1/urls")).json(body);
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        req.send().await.unwrap()
    }

    /// An admin POST with `X-Idempotency-Key`, retried as a client does: on 503
    /// "still running" it waits a second (the Retry-After) and sends again, until
    /// another answer or `bound` has passed. Returns the last answer and how long the
    /// retries took.
    pub async fn post_idempotent_retrying(
        &self,
        path: &str,
        key: &str,
        body: Vec<u8>,
        bound: std::time::Duration,
    ) -> (Response, std::time::Duration) {
        let started = std::time::Instant::now();
        loop {
            let res = self
                .client
                .post(self.url(path))
                .header("X-API-Key", ADMIN_KEY)
                .header("X-Idempotency-Key", key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            if res.status() != 503 || started.elapsed() > bound {
                return (res, started.elapsed());
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// Creates a link as admin and returns its code.
    pub async fn create_code(&self, url: &str) -> String {
        let res = self
            .create(Some(ADMIN_KEY), &json!({ "original_url": url }))
            .await;
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        body["short_code"].as_str().unwrap().to_owned()
    }

    /// Creates a link for each URL in one bulk request (at most 1,000); their codes.
    pub async fn create_codes(&self, urls: impl IntoIterator<Item = String>) -> Vec<String> {
        let items: Vec<Value> = urls.into_iter().map(|u| json!({ "original_url": u })).collect();
        let res = self.bulk(Some(ADMIN_KEY), &json!({ "urls": items })).await;
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        let results = body["results"].as_array().unwrap();
        results
            .iter()
            .map(|r| r["short_code"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Response {
        let mut req = self.client.get(self.url(path));
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        req.send().await.unwrap()
    }

    pub async fn bulk(&self, key: Option<&str>, body: &Value) -> Response {
        let mut req = self.client.post(self.url("/api/v1/urls/bulk")).json(body);
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        req.send().await.unwrap()
    }

    pub async fn delete(&self, code: &str, key: &str) -> Response {
        self.client
            .delete(self.url(&format!("/api/v1/urls/{code}")))
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, code: &str, key: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(&format!("/api/v1/urls/{code}")))
            .header("X-API-Key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a user of `tier` through the admin API and returns its API key.
    pub async fn user(&self, email: &str, tier: &str) -> String {
        let res = self
            .client
            .post(self.url("/api/v1/users"))
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({ "email": email, "tier": tier }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        body["api_key"].as_str().unwrap().to_owned()
    }
}

/// Asserts the contract's error shape and returns the machine code.
pub async fn error_code(res: Response) -> String {
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/json"), "errors are JSON");
    let body: Value = res.json().await.unwrap();
    let obj = body.as_object().expect("error body is an object");
    assert!(
        obj["error"].as_str().is_some_and(|s| !s.is_empty()),
        "error message: {body}"
    );
    obj["code"].as_str().expect("code").to_owned()
}

/// The `short_code` of a create response.
pub async fn short_code(res: Response) -> String {
    let body: Value = res.json().await.unwrap();
    body["short_code"].as_str().unwrap().to_owned()
}

pub fn location(res: &Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// The value of one line of the Prometheus text. A series that is not there fails
/// the test: a renamed or unregistered metric must not pass as 0.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no series {name} in /metrics:\n{text}"))
}
