//! Short codes and custom aliases.
//!
//! Generated codes and aliases share one namespace (DESIGN.md §2), so a lookup only
//! needs [`ShortCode`]: any string that *could* name a link. [`Alias`] is the stricter
//! rule for what a user may choose. Parsing the path segment before touching any
//! cache or store means junk such as `../etc/passwd` or a 5 KB segment is answered
//! 404 without reaching them.

use super::Invalid;

/// Longest code we will ever look up. Generated codes are 7 characters and aliases at
/// most 10; anything longer cannot exist, so it is rejected before any lookup.
pub const MAX_CODE_LEN: usize = 16;
pub const ALIAS_MIN: usize = 4;
pub const ALIAS_MAX: usize = 10;

/// Path words kurz serves itself or may serve later; an alias may not take them.
const RESERVED: &[&str] = &[
    "api",
    "health",
    "healthz",
    "metrics",
    "static",
    "admin",
    "app",
    "docs",
    "openapi",
    "login",
    "logout",
    "assets",
    "favicon",
    "robots",
    "well-known",
    "kurz",
    "about",
    "help",
];

fn is_code_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// A string that may name a link: 1–16 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortCode(String);

impl ShortCode {
    /// `None` when the string cannot be a code; callers answer 404 for that.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty() && s.len() <= MAX_CODE_LEN && s.bytes().all(is_code_char);
        ok.then(|| Self(s.to_owned()))
    }

    /// For codes produced by the key generator, which only emits base62.
    pub(crate) fn from_generated(s: String) -> Self {
        debug_assert!(Self::parse(&s).is_some());
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for ShortCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A code chosen by the user: 4–10 of `[A-Za-z0-9_-]`, not a reserved word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias(ShortCode);

impl Alias {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let len = s.chars().count();
        if !(ALIAS_MIN..=ALIAS_MAX).contains(&len) {
            return Err(Invalid::alias(format!(
                "custom_alias must be {ALIAS_MIN} to {ALIAS_MAX} characters long"
            )));
        }
        if !s.bytes().all(is_code_char) {
            return Err(Invalid::alias(
                "custom_alias may only contain letters, digits, '_' and '-'",
            ));
        }
        let lower = s.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) {
            return Err(Invalid::alias(format!("custom_alias '{s}' is a reserved word")));
        }
        Ok(Self(ShortCode(s.to_owned())))
    }

    pub fn into_code(self) -> ShortCode {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_accept_base62_and_dash_underscore() {
        assert!(ShortCode::parse("aZ09_-x").is_some());
        assert!(ShortCode::parse("").is_none());
        assert!(ShortCode::parse("a/b").is_none());
        assert!(ShortCode::parse("..").is_none());
        assert!(ShortCode::parse("a%20b").is_none());
        assert!(ShortCode::parse("ünï").is_none());
        assert!(ShortCode::parse(&"a".repeat(17)).is_none());
    }

    #[test]
    fn alias_length_bounds() {
        assert!(Alias::parse("abc").is_err());
        assert!(Alias::parse("abcd").is_ok());
        assert!(Alias::parse("abcdefghij").is_ok());
        assert!(Alias::parse("abcdefghijk").is_err());
    }

    #[test]
    fn alias_rejects_reserved_words_in_any_case() {
        for word in ["health", "HEALTH", "Metrics", "admin", "static"] {
            let err = Alias::parse(word).unwrap_err();
            assert!(err.message.contains("reserved"), "{word}");
        }
        // "api" is too short to be an alias anyway; still an error.
        assert!(Alias::parse("api").is_err());
    }

    #[test]
    fn alias_rejects_injection_strings() {
        for s in ["'; DROP--", "<script>", "a b c d", "abc\0d", "ab%2fcd"] {
            assert!(Alias::parse(s).is_err(), "{s:?}");
        }
    }
}
