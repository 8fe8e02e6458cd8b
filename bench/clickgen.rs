//! Loads recorded clicks straight into a store, through the same write path the click
//! pipeline uses (`batch::fold` + `ClickWriter::record`), without HTTP. Used by
//! bench/run_analytics.sh for P-10 (a 30-day stats query over 10,000,000 clicks) and
//! for the PostgreSQL ingestion rate.
//!
//!   cargo run --release --example clickgen -- DATABASE_URL CODE CLICKS DAYS [BATCH] [LINKS]
//!
//! With LINKS > 1 the clicks are spread at random over LINKS links (CODE followed by
//! a number), the worst case for the rollups: almost every click is its own link-hour.
//!
//! Creates link CODE if missing, then writes CLICKS clicks spread evenly over the
//! last DAYS days (in time order, as they would arrive), from 500,000 visitors with
//! a realistic mix of countries, referrers and user agents (5 % bots). Prints one
//! JSON line: clicks, seconds, events per second. With `CLICKGEN_COMPACT=1` it then
//! runs the compaction due once today is over (`Store::compact_click_days`) and adds
//! how many daily sketches it built and how long it took.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use kurz::analytics::batch;
use kurz::analytics::click_writer::ClickWriter;
use kurz::analytics::event::{ClickEvent, Device};
use kurz::domain::{Metadata, RedirectType, ShortCode, TargetUrl};
use kurz::store::{self, LinkStore, NewLink};
use rand::{Rng, SeedableRng};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;

const COUNTRIES: &[&str] = &[
    "US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "NL", "ES", "IT", "PL", "SE", "AU", "MX", "unknown",
];
const REFERRERS: &[&str] = &[
    "direct",
    "twitter.com",
    "news.ycombinator.com",
    "reddit.com",
    "google.com",
    "linkedin.com",
    "facebook.com",
    "t.co",
    "github.com",
    "mail.google.com",
];
const AGENTS: &[(Device, &str, &str)] = &[
    (Device::Mobile, "Mobile Safari", "iOS"),
    (Device::Mobile, "Chrome Mobile", "Android"),
    (Device::Desktop, "Chrome", "Windows"),
    (Device::Desktop, "Chrome", "Mac OS X"),
    (Device::Desktop, "Firefox", "Linux"),
    (Device::Desktop, "Edge", "Windows"),
    (Device::Tablet, "Mobile Safari", "iOS"),
    (Device::Other, "Other", "Other"),
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: clickgen DATABASE_URL CODE CLICKS DAYS [BATCH]".into());
    }
    let mut config = kurz::Config::defaults();
    config.database.url = args[1].clone();
    config.database.max_connections = 4;
    let code = ShortCode::parse(&args[2]).ok_or("bad code")?;
    let clicks: u64 = args[3].parse()?;
    let days: i64 = args[4].parse()?;
    let batch: usize = args.get(5).map(|b| b.parse()).transpose()?.unwrap_or(10_000);
    let links: usize = args.get(6).map(|b| b.parse()).transpose()?.unwrap_or(1).max(1);
    let codes: Vec<Arc<str>> = if links == 1 {
        vec![code.as_str().into()]
    } else {
        (0..links)
            .map(|i| format!("{}{i}", code.as_str()).into())
            .collect()
    };

    let stores = store::connect(&config.database).await?;
    let store: Arc<dyn LinkStore> = stores.links;
    let writer = ClickWriter::new(stores.clicks, true);
    store.migrate().await?;
    if store.get_link(&codes[0]).await?.is_none() {
        let new: Vec<NewLink> = codes
            .iter()
            .map(|c| {
                Ok(NewLink {
                    code: ShortCode::parse(c).ok_or("bad code")?,
                    original_url: TargetUrl::from_trusted("https://example.com/p10".into()),
                    owner_id: None,
                    created_at: Utc::now() - Duration::days(days + 1),
                    expires_at: None,
                    redirect_type: RedirectType::Temporary,
                    metadata: Metadata::default(),
                })
            })
            .collect::<Result<_, &str>>()?;
        for chunk in new.chunks(1000) {
            store.insert_links(chunk).await?;
        }
    }

    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let end = Utc::now();
    let start = end - Duration::days(days);
    let span_ms = (end - start).num_milliseconds() as f64;
    let started = Instant::now();
    let mut events = Vec::with_capacity(batch);
    let mut written = 0u64;
    // The true number of distinct human visitors, to report the sketch's error.
    let mut humans = std::collections::HashSet::new();
    for i in 0..clicks {
        let at = start + Duration::milliseconds((span_ms * i as f64 / clicks as f64) as i64);
        let bot = rng.random_ratio(1, 20);
        let (device, browser, os) = if bot {
            (Device::Other, "Googlebot", "Other")
        } else {
            AGENTS[rng.random_range(0..AGENTS.len())]
        };
        let visitor: u64 = rng.random_range(0..500_000);
        if !bot {
            humans.insert(visitor);
        }
        events.push(ClickEvent {
            short_code: codes[rng.random_range(0..codes.len())].clone(),
            clicked_at: at,
            referrer: REFERRERS[rng.random_range(0..REFERRERS.len())].into(),
            device,
            browser: browser.into(),
            os: os.into(),
            is_bot: bot,
            country: COUNTRIES[rng.random_range(0..COUNTRIES.len())].into(),
            city: None,
            // A keyed SipHash, like the pipeline's visitor hash (HLL needs uniform bits).
            visitor_hash: {
                let mut h = SipHasher13::new_with_keys(7, 11);
                h.write_u64(visitor);
                h.finish()
            },
        });
        if events.len() == batch || i + 1 == clicks {
            writer.record(&batch::fold(&events)).await?;
            written += events.len() as u64;
            events.clear();
            if written % 1_000_000 < batch as u64 {
                eprintln!(
                    "{written} clicks, {:.0}/s",
                    written as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // With CLICKGEN_COMPACT=1, also the time of the daily compaction that runs once
    // today is over: the days from the mark (the migration's day) are built from
    // their hourly rows, in one transaction that holds click writes off meanwhile.
    let compaction = if std::env::var_os("CLICKGEN_COMPACT").is_some() {
        let t = Instant::now();
        let sketches = writer.compact_days(end + Duration::days(1)).await?;
        format!(
            ",\"compacted_daily_sketches\":{sketches},\"compact_seconds\":{:.2}",
            t.elapsed().as_secs_f64()
        )
    } else {
        String::new()
    };
    println!(
        "{{\"clicks\":{written},\"seconds\":{secs:.2},\"events_per_second\":{:.0},\"batch\":{batch},\"distinct_human_visitors\":{}{compaction}}}",
        written as f64 / secs,
        humans.len()
    );
    Ok(())
}
