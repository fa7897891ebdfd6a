//! The phantom's own seeded random numbers.
//!
//! Why not a crate: a phantom's ground truth must be reproducible from its seed alone, on every
//! platform and for every future version of the program, so the generator is fixed here and never
//! changes: xoshiro256** 1.0 (Blackman & Vigna, "Scrambled linear pseudorandom number
//! generators", ACM TOMS 47(4), 2021) seeded through SplitMix64 (Steele, Lea & Flood, "Fast
//! splittable pseudorandom number generators", OOPSLA 2014), exactly as the authors recommend.
//! Uniform draws use only integer operations and one exact conversion, so feature placements are
//! bit-identical everywhere.

/// SplitMix64: one 64-bit state, used to expand seeds (Steele et al. 2014).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Mixes a seed with further integers into one well-distributed seed (used to give every tone,
/// scene and random stream its own independent sequence).
pub(crate) fn mix_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut sm = SplitMix64::new(seed);
    let mut h = sm.next_u64();
    for &p in parts {
        let mut s = SplitMix64::new(h ^ p.wrapping_mul(0xD605_BBB5_8C8A_BBB3));
        h = s.next_u64();
    }
    h
}

/// xoshiro256** 1.0 (Blackman & Vigna 2021).
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    s: [u64; 4],
    spare_normal: Option<f64>,
}

impl Rng {
    /// A generator for one named stream of one seed. Streams are independent: drawing more from
    /// the noise stream never moves a feature.
    pub(crate) fn new(seed: u64, stream: u64) -> Rng {
        let mut sm = SplitMix64::new(mix_seed(seed, &[stream]));
        let s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        Rng {
            s,
            spare_normal: None,
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits (exact conversion).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)` (or exactly `lo` when `lo == hi`).
    pub(crate) fn range(&mut self, [lo, hi]: [f64; 2]) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal by the Box–Muller transform (Box & Muller, Ann. Math. Statist. 29, 1958).
    pub(crate) fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        // 1 − u lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare_normal = Some(r * s);
        r * c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_matches_reference_vector() {
        // Reference: the C implementation seeded with s = {1, 2, 3, 4}.
        let mut r = Rng {
            s: [1, 2, 3, 4],
            spare_normal: None,
        };
        let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(first, [11520, 0, 1509978240]);
    }

    #[test]
    fn splitmix_matches_reference_vector() {
        // Reference: splitmix64.c seeded with 1234567.
        let mut s = SplitMix64::new(1234567);
        assert_eq!(s.next_u64(), 6457827717110365317);
        assert_eq!(s.next_u64(), 3203168211198807973);
    }

    #[test]
    fn streams_differ_and_uniform_is_in_range() {
        let mut a = Rng::new(7, 1);
        let mut b = Rng::new(7, 2);
        assert_ne!(a.next_u64(), b.next_u64());
        for _ in 0..10_000 {
            let u = a.uniform();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
