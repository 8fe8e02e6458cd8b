//! Click analytics (DESIGN.md §5): capture on the redirect, batch, store. The whole
//! path, with the reasons, is in `docs/analytics.md`; one module per step:
//!
//! * [`Analytics::capture`] (the redirect handler) copies a few header bytes of a
//!   [`event::Captured`] into the bounded [`queue`]; it never awaits. A full queue
//!   sends the click to the spools right there ([`shared`]).
//! * [`batcher`] drains the queue, [`enrich`]es clicks (UA, GeoIP, visitor hash) and
//!   cuts batches for each sink's [`lane`], which writes them, spools what fails
//!   ([`spool`]) and replays the spool.
//! * Lane writers: the store's ([`store_writer`]: holds clicks folded into a
//!   [`batch::ClickBatch`], kept in a [`chunked`] list, names its writes
//!   ([`names`]), replays exactly once) and
//!   plain event sinks ([`sink`]: [`kafka`]).
//! * The store write: [`click_writer`] runs the one read-merge-write of rollup rows
//!   ([`rows`], with [`hll`] visitor sketches) over the click store port ([`port`]),
//!   which each database backend implements. [`plan`] says which sketches a stats
//!   range reads; `crate::stats` reads them.
//! * The store's lane [`journal`]s every batch before holding it, so a crash loses at
//!   most the clicks not cut yet (one flush interval), not a held write's seconds.
//! * [`background`] runs the pipeline's heavy CPU work on a thread below the
//!   redirects' priority.

pub mod background;
pub mod batch;
pub mod batcher;
pub mod chunked;
pub mod click_writer;
pub mod countries;
pub mod enrich;
pub mod event;
pub mod hll;
mod interner;
pub mod journal;
pub mod kafka;
pub mod lane;
pub mod names;
pub mod plan;
pub mod port;
pub mod queue;
pub mod rows;
pub mod shared;
pub mod sink;
pub mod spool;
pub mod store_writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::Counter;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use background::off_workers;
pub use enrich::{Enricher, GeoDb};
pub use event::{Captured, ClickEvent};
pub use kafka::KafkaSink;
pub use sink::{EventSink, EventWriter, SinkError};
pub use spool::{Spool, SpoolError};
pub use store_writer::StoreWriter;

use batcher::StartLane;
use lane::LaneWriter;
use shared::{LaneSpool, Shared};

/// Tuning of the pipeline, from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue_capacity: usize,
    pub batch_max: usize,
    /// Clicks one store write may hold at most ([`lane::HOLD_EVENTS`] in a server).
    pub hold_events: usize,
    pub flush_interval: Duration,
    /// A sink write taking longer than this counts as failed (the batch is spooled).
    pub sink_timeout: Duration,
    pub spool_dir: std::path::PathBuf,
}

#[cfg(test)]
impl Settings {
    /// A pipeline cutting batches of at most 10 clicks (or every 20 ms), spooling
    /// into `dir/spool`.
    pub(crate) fn for_tests(dir: &std::path::Path) -> Self {
        Self {
            queue_capacity: 1024,
            batch_max: 10,
            hold_events: 160,
            flush_interval: Duration::from_millis(20),
            sink_timeout: Duration::from_secs(10),
            spool_dir: dir.join("spool"),
        }
    }
}

pub struct Analytics {
    queue: Arc<queue::CaptureQueue>,
    shared: Arc<Shared>,
    enqueued: Counter,
    stop: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Analytics {
    /// Opens a spool per lane (the store's, then each event sink's) and starts the
    /// batcher and the lanes.
    pub fn start(
        settings: Settings,
        enricher: Enricher,
        mut store: StoreWriter,
        sinks: Vec<Arc<dyn EventSink>>,
    ) -> Result<Self, SpoolError> {
        let mut spools = Vec::with_capacity(sinks.len() + 1);
        for name in std::iter::once(store.name()).chain(sinks.iter().map(|s| s.name())) {
            let spool = Spool::open(&settings.spool_dir, name)?;
            if spool.backlog() > 0 {
                tracing::info!(
                    sink = name,
                    bytes = spool.backlog(),
                    "spooled click events will be replayed"
                );
            }
            spools.push(LaneSpool { name, spool });
        }
        // The store's spool is open (and locked) now: its folder is this instance's.
        store.journal_in(&settings.spool_dir, settings.batch_max);
        let shared = Arc::new(Shared {
            enricher,
            lanes: spools,
            dropped: metrics::counter!("kurz_click_events_dropped_total"),
        });
        // Registered at zero so dashboards and tests see the series from the start.
        shared.dropped.increment(0);
        metrics::counter!("kurz_click_events_overflow_total").increment(0);
        metrics::counter!("kurz_click_spool_corrupt_records_total").increment(0);
        let mut lanes: Vec<StartLane> = vec![start_lane(&shared, 0, &settings, store)];
        for (i, sink) in sinks.into_iter().enumerate() {
            let writer = EventWriter::new(sink, settings.sink_timeout);
            lanes.push(start_lane(&shared, i + 1, &settings, writer));
        }
        let queue = Arc::new(queue::CaptureQueue::new(settings.queue_capacity.max(1)));
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(batcher::run(
            queue.clone(),
            shared.clone(),
            settings,
            stop.clone(),
            lanes,
        ));
        let enqueued = metrics::counter!("kurz_click_events_enqueued_total");
        enqueued.increment(0);
        Ok(Self {
            queue,
            shared,
            enqueued,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// Hands a click to the pipeline. Never waits: a full (or closed) queue sends the
    /// event straight to the spools instead.
    pub fn capture(&self, click: Captured<'_>) {
        self.enqueued.increment(1);
        if let Err(c) = self.queue.push(click) {
            metrics::counter!("kurz_click_events_overflow_total").increment(1);
            let event = self.shared.enricher.enrich(c);
            self.shared.spool_all(&[&event], false);
        }
    }

    /// Stops taking events into the queue, flushes everything to the sinks (or their
    /// spools) and waits for that to finish. Called once the server has stopped.
    pub async fn shutdown(&self) {
        self.stop.notify_one();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The start of lane `index`'s task, writing with `writer`.
fn start_lane<W: LaneWriter>(
    shared: &Arc<Shared>,
    index: usize,
    settings: &Settings,
    writer: W,
) -> StartLane {
    let (shared, settings) = (shared.clone(), settings.clone());
    let below = writer.in_process();
    Box::new(move |rx| {
        let lane = lane::run(shared, index, rx, settings, writer);
        if below {
            background::spawn_below_workers(lane)
        } else {
            tokio::spawn(lane)
        }
    })
}
