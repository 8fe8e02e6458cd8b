//! The store's lane writer: holds clicks folded into one [`ClickBatch`], names each
//! write, and replays spooled clicks exactly once.
//!
//! Why hold: a store write costs per link-hour row it touches (read, merge, write
//! back), not per click, so ten seconds of uniform traffic over 20,000 links rewrite
//! each row once instead of ten times (`KURZ_ANALYTICS_STORE_HOLD_MS`). A write that
//! touches few rows ([`LIGHT_ROWS`]) is cheap and is not held, so under light traffic
//! stats lag by the flush interval only. The held batch keeps every click as a
//! compact row, so a failed write still spools exactly its events.
//!
//! Why names ([`super::names`]): a write can fail after it committed (its answer lost
//! at the timeout). Its events are kept under its name, and the replay asks the
//! store how far that name's writes got before it writes them again.
//!
//! Why a journal ([`super::journal`]): what is held is on disk before it is held, so a
//! crash loses at most what the batcher had not cut yet (one flush interval), not
//! the up to `KURZ_ANALYTICS_STORE_HOLD_MS` a held write gathers. A hold whose write
//! failed stays in its journal file, which is the copy replayed later; the files a
//! crash left are replayed after the restart.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::batch::{ClickBatch, Replay, fold};
use super::click_writer::ClickWriter;
use super::event::ClickEvent;
use super::journal::{self, Journaled};
use super::lane::{Batch, Failed, Held, LaneWriter, Replayed, WriteError, within};
use super::names::WriteNames;
use super::off_workers;
use super::port::{ClickStore, PART_ROWS};
use super::spool::{Chunk, SpoolError};

/// A write touching no more rows than this is cheap (~15 ms): it is not held, so
/// stats lag by only the flush interval unless traffic is heavy.
pub const LIGHT_ROWS: usize = 1_000;

pub struct StoreWriter {
    writer: ClickWriter,
    /// How long batches may be held and folded before they are written.
    hold: Duration,
    /// A write slower than this counts as failed (`KURZ_ANALYTICS_SINK_TIMEOUT_SECS`).
    timeout: Duration,
    /// Writes touching at most this many rows are not held ([`LIGHT_ROWS`]).
    light_rows: usize,
    /// Held writes above this many rows go in parts ([`PART_ROWS`]).
    part_rows: usize,
    names: WriteNames,
    /// `kurz_clicks_total{country}` handles, one per label (a bounded set).
    by_country: std::collections::HashMap<&'static str, metrics::Counter>,
    /// The spool folder, where holds are journaled; `None` until [`Self::journal_in`].
    journal: Option<PathBuf>,
    /// Journals of holds not in the store: failed writes, and a crash's leftovers.
    kept: VecDeque<PathBuf>,
    /// Clicks per write when a kept hold is replayed.
    part: usize,
}

impl StoreWriter {
    pub fn new(store: Arc<dyn ClickStore>, raw: bool, hold: Duration, timeout: Duration) -> Self {
        Self {
            writer: ClickWriter::new(store, raw),
            hold,
            timeout,
            light_rows: LIGHT_ROWS,
            part_rows: PART_ROWS,
            names: WriteNames::default(),
            by_country: Default::default(),
            journal: None,
            kept: VecDeque::new(),
            part: 50_000,
        }
    }

    /// Journals holds in `dir` (the spool folder, locked by the store's spool) from
    /// now on, and takes the journals a crash left there for a replay. A kept hold is
    /// replayed `part` clicks per write.
    pub fn journal_in(&mut self, dir: &Path, part: usize) {
        self.journal = Some(dir.to_owned());
        self.kept = journal::leftovers(dir).into();
        self.part = part.max(1);
        if !self.kept.is_empty() {
            tracing::info!(
                holds = self.kept.len(),
                "click batches journaled before a crash will be replayed"
            );
        }
    }

    /// Counts a written batch's human clicks by country.
    fn count_countries(&mut self, batch: &ClickBatch) {
        for (country, n) in batch.clicks_by_country() {
            let label = super::countries::label(country);
            self.by_country
                .entry(label)
                .or_insert_with(|| metrics::counter!("kurz_clicks_total", "country" => label))
                .increment(n);
        }
    }

    /// Writes a hold in parts ([`ClickBatch::cut`]), one transaction each, named
    /// (writer, n), (writer, n + 1)…, after recording that in its journal: the parts
    /// that committed are a prefix, and a replay asks the store how far the writer's
    /// marks go to skip exactly those. Each part is built just before its write.
    async fn write_parts(&mut self, held: &mut Journaled) -> Result<(), Failed> {
        let first = self.names.next(&self.writer, self.timeout).await?;
        let count = held.batch.part_count(self.part_rows) as u64;
        if let Err(e) = held.split_as(&first, count, self.part_rows as u64) {
            metrics::counter!("kurz_click_journal_errors_total").increment(1);
            tracing::error!(error = %e, "cannot journal a write's parts");
        }
        let mut parts = off_workers(|| held.batch.cut(self.part_rows));
        let mut i = 0u64;
        while let Some(mut part) = off_workers(|| parts.next()) {
            part.replay = Some(Replay {
                spool: first.spool.clone(),
                through: first.through + i,
            });
            if i > 0 {
                // The writer's next name is the one computed above: keep them in step.
                let _ = self.names.next(&self.writer, self.timeout).await;
            }
            if let Err(error) = within(self.timeout, self.writer.record(&part)).await {
                self.names.drop_writer();
                return Err(Failed {
                    error,
                    written_as: Some(first),
                });
            }
            self.count_countries(&part);
            i += 1;
        }
        drop(parts);
        held.written();
        Ok(())
    }

    /// Counts every write as heavy or light, for tests of the hold.
    #[cfg(test)]
    pub(crate) fn with_light_rows(mut self, rows: usize) -> Self {
        self.light_rows = rows;
        self
    }

    /// Cuts held writes into parts of `rows` link-hours, for tests of the parts.
    #[cfg(test)]
    pub(crate) fn with_part_rows(mut self, rows: usize) -> Self {
        self.part_rows = rows.max(1);
        self
    }
}

impl Held for ClickBatch {
    fn add(&mut self, batch: Batch) {
        off_workers(|| ClickBatch::add(self, batch.iter()));
    }

    fn events(&self) -> usize {
        ClickBatch::events(self)
    }

    /// Link-hours: what a store write costs.
    fn rows(&self) -> usize {
        ClickBatch::rows(self)
    }

    fn with_events(&self, f: &mut dyn FnMut(&[&ClickEvent])) {
        let events = self.to_events();
        f(&events.iter().collect::<Vec<_>>());
    }

    fn oldest(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        ClickBatch::oldest(self)
    }
}

#[async_trait]
impl LaneWriter for StoreWriter {
    type Held = Journaled;

    fn name(&self) -> &'static str {
        "store"
    }

    fn in_process(&self) -> bool {
        self.writer.store().in_process()
    }

    /// The store adds counts up: order does not matter.
    fn ordered(&self) -> bool {
        false
    }

    fn due(&self, held: &Journaled, held_for: Duration) -> bool {
        held.rows() <= self.light_rows || held_for >= self.hold
    }

    fn new_held(&self) -> Journaled {
        Journaled::new(self.journal.clone())
    }

    async fn write(&mut self, held: &mut Journaled) -> Result<(), Failed> {
        // In parts only where a journal records how far they got (every pipeline
        // with a spool folder): a replay then skips the parts that committed.
        if held.path().is_some() && held.batch.part_count(self.part_rows) > 0 {
            return self.write_parts(held).await;
        }
        // Nothing was attempted if the store did not even take a new writer name.
        let name = self.names.next(&self.writer, self.timeout).await?;
        if let Err(e) = held.written_as(&name) {
            // A replay after a crash would then write the hold under a new name: only
            // a crash right after this write commits could count it twice.
            metrics::counter!("kurz_click_journal_errors_total").increment(1);
            tracing::error!(error = %e, "cannot journal a write's name");
        }
        held.batch.replay = Some(name.clone());
        match within(self.timeout, self.writer.record(&held.batch)).await {
            Ok(()) => {
                self.count_countries(&held.batch);
                held.written();
                Ok(())
            }
            Err(error) => {
                // It may have committed all the same: spooled under its name, and the
                // name is not used again.
                self.names.drop_writer();
                Err(Failed {
                    error,
                    written_as: Some(name),
                })
            }
        }
    }

    fn keep_failed(
        &mut self,
        held: Journaled,
        written_as: Option<&Replay>,
        spool: &mut dyn FnMut(&[&ClickEvent], Option<&Replay>),
    ) {
        match held.path() {
            Some(path) => {
                metrics::counter!("kurz_click_events_spooled_total", "sink" => self.name())
                    .increment(held.events() as u64);
                self.kept.push_back(path.to_owned());
            }
            None => held.with_events(&mut |events| spool(events, written_as)),
        }
    }

    fn kept(&self) -> usize {
        self.kept.len()
    }

    /// Replays the oldest kept hold: skipped whole if the write that carried it
    /// committed after all (its name is in the store), else written in parts under a
    /// replay name recorded in its journal first, each part skipped if a replay cut
    /// off by a crash already wrote it. The journal goes once all of it is in.
    async fn replay_kept(&mut self) -> Result<Replayed, WriteError> {
        let Some(path) = self.kept.front().cloned() else {
            return Ok(Replayed::default());
        };
        let io = |e| WriteError::Spool(SpoolError::Io(path.clone(), e));
        let kept = off_workers(|| journal::read(&path)).map_err(io)?;
        if kept.torn {
            tracing::warn!(path = %path.display(), "a journaled hold ends in a torn record (a crash mid-append)");
        }
        let mut done = Replayed::default();
        // The clicks of the hold still to be written: all of them, none (its write
        // committed after all), or those of the parts after the ones that committed.
        let mut left: Option<Vec<ClickEvent>> = None;
        let written_live = match (&kept.split_as, &kept.written_as) {
            (Some((first, parts, rows)), _) => {
                let through = within(self.timeout, self.writer.name_through(&first.spool))
                    .await?
                    .unwrap_or(0);
                let committed = match through.checked_sub(first.through) {
                    Some(done_parts) => (done_parts + 1).min(*parts),
                    None => 0,
                };
                if committed > 0 && committed < *parts {
                    let rows = *rows;
                    let events = &kept.events;
                    left = Some(off_workers(|| {
                        fold(events)
                            .cut(rows)
                            .skip(committed as usize)
                            .flat_map(|part| part.to_events())
                            .collect()
                    }));
                }
                committed >= *parts
            }
            (None, Some(w)) => within(self.timeout, self.writer.name_through(&w.spool))
                .await?
                .is_some_and(|through| through >= w.through),
            (None, None) => false,
        };
        let events = left.as_deref().unwrap_or(&kept.events);
        if written_live {
            done.skipped = kept.events.len();
        } else {
            done.skipped = kept.events.len() - events.len();
            let replay_as = match kept.replay_as {
                Some(r) => r,
                None => {
                    let r = Replay {
                        spool: format!("j{:032x}", rand::random::<u128>()),
                        through: 0,
                    };
                    off_workers(|| journal::set_replay_as(&path, &r)).map_err(io)?;
                    r
                }
            };
            let already = within(self.timeout, self.writer.name_through(&replay_as.spool))
                .await?
                .unwrap_or(0);
            let mut end = 0u64;
            for part in events.chunks(self.part) {
                end += part.len() as u64;
                if end <= already {
                    done.skipped += part.len();
                    continue;
                }
                let mut batch = off_workers(|| fold(part));
                batch.replay = Some(Replay {
                    spool: replay_as.spool.clone(),
                    through: end,
                });
                within(self.timeout, self.writer.record(&batch)).await?;
                self.count_countries(&batch);
                done.written += part.len();
            }
        }
        off_workers(|| std::fs::remove_file(&path)).map_err(io)?;
        self.kept.pop_front();
        Ok(done)
    }

    async fn replay(&mut self, chunk: &Chunk, at: Replay) -> Result<Replayed, WriteError> {
        // Events of failed writes that committed after all are in the store already.
        let mut in_already: Vec<&Replay> = Vec::new();
        let mut asked: Vec<&Replay> = Vec::new();
        for w in chunk.written_as.iter().flatten() {
            if !asked.contains(&w) {
                asked.push(w);
                let through = within(self.timeout, self.writer.name_through(&w.spool)).await?;
                if through.is_some_and(|t| t >= w.through) {
                    in_already.push(w);
                }
            }
        }
        let events: Vec<&ClickEvent> = chunk
            .events
            .iter()
            .zip(&chunk.written_as)
            .filter(|(_, w)| w.as_ref().is_none_or(|w| !in_already.contains(&w)))
            .map(|(e, _)| e)
            .collect();
        let skipped = chunk.events.len() - events.len();
        if !events.is_empty() {
            // Written under the chunk's own name, so a chunk replayed again after a
            // crash (before the spool saved its position) is skipped by the store.
            let mut batch = off_workers(|| fold(events.iter().copied()));
            batch.replay = Some(at);
            within(self.timeout, self.writer.record(&batch)).await?;
            self.count_countries(&batch);
        }
        Ok(Replayed {
            written: events.len(),
            skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use chrono::{DateTime, NaiveDate, Utc};

    use super::super::background::nice_here;
    use super::super::event::bounded;
    use super::super::port::{
        ClickResult, ClickStoreError, ClickTx, LinkTouch, MarkLock, RowKey, SketchPlan, StoredRollup,
        StoredRows,
    };
    use super::super::spool::Spool;
    use super::super::{Analytics, Captured, Enricher, Settings};
    use super::*;
    use crate::store::{LinkStore, NewLink, SqliteStore};

    /// The real SQLite click store, counting the click writes that reach it and the
    /// events written back from the spool. `delay` makes each click write that much
    /// slower: a fake, since a loaded PostgreSQL's seconds-long writes cannot be
    /// caused on demand in a unit test. `fail` makes the first click write fail:
    /// before it reaches the store, or after the store committed it (its answer lost,
    /// as when the sink timeout fires during a slow COMMIT) — a fake too, as that
    /// moment cannot be hit on demand.
    struct Counted {
        inner: Arc<SqliteStore>,
        state: Arc<Counts>,
    }

    #[derive(Default)]
    struct Counts {
        writes: AtomicUsize,
        replayed: AtomicUsize,
        delay: Mutex<Duration>,
        /// Added per rollup row written: a write's time grows with its rows, as a
        /// real database's does (a fake: tens of thousands of rows take too long
        /// to generate in a unit test).
        per_row: Mutex<Duration>,
        fail: Mutex<Option<Fail>>,
        /// The write (counting from 1) that `fail` hits; 0 = the first.
        fail_at: AtomicUsize,
        /// What [`ClickStore::in_process`] answers.
        in_process: AtomicBool,
        /// The thread of each click write: its name and nice value.
        threads: Mutex<Vec<(Option<String>, i32)>>,
    }

    #[derive(Clone, Copy, Debug)]
    enum Fail {
        BeforeCommit,
        AfterCommit,
    }

    impl Counted {
        fn new(inner: Arc<SqliteStore>, delay: Duration) -> (Arc<Self>, Arc<Counts>) {
            let state = Arc::new(Counts::default());
            *state.delay.lock().unwrap() = delay;
            (
                Arc::new(Self {
                    inner,
                    state: state.clone(),
                }),
                state,
            )
        }
    }

    struct CountedTx {
        inner: Box<dyn ClickTx>,
        state: Arc<Counts>,
        fail_commit: bool,
    }

    #[async_trait]
    impl ClickStore for Counted {
        fn in_process(&self) -> bool {
            self.state.in_process.load(Ordering::SeqCst)
        }
        async fn begin(&self) -> ClickResult<Box<dyn ClickTx>> {
            Ok(Box::new(CountedTx {
                inner: self.inner.begin().await?,
                state: self.state.clone(),
                fail_commit: false,
            }))
        }
        async fn prepare_raw_days(&self, days: &[NaiveDate]) -> ClickResult<()> {
            self.inner.prepare_raw_days(days).await
        }
        async fn claim_name(&self, name: &str) -> ClickResult<()> {
            self.inner.claim_name(name).await
        }
        async fn name_through(&self, name: &str) -> ClickResult<Option<u64>> {
            self.inner.name_through(name).await
        }
        async fn rollups(
            &self,
            code: &str,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> ClickResult<Vec<StoredRollup>> {
            self.inner.rollups(code, from, to).await
        }
        async fn sketches(&self, code: &str, plan: &SketchPlan) -> ClickResult<Vec<Vec<u8>>> {
            self.inner.sketches(code, plan).await
        }
        async fn hot_codes(&self, since: DateTime<Utc>, limit: usize) -> ClickResult<Vec<String>> {
            self.inner.hot_codes(since, limit).await
        }
        async fn purge_events(&self, before: DateTime<Utc>) -> ClickResult<u64> {
            self.inner.purge_events(before).await
        }
        async fn purge_names(&self, before: DateTime<Utc>) -> ClickResult<u64> {
            self.inner.purge_names(before).await
        }
    }

    #[async_trait]
    impl ClickTx for CountedTx {
        async fn name_mark(&mut self, name: &str) -> ClickResult<Option<u64>> {
            self.inner.name_mark(name).await
        }
        async fn set_name_mark(&mut self, name: &str, through: u64) -> ClickResult<()> {
            self.inner.set_name_mark(name, through).await
        }
        async fn days_through(&mut self, lock: MarkLock) -> ClickResult<Option<DateTime<Utc>>> {
            self.inner.days_through(lock).await
        }
        async fn set_days_through(&mut self, day: DateTime<Utc>) -> ClickResult<()> {
            self.inner.set_days_through(day).await
        }
        /// Only click writes lock links (compaction does not): the write counter.
        async fn lock_links(&mut self, codes: &[&str]) -> ClickResult<()> {
            let n = self.state.writes.fetch_add(1, Ordering::SeqCst) + 1;
            let me = std::thread::current();
            self.state
                .threads
                .lock()
                .unwrap()
                .push((me.name().map(str::to_owned), nice_here()));
            let delay = *self.state.delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            let fail_at = self.state.fail_at.load(Ordering::SeqCst);
            let fail = if fail_at == 0 || fail_at == n {
                self.state.fail.lock().unwrap().take()
            } else {
                None
            };
            match fail {
                None => {}
                Some(Fail::BeforeCommit) => {
                    return Err(ClickStoreError::Unavailable("connection refused".into()));
                }
                Some(Fail::AfterCommit) => self.fail_commit = true,
            }
            self.inner.lock_links(codes).await
        }
        async fn read_hours(
            &mut self,
            keys: &[RowKey<'_>],
        ) -> ClickResult<StoredRows<DateTime<Utc>, StoredRollup>> {
            self.inner.read_hours(keys).await
        }
        async fn write_hours(&mut self, keys: &[RowKey<'_>], rows: Vec<StoredRollup>) -> ClickResult<()> {
            let per_row = *self.state.per_row.lock().unwrap();
            tokio::time::sleep(per_row * keys.len() as u32).await;
            self.inner.write_hours(keys, rows).await
        }
        async fn read_days(
            &mut self,
            keys: &[RowKey<'_>],
        ) -> ClickResult<StoredRows<DateTime<Utc>, Vec<u8>>> {
            self.inner.read_days(keys).await
        }
        async fn write_days(&mut self, keys: &[RowKey<'_>], sketches: Vec<Vec<u8>>) -> ClickResult<()> {
            self.inner.write_days(keys, sketches).await
        }
        /// A batch named after a spool generation (not a writer, `w…`) is a replay.
        async fn insert_raw(&mut self, batch: &ClickBatch) -> ClickResult<()> {
            if batch.replay.as_ref().is_some_and(|r| !r.spool.starts_with('w')) {
                self.state.replayed.fetch_add(batch.events(), Ordering::SeqCst);
            }
            self.inner.insert_raw(batch).await
        }
        async fn add_clicks(&mut self, touches: &[LinkTouch<'_>]) -> ClickResult<()> {
            self.inner.add_clicks(touches).await
        }
        async fn codes_with_clicks(
            &mut self,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> ClickResult<Vec<String>> {
            self.inner.codes_with_clicks(from, to).await
        }
        async fn hour_sketches(
            &mut self,
            codes: &[String],
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> ClickResult<Vec<(String, DateTime<Utc>, Vec<u8>)>> {
            self.inner.hour_sketches(codes, from, to).await
        }
        async fn commit(self: Box<Self>) -> ClickResult<()> {
            self.inner.commit().await?;
            if self.fail_commit {
                return Err(ClickStoreError::Unavailable("no answer within 15s".into()));
            }
            Ok(())
        }
    }

    /// Batches that arrive while a slow write runs wait in memory for the next write,
    /// not in the spool: 150 clicks, one every 2 ms, make ~15 batches of 10 while the
    /// first of them is written (300 ms), more than the [`super::super::lane::LANE_BACKLOG`]
    /// of 4 the channel holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_arriving_during_a_slow_write_are_not_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_link(dir.path()).await;
        let (clicks, counts) = Counted::new(store.clone(), Duration::from_millis(300));
        let mut settings = Settings::for_tests(dir.path());
        // The first write's speed sets how much the next may carry (`write_cap`): a
        // few clicks in 300 ms is a slow sink, so a long timeout keeps that cap above
        // the 150 clicks here whatever the first batch holds.
        settings.sink_timeout = Duration::from_secs(120);
        let writer = StoreWriter::new(clicks, true, Duration::ZERO, settings.sink_timeout).with_light_rows(0);
        rules_compiled().await;
        let analytics = Analytics::start(settings, Enricher::new([7; 16], None), writer, vec![]).unwrap();
        for i in 0..150u8 {
            analytics.capture(bare_click(i));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        analytics.shutdown().await;
        let link = store.get_link("hold123").await.unwrap().unwrap();
        assert_eq!(link.click_count, 150, "every click is counted");
        assert_eq!(
            counts.replayed.load(Ordering::SeqCst),
            0,
            "no click went through the spool"
        );
    }

    /// A failed write is spooled under its name and replayed, unless the store shows
    /// that it committed after all: either way each click counts once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_that_committed_anyway_is_not_counted_twice() {
        for fail in [Fail::AfterCommit, Fail::BeforeCommit] {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with_link(dir.path()).await;
            let (clicks, counts) = Counted::new(store.clone(), Duration::ZERO);
            *counts.fail.lock().unwrap() = Some(fail);
            let settings = Settings::for_tests(dir.path());
            let writer =
                StoreWriter::new(clicks, true, Duration::ZERO, settings.sink_timeout).with_light_rows(0);
            rules_compiled().await;
            let analytics = Analytics::start(settings, Enricher::new([7; 16], None), writer, vec![]).unwrap();
            for i in 0..30u8 {
                analytics.capture(bare_click(i));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // The failed write's events wait a retry (1 s) in the spool, or in the
            // journal of their hold.
            let spool = dir.path().join("spool").join("store.spool");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let pending = || {
                std::fs::metadata(&spool).map(|m| m.len() > 0).unwrap_or(false)
                    || !journal::leftovers(&dir.path().join("spool")).is_empty()
            };
            while (counts.fail.lock().unwrap().is_some() || pending())
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            analytics.shutdown().await;
            assert!(!pending(), "{fail:?}: the spool was replayed");
            let link = store.get_link("hold123").await.unwrap().unwrap();
            assert_eq!(link.click_count, 30, "{fail:?}: each click counted once");
            let replayed = counts.replayed.load(Ordering::SeqCst);
            match fail {
                Fail::AfterCommit => assert_eq!(replayed, 0, "the committed write is not replayed"),
                Fail::BeforeCommit => assert!(replayed > 0, "the failed write is replayed"),
            }
        }
    }

    /// Over an embedded store (SQLite) the lane, and so every click write, runs on a
    /// thread of its own below the workers' priority; over a networked store (whose
    /// connections belong to the runtime's reactor), on the runtime's workers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_embedded_stores_writes_run_on_the_lanes_own_lower_priority_thread() {
        use super::super::background::{LANE_THREAD_NAME, NICE};
        let workers = tokio::spawn(async { nice_here() }).await.unwrap();
        for embedded in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with_link(dir.path()).await;
            let (clicks, counts) = Counted::new(store.clone(), Duration::ZERO);
            counts.in_process.store(embedded, Ordering::SeqCst);
            let settings = Settings::for_tests(dir.path());
            let writer =
                StoreWriter::new(clicks, true, Duration::ZERO, settings.sink_timeout).with_light_rows(0);
            rules_compiled().await;
            let analytics = Analytics::start(settings, Enricher::new([7; 16], None), writer, vec![]).unwrap();
            for i in 0..20u8 {
                analytics.capture(bare_click(i));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            analytics.shutdown().await;
            let link = store.get_link("hold123").await.unwrap().unwrap();
            assert_eq!(link.click_count, 20, "embedded {embedded}: every click counted");
            let threads = counts.threads.lock().unwrap().clone();
            assert!(
                !threads.is_empty(),
                "embedded {embedded}: no write reached the store"
            );
            for (name, nice) in threads {
                if embedded {
                    assert_eq!(name.as_deref(), Some(LANE_THREAD_NAME));
                    #[cfg(target_os = "linux")]
                    assert_eq!(nice, (workers + NICE).min(19), "below the workers");
                } else {
                    assert_ne!(name.as_deref(), Some(LANE_THREAD_NAME));
                    assert_eq!(nice, workers, "on a worker");
                }
            }
        }
    }

    /// Compiles the user-agent rules before a pipeline starts. The batcher compiles
    /// them before its first take (a debug build takes a while), and the clicks that
    /// queue up meanwhile are cut in one burst that the lane's channel cannot all
    /// take: those go through the spool, and a test counting writes or replays would
    /// count them too.
    async fn rules_compiled() {
        tokio::task::spawn_blocking(super::super::enrich::warm_up)
            .await
            .unwrap();
    }

    /// A fresh SQLite store in `dir` holding link `hold123`.
    async fn store_with_link(dir: &std::path::Path) -> Arc<SqliteStore> {
        let url = format!("sqlite://{}", dir.join("kurz.db").display());
        let store = SqliteStore::connect(&url, 1).await.unwrap();
        store.migrate().await.unwrap();
        store.insert_links(&[NewLink::example("hold123")]).await.unwrap();
        Arc::new(store)
    }

    /// A click on `hold123` from visitor `i`, with no headers.
    fn bare_click(i: u8) -> Captured<'static> {
        Captured {
            code: "hold123",
            at: Utc::now(),
            referer: None,
            user_agent: None,
            ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)),
            cf_country: None,
        }
    }

    /// Sends 60 clicks, 10 ms apart, through a pipeline cutting batches of at most 10
    /// clicks (or every 20 ms); shuts it down; returns (store writes, `click_count`).
    async fn clicks_through(hold: Duration, light_rows: usize) -> (usize, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_link(dir.path()).await;
        let (clicks, counts) = Counted::new(store.clone(), Duration::ZERO);
        let settings = Settings::for_tests(dir.path());
        let writer = StoreWriter::new(clicks, true, hold, settings.sink_timeout).with_light_rows(light_rows);
        rules_compiled().await;
        let analytics = Analytics::start(settings, Enricher::new([7; 16], None), writer, vec![]).unwrap();
        for i in 0..60u8 {
            analytics.capture(Captured {
                code: "hold123",
                at: Utc::now(),
                referer: None,
                user_agent: Some(bounded(b"Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0")),
                ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)),
                cf_country: None,
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        analytics.shutdown().await;
        let link = store.get_link("hold123").await.unwrap().unwrap();
        (counts.writes.load(Ordering::SeqCst), link.click_count)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holding_store_writer_writes_fewer_bigger_batches_and_loses_nothing() {
        // Held for longer than the test, and no write counts as light: the 60 clicks
        // stay under the hold's cap (160 clicks in tests), so they go as one write at shutdown
        // (two if timing splits them).
        let (held_writes, held_clicks) = clicks_through(Duration::from_secs(60), 0).await;
        assert_eq!(held_clicks, 60, "every click is counted");
        assert!(held_writes <= 2, "{held_writes} writes while holding");

        let (writes, clicks) = clicks_through(Duration::ZERO, 0).await;
        assert_eq!(clicks, 60, "every click is counted");
        assert!(
            writes >= 5,
            "without a hold every batch is its own write: {writes}"
        );
    }

    /// A write that touches few rows is cheap, so it is not held, whatever the hold:
    /// stats lag by the flush interval only under light traffic. The same clicks are
    /// held when no write counts as light.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_light_write_is_not_held() {
        for (light_rows, written_early) in [(LIGHT_ROWS, true), (0, false)] {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with_link(dir.path()).await;
            let settings = Settings::for_tests(dir.path());
            let writer = StoreWriter::new(
                store.clone(),
                true,
                Duration::from_secs(60),
                settings.sink_timeout,
            )
            .with_light_rows(light_rows);
            let analytics = Analytics::start(settings, Enricher::new([7; 16], None), writer, vec![]).unwrap();
            for i in 0..30u8 {
                analytics.capture(bare_click(i));
            }
            let count = || async { store.get_link("hold123").await.unwrap().unwrap().click_count };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while count().await < 30 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(count().await == 30, written_early, "light_rows {light_rows}");
            analytics.shutdown().await;
            assert_eq!(count().await, 30, "shutdown writes what was held");
        }
    }

    /// Holds a crashed process left journaled: one whose write had committed (its
    /// name is in the store) is skipped, one never written is written, once, even when
    /// its replay is itself cut off and run again.
    #[tokio::test]
    async fn journaled_holds_left_by_a_crash_are_written_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_link(dir.path()).await;
        let enricher = Enricher::new([7; 16], None);
        let batch = |from: u8| -> Batch {
            Arc::new((from..from + 5).map(|i| enricher.enrich(bare_click(i))).collect())
        };
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        // The crashed process: one hold written (the crash came before its journal
        // went), one only journaled.
        let mut crashed = StoreWriter::new(store.clone(), true, Duration::ZERO, Duration::from_secs(10));
        crashed.journal_in(&spool, 3);
        let mut written = crashed.new_held();
        written.add(batch(0));
        let path = written.path().unwrap().to_owned();
        crashed.write(&mut written).await.unwrap();
        assert!(!path.exists());
        std::fs::write(&path, b"").unwrap();
        let mut copy = Journaled::new(Some(spool.clone()));
        copy.add(batch(0));
        copy.written_as(written.batch.replay.as_ref().unwrap()).unwrap();
        std::fs::rename(copy.path().unwrap(), &path).unwrap();
        let mut pending = crashed.new_held();
        pending.add(batch(10));
        drop(crashed);
        let count = async || store.get_link("hold123").await.unwrap().unwrap().click_count;
        assert_eq!(count().await, 5);

        let mut restarted = StoreWriter::new(store.clone(), true, Duration::ZERO, Duration::from_secs(10));
        restarted.journal_in(&spool, 3);
        assert_eq!(restarted.kept(), 2);
        let first = restarted.replay_kept().await.unwrap();
        assert_eq!(
            (first.written, first.skipped),
            (0, 5),
            "the committed hold is skipped"
        );
        // The second hold's replay writes its first part (3 clicks), then "crashes".
        let kept = journal::read(pending.path().unwrap()).unwrap();
        assert!(kept.replay_as.is_none());
        let name = Replay {
            spool: "jtest".into(),
            through: 0,
        };
        journal::set_replay_as(pending.path().unwrap(), &name).unwrap();
        let mut part = fold(kept.events[..3].iter());
        part.replay = Some(Replay {
            spool: "jtest".into(),
            through: 3,
        });
        restarted.writer.record(&part).await.unwrap();
        let second = restarted.replay_kept().await.unwrap();
        assert_eq!(
            (second.written, second.skipped),
            (2, 3),
            "the part written before is skipped"
        );
        assert_eq!(restarted.kept(), 0);
        assert!(journal::leftovers(&spool).is_empty());
        assert_eq!(count().await, 10, "each click counted once");
    }

    /// Clicks over `links` links and `hours` hours each: `links × hours` link-hours.
    fn spread_clicks(enricher: &Enricher, links: usize, hours: i64) -> Batch {
        let start = Utc::now() - chrono::Duration::hours(hours + 1);
        let mut events = Vec::new();
        for link in 0..links {
            for hour in 0..hours {
                let mut e = enricher.enrich(bare_click((link % 250) as u8));
                e.short_code = format!("part{link:04}").into();
                e.clicked_at = start + chrono::Duration::hours(hour);
                events.push(e);
            }
        }
        Arc::new(events)
    }

    /// How long a create waits while a store writer writes a held hold of 6,000
    /// link-hours with writes cut into parts of `part_rows`, each row 50 µs of the
    /// store's time; and how many writes it took.
    async fn create_wait_during_a_big_click_write(part_rows: usize) -> (Duration, usize) {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_link(dir.path()).await;
        let (clicks, counts) = Counted::new(store.clone(), Duration::ZERO);
        *counts.per_row.lock().unwrap() = Duration::from_micros(50);
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let mut writer =
            StoreWriter::new(clicks, true, Duration::ZERO, Duration::from_secs(60)).with_part_rows(part_rows);
        writer.journal_in(&spool, 50_000);
        let mut held = writer.new_held();
        held.add(spread_clicks(&Enricher::new([7; 16], None), 600, 10));
        assert_eq!(held.rows(), 6_000);
        let write = tokio::spawn(async move {
            writer.write(&mut held).await.unwrap();
        });
        // The write has the store's one write connection now.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = tokio::time::Instant::now();
        let link = NewLink::example("create1");
        assert!(store.insert_links(&[link]).await.unwrap()[0].is_some());
        let waited = started.elapsed();
        write.await.unwrap();
        (waited, counts.writes.load(Ordering::SeqCst))
    }

    /// A create never queues behind a whole held click write (seconds under load on
    /// SQLite's one write connection): the write goes in parts and a create waits
    /// for one part at most. The same hold written whole keeps the create waiting for
    /// all of it (300 ms here), which is what this test would see without the parts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_waits_for_one_part_of_a_click_write_not_the_whole() {
        let (whole, writes) = create_wait_during_a_big_click_write(100_000).await;
        assert_eq!(writes, 1);
        assert!(
            whole >= Duration::from_millis(200),
            "the whole write held the create {whole:?}"
        );
        let (parted, writes) = create_wait_during_a_big_click_write(1_000).await;
        assert_eq!(writes, 6, "six parts of 1,000 link-hours");
        assert!(parted < Duration::from_millis(150), "a create waited {parted:?}");
    }

    /// A hold written in parts whose third part failed (after its COMMIT, as when the
    /// answer is lost) is replayed from its journal: the parts that committed are
    /// skipped, the rest written, each click counted once.
    #[tokio::test]
    async fn a_hold_written_in_parts_is_replayed_from_the_first_part_not_in() {
        for (fail, committed_parts) in [(Fail::AfterCommit, 3), (Fail::BeforeCommit, 2)] {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with_link(dir.path()).await;
            let (clicks, counts) = Counted::new(store.clone(), Duration::ZERO);
            *counts.fail.lock().unwrap() = Some(fail);
            counts.fail_at.store(3, Ordering::SeqCst);
            let spool = dir.path().join("spool");
            std::fs::create_dir_all(&spool).unwrap();
            let mut writer =
                StoreWriter::new(clicks, true, Duration::ZERO, Duration::from_secs(10)).with_part_rows(100);
            writer.journal_in(&spool, 50_000);
            let mut held = writer.new_held();
            held.add(spread_clicks(&Enricher::new([7; 16], None), 50, 10));
            let failed = writer.write(&mut held).await.unwrap_err();
            assert!(failed.written_as.is_some());
            let rows = async || {
                let (from, to) = (Utc::now() - chrono::Duration::days(2), Utc::now());
                let mut n = 0;
                for link in 0..50 {
                    for r in store.rollups(&format!("part{link:04}"), from, to).await.unwrap() {
                        n += r.clicks + r.bots;
                    }
                }
                n
            };
            assert_eq!(
                rows().await,
                committed_parts * 100,
                "{fail:?}: parts in before the replay"
            );
            writer.keep_failed(held, failed.written_as.as_ref(), &mut |_, _| {
                panic!("spooled, not kept")
            });
            let replayed = writer.replay_kept().await.unwrap();
            let skipped = committed_parts as usize * 100;
            assert_eq!(
                (replayed.skipped, replayed.written),
                (skipped, 500 - skipped),
                "{fail:?}: the parts in the store are skipped"
            );
            assert_eq!(rows().await, 500, "{fail:?}: each click counted once");
        }
    }

    /// The crash the spool's position file cannot cover: the store took a replayed
    /// chunk, the process died before the spool saved its position. After the restart
    /// the chunk is replayed again, under the same name, and the store skips it.
    #[tokio::test]
    async fn a_chunk_replayed_again_after_a_crash_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_link(dir.path()).await;
        let writer = tokio::sync::Mutex::new(StoreWriter::new(
            store.clone(),
            true,
            Duration::ZERO,
            Duration::from_secs(10),
        ));
        let enricher = Enricher::new([7; 16], None);
        let click = |i: u8| enricher.enrich(bare_click(i));
        let spool_dir = dir.path().join("spool");
        let replay_once = |commit: bool| {
            let spool = Spool::open(&spool_dir, "store").unwrap();
            let writer = &writer;
            async move {
                let chunk = spool.read(2).unwrap();
                let at = spool.replay_at(chunk.next_offset);
                writer.lock().await.replay(&chunk, at).await.unwrap();
                if commit {
                    spool.commit(chunk.next_offset).unwrap();
                }
                chunk.events.len()
            }
        };
        Spool::open(&spool_dir, "store")
            .unwrap()
            .append(&[click(1), click(2), click(3)], true)
            .unwrap();
        assert_eq!(replay_once(false).await, 2, "first two taken, then the crash");
        assert_eq!(replay_once(true).await, 2, "the same two again after the restart");
        assert_eq!(replay_once(true).await, 1, "then the rest");
        let count = store.get_link("hold123").await.unwrap().unwrap().click_count;
        assert_eq!(count, 3, "each click counted once");
    }
}
