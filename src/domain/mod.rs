//! Pure types and rules of the product: what a short code, an alias, a target URL,
//! a link and a caller are, and what makes each valid.
//!
//! Nothing here does I/O or knows about HTTP, SQL or time sources: every rule takes
//! its inputs (including "now") as arguments, so it is unit-tested directly.

pub mod code;
pub mod link;
pub mod stats;
pub mod target_url;
pub mod user;
pub mod visitor;

/// The characters `str::trim` removes (Unicode `White_Space`), as the body of a regex
/// class, for the patterns that allow them around a value the server trims. Written
/// with `\uXXXX` escapes only, which Rust's regex, Python's `re` and ECMA-262 (JSON
/// Schema) read alike.
macro_rules! trimmed_class {
    () => {
        r"\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}
pub(crate) use trimmed_class;

/// Compiles one of the module's constant patterns (each checked by a unit test).
pub(crate) fn pattern(p: &str) -> regex::Regex {
    regex::Regex::new(p).unwrap_or_else(|e| panic!("bad constant pattern {p}: {e}"))
}

pub use code::{Alias, ShortCode};
pub use link::{Link, LinkState, LinkTarget, Metadata, RedirectType};
pub use target_url::TargetUrl;
pub use user::{Caller, Tier};

/// Which rule an input broke. The HTTP layer maps each kind to one machine code
/// (`INVALID_URL`, `INVALID_ALIAS`, `INVALID_REQUEST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidKind {
    Url,
    Alias,
    Request,
}

/// An input that breaks a rule, with a message meant for the API user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub kind: InvalidKind,
    pub message: String,
}

impl Invalid {
    pub fn url(message: impl Into<String>) -> Self {
        Self {
            kind: InvalidKind::Url,
            message: message.into(),
        }
    }
    pub fn alias(message: impl Into<String>) -> Self {
        Self {
            kind: InvalidKind::Alias,
            message: message.into(),
        }
    }
    pub fn request(message: impl Into<String>) -> Self {
        Self {
            kind: InvalidKind::Request,
            message: message.into(),
        }
    }
}
