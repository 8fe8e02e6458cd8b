//! The one form in which a client IP is kept: a keyed hash.
//!
//! Click events carry it as the visitor hash, and the rate limiter and idempotency
//! keys use it where they would otherwise put the IP into Redis or the database. The
//! key is a per-deployment secret shared by every instance (kept in the store unless
//! configured), so one IP hashes the same on every instance, and nobody without the
//! key can undo the hash by hashing all 2^32 IPv4 addresses.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

/// Keyed hash (SipHash-1-3) of a client IP; IPv4-mapped IPv6 and plain IPv4 are one
/// visitor.
pub fn visitor_hash(key: &[u8; 16], ip: IpAddr) -> u64 {
    let (k0, k1) = key.split_at(8);
    let k0 = u64::from_le_bytes(k0.try_into().unwrap_or_default());
    let k1 = u64::from_le_bytes(k1.try_into().unwrap_or_default());
    let mut h = SipHasher13::new_with_keys(k0, k1);
    match ip.to_canonical() {
        IpAddr::V4(v4) => h.write(&v4.octets()),
        IpAddr::V6(v6) => h.write(&v6.octets()),
    }
    h.finish()
}

/// How an IP appears in a Redis key or an idempotency scope: its hash in hex.
pub fn ip_subject(key: &[u8; 16], ip: IpAddr) -> String {
    format!("{:016x}", visitor_hash(key, ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_hash_is_keyed_and_ignores_v4_mapping() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        let k1 = [1u8; 16];
        let k2 = [2u8; 16];
        assert_eq!(visitor_hash(&k1, ip), visitor_hash(&k1, mapped));
        assert_ne!(visitor_hash(&k1, ip), visitor_hash(&k2, ip));
        assert_ne!(
            visitor_hash(&k1, ip),
            visitor_hash(&k1, "203.0.113.10".parse().unwrap())
        );
    }

    #[test]
    fn an_ip_subject_is_the_hash_and_not_the_address() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let s = ip_subject(&[7u8; 16], ip);
        assert_eq!(s.len(), 16);
        assert!(!s.contains("203"), "{s}");
        assert_eq!(s, format!("{:016x}", visitor_hash(&[7u8; 16], ip)));
    }
}
