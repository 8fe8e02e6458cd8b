//! The production setup, against the real servers `scripts/test.sh` starts:
//! several kurz instances on one PostgreSQL + Redis, a streaming replica, a Redis
//! Cluster that fails over, outages caused for real through a TCP proxy we can cut,
//! and PostgreSQL failovers with promotion between two "regions" (seed tests C-01,
//! C-02, C-03, C-05).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../support/mod.rs"]
mod support;

mod chaos;
mod cluster;
mod crash;
mod failover;
mod instances;
mod kafka;
mod pg_servers;
mod proxy;
mod tls_backends;

use helpers::{TestApp, start};
use kurz::Config;

/// A kurz instance on a fresh PostgreSQL database with the test Redis. Always
/// `Some`: without the servers the test fails (it is `#[ignore]`d for a plain run).
pub async fn spawn_pg(adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
    support::server("KURZ_TEST_PG")?;
    support::server("KURZ_TEST_REDIS")?;
    let (mut config, backend, _) = helpers::pg_redis_config().await;
    adjust(&mut config);
    Some(start(config, backend, None).await)
}
