//! Which visitor sketches a stats range reads: the daily sketch of every whole UTC
//! day inside it whose sketch is complete, hourly rows for the rest.
//! Pure: no I/O, unit-tested below.

use chrono::{DateTime, Duration, Utc};

use super::rows::day_of;

/// Where the visitor sketches of `[from, to)` (hour-aligned `from`) are read from:
/// the daily table for every whole UTC day inside, hourly rows for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SketchPlan {
    /// `[first, end)` of whole days, if any.
    pub days: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Hour ranges `[from, to)` outside those days.
    pub hours: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

pub fn sketch_plan(from: DateTime<Utc>, to: DateTime<Utc>) -> SketchPlan {
    let first_whole = if day_of(from) == from {
        from
    } else {
        day_of(from) + Duration::days(1)
    };
    let end_whole = day_of(to);
    if first_whole >= end_whole {
        return SketchPlan {
            days: None,
            hours: vec![(from, to)],
        };
    }
    SketchPlan {
        days: Some((first_whole, end_whole)),
        hours: [(from, first_whole), (end_whole, to)]
            .into_iter()
            .filter(|(a, b)| a < b)
            .collect(),
    }
}

impl SketchPlan {
    /// The plan for a store whose daily sketches are complete only for days before
    /// `through` (see [`super::rows::DAYS_THROUGH`]): later days inside the plan are read from
    /// their hourly rows instead.
    pub fn with_daily_before(mut self, through: DateTime<Utc>) -> SketchPlan {
        let Some((first, end)) = self.days else {
            return self;
        };
        if end <= through {
            return self;
        }
        let cut = through.max(first);
        self.days = (first < cut).then_some((first, cut));
        // The hours of the cut days join the hour range that follows them (if any),
        // so the ranges stay disjoint and in order.
        match self.hours.iter_mut().find(|(from, _)| *from == end) {
            Some(after) => after.0 = cut,
            None => self.hours.push((cut, end)),
        }
        self.hours.sort();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::test_clicks::t;
    use super::*;

    #[test]
    fn daily_sketches_cover_whole_days_and_hours_the_edges() {
        let plan = sketch_plan(t("2026-03-01T10:00:00Z"), t("2026-03-04T05:30:00Z"));
        assert_eq!(
            plan.days,
            Some((t("2026-03-02T00:00:00Z"), t("2026-03-04T00:00:00Z")))
        );
        assert_eq!(
            plan.hours,
            vec![
                (t("2026-03-01T10:00:00Z"), t("2026-03-02T00:00:00Z")),
                (t("2026-03-04T00:00:00Z"), t("2026-03-04T05:30:00Z")),
            ]
        );
        let aligned = sketch_plan(t("2026-03-01T00:00:00Z"), t("2026-03-03T00:00:00Z"));
        assert_eq!(
            aligned.days,
            Some((t("2026-03-01T00:00:00Z"), t("2026-03-03T00:00:00Z")))
        );
        assert!(aligned.hours.is_empty());
        let short = sketch_plan(t("2026-03-01T10:00:00Z"), t("2026-03-02T03:00:00Z"));
        assert_eq!(short.days, None);
        assert_eq!(
            short.hours,
            vec![(t("2026-03-01T10:00:00Z"), t("2026-03-02T03:00:00Z"))]
        );
    }

    #[test]
    fn days_without_complete_daily_sketches_are_read_from_hours() {
        let plan = sketch_plan(t("2026-03-01T10:00:00Z"), t("2026-03-04T05:30:00Z"));
        // Everything before the mark: unchanged.
        assert_eq!(plan.clone().with_daily_before(t("2026-03-04T00:00:00Z")), plan);
        // The last whole day is not complete yet: its hours join the tail range.
        let cut = plan.clone().with_daily_before(t("2026-03-03T00:00:00Z"));
        assert_eq!(
            cut.days,
            Some((t("2026-03-02T00:00:00Z"), t("2026-03-03T00:00:00Z")))
        );
        assert_eq!(
            cut.hours,
            vec![
                (t("2026-03-01T10:00:00Z"), t("2026-03-02T00:00:00Z")),
                (t("2026-03-03T00:00:00Z"), t("2026-03-04T05:30:00Z")),
            ]
        );
        // No whole day is complete: all hours.
        let none = plan.clone().with_daily_before(t("2026-02-01T00:00:00Z"));
        assert_eq!(none.days, None);
        assert_eq!(
            none.hours,
            vec![
                (t("2026-03-01T10:00:00Z"), t("2026-03-02T00:00:00Z")),
                (t("2026-03-02T00:00:00Z"), t("2026-03-04T05:30:00Z")),
            ]
        );
        // Aligned at both ends (no hour ranges) and nothing complete.
        let aligned = sketch_plan(t("2026-03-01T00:00:00Z"), t("2026-03-03T00:00:00Z"))
            .with_daily_before(t("2026-03-02T00:00:00Z"));
        assert_eq!(
            aligned.days,
            Some((t("2026-03-01T00:00:00Z"), t("2026-03-02T00:00:00Z")))
        );
        assert_eq!(
            aligned.hours,
            vec![(t("2026-03-02T00:00:00Z"), t("2026-03-03T00:00:00Z"))]
        );
    }
}
