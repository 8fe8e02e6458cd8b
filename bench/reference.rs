//! The "speed of light" for a redirect: the least a Rust HTTP/1 server can do per request.
//!
//! `bench/run.sh` loads the same codes into kurz and into this server, then drives both
//! with the same load generator on the same machine, in the same run. kurz's redirect
//! throughput is reported as a ratio of this one, which cancels out the hardware and the
//! load generator: what remains is the cost of kurz's own work (routing, cache, expiry
//! checks, click events). This server does none of that: one immutable `HashMap` lookup,
//! then `302` + `Location`. No logging, no middleware, no analytics.
//!
//! Run: `bench_reference --listen 127.0.0.1:PORT --map FILE`, where FILE has lines
//! `CODE<TAB>URL`. `GET /CODE` answers 302 with the URL; anything else 404.

use std::{collections::HashMap, convert::Infallible, error::Error, net::SocketAddr, sync::Arc};

use http_body_util::Empty;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const USAGE: &str = "usage: bench_reference --listen 127.0.0.1:PORT --map FILE";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let (listen, map_path) = parse_args()?;
    let links = Arc::new(load_map(&map_path)?);
    let listener = TcpListener::bind(listen).await?;
    eprintln!(
        "bench_reference: {} links on http://{}",
        links.len(),
        listener.local_addr()?
    );

    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                eprintln!("bench_reference: accept failed: {err}");
                continue;
            }
        };
        // Responses are written in one go; don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let links = Arc::clone(&links);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                std::future::ready(Ok::<_, Infallible>(redirect(&links, &req)))
            });
            // Keep-alive is hyper's default; a client hanging up mid-request is not our error.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `GET /CODE` → 302 to the mapped URL; anything else → 404. Both with an empty body.
fn redirect(links: &HashMap<String, String>, req: &Request<Incoming>) -> Response<Empty<Bytes>> {
    let location = (*req.method() == Method::GET)
        .then(|| req.uri().path().strip_prefix('/'))
        .flatten()
        .and_then(|code| links.get(code))
        .and_then(|url| HeaderValue::from_str(url).ok());

    let mut response = Response::new(Empty::new());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    match location {
        Some(location) => {
            headers.insert(header::LOCATION, location);
            *response.status_mut() = StatusCode::FOUND;
        }
        None => *response.status_mut() = StatusCode::NOT_FOUND,
    }
    response
}

/// Reads `CODE<TAB>URL` lines. Every URL must be a valid header value, so the request
/// path never meets a bad one.
fn load_map(path: &str) -> Result<HashMap<String, String>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("{path}: {err}"))?;
    let mut links = HashMap::new();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.is_empty()) {
        let (code, url) = line
            .split_once('\t')
            .ok_or_else(|| format!("{path}:{}: expected CODE<TAB>URL", number + 1))?;
        HeaderValue::from_str(url).map_err(|err| format!("{path}:{}: {err}", number + 1))?;
        links.insert(code.to_owned(), url.to_owned());
    }
    Ok(links)
}

fn parse_args() -> Result<(SocketAddr, String), Box<dyn Error>> {
    let (mut listen, mut map_path) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        match flag.as_str() {
            "--listen" => listen = Some(value.parse::<SocketAddr>()?),
            "--map" => map_path = Some(value),
            _ => return Err(format!("unknown argument {flag:?}\n{USAGE}").into()),
        }
    }
    Ok((listen.ok_or(USAGE)?, map_path.ok_or(USAGE)?))
}
