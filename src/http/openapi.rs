//! The OpenAPI 3.1 document, generated from the handlers' annotations so it cannot
//! drift from the code, then refined here with what the annotations cannot say:
//! every constraint the server enforces (from the same constants and patterns the
//! server checks with), the security of each operation, and the answers every
//! operation of a kind can give (the gate's 401 and 429, a body's 408, 413 and 415,
//! idempotency's 422…). A client generated from it sends nothing the server rejects
//! as malformed and receives nothing it cannot parse; `docs/openapi.json` is a
//! snapshot of it, compared by a test, so any change to the API shows in review.

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use super::{dto, error, middleware, ops, redirect, urls, users};
use crate::domain::code::{ALIAS_MAX, ALIAS_MIN, MAX_CODE_LEN};
use crate::domain::link::{EXPIRES_IN_DAYS_MAX, METADATA_KEY_MAX, METADATA_MAX_BYTES, METADATA_MAX_KEYS};
use crate::domain::target_url::{MAX_URL_CHARS, URL_PATTERN};
use crate::domain::user::{EMAIL_MAX_CHARS, EMAIL_PATTERN};
use crate::limits::idempotency::KEY_MAX_LEN;
use crate::links::{BULK_MAX, CURSOR_MAX_DIGITS, LIST_MAX, SEARCH_MAX};
use crate::qr;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kurz",
        description = "URL shortener API. Every error is `{\"error\": \"<message>\", \"code\": \"<MACHINE_CODE>\"}`. \
            Send at most one credential: `X-API-Key` or `Authorization: Bearer <jwt>`.",
        license(name = "MIT")
    ),
    paths(
        urls::create, urls::bulk, urls::list, urls::info, urls::update, urls::delete, urls::stats,
        urls::qr_code, users::create_user, users::token, redirect::redirect, ops::health,
        ops::metrics, serve,
    ),
    components(schemas(
        error::ErrorBody, error::ErrorCode, dto::CreateLink, dto::UpdateLink,
        dto::LinkView, dto::LinkDetails, dto::LinkList, dto::Updated, dto::BulkRequest,
        dto::BulkItem, dto::BulkResponse, dto::StatsView, dto::CreateUserRequest,
        dto::UserCreated, dto::TokenResponse, dto::Health,
    )),
    modifiers(&Security),
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
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "ops",
    responses((status = 200, description = "this document", content_type = "application/json", body = Object))
)]
pub async fn serve() -> axum::Json<Value> {
    axum::Json(document())
}

/// The document, refined.
pub fn document() -> Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    // A document of plain data always serialises.
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    constrain_schemas(&mut doc["components"]["schemas"]);
    refine_operations(&mut doc);
    doc
}

/// Merges `extra`'s keys into the object `target`.
fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        target.extend(extra);
    }
}

/// A string map's schema, as `metadata` is: flat, bounded, no NUL. The byte limits
/// are stated in the description (JSON Schema counts characters).
fn metadata_schema(nullable: bool) -> Value {
    json!({
        "type": if nullable { json!(["object", "null"]) } else { json!("object") },
        "maxProperties": METADATA_MAX_KEYS,
        "propertyNames": {"minLength": 1, "maxLength": METADATA_KEY_MAX, "pattern": "^[^\\u0000]*$"},
        "additionalProperties": {"type": "string", "maxLength": METADATA_MAX_BYTES, "pattern": "^[^\\u0000]*$"},
        "description": format!(
            "Flat object of strings: at most {METADATA_MAX_KEYS} keys of 1–{METADATA_KEY_MAX} bytes, \
             {METADATA_MAX_BYTES} bytes of keys and values in all, no NUL."
        ),
    })
}

fn alias_pattern() -> String {
    format!("^[A-Za-z0-9_-]{{{ALIAS_MIN},{ALIAS_MAX}}}$")
}

fn code_pattern() -> String {
    format!("^[A-Za-z0-9_-]{{1,{MAX_CODE_LEN}}}$")
}

/// Every constraint the server enforces on a body, on the schemas.
fn constrain_schemas(schemas: &mut Value) {
    let url = json!({"minLength": 1, "maxLength": MAX_URL_CHARS, "pattern": URL_PATTERN});
    let redirect = json!({"enum": [301, 302]});
    let create = &mut schemas["CreateLink"];
    merge(&mut create["properties"]["original_url"], url.clone());
    merge(
        &mut create["properties"]["custom_alias"],
        json!({"pattern": alias_pattern()}),
    );
    merge(
        &mut create["properties"]["expires_in_days"],
        json!({"minimum": 1, "maximum": EXPIRES_IN_DAYS_MAX}),
    );
    merge(
        &mut create["properties"]["expires_at"],
        json!({"format": "date-time"}),
    );
    merge(
        &mut create["properties"]["redirect_type"],
        json!({"enum": [301, 302, null]}),
    );
    create["properties"]["metadata"] = metadata_schema(true);
    // Two nulls are no expiry; two values are ambiguous.
    merge(
        create,
        json!({"not": {
            "required": ["expires_in_days", "expires_at"],
            "properties": {"expires_in_days": {"type": "integer"}, "expires_at": {"type": "string"}},
        }}),
    );

    let update = &mut schemas["UpdateLink"];
    let props = &mut update["properties"];
    props["original_url"] = json!({"type": "string"});
    merge(&mut props["original_url"], url);
    merge(&mut props["expires_at"], json!({"format": "date-time"}));
    props["is_active"] = json!({"type": "boolean"});
    props["redirect_type"] = json!({"type": "integer"});
    merge(&mut props["redirect_type"], redirect.clone());
    props["metadata"] = metadata_schema(false);
    merge(update, json!({"minProperties": 1}));

    merge(
        &mut schemas["BulkRequest"]["properties"]["urls"],
        json!({"minItems": 1, "maxItems": BULK_MAX}),
    );
    let user = &mut schemas["CreateUserRequest"]["properties"];
    merge(
        &mut user["email"],
        json!({"minLength": 3, "maxLength": EMAIL_MAX_CHARS, "pattern": EMAIL_PATTERN}),
    );
    merge(
        &mut user["tier"],
        json!({"enum": ["free", "pro", "enterprise", "admin", null]}),
    );

    merge(&mut schemas["LinkView"]["properties"]["redirect_type"], redirect);
    merge(
        &mut schemas["BulkItem"]["properties"]["status"],
        json!({"enum": ["created", "failed"]}),
    );
    merge(
        &mut schemas["Health"]["properties"]["status"],
        json!({"enum": ["healthy", "degraded", "unhealthy"]}),
    );
    let components = &mut schemas["Components"]["properties"];
    for (name, states) in [
        ("database", json!(["healthy", "unhealthy"])),
        ("cache", json!(["healthy", "unhealthy"])),
        ("kgs", json!(["healthy", "degraded"])),
    ] {
        merge(&mut components[name], json!({ "enum": states }));
    }
}

/// Who may call an operation.
enum Access {
    /// No credential needed or looked at.
    Public,
    /// Anonymous allowed; a credential, if sent, must be right.
    Optional,
    /// An API key or a token.
    Required,
    /// An API key only (minting a token with a token would renew it forever).
    KeyOnly,
}

fn access(operation_id: &str) -> Access {
    match operation_id {
        "create" | "bulk" | "qr_code" => Access::Optional,
        "token" => Access::KeyOnly,
        "list" | "info" | "update" | "delete" | "stats" | "create_user" => Access::Required,
        _ => Access::Public,
    }
}

/// An error answer in the contract's shape.
fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    })
}

/// Adds an answer to an operation, or its reason to the answer already listed.
fn answer(responses: &mut Map<String, Value>, status: u16, description: &str) {
    match responses.get_mut(&status.to_string()) {
        Some(existing) => {
            let before = existing["description"].as_str().unwrap_or_default().to_owned();
            existing["description"] = json!(if before.is_empty() {
                description.to_owned()
            } else {
                format!("{before}; {description}")
            });
            if existing.get("content").is_none() && status >= 400 {
                existing["content"] = error_response("")["content"].clone();
            }
        }
        None => {
            responses.insert(status.to_string(), error_response(description));
        }
    }
}

fn rate_limit_headers() -> Value {
    let header = |d: &str| json!({"schema": {"type": "integer", "minimum": 0}, "description": d});
    json!({
        "Retry-After": header("seconds until a request may pass"),
        "X-RateLimit-Limit": header("requests a minute for this caller"),
        "X-RateLimit-Remaining": header("requests left now"),
        "X-RateLimit-Reset": header("seconds until the budget is full again"),
    })
}

/// Security, parameters' constraints and the answers common to a kind of operation,
/// on every operation.
fn refine_operations(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        // One function answers GET and HEAD of `/{code}`; each operation needs its id.
        if let Some(head) = item.get_mut("head") {
            head["operationId"] = json!("redirect_head");
            head["summary"] = json!("Checks a short link without counting a click");
        }
        for (method, op) in item.iter_mut() {
            refine_operation(path, method, op);
        }
    }
}

fn refine_operation(path: &str, method: &str, op: &mut Value) {
    let id = op["operationId"].as_str().unwrap_or_default().to_owned();
    let api = path.starts_with("/api/v1/") && path != "/api/v1/openapi.json";
    op["security"] = match access(&id) {
        Access::Public => json!([]),
        Access::Optional => json!([{}, {"api_key": []}, {"bearer": []}]),
        Access::Required => json!([{"api_key": []}, {"bearer": []}]),
        Access::KeyOnly => json!([{"api_key": []}]),
    };
    let has_body = op.get("requestBody").is_some();
    let idempotent = method == "post" && matches!(id.as_str(), "create" | "bulk");
    let issues_credentials = middleware::CREDENTIAL_ROUTES.contains(&path);

    let params = match op.get_mut("parameters").map(Value::take) {
        Some(Value::Array(params)) => params,
        _ => Vec::new(),
    };
    let mut params: Vec<Value> = params.into_iter().map(constrain_parameter).collect();
    if idempotent {
        params.push(json!({
            "name": "X-Idempotency-Key",
            "in": "header",
            "required": false,
            "description": "Replay-safe retries: the same key with the same body within 24 hours gets the \
                first answer again (status, body, Location), with `Idempotent-Replayed: true`; with \
                another body, 422. Scoped to the caller.",
            "schema": {"type": "string", "pattern": format!("^[!-~]{{1,{KEY_MAX_LEN}}}$")},
        }));
    }
    if let Some(op) = op.as_object_mut() {
        if params.is_empty() {
            op.remove("parameters");
        } else {
            op.insert("parameters".into(), Value::Array(params));
        }
    }

    if !op["responses"].is_object() {
        op["responses"] = json!({});
    }
    let Some(responses) = op["responses"].as_object_mut() else {
        return;
    };
    if api {
        answer(responses, 400, "INVALID_REQUEST: more than one credential");
        answer(responses, 401, "UNAUTHORIZED: a wrong API key or token");
        answer(
            responses,
            429,
            "RATE_LIMIT_EXCEEDED: the caller's budget, or the client's failed-authentication budget, is spent",
        );
        answer(
            responses,
            503,
            "SERVICE_UNAVAILABLE: the database is unavailable; retry",
        );
    }
    if has_body {
        answer(
            responses,
            400,
            "INVALID_REQUEST: malformed JSON or a field of the wrong type",
        );
        answer(responses, 408, "REQUEST_TIMEOUT: the body did not arrive in time");
        answer(responses, 413, "PAYLOAD_TOO_LARGE");
        answer(
            responses,
            415,
            "INVALID_REQUEST: Content-Type is not application/json",
        );
    }
    if idempotent {
        answer(responses, 400, "INVALID_REQUEST: a malformed X-Idempotency-Key");
        answer(
            responses,
            422,
            "IDEMPOTENCY_KEY_REUSED: the key was used with another body",
        );
        answer(
            responses,
            503,
            "SERVICE_UNAVAILABLE: the first request with this key is still running; retry",
        );
    }
    if issues_credentials {
        answer(
            responses,
            400,
            "INVALID_REQUEST: X-Idempotency-Key sent; this answer carries a credential, which is never \
             stored for a replay",
        );
    }
    if id.starts_with("redirect") {
        answer(
            responses,
            429,
            "RATE_LIMIT_EXCEEDED: KURZ_REDIRECT_RATE_LIMIT for this client",
        );
        answer(
            responses,
            503,
            "SERVICE_UNAVAILABLE: the database is unavailable; retry",
        );
    }
    answer(
        responses,
        500,
        "INTERNAL: a bug; the detail is in the server's log",
    );
    if let Some(limited) = responses.get_mut("429") {
        limited["headers"] = rate_limit_headers();
    }
    for status in ["201", "301", "302"] {
        if let Some(headers) = responses.get_mut(status).and_then(|r| r.get_mut("headers"))
            && let Some(location) = headers.get_mut("Location")
        {
            location["required"] = json!(true);
        }
    }
    if id == "redirect"
        && let Some(permanent) = responses.get_mut("301")
    {
        permanent["headers"] = json!({"Location": {"required": true, "schema": {"type": "string"}}});
    }
}

/// A parameter with the constraints the server checks, by its name.
fn constrain_parameter(mut p: Value) -> Value {
    let constraints = match p["name"].as_str().unwrap_or_default() {
        "code" => json!({"type": "string", "pattern": code_pattern()}),
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": LIST_MAX}),
        "cursor" => json!({
            "type": "string",
            "pattern": format!("^(?!0+$)[0-9a-f]{{1,{CURSOR_MAX_DIGITS}}}$"),
        }),
        "q" => json!({"type": "string", "maxLength": SEARCH_MAX}),
        "order" => json!({"type": "string", "enum": ["desc", "asc"]}),
        "format" => json!({"type": "string", "enum": ["png", "svg"]}),
        "size" => json!({"type": "integer", "minimum": qr::SIZE_MIN, "maximum": qr::SIZE_MAX}),
        "start_date" | "end_date" => json!({"anyOf": [
            {"type": "string", "format": "date"},
            {"type": "string", "format": "date-time"},
        ]}),
        "granularity" => json!({"type": "string", "enum": ["hour", "day", "week"]}),
        _ => return p,
    };
    p["schema"] = constraints;
    p
}
