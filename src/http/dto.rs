//! Wire forms: request and response bodies as clients see them, with their serde
//! and OpenAPI attributes, and their conversions to and from the link service's
//! types. Field names follow the contract in DESIGN.md §3.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::stats::{Granularity, StatsRange};
use crate::domain::{Link, Metadata, Tier};
use crate::links::{CreateInput, LinkStats, LinkSummary, UpdateInput};

/// A create request.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    /// http(s) URL with a host, at most 2048 characters as sent and 2048 bytes once
    /// normalised (IDN hosts become punycode); not a link to this service.
    pub original_url: String,
    /// 4–10 of `[A-Za-z0-9_-]`, not a reserved word in any case (`api`, `health`,
    /// `healthz`, `metrics`, `static`, `admin`, `app`, `docs`, `openapi`, `login`,
    /// `logout`, `assets`, `favicon`, `robots`, `well-known`, `kurz`, `about`, `help`).
    #[serde(default)]
    pub custom_alias: Option<String>,
    /// 1–3650; exclusive with `expires_at`.
    #[serde(default, deserialize_with = "integral")]
    pub expires_in_days: Option<i64>,
    /// RFC 3339, in the future and within 3650 days; exclusive with
    /// `expires_in_days`. Kept to the millisecond.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// 301 or 302 (default).
    #[serde(default, deserialize_with = "integral")]
    #[schema(value_type = Option<u16>)]
    pub redirect_type: Option<u16>,
    /// Flat object of strings: at most 32 keys of 1–64 bytes, 4096 bytes of keys
    /// and values in all, no NUL.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

impl From<CreateLink> for CreateInput {
    fn from(c: CreateLink) -> Self {
        Self {
            original_url: c.original_url,
            custom_alias: c.custom_alias,
            expires_in_days: c.expires_in_days,
            expires_at: c.expires_at,
            redirect_type: c.redirect_type,
            metadata: c.metadata,
        }
    }
}

/// A PATCH body: at least one field. Absent fields stay as they are;
/// `expires_at: null` removes the expiry (no other field may be null).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLink {
    #[serde(default, deserialize_with = "not_null")]
    pub original_url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "not_null")]
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "not_null_integral")]
    #[schema(value_type = Option<u16>)]
    pub redirect_type: Option<u16>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

impl From<UpdateLink> for UpdateInput {
    fn from(u: UpdateLink) -> Self {
        Self {
            original_url: u.original_url,
            expires_at: u.expires_at,
            is_active: u.is_active,
            redirect_type: u.redirect_type,
            metadata: u.metadata,
        }
    }
}

/// Tells "field absent" (`None`) from "field is null" (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A field that may be absent but not null.
fn not_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// An integer, also when written with a zero fraction (`163.0`): JSON (and JSON
/// Schema's `integer`) does not tell the two apart, so neither does kurz.
fn integer<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    // Beyond 2^53 a float no longer holds every integer; no field takes such values.
    let whole = n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    });
    let whole = whole.ok_or_else(|| D::Error::custom(format!("invalid value: {n}, expected an integer")))?;
    T::try_from(whole).map_err(|_| D::Error::custom(format!("invalid value: {n} is out of range")))
}

fn integral<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<IntegerValue<T>>::deserialize(d).map(|v| v.map(|v| v.0))
}

fn not_null_integral<'de, D: serde::Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    integer(d).map(Some)
}

/// [`integer`] as a type, for `Option<…>`.
struct IntegerValue<T>(T);

impl<'de, T: TryFrom<i64>> Deserialize<'de> for IntegerValue<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        integer(d).map(Self)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    pub short_code: String,
    pub short_url: String,
    pub original_url: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// 301 or 302.
    pub redirect_type: u16,
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    pub qr_code_url: String,
}

impl LinkView {
    pub fn new(link: &Link, base: &str) -> Self {
        let code = link.code.as_str();
        Self {
            short_code: code.to_owned(),
            short_url: format!("{base}/{code}"),
            original_url: link.original_url.as_str().to_owned(),
            created_at: link.created_at,
            expires_at: link.expires_at,
            redirect_type: link.redirect_type.status(),
            metadata: link.metadata.clone(),
            qr_code_url: format!("{base}/api/v1/urls/{code}/qr"),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NamedCount {
    /// A country code, a referrer host, a browser… depending on the list.
    pub name: String,
    pub clicks: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CountryCount {
    pub country: String,
    pub clicks: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourceCount {
    pub source: String,
    pub clicks: u64,
}

fn countries(v: &[(String, u64)]) -> Vec<CountryCount> {
    v.iter()
        .map(|(c, n)| CountryCount {
            country: c.clone(),
            clicks: *n,
        })
        .collect()
}

fn sources(v: &[(String, u64)]) -> Vec<SourceCount> {
    v.iter()
        .map(|(s, n)| SourceCount {
            source: s.clone(),
            clicks: *n,
        })
        .collect()
}

fn named(v: &[(String, u64)]) -> Vec<NamedCount> {
    v.iter()
        .map(|(s, n)| NamedCount {
            name: s.clone(),
            clicks: *n,
        })
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyticsSummary {
    pub clicks_24h: u64,
    pub clicks_7d: u64,
    pub top_countries: Vec<CountryCount>,
    pub top_referrers: Vec<SourceCount>,
}

impl From<&LinkSummary> for AnalyticsSummary {
    fn from(s: &LinkSummary) -> Self {
        Self {
            clicks_24h: s.clicks_24h,
            clicks_7d: s.clicks_7d,
            top_countries: countries(&s.top_countries),
            top_referrers: sources(&s.top_referrers),
        }
    }
}

/// A link with its counters; `analytics` only on the info endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkDetails {
    #[serde(flatten)]
    pub link: LinkView,
    pub click_count: i64,
    pub last_accessed_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytics: Option<AnalyticsSummary>,
}

impl LinkDetails {
    pub fn new(link: &Link, base: &str, summary: Option<&LinkSummary>) -> Self {
        Self {
            link: LinkView::new(link, base),
            click_count: link.click_count,
            last_accessed_at: link.last_accessed_at,
            is_active: link.is_active,
            analytics: summary.map(AnalyticsSummary::from),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Updated {
    pub message: &'static str,
    pub url: LinkDetails,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    pub items: Vec<LinkDetails>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Up to 1000 creates. Each item is read on its own: one that is not a valid create
/// (a wrong type, an unknown field) is that item's failure in a 207, never the whole
/// request's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// 1 to 1000 create requests.
    #[schema(value_type = Vec<CreateLink>)]
    pub urls: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkItem {
    pub index: usize,
    pub original_url: String,
    /// `created` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<super::error::ErrorCode>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResponse {
    pub results: Vec<BulkItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimeBucket {
    pub timestamp: DateTime<Utc>,
    pub clicks: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceCounts {
    pub mobile: u64,
    pub desktop: u64,
    pub tablet: u64,
    pub other: u64,
}

/// A stats bucket size on the wire.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GranularityView {
    Hour,
    Day,
    Week,
}

impl From<Granularity> for GranularityView {
    fn from(g: Granularity) -> Self {
        match g {
            Granularity::Hour => Self::Hour,
            Granularity::Day => Self::Day,
            Granularity::Week => Self::Week,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsView {
    pub short_code: String,
    pub start_date: DateTime<Utc>,
    pub end_date: DateTime<Utc>,
    pub granularity: GranularityView,
    pub total_clicks: u64,
    pub unique_visitors: u64,
    pub time_series: Vec<TimeBucket>,
    pub geographic: Vec<CountryCount>,
    pub referrers: Vec<SourceCount>,
    pub devices: DeviceCounts,
    pub browsers: Vec<NamedCount>,
    pub operating_systems: Vec<NamedCount>,
    /// Clicks by known bots, counted apart from the figures above.
    pub bots: u64,
}

impl StatsView {
    pub fn new(code: &str, range: &StatsRange, s: &LinkStats) -> Self {
        Self {
            short_code: code.to_owned(),
            start_date: range.start,
            end_date: range.end,
            granularity: range.granularity.into(),
            total_clicks: s.total_clicks,
            unique_visitors: s.unique_visitors,
            time_series: s
                .time_series
                .iter()
                .map(|(t, c)| TimeBucket {
                    timestamp: *t,
                    clicks: *c,
                })
                .collect(),
            geographic: countries(&s.geographic),
            referrers: sources(&s.referrers),
            devices: DeviceCounts {
                mobile: s.devices.mobile,
                desktop: s.devices.desktop,
                tablet: s.devices.tablet,
                other: s.devices.other,
            },
            browsers: named(&s.browsers),
            operating_systems: named(&s.operating_systems),
            bots: s.bots,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// The user's address, unique (compared ignoring case).
    pub email: String,
    /// free (default), pro, enterprise or admin.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub tier: Option<Tier>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    pub id: i64,
    pub email: String,
    pub tier: String,
    /// Requests per minute for this tier (0 = unlimited).
    pub rate_limit: u32,
    /// Shown once; only its hash is stored.
    pub api_key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Components {
    pub database: &'static str,
    pub cache: &'static str,
    pub kgs: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// healthy, degraded or unhealthy.
    pub status: &'static str,
    pub components: Components,
    pub version: &'static str,
}
