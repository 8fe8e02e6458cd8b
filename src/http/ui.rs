//! The web interface: the files of `ui/`, embedded at build time (see `build.rs`),
//! served under `/app/`; `GET /` sends browsers there.
//!
//! The page is a small client of the public `/api/v1` contract, so this module only
//! serves files. Every answer carries a strict Content-Security-Policy (no inline
//! script or style, nothing from another origin) and the usual hardening headers.
//! Files are gzipped once, on first use, and sent compressed to clients that accept
//! it; an ETag (a hash of the file) lets a browser revalidate with a 304.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The policy the page is written for: its own scripts, styles and images only, API
/// calls to its own origin, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file, ready to send.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    plain: &'static [u8],
    gzipped: Vec<u8>,
    etag: HeaderValue,
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

fn assets() -> &'static [Asset] {
    static PREPARED: OnceLock<Vec<Asset>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(name, plain)| {
                let hash = hex::encode(&Sha256::digest(plain)[..12]);
                Asset {
                    name,
                    content_type: content_type(name),
                    plain,
                    gzipped: gzip(plain),
                    etag: HeaderValue::from_str(&format!("\"{hash}\""))
                        .unwrap_or(HeaderValue::from_static("\"0\"")),
                }
            })
            .collect()
    })
}

/// The hardening headers of every page answer.
fn harden(headers: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "x-frame-options", "DENY");
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            let refused = it.any(|p| p.trim().replace(' ', "") == "q=0");
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

fn serve(name: &str, method: &Method, request: &HeaderMap) -> Response {
    let Some(asset) = assets().iter().find(|a| a.name == name) else {
        let mut res = ApiError::no_route().into_response();
        harden(res.headers_mut());
        return res;
    };
    let mut headers = HeaderMap::new();
    harden(&mut headers);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // Names carry no content hash: browsers revalidate (cheaply, by ETag) every time.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::ETAG, asset.etag.clone());
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == asset.etag.as_bytes());
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let body: &[u8] = if accepts_gzip(request) {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        &asset.gzipped
    } else {
        asset.plain
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        body.to_vec()
    };
    (StatusCode::OK, headers, body).into_response()
}

/// `GET /app/`: the page.
pub async fn index(method: Method, headers: HeaderMap) -> Response {
    serve("index.html", &method, &headers)
}

/// `GET /app/{*path}`: one of the page's files.
pub async fn file(method: Method, headers: HeaderMap, Path(path): Path<String>) -> Response {
    serve(&path, &method, &headers)
}

/// `GET /app` → `/app/`, so relative paths resolve.
pub async fn slash() -> Response {
    let mut res = Redirect::permanent("/app/").into_response();
    harden(res.headers_mut());
    res
}

/// `GET /`: browsers land on the web interface.
pub async fn home() -> Response {
    let mut res = Redirect::to("/app/").into_response();
    harden(res.headers_mut());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_file_is_embedded_with_its_type() {
        let names: Vec<&str> = assets().iter().map(|a| a.name).collect();
        for needed in ["index.html", "app.js", "app.css", "vendor/uPlot.iife.min.js"] {
            assert!(names.contains(&needed), "{needed} missing from {names:?}");
        }
        assert!(!names.contains(&"README.md") && !names.contains(&"vendor.sh"));
        let index = assets().iter().find(|a| a.name == "index.html").unwrap();
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert!(index.gzipped.len() < index.plain.len());
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.8"),
        );
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0"));
        assert!(!accepts_gzip(&h));
    }
}
