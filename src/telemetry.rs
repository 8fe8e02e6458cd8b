//! Logging and the metrics recorder.
//!
//! Logs are JSON when stdout is not a terminal (production, CI), pretty otherwise.
//! Metrics use one process-wide Prometheus recorder, installed once even when tests
//! start many apps in one process.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogConfig;

/// Latency buckets in seconds: fine below a millisecond, where redirects live, and
/// edges at the alert thresholds (200 ms, 500 ms) so a rule can read them exactly.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0,
];
/// Click lag buckets (redirect to stored), in seconds: a write is held for seconds.
const LAG_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
];

/// `KURZ_LOG`: `target=level` directives and a bare default level, comma-separated
/// (`info`, `kurz=debug,sqlx=warn`); anything else logs at `info`, with a warning.
///
/// Why [`Targets`] rather than `EnvFilter`: `EnvFilter`'s span and field filters
/// need the `matchers` crate, which turns on regex-automata's full DFAs for every
/// regex in the process, the ~1,200 user-agent rules included (vendor/README.md).
///
/// `None` for what it cannot read, span and field filters (`[span{field}]=debug`)
/// included: `Targets` would take those as a target's name.
pub fn log_filter(directives: &str) -> Option<Targets> {
    if directives.contains(['[', '{']) {
        return None;
    }
    directives.parse().ok()
}

pub fn init_logging(log: &LogConfig) {
    let parsed = log_filter(&log.filter);
    let understood = parsed.is_some();
    let filter = parsed.unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let json = match log.format.as_str() {
        "json" => true,
        "pretty" => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().finish().with(filter).try_init()
    } else {
        builder.finish().with(filter).try_init()
    };
    if !understood {
        tracing::warn!(filter = %log.filter, "KURZ_LOG not understood; logging at info");
    }
}

/// The process's Prometheus handle, installing the recorder on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("lag_seconds".into()), LAG_BUCKETS))
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            process().describe();
            metrics::gauge!(
                "kurz_build_info",
                "version" => env!("CARGO_PKG_VERSION"),
                "commit" => env!("KURZ_GIT_COMMIT"),
            )
            .set(1.0);
            handle
        })
        .clone()
}

/// The process metrics (`process_cpu_seconds_total`, resident memory, open files,
/// threads, start time): the standard names, read from `/proc` at each scrape.
pub fn process() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn log_directives_set_levels_per_target_and_unreadable_ones_are_refused() {
        let f = log_filter("warn,kurz=debug,sqlx=error").unwrap();
        assert!(f.would_enable("kurz::http", &Level::DEBUG));
        assert!(!f.would_enable("kurz::http", &Level::TRACE));
        assert!(!f.would_enable("sqlx::query", &Level::WARN));
        assert!(f.would_enable("hyper", &Level::WARN));
        assert!(!f.would_enable("hyper", &Level::INFO));
        assert!(log_filter("info").unwrap().would_enable("kurz", &Level::INFO));
        for bad in ["kurz=loud", "[span{field}]=debug", "kurz[request]=debug"] {
            assert!(log_filter(bad).is_none(), "{bad}");
        }
    }
}
