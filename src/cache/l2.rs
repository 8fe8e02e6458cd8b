//! The L2 cache in Redis, shared by every instance (DESIGN.md §4): an L1 miss asks
//! here before the store, so a link is read from the database about once per TTL for
//! the whole fleet rather than once per instance. Changes are pushed to every
//! instance's L1 over pub/sub (`kurz:invalidate`).

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use super::CachedLink;
use crate::domain::RedirectType;
use crate::redis::Redis;

pub const INVALIDATION_CHANNEL: &str = "invalidate";

/// The stored form: short field names, since there may be millions of these.
#[derive(Serialize, Deserialize)]
struct Stored {
    u: String,
    r: u16,
    /// Expiry, milliseconds since the epoch.
    e: Option<i64>,
    a: bool,
}

/// Most codes remembered for a retried invalidation; past this a change made during a
/// long Redis outage can stay stale in L2 until its TTL (logged when it happens).
const PENDING_MAX: usize = 100_000;

pub struct RedisCache {
    redis: Arc<Redis>,
    ttl: Duration,
    /// `kurz_cache_l2_requests_total` by result: hit, miss, error.
    hits: metrics::Counter,
    misses: metrics::Counter,
    errors: metrics::Counter,
    /// Codes changed while Redis could not be told: their L2 entry may be stale and
    /// other instances did not hear of the change. Retried until Redis answers.
    pending: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl RedisCache {
    pub fn new(redis: Arc<Redis>, ttl: Duration) -> Self {
        let counter = |result: &'static str| {
            let c = metrics::counter!("kurz_cache_l2_requests_total", "result" => result);
            c.increment(0);
            c
        };
        Self {
            redis,
            ttl,
            hits: counter("hit"),
            misses: counter("miss"),
            errors: counter("error"),
            pending: Default::default(),
        }
    }

    fn key(&self, code: &str) -> String {
        self.redis.key(&["link", code])
    }

    /// `None` on a miss and when Redis is unavailable (the caller asks the store).
    pub async fn get(&self, code: &str) -> Option<CachedLink> {
        let raw: Option<String> = match self
            .redis
            .query("cache_get", redis::cmd("GET").arg(self.key(code)))
            .await
        {
            Ok(Some(raw)) => Some(raw),
            Ok(None) => {
                self.misses.increment(1);
                None
            }
            Err(_) => {
                self.errors.increment(1);
                None
            }
        };
        let s: Stored = serde_json::from_str(&raw?).ok()?;
        self.hits.increment(1);
        if !s.u.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        Some(CachedLink {
            location: s.u.into_bytes().into(),
            redirect_type: RedirectType::from_status(s.r).ok()?,
            expires_at: s.e.and_then(DateTime::from_timestamp_millis),
            is_active: s.a,
        })
    }

    pub async fn put(&self, code: &str, link: &CachedLink) {
        let Ok(url) = std::str::from_utf8(&link.location) else {
            return;
        };
        let stored = Stored {
            u: url.to_owned(),
            r: link.redirect_type.status(),
            e: link.expires_at.map(|t| t.timestamp_millis()),
            a: link.is_active,
        };
        let Ok(json) = serde_json::to_string(&stored) else {
            return;
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(code))
            .arg(json)
            .arg("EX")
            .arg(self.ttl.as_secs().max(1));
        let _ = self.redis.query::<()>("cache_set", &cmd).await;
    }

    /// Removes `code` from L2 and tells every instance to drop it from L1. A second
    /// delete a moment later removes a stale copy that a concurrent miss elsewhere may
    /// have written back from the old row (the "delayed double delete"). If Redis
    /// cannot be reached, the code is kept and retried by `retry_pending`.
    pub async fn invalidate(self: &Arc<Self>, code: &str) {
        if !self.announce(code).await {
            self.remember(code);
            return;
        }
        let this = self.clone();
        let key = self.key(code);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let _ = this
                .redis
                .query::<()>("cache_del", redis::cmd("DEL").arg(key))
                .await;
        });
    }

    /// DEL + PUBLISH; true when both reached Redis.
    async fn announce(&self, code: &str) -> bool {
        let deleted = self
            .redis
            .query::<()>("cache_del", redis::cmd("DEL").arg(self.key(code)))
            .await
            .is_ok();
        let channel = self.redis.key(&[INVALIDATION_CHANNEL]);
        deleted
            && self
                .redis
                .query::<()>("publish", redis::cmd("PUBLISH").arg(channel).arg(code))
                .await
                .is_ok()
    }

    fn remember(&self, code: &str) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        if pending.len() < PENDING_MAX {
            pending.insert(code.to_owned());
        } else {
            tracing::warn!(
                code,
                "too many invalidations pending; this one waits for the L2 TTL"
            );
        }
    }

    /// Sends the invalidations that failed during a Redis outage, once Redis answers
    /// again. Called periodically; cheap when nothing is pending.
    pub async fn retry_pending(&self) {
        let codes: Vec<String> = match self.pending.lock() {
            Ok(p) if !p.is_empty() => p.iter().cloned().collect(),
            _ => return,
        };
        if !self.redis.ping().await {
            return;
        }
        for code in codes {
            if !self.announce(&code).await {
                return;
            }
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&code);
            }
        }
        tracing::info!("invalidations missed during the Redis outage have been sent");
    }
}
