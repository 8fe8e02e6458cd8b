//! Protections that depend on who is calling: per-caller rate limits and
//! idempotency records.

pub mod idempotency;
pub mod rate;

pub use idempotency::{Begin, Idempotency};
pub use rate::{Decision, RateLimiter, TierLimits};
