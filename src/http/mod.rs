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
