//! TLS termination in kurz (`KURZ_TLS_CERT`, `KURZ_TLS_KEY`), with rustls on the
//! `ring` provider (aws-lc-rs would need cmake and a C build).
//!
//! The certificate is rotated without a restart, as cert-manager or certbot rotate
//! the files: a task reads both files every `KURZ_TLS_RELOAD_SECS` and, when their
//! bytes changed and the new pair loads (the key matches the certificate), swaps the
//! certificate in whole. The swap is one pointer under a lock, read once per
//! handshake by [`Reloading`]: new handshakes get the new certificate, connections
//! already open keep theirs. A pair that does not load (a half-written rotation, the
//! certificate renewed before the key) is logged and retried at the next change; the
//! old certificate stays in use meanwhile. Reading the bytes (a few KiB) rather than
//! the modification times also catches a rewrite within one timestamp tick.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use tokio_rustls::TlsAcceptor;

use crate::config::{TlsConfig, TlsVersion};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: no PEM certificate in it")]
    NoCertificate(PathBuf),
    #[error("{0}: no PEM private key in it ({1})")]
    NoKey(PathBuf, rustls::pki_types::pem::Error),
    #[error("{0}: bad PEM ({1})")]
    Pem(PathBuf, rustls::pki_types::pem::Error),
    #[error("the key does not fit the certificate, or is not usable: {0}")]
    Pair(rustls::Error),
    #[error("KURZ_TLS_CERT and KURZ_TLS_KEY go together: set both or neither")]
    HalfConfigured,
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

/// The one crypto provider of the process, for kurz's own TLS and for the drivers
/// (sqlx, redis) that ask rustls for the process default. Only `ring` is compiled
/// in, so this names it rather than choosing.
pub fn provider() -> Arc<CryptoProvider> {
    if let Some(p) = CryptoProvider::get_default() {
        return p.clone();
    }
    // A concurrent first call may win the race: either way one provider is installed.
    let _ = ring().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(ring()))
}

/// rustls 0.23.48 deprecates its `ring` provider because it has no post-quantum key
/// exchange (X25519MLKEM768), which only the aws-lc-rs provider offers; that one needs
/// cmake and a C toolchain to build, which kurz does without. Classical X25519/P-256
/// key exchange remains what most TLS clients negotiate today.
#[allow(deprecated)]
fn ring() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The bytes of the certificate and key files as last read.
#[derive(PartialEq, Eq)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Files {
    async fn read(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |p: &Path| {
            let p = p.to_path_buf();
            async move { tokio::fs::read(&p).await.map_err(|e| TlsError::Read(p, e)) }
        };
        Ok(Self {
            cert: read(cert).await?,
            key: read(key).await?,
        })
    }

    fn certified_key(&self, paths: &Paths, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(paths.cert.clone(), e))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(paths.cert.clone()));
        }
        let key =
            PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| TlsError::NoKey(paths.key.clone(), e))?;
        CertifiedKey::from_der(chain, key, provider).map_err(TlsError::Pair)
    }
}

struct Paths {
    cert: PathBuf,
    key: PathBuf,
}

/// Hands every handshake the certificate in use at that moment.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Reloading {
    fn get(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a whole `Arc` (the writer only swaps it).
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// kurz's TLS: the acceptor for the accept loop and the task that reloads the files.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub reloader: tokio::task::JoinHandle<()>,
}

/// `None` without `KURZ_TLS_CERT`/`KURZ_TLS_KEY`. Fails at startup on files that do
/// not load, so a wrong path is found before the first client is.
pub async fn start(config: &TlsConfig) -> Result<Option<Tls>, TlsError> {
    let (cert, key) = match (&config.cert, &config.key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => return Err(TlsError::HalfConfigured),
    };
    let paths = Paths { cert, key };
    let provider = provider();
    let files = Files::read(&paths.cert, &paths.key).await?;
    let resolver = Arc::new(Reloading {
        current: RwLock::new(Arc::new(files.certified_key(&paths, &provider)?)),
    });
    let versions: &[&rustls::SupportedProtocolVersion] = match config.min_version {
        TlsVersion::V1_2 => &[&version::TLS13, &version::TLS12],
        TlsVersion::V1_3 => &[&version::TLS13],
    };
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    // HTTP/2 for clients that offer it; HTTP/1.1 otherwise (the accept loop reads the
    // outcome of this negotiation).
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let every = Duration::from_secs(config.reload_secs.max(1));
    let reloader = tokio::spawn(reload_loop(paths, files, resolver, provider, every));
    Ok(Some(Tls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        reloader,
    }))
}

async fn reload_loop(
    paths: Paths,
    mut loaded: Files,
    resolver: Arc<Reloading>,
    provider: Arc<CryptoProvider>,
    every: Duration,
) {
    // The last pair that failed, so a broken rotation is logged once, not every tick.
    let mut failed: Option<Files> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let files = match Files::read(&paths.cert, &paths.key).await {
            Ok(f) => f,
            Err(e) => {
                // Mid-rotation a file can be missing for a moment; keep serving.
                tracing::debug!(error = %e, "TLS files not readable; keeping the certificate in use");
                continue;
            }
        };
        if files == loaded || failed.as_ref() == Some(&files) {
            continue;
        }
        match files.certified_key(&paths, &provider) {
            Ok(key) => {
                resolver.set(key);
                tracing::info!(cert = %paths.cert.display(), "TLS certificate reloaded");
                loaded = files;
                failed = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "new TLS files do not load; keeping the certificate in use");
                failed = Some(files);
            }
        }
    }
}
