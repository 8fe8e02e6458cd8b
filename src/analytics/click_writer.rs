//! [`ClickWriter`]: the one read-merge-write of click rows, over the click store port.
//!
//! A write of a [`ClickBatch`] reads the link-hour rows it touches, adds its deltas
//! ([`merge_row`]), writes them back, does the same for the daily visitor sketches of
//! days that are over, appends the raw events, adds to each link's counters and, for
//! a named write, records its name's mark: all in one transaction. Every backend
//! runs this same algorithm; each only moves rows ([`ClickTx`]).
//!
//! The order of the steps is the lock order (write name, days mark, links, rollup
//! rows, daily rows, each in key order), the same in every write, so concurrent
//! instances on one PostgreSQL queue behind each other and never deadlock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, Utc};

use super::batch::ClickBatch;
use super::hll::Hll;
use super::off_workers;
use super::port::{ClickResult, ClickStore, ClickTx, MarkLock, RowKey};
use super::rows::{daily_from_hourly, day_of, merge_row, merge_sketch};

/// Links per step of compaction: bounds the sketches it holds at once.
const COMPACT_CODES: usize = 500;

pub struct ClickWriter {
    store: Arc<dyn ClickStore>,
    /// Keep raw events (`KURZ_ANALYTICS_RAW_EVENTS`); rollups are always kept.
    raw: bool,
    /// Daily sketches of the days that are over: see [`Compaction`].
    compaction: Arc<Compaction>,
}

impl ClickWriter {
    pub fn new(store: Arc<dyn ClickStore>, raw: bool) -> Self {
        Self {
            store,
            raw,
            compaction: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn ClickStore> {
        &self.store
    }

    /// Writes one batch atomically (see the module comment). A batch that carries a
    /// write name ([`ClickBatch::replay`]) whose mark already covers it is skipped:
    /// it was written before (a replay after a crash, or a write that committed after
    /// its timeout), and must not count twice.
    pub async fn record(&self, batch: &ClickBatch) -> ClickResult<()> {
        self.compaction.start_if_due(self);
        if self.raw {
            self.store.prepare_raw_days(&batch.raw_days()).await?;
        }
        let written = self.write(batch).await;
        if written.is_err() {
            self.store.forget_prepared();
        }
        written
    }

    async fn write(&self, batch: &ClickBatch) -> ClickResult<()> {
        let touches = batch.touches();
        let codes: Vec<&str> = touches.iter().map(|t| t.short_code).collect();
        let mut tx = self.store.begin().await?;
        if let Some(replay) = &batch.replay
            && tx
                .name_mark(&replay.spool)
                .await?
                .is_some_and(|through| through >= replay.through)
        {
            return Ok(());
        }
        // Held until commit: compaction cannot build a day's sketches from hourly rows
        // while this write may still add to them without the sketch.
        let through = tx.days_through(MarkLock::Share).await?;
        tx.lock_links(&codes).await?;
        let rollups = batch.rollups();
        let keys: Vec<RowKey<'_>> = rollups.iter().map(|(code, r)| (*code, r.hour)).collect();
        let existing = tx.read_hours(&keys).await?;
        let merged = off_workers(|| {
            rollups
                .iter()
                .map(|(code, r)| merge_row(existing.get(code, &r.hour), r))
                .collect()
        });
        drop(existing);
        tx.write_hours(&keys, merged).await?;
        let days = batch.days_before(through);
        let days: Vec<(&str, DateTime<Utc>, &Hll)> =
            days.iter().map(|(code, d)| (*code, d.day, &d.visitors)).collect();
        merge_daily(tx.as_mut(), &days).await?;
        if self.raw {
            tx.insert_raw(batch).await?;
        }
        tx.add_clicks(&touches).await?;
        if let Some(replay) = &batch.replay {
            tx.set_name_mark(&replay.spool, replay.through).await?;
        }
        tx.commit().await
    }

    /// Builds the daily visitor sketches of every day before `now`'s UTC day that
    /// the days mark does not cover yet, from their hourly rows, and moves the mark
    /// to `now`'s day, in one transaction that excludes concurrent click writes.
    /// Returns the number of daily rows written.
    pub async fn compact_days(&self, now: DateTime<Utc>) -> ClickResult<u64> {
        let today = day_of(now);
        let mut tx = self.store.begin().await?;
        // Waits for every click write holding the mark, and holds off new ones until
        // the mark has moved: then they write these days' sketches themselves.
        let Some(from) = tx.days_through(MarkLock::Update).await?.filter(|t| *t < today) else {
            return Ok(0);
        };
        let codes = tx.codes_with_clicks(from, today).await?;
        let mut written = 0;
        for chunk in codes.chunks(COMPACT_CODES) {
            let hours = tx.hour_sketches(chunk, from, today).await?;
            let daily = off_workers(|| daily_from_hourly(&hours));
            let days: Vec<(&str, DateTime<Utc>, &Hll)> =
                daily.iter().map(|(code, day, hll)| (*code, *day, hll)).collect();
            merge_daily(tx.as_mut(), &days).await?;
            written += daily.len() as u64;
        }
        tx.set_days_through(today).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// See [`ClickStore::claim_name`].
    pub async fn claim_name(&self, name: &str) -> ClickResult<()> {
        self.store.claim_name(name).await
    }

    /// See [`ClickStore::name_through`].
    pub async fn name_through(&self, name: &str) -> ClickResult<Option<u64>> {
        self.store.name_through(name).await
    }
}

/// Adds each `(code, day, visitors)` to that link-day's stored sketch (`days` sorted
/// by code and day).
async fn merge_daily(tx: &mut dyn ClickTx, days: &[(&str, DateTime<Utc>, &Hll)]) -> ClickResult<()> {
    if days.is_empty() {
        return Ok(());
    }
    let keys: Vec<RowKey<'_>> = days.iter().map(|(code, day, _)| (*code, *day)).collect();
    let stored = tx.read_days(&keys).await?;
    let merged = off_workers(|| {
        days.iter()
            .map(|(code, day, hll)| merge_sketch(stored.get(code, day).map(Vec::as_slice), hll))
            .collect()
    });
    drop(stored);
    tx.write_days(&keys, merged).await
}

/// Runs [`ClickWriter::compact_days`] once per UTC day, beside the writes rather than
/// inside one: a write is bounded by the sink timeout, and a long compaction cut off
/// by it would start again with every write.
#[derive(Debug, Default)]
pub struct Compaction {
    /// The UTC day (ms) compacted up to by this process; 0 at start.
    through: AtomicI64,
    running: AtomicBool,
}

impl Compaction {
    fn start_if_due(self: &Arc<Self>, writer: &ClickWriter) {
        let now = chrono::Utc::now();
        let today = day_of(now).timestamp_millis();
        if self.through.load(Ordering::Acquire) >= today || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        let writer = ClickWriter {
            store: writer.store.clone(),
            raw: writer.raw,
            compaction: self.clone(),
        };
        tokio::spawn(async move {
            match writer.compact_days(now).await {
                Ok(days) => {
                    me.through.store(today, Ordering::Release);
                    if days > 0 {
                        tracing::info!(days, "daily visitor sketches built");
                    }
                }
                // Only a delay: until then those days are read from their hours.
                Err(e) => tracing::warn!(error = %e, "daily visitor sketches not built yet"),
            }
            me.running.store(false, Ordering::Release);
        });
    }
}
