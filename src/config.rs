//! All configuration: every setting is a flag and a `KURZ_*` environment variable,
//! documented here so `kurz serve --help` is the reference. Defaults run on a laptop
//! with nothing installed (DESIGN.md §1).
//!
//! [`Config`] is grouped into sections, one per part that reads it (server, database,
//! Redis, cache, limits, analytics, Kafka…), flattened into one command line: a part
//! is handed its own section, never the whole configuration. This module imports
//! nothing else of kurz; `app` turns sections into the parts' own settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use ipnet::IpNet;

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
    pub command: Command,
}

impl Cli {
    /// Parses the command line; without a subcommand, `serve` is meant (`kurz` alone,
    /// or `kurz --listen …`, serves).
    pub fn parse_with_default() -> Self {
        Self::parse_from(with_default_command(std::env::args_os().collect()))
    }
}

/// Inserts `serve` when the first argument is not a subcommand nor a top-level flag
/// of clap's own (`--help`, `--version`).
fn with_default_command(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
    let explicit = matches!(
        first.as_deref(),
        Some(
            "serve"
                | "migrate"
                | "users"
                | "healthcheck"
                | "backup"
                | "restore"
                | "help"
                | "-h"
                | "--help"
                | "-V"
                | "--version"
        )
    );
    if !explicit {
        args.insert(1.min(args.len()), "serve".into());
    }
    args
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default).
    Serve(Box<Config>),
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(flatten)]
        log: LogConfig,
    },
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// GET /health on this machine's kurz: exit 0 on 200, 1 otherwise (for a
    /// container's HEALTHCHECK, which has no curl).
    Healthcheck(HealthcheckArgs),
    /// Write a consistent copy of the SQLite store to FILE while kurz keeps serving.
    /// (PostgreSQL: deploy/backup/pg_backup.sh.)
    Backup {
        /// Where the copy goes; must not exist yet.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(flatten)]
        log: LogConfig,
    },
    /// Put a `kurz backup` copy back as KURZ_DATABASE_URL's SQLite file, and move the
    /// code counter past every code handed out since the backup.
    Restore {
        /// The backup to restore.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Replace an existing database file (refused while a kurz has it open).
        #[arg(long)]
        force: bool,
        /// Counter values skipped, so codes issued after the backup are never issued
        /// again (the default is days of the seeds' creates; the code space is 62^7).
        #[arg(long, default_value_t = 100_000_000)]
        skip_codes: u64,
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(flatten)]
        log: LogConfig,
    },
}

/// What `kurz healthcheck` reads: where kurz listens and whether it speaks TLS, no more.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The address kurz listens on; 0.0.0.0 and :: are asked on loopback.
    #[arg(
        id = "listen",
        long = "listen",
        env = "KURZ_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// kurz's TLS certificate (PEM): set, the check speaks HTTPS and accepts exactly
    /// the certificates in this file.
    #[arg(id = "tls-cert", long = "tls-cert", env = "KURZ_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// Milliseconds the whole check may take.
    #[arg(long = "timeout-ms", default_value_t = 2000)]
    pub timeout_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user and print its API key (shown once, stored only as a hash).
    Create {
        /// The user's email address (unique).
        #[arg(long)]
        email: String,
        /// free, pro, enterprise or admin.
        #[arg(long, default_value = "free")]
        tier: String,
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(flatten)]
        log: LogConfig,
    },
}

/// Everything `kurz serve` reads.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerConfig,
    #[command(flatten)]
    pub tls: TlsConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub cache: CacheConfig,
    #[command(flatten)]
    pub keys: KeysConfig,
    #[command(flatten)]
    pub limits: LimitsConfig,
    #[command(flatten)]
    pub analytics: AnalyticsConfig,
    #[command(flatten)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    pub log: LogConfig,
}

/// The HTTP server: where it listens, what it trusts, how long it waits.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
pub struct ServerConfig {
    /// Address to listen on.
    #[arg(
        id = "listen",
        long = "listen",
        env = "KURZ_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// The base of every short URL handed out; its host may not be a link target.
    /// Unset: `http://` and the listen address (127.0.0.1 for 0.0.0.0, [::1] for ::),
    /// right for a laptop; set it to the public name anywhere else.
    #[arg(
        id = "public-base-url",
        long = "public-base-url",
        env = "KURZ_PUBLIC_BASE_URL"
    )]
    pub public_base_url: Option<String>,

    /// More hosts that are this service (comma list, e.g. a CDN's name or the
    /// machine's public IP): links to them are refused like links to the public base
    /// URL's host, so no short link can redirect to another.
    #[arg(
        id = "self-hosts",
        long = "self-hosts",
        env = "KURZ_SELF_HOSTS",
        value_delimiter = ','
    )]
    pub self_hosts: Vec<String>,

    /// Proxies whose `X-Forwarded-For` and `CF-IPCountry` are believed (comma list of IPs or CIDRs).
    #[arg(
        id = "trusted-proxies",
        long = "trusted-proxies",
        env = "KURZ_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpNet>,

    /// Seconds a request may take before it is answered 503 (408 while its body is
    /// still arriving).
    #[arg(
        id = "request-timeout-secs",
        long = "request-timeout-secs",
        env = "KURZ_REQUEST_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub request_timeout_secs: u64,

    /// Seconds a client may take to send request headers (slow-loris guard).
    #[arg(
        id = "header-timeout-secs",
        long = "header-timeout-secs",
        env = "KURZ_HEADER_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub header_timeout_secs: u64,

    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(
        id = "shutdown-grace-secs",
        long = "shutdown-grace-secs",
        env = "KURZ_SHUTDOWN_GRACE_SECS",
        default_value_t = 30
    )]
    pub shutdown_grace_secs: u64,

    /// Largest JSON body accepted, except bulk creates.
    #[arg(id = "max-body-bytes", long = "max-body-bytes", env = "KURZ_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Largest bulk-create body accepted (1,000 URLs of 2 KiB plus metadata).
    #[arg(
        id = "max-bulk-body-bytes", long = "max-bulk-body-bytes",
        env = "KURZ_MAX_BULK_BODY_BYTES",
        default_value_t = 8 * 1024 * 1024
    )]
    pub max_bulk_body_bytes: usize,

    /// `Cache-Control: public, max-age=N` on 301 redirects (0: `no-store`). An
    /// expiring link is never cached past its expiry.
    #[arg(
        id = "cache-control-permanent-secs",
        long = "cache-control-permanent-secs",
        env = "KURZ_CACHE_CONTROL_PERMANENT_SECS",
        default_value_t = 86_400
    )]
    pub cache_control_permanent_secs: u32,

    /// `Cache-Control: public, max-age=N` on 302 redirects; 0 (the default) sends
    /// `no-store`, so every click reaches kurz and is counted.
    #[arg(
        id = "cache-control-temporary-secs",
        long = "cache-control-temporary-secs",
        env = "KURZ_CACHE_CONTROL_TEMPORARY_SECS",
        default_value_t = 0
    )]
    pub cache_control_temporary_secs: u32,

    /// Most client connections open at once; past it a new connection is answered
    /// 503 and closed. Each costs at most 16 KiB of header buffer while it waits.
    #[arg(
        id = "max-connections",
        long = "max-connections",
        env = "KURZ_MAX_CONNECTIONS",
        default_value_t = 4096
    )]
    pub max_connections: usize,
}

impl ServerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// The public base without a trailing slash, ready for `format!("{base}/{code}")`.
    /// Empty only before `app` has derived it from the listen address.
    pub fn public_base(&self) -> &str {
        self.public_base_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
    }
}

/// TLS termination in kurz itself (otherwise plain HTTP, for a proxy in front).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first). With KURZ_TLS_KEY, kurz speaks HTTPS only
    /// on KURZ_LISTEN, and reloads both files when they change.
    #[arg(id = "tls-cert", long = "tls-cert", env = "KURZ_TLS_CERT")]
    pub cert: Option<PathBuf>,

    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(id = "tls-key", long = "tls-key", env = "KURZ_TLS_KEY")]
    pub key: Option<PathBuf>,

    /// Oldest TLS version accepted: 1.2 or 1.3.
    #[arg(
        id = "tls-min-version",
        long = "tls-min-version",
        env = "KURZ_TLS_MIN_VERSION",
        default_value = "1.2",
        value_parser = tls_version
    )]
    pub min_version: TlsVersion,

    /// Seconds between checks of the certificate and key files for a change (a
    /// rotation by cert-manager or certbot); new connections get the new certificate.
    #[arg(
        id = "tls-reload-secs",
        long = "tls-reload-secs",
        env = "KURZ_TLS_RELOAD_SECS",
        default_value_t = 5
    )]
    pub reload_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

fn tls_version(s: &str) -> Result<TlsVersion, String> {
    match s {
        "1.2" => Ok(TlsVersion::V1_2),
        "1.3" => Ok(TlsVersion::V1_3),
        _ => Err("expected 1.2 or 1.3".into()),
    }
}

/// Who may do what: credentials, tokens, anonymous use.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Authentication")]
pub struct AuthConfig {
    /// Whether requests without credentials may create links.
    #[arg(id = "allow-anonymous", long = "allow-anonymous", env = "KURZ_ALLOW_ANONYMOUS", default_value_t = true, action = ArgAction::Set)]
    pub allow_anonymous: bool,

    /// API key of the admin user. Without it, the first start creates one and prints it once.
    #[arg(
        id = "admin-api-key",
        long = "admin-api-key",
        env = "KURZ_ADMIN_API_KEY",
        hide_env_values = true
    )]
    pub admin_api_key: Option<Secret>,

    /// HMAC secret for JWTs. Without it, a random one per process: tokens then do not
    /// survive a restart nor work on another instance.
    #[arg(
        id = "jwt-secret",
        long = "jwt-secret",
        env = "KURZ_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<Secret>,

    /// Lifetime of tokens from `POST /api/v1/auth/token`, in seconds.
    #[arg(
        id = "jwt-ttl-secs",
        long = "jwt-ttl-secs",
        env = "KURZ_JWT_TTL_SECS",
        default_value_t = 900
    )]
    pub jwt_ttl_secs: u64,

    /// Seconds an API key or a token's user is trusted before the store is asked
    /// again: a deleted user's key and tokens stop working within this time.
    #[arg(
        id = "auth-cache-ttl-secs",
        long = "auth-cache-ttl-secs",
        env = "KURZ_AUTH_CACHE_TTL_SECS",
        default_value_t = 30
    )]
    pub cache_ttl_secs: u64,
}

/// The store.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseConfig {
    /// Where links live: `sqlite://FILE` (embedded, the default) or `postgres://…`;
    /// for failover, PostgreSQL hosts as a libpq-style list,
    /// `postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`: kurz writes
    /// to whichever is read-write.
    #[arg(
        id = "database-url",
        long = "database-url",
        env = "KURZ_DATABASE_URL",
        default_value = "sqlite://kurz.db"
    )]
    pub url: String,

    /// Read connections to the database (SQLite: readers beside the one writer).
    #[arg(
        id = "database-read-connections",
        long = "database-read-connections",
        env = "KURZ_DATABASE_READ_CONNECTIONS",
        default_value_t = 4
    )]
    pub read_connections: u32,

    /// PostgreSQL read replicas (comma list of URLs). Redirect and key lookups read
    /// there; anything just written is read from the primary.
    #[arg(
        id = "database-read-urls",
        long = "database-read-urls",
        env = "KURZ_DATABASE_READ_URLS",
        value_delimiter = ','
    )]
    pub read_urls: Vec<String>,

    /// Most connections per PostgreSQL pool (primary, and each replica).
    #[arg(
        id = "database-max-connections",
        long = "database-max-connections",
        env = "KURZ_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: u32,

    /// Connections each PostgreSQL pool keeps open when idle.
    #[arg(
        id = "database-min-connections",
        long = "database-min-connections",
        env = "KURZ_DATABASE_MIN_CONNECTIONS",
        default_value_t = 1
    )]
    pub min_connections: u32,

    /// Milliseconds a request waits for a PostgreSQL connection before the database
    /// counts as unavailable (503).
    #[arg(
        id = "database-acquire-timeout-ms",
        long = "database-acquire-timeout-ms",
        env = "KURZ_DATABASE_ACQUIRE_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub acquire_timeout_ms: u64,

    /// Run pending migrations at start. Default: yes for SQLite; for PostgreSQL no:
    /// run `kurz migrate` once, and `serve` refuses to start while migrations are pending.
    #[arg(id = "auto-migrate", long = "auto-migrate", env = "KURZ_AUTO_MIGRATE")]
    pub auto_migrate: Option<bool>,
}

impl DatabaseConfig {
    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    pub fn auto_migrate(&self) -> bool {
        self.auto_migrate.unwrap_or(self.is_sqlite())
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

/// Redis: the shared L2 cache, distributed rate limits and invalidation.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Redis")]
pub struct RedisConfig {
    /// Redis for the shared L2 cache, distributed rate limits and cross-instance
    /// invalidation: `redis://host:port`, or a cluster as `redis+cluster://h1:p1,h2:p2`
    /// (or a comma list of `redis://` URLs); `rediss://` and `rediss+cluster://` speak
    /// TLS. Unset: L1 only, per-instance limits.
    #[arg(
        id = "redis-url",
        long = "redis-url",
        env = "KURZ_REDIS_URL",
        hide_env_values = true
    )]
    pub url: Option<Secret>,

    /// Prefix of every Redis key and channel, so several deployments can share one Redis.
    #[arg(
        id = "redis-prefix",
        long = "redis-prefix",
        env = "KURZ_REDIS_PREFIX",
        default_value = "kurz:"
    )]
    pub prefix: String,

    /// Seconds a link stays in the Redis L2 cache.
    #[arg(
        id = "redis-cache-ttl-secs",
        long = "redis-cache-ttl-secs",
        env = "KURZ_REDIS_CACHE_TTL_SECS",
        default_value_t = 3600
    )]
    pub cache_ttl_secs: u64,

    /// PEM CA certificates that a `rediss://` server's certificate must chain to
    /// (default: the system's CA store).
    #[arg(id = "redis-ca-file", long = "redis-ca-file", env = "KURZ_REDIS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// The in-process (L1) link cache.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cache")]
pub struct CacheConfig {
    /// Links kept in the in-process cache. Its shards have a few per cent more room
    /// than an even split, so this many fit however they hash (short of a shard four
    /// standard deviations over its share).
    #[arg(
        id = "cache-capacity",
        long = "cache-capacity",
        env = "KURZ_CACHE_CAPACITY",
        default_value_t = 100_000
    )]
    pub capacity: usize,

    /// Seconds a cached link is trusted before the store is asked again: for the
    /// link, or on SQLite whether any link changed since it was loaded.
    #[arg(
        id = "cache-ttl-secs",
        long = "cache-ttl-secs",
        env = "KURZ_CACHE_TTL_SECS",
        default_value_t = 60
    )]
    pub ttl_secs: u64,

    /// Seconds a "no such code" answer is cached (protects the store from random codes).
    #[arg(
        id = "cache-negative-ttl-secs",
        long = "cache-negative-ttl-secs",
        env = "KURZ_CACHE_NEGATIVE_TTL_SECS",
        default_value_t = 5
    )]
    pub negative_ttl_secs: u64,

    /// At start, load the links clicked most in the last day into the cache (up to its
    /// capacity): before kurz answers requests, for up to `KURZ_CACHE_WARM_WAIT_MS`,
    /// then in the background while it serves.
    #[arg(id = "cache-warm", long = "cache-warm", env = "KURZ_CACHE_WARM", default_value_t = true, action = ArgAction::Set)]
    pub warm: bool,

    /// How long a start waits for the cache warm-up before it answers requests
    /// (milliseconds). Loading 100,000 links takes under a second on an idle
    /// two-core machine, but over a second while the same cores answer a full load of
    /// redirects, each a store lookup until its link is loaded. Requests that arrive
    /// meanwhile wait in the listen queue. 0 serves at once.
    #[arg(
        id = "cache-warm-wait-ms",
        long = "cache-warm-wait-ms",
        env = "KURZ_CACHE_WARM_WAIT_MS",
        default_value_t = 2_000
    )]
    pub warm_wait_ms: u64,
}

/// The short-code generator (DESIGN.md §2).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Short codes")]
pub struct KeysConfig {
    /// Key of the code permutation (32 hex characters). Without it, one is generated
    /// once and kept in the database so every instance and restart shares it.
    #[arg(
        id = "kgs-secret",
        long = "kgs-secret",
        env = "KURZ_KGS_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<Secret>,

    /// Counter values leased from the store at a time by the key generator.
    #[arg(
        id = "kgs-block-size",
        long = "kgs-block-size",
        env = "KURZ_KGS_BLOCK_SIZE",
        default_value_t = 1000
    )]
    pub block_size: u64,
}

/// Rate limits per caller, per minute (0 = unlimited).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rate limits")]
pub struct LimitsConfig {
    /// API requests per minute without credentials, per client IP (0 = unlimited).
    #[arg(
        id = "rate-limit-anonymous",
        long = "rate-limit-anonymous",
        env = "KURZ_RATE_LIMIT_ANONYMOUS",
        default_value_t = 10
    )]
    pub anonymous: u32,

    /// API requests per minute for free-tier users (0 = unlimited).
    #[arg(
        id = "rate-limit-free",
        long = "rate-limit-free",
        env = "KURZ_RATE_LIMIT_FREE",
        default_value_t = 100
    )]
    pub free: u32,

    /// API requests per minute for pro users (0 = unlimited).
    #[arg(
        id = "rate-limit-pro",
        long = "rate-limit-pro",
        env = "KURZ_RATE_LIMIT_PRO",
        default_value_t = 1000
    )]
    pub pro: u32,

    /// API requests per minute for enterprise users (0 = unlimited).
    #[arg(
        id = "rate-limit-enterprise",
        long = "rate-limit-enterprise",
        env = "KURZ_RATE_LIMIT_ENTERPRISE",
        default_value_t = 10_000
    )]
    pub enterprise: u32,

    /// Failed authentications (a wrong API key or token) per minute per client IP,
    /// before that client is answered 429 without a lookup (0 = unlimited).
    #[arg(
        id = "rate-limit-auth-failures",
        long = "rate-limit-auth-failures",
        env = "KURZ_RATE_LIMIT_AUTH_FAILURES",
        default_value_t = 20
    )]
    pub auth_failures: u32,

    /// Redirects per minute per client IP (0 = off, the default).
    #[arg(
        id = "redirect-rate-limit",
        long = "redirect-rate-limit",
        env = "KURZ_REDIRECT_RATE_LIMIT",
        default_value_t = 0
    )]
    pub redirect: u32,
}

/// The click pipeline (DESIGN.md §5).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Click analytics")]
pub struct AnalyticsConfig {
    /// Record click analytics (`false` turns the whole pipeline off).
    #[arg(id = "analytics", long = "analytics", env = "KURZ_ANALYTICS", default_value_t = true, action = ArgAction::Set)]
    pub enabled: bool,

    /// Click events held in memory before new ones go straight to the spool.
    #[arg(
        id = "analytics-queue",
        long = "analytics-queue",
        env = "KURZ_ANALYTICS_QUEUE",
        default_value_t = 65_536
    )]
    pub queue: usize,

    /// Most click events the batcher hands to the sinks at once (Kafka writes each
    /// batch as it comes). The store writer folds batches into holds of up to 800,000
    /// clicks under load, so this does not set how often its rollup rows are
    /// rewritten; it sets the memory of the batches in flight (about 128 bytes a
    /// click) and the size of the journal's records. In side-by-side runs of one
    /// round of the redirect benchmark's load, 10,000 peaked about 11 MiB lower than
    /// 50,000 (bench/results/2026-12-06.md).
    #[arg(
        id = "analytics-batch",
        long = "analytics-batch",
        env = "KURZ_ANALYTICS_BATCH",
        default_value_t = 10_000
    )]
    pub batch: usize,

    /// Longest a click waits in memory before its batch is written (milliseconds).
    #[arg(
        id = "analytics-flush-ms",
        long = "analytics-flush-ms",
        env = "KURZ_ANALYTICS_FLUSH_MS",
        default_value_t = 1_000
    )]
    pub flush_ms: u64,

    /// Under heavy traffic, how long the store's writer folds batches in before it
    /// writes them as one (milliseconds). Every write rewrites one row per link-hour
    /// it touches, so ten one-second writes of clicks spread over 20,000 links cost
    /// ten times the row writes of one ten-second write. A write touching at most
    /// 1,000 link-hours is never held, so stats lag by this plus the flush interval
    /// only under heavy traffic. 0 writes every batch at once. Kafka is not held.
    /// 30 s, not 10: at 10,000 clicks/s over 100,000 links a 10 s hold rewrote a row
    /// for two clicks in three, a 30 s hold for one in three, and kurz spent 10–15 %
    /// less CPU a redirect over 60 and 120 s runs (bench/results/2026-12-06.md); the
    /// lag stays under the 60 s of the `KurzClickLagHigh` alert.
    #[arg(
        id = "analytics-store-hold-ms",
        long = "analytics-store-hold-ms",
        env = "KURZ_ANALYTICS_STORE_HOLD_MS",
        default_value_t = 30_000
    )]
    pub store_hold_ms: u64,

    /// A sink write slower than this (seconds) counts as failed; the batch is spooled.
    #[arg(
        id = "analytics-sink-timeout-secs",
        long = "analytics-sink-timeout-secs",
        env = "KURZ_ANALYTICS_SINK_TIMEOUT_SECS",
        default_value_t = 15
    )]
    pub sink_timeout_secs: u64,

    /// Folder for the click spool (events a sink could not take yet). One per instance.
    #[arg(
        id = "analytics-spool-dir",
        long = "analytics-spool-dir",
        env = "KURZ_ANALYTICS_SPOOL_DIR",
        default_value = "kurz-spool"
    )]
    pub spool_dir: PathBuf,

    /// Keep one raw row per click (for drill-down); rollups are kept either way.
    #[arg(id = "analytics-raw-events", long = "analytics-raw-events", env = "KURZ_ANALYTICS_RAW_EVENTS", default_value_t = true, action = ArgAction::Set)]
    pub raw_events: bool,

    /// Days raw click events are kept (PostgreSQL drops whole daily partitions).
    #[arg(
        id = "analytics-retention-days",
        long = "analytics-retention-days",
        env = "KURZ_ANALYTICS_RETENTION_DAYS",
        default_value_t = 90
    )]
    pub retention_days: u32,

    /// MaxMind-format `.mmdb` file for click countries (and cities, if it has them).
    #[arg(id = "geoip-db", long = "geoip-db", env = "KURZ_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,

    /// Key of the visitor hash (32 hex characters); generated and kept in the database if unset.
    #[arg(
        id = "visitor-hash-secret",
        long = "visitor-hash-secret",
        env = "KURZ_VISITOR_HASH_SECRET",
        hide_env_values = true
    )]
    pub visitor_hash_secret: Option<Secret>,
}

/// The optional Kafka sink of click events.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaConfig {
    /// Kafka bootstrap brokers (comma list of host:port). Set, click events are also
    /// produced to `KURZ_KAFKA_TOPIC` as JSON, keyed by short code.
    #[arg(
        id = "kafka-brokers",
        long = "kafka-brokers",
        env = "KURZ_KAFKA_BROKERS",
        value_delimiter = ','
    )]
    pub brokers: Vec<String>,

    /// Topic for click events.
    #[arg(
        id = "kafka-topic",
        long = "kafka-topic",
        env = "KURZ_KAFKA_TOPIC",
        default_value = "kurz.clicks"
    )]
    pub topic: String,

    /// Partitions of the topic, if kurz has to create it.
    #[arg(
        id = "kafka-partitions",
        long = "kafka-partitions",
        env = "KURZ_KAFKA_PARTITIONS",
        default_value_t = 6
    )]
    pub partitions: i32,

    /// Replication factor of the topic, if kurz has to create it. -1 (the default)
    /// leaves it to the brokers' `default.replication.factor` (Kafka 2.4 or later), so
    /// a cluster set up for durability is not handed a topic with one copy; set a
    /// number for older brokers.
    #[arg(
        id = "kafka-replication-factor", long = "kafka-replication-factor",
        env = "KURZ_KAFKA_REPLICATION_FACTOR",
        default_value_t = -1,
        allow_negative_numbers = true,
        value_parser = replication_factor
    )]
    pub replication_factor: i16,
}

/// Logs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogConfig {
    /// Log filter, `tracing` syntax (e.g. `info`, `kurz=debug`).
    #[arg(id = "log", long = "log", env = "KURZ_LOG", default_value = "info")]
    pub filter: String,

    /// Log format: `auto` (pretty in a terminal, JSON otherwise), `json` or `pretty`.
    #[arg(
        id = "log-format",
        long = "log-format",
        env = "KURZ_LOG_FORMAT",
        default_value = "auto"
    )]
    pub format: String,

    /// Access log: the share of requests that get a log line of their own (method,
    /// route, status, duration, bytes, hashed client), from 0 (off, the default) to 1
    /// (every request).
    #[arg(
        id = "access-log",
        long = "access-log",
        env = "KURZ_ACCESS_LOG",
        default_value_t = 0.0,
        value_parser = fraction
    )]
    pub access_log: f64,
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
}

/// A share from 0 to 1.
fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("expected a number from 0 to 1".into()),
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

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(with_default_command(args.iter().map(Into::into).collect()))
    }

    fn serve(args: &[&str]) -> Config {
        match parse(args).unwrap().command {
            Command::Serve(c) => *c,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s: Secret = "hunter2".parse().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn flags_parse() {
        let config = serve(&[
            "kurz",
            "--listen",
            "127.0.0.1:0",
            "--trusted-proxies",
            "10.0.0.0/8,127.0.0.1/32",
            "--allow-anonymous",
            "false",
        ]);
        assert_eq!(config.server.trusted_proxies.len(), 2);
        assert_eq!(config.kafka.replication_factor, -1, "the brokers' default");
        assert!(!config.auth.allow_anonymous);
        let cli = parse(&["kurz", "users", "create", "--email", "a@b.co"]).unwrap();
        assert!(matches!(cli.command, Command::Users(UsersCommand::Create { .. })));
    }

    #[test]
    fn serve_is_the_default_command() {
        assert_eq!(serve(&["kurz"]).server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            serve(&["kurz", "serve", "--listen", "127.0.0.1:9"]).server.listen,
            "127.0.0.1:9".parse().unwrap()
        );
    }

    /// A subcommand takes only its own options: `kurz users create` has no `--listen`.
    #[test]
    fn subcommands_take_only_their_own_options() {
        assert!(parse(&["kurz", "users", "create", "--email", "a@b.co", "--listen", "x"]).is_err());
        assert!(parse(&["kurz", "migrate", "--database-url", "sqlite://x.db"]).is_ok());
        assert!(parse(&["kurz", "migrate", "--cache-capacity", "5"]).is_err());
        // The health check reads where kurz listens and its certificate, nothing else:
        // not the key, not the database.
        let check = |extra: &[&str]| parse(&[&["kurz", "healthcheck"], extra].concat());
        match check(&["--listen", "0.0.0.0:9", "--tls-cert", "c.pem"])
            .unwrap()
            .command
        {
            Command::Healthcheck(h) => {
                assert_eq!(h.listen, "0.0.0.0:9".parse().unwrap());
                assert_eq!(h.tls_cert.as_deref(), Some(std::path::Path::new("c.pem")));
            }
            other => panic!("not healthcheck: {other:?}"),
        }
        assert!(check(&["--tls-key", "k.pem"]).is_err());
        assert!(check(&["--database-url", "sqlite://x.db"]).is_err());
        assert!(
            parse(&[
                "kurz",
                "backup",
                "--to",
                "b.db",
                "--database-url",
                "sqlite://x.db"
            ])
            .is_ok()
        );
        assert!(parse(&["kurz", "backup"]).is_err(), "--to is required");
        assert!(parse(&["kurz", "backup", "--to", "b.db", "--listen", "x"]).is_err());
        match parse(&["kurz", "restore", "--from", "b.db", "--force"])
            .unwrap()
            .command
        {
            Command::Restore {
                force, skip_codes, ..
            } => assert!(force && skip_codes == 100_000_000),
            other => panic!("not restore: {other:?}"),
        }
    }

    #[test]
    fn tls_and_cache_control_settings() {
        let config = serve(&["kurz"]);
        assert_eq!(config.tls.cert, None);
        assert_eq!(config.tls.min_version, TlsVersion::V1_2);
        assert_eq!(config.server.cache_control_permanent_secs, 86_400);
        assert_eq!(config.server.cache_control_temporary_secs, 0);
        let config = serve(&[
            "kurz",
            "--tls-min-version",
            "1.3",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
        ]);
        assert_eq!(config.tls.min_version, TlsVersion::V1_3);
        assert!(parse(&["kurz", "--tls-min-version", "1.1"]).is_err());
    }

    #[test]
    fn kafka_replication_factor_is_minus_one_or_positive() {
        let parse = |v: &str| parse(&["kurz", "--kafka-replication-factor", v]);
        let factor = |v: &str| match parse(v).unwrap().command {
            Command::Serve(c) => c.kafka.replication_factor,
            _ => unreachable!(),
        };
        assert_eq!(factor("3"), 3);
        assert_eq!(factor("-1"), -1);
        for bad in ["0", "-2", "x", "40000"] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
