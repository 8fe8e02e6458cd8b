//! The HTTP integration suite: a real kurz (built exactly as `main` builds it) on a
//! random loopback port with a fresh SQLite database per test, driven by a real HTTP
//! client. Test names carry the seed's IDs (F-xx, C-xx) where one applies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod analytics;
mod auth;
mod backup;
mod bad_input;
mod caching;
mod functional;
mod hardening;
#[allow(dead_code)]
mod helpers;
mod idempotency;
mod links;
mod logs;
mod ops;
mod rate_limits;
mod secrets;
mod shutdown;
#[path = "../support/mod.rs"]
mod support;
mod ui;
