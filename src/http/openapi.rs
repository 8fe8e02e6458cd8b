//! The OpenAPI 3 document, generated from the handlers' annotations so it cannot
//! drift from the code (a test pins its list of paths).

use utoipa::OpenApi;

use super::{dto, error, ops, redirect, urls, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "kurz", description = "URL shortener API. Errors are {\"error\", \"code\"}."),
    paths(
        urls::create, urls::bulk, urls::list, urls::info, urls::update, urls::delete, urls::stats,
        urls::qr_code, users::create_user, users::token, redirect::redirect, ops::health,
    ),
    components(schemas(
        error::ErrorBody, error::ErrorCode, dto::CreateLink, dto::UpdateLink,
        dto::LinkView, dto::LinkDetails, dto::LinkList, dto::Updated, dto::BulkRequest,
        dto::BulkItem, dto::BulkResponse, dto::StatsView, dto::CreateUserRequest,
        dto::UserCreated, dto::TokenResponse, dto::Health,
    )),
    modifiers(&Security),
    security(("api_key" = []), ("bearer" = [])),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}
