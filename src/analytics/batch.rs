//! [`ClickBatch`]: everything one store write adds, folded as clicks arrive.
//!
//! Why it exists: a store write costs per link-hour row it touches (read, merge,
//! write back), not per click, so the store's writer gathers several seconds of
//! clicks before it writes (see [`super::batcher`]). Holding those clicks as
//! `ClickEvent`s would cost ~300 bytes each; a `ClickBatch` instead folds them on
//! arrival into one owned delta per link-hour (counts per dimension, a visitor
//! sketch) plus the raw events as compact JSON blocks (~100 bytes a click). The blocks
//! are what SQLite stores as raw events, what PostgreSQL expands into rows, and what
//! a failed write turns back into events for the spool, so nothing is lost.
//! Everything here is pure: no I/O, unit-tested below.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::event::{ClickEvent, Device};
use super::hll::Hll;
use super::rollup::{Dims, day_of, hour_of};

/// What a write adds to one link-hour row.
#[derive(Debug, Clone, PartialEq)]
pub struct HourDelta {
    pub hour: DateTime<Utc>,
    /// Human clicks; bots are counted apart.
    pub clicks: u64,
    pub bots: u64,
    /// Breakdowns of the human clicks.
    pub dims: Dims,
    pub visitors: Hll,
}

/// What a write adds to one link's visitors of one UTC day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayDelta {
    pub day: DateTime<Utc>,
    pub visitors: Hll,
}

/// What a write adds to a link's own counters.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkTouch<'a> {
    pub short_code: &'a str,
    pub clicks: u64,
    pub last_at: DateTime<Utc>,
}

/// Where a replayed chunk ends in its spool. The store records it in the batch's own
/// transaction and skips a batch whose end it has already recorded, so a chunk
/// replayed again after a crash is not counted twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The spool's generation: unique per spool file and per truncation of it.
    pub spool: String,
    /// Byte offset just past the chunk.
    pub through: u64,
}

/// Raw events as one JSON array of rows,
/// `[code, clicked_at_ms, referrer, device, browser, os, is_bot (0/1), country, city|null, visitor_hash (i64)]`.
/// A positional row is about a third of the events' JSON with field names, and SQLite
/// can still read it (`json_each`: the `click_events` view).
#[derive(Debug, Clone, PartialEq)]
pub struct RawBlock {
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub events: usize,
    pub json: String,
    /// The UTC days (days since the epoch) its events fall on: PostgreSQL needs a
    /// partition for each.
    days: Vec<i64>,
}

/// The row shape of a [`RawBlock`], for decoding.
type RawRow = (
    String,
    i64,
    String,
    Device,
    String,
    String,
    u8,
    String,
    Option<String>,
    i64,
);

/// A block takes at most this many events (~4 MB of JSON); then a new one starts.
const BLOCK_EVENTS: usize = 50_000;

impl RawBlock {
    fn new(first: &ClickEvent) -> Self {
        Self {
            first_at: first.clicked_at,
            last_at: first.clicked_at,
            events: 0,
            json: String::from("[]"),
            days: Vec::new(),
        }
    }

    /// Appends events to the block's JSON array.
    fn append(&mut self, events: &[&ClickEvent]) {
        self.json.pop(); // the closing ']'
        self.json.reserve(events.len() * 96 + 1);
        let mut row_json: Vec<u8> = Vec::with_capacity(128);
        for e in events {
            row_json.clear();
            let row = (
                e.short_code.as_str(),
                e.clicked_at.timestamp_millis(),
                e.referrer.as_str(),
                e.device,
                e.browser.as_str(),
                e.os.as_str(),
                u8::from(e.is_bot),
                e.country.as_str(),
                e.city.as_deref(),
                e.visitor_hash as i64,
            );
            // Serializing into a Vec cannot fail, and serde_json writes UTF-8.
            if serde_json::to_writer(&mut row_json, &row).is_err() {
                continue;
            }
            let Ok(row) = std::str::from_utf8(&row_json) else {
                continue;
            };
            if self.events > 0 {
                self.json.push(',');
            }
            self.json.push_str(row);
            self.events += 1;
            self.first_at = self.first_at.min(e.clicked_at);
            self.last_at = self.last_at.max(e.clicked_at);
            let day = e.clicked_at.timestamp().div_euclid(86_400);
            if self.days.last() != Some(&day) && !self.days.contains(&day) {
                self.days.push(day);
            }
        }
        self.json.push(']');
    }

    /// The events back, at millisecond precision (what is stored).
    pub fn decode(&self) -> Result<Vec<ClickEvent>, serde_json::Error> {
        let rows: Vec<RawRow> = serde_json::from_str(&self.json)?;
        Ok(rows
            .into_iter()
            .map(
                |(short_code, at, referrer, device, browser, os, bot, country, city, visitor)| ClickEvent {
                    short_code,
                    clicked_at: DateTime::from_timestamp_millis(at).unwrap_or_default(),
                    referrer,
                    device,
                    browser,
                    os,
                    is_bot: bot != 0,
                    country,
                    city,
                    visitor_hash: visitor as u64,
                },
            )
            .collect())
    }
}

/// One link's share of a batch. A write spans seconds, so a link almost always has
/// one hour and one day: short `Vec`s, searched linearly.
#[derive(Debug, Clone, Default)]
struct LinkFold {
    clicks: u64,
    last_at: Option<DateTime<Utc>>,
    hours: Vec<HourDelta>,
    days: Vec<DayDelta>,
}

/// The clicks of one store write, folded. Build it with [`fold`] or [`ClickBatch::add`].
#[derive(Debug, Clone, Default)]
pub struct ClickBatch {
    links: HashMap<String, LinkFold, foldhash::fast::RandomState>,
    raw: Vec<RawBlock>,
    events: usize,
    rows: usize,
    /// Set when the batch is a chunk replayed from a spool: see [`Replay`].
    pub replay: Option<Replay>,
}

/// Folds events into a new batch.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a ClickEvent>) -> ClickBatch {
    let mut batch = ClickBatch::default();
    batch.add(events);
    batch
}

impl ClickBatch {
    /// Folds more events in: one hash lookup per click, plus its share of a raw block.
    pub fn add<'a>(&mut self, events: impl IntoIterator<Item = &'a ClickEvent>) {
        let events: Vec<&ClickEvent> = events.into_iter().collect();
        for e in events.iter().copied() {
            let link = match self.links.get_mut(e.short_code.as_str()) {
                Some(l) => l,
                None => self.links.entry(e.short_code.clone()).or_default(),
            };
            link.clicks += 1;
            link.last_at = Some(link.last_at.map_or(e.clicked_at, |t| t.max(e.clicked_at)));
            let hour = hour_of(e.clicked_at);
            let h = match link.hours.iter().position(|r| r.hour == hour) {
                Some(i) => i,
                None => {
                    self.rows += 1;
                    link.hours.push(HourDelta {
                        hour,
                        clicks: 0,
                        bots: 0,
                        dims: Dims::default(),
                        visitors: Hll::new(),
                    });
                    link.hours.len() - 1
                }
            };
            let r = &mut link.hours[h];
            if e.is_bot {
                r.bots += 1;
                continue;
            }
            r.clicks += 1;
            r.dims.add_event(e);
            r.visitors.insert(e.visitor_hash);
            let day = day_of(e.clicked_at);
            let d = match link.days.iter().position(|d| d.day == day) {
                Some(i) => i,
                None => {
                    link.days.push(DayDelta {
                        day,
                        visitors: Hll::new(),
                    });
                    link.days.len() - 1
                }
            };
            link.days[d].visitors.insert(e.visitor_hash);
        }
        let Some(first) = events.first() else {
            return;
        };
        if self.raw.last().is_none_or(|b| b.events >= BLOCK_EVENTS) {
            self.raw.push(RawBlock::new(first));
        }
        if let Some(block) = self.raw.last_mut() {
            let before = block.events;
            block.append(&events);
            self.events += block.events - before;
        }
    }

    /// Clicks folded in.
    pub fn events(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Link-hour rows the write will touch: what it costs.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The raw events, as blocks.
    pub fn raw(&self) -> &[RawBlock] {
        &self.raw
    }

    fn sorted_links(&self) -> Vec<(&str, &LinkFold)> {
        let mut links: Vec<(&str, &LinkFold)> = self.links.iter().map(|(c, l)| (c.as_str(), l)).collect();
        links.sort_unstable_by(|a, b| a.0.cmp(b.0));
        links
    }

    /// Link-hour deltas by code and hour: the order the store locks rows in.
    pub fn rollups(&self) -> Vec<(&str, &HourDelta)> {
        let mut out = Vec::with_capacity(self.rows);
        for (code, link) in self.sorted_links() {
            let start = out.len();
            out.extend(link.hours.iter().map(|h| (code, h)));
            out[start..].sort_by_key(|(_, h)| h.hour);
        }
        out
    }

    /// Link-day visitor deltas by code and day.
    pub fn days(&self) -> Vec<(&str, &DayDelta)> {
        let mut out = Vec::with_capacity(self.links.len());
        for (code, link) in self.sorted_links() {
            let start = out.len();
            out.extend(link.days.iter().map(|d| (code, d)));
            out[start..].sort_by_key(|(_, d)| d.day);
        }
        out
    }

    /// Each link's counters, by code.
    pub fn touches(&self) -> Vec<LinkTouch<'_>> {
        self.sorted_links()
            .into_iter()
            .filter_map(|(code, l)| {
                Some(LinkTouch {
                    short_code: code,
                    clicks: l.clicks,
                    last_at: l.last_at?,
                })
            })
            .collect()
    }

    /// The UTC days the raw events fall on, ascending.
    pub fn raw_days(&self) -> Vec<chrono::NaiveDate> {
        let mut days: Vec<i64> = self.raw.iter().flat_map(|b| b.days.iter().copied()).collect();
        days.sort_unstable();
        days.dedup();
        days.into_iter()
            .filter_map(|d| DateTime::from_timestamp(d * 86_400, 0))
            .map(|t| t.date_naive())
            .collect()
    }

    /// The events folded in, decoded from the raw blocks: what a failed write spools.
    /// A block that does not decode cannot happen (we wrote it); it is logged and
    /// counted as lost rather than stopping the writer.
    pub fn to_events(&self) -> Vec<ClickEvent> {
        let mut out = Vec::with_capacity(self.events);
        for b in &self.raw {
            match b.decode() {
                Ok(mut events) => out.append(&mut events),
                Err(e) => {
                    metrics::counter!("kurz_click_events_dropped_total").increment(b.events as u64);
                    tracing::error!(error = %e, lost = b.events, "held click block unreadable; its clicks are lost");
                }
            }
        }
        out
    }
}

/// Clicks for the unit tests of this module and of [`super::rollup`].
#[cfg(test)]
pub(crate) mod test_clicks {
    use super::*;

    pub fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    pub fn event(code: &str, at: &str, country: &str, visitor: u64, bot: bool) -> ClickEvent {
        ClickEvent {
            short_code: code.into(),
            clicked_at: t(at),
            referrer: "direct".into(),
            device: Device::Mobile,
            browser: "Chrome".into(),
            os: "Android".into(),
            is_bot: bot,
            country: country.into(),
            city: None,
            visitor_hash: visitor.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_clicks::{event, t};
    use super::*;

    #[test]
    fn fold_groups_by_link_hour_and_counts_bots_apart() {
        let events = vec![
            event("b", "2026-03-01T10:05:00Z", "DE", 1, false),
            event("a", "2026-03-01T10:59:59Z", "US", 1, false),
            event("a", "2026-03-01T10:00:00Z", "US", 2, false),
            event("a", "2026-03-01T11:00:00Z", "FR", 1, true),
        ];
        let batch = fold(&events);
        let rollups = batch.rollups();
        let keys: Vec<_> = rollups
            .iter()
            .map(|(c, r)| (*c, r.hour, r.clicks, r.bots))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("a", t("2026-03-01T10:00:00Z"), 2, 0),
                ("a", t("2026-03-01T11:00:00Z"), 0, 1),
                ("b", t("2026-03-01T10:00:00Z"), 1, 0),
            ]
        );
        assert_eq!(batch.rows(), 3);
        assert_eq!(rollups[0].1.dims.country.get("US"), Some(2));
        assert_eq!(rollups[0].1.visitors.estimate(), 2);
        assert!(rollups[1].1.dims.country.is_empty());
        let touches = batch.touches();
        assert_eq!(touches[0].clicks, 3);
        assert_eq!(touches[0].last_at, t("2026-03-01T11:00:00Z"));
    }

    #[test]
    fn adding_twice_is_folding_once() {
        let events = vec![
            event("a", "2026-03-01T10:05:00Z", "US", 1, false),
            event("a", "2026-03-01T10:06:00Z", "DE", 2, false),
            event("b", "2026-03-01T10:07:00Z", "DE", 3, true),
        ];
        let mut split = fold(&events[..1]);
        split.add(&events[1..]);
        let whole = fold(&events);
        assert_eq!(split.rollups(), whole.rollups());
        assert_eq!(split.days(), whole.days());
        assert_eq!(split.touches(), whole.touches());
        assert_eq!(split.events(), 3);
        assert_eq!(split.raw().len(), 1, "small adds share a raw block");
        assert_eq!(split.to_events(), whole.to_events());
    }

    #[test]
    fn days_collect_the_visitors_of_their_hours() {
        let events = vec![
            event("a", "2026-03-01T10:05:00Z", "US", 1, false),
            event("a", "2026-03-01T23:05:00Z", "US", 2, false),
            event("a", "2026-03-02T00:05:00Z", "US", 1, false),
            event("a", "2026-03-02T01:05:00Z", "US", 9, true),
        ];
        let batch = fold(&events);
        let days = batch.days();
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].1.visitors.estimate(), 2);
        assert_eq!(days[1].1.visitors.estimate(), 1, "bots are not visitors");
        assert_eq!(
            batch.raw_days(),
            vec![
                t("2026-03-01T00:00:00Z").date_naive(),
                t("2026-03-02T00:00:00Z").date_naive()
            ]
        );
    }

    #[test]
    fn raw_blocks_give_back_the_events_at_millisecond_precision() {
        let mut events = vec![
            event("a", "2026-03-01T10:05:00.123456Z", "US", 1, false),
            event("b\"q", "2026-03-01T10:06:00Z", "unknown", u64::MAX, true),
        ];
        events[0].city = Some("Osaka".into());
        events[1].referrer = "ex\\ample.com".into();
        let batch = fold(&events);
        let block = &batch.raw()[0];
        assert_eq!(
            (block.first_at, block.last_at, block.events),
            (events[0].clicked_at, events[1].clicked_at, 2)
        );
        let back = batch.to_events();
        events[0].clicked_at = t("2026-03-01T10:05:00.123Z");
        assert_eq!(back, events);
        assert!(fold(&[]).raw().is_empty(), "no events, no block");
    }
}
