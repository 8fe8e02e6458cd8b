//! Event sinks: where enriched click events go besides the store (Kafka, and any
//! later one). A sink only writes events; its lane ([`super::lane`]) spools what it
//! could not take and replays it, so a sink being down never holds up the store.
//!
//! The store is not an event sink: its lane writer ([`super::store_writer`]) folds
//! clicks into rows, holds them, names its writes and replays exactly once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::batch::Replay;
use super::event::ClickEvent;
pub use super::lane::SinkError;
use super::lane::{Batch, Failed, Held, LaneWriter, Replayed, WriteError, within};
use super::spool::Chunk;

#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Names the sink in metrics, logs and the spool file.
    fn name(&self) -> &'static str;
    /// Must events arrive in the order they happened? Then new batches wait behind a
    /// spooled backlog. Delivery is at-least-once: a chunk replayed again after a
    /// crash reaches the sink twice (consumers dedupe by event if they need to).
    fn ordered(&self) -> bool {
        true
    }
    /// Takes the whole batch or fails as a whole.
    async fn write(&self, events: &[&ClickEvent]) -> Result<(), SinkError>;
}

/// An event sink's lane writer: it writes every batch as it comes (no hold).
pub struct EventWriter {
    sink: Arc<dyn EventSink>,
    /// A write slower than this counts as failed (`KURZ_ANALYTICS_SINK_TIMEOUT_SECS`).
    timeout: Duration,
}

impl EventWriter {
    pub fn new(sink: Arc<dyn EventSink>, timeout: Duration) -> Self {
        Self { sink, timeout }
    }
}

impl Held for Vec<Batch> {
    fn add(&mut self, batch: Batch) {
        self.push(batch);
    }

    fn events(&self) -> usize {
        self.iter().map(|b| b.len()).sum()
    }

    fn rows(&self) -> usize {
        self.events()
    }

    fn with_events(&self, f: &mut dyn FnMut(&[&ClickEvent])) {
        f(&self.iter().flat_map(|b| b.iter()).collect::<Vec<_>>());
    }

    fn oldest(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.iter().flat_map(|b| b.iter()).map(|e| e.clicked_at).min()
    }
}

#[async_trait]
impl LaneWriter for EventWriter {
    type Held = Vec<Batch>;

    fn name(&self) -> &'static str {
        self.sink.name()
    }

    fn ordered(&self) -> bool {
        self.sink.ordered()
    }

    fn due(&self, _held: &Self::Held, _held_for: Duration) -> bool {
        true
    }

    async fn write(&mut self, held: &mut Self::Held) -> Result<(), Failed> {
        let events: Vec<&ClickEvent> = held.iter().flat_map(|b| b.iter()).collect();
        Ok(within(self.timeout, self.sink.write(&events)).await?)
    }

    async fn replay(&mut self, chunk: &Chunk, _at: Replay) -> Result<Replayed, WriteError> {
        let events: Vec<&ClickEvent> = chunk.events.iter().collect();
        within(self.timeout, self.sink.write(&events)).await?;
        Ok(Replayed {
            written: events.len(),
            skipped: 0,
        })
    }
}
