//! Users (admin only) and the API key → JWT exchange.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::dto::{CreateUserRequest, TokenResponse, UserCreated};
use super::error::{ApiError, ErrorBody};
use super::extract::AppJson;
use crate::domain::Caller;

#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    description = "Creates a user (admins only) and answers its API key, shown only here. Takes no \
        `X-Idempotency-Key`: its answer is a credential, and kurz never stores one.",
    request_body = CreateUserRequest,
    responses(
        (status = 201, body = UserCreated),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
    )
)]
pub async fn create_user(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    AppJson(req): AppJson<CreateUserRequest>,
) -> Result<(StatusCode, axum::Json<UserCreated>), ApiError> {
    if caller == Caller::Anonymous {
        return Err(ApiError::unauthorized("credentials required"));
    }
    let tier = req.tier.unwrap_or(crate::domain::Tier::Free);
    let (user, api_key) = state.auth.create_user(&caller, &req.email, tier.as_str()).await?;
    let limits = state.limiter.limits();
    let rate_limit = limits.for_caller(&Caller::User {
        id: user.id,
        tier: user.tier,
    });
    Ok((
        StatusCode::CREATED,
        axum::Json(UserCreated {
            id: user.id,
            email: user.email,
            tier: user.tier.as_str().to_owned(),
            rate_limit,
            api_key,
        }),
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/token",
    tag = "users",
    description = "Exchanges the API key in `X-API-Key` for a short-lived JWT. Takes no \
        `X-Idempotency-Key`: its answer is a credential, and kurz never stores one.",
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "UNAUTHORIZED: no API key (a token does not mint a token)", body = ErrorBody),
    )
)]
pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    // Only an API key mints a token: a token must not renew itself forever.
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("send the API key in X-API-Key"))?;
    let (access_token, expires_in) = state.auth.issue_token(key).await?;
    Ok(axum::Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
    }))
}
