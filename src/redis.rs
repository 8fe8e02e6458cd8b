//! The Redis connection shared by the L2 cache, the distributed rate limiter and the
//! cross-instance invalidation bus (DESIGN.md §1, §4, §6).
//!
//! One type hides whether Redis is a single server (`redis://host:port`) or a
//! Cluster (`redis+cluster://h1:p1,h2:p2` or a comma list of `redis://` URLs). Every
//! call has a short timeout, and after a failure Redis is skipped for a moment (a
//! small circuit breaker), so a Redis outage costs one fast failure per second
//! instead of a timeout per request; callers then fall back to L1 + store and to
//! per-instance rate limits. The connection recovers by itself when Redis returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// Per-call budget: Redis on loopback or in the same zone answers in well under this.
const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, calls fail fast for this long before Redis is tried again.
const BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("bad Redis URL: {0}")]
    Config(String),
    #[error("redis unavailable: {0}")]
    Unavailable(String),
}

enum Backend {
    Single(ConnectionManager),
    /// Boxed: the cluster client is large and there is one `Backend` per process.
    Cluster(Box<ClusterBackend>),
}

struct ClusterBackend {
    client: ClusterClient,
    /// Made on first use (kurz starts while Redis is down), then reused; the cluster
    /// connection reconnects to nodes by itself.
    conn: tokio::sync::OnceCell<ClusterConnection>,
}

/// A cheap-to-clone connection handle of either kind.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub struct Redis {
    backend: Backend,
    /// Plain clients for SUBSCRIBE: one per node for a cluster (any node relays
    /// every PUBLISH), tried in turn when one is down.
    pubsub_clients: Vec<redis::Client>,
    /// Prefix of every key and channel, so deployments (or tests) can share a Redis.
    prefix: String,
    /// Milliseconds since `epoch` until which calls fail fast.
    down_until_ms: AtomicU64,
    epoch: Instant,
}

/// The node URLs of a `KURZ_REDIS_URL`, and whether it names a cluster.
pub fn parse_url(url: &str) -> Result<(Vec<String>, bool), RedisError> {
    if let Some(rest) = url.strip_prefix("redis+cluster://") {
        let nodes: Vec<String> = rest
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|n| format!("redis://{n}"))
            .collect();
        if nodes.is_empty() {
            return Err(RedisError::Config(
                "redis+cluster:// needs at least one host:port".into(),
            ));
        }
        return Ok((nodes, true));
    }
    let nodes: Vec<String> = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    match nodes.len() {
        0 => Err(RedisError::Config("empty Redis URL".into())),
        1 => Ok((nodes, false)),
        _ => Ok((nodes, true)),
    }
}

impl Redis {
    /// Builds the client without connecting: kurz starts even while Redis is down.
    pub fn new(url: &str, prefix: &str) -> Result<Self, RedisError> {
        // Registered at zero, so an alert on its rate sees the series from the start.
        metrics::counter!("kurz_redis_errors_total").increment(0);
        let (nodes, cluster) = parse_url(url)?;
        let bad = |e: redis::RedisError| RedisError::Config(e.to_string());
        let pubsub_clients = nodes
            .iter()
            .map(|n| redis::Client::open(n.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let backend = if cluster {
            let client = ClusterClient::builder(nodes)
                .connection_timeout(OP_TIMEOUT)
                .response_timeout(OP_TIMEOUT)
                .retries(2)
                .build()
                .map_err(bad)?;
            Backend::Cluster(Box::new(ClusterBackend {
                client,
                conn: tokio::sync::OnceCell::new(),
            }))
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(OP_TIMEOUT))
                .set_response_timeout(Some(OP_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200));
            let client = pubsub_clients
                .first()
                .cloned()
                .ok_or_else(|| RedisError::Config("no node".into()))?;
            Backend::Single(ConnectionManager::new_lazy_with_config(client, config).map_err(bad)?)
        };
        Ok(Self {
            backend,
            pubsub_clients,
            prefix: prefix.to_owned(),
            down_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    pub fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                k.push(':');
            }
            k.push_str(p);
        }
        k
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// False while the breaker is open after a recent failure.
    pub fn is_up(&self) -> bool {
        self.now_ms() >= self.down_until_ms.load(Ordering::Relaxed)
    }

    fn trip(&self, why: &str) {
        let was_up = self.is_up();
        self.down_until_ms
            .store(self.now_ms() + BACKOFF.as_millis() as u64, Ordering::Relaxed);
        if was_up {
            tracing::warn!(error = why, "redis call failed; falling back for a moment");
        }
        metrics::counter!("kurz_redis_errors_total").increment(1);
    }

    async fn conn(&self) -> RedisResult<Conn> {
        match &self.backend {
            Backend::Single(m) => Ok(Conn::Single(m.clone())),
            Backend::Cluster(cluster) => {
                let ClusterBackend { client, conn } = cluster.as_ref();
                // A failed first connect leaves the cell empty, so the next call retries.
                let c = conn.get_or_try_init(|| client.get_async_connection()).await?;
                Ok(Conn::Cluster(c.clone()))
            }
        }
    }

    /// Runs `call` on a connection, under the timeout and the breaker.
    async fn guarded<T, F, Fut>(&self, call: F) -> Result<T, RedisError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        if !self.is_up() {
            return Err(RedisError::Unavailable("recently failed; skipping".into()));
        }
        let run = async { call(self.conn().await?).await };
        let why = match tokio::time::timeout(OP_TIMEOUT * 2, run).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        self.trip(&why);
        Err(RedisError::Unavailable(why))
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        self.guarded(|mut conn| async move { cmd.query_async::<T>(&mut conn).await })
            .await
    }

    /// Runs a Lua script (sent once, then called by its SHA).
    pub async fn script<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, RedisError> {
        self.guarded(|mut conn| async move {
            let mut inv = script.prepare_invoke();
            for k in keys {
                inv.key(*k);
            }
            for a in args {
                inv.arg(a);
            }
            inv.invoke_async::<T>(&mut conn).await
        })
        .await
    }

    /// A real round trip, ignoring the breaker: for `/health`.
    pub async fn ping(&self) -> bool {
        let run = async {
            let mut conn = self.conn().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        let ok = matches!(tokio::time::timeout(OP_TIMEOUT * 2, run).await, Ok(Ok(_)));
        if ok {
            self.down_until_ms.store(0, Ordering::Relaxed);
        }
        ok
    }

    /// Subscribes to `channel` (prefixed) and calls `on_message` with each payload,
    /// forever: reconnecting (to the next node, for a cluster) when the connection
    /// drops, and calling `on_resubscribe` after each reconnect, since messages sent
    /// while disconnected are lost.
    pub fn spawn_subscriber<F, R>(
        self: &std::sync::Arc<Self>,
        channel: &str,
        on_message: F,
        on_resubscribe: R,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(String) + Send + Sync + 'static,
        R: Fn() + Send + Sync + 'static,
    {
        let this = self.clone();
        let channel = self.key(&[channel]);
        tokio::spawn(async move {
            let mut node = 0usize;
            let mut first = true;
            loop {
                let Some(client) = this.pubsub_clients.get(node % this.pubsub_clients.len().max(1)) else {
                    return;
                };
                node += 1;
                let subscribed = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    RedisResult::Ok(pubsub)
                };
                match tokio::time::timeout(OP_TIMEOUT * 4, subscribed).await {
                    Ok(Ok(pubsub)) => {
                        if !first {
                            on_resubscribe();
                        }
                        let mut messages = pubsub.into_on_message();
                        while let Some(msg) = messages.next().await {
                            if let Ok(payload) = msg.get_payload::<String>() {
                                on_message(payload);
                            }
                        }
                        tracing::warn!("invalidation subscription dropped; reconnecting");
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "cannot subscribe yet"),
                    Err(_) => tracing::debug!("subscribe timed out"),
                }
                first = false;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_single_or_cluster() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6379").unwrap(),
            (vec!["redis://127.0.0.1:6379".to_owned()], false)
        );
        let (nodes, cluster) = parse_url("redis+cluster://a:1,b:2").unwrap();
        assert!(cluster);
        assert_eq!(nodes, ["redis://a:1", "redis://b:2"]);
        let (nodes, cluster) = parse_url("redis://a:1, redis://b:2").unwrap();
        assert!(cluster);
        assert_eq!(nodes.len(), 2);
        assert!(parse_url("").is_err());
        assert!(parse_url("redis+cluster://").is_err());
    }
}
