//! The embedded SQLite store: zero setup, one file, the default.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly one
//! connection (no `SQLITE_BUSY` retry storms) while reads use a separate pool that
//! WAL mode lets run beside the writer. On that connection link writes go before
//! click writes ([`LinksFirst`]). Creates arrive here already grouped by the
//! link service's group commit, so one write transaction carries many inserts.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::analytics::port::{
    ClickBatch, ClickResult, ClickStore, ClickStoreError, ClickTx, DAYS_THROUGH, LinkTouch, MarkLock,
    PART_ROWS, RowKey, SketchPlan, StoredRollup, StoredRows,
};

use super::{
    IdempotencyClaim, LinkPatch, LinkStore, ListQuery, NewLink, NewUser, PoolState, StoreError, StoreResult,
    User, to_click,
};
use crate::domain::{Link, LinkTarget, Metadata, TargetUrl, Tier};

pub struct SqliteStore {
    write: Writer,
    read: SqlitePool,
}

/// SQLite's one write connection. Every statement on it says what it is: a link
/// write ([`Writer::link`], ahead of click parts: see [`LinksFirst`]), a click
/// transaction ([`Writer::clicks`]) or neither ([`Writer::any`]: migrations, purges,
/// reads that must see the latest write; [`Writer::acquire`]: the click store's name
/// marks). A new link write is written against these, not against a bare pool, so
/// taking its turn is the obvious choice rather than a line to remember.
struct Writer {
    pool: SqlitePool,
    gate: LinksFirst,
    /// The runtime that connected the store: see [`Writer::acquire`].
    opener: Option<tokio::runtime::Handle>,
}

impl Writer {
    /// The pool for a link write, which goes before click parts until dropped.
    fn link(&self) -> LinkTurn<'_> {
        self.gate.links.fetch_add(1, Ordering::SeqCst);
        LinkTurn(self)
    }

    /// A click transaction on the write connection ([`Writer::acquire`]), once no
    /// link write waits or runs (or after [`CLICKS_YIELD_AT_MOST`]).
    async fn clicks(&self) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.gate.clicks().await;
        sqlx::Transaction::begin(self.acquire().await?, None).await
    }

    /// The pool for a statement that is neither a link write nor a click part.
    fn any(&self) -> &SqlitePool {
        &self.pool
    }

    /// The write connection, acquired on the runtime that connected the store, for
    /// the click store's statements.
    ///
    /// Why: with no connection idle (the pool closes one idle for 10 minutes, or
    /// older than 30, or broken) an acquire opens one, and SQLite's driver starts
    /// the connection's thread from the thread that acquires. A Linux thread starts
    /// at its creator's priority, and over SQLite the click store's lane runs 10
    /// nice steps below the runtime's workers (`analytics::background`): a
    /// connection it opened would put every create on a thread below the redirects.
    async fn acquire(&self) -> Result<PoolConnection<Sqlite>, sqlx::Error> {
        let pool = self.pool.clone();
        match &self.opener {
            Some(runtime) => runtime
                .spawn(async move { pool.acquire().await })
                .await
                .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?,
            None => pool.acquire().await,
        }
    }
}

/// Longest a click transaction waits for link writes to finish before it begins
/// anyway: clicks must not starve under a steady stream of creates.
const CLICKS_YIELD_AT_MOST: Duration = Duration::from_millis(250);

/// Link writes go first on SQLite's one write connection. A click write is a run of
/// transactions (parts of a hold) that would otherwise take the connection back each
/// time it frees it; here a click transaction does not begin while a link write is
/// waiting for the connection or running, so a create waits for at most the one click
/// part already running, not for a queue of them.
#[derive(Default)]
struct LinksFirst {
    links: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// A link write's place in [`LinksFirst`], held until the write is done; the write
/// connection's pool while it is held.
struct LinkTurn<'a>(&'a Writer);

impl std::ops::Deref for LinkTurn<'_> {
    type Target = SqlitePool;

    fn deref(&self) -> &SqlitePool {
        &self.0.pool
    }
}

impl LinksFirst {
    /// Returns when no link write is waiting or running, or after [`CLICKS_YIELD_AT_MOST`].
    async fn clicks(&self) {
        let deadline = tokio::time::Instant::now() + CLICKS_YIELD_AT_MOST;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.links.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for LinkTurn<'_> {
    fn drop(&mut self) {
        let gate = &self.0.gate;
        if gate.links.fetch_sub(1, Ordering::SeqCst) == 1 {
            gate.idle.notify_waiters();
        }
    }
}

/// `SELECT <columns of t> FROM (VALUES (code, time), ...) AS k JOIN <table> t ...`: the
/// rows of `table` (keyed by `code` and `time_column`) for a list of bound keys.
/// Joining against the keys makes each one a primary-key lookup by construction. A
/// `(code, hour) IN ((?, ?), ...)` list of row values leaves that to the planner:
/// SQLite 3.40 scans the whole table for it (each batch slower as the table grows),
/// the bundled 3.51 does not. The test below pins the plan.
fn select_by_keys<'a>(
    table: &str,
    time_column: &str,
    columns: &str,
    keys: impl Iterator<Item = (&'a str, i64)>,
) -> QueryBuilder<Sqlite> {
    let mut q = QueryBuilder::<Sqlite>::new(format!("SELECT {columns} FROM ("));
    q.push_values(keys, |mut row, (code, at)| {
        row.push_bind(code).push_bind(at);
    });
    q.push(format!(
        ") AS k JOIN {table} t ON t.code = k.column1 AND t.{time_column} = k.column2"
    ));
    q
}

/// The statement of one chunk, kept prepared only at the sizes that recur (see
/// [`CHUNK_ROWS`]). A held click write's parts were prepared anew every time: at
/// 10,000 redirects/s that cost the SQLite writer's thread 0.2-0.5 µs a click, about
/// a tenth of its CPU (bench/results/2026-12-07.md).
fn chunk_statement(
    q: &mut QueryBuilder<Sqlite>,
    rows: usize,
) -> sqlx::query::Query<'_, Sqlite, <Sqlite as sqlx::Database>::Arguments> {
    q.build().persistent(rows == CHUNK_ROWS || rows == PART_ROWS)
}

const ROLLUP_COLUMNS: &str = "t.code AS code, t.hour AS hour, t.clicks, t.bots, t.dims, t.visitors";
const DAY_COLUMNS: &str = "t.code AS code, t.day AS day, t.visitors";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per multi-row statement: 10 columns x 3,000 stays under SQLite's 32,766
/// bound parameters. Only full chunks and click parts ([`PART_ROWS`]) are kept
/// prepared (`persistent`): another size is a last chunk, whose text is new with
/// nearly every batch, and sqlx's statement cache would keep up to 100 of those,
/// each a prepared statement of up to megabytes.
const CHUNK_ROWS: usize = 3_000;

/// `SELECT <every link column> FROM links l <tail>` as a `&'static str`, so every
/// query stays a literal (sqlx only takes non-literal SQL behind `AssertSqlSafe`).
/// The click counters live in `link_clicks` (migration 0007): `<tail>` names the
/// link's columns as `l.…`.
macro_rules! link_select {
    ($tail:literal) => {
        concat!(
            "SELECT l.id, l.code, l.original_url, l.owner_id, l.created_at, l.expires_at, ",
            "l.is_active, l.redirect_type, l.metadata, COALESCE(c.click_count, 0) AS click_count, ",
            "c.last_accessed_at FROM links l LEFT JOIN link_clicks c ON c.code = l.code ",
            $tail
        )
    };
}

/// A reader connection's page cache, as SQLite's `cache_size` (negative: KiB).
const READER_CACHE_KIB: &str = "-512";

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, e.g. `sqlite://kurz.db`.
    pub async fn connect(url: &str, read_connections: u32) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode is durable against process crashes and only risks the
            // last transactions on power loss; FULL would fsync every create.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // The driver's thread hands rows over a channel this deep, and waits
            // whenever it is full. At the default (50) the warm-up of 100,000 links
            // (reads of 1,000) took 0.8-0.9 s; at one chunk, 0.64 s
            // (bench/results/2026-12-06.md).
            .row_buffer_size(CHUNK_ROWS);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await
            .map_err(map_err)?;
        let read = SqlitePoolOptions::new()
            .max_connections(read_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            // A reader's page cache is dropped whenever another connection has
            // committed since its last read (WAL), and under click traffic the
            // writer commits every few hundred milliseconds: at SQLite's default of
            // 2 MiB per connection the four readers held ~8 MiB that was almost
            // never hit again. The operating system's page cache still serves their
            // reads.
            .connect_with(options.read_only(false).pragma("cache_size", READER_CACHE_KIB))
            .await
            .map_err(map_err)?;
        Ok(Self {
            write: Writer {
                pool: write,
                gate: LinksFirst::default(),
                opener: tokio::runtime::Handle::try_current().ok(),
            },
            read,
        })
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

fn link_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Link> {
    let get = |e: sqlx::Error| StoreError::Other(format!("bad link row: {e}"));
    let code: String = row.try_get("code").map_err(get)?;
    let redirect: i64 = row.try_get("redirect_type").map_err(get)?;
    let metadata: String = row.try_get("metadata").map_err(get)?;
    Ok(Link {
        id: row.try_get("id").map_err(get)?,
        code: super::stored_code(&code)?,
        original_url: TargetUrl::from_trusted(row.try_get("original_url").map_err(get)?),
        owner_id: row.try_get("owner_id").map_err(get)?,
        created_at: from_ms(row.try_get("created_at").map_err(get)?),
        expires_at: row
            .try_get::<Option<i64>, _>("expires_at")
            .map_err(get)?
            .map(from_ms),
        is_active: row.try_get("is_active").map_err(get)?,
        redirect_type: super::stored_redirect_type(redirect)?,
        metadata: Metadata::from_stored(&metadata),
        click_count: row.try_get("click_count").map_err(get)?,
        last_accessed_at: row
            .try_get::<Option<i64>, _>("last_accessed_at")
            .map_err(get)?
            .map(from_ms),
    })
}

/// A row of [`LinkStore::get_targets`]'s query, its columns read by position.
fn target_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<LinkTarget> {
    let get = |e: sqlx::Error| StoreError::Other(format!("bad link row: {e}"));
    let code: String = row.try_get(0).map_err(get)?;
    let redirect: i64 = row.try_get(4).map_err(get)?;
    Ok(LinkTarget {
        code: super::stored_code(&code)?,
        original_url: TargetUrl::from_trusted(row.try_get(1).map_err(get)?),
        expires_at: row.try_get::<Option<i64>, _>(2).map_err(get)?.map(from_ms),
        is_active: row.try_get(3).map_err(get)?,
        redirect_type: super::stored_redirect_type(redirect)?,
    })
}

fn rollup_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<StoredRollup> {
    let get = |e: sqlx::Error| StoreError::Other(format!("bad rollup row: {e}"));
    Ok(StoredRollup {
        hour: from_ms(row.try_get("hour").map_err(get)?),
        clicks: row.try_get("clicks").map_err(get)?,
        bots: row.try_get("bots").map_err(get)?,
        dims: row.try_get("dims").map_err(get)?,
        visitors: row.try_get("visitors").map_err(get)?,
    })
}

fn user_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<User> {
    let get = |e: sqlx::Error| StoreError::Other(format!("bad user row: {e}"));
    let tier: String = row.try_get("tier").map_err(get)?;
    Ok(User {
        id: row.try_get("id").map_err(get)?,
        email: row.try_get("email").map_err(get)?,
        tier: Tier::parse(&tier).map_err(|e| StoreError::Other(e.message))?,
        created_at: from_ms(row.try_get("created_at").map_err(get)?),
    })
}

#[async_trait]
impl LinkStore for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(self.write.any())
            .await
            .map_err(|e| StoreError::Other(format!("migration failed: {e}")))
    }

    async fn pending_migrations(&self) -> StoreResult<usize> {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
        .fetch_one(self.write.any())
        .await
        .map_err(map_err)?;
        let applied: Vec<i64> = if exists {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(self.write.any())
                .await
                .map_err(map_err)?
        } else {
            Vec::new()
        };
        Ok(MIGRATOR.iter().filter(|m| !applied.contains(&m.version)).count())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn pools(&self) -> Vec<PoolState> {
        vec![
            PoolState::of("primary", self.write.any()),
            PoolState::of("read", &self.read),
        ]
    }

    async fn count_active_links(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM links WHERE deleted_at IS NULL AND is_active \
             AND (expires_at IS NULL OR expires_at > ?1)",
        )
        .bind(ms(now))
        .fetch_one(&self.read)
        .await
        .map_err(map_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn insert_links(&self, links: &[NewLink]) -> StoreResult<Vec<Option<Link>>> {
        let write = self.write.link();
        let mut tx = write.begin().await.map_err(map_err)?;
        let mut out = Vec::with_capacity(links.len());
        for l in links {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO links (code, original_url, owner_id, created_at, expires_at, \
                 redirect_type, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (code) DO NOTHING RETURNING id",
            )
            .bind(l.code.as_str())
            .bind(l.original_url.as_str())
            .bind(l.owner_id)
            .bind(ms(l.created_at))
            .bind(l.expires_at.map(ms))
            .bind(i64::from(l.redirect_type.status()))
            .bind(l.metadata.to_json_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
            out.push(id.map(|id| Link {
                id,
                code: l.code.clone(),
                original_url: l.original_url.clone(),
                owner_id: l.owner_id,
                created_at: l.created_at,
                expires_at: l.expires_at,
                is_active: true,
                redirect_type: l.redirect_type,
                metadata: l.metadata.clone(),
                click_count: 0,
                last_accessed_at: None,
            }));
        }
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn get_targets(&self, codes: &[String]) -> StoreResult<Vec<LinkTarget>> {
        let mut out = Vec::with_capacity(codes.len());
        for chunk in codes.chunks(CHUNK_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(concat!(
                "SELECT code, original_url, expires_at, is_active, redirect_type ",
                "FROM links WHERE deleted_at IS NULL AND code IN ("
            ));
            let mut list = q.separated(", ");
            for code in chunk {
                list.push_bind(code.as_str());
            }
            q.push(")");
            for row in q
                .build()
                .persistent(false)
                .fetch_all(&self.read)
                .await
                .map_err(map_err)?
            {
                out.push(target_from_row(&row)?);
            }
        }
        Ok(out)
    }

    async fn get_link(&self, code: &str) -> StoreResult<Option<Link>> {
        let row = sqlx::query(link_select!("WHERE l.code = ?1 AND l.deleted_at IS NULL"))
            .bind(code)
            .fetch_optional(&self.read)
            .await
            .map_err(map_err)?;
        row.as_ref().map(link_from_row).transpose()
    }

    async fn links_version(&self) -> StoreResult<Option<i64>> {
        // Moved by triggers on `links` (migration 0008), in the changing transaction.
        let n: i64 = sqlx::query_scalar("SELECT n FROM links_version WHERE id = 1")
            .fetch_one(&self.read)
            .await
            .map_err(map_err)?;
        Ok(Some(n))
    }

    async fn update_link(&self, code: &str, patch: &LinkPatch) -> StoreResult<Option<Link>> {
        let write = self.write.link();
        let row = sqlx::query(concat!(
            "UPDATE links SET ",
            "original_url = COALESCE(?1, original_url), ",
            "expires_at = CASE WHEN ?2 THEN ?3 ELSE expires_at END, ",
            "is_active = COALESCE(?4, is_active), ",
            "redirect_type = COALESCE(?5, redirect_type), ",
            "metadata = COALESCE(?6, metadata) ",
            "WHERE code = ?7 AND deleted_at IS NULL RETURNING ",
            "id, code, original_url, owner_id, created_at, expires_at, is_active, ",
            "redirect_type, metadata, ",
            "COALESCE((SELECT c.click_count FROM link_clicks c WHERE c.code = links.code), 0) ",
            "AS click_count, ",
            "(SELECT c.last_accessed_at FROM link_clicks c WHERE c.code = links.code) ",
            "AS last_accessed_at"
        ))
        .bind(patch.original_url.as_ref().map(TargetUrl::as_str))
        .bind(patch.expires_at.is_some())
        .bind(patch.expires_at.flatten().map(ms))
        .bind(patch.is_active)
        .bind(patch.redirect_type.map(|r| i64::from(r.status())))
        .bind(patch.metadata.as_ref().map(Metadata::to_json_string))
        .bind(code)
        .fetch_optional(&*write)
        .await
        .map_err(map_err)?;
        row.as_ref().map(link_from_row).transpose()
    }

    async fn delete_link(&self, code: &str) -> StoreResult<bool> {
        let write = self.write.link();
        let done = sqlx::query(
            "UPDATE links SET deleted_at = ?1, original_url = '', metadata = '{}', is_active = 0 \
             WHERE code = ?2 AND deleted_at IS NULL",
        )
        .bind(ms(Utc::now()))
        .bind(code)
        .execute(&*write)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_links(&self, owner_id: i64, query: &ListQuery) -> StoreResult<Vec<Link>> {
        // LIKE ignores ASCII case in SQLite; codes and stored URLs are ASCII.
        let sql = if query.oldest_first {
            link_select!(
                "WHERE l.owner_id = ?1 AND l.deleted_at IS NULL AND l.id > ?2 \
                 AND (?3 IS NULL OR l.code LIKE ?3 ESCAPE '\\' OR l.original_url LIKE ?3 ESCAPE '\\') \
                 ORDER BY l.id ASC LIMIT ?4"
            )
        } else {
            link_select!(
                "WHERE l.owner_id = ?1 AND l.deleted_at IS NULL AND l.id < ?2 \
                 AND (?3 IS NULL OR l.code LIKE ?3 ESCAPE '\\' OR l.original_url LIKE ?3 ESCAPE '\\') \
                 ORDER BY l.id DESC LIMIT ?4"
            )
        };
        let rows = sqlx::query(sql)
            .bind(owner_id)
            .bind(query.cursor_bound())
            .bind(query.like_pattern())
            .bind(i64::from(query.limit))
            .fetch_all(&self.read)
            .await
            .map_err(map_err)?;
        rows.iter().map(link_from_row).collect()
    }

    async fn lease_block(&self, size: u64, max: u64) -> StoreResult<u64> {
        let write = self.write.link();
        let size = i64::try_from(size).map_err(|_| StoreError::Other("block too large".into()))?;
        let max = i64::try_from(max).map_err(|_| StoreError::Other("bad counter bound".into()))?;
        let start: Option<i64> = sqlx::query_scalar(
            "UPDATE kgs_counter SET next_value = next_value + ?1 \
             WHERE id = 1 AND next_value + ?1 <= ?2 RETURNING next_value - ?1",
        )
        .bind(size)
        .bind(max)
        .fetch_optional(&*write)
        .await
        .map_err(map_err)?;
        let start = start.ok_or_else(|| StoreError::Other("code counter exhausted".into()))?;
        u64::try_from(start).map_err(|_| StoreError::Other("negative counter".into()))
    }

    async fn setting_get_or_init(&self, name: &str, value: &str) -> StoreResult<String> {
        let write = self.write.link();
        sqlx::query("INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&*write)
            .await
            .map_err(map_err)?;
        sqlx::query_scalar("SELECT value FROM settings WHERE name = ?1")
            .bind(name)
            .fetch_one(&*write)
            .await
            .map_err(map_err)
    }

    async fn create_user(&self, user: &NewUser) -> StoreResult<User> {
        let write = self.write.link();
        let row = sqlx::query(
            "INSERT INTO users (email, api_key_hash, tier, created_at) VALUES (?1, ?2, ?3, ?4) \
             RETURNING id, email, tier, created_at",
        )
        .bind(&user.email)
        .bind(&user.api_key_hash)
        .bind(user.tier.as_str())
        .bind(ms(Utc::now()))
        .fetch_one(&*write)
        .await
        .map_err(map_err)?;
        user_from_row(&row)
    }

    async fn user_by_key_hash(&self, api_key_hash: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT id, email, tier, created_at FROM users WHERE api_key_hash = ?1")
            .bind(api_key_hash)
            .fetch_optional(&self.read)
            .await
            .map_err(map_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT id, email, tier, created_at FROM users WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(map_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn upsert_admin(&self, email: &str, api_key_hash: &str) -> StoreResult<User> {
        let write = self.write.link();
        let row = sqlx::query(
            "INSERT INTO users (email, api_key_hash, tier, created_at) VALUES (?1, ?2, 'admin', ?3) \
             ON CONFLICT (email) DO UPDATE SET api_key_hash = excluded.api_key_hash, tier = 'admin' \
             RETURNING id, email, tier, created_at",
        )
        .bind(email)
        .bind(api_key_hash)
        .bind(ms(Utc::now()))
        .fetch_one(&*write)
        .await
        .map_err(map_err)?;
        user_from_row(&row)
    }

    async fn has_admin(&self) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE tier = 'admin')")
            .fetch_one(&self.read)
            .await
            .map_err(map_err)
    }

    async fn idempotency_claim(
        &self,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
        fresh_after: DateTime<Utc>,
    ) -> StoreResult<IdempotencyClaim> {
        let write = self.write.link();
        let claimed: Option<String> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (key, request_hash, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, \
             status = NULL, body = NULL, created_at = excluded.created_at \
             WHERE idempotency_keys.created_at < ?4 RETURNING key",
        )
        .bind(key)
        .bind(request_hash)
        .bind(ms(now))
        .bind(ms(fresh_after))
        .fetch_optional(&*write)
        .await
        .map_err(map_err)?;
        if claimed.is_some() {
            return Ok(IdempotencyClaim::Claimed);
        }
        let row = sqlx::query("SELECT request_hash, status, body FROM idempotency_keys WHERE key = ?1")
            .bind(key)
            .fetch_one(&*write)
            .await
            .map_err(map_err)?;
        let get = |e: sqlx::Error| StoreError::Other(format!("bad idempotency row: {e}"));
        let status: Option<i64> = row.try_get("status").map_err(get)?;
        let body: Option<Vec<u8>> = row.try_get("body").map_err(get)?;
        Ok(IdempotencyClaim::Existing {
            request_hash: row.try_get("request_hash").map_err(get)?,
            response: status.map(|s| (u16::try_from(s).unwrap_or(500), body.unwrap_or_default())),
        })
    }

    async fn idempotency_complete(&self, key: &str, status: u16, body: &[u8]) -> StoreResult<()> {
        let write = self.write.link();
        sqlx::query("UPDATE idempotency_keys SET status = ?1, body = ?2 WHERE key = ?3")
            .bind(i64::from(status))
            .bind(body)
            .bind(key)
            .execute(&*write)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn idempotency_release(&self, key: &str) -> StoreResult<()> {
        let write = self.write.link();
        sqlx::query("DELETE FROM idempotency_keys WHERE key = ?1 AND status IS NULL")
            .bind(key)
            .execute(&*write)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let write = self.write.link();
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?1")
            .bind(ms(before))
            .execute(&*write)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }
}

fn cerr(e: sqlx::Error) -> ClickStoreError {
    to_click(map_err(e))
}

fn rollup_key(row: &sqlx::sqlite::SqliteRow) -> StoreResult<(String, StoredRollup)> {
    let code: String = row.try_get("code").map_err(map_err)?;
    Ok((code, rollup_from_row(row)?))
}

#[async_trait]
impl ClickStore for SqliteStore {
    fn in_process(&self) -> bool {
        true
    }

    async fn begin(&self) -> ClickResult<Box<dyn ClickTx>> {
        let tx = self.write.clicks().await.map_err(cerr)?;
        Ok(Box::new(SqliteClickTx { tx }))
    }

    async fn claim_name(&self, name: &str) -> ClickResult<()> {
        sqlx::query(
            "INSERT INTO click_replays (spool, through, touched_at) VALUES (?1, 0, ?2) \
             ON CONFLICT (spool) DO NOTHING",
        )
        .bind(name)
        .bind(ms(Utc::now()))
        .execute(&mut *self.write.acquire().await.map_err(cerr)?)
        .await
        .map_err(cerr)?;
        Ok(())
    }

    async fn name_through(&self, name: &str) -> ClickResult<Option<u64>> {
        // Through the one write connection: a write under `name` still running ends
        // before this runs, so the answer cannot change after it.
        let through: Option<i64> = sqlx::query_scalar("SELECT through FROM click_replays WHERE spool = ?1")
            .bind(name)
            .fetch_optional(&mut *self.write.acquire().await.map_err(cerr)?)
            .await
            .map_err(cerr)?;
        Ok(through.map(|t| t.max(0) as u64))
    }

    async fn rollups(
        &self,
        code: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ClickResult<Vec<StoredRollup>> {
        let rows = sqlx::query(
            "SELECT hour, clicks, bots, dims, x'' AS visitors FROM click_rollups \
             WHERE code = ?1 AND hour >= ?2 AND hour < ?3 ORDER BY hour",
        )
        .bind(code)
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.read)
        .await
        .map_err(cerr)?;
        rows.iter()
            .map(rollup_from_row)
            .collect::<StoreResult<_>>()
            .map_err(to_click)
    }

    async fn sketches(&self, code: &str, plan: &SketchPlan) -> ClickResult<Vec<Vec<u8>>> {
        let mut read = self.read.acquire().await.map_err(cerr)?;
        let plan = match days_through(&mut read).await.map_err(cerr)? {
            Some(through) => plan.clone().with_daily_before(through),
            None => plan.clone(),
        };
        let mut out: Vec<Vec<u8>> = Vec::new();
        if let Some((from, to)) = plan.days {
            out.extend(
                sqlx::query_scalar::<_, Vec<u8>>(
                    "SELECT visitors FROM click_visitors_daily WHERE code = ?1 AND day >= ?2 AND day < ?3",
                )
                .bind(code)
                .bind(ms(from))
                .bind(ms(to))
                .fetch_all(&mut *read)
                .await
                .map_err(cerr)?,
            );
        }
        for (from, to) in &plan.hours {
            out.extend(
                sqlx::query_scalar::<_, Vec<u8>>(
                    "SELECT visitors FROM click_rollups WHERE code = ?1 AND hour >= ?2 AND hour < ?3",
                )
                .bind(code)
                .bind(ms(*from))
                .bind(ms(*to))
                .fetch_all(&mut *read)
                .await
                .map_err(cerr)?,
            );
        }
        Ok(out)
    }

    async fn hot_codes(&self, since: DateTime<Utc>, limit: usize) -> ClickResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT code FROM click_rollups WHERE hour >= ?1 \
             GROUP BY code ORDER BY SUM(clicks + bots) DESC LIMIT ?2",
        )
        .bind(ms(since))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await
        .map_err(cerr)
    }

    async fn purge_events(&self, before: DateTime<Utc>) -> ClickResult<u64> {
        // Whole blocks go once their newest click is older than `before`: a block
        // holds one write's clicks, seconds apart (hours only for a replayed outage).
        let events: Vec<i64> =
            sqlx::query_scalar("DELETE FROM click_event_blocks WHERE last_at < ?1 RETURNING events")
                .bind(ms(before))
                .fetch_all(self.write.any())
                .await
                .map_err(cerr)?;
        Ok(events.iter().map(|n| *n as u64).sum())
    }

    async fn purge_names(&self, before: DateTime<Utc>) -> ClickResult<u64> {
        let done = sqlx::query("DELETE FROM click_replays WHERE touched_at < ?1")
            .bind(ms(before))
            .execute(self.write.any())
            .await
            .map_err(cerr)?;
        Ok(done.rows_affected())
    }
}

/// A click write: a transaction on the one write connection. SQLite has one writer
/// at a time, so rows need no locks of their own. A batch can touch thousands of
/// link-hours: rows are read and written with multi-row statements (bound
/// parameters, chunked under SQLite's limit of 32,766 per statement), never one
/// statement per row.
struct SqliteClickTx {
    tx: sqlx::Transaction<'static, Sqlite>,
}

#[async_trait]
impl ClickTx for SqliteClickTx {
    async fn name_mark(&mut self, name: &str) -> ClickResult<Option<u64>> {
        let through: Option<i64> = sqlx::query_scalar("SELECT through FROM click_replays WHERE spool = ?1")
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(cerr)?;
        Ok(through.map(|t| t.max(0) as u64))
    }

    async fn set_name_mark(&mut self, name: &str, through: u64) -> ClickResult<()> {
        sqlx::query(
            "INSERT INTO click_replays (spool, through, touched_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (spool) DO UPDATE SET through = excluded.through, touched_at = excluded.touched_at",
        )
        .bind(name)
        .bind(through as i64)
        .bind(ms(Utc::now()))
        .execute(&mut *self.tx)
        .await
        .map_err(cerr)?;
        Ok(())
    }

    async fn days_through(&mut self, lock: MarkLock) -> ClickResult<Option<DateTime<Utc>>> {
        if lock == MarkLock::Update {
            // As the transaction's first statement, this takes the write lock, so no
            // click write (of this or another process) runs between reading the mark
            // and moving it.
            sqlx::query("UPDATE settings SET value = value WHERE name = ?1")
                .bind(DAYS_THROUGH)
                .execute(&mut *self.tx)
                .await
                .map_err(cerr)?;
        }
        days_through(&mut self.tx).await.map_err(cerr)
    }

    async fn set_days_through(&mut self, day: DateTime<Utc>) -> ClickResult<()> {
        sqlx::query("UPDATE settings SET value = ?1 WHERE name = ?2")
            .bind(ms(day).to_string())
            .bind(DAYS_THROUGH)
            .execute(&mut *self.tx)
            .await
            .map_err(cerr)?;
        Ok(())
    }

    async fn lock_links(&mut self, _codes: &[&str]) -> ClickResult<()> {
        Ok(())
    }

    async fn read_hours(
        &mut self,
        keys: &[RowKey<'_>],
    ) -> ClickResult<StoredRows<DateTime<Utc>, StoredRollup>> {
        let mut existing = StoredRows::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK_ROWS) {
            let mut q = select_by_keys(
                "click_rollups",
                "hour",
                ROLLUP_COLUMNS,
                chunk.iter().map(|(code, hour)| (*code, ms(*hour))),
            );
            for row in chunk_statement(&mut q, chunk.len())
                .fetch_all(&mut *self.tx)
                .await
                .map_err(cerr)?
            {
                let (code, r) = rollup_key(&row).map_err(to_click)?;
                existing.insert(code, r.hour, r);
            }
        }
        Ok(existing)
    }

    async fn write_hours(&mut self, keys: &[RowKey<'_>], mut rows: Vec<StoredRollup>) -> ClickResult<()> {
        for chunk in keys.chunks(CHUNK_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO click_rollups (code, hour, clicks, bots, dims, visitors) ",
            );
            let merged = rows.drain(..chunk.len().min(rows.len()));
            q.push_values(chunk.iter().zip(merged), |mut row, ((code, hour), m)| {
                row.push_bind(*code)
                    .push_bind(ms(*hour))
                    .push_bind(m.clicks)
                    .push_bind(m.bots)
                    .push_bind(m.dims)
                    .push_bind(m.visitors);
            });
            q.push(
                " ON CONFLICT (code, hour) DO UPDATE SET clicks = excluded.clicks, bots = excluded.bots, \
                 dims = excluded.dims, visitors = excluded.visitors",
            );
            chunk_statement(&mut q, chunk.len())
                .execute(&mut *self.tx)
                .await
                .map_err(cerr)?;
        }
        Ok(())
    }

    async fn read_days(&mut self, keys: &[RowKey<'_>]) -> ClickResult<StoredRows<DateTime<Utc>, Vec<u8>>> {
        let mut stored = StoredRows::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK_ROWS) {
            let mut q = select_by_keys(
                "click_visitors_daily",
                "day",
                DAY_COLUMNS,
                chunk.iter().map(|(code, day)| (*code, ms(*day))),
            );
            for row in chunk_statement(&mut q, chunk.len())
                .fetch_all(&mut *self.tx)
                .await
                .map_err(cerr)?
            {
                let code: String = row.try_get("code").map_err(cerr)?;
                let day: i64 = row.try_get("day").map_err(cerr)?;
                let visitors: Vec<u8> = row.try_get("visitors").map_err(cerr)?;
                stored.insert(code, from_ms(day), visitors);
            }
        }
        Ok(stored)
    }

    async fn write_days(&mut self, keys: &[RowKey<'_>], mut sketches: Vec<Vec<u8>>) -> ClickResult<()> {
        for chunk in keys.chunks(CHUNK_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                // An upsert updates the row in place; REPLACE deleted it and its
                // index entry and inserted both again.
                "INSERT INTO click_visitors_daily (code, day, visitors) ",
            );
            let merged = sketches.drain(..chunk.len().min(sketches.len()));
            q.push_values(chunk.iter().zip(merged), |mut row, ((code, day), sketch)| {
                row.push_bind(*code).push_bind(ms(*day)).push_bind(sketch);
            });
            q.push(" ON CONFLICT (code, day) DO UPDATE SET visitors = excluded.visitors");
            chunk_statement(&mut q, chunk.len())
                .execute(&mut *self.tx)
                .await
                .map_err(cerr)?;
        }
        Ok(())
    }

    async fn insert_raw(&mut self, batch: &ClickBatch) -> ClickResult<()> {
        // One JSON block at a time, each moved into its query: binding a `&str` would
        // copy megabytes into fresh pages once more.
        for block in batch.raw_blocks() {
            sqlx::query(
                "INSERT INTO click_event_blocks (first_at, last_at, events, rows) VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(ms(block.first_at))
            .bind(ms(block.last_at))
            .bind(block.events as i64)
            .bind(block.json)
            .execute(&mut *self.tx)
            .await
            .map_err(cerr)?;
        }
        Ok(())
    }

    /// Into `link_clicks`, keyed by code (migration 0007): `touches` come in code
    /// order, so a part of a held write changes a few adjacent pages.
    async fn add_clicks(&mut self, touches: &[LinkTouch<'_>]) -> ClickResult<()> {
        for chunk in touches.chunks(CHUNK_ROWS) {
            let mut q =
                QueryBuilder::<Sqlite>::new("INSERT INTO link_clicks (code, click_count, last_accessed_at) ");
            q.push_values(chunk, |mut row, t| {
                row.push_bind(t.short_code)
                    .push_bind(t.clicks as i64)
                    .push_bind(ms(t.last_at));
            });
            q.push(
                " ON CONFLICT (code) DO UPDATE SET \
                 click_count = link_clicks.click_count + excluded.click_count, \
                 last_accessed_at = MAX(COALESCE(link_clicks.last_accessed_at, 0), excluded.last_accessed_at)",
            );
            chunk_statement(&mut q, chunk.len())
                .execute(&mut *self.tx)
                .await
                .map_err(cerr)?;
        }
        Ok(())
    }

    async fn codes_with_clicks(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ClickResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT DISTINCT code FROM click_rollups WHERE hour >= ?1 AND hour < ?2 AND clicks > 0",
        )
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(cerr)
    }

    async fn hour_sketches(
        &mut self,
        codes: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ClickResult<Vec<(String, DateTime<Utc>, Vec<u8>)>> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT code, hour, visitors FROM click_rollups WHERE clicks > 0 AND hour >= ",
        );
        q.push_bind(ms(from)).push(" AND hour < ").push_bind(ms(to));
        q.push(" AND code IN (");
        let mut list = q.separated(", ");
        for code in codes {
            list.push_bind(code.as_str());
        }
        q.push(") ORDER BY code, hour");
        let mut hours = Vec::new();
        for row in q
            .build()
            .persistent(false)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(cerr)?
        {
            let code: String = row.try_get(0).map_err(cerr)?;
            let hour: i64 = row.try_get(1).map_err(cerr)?;
            let visitors: Vec<u8> = row.try_get(2).map_err(cerr)?;
            hours.push((code, from_ms(hour), visitors));
        }
        Ok(hours)
    }

    async fn commit(self: Box<Self>) -> ClickResult<()> {
        self.tx.commit().await.map_err(cerr)
    }
}

/// [`DAYS_THROUGH`]: `None` if the row is missing or unreadable, and then every write
/// keeps every day's sketch itself (as before the mark existed).
async fn days_through(conn: &mut sqlx::SqliteConnection) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let value: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE name = ?1")
        .bind(DAYS_THROUGH)
        .fetch_optional(conn)
        .await?;
    Ok(value.and_then(|v| v.parse::<i64>().ok()).map(from_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::port::ClickStore;
    use crate::store::LinkStore;
    use std::sync::Arc;

    /// Migration 0004 moves raw click rows into blocks; the `click_events` view shows
    /// them as before, next to blocks written afterwards by the store.
    #[tokio::test]
    async fn old_raw_click_rows_survive_the_move_to_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("blocks.db").display());
        let store = SqliteStore::connect(&url, 1).await.unwrap();
        for sql in [
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0002_clicks.sql"),
            include_str!("../../migrations/sqlite/0003_click_replays.sql"),
        ] {
            apply(&store, sql).await;
        }
        for (code, at, city, hash) in [
            ("old1234", 86_400_000_i64 * 20_000 + 5, Some("Osaka"), -7_i64),
            ("old1234", 86_400_000_i64 * 20_001, None, i64::MAX),
        ] {
            sqlx::query(
                "INSERT INTO click_events (code, clicked_at, referrer, device, browser, os, is_bot, \
                 country, city, visitor_hash) VALUES (?1, ?2, 't.co', 'mobile', 'Safari', 'iOS', 1, 'JP', ?3, ?4)",
            )
            .bind(code)
            .bind(at)
            .bind(city)
            .bind(hash)
            .execute(store.write.any())
            .await
            .unwrap();
        }
        apply(
            &store,
            include_str!("../../migrations/sqlite/0004_click_event_blocks.sql"),
        )
        .await;
        let blocks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM click_event_blocks")
            .fetch_one(store.write.any())
            .await
            .unwrap();
        assert_eq!(blocks, 2, "one block per day");
        type Row = (String, i64, String, String, i64, String, Option<String>, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT code, clicked_at, referrer, device, is_bot, country, city, visitor_hash \
             FROM click_events ORDER BY clicked_at",
        )
        .fetch_all(store.write.any())
        .await
        .unwrap();
        assert_eq!(
            rows,
            vec![
                (
                    "old1234".into(),
                    86_400_000 * 20_000 + 5,
                    "t.co".into(),
                    "mobile".into(),
                    1,
                    "JP".into(),
                    Some("Osaka".into()),
                    -7
                ),
                (
                    "old1234".into(),
                    86_400_000 * 20_001,
                    "t.co".into(),
                    "mobile".into(),
                    1,
                    "JP".into(),
                    None,
                    i64::MAX
                ),
            ]
        );
        // Retention takes whole blocks, counting their events.
        let gone = store
            .purge_events(DateTime::from_timestamp_millis(86_400_000 * 20_001).unwrap())
            .await
            .unwrap();
        assert_eq!(gone, 1);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM click_events")
            .fetch_one(store.write.any())
            .await
            .unwrap();
        assert_eq!(left, 1);
    }

    /// The batch writer's reads of existing rows must be primary-key lookups: a plan
    /// that scans the table makes every batch slower as the table grows.
    #[tokio::test]
    async fn batch_reads_of_rollup_rows_are_key_lookups_not_scans() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(dir.path(), "plan.db").await;
        let keys = [("abc", 1_i64), ("def", 2)];
        for (table, time, columns) in [
            ("click_rollups", "hour", ROLLUP_COLUMNS),
            ("click_visitors_daily", "day", DAY_COLUMNS),
        ] {
            let q = select_by_keys(table, time, columns, keys.into_iter());
            let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {}",
                q.sql().as_str()
            )))
            .bind(keys[0].0)
            .bind(keys[0].1)
            .bind(keys[1].0)
            .bind(keys[1].1)
            .fetch_all(store.write.any())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
            assert!(
                plan.iter().any(|d| d.starts_with("SEARCH t USING")),
                "{table}: {plan:?}"
            );
            assert!(!plan.iter().any(|d| d.contains("SCAN t")), "{table}: {plan:?}");
        }
    }

    /// Migration 0006 stamps `click_replays` rows written before it with its own
    /// time: a name from an older build is kept for the whole window, not purged at once.
    #[tokio::test]
    async fn replay_names_from_before_the_stamp_count_as_written_at_migration() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("replays.db").display());
        let store = SqliteStore::connect(&url, 1).await.unwrap();
        apply(
            &store,
            include_str!("../../migrations/sqlite/0003_click_replays.sql"),
        )
        .await;
        sqlx::query("INSERT INTO click_replays (spool, through) VALUES ('w-old-build', 9)")
            .execute(store.write.any())
            .await
            .unwrap();
        let before = Utc::now() - chrono::Duration::seconds(2);
        apply(
            &store,
            include_str!("../../migrations/sqlite/0006_click_replays_touched.sql"),
        )
        .await;
        assert_eq!(store.purge_names(before).await.unwrap(), 0);
        assert_eq!(store.name_through("w-old-build").await.unwrap(), Some(9));
        let after = Utc::now() + chrono::Duration::seconds(2);
        assert_eq!(store.purge_names(after).await.unwrap(), 1);
    }

    /// Migration 0007 moves each link's click counters into `link_clicks`; links
    /// read afterwards carry the counts they had, and new clicks add to them.
    #[tokio::test]
    async fn click_counters_survive_their_move_out_of_the_links_table() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("counters.db").display());
        let store = SqliteStore::connect(&url, 1).await.unwrap();
        apply(&store, include_str!("../../migrations/sqlite/0001_init.sql")).await;
        for (code, clicks, last) in [("old0001", 7_i64, Some(86_400_000_i64)), ("old0002", 0, None)] {
            sqlx::query(
                "INSERT INTO links (code, original_url, created_at, click_count, last_accessed_at) \
                 VALUES (?1, 'https://example.com/', 0, ?2, ?3)",
            )
            .bind(code)
            .bind(clicks)
            .bind(last)
            .execute(store.write.any())
            .await
            .unwrap();
        }
        apply(
            &store,
            include_str!("../../migrations/sqlite/0007_link_clicks.sql"),
        )
        .await;
        let read = |code: &'static str| {
            let store = &store;
            async move {
                let link = store.get_link(code).await.unwrap().unwrap();
                (
                    link.click_count,
                    link.last_accessed_at.map(|t| t.timestamp_millis()),
                )
            }
        };
        assert_eq!(read("old0001").await, (7, Some(86_400_000)));
        assert_eq!(read("old0002").await, (0, None));
        let mut tx = store.begin().await.unwrap();
        let at = DateTime::from_timestamp_millis(2 * 86_400_000).unwrap();
        tx.add_clicks(&[
            LinkTouch {
                short_code: "old0001",
                clicks: 3,
                last_at: at,
            },
            LinkTouch {
                short_code: "old0002",
                clicks: 2,
                last_at: at,
            },
        ])
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(read("old0001").await, (10, Some(2 * 86_400_000)));
        assert_eq!(read("old0002").await, (2, Some(2 * 86_400_000)));
        let patched = store
            .update_link(
                "old0001",
                &LinkPatch {
                    is_active: Some(false),
                    ..LinkPatch::default()
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!((patched.click_count, patched.is_active), (10, false));
    }

    /// A held click write goes in parts, each a run of adjacent codes, and in WAL
    /// mode every page a part changes is written again in full. The counters of a
    /// run of codes must sit on a few pages: kept in the `links` rows (in creation
    /// order, unrelated to code order) they took a page per link, and a hold of 50
    /// parts rewrote most of the links table 50 times.
    /// Readers keep a small page cache (their pages are dropped at every commit of
    /// the writer's anyway); the writer keeps SQLite's default.
    #[tokio::test]
    async fn readers_keep_a_small_page_cache_the_writer_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(dir.path(), "cache.db").await;
        let size = |pool: &SqlitePool| {
            let pool = pool.clone();
            async move {
                let mut conn = pool.acquire().await.unwrap();
                sqlx::query_scalar::<_, i64>("PRAGMA cache_size")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(size(&store.read).await, READER_CACHE_KIB.parse::<i64>().unwrap());
        assert_eq!(size(&store.read).await, -512);
        assert_eq!(size(&store.write.pool).await, -2000, "SQLite's default");
    }

    #[tokio::test]
    async fn a_run_of_adjacent_codes_adds_its_clicks_on_a_few_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(dir.path(), "pages.db").await;
        // Created in an order unrelated to the codes' order, as generated codes are.
        let codes: Vec<String> = (0..20_000_u32)
            .map(|i| format!("c{:07}", i.wrapping_mul(7_919) % 20_000))
            .collect();
        let links: Vec<NewLink> = codes.iter().map(|c| NewLink::example(c)).collect();
        store.insert_links(&links).await.unwrap();
        let mut sorted: Vec<&str> = codes.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        add_a_click(&store, &sorted).await;
        // The WAL is emptied, then holds exactly the pages the next write changes.
        let checkpoint = |mode: &'static str| {
            let store = &store;
            async move {
                let (_, frames, _): (i64, i64, i64) =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!("PRAGMA wal_checkpoint({mode})")))
                        .fetch_one(store.write.any())
                        .await
                        .unwrap();
                frames
            }
        };
        checkpoint("TRUNCATE").await;
        add_a_click(&store, &sorted[10_000..10_500]).await;
        let written = checkpoint("PASSIVE").await;
        assert!(
            written < 20,
            "500 adjacent codes' counters rewrote {written} pages"
        );
        let link = store.get_link(sorted[10_000]).await.unwrap().unwrap();
        assert_eq!(link.click_count, 2);
    }

    /// A held click write goes in parts of [`PART_ROWS`] link-hours, so its
    /// statements recur with the same text: they are kept prepared, and only the
    /// first part pays for preparing them (thousands of bound values each). Before,
    /// only full chunks were kept, and every part was prepared anew.
    #[tokio::test]
    async fn a_click_writes_parts_are_prepared_once() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(dir.path(), "parts.db").await;
        let cached = || async {
            let conn = store.write.pool.acquire().await.unwrap();
            conn.cached_statements_size()
        };
        let hour = DateTime::from_timestamp(1_700_000_000 / 3600 * 3600, 0).unwrap();
        let mut sizes = vec![cached().await];
        for part in 0..3 {
            let codes: Vec<String> = (0..PART_ROWS).map(|i| format!("p{part}c{i:04}")).collect();
            let keys: Vec<RowKey<'_>> = codes.iter().map(|c| (c.as_str(), hour)).collect();
            let rows = (0..PART_ROWS)
                .map(|_| StoredRollup {
                    hour,
                    clicks: 1,
                    bots: 0,
                    dims: "{}".into(),
                    visitors: Vec::new(),
                })
                .collect();
            let touches: Vec<LinkTouch<'_>> = keys
                .iter()
                .map(|(short_code, _)| LinkTouch {
                    short_code,
                    clicks: 1,
                    last_at: hour,
                })
                .collect();
            let mut tx = store.begin().await.unwrap();
            let stored = tx.read_hours(&keys).await.unwrap();
            assert!(stored.get(&codes[0], &hour).is_none(), "new link-hours");
            tx.write_hours(&keys, rows).await.unwrap();
            tx.add_clicks(&touches).await.unwrap();
            tx.commit().await.unwrap();
            sizes.push(cached().await);
        }
        assert!(
            sizes[1] >= sizes[0] + 3,
            "the first part's three statements are kept: {sizes:?}"
        );
        assert_eq!(sizes[2], sizes[1], "the second part prepared nothing new");
        assert_eq!(sizes[3], sizes[1], "nor did the third");
    }

    /// Adds one click to each of `codes` (sorted) in one click transaction.
    async fn add_a_click(store: &SqliteStore, codes: &[&str]) {
        let last_at = Utc::now();
        let touches: Vec<LinkTouch<'_>> = codes
            .iter()
            .map(|short_code| LinkTouch {
                short_code,
                clicks: 1,
                last_at,
            })
            .collect();
        let mut tx = store.begin().await.unwrap();
        tx.add_clicks(&touches).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// Runs one migration's SQL by hand, to set up a store as an older build left it.
    async fn apply(store: &SqliteStore, sql: &'static str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(store.write.any())
            .await
            .unwrap();
    }

    /// A click write that finds no write connection open (the pool closes one idle
    /// for 10 minutes, older than 30, or broken) opens it on the store's runtime.
    /// Begun from the click store's lane, 10 nice steps down, the connection's new
    /// thread would start at the lane's priority, and every create after it would
    /// run below the redirects.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_click_write_opens_the_write_connection_at_the_workers_priority() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(migrated(dir.path(), "first.db").await);
        let mut open = store.write.pool.acquire().await.unwrap();
        open.close_on_drop();
        drop(open);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store.write.pool.size() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the connection was not closed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let workers = tokio::spawn(async { crate::analytics::background::nice_here() })
            .await
            .unwrap();
        let before = threads_named("sqlx-sqlite-worker");
        let lane = store.clone();
        // Looked at while the write holds the connection: once the lane is over its
        // connection goes back to the pool.
        let (seen, during) = std::sync::mpsc::channel();
        crate::analytics::background::spawn_below_workers(async move {
            let tx = ClickStore::begin(lane.as_ref()).await.unwrap();
            seen.send(threads_named("sqlx-sqlite-worker")).unwrap();
            tx.commit().await.unwrap();
        })
        .await
        .unwrap();
        let opened: Vec<i32> = during
            .recv()
            .expect("the write began")
            .into_iter()
            .filter(|(tid, _)| !before.contains_key(tid))
            .map(|(_, nice)| nice)
            .collect();
        assert_eq!(
            opened,
            vec![workers],
            "one connection opened, at the workers' priority"
        );
    }

    /// Thread id → nice value of this process's threads named `name` (as the kernel
    /// keeps a name: its first 15 bytes).
    #[cfg(target_os = "linux")]
    fn threads_named(name: &str) -> std::collections::HashMap<String, i32> {
        let kept = &name[..name.len().min(15)];
        let mut found = std::collections::HashMap::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == kept
                && let Some(nice) = nice_in(&task.path().join("stat"))
            {
                found.insert(task.file_name().to_string_lossy().into_owned(), nice);
            }
        }
        found
    }

    /// The nice value in a `/proc/…/stat` file: the 19th field, the 17th after the
    /// name in parentheses.
    #[cfg(target_os = "linux")]
    fn nice_in(stat: &std::path::Path) -> Option<i32> {
        let text = std::fs::read_to_string(stat).ok()?;
        text.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse().ok()
    }

    /// A migrated store in a fresh file `name` under `dir`.
    async fn migrated(dir: &std::path::Path, name: &str) -> SqliteStore {
        let url = format!("sqlite://{}", dir.join(name).display());
        let store = SqliteStore::connect(&url, 1).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// A create that arrives while click parts queue for the one write connection
    /// goes before them. Click part 1 holds the connection; create A waits for it;
    /// click part 2 asks for it; create B arrives. In a plain first-come queue part 2
    /// gets the connection before B, and B waits for all of part 2 (seconds on a
    /// loaded machine, for every create arriving during a big click write).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn creates_go_before_click_parts_waiting_for_the_write_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(migrated(dir.path(), "first.db").await);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let part1 = ClickStore::begin(store.as_ref()).await.unwrap();
        let create = |code: &'static str| {
            let (store, order) = (store.clone(), order.clone());
            tokio::spawn(async move {
                assert!(store.insert_links(&[NewLink::example(code)]).await.unwrap()[0].is_some());
                order.lock().unwrap().push(code);
            })
        };
        // Waits until `n` link writes are under way (waiting for the connection).
        let links_under_way = |n: usize| {
            let store = store.clone();
            async move {
                while store.write.gate.links.load(Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        let a = create("createa");
        links_under_way(1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let part2 = {
            let (store, order) = (store.clone(), order.clone());
            tokio::spawn(async move {
                let tx = ClickStore::begin(store.as_ref()).await.unwrap();
                order.lock().unwrap().push("part2");
                tokio::time::sleep(Duration::from_millis(500)).await;
                tx.commit().await.unwrap();
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b = create("createb");
        links_under_way(2).await;
        part1.commit().await.unwrap();
        for task in [a, part2, b] {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["createa", "createb", "part2"]);
    }

    /// Clicks yield to link writes for a bounded time only: under an endless stream
    /// of link writes a click transaction still begins.
    #[tokio::test]
    async fn a_click_part_waits_for_link_writes_for_a_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(dir.path(), "bounded.db").await;
        let endless = store.write.link();
        let started = tokio::time::Instant::now();
        let tx = ClickStore::begin(&store).await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= CLICKS_YIELD_AT_MOST, "began after {waited:?}");
        assert!(waited < CLICKS_YIELD_AT_MOST * 4, "began after {waited:?}");
        tx.commit().await.unwrap();
        drop(endless);
    }
}
