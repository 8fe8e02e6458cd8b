//! Per-caller token buckets (DESIGN.md §3, "Rate limits").
//!
//! One keyed `governor` limiter per tier (GCRA, which is a token bucket stated in
//! arrival times): the bucket holds a minute's worth of requests and refills
//! continuously. Anonymous callers are keyed by client IP, users by id. The decision
//! carries what the `X-RateLimit-*` headers and `retry_after` need.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, QuantaClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};

use crate::domain::{Caller, Tier};

/// Requests per minute per tier; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierLimits {
    pub anonymous: u32,
    pub free: u32,
    pub pro: u32,
    pub enterprise: u32,
    /// Redirects per minute per client IP; 0 (the default) turns it off.
    pub redirect: u32,
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

pub struct RateLimiter {
    clock: QuantaClock,
    limits: TierLimits,
    anonymous: Option<Bucket>,
    free: Option<Bucket>,
    pro: Option<Bucket>,
    enterprise: Option<Bucket>,
    redirect: Option<Bucket>,
}

impl RateLimiter {
    pub fn new(limits: TierLimits) -> Self {
        let clock = QuantaClock::default();
        Self {
            anonymous: Bucket::new(limits.anonymous, &clock),
            free: Bucket::new(limits.free, &clock),
            pro: Bucket::new(limits.pro, &clock),
            enterprise: Bucket::new(limits.enterprise, &clock),
            redirect: Bucket::new(limits.redirect, &clock),
            clock,
            limits,
        }
    }

    pub fn limits(&self) -> &TierLimits {
        &self.limits
    }

    /// Takes one token for an API request. `None` when the caller is unlimited.
    pub fn check_api(&self, caller: &Caller, ip: IpAddr) -> Option<Decision> {
        let (bucket, subject) = match caller {
            Caller::Anonymous => (self.anonymous.as_ref(), Subject::Ip(ip)),
            Caller::User { id, tier } => {
                let bucket = match tier {
                    Tier::Free => self.free.as_ref(),
                    Tier::Pro => self.pro.as_ref(),
                    Tier::Enterprise => self.enterprise.as_ref(),
                    Tier::Admin => None,
                };
                (bucket, Subject::User(*id))
            }
        };
        bucket.map(|b| self.check(b, &subject))
    }

    /// Takes one token for a redirect from `ip`. `None` when redirects are unlimited.
    pub fn check_redirect(&self, ip: IpAddr) -> Option<Decision> {
        self.redirect.as_ref().map(|b| self.check(b, &Subject::Ip(ip)))
    }

    fn check(&self, bucket: &Bucket, subject: &Subject) -> Decision {
        match bucket.gcra.check_key(subject) {
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
                Decision {
                    allowed: false,
                    limit: bucket.limit,
                    remaining: 0,
                    reset_secs: refill_secs(bucket.limit, bucket.limit),
                    retry_after_secs: retry.max(1),
                }
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
        ]
        .into_iter()
        .flatten()
        {
            b.gcra.retain_recent();
            b.gcra.shrink_to_fit();
        }
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
        }
    }

    #[test]
    fn bucket_allows_limit_then_refuses_with_retry_after() {
        let rl = RateLimiter::new(limits(5));
        let alice = Caller::User {
            id: 1,
            tier: Tier::Free,
        };
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for expected_remaining in (0..5).rev() {
            let d = rl.check_api(&alice, ip).unwrap();
            assert!(d.allowed);
            assert_eq!(d.limit, 5);
            assert_eq!(d.remaining, expected_remaining);
        }
        let d = rl.check_api(&alice, ip).unwrap();
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
            .unwrap()
            .allowed
        );
    }

    #[test]
    fn anonymous_is_keyed_by_ip_and_admin_is_unlimited() {
        let rl = RateLimiter::new(limits(5));
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        for _ in 0..3 {
            assert!(rl.check_api(&Caller::Anonymous, a).unwrap().allowed);
        }
        assert!(!rl.check_api(&Caller::Anonymous, a).unwrap().allowed);
        assert!(rl.check_api(&Caller::Anonymous, b).unwrap().allowed);
        assert!(
            rl.check_api(
                &Caller::User {
                    id: 9,
                    tier: Tier::Admin
                },
                a
            )
            .is_none()
        );
    }

    #[test]
    fn zero_means_unlimited() {
        let rl = RateLimiter::new(limits(0));
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(
            rl.check_api(
                &Caller::User {
                    id: 1,
                    tier: Tier::Free
                },
                ip
            )
            .is_none()
        );
        assert!(rl.check_redirect(ip).is_none());
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
