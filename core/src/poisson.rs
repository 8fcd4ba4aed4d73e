//! Poisson sampling over allocated bytes.
//!
//! Sample points fall on the stream of allocated bytes as a Poisson process
//! with mean spacing `R` (default 524288 = 512 KiB, as Go's `MemProfileRate`,
//! jemalloc's `lg_prof_sample=19` and libdatadog). The gaps between points are
//! exponential: after each sample the next gap is drawn as `-R·ln(U)`
//! (tcmalloc `Sampler::PickNextSamplingPoint`, Go `fastexprand`). Because the
//! exponential distribution is memoryless, a block of `s` bytes contains at
//! least one point — and is sampled — with probability
//!
//! ```text
//!     p(s) = 1 - exp(-s / R)          weight w(s) = 1 / p(s)
//! ```
//!
//! and a sampled block stands for `w(s)` blocks and `w(s)·s` bytes. Summing
//! these per-sample weights gives unbiased estimates (google/pprof
//! `legacy_profile.go` applies the same formula, but per stack on *average*
//! sizes, which is biased when sizes vary: jemalloc `prof_data.c`).
//!
//! The logarithm is libm's, not a fast approximation: the draw happens once per
//! ~R bytes, so exactness costs nothing measurable and keeps the weights
//! consistent with the gaps (dd-trace-php#4159 overestimated by ~50% when the
//! two disagreed).

/// Default mean sampling interval in bytes.
pub const DEFAULT_MEAN_BYTES: u64 = 512 * 1024;
/// Smallest accepted mean interval (1 byte samples everything: exact mode).
pub const MIN_MEAN_BYTES: u64 = 1;
/// Largest accepted mean interval (1 TiB).
pub const MAX_MEAN_BYTES: u64 = 1 << 40;
/// Gaps are capped so a countdown never overflows `isize`.
pub const MAX_GAP: u64 = 1 << 50;

/// A small, fast PRNG (xorshift64*, Vigna 2016). Not cryptographic; its job is
/// to make gaps independent of the program's allocation pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// Seeds the generator; a zero seed is replaced (xorshift has no zero state).
    pub const fn new(seed: u64) -> Self {
        // SplitMix64 finaliser spreads nearby seeds (thread addresses, tids).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Self { state: if z == 0 { 0x853c_49e6_748f_ea9b } else { z } }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A uniform draw in (0, 1].
    #[inline]
    pub fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// The raw state (to store it in a thread-local cell).
    pub const fn state(&self) -> u64 {
        self.state
    }

    /// Rebuilds a generator from [`Rng::state`]'s value.
    pub const fn from_state(state: u64) -> Self {
        Self { state: if state == 0 { 0x853c_49e6_748f_ea9b } else { state } }
    }
}

/// Draws the number of bytes until the next sample point: `⌊-mean·ln U⌋`,
/// capped at [`MAX_GAP`]. Allocation-free, async-signal-safe.
#[inline]
pub fn next_gap(rng: &mut Rng, mean: u64) -> u64 {
    let u = rng.next_open01();
    let gap = -libm::log(u) * mean as f64;
    if gap >= MAX_GAP as f64 { MAX_GAP } else { gap as u64 }
}

/// Probability that a block of `size` bytes is sampled at mean interval `mean`.
#[inline]
pub fn sample_probability(size: u64, mean: u64) -> f64 {
    -libm::expm1(-(size as f64) / mean as f64)
}

/// Unbiasing weight `1 / p(size)`: how many blocks of this size one sample
/// stands for. At least 1.
#[inline]
pub fn sample_weight(size: u64, mean: u64) -> f64 {
    let p = sample_probability(size, mean);
    if p > 0.0 { (1.0 / p).max(1.0) } else { f64::MAX }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn gaps_have_the_requested_mean() {
        let mut rng = Rng::new(42);
        let n = 200_000u64;
        let mean = 524_288u64;
        let sum: u64 = (0..n).map(|_| next_gap(&mut rng, mean)).sum();
        let got = sum as f64 / n as f64;
        // Exponential: sd = mean, so the sample mean's sd is mean/sqrt(n).
        let tol = 4.0 * mean as f64 / (n as f64).sqrt();
        assert!((got - mean as f64).abs() < tol, "mean {got}, want {mean} ± {tol}");
    }

    #[test]
    fn sampling_rate_matches_probability() {
        // Simulate the countdown on 4 KiB blocks and compare the sampled share
        // with p(4096) — the identity the weights rely on.
        let mut rng = Rng::new(7);
        let mean = 65_536u64;
        let size = 4096i64;
        let mut countdown = next_gap(&mut rng, mean) as i64;
        let (mut sampled, n) = (0u64, 400_000u64);
        for _ in 0..n {
            countdown -= size;
            if countdown < 0 {
                sampled += 1;
                countdown = next_gap(&mut rng, mean) as i64;
            }
        }
        let p = sample_probability(size as u64, mean);
        let expect = p * n as f64;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!((sampled as f64 - expect).abs() < 4.0 * sd, "{sampled} vs {expect} ± {sd}");
    }

    #[test]
    fn weight_is_inverse_probability() {
        assert!((sample_weight(4096, 524_288) - 128.5).abs() < 0.1);
        assert!((sample_weight(1 << 30, 524_288) - 1.0).abs() < 1e-9);
        assert!(sample_weight(1, 1) >= 1.0);
    }

    #[test]
    fn rng_never_sticks_at_zero() {
        let mut r = Rng::from_state(0);
        assert_ne!(r.next_u64(), 0);
        assert_ne!(Rng::new(0).state(), 0);
    }
}
