//! The accept loop: hyper HTTP/1.1 connections over our axum router, or with
//! `KURZ_TLS_CERT`, TLS connections speaking HTTP/1.1 or HTTP/2 (by ALPN).
//!
//! We drive hyper directly (instead of `axum::serve`) for two settings a public
//! service needs: a header read timeout, so slow-loris clients cannot hold
//! connections open, and graceful shutdown that stops accepting, lets in-flight
//! requests finish within a grace period, then returns.
//!
//! The plain path is the redirect benchmark's: accept, one HTTP/1.1 connection task,
//! nothing else. The TLS path does its handshake in the connection's task (bounded
//! by the header timeout), so a slow handshake never holds up the accept loop.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

pub struct ServerSettings {
    pub header_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Set: every connection is TLS (see [`super::tls`]).
    pub tls: Option<TlsAcceptor>,
}

fn http1(settings: &ServerSettings) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true);
    builder
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().oneshot(req)
        });
        if let Some(acceptor) = &settings.tls {
            let (acceptor, http1, watcher) = (acceptor.clone(), http1(&settings), graceful.watcher());
            let timeout = settings.header_timeout;
            tokio::spawn(async move {
                let Some(tls) = handshake(&acceptor, stream, timeout).await else {
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
            });
            continue;
        }
        let conn = http1(&settings).serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
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
