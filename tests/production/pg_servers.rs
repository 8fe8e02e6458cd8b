//! PostgreSQL servers a failover test starts, kills and promotes itself, on free
//! loopback ports in a temporary folder (the servers `scripts/test.sh` starts are
//! shared by every test and must never be killed).
//!
//! A primary is `initdb`'d with trust authentication for the `kurz` superuser, as in
//! `scripts/services.sh`; a replica is a `pg_basebackup -R` of it, streaming from the
//! address it is given (the primary itself, or a cuttable proxy in front of it).
//! As root (CI), every PostgreSQL program runs as the `postgres` user.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The newest installed PostgreSQL's programs (Debian's layout), if any.
pub fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("postgres").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program, as `postgres` when we are root; fails the test if it fails.
fn run_pg(bin: &Path, program: &str, args: &[&str]) {
    let program = bin.join(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    let out = cmd.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct PgServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// Holds the data folder; removed on drop.
    _tmp: tempfile::TempDir,
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.dir.join("postmaster.pid").exists() {
            self.kill();
        }
    }
}

/// A temporary folder PostgreSQL's own user may write to.
fn pg_tempdir(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("kurz-{name}-"))
        .tempdir()
        .unwrap();
    if is_root() {
        let ok = Command::new("chown")
            .args(["postgres"])
            .arg(tmp.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown postgres {}", tmp.path().display());
    }
    tmp
}

impl PgServer {
    /// A new primary. Commits are acknowledged once local; see [`PgServer::synchronous`].
    pub fn primary(bin: &Path, name: &str) -> PgServer {
        let tmp = pg_tempdir(name);
        let dir = tmp.path().join("data");
        let port = crate::support::free_port();
        run_pg(
            bin,
            "initdb",
            &[
                "-D",
                dir.to_str().unwrap(),
                "-U",
                "kurz",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             max_connections = 100\nshared_buffers = 32MB\nwal_level = replica\nmax_wal_senders = 4\n\
             wal_keep_size = 256MB\nfsync = off\nfull_page_writes = off\n",
            tmp.path().display()
        );
        append(&dir.join("postgresql.conf"), &conf);
        let server = PgServer {
            port,
            dir,
            bin: bin.to_owned(),
            _tmp: tmp,
        };
        server.start();
        server
    }

    /// A streaming replica of the primary reachable at `upstream`.
    pub fn replica_of(&self, upstream: SocketAddr, name: &str) -> PgServer {
        let tmp = pg_tempdir(name);
        let dir = tmp.path().join("data");
        let port = crate::support::free_port();
        run_pg(
            &self.bin,
            "pg_basebackup",
            &[
                "-h",
                &upstream.ip().to_string(),
                "-p",
                &upstream.port().to_string(),
                "-U",
                "kurz",
                "-D",
                dir.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
            ],
        );
        append(
            &dir.join("postgresql.conf"),
            &format!(
                "port = {port}\nunix_socket_directories = '{}'\nwal_receiver_timeout = 5s\n",
                tmp.path().display()
            ),
        );
        let server = PgServer {
            port,
            dir,
            bin: self.bin.clone(),
            _tmp: tmp,
        };
        server.start();
        server
    }

    fn start(&self) {
        let log = self.dir.with_file_name("server.log");
        run_pg(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                self.dir.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://kurz@127.0.0.1:{}/{db}", self.port)
    }

    /// Commits wait for a standby's acknowledgement (`synchronous_standby_names = '*'`).
    pub async fn synchronous(&self) {
        for sql in [
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "ALTER SYSTEM SET synchronous_commit = 'on'",
            "SELECT pg_reload_conf()",
        ] {
            self.sql(sql).await;
        }
    }

    /// Runs one statement on the `postgres` database.
    pub async fn sql(&self, sql: &str) {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url("postgres"))
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .unwrap();
    }

    /// SIGKILL to the postmaster and every process it started: a crash, no
    /// checkpoint, no goodbye to the clients.
    pub fn kill(&self) {
        let Ok(pidfile) = std::fs::read_to_string(self.dir.join("postmaster.pid")) else {
            return;
        };
        let Some(pid) = pidfile.lines().next().map(str::trim).map(str::to_owned) else {
            return;
        };
        let mut pids = vec![pid.clone()];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1));
            if ppid == Some(pid.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let _ = Command::new("kill").arg("-9").args(&pids).status();
        let _ = std::fs::remove_file(self.dir.join("postmaster.pid"));
    }

    /// `pg_ctl promote`, waiting until the server accepts writes.
    pub fn promote(&self) {
        run_pg(
            &self.bin,
            "pg_ctl",
            &["-D", self.dir.to_str().unwrap(), "-w", "promote"],
        );
    }

    /// Waits until this replica has replayed everything the primary at `primary_url` has written.
    pub async fn caught_up_with(&self, primary: &PgServer) {
        let lsn: String = query_one(&primary.url("postgres"), "SELECT pg_current_wal_lsn()::text").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done: bool = query_one(
                &self.url("postgres"),
                &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            )
            .await;
            if done {
                return;
            }
            assert!(Instant::now() < deadline, "the replica did not catch up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One value of one row.
pub async fn query_one<T>(url: &str, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut c)
        .await
        .unwrap()
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}
