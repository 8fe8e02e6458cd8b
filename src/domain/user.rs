//! Who is calling: tiers, and the ownership rule for managing a link.

use std::sync::LazyLock;

use super::{Invalid, trimmed_class};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Pro,
    Enterprise,
    /// Operators and automation: unlimited, may manage every link and create users.
    Admin,
}

impl Tier {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "free" => Ok(Self::Free),
            "pro" => Ok(Self::Pro),
            "enterprise" => Ok(Self::Enterprise),
            "admin" => Ok(Self::Admin),
            _ => Err(Invalid::request(
                "tier must be one of free, pro, enterprise, admin",
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
            Self::Admin => "admin",
        }
    }
}

/// The authenticated identity of a request. Resolved once per request by the HTTP
/// layer; everything below only asks it questions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials. Rate-limited per client IP.
    Anonymous,
    User {
        id: i64,
        tier: Tier,
    },
}

impl Caller {
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Self::User { id, .. } => Some(*id),
            Self::Anonymous => None,
        }
    }
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Self::User {
                tier: Tier::Admin,
                ..
            }
        )
    }
    /// Only the owner or an admin may read analytics, change or delete a link.
    /// Anonymous links have no owner, so only admins manage them.
    pub fn may_manage(&self, owner_id: Option<i64>) -> bool {
        match self {
            Self::User {
                tier: Tier::Admin, ..
            } => true,
            Self::User { id, .. } => owner_id == Some(*id),
            Self::Anonymous => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_rule() {
        let alice = Caller::User {
            id: 1,
            tier: Tier::Free,
        };
        let admin = Caller::User {
            id: 9,
            tier: Tier::Admin,
        };
        assert!(alice.may_manage(Some(1)));
        assert!(!alice.may_manage(Some(2)));
        assert!(!alice.may_manage(None));
        assert!(admin.may_manage(Some(2)));
        assert!(admin.may_manage(None));
        assert!(!Caller::Anonymous.may_manage(None));
    }

    #[test]
    fn tiers_round_trip() {
        for t in [Tier::Free, Tier::Pro, Tier::Enterprise, Tier::Admin] {
            assert_eq!(Tier::parse(t.as_str()).unwrap(), t);
        }
        assert!(Tier::parse("gold").is_err());
    }
}

/// Longest email address, in characters (surrounding whitespace included).
pub const EMAIL_MAX_CHARS: usize = 254;

/// An email address as far as it matters to us, as the OpenAPI document states it
/// and the server checks it: one `@`, a non-empty local part, a domain with a dot, no
/// whitespace, control character or `<>"';\` (which only injections use), the
/// whitespace `str::trim` removes allowed around it.
pub const EMAIL_PATTERN: &str = concat!(
    "^[",
    trimmed_class!(),
    "]*",
    r#"[^@<>"';\\\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@"#,
    r#"[^@<>"';\\\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*\."#,
    r#"[^@<>"';\\\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*["#,
    trimmed_class!(),
    "]*$",
);

static EMAIL_SHAPE: LazyLock<regex::Regex> = LazyLock::new(|| super::pattern(EMAIL_PATTERN));

/// An email address, checked only as far as it matters to us: it identifies a user,
/// so it must be plausible, bounded, and compared case-insensitively.
pub fn parse_email(s: &str) -> Result<String, Invalid> {
    if s.chars().count() > EMAIL_MAX_CHARS || !EMAIL_SHAPE.is_match(s) {
        return Err(Invalid::request(
            "email must be a valid address such as ops@example.com",
        ));
    }
    Ok(s.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod email_tests {
    use super::{EMAIL_MAX_CHARS, parse_email};

    #[test]
    fn emails() {
        assert_eq!(parse_email(" Ops@Example.com ").unwrap(), "ops@example.com");
        assert_eq!(parse_email("\u{3000}a@b.c\n").unwrap(), "a@b.c");
        assert!(parse_email(&format!("a@{}.com", "b".repeat(EMAIL_MAX_CHARS))).is_err());
        for bad in [
            "",
            "a",
            "a@b",
            "@b.c",
            "a@",
            "a b@c.d",
            "a@b@c.d",
            "<script>@x.y",
            "x'@y.z",
            "a\u{2003}b@c.d",
            "a@b.c\u{85}d",
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }
}
