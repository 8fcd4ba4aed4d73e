//! Which traces' samples carry links: a per-trace decision made when a
//! context is set (never in the signal handler or the allocator).
//!
//! - [`AlwaysSample`] (the default) and [`NeverSample`];
//! - [`ProbabilisticSampler`]: a share `p` of traces, decided from the trace
//!   id exactly as OpenTelemetry's `TraceIdRatioBased` sampler does (the
//!   low 8 bytes as a big-endian integer, shifted right by one, below
//!   `p · 2^63`), so every service with the same `p` links the same traces,
//!   and a trace the tracer sampled at rate `p` is the one profiled;
//! - [`RateSampler`]: at most `n` new traces per second. The decision is
//!   remembered per trace (a fixed table of recent trace ids), so a trace's
//!   later spans, on any thread, get the decision its first span got.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::Instant;

use crate::error::Error;

/// Decides, per trace, whether samples taken in it carry its ids.
///
/// Called on the application's thread each time a context is set: keep it
/// cheap, lock-free if possible, and deterministic per trace id.
pub trait SamplingStrategy: Send + Sync + 'static {
    /// Whether samples of trace `trace_id` carry links.
    fn should_link(&self, trace_id: &[u8; 16]) -> bool;
}

/// Links every trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysSample;

impl SamplingStrategy for AlwaysSample {
    fn should_link(&self, _: &[u8; 16]) -> bool {
        true
    }
}

/// Links no trace (span names are still recorded).
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverSample;

impl SamplingStrategy for NeverSample {
    fn should_link(&self, _: &[u8; 16]) -> bool {
        false
    }
}

/// Links a share `p` of traces, chosen by trace id like OpenTelemetry's
/// `TraceIdRatioBased`.
#[derive(Debug, Clone, Copy)]
pub struct ProbabilisticSampler {
    ratio: f64,
    upper_bound: u64,
}

impl ProbabilisticSampler {
    /// A sampler linking a share `ratio` of traces.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] unless `0.0 <= ratio <= 1.0`.
    pub fn new(ratio: f64) -> Result<Self, Error> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::Config {
                setting: "ProbabilisticSampler ratio",
                value: ratio.to_string(),
                fix: "is not a share of traces: use a value from 0.0 to 1.0 (0.25 links one trace in four)"
                    .into(),
            });
        }
        // As the OpenTelemetry SDKs compute it (the f64 → u64 cast saturates).
        Ok(Self { ratio, upper_bound: (ratio * (1u64 << 63) as f64) as u64 })
    }

    /// The share of traces linked.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }
}

impl SamplingStrategy for ProbabilisticSampler {
    fn should_link(&self, trace_id: &[u8; 16]) -> bool {
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        (u64::from_be_bytes(low) >> 1) < self.upper_bound
    }
}

/// Links at most `per_second` new traces each second.
#[derive(Debug)]
pub struct RateSampler {
    per_second: u32,
    started: Instant,
    /// `second << 32 | traces linked in that second`.
    window: AtomicU64,
    /// Recent decisions: `(trace word & !1) | linked`, 0 = empty slot.
    decisions: Box<[AtomicU64]>,
}

/// Decisions remembered by a [`RateSampler`] (a trace whose entry was
/// overwritten by a later one is decided again).
const RATE_DECISIONS: usize = 4096;

impl RateSampler {
    /// A sampler linking up to `per_second` new traces per second.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `per_second` is 0 (use [`NeverSample`]).
    pub fn new(per_second: u32) -> Result<Self, Error> {
        if per_second == 0 {
            return Err(Error::Config {
                setting: "RateSampler per_second",
                value: "0".into(),
                fix: "links nothing: use at least 1 trace per second, or NeverSample to link none"
                    .into(),
            });
        }
        Ok(Self {
            per_second,
            started: Instant::now(),
            window: AtomicU64::new(0),
            decisions: (0..RATE_DECISIONS).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Takes one of this second's links, if any are left.
    fn take_token(&self) -> bool {
        let second = self.started.elapsed().as_secs() & 0xffff_ffff;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (at, used) = (current >> 32, current & 0xffff_ffff);
            let next = if at != second {
                second << 32 | 1
            } else if used < u64::from(self.per_second) {
                current + 1
            } else {
                return false;
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

impl SamplingStrategy for RateSampler {
    fn should_link(&self, trace_id: &[u8; 16]) -> bool {
        let mut hi = [0u8; 8];
        let mut lo = [0u8; 8];
        hi.copy_from_slice(&trace_id[..8]);
        lo.copy_from_slice(&trace_id[8..]);
        // Tag: the trace's low word without its lowest bit (that bit holds
        // the decision); never 0, so 0 can mean "empty".
        let tag = (u64::from_be_bytes(lo) ^ u64::from_be_bytes(hi).rotate_left(17)) & !1 | 2;
        let slot = &self.decisions
            [(tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize % RATE_DECISIONS];
        let seen = slot.load(Ordering::Relaxed);
        if seen & !1 == tag {
            return seen & 1 == 1;
        }
        let linked = self.take_token();
        slot.store(tag | u64::from(linked), Ordering::Relaxed);
        linked
    }
}

/// The process-wide strategy: null means [`AlwaysSample`].
static STRATEGY: AtomicPtr<Box<dyn SamplingStrategy>> = AtomicPtr::new(std::ptr::null_mut());

/// Sets the process-wide strategy that decides which traces' samples carry
/// links (default [`AlwaysSample`]). Contexts set before the call keep the
/// decision they got.
///
/// The replaced strategy is leaked, not freed: a thread setting a context
/// may still be using it, and there is no cheap way to know when it is done.
/// Set the strategy once at start-up (a few bytes per call otherwise).
pub fn set_sampling_strategy(strategy: impl SamplingStrategy) {
    let boxed: Box<Box<dyn SamplingStrategy>> = Box::new(Box::new(strategy));
    STRATEGY.store(Box::into_raw(boxed), Ordering::Release);
}

/// The current strategy's decision for `trace_id`.
pub(super) fn should_link(trace_id: &[u8; 16]) -> bool {
    let strategy = STRATEGY.load(Ordering::Acquire);
    if strategy.is_null() {
        return true;
    }
    // SAFETY: non-null values come from `Box::into_raw` in
    // `set_sampling_strategy` and are never freed, so the pointer is valid
    // for the life of the process; `SamplingStrategy: Sync` allows the
    // shared use from any thread.
    unsafe { &*strategy }.should_link(trace_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(low: u64) -> [u8; 16] {
        let mut t = [0xabu8; 16];
        t[8..].copy_from_slice(&low.to_be_bytes());
        t
    }

    #[test]
    fn probabilistic_matches_opentelemetry() {
        let s = ProbabilisticSampler::new(0.25).unwrap_or_else(|e| panic!("{e}"));
        // Bound = 2^61: (low >> 1) < 2^61  ⇔  low < 2^62.
        assert!(s.should_link(&trace((1 << 62) - 1)));
        assert!(!s.should_link(&trace(1 << 62)));
        assert!(ProbabilisticSampler::new(1.0).is_ok_and(|s| s.should_link(&trace(u64::MAX))));
        assert!(ProbabilisticSampler::new(0.0).is_ok_and(|s| !s.should_link(&trace(0))));
        for bad in [-0.1, 1.5, f64::NAN] {
            assert!(ProbabilisticSampler::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_sampler_caps_new_traces_and_remembers() {
        let s = RateSampler::new(3).unwrap_or_else(|e| panic!("{e}"));
        let decisions: Vec<bool> = (1..=10u64).map(|i| s.should_link(&trace(i << 8))).collect();
        // Runs in well under a second: three linked, then none (unless the
        // second rolled over mid-test, which gives more, never fewer).
        assert!(decisions.iter().take(3).all(|&d| d), "{decisions:?}");
        let linked = decisions.iter().filter(|&&d| d).count();
        assert!((3..=6).contains(&linked), "{decisions:?}");
        // The same trace gets the same answer again.
        for (i, &d) in (1..=10u64).zip(&decisions) {
            assert_eq!(s.should_link(&trace(i << 8)), d);
        }
        assert!(RateSampler::new(0).is_err());
    }
}
