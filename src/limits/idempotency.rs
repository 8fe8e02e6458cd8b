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
/// Marks a stored response written with its headers (see [`StoredResponse::encode`]).
/// Records without it hold a bare JSON body.
const ENVELOPE: &[u8] = b"kurz-response-v1\n";

/// A finished response as it is kept for replay: the status, the headers a replay
/// must carry (`Location`, content type) and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl StoredResponse {
    /// The store keeps one opaque body per key; the headers ride in front of it, as a
    /// JSON line after a marker, so the store's schema needs no column per header.
    fn encode(&self) -> Vec<u8> {
        // A list of string pairs always serialises.
        let headers = serde_json::to_vec(&self.headers).unwrap_or_else(|_| b"[]".to_vec());
        let mut out = Vec::with_capacity(ENVELOPE.len() + headers.len() + 1 + self.body.len());
        out.extend_from_slice(ENVELOPE);
        out.extend_from_slice(&headers);
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out
    }

    /// Reads what [`Self::encode`] wrote; a record from before headers were kept is
    /// a JSON body alone.
    fn decode(status: u16, stored: Vec<u8>) -> Self {
        let legacy = |body| Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        };
        let Some(rest) = stored.strip_prefix(ENVELOPE) else {
            return legacy(stored);
        };
        let Some(split) = rest.iter().position(|b| *b == b'\n') else {
            return legacy(stored);
        };
        match serde_json::from_slice(&rest[..split]) {
            Ok(headers) => Self {
                status,
                headers,
                body: rest[split + 1..].to_vec(),
            },
            Err(_) => legacy(stored),
        }
    }
}

pub enum Begin {
    /// Run the request, then `complete` (or `release` on a retryable failure).
    Proceed,
    /// The stored first response.
    Replay(StoredResponse),
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
                    response: Some((status, stored)),
                    ..
                } => {
                    return Ok(Begin::Replay(StoredResponse::decode(status, stored)));
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

    pub async fn complete(&self, key: &str, response: &StoredResponse) -> Result<(), StoreError> {
        self.store
            .idempotency_complete(key, response.status, &response.encode())
            .await
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

    #[test]
    fn stored_responses_keep_their_headers_and_old_records_still_replay() {
        let r = StoredResponse {
            status: 201,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("location".into(), "/api/v1/urls/abc1234".into()),
            ],
            body: b"{\"a\":\"line\\nbreak\"}\n".to_vec(),
        };
        assert_eq!(StoredResponse::decode(201, r.encode()), r);
        let old = StoredResponse::decode(400, b"{\"code\":\"INVALID_URL\"}".to_vec());
        assert_eq!(old.body, b"{\"code\":\"INVALID_URL\"}");
        assert_eq!(
            old.headers,
            vec![("content-type".into(), "application/json".into())]
        );
    }
}
