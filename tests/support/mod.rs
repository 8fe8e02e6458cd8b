//! Shared by the test binaries: reaching the real servers `scripts/test.sh` starts.
//!
//! A test that needs a server is `#[ignore = "needs …: run scripts/test.sh"]`, so a
//! plain `cargo test` or `cargo nextest run` lists it as ignored (skipped), never as
//! passed; the script starts the servers and runs the ignored tests too. A test run
//! without its server fails here, saying which one: it never passes unchecked.
#![allow(dead_code)]

pub mod pki;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The value of `var`, which scripts/test.sh sets to a server's address. Always
/// `Some` (the callers' `let Some(…) else` form is kept): without the variable the
/// test fails at once.
pub fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => panic!("needs {var}: run scripts/test.sh, which starts the servers and sets it"),
    }
}

/// A fresh, empty PostgreSQL database on the test server; returns its URL, with the
/// admin URL's parameters (`?sslmode=…`) kept.
pub async fn fresh_pg_database(admin_url: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "kurz_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand_suffix()
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin_url)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (server, params) = match admin_url.split_once('?') {
        Some((server, params)) => (server, format!("?{params}")),
        None => (admin_url, String::new()),
    };
    let base = server.rsplit_once('/').unwrap().0;
    format!("{base}/{name}{params}")
}

/// The same database name on another server (a replica of the same cluster).
pub fn same_database_on(url: &str, other_server: &str) -> String {
    let name = url.rsplit_once('/').unwrap().1;
    format!("{}/{name}", other_server.rsplit_once('/').unwrap().0)
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A loopback port nothing listens on right now (for servers a test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every `every` until it holds; fails the test after 20 s, naming `what`.
pub async fn wait_for(what: &str, every: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// A process a test started (kurz as its binary), stopped when the test ends, also
/// when it fails half-way: a failed test must not leave a server running.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
