//! Where enriched click events go. The store is always a sink; Kafka is another when
//! configured. Each sink has its own spool, so one being down never holds up the other.

use std::sync::Arc;

use async_trait::async_trait;

use super::event::ClickEvent;
use super::rollup::{self, Replay};
use crate::store::Store;

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
    /// Takes the whole batch or fails as a whole.
    async fn write(&self, events: &[&ClickEvent]) -> Result<(), SinkError>;
    /// Takes a chunk replayed from the spool. A sink that can record `replay` with
    /// the chunk, atomically, never applies the same chunk twice; the default is
    /// at-least-once (Kafka consumers dedupe by event if they need to).
    async fn write_replayed(&self, events: &[&ClickEvent], replay: Replay) -> Result<(), SinkError> {
        let _ = replay;
        self.write(events).await
    }
}

/// Raw events and rollups into the link store, one transaction per batch.
pub struct StoreSink {
    pub store: Arc<dyn Store>,
    /// Keep raw events (`KURZ_ANALYTICS_RAW_EVENTS`); rollups are always kept.
    pub raw: bool,
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

    async fn write(&self, events: &[&ClickEvent]) -> Result<(), SinkError> {
        self.record(events, None).await
    }

    async fn write_replayed(&self, events: &[&ClickEvent], replay: Replay) -> Result<(), SinkError> {
        self.record(events, Some(replay)).await
    }
}

impl StoreSink {
    async fn record(&self, events: &[&ClickEvent], replay: Option<Replay>) -> Result<(), SinkError> {
        let mut batch = super::off_workers(|| rollup::fold(events.iter().copied()));
        batch.replay = replay;
        self.store
            .record_clicks(&batch, self.raw)
            .await
            .map_err(|e| SinkError(e.to_string()))
    }
}
