//! Operator endpoints: health, Prometheus metrics, the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::AppState;
use super::dto::{Components, Health};

#[utoipa::path(
    get,
    path = "/health",
    tag = "ops",
    responses(
        (status = 200, description = "the database answers (other components may be degraded)", body = Health),
        (status = 503, description = "the database does not answer", body = Health),
    )
)]
pub async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, axum::Json<Health>) {
    let db_ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await,
        Ok(Ok(()))
    );
    let kgs_ok = !state.keygen.is_degraded();
    // Without Redis the cache is the in-process L1 alone, which cannot fail.
    let cache_ok = match &state.redis {
        Some(redis) => redis.ping().await,
        None => true,
    };
    let components = Components {
        database: if db_ok { "healthy" } else { "unhealthy" },
        cache: if cache_ok { "healthy" } else { "unhealthy" },
        kgs: if kgs_ok { "healthy" } else { "degraded" },
    };
    // Only the database is essential: without Redis or the KGS, kurz still serves
    // (from L1 + store, with local rate limits and fallback codes).
    let (code, status) = match (db_ok, cache_ok && kgs_ok) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy"),
        (true, false) => (StatusCode::OK, "degraded"),
        (true, true) => (StatusCode::OK, "healthy"),
    };
    (
        code,
        axum::Json(Health {
            status,
            components,
            version: env!("CARGO_PKG_VERSION"),
        }),
    )
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    metrics::gauge!("kurz_cache_entries").set(state.links.cache().len() as f64);
    crate::telemetry::process().collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
