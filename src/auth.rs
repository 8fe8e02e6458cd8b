//! Credentials: API keys (hashed at rest), short-lived JWTs, and the admin bootstrap.
//!
//! A credential that is present but wrong is an error (401), never a silent fall
//! back to anonymous: a typo in a key must not quietly create unowned links.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use quick_cache::sync::Cache;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::user::parse_email;
use crate::domain::{Caller, Invalid, Tier};
use crate::store::{LinkStore, NewUser, StoreError, User};

/// Email of the user behind `KURZ_ADMIN_API_KEY` or the first-start admin key.
pub const ADMIN_EMAIL: &str = "admin@kurz.local";
const KEY_PREFIX: &str = "kurz_";
/// 32 base62 characters ≈ 190 bits, well above the 128 the design asks for.
const KEY_CHARS: usize = 32;
/// Shortest secret accepted for `KURZ_ADMIN_API_KEY` and `KURZ_JWT_SECRET`: 256 bits
/// if random, what an HS256 key should have.
pub const SECRET_MIN_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid API key")]
    BadKey,
    #[error("invalid or expired token")]
    BadToken,
    #[error("unsupported Authorization scheme; use 'Bearer <token>'")]
    BadScheme,
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("a user with this email already exists")]
    EmailTaken,
    #[error("admin only")]
    Forbidden,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// SHA-256 of an API key, hex. Keys are random, so no salt or stretching is needed.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random API key, e.g. `kurz_3fJ…`.
pub fn generate_key() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let body: String = (0..KEY_CHARS)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{KEY_PREFIX}{body}")
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: i64,
    tier: Tier,
    exp: u64,
    iat: u64,
}

impl AuthError {
    /// A credential that was sent but is wrong: what the failed-authentication limit
    /// counts.
    pub fn is_bad_credential(&self) -> bool {
        matches!(self, Self::BadKey | Self::BadToken | Self::BadScheme)
    }
}

pub struct Auth {
    store: Arc<dyn LinkStore>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    token_ttl: Duration,
    /// Resolved keys and token subjects are remembered this long, so an authenticated
    /// request does not cost a store query each time; a removed user's key or token
    /// works for at most this long after.
    cache_ttl: Duration,
    keys: Cache<String, (Caller, Instant)>,
    /// The users tokens name, by id; `None` for one that no longer exists.
    subjects: Cache<i64, (Option<Caller>, Instant)>,
}

impl Auth {
    pub fn new(
        store: Arc<dyn LinkStore>,
        jwt_secret: &[u8],
        token_ttl: Duration,
        cache_ttl: Duration,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        Self {
            store,
            encoding: EncodingKey::from_secret(jwt_secret),
            decoding: DecodingKey::from_secret(jwt_secret),
            validation,
            token_ttl,
            cache_ttl,
            keys: Cache::new(10_000),
            subjects: Cache::new(10_000),
        }
    }

    pub async fn from_api_key(&self, key: &str) -> Result<Caller, AuthError> {
        let hash = hash_key(key);
        if let Some((caller, at)) = self.keys.get(&hash)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(caller);
        }
        let user = self
            .store
            .user_by_key_hash(&hash)
            .await?
            .ok_or(AuthError::BadKey)?;
        let caller = Caller::User {
            id: user.id,
            tier: user.tier,
        };
        self.keys.insert(hash, (caller.clone(), Instant::now()));
        Ok(caller)
    }

    /// A signed, unexpired token whose subject still exists, with the tier the store
    /// has for it now (not the one in the token).
    pub async fn from_bearer(&self, token: &str) -> Result<Caller, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::BadToken)?;
        let id = data.claims.sub;
        if let Some((caller, at)) = self.subjects.get(&id)
            && at.elapsed() < self.cache_ttl
        {
            return caller.ok_or(AuthError::BadToken);
        }
        let caller = self.store.user_by_id(id).await?.map(|u| Caller::User {
            id: u.id,
            tier: u.tier,
        });
        self.subjects.insert(id, (caller.clone(), Instant::now()));
        caller.ok_or(AuthError::BadToken)
    }

    /// Resolves the request's credentials: `X-API-Key` or `Authorization: Bearer`.
    pub async fn resolve(
        &self,
        api_key: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Caller, AuthError> {
        if let Some(key) = api_key {
            return self.from_api_key(key.trim()).await;
        }
        match authorization {
            None => Ok(Caller::Anonymous),
            Some(h) => {
                let (scheme, token) = h.trim().split_once(' ').ok_or(AuthError::BadScheme)?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return Err(AuthError::BadScheme);
                }
                self.from_bearer(token.trim()).await
            }
        }
    }

    /// Exchanges an API key for a JWT valid for the configured time.
    pub async fn issue_token(&self, api_key: &str) -> Result<(String, u64), AuthError> {
        let Caller::User { id, tier } = self.from_api_key(api_key).await? else {
            return Err(AuthError::BadKey);
        };
        let now = jsonwebtoken::get_current_timestamp();
        let ttl = self.token_ttl.as_secs();
        let claims = Claims {
            sub: id,
            tier,
            exp: now + ttl,
            iat: now,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| StoreError::Other(format!("token encoding failed: {e}")))?;
        Ok((token, ttl))
    }

    /// Creates a user and returns it with its API key, which is never shown again.
    pub async fn create_user(
        &self,
        caller: &Caller,
        email: &str,
        tier: &str,
    ) -> Result<(User, String), AuthError> {
        if !caller.is_admin() {
            return Err(AuthError::Forbidden);
        }
        self.create_user_unchecked(email, tier).await
    }

    /// For the `kurz users create` command, which runs with the operator's rights.
    pub async fn create_user_unchecked(&self, email: &str, tier: &str) -> Result<(User, String), AuthError> {
        let email = parse_email(email)?;
        let tier = Tier::parse(tier)?;
        let key = generate_key();
        let user = self
            .store
            .create_user(&NewUser {
                email,
                tier,
                api_key_hash: hash_key(&key),
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict => AuthError::EmailTaken,
                other => AuthError::Store(other),
            })?;
        Ok((user, key))
    }

    /// Makes sure an admin exists. With a configured key, that key becomes the admin's;
    /// otherwise, on first start, a key is generated and returned to be shown once.
    pub async fn bootstrap_admin(&self, configured: Option<&str>) -> Result<Option<String>, AuthError> {
        if let Some(key) = configured {
            self.store.upsert_admin(ADMIN_EMAIL, &hash_key(key)).await?;
            return Ok(None);
        }
        if self.store.has_admin().await? {
            return Ok(None);
        }
        let key = generate_key();
        self.store.upsert_admin(ADMIN_EMAIL, &hash_key(&key)).await?;
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_hash_is_stable() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_PREFIX.len() + KEY_CHARS);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_eq!(hash_key(&a).len(), 64);
        assert!(!hash_key(&a).contains(&a[5..]));
    }
}
