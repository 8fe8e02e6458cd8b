//! [`AppState`]: what the handlers share, behind one `Arc`.
//!
//! It lives here, at the edge, and is built by `app` from parts, so the HTTP layer
//! never imports the wiring that builds it.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::analytics::Analytics;
use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::keygen::KeyGenerator;
use crate::limits::{Idempotency, RateLimiter};
use crate::links::LinkService;
use crate::redis::Redis;
use crate::store::LinkStore;

pub struct AppState {
    /// The HTTP layer's own settings: base URL, trusted proxies, body and time limits.
    pub server: ServerConfig,
    /// Asked only by `/health` (the link service owns every other store access).
    pub store: Arc<dyn LinkStore>,
    pub links: LinkService,
    /// `/health` reports `kgs: degraded` while codes come from the fallback.
    pub keygen: Arc<KeyGenerator>,
    pub auth: Auth,
    pub limiter: RateLimiter,
    /// `/health` pings it; `None` without `KURZ_REDIS_URL`.
    pub redis: Option<Arc<Redis>>,
    pub idempotency: Idempotency,
    pub metrics: PrometheusHandle,
    /// The click pipeline; `None` with `KURZ_ANALYTICS=false`.
    pub analytics: Option<Arc<Analytics>>,
    /// Key of the client IPs' hash ([`crate::domain::visitor`]): the anonymous
    /// caller's name in rate-limit and idempotency keys.
    pub ip_key: [u8; 16],
    /// Request ids, trace ids and the sampled access log.
    pub request_log: std::sync::Arc<super::observe::RequestLog>,
    /// The redirects' `Cache-Control` values, made once from `server`'s settings.
    pub redirect_caching: super::redirect::RedirectCaching,
}
