//! `api_gate` wraps `/api/v1`: credentials → caller, the caller's rate limit, and
//! idempotency replay for POSTs carrying `X-Idempotency-Key`. (Timing, metrics and
//! panics of every route are handled around the router, in `observe`.)

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, ErrorCode};
use super::extract::{client_ip, peer_ip};
use crate::domain::Caller;
use crate::limits::Decision;
use crate::limits::idempotency::{Begin, StoredResponse, request_hash, scoped_key, valid_key};

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

/// The one credential a request carries, if any: `X-API-Key` or `Authorization`.
/// Two (both headers, or one twice) are refused: which one would win is a guess
/// the client should not have to make.
fn credential(headers: &HeaderMap) -> Result<(Option<&str>, Option<&str>), ApiError> {
    let keys = headers.get_all("x-api-key");
    let authz = headers.get_all(header::AUTHORIZATION);
    if keys.iter().count() + authz.iter().count() > 1 {
        return Err(ApiError::bad_request(
            "send one credential: X-API-Key or Authorization, once",
        ));
    }
    Ok((
        header_text(keys.iter().next(), "X-API-Key")?,
        header_text(authz.iter().next(), "Authorization")?,
    ))
}

fn header_text<'a>(value: Option<&'a HeaderValue>, name: &str) -> Result<Option<&'a str>, ApiError> {
    value
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::unauthorized(format!("{name} is not valid text")))
        })
        .transpose()
}

/// The client IP as the gate saw it (through trusted proxies), for handlers that
/// charge the caller's budget themselves (bulk).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

pub async fn api_gate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let ip = client_ip(
        peer_ip(req.extensions()),
        req.headers(),
        &state.server.trusted_proxies,
    );
    let caller = match authenticate(&state, req.headers(), ip).await {
        Ok(c) => c,
        Err(res) => return res,
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
    req.extensions_mut().insert(ClientIp(ip));
    let idem_key = req.headers().get("x-idempotency-key").cloned();
    let mut res = match idem_key {
        Some(_) if issues_credentials(&req) => ApiError::bad_request(
            "X-Idempotency-Key is not accepted here: this answer carries a credential, \
             and kurz never stores one",
        )
        .into_response(),
        Some(key) if req.method() == Method::POST => match key.to_str() {
            Ok(k) if valid_key(k) => idempotent(state.clone(), scoped_key(&scope, k), req, next).await,
            _ => ApiError::bad_request("X-Idempotency-Key must be 1 to 255 visible ASCII characters")
                .into_response(),
        },
        _ => next.run(req).await,
    };
    // A handler that charged the budget itself (bulk) has set the newer figures.
    if let Some(d) = &decision
        && !res.headers().contains_key("x-ratelimit-limit")
    {
        rate_headers(res.headers_mut(), d);
    }
    res
}

/// Credentials → caller. A wrong credential counts against the client's
/// failed-authentication budget; a client out of it is answered 429 before its
/// credential costs a lookup.
async fn authenticate(state: &AppState, headers: &HeaderMap, ip: IpAddr) -> Result<Caller, Response> {
    let (key, authz) = credential(headers).map_err(IntoResponse::into_response)?;
    if key.is_none() && authz.is_none() {
        return Ok(Caller::Anonymous);
    }
    if let Some(d) = state.limiter.auth_blocked(ip) {
        return Err(rate_limited(&d));
    }
    match state.auth.resolve(key, authz).await {
        Ok(caller) => Ok(caller),
        Err(e) if e.is_bad_credential() => {
            let decision = state.limiter.auth_failed(ip).await;
            Err(match decision {
                Some(d) if !d.allowed => rate_limited(&d),
                Some(d) => {
                    let mut res = ApiError::from(e).into_response();
                    rate_headers(res.headers_mut(), &d);
                    res
                }
                None => ApiError::from(e).into_response(),
            })
        }
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// The routes whose answer is a credential (a new user's API key, a JWT). Their
/// answers are never stored, so they do not take `X-Idempotency-Key` (a replay would
/// have to keep the secret for 24 hours).
pub const CREDENTIAL_ROUTES: [&str; 2] = ["/api/v1/users", "/api/v1/auth/token"];

fn issues_credentials(req: &Request) -> bool {
    req.extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| CREDENTIAL_ROUTES.contains(&p.as_str()))
}

/// Headers a replay carries besides the status and body.
const REPLAYED_HEADERS: [header::HeaderName; 2] = [header::CONTENT_TYPE, header::LOCATION];

/// Whether an answer says "try again" rather than "this is the outcome": such an
/// answer is not kept, and the key is free for the retry.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

async fn idempotent(state: Arc<AppState>, key: String, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, state.server.max_bulk_body_bytes).await else {
        return ApiError::payload_too_large().into_response();
    };
    // From the claim on, the work runs in a task of its own: when the client goes
    // away or the request times out, this future is dropped but the task is not. A
    // claim that committed while its answer was on the way back is then still taken
    // up, the work it stands for finishes, and its answer is kept for the retry. If
    // the handler panics, the claim's guard frees the key instead.
    let hash = request_hash(parts.method.as_str(), parts.uri.path(), &bytes);
    let req = Request::from_parts(parts, Body::from(bytes));
    let task = tokio::spawn(claim_and_run(state, key, hash, req, next));
    match task.await {
        Ok(res) => res,
        Err(e) => ApiError::internal(format!("idempotent request failed: {e}")).into_response(),
    }
}

async fn claim_and_run(
    state: Arc<AppState>,
    key: String,
    hash: String,
    req: Request,
    next: Next,
) -> Response {
    match state.idempotency.begin(&key, &hash).await {
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
        Ok(Begin::Replay(stored)) => {
            let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
            let mut res = (status, stored.body).into_response();
            let h = res.headers_mut();
            h.remove(header::CONTENT_TYPE);
            for (name, value) in &stored.headers {
                if let (Ok(name), Ok(value)) = (
                    header::HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value.as_str()),
                ) {
                    h.insert(name, value);
                }
            }
            h.insert("idempotent-replayed", HeaderValue::from_static("true"));
            res
        }
        Ok(Begin::Proceed) => {
            let claim = Claim {
                state: state.clone(),
                key: Some(key),
            };
            claim.finish(next.run(req).await).await
        }
    }
}

/// A key claimed by a request that is running. [`Claim::finish`] stores the answer
/// (or frees the key for a retryable one); dropped unfinished (a panic), it frees
/// the key, so no key stays claimed by a request that will never answer.
struct Claim {
    state: Arc<AppState>,
    key: Option<String>,
}

impl Claim {
    async fn finish(mut self, res: Response) -> Response {
        let Some(key) = self.key.take() else { return res };
        let idempotency = &self.state.idempotency;
        if retryable(res.status()) {
            if let Err(e) = idempotency.release(&key).await {
                tracing::warn!(error = %e, "could not release an idempotency key");
            }
            return res;
        }
        let (parts, body) = res.into_parts();
        let Ok(body) = to_bytes(body, usize::MAX).await else {
            if let Err(e) = idempotency.release(&key).await {
                tracing::warn!(error = %e, "could not release an idempotency key");
            }
            return ApiError::internal("could not buffer response for idempotency").into_response();
        };
        let stored = StoredResponse {
            status: parts.status.as_u16(),
            headers: REPLAYED_HEADERS
                .iter()
                .filter_map(|name| {
                    let value = parts.headers.get(name)?.to_str().ok()?;
                    Some((name.as_str().to_owned(), value.to_owned()))
                })
                .collect(),
            body: body.to_vec(),
        };
        if let Err(e) = idempotency.complete(&key, &stored).await {
            tracing::warn!(error = %e, "could not store an idempotent response");
        }
        Response::from_parts(parts, Body::from(body))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let state = self.state.clone();
        // Drop cannot wait; the release runs as a task (unless the runtime is gone,
        // in which case the process is ending and the record expires with its TTL).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = state.idempotency.release(&key).await {
                    tracing::warn!(error = %e, "could not release an idempotency key");
                }
            });
        }
    }
}
