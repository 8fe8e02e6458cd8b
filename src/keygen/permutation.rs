//! The keyed bijection that turns counter values into codes that look random.
//!
//! A balanced Feistel network over 42 bits (two 21-bit halves) with SipHash-1-3 as
//! the keyed round function is a permutation of `[0, 2^42)` for any key. The code
//! space is `[0, 62^7)` (≈ 3.5·10¹²), a little smaller than 2^42 (≈ 4.4·10¹²), so
//! we *cycle-walk*: apply the network again until the value lands inside the code
//! space. Cycle-walking a permutation restricted to a subset is itself a permutation
//! of that subset, so distinct counters always give distinct codes and no
//! collision check or "used keys" set is ever needed. Without the key, consecutive
//! counters give codes that share nothing visible, so codes cannot be enumerated.

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

/// 62^7: the number of 7-character base62 codes.
pub const CODE_SPACE: u64 = 3_521_614_606_208;
pub const CODE_LEN: usize = 7;
const HALF_BITS: u32 = 21;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;
/// Eight rounds: well past the four Luby–Rackoff needs for a strong pseudo-random
/// permutation, and still far above the throughput target (see bench/keygen.rs).
const ROUNDS: u64 = 8;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Clone)]
pub struct Permutation {
    prf: SipHasher13,
}

impl Permutation {
    pub fn new(key: [u8; 16]) -> Self {
        Self {
            prf: SipHasher13::new_with_key(&key),
        }
    }

    fn round(&self, i: u64, half: u64) -> u64 {
        let mut h = self.prf;
        h.write_u64((i << 32) | half);
        h.finish() & HALF_MASK
    }

    fn feistel(&self, x: u64) -> u64 {
        let (mut l, mut r) = (x >> HALF_BITS, x & HALF_MASK);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(i, r));
        }
        (l << HALF_BITS) | r
    }

    fn feistel_inverse(&self, x: u64) -> u64 {
        let (mut l, mut r) = (x >> HALF_BITS, x & HALF_MASK);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        (l << HALF_BITS) | r
    }

    /// Maps `n` in `[0, CODE_SPACE)` to another value in that range, bijectively.
    pub fn permute(&self, n: u64) -> u64 {
        debug_assert!(n < CODE_SPACE);
        let mut x = self.feistel(n);
        while x >= CODE_SPACE {
            x = self.feistel(x);
        }
        x
    }

    /// The inverse of [`Self::permute`]; used to prove bijectivity in tests.
    pub fn unpermute(&self, y: u64) -> u64 {
        let mut x = self.feistel_inverse(y);
        while x >= CODE_SPACE {
            x = self.feistel_inverse(x);
        }
        x
    }

    /// The 7-character code for counter value `n`.
    pub fn code_for(&self, n: u64) -> String {
        encode_base62(self.permute(n))
    }
}

/// Fixed-width base62: every value below [`CODE_SPACE`] is exactly 7 characters.
pub fn encode_base62(mut v: u64) -> String {
    let mut buf = [b'0'; CODE_LEN];
    for slot in buf.iter_mut().rev() {
        *slot = ALPHABET[(v % 62) as usize];
        v /= 62;
    }
    buf.iter().map(|&b| b as char).collect()
}

pub fn decode_base62(s: &str) -> Option<u64> {
    let mut v: u64 = 0;
    for b in s.bytes() {
        let d = ALPHABET.iter().position(|&a| a == b)? as u64;
        v = v.checked_mul(62)?.checked_add(d)?;
    }
    Some(v)
}

/// A code drawn from the operating system's CSPRNG, for when no block can be leased.
pub fn random_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| ALPHABET[rng.random_range(0..62)] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn perm() -> Permutation {
        Permutation::new(*b"0123456789abcdef")
    }

    #[test]
    fn base62_is_fixed_width_and_round_trips() {
        assert_eq!(encode_base62(0), "0000000");
        assert_eq!(encode_base62(CODE_SPACE - 1), "zzzzzzz");
        assert_eq!(decode_base62("zzzzzzz"), Some(CODE_SPACE - 1));
    }

    #[test]
    fn consecutive_counters_do_not_give_neighbouring_codes() {
        let p = perm();
        let a = p.permute(1000);
        let b = p.permute(1001);
        assert!(a.abs_diff(b) > 1_000_000, "{a} {b}");
    }

    #[test]
    fn different_keys_give_different_codes() {
        let other = Permutation::new(*b"fedcba9876543210");
        let same = (0..100)
            .filter(|&n| perm().permute(n) == other.permute(n))
            .count();
        assert!(same < 2);
    }

    #[test]
    fn dense_range_has_no_collisions() {
        let p = perm();
        let codes: HashSet<String> = (0..200_000).map(|n| p.code_for(n)).collect();
        assert_eq!(codes.len(), 200_000);
    }

    proptest! {
        /// Bijective: every sampled value maps back to itself, and a sampled window
        /// of consecutive counters yields distinct outputs.
        #[test]
        fn permutation_is_bijective_on_sampled_ranges(start in 0u64..CODE_SPACE - 2_000) {
            let p = perm();
            let mut seen = HashSet::new();
            for n in start..start + 2_000 {
                let y = p.permute(n);
                prop_assert!(y < CODE_SPACE);
                prop_assert_eq!(p.unpermute(y), n);
                prop_assert!(seen.insert(y));
            }
        }

        #[test]
        fn codes_are_always_seven_base62_chars(n in 0u64..CODE_SPACE, key in any::<[u8; 16]>()) {
            let code = Permutation::new(key).code_for(n);
            prop_assert_eq!(code.len(), CODE_LEN);
            prop_assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
        }

        #[test]
        fn random_codes_are_seven_base62_chars(_i in 0..100u8) {
            let c = random_code();
            prop_assert_eq!(c.len(), CODE_LEN);
            prop_assert!(c.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }
}
