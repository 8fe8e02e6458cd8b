//! [`ClickBatch`]: everything one store write adds, gathered as clicks arrive.
//!
//! Why it exists: a store write costs per link-hour row it touches (read, merge,
//! write back), not per click, so the store's writer gathers several seconds of
//! clicks before it writes (see [`super::batcher`]). Holding those clicks as
//! `ClickEvent`s would cost ~300 bytes each. A `ClickBatch` keeps each click as one
//! fixed-size row of numbers (28 bytes) whose strings (codes, referrers, browsers,
//! systems, countries, cities) are stored once per batch, and appends it: one
//! lookup per string, no per-link structure touched at random. The user agent's
//! classification (browser, system, device, bot) and the place (country, city) are
//! together one id of a small table of the combinations seen, as a few make up
//! nearly all clicks: a held click is then 28 bytes instead of the 48 its fields
//! would take, and under load a store write holds up to 800,000 of them. Folding into one
//! delta per link-hour happens once, when the write asks for it: the rows are sorted
//! by link and hour, so each delta is built in one pass while it is in cache. (An
//! earlier version folded every click on arrival into per-link deltas spread over
//! the heap; with 20,000 links that cost ~14 cache misses a click, about a tenth of
//! the redirect path's CPU.) The raw events are written from the same rows, as JSON
//! blocks for SQLite and as arrays for PostgreSQL, and a failed write turns them
//! back into events for the spool, so nothing is lost.
//! Everything here is pure: no I/O, unit-tested below.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};

use super::chunked::Chunked;
use super::event::{ClickEvent, Device};
use super::hll::Hll;
use super::interner::Interner;
use super::rows::{DayDelta, Dims, HourDelta};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

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
}

/// The row shape of a [`RawBlock`], for decoding.
#[cfg(test)]
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

#[cfg(test)]
impl RawBlock {
    /// The events back, at millisecond precision (what is stored). Only the tests
    /// read blocks back: a failed write spools the held rows, and SQL reads blocks
    /// through the `click_events` view.
    pub fn decode(&self) -> Result<Vec<ClickEvent>, serde_json::Error> {
        let rows: Vec<RawRow> = serde_json::from_str(&self.json)?;
        Ok(rows
            .into_iter()
            .map(
                |(short_code, at, referrer, device, browser, os, bot, country, city, visitor)| ClickEvent {
                    short_code: short_code.into(),
                    clicked_at: from_ms(at),
                    referrer: referrer.into(),
                    device,
                    browser: browser.into(),
                    os: os.into(),
                    is_bot: bot != 0,
                    country: country.into(),
                    city,
                    visitor_hash: visitor as u64,
                },
            )
            .collect())
    }
}

fn text(table: &[String], id: u32) -> &str {
    table.get(id as usize).map_or("\"\"", |s| s)
}

/// A click as [`ClickBatch::push`] takes it: its labels as the shared strings they
/// are (so appending one costs a lookup by address, not a copy).
struct Pushed<'a> {
    code: &'a Arc<str>,
    at_ms: i64,
    referrer: &'a Arc<str>,
    browser: &'a Arc<str>,
    os: &'a Arc<str>,
    country: &'a Arc<str>,
    city: Option<&'a str>,
    device: Device,
    bot: bool,
    visitor: u64,
}

/// One held click, borrowing its strings from the batch: what the stores write as a
/// raw event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawEvent<'a> {
    pub short_code: &'a str,
    pub clicked_at: DateTime<Utc>,
    pub referrer: &'a str,
    pub device: Device,
    pub browser: &'a str,
    pub os: &'a str,
    pub is_bot: bool,
    pub country: &'a str,
    pub city: Option<&'a str>,
    pub visitor_hash: u64,
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// No city: the `city` of most clicks.
const NO_CITY: u32 = u32::MAX;

/// One click as held: numbers only, strings by their [`Interner`] id, the user
/// agent's and the place's fields together by one id in the batch's [`Combos`] of
/// [`Context`]s. 28 bytes: packed to 4-byte alignment, as the two 8-byte fields would
/// otherwise pad it to 32, and a hold under load is up to 800,000 of them, two holds
/// at a time. Fields are only ever read by value (a reference into a packed struct
/// may be unaligned, and the compiler refuses one).
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
struct Click {
    at_ms: i64,
    visitor: u64,
    code: u32,
    referrer: u32,
    context: u32,
}

/// What a user agent was classified as, its strings by [`Interner`] id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Agent {
    browser: u32,
    os: u32,
    device: Device,
    bot: bool,
}

/// Where a click came from: country and city ([`NO_CITY`] for none), by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Place {
    country: u32,
    city: u32,
}

/// A click's user agent and place: few of each make up nearly all clicks, and so do
/// few pairs of them, so a click names the pair with one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Context {
    agent: Agent,
    place: Place,
}

/// What [`ClickBatch::spell`] makes of an id that is not in the table (never, for a
/// click of this batch).
const NO_CONTEXT: Context = Context {
    agent: Agent {
        browser: u32::MAX,
        os: u32::MAX,
        device: Device::Other,
        bot: false,
    },
    place: Place {
        country: u32::MAX,
        city: NO_CITY,
    },
};

/// A held click with every field spelled out: what [`ClickBatch::spell`] makes of a
/// [`Click`] for the code that reads one.
#[derive(Debug, Clone, Copy)]
struct Spelled {
    at_ms: i64,
    visitor: u64,
    code: u32,
    referrer: u32,
    browser: u32,
    os: u32,
    country: u32,
    city: u32,
    device: Device,
    bot: bool,
}

/// The distinct [`Context`]s of a batch, each kept once and named by its index.
#[derive(Debug, Clone)]
struct Combos<K> {
    ids: Map<K, u32>,
    all: Vec<K>,
}

impl<K> Default for Combos<K> {
    fn default() -> Self {
        Self {
            ids: Map::default(),
            all: Vec::new(),
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash> Combos<K> {
    fn id(&mut self, key: K) -> u32 {
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        let id = self.all.len() as u32;
        self.all.push(key);
        self.ids.insert(key, id);
        id
    }

    fn get(&self, id: u32) -> Option<K> {
        self.all.get(id as usize).copied()
    }
}

/// A link's own counters in a batch, and the first hour it touched: 24 bytes and no
/// allocation, as a hold under load counts ~100,000 links. The other hours of a link
/// whose clicks span an hour's end are in [`ClickBatch::more_hours`].
#[derive(Debug, Clone)]
struct LinkCounters {
    clicks: u64,
    last_ms: i64,
    hour: i64,
}

/// The deltas of a batch, by link (code order) and hour or day.
#[derive(Debug, Clone, Default)]
struct Folded {
    /// Code ids in code order.
    order: Vec<u32>,
    hours: Vec<(u32, HourDelta)>,
}

/// The clicks of one store write. Build it with [`fold`] or [`ClickBatch::add`].
#[derive(Debug, Clone, Default)]
pub struct ClickBatch {
    codes: Interner,
    /// Referrers, browsers, systems, countries and cities share one table.
    values: Interner,
    contexts: Combos<Context>,
    /// By code id.
    links: Vec<LinkCounters>,
    /// (code id, hour) of each link's hours after its first.
    more_hours: std::collections::HashSet<(u32, i64), foldhash::fast::RandomState>,
    /// In chunks, not one `Vec`: see [`super::chunked`].
    clicks: Chunked<Click>,
    rows: usize,
    /// UTC days (since the epoch) the clicks fall on, in order of appearance.
    days: Vec<i64>,
    /// Computed on the first read of the deltas, dropped by [`ClickBatch::add`].
    folded: OnceLock<Folded>,
    /// Link-day deltas, from `folded`'s hours on the first read: a write under
    /// traffic needs none (see [`ClickBatch::days_before`]).
    folded_days: OnceLock<Vec<(u32, DayDelta)>>,
    /// Set when the batch is a chunk replayed from a spool: see [`Replay`].
    pub replay: Option<Replay>,
    /// The earliest click taken in (ms), for the click lag metric.
    oldest_ms: Option<i64>,
}

/// Folds events into a new batch.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a ClickEvent>) -> ClickBatch {
    let mut batch = ClickBatch::default();
    batch.add(events);
    batch
}

impl ClickBatch {
    /// Takes more events in: a lookup per string and one appended row per click.
    pub fn add<'a>(&mut self, events: impl IntoIterator<Item = &'a ClickEvent>) {
        self.folded = OnceLock::new();
        self.folded_days = OnceLock::new();
        for e in events {
            self.push(Pushed {
                code: &e.short_code,
                at_ms: e.clicked_at.timestamp_millis(),
                referrer: &e.referrer,
                browser: &e.browser,
                os: &e.os,
                country: &e.country,
                city: e.city.as_deref(),
                device: e.device,
                bot: e.is_bot,
                visitor: e.visitor_hash,
            });
        }
    }

    /// Appends one click (see [`ClickBatch::add`]).
    fn push(&mut self, c: Pushed<'_>) {
        let code = self.codes.id_of_label(c.code);
        let at_ms = c.at_ms;
        self.count(code, at_ms);
        let city = c.city.map_or(NO_CITY, |city| self.values.id(city));
        let agent = Agent {
            browser: self.values.id_of_label(c.browser),
            os: self.values.id_of_label(c.os),
            device: c.device,
            bot: c.bot,
        };
        let place = Place {
            country: self.values.id_of_label(c.country),
            city,
        };
        self.clicks.push(Click {
            at_ms,
            visitor: c.visitor,
            code,
            referrer: self.values.id_of_label(c.referrer),
            context: self.contexts.id(Context { agent, place }),
        });
    }

    /// Appends a click held by `parent`, its ids mapped to this batch's through
    /// `ids`: an index into a table per click instead of a hash lookup per string,
    /// as [`Parts`] moves every held click into a part once per write.
    fn push_held(&mut self, parent: &ClickBatch, c: &Click, ids: &mut IdMap) {
        let code = ids
            .codes
            .get_or(c.code, || match parent.codes.strings().get(c.code as usize) {
                Some(label) => self.codes.id_of_label(label),
                None => self.codes.id(""),
            });
        self.count(code, c.at_ms);
        let values = &mut ids.values;
        let mut value = |batch: &mut ClickBatch, id: u32| {
            values.get_or(id, || match parent.values.strings().get(id as usize) {
                Some(label) => batch.values.id_of_label(label),
                None => batch.values.id(""),
            })
        };
        let held = parent.spell(c);
        let context = ids.contexts.get_or(c.context, || {
            let city = if held.city == NO_CITY {
                NO_CITY
            } else {
                value(self, held.city)
            };
            let agent = Agent {
                browser: value(self, held.browser),
                os: value(self, held.os),
                device: held.device,
                bot: held.bot,
            };
            let place = Place {
                country: value(self, held.country),
                city,
            };
            self.contexts.id(Context { agent, place })
        });
        let referrer = value(self, c.referrer);
        self.clicks.push(Click {
            at_ms: c.at_ms,
            visitor: c.visitor,
            code,
            referrer,
            context,
        });
    }

    /// Counts a click of the link `code` (this batch's id) at `at_ms` in the link's
    /// counters, its rows and its days.
    fn count(&mut self, code: u32, at_ms: i64) {
        let hour = at_ms.div_euclid(HOUR_MS);
        self.oldest_ms = Some(self.oldest_ms.map_or(at_ms, |o| o.min(at_ms)));
        match self.links.get_mut(code as usize) {
            Some(link) => {
                link.clicks += 1;
                link.last_ms = link.last_ms.max(at_ms);
                if link.hour != hour && self.more_hours.insert((code, hour)) {
                    self.rows += 1;
                }
            }
            None => {
                self.links.push(LinkCounters {
                    clicks: 1,
                    last_ms: at_ms,
                    hour,
                });
                self.rows += 1;
            }
        }
        let day = at_ms.div_euclid(DAY_MS);
        if self.days.last() != Some(&day) && !self.days.contains(&day) {
            self.days.push(day);
        }
    }

    /// A held click's fields, spelled out from the batch's tables.
    fn spell(&self, c: &Click) -> Spelled {
        let Context { agent, place } = self.contexts.get(c.context).unwrap_or(NO_CONTEXT);
        Spelled {
            at_ms: c.at_ms,
            visitor: c.visitor,
            code: c.code,
            referrer: c.referrer,
            browser: agent.browser,
            os: agent.os,
            country: place.country,
            city: place.city,
            device: agent.device,
            bot: agent.bot,
        }
    }

    /// The batch cut into parts of at most `max_rows` link-hours each (a link's
    /// hours may land in two parts), in code and hour order; none when the batch is
    /// no bigger than that. Why: one store write holds SQLite's only write
    /// connection until it commits, so a write of 100,000 link-hours (seconds) would
    /// keep every create waiting that long; written part by part, a create waits for
    /// one part at most. Each click goes, with its strings shared (no copy), to the
    /// part of its link-hour, so the parts together are exactly the batch, and the
    /// same clicks in any order cut into the same parts.
    ///
    /// Each part is built when it is read: a hold's parts all at once were a second
    /// copy of its clicks for the whole write (tens of MB under load).
    pub fn cut(&self, max_rows: usize) -> Parts<'_> {
        let max_rows = max_rows.max(1);
        let mut parts = Parts {
            batch: self,
            order: Vec::new(),
            bounds: Vec::new(),
            next: 0,
            ids: IdMap::default(),
        };
        if self.rows <= max_rows {
            return parts;
        }
        parts.ids = IdMap::for_batch(self);
        let (_, sorted) = self.sorted_clicks();
        let mut rows = 0;
        parts.bounds.push(0);
        for (i, pair) in sorted.windows(2).enumerate() {
            if self.link_hour(pair[0]) != self.link_hour(pair[1]) {
                rows += 1;
                if rows == max_rows {
                    parts.bounds.push(i + 1);
                    rows = 0;
                }
            }
        }
        parts.bounds.push(sorted.len());
        parts.order = sorted;
        parts
    }

    /// Every part at once ([`ClickBatch::cut`]), for the tests.
    #[cfg(test)]
    pub fn parts(&self, max_rows: usize) -> Vec<ClickBatch> {
        self.cut(max_rows).collect()
    }

    /// How many parts [`ClickBatch::cut`] makes (0 for a batch it does not cut).
    pub fn part_count(&self, max_rows: usize) -> usize {
        let max_rows = max_rows.max(1);
        if self.rows <= max_rows {
            0
        } else {
            self.rows.div_ceil(max_rows)
        }
    }

    /// When the earliest click taken in happened.
    pub fn oldest(&self) -> Option<DateTime<Utc>> {
        self.oldest_ms.map(from_ms)
    }

    /// Human clicks per country value, summed over the batch's link-hours.
    pub fn clicks_by_country(&self) -> HashMap<&str, u64> {
        let mut out: HashMap<&str, u64> = HashMap::new();
        for (_, delta) in self.rollups() {
            for (country, n) in delta.dims.country.iter() {
                *out.entry(country).or_default() += n;
            }
        }
        out
    }

    /// Clicks taken in.
    pub fn events(&self) -> usize {
        self.clicks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clicks.is_empty()
    }

    /// Link-hour rows the write will touch: what it costs.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn folded(&self) -> &Folded {
        self.folded.get_or_init(|| self.fold_all())
    }

    /// Code ids in code order: the order of the deltas and of the parts.
    fn code_order(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.codes.len() as u32).collect();
        order.sort_unstable_by(|a, b| self.codes.get(*a).cmp(self.codes.get(*b)));
        order
    }

    /// The code ids in code order, and the clicks' indices sorted by their code's
    /// rank in that order, then hour, then arrival: the deltas' order, which the
    /// parts follow too. A counting sort by code, then each code's clicks by hour
    /// (nearly always one hour): it needs 4 bytes a click beside the held clicks,
    /// where sorting (rank, hour, index) keys needed 28: 22 MB for a full hold of
    /// 800,000.
    fn sorted_clicks(&self) -> (Vec<u32>, Vec<u32>) {
        let order = self.code_order();
        let mut rank = vec![0u32; order.len()];
        for (r, id) in order.iter().enumerate() {
            if let Some(slot) = rank.get_mut(*id as usize) {
                *slot = r as u32;
            }
        }
        let rank_of = |c: &Click| rank.get(c.code as usize).copied().unwrap_or_default() as usize;
        // starts[r]: where rank r's clicks begin in the sorted order.
        let mut starts = vec![0u32; order.len() + 1];
        for c in self.clicks.iter() {
            if let Some(n) = starts.get_mut(rank_of(c) + 1) {
                *n += 1;
            }
        }
        for r in 1..starts.len() {
            starts[r] += starts[r - 1];
        }
        let mut sorted = vec![0u32; self.clicks.len()];
        let mut next = starts.clone();
        for (i, c) in self.clicks.iter().enumerate() {
            if let Some(slot) = next.get_mut(rank_of(c)) {
                if let Some(at) = sorted.get_mut(*slot as usize) {
                    *at = i as u32;
                }
                *slot += 1;
            }
        }
        let hour = |i: &u32| {
            self.clicks
                .get(*i as usize)
                .map_or(0, |c| c.at_ms.div_euclid(HOUR_MS))
        };
        for pair in starts.windows(2) {
            if let Some(code) = sorted.get_mut(pair[0] as usize..pair[1] as usize) {
                // Stable: clicks of one hour keep their arrival order.
                if code.windows(2).any(|w| hour(&w[0]) != hour(&w[1])) {
                    code.sort_by_key(hour);
                }
            }
        }
        (order, sorted)
    }

    /// The (code id, hour) of the held click at `index`: what groups sorted clicks
    /// into link-hours.
    fn link_hour(&self, index: u32) -> (u32, i64) {
        self.clicks
            .get(index as usize)
            .map_or((u32::MAX, 0), |c| (c.code, c.at_ms.div_euclid(HOUR_MS)))
    }

    /// Sorts the clicks by link (code order) and hour, then builds each link-hour's
    /// delta in one pass.
    fn fold_all(&self) -> Folded {
        let (order, sorted) = self.sorted_clicks();
        let mut hours: Vec<(u32, HourDelta)> = Vec::with_capacity(self.rows);
        for group in sorted.chunk_by(|a, b| self.link_hour(*a) == self.link_hour(*b)) {
            let (code, hour) = self.link_hour(group[0]);
            let mut delta = HourDelta {
                hour: from_ms(hour * HOUR_MS),
                clicks: 0,
                bots: 0,
                dims: Dims::default(),
                visitors: Hll::new(),
            };
            for i in group {
                let Some(c) = self.clicks.get(*i as usize).map(|c| self.spell(c)) else {
                    continue;
                };
                if c.bot {
                    delta.bots += 1;
                    continue;
                }
                delta.clicks += 1;
                delta.dims.add(
                    self.values.get(c.country),
                    self.values.get(c.referrer),
                    c.device,
                    self.values.get(c.browser),
                    self.values.get(c.os),
                );
                delta.visitors.insert(c.visitor);
            }
            hours.push((code, delta));
        }
        Folded { order, hours }
    }

    /// Link-hour deltas by code and hour: the order the store locks rows in.
    pub fn rollups(&self) -> Vec<(&str, &HourDelta)> {
        self.folded()
            .hours
            .iter()
            .map(|(code, h)| (self.codes.get(*code), h))
            .collect()
    }

    /// Link-day visitor deltas by code and day.
    pub fn days(&self) -> Vec<(&str, &DayDelta)> {
        self.days_before(None)
    }

    /// The link-day deltas of days before `through` (all if `None`), by code and day.
    /// Builds none when every click is on or after `through`.
    pub fn days_before(&self, through: Option<DateTime<Utc>>) -> Vec<(&str, &DayDelta)> {
        let through_day = through.map(|t| t.timestamp_millis().div_euclid(DAY_MS));
        if through_day.is_some_and(|t| self.days.iter().all(|d| *d >= t)) {
            return Vec::new();
        }
        self.folded_days
            .get_or_init(|| self.fold_days())
            .iter()
            .filter(|(_, d)| through.is_none_or(|t| d.day < t))
            .map(|(code, d)| (self.codes.get(*code), d))
            .collect()
    }

    /// Each link-day's sketch from its hours' (the hours are in code and hour order).
    fn fold_days(&self) -> Vec<(u32, DayDelta)> {
        let mut days: Vec<(u32, DayDelta)> = Vec::with_capacity(self.links.len());
        for (code, delta) in &self.folded().hours {
            if delta.clicks == 0 {
                continue;
            }
            let day = super::rows::day_of(delta.hour);
            match days.last_mut() {
                Some((last, d)) if last == code && d.day == day => d.visitors.merge(&delta.visitors),
                _ => days.push((
                    *code,
                    DayDelta {
                        day,
                        visitors: delta.visitors.clone(),
                    },
                )),
            }
        }
        days
    }

    /// Each link's counters, by code.
    pub fn touches(&self) -> Vec<LinkTouch<'_>> {
        self.folded()
            .order
            .iter()
            .filter_map(|id| {
                let link = self.links.get(*id as usize)?;
                Some(LinkTouch {
                    short_code: self.codes.get(*id),
                    clicks: link.clicks,
                    last_at: from_ms(link.last_ms),
                })
            })
            .collect()
    }

    /// The UTC days the raw events fall on, ascending.
    pub fn raw_days(&self) -> Vec<chrono::NaiveDate> {
        let mut days = self.days.clone();
        days.sort_unstable();
        days.into_iter()
            .map(|d| from_ms(d * DAY_MS).date_naive())
            .collect()
    }

    /// The held clicks as raw events, in arrival order, at millisecond precision.
    pub fn raw_events(&self) -> impl ExactSizeIterator<Item = RawEvent<'_>> {
        self.clicks.iter().map(|c| self.spell(c)).map(|c| RawEvent {
            short_code: self.codes.get(c.code),
            clicked_at: from_ms(c.at_ms),
            referrer: self.values.get(c.referrer),
            device: c.device,
            browser: self.values.get(c.browser),
            os: self.values.get(c.os),
            is_bot: c.bot,
            country: self.values.get(c.country),
            city: (c.city != NO_CITY).then(|| self.values.get(c.city)),
            visitor_hash: c.visitor,
        })
    }

    /// The raw events as JSON blocks of at most 50,000: what SQLite stores. Built one
    /// block at a time as the iterator is read, so a write holds one block's JSON
    /// (~5 MB) at once, not its whole batch's. Each string is escaped once per batch,
    /// not once per click.
    pub fn raw_blocks(&self) -> impl Iterator<Item = RawBlock> + '_ {
        let quoted = |t: &Interner| -> Vec<String> {
            t.strings()
                .iter()
                .map(|s| serde_json::to_string(&**s).unwrap_or_else(|_| "\"\"".into()))
                .collect()
        };
        let codes = quoted(&self.codes);
        let values = quoted(&self.values);
        (0..self.clicks.len()).step_by(BLOCK_EVENTS).map(move |start| {
            let chunk = self.clicks.range(start, start + BLOCK_EVENTS);
            raw_block(chunk.map(|c| self.spell(c)), &codes, &values)
        })
    }

    /// Every raw block at once ([`ClickBatch::raw_blocks`]).
    #[cfg(test)]
    pub fn raw(&self) -> Vec<RawBlock> {
        self.raw_blocks().collect()
    }

    /// The events held, as owned events: what a failed write spools.
    pub fn to_events(&self) -> Vec<ClickEvent> {
        self.raw_events()
            .map(|e| ClickEvent {
                short_code: e.short_code.into(),
                clicked_at: e.clicked_at,
                referrer: e.referrer.into(),
                device: e.device,
                browser: e.browser.into(),
                os: e.os.into(),
                is_bot: e.is_bot,
                country: e.country.into(),
                city: e.city.map(str::to_owned),
                visitor_hash: e.visitor_hash,
            })
            .collect()
    }
}

/// The parts of a batch, each built as it is read ([`ClickBatch::cut`]).
/// One of a held batch's tables of ids (strings or contexts) mapped to a
/// part's, filled as the part meets them ([`NOT_MET`] until then), and emptied
/// between parts by resetting only what the part met.
#[derive(Default)]
struct IdTable {
    map: Vec<u32>,
    met: Vec<u32>,
}

const NOT_MET: u32 = u32::MAX;

impl IdTable {
    fn new(len: usize) -> Self {
        Self {
            map: vec![NOT_MET; len],
            met: Vec::new(),
        }
    }

    /// The part's id for the held batch's `id`, from `make` the first time. An id
    /// outside the held batch's table is not remembered.
    fn get_or(&mut self, id: u32, make: impl FnOnce() -> u32) -> u32 {
        match self.map.get_mut(id as usize) {
            Some(mapped) if *mapped != NOT_MET => *mapped,
            Some(mapped) => {
                *mapped = make();
                self.met.push(id);
                *mapped
            }
            None => make(),
        }
    }

    fn clear(&mut self) {
        for id in self.met.drain(..) {
            if let Some(mapped) = self.map.get_mut(id as usize) {
                *mapped = NOT_MET;
            }
        }
    }
}

/// A held batch's ids to the part being built ([`ClickBatch::push_held`]).
#[derive(Default)]
struct IdMap {
    codes: IdTable,
    values: IdTable,
    contexts: IdTable,
}

impl IdMap {
    fn for_batch(b: &ClickBatch) -> Self {
        Self {
            codes: IdTable::new(b.codes.len()),
            values: IdTable::new(b.values.len()),
            contexts: IdTable::new(b.contexts.all.len()),
        }
    }

    fn clear(&mut self) {
        self.codes.clear();
        self.values.clear();
        self.contexts.clear();
    }
}

pub struct Parts<'a> {
    batch: &'a ClickBatch,
    /// Click indices in the deltas' order.
    order: Vec<u32>,
    /// Where each part starts in `order`, then where the last ends.
    bounds: Vec<usize>,
    /// The part read next.
    next: usize,
    /// The batch's ids to the part's being built.
    ids: IdMap,
}

impl Iterator for Parts<'_> {
    type Item = ClickBatch;

    fn next(&mut self) -> Option<ClickBatch> {
        let (start, end) = (*self.bounds.get(self.next)?, *self.bounds.get(self.next + 1)?);
        self.next += 1;
        let mut clicks: Vec<u32> = self.order.get(start..end)?.to_vec();
        // In arrival order, as the batch holds them (raw events keep that order).
        clicks.sort_unstable();
        let b = self.batch;
        let mut part = ClickBatch::default();
        self.ids.clear();
        for c in clicks.iter().filter_map(|i| b.clicks.get(*i as usize)) {
            part.push_held(b, c, &mut self.ids);
        }
        Some(part)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.bounds.len().saturating_sub(self.next + 1);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Parts<'_> {}

/// How much of a [`ClickBatch`] a journal has already been given: its code and value
/// strings and its clicks, by count. See [`ClickBatch::encode_since`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoded {
    codes: usize,
    values: usize,
    clicks: usize,
}

/// Bytes of one click in [`ClickBatch::encode_since`]'s form.
const ENCODED_CLICK: usize = 8 + 8 + 6 * 4 + 2;

impl ClickBatch {
    /// Appends to `out` what the batch took in since `from`, in a compact binary form
    /// ([`Decoder`] reads it back): the strings new to its tables, then each new click
    /// as 42 bytes of numbers. Why this form: the store's lane journals every batch
    /// before it holds it ([`super::journal`]), and the held rows are numbers already,
    /// so this costs a copy of ~42 bytes a click; JSON would cost a serialisation of
    /// every string of every click.
    pub fn encode_since(&self, from: Encoded, out: &mut Vec<u8>) -> Encoded {
        let now = Encoded {
            codes: self.codes.len(),
            values: self.values.len(),
            clicks: self.clicks.len(),
        };
        for (table, start) in [(&self.codes, from.codes), (&self.values, from.values)] {
            let new = table.strings().get(start..).unwrap_or_default();
            out.extend_from_slice(&(new.len() as u32).to_le_bytes());
            for s in new {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        let clicks = self.clicks.range(from.clicks, self.clicks.len());
        out.reserve(4 + clicks.len() * ENCODED_CLICK);
        out.extend_from_slice(&(clicks.len() as u32).to_le_bytes());
        for c in clicks.map(|c| self.spell(c)) {
            out.extend_from_slice(&c.at_ms.to_le_bytes());
            out.extend_from_slice(&c.visitor.to_le_bytes());
            for id in [c.code, c.referrer, c.browser, c.os, c.country, c.city] {
                out.extend_from_slice(&id.to_le_bytes());
            }
            let device = match c.device {
                Device::Mobile => 0u8,
                Device::Desktop => 1,
                Device::Tablet => 2,
                Device::Other => 3,
            };
            out.extend_from_slice(&[device, u8::from(c.bot)]);
        }
        now
    }
}

/// Reads back what [`ClickBatch::encode_since`] wrote, record after record of one
/// batch (its string tables grow as records arrive).
#[derive(Debug, Default)]
pub struct Decoder {
    codes: Vec<Arc<str>>,
    values: Vec<Arc<str>>,
}

/// A record that does not parse: the journal's checksum passed, so a bug or a
/// different version wrote it.
#[derive(Debug, thiserror::Error)]
#[error("malformed journal record")]
pub struct Malformed;

impl Decoder {
    /// Appends the clicks of one record to `out`.
    pub fn decode(&mut self, mut record: &[u8], out: &mut Vec<ClickEvent>) -> Result<(), Malformed> {
        fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], Malformed> {
            let (head, tail) = r.split_at_checked(n).ok_or(Malformed)?;
            *r = tail;
            Ok(head)
        }
        fn u32_of(r: &mut &[u8]) -> Result<u32, Malformed> {
            let b = take(r, 4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        fn u64_of(r: &mut &[u8]) -> Result<u64, Malformed> {
            let mut a = [0u8; 8];
            a.copy_from_slice(take(r, 8)?);
            Ok(u64::from_le_bytes(a))
        }
        for table in [&mut self.codes, &mut self.values] {
            for _ in 0..u32_of(&mut record)? {
                let len = u32_of(&mut record)? as usize;
                let s = std::str::from_utf8(take(&mut record, len)?).map_err(|_| Malformed)?;
                table.push(s.into());
            }
        }
        let n = u32_of(&mut record)? as usize;
        if record.len() != n * ENCODED_CLICK {
            return Err(Malformed);
        }
        out.reserve(n);
        for _ in 0..n {
            let at_ms = u64_of(&mut record)? as i64;
            let visitor = u64_of(&mut record)?;
            let mut ids = [0u32; 6];
            for id in &mut ids {
                *id = u32_of(&mut record)?;
            }
            let [code, referrer, browser, os, country, city] = ids;
            let flags = take(&mut record, 2)?;
            let label = |t: &Vec<Arc<str>>, id: u32| t.get(id as usize).cloned().ok_or(Malformed);
            out.push(ClickEvent {
                short_code: label(&self.codes, code)?,
                clicked_at: from_ms(at_ms),
                referrer: label(&self.values, referrer)?,
                device: match flags[0] {
                    0 => Device::Mobile,
                    1 => Device::Desktop,
                    2 => Device::Tablet,
                    _ => Device::Other,
                },
                browser: label(&self.values, browser)?,
                os: label(&self.values, os)?,
                is_bot: flags[1] != 0,
                country: label(&self.values, country)?,
                city: match city {
                    NO_CITY => None,
                    id => Some(label(&self.values, id)?.to_string()),
                },
                visitor_hash: visitor,
            });
        }
        Ok(())
    }
}

/// One JSON block of raw events (see [`RawBlock`]); `codes` and `values` are the
/// batch's strings, already quoted.
fn raw_block(chunk: impl ExactSizeIterator<Item = Spelled>, codes: &[String], values: &[String]) -> RawBlock {
    let events = chunk.len();
    let mut json = String::with_capacity(events * 128 + 2);
    let mut num = itoa::Buffer::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    json.push('[');
    for (n, c) in chunk.enumerate() {
        if n > 0 {
            json.push(',');
        }
        first = first.min(c.at_ms);
        last = last.max(c.at_ms);
        json.push('[');
        json.push_str(text(codes, c.code));
        json.push(',');
        json.push_str(num.format(c.at_ms));
        json.push(',');
        json.push_str(text(values, c.referrer));
        json.push_str(",\"");
        json.push_str(c.device.as_str());
        json.push_str("\",");
        json.push_str(text(values, c.browser));
        json.push(',');
        json.push_str(text(values, c.os));
        json.push_str(if c.bot { ",1," } else { ",0," });
        json.push_str(text(values, c.country));
        json.push(',');
        json.push_str(if c.city == NO_CITY {
            "null"
        } else {
            text(values, c.city)
        });
        json.push(',');
        json.push_str(num.format(c.visitor as i64));
        json.push(']');
    }
    json.push(']');
    RawBlock {
        first_at: from_ms(first),
        last_at: from_ms(last),
        events,
        json,
    }
}

/// Clicks for the unit tests of this module, of [`super::rows`] and of [`crate::stats`].
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
    fn encoded_records_decode_to_the_events_taken_in() {
        let mut first = vec![
            event("a", "2026-03-01T10:05:00.123Z", "DE", 1, false),
            event("b", "2026-03-01T10:06:00Z", "US", 2, true),
        ];
        first[1].city = Some("Berlin".into());
        first[1].device = Device::Tablet;
        let second = vec![
            event("a", "2026-03-01T10:07:00Z", "FR", 3, false),
            event("c", "2026-03-01T11:00:00Z", "DE", 4, false),
        ];
        let mut batch = ClickBatch::default();
        let (mut one, mut two) = (Vec::new(), Vec::new());
        batch.add(&first);
        let mark = batch.encode_since(Encoded::default(), &mut one);
        batch.add(&second);
        let end = batch.encode_since(mark, &mut two);
        assert_eq!(batch.encode_since(end, &mut Vec::new()), end, "nothing new");
        let mut decoder = Decoder::default();
        let mut back = Vec::new();
        decoder.decode(&one, &mut back).unwrap();
        decoder.decode(&two, &mut back).unwrap();
        assert_eq!(back, batch.to_events());
        assert_eq!(back.len(), 4);
        assert_eq!(back[1].city.as_deref(), Some("Berlin"));
        assert!(decoder.decode(&one[..one.len() - 1], &mut Vec::new()).is_err());
    }

    #[test]
    fn a_held_click_is_28_bytes() {
        // Under load a store write holds up to 800,000 clicks, two holds at a time:
        // bench/results measured peak memory with this size.
        assert_eq!(std::mem::size_of::<Click>(), 28);
    }

    #[test]
    fn a_long_hold_takes_28_bytes_a_click_plus_one_chunk() {
        // Just past a power of two, where a doubling list would sit in twice the
        // memory it needs (32 MiB for 16 MiB of clicks), beside the next hold filling.
        let n = (1 << 19) + 1;
        let mut batch = ClickBatch::default();
        for start in (0..n).step_by(50_000) {
            let events: Vec<ClickEvent> = (start..n.min(start + 50_000))
                .map(|i| {
                    event(
                        &format!("c{}", i % 1000),
                        "2026-03-01T10:05:00Z",
                        "DE",
                        i as u64,
                        false,
                    )
                })
                .collect();
            batch.add(&events);
        }
        assert_eq!(batch.events(), n);
        let bound = (n + crate::analytics::chunked::CHUNK) * std::mem::size_of::<Click>();
        let held = batch.clicks.allocated_bytes();
        assert!(held <= bound, "{held} bytes > {bound}");
    }

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
        // Only days before a mark; none (and nothing built) when no click is before it.
        let before = batch.days_before(Some(t("2026-03-02T00:00:00Z")));
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].1.day, t("2026-03-01T00:00:00Z"));
        assert!(batch.days_before(Some(t("2026-03-01T00:00:00Z"))).is_empty());
        let later = fold(&events[2..]);
        assert!(later.days_before(Some(t("2026-03-02T00:00:00Z"))).is_empty());
        assert!(later.folded_days.get().is_none(), "no day deltas built");
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
        let raw = batch.raw();
        let block = &raw[0];
        events[0].clicked_at = t("2026-03-01T10:05:00.123Z");
        assert_eq!(
            (block.first_at, block.last_at, block.events),
            (events[0].clicked_at, events[1].clicked_at, 2)
        );
        assert_eq!(block.decode().unwrap(), events, "the JSON block");
        assert_eq!(batch.to_events(), events, "the rows held");
        assert!(fold(&[]).raw().is_empty(), "no events, no block");
    }

    /// Parts hold at most their rows, together exactly the batch's clicks and rows,
    /// and the same clicks in another order cut into the same parts.
    #[test]
    fn parts_cover_the_batch_exactly_and_do_not_depend_on_order() {
        let mut events = Vec::new();
        for link in 0..7 {
            for hour in 0..5 {
                for visitor in 0..3 {
                    let at = format!("2026-03-01T{:02}:{:02}:00Z", hour + 1, link * 3 + visitor);
                    events.push(event(&format!("c{link}"), &at, "DE", visitor, visitor == 2));
                }
            }
        }
        let whole = fold(&events);
        assert_eq!(whole.rows(), 35);
        assert!(whole.parts(35).is_empty(), "a batch that fits is not cut");
        let parts = whole.parts(8);
        assert_eq!(parts.len(), 5);
        assert!(parts.iter().all(|p| p.rows() <= 8));
        assert_eq!(parts.iter().map(ClickBatch::events).sum::<usize>(), events.len());
        assert_eq!(
            rows_of(&parts),
            rows_of(std::slice::from_ref(&whole)),
            "the parts' rows are the batch's rows"
        );
        let clicks: u64 = parts.iter().flat_map(|p| p.touches()).map(|t| t.clicks).sum();
        assert_eq!(clicks, events.len() as u64);
        events.reverse();
        let again = fold(&events).parts(8);
        let keys = |parts: &[ClickBatch]| -> Vec<Vec<(String, DateTime<Utc>)>> {
            parts
                .iter()
                .map(|p| {
                    p.rollups()
                        .into_iter()
                        .map(|(c, h)| (c.to_owned(), h.hour))
                        .collect()
                })
                .collect()
        };
        assert_eq!(keys(&again), keys(&parts));
    }

    /// Parts are the deltas' rows cut in order, which a journal's replay relies on to
    /// skip the parts that committed, and cutting them leaves the batch unfolded: the
    /// deltas of a whole hold would otherwise stay in memory for its whole write.
    #[test]
    fn parts_cut_the_deltas_in_order_without_folding_the_batch() {
        let mut events = Vec::new();
        for link in [10, 2, 1, 30, 3] {
            for hour in [4, 1, 3] {
                for visitor in 0..2 {
                    let at = format!("2026-03-01T{hour:02}:{visitor:02}:00Z");
                    events.push(event(&format!("c{link}"), &at, "DE", visitor, link == 3));
                }
            }
        }
        let whole = fold(&events);
        let parts = whole.parts(4);
        assert!(
            whole.folded.get().is_none(),
            "cutting parts folded the whole batch"
        );
        let keys = |b: &ClickBatch| -> Vec<(String, DateTime<Utc>)> {
            b.rollups()
                .into_iter()
                .map(|(c, h)| (c.to_owned(), h.hour))
                .collect()
        };
        let in_parts: Vec<_> = parts.iter().flat_map(keys).collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(in_parts, keys(&whole));
    }

    /// A part takes each held click through tables of ids instead of its strings
    /// ([`ClickBatch::push_held`]): every field of every click must come out of the
    /// parts as it went into the batch, and each part's rows as the batch's.
    #[test]
    fn parts_keep_every_field_of_every_click() {
        let (browsers, systems) = (["Chrome", "Firefox", "Safari"], ["Android", "Windows"]);
        let (countries, cities) = (["DE", "US", "unknown"], [None, Some("Berlin"), Some("Lyon")]);
        let referrers = ["direct", "t.co", "news.example", ""];
        let devices = [Device::Mobile, Device::Desktop, Device::Tablet, Device::Other];
        let events: Vec<ClickEvent> = (0..600u64)
            .map(|i| {
                let i_ = i as usize;
                let at = format!("2026-03-01T{:02}:{:02}:00Z", i % 3, i % 60);
                let mut e = event(
                    &format!("c{}", (i * 7) % 41),
                    &at,
                    countries[i_ % 3],
                    i,
                    i % 11 == 0,
                );
                e.browser = browsers[(i_ / 2) % 3].into();
                e.os = systems[(i_ / 3) % 2].into();
                e.city = cities[(i_ / 5) % 3].map(Into::into);
                e.referrer = referrers[(i_ / 7) % 4].into();
                e.device = devices[(i_ / 4) % 4];
                e
            })
            .collect();
        let whole = fold(&events);
        let parts = whole.parts(10);
        assert!(parts.len() > 5, "the batch is cut into several parts");
        let key = |e: &ClickEvent| e.visitor_hash;
        let mut out: Vec<ClickEvent> = parts.iter().flat_map(ClickBatch::to_events).collect();
        out.sort_by_key(key);
        let mut expected = whole.to_events();
        expected.sort_by_key(key);
        assert_eq!(out, expected);
        assert_eq!(rows_of(&parts), rows_of(std::slice::from_ref(&whole)));
    }

    /// The link-hour rows of some batches together, in code and hour order.
    fn rows_of(batches: &[ClickBatch]) -> Vec<(String, HourDelta)> {
        let mut rows: Vec<(String, HourDelta)> = batches
            .iter()
            .flat_map(|p| p.rollups().into_iter().map(|(c, h)| (c.to_owned(), h.clone())))
            .collect();
        rows.sort_by(|a, b| (a.0.as_str(), a.1.hour).cmp(&(b.0.as_str(), b.1.hour)));
        rows
    }

    /// A journal records how many parts a hold is written in before the parts are
    /// cut (each is built only when its write comes): [`ClickBatch::part_count`] must
    /// be the number [`ClickBatch::cut`] yields, every part within its rows, and the
    /// parts together the batch's clicks, each part's in arrival order.
    #[test]
    fn parts_cut_one_at_a_time_are_as_many_as_counted_and_keep_arrival_order() {
        use proptest::prelude::*;
        let click = (0..30usize, 0..(2 * 24 * 60i64), any::<bool>());
        proptest!(|(clicks in proptest::collection::vec(click, 0..300), max_rows in 1..40usize)| {
            // Each click's visitor comes from its arrival index: it names the click below.
            let events: Vec<ClickEvent> = clicks
                .iter()
                .enumerate()
                .map(|(i, (code, minute, bot))| {
                    let mut e = event(&format!("c{code}"), "2026-03-01T00:00:00Z", "DE", i as u64, *bot);
                    e.clicked_at += chrono::Duration::minutes(*minute);
                    e
                })
                .collect();
            let batch = fold(&events);
            let parts = batch.cut(max_rows);
            prop_assert_eq!(parts.len(), batch.part_count(max_rows));
            let parts: Vec<ClickBatch> = parts.collect();
            prop_assert_eq!(parts.len(), batch.part_count(max_rows));
            prop_assert!(parts.iter().all(|p| p.rows() <= max_rows));
            if !parts.is_empty() {
                prop_assert_eq!(parts.iter().map(ClickBatch::rows).sum::<usize>(), batch.rows());
                let index: HashMap<u64, u64> =
                    events.iter().enumerate().map(|(i, e)| (e.visitor_hash, i as u64)).collect();
                let mut together: Vec<u64> = Vec::new();
                for p in &parts {
                    let mine: Vec<u64> = p.raw_events().filter_map(|e| index.get(&e.visitor_hash).copied()).collect();
                    prop_assert!(mine.windows(2).all(|w| w[0] < w[1]), "a part's clicks left arrival order");
                    together.extend(mine);
                }
                together.sort_unstable();
                prop_assert_eq!(together, (0..events.len() as u64).collect::<Vec<_>>());
            }
        });
    }

    /// The one-pass fold over sorted rows against the obvious per-click fold.
    #[test]
    fn the_sorted_fold_agrees_with_folding_click_by_click() {
        use proptest::prelude::*;
        let click = (0..4usize, 0..(3 * 24 * 60i64), 0..3usize, 0..6u64, any::<bool>());
        proptest!(|(clicks in proptest::collection::vec(click, 0..200), split in 0..200usize)| {
            let countries = ["DE", "US", "JP"];
            let events: Vec<ClickEvent> = clicks
                .iter()
                .map(|(code, minute, country, visitor, bot)| {
                    let mut e = event(&format!("c{code}"), "2026-03-01T00:00:00Z", countries[*country], *visitor, *bot);
                    e.clicked_at += chrono::Duration::minutes(*minute);
                    e
                })
                .collect();
            let mut batch = fold(&events[..split.min(events.len())]);
            let _ = batch.rollups(); // folded once, then more added
            batch.add(&events[split.min(events.len())..]);

            type Want = (u64, u64, std::collections::BTreeMap<String, u64>, std::collections::BTreeSet<u64>);
            let mut want: std::collections::BTreeMap<(String, DateTime<Utc>), Want> = Default::default();
            let mut want_days: std::collections::BTreeMap<(String, DateTime<Utc>), std::collections::BTreeSet<u64>> = Default::default();
            for e in &events {
                let w = want.entry((e.short_code.to_string(), super::super::rows::hour_of(e.clicked_at))).or_default();
                if e.is_bot {
                    w.1 += 1;
                } else {
                    w.0 += 1;
                    *w.2.entry(e.country.to_string()).or_default() += 1;
                    w.3.insert(e.visitor_hash);
                    want_days
                        .entry((e.short_code.to_string(), super::super::rows::day_of(e.clicked_at)))
                        .or_default()
                        .insert(e.visitor_hash);
                }
            }
            let got: Vec<_> = batch
                .rollups()
                .into_iter()
                .map(|(c, h)| {
                    let countries: std::collections::BTreeMap<String, u64> =
                        h.dims.country.iter().map(|(k, n)| (k.to_owned(), n)).collect();
                    ((c.to_owned(), h.hour), (h.clicks, h.bots, countries, h.visitors.estimate()))
                })
                .collect();
            let expected: Vec<_> = want
                .into_iter()
                .map(|(k, (c, b, countries, v))| (k, (c, b, countries, v.len() as u64)))
                .collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(batch.rows(), batch.rollups().len());
            let days: Vec<_> = batch
                .days()
                .into_iter()
                .map(|(c, d)| ((c.to_owned(), d.day), d.visitors.estimate()))
                .collect();
            let expected_days: Vec<_> = want_days.into_iter().map(|(k, v)| (k, v.len() as u64)).collect();
            prop_assert_eq!(days, expected_days);
            let clicks: u64 = batch.touches().iter().map(|t| t.clicks).sum();
            prop_assert_eq!(clicks, events.len() as u64);
            prop_assert_eq!(batch.events(), events.len());
        });
    }
}
