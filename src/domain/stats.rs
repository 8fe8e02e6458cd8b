//! The shape of a stats query: which time range, which buckets.
//!
//! Kept pure so the rules users hit most (date formats, inclusive end dates, bucket
//! alignment, the cap on bucket count) are tested without a server.

use chrono::{DateTime, Datelike, Duration, NaiveDate, SubsecRound, TimeZone, Timelike, Utc};

use super::Invalid;

/// At most this many buckets per query: a year of hours is 8,760.
pub const MAX_BUCKETS: i64 = 10_000;
pub const DEFAULT_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
    Week,
}

impl Granularity {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            _ => Err(Invalid::request("granularity must be hour, day or week")),
        }
    }

    fn step(self) -> Duration {
        match self {
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
            Self::Week => Duration::weeks(1),
        }
    }

    /// The start of the bucket holding `t`: the hour, the UTC day, or the ISO week
    /// (Monday 00:00 UTC).
    pub fn truncate(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = Utc.from_utc_datetime(&t.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default());
        match self {
            Self::Hour => day + Duration::hours(i64::from(t.hour())),
            Self::Day => day,
            Self::Week => day - Duration::days(i64::from(t.weekday().num_days_from_monday())),
        }
    }
}

/// A validated stats query: `[start, end)` split into buckets of `granularity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRange {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub granularity: Granularity,
}

/// A bound: an RFC 3339 date-time, or a full date (`2026-01-31`) meaning its first
/// instant (for an end, the next day's: end dates are inclusive). Exactly the two
/// forms the OpenAPI document names (`date-time`, `date`): no other separator than
/// `T`, and four-digit years.
fn parse_bound(s: &str, name: &str, is_end: bool) -> Result<DateTime<Utc>, Invalid> {
    let b = s.as_bytes();
    let full_date = |b: &[u8]| {
        b.len() >= 10
            && b[..10].iter().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    if full_date(b)
        && matches!(b.get(10), Some(b'T' | b't'))
        && let Ok(t) = DateTime::parse_from_rfc3339(s)
    {
        return Ok(t.with_timezone(&Utc));
    }
    if b.len() == 10
        && full_date(b)
        && let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
    {
        // An end *date* is inclusive: the whole day counts.
        let d = if is_end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default()));
    }
    Err(Invalid::request(format!(
        "{name} must be an ISO 8601 date (2026-01-31) or date-time (2026-01-31T12:00:00Z)"
    )))
}

impl StatsRange {
    pub fn parse(
        start: Option<&str>,
        end: Option<&str>,
        granularity: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, Invalid> {
        let granularity = granularity
            .map(Granularity::parse)
            .transpose()?
            .unwrap_or(Granularity::Day);
        let end = end
            .map(|s| parse_bound(s, "end_date", true))
            .transpose()?
            .unwrap_or(now);
        let start = match start {
            Some(s) => parse_bound(s, "start_date", false)?,
            None => end - Duration::days(DEFAULT_DAYS),
        };
        if start >= end {
            return Err(Invalid::request("start_date must be before end_date"));
        }
        // Clicks are kept in hourly rows, so the range used starts at the hour
        // holding `start`; instants are kept to the millisecond like every other
        // timestamp of the API. The answer echoes this range.
        let range = Self {
            start: Granularity::Hour.truncate(start),
            end: end.trunc_subsecs(3),
            granularity,
        };
        if range.bucket_count() > MAX_BUCKETS {
            return Err(Invalid::request(format!(
                "the range has more than {MAX_BUCKETS} buckets; use a coarser granularity"
            )));
        }
        Ok(range)
    }

    fn bucket_count(&self) -> i64 {
        let first = self.granularity.truncate(self.start);
        let step = self.granularity.step().num_seconds();
        let secs = (self.end - first).num_seconds();
        (secs + step - 1) / step
    }

    /// Every bucket start in the range, in order, so empty buckets show as zeros.
    pub fn buckets(&self) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = self.granularity.truncate(self.start);
        while t < self.end {
            out.push(t);
            t += self.granularity.step();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn defaults_to_last_30_days_by_day() {
        let now = t("2026-03-31T10:30:00.123456789Z");
        let r = StatsRange::parse(None, None, None, now).unwrap();
        assert_eq!(r.granularity, Granularity::Day);
        assert_eq!(r.end, t("2026-03-31T10:30:00.123Z"));
        assert_eq!(r.start, t("2026-03-01T10:00:00Z"), "widened to its hour");
        // 30 days starting mid-day touch 31 calendar days.
        assert_eq!(r.buckets().len(), 31);
    }

    #[test]
    fn end_date_is_inclusive_and_dates_or_datetimes_parse() {
        let now = t("2026-03-31T10:30:00Z");
        let r = StatsRange::parse(Some("2026-03-01"), Some("2026-03-02"), Some("hour"), now).unwrap();
        assert_eq!(r.buckets().len(), 48);
        let r = StatsRange::parse(
            Some("2026-03-01T06:00:00Z"),
            Some("2026-03-01T09:00:00+00:00"),
            Some("hour"),
            now,
        )
        .unwrap();
        assert_eq!(
            r.buckets(),
            vec![
                t("2026-03-01T06:00:00Z"),
                t("2026-03-01T07:00:00Z"),
                t("2026-03-01T08:00:00Z")
            ]
        );
    }

    #[test]
    fn weeks_start_on_monday() {
        // 2026-03-04 is a Wednesday.
        assert_eq!(
            Granularity::Week.truncate(t("2026-03-04T12:00:00Z")),
            t("2026-03-02T00:00:00Z")
        );
    }

    #[test]
    fn rejects_bad_ranges() {
        let now = t("2026-03-31T10:30:00Z");
        assert!(StatsRange::parse(Some("2026-03-05"), Some("2026-03-01"), None, now).is_err());
        assert!(StatsRange::parse(Some("yesterday"), None, None, now).is_err());
        assert!(StatsRange::parse(None, Some("2026-13-01"), None, now).is_err());
        assert!(StatsRange::parse(None, None, Some("minute"), now).is_err());
        // Only the documented forms: no space separator, no short or signed years.
        for odd in ["2026-03-01 06:00:00Z", "2026-3-1", "+2026-03-01", "20260301"] {
            assert!(StatsRange::parse(Some(odd), None, None, now).is_err(), "{odd}");
        }
        assert!(StatsRange::parse(Some("2026-03-01t06:00:00z"), None, None, now).is_ok());
        assert!(StatsRange::parse(Some("2020-01-01"), Some("2026-01-01"), Some("hour"), now).is_err());
        assert!(StatsRange::parse(Some("2020-01-01"), Some("2026-01-01"), Some("week"), now).is_ok());
    }
}
