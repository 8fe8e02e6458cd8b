//! The PostgreSQL store: the production backend, with optional read replicas.
//!
//! Writes and anything that must be current go to the primary. Redirect lookups and
//! API-key lookups go to a replica (round robin), with two rules that give
//! read-your-writes: a code this instance created or changed in the last few seconds
//! is read from the primary, and a replica that does not know a code is never
//! believed — the primary is asked before answering "not found". So a redirect right
//! after a create never 404s because a replica lags. Stats reads (rollups, visitor
//! sketches) go to a replica too, falling back to the primary only on an error.
//!
//! Creates arrive grouped by the link service's group commit and are written with one
//! multi-row `INSERT … SELECT FROM UNNEST(…)`: one round trip per group.
//!
//! The primary may be given as several hosts, libpq-style
//! (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`): kurz then
//! finds the read-write one by itself and follows a failover without a restart (see
//! `Primary` below). Key leases notice a failover too and skip the counter ahead (see
//! `LEASE_SKIP_ON_NEW_SERVER`).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use quick_cache::sync::Cache;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

use crate::analytics::port::{
    ClickBatch, ClickResult, ClickStore, ClickStoreError, ClickTx, DAYS_THROUGH, LinkTouch, MarkLock,
    RawEvent, RowKey, SketchPlan, StoredRollup, StoredRows,
};

use super::{
    IdempotencyClaim, LinkPatch, LinkStore, ListQuery, NewLink, NewUser, PoolState, StoreError, StoreResult,
    User, to_click,
};
use crate::domain::{Link, LinkTarget, Metadata, TargetUrl, Tier};

/// [`DAYS_THROUGH`], read with `sql` (which says how the row is locked). `None` if
/// the row is missing or unreadable: then every write keeps every day's sketch
/// itself, as before the mark existed.
async fn days_through(
    conn: &mut sqlx::PgConnection,
    sql: &'static str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let value: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(DAYS_THROUGH)
        .fetch_optional(conn)
        .await?;
    Ok(value
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis))
}

const DAYS_THROUGH_READ: &str = "SELECT value FROM settings WHERE name = $1";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Raw click rows bound in one INSERT (ten arrays of this length).
const RAW_EVENTS_PER_STATEMENT: usize = 50_000;

/// How long after a write this instance reads a code from the primary. Replica lag
/// beyond this is caught by the "replica miss → primary" rule for creates; for
/// updates, cross-instance invalidations also mark the code (see `note_changed`).
const READ_YOUR_WRITES: Duration = Duration::from_secs(10);

/// The `settings` row holding the [`SERVER_EPOCH`] of the server that granted the last
/// key lease (first written by migration 0008).
const KGS_EPOCH: &str = "kgs_epoch";

/// Which server history this is: the cluster's system identifier (new for a cluster
/// restored from a dump into a new `initdb`) and its current timeline (one more on
/// every promotion, and on a point-in-time restore). The timeline is read from the
/// name of the current WAL file rather than from `pg_control_checkpoint()`: after a
/// fast promotion the control file shows the old timeline until the first checkpoint
/// finishes, and a lease in that window would not see the change.
const SERVER_EPOCH: &str = "SELECT (SELECT system_identifier FROM pg_control_system())::text || ':' || \
     ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text";

/// How far the key counter jumps when a lease finds a new [`SERVER_EPOCH`].
///
/// Why: with asynchronous replication the old primary may have granted leases that
/// never reached the replica now promoted, and the links created from them are out
/// in the world even if their rows are lost; without the jump, the counter would hand
/// those values, hence those codes, out again for other URLs. What was lost is at most
/// the replication lag's worth of leases. 100,000,000 values (the same margin as
/// `deploy/backup/pg_restore.sh skip-codes`) is about six days of the seeds' 17 M
/// creates a day, or 10,000 s at 10,000 creates/s: far more than any lag a promotion
/// would accept. It costs little: the space is 62^7 ≈ 3.5·10¹² values, so a failover
/// uses 0.003 % of it (see `docs/failover.md`).
const LEASE_SKIP_ON_NEW_SERVER: i64 = 100_000_000;

macro_rules! link_select {
    ($tail:literal) => {
        concat!(
            "SELECT code, id, original_url, owner_id, created_at, expires_at, is_active, ",
            "redirect_type, metadata::text AS metadata, click_count, last_accessed_at FROM links ",
            $tail
        )
    };
}

pub struct PgStore {
    primary: Arc<Primary>,
    /// The failover watcher of a multi-host primary, stopped with the store.
    watcher: Option<tokio::task::AbortHandle>,
    replicas: Vec<PgPool>,
    next_replica: AtomicUsize,
    /// Codes written recently by this instance (or announced as changed by another).
    recent: Cache<String, Instant>,
    /// Days whose `click_events` partition this instance has already made sure of.
    click_days: std::sync::Mutex<std::collections::HashSet<chrono::NaiveDate>>,
}

/// Pool settings shared by the primary and the replicas.
#[derive(Debug, Clone, Copy)]
pub struct PoolBounds {
    pub max_connections: u32,
    pub min_connections: u32,
    /// How long a request waits for a connection before the store counts as down.
    pub acquire_timeout: Duration,
}

async fn pool(url: &str, bounds: PoolBounds) -> StoreResult<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Other(format!("bad PostgreSQL URL: {e}")))?
        .application_name("kurz");
    // connect_lazy: kurz starts (and serves cached links) even while the database is
    // down; the pool connects on first use and reconnects by itself afterwards.
    Ok(PgPoolOptions::new()
        .max_connections(bounds.max_connections)
        .min_connections(bounds.min_connections)
        .acquire_timeout(bounds.acquire_timeout)
        .connect_lazy_with(options))
}

/// How often the watcher of a multi-host primary asks the current host whether it is
/// still the read-write one.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// How long one host may take to answer the watcher before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One host of the primary's URL, with its own (lazy) pool.
struct Host {
    /// `host:port`, for logs.
    name: String,
    pool: PgPool,
}

/// The read-write server among the hosts of `KURZ_DATABASE_URL`.
///
/// Why: sqlx connects to one host, and after a failover (the replica promoted by an
/// orchestrator or by `pg_ctl promote`) kurz must write to the new primary without a
/// restart or a DNS change. libpq's answer is a multi-host URL,
/// `postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`; this is the
/// same, kept small: one lazy pool per host, and every primary query goes to the
/// current host's pool. With one host nothing else happens. With several, a watcher
/// asks the current host every [`WATCH_EVERY`] `SELECT pg_is_in_recovery()`; when it
/// cannot be reached (a connection error or [`PROBE_TIMEOUT`]) or has become a
/// standby, the watcher tries the hosts in the URL's order and keeps the first that
/// answers `false`. When none does (the primary is down and no replica is promoted
/// yet, or this side of a network split cannot reach it) it keeps the current host
/// and looks again next time: writes meanwhile fail as with one host down (503), and
/// a standby is never written to. Requests never wait for the watcher.
///
/// What it does not do: fence. If two hosts are read-write at once (a replica
/// promoted while the old primary still runs) kurz stays on the one it has; keeping
/// one primary is the orchestrator's job (deploy/REGIONS.md).
struct Primary {
    hosts: Vec<Host>,
    current: AtomicUsize,
}

impl Primary {
    /// The current host's pool.
    fn pool(&self) -> &PgPool {
        let i = self.current.load(Ordering::Relaxed);
        // `current` is always an index of `hosts`, which is never empty.
        &self.hosts[i.min(self.hosts.len() - 1)].pool
    }

    /// `Some(true)` if `host` answers and is read-write, `Some(false)` if it is a
    /// standby, `None` if it cannot be reached.
    async fn read_write(host: &Host) -> Option<bool> {
        let probe = sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&host.pool);
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(in_recovery)) => Some(!in_recovery),
            _ => None,
        }
    }

    /// Runs for the store's lifetime (aborted by its `Drop`).
    async fn watch(&self) {
        let switched = metrics::counter!("kurz_database_primary_switches_total");
        switched.increment(0);
        loop {
            let i = self.current.load(Ordering::Relaxed);
            if Self::read_write(&self.hosts[i]).await != Some(true) {
                for (j, host) in self.hosts.iter().enumerate() {
                    if j != i && Self::read_write(host).await == Some(true) {
                        self.current.store(j, Ordering::Relaxed);
                        switched.increment(1);
                        tracing::warn!(from = %self.hosts[i].name, to = %host.name, "PostgreSQL primary changed");
                        break;
                    }
                }
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    }
}

/// The per-host URLs of a database URL: one for a plain URL, one per host of a
/// libpq-style multi-host URL (`scheme://[userinfo@]h1:p1,h2:p2/db?params`), each
/// with the same user, database and parameters. `target_session_attrs` is taken out
/// (sqlx does not know it): a multi-host primary is always found read-write, so only
/// `read-write` (or `primary`, its newer name) is accepted there.
fn split_hosts(url: &str) -> StoreResult<Vec<String>> {
    let bad = |why: &str| StoreError::Other(format!("bad PostgreSQL URL: {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let mut params = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("target_session_attrs", "read-write" | "primary")) => {}
            Some(("target_session_attrs", other)) => {
                return Err(bad(&format!(
                    "target_session_attrs={other}: kurz writes, so its primary must be read-write"
                )));
            }
            _ => params.push(kv),
        }
    }
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    };
    let hosts: Vec<&str> = hosts.split(',').collect();
    if hosts.iter().any(|h| h.is_empty()) && hosts.len() > 1 {
        return Err(bad("an empty host in the host list"));
    }
    Ok(hosts
        .iter()
        .map(|h| format!("{scheme}://{userinfo}{h}{path}{query}"))
        .collect())
}

/// `host:port` of a one-host URL, for logs (never the password).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(w) = &self.watcher {
            w.abort();
        }
    }
}

impl PgStore {
    /// `primary` is one URL, or a multi-host one (see `Primary`).
    pub async fn connect(primary: &str, replicas: &[String], bounds: PoolBounds) -> StoreResult<Self> {
        let mut replica_pools = Vec::with_capacity(replicas.len());
        for r in replicas {
            replica_pools.push(pool(r, bounds).await?);
        }
        let mut hosts = Vec::new();
        for url in split_hosts(primary)? {
            hosts.push(Host {
                pool: pool(&url, bounds).await?,
                name: host_of(&url).to_owned(),
            });
        }
        let primary = Arc::new(Primary {
            hosts,
            current: AtomicUsize::new(0),
        });
        let watcher = (primary.hosts.len() > 1).then(|| {
            let p = primary.clone();
            tokio::spawn(async move { p.watch().await }).abort_handle()
        });
        Ok(Self {
            primary,
            watcher,
            replicas: replica_pools,
            next_replica: AtomicUsize::new(0),
            recent: Cache::new(100_000),
            click_days: Default::default(),
        })
    }

    fn replica(&self) -> Option<&PgPool> {
        if self.replicas.is_empty() {
            return None;
        }
        let i = self.next_replica.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
        self.replicas.get(i)
    }

    fn wrote(&self, code: &str) {
        self.recent.insert(code.to_owned(), Instant::now());
    }

    fn recently_written(&self, code: &str) -> bool {
        self.recent
            .get(code)
            .is_some_and(|t| t.elapsed() < READ_YOUR_WRITES)
    }

    /// Runs a by-key read on a replica if allowed, falling back to the primary when
    /// the replica has no answer (it may lag) or cannot be reached.
    async fn read_fresh<T, F, Fut>(&self, prefer_primary: bool, query: F) -> StoreResult<Option<T>>
    where
        F: Fn(PgPool) -> Fut,
        Fut: std::future::Future<Output = StoreResult<Option<T>>>,
    {
        self.replica_first(prefer_primary, Option::is_some, query).await
    }

    /// Runs a stats read on a replica if there is one, on the primary if it fails.
    /// No read-your-writes rule here: clicks reach the store seconds after their
    /// redirect (the batcher's hold), so a replica's lag changes nothing a user sees.
    async fn read_stats<T, F, Fut>(&self, query: F) -> StoreResult<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        self.replica_first(false, |_| true, query).await
    }

    /// The one replica read: on a replica (unless `primary_only`), then on the
    /// primary if the replica failed or gave an answer that is not `believed`. A read
    /// meant for the primary alone goes to a replica after all when the primary is
    /// unreachable: during a failover or a region outage a link written seconds ago
    /// still redirects if the replica has it (C-03), rather than answering 503.
    async fn replica_first<T, F, Fut>(
        &self,
        primary_only: bool,
        believed: impl Fn(&T) -> bool,
        query: F,
    ) -> StoreResult<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        if !primary_only && let Some(replica) = self.replica() {
            match query(replica.clone()).await {
                Ok(v) if believed(&v) => return Ok(v),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "replica read failed; asking the primary"),
            }
        }
        match query(self.primary.pool().clone()).await {
            Err(StoreError::Unavailable(e)) if primary_only => {
                if let Some(replica) = self.replica()
                    && let Ok(v) = query(replica.clone()).await
                    && believed(&v)
                {
                    return Ok(v);
                }
                Err(StoreError::Unavailable(e))
            }
            answer => answer,
        }
    }
}

fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // Class 08: connection exceptions; 57P0x: shutting down / cannot connect
            // now; 53300: too many connections.
            c.starts_with("08") || c.starts_with("57P0") || c == "53300"
        }),
        _ => false,
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ if is_connection_error(&e) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

fn rollup_from_row(row: &PgRow) -> StoreResult<StoredRollup> {
    let get = |e: sqlx::Error| StoreError::Other(format!("bad rollup row: {e}"));
    Ok(StoredRollup {
        hour: row.try_get("hour").map_err(get)?,
        clicks: row.try_get("clicks").map_err(get)?,
        bots: row.try_get("bots").map_err(get)?,
        dims: row.try_get("dims").map_err(get)?,
        visitors: row.try_get("visitors").map_err(get)?,
    })
}

fn link_from_row(row: &PgRow) -> StoreResult<Link> {
    let get = |e: sqlx::Error| StoreError::Other(format!("bad link row: {e}"));
    let code: String = row.try_get("code").map_err(get)?;
    let redirect: i16 = row.try_get("redirect_type").map_err(get)?;
    let metadata: String = row.try_get("metadata").map_err(get)?;
    Ok(Link {
        id: row.try_get("id").map_err(get)?,
        code: super::stored_code(&code)?,
        original_url: TargetUrl::from_trusted(row.try_get("original_url").map_err(get)?),
        owner_id: row.try_get("owner_id").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        expires_at: row.try_get("expires_at").map_err(get)?,
        is_active: row.try_get("is_active").map_err(get)?,
        redirect_type: super::stored_redirect_type(i64::from(redirect))?,
        metadata: Metadata::from_stored(&metadata),
        click_count: row.try_get("click_count").map_err(get)?,
        last_accessed_at: row.try_get("last_accessed_at").map_err(get)?,
    })
}

/// A row of [`LinkStore::get_targets`]'s query, its columns read by position.
fn target_from_row(row: &PgRow) -> StoreResult<LinkTarget> {
    let get = |e: sqlx::Error| StoreError::Other(format!("bad link row: {e}"));
    let code: String = row.try_get(0).map_err(get)?;
    let redirect: i16 = row.try_get(4).map_err(get)?;
    Ok(LinkTarget {
        code: super::stored_code(&code)?,
        original_url: TargetUrl::from_trusted(row.try_get(1).map_err(get)?),
        expires_at: row.try_get(2).map_err(get)?,
        is_active: row.try_get(3).map_err(get)?,
        redirect_type: super::stored_redirect_type(i64::from(redirect))?,
    })
}

fn user_from_row(row: &PgRow) -> StoreResult<User> {
    let get = |e: sqlx::Error| StoreError::Other(format!("bad user row: {e}"));
    let tier: String = row.try_get("tier").map_err(get)?;
    Ok(User {
        id: row.try_get("id").map_err(get)?,
        email: row.try_get("email").map_err(get)?,
        tier: Tier::parse(&tier).map_err(|e| StoreError::Other(e.message))?,
        created_at: row.try_get("created_at").map_err(get)?,
    })
}

#[async_trait]
impl LinkStore for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        // sqlx takes an advisory lock, so instances starting together migrate once.
        MIGRATOR
            .run(self.primary.pool())
            .await
            .map_err(|e| StoreError::Other(format!("migration failed: {e}")))
    }

    async fn pending_migrations(&self) -> StoreResult<usize> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(self.primary.pool())
            .await
            .map_err(map_err)?;
        let applied: Vec<i64> = if exists {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(self.primary.pool())
                .await
                .map_err(map_err)?
        } else {
            Vec::new()
        };
        Ok(MIGRATOR.iter().filter(|m| !applied.contains(&m.version)).count())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.primary.pool())
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn pools(&self) -> Vec<PoolState> {
        let mut pools = vec![PoolState::of("primary", self.primary.pool())];
        for (i, r) in self.replicas.iter().enumerate() {
            pools.push(PoolState::of(format!("replica{i}"), r));
        }
        pools
    }

    async fn replica_lags(&self) -> Vec<(String, Option<f64>)> {
        let mut lags = Vec::with_capacity(self.replicas.len());
        for (i, r) in self.replicas.iter().enumerate() {
            // 0 once it has replayed all it received; otherwise the age of the last
            // transaction it replayed (what a reader of it misses at most).
            let lag: Result<Option<f64>, sqlx::Error> = sqlx::query_scalar(
                "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                 ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 END",
            )
            .fetch_one(r)
            .await;
            lags.push((format!("replica{i}"), lag.ok().map(|l| l.unwrap_or(0.0).max(0.0))));
        }
        lags
    }

    async fn count_active_links(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let n: i64 = self
            .read_stats(|pool| async move {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM links WHERE deleted_at IS NULL AND is_active \
                     AND (expires_at IS NULL OR expires_at > $1)",
                )
                .bind(now)
                .fetch_one(&pool)
                .await
                .map_err(map_err)
            })
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn note_changed(&self, code: &str) {
        self.wrote(code);
    }

    async fn insert_links(&self, links: &[NewLink]) -> StoreResult<Vec<Option<Link>>> {
        let codes: Vec<&str> = links.iter().map(|l| l.code.as_str()).collect();
        let urls: Vec<&str> = links.iter().map(|l| l.original_url.as_str()).collect();
        let owners: Vec<Option<i64>> = links.iter().map(|l| l.owner_id).collect();
        let created: Vec<DateTime<Utc>> = links.iter().map(|l| l.created_at).collect();
        let expires: Vec<Option<DateTime<Utc>>> = links.iter().map(|l| l.expires_at).collect();
        let redirects: Vec<i16> = links.iter().map(|l| l.redirect_type.status() as i16).collect();
        let metadata: Vec<String> = links.iter().map(|l| l.metadata.to_json_string()).collect();
        let rows = sqlx::query(
            "INSERT INTO links (code, original_url, owner_id, created_at, expires_at, redirect_type, metadata) \
             SELECT c, u, o, ca, e, r, m::jsonb \
             FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::timestamptz[], $5::timestamptz[], \
                         $6::int2[], $7::text[]) AS t(c, u, o, ca, e, r, m) \
             ON CONFLICT (code) DO NOTHING RETURNING code, id",
        )
        .bind(&codes)
        .bind(&urls)
        .bind(&owners)
        .bind(&created)
        .bind(&expires)
        .bind(&redirects)
        .bind(&metadata)
        .fetch_all(self.primary.pool())
        .await
        .map_err(map_err)?;
        let mut ids = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let code: String = row.try_get("code").map_err(map_err)?;
            let id: i64 = row.try_get("id").map_err(map_err)?;
            ids.insert(code, id);
        }
        // A code inserted twice in one group (two equal aliases in a bulk) was
        // written once: the first item gets it, later ones see a conflict.
        Ok(links
            .iter()
            .map(|l| {
                let id = ids.remove(l.code.as_str())?;
                self.wrote(l.code.as_str());
                Some(Link {
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
                })
            })
            .collect())
    }

    async fn get_targets(&self, codes: &[String]) -> StoreResult<Vec<LinkTarget>> {
        // The cache's warm-up and refreshes: a replica will do, the primary if it
        // fails, and the primary first if a link of `codes` changed lately (as for
        // `get_link`): a refresh must not put a replica's old copy of a link back
        // into the cache right after its invalidation.
        let primary = codes.iter().any(|c| self.recently_written(c));
        self.replica_first(
            primary,
            |_| true,
            |pool| async move {
                let rows = sqlx::query(concat!(
                    "SELECT code, original_url, expires_at, is_active, redirect_type ",
                    "FROM links WHERE deleted_at IS NULL AND code = ANY($1)"
                ))
                .bind(codes)
                .fetch_all(&pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(target_from_row).collect()
            },
        )
        .await
    }

    async fn get_link(&self, code: &str) -> StoreResult<Option<Link>> {
        self.read_fresh(self.recently_written(code), |pool| async move {
            let row = sqlx::query(link_select!("WHERE code = $1 AND deleted_at IS NULL"))
                .bind(code)
                .fetch_optional(&pool)
                .await
                .map_err(map_err)?;
            row.as_ref().map(link_from_row).transpose()
        })
        .await
    }

    async fn links_version(&self) -> StoreResult<Option<i64>> {
        // None kept: instances on PostgreSQL tell each other of changes through Redis,
        // and a refresh may read a replica, whose copy can be older than the moment
        // it was read, so a counter could not vouch for it. Refreshes read the links.
        Ok(None)
    }

    async fn update_link(&self, code: &str, patch: &LinkPatch) -> StoreResult<Option<Link>> {
        let row = sqlx::query(concat!(
            "UPDATE links SET ",
            "original_url = COALESCE($1, original_url), ",
            "expires_at = CASE WHEN $2 THEN $3 ELSE expires_at END, ",
            "is_active = COALESCE($4, is_active), ",
            "redirect_type = COALESCE($5, redirect_type), ",
            "metadata = COALESCE($6::jsonb, metadata) ",
            "WHERE code = $7 AND deleted_at IS NULL RETURNING ",
            "code, id, original_url, owner_id, created_at, expires_at, is_active, ",
            "redirect_type, metadata::text AS metadata, click_count, last_accessed_at"
        ))
        .bind(patch.original_url.as_ref().map(TargetUrl::as_str))
        .bind(patch.expires_at.is_some())
        .bind(patch.expires_at.flatten())
        .bind(patch.is_active)
        .bind(patch.redirect_type.map(|r| r.status() as i16))
        .bind(patch.metadata.as_ref().map(Metadata::to_json_string))
        .bind(code)
        .fetch_optional(self.primary.pool())
        .await
        .map_err(map_err)?;
        self.wrote(code);
        row.as_ref().map(link_from_row).transpose()
    }

    async fn delete_link(&self, code: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE links SET deleted_at = now(), original_url = '', metadata = '{}', is_active = false \
             WHERE code = $1 AND deleted_at IS NULL",
        )
        .bind(code)
        .execute(self.primary.pool())
        .await
        .map_err(map_err)?;
        self.wrote(code);
        Ok(done.rows_affected() == 1)
    }

    async fn list_links(&self, owner_id: i64, query: &ListQuery) -> StoreResult<Vec<Link>> {
        let sql = if query.oldest_first {
            link_select!(
                "WHERE owner_id = $1 AND deleted_at IS NULL AND id > $2 \
                 AND ($3::text IS NULL OR code ILIKE $3 OR original_url ILIKE $3) \
                 ORDER BY id ASC LIMIT $4"
            )
        } else {
            link_select!(
                "WHERE owner_id = $1 AND deleted_at IS NULL AND id < $2 \
                 AND ($3::text IS NULL OR code ILIKE $3 OR original_url ILIKE $3) \
                 ORDER BY id DESC LIMIT $4"
            )
        };
        // The owner's own view: always current, so from the primary.
        let rows = sqlx::query(sql)
            .bind(owner_id)
            .bind(query.cursor_bound())
            .bind(query.like_pattern())
            .bind(i64::from(query.limit))
            .fetch_all(self.primary.pool())
            .await
            .map_err(map_err)?;
        rows.iter().map(link_from_row).collect()
    }

    /// One transaction: lock the counter, compare the server's `SERVER_EPOCH` with
    /// the one recorded at the last lease, skip `LEASE_SKIP_ON_NEW_SERVER` values
    /// if it changed (a failover or a restore), take the block, record the epoch.
    async fn lease_block(&self, size: u64, max: u64) -> StoreResult<u64> {
        let size = i64::try_from(size).map_err(|_| StoreError::Other("block too large".into()))?;
        let max = i64::try_from(max).map_err(|_| StoreError::Other("bad counter bound".into()))?;
        let mut tx = self.primary.pool().begin().await.map_err(map_err)?;
        let next: i64 = sqlx::query_scalar("SELECT next_value FROM kgs_counter WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let epoch: String = sqlx::query_scalar(SERVER_EPOCH)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?;
        let seen: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(KGS_EPOCH)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let skip = if seen.as_deref() == Some(epoch.as_str()) {
            0
        } else {
            tracing::warn!(
                was = seen.as_deref().unwrap_or("unknown"),
                now = %epoch,
                skip = LEASE_SKIP_ON_NEW_SERVER,
                "key leases: a new primary since the last lease; skipping the counter ahead"
            );
            LEASE_SKIP_ON_NEW_SERVER
        };
        let start = next.saturating_add(skip);
        if start.saturating_add(size) > max {
            return Err(StoreError::Other("code counter exhausted".into()));
        }
        sqlx::query("UPDATE kgs_counter SET next_value = $1 WHERE id = 1")
            .bind(start + size)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if skip > 0 {
            sqlx::query(
                "INSERT INTO settings (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(KGS_EPOCH)
            .bind(&epoch)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        u64::try_from(start).map_err(|_| StoreError::Other("negative counter".into()))
    }

    async fn setting_get_or_init(&self, name: &str, value: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(self.primary.pool())
            .await
            .map_err(map_err)?;
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(self.primary.pool())
            .await
            .map_err(map_err)
    }

    async fn create_user(&self, user: &NewUser) -> StoreResult<User> {
        let row = sqlx::query(
            "INSERT INTO users (email, api_key_hash, tier) VALUES ($1, $2, $3) \
             RETURNING id, email, tier, created_at",
        )
        .bind(&user.email)
        .bind(&user.api_key_hash)
        .bind(user.tier.as_str())
        .fetch_one(self.primary.pool())
        .await
        .map_err(map_err)?;
        user_from_row(&row)
    }

    async fn user_by_key_hash(&self, api_key_hash: &str) -> StoreResult<Option<User>> {
        self.read_fresh(false, |pool| async move {
            let row = sqlx::query("SELECT id, email, tier, created_at FROM users WHERE api_key_hash = $1")
                .bind(api_key_hash)
                .fetch_optional(&pool)
                .await
                .map_err(map_err)?;
            row.as_ref().map(user_from_row).transpose()
        })
        .await
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        self.read_fresh(false, |pool| async move {
            let row = sqlx::query("SELECT id, email, tier, created_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&pool)
                .await
                .map_err(map_err)?;
            row.as_ref().map(user_from_row).transpose()
        })
        .await
    }

    async fn upsert_admin(&self, email: &str, api_key_hash: &str) -> StoreResult<User> {
        // Instances started together upsert the same admin at once. `ON CONFLICT
        // (email)` covers only the email: two inserts that both pass its check collide
        // on `api_key_hash`'s unique index instead, and the loser gets a unique
        // violation. By then the winner has committed, so a second try takes the
        // update path.
        let mut tries = 0;
        loop {
            let res = sqlx::query(
                "INSERT INTO users (email, api_key_hash, tier) VALUES ($1, $2, 'admin') \
                 ON CONFLICT (email) DO UPDATE SET api_key_hash = excluded.api_key_hash, tier = 'admin' \
                 RETURNING id, email, tier, created_at",
            )
            .bind(email)
            .bind(api_key_hash)
            .fetch_one(self.primary.pool())
            .await
            .map_err(map_err);
            tries += 1;
            match res {
                Err(StoreError::Conflict) if tries < 3 => continue,
                res => return user_from_row(&res?),
            }
        }
    }

    async fn has_admin(&self) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE tier = 'admin')")
            .fetch_one(self.primary.pool())
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
        let claimed: Option<String> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (key, request_hash, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, \
             status = NULL, body = NULL, created_at = excluded.created_at \
             WHERE idempotency_keys.created_at < $4 RETURNING key",
        )
        .bind(key)
        .bind(request_hash)
        .bind(now)
        .bind(fresh_after)
        .fetch_optional(self.primary.pool())
        .await
        .map_err(map_err)?;
        if claimed.is_some() {
            return Ok(IdempotencyClaim::Claimed);
        }
        let row = sqlx::query("SELECT request_hash, status, body FROM idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_one(self.primary.pool())
            .await
            .map_err(map_err)?;
        let get = |e: sqlx::Error| StoreError::Other(format!("bad idempotency row: {e}"));
        let status: Option<i16> = row.try_get("status").map_err(get)?;
        let body: Option<Vec<u8>> = row.try_get("body").map_err(get)?;
        Ok(IdempotencyClaim::Existing {
            request_hash: row.try_get("request_hash").map_err(get)?,
            response: status.map(|s| (u16::try_from(s).unwrap_or(500), body.unwrap_or_default())),
        })
    }

    async fn idempotency_complete(&self, key: &str, status: u16, body: &[u8]) -> StoreResult<()> {
        sqlx::query("UPDATE idempotency_keys SET status = $1, body = $2 WHERE key = $3")
            .bind(status as i16)
            .bind(body)
            .bind(key)
            .execute(self.primary.pool())
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn idempotency_release(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND status IS NULL")
            .bind(key)
            .execute(self.primary.pool())
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn purge_idempotency(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(self.primary.pool())
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }
}

fn cerr(e: sqlx::Error) -> ClickStoreError {
    to_click(map_err(e))
}

#[async_trait]
impl ClickStore for PgStore {
    async fn begin(&self) -> ClickResult<Box<dyn ClickTx>> {
        let tx = self.primary.pool().begin().await.map_err(cerr)?;
        Ok(Box::new(PgClickTx { tx }))
    }

    /// Creates each day's `click_events` partition outside the write's transaction
    /// (creating a partition locks the parent table; it happens once a day).
    async fn prepare_raw_days(&self, days: &[chrono::NaiveDate]) -> ClickResult<()> {
        for day in days {
            let known = self.click_days.lock().map(|d| d.contains(day)).unwrap_or(false);
            if known {
                continue;
            }
            sqlx::query("SELECT kurz_ensure_click_partition($1)")
                .bind(day)
                .execute(self.primary.pool())
                .await
                .map_err(cerr)?;
            if let Ok(mut d) = self.click_days.lock() {
                d.insert(*day);
            }
        }
        Ok(())
    }

    fn forget_prepared(&self) {
        // A partition this instance knows of may have been dropped meanwhile by
        // another instance's retention: the next write asks the database again.
        if let Ok(mut days) = self.click_days.lock() {
            days.clear();
        }
    }

    async fn claim_name(&self, name: &str) -> ClickResult<()> {
        sqlx::query(
            "INSERT INTO click_replays (spool, through) VALUES ($1, 0) ON CONFLICT (spool) DO NOTHING",
        )
        .bind(name)
        .execute(self.primary.pool())
        .await
        .map_err(cerr)?;
        Ok(())
    }

    async fn name_through(&self, name: &str) -> ClickResult<Option<u64>> {
        // Every write under `name` holds its row from its first statement, inserting
        // it if absent. An upsert waits for that write whether it found the row (the
        // row lock) or created it (the uncommitted key), where SELECT … FOR UPDATE
        // would not see an uncommitted row; so the answer cannot change after it. A
        // row this upsert created itself means no write: rolled back, answered `None`.
        let mut tx = self.primary.pool().begin().await.map_err(cerr)?;
        let (through, created): (i64, bool) = sqlx::query_as(
            "INSERT INTO click_replays (spool, through) VALUES ($1, 0) \
             ON CONFLICT (spool) DO UPDATE SET through = click_replays.through \
             RETURNING through, xmax = 0",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(cerr)?;
        if created {
            tx.rollback().await.map_err(cerr)?;
            return Ok(None);
        }
        tx.commit().await.map_err(cerr)?;
        Ok(Some(through.max(0) as u64))
    }

    async fn rollups(
        &self,
        code: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ClickResult<Vec<StoredRollup>> {
        self.read_stats(|pool| async move {
            let rows = sqlx::query(
                "SELECT hour, clicks, bots, dims, ''::bytea AS visitors FROM click_rollups \
                 WHERE code = $1 AND hour >= $2 AND hour < $3 ORDER BY hour",
            )
            .bind(code)
            .bind(from)
            .bind(to)
            .fetch_all(&pool)
            .await
            .map_err(map_err)?;
            rows.iter().map(rollup_from_row).collect()
        })
        .await
        .map_err(to_click)
    }

    async fn sketches(&self, code: &str, plan: &SketchPlan) -> ClickResult<Vec<Vec<u8>>> {
        self.read_stats(|pool| async move {
            // The mark, then the sketches, from one server. A server only moves
            // forward and a compaction commits its daily rows with the moved mark, so
            // the sketches read after a mark are at least that complete; hourly rows
            // keep their sketches, so an older mark is answered right as well.
            let mut conn = pool.acquire().await.map_err(map_err)?;
            let plan = match days_through(&mut conn, DAYS_THROUGH_READ).await.map_err(map_err)? {
                Some(through) => plan.clone().with_daily_before(through),
                None => plan.clone(),
            };
            let (days_from, days_to) = plan.days.map_or((None, None), |(a, b)| (Some(a), Some(b)));
            let hour_from: Vec<DateTime<Utc>> = plan.hours.iter().map(|h| h.0).collect();
            let hour_to: Vec<DateTime<Utc>> = plan.hours.iter().map(|h| h.1).collect();
            // One round trip for both tables.
            sqlx::query_scalar(
                "SELECT visitors FROM click_visitors_daily WHERE code = $1 AND day >= $2 AND day < $3 \
                 UNION ALL \
                 SELECT r.visitors FROM click_rollups r \
                 JOIN UNNEST($4::timestamptz[], $5::timestamptz[]) AS w(f, t) ON r.hour >= w.f AND r.hour < w.t \
                 WHERE r.code = $1",
            )
            .bind(code)
            .bind(days_from)
            .bind(days_to)
            .bind(&hour_from)
            .bind(&hour_to)
            .fetch_all(&mut *conn)
            .await
            .map_err(map_err)
        })
        .await
        .map_err(to_click)
    }

    async fn hot_codes(&self, since: DateTime<Utc>, limit: usize) -> ClickResult<Vec<String>> {
        self.read_stats(|pool| async move {
            sqlx::query_scalar(
                "SELECT code FROM click_rollups WHERE hour >= $1 \
                 GROUP BY code ORDER BY SUM(clicks + bots) DESC LIMIT $2",
            )
            .bind(since)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&pool)
            .await
            .map_err(map_err)
        })
        .await
        .map_err(to_click)
    }

    async fn purge_events(&self, before: DateTime<Utc>) -> ClickResult<u64> {
        let dropped: i32 = sqlx::query_scalar("SELECT kurz_drop_click_partitions($1)")
            .bind(before.date_naive())
            .fetch_one(self.primary.pool())
            .await
            .map_err(cerr)?;
        if dropped > 0
            && let Ok(mut d) = self.click_days.lock()
        {
            d.retain(|day| *day >= before.date_naive());
        }
        Ok(u64::try_from(dropped).unwrap_or(0))
    }

    async fn purge_names(&self, before: DateTime<Utc>) -> ClickResult<u64> {
        let done = sqlx::query("DELETE FROM click_replays WHERE touched_at < $1")
            .bind(before)
            .execute(self.primary.pool())
            .await
            .map_err(cerr)?;
        Ok(done.rows_affected())
    }
}

/// A click write: one transaction on the primary. Rows are locked in key order
/// (links by code, then rollups by code and hour, then daily rows), the same in
/// every write, so concurrent instances queue behind each other, never deadlock.
/// Rows a write reads are created first if absent, so that it can lock them.
struct PgClickTx {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
}

#[async_trait]
impl ClickTx for PgClickTx {
    async fn name_mark(&mut self, name: &str) -> ClickResult<Option<u64>> {
        // Locks the name's row from the start of the write, creating it if it is
        // absent (pruned, or a spool generation's first chunk), so that
        // `name_through` waits for this write whichever it finds.
        let through: i64 = sqlx::query_scalar(
            "INSERT INTO click_replays (spool, through) VALUES ($1, 0) \
             ON CONFLICT (spool) DO UPDATE SET touched_at = now() RETURNING through",
        )
        .bind(name)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(cerr)?;
        Ok(Some(through.max(0) as u64))
    }

    async fn set_name_mark(&mut self, name: &str, through: u64) -> ClickResult<()> {
        sqlx::query(
            "INSERT INTO click_replays (spool, through) VALUES ($1, $2) \
             ON CONFLICT (spool) DO UPDATE SET through = excluded.through, touched_at = now()",
        )
        .bind(name)
        .bind(through as i64)
        .execute(&mut *self.tx)
        .await
        .map_err(cerr)?;
        Ok(())
    }

    async fn days_through(&mut self, lock: MarkLock) -> ClickResult<Option<DateTime<Utc>>> {
        let sql = match lock {
            // Held FOR SHARE until commit by a click write; FOR UPDATE by compaction,
            // which waits for those writes and holds off new ones until it commits.
            MarkLock::Share => "SELECT value FROM settings WHERE name = $1 FOR SHARE",
            MarkLock::Update => "SELECT value FROM settings WHERE name = $1 FOR UPDATE",
        };
        days_through(&mut self.tx, sql).await.map_err(cerr)
    }

    async fn set_days_through(&mut self, day: DateTime<Utc>) -> ClickResult<()> {
        sqlx::query("UPDATE settings SET value = $1 WHERE name = $2")
            .bind(day.timestamp_millis().to_string())
            .bind(DAYS_THROUGH)
            .execute(&mut *self.tx)
            .await
            .map_err(cerr)?;
        Ok(())
    }

    async fn lock_links(&mut self, codes: &[&str]) -> ClickResult<()> {
        sqlx::query("SELECT 1 FROM links WHERE code = ANY($1) ORDER BY code FOR UPDATE")
            .bind(codes)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(cerr)?;
        Ok(())
    }

    async fn read_hours(
        &mut self,
        keys: &[RowKey<'_>],
    ) -> ClickResult<StoredRows<DateTime<Utc>, StoredRollup>> {
        let (codes, hours) = columns(keys);
        sqlx::query(
            "INSERT INTO click_rollups (code, hour) \
             SELECT c, h FROM UNNEST($1::text[], $2::timestamptz[]) AS u(c, h) ORDER BY c, h \
             ON CONFLICT (code, hour) DO NOTHING",
        )
        .bind(&codes)
        .bind(&hours)
        .execute(&mut *self.tx)
        .await
        .map_err(cerr)?;
        let rows = sqlx::query(
            "SELECT code, hour, clicks, bots, dims, visitors FROM click_rollups \
             WHERE (code, hour) IN (SELECT * FROM UNNEST($1::text[], $2::timestamptz[])) \
             ORDER BY code, hour FOR UPDATE",
        )
        .bind(&codes)
        .bind(&hours)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(cerr)?;
        let mut existing = StoredRows::with_capacity(rows.len());
        for row in &rows {
            let code: String = row.try_get("code").map_err(cerr)?;
            let r = rollup_from_row(row).map_err(to_click)?;
            existing.insert(code, r.hour, r);
        }
        Ok(existing)
    }

    async fn write_hours(&mut self, keys: &[RowKey<'_>], rows: Vec<StoredRollup>) -> ClickResult<()> {
        let (codes, hours) = columns(keys);
        sqlx::query(
            "UPDATE click_rollups r SET clicks = u.clicks, bots = u.bots, dims = u.dims, visitors = u.visitors \
             FROM UNNEST($1::text[], $2::timestamptz[], $3::int8[], $4::int8[], $5::text[], $6::bytea[]) \
                  AS u(code, hour, clicks, bots, dims, visitors) \
             WHERE r.code = u.code AND r.hour = u.hour",
        )
        .bind(&codes)
        .bind(&hours)
        .bind(rows.iter().map(|m| m.clicks).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.bots).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.dims.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.visitors.as_slice()).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await
        .map_err(cerr)?;
        Ok(())
    }

    async fn read_days(&mut self, keys: &[RowKey<'_>]) -> ClickResult<StoredRows<DateTime<Utc>, Vec<u8>>> {
        let (codes, days) = columns(keys);
        sqlx::query(
            "INSERT INTO click_visitors_daily (code, day) \
             SELECT c, d FROM UNNEST($1::text[], $2::timestamptz[]) AS u(c, d) ORDER BY c, d \
             ON CONFLICT (code, day) DO NOTHING",
        )
        .bind(&codes)
        .bind(&days)
        .execute(&mut *self.tx)
        .await
        .map_err(cerr)?;
        let rows = sqlx::query(
            "SELECT code, day, visitors FROM click_visitors_daily \
             WHERE (code, day) IN (SELECT * FROM UNNEST($1::text[], $2::timestamptz[])) \
             ORDER BY code, day FOR UPDATE",
        )
        .bind(&codes)
        .bind(&days)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(cerr)?;
        let mut stored = StoredRows::with_capacity(rows.len());
        for row in &rows {
            let code: String = row.try_get("code").map_err(cerr)?;
            let day: DateTime<Utc> = row.try_get("day").map_err(cerr)?;
            let visitors: Vec<u8> = row.try_get("visitors").map_err(cerr)?;
            stored.insert(code, day, visitors);
        }
        Ok(stored)
    }

    async fn write_days(&mut self, keys: &[RowKey<'_>], sketches: Vec<Vec<u8>>) -> ClickResult<()> {
        let (codes, days) = columns(keys);
        sqlx::query(
            "UPDATE click_visitors_daily v SET visitors = u.visitors \
             FROM UNNEST($1::text[], $2::timestamptz[], $3::bytea[]) AS u(code, day, visitors) \
             WHERE v.code = u.code AND v.day = u.day",
        )
        .bind(&codes)
        .bind(&days)
        .bind(sketches.iter().map(Vec::as_slice).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await
        .map_err(cerr)?;
        Ok(())
    }

    async fn insert_raw(&mut self, batch: &ClickBatch) -> ClickResult<()> {
        // At most 50,000 clicks a statement, as ten arrays, built one statement at a
        // time: binding JSON and expanding it server-side with json_array_elements
        // was about four times slower.
        let mut events = batch.raw_events();
        loop {
            let e: Vec<RawEvent<'_>> = events.by_ref().take(RAW_EVENTS_PER_STATEMENT).collect();
            if e.is_empty() {
                return Ok(());
            }
            sqlx::query(
                "INSERT INTO click_events (code, clicked_at, referrer, device, browser, os, is_bot, \
                 country, city, visitor_hash) \
                 SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], \
                        $6::text[], $7::bool[], $8::text[], $9::text[], $10::int8[])",
            )
            .bind(e.iter().map(|e| e.short_code).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.clicked_at).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.referrer).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.device.as_str()).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.browser).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.os).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.is_bot).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.country).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.city).collect::<Vec<_>>())
            .bind(e.iter().map(|e| e.visitor_hash as i64).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await
            .map_err(cerr)?;
        }
    }

    async fn add_clicks(&mut self, touches: &[LinkTouch<'_>]) -> ClickResult<()> {
        sqlx::query(
            "UPDATE links SET click_count = links.click_count + u.n, \
             last_accessed_at = GREATEST(links.last_accessed_at, u.t) \
             FROM UNNEST($1::text[], $2::int8[], $3::timestamptz[]) AS u(code, n, t) \
             WHERE links.code = u.code",
        )
        .bind(touches.iter().map(|t| t.short_code).collect::<Vec<_>>())
        .bind(touches.iter().map(|t| t.clicks as i64).collect::<Vec<_>>())
        .bind(touches.iter().map(|t| t.last_at).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await
        .map_err(cerr)?;
        Ok(())
    }

    async fn codes_with_clicks(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ClickResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT DISTINCT code FROM click_rollups WHERE hour >= $1 AND hour < $2 AND clicks > 0",
        )
        .bind(from)
        .bind(to)
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
        let mut hours = Vec::new();
        for row in sqlx::query(
            "SELECT code, hour, visitors FROM click_rollups \
             WHERE code = ANY($1) AND hour >= $2 AND hour < $3 AND clicks > 0 ORDER BY code, hour",
        )
        .bind(codes)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(cerr)?
        {
            let code: String = row.try_get(0).map_err(cerr)?;
            let hour: DateTime<Utc> = row.try_get(1).map_err(cerr)?;
            let visitors: Vec<u8> = row.try_get(2).map_err(cerr)?;
            hours.push((code, hour, visitors));
        }
        Ok(hours)
    }

    async fn commit(self: Box<Self>) -> ClickResult<()> {
        self.tx.commit().await.map_err(cerr)
    }
}

/// The codes and the times of row keys, as the two arrays UNNEST takes.
fn columns<'a>(keys: &[RowKey<'a>]) -> (Vec<&'a str>, Vec<DateTime<Utc>>) {
    keys.iter().map(|(code, at)| (*code, *at)).unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_host_url_becomes_one_url_per_host() {
        assert_eq!(
            split_hosts("postgres://kurz:pw@h1:5432/db").unwrap(),
            ["postgres://kurz:pw@h1:5432/db"]
        );
        assert_eq!(
            split_hosts("postgres://kurz:p@w@a:1,b:2/db?sslmode=disable&target_session_attrs=read-write")
                .unwrap(),
            [
                "postgres://kurz:p@w@a:1/db?sslmode=disable",
                "postgres://kurz:p@w@b:2/db?sslmode=disable"
            ]
        );
        assert_eq!(
            split_hosts("postgresql://a:1,b:2?target_session_attrs=primary").unwrap(),
            ["postgresql://a:1", "postgresql://b:2"]
        );
        assert!(split_hosts("postgres://a:1,b:2/db?target_session_attrs=any").is_err());
        assert!(split_hosts("postgres://a:1,,b:2/db").is_err());
        assert!(split_hosts("a:1,b:2").is_err());
        assert_eq!(host_of("postgres://kurz:secret@h1:5432/db?x=y"), "h1:5432");
    }
}
