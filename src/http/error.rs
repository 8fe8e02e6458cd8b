//! The one place errors become HTTP: every error of every layer maps to a status and
//! the contract's body `{"error": "<message>", "code": "<MACHINE_CODE>"}`.
//!
//! Internal details never reach the client; they ride along in a response extension
//! and `observe` logs them once.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::domain::{Invalid, InvalidKind};
use crate::links::LinkError;
use crate::store::StoreError;

/// What a CDN or browser may not keep at all: errors here, API answers and
/// disabled links in the redirect path and the router.
pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidUrl,
    InvalidAlias,
    InvalidRequest,
    AliasExists,
    NotFound,
    Expired,
    Disabled,
    Unauthorized,
    Forbidden,
    RateLimitExceeded,
    IdempotencyKeyReused,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    Internal,
}

/// The error body. `retry_after` only on 429.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<u64>,
    /// Logged by middleware, never sent.
    internal: Option<String>,
}

/// Carries an internal error's detail from `into_response` to the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            internal: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "URL not found")
    }
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such endpoint")
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::InvalidRequest,
            "method not allowed for this endpoint",
        )
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "request body is too large",
        )
    }
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            "the request body did not arrive in time",
        )
    }
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimitExceeded,
            "rate limit exceeded",
        );
        e.retry_after = Some(retry_after);
        e
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            message,
        )
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error",
        );
        e.internal = Some(detail.into());
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            code: self.code,
            retry_after: self.retry_after,
        };
        let mut res = (self.status, Json(body)).into_response();
        // An error is about this moment (a link disabled, a limit hit): a CDN or
        // browser must never answer it again on kurz's behalf.
        res.headers_mut().insert(header::CACHE_CONTROL, NO_STORE);
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(detail) = self.internal {
            res.extensions_mut().insert(InternalDetail(detail));
        }
        res
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        let code = match e.kind {
            InvalidKind::Url => ErrorCode::InvalidUrl,
            InvalidKind::Alias => ErrorCode::InvalidAlias,
            InvalidKind::Request => ErrorCode::InvalidRequest,
        };
        Self::new(StatusCode::BAD_REQUEST, code, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                let mut e = Self::unavailable("the database is unavailable; try again shortly");
                e.internal = Some(m);
                e
            }
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Invalid(i) => i.into(),
            LinkError::AliasTaken => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::AliasExists,
                "custom_alias is already taken",
            ),
            LinkError::NotFound => Self::not_found(),
            LinkError::Expired => Self::new(StatusCode::GONE, ErrorCode::Expired, "URL has expired"),
            LinkError::Disabled => Self::new(StatusCode::GONE, ErrorCode::Disabled, "URL is disabled"),
            LinkError::Unauthenticated => {
                Self::unauthorized("credentials required: send X-API-Key or a Bearer token")
            }
            LinkError::AnonymousDisabled => {
                Self::unauthorized("anonymous link creation is disabled; send X-API-Key")
            }
            LinkError::Forbidden => Self::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "not authorized for this URL",
            ),
            LinkError::Unavailable(m) => StoreError::Unavailable(m).into(),
            LinkError::Internal(m) => Self::internal(m),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::BadKey | AuthError::BadToken | AuthError::BadScheme => {
                Self::unauthorized(e.to_string())
            }
            AuthError::Invalid(i) => i.into(),
            AuthError::EmailTaken => {
                Self::new(StatusCode::CONFLICT, ErrorCode::InvalidRequest, e.to_string())
            }
            AuthError::Forbidden => Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, "admin only"),
            AuthError::Store(s) => s.into(),
        }
    }
}
