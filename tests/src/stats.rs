//! How close a Poisson byte-sampling estimate must be to the truth.
//!
//! Each block of size `s` is sampled with probability `p = 1 - exp(-s/R)` and
//! then counts `s/p` bytes; the estimate of `n` such blocks is unbiased with
//! variance `n·s²·(1-p)/p` (jemalloc PROFILING_INTERNALS). Tests accept
//! estimates within 4 standard errors, as the issues ask: a correct sampler
//! fails one such check about once in 16 000 runs (exact binomial tails:
//! 4e-5 to 1.4e-4 per check here), and the suite makes about 27 of them, so
//! chance alone fails a CI run about once in 600.

/// Probability that a block of `size` bytes is sampled at mean interval `mean`.
pub fn probability(size: u64, mean: u64) -> f64 {
    -(-(size as f64) / mean as f64).exp_m1()
}

/// Standard error of the byte estimate for `count` blocks of `size` bytes.
pub fn sigma_bytes(count: u64, size: u64, mean: u64) -> f64 {
    let p = probability(size, mean);
    (count as f64 * (size as f64).powi(2) * (1.0 - p) / p).sqrt()
}

/// Standard error of the object-count estimate for `count` blocks.
pub fn sigma_objects(count: u64, size: u64, mean: u64) -> f64 {
    let p = probability(size, mean);
    (count as f64 * (1.0 - p) / p).sqrt()
}

/// Asserts `estimate` is within 4 standard errors of `truth`.
#[track_caller]
pub fn assert_within_4_sigma(what: &str, estimate: f64, truth: f64, sigma: f64) {
    let off = (estimate - truth).abs();
    // A floor of 0.5 absorbs rounding when sigma is ~0 (always-sampled sizes).
    let bound = 4.0 * sigma + 0.5 + truth * 1e-9;
    assert!(
        off <= bound,
        "{what}: estimate {estimate:.0} vs truth {truth:.0}: off by {off:.0} = {:.2} sigma (sigma {sigma:.0})",
        off / sigma.max(1e-9)
    );
    eprintln!(
        "{what}: estimate {estimate:.0}, truth {truth:.0}, {:.2} sigma",
        off / sigma.max(1e-9)
    );
}
