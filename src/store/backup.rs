//! `kurz backup` and `kurz restore` for the SQLite store (PostgreSQL installs use
//! `deploy/backup/pg_backup.sh` and `pg_restore.sh`).
//!
//! A backup is SQLite's `VACUUM INTO`, run on a connection of its own beside the
//! serving kurz. It reads one snapshot inside a single read transaction, which WAL
//! mode lets run while kurz's writer goes on, so the copy holds every transaction
//! committed before it started (every link acknowledged by then) and none half. The
//! online backup API (`sqlite3_backup_*`) would do the same page by page, but sqlx
//! does not expose it (only through `unsafe` FFI, which this crate forbids), and
//! under a steady writer it restarts whenever a page changes; `VACUUM INTO` never
//! restarts and writes a compact file. The copy is written beside the target as
//! `FILE.partial`, checked (`PRAGMA quick_check`), then renamed, so FILE is either
//! absent or whole.
//!
//! A restore copies a backup to KURZ_DATABASE_URL's file the same way and moves the
//! key generator's counter on (as `pg_restore.sh skip-codes` does): links created
//! after the backup are not in it, but their short URLs are out in the world, and
//! without the skip their codes would be handed out again for other URLs.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};

use super::{StoreError, StoreResult};

/// What a backup or restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub path: PathBuf,
    /// Live links in the copy.
    pub links: i64,
    pub bytes: u64,
    /// The key generator's counter in the copy (after the skip, for a restore).
    pub next_counter: i64,
}

fn err(what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError::Other(format!("{what}: {e}"))
}

fn io_err(what: String) -> impl Fn(std::io::Error) -> StoreError {
    move |e| StoreError::Other(format!("{what}: {e}"))
}

/// The database file a `sqlite://` URL names.
fn sqlite_file(url: &str) -> StoreResult<PathBuf> {
    if !url.starts_with("sqlite:") {
        return Err(StoreError::Other(
            "kurz backup and restore handle SQLite stores; for PostgreSQL use \
             deploy/backup/pg_backup.sh and pg_restore.sh"
                .into(),
        ));
    }
    let options =
        SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Other(format!("bad SQLite URL: {e}")))?;
    Ok(options.get_filename().to_path_buf())
}

/// A connection to an existing database file (never creating one).
async fn open(path: &Path) -> StoreResult<SqliteConnection> {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(err(&format!("cannot open {}", path.display())))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `VACUUM INTO` a new file `to` from `source`, via `to.partial`, checked.
async fn vacuum_into(source: &mut SqliteConnection, to: &Path) -> StoreResult<()> {
    let partial = with_suffix(to, ".partial");
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("cannot remove {}", partial.display()))(e)),
    }
    let target = partial
        .to_str()
        .ok_or_else(|| StoreError::Other(format!("{} is not UTF-8", partial.display())))?;
    sqlx::query("VACUUM INTO ?1")
        .bind(target)
        .execute(&mut *source)
        .await
        .map_err(err("VACUUM INTO"))?;
    let mut copy = open(&partial).await?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut copy)
        .await
        .map_err(err("checking the copy"))?;
    copy.close().await.map_err(err("closing the copy"))?;
    if check != "ok" {
        return Err(StoreError::Other(format!("the copy fails its check: {check}")));
    }
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("cannot sync {}", partial.display())))?;
    std::fs::rename(&partial, to).map_err(io_err(format!("cannot rename to {}", to.display())))
}

/// Live links and the counter of a kurz database; an error if it is not one.
async fn describe(path: &Path) -> StoreResult<Copied> {
    let mut conn = open(path).await?;
    let not_kurz =
        |e: sqlx::Error| StoreError::Other(format!("{} is not a kurz database: {e}", path.display()));
    let next_counter: i64 = sqlx::query_scalar("SELECT next_value FROM kgs_counter WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .map_err(not_kurz)?;
    let links: i64 = sqlx::query_scalar("SELECT count(*) FROM links WHERE deleted_at IS NULL")
        .fetch_one(&mut conn)
        .await
        .map_err(not_kurz)?;
    conn.close().await.map_err(err("closing"))?;
    let bytes = std::fs::metadata(path)
        .map_err(io_err(format!("cannot stat {}", path.display())))?
        .len();
    Ok(Copied {
        path: path.to_path_buf(),
        links,
        bytes,
        next_counter,
    })
}

/// Writes a consistent copy of the SQLite store at `database_url` to `to` (which
/// must not exist), while kurz may be serving from it.
pub async fn backup(database_url: &str, to: &Path) -> StoreResult<Copied> {
    let live = sqlite_file(database_url)?;
    if !live.is_file() {
        return Err(StoreError::Other(format!("no database at {}", live.display())));
    }
    if to.exists() {
        return Err(StoreError::Other(format!(
            "{} exists: choose a new file for the backup",
            to.display()
        )));
    }
    let mut source = open(&live).await?;
    vacuum_into(&mut source, to).await?;
    source.close().await.map_err(err("closing the database"))?;
    describe(to).await
}

/// Puts the backup `from` in place as the SQLite store of `database_url`, with the
/// key generator's counter moved on by `skip_codes`. An existing database (or its WAL
/// files) is replaced only with `force`, and never while another connection has it
/// open: leaving WAL mode needs the database to itself, so a refused
/// `PRAGMA journal_mode = DELETE` means a kurz (or anything else) is using it.
pub async fn restore(database_url: &str, from: &Path, force: bool, skip_codes: u64) -> StoreResult<Copied> {
    let target = sqlite_file(database_url)?;
    let skip = i64::try_from(skip_codes).map_err(|_| StoreError::Other("skip_codes is too large".into()))?;
    describe(from).await?;
    let wal = with_suffix(&target, "-wal");
    let shm = with_suffix(&target, "-shm");
    let present = [&target, &wal, &shm].into_iter().any(|p| p.exists());
    // Held from the check to the rename: a kurz starting meanwhile waits for it.
    let mut holder = None;
    if present {
        if !force {
            return Err(StoreError::Other(format!(
                "{} exists: stop every kurz using it, then run restore with --force to replace it",
                target.display()
            )));
        }
        if target.exists() {
            holder = Some(take_over(&target).await?);
        }
    }
    // Restore into a file beside the target (same file system, so the rename is
    // atomic), fix the counter there, and only then put it in place.
    let staged = with_suffix(&target, ".restoring");
    let mut source = open(from).await?;
    vacuum_into(&mut source, &staged).await?;
    source.close().await.map_err(err("closing the backup"))?;
    let mut copy = open(&staged).await?;
    sqlx::query("UPDATE kgs_counter SET next_value = next_value + ?1 WHERE id = 1")
        .bind(skip)
        .execute(&mut copy)
        .await
        .map_err(err("moving the code counter on"))?;
    copy.close().await.map_err(err("closing the restored copy"))?;
    for stale in [&wal, &shm] {
        // A WAL left beside a new database file would be replayed into it.
        match std::fs::remove_file(stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("cannot remove {}", stale.display()))(e)),
        }
    }
    std::fs::rename(&staged, &target).map_err(io_err(format!("cannot rename to {}", target.display())))?;
    if let Some(holder) = holder {
        holder.close().await.map_err(err("releasing the old database"))?;
    }
    describe(&target).await
}

/// Opens the existing database alone: out of WAL mode, then an exclusive lock.
async fn take_over(target: &Path) -> StoreResult<SqliteConnection> {
    let in_use = || {
        StoreError::Other(format!(
            "{} is in use (a kurz is running on it?): stop it first",
            target.display()
        ))
    };
    let mut conn = SqliteConnectOptions::new()
        .filename(target)
        .create_if_missing(false)
        .busy_timeout(Duration::ZERO)
        .connect()
        .await
        .map_err(err(&format!("cannot open {}", target.display())))?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode = DELETE")
        .fetch_one(&mut conn)
        .await
        .map_err(|_| in_use())?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(in_use());
    }
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut conn)
        .await
        .map_err(|_| in_use())?;
    Ok(conn)
}
