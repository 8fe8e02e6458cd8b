//! `kurz healthcheck`: the client side of `GET /health`, for a container's
//! `HEALTHCHECK` (the distroless image has no curl) and for scripts.
//!
//! It asks the kurz on this machine: `KURZ_LISTEN`, with an unspecified address
//! (`0.0.0.0`, `::`) read as loopback. With `KURZ_TLS_CERT` it speaks TLS and
//! accepts exactly the certificates in that file, whatever name they carry (it
//! connects to an IP on this machine, where the name cannot match): a check of the
//! service, not of the certificate's chain. Right after a rotation, until kurz reloads
//! the files (`KURZ_TLS_RELOAD_SECS`), the file and the served certificate differ and
//! the check fails; a health check's retries cover that.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("cannot read the certificate {0}: {1}")]
    Certificate(PathBuf, String),
    #[error("TLS handshake with {0} failed: {1}")]
    Tls(SocketAddr, std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("/health answered {0}")]
    Status(u16),
}

/// Where to ask: the listen address, unspecified read as loopback.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `Ok` when `GET /health` answers 200 (healthy or degraded) within `timeout`.
pub async fn check(listen: SocketAddr, tls_cert: Option<&Path>, timeout: Duration) -> Result<(), ProbeError> {
    let addr = target(listen);
    // Read before the clock starts: a missing file is its own error, not a timeout.
    let tls = tls_cert.map(client_config).transpose()?;
    tokio::time::timeout(timeout, ask(addr, tls))
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

async fn ask(addr: SocketAddr, tls: Option<ClientConfig>) -> Result<(), ProbeError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| ProbeError::Connect(addr, e))?;
    let status = match tls {
        None => get_health(tcp, addr).await?,
        Some(config) => {
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let stream = connector
                .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                .await
                .map_err(|e| ProbeError::Tls(addr, e))?;
            get_health(stream, addr).await?
        }
    };
    if status == 200 {
        Ok(())
    } else {
        Err(ProbeError::Status(status))
    }
}

/// One HTTP/1.1 `GET /health` on `io`; its status.
async fn get_health<S>(io: S, addr: SocketAddr) -> Result<u16, ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get("/health")
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::USER_AGENT, "kurz-healthcheck")
        .body(String::new())?;
    let status = sender.send_request(request).await?.status().as_u16();
    conn.abort();
    Ok(status)
}

/// A client that trusts exactly the certificates of `path`.
fn client_config(path: &Path) -> Result<ClientConfig, ProbeError> {
    let bad = |e: String| ProbeError::Certificate(path.to_path_buf(), e);
    let pinned = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if pinned.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let provider = super::tls::provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { pinned, provider }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts a server whose certificate is one of `pinned`; the handshake's signature
/// is still checked, so the server must hold the certificate's key.
#[derive(Debug)]
struct Pinned {
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the one in KURZ_TLS_CERT".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_asked_on_loopback() {
        let t = |s: &str| target(s.parse().unwrap()).to_string();
        assert_eq!(t("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(t("[::]:8080"), "[::1]:8080");
        assert_eq!(t("10.1.2.3:9"), "10.1.2.3:9");
    }
}
