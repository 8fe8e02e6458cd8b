//! The link store: links, users, settings, key leases and idempotency records,
//! behind one trait ([`LinkStore`]).
//!
//! Each backend lives in its own module (`sqlite`, the embedded default; `postgres`,
//! for production) and passes the same conformance suite
//! (`tests/store_conformance.rs`). Each also implements the click pipeline's own
//! port ([`crate::analytics::port::ClickStore`]), so one database holds both, but the
//! link store's trait never mentions clicks.
//! Nothing outside this folder writes SQL, and nothing here knows about HTTP.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::analytics::port::ClickStore;
use crate::config::DatabaseConfig;

use crate::domain::{Link, LinkTarget, Metadata, RedirectType, ShortCode, TargetUrl, Tier};

pub mod backup;
pub mod instrumented;
pub mod postgres;
pub mod sqlite;

pub use postgres::{PgStore, PoolBounds};
pub use sqlite::SqliteStore;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (alias taken, email taken). The caller knows which.
    #[error("already exists")]
    Conflict,
    /// The database could not be reached or timed out: worth retrying later, and
    /// answered 503 rather than 500.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A stored code, read back: both backends decode link rows with it.
pub(crate) fn stored_code(code: &str) -> StoreResult<ShortCode> {
    ShortCode::parse(code).ok_or_else(|| StoreError::Other(format!("bad stored code {code:?}")))
}

/// A stored redirect status (301 or 302), read back.
pub(crate) fn stored_redirect_type(status: i64) -> StoreResult<RedirectType> {
    u16::try_from(status)
        .ok()
        .and_then(|r| RedirectType::from_status(r).ok())
        .ok_or_else(|| StoreError::Other(format!("bad stored redirect_type {status}")))
}

/// A backend error as the click port reports it.
pub(crate) fn to_click(e: StoreError) -> crate::analytics::port::ClickStoreError {
    use crate::analytics::port::ClickStoreError;
    match e {
        StoreError::Unavailable(m) => ClickStoreError::Unavailable(m),
        other => ClickStoreError::Other(other.to_string()),
    }
}

/// A link about to be written. The code is already chosen (generated or alias).
#[derive(Debug, Clone)]
pub struct NewLink {
    pub code: ShortCode,
    pub original_url: TargetUrl,
    pub owner_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub redirect_type: RedirectType,
    pub metadata: Metadata,
}

#[cfg(test)]
impl NewLink {
    /// Code `code` to `https://example.com/`, no owner, no expiry: a link for tests.
    pub(crate) fn example(code: &str) -> Self {
        Self {
            code: ShortCode::parse(code).unwrap(),
            original_url: TargetUrl::parse("https://example.com/", None).unwrap(),
            owner_id: None,
            created_at: Utc::now(),
            expires_at: None,
            redirect_type: RedirectType::Temporary,
            metadata: Metadata::default(),
        }
    }
}

/// A partial update: `None` leaves a field as it is. `expires_at: Some(None)` clears
/// the expiry.
#[derive(Debug, Clone, Default)]
pub struct LinkPatch {
    pub original_url: Option<TargetUrl>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub is_active: Option<bool>,
    pub redirect_type: Option<RedirectType>,
    pub metadata: Option<Metadata>,
}

/// Which of an owner's links a list reads.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// The cursor: links past this id in the list's order.
    pub after_id: Option<i64>,
    pub limit: u32,
    /// Only links whose code or target URL contains this (ignoring ASCII case).
    pub search: Option<String>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
}

impl ListQuery {
    /// The id the cursor compares with: below it newest first, above it oldest first.
    pub fn cursor_bound(&self) -> i64 {
        match (self.after_id, self.oldest_first) {
            (Some(id), _) => id,
            (None, false) => i64::MAX,
            (None, true) => 0,
        }
    }

    /// The search as a LIKE pattern with `\` escaping, so `%` and `_` match
    /// themselves.
    pub fn like_pattern(&self) -> Option<String> {
        self.search.as_ref().map(|s| {
            let escaped = s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{escaped}%")
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub tier: Tier,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub tier: Tier,
    /// SHA-256 of the API key; the key itself is never stored.
    pub api_key_hash: String,
}

/// One connection pool: its name (`primary`, `replica0`…; SQLite: `primary` is the
/// writer, `read` the readers), connections open and idle, and its bound.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolState {
    pub name: String,
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolState {
    pub fn of(name: impl Into<String>, pool: &sqlx::Pool<impl sqlx::Database>) -> Self {
        Self {
            name: name.into(),
            size: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        }
    }
}

/// What a store found for an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotencyClaim {
    /// This request owns the key now and must `complete` or `release` it.
    Claimed,
    /// Someone used the key before. `response` is `None` while that request runs.
    Existing {
        request_hash: String,
        response: Option<(u16, Vec<u8>)>,
    },
}

#[async_trait]
pub trait LinkStore: Send + Sync + 'static {
    /// Creates or upgrades the schema.
    async fn migrate(&self) -> StoreResult<()>;

    /// How many known migrations the database has not applied yet.
    async fn pending_migrations(&self) -> StoreResult<usize>;

    /// Another instance changed `code`: read it from the freshest source for a while.
    fn note_changed(&self, _code: &str) {}

    /// Checks the database answers; used by `/health`.
    async fn ping(&self) -> StoreResult<()>;

    /// The connection pools as they are now, for the saturation metrics.
    fn pools(&self) -> Vec<PoolState> {
        Vec::new()
    }

    /// How far each read replica's replay is behind, in seconds (`None`: it could not
    /// be asked), named as in [`LinkStore::pools`]. Empty without replicas.
    async fn replica_lags(&self) -> Vec<(String, Option<f64>)> {
        Vec::new()
    }

    /// Live links (not deleted, active, not expired at `now`): the business gauge.
    async fn count_active_links(&self, now: DateTime<Utc>) -> StoreResult<u64>;

    /// Inserts links in one transaction. Per item, `None` means the code was already
    /// taken (by a live link, a deleted one, or an alias) and nothing was written for
    /// that item; the other items are unaffected.
    async fn insert_links(&self, links: &[NewLink]) -> StoreResult<Vec<Option<Link>>>;

    /// A live (not deleted) link by code, whatever its expiry or active flag.
    async fn get_link(&self, code: &str) -> StoreResult<Option<Link>>;

    /// What a redirect needs of the live links of `codes` (in any order; unknown
    /// codes left out), for the cache's warm-up and refreshes. The same
    /// read-your-writes rule as [`Self::get_link`]: a link changed lately is read
    /// where its change is.
    async fn get_targets(&self, codes: &[String]) -> StoreResult<Vec<LinkTarget>>;

    /// A number that moves whenever a committed write changes or deletes a link,
    /// whichever process or instance made it; `None` where the backend keeps none.
    /// The cache's refresh keeps a hot link loaded after the number last moved
    /// without reading it again.
    async fn links_version(&self) -> StoreResult<Option<i64>>;

    async fn update_link(&self, code: &str, patch: &LinkPatch) -> StoreResult<Option<Link>>;

    /// Deletes a link's data but keeps its code reserved forever, so a code is never
    /// reissued to another link. `false` when there was no live link.
    async fn delete_link(&self, code: &str) -> StoreResult<bool>;

    /// The owner's live links in id order (newest first unless `oldest_first`), after
    /// the cursor, matching the search if there is one.
    async fn list_links(&self, owner_id: i64, query: &ListQuery) -> StoreResult<Vec<Link>>;

    /// Atomically reserves `size` consecutive counter values and returns the first.
    /// Fails once the counter would pass `max`.
    async fn lease_block(&self, size: u64, max: u64) -> StoreResult<u64>;

    /// Returns the stored value for `name`, storing `value` first if there was none.
    /// Used for secrets that must stay stable across restarts and instances.
    async fn setting_get_or_init(&self, name: &str, value: &str) -> StoreResult<String>;

    async fn create_user(&self, user: &NewUser) -> StoreResult<User>;
    async fn user_by_key_hash(&self, api_key_hash: &str) -> StoreResult<Option<User>>;
    /// The user a JWT names, so a token of a user that is gone stops working.
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>>;
    /// Creates or re-keys the admin user for `KURZ_ADMIN_API_KEY`.
    async fn upsert_admin(&self, email: &str, api_key_hash: &str) -> StoreResult<User>;
    async fn has_admin(&self) -> StoreResult<bool>;

    /// Claims `key` for a request whose body hashes to `request_hash`. Records older
    /// than `fresh_after` are treated as absent and replaced.
    async fn idempotency_claim(
        &self,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
        fresh_after: DateTime<Utc>,
    ) -> StoreResult<IdempotencyClaim>;
    async fn idempotency_complete(&self, key: &str, status: u16, body: &[u8]) -> StoreResult<()>;
    /// Forgets a claim whose request failed in a retryable way, so a retry can run.
    async fn idempotency_release(&self, key: &str) -> StoreResult<()>;
    /// Drops records created before `before`; returns how many.
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

/// One database, seen through its two ports.
pub struct Stores {
    pub links: Arc<dyn LinkStore>,
    pub clicks: Arc<dyn ClickStore>,
}

/// Opens the store named by `KURZ_DATABASE_URL` (and `KURZ_DATABASE_READ_URLS`).
pub async fn connect(database: &DatabaseConfig) -> StoreResult<Stores> {
    let url = database.url.as_str();
    if url.starts_with("sqlite:") {
        let store = Arc::new(SqliteStore::connect(url, database.read_connections).await?);
        let store = Arc::new(instrumented::Instrumented::new(store));
        return Ok(Stores {
            links: store.clone(),
            clicks: store,
        });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let bounds = PoolBounds {
            max_connections: database.max_connections,
            min_connections: database.min_connections,
            acquire_timeout: database.acquire_timeout(),
        };
        let store = Arc::new(PgStore::connect(url, &database.read_urls, bounds).await?);
        let store = Arc::new(instrumented::Instrumented::new(store));
        return Ok(Stores {
            links: store.clone(),
            clicks: store,
        });
    }
    Err(StoreError::Other(format!(
        "unsupported KURZ_DATABASE_URL scheme {:?}; use sqlite://FILE or postgres://…",
        url.split(':').next().unwrap_or("")
    )))
}
