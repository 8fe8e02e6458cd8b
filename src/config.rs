//! All configuration, in one typed struct: every field is a flag and a `KURZ_*`
//! environment variable, documented here so `kurz serve --help` is the reference.
//! Defaults run on a laptop with nothing installed (DESIGN.md §1).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::limits::TierLimits;

/// A value that must never be printed: `Debug` shows only that it is set.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            Err("must not be empty".into())
        } else {
            Ok(Self(s.to_owned()))
        }
    }
}

#[derive(Debug, Parser)]
#[command(name = "kurz", version, about = "A fast, self-hostable URL shortener")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user and print its API key (shown once, stored only as a hash).
    Create {
        #[arg(long)]
        email: String,
        /// free, pro, enterprise or admin.
        #[arg(long, default_value = "free")]
        tier: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "KURZ_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,

    /// Where links live: `sqlite://FILE` (embedded, the default).
    #[arg(
        long,
        env = "KURZ_DATABASE_URL",
        default_value = "sqlite://kurz.db",
        global = true
    )]
    pub database_url: String,

    /// Read connections to the database (SQLite: readers beside the one writer).
    #[arg(
        long,
        env = "KURZ_DATABASE_READ_CONNECTIONS",
        default_value_t = 4,
        global = true
    )]
    pub database_read_connections: u32,

    /// PostgreSQL read replicas (comma list of URLs). Redirect and key lookups read
    /// there; anything just written is read from the primary.
    #[arg(long, env = "KURZ_DATABASE_READ_URLS", value_delimiter = ',', global = true)]
    pub database_read_urls: Vec<String>,

    /// Most connections per PostgreSQL pool (primary, and each replica).
    #[arg(
        long,
        env = "KURZ_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub database_max_connections: u32,

    /// Connections each PostgreSQL pool keeps open when idle.
    #[arg(
        long,
        env = "KURZ_DATABASE_MIN_CONNECTIONS",
        default_value_t = 1,
        global = true
    )]
    pub database_min_connections: u32,

    /// Milliseconds a request waits for a PostgreSQL connection before the database
    /// counts as unavailable (503).
    #[arg(
        long,
        env = "KURZ_DATABASE_ACQUIRE_TIMEOUT_MS",
        default_value_t = 2000,
        global = true
    )]
    pub database_acquire_timeout_ms: u64,

    /// Run pending migrations at start. Default: yes for SQLite; for PostgreSQL no:
    /// run `kurz migrate` once, and `serve` refuses to start while migrations are pending.
    #[arg(long, env = "KURZ_AUTO_MIGRATE", global = true)]
    pub auto_migrate: Option<bool>,

    /// Redis for the shared L2 cache, distributed rate limits and cross-instance
    /// invalidation: `redis://host:port`, or a cluster as `redis+cluster://h1:p1,h2:p2`
    /// (or a comma list of `redis://` URLs). Unset: L1 only, per-instance limits.
    #[arg(long, env = "KURZ_REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<Secret>,

    /// Prefix of every Redis key and channel, so several deployments can share one Redis.
    #[arg(long, env = "KURZ_REDIS_PREFIX", default_value = "kurz:", global = true)]
    pub redis_prefix: String,

    /// Seconds a link stays in the Redis L2 cache.
    #[arg(
        long,
        env = "KURZ_REDIS_CACHE_TTL_SECS",
        default_value_t = 3600,
        global = true
    )]
    pub redis_cache_ttl_secs: u64,

    /// The base of every short URL handed out; its host may not be a link target.
    #[arg(
        long,
        env = "KURZ_PUBLIC_BASE_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub public_base_url: String,

    /// Whether requests without credentials may create links.
    #[arg(long, env = "KURZ_ALLOW_ANONYMOUS", default_value_t = true, action = ArgAction::Set, global = true)]
    pub allow_anonymous: bool,

    /// API key of the admin user. Without it, the first start creates one and prints it once.
    #[arg(long, env = "KURZ_ADMIN_API_KEY", hide_env_values = true, global = true)]
    pub admin_api_key: Option<Secret>,

    /// HMAC secret for JWTs. Without it, a random one per process: tokens then do not
    /// survive a restart nor work on another instance.
    #[arg(long, env = "KURZ_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<Secret>,

    /// Lifetime of tokens from `POST /api/v1/auth/token`, in seconds.
    #[arg(long, env = "KURZ_JWT_TTL_SECS", default_value_t = 900, global = true)]
    pub jwt_ttl_secs: u64,

    /// Key of the code permutation (32 hex characters). Without it, one is generated
    /// once and kept in the database so every instance and restart shares it.
    #[arg(long, env = "KURZ_KGS_SECRET", hide_env_values = true, global = true)]
    pub kgs_secret: Option<Secret>,

    /// Counter values leased from the store at a time by the key generator.
    #[arg(long, env = "KURZ_KGS_BLOCK_SIZE", default_value_t = 1000, global = true)]
    pub kgs_block_size: u64,

    /// Links kept in the in-process cache.
    #[arg(long, env = "KURZ_CACHE_CAPACITY", default_value_t = 100_000, global = true)]
    pub cache_capacity: usize,

    /// Seconds a cached link is trusted before the store is asked again.
    #[arg(long, env = "KURZ_CACHE_TTL_SECS", default_value_t = 60, global = true)]
    pub cache_ttl_secs: u64,

    /// Seconds a "no such code" answer is cached (protects the store from random codes).
    #[arg(
        long,
        env = "KURZ_CACHE_NEGATIVE_TTL_SECS",
        default_value_t = 5,
        global = true
    )]
    pub cache_negative_ttl_secs: u64,

    /// API requests per minute without credentials, per client IP (0 = unlimited).
    #[arg(long, env = "KURZ_RATE_LIMIT_ANONYMOUS", default_value_t = 10, global = true)]
    pub rate_limit_anonymous: u32,

    /// API requests per minute for free-tier users (0 = unlimited).
    #[arg(long, env = "KURZ_RATE_LIMIT_FREE", default_value_t = 100, global = true)]
    pub rate_limit_free: u32,

    /// API requests per minute for pro users (0 = unlimited).
    #[arg(long, env = "KURZ_RATE_LIMIT_PRO", default_value_t = 1000, global = true)]
    pub rate_limit_pro: u32,

    /// API requests per minute for enterprise users (0 = unlimited).
    #[arg(
        long,
        env = "KURZ_RATE_LIMIT_ENTERPRISE",
        default_value_t = 10_000,
        global = true
    )]
    pub rate_limit_enterprise: u32,

    /// Redirects per minute per client IP (0 = off, the default).
    #[arg(long, env = "KURZ_REDIRECT_RATE_LIMIT", default_value_t = 0, global = true)]
    pub redirect_rate_limit: u32,

    /// Proxies whose `X-Forwarded-For` and `CF-IPCountry` are believed (comma list of IPs or CIDRs).
    #[arg(long, env = "KURZ_TRUSTED_PROXIES", value_delimiter = ',', global = true)]
    pub trusted_proxies: Vec<IpNet>,

    /// Seconds a request may take before it is answered 503.
    #[arg(long, env = "KURZ_REQUEST_TIMEOUT_SECS", default_value_t = 30, global = true)]
    pub request_timeout_secs: u64,

    /// Seconds a client may take to send request headers (slow-loris guard).
    #[arg(long, env = "KURZ_HEADER_TIMEOUT_SECS", default_value_t = 10, global = true)]
    pub header_timeout_secs: u64,

    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "KURZ_SHUTDOWN_GRACE_SECS", default_value_t = 30, global = true)]
    pub shutdown_grace_secs: u64,

    /// Largest JSON body accepted, except bulk creates.
    #[arg(long, env = "KURZ_MAX_BODY_BYTES", default_value_t = 64 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Largest bulk-create body accepted (1,000 URLs of 2 KiB plus metadata).
    #[arg(long, env = "KURZ_MAX_BULK_BODY_BYTES", default_value_t = 8 * 1024 * 1024, global = true)]
    pub max_bulk_body_bytes: usize,

    /// Record click analytics (`false` turns the whole pipeline off).
    #[arg(long, env = "KURZ_ANALYTICS", default_value_t = true, action = ArgAction::Set, global = true)]
    pub analytics: bool,

    /// Click events held in memory before new ones go straight to the spool.
    #[arg(long, env = "KURZ_ANALYTICS_QUEUE", default_value_t = 65_536, global = true)]
    pub analytics_queue: usize,

    /// Largest batch of click events written at once. Big batches matter: a batch
    /// writes one row per link-hour it touches, so a second of clicks in one batch
    /// costs far fewer row writes than the same clicks in five.
    #[arg(long, env = "KURZ_ANALYTICS_BATCH", default_value_t = 50_000, global = true)]
    pub analytics_batch: usize,

    /// Longest a click waits in memory before its batch is written (milliseconds).
    #[arg(long, env = "KURZ_ANALYTICS_FLUSH_MS", default_value_t = 1_000, global = true)]
    pub analytics_flush_ms: u64,

    /// Under heavy traffic, how long the store's writer folds batches in before it
    /// writes them as one (milliseconds). Every write rewrites one row per link-hour
    /// it touches, so ten one-second writes of clicks spread over 20,000 links cost
    /// ten times the row writes of one ten-second write. A write touching at most
    /// 1,000 link-hours is never held, so stats lag by this plus the flush interval
    /// only under heavy traffic. 0 writes every batch at once. Kafka is not held.
    #[arg(
        long,
        env = "KURZ_ANALYTICS_STORE_HOLD_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub analytics_store_hold_ms: u64,

    /// A sink write slower than this (seconds) counts as failed; the batch is spooled.
    #[arg(
        long,
        env = "KURZ_ANALYTICS_SINK_TIMEOUT_SECS",
        default_value_t = 15,
        global = true
    )]
    pub analytics_sink_timeout_secs: u64,

    /// Folder for the click spool (events a sink could not take yet). One per instance.
    #[arg(
        long,
        env = "KURZ_ANALYTICS_SPOOL_DIR",
        default_value = "kurz-spool",
        global = true
    )]
    pub analytics_spool_dir: std::path::PathBuf,

    /// Keep one raw row per click (for drill-down); rollups are kept either way.
    #[arg(long, env = "KURZ_ANALYTICS_RAW_EVENTS", default_value_t = true, action = ArgAction::Set, global = true)]
    pub analytics_raw_events: bool,

    /// Days raw click events are kept (PostgreSQL drops whole daily partitions).
    #[arg(
        long,
        env = "KURZ_ANALYTICS_RETENTION_DAYS",
        default_value_t = 90,
        global = true
    )]
    pub analytics_retention_days: u32,

    /// MaxMind-format `.mmdb` file for click countries (and cities, if it has them).
    #[arg(long, env = "KURZ_GEOIP_DB", global = true)]
    pub geoip_db: Option<std::path::PathBuf>,

    /// Key of the visitor hash (32 hex characters); generated and kept in the database if unset.
    #[arg(long, env = "KURZ_VISITOR_HASH_SECRET", global = true)]
    pub visitor_hash_secret: Option<Secret>,

    /// Kafka bootstrap brokers (comma list of host:port). Set, click events are also
    /// produced to `KURZ_KAFKA_TOPIC` as JSON, keyed by short code.
    #[arg(long, env = "KURZ_KAFKA_BROKERS", value_delimiter = ',', global = true)]
    pub kafka_brokers: Vec<String>,

    /// Topic for click events.
    #[arg(long, env = "KURZ_KAFKA_TOPIC", default_value = "kurz.clicks", global = true)]
    pub kafka_topic: String,

    /// Partitions of the topic, if kurz has to create it.
    #[arg(long, env = "KURZ_KAFKA_PARTITIONS", default_value_t = 6, global = true)]
    pub kafka_partitions: i32,

    /// Replication factor of the topic, if kurz has to create it. -1 (the default)
    /// leaves it to the brokers' `default.replication.factor` (Kafka 2.4 or later), so
    /// a cluster set up for durability is not handed a topic with one copy; set a
    /// number for older brokers.
    #[arg(
        long,
        env = "KURZ_KAFKA_REPLICATION_FACTOR",
        default_value_t = -1,
        allow_negative_numbers = true,
        value_parser = replication_factor,
        global = true
    )]
    pub kafka_replication_factor: i16,

    /// Log filter, `tracing` syntax (e.g. `info`, `kurz=debug`).
    #[arg(long, env = "KURZ_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log format: `auto` (pretty in a terminal, JSON otherwise), `json` or `pretty`.
    #[arg(long, env = "KURZ_LOG_FORMAT", default_value = "auto", global = true)]
    pub log_format: String,
}

impl Config {
    /// The defaults, as if started with no flags and no environment. For tests.
    pub fn defaults() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        // Parsing an empty command line cannot fail: every field has a default.
        match Only::try_parse_from(["kurz"]) {
            Ok(o) => o.config,
            Err(e) => panic!("built-in defaults do not parse: {e}"),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    pub fn auto_migrate(&self) -> bool {
        self.auto_migrate.unwrap_or(self.is_sqlite())
    }

    pub fn tier_limits(&self) -> TierLimits {
        TierLimits {
            anonymous: self.rate_limit_anonymous,
            free: self.rate_limit_free,
            pro: self.rate_limit_pro,
            enterprise: self.rate_limit_enterprise,
            redirect: self.redirect_rate_limit,
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// The public base without a trailing slash, ready for `format!("{base}/{code}")`.
    pub fn public_base(&self) -> &str {
        self.public_base_url.trim_end_matches('/')
    }
}

/// `-1` (the brokers' default) or at least 1: Kafka refuses 0 and other negatives,
/// and only when kurz first connects, so they are refused at startup instead.
fn replication_factor(s: &str) -> Result<i16, String> {
    match s.parse::<i16>() {
        Ok(n) if n == -1 || n >= 1 => Ok(n),
        _ => Err("expected -1 (the brokers' default) or a number from 1 up".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s: Secret = "hunter2".parse().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "kurz",
            "--listen",
            "127.0.0.1:0",
            "--trusted-proxies",
            "10.0.0.0/8,127.0.0.1/32",
            "--allow-anonymous",
            "false",
            "users",
            "create",
            "--email",
            "a@b.co",
        ])
        .unwrap();
        assert_eq!(cli.config.trusted_proxies.len(), 2);
        assert_eq!(cli.config.kafka_replication_factor, -1, "the brokers' default");
        assert!(!cli.config.allow_anonymous);
        assert!(matches!(
            cli.command,
            Some(Command::Users(UsersCommand::Create { .. }))
        ));
    }

    #[test]
    fn kafka_replication_factor_is_minus_one_or_positive() {
        let parse = |v: &str| Cli::try_parse_from(["kurz", "--kafka-replication-factor", v]);
        assert_eq!(parse("3").unwrap().config.kafka_replication_factor, 3);
        assert_eq!(parse("-1").unwrap().config.kafka_replication_factor, -1);
        for bad in ["0", "-2", "x", "40000"] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
