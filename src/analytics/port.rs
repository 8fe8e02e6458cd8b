//! The click store port: what the click pipeline needs from a database, row by row.
//!
//! Analytics owns this interface and each backend (`store::sqlite`, `store::postgres`)
//! implements it; the backends only move rows. The algorithm over them (read the
//! link-hour rows a write touches, merge, write them back, keep the visitor sketches
//! of finished days, mark named writes) is written once, in
//! [`super::click_writer`], and the stats read model reads through the same port.
//! Every type that crosses it is named here, so a backend imports this module only.
//!
//! A write runs in one [`ClickTx`]: all of it commits or none of it does, so a
//! failed write can be spooled and replayed without counting a click twice.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

pub use super::batch::{ClickBatch, LinkTouch, RawBlock, RawEvent};
pub use super::plan::SketchPlan;
pub use super::rows::{DAYS_THROUGH, StoredRollup, StoredRows};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClickStoreError {
    /// The database could not be reached or timed out: the write is spooled and
    /// retried, a stats read answers 503.
    #[error("click store unavailable: {0}")]
    Unavailable(String),
    #[error("click store error: {0}")]
    Other(String),
}

pub type ClickResult<T> = Result<T, ClickStoreError>;

/// A row key: a link and an hour (rollups) or a UTC day (daily sketches).
pub type RowKey<'a> = (&'a str, DateTime<Utc>);

/// A held write bigger than this many link-hours goes to the store in parts, one
/// transaction each: SQLite has one write connection, and a create waits for at
/// most the part running. Under bench/run.sh's redirect load, creates at 300/s had
/// a p99 of 61-97 ms with parts of 2,000, 38-47 ms with 1,000 and 28-36 ms with 500,
/// at 4-6 % more CPU per redirect than 2,000 (bench/results/2026-12-05.md). Named
/// here because a backend may plan for it: nearly every part's statements have
/// exactly this many rows, so SQLite keeps them prepared.
pub const PART_ROWS: usize = 500;

/// How a transaction holds the [`DAYS_THROUGH`] mark it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkLock {
    /// A click write: the mark must not move until it commits.
    Share,
    /// Compaction, which moves the mark: no click write may run meanwhile.
    Update,
}

#[async_trait]
pub trait ClickStore: Send + Sync + 'static {
    /// Starts a write. Dropped without [`ClickTx::commit`], it rolls back.
    async fn begin(&self) -> ClickResult<Box<dyn ClickTx>>;

    /// Gets ready, outside any write, for raw events of these UTC days
    /// (PostgreSQL creates their daily partitions: that locks the parent table).
    async fn prepare_raw_days(&self, days: &[NaiveDate]) -> ClickResult<()> {
        let _ = days;
        Ok(())
    }

    /// A write failed: forget what [`ClickStore::prepare_raw_days`] learnt (another
    /// instance's retention may have dropped a partition meanwhile).
    fn forget_prepared(&self) {}

    /// Is this an embedded database, whose work is this process's CPU and which holds
    /// no sockets? Then its lane runs below the redirects' priority
    /// ([`super::background::spawn_below_workers`]).
    fn in_process(&self) -> bool {
        false
    }

    /// Creates the row of the write name `name` at 0 if it is absent, so that a
    /// writer's first write under it has a row [`ClickStore::name_through`] waits on.
    async fn claim_name(&self, name: &str) -> ClickResult<()>;

    /// How far the writes recorded under `name` go, once no write under it is still
    /// running (it waits for one); `None` for an unknown name.
    async fn name_through(&self, name: &str) -> ClickResult<Option<u64>>;

    /// A link's rollup rows with `from <= hour < to`, without their sketches.
    async fn rollups(
        &self,
        code: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ClickResult<Vec<StoredRollup>>;

    /// The visitor sketches `plan` names (daily for its days, hourly for its hours),
    /// read after the [`DAYS_THROUGH`] mark from the same server
    /// ([`SketchPlan::with_daily_before`]).
    async fn sketches(&self, code: &str, plan: &SketchPlan) -> ClickResult<Vec<Vec<u8>>>;

    /// The codes with the most human clicks in hours from `since` on, most first, at
    /// most `limit`: the links worth having in the cache at start.
    async fn hot_codes(&self, since: DateTime<Utc>, limit: usize) -> ClickResult<Vec<String>>;

    /// Deletes raw click events older than `before`; returns how many.
    async fn purge_events(&self, before: DateTime<Utc>) -> ClickResult<u64>;

    /// Deletes write names last written before `before`; returns how many.
    async fn purge_names(&self, before: DateTime<Utc>) -> ClickResult<u64>;
}

/// One write's transaction. Rows a write reads are locked until it ends where the
/// backend locks rows (PostgreSQL, in key order, so concurrent writers never
/// deadlock); SQLite has one writer at a time.
#[async_trait]
pub trait ClickTx: Send {
    /// The mark of the write name `name` (see [`ClickStore::name_through`]), held
    /// until the transaction ends. A backend that can creates the row if it is
    /// absent, so that `name_through` waits for this write whichever it finds.
    async fn name_mark(&mut self, name: &str) -> ClickResult<Option<u64>>;

    /// Records that writes under `name` went through `through` (with this write).
    async fn set_name_mark(&mut self, name: &str, through: u64) -> ClickResult<()>;

    /// [`DAYS_THROUGH`], held as `lock` says; `None` if absent or unreadable.
    async fn days_through(&mut self, lock: MarkLock) -> ClickResult<Option<DateTime<Utc>>>;

    /// Moves [`DAYS_THROUGH`] to `day`.
    async fn set_days_through(&mut self, day: DateTime<Utc>) -> ClickResult<()>;

    /// Locks the link rows whose counters this write adds to (sorted codes).
    async fn lock_links(&mut self, codes: &[&str]) -> ClickResult<()>;

    /// The stored rollup rows of `keys` (sorted), locked for this write.
    async fn read_hours(
        &mut self,
        keys: &[RowKey<'_>],
    ) -> ClickResult<StoredRows<DateTime<Utc>, StoredRollup>>;

    /// Writes `rows[i]` as the row of `keys[i]`.
    async fn write_hours(&mut self, keys: &[RowKey<'_>], rows: Vec<StoredRollup>) -> ClickResult<()>;

    /// The stored daily visitor sketches of `keys` (sorted), locked for this write.
    async fn read_days(&mut self, keys: &[RowKey<'_>]) -> ClickResult<StoredRows<DateTime<Utc>, Vec<u8>>>;

    /// Writes `sketches[i]` as the daily sketch of `keys[i]`.
    async fn write_days(&mut self, keys: &[RowKey<'_>], sketches: Vec<Vec<u8>>) -> ClickResult<()>;

    /// Appends the batch's clicks as raw events, in the backend's own layout.
    async fn insert_raw(&mut self, batch: &ClickBatch) -> ClickResult<()>;

    /// Adds each link's clicks to its `click_count` and moves `last_accessed_at`.
    async fn add_clicks(&mut self, touches: &[LinkTouch<'_>]) -> ClickResult<()>;

    /// Codes with human clicks in an hour of `[from, to)`, for compaction.
    async fn codes_with_clicks(&mut self, from: DateTime<Utc>, to: DateTime<Utc>)
    -> ClickResult<Vec<String>>;

    /// `(code, hour, sketch)` of the hourly rows with human clicks of `codes` in
    /// `[from, to)`, sorted by code and hour.
    async fn hour_sketches(
        &mut self,
        codes: &[String],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ClickResult<Vec<(String, DateTime<Utc>, Vec<u8>)>>;

    async fn commit(self: Box<Self>) -> ClickResult<()>;
}
