//! The batcher: drains the click queue, enriches events and cuts them into batches
//! for every sink's lane ([`super::lane`]).
//!
//! A batch is cut when it is full or its oldest event has waited the flush interval.
//! A lane that is [`LANE_BACKLOG`] batches behind gets the batch in its spool instead,
//! so memory stays bounded however slow a sink is.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Settings;
use super::event::ClickEvent;
use super::lane::{Batch, LANE_BACKLOG};
use super::queue::CaptureQueue;
use super::shared::Shared;

/// How often the batcher looks at the queue.
const POLL: Duration = Duration::from_millis(10);
/// Clicks enriched per step of the batcher before it lets other tasks run: enriching
/// a whole batch at once (10,000 clicks by default; 50,000 took ~100 ms) would hold a
/// runtime worker for tens of milliseconds.
const ENRICH_STEP: usize = 1024;

/// Starts one lane's task, given the channel its batches arrive on.
pub type StartLane = Box<dyn FnOnce(mpsc::Receiver<Batch>) -> JoinHandle<()> + Send>;

pub async fn run(
    queue: Arc<CaptureQueue>,
    shared: Arc<Shared>,
    settings: Settings,
    stop: Arc<Notify>,
    lanes: Vec<StartLane>,
) {
    let depth = metrics::gauge!("kurz_click_queue_depth");
    for lane in &shared.lanes {
        for name in ["written", "replayed", "spooled", "already_written"] {
            metrics::counter!(format!("kurz_click_events_{name}_total"), "sink" => lane.name).increment(0);
        }
    }
    let mut writers = Vec::with_capacity(lanes.len());
    let mut handles = Vec::with_capacity(lanes.len());
    for start in lanes {
        let (tx, lane_rx) = mpsc::channel::<Batch>(LANE_BACKLOG);
        writers.push(tx);
        handles.push(start(lane_rx));
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

/// Hands the pending events to every lane as one batch; a lane that is
/// [`LANE_BACKLOG`] batches behind gets them in its spool instead.
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
