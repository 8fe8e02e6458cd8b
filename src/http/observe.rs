//! Request observation, as a layer on every route: latency and count by route,
//! method and status, the one log line for internal errors, and the request timeout
//! for API routes. (Panics become 500s in tower-http's `CatchPanicLayer`, inside.)
//!
//! The route label is axum's [`MatchedPath`], so it can never disagree with the
//! router. `Router::layer` gives every route's handler its own [`Observe`] service,
//! so each learns its route once, from its first request, and keeps the metric
//! handles of its (method, status) pairs in a fixed table: recording costs two
//! atomic updates, not a registry lookup, on the redirect path too.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Body as _;
use metrics::{Counter, Histogram};
use tower::{Layer, Service};

use super::error::{ApiError, InternalDetail};

/// The label of a request no route matched.
const UNMATCHED: &str = "unmatched";
/// The redirect route: it never waits on a client, and a timer per request shows at
/// its rate, so it has no request timeout (its store access has its own timeouts).
const REDIRECT: &str = "/{code}";
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PATCH", "DELETE", "PUT", "OTHER"];
const STATUSES: [&str; 23] = [
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
    "408",
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
/// The numeric codes of the entries of `STATUSES` before the catch-alls.
const STATUS_CODES: [u16; 20] = [
    200, 201, 204, 207, 301, 302, 400, 401, 403, 404, 405, 408, 409, 410, 413, 415, 422, 429, 500, 503,
];

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

/// The label of a status: its number if listed, else its class.
fn status_index(s: StatusCode) -> usize {
    let code = s.as_u16();
    if let Some(i) = STATUS_CODES.iter().position(|c| *c == code) {
        return i;
    }
    match code {
        c if c < 400 => 20,
        c if c < 500 => 21,
        _ => 22,
    }
}

/// The observation layer; one [`Observe`] per route handler.
#[derive(Clone)]
pub struct ObserveLayer {
    request_timeout: Duration,
}

impl ObserveLayer {
    pub fn new(request_timeout: Duration) -> Self {
        Self { request_timeout }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            request_timeout: self.request_timeout,
            slots: Arc::new(Slots::default()),
        }
    }
}

/// One route's route label and metric handles, filled on first use.
#[derive(Default)]
struct Slots {
    route: OnceLock<&'static str>,
    handles: [[OnceLock<(Counter, Histogram)>; STATUSES.len()]; METHODS.len()],
}

impl Slots {
    /// The route label, from the first request's [`MatchedPath`]. The set of routes
    /// is fixed, so leaking each label once is bounded.
    fn route(&self, req: &Request) -> &'static str {
        self.route
            .get_or_init(|| match req.extensions().get::<MatchedPath>() {
                Some(p) => Box::leak(p.as_str().to_owned().into_boxed_str()),
                None => UNMATCHED,
            })
    }

    /// Logs an internal error's detail, counts and times the answer.
    fn observed(&self, route: &'static str, method: usize, start: Instant, res: Response) -> Response {
        if let Some(InternalDetail(detail)) = res.extensions().get::<InternalDetail>() {
            tracing::error!(route, status = res.status().as_u16(), error = %detail, "request failed");
        }
        self.record(route, method, status_index(res.status()), start.elapsed());
        res
    }

    fn record(&self, route: &'static str, method: usize, status: usize, elapsed: Duration) {
        let Some(slot) = self.handles.get(method).and_then(|m| m.get(status)) else {
            return;
        };
        let (count, latency) = slot.get_or_init(|| {
            let labels = [
                ("route", route),
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
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    request_timeout: Duration,
    slots: Arc<Slots>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = std::convert::Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = Instant::now();
        let slots = self.slots.clone();
        let route = slots.route(&req);
        let method = method_index(req.method());
        let timeout = self.request_timeout;
        if route == REDIRECT {
            let handled = self.inner.call(req);
            return Box::pin(async move {
                let Ok(res) = handled.await;
                Ok(slots.observed(route, method, start, res))
            });
        }
        let received = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| {
            received.store(body.is_end_stream(), Ordering::Relaxed);
            Body::new(Watched {
                inner: body,
                received: received.clone(),
            })
        });
        let handled = self.inner.call(req);
        Box::pin(async move {
            let res = match tokio::time::timeout(timeout, handled).await {
                Ok(res) => res,
                // Still waiting for the client's body: its fault, and 408 says so.
                Err(_) if !received.load(Ordering::Relaxed) => {
                    Ok(ApiError::request_timeout().into_response())
                }
                Err(_) => Ok(ApiError::unavailable("the request took too long").into_response()),
            };
            let Ok(res) = res;
            Ok(slots.observed(route, method, start, res))
        })
    }
}

/// A request body that notes when it has been read to its end, so that a request
/// timeout can tell a client still sending (408) from a slow server (503).
struct Watched {
    inner: Body,
    received: Arc<AtomicBool>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.received.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_indices() {
        for (code, label) in [
            (200, "200"),
            (302, "302"),
            (404, "404"),
            (408, "408"),
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
