//! Wiring: builds every part from the [`Config`] and runs the server.
//!
//! `Application::build` is what `main` and the integration tests both call, so the
//! tests exercise exactly the production assembly (bound to port 0).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::analytics::port::ClickStore;
use crate::analytics::{self, Analytics, Enricher, EventSink, GeoDb, KafkaSink, StoreWriter};
use crate::auth::{Auth, SECRET_MIN_BYTES};
use crate::cache::l2::INVALIDATION_CHANNEL;
use crate::cache::{LinkCache, RedisCache};
use crate::config::{AnalyticsConfig, Config, KafkaConfig, LimitsConfig, Secret, ServerConfig};
use crate::domain::target_url::{OwnHosts, host_of};
use crate::http::AppState;
use crate::http::observe::RequestLog;
use crate::http::redirect::{FastRedirect, RedirectCaching};
use crate::http::server::{ServerSettings, serve, shutdown_signal};
use crate::keygen::KeyGenerator;
use crate::limits::{Idempotency, RateLimiter, TierLimits};
use crate::links::LinkService;
use crate::redis::Redis;
use crate::stats::Stats;
use crate::store::{self, LinkStore, StoreError};

/// Idempotency records are honoured this long (DESIGN.md §3).
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a click writer's name or a spool generation is remembered after its last
/// write. The names matter only while a spooled write under them waits to be retried,
/// and a spool is replayed as soon as the store is reachable again (from which this
/// purge also runs), so only an instance down for longer than this with such a write
/// in its spool could count it twice.
const CLICK_REPLAYS_TTL: chrono::Duration = chrono::Duration::days(30);
/// A duplicate request waits at most this long for the first one to finish.
const IDEMPOTENCY_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::http::tls::TlsError),
}

pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    /// The click store, for the periodic purges of old clicks and write names.
    clicks: Arc<dyn ClickStore>,
    /// What `run_until` needs of the configuration besides the state.
    config: Config,
    /// A first-start admin key, to be printed once by the caller.
    pub generated_admin_key: Option<String>,
    /// Tasks that live as long as the server (invalidation subscriber, retries).
    background: Vec<tokio::task::JoinHandle<()>>,
    /// With `KURZ_TLS_CERT`: every connection is TLS.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A random secret as hex, from the OS CSPRNG.
fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The permutation key: configured, or generated once and kept in the store so every
/// instance and every restart maps counters to the same codes.
async fn kgs_key(secret: Option<&Secret>, store: &dyn LinkStore) -> Result<[u8; 16], StartupError> {
    let hex_key = match secret {
        Some(s) => s.expose().to_owned(),
        None => store.setting_get_or_init("kgs_key", &random_hex(16)).await?,
    };
    let bytes = hex::decode(hex_key.trim())
        .map_err(|_| StartupError::Config("KURZ_KGS_SECRET must be hex".into()))?;
    bytes
        .try_into()
        .map_err(|_| StartupError::Config("KURZ_KGS_SECRET must be 32 hex characters".into()))
}

/// The key of the client IPs' hash: configured, or generated once and kept in the
/// store so every instance hashes one IP to one visitor (and one rate-limit bucket).
async fn visitor_key(secret: Option<&Secret>, store: &dyn LinkStore) -> Result<[u8; 16], StartupError> {
    let hex_key = match secret {
        Some(s) => s.expose().to_owned(),
        None => {
            store
                .setting_get_or_init("visitor_hash_key", &random_hex(16))
                .await?
        }
    };
    hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StartupError::Config("KURZ_VISITOR_HASH_SECRET must be 32 hex characters".into()))
}

async fn start_analytics(
    config: &AnalyticsConfig,
    kafka: &KafkaConfig,
    clicks: &Arc<dyn ClickStore>,
    ip_key: [u8; 16],
) -> Result<Option<Arc<Analytics>>, StartupError> {
    if !config.enabled {
        return Ok(None);
    }
    let geo = config
        .geoip_db
        .as_deref()
        .map(GeoDb::open)
        .transpose()
        .map_err(|e| StartupError::Config(e.to_string()))?;
    let enricher = Enricher::new(ip_key, geo);
    let settings = analytics::Settings {
        queue_capacity: config.queue,
        batch_max: config.batch.max(1),
        hold_events: analytics::lane::HOLD_EVENTS,
        flush_interval: Duration::from_millis(config.flush_ms),
        sink_timeout: Duration::from_secs(config.sink_timeout_secs.max(1)),
        spool_dir: config.spool_dir.clone(),
    };
    let store = StoreWriter::new(
        clicks.clone(),
        config.raw_events,
        Duration::from_millis(config.store_hold_ms),
        settings.sink_timeout,
    );
    let mut sinks: Vec<Arc<dyn EventSink>> = Vec::new();
    if !kafka.brokers.is_empty() {
        sinks.push(Arc::new(KafkaSink::new(
            kafka.brokers.clone(),
            kafka.topic.clone(),
            kafka.partitions,
            kafka.replication_factor,
        )));
    }
    Analytics::start(settings, enricher, store, sinks)
        .map(|a| Some(Arc::new(a)))
        .map_err(|e| StartupError::Config(e.to_string()))
}

impl Application {
    pub async fn build(mut config: Config) -> Result<Self, StartupError> {
        check_secrets(&config)?;
        let metrics = crate::telemetry::metrics_handle();
        // Before any TLS is set up, kurz's own or the drivers' (PostgreSQL, Redis).
        crate::http::tls::provider();
        let stores = store::connect(&config.database).await?;
        let (store, clicks) = (stores.links, stores.clicks);
        if config.database.auto_migrate() {
            store.migrate().await?;
        } else {
            let pending = store.pending_migrations().await?;
            if pending > 0 {
                return Err(StartupError::Config(format!(
                    "the database has {pending} pending migration(s): run `kurz migrate` first"
                )));
            }
        }
        let keygen = Arc::new(KeyGenerator::new(
            kgs_key(config.keys.secret.as_ref(), store.as_ref()).await?,
            store.clone(),
            config.keys.block_size,
        ));
        let cache = Arc::new(LinkCache::new(
            config.cache.capacity,
            Duration::from_secs(config.cache.ttl_secs),
            Duration::from_secs(config.cache.negative_ttl_secs),
        ));
        let jwt_secret = match &config.auth.jwt_secret {
            Some(s) => s.expose().as_bytes().to_vec(),
            None => random_hex(32).into_bytes(),
        };
        let auth = Auth::new(
            store.clone(),
            &jwt_secret,
            Duration::from_secs(config.auth.jwt_ttl_secs),
            Duration::from_secs(config.auth.cache_ttl_secs),
        );
        let generated_admin_key = auth
            .bootstrap_admin(config.auth.admin_api_key.as_ref().map(|s| s.expose()))
            .await?;
        let redis_ca =
            match &config.redis.ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    StartupError::Config(format!("KURZ_REDIS_CA_FILE {}: {e}", path.display()))
                })?),
                None => None,
            };
        let redis = match &config.redis.url {
            Some(url) => Some(Arc::new(
                Redis::new(url.expose(), &config.redis.prefix, redis_ca)
                    .map_err(|e| StartupError::Config(e.to_string()))?,
            )),
            None => None,
        };
        let l2 = redis.as_ref().map(|r| {
            Arc::new(RedisCache::new(
                r.clone(),
                Duration::from_secs(config.redis.cache_ttl_secs),
            ))
        });
        let mut background = Vec::new();
        if let Some(l2) = &l2 {
            // Changes made while Redis was unreachable are announced once it is back.
            let l2 = l2.clone();
            background.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    l2.retry_pending().await;
                }
            }));
        }
        if let Some(redis) = &redis {
            // Every instance drops a changed link from its L1 as soon as it hears of it,
            // and reads it from the primary for a while (replicas may lag).
            let (on_msg_cache, on_msg_store, on_reconnect) = (cache.clone(), store.clone(), cache.clone());
            background.push(redis.spawn_subscriber(
                INVALIDATION_CHANNEL,
                move |code| {
                    on_msg_cache.invalidate(&code);
                    on_msg_store.note_changed(&code);
                },
                move || on_reconnect.clear(),
            ));
        }
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| StartupError::Bind(config.server.listen, e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| StartupError::Bind(config.server.listen, e))?;
        if config.server.public_base_url.is_none() {
            let base = base_url_of(bound);
            if bound.ip().is_unspecified() {
                tracing::warn!(
                    base,
                    "KURZ_PUBLIC_BASE_URL is not set: short URLs point at this machine's loopback; \
                     set it to the name clients use"
                );
            }
            config.server.public_base_url = Some(base);
        }
        let links = LinkService::new(
            store.clone(),
            Stats::new(clicks.clone()),
            keygen.clone(),
            cache,
            l2,
            own_hosts(&config.server, bound)?,
            config.auth.allow_anonymous,
        );
        let ip_key = visitor_key(config.analytics.visitor_hash_secret.as_ref(), store.as_ref()).await?;
        let analytics = start_analytics(&config.analytics, &config.kafka, &clicks, ip_key).await?;
        let tls = crate::http::tls::start(&config.tls).await?.map(|tls| {
            background.push(tls.reloader);
            tls.acceptor
        });
        let state = Arc::new(AppState {
            limiter: RateLimiter::new(tier_limits(&config.limits), redis.clone(), ip_key),
            ip_key,
            redis,
            idempotency: Idempotency::new(store.clone(), IDEMPOTENCY_TTL, IDEMPOTENCY_WAIT),
            request_log: Arc::new(RequestLog::new(
                config.server.trusted_proxies.clone(),
                config.log.access_log,
                ip_key,
            )),
            server: config.server.clone(),
            store,
            links,
            keygen,
            auth,
            metrics,
            analytics,
            redirect_caching: RedirectCaching::new(
                config.server.cache_control_permanent_secs,
                config.server.cache_control_temporary_secs,
            ),
        });
        Ok(Self {
            listener,
            state,
            clicks,
            config,
            generated_admin_key,
            background,
            tls,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM/Ctrl-C, then drains in-flight requests.
    pub async fn run_until_stopped(self) {
        self.run_until(shutdown_signal()).await;
    }

    /// Serves until `stop` resolves. Tests use this to shut down on demand.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) {
        let state = self.state;
        let server = &self.config.server;
        let router = crate::http::router(state.clone());
        let settings = ServerSettings {
            header_timeout: Duration::from_secs(server.header_timeout_secs),
            shutdown_grace: Duration::from_secs(server.shutdown_grace_secs),
            tls: self.tls,
            max_connections: server.max_connections.max(1),
        };
        let retention = chrono::Duration::days(i64::from(self.config.analytics.retention_days));
        let clicks = state.analytics.is_some().then(|| self.clicks.clone());
        // Set before the first scrape can come; housekeeping keeps it current.
        metrics::gauge!("kurz_kgs_keys_left").set(state.keygen.keys_left() as f64);
        let upkeep = tokio::spawn(housekeeping(state.clone(), clicks, retention));
        let mut warm_up = self.config.cache.warm.then(|| {
            let state = state.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                match state.links.warm_cache().await {
                    Ok(n) => tracing::info!(
                        links = n,
                        ms = started.elapsed().as_millis() as u64,
                        "cache warmed"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cache not warmed"),
                }
            })
        });
        // Answer once the hot links are loaded, or after waiting this long for them
        // (the rest then loads while kurz serves): a warm-up racing a full load of
        // redirects took over a second of the bench's first five, each of its
        // requests a store lookup meanwhile. Connections wait in the listen queue.
        if let Some(task) = warm_up.as_mut() {
            let wait = Duration::from_millis(self.config.cache.warm_wait_ms);
            if tokio::time::timeout(wait, task).await.is_ok() {
                warm_up = None;
            }
        }
        let refresher = tokio::spawn(keep_cache_fresh(state.clone()));
        tracing::info!(addr = %server.listen, base = server.public_base(), tls = settings.tls.is_some(), "kurz is serving");
        let fast = Some(Arc::new(FastRedirect::new(state.clone())));
        serve(self.listener, router, fast, settings, stop).await;
        // Every request has been answered; now every click they made is written (or
        // spooled) before the process may exit.
        if let Some(analytics) = &state.analytics {
            analytics.shutdown().await;
        }
        upkeep.abort();
        refresher.abort();
        if let Some(task) = warm_up {
            task.abort();
        }
        for task in self.background {
            task.abort();
        }
    }
}

/// Refuses to start with a configured secret short enough to guess: an admin key or
/// a JWT signing key of a few characters would open the whole API.
fn check_secrets(config: &Config) -> Result<(), StartupError> {
    let secrets = [
        ("KURZ_ADMIN_API_KEY", &config.auth.admin_api_key),
        ("KURZ_JWT_SECRET", &config.auth.jwt_secret),
    ];
    for (name, secret) in secrets {
        if let Some(s) = secret
            && s.expose().len() < SECRET_MIN_BYTES
        {
            return Err(StartupError::Config(format!(
                "{name} is {} bytes long; use at least {SECRET_MIN_BYTES} random bytes \
                 (e.g. `openssl rand -hex 32`)",
                s.expose().len()
            )));
        }
    }
    Ok(())
}

/// The public base URL when none is configured: the address kurz listens on, with
/// this machine's loopback for "all addresses", so that a laptop's short URLs work
/// on whatever port it was given.
fn base_url_of(bound: SocketAddr) -> String {
    let ip = match bound.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, bound.port()))
}

/// The hosts that are this service: the public base URL's, the listen address and
/// `KURZ_SELF_HOSTS`.
fn own_hosts(server: &ServerConfig, bound: SocketAddr) -> Result<OwnHosts, StartupError> {
    let mut own = OwnHosts::default();
    own.add_ip(bound.ip());
    let base = host_of(server.public_base())
        .ok_or_else(|| StartupError::Config("KURZ_PUBLIC_BASE_URL must be a URL with a host".into()))?;
    own.add(&base)
        .map_err(|e| StartupError::Config(format!("KURZ_PUBLIC_BASE_URL: {e}")))?;
    for host in &server.self_hosts {
        own.add(host.trim())
            .map_err(|e| StartupError::Config(format!("KURZ_SELF_HOSTS: {e}")))?;
    }
    Ok(own)
}

/// The rate-limit tiers from their settings.
fn tier_limits(limits: &LimitsConfig) -> TierLimits {
    TierLimits {
        anonymous: limits.anonymous,
        free: limits.free,
        pro: limits.pro,
        enterprise: limits.enterprise,
        redirect: limits.redirect,
        auth_failures: limits.auth_failures,
    }
}

/// A periodic purge's outcome in the log: a count when it deleted something, a warning
/// when it failed (it runs again ten minutes later).
fn log_purge<E: std::fmt::Display>(what: &str, done: Result<u64, E>) {
    match done {
        Ok(n) if n > 0 => tracing::info!(purged = n, "{what} deleted"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not delete {what}"),
    }
}

/// The store's pools and replicas in the saturation metrics. A replica that cannot
/// be asked reads -1, so an alert tells "unreachable" from "behind".
async fn report_store(store: &dyn LinkStore) {
    for pool in store.pools() {
        let name = pool.name;
        for (state, value) in [
            ("in_use", pool.size.saturating_sub(pool.idle)),
            ("idle", pool.idle),
            ("max", pool.max),
        ] {
            metrics::gauge!("kurz_store_pool_connections", "pool" => name.clone(), "state" => state)
                .set(f64::from(value));
        }
    }
    for (pool, lag) in store.replica_lags().await {
        metrics::gauge!("kurz_store_replica_lag_seconds", "pool" => pool).set(lag.unwrap_or(-1.0));
    }
}

/// Reloads the links the cache queued for a refresh, as often as the cache asks
/// ([`LinkCache::refresh_every`]), so hot links do not expire into misses.
async fn keep_cache_fresh(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.links.cache().refresh_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = state.links.refresh_cache().await {
            tracing::debug!(error = %e, "cache refresh failed; those links load on their next click");
        }
    }
}

/// Periodic chores: drain metric histograms, forget idle rate-limit buckets, and
/// (every ten minutes) delete idempotency records past their 24 hours and, with
/// analytics on, raw clicks past retention and old click writer names.
async fn housekeeping(
    state: Arc<AppState>,
    clicks: Option<Arc<dyn ClickStore>>,
    retention: chrono::Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        state.metrics.run_upkeep();
        state.limiter.forget_idle();
        metrics::gauge!("kurz_kgs_keys_left").set(state.keygen.keys_left() as f64);
        report_store(state.store.as_ref()).await;
        if let Some(redis) = &state.redis {
            redis.report_circuit();
        }
        if ticks.is_multiple_of(30) {
            match state.store.count_active_links(chrono::Utc::now()).await {
                Ok(n) => metrics::gauge!("kurz_links_active").set(n as f64),
                Err(e) => tracing::debug!(error = %e, "could not count active links"),
            }
        }
        if ticks.is_multiple_of(60)
            && let Some(clicks) = &clicks
        {
            let before = chrono::Utc::now() - retention;
            log_purge(
                "raw click events past retention",
                clicks.purge_events(before).await,
            );
            let before = chrono::Utc::now() - CLICK_REPLAYS_TTL;
            log_purge(
                "old click writer names and spool generations",
                clicks.purge_names(before).await,
            );
        }
        if ticks.is_multiple_of(60) {
            let before = chrono::Utc::now() - chrono::Duration::from_std(IDEMPOTENCY_TTL).unwrap_or_default();
            log_purge(
                "expired idempotency records",
                state.store.purge_idempotency(before).await,
            );
        }
        ticks += 1;
    }
}
