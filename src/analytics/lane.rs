//! One sink's lane: the task that takes the batcher's batches for one sink, writes
//! them, spools what fails and replays the spool.
//!
//! Each lane runs on its own, so a hung Kafka broker never delays the store (or the
//! other way round). What a lane writes to is a [`LaneWriter`]: the store's
//! ([`super::store_writer::StoreWriter`]), which holds batches folded into one
//! [`super::batch::ClickBatch`] and names its writes, or a plain event sink's
//! ([`super::sink::EventWriter`]).
//!
//! A lane that falls behind takes every batch waiting for it (up to
//! [`LANE_BACKLOG`]) as one write: a bigger write touches each link-hour once for
//! more clicks, so the writer catches up instead of falling further behind. While a
//! write runs, the lane keeps taking batches in for the next one until that is full
//! (see [`full`]), so a write that takes seconds does not send the clicks behind it
//! through the spool. Beyond that and [`LANE_BACKLOG`] the batcher appends batches to
//! the lane's spool itself, so memory stays bounded however slow a sink is.
//!
//! A lane whose writer fails spools what it held and rests for a second. The backlog
//! is replayed in file order, a chunk at a time, whenever no live batch is waiting,
//! so a backlog drains as fast as the sink allows without ever holding up new clicks.
//! A sink that needs order (Kafka) gets new batches appended behind its backlog
//! instead.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::batch::Replay;
use super::event::ClickEvent;
use super::port::ClickStoreError;
use super::shared::{LaneSpool, Shared};
use super::spool::{Chunk, SpoolError};
use super::{Settings, off_workers};

/// A batch as the batcher cuts it; shared by every lane.
pub type Batch = Arc<Vec<ClickEvent>>;

/// After a failure, a sink is tried again this much later.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Batches waiting for a lane before the batcher spools for it.
pub const LANE_BACKLOG: usize = 4;
/// Clicks a lane holds at most before it writes them (unless a batch alone is
/// bigger). A lane holds at most two such folds: the one being written and the next.
/// Under a saturating load this is what one store write carries, so it sets how often
/// each link-hour row is rewritten: holds of 160,000 clicks over 100,000 links cost
/// about 40 % more CPU per redirect at saturation than holds of 800,000
/// (bench/results/2026-12-06.md, "Smaller holds").
pub const HOLD_EVENTS: usize = 800_000;
/// Link-hour rows a holding lane gathers at most (each a few hundred bytes).
const HOLD_ROWS: usize = 100_000;
/// Spool chunks replayed in a row before looking for live batches again.
const REPLAY_BURST: usize = 8;

/// A sink's failure, carrying the sink's own error.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SinkError(Box<dyn std::error::Error + Send + Sync>);

impl SinkError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }
}

/// Why a write or a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Store(#[from] ClickStoreError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// A failed write, and the name it was written under if it had one: it may have
/// committed all the same, so its events are spooled under that name.
#[derive(Debug)]
pub struct Failed {
    pub error: WriteError,
    pub written_as: Option<Replay>,
}

impl From<WriteError> for Failed {
    fn from(error: WriteError) -> Self {
        Self {
            error,
            written_as: None,
        }
    }
}

/// What a replayed chunk came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Events handed to the sink.
    pub written: usize,
    /// Events of failed writes that had committed after all, so not written again.
    pub skipped: usize,
}

/// What a lane holds between writes.
pub trait Held: Default + Send + Sync {
    /// Takes one more batch in.
    fn add(&mut self, batch: Batch);
    fn events(&self) -> usize;
    /// What a write of this costs, in rows.
    fn rows(&self) -> usize;
    /// Calls `f` with every event held, e.g. to spool them after a failed write.
    fn with_events(&self, f: &mut dyn FnMut(&[&ClickEvent]));
    /// When the earliest click held happened (for `kurz_click_lag_seconds`).
    fn oldest(&self) -> Option<chrono::DateTime<chrono::Utc>>;
}

/// What a lane writes to.
#[async_trait]
pub trait LaneWriter: Send + Sync + 'static {
    type Held: Held;
    /// Names the sink in metrics, logs and the spool file.
    fn name(&self) -> &'static str;
    /// Must events arrive in the order they happened? Then new batches wait behind a
    /// spooled backlog.
    fn ordered(&self) -> bool;
    /// Is what was held for `held_for` to be written now (or held for more)?
    fn due(&self, held: &Self::Held, held_for: Duration) -> bool;
    /// Writes everything held, or fails as a whole. Bounded by the sink timeout.
    async fn write(&mut self, held: &mut Self::Held) -> Result<(), Failed>;
    /// Writes a chunk replayed from the spool, which ends at `at`.
    async fn replay(&mut self, chunk: &Chunk, at: Replay) -> Result<Replayed, WriteError>;
    /// Does writing run on this process's CPU only (an embedded database)? Then the
    /// lane runs below the redirects' priority
    /// ([`super::background::spawn_below_workers`]).
    fn in_process(&self) -> bool {
        false
    }
    /// A new, empty hold.
    fn new_held(&self) -> Self::Held {
        Self::Held::default()
    }
    /// A write of `held` failed: keep its events for a replay. By default `spool`
    /// appends them to the lane's spool, marked with the failed write's name.
    fn keep_failed(
        &mut self,
        held: Self::Held,
        written_as: Option<&Replay>,
        spool: &mut dyn FnMut(&[&ClickEvent], Option<&Replay>),
    ) {
        held.with_events(&mut |events| spool(events, written_as));
    }
    /// Holds the writer keeps itself for a replay, instead of the spool.
    fn kept(&self) -> usize {
        0
    }
    /// Replays the oldest hold the writer kept.
    async fn replay_kept(&mut self) -> Result<Replayed, WriteError> {
        Ok(Replayed::default())
    }
}

/// A sink call bounded by `timeout`; a timeout is an error like the sink's own.
pub async fn within<T, E: Into<WriteError>>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, WriteError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(WriteError::Timeout(timeout)),
    }
}

/// The lane of the writer at `index` in `shared.lanes`: writes batches, spools what
/// fails, replays the spool, until the batcher closes `rx`.
pub async fn run<W: LaneWriter>(
    shared: Arc<Shared>,
    index: usize,
    mut rx: mpsc::Receiver<Batch>,
    settings: Settings,
    mut writer: W,
) {
    let Some(lane) = shared.lanes.get(index) else {
        return;
    };
    let name = writer.name();
    let flush_seconds = metrics::histogram!("kurz_click_flush_duration_seconds", "sink" => name);
    let lag_seconds = metrics::histogram!("kurz_click_lag_seconds", "sink" => name);
    let spool_bytes = metrics::gauge!("kurz_click_spool_bytes", "sink" => name);
    let mut retry_at = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut incoming: Vec<Batch> = Vec::with_capacity(LANE_BACKLOG);
    let most_events = hold_cap(&settings);
    // Events one write may carry: learnt from the writes so far (see `write_cap`).
    let mut cap = most_events;
    let mut held = writer.new_held();
    let mut held_since: Option<Instant> = None;
    loop {
        let closed = tokio::select! {
            n = rx.recv_many(&mut incoming, LANE_BACKLOG) => n == 0,
            _ = tick.tick() => false,
        };
        if !incoming.is_empty() && held_since.is_none() {
            held_since = Some(Instant::now());
        }
        for batch in incoming.drain(..) {
            held.add(batch);
        }
        let held_for = held_since.map_or(Duration::ZERO, |t| t.elapsed());
        let due = closed || full(&held, cap) || writer.due(&held, held_for);
        if due && held.events() > 0 {
            held_since = None;
            let n = held.events();
            if writer.ordered() && lane.spool.backlog() > 0 {
                held.with_events(&mut |events| shared.spool_one(lane, events, true));
                held = writer.new_held();
            } else {
                let mut next = writer.new_held();
                let oldest = held.oldest();
                let started = Instant::now();
                let write = writer.write(&mut held);
                let has_room = |h: &W::Held| !full(h, cap);
                let written = take_while_writing(write, &mut rx, &mut incoming, &mut next, has_room).await;
                let took = started.elapsed();
                flush_seconds.record(took.as_secs_f64());
                match written {
                    Ok(()) => {
                        metrics::counter!("kurz_click_events_written_total", "sink" => name)
                            .increment(n as u64);
                        // From the oldest click's redirect to its write committing.
                        if let Some(oldest) = oldest {
                            let lag = chrono::Utc::now() - oldest;
                            lag_seconds.record(lag.as_seconds_f64().max(0.0));
                        }
                        cap = write_cap(cap, Some((n, took)), &settings, most_events);
                    }
                    Err(failed) => {
                        tracing::warn!(sink = name, error = %failed.error, events = n, "click sink failed; spooling");
                        retry_at = Instant::now() + RETRY_AFTER;
                        writer.keep_failed(
                            std::mem::take(&mut held),
                            failed.written_as.as_ref(),
                            &mut |events, written_as| shared.spool_marked(lane, events, true, written_as),
                        );
                        cap = write_cap(cap, None, &settings, most_events);
                    }
                }
                // What arrived during the write is held from now: it waited no longer
                // than a write, and the next write comes after a hold at most.
                if next.events() > 0 {
                    held_since = Some(Instant::now());
                }
                held = next;
            }
        }
        let mut burst = 0;
        while burst < REPLAY_BURST
            && rx.is_empty()
            && Instant::now() >= retry_at
            && (writer.kept() > 0 || lane.spool.backlog() > 0)
        {
            burst += 1;
            let replayed = if writer.kept() > 0 {
                let started = std::time::Instant::now();
                let replayed = writer.replay_kept().await;
                flush_seconds.record(started.elapsed().as_secs_f64());
                replayed.map(|r| note_replayed(lane.name, r))
            } else {
                replay_chunk(&mut writer, lane, &settings, &flush_seconds, &shared.dropped).await
            };
            if let Err(e) = replayed {
                tracing::warn!(sink = name, error = %e, "click replay failed; will retry");
                retry_at = Instant::now() + RETRY_AFTER;
            }
        }
        spool_bytes.set(lane.spool.backlog() as f64);
        if closed {
            break;
        }
    }
    spool_bytes.set(lane.spool.backlog() as f64);
}

/// Clicks one write may carry at most: the hold's cap, in clicks rather than batches,
/// so that smaller batches (less memory in flight) do not make writes smaller too.
fn hold_cap(settings: &Settings) -> usize {
    settings.hold_events.max(settings.batch_max)
}

/// Is a fold as big as one write may be? [`HOLD_ROWS`] link-hours, or `cap` events
/// (from [`write_cap`]).
fn full<H: Held>(held: &H, cap: usize) -> bool {
    held.rows() >= HOLD_ROWS || held.events() >= cap
}

/// How many events the next write may carry, from the last write: `Some((events,
/// time))` if it succeeded, `None` if it failed. Why: a write's time grows with its
/// events (raw rows), and a write slower than the sink timeout counts as failed, so
/// its whole fold is spooled. Holding and taking in during writes make folds big;
/// into a loaded PostgreSQL a fold of 846,742 clicks took over the 15 s timeout. The
/// cap is what the last write's speed finishes in half the timeout, halved after a
/// failure, and never below one batch or above `most`.
pub fn write_cap(cap: usize, last: Option<(usize, Duration)>, settings: &Settings, most: usize) -> usize {
    let floor = settings.batch_max.max(1);
    let next = match last {
        // Too short a write says nothing about speed.
        Some((_, took)) if took < Duration::from_millis(50) => return cap,
        Some((events, took)) => {
            let per_second = events as f64 / took.as_secs_f64();
            (per_second * settings.sink_timeout.as_secs_f64() / 2.0) as usize
        }
        None => cap / 2,
    };
    next.clamp(floor, most.max(floor))
}

/// Awaits a write while taking in the batches that arrive meanwhile, into `next`,
/// as long as `has_room` says it may hold more. Why: a write can take seconds (a held
/// write into a loaded PostgreSQL took 1–2 s per 50,000 raw rows), longer than the
/// [`LANE_BACKLOG`] batches the channel holds, and the batcher spools whatever the
/// channel cannot take; the benchmark's end-to-end run spooled a sixth to a quarter of
/// its clicks that way, with no sink failing. Taken in here, they wait bounded like a
/// hold and are written next, without a round trip through the spool file.
async fn take_while_writing<H: Held, T>(
    write: impl std::future::Future<Output = T>,
    rx: &mut mpsc::Receiver<Batch>,
    incoming: &mut Vec<Batch>,
    next: &mut H,
    has_room: impl Fn(&H) -> bool,
) -> T {
    tokio::pin!(write);
    let mut closed = false;
    loop {
        tokio::select! {
            biased;
            result = &mut write => return result,
            n = rx.recv_many(incoming, LANE_BACKLOG), if !closed && has_room(next) => {
                // A closed channel is seen again by the lane's loop, after the write.
                closed = n == 0;
                for batch in incoming.drain(..) {
                    next.add(batch);
                }
            }
        }
    }
}

/// Replays one chunk of the spool, in file order; the position only moves once the
/// sink has taken the chunk.
async fn replay_chunk<W: LaneWriter>(
    writer: &mut W,
    lane: &LaneSpool,
    settings: &Settings,
    flush_seconds: &metrics::Histogram,
    dropped: &metrics::Counter,
) -> Result<(), WriteError> {
    let chunk = off_workers(|| lane.spool.read(settings.batch_max))?;
    if chunk.corrupt > 0 {
        metrics::counter!("kurz_click_spool_corrupt_records_total").increment(chunk.corrupt);
        // A record is one event: an unreadable one is a lost click, and "dropped" is
        // the count that must stay 0.
        dropped.increment(chunk.corrupt);
        tracing::error!(records = chunk.corrupt, "corrupt click spool records skipped");
    }
    if !chunk.events.is_empty() {
        let started = std::time::Instant::now();
        let replayed = writer
            .replay(&chunk, lane.spool.replay_at(chunk.next_offset))
            .await?;
        flush_seconds.record(started.elapsed().as_secs_f64());
        note_replayed(lane.name, replayed);
    }
    Ok(off_workers(|| lane.spool.commit(chunk.next_offset))?)
}

/// Counts what a replay wrote, and what it skipped as already written.
fn note_replayed(sink: &'static str, replayed: Replayed) {
    if replayed.skipped > 0 {
        metrics::counter!("kurz_click_events_already_written_total", "sink" => sink)
            .increment(replayed.skipped as u64);
        tracing::info!(
            events = replayed.skipped,
            "spooled clicks of a write that had committed after all skipped"
        );
    }
    metrics::counter!("kurz_click_events_replayed_total", "sink" => sink).increment(replayed.written as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_is_capped_in_clicks_not_in_batches() {
        // How many clicks a write carries sets how often each rollup row is
        // rewritten; the batch size only sets the memory of the batches in flight.
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::for_tests(dir.path());
        settings.hold_events = HOLD_EVENTS;
        for batch in [1_000, 10_000, 50_000] {
            settings.batch_max = batch;
            assert_eq!(hold_cap(&settings), HOLD_EVENTS, "batches of {batch}");
        }
        settings.batch_max = 2 * HOLD_EVENTS;
        assert_eq!(
            hold_cap(&settings),
            2 * HOLD_EVENTS,
            "a batch alone may exceed it"
        );
    }

    #[test]
    fn a_write_carries_what_the_last_one_finishes_in_half_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::for_tests(dir.path());
        settings.batch_max = 1_000;
        settings.sink_timeout = Duration::from_secs(10);
        let most = 16_000;
        let secs = |events, s| Some((events, Duration::from_secs(s)));
        // 5,000 events in 5 s: 1,000/s, so 5 s (half the timeout) carry 5,000.
        assert_eq!(write_cap(most, secs(5_000, 5), &settings, most), 5_000);
        // A fast sink is held to the hold's own cap, a slow one to one batch.
        assert_eq!(write_cap(most, secs(5_000, 1), &settings, most), most);
        assert_eq!(write_cap(most, secs(100, 10), &settings, most), 1_000);
        // A failure halves it; a write too short to time keeps it.
        assert_eq!(write_cap(8_000, None, &settings, most), 4_000);
        assert_eq!(write_cap(1_500, None, &settings, most), 1_000);
        assert_eq!(
            write_cap(7_000, Some((10, Duration::from_millis(1))), &settings, most),
            7_000
        );
    }
}
