//! The batcher: drains the click queue, enriches events and hands batches to one
//! writer task per sink.
//!
//! A batch is cut when it is full or its oldest event has waited the flush interval.
//! Each sink's writer runs on its own, so a hung Kafka broker never delays the store
//! (or the other way round). A writer that falls behind takes every batch waiting for
//! it (up to [`LANE_BACKLOG`]) as one write: a bigger write touches each link-hour
//! once for more clicks, so the writer catches up instead of falling further behind.
//! While a write runs, the writer keeps taking batches in for the next one until that
//! is full (see [`full`]), so a write that takes seconds does not send the clicks
//! behind it through the spool. Beyond that and [`LANE_BACKLOG`]
//! the batcher appends batches to that sink's spool itself, so memory stays bounded
//! however slow a sink is.
//!
//! A sink may ask its writer to hold batches ([`super::Sink::hold`]): the store's
//! writer appends them on arrival to one [`super::batch::ClickBatch`] and writes it
//! once the hold is over, since its cost is per link-hour row rather than per click:
//! ten seconds of uniform traffic over 20,000 links rewrite each row once instead of
//! ten times. A write that touches few rows ([`LIGHT_ROWS`]) is cheap and is not held,
//! so under light traffic stats lag by the flush interval only. The held batch
//! keeps every click as a compact row, so a failed write still spools exactly
//! its events, and shutdown writes it like any other.
//!
//! A writer whose sink fails spools the batch and rests for a second. The backlog is
//! replayed in file order, a chunk at a time, whenever no live batch is waiting, so a
//! backlog drains as fast as the sink allows without ever holding up new clicks. A
//! sink that needs order (Kafka) gets new batches appended behind its backlog instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::event::ClickEvent;
use super::queue::CaptureQueue;
use super::sink::{Batch, Staged};
use super::{Lane, Settings, Shared};

/// After a failure, a sink is tried again this much later.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Batches waiting for a sink writer before the batcher spools for it.
const LANE_BACKLOG: usize = 4;
/// Full batches a holding writer folds in at most before it writes them (a folded
/// click holds ~100 bytes of raw block, so 16 batches of 50,000 are ~80 MB). A
/// writer holds at most two such folds: the one being written and the next.
const HOLD_BATCHES: usize = 16;
/// Link-hour rows a holding writer gathers at most (each a few hundred bytes).
const HOLD_ROWS: usize = 100_000;
/// A write touching no more rows than this is cheap (~15 ms): it is not held, so
/// stats lag by only the flush interval unless traffic is heavy.
pub const LIGHT_ROWS: usize = 1_000;
/// Spool chunks replayed in a row before looking for live batches again.
const REPLAY_BURST: usize = 8;
/// How often the batcher looks at the queue.
const POLL: Duration = Duration::from_millis(10);
/// Clicks enriched per step of the batcher before it lets other tasks run: enriching
/// a whole 50,000-click batch at once would hold a runtime worker for ~100 ms.
const ENRICH_STEP: usize = 1024;

pub async fn run(queue: Arc<CaptureQueue>, shared: Arc<Shared>, settings: Settings, stop: Arc<Notify>) {
    let depth = metrics::gauge!("kurz_click_queue_depth");
    for lane in &shared.lanes {
        for name in ["written", "replayed", "spooled"] {
            metrics::counter!(format!("kurz_click_events_{name}_total"), "sink" => lane.sink.name())
                .increment(0);
        }
    }
    let mut writers = Vec::with_capacity(shared.lanes.len());
    let mut handles = Vec::with_capacity(shared.lanes.len());
    for i in 0..shared.lanes.len() {
        let (tx, lane_rx) = mpsc::channel::<Batch>(LANE_BACKLOG);
        writers.push(tx);
        handles.push(tokio::spawn(write_lane(
            shared.clone(),
            i,
            lane_rx,
            settings.clone(),
        )));
    }
    // Compile the user-agent rules before the first click needs them.
    let _ = tokio::task::spawn_blocking(super::enrich::warm_up).await;

    // The buffer the last take handed over, emptied: the next take swaps it in.
    let mut spare: Vec<u8> = Vec::new();
    let mut memo = super::enrich::Memo::default();
    let mut pending: Vec<ClickEvent> = Vec::with_capacity(settings.batch_max);
    let mut oldest: Option<Instant> = None;
    let mut closing = false;
    // The queue is looked at every POLL rather than woken per click: a wake-up per
    // click would be a cross-thread wake-up for nearly every click under load.
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush_at = oldest.map(|t| t + settings.flush_interval);
        if !closing {
            tokio::select! {
                _ = poll.tick() => {}
                _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {}
                _ = stop.notified() => {
                    // New clicks now go straight to the spools; drain what is queued.
                    closing = true;
                    queue.close();
                }
            }
        }
        for shard in 0..queue.shards() {
            spare.clear();
            if queue.take(shard, &mut spare) == 0 {
                continue;
            }
            for (i, click) in super::queue::decode(&spare).enumerate() {
                if pending.is_empty() {
                    oldest = Some(Instant::now());
                }
                pending.push(shared.enricher.enrich_memo(&mut memo, click));
                if pending.len() >= settings.batch_max {
                    cut(&mut pending, settings.batch_max, &shared, &writers);
                    oldest = None;
                }
                if (i + 1) % ENRICH_STEP == 0 {
                    tokio::task::yield_now().await;
                }
            }
            tokio::task::yield_now().await;
        }
        let waiting = queue.len();
        depth.set(waiting as f64);
        let closed = closing && waiting == 0;
        let due = flush_at.is_some_and(|t| Instant::now() >= t);
        if !pending.is_empty() && (due || closed) {
            cut(&mut pending, settings.batch_max, &shared, &writers);
            oldest = None;
        }
        if closed {
            break;
        }
    }
    depth.set(0.0);
    // Writers finish what they hold (or spool it), then stop.
    drop(writers);
    for h in handles {
        let _ = h.await;
    }
}

/// Hands the pending events to every sink's writer as one batch; a sink whose
/// writer is [`LANE_BACKLOG`] batches behind gets them in its spool instead.
fn cut(pending: &mut Vec<ClickEvent>, batch_max: usize, shared: &Shared, writers: &[mpsc::Sender<Batch>]) {
    let batch: Batch = Arc::new(std::mem::replace(pending, Vec::with_capacity(batch_max)));
    for (lane, writer) in shared.lanes.iter().zip(writers) {
        if let Err(mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b)) =
            writer.try_send(batch.clone())
        {
            shared.spool_one(lane, &b.iter().collect::<Vec<_>>(), true);
        }
    }
}

/// One sink's writer: writes batches, spools what fails, replays the spool.
async fn write_lane(shared: Arc<Shared>, index: usize, mut rx: mpsc::Receiver<Batch>, settings: Settings) {
    let Some(lane) = shared.lanes.get(index) else {
        return;
    };
    let name = lane.sink.name();
    let flush_seconds = metrics::histogram!("kurz_click_flush_duration_seconds", "sink" => name);
    let spool_bytes = metrics::gauge!("kurz_click_spool_bytes", "sink" => name);
    let mut retry_at = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut incoming: Vec<Batch> = Vec::with_capacity(LANE_BACKLOG);
    let hold = lane.sink.hold();
    let most_events = settings.batch_max.saturating_mul(HOLD_BATCHES);
    // Events one write may carry: learnt from the writes so far (see `write_cap`).
    let mut cap = most_events;
    let mut staged = Staged::for_sink(lane.sink.as_ref());
    let mut held_since: Option<Instant> = None;
    let mut names = WriteNames::default();
    loop {
        let closed = tokio::select! {
            n = rx.recv_many(&mut incoming, LANE_BACKLOG) => n == 0,
            _ = tick.tick() => false,
        };
        if !incoming.is_empty() && held_since.is_none() {
            held_since = Some(Instant::now());
        }
        for batch in incoming.drain(..) {
            staged.add(batch);
        }
        let due = closed
            || staged.rows() <= settings.light_rows
            || full(&staged, cap)
            || held_since.is_some_and(|t| t.elapsed() >= hold);
        if due && staged.events() > 0 {
            held_since = None;
            let n = staged.events();
            if lane.sink.ordered() && lane.spool.backlog() > 0 {
                staged.with_events(|events| shared.spool_one(lane, events, true));
                staged = Staged::for_sink(lane.sink.as_ref());
            } else {
                let mut next = Staged::for_sink(lane.sink.as_ref());
                let write_name = names.next(lane.sink.as_ref(), settings.sink_timeout).await;
                let started = Instant::now();
                let written = match &write_name {
                    // Nothing was attempted: the sink did not even take the name.
                    Err(e) => Err(e.clone()),
                    Ok(write_name) => {
                        staged.mark(write_name.clone());
                        let write = timed(&settings, &flush_seconds, lane.sink.write_staged(&staged));
                        let has_room = |s: &Staged| !full(s, cap);
                        take_while_writing(write, &mut rx, &mut incoming, &mut next, has_room).await
                    }
                };
                let took = started.elapsed();
                match written {
                    Ok(()) => {
                        metrics::counter!("kurz_click_events_written_total", "sink" => name)
                            .increment(n as u64);
                        cap = write_cap(cap, Some((n, took)), &settings, most_events);
                    }
                    Err(e) => {
                        tracing::warn!(sink = name, error = %e, events = n, "click sink failed; spooling");
                        retry_at = Instant::now() + RETRY_AFTER;
                        // The write may have committed all the same: its events go to the
                        // spool under its name, and the name is not used again.
                        let written_as = write_name.ok().flatten();
                        if written_as.is_some() {
                            names.drop_writer();
                        }
                        staged.with_events(|events| {
                            shared.spool_marked(lane, events, true, written_as.as_ref())
                        });
                        cap = write_cap(cap, None, &settings, most_events);
                    }
                }
                // What arrived during the write is held from now: it waited no longer
                // than a write, and the next write comes after a hold at most.
                if next.events() > 0 {
                    held_since = Some(Instant::now());
                }
                staged = next;
            }
        }
        let mut burst = 0;
        while burst < REPLAY_BURST && rx.is_empty() && Instant::now() >= retry_at && lane.spool.backlog() > 0
        {
            burst += 1;
            if let Err(e) = replay_chunk(lane, &settings, &flush_seconds, &shared.dropped).await {
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

/// Names each live write of a sink that can record the name with the write (the
/// store, [`Sink::claim`]): (writer, n), n counting up from 1 under one writer name.
/// A write that fails may have committed anyway (a timeout can fire after the
/// database took the COMMIT), so it is spooled under its name and the writer takes a
/// new one: the old name's mark then stays at n (committed) or below (not) for good,
/// which is what the replay asks the sink ([`Sink::written`]). Without this such a
/// write would be counted twice.
#[derive(Default)]
struct WriteNames {
    writer: Option<String>,
    n: u64,
    /// The sink cannot record names: writes go unnamed.
    unnamed: bool,
}

impl WriteNames {
    /// The next write's name (`None` for a sink that records none), or why the sink
    /// could not take a new writer name, in which case nothing may be written.
    async fn next(
        &mut self,
        sink: &dyn super::Sink,
        timeout: Duration,
    ) -> Result<Option<super::Replay>, String> {
        if self.unnamed {
            return Ok(None);
        }
        let writer = match &self.writer {
            Some(w) => w.clone(),
            None => {
                let w = format!("w{:032x}", rand::random::<u128>());
                if !within(timeout, sink.claim(&w)).await? {
                    self.unnamed = true;
                    return Ok(None);
                }
                self.writer = Some(w.clone());
                self.n = 0;
                w
            }
        };
        self.n += 1;
        Ok(Some(super::Replay {
            spool: writer,
            through: self.n,
        }))
    }

    fn drop_writer(&mut self) {
        self.writer = None;
    }
}

/// Is a fold as big as one write may be? [`HOLD_ROWS`] link-hours, or `cap` events
/// (from [`write_cap`]).
fn full(staged: &Staged, cap: usize) -> bool {
    staged.rows() >= HOLD_ROWS || staged.events() >= cap
}

/// How many events the next write may carry, from the last write: `Some((events,
/// time))` if it succeeded, `None` if it failed. Why: a write's time grows with its
/// events (raw rows), and a write slower than the sink timeout counts as failed, so
/// its whole fold is spooled. Holding and taking in during writes make folds big;
/// into a loaded PostgreSQL a fold of 846,742 clicks took over the 15 s timeout. The
/// cap is what the last write's speed finishes in half the timeout, halved after a
/// failure, and never below one batch or above `most`.
fn write_cap(cap: usize, last: Option<(usize, Duration)>, settings: &Settings, most: usize) -> usize {
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

/// Awaits a sink write while taking in the batches that arrive meanwhile, into `next`,
/// as long as `has_room` says it may hold more. Why: a write can take seconds (a held
/// write into a loaded PostgreSQL took 1–2 s per 50,000 raw rows), longer than the
/// [`LANE_BACKLOG`] batches the channel holds, and the batcher spools whatever the
/// channel cannot take; the benchmark's end-to-end run spooled a sixth to a quarter of
/// its clicks that way, with no sink failing. Taken in here, they wait bounded like a
/// hold and are written next, without a round trip through the spool file.
async fn take_while_writing(
    write: impl std::future::Future<Output = Result<(), String>>,
    rx: &mut mpsc::Receiver<Batch>,
    incoming: &mut Vec<Batch>,
    next: &mut Staged,
    has_room: impl Fn(&Staged) -> bool,
) -> Result<(), String> {
    tokio::pin!(write);
    let mut closed = false;
    loop {
        tokio::select! {
            biased;
            result = &mut write => return result,
            n = rx.recv_many(incoming, LANE_BACKLOG), if !closed && has_room(next) => {
                // A closed channel is seen again by the writer's loop, after the write.
                closed = n == 0;
                for batch in incoming.drain(..) {
                    next.add(batch);
                }
            }
        }
    }
}

/// A sink write, bounded by the sink timeout and recorded in the flush histogram.
async fn timed(
    settings: &Settings,
    flush_seconds: &metrics::Histogram,
    write: impl std::future::Future<Output = Result<(), super::SinkError>>,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let result = within(settings.sink_timeout, write).await;
    flush_seconds.record(started.elapsed().as_secs_f64());
    result
}

/// A sink call bounded by `timeout`; a timeout is an error like the sink's own.
async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, super::SinkError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Replays one chunk of the spool, in file order; the position only moves once the
/// sink has taken the chunk.
async fn replay_chunk(
    lane: &Lane,
    settings: &Settings,
    flush_seconds: &metrics::Histogram,
    dropped: &metrics::Counter,
) -> Result<(), String> {
    let chunk = super::off_workers(|| lane.spool.read(settings.batch_max)).map_err(|e| e.to_string())?;
    if chunk.corrupt > 0 {
        metrics::counter!("kurz_click_spool_corrupt_records_total").increment(chunk.corrupt);
        // A record is one event: an unreadable one is a lost click, and "dropped" is
        // the count that must stay 0.
        dropped.increment(chunk.corrupt);
        tracing::error!(records = chunk.corrupt, "corrupt click spool records skipped");
    }
    // Events of failed writes that committed after all are in the sink already.
    let mut in_already: Vec<&super::Replay> = Vec::new();
    let mut asked: Vec<&super::Replay> = Vec::new();
    for w in chunk.written_as.iter().flatten() {
        if !asked.contains(&w) {
            asked.push(w);
            if within(settings.sink_timeout, lane.sink.written(w)).await? {
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
    if skipped > 0 {
        metrics::counter!("kurz_click_events_already_written_total", "sink" => lane.sink.name())
            .increment(skipped as u64);
        tracing::info!(
            events = skipped,
            "spooled clicks of a write that had committed after all skipped"
        );
    }
    if !events.is_empty() {
        let replay = lane.spool.replay_at(chunk.next_offset);
        timed(settings, flush_seconds, lane.sink.write_replayed(&events, replay)).await?;
        metrics::counter!("kurz_click_events_replayed_total", "sink" => lane.sink.name())
            .increment(events.len() as u64);
    }
    super::off_workers(|| lane.spool.commit(chunk.next_offset)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use chrono::Utc;

    use super::super::event::bounded;
    use super::super::{
        Analytics, Captured, ClickEvent, Enricher, Settings, Sink, SinkError, Spool, Staged, StoreSink,
    };
    use super::*;
    use crate::domain::{Metadata, RedirectType, ShortCode, TargetUrl};
    use crate::store::{LinkStore, NewLink, SqliteStore};

    /// The real store sink on a real SQLite file, counting the writes that reach it
    /// and the events that came back from the spool. `delay` makes each write that
    /// much slower: a fake, since a loaded PostgreSQL's seconds-long writes cannot be
    /// caused on demand in a unit test.
    /// `fail` makes the first live write fail: before it reaches the store, or
    /// after the store committed it (its answer lost, as when the sink timeout fires
    /// during a slow COMMIT) — a fake too, as that moment cannot be hit on demand.
    struct Counted {
        inner: StoreSink,
        writes: AtomicUsize,
        replayed: AtomicUsize,
        delay: Duration,
        fail: std::sync::Mutex<Option<Fail>>,
    }

    #[derive(Clone, Copy, Debug)]
    enum Fail {
        BeforeCommit,
        AfterCommit,
    }

    impl Counted {
        fn new(inner: StoreSink, delay: Duration) -> Self {
            Self {
                inner,
                writes: AtomicUsize::new(0),
                replayed: AtomicUsize::new(0),
                delay,
                fail: std::sync::Mutex::new(None),
            }
        }
    }

    #[async_trait]
    impl Sink for Counted {
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn ordered(&self) -> bool {
            self.inner.ordered()
        }
        fn hold(&self) -> Duration {
            self.inner.hold()
        }
        fn folds(&self) -> bool {
            self.inner.folds()
        }
        async fn write(&self, events: &[&ClickEvent]) -> Result<(), SinkError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.inner.write(events).await
        }
        async fn write_staged(&self, staged: &Staged) -> Result<(), SinkError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let fail = self.fail.lock().unwrap().take();
            match fail {
                None => self.inner.write_staged(staged).await,
                Some(Fail::BeforeCommit) => Err(SinkError("connection refused".into())),
                Some(Fail::AfterCommit) => {
                    self.inner.write_staged(staged).await?;
                    Err(SinkError("no answer within 15s".into()))
                }
            }
        }
        async fn claim(&self, writer: &str) -> Result<bool, SinkError> {
            self.inner.claim(writer).await
        }
        async fn written(&self, written_as: &super::super::batch::Replay) -> Result<bool, SinkError> {
            self.inner.written(written_as).await
        }
        async fn write_replayed(
            &self,
            events: &[&ClickEvent],
            replay: super::super::batch::Replay,
        ) -> Result<(), SinkError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.replayed.fetch_add(events.len(), Ordering::SeqCst);
            self.inner.write_replayed(events, replay).await
        }
    }

    /// Batches that arrive while a slow write runs wait in memory for the next write,
    /// not in the spool: 150 clicks, one every 2 ms, make ~15 batches of 10 while the
    /// first of them is written (300 ms), more than the [`LANE_BACKLOG`] of 4 the
    /// channel holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_arriving_during_a_slow_write_are_not_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_link(dir.path()).await;
        let sink = Arc::new(Counted::new(
            StoreSink::new(store.clone(), true, Duration::ZERO),
            Duration::from_millis(300),
        ));
        let mut settings = small_batches(dir.path(), 0);
        // The first write's speed sets how much the next may carry (`write_cap`): a
        // few clicks in 300 ms is a slow sink, so a long timeout keeps that cap above
        // the 150 clicks here whatever the first batch holds.
        settings.sink_timeout = Duration::from_secs(120);
        rules_compiled().await;
        let analytics = Analytics::start(settings, Enricher::new([7; 16], None), vec![sink.clone()]).unwrap();
        for i in 0..150u8 {
            analytics.capture(bare_click(i));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        analytics.shutdown().await;
        let link = store.get_link("hold123").await.unwrap().unwrap();
        assert_eq!(link.click_count, 150, "every click is counted");
        assert_eq!(
            sink.replayed.load(Ordering::SeqCst),
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
            let sink = Arc::new(Counted::new(
                StoreSink::new(store.clone(), true, Duration::ZERO),
                Duration::ZERO,
            ));
            *sink.fail.lock().unwrap() = Some(fail);
            rules_compiled().await;
            let analytics = Analytics::start(
                small_batches(dir.path(), 0),
                Enricher::new([7; 16], None),
                vec![sink.clone()],
            )
            .unwrap();
            for i in 0..30u8 {
                analytics.capture(bare_click(i));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // The failed write's events wait a retry (1 s) in the spool.
            let spool = dir.path().join("spool").join("store.spool");
            let deadline = Instant::now() + Duration::from_secs(10);
            let pending = || std::fs::metadata(&spool).map(|m| m.len() > 0).unwrap_or(false);
            while (sink.fail.lock().unwrap().is_some() || pending()) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            analytics.shutdown().await;
            assert!(!pending(), "{fail:?}: the spool was replayed");
            let link = store.get_link("hold123").await.unwrap().unwrap();
            assert_eq!(link.click_count, 30, "{fail:?}: each click counted once");
            let replayed = sink.replayed.load(Ordering::SeqCst);
            match fail {
                Fail::AfterCommit => assert_eq!(replayed, 0, "the committed write is not replayed"),
                Fail::BeforeCommit => assert!(replayed > 0, "the failed write is replayed"),
            }
        }
    }

    /// Compiles the user-agent rules before a pipeline starts. The batcher compiles
    /// them before its first take (a debug build takes a while), and the clicks that
    /// queue up meanwhile are cut in one burst that the writer's channel cannot all
    /// take: those go through the spool, and a test counting writes or replays would
    /// count them too.
    async fn rules_compiled() {
        tokio::task::spawn_blocking(super::super::enrich::warm_up)
            .await
            .unwrap();
    }

    #[test]
    fn a_write_carries_what_the_last_one_finishes_in_half_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = small_batches(dir.path(), 0);
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

    /// A fresh SQLite store in `dir` holding link `hold123`.
    async fn store_with_link(dir: &std::path::Path) -> Arc<SqliteStore> {
        let url = format!("sqlite://{}", dir.join("kurz.db").display());
        let store = SqliteStore::connect(&url, 1).await.unwrap();
        store.migrate().await.unwrap();
        store
            .insert_links(&[NewLink {
                code: ShortCode::parse("hold123").unwrap(),
                original_url: TargetUrl::parse("https://example.com/", None).unwrap(),
                owner_id: None,
                created_at: Utc::now(),
                expires_at: None,
                redirect_type: RedirectType::Temporary,
                metadata: Metadata::default(),
            }])
            .await
            .unwrap();
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

    /// A pipeline cutting batches of at most 10 clicks (or every 20 ms).
    fn small_batches(dir: &std::path::Path, light_rows: usize) -> Settings {
        Settings {
            queue_capacity: 1024,
            batch_max: 10,
            flush_interval: Duration::from_millis(20),
            sink_timeout: Duration::from_secs(10),
            spool_dir: dir.join("spool"),
            light_rows,
        }
    }

    /// Sends 60 clicks, 10 ms apart, through a pipeline cutting batches of at most 10
    /// clicks (or every 20 ms); shuts it down; returns (store writes, `click_count`).
    async fn clicks_through(hold: Duration, light_rows: usize) -> (usize, i64) {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_link(dir.path()).await;
        let sink = Arc::new(Counted::new(
            StoreSink::new(store.clone(), true, hold),
            Duration::ZERO,
        ));
        let settings = small_batches(dir.path(), light_rows);
        rules_compiled().await;
        let analytics = Analytics::start(settings, Enricher::new([7; 16], None), vec![sink.clone()]).unwrap();
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
        (sink.writes.load(Ordering::SeqCst), link.click_count)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holding_store_writer_writes_fewer_bigger_batches_and_loses_nothing() {
        // Held for longer than the test, and no write counts as light: the 60 clicks
        // stay under the cap of 16 full batches, so they go as one write at shutdown
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
            let sink = Arc::new(StoreSink::new(store.clone(), true, Duration::from_secs(60)));
            let settings = small_batches(dir.path(), light_rows);
            let analytics = Analytics::start(settings, Enricher::new([7; 16], None), vec![sink]).unwrap();
            for i in 0..30u8 {
                analytics.capture(bare_click(i));
            }
            let count = || async { store.get_link("hold123").await.unwrap().unwrap().click_count };
            let deadline = Instant::now() + Duration::from_secs(5);
            while count().await < 30 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(count().await == 30, written_early, "light_rows {light_rows}");
            analytics.shutdown().await;
            assert_eq!(count().await, 30, "shutdown writes what was held");
        }
    }

    /// The crash the spool's position file cannot cover: the store took a replayed
    /// chunk, the process died before the spool saved its position. After the restart
    /// the chunk is replayed again, under the same name, and the store skips it.
    #[tokio::test]
    async fn a_chunk_replayed_again_after_a_crash_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_link(dir.path()).await;
        let sink = StoreSink::new(store.clone(), true, Duration::ZERO);
        let enricher = Enricher::new([7; 16], None);
        let click = |i: u8| enricher.enrich(bare_click(i));
        let spool_dir = dir.path().join("spool");
        let replay_once = |commit: bool| {
            let spool = Spool::open(&spool_dir, "store").unwrap();
            let sink = &sink;
            async move {
                let chunk = spool.read(2).unwrap();
                let events: Vec<&ClickEvent> = chunk.events.iter().collect();
                sink.write_replayed(&events, spool.replay_at(chunk.next_offset))
                    .await
                    .unwrap();
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
