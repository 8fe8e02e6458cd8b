//! `api_gate` wraps `/api/v1`: credentials → caller, the caller's rate limit, and
//! idempotency replay for POSTs carrying `X-Idempotency-Key`. (Timing, metrics and
//! panics of every route are handled around the router, in `observe`.)

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorCode};
use super::extract::{client_ip, peer_ip};
use crate::domain::Caller;
use crate::limits::Decision;
use crate::limits::idempotency::{Begin, request_hash, scoped_key, valid_key};

/// `X-RateLimit-*` headers, on every limited response (allowed or not).
pub fn rate_headers(headers: &mut HeaderMap, d: &Decision) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(d.reset_secs));
}

pub fn rate_limited(d: &Decision) -> Response {
    let mut res = ApiError::rate_limited(d.retry_after_secs).into_response();
    rate_headers(res.headers_mut(), d);
    res
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::unauthorized(format!("{name} is not valid text")))
        })
        .transpose()
}

pub async fn api_gate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let ip = client_ip(
        peer_ip(req.extensions()),
        req.headers(),
        &state.server.trusted_proxies,
    );
    let caller = {
        let headers = req.headers();
        let creds =
            header_str(headers, "x-api-key").and_then(|k| Ok((k, header_str(headers, "authorization")?)));
        match creds {
            Ok((key, authz)) => match state.auth.resolve(key, authz).await {
                Ok(c) => c,
                Err(e) => return ApiError::from(e).into_response(),
            },
            Err(e) => return e.into_response(),
        }
    };
    let decision = state.limiter.check_api(&caller, ip).await;
    if let Some(d) = &decision
        && !d.allowed
    {
        return rate_limited(d);
    }
    let scope = match &caller {
        Caller::User { id, .. } => format!("user:{id}"),
        Caller::Anonymous => format!("ip:{}", crate::domain::visitor::ip_subject(&state.ip_key, ip)),
    };
    req.extensions_mut().insert(caller);
    let idem_key = req.headers().get("x-idempotency-key").cloned();
    let mut res = match idem_key {
        Some(key) if req.method() == Method::POST => match key.to_str() {
            Ok(k) if valid_key(k) => idempotent(&state, &scoped_key(&scope, k), req, next).await,
            _ => ApiError::bad_request("X-Idempotency-Key must be 1 to 255 visible ASCII characters")
                .into_response(),
        },
        _ => next.run(req).await,
    };
    if let Some(d) = &decision {
        rate_headers(res.headers_mut(), d);
    }
    res
}

async fn idempotent(state: &AppState, key: &str, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, state.server.max_bulk_body_bytes).await else {
        return ApiError::payload_too_large().into_response();
    };
    let hash = request_hash(parts.method.as_str(), parts.uri.path(), &bytes);
    match state.idempotency.begin(key, &hash).await {
        Err(e) => ApiError::from(e).into_response(),
        Ok(Begin::Mismatch) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::IdempotencyKeyReused,
            "this X-Idempotency-Key was used with a different request",
        )
        .into_response(),
        Ok(Begin::StillRunning) => {
            let mut e = ApiError::unavailable(
                "a request with this X-Idempotency-Key is still running; retry shortly",
            );
            e.retry_after = Some(1);
            e.into_response()
        }
        Ok(Begin::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut res = (status, body).into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
            res
        }
        Ok(Begin::Proceed) => {
            let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            if res.status().is_server_error() {
                // Retryable: forget the claim so the client's retry runs for real.
                if let Err(e) = state.idempotency.release(key).await {
                    tracing::warn!(error = %e, "could not release an idempotency key");
                }
                return res;
            }
            let (parts, body) = res.into_parts();
            let Ok(body) = to_bytes(body, usize::MAX).await else {
                return ApiError::internal("could not buffer response for idempotency").into_response();
            };
            if let Err(e) = state
                .idempotency
                .complete(key, parts.status.as_u16(), &body)
                .await
            {
                tracing::warn!(error = %e, "could not store an idempotent response");
            }
            Response::from_parts(parts, Body::from(body))
        }
    }
}
