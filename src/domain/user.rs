//! Who is calling: tiers, and the ownership rule for managing a link.

use super::Invalid;

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

/// An email address, checked only as far as it matters to us: it identifies a user,
/// so it must be plausible, bounded, and compared case-insensitively.
pub fn parse_email(s: &str) -> Result<String, Invalid> {
    let s = s.trim();
    let bad = || Invalid::request("email must be a valid address such as ops@example.com");
    if s.len() < 3 || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = s.split_once('@').ok_or_else(bad)?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') || !domain.contains('.') {
        return Err(bad());
    }
    if s.contains(['<', '>', '"', '\'', ';', '\\']) {
        return Err(bad());
    }
    Ok(s.to_ascii_lowercase())
}

#[cfg(test)]
mod email_tests {
    use super::parse_email;

    #[test]
    fn emails() {
        assert_eq!(parse_email(" Ops@Example.com ").unwrap(), "ops@example.com");
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
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }
}
