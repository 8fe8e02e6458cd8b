//! Request observation, as a layer on every route: latency and count by route,
//! method and status; the request id (a trusted proxy's `X-Request-Id`, else a new
//! one, sent back in the response) with the W3C `traceparent`'s trace id on every log
//! line of an API request; the optional, sampled access log; the one log line for
//! internal errors; and the request timeout for API routes, 408 while the client is
//! still sending its body and 503 after. (Panics become 500s in tower-http's
//! `CatchPanicLayer`, inside.)
//!
//! The route label is axum's [`MatchedPath`], so it can never disagree with the
//! router. `Router::layer` gives every route's handler its own [`Observe`] service,
//! so each learns its route once, from its first request, and keeps the metric
//! handles of its (method, status) pairs in a fixed table: recording costs two
//! atomic updates, not a registry lookup, on the redirect path too.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::Body as _;
use ipnet::IpNet;
use metrics::{Counter, Histogram};
use tower::{Layer, Service};
use tracing::Instrument;

use super::error::{ApiError, InternalDetail};
use super::extract::{client_ip, peer_ip};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// A request id taken from a proxy is at most this long (and visible ASCII).
const REQUEST_ID_MAX: usize = 128;

/// What the request logs need: who may name a request, the access log's sampling,
/// and the key that hashes client IPs (raw IPs are never logged).
pub struct RequestLog {
    trusted: Vec<IpNet>,
    /// Every n-th request gets an access-log line; 0 = none.
    access_every: u64,
    ip_key: [u8; 16],
    /// New ids are this process's random prefix and a counter: unique across
    /// instances, and cheap on the redirect path (no random draw per request).
    prefix: String,
    next: AtomicU64,
}

impl RequestLog {
    pub fn new(trusted: Vec<IpNet>, access_share: f64, ip_key: [u8; 16]) -> Self {
        let access_every = if access_share > 0.0 {
            (1.0 / access_share).round().max(1.0) as u64
        } else {
            0
        };
        Self {
            trusted,
            access_every,
            ip_key,
            prefix: format!("{:08x}", rand::random::<u32>()),
            next: AtomicU64::new(0),
        }
    }

    /// The request's id: the proxy's, if a trusted proxy sent a sane one, else new.
    fn request_id(&self, peer: IpAddr, headers: &HeaderMap, n: u64) -> HeaderValue {
        if self.trusted.iter().any(|net| net.contains(&peer))
            && let Some(id) = headers.get(&REQUEST_ID)
            && !id.is_empty()
            && id.len() <= REQUEST_ID_MAX
            && id.as_bytes().iter().all(u8::is_ascii_graphic)
        {
            return id.clone();
        }
        // Written on the stack: the header value's own copy is the one allocation.
        let mut id = [0u8; 8 + 1 + 16];
        let prefix = self.prefix.as_bytes();
        let len = prefix.len().min(8);
        id[..len].copy_from_slice(&prefix[..len]);
        id[len] = b'-';
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        for (i, slot) in id[len + 1..len + 1 + digits].iter_mut().enumerate() {
            let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
            *slot = b"0123456789abcdef"[nibble as usize];
        }
        HeaderValue::from_bytes(&id[..len + 1 + digits]).unwrap_or(HeaderValue::from_static("-"))
    }

    fn sampled(&self, n: u64) -> bool {
        self.access_every > 0 && n.is_multiple_of(self.access_every)
    }
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if valid.
fn trace_id(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2);
    valid.then_some(trace)
}

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
    log: Arc<RequestLog>,
}

impl ObserveLayer {
    pub fn new(request_timeout: Duration, log: Arc<RequestLog>) -> Self {
        Self { request_timeout, log }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            request_timeout: self.request_timeout,
            log: self.log.clone(),
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
    log: Arc<RequestLog>,
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
        let slots = self.slots.clone();
        let log = self.log.clone();
        let route = slots.route(&req);
        let timeout = self.request_timeout;
        let watch = Watch::start(
            Instant::now(),
            &log,
            route,
            peer_ip(req.extensions()),
            req.method(),
            req.headers(),
        );
        // A span per API request, so every line logged while it runs carries its ids;
        // none on the hot path: a redirect logs nothing unless it fails, and that line
        // and its access line carry the id themselves.
        let span = (route != REDIRECT).then(|| {
            let span = tracing::info_span!(
                "request",
                request_id = watch.request_id.to_str().unwrap_or("-"),
                trace_id = tracing::field::Empty
            );
            if let Some(trace) = trace_id(req.headers()) {
                span.record("trace_id", trace);
            }
            span
        });
        let handled: Pin<Box<dyn Future<Output = _> + Send>> = match &span {
            None => Box::pin(self.inner.call(req)),
            Some(span) => {
                // Notes when the client's body has arrived, so a timeout can tell a
                // client still sending (408) from a slow server (503).
                let received = Arc::new(AtomicBool::new(false));
                let req = req.map(|body| {
                    received.store(body.is_end_stream(), Ordering::Relaxed);
                    Body::new(Watched {
                        inner: body,
                        received: received.clone(),
                    })
                });
                let call = self.inner.call(req);
                Box::pin(
                    async move {
                        match tokio::time::timeout(timeout, call).await {
                            Ok(res) => res,
                            Err(_) if !received.load(Ordering::Relaxed) => {
                                Ok(ApiError::request_timeout().into_response())
                            }
                            Err(_) => Ok(ApiError::unavailable("the request took too long").into_response()),
                        }
                    }
                    .instrument(span.clone()),
                )
            }
        };
        Box::pin(async move {
            let Ok(mut res) = handled.await;
            match &span {
                Some(span) => span.in_scope(|| watch.finish(&slots, &mut res)),
                None => watch.finish(&slots, &mut res),
            }
            Ok(res)
        })
    }
}

/// One request under observation, from its start to its answer: what [`Observe`]
/// records for every route, and [`RedirectObserver`] for redirects answered before
/// the router.
struct Watch {
    start: Instant,
    route: &'static str,
    method: usize,
    request_id: HeaderValue,
    /// The method and the client's hashed IP, for a sampled access line.
    access: Option<(Method, String)>,
}

impl Watch {
    /// Observes a request that arrived at `start` (the latency's start).
    fn start(
        start: Instant,
        log: &RequestLog,
        route: &'static str,
        peer: IpAddr,
        method: &Method,
        headers: &HeaderMap,
    ) -> Self {
        let n = log.next.fetch_add(1, Ordering::Relaxed);
        // Only sampled requests pay for the access log's fields.
        let access = log.sampled(n).then(|| {
            let client = client_ip(peer, headers, &log.trusted);
            (
                method.clone(),
                crate::domain::visitor::ip_subject(&log.ip_key, client),
            )
        });
        Self {
            start,
            route,
            method: method_index(method),
            request_id: log.request_id(peer, headers, n),
            access,
        }
    }

    /// Records the answer's latency and count, logs an internal error's detail and
    /// the sampled access line, and names the request in the answer.
    fn finish(self, slots: &Slots, res: &mut Response) {
        let elapsed = self.start.elapsed();
        let route = self.route;
        slots.record(route, self.method, status_index(res.status()), elapsed);
        let id = self.request_id.to_str().unwrap_or("-");
        if let Some(InternalDetail(detail)) = res.extensions().get::<InternalDetail>() {
            tracing::error!(request_id = %id, route, status = res.status().as_u16(), error = %detail, "request failed");
        }
        if let Some((method, client)) = &self.access {
            // The body's exact size where it is known (every body kurz sends but a
            // streamed one).
            let bytes = res
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .or_else(|| axum::body::HttpBody::size_hint(res.body()).exact())
                .unwrap_or(0);
            tracing::info!(
                target: "kurz::access",
                request_id = %id,
                method = %method,
                route,
                status = res.status().as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                bytes,
                client = %client,
                "access"
            );
        }
        res.headers_mut().insert(REQUEST_ID, self.request_id);
    }
}

/// The observation of redirects that the server answers from the cache before the
/// router ([`super::redirect::FastRedirect`]): the same request id, metrics and
/// sampled access line as the redirect route's [`Observe`] gives.
pub struct RedirectObserver {
    log: Arc<RequestLog>,
    slots: Slots,
}

impl RedirectObserver {
    pub fn new(log: Arc<RequestLog>) -> Self {
        let slots = Slots::default();
        let _ = slots.route.set(REDIRECT);
        Self { log, slots }
    }

    /// Observes a redirect that arrived at `start`, from a client at `peer`. Called
    /// only for a redirect that will be answered: each call takes a request id and a
    /// turn of the access log's sampling.
    pub fn watch(&self, start: Instant, peer: IpAddr, method: &Method, headers: &HeaderMap) -> RedirectWatch {
        RedirectWatch(Watch::start(start, &self.log, REDIRECT, peer, method, headers))
    }

    /// Records the redirect's answer (see [`Watch::finish`]).
    pub fn finish(&self, watch: RedirectWatch, res: &mut Response) {
        watch.0.finish(&self.slots, res);
    }
}

/// A redirect under observation ([`RedirectObserver::watch`]).
pub struct RedirectWatch(Watch);

/// A request body that notes when it has been read to its end (see the timeout).
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
    fn trace_ids_come_only_from_valid_traceparents() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("traceparent", HeaderValue::from_str(v).unwrap());
            trace_id(&h).map(str::to_owned)
        };
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            with(&format!("00-{trace}-00f067aa0ba902b7-01")).as_deref(),
            Some(trace)
        );
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(with(bad), None, "{bad}");
        }
    }

    #[test]
    fn new_request_ids_are_the_prefix_and_the_counter_in_hex() {
        let log = RequestLog::new(Vec::new(), 0.0, [0; 16]);
        let req = Request::new(Body::empty());
        let prefix = log.prefix.clone();
        for (n, hex) in [
            (0, "0"),
            (9, "9"),
            (255, "ff"),
            (0x1234_abcd, "1234abcd"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            assert_eq!(
                log.request_id(peer_ip(req.extensions()), req.headers(), n),
                format!("{prefix}-{hex}").as_str(),
                "{n}"
            );
        }
    }

    #[test]
    fn every_nth_request_is_sampled() {
        let log = RequestLog::new(Vec::new(), 0.25, [0; 16]);
        let sampled = (0..100).filter(|n| log.sampled(*n)).count();
        assert_eq!(sampled, 25);
        assert!(!RequestLog::new(Vec::new(), 0.0, [0; 16]).sampled(0));
    }

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
