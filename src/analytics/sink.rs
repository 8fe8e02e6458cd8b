//! Where enriched click events go. The store is always a sink; Kafka is another when
//! configured. Each sink has its own spool, so one being down never holds up the other.

use std::sync::Arc;

use async_trait::async_trait;

use super::batch::{ClickBatch, Replay};
use super::click_writer::ClickWriter;
use super::event::ClickEvent;
use super::port::ClickStore;

/// A batch as the batcher cuts it; shared by every sink's writer.
pub type Batch = Arc<Vec<ClickEvent>>;

/// What a sink's writer holds between writes. Most sinks take events as they came
/// ([`Staged::Batches`]); the store gathers them into one compact batch
/// ([`Staged::Folded`]), folded once at write time, so holding seconds of clicks
/// costs little memory and its write costs per link-hour, not per click.
pub enum Staged {
    Batches(Vec<Batch>),
    Folded(Box<ClickBatch>),
}

impl Staged {
    /// An empty holder of the shape `sink` takes.
    pub fn for_sink(sink: &dyn Sink) -> Self {
        if sink.folds() {
            Self::Folded(Box::default())
        } else {
            Self::Batches(Vec::new())
        }
    }

    /// Takes one more batch (folding it, for a folding stage).
    pub fn add(&mut self, batch: Batch) {
        match self {
            Self::Batches(v) => v.push(batch),
            Self::Folded(f) => super::off_workers(|| f.add(batch.iter())),
        }
    }

    pub fn events(&self) -> usize {
        match self {
            Self::Batches(v) => v.iter().map(|b| b.len()).sum(),
            Self::Folded(f) => f.events(),
        }
    }

    /// What a write of this costs, in rows: events for a sink that takes events,
    /// link-hours for the store.
    pub fn rows(&self) -> usize {
        match self {
            Self::Batches(_) => self.events(),
            Self::Folded(f) => f.rows(),
        }
    }

    /// Names the write of what is held ([`Sink::claim`]). Only a folding sink (the
    /// store) records the name with its write; the others ignore it.
    pub fn mark(&mut self, written_as: Option<Replay>) {
        if let Self::Folded(b) = self {
            b.replay = written_as;
        }
    }

    /// Calls `f` with every event held, e.g. to spool them after a failed write.
    pub fn with_events<R>(&self, f: impl FnOnce(&[&ClickEvent]) -> R) -> R {
        match self {
            Self::Batches(v) => f(&v.iter().flat_map(|b| b.iter()).collect::<Vec<_>>()),
            Self::Folded(b) => {
                let events = b.to_events();
                f(&events.iter().collect::<Vec<_>>())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Names the sink in metrics, logs and the spool file.
    fn name(&self) -> &'static str;
    /// Must events arrive in the order they happened? Then new batches wait behind a
    /// spooled backlog. The store adds counts up, so it does not care; a Kafka
    /// consumer may.
    fn ordered(&self) -> bool {
        true
    }
    /// How long the sink's writer may gather batches and write them as one. A sink
    /// whose cost grows with the rows a write touches, not the events, gains from it.
    fn hold(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Does the sink's writer fold batches as they arrive ([`Staged::Folded`])?
    fn folds(&self) -> bool {
        false
    }
    /// Takes the whole batch or fails as a whole.
    async fn write(&self, events: &[&ClickEvent]) -> Result<(), SinkError>;
    /// Takes everything a writer held, or fails as a whole (the writer then spools it).
    async fn write_staged(&self, staged: &Staged) -> Result<(), SinkError> {
        match staged {
            Staged::Batches(v) => {
                let events: Vec<&ClickEvent> = v.iter().flat_map(|b| b.iter()).collect();
                self.write(&events).await
            }
            Staged::Folded(b) => {
                let events = b.to_events();
                self.write(&events.iter().collect::<Vec<_>>()).await
            }
        }
    }
    /// Takes the name `writer` for its live writes, if the sink can record a write's
    /// name atomically with it (`true`; the store can). Then each write's held
    /// events carry (`writer`, n) ([`Staged::mark`]), and a write that fails is spooled
    /// under that name, since a write can fail after it committed (its answer lost
    /// at the timeout): the replay asks [`Sink::written`] first.
    async fn claim(&self, writer: &str) -> Result<bool, SinkError> {
        let _ = writer;
        Ok(false)
    }
    /// Is the write named `written_as` in the sink? Waits for that write if it is
    /// still running. Only asked of a sink whose [`Sink::claim`] said `true`.
    async fn written(&self, written_as: &Replay) -> Result<bool, SinkError> {
        let _ = written_as;
        Ok(false)
    }
    /// Takes a chunk replayed from the spool. A sink that can record `replay` with
    /// the chunk, atomically, never applies the same chunk twice; the default is
    /// at-least-once (Kafka consumers dedupe by event if they need to).
    async fn write_replayed(&self, events: &[&ClickEvent], replay: Replay) -> Result<(), SinkError> {
        let _ = replay;
        self.write(events).await
    }
}

/// Raw events and rollups into the store, one transaction per batch.
pub struct StoreSink {
    pub writer: ClickWriter,
    /// `KURZ_ANALYTICS_STORE_HOLD_MS`: see [`Sink::hold`].
    pub hold: std::time::Duration,
}

#[async_trait]
impl Sink for StoreSink {
    fn name(&self) -> &'static str {
        "store"
    }

    fn ordered(&self) -> bool {
        false
    }

    fn hold(&self) -> std::time::Duration {
        self.hold
    }

    fn folds(&self) -> bool {
        true
    }

    async fn write(&self, events: &[&ClickEvent]) -> Result<(), SinkError> {
        let batch = super::off_workers(|| super::batch::fold(events.iter().copied()));
        self.record(&batch).await
    }

    async fn write_staged(&self, staged: &Staged) -> Result<(), SinkError> {
        match staged {
            Staged::Folded(batch) => self.record(batch).await,
            Staged::Batches(v) => {
                let batch = super::off_workers(|| super::batch::fold(v.iter().flat_map(|b| b.iter())));
                self.record(&batch).await
            }
        }
    }

    async fn claim(&self, writer: &str) -> Result<bool, SinkError> {
        self.writer
            .claim_name(writer)
            .await
            .map(|()| true)
            .map_err(|e| SinkError(e.to_string()))
    }

    async fn written(&self, written_as: &Replay) -> Result<bool, SinkError> {
        let through = self
            .writer
            .name_through(&written_as.spool)
            .await
            .map_err(|e| SinkError(e.to_string()))?;
        Ok(through.is_some_and(|t| t >= written_as.through))
    }

    async fn write_replayed(&self, events: &[&ClickEvent], replay: Replay) -> Result<(), SinkError> {
        let mut batch = super::off_workers(|| super::batch::fold(events.iter().copied()));
        batch.replay = Some(replay);
        self.record(&batch).await
    }
}

impl StoreSink {
    pub fn new(store: Arc<dyn ClickStore>, raw: bool, hold: std::time::Duration) -> Self {
        Self {
            writer: ClickWriter::new(store, raw),
            hold,
        }
    }

    async fn record(&self, batch: &ClickBatch) -> Result<(), SinkError> {
        self.writer
            .record(batch)
            .await
            .map_err(|e| SinkError(e.to_string()))
    }
}
