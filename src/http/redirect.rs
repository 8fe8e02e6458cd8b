//! `GET /{code}` and `HEAD /{code}`: the product's hot path.
//!
//! On a cache hit this is: read the path → L1 lookup → expiry/active check → copy the
//! click's few header bytes into the capture queue (never awaited) → 302. No extractor that allocates, no
//! store or Redis round trip, no per-request log.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

use super::AppState;
use super::error::ApiError;
use super::extract::{client_ip, peer_ip};
use super::middleware::rate_limited;
use crate::analytics::Captured;
use crate::analytics::event::bounded;
use crate::domain::RedirectType;

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
        Ok(link) => {
            // Cached URLs are checked to be visible ASCII when cached, so this holds.
            let Ok(location) = HeaderValue::from_maybe_shared(link.location.clone()) else {
                return ApiError::internal("cached URL is not a header value").into_response();
            };
            let mut res = Response::new(Body::empty());
            *res.status_mut() = match link.redirect_type {
                RedirectType::Temporary => StatusCode::FOUND,
                RedirectType::Permanent => StatusCode::MOVED_PERMANENTLY,
            };
            res.headers_mut().insert(header::LOCATION, location);
            // HEAD only checks a link (previews, monitors): it is not a click.
            if let Some(analytics) = &state.analytics
                && req.method() == Method::GET
            {
                analytics.capture(capture(&state, code, peer, req.headers()));
            }
            res
        }
        Err(e) => ApiError::from(e).into_response(),
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
