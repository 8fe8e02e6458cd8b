//! Request observation around the whole router: latency and count by route and
//! status, the one log line for internal errors, panics turned into 500s, and the
//! request timeout for API routes.
//!
//! It wraps the router from the accept loop rather than living in axum middleware,
//! because on the redirect path every allocation shows: the route label comes from a
//! pure classifier of the path, and the metric handles for each (route, method,
//! status) are resolved once and kept in a fixed table, so recording costs two
//! atomic updates instead of a registry lookup.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use metrics::{Counter, Histogram};

use super::error::{ApiError, InternalDetail};

/// The label of every route we serve; the last one is for anything else.
const ROUTES: [&str; 12] = [
    "/{code}",
    "/health",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/urls",
    "/api/v1/urls/bulk",
    "/api/v1/urls/{code}",
    "/api/v1/urls/{code}/stats",
    "/api/v1/urls/{code}/qr",
    "/api/v1/users",
    "/api/v1/auth/token",
    "unmatched",
];
const REDIRECT: usize = 0;
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PATCH", "DELETE", "PUT", "OTHER"];
const STATUSES: [&str; 22] = [
    "200",
    "201",
    "204",
    "207",
    "301",
    "302",
    "400",
    "401",
    "403",
    "404",
    "405",
    "409",
    "410",
    "413",
    "415",
    "422",
    "429",
    "500",
    "503",
    "other_ok",
    "other_4xx",
    "other_5xx",
];

/// Which route pattern serves `path` (mirrors the router in `http/mod.rs`).
pub fn route_index(path: &str) -> usize {
    let Some(rest) = path.strip_prefix('/') else {
        return ROUTES.len() - 1;
    };
    match rest {
        "health" => return 1,
        "metrics" => return 2,
        _ => {}
    }
    if !rest.contains('/') {
        return if rest.is_empty() {
            ROUTES.len() - 1
        } else {
            REDIRECT
        };
    }
    let Some(api) = rest.strip_prefix("api/v1/") else {
        return ROUTES.len() - 1;
    };
    let mut parts = api.split('/');
    let parts = [parts.next(), parts.next(), parts.next(), parts.next()];
    match parts {
        [Some("openapi.json"), None, ..] => 3,
        [Some("urls"), None, ..] => 4,
        [Some("urls"), Some("bulk"), None, _] => 5,
        [Some("urls"), Some(c), None, _] if !c.is_empty() => 6,
        [Some("urls"), Some(c), Some("stats"), None] if !c.is_empty() => 7,
        [Some("urls"), Some(c), Some("qr"), None] if !c.is_empty() => 8,
        [Some("users"), None, ..] => 9,
        [Some("auth"), Some("token"), None, _] => 10,
        _ => ROUTES.len() - 1,
    }
}

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::PUT => 5,
        _ => 6,
    }
}

/// The numeric codes of the first entries of `STATUSES`, in the same order.
const STATUS_CODES: [u16; 19] = [
    200, 201, 204, 207, 301, 302, 400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 429, 500, 503,
];

fn status_index(s: StatusCode) -> usize {
    let code = s.as_u16();
    if let Some(i) = STATUS_CODES.iter().position(|c| *c == code) {
        return i;
    }
    match code {
        c if c < 400 => 19,
        c if c < 500 => 20,
        _ => 21,
    }
}

pub struct Observer {
    request_timeout: Duration,
    handles: Vec<OnceLock<(Counter, Histogram)>>,
}

impl Observer {
    pub fn new(request_timeout: Duration) -> Self {
        let n = ROUTES.len() * METHODS.len() * STATUSES.len();
        Self {
            request_timeout,
            handles: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    fn record(&self, route: usize, method: usize, status: usize, elapsed: Duration) {
        let i = (route * METHODS.len() + method) * STATUSES.len() + status;
        let Some(slot) = self.handles.get(i) else { return };
        let (count, latency) = slot.get_or_init(|| {
            let labels = [
                ("route", ROUTES[route]),
                ("method", METHODS[method]),
                ("status", STATUSES[status]),
            ];
            (
                metrics::counter!("kurz_http_requests_total", &labels),
                metrics::histogram!("kurz_http_request_duration_seconds", &labels),
            )
        });
        count.increment(1);
        latency.record(elapsed.as_secs_f64());
    }

    /// Which (route, method) slot a request falls in; taken before the request is
    /// handed to the router, so the path need not be copied.
    pub fn classify(method: &Method, path: &str) -> (usize, usize) {
        (route_index(path), method_index(method))
    }

    /// Runs `handle` (the router's answer to a request classified by [`Self::classify`]).
    pub async fn observe<F>(&self, (route, method): (usize, usize), handle: F) -> Response
    where
        F: Future<Output = Response>,
    {
        let start = Instant::now();
        // A panic in a handler is a bug, but it must still answer 500 in the error
        // shape rather than drop the connection.
        let guarded = std::panic::AssertUnwindSafe(handle).catch_unwind();
        let outcome = if route == REDIRECT {
            // The redirect never waits on a client; its store access has its own
            // timeouts, and a timer per request is measurable at this rate.
            Ok(guarded.await)
        } else {
            tokio::time::timeout(self.request_timeout, guarded).await
        };
        let res = match outcome {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => ApiError::internal("handler panicked").into_response(),
            Err(_) => ApiError::unavailable("the request took too long").into_response(),
        };
        if let Some(InternalDetail(detail)) = res.extensions().get::<InternalDetail>() {
            tracing::error!(route = ROUTES[route], status = res.status().as_u16(), error = %detail, "request failed");
        }
        self.record(route, method, status_index(res.status()), start.elapsed());
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_route_patterns() {
        let label = |p: &str| ROUTES[route_index(p)];
        assert_eq!(label("/abc1234"), "/{code}");
        assert_eq!(label("/health"), "/health");
        assert_eq!(label("/metrics"), "/metrics");
        assert_eq!(label("/api/v1/openapi.json"), "/api/v1/openapi.json");
        assert_eq!(label("/api/v1/urls"), "/api/v1/urls");
        assert_eq!(label("/api/v1/urls/bulk"), "/api/v1/urls/bulk");
        assert_eq!(label("/api/v1/urls/abc"), "/api/v1/urls/{code}");
        assert_eq!(label("/api/v1/urls/abc/stats"), "/api/v1/urls/{code}/stats");
        assert_eq!(label("/api/v1/urls/abc/qr"), "/api/v1/urls/{code}/qr");
        assert_eq!(label("/api/v1/users"), "/api/v1/users");
        assert_eq!(label("/api/v1/auth/token"), "/api/v1/auth/token");
        for junk in [
            "/",
            "",
            "/a/b",
            "/api/v1/nothing",
            "/api/v1/urls/a/b/c",
            "/api/v1/urls//stats",
        ] {
            assert_eq!(label(junk), "unmatched", "{junk}");
        }
    }

    #[test]
    fn status_indices() {
        for (code, label) in [
            (200, "200"),
            (302, "302"),
            (404, "404"),
            (410, "410"),
            (503, "503"),
        ] {
            let s = StatusCode::from_u16(code).unwrap();
            assert_eq!(STATUSES[status_index(s)], label);
        }
        assert_eq!(STATUSES[status_index(StatusCode::IM_A_TEAPOT)], "other_4xx");
        assert_eq!(STATUSES[status_index(StatusCode::BAD_GATEWAY)], "other_5xx");
    }
}
