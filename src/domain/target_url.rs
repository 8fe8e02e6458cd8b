//! The URL a link points to.
//!
//! A shortener is an open redirector by design, so the rules here are about not
//! becoming a weapon: only `http`/`https` (no `javascript:`, `data:` or `file:` that
//! would run in the visitor's browser), a real host, a bounded length, IDN hosts in
//! their ASCII (punycode) form so look-alike domains are visible, and no links back to
//! kurz itself (redirect loops and laundering other short links).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::LazyLock;

use url::Host;

use super::{Invalid, trimmed_class};

/// Longest accepted URL, in bytes, after normalisation. 2048 is what browsers and
/// most shorteners accept; longer inputs are almost always abuse.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest accepted URL as sent, in characters (what JSON Schema's `maxLength`
/// counts), surrounding whitespace included.
pub const MAX_URL_CHARS: usize = 2048;

/// The shape of an acceptable `original_url`, as the OpenAPI document states it and
/// the server checks it (the same string): `http://` or `https://` in any case, an
/// authority without `@` (no credentials), then a path, query or fragment; no space
/// and no control character (C0, DEL, C1) anywhere; the whitespace `str::trim`
/// removes allowed around it. What a pattern cannot say (a valid host name, not
/// this service) is checked after it.
pub const URL_PATTERN: &str = concat!(
    "^[",
    trimmed_class!(),
    r"]*[Hh][Tt][Tt][Pp][Ss]?://[^/\\?#@ \u0000-\u001f\u007f-\u009f]+",
    r"([/\\?#][^ \u0000-\u001f\u007f-\u009f]*)?[",
    trimmed_class!(),
    "]*$",
);

static URL_SHAPE: LazyLock<regex::Regex> = LazyLock::new(|| super::pattern(URL_PATTERN));

/// A host in one spelling per machine: lower case, punycode, percent-decoded (all
/// done by `url`), no trailing dot, and IPv4-mapped IPv6 as IPv4.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Canonical {
    Domain(String),
    Ip(IpAddr),
}

impl Canonical {
    fn of(host: &Host<&str>) -> Self {
        match host {
            Host::Domain(d) => Self::Domain(d.trim_end_matches('.').to_owned()),
            Host::Ipv4(a) => Self::Ip(IpAddr::V4(*a)),
            Host::Ipv6(a) => Self::Ip(unmap(*a)),
        }
    }

    /// This machine, whatever it listens on: the loopback networks, the unspecified
    /// address (which connects to this machine) and the `localhost` names (RFC 6761).
    fn is_local(&self) -> bool {
        match self {
            Self::Ip(ip) => ip.is_loopback() || ip.is_unspecified(),
            Self::Domain(d) => d == "localhost" || d.ends_with(".localhost"),
        }
    }
}

/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) addresses as
/// the IPv4 address they reach.
fn unmap(a: Ipv6Addr) -> IpAddr {
    if let Some(v4) = a.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = a.segments();
    if s[..6] == [0; 6] && !a.is_loopback() && !a.is_unspecified() {
        return IpAddr::V4(std::net::Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    IpAddr::V6(a)
}

/// The hosts that are this service (DESIGN.md §3): the public base URL's, the
/// listen address and the operator's `KURZ_SELF_HOSTS`. A link to one of them would
/// redirect to kurz again (a loop, or another short link laundered). Compared in
/// canonical form; when any of them is this machine (loopback, `localhost`,
/// `0.0.0.0`), every spelling of this machine is.
#[derive(Debug, Clone, Default)]
pub struct OwnHosts {
    hosts: HashSet<Canonical>,
    local: bool,
}

impl OwnHosts {
    /// Adds a host as written in a URL (`sho.rt`, `127.0.0.1`, `[::1]`, an IDN).
    pub fn add(&mut self, host: &str) -> Result<(), Invalid> {
        let parsed = Host::parse(host)
            .map_err(|e| Invalid::request(format!("'{host}' is not a host name or address: {e}")))?;
        let parsed = match &parsed {
            Host::Domain(d) => Host::Domain(d.as_str()),
            Host::Ipv4(a) => Host::Ipv4(*a),
            Host::Ipv6(a) => Host::Ipv6(*a),
        };
        self.insert(Canonical::of(&parsed));
        Ok(())
    }

    pub fn add_ip(&mut self, ip: IpAddr) {
        let ip = match ip {
            IpAddr::V6(a) => unmap(a),
            v4 => v4,
        };
        self.insert(Canonical::Ip(ip));
    }

    fn insert(&mut self, host: Canonical) {
        self.local |= host.is_local();
        self.hosts.insert(host);
    }

    fn contains(&self, host: &Host<&str>) -> bool {
        let host = Canonical::of(host);
        (self.local && host.is_local()) || self.hosts.contains(&host)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(String);

impl TargetUrl {
    /// Validates and normalises `raw`. `own` are the hosts kurz is served on; links
    /// to them are refused.
    pub fn parse(raw: &str, own: Option<&OwnHosts>) -> Result<Self, Invalid> {
        if raw.chars().count() > MAX_URL_CHARS {
            return Err(Invalid::url(format!(
                "original_url is longer than {MAX_URL_CHARS} characters"
            )));
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Invalid::url("original_url must not be empty"));
        }
        if trimmed.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Invalid::url("original_url contains spaces or control characters"));
        }
        if !URL_SHAPE.is_match(raw) {
            return Err(Invalid::url(
                "original_url must be an http:// or https:// URL with a host and no credentials",
            ));
        }
        let raw = trimmed;
        let url = url::Url::parse(raw)
            .map_err(|e| Invalid::url(format!("original_url is not a valid URL: {e}")))?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(Invalid::url(format!(
                    "original_url scheme '{other}' is not allowed; use http or https"
                )));
            }
        }
        let host = match url.host() {
            Some(h) if url.host_str().is_some_and(|s| !s.is_empty()) => h,
            _ => return Err(Invalid::url("original_url must have a host")),
        };
        if own.is_some_and(|own| own.contains(&host)) {
            return Err(Invalid::url("original_url must not point at this shortener"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Invalid::url("original_url must not carry credentials"));
        }
        // `Url` has already lower-cased the host and turned IDN labels into punycode.
        let normalised: String = url.into();
        if normalised.len() > MAX_URL_BYTES {
            return Err(Invalid::url(format!(
                "original_url is longer than {MAX_URL_BYTES} bytes once normalised"
            )));
        }
        Ok(Self(normalised))
    }

    /// For values read back from the store, which were validated when written.
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The host part of a base URL such as `http://127.0.0.1:8080`, for [`OwnHosts`].
pub fn host_of(base: &str) -> Option<String> {
    url::Url::parse(base).ok()?.host_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InvalidKind;
    use proptest::prelude::*;

    fn own() -> OwnHosts {
        let mut own = OwnHosts::default();
        own.add("sho.rt").unwrap();
        own
    }
    fn ok(s: &str) -> String {
        TargetUrl::parse(s, Some(&own())).unwrap().into_string()
    }
    fn bad(s: &str) {
        let e = TargetUrl::parse(s, Some(&own())).unwrap_err();
        assert_eq!(e.kind, InvalidKind::Url, "{s}");
    }

    #[test]
    fn accepts_http_and_https() {
        assert_eq!(ok("https://example.com/a?b=c#d"), "https://example.com/a?b=c#d");
        assert_eq!(ok("http://Example.COM"), "http://example.com/");
    }

    #[test]
    fn normalises_idn_hosts_to_punycode() {
        assert_eq!(ok("https://bücher.de/x"), "https://xn--bcher-kva.de/x");
    }

    #[test]
    fn rejects_dangerous_schemes_and_hostless() {
        bad("javascript:alert(1)");
        bad("data:text/html,<script>alert(1)</script>");
        bad("file:///etc/passwd");
        bad("ftp://example.com");
        bad("mailto:a@b.c");
        bad("http://");
        bad("not a url");
        bad("example.com");
        bad("");
        bad("https://user:pw@example.com/");
    }

    #[test]
    fn rejects_own_host_and_long_urls() {
        bad("https://sho.rt/abc");
        bad("https://SHO.RT/abc");
        bad(&format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES)));
        assert!(TargetUrl::parse("https://sho.rt/x", None).is_ok());
    }

    /// Issue 23, bug 3: every spelling of this service's host is refused.
    #[test]
    fn own_host_in_every_spelling() {
        for target in [
            "http://sho.rt./x",
            "http://sho.rt%2e/x",
            "http://SHO.rt../x",
            "http://%73ho.rt/x",
            "https://sho.rt:8443/x",
        ] {
            bad(target);
        }
        ok("http://sho.rtx/x");
        ok("http://a.sho.rt/x");

        let mut local = OwnHosts::default();
        local.add("127.0.0.1").unwrap();
        for target in [
            "http://127.0.0.1:8080/x",
            "http://localhost:8080/x",
            "http://LOCALHOST./x",
            "http://app.localhost/x",
            "http://[::1]:8080/x",
            "http://[::ffff:127.0.0.1]:8080/x",
            "http://[::ffff:7f00:1]/x",
            "http://[0:0:0:0:0:0:0:1]/x",
            "http://127.1/x",
            "http://2130706433/x",
            "http://0x7f.0.0.1/x",
            "http://127.0.0.2/x",
            "http://0.0.0.0:8080/x",
            "http://[::]/x",
        ] {
            let e = TargetUrl::parse(target, Some(&local)).unwrap_err();
            assert_eq!(e.kind, InvalidKind::Url, "{target}");
        }
        assert!(TargetUrl::parse("http://example.com/x", Some(&local)).is_ok());
        assert!(TargetUrl::parse("http://10.0.0.1/x", Some(&local)).is_ok());

        // Listening on all addresses makes this machine's every spelling ours too;
        // a listed public address or CDN name is ours as written.
        let mut any = OwnHosts::default();
        any.add_ip("0.0.0.0".parse().unwrap());
        any.add("203.0.113.7").unwrap();
        any.add("CDN.Example.com").unwrap();
        any.add("bücher.example").unwrap();
        for target in [
            "http://localhost/x",
            "http://[::ffff:203.0.113.7]/x",
            "http://cdn.example.com./x",
            "http://xn--bcher-kva.example/x",
            "http://BÜCHER.example/x",
        ] {
            assert!(TargetUrl::parse(target, Some(&any)).is_err(), "{target}");
        }
        assert!(OwnHosts::default().add("sho.rt:80").is_err());
    }

    #[test]
    fn the_shape_is_the_documented_pattern() {
        for good in [
            "https://example.com",
            "HTTP://example.com/a%20b",
            "  https://example.com/x\n",
            "http://a\\@b",
            "https://example.com/\u{a0}x",
        ] {
            assert!(URL_SHAPE.is_match(good), "{good:?}");
            assert!(TargetUrl::parse(good, None).is_ok(), "{good:?}");
        }
        for bad in [
            "http:example.com",
            "http:/example.com",
            "ftp://example.com",
            "http://u:p@example.com",
            "http://exa mple.com",
            "http://example.com/\u{85}x",
            "",
        ] {
            assert!(!URL_SHAPE.is_match(bad), "{bad:?}");
            assert!(TargetUrl::parse(bad, None).is_err(), "{bad:?}");
        }
        let long = format!("https://example.com/{}", "é".repeat(MAX_URL_CHARS - 20));
        assert!(long.len() > MAX_URL_BYTES);
        assert_eq!(long.chars().count(), MAX_URL_CHARS);
        let e = TargetUrl::parse(&long, None).unwrap_err();
        assert!(e.message.contains("once normalised"), "{}", e.message);
    }

    proptest! {
        /// Whatever the input, the validator either refuses it or returns an http(s)
        /// URL with a host, within the length limit, that parses again to itself.
        #[test]
        fn validator_output_is_always_safe(s in "\\PC{0,300}") {
            if let Ok(u) = TargetUrl::parse(&s, None) {
                let out = u.as_str();
                prop_assert!(out.starts_with("http://") || out.starts_with("https://"));
                prop_assert!(out.len() <= MAX_URL_BYTES);
                let again = TargetUrl::parse(out, None).unwrap();
                prop_assert_eq!(again.as_str(), out);
            }
        }

        #[test]
        fn generated_http_urls_are_accepted(host in "[a-z]{1,20}\\.(com|org|de)", path in "[a-zA-Z0-9/_-]{0,100}") {
            let s = format!("https://{host}/{path}");
            prop_assert!(TargetUrl::parse(&s, None).is_ok());
        }
    }
}
