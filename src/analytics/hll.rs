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

/// In memory a sketch starts sparse (the registers that are set, sorted) and turns
/// dense past [`SPARSE_MAX`] of them: a batch folds thousands of link-hours that each
/// saw a handful of visitors, and 16 KiB apiece would dominate the batch's cost.
#[derive(Clone)]
pub struct Hll {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// `(register, value)`, ascending by register, values non-zero.
    Sparse(Vec<(u16, u8)>),
    Dense(Box<[u8]>),
}

/// Past this many set registers the in-memory sketch turns dense.
const SPARSE_MAX: usize = 2048;

impl PartialEq for Hll {
    fn eq(&self, other: &Self) -> bool {
        // The encoding is canonical: equal registers, equal bytes.
        self.encode() == other.encode()
    }
}

impl Eq for Hll {}

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
            repr: Repr::Sparse(Vec::new()),
        }
    }

    /// Raises one register to at least `value`.
    fn raise(&mut self, index: usize, value: u8) {
        if value == 0 || index >= REGISTERS {
            return;
        }
        match &mut self.repr {
            Repr::Dense(regs) => {
                if regs[index] < value {
                    regs[index] = value;
                }
            }
            Repr::Sparse(entries) => {
                match entries.binary_search_by_key(&(index as u16), |e| e.0) {
                    Ok(i) => entries[i].1 = entries[i].1.max(value),
                    Err(i) => entries.insert(i, (index as u16, value)),
                }
                if entries.len() > SPARSE_MAX {
                    self.densify();
                }
            }
        }
    }

    fn densify(&mut self) {
        if let Repr::Sparse(entries) = &self.repr {
            let mut regs = vec![0u8; REGISTERS].into_boxed_slice();
            for (i, v) in entries {
                regs[usize::from(*i)] = *v;
            }
            self.repr = Repr::Dense(regs);
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
        self.raise(index, rank.min(Q + 1) as u8);
    }

    pub fn merge(&mut self, other: &Hll) {
        match &other.repr {
            Repr::Sparse(entries) => {
                for (i, v) in entries {
                    self.raise(usize::from(*i), *v);
                }
            }
            Repr::Dense(theirs) => {
                self.densify();
                if let Repr::Dense(mine) = &mut self.repr {
                    for (a, b) in mine.iter_mut().zip(theirs.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// Merges an encoded sketch straight into this one, without decoding it first:
    /// a stats query merges dozens of them.
    pub fn merge_encoded(&mut self, bytes: &[u8]) -> Result<(), CorruptSketch> {
        match bytes.split_first() {
            None => Ok(()),
            Some((&SPARSE, rest)) => {
                if rest.len() % 3 != 0 {
                    return Err(CorruptSketch);
                }
                for entry in rest.chunks_exact(3) {
                    let index = usize::from(u16::from_le_bytes([entry[0], entry[1]]));
                    if index >= REGISTERS {
                        return Err(CorruptSketch);
                    }
                    self.raise(index, entry[2]);
                }
                Ok(())
            }
            Some((&DENSE, rest)) if rest.len() == REGISTERS => {
                self.densify();
                if let Repr::Dense(mine) = &mut self.repr {
                    for (a, b) in mine.iter_mut().zip(rest) {
                        *a = (*a).max(*b);
                    }
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

    /// The set registers, ascending.
    fn set_registers(&self) -> Vec<(u16, u8)> {
        match &self.repr {
            Repr::Sparse(entries) => entries.clone(),
            Repr::Dense(regs) => regs
                .iter()
                .enumerate()
                .filter(|(_, v)| **v != 0)
                .map(|(i, v)| (i as u16, *v))
                .collect(),
        }
    }

    /// The smaller of the two encodings (so equal sketches encode equally).
    pub fn encode(&self) -> Vec<u8> {
        let used = match &self.repr {
            Repr::Sparse(entries) => entries.len(),
            Repr::Dense(regs) => regs.iter().filter(|r| **r != 0).count(),
        };
        if used * 3 < REGISTERS {
            let mut out = Vec::with_capacity(1 + used * 3);
            out.push(SPARSE);
            for (i, v) in self.set_registers() {
                out.extend_from_slice(&i.to_le_bytes());
                out.push(v);
            }
            out
        } else {
            let mut out = Vec::with_capacity(1 + REGISTERS);
            out.push(DENSE);
            match &self.repr {
                Repr::Dense(regs) => out.extend_from_slice(regs),
                Repr::Sparse(entries) => {
                    out.resize(1 + REGISTERS, 0);
                    for (i, v) in entries {
                        out[1 + usize::from(*i)] = *v;
                    }
                }
            }
            out
        }
    }

    /// Estimated number of distinct hashes inserted.
    pub fn estimate(&self) -> u64 {
        let m = REGISTERS as f64;
        let mut histogram = [0u32; Q as usize + 2];
        match &self.repr {
            Repr::Dense(regs) => {
                for r in regs.iter() {
                    histogram[usize::from(*r).min(Q as usize + 1)] += 1;
                }
            }
            Repr::Sparse(entries) => {
                histogram[0] = (REGISTERS - entries.len()) as u32;
                for (_, v) in entries {
                    histogram[usize::from(*v).min(Q as usize + 1)] += 1;
                }
            }
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
    fn sparse_and_dense_in_memory_agree() {
        // 3,000 visitors: past the in-memory sparse limit, under the encoded one.
        let direct = sketch(5, 0..3_000);
        let mut pieces = Hll::new();
        for chunk in (0..3_000u64).collect::<Vec<_>>().chunks(100) {
            pieces.merge(&sketch(5, chunk[0]..chunk[chunk.len() - 1] + 1));
        }
        assert_eq!(pieces, direct);
        assert_eq!(pieces.encode(), direct.encode());
        assert_eq!(pieces.estimate(), direct.estimate());
        let mut dense_first = Hll::decode(&sketch(5, 0..200_000).encode()).unwrap();
        dense_first.merge(&sketch(5, 200_000..200_010));
        assert_eq!(dense_first, sketch(5, 0..200_010));
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
