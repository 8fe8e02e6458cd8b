//! Per-caller token buckets (DESIGN.md §3, "Rate limits").
//!
//! One keyed `governor` limiter per tier (GCRA, which is a token bucket stated in
//! arrival times): the bucket holds a minute's worth of requests and refills
//! continuously. Anonymous callers are keyed by client IP, users by id. The decision
//! carries what the `X-RateLimit-*` headers and `retry_after` need.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, QuantaClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};

use std::sync::Arc;

use crate::domain::{Caller, Tier};
use crate::redis::Redis;

/// Requests per minute per tier; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierLimits {
    pub anonymous: u32,
    pub free: u32,
    pub pro: u32,
    pub enterprise: u32,
    /// Redirects per minute per client IP; 0 (the default) turns it off.
    pub redirect: u32,
    /// Failed authentications per minute per client IP; 0 turns the limit off.
    pub auth_failures: u32,
}

impl TierLimits {
    pub fn for_caller(&self, caller: &Caller) -> u32 {
        match caller {
            Caller::Anonymous => self.anonymous,
            Caller::User { tier: Tier::Free, .. } => self.free,
            Caller::User { tier: Tier::Pro, .. } => self.pro,
            Caller::User {
                tier: Tier::Enterprise,
                ..
            } => self.enterprise,
            Caller::User {
                tier: Tier::Admin, ..
            } => 0,
        }
    }
}

/// What a limiter said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests per minute for this caller.
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until the next request may pass; 0 when allowed.
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Ip(IpAddr),
    User(i64),
}

type Keyed = Gcra<Subject, DashMapStateStore<Subject>, QuantaClock, StateInformationMiddleware>;

struct Bucket {
    limit: u32,
    gcra: Keyed,
}

impl Bucket {
    fn new(per_minute: u32, clock: &QuantaClock) -> Option<Self> {
        let n = NonZeroU32::new(per_minute)?;
        let gcra: Keyed = Gcra::<Subject, _, _, governor::middleware::NoOpMiddleware<_>>::new(
            Quota::per_minute(n),
            DashMapStateStore::default(),
            clock.clone(),
        )
        .with_middleware::<StateInformationMiddleware>();
        Some(Self {
            limit: per_minute,
            gcra,
        })
    }
}

/// Seconds for `tokens` tokens to refill at `limit` per minute, rounded up.
pub fn refill_secs(tokens: u32, limit: u32) -> u64 {
    if limit == 0 {
        return 0;
    }
    (u64::from(tokens) * 60).div_ceil(u64::from(limit))
}

/// The distributed bucket: one key per caller, refilled continuously at
/// `capacity` per minute, using Redis's clock so every instance agrees. One key per
/// call, so it runs unchanged on a Redis Cluster (no hash tags needed).
/// Returns {allowed, remaining, retry_after_ms, reset_ms}.
const BUCKET_LUA: &str = r#"
local cap = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = cap / 60000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_ms = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], 61000)
return {allowed, math.floor(tokens), retry_ms, math.ceil((cap - tokens) / rate)}
"#;

pub struct RateLimiter {
    clock: QuantaClock,
    /// When set, buckets live in Redis and hold across instances; the local buckets
    /// below are the fallback while Redis is unreachable.
    redis: Option<(Arc<Redis>, redis::Script)>,
    limits: TierLimits,
    anonymous: Option<Bucket>,
    free: Option<Bucket>,
    pro: Option<Bucket>,
    enterprise: Option<Bucket>,
    redirect: Option<Bucket>,
    auth_failures: Option<Bucket>,
    /// Clients out of failed authentications, until when: they are answered 429
    /// before their credential costs a lookup.
    auth_blocked: quick_cache::sync::Cache<IpAddr, Instant>,
    /// Key of the IPs' hash: a Redis key names an anonymous caller by it, never by
    /// the IP itself.
    ip_key: [u8; 16],
    decisions: Decisions,
}

/// `kurz_rate_limit_decisions_total{tier, result}`, resolved once.
struct Decisions([[metrics::Counter; 2]; TIERS.len()]);

/// The tiers a decision is counted under (see [`Decisions`]).
const TIERS: [&str; 6] = ["anonymous", "free", "pro", "enterprise", "admin", "redirect"];

impl Decisions {
    fn new() -> Self {
        Self(TIERS.map(|tier| {
            ["allowed", "limited"].map(|result| {
                let c =
                    metrics::counter!("kurz_rate_limit_decisions_total", "tier" => tier, "result" => result);
                c.increment(0);
                c
            })
        }))
    }

    fn count(&self, tier: usize, allowed: bool) {
        if let Some(pair) = self.0.get(tier) {
            pair[usize::from(!allowed)].increment(1);
        }
    }
}

fn tier_index(caller: &Caller) -> usize {
    match caller {
        Caller::Anonymous => 0,
        Caller::User { tier: Tier::Free, .. } => 1,
        Caller::User { tier: Tier::Pro, .. } => 2,
        Caller::User {
            tier: Tier::Enterprise,
            ..
        } => 3,
        Caller::User {
            tier: Tier::Admin, ..
        } => 4,
    }
}

impl RateLimiter {
    pub fn new(limits: TierLimits, redis: Option<Arc<Redis>>, ip_key: [u8; 16]) -> Self {
        let clock = QuantaClock::default();
        Self {
            redis: redis.map(|r| (r, redis::Script::new(BUCKET_LUA))),
            anonymous: Bucket::new(limits.anonymous, &clock),
            free: Bucket::new(limits.free, &clock),
            pro: Bucket::new(limits.pro, &clock),
            enterprise: Bucket::new(limits.enterprise, &clock),
            redirect: Bucket::new(limits.redirect, &clock),
            auth_failures: Bucket::new(limits.auth_failures, &clock),
            auth_blocked: quick_cache::sync::Cache::new(10_000),
            clock,
            limits,
            ip_key,
            decisions: Decisions::new(),
        }
    }

    pub fn limits(&self) -> &TierLimits {
        &self.limits
    }

    fn select(&self, caller: &Caller, ip: IpAddr) -> Option<(&Bucket, Subject, &'static str)> {
        match caller {
            Caller::Anonymous => Some((self.anonymous.as_ref()?, Subject::Ip(ip), "anon")),
            Caller::User { id, tier } => {
                let bucket = match tier {
                    Tier::Free => self.free.as_ref(),
                    Tier::Pro => self.pro.as_ref(),
                    Tier::Enterprise => self.enterprise.as_ref(),
                    Tier::Admin => None,
                }?;
                Some((bucket, Subject::User(*id), tier.as_str()))
            }
        }
    }

    /// Takes one token for an API request. `None` when the caller is unlimited.
    pub async fn check_api(&self, caller: &Caller, ip: IpAddr) -> Option<Decision> {
        self.charge_api(caller, ip, 1).await
    }

    /// Takes `cost` tokens at once (a bulk create costs one per link). A cost above
    /// the caller's whole budget is refused, whatever the bucket holds.
    pub async fn charge_api(&self, caller: &Caller, ip: IpAddr, cost: u32) -> Option<Decision> {
        let tier = tier_index(caller);
        let Some((bucket, subject, scope)) = self.select(caller, ip) else {
            self.decisions.count(tier, true);
            return None;
        };
        let d = self.check_shared(bucket, &subject, scope, cost).await;
        self.decisions.count(tier, d.allowed);
        Some(d)
    }

    /// Takes one token for a redirect from `ip`. `None` when redirects are unlimited
    /// (not counted then: that would be a counter update per redirect for nothing).
    pub async fn check_redirect(&self, ip: IpAddr) -> Option<Decision> {
        let bucket = self.redirect.as_ref()?;
        let d = self.check_shared(bucket, &Subject::Ip(ip), "redirect", 1).await;
        self.decisions.count(5, d.allowed);
        Some(d)
    }

    /// Whether `ip` ran out of failed authentications: its refusal, until the bucket
    /// has a token again. Checked before a credential is looked up.
    pub fn auth_blocked(&self, ip: IpAddr) -> Option<Decision> {
        let bucket = self.auth_failures.as_ref()?;
        let until = self.auth_blocked.get(&ip)?;
        let wait = until.checked_duration_since(Instant::now())?;
        Some(Decision {
            allowed: false,
            limit: bucket.limit,
            remaining: 0,
            reset_secs: refill_secs(bucket.limit, bucket.limit),
            retry_after_secs: (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
        })
    }

    /// Counts a failed authentication from `ip`. Not allowed: the client is out of
    /// attempts, and stays blocked until its bucket refills a token. `None` when
    /// failures are unlimited.
    pub async fn auth_failed(&self, ip: IpAddr) -> Option<Decision> {
        let bucket = self.auth_failures.as_ref()?;
        let d = self.check_shared(bucket, &Subject::Ip(ip), "authfail", 1).await;
        if !d.allowed {
            self.auth_blocked
                .insert(ip, Instant::now() + Duration::from_secs(d.retry_after_secs));
        }
        Some(d)
    }

    async fn check_shared(&self, bucket: &Bucket, subject: &Subject, scope: &str, cost: u32) -> Decision {
        if let Some((redis, script)) = &self.redis {
            let id = match subject {
                Subject::Ip(ip) => crate::domain::visitor::ip_subject(&self.ip_key, *ip),
                Subject::User(id) => id.to_string(),
            };
            let key = redis.key(&["rl", scope, &id]);
            let args = [bucket.limit.to_string(), cost.to_string()];
            match redis
                .script::<(i64, i64, i64, i64)>("rate_limit", script, &[&key], &args)
                .await
            {
                Ok((allowed, remaining, retry_ms, reset_ms)) => {
                    return Decision {
                        allowed: allowed == 1,
                        limit: bucket.limit,
                        remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
                        reset_secs: u64::try_from(reset_ms.max(0)).unwrap_or(0).div_ceil(1000),
                        retry_after_secs: if allowed == 1 {
                            0
                        } else {
                            u64::try_from(retry_ms.max(1)).unwrap_or(1).div_ceil(1000)
                        },
                    };
                }
                Err(e) => tracing::debug!(error = %e, "redis rate limit unavailable; using the local bucket"),
            }
        }
        self.check(bucket, subject, cost)
    }

    fn check(&self, bucket: &Bucket, subject: &Subject, cost: u32) -> Decision {
        let refused = |retry_after_secs| Decision {
            allowed: false,
            limit: bucket.limit,
            remaining: 0,
            reset_secs: refill_secs(bucket.limit, bucket.limit),
            retry_after_secs,
        };
        let Some(n) = NonZeroU32::new(cost) else {
            return refused(1);
        };
        let Ok(checked) = bucket.gcra.check_key_n(subject, n) else {
            // More than the bucket ever holds: no wait makes it fit.
            return refused(refill_secs(bucket.limit, bucket.limit));
        };
        match checked {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: bucket.limit,
                    remaining,
                    reset_secs: refill_secs(bucket.limit.saturating_sub(remaining), bucket.limit),
                    retry_after_secs: 0,
                }
            }
            Err(not_until) => {
                let wait: Duration = not_until.wait_time_from(self.clock.now());
                let retry = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                refused(retry.max(1))
            }
        }
    }

    /// Forgets buckets that are full again, so memory tracks active callers only.
    pub fn forget_idle(&self) {
        for b in [
            &self.anonymous,
            &self.free,
            &self.pro,
            &self.enterprise,
            &self.redirect,
            &self.auth_failures,
        ]
        .into_iter()
        .flatten()
        {
            b.gcra.retain_recent();
            b.gcra.shrink_to_fit();
        }
        let now = Instant::now();
        self.auth_blocked.retain(|_, until| *until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn limits(free: u32) -> TierLimits {
        TierLimits {
            anonymous: 3,
            free,
            pro: 1000,
            enterprise: 10_000,
            redirect: 0,
            auth_failures: 2,
        }
    }

    #[tokio::test]
    async fn bucket_allows_limit_then_refuses_with_retry_after() {
        let rl = RateLimiter::new(limits(5), None, [0; 16]);
        let alice = Caller::User {
            id: 1,
            tier: Tier::Free,
        };
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for expected_remaining in (0..5).rev() {
            let d = rl.check_api(&alice, ip).await.unwrap();
            assert!(d.allowed);
            assert_eq!(d.limit, 5);
            assert_eq!(d.remaining, expected_remaining);
        }
        let d = rl.check_api(&alice, ip).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        // One token every 12 s at 5/min.
        assert!((1..=12).contains(&d.retry_after_secs), "{d:?}");
        // Another user has their own bucket.
        assert!(
            rl.check_api(
                &Caller::User {
                    id: 2,
                    tier: Tier::Free
                },
                ip
            )
            .await
            .unwrap()
            .allowed
        );
    }

    #[tokio::test]
    async fn anonymous_is_keyed_by_ip_and_admin_is_unlimited() {
        let rl = RateLimiter::new(limits(5), None, [0; 16]);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        for _ in 0..3 {
            assert!(rl.check_api(&Caller::Anonymous, a).await.unwrap().allowed);
        }
        assert!(!rl.check_api(&Caller::Anonymous, a).await.unwrap().allowed);
        assert!(rl.check_api(&Caller::Anonymous, b).await.unwrap().allowed);
        assert!(
            rl.check_api(
                &Caller::User {
                    id: 9,
                    tier: Tier::Admin
                },
                a
            )
            .await
            .is_none()
        );
    }

    #[tokio::test]
    async fn zero_means_unlimited() {
        let rl = RateLimiter::new(limits(0), None, [0; 16]);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(
            rl.check_api(
                &Caller::User {
                    id: 1,
                    tier: Tier::Free
                },
                ip
            )
            .await
            .is_none()
        );
        assert!(rl.redirect.is_none());
    }

    #[tokio::test]
    async fn a_cost_takes_that_many_tokens_and_never_more_than_the_bucket() {
        let rl = RateLimiter::new(limits(10), None, [0; 16]);
        let alice = Caller::User {
            id: 1,
            tier: Tier::Free,
        };
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let d = rl.charge_api(&alice, ip, 4).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 6);
        assert!(!rl.charge_api(&alice, ip, 7).await.unwrap().allowed);
        assert!(rl.charge_api(&alice, ip, 6).await.unwrap().allowed);
        let over = rl.charge_api(&alice, ip, 11).await.unwrap();
        assert!(!over.allowed);
        assert_eq!(
            over.retry_after_secs, 60,
            "a full bucket's time, though it never fits"
        );
    }

    #[tokio::test]
    async fn failed_authentications_block_a_client_once_spent() {
        let rl = RateLimiter::new(limits(5), None, [0; 16]);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        for _ in 0..2 {
            assert!(rl.auth_blocked(a).is_none());
            assert!(rl.auth_failed(a).await.unwrap().allowed);
        }
        let refused = rl.auth_failed(a).await.unwrap();
        assert!(!refused.allowed);
        let blocked = rl.auth_blocked(a).unwrap();
        assert!(!blocked.allowed && blocked.retry_after_secs >= 1);
        assert!(rl.auth_blocked(b).is_none(), "another client is not");
        let off = RateLimiter::new(
            TierLimits {
                auth_failures: 0,
                ..limits(5)
            },
            None,
            [0; 16],
        );
        assert!(off.auth_failed(a).await.is_none());
    }

    #[test]
    fn refill_math() {
        assert_eq!(refill_secs(0, 100), 0);
        assert_eq!(refill_secs(1, 100), 1);
        assert_eq!(refill_secs(100, 100), 60);
        assert_eq!(refill_secs(1, 10), 6);
        assert_eq!(refill_secs(3, 0), 0);
    }
}
