//! The store contract: everything kurz keeps durably, behind one trait.
//!
//! Each backend lives in its own module (`sqlite`, the embedded default; `postgres`,
//! for production) and passes the same conformance suite
//! (`tests/store_conformance.rs`).
//! Nothing outside this folder writes SQL, and nothing here knows about HTTP.

use async_trait::async_trait;

use crate::analytics::rollup::{ClickBatch, SketchPlan, StoredRollup};
use chrono::{DateTime, Utc};

use crate::domain::{Link, Metadata, RedirectType, ShortCode, TargetUrl, Tier};

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
pub trait Store: Send + Sync + 'static {
    /// Creates or upgrades the schema.
    async fn migrate(&self) -> StoreResult<()>;

    /// How many known migrations the database has not applied yet.
    async fn pending_migrations(&self) -> StoreResult<usize>;

    /// Another instance changed `code`: read it from the freshest source for a while.
    fn note_changed(&self, _code: &str) {}

    /// Checks the database answers; used by `/health`.
    async fn ping(&self) -> StoreResult<()>;

    /// Inserts links in one transaction. Per item, `None` means the code was already
    /// taken (by a live link, a deleted one, or an alias) and nothing was written for
    /// that item; the other items are unaffected.
    async fn insert_links(&self, links: &[NewLink]) -> StoreResult<Vec<Option<Link>>>;

    /// A live (not deleted) link by code, whatever its expiry or active flag.
    async fn get_link(&self, code: &str) -> StoreResult<Option<Link>>;

    async fn update_link(&self, code: &str, patch: &LinkPatch) -> StoreResult<Option<Link>>;

    /// Deletes a link's data but keeps its code reserved forever, so a code is never
    /// reissued to another link. `false` when there was no live link.
    async fn delete_link(&self, code: &str) -> StoreResult<bool>;

    /// The owner's live links, newest first, with ids below `before_id` (the cursor).
    async fn list_links(&self, owner_id: i64, before_id: Option<i64>, limit: u32) -> StoreResult<Vec<Link>>;

    /// Atomically reserves `size` consecutive counter values and returns the first.
    /// Fails once the counter would pass `max`.
    async fn lease_block(&self, size: u64, max: u64) -> StoreResult<u64>;

    /// Returns the stored value for `name`, storing `value` first if there was none.
    /// Used for secrets that must stay stable across restarts and instances.
    async fn setting_get_or_init(&self, name: &str, value: &str) -> StoreResult<String>;

    async fn create_user(&self, user: &NewUser) -> StoreResult<User>;
    async fn user_by_key_hash(&self, api_key_hash: &str) -> StoreResult<Option<User>>;
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

    /// Writes one batch of clicks atomically: raw events (if `raw`), the merge of each
    /// link-hour rollup, and each link's `click_count`/`last_accessed_at`. All or
    /// nothing, so a failed batch can be spooled and replayed without double counting.
    async fn record_clicks(&self, batch: &ClickBatch, raw: bool) -> StoreResult<()>;
    /// Creates `marker`'s row in `click_replays` at 0 if it is absent. A click writer
    /// does it before its first write, so that the lock [`Store::marker_through`]
    /// waits on exists while that write runs.
    async fn claim_marker(&self, marker: &str) -> StoreResult<()>;
    /// How far the batches recorded under `marker` (a [`crate::analytics::rollup::Replay`]'s
    /// `spool`) go, once no write under it is still running (it waits for one). The
    /// question a writer asks before it replays a write whose answer it never got:
    /// that write may have committed.
    async fn marker_through(&self, marker: &str) -> StoreResult<Option<u64>>;

    /// A link's rollup rows with `from <= hour < to`, without their sketches.
    async fn click_rollups(
        &self,
        code: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<StoredRollup>>;

    /// The visitor sketches a plan names: daily ones for its days, hourly for its hours.
    async fn visitor_sketches(&self, code: &str, plan: &SketchPlan) -> StoreResult<Vec<Vec<u8>>>;

    /// Builds the daily visitor sketches of every day before `now`'s UTC day that
    /// [`crate::analytics::rollup::DAYS_THROUGH`] does not cover yet, from their hourly
    /// rows, and moves that mark to `now`'s day, in one transaction that excludes
    /// concurrent click writes. Returns the number of daily rows written.
    async fn compact_click_days(&self, now: DateTime<Utc>) -> StoreResult<u64>;

    /// Deletes raw click events older than `before` (PostgreSQL drops whole days).
    async fn purge_click_events(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    /// Deletes `click_replays` rows (writer names, spool generations) last written
    /// before `before`; returns how many. A write under a deleted name creates it
    /// again, so only a spooled write retried after that long can be counted twice.
    async fn purge_click_replays(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}

/// Opens the store named by `KURZ_DATABASE_URL` (and `KURZ_DATABASE_READ_URLS`).
pub async fn connect(database: &crate::config::DatabaseConfig) -> StoreResult<std::sync::Arc<dyn Store>> {
    let url = database.url.as_str();
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(url, database.read_connections).await?;
        return Ok(std::sync::Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let bounds = PoolBounds {
            max_connections: database.max_connections,
            min_connections: database.min_connections,
            acquire_timeout: database.acquire_timeout(),
        };
        let store = PgStore::connect(url, &database.read_urls, bounds).await?;
        return Ok(std::sync::Arc::new(store));
    }
    Err(StoreError::Other(format!(
        "unsupported KURZ_DATABASE_URL scheme {:?}; use sqlite://FILE or postgres://…",
        url.split(':').next().unwrap_or("")
    )))
}
