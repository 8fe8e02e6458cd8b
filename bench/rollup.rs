//! Criterion benchmark of the click writer's CPU work: folding a batch of events into
//! link-hour rollups, and merging a folded rollup into its stored row. Under uniform
//! traffic every 50,000-click batch touches tens of thousands of link-hours, so these
//! two run for every click and every row the analytics pipeline writes; the journal
//! record the store's lane writes of every batch before holding it; the parts a held
//! batch is written in; and the whole SQLite write of such a batch.
//! Run: `cargo bench --bench rollup`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use chrono::DurationRound;
use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kurz::analytics::ClickEvent;
use kurz::analytics::batch::{Encoded, fold};
use kurz::analytics::click_writer::ClickWriter;
use kurz::analytics::event::Device;
use kurz::analytics::rows::merge_row;
use kurz::domain::{Metadata, RedirectType, ShortCode, TargetUrl};
use kurz::store::{LinkStore, NewLink};

#[path = "support.rs"]
mod support;

const BATCH: usize = 50_000;
const LINKS: u64 = 20_000;

/// A batch like the analytics benchmark's uniform mix: clicks spread evenly over
/// `LINKS` links within one second from `start`, a few browsers, countries and
/// referrers.
fn batch_at(start: DateTime<Utc>) -> Vec<ClickEvent> {
    let browsers = ["Chrome", "Firefox", "Safari", "Edge"];
    let countries = ["DE", "US", "FR", "unknown", "JP"];
    let referrers = ["direct", "news.example", "t.co"];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..BATCH)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ClickEvent {
                short_code: format!("c{:06}", x % LINKS).into(),
                clicked_at: start + Duration::microseconds(i as i64 * 20),
                referrer: referrers[i % referrers.len()].into(),
                device: if i % 3 == 0 {
                    Device::Mobile
                } else {
                    Device::Desktop
                },
                browser: browsers[i % browsers.len()].into(),
                os: "Linux".into(),
                is_bot: i % 50 == 0,
                country: countries[i % countries.len()].into(),
                city: None,
                visitor_hash: x.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            }
        })
        .collect()
}

fn batch() -> Vec<ClickEvent> {
    batch_at("2026-11-22T10:59:59.5Z".parse().unwrap())
}

fn rollups(c: &mut Criterion) {
    let events = batch();
    let mut g = c.benchmark_group("rollup");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("fold_50k_clicks_20k_links", |b| {
        b.iter(|| black_box(fold(black_box(&events)).rows()))
    });
    let folded = fold(&events);
    let mut record = Vec::new();
    g.bench_function("journal_record_of_50k_clicks", |b| {
        b.iter(|| {
            record.clear();
            black_box(folded.encode_since(Encoded::default(), &mut record));
        })
    });
    // A held write goes to the store in parts of 500 link-hours (`PART_ROWS`): each
    // part is its own batch, built from the held clicks when its write comes.
    g.bench_function("cut_50k_clicks_into_parts_of_500", |b| {
        b.iter(|| black_box(folded.cut(500).map(|p| p.events()).sum::<usize>()))
    });
    let rollups = folded.rollups();
    // Each row merged into what an earlier batch stored for it.
    let stored: Vec<_> = rollups.iter().map(|(_, r)| merge_row(None, r)).collect();
    g.throughput(Throughput::Elements(rollups.len() as u64));
    g.bench_function("merge_rows_of_one_batch", |b| {
        b.iter(|| {
            for ((_, r), s) in rollups.iter().zip(&stored) {
                black_box(merge_row(Some(s), r));
            }
        })
    });
    g.finish();
}

/// The whole store write of one batch into SQLite (raw events, rollup rows, link
/// counters), each batch landing on the rows the previous one wrote: a batch of
/// today (as under live traffic: no daily sketches until the day is over) and one of
/// an earlier day (a replayed outage: daily sketches too).
fn sqlite_write(c: &mut Criterion) {
    let (rt, store, _dir) = support::sqlite_store();
    let links: Vec<NewLink> = (0..LINKS)
        .map(|i| NewLink {
            code: ShortCode::parse(&format!("c{i:06}")).unwrap(),
            original_url: TargetUrl::parse("https://example.com/some/page?utm_source=x", None).unwrap(),
            owner_id: None,
            created_at: Utc::now(),
            expires_at: None,
            redirect_type: RedirectType::Temporary,
            metadata: Metadata::default(),
        })
        .collect();
    for chunk in links.chunks(1_000) {
        rt.block_on(store.insert_links(chunk)).unwrap();
    }
    let store = std::sync::Arc::new(store);
    let writer = ClickWriter::new(store.clone(), true);
    let today = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let mut g = c.benchmark_group("rollup");
    g.sample_size(20);
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, events) in [
        ("sqlite_record_clicks_50k_today", batch_at(today)),
        ("sqlite_record_clicks_50k_earlier_day", batch()),
    ] {
        let folded = fold(&events);
        g.bench_function(name, |b| b.iter(|| rt.block_on(writer.record(&folded)).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, rollups, sqlite_write);
criterion_main!(benches);
