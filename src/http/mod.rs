//! The HTTP face of kurz: routes, thin handlers (one file per area), extractors,
//! the error mapping, the OpenAPI document and the accept loop.
//!
//! Handlers only translate HTTP ↔ domain; below this module nothing knows a status
//! code.

pub mod dto;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod observe;
pub mod openapi;
pub mod ops;
pub mod probe;
pub mod redirect;
pub mod server;
pub mod state;
pub mod tls;
pub mod ui;
pub mod urls;
pub mod users;

pub use state::AppState;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::Response;
use axum::routing::{get, post};

use axum::response::IntoResponse;
use error::ApiError;
use observe::ObserveLayer;
use tower_http::catch_panic::CatchPanicLayer;

/// The one-segment paths that routes other than `/{code}` take (it takes every other
/// one): the redirect fast path ([`redirect::FastRedirect`]) leaves them to the router.
pub const TOP_LEVEL: [&str; 3] = ["app", "health", "metrics"];

pub fn router(state: Arc<AppState>) -> Router {
    let cfg = &state.server;
    let api = Router::new()
        .route("/urls", post(urls::create).get(urls::list))
        .route(
            "/urls/bulk",
            post(urls::bulk).layer(DefaultBodyLimit::max(cfg.max_bulk_body_bytes)),
        )
        .route(
            "/urls/{code}",
            get(urls::info).patch(urls::update).delete(urls::delete),
        )
        .route("/urls/{code}/stats", get(urls::stats))
        .route("/urls/{code}/qr", get(urls::qr_code))
        .route("/users", post(users::create_user))
        .route("/auth/token", post(users::token))
        .layer(from_fn_with_state(state.clone(), middleware::api_gate))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(map_response(no_store_unless_set));
    Router::new()
        .route("/", get(ui::home))
        .route("/app", get(ui::slash))
        .route("/app/", get(ui::index))
        .route("/app/{*path}", get(ui::file))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route(
            "/api/v1/openapi.json",
            get(openapi::serve).layer(map_response(no_store_unless_set)),
        )
        .nest("/api/v1", api)
        .route("/{code}", get(redirect::redirect))
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        // A panic in a handler is a bug, but it must still answer 500 in the error
        // shape rather than drop the connection.
        .layer(CatchPanicLayer::custom(|_panic| {
            ApiError::internal("handler panicked").into_response()
        }))
        .layer(ObserveLayer::new(
            cfg.request_timeout(),
            state.request_log.clone(),
        ))
        .with_state(state)
}

/// API answers are per caller and per moment: `no-store`, unless the handler chose
/// otherwise (the QR image of a short URL, which never changes, is cached a day).
async fn no_store_unless_set(mut res: Response) -> Response {
    res.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(error::NO_STORE);
    res
}

#[cfg(test)]
mod tests {
    use super::TOP_LEVEL;
    use crate::domain::Alias;

    /// The top-level router's one-segment paths, read from this file's source: axum
    /// does not list a router's routes. The top-level router is the last one built
    /// above the tests (the API's, nested under `/api/v1`, comes before it).
    fn one_segment_routes() -> Vec<String> {
        let source = include_str!("mod.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        let code = code.rsplit("Router::new()").next().unwrap_or(code);
        let mut found = Vec::new();
        for call in [".route(", ".nest("] {
            for (at, _) in code.match_indices(call) {
                let Some(path) = code[at + call.len()..].trim_start().strip_prefix('"') else {
                    continue;
                };
                let path = path.split('"').next().unwrap_or_default();
                let segment = path.trim_start_matches('/');
                if !segment.is_empty() && !segment.contains('/') && !segment.starts_with('{') {
                    found.push(segment.to_owned());
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// The fast path answers every one-segment path not in `TOP_LEVEL` from the link
    /// cache: a route added without its word there would lose its requests to a
    /// cached link of that code.
    #[test]
    fn top_level_names_exactly_the_routes_of_one_segment() {
        let mut listed: Vec<String> = TOP_LEVEL.iter().map(|s| s.to_string()).collect();
        listed.sort();
        let routes = one_segment_routes();
        assert!(
            routes.contains(&"health".to_owned()),
            "the scan found no routes: {routes:?}"
        );
        assert_eq!(listed, routes);
    }

    /// And no user can create a link that the router would never reach.
    #[test]
    fn no_alias_takes_a_top_level_word() {
        for word in TOP_LEVEL {
            assert!(Alias::parse(word).is_err(), "{word}");
            assert!(Alias::parse(&word.to_ascii_uppercase()).is_err(), "{word}");
        }
    }
}
