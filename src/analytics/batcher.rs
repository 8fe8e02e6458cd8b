//! The batcher: one task that drains the click queue and feeds the sinks.
//!
//! It flushes when a batch is full or the oldest pending event has waited the flush
//! interval. A sink that fails gets its batch spooled and is left alone for a second;
//! while a sink has a backlog, new batches are appended behind it, so events reach the
//! sink in the order they happened. The replay runs between flushes, one chunk at a
//! time, so a long backlog never stops the queue from being drained.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Gauge, Histogram};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::event::{Captured, ClickEvent};
use super::{Lane, Settings, Shared};

/// After a failure, a sink is tried again this much later.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Replay at most this many chunks between two looks at the queue.
const REPLAY_CHUNKS_PER_ROUND: usize = 4;

struct LaneState {
    retry_at: Instant,
    flush_seconds: Histogram,
    spool_bytes: Gauge,
}

pub async fn run(
    mut rx: mpsc::Receiver<Captured>,
    shared: Arc<Shared>,
    settings: Settings,
    stop: Arc<Notify>,
) {
    let depth = metrics::gauge!("kurz_click_queue_depth");
    let mut states: Vec<LaneState> = shared
        .lanes
        .iter()
        .map(|l| LaneState {
            retry_at: Instant::now(),
            flush_seconds: metrics::histogram!("kurz_click_flush_duration_seconds", "sink" => l.sink.name()),
            spool_bytes: metrics::gauge!("kurz_click_spool_bytes", "sink" => l.sink.name()),
        })
        .collect();
    for lane in &shared.lanes {
        for name in ["written", "replayed", "spooled"] {
            metrics::counter!(format!("kurz_click_events_{name}_total"), "sink" => lane.sink.name())
                .increment(0);
        }
    }
    // Compile the user-agent rules before the first click needs them.
    let _ = tokio::task::spawn_blocking(super::enrich::warm_up).await;

    let mut raw: Vec<Captured> = Vec::with_capacity(settings.batch_max);
    let mut pending: Vec<ClickEvent> = Vec::with_capacity(settings.batch_max);
    let mut oldest: Option<Instant> = None;
    let mut closing = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let flush_at = oldest.map(|t| t + settings.flush_interval);
        let room = settings.batch_max.saturating_sub(pending.len()).max(1);
        let mut closed = false;
        tokio::select! {
            n = rx.recv_many(&mut raw, room) => closed = n == 0,
            _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {}
            _ = tick.tick() => {}
            _ = stop.notified(), if !closing => {
                // New clicks now go straight to the spools; drain what is queued.
                closing = true;
                rx.close();
            }
        }
        if !raw.is_empty() && oldest.is_none() {
            oldest = Some(Instant::now());
        }
        pending.extend(raw.drain(..).map(|c| shared.enricher.enrich(c)));
        depth.set((rx.len()) as f64);
        let due = flush_at.is_some_and(|t| Instant::now() >= t);
        if pending.len() >= settings.batch_max
            || (due && !pending.is_empty())
            || (closed && !pending.is_empty())
        {
            flush(&shared, &mut states, &pending, &settings).await;
            pending.clear();
            oldest = None;
        }
        replay(&shared, &mut states, &settings).await;
        if closed {
            break;
        }
    }
    depth.set(0.0);
}

async fn flush(shared: &Shared, states: &mut [LaneState], events: &[ClickEvent], settings: &Settings) {
    for (lane, state) in shared.lanes.iter().zip(states.iter_mut()) {
        if lane.spool.backlog() > 0 {
            // Keep order: behind the backlog, not ahead of it.
            shared.spool_one(lane, events, true);
        } else if let Err(e) = write(lane, state, events, settings).await {
            tracing::warn!(sink = lane.sink.name(), error = %e, events = events.len(), "click sink failed; spooling");
            state.retry_at = Instant::now() + RETRY_AFTER;
            shared.spool_one(lane, events, true);
        } else {
            metrics::counter!("kurz_click_events_written_total", "sink" => lane.sink.name())
                .increment(events.len() as u64);
        }
        state.spool_bytes.set(lane.spool.backlog() as f64);
    }
}

async fn write(
    lane: &Lane,
    state: &LaneState,
    events: &[ClickEvent],
    settings: &Settings,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(settings.sink_timeout, lane.sink.write(events)).await;
    state.flush_seconds.record(started.elapsed().as_secs_f64());
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {:?}", settings.sink_timeout)),
    }
}

/// Replays a few chunks of spooled events for every sink that is due. At shutdown
/// this runs once more; whatever is left stays spooled for the next start.
async fn replay(shared: &Shared, states: &mut [LaneState], settings: &Settings) {
    for (lane, state) in shared.lanes.iter().zip(states.iter_mut()) {
        let mut chunks = 0;
        while lane.spool.backlog() > 0 && Instant::now() >= state.retry_at && chunks < REPLAY_CHUNKS_PER_ROUND
        {
            chunks += 1;
            let chunk = match lane.spool.read(settings.batch_max) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the click spool");
                    state.retry_at = Instant::now() + RETRY_AFTER;
                    break;
                }
            };
            if chunk.corrupt > 0 {
                metrics::counter!("kurz_click_spool_corrupt_records_total").increment(chunk.corrupt);
                tracing::error!(records = chunk.corrupt, "corrupt click spool records skipped");
            }
            let outcome = if chunk.events.is_empty() {
                Ok(())
            } else {
                write(lane, state, &chunk.events, settings).await
            };
            match outcome {
                Ok(()) => {
                    metrics::counter!("kurz_click_events_replayed_total", "sink" => lane.sink.name())
                        .increment(chunk.events.len() as u64);
                    if let Err(e) = lane.spool.commit(chunk.next_offset) {
                        tracing::error!(error = %e, "cannot record the click spool position");
                    }
                }
                Err(e) => {
                    tracing::warn!(sink = lane.sink.name(), error = %e, "click replay failed; will retry");
                    state.retry_at = Instant::now() + RETRY_AFTER;
                    break;
                }
            }
        }
        state.spool_bytes.set(lane.spool.backlog() as f64);
    }
}
