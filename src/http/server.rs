//! The accept loop: hyper HTTP/1.1 connections over our axum router, or with
//! `KURZ_TLS_CERT`, TLS connections speaking HTTP/1.1 or HTTP/2 (by ALPN).
//!
//! We drive hyper directly (instead of `axum::serve`) for what a public service
//! needs: a header read timeout, so slow-loris clients cannot hold connections open;
//! a cap on open connections and on each one's header buffer, so that many clients
//! sending huge headers slowly cannot grow memory without bound; and graceful
//! shutdown that stops accepting, lets in-flight requests finish within a grace
//! period, then returns.
//!
//! The plain path is the redirect benchmark's: accept, one HTTP/1.1 connection task,
//! nothing else. Each request is offered to [`FastRedirect`] first, which answers a
//! redirect to a cached link without the router; everything else goes to the router. The TLS path does its handshake in the connection's task (bounded
//! by the header timeout), so a slow handshake never holds up the accept loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::redirect::FastRedirect;

pub struct ServerSettings {
    pub header_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Set: every connection is TLS (see [`super::tls`]).
    pub tls: Option<TlsAcceptor>,
    /// Connections open at once; a connection past it is answered 503 and closed.
    pub max_connections: usize,
}

/// Largest request head (request line and headers) hyper buffers; past it the client
/// gets 431. 16 KiB is what common proxies allow.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines in one request (past it: 431).
pub const MAX_HEADERS: usize = 64;

/// What a connection past the cap gets before it is closed: a complete answer in the
/// contract's error shape, so a client can tell "busy" from "broken".
static TOO_MANY_CONNECTIONS: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = r#"{"error":"too many open connections; retry shortly","code":"SERVICE_UNAVAILABLE"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

fn http1(settings: &ServerSettings) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    builder
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    fast: Option<Arc<FastRedirect>>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let open = metrics::gauge!("kurz_http_connections_open");
    let rejected = metrics::counter!("kurz_http_connections_rejected_total");
    open.set(0.0);
    rejected.increment(0);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            rejected.increment(1);
            // Best effort and never waiting: the answer fits any socket buffer.
            let _ = stream.try_write(&TOO_MANY_CONNECTIONS);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let open = open.clone();
        open.increment(1.0);
        let router = router.clone();
        let fast = fast.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            if let Some(res) = fast.as_ref().and_then(|f| f.answer(&req, peer.ip())) {
                return Either::Left(std::future::ready(Ok(res)));
            }
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            Either::Right(router.clone().oneshot(req))
        });
        if let Some(acceptor) = &settings.tls {
            let (acceptor, http1, watcher) = (acceptor.clone(), http1(&settings), graceful.watcher());
            let timeout = settings.header_timeout;
            tokio::spawn(async move {
                let Some(tls) = handshake(&acceptor, stream, timeout).await else {
                    open.decrement(1.0);
                    drop(slot);
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = TokioIo::new(tls);
                let ended = if h2 {
                    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    http2.timer(TokioTimer::new());
                    watcher.watch(http2.serve_connection(io, service)).await
                } else {
                    watcher.watch(http1.serve_connection(io, service)).await
                };
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                open.decrement(1.0);
                drop(slot);
            });
            continue;
        }
        let conn = http1(&settings).serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            open.decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(settings.shutdown_grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// The TLS handshake, within `timeout`; `None` (logged at debug: scanners and
/// clients that distrust the certificate do this all day) when it fails.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
