//! `GET /{code}` and `HEAD /{code}`: the product's hot path.
//!
//! On a cache hit this is: read the path → L1 lookup → expiry/active check → copy the
//! click's few header bytes into the capture queue (never awaited) → 302. No extractor that allocates, no
//! store or Redis round trip, no per-request log. The server asks [`FastRedirect`]
//! first, which answers such a hit without the router; the `/{code}` route's handler
//! answers the rest (misses, rate-limited redirects, errors).
//!
//! `Cache-Control` tells a CDN or browser how long it may answer the redirect itself
//! (deploy/README.md, "CDN and WAF"): [`RedirectCaching`] makes the two header values
//! once at startup, and only a link that expires costs a value of its own (its
//! max-age capped at the seconds it has left). Errors (404, 410, 429) are `no-store`,
//! as every error answer is (`error.rs`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::AppState;
use super::error::{ApiError, NO_STORE};
use super::extract::{client_ip, peer_ip};
use super::middleware::rate_limited;
use super::observe::RedirectObserver;
use crate::analytics::Captured;
use crate::analytics::event::bounded;
use crate::domain::RedirectType;
use crate::links::CachedLink;

#[utoipa::path(
    method(get, head),
    path = "/{code}",
    tag = "redirect",
    description = "Redirects to the link's target. HEAD answers the same without counting a click.",
    params(("code" = String, Path, description = "short code or alias")),
    responses(
        (status = 302, description = "redirect (default)", headers(("Location" = String))),
        (status = 301, description = "permanent redirect, if the link asks for it"),
        (status = 404, description = "NOT_FOUND", body = super::error::ErrorBody),
        (status = 410, description = "EXPIRED or DISABLED", body = super::error::ErrorBody),
    )
)]
pub async fn redirect(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let peer = peer_ip(req.extensions());
    if state.limiter.limits().redirect > 0 {
        let ip = client_ip(peer, req.headers(), &state.server.trusted_proxies);
        if let Some(d) = state.limiter.check_redirect(ip).await
            && !d.allowed
        {
            return rate_limited(&d);
        }
    }
    let code = req.uri().path().trim_start_matches('/');
    match state.links.resolve(code).await {
        Ok(link) => answer(&state, &link, code, peer, req.method(), req.headers()),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The redirect to an active link, and its click handed to the pipeline.
fn answer(
    state: &AppState,
    link: &CachedLink,
    code: &str,
    peer: IpAddr,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    // Cached URLs are checked to be visible ASCII when cached, so this holds.
    let Ok(location) = HeaderValue::from_maybe_shared(link.location.clone()) else {
        return ApiError::internal("cached URL is not a header value").into_response();
    };
    let mut res = Response::new(Body::empty());
    *res.status_mut() = match link.redirect_type {
        RedirectType::Temporary => StatusCode::FOUND,
        RedirectType::Permanent => StatusCode::MOVED_PERMANENTLY,
    };
    let out = res.headers_mut();
    out.insert(header::LOCATION, location);
    out.insert(
        header::CACHE_CONTROL,
        state.redirect_caching.header(link.redirect_type, link.expires_at),
    );
    // HEAD only checks a link (previews, monitors): it is not a click.
    if let Some(analytics) = &state.analytics
        && method == Method::GET
    {
        analytics.capture(capture(state, code, peer, headers));
    }
    res
}

/// Redirects to cached links, answered before the router.
///
/// Why: a cache-hit redirect made about 38 allocations (heaptrack, analytics off),
/// most of them in the router and its layers: boxed services and futures, request
/// extensions for the matched path, the URL parameters and the peer address.
/// Answered here, it took a fifth less CPU with analytics off (20.7 against 24.4–25.8
/// µs at 10,000/s, bench/results/2026-12-05.md). A request this can answer is exactly one the `/{code}` route would:
/// GET or HEAD, a path of one segment that no other top-level route takes, no
/// redirect rate limit configured, and an active link in the cache. It gets the same
/// answer, click, request id and metrics ([`RedirectObserver`]). Everything else,
/// including every miss, goes through the router as before.
pub struct FastRedirect {
    state: Arc<AppState>,
    observer: RedirectObserver,
}

impl FastRedirect {
    pub fn new(state: Arc<AppState>) -> Self {
        let observer = RedirectObserver::new(state.request_log.clone());
        Self { state, observer }
    }

    /// The redirect for `req` from a client at `peer`, or `None` for the router.
    pub fn answer<B>(&self, req: &axum::http::Request<B>, peer: IpAddr) -> Option<Response> {
        let start = std::time::Instant::now();
        let state = &self.state;
        let method = req.method();
        if (method != Method::GET && method != Method::HEAD) || state.limiter.limits().redirect > 0 {
            return None;
        }
        let code = req.uri().path().strip_prefix('/')?;
        if code.is_empty() || code.contains('/') || super::TOP_LEVEL.contains(&code) {
            return None;
        }
        let link = state.links.resolve_cached(code)?;
        // Only now: a request the router answers must not take a request id here too.
        let watch = self.observer.watch(start, peer, method, req.headers());
        let mut res = answer(state, &link, code, peer, method, req.headers());
        self.observer.finish(watch, &mut res);
        Some(res)
    }
}

/// The `Cache-Control` values of redirects, made once from
/// `KURZ_CACHE_CONTROL_{PERMANENT,TEMPORARY}_SECS`.
#[derive(Debug)]
pub struct RedirectCaching {
    permanent: (u32, HeaderValue),
    temporary: (u32, HeaderValue),
}

impl RedirectCaching {
    /// 0 seconds is `no-store`. The values are leaked into `'static` strings (a few
    /// dozen bytes per server built) so that copying one onto a response is a copy of
    /// a pointer, not a reference count shared by every worker.
    pub fn new(permanent_secs: u32, temporary_secs: u32) -> Self {
        let value = |secs: u32| {
            if secs == 0 {
                NO_STORE
            } else {
                HeaderValue::from_static(String::leak(format!("public, max-age={secs}")))
            }
        };
        Self {
            permanent: (permanent_secs, value(permanent_secs)),
            temporary: (temporary_secs, value(temporary_secs)),
        }
    }

    /// The header of an active link's redirect: the configured value, or for a link
    /// expiring sooner than that, `max-age` of the whole seconds it has left.
    pub fn header(&self, redirect: RedirectType, expires_at: Option<DateTime<Utc>>) -> HeaderValue {
        let (secs, value) = match redirect {
            RedirectType::Permanent => &self.permanent,
            RedirectType::Temporary => &self.temporary,
        };
        match expires_at {
            Some(at) if *secs > 0 => {
                let left = (at - Utc::now()).num_seconds();
                if left >= i64::from(*secs) {
                    value.clone()
                } else if left <= 0 {
                    NO_STORE
                } else {
                    HeaderValue::from_str(&format!("public, max-age={left}")).unwrap_or(NO_STORE)
                }
            }
            _ => value.clone(),
        }
    }
}

/// Copies what the click pipeline needs out of the request; parsing happens later, in
/// the batcher.
fn capture<'a>(state: &AppState, code: &'a str, peer: IpAddr, headers: &'a HeaderMap) -> Captured<'a> {
    let trusted = &state.server.trusted_proxies;
    let peer_trusted = trusted.iter().any(|net| net.contains(&peer));
    Captured {
        code,
        at: chrono::Utc::now(),
        referer: headers.get(header::REFERER).map(|v| bounded(v.as_bytes())),
        user_agent: headers.get(header::USER_AGENT).map(|v| bounded(v.as_bytes())),
        ip: if peer_trusted {
            client_ip(peer, headers, trusted)
        } else {
            peer
        },
        cf_country: peer_trusted
            .then(|| headers.get("cf-ipcountry"))
            .flatten()
            .and_then(|v| <[u8; 2]>::try_from(v.as_bytes()).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(c: &RedirectCaching, r: RedirectType, expires_in: Option<i64>) -> String {
        let at = expires_in.map(|s| Utc::now() + chrono::Duration::seconds(s));
        c.header(r, at).to_str().unwrap().to_owned()
    }

    #[test]
    fn redirects_are_cached_as_configured_and_never_past_expiry() {
        use RedirectType::{Permanent, Temporary};
        let c = RedirectCaching::new(86_400, 0);
        assert_eq!(header(&c, Permanent, None), "public, max-age=86400");
        assert_eq!(header(&c, Temporary, None), "no-store");
        assert_eq!(header(&c, Temporary, Some(60)), "no-store", "0 stays no-store");
        assert_eq!(header(&c, Permanent, Some(10 * 86_400)), "public, max-age=86400");
        // A second may pass between the link's expiry and the header.
        let capped = header(&c, Permanent, Some(120));
        assert!(
            capped == "public, max-age=119" || capped == "public, max-age=120",
            "{capped}"
        );
        let c = RedirectCaching::new(0, 300);
        assert_eq!(header(&c, Permanent, None), "no-store");
        assert_eq!(header(&c, Temporary, None), "public, max-age=300");
        assert_eq!(header(&c, Temporary, Some(0)), "no-store");
    }
}
