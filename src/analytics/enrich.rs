//! Turns a [`Captured`] click into a [`ClickEvent`]: user agent → device, browser, OS
//! and bot flag; referrer → host; IP → country/city and a keyed visitor hash.
//!
//! This runs in the batcher, never in the redirect handler. User agents repeat a lot,
//! so parsed results are cached by UA string. The UA rules are uap-core's
//! `regexes.yaml` (vendored as JSON in `data/`, see `data/README.md`), parsed by the
//! `ua-parser` crate; the regex set is compiled once per process, lazily.

use std::borrow::Cow;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use super::event::{Captured, ClickEvent, Device};
pub use crate::domain::visitor::visitor_hash;

pub const UNKNOWN_COUNTRY: &str = "unknown";
pub const DIRECT: &str = "direct";

static UAP_RULES: &str = include_str!("../../data/uap-regexes.json");

/// What a user agent string says about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaInfo {
    pub device: Device,
    pub browser: Arc<str>,
    pub os: Arc<str>,
    pub is_bot: bool,
}

fn extractor() -> Option<&'static ua_parser::Extractor<'static>> {
    static EXTRACTOR: OnceLock<Option<ua_parser::Extractor<'static>>> = OnceLock::new();
    EXTRACTOR
        .get_or_init(|| {
            let built = serde_json::from_str::<ua_parser::Regexes<'static>>(UAP_RULES)
                .map_err(|e| e.to_string())
                .and_then(|r| ua_parser::Extractor::try_from(r).map_err(|e| e.to_string()));
            match built {
                Ok(x) => Some(x),
                Err(e) => {
                    tracing::error!(error = %e, "user-agent rules failed to load; clicks are classified as other");
                    None
                }
            }
        })
        .as_ref()
}

/// Compiles the UA rules now (they take a moment), instead of on the first click.
pub fn warm_up() {
    let _ = extractor();
}

const BOT_WORDS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "curl/",
    "wget/",
    "python-requests",
    "headless",
    "monitor",
    "preview",
];

/// Classifies a user agent. Pure apart from the compiled rule set.
pub fn parse_user_agent(ua: &str) -> UaInfo {
    let lower = ua.to_ascii_lowercase();
    let (browser, os, device_family) = match extractor() {
        Some(x) => {
            let (b, o, d) = x.extract(ua);
            (
                b.map(|b| b.family.into_owned()),
                o.map(|o| o.os.into_owned()),
                d.map(|d| d.device.into_owned()),
            )
        }
        None => (None, None, None),
    };
    let browser: Arc<str> = browser.unwrap_or_else(|| "Other".into()).into();
    let os: Arc<str> = os.unwrap_or_else(|| "Other".into()).into();
    let device_family = device_family.unwrap_or_default();
    let is_bot =
        ua.trim().is_empty() || device_family == "Spider" || BOT_WORDS.iter().any(|w| lower.contains(w));
    let device = if is_bot {
        Device::Other
    } else {
        classify_device(&lower, &os, &device_family)
    };
    UaInfo {
        device,
        browser,
        os,
        is_bot,
    }
}

/// uap-core names devices and systems but has no mobile/desktop/tablet field, so the
/// class is derived from them: iPads, Kindles and Android without "Mobile" (Google's
/// documented tablet convention) are tablets; phone systems are mobile; desktop
/// systems are desktop.
fn classify_device(lower_ua: &str, os: &str, device_family: &str) -> Device {
    let family = device_family.to_ascii_lowercase();
    if family.contains("ipad")
        || family.contains("tablet")
        || family.contains("kindle")
        || lower_ua.contains("tablet")
        || (os == "Android" && !lower_ua.contains("mobile"))
    {
        return Device::Tablet;
    }
    match os {
        "iOS" | "Android" | "Windows Phone" | "BlackBerry OS" | "KaiOS" | "Symbian OS" | "Firefox OS"
        | "HarmonyOS" => Device::Mobile,
        "Windows" | "Mac OS X" | "macOS" | "Linux" | "Ubuntu" | "Chrome OS" | "ChromeOS" | "Fedora"
        | "Debian" | "FreeBSD" | "OpenBSD" | "NetBSD" => Device::Desktop,
        _ if lower_ua.contains("mobi") => Device::Mobile,
        _ => Device::Other,
    }
}

/// The referring host, lower-cased, or `direct` when there is none we can read.
pub fn referrer_host(referer: Option<&[u8]>) -> String {
    referrer_label(referer).into_owned()
}

/// [`referrer_host`], borrowed from the header when it can be: the enricher looks
/// the host up among its labels without allocating.
fn referrer_label(referer: Option<&[u8]>) -> Cow<'_, str> {
    let Some(raw) = referer else {
        return Cow::Borrowed(DIRECT);
    };
    // http(s) hosts are lower-cased by the parser before "www." is cut; other
    // schemes keep their case, so the cut comes first there.
    if let Some(h) = plain_http_host(raw.trim_ascii()) {
        let h = if h.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(without_www(&h.to_ascii_lowercase()).to_owned())
        } else {
            Cow::Borrowed(without_www(h))
        };
        if !h.is_empty() {
            return h;
        }
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|r| url::Url::parse(r.trim()).ok())
        .and_then(|u| u.host_str().map(|h| without_www(h).to_ascii_lowercase()))
        .filter(|h| !h.is_empty())
        .map_or(Cow::Borrowed(DIRECT), Cow::Owned)
}

/// `h` without its leading "www."s: `trim_start_matches("www.")` without building a
/// substring searcher per click (it showed in the redirect path's profile).
fn without_www(mut h: &str) -> &str {
    while let Some(rest) = h.strip_prefix("www.") {
        h = rest;
    }
    h
}

/// The host of an `http(s)://` URL whose host is a plain DNS name, cut straight out of
/// the header's bytes: what nearly every browser sends. Full WHATWG parsing (and
/// UTF-8 validation of the whole header) cost more than a microsecond a click;
/// anything this does not recognise (other schemes, user info, IP addresses,
/// non-ASCII or percent-encoded hosts) goes to the full parser, and a property test
/// checks both agree.
fn plain_http_host(url: &[u8]) -> Option<&str> {
    let sep = url.windows(3).position(|w| w == b"://")?;
    let (scheme, rest) = (&url[..sep], &url[sep + 3..]);
    if !(scheme.eq_ignore_ascii_case(b"https") || scheme.eq_ignore_ascii_case(b"http")) {
        return None;
    }
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#' | b'\\'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = match authority.iter().position(|b| *b == b':') {
        Some(i) => {
            let port = &authority[i + 1..];
            let valid = port.is_empty() || std::str::from_utf8(port).is_ok_and(|p| p.parse::<u16>().is_ok());
            if !valid {
                return None;
            }
            &authority[..i]
        }
        None => authority,
    };
    let dns_name = |label: &[u8]| {
        !label.is_empty()
            && label.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && !label.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"xn--"))
    };
    let last = host.rsplit(|b| *b == b'.').next()?;
    // A numeric last label makes the host an IPv4 address, which the parser rewrites.
    let plain = host.split(|b| *b == b'.').all(dns_name)
        && !last
            .iter()
            .all(|b| b.is_ascii_hexdigit() || *b == b'x' || *b == b'X');
    // All ASCII by now.
    plain.then(|| std::str::from_utf8(host).ok()).flatten()
}

/// A MaxMind-format database record. Both common shapes are accepted: GeoIP2/GeoLite2
/// (`country.iso_code`, `city.names.en`) and the flat `country_code` of the free
/// ip-location-db files.
#[derive(Deserialize)]
struct GeoRecord<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(borrow)]
    country: Option<GeoCountry<'a>>,
    #[serde(borrow)]
    city: Option<GeoCity<'a>>,
}

#[derive(Deserialize)]
struct GeoCountry<'a> {
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct GeoCity<'a> {
    #[serde(borrow)]
    names: Option<std::collections::BTreeMap<&'a str, &'a str>>,
}

pub struct GeoDb {
    reader: maxminddb::Reader<Vec<u8>>,
}

/// A GeoIP database that cannot be read: kurz does not start with a setting it
/// cannot honour.
#[derive(Debug, thiserror::Error)]
#[error("cannot open GeoIP database {path}: {source}")]
pub struct GeoDbError {
    path: String,
    source: maxminddb::MaxMindDbError,
}

impl GeoDb {
    pub fn open(path: &Path) -> Result<Self, GeoDbError> {
        maxminddb::Reader::open_readfile(path)
            .map(|reader| Self { reader })
            .map_err(|source| GeoDbError {
                path: path.display().to_string(),
                source,
            })
    }

    /// (country, city) for an address, if the database knows it.
    pub fn locate(&self, ip: IpAddr) -> (Option<String>, Option<String>) {
        let Ok(found) = self.reader.lookup(ip) else {
            return (None, None);
        };
        let Ok(Some(record)) = found.decode::<GeoRecord<'_>>() else {
            return (None, None);
        };
        let country = record
            .country_code
            .or(record.country.and_then(|c| c.iso_code))
            .and_then(valid_country);
        let city = record
            .city
            .and_then(|c| c.names)
            .and_then(|n| n.get("en").map(|s| (*s).to_owned()));
        (country, city)
    }
}

/// Two ASCII letters, upper-cased; Cloudflare's `XX` (unknown) and `T1` (Tor) are not
/// countries.
fn valid_country(code: &str) -> Option<String> {
    let b = code.as_bytes();
    (b.len() == 2 && b.iter().all(u8::is_ascii_alphabetic) && !code.eq_ignore_ascii_case("xx"))
        .then(|| code.to_ascii_uppercase())
}

/// Short codes a [`Memo`] keeps one shared copy of.
const MEMO_CODES: usize = 100_000;

/// `text`'s shared copy in `cache`, made on a miss.
fn shared(cache: &quick_cache::sync::Cache<Box<str>, Arc<str>>, text: &str) -> Arc<str> {
    if let Some(hit) = cache.get(text) {
        return hit;
    }
    let label: Arc<str> = text.into();
    cache.insert(text.into(), label.clone());
    label
}

pub struct Enricher {
    visitor_key: [u8; 16],
    geo: Option<GeoDb>,
    ua_cache: quick_cache::sync::Cache<Box<[u8]>, Arc<UaInfo>>,
    /// Referrer hosts and countries, shared by every click that carries them.
    labels: quick_cache::sync::Cache<Box<str>, Arc<str>>,
}

impl Enricher {
    pub fn new(visitor_key: [u8; 16], geo: Option<GeoDb>) -> Self {
        Self {
            visitor_key,
            geo,
            ua_cache: quick_cache::sync::Cache::new(10_000),
            labels: quick_cache::sync::Cache::new(10_000),
        }
    }

    fn label(&self, text: &str) -> Arc<str> {
        shared(&self.labels, text)
    }

    fn user_agent(&self, ua: Option<&[u8]>) -> Arc<UaInfo> {
        let bytes = ua.unwrap_or_default();
        if let Some(hit) = self.ua_cache.get(bytes) {
            return hit;
        }
        let info = Arc::new(parse_user_agent(&String::from_utf8_lossy(bytes)));
        self.ua_cache.insert(bytes.into(), info.clone());
        info
    }

    /// Enriches with the shared caches only: the overflow path, on a handler's thread.
    pub fn enrich(&self, c: Captured<'_>) -> ClickEvent {
        self.enrich_in(c, None)
    }

    /// Enriches through the caller's [`Memo`] first: the batcher's path.
    pub fn enrich_memo(&self, memo: &mut Memo, c: Captured<'_>) -> ClickEvent {
        self.enrich_in(c, Some(memo))
    }

    fn enrich_in(&self, c: Captured<'_>, mut memo: Option<&mut Memo>) -> ClickEvent {
        let ua_bytes = c.user_agent.unwrap_or_default();
        let ua = memoised(
            memo.as_mut().map(|m| (&mut m.user_agents, MEMO_LABELS)),
            ua_bytes,
            || self.user_agent(c.user_agent),
        );
        let (geo_country, city) = match &self.geo {
            Some(db) => db.locate(c.ip),
            None => (None, None),
        };
        let country = geo_country.or_else(|| {
            c.cf_country
                .and_then(|b| std::str::from_utf8(&b).ok().and_then(valid_country))
        });
        let country = country.as_deref().unwrap_or(UNKNOWN_COUNTRY);
        let referrer = referrer_label(c.referer);
        ClickEvent {
            short_code: match memo.as_mut() {
                Some(m) => m.codes.shared(c.code),
                None => c.code.into(),
            },
            clicked_at: c.at,
            referrer: memoised(
                memo.as_mut().map(|m| (&mut m.labels, MEMO_LABELS)),
                &*referrer,
                || self.label(&referrer),
            ),
            device: ua.device,
            browser: ua.browser.clone(),
            os: ua.os.clone(),
            is_bot: ua.is_bot,
            country: memoised(
                memo.as_mut().map(|m| (&mut m.labels, MEMO_LABELS)),
                country,
                || self.label(country),
            ),
            city,
            visitor_hash: visitor_hash(&self.visitor_key, c.ip),
        }
    }
}

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// User agents and labels a [`Memo`] holds before it starts again from empty: as
/// many as the shared caches, so at most ~5 MB each with 512-byte headers.
const MEMO_LABELS: usize = 10_000;

/// The batcher's own copy of what the shared caches answered, in plain maps.
///
/// Why: the shared caches are safe to use from any thread, so every lookup takes a
/// shard lock and hashes with a DoS-resistant hasher; four lookups a click made them
/// the largest part of the batcher's CPU. Only the batcher uses a memo, so it needs
/// neither. A miss falls through to the shared cache (and so to the UA parser only
/// once per user agent). Codes have no shared cache: only the batcher's memo keeps
/// them, and the rare overflow path copies its click's code. A memo hit saves an
/// allocation made here and freed by the store's writer on another thread, the
/// pattern that sent glibc down its slow paths. Each map is emptied when it reaches its limit, which
/// bounds its memory without any bookkeeping per hit.
#[derive(Default)]
pub struct Memo {
    user_agents: Map<Box<[u8]>, Arc<UaInfo>>,
    labels: Map<Box<str>, Arc<str>>,
    codes: Codes,
}

/// The batcher's one shared copy of each short code it has seen, up to
/// [`MEMO_CODES`], then from empty again.
///
/// Why a set of the copies rather than a map from an owned key to its copy: a code
/// is looked up by its text, which the copy holds, so a second owned copy as the key
/// only cost memory: a boxed key's allocation per code and a 32-byte slot (key and
/// copy), against a 16-byte slot (the copy) here. The copies themselves are shared
/// with the held batches.
#[derive(Default)]
struct Codes {
    set: hashbrown::HashTable<Arc<str>>,
    hasher: foldhash::fast::RandomState,
}

impl Codes {
    fn shared(&mut self, code: &str) -> Arc<str> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(code);
        if let Some(hit) = self.set.find(hash, |c| &**c == code) {
            return hit.clone();
        }
        if self.set.len() >= MEMO_CODES {
            self.set.clear();
        }
        let copy: Arc<str> = code.into();
        let hasher = &self.hasher;
        self.set
            .insert_unique(hash, copy.clone(), |c| hasher.hash_one(&**c));
        copy
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.set.len()
    }
}

/// `key`'s value in `memo`, or `shared()`'s (then remembered); without a memo, just
/// `shared()`.
fn memoised<Q, K, V>(memo: Option<(&mut Map<K, V>, usize)>, key: &Q, shared: impl FnOnce() -> V) -> V
where
    Q: ?Sized + std::hash::Hash + Eq,
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq + for<'a> From<&'a Q>,
    V: Clone,
{
    let Some((memo, limit)) = memo else {
        return shared();
    };
    if let Some(v) = memo.get(key) {
        return v.clone();
    }
    if memo.len() >= limit {
        memo.clear();
    }
    let v = shared();
    memo.insert(K::from(key), v.clone());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const WIN_CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const MAC_FIREFOX: &str =
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0";
    const ANDROID_PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
    const ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    #[test]
    fn user_agents_are_classified() {
        let cases = [
            (IPHONE, Device::Mobile, "Mobile Safari", "iOS", false),
            (IPAD, Device::Tablet, "Mobile Safari", "iOS", false),
            (WIN_CHROME, Device::Desktop, "Chrome", "Windows", false),
            (MAC_FIREFOX, Device::Desktop, "Firefox", "Mac OS X", false),
            (ANDROID_PHONE, Device::Mobile, "Chrome Mobile", "Android", false),
            (ANDROID_TABLET, Device::Tablet, "Chrome", "Android", false),
            (GOOGLEBOT, Device::Other, "Googlebot", "Other", true),
            ("curl/8.5.0", Device::Other, "curl", "Other", true),
            ("", Device::Other, "Other", "Other", true),
        ];
        for (ua, device, browser, os, bot) in cases {
            let got = parse_user_agent(ua);
            assert_eq!(
                got,
                UaInfo {
                    device,
                    browser: browser.into(),
                    os: os.into(),
                    is_bot: bot
                },
                "{ua}"
            );
        }
    }

    #[test]
    fn referrers_become_hosts_or_direct() {
        assert_eq!(referrer_host(None), "direct");
        assert_eq!(referrer_host(Some(b"")), "direct");
        assert_eq!(referrer_host(Some(b"not a url")), "direct");
        assert_eq!(
            referrer_host(Some(b"https://www.Twitter.com/x?y=1")),
            "twitter.com"
        );
        assert_eq!(referrer_host(Some(b"android-app://com.slack/")), "com.slack");
        assert_eq!(referrer_host(Some(b"http://127.0.0.1:8080/a")), "127.0.0.1");
        assert_eq!(
            referrer_host(Some(b"https://news.example.com:443/item?id=1")),
            "news.example.com"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 4096,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7265_6665),
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// The shortcut for plain hosts answers exactly what the WHATWG parser does.
        #[test]
        fn the_plain_host_shortcut_agrees_with_the_url_parser(
            url in "(https?|HTTPS|Http|ftp|android-app)://([a-zA-Z0-9@_%-]{0,6}\\.){0,3}[a-zA-Z0-9_%-]{0,6}(:[0-9]{0,6})?([/?#\\\\][a-z.]{0,4})?"
        ) {
            let full = url::Url::parse(url.trim())
                .ok()
                .and_then(|u| u.host_str().map(|h| h.trim_start_matches("www.").to_ascii_lowercase()))
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| DIRECT.to_owned());
            proptest::prop_assert_eq!(referrer_host(Some(url.as_bytes())), full, "{}", url);
        }
    }

    /// The batcher's memo answers what the shared caches answer, and shares the
    /// code and labels instead of copying them per click.
    #[test]
    fn the_memo_changes_nothing_but_the_lookups() {
        let e = Enricher::new([3; 16], None);
        let mut memo = Memo::default();
        let uas = [IPHONE, WIN_CHROME, GOOGLEBOT];
        let referers: [Option<&[u8]>; 3] = [
            None,
            Some(b"https://www.Twitter.com/x"),
            Some(b"android-app://com.slack/"),
        ];
        let mut seen = std::collections::HashMap::<String, Arc<str>>::new();
        for i in 0..30u8 {
            let c = Captured {
                code: if i % 2 == 0 { "abc1234" } else { "xyz7890" },
                at: chrono::Utc::now(),
                referer: referers[usize::from(i) % 3],
                user_agent: Some(uas[usize::from(i / 3) % 3].as_bytes()),
                ip: IpAddr::from([198, 51, 100, i]),
                cf_country: (i % 4 == 0).then_some(*b"fr"),
            };
            let via_memo = e.enrich_memo(&mut memo, c);
            assert_eq!(via_memo, e.enrich(c), "click {i}");
            let first = seen
                .entry(via_memo.short_code.to_string())
                .or_insert_with(|| via_memo.short_code.clone());
            assert!(Arc::ptr_eq(first, &via_memo.short_code), "one copy of a code");
        }
        assert_eq!(memo.codes.len(), 2);
        assert_eq!(memo.user_agents.len(), 3);
        // Referrers direct, twitter.com, com.slack; countries FR, unknown.
        assert_eq!(memo.labels.len(), 5);
    }

    #[test]
    fn a_full_memo_map_starts_again() {
        let mut map: Map<Box<str>, u32> = Map::default();
        for i in 0..10u32 {
            assert_eq!(memoised(Some((&mut map, 4)), i.to_string().as_str(), || i), i);
            assert!(map.len() <= 4, "{}", map.len());
        }
        let mut calls = 0;
        memoised(Some((&mut map, 4)), "9", || {
            calls += 1;
            0
        });
        assert_eq!(calls, 0, "the newest entry is kept");
    }

    #[test]
    fn the_memo_keeps_one_copy_per_code_and_starts_again_when_full() {
        let mut codes = Codes::default();
        let first = codes.shared("abc1234");
        assert!(Arc::ptr_eq(&first, &codes.shared("abc1234")));
        for i in 1..MEMO_CODES {
            codes.shared(&format!("c{i}"));
        }
        assert_eq!(codes.len(), MEMO_CODES);
        let newest = codes.shared("overflow");
        assert_eq!(codes.len(), 1, "emptied, then the new code");
        assert!(Arc::ptr_eq(&newest, &codes.shared("overflow")));
        let again = codes.shared("abc1234");
        assert_eq!(&*again, "abc1234");
        assert!(!Arc::ptr_eq(&first, &again), "a new copy after the restart");
    }

    #[test]
    fn cf_country_is_used_without_geoip_and_validated() {
        let e = Enricher::new([0; 16], None);
        let mut c = Captured {
            code: "abc1234",
            at: chrono::Utc::now(),
            referer: None,
            user_agent: Some(WIN_CHROME.as_bytes()),
            ip: "198.51.100.1".parse().unwrap(),
            cf_country: Some(*b"de"),
        };
        let ev = e.enrich(c);
        assert_eq!(&*ev.country, "DE");
        assert_eq!(&*ev.referrer, "direct");
        assert_eq!(ev.device, Device::Desktop);
        c.cf_country = Some(*b"XX");
        assert_eq!(&*e.enrich(c).country, "unknown");
        c.cf_country = None;
        assert_eq!(&*e.enrich(c).country, "unknown");
    }
}
