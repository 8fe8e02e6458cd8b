//! kurz terminating TLS itself (`KURZ_TLS_CERT`, `KURZ_TLS_KEY`,
//! `KURZ_TLS_MIN_VERSION`), and `kurz healthcheck`, against a real kurz on a random
//! loopback port, with certificates made in the test and a rustls client (the one
//! kurz uses, on the same `ring` provider).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kurz::config::TlsVersion;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion, version};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use helpers::{ADMIN_KEY, TestApp};
use support::pki::{Ca, Leaf};

/// The certificate and key files kurz is pointed at, in a folder of the test's own.
struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(leaf: &Leaf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = Self {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            _dir: dir,
        };
        files.write_cert(leaf);
        files.write_key(leaf);
        files
    }

    fn write_cert(&self, leaf: &Leaf) {
        std::fs::write(&self.cert, &leaf.cert_pem).unwrap();
    }

    fn write_key(&self, leaf: &Leaf) {
        std::fs::write(&self.key, &leaf.key_pem).unwrap();
    }
}

async fn spawn_tls(files: &Files, min_version: TlsVersion) -> TestApp {
    helpers::spawn_with(|c| {
        c.tls.cert = Some(files.cert.clone());
        c.tls.key = Some(files.key.clone());
        c.tls.min_version = min_version;
        c.tls.reload_secs = 1;
    })
    .await
}

fn port(app: &TestApp) -> u16 {
    app.addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A client trusting `ca`, speaking only `versions`, offering `alpn`.
fn connector(ca: &Ca, versions: &[&'static SupportedProtocolVersion], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let mut config = ClientConfig::builder_with_provider(kurz::http::tls::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn connect(port: u16, connector: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The certificate the server showed on this connection.
fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// HTTP over one TLS connection: HTTP/2 when ALPN chose it, HTTP/1.1 otherwise.
enum Http {
    H1(hyper::client::conn::http1::SendRequest<String>),
    H2(hyper::client::conn::http2::SendRequest<String>),
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    body: Value,
}

impl Http {
    async fn over(stream: TlsStream<TcpStream>) -> Self {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Http::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Http::H1(send)
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let req = Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"))
            .header("host", "localhost")
            .header("x-api-key", ADMIN_KEY)
            .header("content-type", "application/json")
            .body(body.map(|b| b.to_string()).unwrap_or_default())
            .unwrap();
        let res = match self {
            Http::H1(s) => s.send_request(req).await.unwrap(),
            Http::H2(s) => s.send_request(req).await.unwrap(),
        };
        let status = res.status();
        let location = res
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            location,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

const BOTH: &[&SupportedProtocolVersion] = &[&version::TLS13, &version::TLS12];

#[tokio::test]
async fn health_and_a_create_then_redirect_work_over_tls_on_http1_and_http2() {
    let ca = Ca::new("kurz test CA");
    let files = Files::new(&ca.leaf("kurz"));
    let app = spawn_tls(&files, TlsVersion::V1_2).await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let stream = connect(port(&app), &connector(&ca, BOTH, &[alpn])).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
        let mut http = Http::over(stream).await;
        let health = http.send("GET", "/health", None).await;
        assert_eq!(health.status, 200);
        assert_eq!(health.body["components"]["database"], "healthy");
        let target = format!("https://example.com/over-tls/{}", String::from_utf8_lossy(alpn));
        let created = http
            .send("POST", "/api/v1/urls", Some(json!({ "original_url": target })))
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let code = created.body["short_code"].as_str().unwrap().to_owned();
        let redirect = http.send("GET", &format!("/{code}"), None).await;
        assert_eq!(redirect.status, 302);
        assert_eq!(redirect.location.as_deref(), Some(target.as_str()));
    }
    // No plain HTTP on the TLS port: the handshake fails and the connection closes.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/health", port(&app)))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
}

#[tokio::test]
async fn a_tls_1_2_client_is_refused_when_1_3_is_required_and_accepted_otherwise() {
    let ca = Ca::new("kurz test CA");
    let files = Files::new(&ca.leaf("kurz"));
    let tls12_only = connector(&ca, &[&version::TLS12], &[b"http/1.1"]);

    let strict = spawn_tls(&files, TlsVersion::V1_3).await;
    let refused = connect(port(&strict), &tls12_only).await;
    assert!(refused.is_err(), "a TLS 1.2 client got through");
    let tls13 = connect(port(&strict), &connector(&ca, &[&version::TLS13], &[]))
        .await
        .unwrap();
    assert_eq!(
        tls13.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );

    let lenient = spawn_tls(&files, TlsVersion::V1_2).await;
    let stream = connect(port(&lenient), &tls12_only).await.unwrap();
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    let mut http = Http::over(stream).await;
    assert_eq!(http.send("GET", "/health", None).await.status, 200);
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_without_a_restart() {
    let ca = Ca::new("kurz test CA");
    let (old, new) = (ca.leaf("kurz old"), ca.leaf("kurz new"));
    let files = Files::new(&old);
    let app = spawn_tls(&files, TlsVersion::V1_2).await;
    let client = connector(&ca, BOTH, &[b"http/1.1"]);
    let before = connect(port(&app), &client).await.unwrap();
    assert_eq!(served(&before), old.der);
    let mut kept = Http::over(before).await;
    assert_eq!(kept.send("GET", "/health", None).await.status, 200);

    // Half a rotation (the certificate renewed, its key not yet): the pair does not
    // load, so the old certificate stays in use (two reload periods pass here).
    files.write_cert(&new);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let meanwhile = connect(port(&app), &client).await.unwrap();
    assert_eq!(served(&meanwhile), old.der, "a half-written rotation was served");

    files.write_key(&new);
    support::wait_for("the new certificate", Duration::from_millis(200), async || {
        served(&connect(port(&app), &client).await.unwrap()) == new.der
    })
    .await;
    // The connection made before the rotation keeps its session and is still served.
    assert_eq!(kept.send("GET", "/health", None).await.status, 200);
    // A new connection can do a whole request with the new certificate.
    let mut fresh = Http::over(connect(port(&app), &client).await.unwrap()).await;
    assert_eq!(fresh.send("GET", "/health", None).await.status, 200);
}

#[tokio::test]
async fn a_key_that_does_not_fit_the_certificate_stops_startup() {
    let ca = Ca::new("kurz test CA");
    let (a, b) = (ca.leaf("a"), ca.leaf("b"));
    let files = Files::new(&a);
    files.write_key(&b);
    let (mut config, _backend, _dir) = helpers::test_config().await;
    config.tls.cert = Some(files.cert.clone());
    config.tls.key = Some(files.key.clone());
    let err = kurz::Application::build(config)
        .await
        .err()
        .expect("started with a wrong key");
    assert!(err.to_string().contains("does not fit"), "{err}");
}

/// `kurz healthcheck` as the container runs it: only KURZ_* settings in its
/// environment. Run off the runtime, which serves the kurz it asks.
async fn healthcheck(env: &[(&'static str, String)]) -> (bool, String) {
    let env = env.to_vec();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kurz"))
            .arg("healthcheck")
            .env_clear()
            .envs(env)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line of reason: {stderr}");
    }
    (out.status.success(), stderr)
}

#[tokio::test]
async fn kurz_healthcheck_exits_0_on_a_healthy_kurz_and_1_with_a_reason_otherwise() {
    let ca = Ca::new("kurz test CA");
    let files = Files::new(&ca.leaf("kurz"));
    let tls = spawn_tls(&files, TlsVersion::V1_3).await;
    let cert = files.cert.display().to_string();
    let listen = |host: &str, port: u16| ("KURZ_LISTEN", format!("{host}:{port}"));
    // The container's KURZ_LISTEN=0.0.0.0:… is asked on 127.0.0.1.
    let (ok, why) = healthcheck(&[listen("0.0.0.0", port(&tls)), ("KURZ_TLS_CERT", cert.clone())]).await;
    assert!(ok, "{why}");
    // Another certificate (even from the same CA) is not the configured one.
    let other = Files::new(&ca.leaf("someone else"));
    let (ok, why) = healthcheck(&[
        listen("127.0.0.1", port(&tls)),
        ("KURZ_TLS_CERT", other.cert.display().to_string()),
    ])
    .await;
    assert!(!ok && why.contains("TLS handshake"), "{why}");
    // Plain HTTP against the TLS port fails too.
    let (ok, _) = healthcheck(&[listen("127.0.0.1", port(&tls))]).await;
    assert!(!ok);

    let plain = helpers::spawn_app().await;
    let (ok, why) = healthcheck(&[listen("127.0.0.1", port(&plain))]).await;
    assert!(ok, "{why}");
    let (ok, why) = healthcheck(&[listen("127.0.0.1", support::free_port())]).await;
    assert!(!ok && why.contains("cannot connect"), "{why}");
}

/// A fake, said so: an endpoint whose /health answers 503, which a real kurz does only
/// with its database down, a fault this SQLite-backed test cannot cause.
#[tokio::test]
async fn kurz_healthcheck_fails_on_a_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let (ok, why) = healthcheck(&[("KURZ_LISTEN", format!("127.0.0.1:{port}"))]).await;
    assert!(!ok && why.contains("503"), "{why}");
}
