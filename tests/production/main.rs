//! The production setup, against the real servers `scripts/test.sh` starts:
//! several kurz instances on one PostgreSQL + Redis, a streaming replica, a Redis
//! Cluster, and outages caused for real through a TCP proxy we can cut (seed tests
//! C-01, C-02 adapted).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../support/mod.rs"]
mod support;

mod chaos;
mod cluster;
mod instances;
mod proxy;

use helpers::{Backend, TestApp, start};
use kurz::Config;

/// A kurz instance on a fresh PostgreSQL database with the test Redis, or `None`
/// (outside CI) when the servers are not running.
pub async fn spawn_pg(adjust: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let admin = support::server("KURZ_TEST_PG")?;
    let redis = support::server("KURZ_TEST_REDIS")?;
    let (mut config, _, _) = helpers::test_config().await;
    let url = support::fresh_pg_database(&admin).await;
    config.database_url = url.clone();
    config.auto_migrate = Some(true);
    config.database_max_connections = 8;
    config.database_min_connections = 0;
    config.redis_url = Some(redis.parse().unwrap());
    config.redis_prefix = format!(
        "kurz-prod-{}-{}:",
        std::process::id(),
        url.rsplit('/').next().unwrap()
    );
    adjust(&mut config);
    Some(start(config, Backend::Postgres(url), None).await)
}
