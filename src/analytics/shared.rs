//! [`Shared`]: what the redirect handlers' overflow path and the batcher share: the
//! enricher, and each lane's spool.

use metrics::Counter;

use super::batch::Replay;
use super::event::ClickEvent;
use super::off_workers;
use super::spool::Spool;

/// One sink's spool, named as the sink is in metrics and logs.
pub struct LaneSpool {
    pub name: &'static str,
    pub spool: Spool,
}

pub struct Shared {
    pub enricher: super::Enricher,
    /// One per lane, in lane order (the store first).
    pub lanes: Vec<LaneSpool>,
    /// Clicks lost: a spool that could not be written, or a corrupt record. Must stay 0.
    pub dropped: Counter,
}

impl Shared {
    /// Appends events to every lane's spool. Used by the overflow path. A spool that
    /// cannot be written is the only way to lose an event; it is counted and logged
    /// loudly.
    pub fn spool_all(&self, events: &[&ClickEvent], sync: bool) {
        for lane in &self.lanes {
            self.spool_one(lane, events, sync);
        }
    }

    pub fn spool_one(&self, lane: &LaneSpool, events: &[&ClickEvent], sync: bool) {
        self.spool_marked(lane, events, sync, None);
    }

    /// [`Shared::spool_one`], each event marked as spooled from the failed write
    /// `written_as` (see [`super::spool`]).
    pub fn spool_marked(
        &self,
        lane: &LaneSpool,
        events: &[&ClickEvent],
        sync: bool,
        written_as: Option<&Replay>,
    ) {
        let appended = if sync {
            off_workers(|| lane.spool.append_marked(events.iter().copied(), true, written_as))
        } else {
            lane.spool
                .append_marked(events.iter().copied(), false, written_as)
        };
        match appended {
            Ok(()) => metrics::counter!("kurz_click_events_spooled_total", "sink" => lane.name)
                .increment(events.len() as u64),
            Err(e) => {
                self.dropped.increment(events.len() as u64);
                tracing::error!(error = %e, lost = events.len(), "click events could not be spooled and are lost");
            }
        }
    }
}
