//! HyperLogLog: the mergeable unique-visitor sketch kept per link-hour.
//!
//! Why hand-written: the sketch is stored in the database and merged across hours,
//! instances and versions, so its byte format is part of our schema and must never
//! change under us with a crate upgrade. The algorithm is small and fully tested here.
//!
//! Precision 14 (16,384 one-byte registers) gives a standard error of 0.81 %, so the
//! promised "under 2 %" holds with margin. The estimator is Ertl's improved raw
//! estimator ("New cardinality estimation algorithms for HyperLogLog sketches", 2017),
//! which is unbiased from one visitor to billions without HLL++'s empirical tables.
//!
//! Encoding (first byte is the format):
//! * `1` sparse: `(u16 LE register, u8 value)` for every non-zero register, ascending.
//!   An hour with a few hundred visitors costs a few hundred bytes, not 16 KiB.
//! * `2` dense: the 16,384 registers as bytes.

pub const PRECISION: u32 = 14;
pub const REGISTERS: usize = 1 << PRECISION;
/// Bits left after the register index; a register holds at most `Q + 1`.
const Q: u32 = 64 - PRECISION;
const SPARSE: u8 = 1;
const DENSE: u8 = 2;

#[derive(Clone, PartialEq, Eq)]
pub struct Hll {
    registers: Box<[u8]>,
}

impl std::fmt::Debug for Hll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hll(~{})", self.estimate())
    }
}

impl Default for Hll {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("corrupt unique-visitor sketch")]
pub struct CorruptSketch;

impl Hll {
    pub fn new() -> Self {
        Self {
            registers: vec![0u8; REGISTERS].into_boxed_slice(),
        }
    }

    /// Adds one visitor. `hash` must already be uniformly distributed (the visitor
    /// hash is a keyed SipHash, so it is).
    pub fn insert(&mut self, hash: u64) {
        let index = (hash >> Q) as usize;
        let rest = hash << PRECISION;
        // Position of the first 1 bit in the remaining Q bits, or Q + 1 if none.
        let rank = if rest == 0 {
            Q + 1
        } else {
            rest.leading_zeros() + 1
        };
        let rank = rank.min(Q + 1) as u8;
        if let Some(r) = self.registers.get_mut(index)
            && *r < rank
        {
            *r = rank;
        }
    }

    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// Merges an encoded sketch straight into this one, without decoding it first:
    /// a 30-day query merges 720 of them.
    pub fn merge_encoded(&mut self, bytes: &[u8]) -> Result<(), CorruptSketch> {
        match bytes.split_first() {
            None => Ok(()),
            Some((&SPARSE, rest)) => {
                if rest.len() % 3 != 0 {
                    return Err(CorruptSketch);
                }
                for entry in rest.chunks_exact(3) {
                    let index = usize::from(u16::from_le_bytes([entry[0], entry[1]]));
                    let value = entry[2];
                    let r = self.registers.get_mut(index).ok_or(CorruptSketch)?;
                    *r = (*r).max(value);
                }
                Ok(())
            }
            Some((&DENSE, rest)) if rest.len() == REGISTERS => {
                for (a, b) in self.registers.iter_mut().zip(rest) {
                    *a = (*a).max(*b);
                }
                Ok(())
            }
            Some(_) => Err(CorruptSketch),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptSketch> {
        let mut h = Self::new();
        h.merge_encoded(bytes)?;
        Ok(h)
    }

    /// The smaller of the two encodings.
    pub fn encode(&self) -> Vec<u8> {
        let used = self.registers.iter().filter(|r| **r != 0).count();
        if used * 3 < REGISTERS {
            let mut out = Vec::with_capacity(1 + used * 3);
            out.push(SPARSE);
            for (i, r) in self.registers.iter().enumerate() {
                if *r != 0 {
                    out.extend_from_slice(&(i as u16).to_le_bytes());
                    out.push(*r);
                }
            }
            out
        } else {
            let mut out = Vec::with_capacity(1 + REGISTERS);
            out.push(DENSE);
            out.extend_from_slice(&self.registers);
            out
        }
    }

    /// Estimated number of distinct hashes inserted.
    pub fn estimate(&self) -> u64 {
        let m = REGISTERS as f64;
        let mut histogram = [0u32; Q as usize + 2];
        for r in self.registers.iter() {
            histogram[usize::from(*r).min(Q as usize + 1)] += 1;
        }
        let q = Q as usize;
        let mut z = m * tau(1.0 - f64::from(histogram[q + 1]) / m);
        for k in (1..=q).rev() {
            z = 0.5 * (z + f64::from(histogram[k]));
        }
        z += m * sigma(f64::from(histogram[0]) / m);
        if !z.is_finite() || z <= 0.0 {
            return 0;
        }
        let alpha = 1.0 / (2.0 * std::f64::consts::LN_2);
        (alpha * m * m / z).round() as u64
    }
}

fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use siphasher::sip::SipHasher13;
    use std::hash::Hasher;

    fn hash(seed: u64, i: u64) -> u64 {
        let mut h = SipHasher13::new_with_keys(seed, 0x6b75_727a);
        h.write_u64(i);
        h.finish()
    }

    fn sketch(seed: u64, range: std::ops::Range<u64>) -> Hll {
        let mut h = Hll::new();
        for i in range {
            h.insert(hash(seed, i));
        }
        h
    }

    fn relative_error(estimate: u64, truth: u64) -> f64 {
        (estimate as f64 - truth as f64).abs() / truth as f64
    }

    #[test]
    fn empty_is_zero_and_small_sets_are_exact_or_nearly() {
        assert_eq!(Hll::new().estimate(), 0);
        assert_eq!(sketch(1, 0..1).estimate(), 1);
        assert_eq!(sketch(1, 0..10).estimate(), 10);
        // Repeats do not count twice.
        let mut h = sketch(1, 0..100);
        for i in 0..100 {
            h.insert(hash(1, i));
        }
        assert_eq!(h.estimate(), 100);
    }

    #[test]
    fn error_stays_under_two_percent_up_to_two_million() {
        for &n in &[1_000u64, 10_000, 40_000, 80_000, 250_000, 2_000_000] {
            let est = sketch(7, 0..n).estimate();
            assert!(relative_error(est, n) < 0.02, "n={n} estimate={est}");
        }
    }

    #[test]
    fn both_encodings_round_trip() {
        let small = sketch(3, 0..500);
        let bytes = small.encode();
        assert_eq!(bytes[0], SPARSE);
        assert!(bytes.len() < 2000);
        assert_eq!(Hll::decode(&bytes).unwrap(), small);
        let big = sketch(3, 0..200_000);
        let bytes = big.encode();
        assert_eq!(bytes[0], DENSE);
        assert_eq!(Hll::decode(&bytes).unwrap(), big);
    }

    #[test]
    fn corrupt_bytes_are_refused() {
        assert_eq!(Hll::decode(&[9, 1, 2]), Err(CorruptSketch));
        assert_eq!(Hll::decode(&[SPARSE, 1, 2]), Err(CorruptSketch));
        assert_eq!(Hll::decode(&[DENSE, 1]), Err(CorruptSketch));
        assert_eq!(Hll::decode(&[SPARSE, 0xff, 0xff, 3]), Err(CorruptSketch));
    }

    proptest! {
        // A fixed seed: the estimate is random by nature (0.81 % standard error), so a
        // random sample of cases would fail now and then at 2.5 sigma. Fixed, the test
        // is a repeatable check of 24 varied visitor mixes.
        #![proptest_config(ProptestConfig {
            cases: 24,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x6b75_727a),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Merging hourly sketches equals sketching the union, and the union's
        /// estimate is within 2 % of the true number of distinct visitors, however the
        /// visitors overlap between hours.
        #[test]
        fn hll_accuracy_merge_of_overlapping_hours(
            seed in any::<u64>(),
            hours in proptest::collection::vec((0u64..300_000, 1u64..60_000), 1..8),
        ) {
            let mut merged = Hll::new();
            let mut union = Hll::new();
            let mut distinct = std::collections::BTreeSet::new();
            for (start, len) in &hours {
                let h = sketch(seed, *start..start + len);
                merged.merge_encoded(&h.encode()).unwrap();
                for i in *start..start + len {
                    union.insert(hash(seed, i));
                    distinct.insert(i);
                }
            }
            prop_assert_eq!(&merged, &union);
            let truth = distinct.len() as u64;
            let est = merged.estimate();
            prop_assert!(relative_error(est, truth) < 0.02, "truth={} estimate={}", truth, est);
        }
    }
}
