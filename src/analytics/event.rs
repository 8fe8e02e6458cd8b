//! What a click is, at the two stages of its life.
//!
//! [`Captured`] is what the redirect handler copies out of the request: raw header
//! bytes and the client IP, nothing parsed, so the hot path stays a few copies. It only
//! ever lives in memory, in the queue's buffers. [`ClickEvent`] is the enriched record
//! the batcher makes of it: the IP is replaced by a keyed hash, the user agent by its
//! classification. Only `ClickEvent`s are written anywhere (store, spool, Kafka).

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Header values longer than this are cut: no client can make an event large.
pub const MAX_HEADER_BYTES: usize = 512;

/// Borrowed from the request: the handler copies it into the queue
/// ([`super::queue`]) and the batcher reads it back in place, so a click allocates
/// nothing on its way in.
#[derive(Debug, Clone, Copy)]
pub struct Captured<'a> {
    pub code: &'a str,
    pub at: DateTime<Utc>,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub ip: IpAddr,
    /// `CF-IPCountry`, only when the peer is a trusted proxy.
    pub cf_country: Option<[u8; 2]>,
}

/// At most [`MAX_HEADER_BYTES`] of a header value.
pub fn bounded(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(MAX_HEADER_BYTES)]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Mobile,
    Desktop,
    Tablet,
    Other,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mobile => "mobile",
            Self::Desktop => "desktop",
            Self::Tablet => "tablet",
            Self::Other => "other",
        }
    }
}

/// One click, ready to store. Its JSON form is also the Kafka message and the spool
/// record, so field names are a public contract.
///
/// The code and the labels (referrer host, browser, OS, country) are `Arc<str>`
/// shared with the enricher's caches: thousands of clicks a second carry the same few
/// codes and labels, and copying a pointer costs no allocation, no copy and no free
/// per click.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickEvent {
    pub short_code: Arc<str>,
    pub clicked_at: DateTime<Utc>,
    /// The referring host, or `direct`.
    pub referrer: Arc<str>,
    pub device: Device,
    pub browser: Arc<str>,
    pub os: Arc<str>,
    pub is_bot: bool,
    /// ISO 3166 alpha-2, or `unknown`.
    pub country: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Keyed hash of the client IP (SipHash-1-3 with a per-deployment secret).
    pub visitor_hash: u64,
}
