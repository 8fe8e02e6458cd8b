//! `X-Idempotency-Key` (DESIGN.md §3): the first response to a key is stored and
//! replayed byte for byte for 24 hours; the same key with another body is refused.
//!
//! The record is claimed in the store *before* the request runs, so two concurrent
//! requests with one key cannot both create a link: the loser waits for the winner's
//! response and replays it. Because the claim lives in the store, this also holds
//! across instances sharing a database.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::store::{IdempotencyClaim, LinkStore, StoreError};

pub const KEY_MAX_LEN: usize = 255;
const POLL_EVERY: Duration = Duration::from_millis(20);

pub enum Begin {
    /// Run the request, then `complete` (or `release` on a retryable failure).
    Proceed,
    /// The stored first response.
    Replay { status: u16, body: Vec<u8> },
    /// The key was used with a different request.
    Mismatch,
    /// The first request with this key is still running after the wait limit.
    StillRunning,
}

pub struct Idempotency {
    store: Arc<dyn LinkStore>,
    ttl: Duration,
    /// How long a duplicate waits for the first request to finish.
    wait: Duration,
}

/// Only visible ASCII, bounded: the key is echoed into logs and the store.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= KEY_MAX_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The store key: caller and client key, hashed so the stored key is fixed-size.
pub fn scoped_key(caller_scope: &str, key: &str) -> String {
    hex::encode(Sha256::digest(format!("{caller_scope}\n{key}").as_bytes()))
}

/// Fingerprint of a request: method, path and exact body bytes.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

impl Idempotency {
    pub fn new(store: Arc<dyn LinkStore>, ttl: Duration, wait: Duration) -> Self {
        Self { store, ttl, wait }
    }

    pub async fn begin(&self, key: &str, request_hash: &str) -> Result<Begin, StoreError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let now = Utc::now();
            let fresh_after = now - chrono::Duration::from_std(self.ttl).unwrap_or_default();
            match self
                .store
                .idempotency_claim(key, request_hash, now, fresh_after)
                .await?
            {
                IdempotencyClaim::Claimed => return Ok(Begin::Proceed),
                IdempotencyClaim::Existing { request_hash: h, .. } if h != request_hash => {
                    return Ok(Begin::Mismatch);
                }
                IdempotencyClaim::Existing {
                    response: Some((status, body)),
                    ..
                } => {
                    return Ok(Begin::Replay { status, body });
                }
                IdempotencyClaim::Existing { response: None, .. } => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(Begin::StillRunning);
                    }
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
        }
    }

    pub async fn complete(&self, key: &str, status: u16, body: &[u8]) -> Result<(), StoreError> {
        self.store.idempotency_complete(key, status, body).await
    }

    pub async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.store.idempotency_release(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_hashes() {
        assert!(valid_key("order-123"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"k".repeat(256)));
        assert_ne!(scoped_key("u:1", "k"), scoped_key("u:2", "k"));
        assert_ne!(
            request_hash("POST", "/a", b"{}"),
            request_hash("POST", "/a", b"{ }")
        );
        assert_eq!(
            request_hash("POST", "/a", b"{}"),
            request_hash("POST", "/a", b"{}")
        );
    }
}
