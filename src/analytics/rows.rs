//! The stored rows of click analytics and how a write merges into them.
//!
//! A write's clicks are folded (in [`super::batch`]) into one [`HourDelta`] per
//! link-hour; the writer ([`super::click_writer`]) reads the stored row, and
//! [`merge_row`] adds the delta to its totals, per-dimension counts and HyperLogLog
//! of visitors. Visitor sketches are also kept per link-day: a dense sketch is
//! 16 KiB, so a 30-day query merges 30 daily sketches instead of 720 hourly ones
//! (see [`super::plan`]). A write keeps a daily sketch only for days that are over
//! ([`DAYS_THROUGH`]): the current day is read from its hours until it ends, so a
//! write under traffic touches one row per link-hour instead of two.
//! Everything here is pure: no I/O, unit-tested below.
//!
//! Counting rules (also in the README): bots are counted apart. `clicks`, unique
//! visitors and every breakdown count human clicks only; `bots` counts the rest; the
//! link's `click_count` counts every redirect.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::Device;
use super::hll::Hll;

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

/// A dimension keeps at most this many distinct values per link-hour; further values
/// are counted under `other`, so no client can grow a row without bound.
pub const MAX_VALUES_PER_DIMENSION: usize = 200;
pub const OTHER: &str = "other";

/// Counts per value of one dimension, kept sorted by value. A link-hour sees a handful
/// of distinct values, and a batch folds into tens of thousands of link-hours: a
/// sorted `Vec` costs one small allocation where a `BTreeMap` allocates an 11-slot
/// node for its first key (five per link-hour made a writer's memory grow by
/// hundreds of MiB under uniform traffic). Stored as a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(Vec<(String, u64)>);

impl Counts {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.find(key).ok().map(|i| self.0[i].1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Distinct values, not counting [`OTHER`].
    fn values(&self) -> usize {
        self.0.len() - usize::from(self.find(OTHER).is_ok())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// Adds `n` to `key`; a new value beyond [`MAX_VALUES_PER_DIMENSION`] counts as
    /// [`OTHER`], so no client can grow a row without bound.
    fn bump(&mut self, key: &str, n: u64) {
        match self.find(key) {
            Ok(i) => self.0[i].1 += n,
            // `other` itself never counts against the cap, so merging a capped row
            // into another keeps its values.
            Err(i) if key == OTHER || self.values() < MAX_VALUES_PER_DIMENSION => {
                // Most link-hours see one value per dimension: no room for four.
                if self.0.capacity() == 0 {
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, (key.to_owned(), n))
            }
            Err(_) => match self.find(OTHER) {
                Ok(i) => self.0[i].1 += n,
                Err(i) => self.0.insert(i, (OTHER.to_owned(), n)),
            },
        }
    }
}

impl IntoIterator for Counts {
    type Item = (String, u64);
    type IntoIter = std::vec::IntoIter<(String, u64)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Counts;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of counts")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Counts, A::Error> {
                let mut v: Vec<(String, u64)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, u64>()? {
                    v.push(entry);
                }
                // Written sorted; sorting (and summing duplicates) keeps any input valid.
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v.dedup_by(|b, a| {
                    let same = a.0 == b.0;
                    if same {
                        a.1 += b.1;
                    }
                    same
                });
                Ok(Counts(v))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Counts per dimension value, for one link-hour (humans only). Short keys: the JSON is
/// stored in every row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    #[serde(rename = "c", default)]
    pub country: Counts,
    #[serde(rename = "r", default)]
    pub referrer: Counts,
    #[serde(rename = "d", default)]
    pub device: Counts,
    #[serde(rename = "b", default)]
    pub browser: Counts,
    #[serde(rename = "o", default)]
    pub os: Counts,
}

impl Dims {
    /// Counts one human click.
    pub(crate) fn add(&mut self, country: &str, referrer: &str, device: Device, browser: &str, os: &str) {
        self.country.bump(country, 1);
        self.referrer.bump(referrer, 1);
        self.device.bump(device.as_str(), 1);
        self.browser.bump(browser, 1);
        self.os.bump(os, 1);
    }

    /// Adds another row's counts (each dimension still capped).
    pub fn merge(&mut self, other: &Dims) {
        for (mine, theirs) in [
            (&mut self.country, &other.country),
            (&mut self.referrer, &other.referrer),
            (&mut self.device, &other.device),
            (&mut self.browser, &other.browser),
            (&mut self.os, &other.os),
        ] {
            for (k, n) in theirs.iter() {
                mine.bump(k, n);
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Unreadable JSON counts as empty: the row's totals are still right, and one bad
    /// row must not stop the pipeline.
    pub fn from_json(s: &str) -> Self {
        serde_json::from_str(s).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "unreadable rollup dimensions ignored");
            Self::default()
        })
    }
}

/// A rollup row as stored. Reads for stats leave `visitors` empty: sketches come
/// from [`sketch_plan`]'s rows instead.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRollup {
    pub hour: DateTime<Utc>,
    pub clicks: i64,
    pub bots: i64,
    pub dims: String,
    pub visitors: Vec<u8>,
}

/// Rows a batch read back from the store, found by link and time without building an
/// owned key for every lookup.
#[derive(Debug)]
pub struct StoredRows<K, T>(HashMap<String, Vec<(K, T)>, foldhash::fast::RandomState>);

impl<K: PartialEq, T> StoredRows<K, T> {
    pub fn with_capacity(n: usize) -> Self {
        Self(HashMap::with_capacity_and_hasher(n, Default::default()))
    }

    pub fn insert(&mut self, code: String, at: K, row: T) {
        self.0.entry(code).or_default().push((at, row));
    }

    pub fn get(&self, code: &str, at: &K) -> Option<&T> {
        self.0
            .get(code)?
            .iter()
            .find(|(k, _)| k == at)
            .map(|(_, row)| row)
    }
}

fn truncate(t: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    let s = t.timestamp();
    DateTime::from_timestamp(s - s.rem_euclid(seconds), 0).unwrap_or(t)
}

pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate(t, 3_600)
}

pub fn day_of(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate(t, 86_400)
}

/// A stored sketch with a write's visitors of that day added.
pub fn merge_sketch(existing: Option<&[u8]>, new: &Hll) -> Vec<u8> {
    let mut merged = new.clone();
    if let Some(e) = existing
        && merged.merge_encoded(e).is_err()
    {
        tracing::warn!("unreadable visitor sketch replaced");
    }
    merged.encode()
}

/// The `settings` row that says which daily sketches are complete: every one before
/// this UTC day (milliseconds since the epoch). A write adds a click's visitors to
/// its day's sketch only for such a day; later days are read from their hourly rows,
/// and once a day is over [`super::click_writer::ClickWriter::compact_days`] builds its
/// sketches from them and moves the mark. So the write under traffic, which is
/// nearly all for the current day, touches one row per link-hour instead of two.
pub const DAYS_THROUGH: &str = "click_days_through";

/// Each link-day's visitor sketch, the union of its hourly ones. `hours` holds
/// `(code, hour, sketch)` sorted by code and hour; an unreadable sketch is skipped.
pub fn daily_from_hourly(hours: &[(String, DateTime<Utc>, Vec<u8>)]) -> Vec<(&str, DateTime<Utc>, Hll)> {
    let mut days: Vec<(&str, DateTime<Utc>, Hll)> = Vec::new();
    for (code, hour, sketch) in hours {
        let day = day_of(*hour);
        let same = matches!(days.last(), Some((c, d, _)) if *c == code.as_str() && *d == day);
        if !same {
            days.push((code, day, Hll::new()));
        }
        if let Some((_, _, hll)) = days.last_mut()
            && hll.merge_encoded(sketch).is_err()
        {
            tracing::warn!("unreadable visitor sketch skipped");
        }
    }
    days
}

/// The row after adding `new` to what is stored (if anything).
pub fn merge_row(existing: Option<&StoredRollup>, new: &HourDelta) -> StoredRollup {
    let mut dims = existing.map(|e| Dims::from_json(&e.dims)).unwrap_or_default();
    dims.merge(&new.dims);
    let mut visitors = new.visitors.clone();
    if let Some(e) = existing
        && visitors.merge_encoded(&e.visitors).is_err()
    {
        tracing::warn!("unreadable visitor sketch replaced");
    }
    StoredRollup {
        hour: new.hour,
        clicks: existing.map_or(0, |e| e.clicks) + new.clicks as i64,
        bots: existing.map_or(0, |e| e.bots) + new.bots as i64,
        dims: dims.to_json(),
        visitors: visitors.encode(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::fold;
    use super::super::batch::test_clicks::{event, t};
    use super::*;

    #[test]
    fn daily_sketches_are_the_union_of_their_hours() {
        let sketch = |visitors: &[u64]| {
            let mut h = Hll::new();
            visitors
                .iter()
                .for_each(|v| h.insert(v.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
            h.encode()
        };
        let hours = vec![
            ("a".to_string(), t("2026-03-01T10:00:00Z"), sketch(&[1, 2])),
            ("a".to_string(), t("2026-03-01T23:00:00Z"), sketch(&[2, 3])),
            ("a".to_string(), t("2026-03-02T00:00:00Z"), sketch(&[4])),
            ("b".to_string(), t("2026-03-02T05:00:00Z"), sketch(&[1, 5])),
        ];
        let days: Vec<_> = daily_from_hourly(&hours)
            .into_iter()
            .map(|(c, d, h)| (c, d, h.estimate()))
            .collect();
        assert_eq!(
            days,
            vec![
                ("a", t("2026-03-01T00:00:00Z"), 3),
                ("a", t("2026-03-02T00:00:00Z"), 1),
                ("b", t("2026-03-02T00:00:00Z"), 2),
            ]
        );
    }

    #[test]
    fn a_dimension_is_capped_per_row() {
        let events: Vec<_> = (0..MAX_VALUES_PER_DIMENSION + 50)
            .map(|i| {
                let mut e = event("a", "2026-03-01T10:00:00Z", "US", i as u64, false);
                e.referrer = format!("site{i}.example").into();
                e
            })
            .collect();
        let batch = fold(&events);
        let r = batch.rollups()[0].1;
        let dims = &r.dims;
        assert_eq!(dims.referrer.len(), MAX_VALUES_PER_DIMENSION + 1);
        assert_eq!(dims.referrer.get(OTHER), Some(50));
        assert_eq!(dims.referrer.iter().map(|(_, n)| n).sum::<u64>(), r.clicks);
        let back = Dims::from_json(&dims.to_json());
        assert_eq!(&back, dims, "the JSON form reads back the same");
        let row = merge_row(None, r);
        assert_eq!(
            &Dims::from_json(&row.dims),
            dims,
            "the stored row is capped the same way"
        );
        // Merging a second full row into the stored one keeps the cap too.
        let twice = merge_row(Some(&row), r);
        let merged = Dims::from_json(&twice.dims);
        assert_eq!(merged.referrer.len(), MAX_VALUES_PER_DIMENSION + 1);
        assert_eq!(merged.referrer.iter().map(|(_, n)| n).sum::<u64>(), 2 * r.clicks);
    }
}
