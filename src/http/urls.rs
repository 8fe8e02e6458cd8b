//! The `/api/v1/urls` endpoints. Each handler parses, calls the link service and
//! maps the result; the rules live in `links` and `domain`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::AppState;
use super::dto::*;
use super::error::{ApiError, ErrorBody};
use super::extract::{AppJson, AppQuery};
use super::middleware::{ClientIp, rate_headers};
use crate::domain::Caller;
use crate::domain::stats::StatsRange;
use crate::limits::Decision;
use crate::links::{BULK_MAX, ListInput};
use crate::qr;

#[utoipa::path(
    post,
    path = "/api/v1/urls",
    tag = "urls",
    request_body = CreateLink,
    responses(
        (status = 201, description = "created", body = LinkView, headers(("Location" = String, description = "the link's info endpoint"))),
        (status = 400, description = "INVALID_URL, INVALID_ALIAS or INVALID_REQUEST: a field breaks its rule", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: anonymous creation is turned off", body = ErrorBody),
        (status = 409, description = "ALIAS_EXISTS", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    AppJson(req): AppJson<CreateLink>,
) -> Result<Response, ApiError> {
    let link = state.links.create(&caller, req.into()).await?;
    let view = LinkView::new(&link, state.server.public_base());
    let mut res = (StatusCode::CREATED, axum::Json(view)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/api/v1/urls/{}", link.code)) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

#[utoipa::path(
    post,
    path = "/api/v1/urls/bulk",
    tag = "urls",
    request_body = BulkRequest,
    description = "Creates up to 1000 links; each item succeeds or fails on its own (a malformed item \
        too). A bulk costs the caller one request of their rate limit per link.",
    responses(
        (status = 201, description = "all created", body = BulkResponse),
        (status = 207, description = "some failed; see each result", body = BulkResponse),
        (status = 400, description = "INVALID_REQUEST: `urls` is empty or holds over 1000 items", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: anonymous creation is turned off", body = ErrorBody),
        (status = 429, description = "RATE_LIMIT_EXCEEDED: more links than the caller's budget has left", body = ErrorBody),
    )
)]
pub async fn bulk(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    AppJson(req): AppJson<BulkRequest>,
) -> Result<Response, ApiError> {
    if req.urls.is_empty() || req.urls.len() > BULK_MAX {
        return Err(ApiError::bad_request(format!(
            "urls must hold 1 to {BULK_MAX} items"
        )));
    }
    let charged = match charge_bulk(&state, &caller, ip, req.urls.len()).await {
        Ok(d) => d,
        Err(refused) => return Ok(refused),
    };
    let originals: Vec<String> = req
        .urls
        .iter()
        .map(|u| u["original_url"].as_str().unwrap_or_default().to_owned())
        .collect();
    // Items that are not creates at all are failed here; the rest go on together.
    let mut malformed = Vec::new();
    let mut inputs = Vec::new();
    for (index, item) in req.urls.into_iter().enumerate() {
        match serde_json::from_value::<CreateLink>(item) {
            Ok(c) => inputs.push(c.into()),
            Err(e) => malformed.push((index, ApiError::bad_request(format!("invalid item: {e}")))),
        }
    }
    let mut created = state.links.create_many(&caller, inputs).await?.into_iter();
    let mut malformed = malformed.into_iter().peekable();
    let outcomes = (0..originals.len()).map(|i| match malformed.next_if(|(at, _)| *at == i) {
        Some((_, e)) => Err(e),
        None => created
            .next()
            .unwrap_or_else(|| Err(crate::links::LinkError::Internal("a result is missing".into())))
            .map_err(ApiError::from),
    });
    let base = state.server.public_base();
    let mut all_ok = true;
    let results = outcomes
        .zip(originals)
        .enumerate()
        .map(|(index, (outcome, original_url))| match outcome {
            Ok(link) => BulkItem {
                index,
                original_url: link.original_url.as_str().to_owned(),
                status: "created",
                short_url: Some(format!("{base}/{}", link.code)),
                short_code: Some(link.code.into_string()),
                error: None,
                code: None,
            },
            Err(e) => {
                all_ok = false;
                BulkItem {
                    index,
                    original_url,
                    status: "failed",
                    short_code: None,
                    short_url: None,
                    error: Some(e.message),
                    code: Some(e.code),
                }
            }
        })
        .collect();
    let status = if all_ok {
        StatusCode::CREATED
    } else {
        StatusCode::MULTI_STATUS
    };
    let mut res = (status, axum::Json(BulkResponse { results })).into_response();
    if let Some(d) = &charged {
        rate_headers(res.headers_mut(), d);
    }
    Ok(res)
}

/// A bulk costs the caller one request of their budget per link: the gate took one
/// for the request, this takes the rest. A bulk larger than the whole budget could
/// never pass and is refused as such.
async fn charge_bulk(
    state: &AppState,
    caller: &Caller,
    ip: std::net::IpAddr,
    links: usize,
) -> Result<Option<Decision>, Response> {
    let budget = state.limiter.limits().for_caller(caller);
    if budget == 0 {
        return Ok(None);
    }
    if links > budget as usize {
        let mut e = ApiError::rate_limited(60);
        e.message = format!(
            "a bulk costs one request per link, and {links} links are more than your \
             {budget} a minute: send at most {budget} at a time"
        );
        return Err(e.into_response());
    }
    let extra = u32::try_from(links - 1).unwrap_or(u32::MAX);
    if extra == 0 {
        return Ok(None);
    }
    match state.limiter.charge_api(caller, ip, extra).await {
        Some(d) if !d.allowed => {
            let mut e = ApiError::rate_limited(d.retry_after_secs);
            e.message = format!("rate limit exceeded: a bulk of {links} links costs {links} requests");
            let mut res = e.into_response();
            rate_headers(res.headers_mut(), &d);
            Err(res)
        }
        other => Ok(other),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/urls/{code}",
    tag = "urls",
    params(("code" = String, Path)),
    responses(
        (status = 200, body = LinkDetails),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody),
    )
)]
pub async fn info(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
) -> Result<axum::Json<LinkDetails>, ApiError> {
    let (link, summary) = state.links.info(&caller, &code).await?;
    Ok(axum::Json(LinkDetails::new(
        &link,
        state.server.public_base(),
        Some(&summary),
    )))
}

#[utoipa::path(
    patch,
    path = "/api/v1/urls/{code}",
    tag = "urls",
    params(("code" = String, Path)),
    request_body = UpdateLink,
    responses(
        (status = 200, body = Updated),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
    AppJson(req): AppJson<UpdateLink>,
) -> Result<axum::Json<Updated>, ApiError> {
    let link = state.links.update(&caller, &code, req.into()).await?;
    Ok(axum::Json(Updated {
        message: "URL updated",
        url: LinkDetails::new(&link, state.server.public_base(), None),
    }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/urls/{code}",
    tag = "urls",
    params(("code" = String, Path)),
    responses(
        (status = 204, description = "deleted; the code is never reissued"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.links.delete(&caller, &code).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1–100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page (with the same `order` and `q`).
    pub cursor: Option<String>,
    /// Only links whose short code or target URL contains this (ASCII case ignored).
    pub q: Option<String>,
    /// `desc` (default): newest first; `asc`: oldest first.
    pub order: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/urls",
    tag = "urls",
    params(ListParams),
    responses(
        (status = 200, body = LinkList),
        (status = 400, description = "INVALID_REQUEST: a parameter breaks its rule", body = ErrorBody),
        (status = 401, description = "UNAUTHORIZED: no credentials", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<axum::Json<LinkList>, ApiError> {
    let input = ListInput {
        limit: params.limit,
        cursor: params.cursor,
        q: params.q,
        order: params.order,
    };
    let page = state.links.list(&caller, input).await?;
    let base = state.server.public_base();
    let items = page
        .links
        .iter()
        .map(|l| LinkDetails::new(l, base, None))
        .collect();
    Ok(axum::Json(LinkList {
        items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// ISO 8601 date or date-time; default 30 days before `end_date`.
    pub start_date: Option<String>,
    /// ISO 8601 date (inclusive) or date-time; default now.
    pub end_date: Option<String>,
    /// hour, day (default) or week.
    pub granularity: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/urls/{code}/stats",
    tag = "urls",
    params(("code" = String, Path), StatsParams),
    responses(
        (status = 200, body = StatsView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn stats(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
    AppQuery(p): AppQuery<StatsParams>,
) -> Result<axum::Json<StatsView>, ApiError> {
    let range = StatsRange::parse(
        p.start_date.as_deref(),
        p.end_date.as_deref(),
        p.granularity.as_deref(),
        Utc::now(),
    );
    let (range, stats) = state.links.stats(&caller, &code, range).await?;
    Ok(axum::Json(StatsView::new(&code, &range, &stats)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QrParams {
    /// png (default) or svg.
    pub format: Option<String>,
    /// Width in pixels, 64–2048, default 256.
    pub size: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/urls/{code}/qr",
    tag = "urls",
    params(("code" = String, Path), QrParams),
    responses(
        (status = 200, description = "the QR code of the short URL, `size` pixels wide and high", content(
            (Vec<u8> = "image/png"),
            (String = "image/svg+xml"),
        )),
        (status = 400, description = "INVALID_REQUEST: a parameter breaks its rule", body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn qr_code(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    AppQuery(p): AppQuery<QrParams>,
) -> Result<Response, ApiError> {
    let size = p.size.unwrap_or(qr::SIZE_DEFAULT);
    if !(qr::SIZE_MIN..=qr::SIZE_MAX).contains(&size) {
        return Err(ApiError::bad_request(format!(
            "size must be between {} and {}",
            qr::SIZE_MIN,
            qr::SIZE_MAX
        )));
    }
    let svg = match p.format.as_deref().unwrap_or("png") {
        "png" => false,
        "svg" => true,
        _ => return Err(ApiError::bad_request("format must be png or svg")),
    };
    let link = state.links.exists(&code).await?;
    let short_url = format!("{}/{}", state.server.public_base(), link.code);
    // Rendering a large PNG is CPU work; keep it off the async workers.
    let rendered = tokio::task::spawn_blocking(move || match svg {
        true => qr::svg(&short_url, size).map(|s| ("image/svg+xml", s.into_bytes())),
        false => qr::png(&short_url, size).map(|b| ("image/png", b)),
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let (content_type, bytes) = rendered;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        bytes,
    )
        .into_response())
}
