//! The URL a link points to.
//!
//! A shortener is an open redirector by design, so the rules here are about not
//! becoming a weapon: only `http`/`https` (no `javascript:`, `data:` or `file:` that
//! would run in the visitor's browser), a real host, a bounded length, IDN hosts in
//! their ASCII (punycode) form so look-alike domains are visible, and no links back to
//! kurz itself (redirect loops and laundering other short links).

use super::Invalid;

/// Longest accepted URL, in bytes, after normalisation. 2048 is what browsers and
/// most shorteners accept; longer inputs are almost always abuse.
pub const MAX_URL_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(String);

impl TargetUrl {
    /// Validates and normalises `raw`. `own_host` is the host kurz is served on (from
    /// the public base URL); links to it are refused.
    pub fn parse(raw: &str, own_host: Option<&str>) -> Result<Self, Invalid> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Invalid::url("original_url must not be empty"));
        }
        if raw.len() > MAX_URL_BYTES {
            return Err(Invalid::url(format!(
                "original_url is longer than {MAX_URL_BYTES} bytes"
            )));
        }
        if raw.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Invalid::url("original_url contains spaces or control characters"));
        }
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
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h,
            _ => return Err(Invalid::url("original_url must have a host")),
        };
        if let Some(own) = own_host
            && host.eq_ignore_ascii_case(own)
        {
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

/// The host part of a base URL such as `http://127.0.0.1:8080`, for [`TargetUrl::parse`].
pub fn host_of(base: &str) -> Option<String> {
    url::Url::parse(base).ok()?.host_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InvalidKind;
    use proptest::prelude::*;

    fn ok(s: &str) -> String {
        TargetUrl::parse(s, Some("sho.rt")).unwrap().into_string()
    }
    fn bad(s: &str) {
        let e = TargetUrl::parse(s, Some("sho.rt")).unwrap_err();
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
