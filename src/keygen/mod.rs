//! The Key Generation Service (DESIGN.md §2), in-process.
//!
//! Each instance leases a block of counter values from the store with one atomic
//! update, then hands out codes from it without any I/O: `permutation` turns each
//! value into a 7-character code that looks random. Instances never share a value, so
//! they never produce the same code. When no block can be leased (store down, counter
//! exhausted) we fall back to CSPRNG codes, which the store's uniqueness constraint
//! checks; `/health` then reports `kgs: degraded` (seed test C-04).

pub mod permutation;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::domain::ShortCode;
use crate::store::LinkStore;
pub use permutation::{CODE_SPACE, Permutation, random_code};

/// After a failed lease, wait this long before asking the store again, so a store
/// outage does not turn every create into two failing round trips.
const LEASE_RETRY_AFTER: Duration = Duration::from_secs(1);

struct Block {
    next: u64,
    end: u64,
    last_failure: Option<Instant>,
}

pub struct KeyGenerator {
    perm: Permutation,
    store: Arc<dyn LinkStore>,
    /// Values per lease: larger blocks mean fewer store round trips, but a crash
    /// wastes at most one block of the (3.5·10¹²-value) space.
    block_size: u64,
    block: tokio::sync::Mutex<Block>,
    degraded: AtomicBool,
    /// Mirrors `end - next` for the metrics gauge without taking the lock.
    keys_left: AtomicU64,
    metrics: KgsMetrics,
}

/// The key generator's metrics (the seed's "KGS pool", for leased blocks: see
/// deploy/monitoring/README.md).
struct KgsMetrics {
    issued: metrics::Counter,
    fallback: metrics::Counter,
    leases: metrics::Counter,
    lease_failures: metrics::Counter,
}

impl KgsMetrics {
    fn new(block_size: u64) -> Self {
        let m = Self {
            issued: metrics::counter!("kurz_kgs_codes_issued_total"),
            fallback: metrics::counter!("kurz_kgs_fallback_codes_total"),
            leases: metrics::counter!("kurz_kgs_leases_total"),
            lease_failures: metrics::counter!("kurz_kgs_lease_failures_total"),
        };
        for c in [&m.issued, &m.fallback, &m.leases, &m.lease_failures] {
            c.increment(0);
        }
        metrics::gauge!("kurz_kgs_block_size").set(block_size as f64);
        metrics::gauge!("kurz_kgs_keys_left").set(0.0);
        metrics::gauge!("kurz_kgs_degraded").set(0.0);
        m
    }
}

impl KeyGenerator {
    pub fn new(key: [u8; 16], store: Arc<dyn LinkStore>, block_size: u64) -> Self {
        Self {
            perm: Permutation::new(key),
            store,
            block_size: block_size.max(1),
            block: tokio::sync::Mutex::new(Block {
                next: 0,
                end: 0,
                last_failure: None,
            }),
            degraded: AtomicBool::new(false),
            keys_left: AtomicU64::new(0),
            metrics: KgsMetrics::new(block_size.max(1)),
        }
    }

    /// True while codes come from the random fallback.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub fn keys_left(&self) -> u64 {
        self.keys_left.load(Ordering::Relaxed)
    }

    /// `n` fresh codes. Never fails: without a block, the codes are random.
    pub async fn next_codes(&self, n: usize) -> Vec<ShortCode> {
        let mut out = Vec::with_capacity(n);
        let mut block = self.block.lock().await;
        while out.len() < n {
            if block.next == block.end && !self.lease(&mut block).await {
                break;
            }
            let take = (block.end - block.next).min((n - out.len()) as u64);
            for v in block.next..block.next + take {
                out.push(ShortCode::from_generated(self.perm.code_for(v)));
            }
            block.next += take;
        }
        self.keys_left.store(block.end - block.next, Ordering::Relaxed);
        drop(block);
        self.metrics.issued.increment(out.len() as u64);
        let leased = out.len();
        while out.len() < n {
            out.push(ShortCode::from_generated(random_code()));
        }
        self.metrics.fallback.increment((n - leased) as u64);
        metrics::gauge!("kurz_kgs_keys_left").set(self.keys_left() as f64);
        out
    }

    pub async fn next_code(&self) -> ShortCode {
        // next_codes(1) always yields exactly one code.
        self.next_codes(1)
            .await
            .pop()
            .unwrap_or_else(|| ShortCode::from_generated(random_code()))
    }

    async fn lease(&self, block: &mut Block) -> bool {
        if block
            .last_failure
            .is_some_and(|t| t.elapsed() < LEASE_RETRY_AFTER)
        {
            return false;
        }
        match self.store.lease_block(self.block_size, CODE_SPACE).await {
            Ok(start) => {
                block.next = start;
                block.end = start + self.block_size;
                block.last_failure = None;
                self.metrics.leases.increment(1);
                metrics::gauge!("kurz_kgs_space_left").set(CODE_SPACE.saturating_sub(block.end) as f64);
                metrics::gauge!("kurz_kgs_degraded").set(0.0);
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("key generator leased a block again; leaving fallback mode");
                }
                true
            }
            Err(e) => {
                block.last_failure = Some(Instant::now());
                self.metrics.lease_failures.increment(1);
                metrics::gauge!("kurz_kgs_degraded").set(1.0);
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot lease a code block; using random codes");
                }
                false
            }
        }
    }
}
