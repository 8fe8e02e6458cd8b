//! kurz — a URL shortener: one binary, SQLite by default.
//!
//! A map of the crate (DESIGN.md has the reasons):
//!
//! | module      | holds                                                              |
//! |-------------|--------------------------------------------------------------------|
//! | `domain`    | pure types and rules: codes, aliases, target URLs, links, tiers    |
//! | `keygen`    | the key generator: leased counter blocks → keyed permutation       |
//! | `links`     | the link service: create / resolve / update / delete, group commit |
//! | `store`     | the storage trait, one module per backend (`sqlite`, `postgres`)   |
//! | `analytics` | clicks: capture → queue → batcher → store/Kafka, spool, rollups, HLL |
//! | `cache`     | L1 (in-process, negative entries, single-flight), L2 (Redis)       |
//! | `redis`     | the Redis connection (single or cluster) with a circuit breaker    |
//! | `limits`    | per-caller token buckets and idempotency records                   |
//! | `auth`      | API keys (hashed), JWTs, the admin bootstrap                       |
//! | `http`      | routes, thin handlers, error mapping, OpenAPI, the accept loop     |
//! | `qr`        | QR codes of short URLs                                             |
//! | `config`    | the one typed `Config`, from flags and `KURZ_*` variables          |
//! | `app`       | wiring: `Application::build(config)` → `run_until_stopped()`       |
//!
//! Dependencies point one way: `http` → `links` → (`store`, `cache`, `keygen`,
//! `limits`) → `domain`.

pub mod analytics;
pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod domain;
pub mod http;
pub mod keygen;
pub mod limits;
pub mod links;
pub mod qr;
pub mod redis;
pub mod stats;
pub mod store;
pub mod telemetry;

pub use app::Application;
pub use config::Config;
