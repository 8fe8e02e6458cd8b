//! The stats read model: a link's click figures over a range, computed from the
//! hourly rollup rows and visitor sketches the click pipeline wrote, read through
//! the click store port. The link service uses it for the info and stats endpoints.
//!
//! Counting rules: bots are counted apart; `total_clicks`, unique visitors and every
//! breakdown count human clicks only.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::analytics::event::Device;
use crate::analytics::hll::Hll;
use crate::analytics::plan::sketch_plan;
use crate::analytics::port::{ClickStore, ClickStoreError};
use crate::analytics::rows::{Dims, StoredRollup, hour_of};
use crate::domain::stats::StatsRange;

/// Breakdown lists in a stats answer are cut to this many entries.
pub const TOP_N: usize = 100;
/// The info endpoint shows this many top countries and referrers.
pub const SUMMARY_TOP_N: usize = 5;

/// A stats read failed: the click store could not be read.
pub type StatsError = ClickStoreError;

/// Reads stats through the click store port.
pub struct Stats {
    clicks: Arc<dyn ClickStore>,
}

impl Stats {
    pub fn new(clicks: Arc<dyn ClickStore>) -> Self {
        Self { clicks }
    }

    /// Stats of `code` over `range`.
    pub async fn of_link(&self, code: &str, range: &StatsRange) -> Result<LinkStats, StatsError> {
        let (from, to) = rows_window(range);
        let rows = self.clicks.rollups(code, from, to).await?;
        let sketches = self.clicks.sketches(code, &sketch_plan(from, to)).await?;
        Ok(summarize(&rows, &sketches, range))
    }

    /// The codes clicked most since `since` (most first, at most `limit`).
    pub async fn hot_codes(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<String>, StatsError> {
        self.clicks.hot_codes(since, limit).await
    }

    /// The info endpoint's summary of `code` (last day and week).
    pub async fn summary_of_link(&self, code: &str, now: DateTime<Utc>) -> Result<LinkSummary, StatsError> {
        let rows = self
            .clicks
            .rollups(code, now - Duration::days(8), now + Duration::hours(1))
            .await?;
        Ok(summary(&rows, now))
    }
}

/// Click figures for one link over a range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStats {
    pub total_clicks: u64,
    pub unique_visitors: u64,
    pub time_series: Vec<(DateTime<Utc>, u64)>,
    pub geographic: Vec<(String, u64)>,
    pub referrers: Vec<(String, u64)>,
    pub devices: Devices,
    pub browsers: Vec<(String, u64)>,
    pub operating_systems: Vec<(String, u64)>,
    pub bots: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Devices {
    pub mobile: u64,
    pub desktop: u64,
    pub tablet: u64,
    pub other: u64,
}

/// The `analytics` block of the info endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkSummary {
    pub clicks_24h: u64,
    pub clicks_7d: u64,
    pub top_countries: Vec<(String, u64)>,
    pub top_referrers: Vec<(String, u64)>,
}

fn top(map: BTreeMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// Rollups are hourly, so a range is widened to whole hours: the hour holding `start`
/// through the hour holding the instant before `end`.
pub fn rows_window(range: &StatsRange) -> (DateTime<Utc>, DateTime<Utc>) {
    (hour_of(range.start), range.end)
}

/// Stats for a range from the link's rollup rows (any order; rows outside the range
/// are ignored) and the visitor sketches [`sketch_plan`] chose for it.
pub fn summarize(rows: &[StoredRollup], sketches: &[Vec<u8>], range: &StatsRange) -> LinkStats {
    let (from, to) = rows_window(range);
    let buckets = range.buckets();
    let mut series: BTreeMap<DateTime<Utc>, u64> = buckets.iter().map(|b| (*b, 0)).collect();
    // Counts add up exactly, without the per-row cap: these maps are not stored.
    let [mut country, mut referrer, mut device, mut browser, mut os]: [BTreeMap<String, u64>; 5] =
        Default::default();
    let mut visitors = Hll::new();
    let mut stats = LinkStats::default();
    for row in rows.iter().filter(|r| r.hour >= from && r.hour < to) {
        let clicks = u64::try_from(row.clicks).unwrap_or(0);
        stats.total_clicks += clicks;
        stats.bots += u64::try_from(row.bots).unwrap_or(0);
        if let Some(b) = series.get_mut(&range.granularity.truncate(row.hour)) {
            *b += clicks;
        }
        let row_dims = Dims::from_json(&row.dims);
        for (mine, theirs) in [
            (&mut country, row_dims.country),
            (&mut referrer, row_dims.referrer),
            (&mut device, row_dims.device),
            (&mut browser, row_dims.browser),
            (&mut os, row_dims.os),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
    }
    for sketch in sketches {
        if visitors.merge_encoded(sketch).is_err() {
            tracing::warn!("unreadable visitor sketch skipped");
        }
    }
    stats.unique_visitors = visitors.estimate();
    stats.time_series = series.into_iter().collect();
    let device = |d: Device| device.get(d.as_str()).copied().unwrap_or(0);
    stats.devices = Devices {
        mobile: device(Device::Mobile),
        desktop: device(Device::Desktop),
        tablet: device(Device::Tablet),
        other: device(Device::Other),
    };
    stats.geographic = top(country, TOP_N);
    stats.referrers = top(referrer, TOP_N);
    stats.browsers = top(browser, TOP_N);
    stats.operating_systems = top(os, TOP_N);
    stats
}

/// The info endpoint's summary from the last 7 days of rows.
pub fn summary(rows: &[StoredRollup], now: DateTime<Utc>) -> LinkSummary {
    let day_ago = hour_of(now - Duration::hours(24));
    let week_ago = hour_of(now - Duration::days(7));
    let mut out = LinkSummary::default();
    let mut countries = BTreeMap::new();
    let mut referrers = BTreeMap::new();
    for row in rows.iter().filter(|r| r.hour >= week_ago) {
        let clicks = u64::try_from(row.clicks).unwrap_or(0);
        out.clicks_7d += clicks;
        if row.hour >= day_ago {
            out.clicks_24h += clicks;
        }
        let d = Dims::from_json(&row.dims);
        for (k, v) in d.country {
            *countries.entry(k).or_default() += v;
        }
        for (k, v) in d.referrer {
            *referrers.entry(k).or_default() += v;
        }
    }
    out.top_countries = top(countries, SUMMARY_TOP_N);
    out.top_referrers = top(referrers, SUMMARY_TOP_N);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::batch::fold;
    use crate::analytics::batch::test_clicks::{event, t};
    use crate::analytics::rows::merge_row;

    #[test]
    fn merged_rows_add_up_and_summaries_fill_buckets() {
        let first = [event("a", "2026-03-01T10:05:00Z", "US", 1, false)];
        let second = [
            event("a", "2026-03-01T10:06:00Z", "US", 1, false),
            event("a", "2026-03-01T10:07:00Z", "DE", 2, false),
        ];
        let row = merge_row(None, fold(&first).rollups()[0].1);
        let row = merge_row(Some(&row), fold(&second).rollups()[0].1);
        assert_eq!(row.clicks, 3);
        let later = merge_row(
            None,
            fold(&[event("a", "2026-03-03T00:30:00Z", "US", 3, false)]).rollups()[0].1,
        );
        let range = StatsRange::parse(
            Some("2026-03-01"),
            Some("2026-03-03"),
            None,
            t("2026-04-01T00:00:00Z"),
        )
        .unwrap();
        let sketches = vec![row.visitors.clone(), later.visitors.clone()];
        let s = summarize(&[row, later], &sketches, &range);
        assert_eq!(s.total_clicks, 4);
        assert_eq!(s.unique_visitors, 3);
        assert_eq!(
            s.time_series.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
            vec![3, 0, 1]
        );
        assert_eq!(s.geographic, vec![("US".into(), 3), ("DE".into(), 1)]);
        assert_eq!(s.devices.mobile, 4);
    }

    #[test]
    fn summary_counts_last_day_and_week() {
        let now = t("2026-03-10T12:00:00Z");
        let rows: Vec<_> = [
            "2026-03-10T11:10:00Z",
            "2026-03-05T00:00:00Z",
            "2026-02-01T00:00:00Z",
        ]
        .iter()
        .map(|at| merge_row(None, fold(&[event("a", at, "US", 1, false)]).rollups()[0].1))
        .collect();
        let s = summary(&rows, now);
        assert_eq!((s.clicks_24h, s.clicks_7d), (1, 2));
        assert_eq!(s.top_countries, vec![("US".into(), 2)]);
    }
}
