//! The adaptive overhead budget: keeps samples per second at or under what
//! the user allows by changing the sampling rates, on the drainer thread
//! (never on a hot path).
//!
//! ```text
//!  every second, per kind with a budget B (samples/s):
//!    rate r = samples taken in the last second / elapsed
//!    heap: interval' = clamp(interval · r / B, configured interval, 2^40)
//!    cpu:  hz'       = clamp(hz · B / r, 1, configured hz)
//!    applied only when it differs from the current value by more than 10 %
//!    (Poisson noise of a one-second count would otherwise keep it moving)
//! ```
//!
//! Samples per second are proportional to the heap rate `1/interval` (bytes
//! allocated per second being the workload's) and to the CPU rate `hz`
//! (busy threads being the workload's), so one proportional step lands on
//! the budget; the clamps keep the rates between the configured ones (the
//! most detail the user asked for) and the coarsest possible.
//!
//! Estimates stay unbiased across a change: each heap sample is weighted
//! with the interval its gap was drawn with (`lowprof_alloc::set_interval`),
//! each CPU sample with the timer period that produced it
//! (`lowprof_sampler::set_hz`).

use std::time::Instant;

/// Changes smaller than this fraction are not applied.
const DEADBAND: f64 = 0.10;

/// One kind's controller state.
#[derive(Debug)]
struct Meter {
    max_per_sec: f64,
    at: Instant,
    samples: u64,
}

impl Meter {
    fn new(max_per_sec: f64, samples: u64) -> Self {
        Self { max_per_sec, at: Instant::now(), samples }
    }

    /// Samples per second since the last call, restarting the count.
    fn rate(&mut self, samples: u64) -> Option<f64> {
        let elapsed = self.at.elapsed().as_secs_f64();
        if elapsed <= 0.0 {
            return None;
        }
        let rate = samples.saturating_sub(self.samples) as f64 / elapsed;
        self.at = Instant::now();
        self.samples = samples;
        Some(rate)
    }
}

/// The next heap interval for `rate` samples/s under budget `max`.
pub(crate) fn next_interval(current: u64, rate: f64, max: f64, floor: u64) -> Option<u64> {
    let wanted = if rate > 0.0 { current as f64 * rate / max } else { floor as f64 };
    let target = wanted.clamp(floor as f64, lowprof_core::poisson::MAX_MEAN_BYTES as f64) as u64;
    let change = (target as f64 - current as f64).abs() / current.max(1) as f64;
    (change > DEADBAND || (target == floor && current != floor && rate < max)).then_some(target)
}

/// The next CPU rate for `rate` samples/s under budget `max`.
pub(crate) fn next_hz(current: u32, rate: f64, max: f64, ceiling: u32) -> Option<u32> {
    let wanted = if rate > 0.0 { f64::from(current) * max / rate } else { f64::from(ceiling) };
    let target = wanted.clamp(1.0, f64::from(ceiling)).round() as u32;
    let change = (f64::from(target) - f64::from(current)).abs() / f64::from(current.max(1));
    (change > DEADBAND || (target == ceiling && current != ceiling && rate < max)).then_some(target)
}

/// Both controllers; `tick` once a second from the drainer.
#[derive(Debug)]
pub(crate) struct Budget {
    heap: Option<(Meter, u64)>,
    cpu: Option<(Meter, u32)>,
    /// The CPU rate now (Hz).
    pub cpu_hz: u32,
}

impl Budget {
    /// Controllers for the budgets given; `heap_floor` is the configured
    /// heap interval, `cpu_ceiling` the configured CPU rate.
    pub(crate) fn new(
        max_heap: Option<f64>,
        heap_floor: u64,
        max_cpu: Option<f64>,
        cpu_ceiling: u32,
    ) -> Self {
        let heap =
            max_heap.map(|max| (Meter::new(max, lowprof_alloc::stats().samples), heap_floor));
        let cpu = max_cpu
            .filter(|_| cpu_ceiling > 0)
            .map(|max| (Meter::new(max, cpu_samples()), cpu_ceiling));
        Self { heap, cpu, cpu_hz: cpu_ceiling }
    }

    /// Whether any budget is set.
    pub(crate) fn is_active(&self) -> bool {
        self.heap.is_some() || self.cpu.is_some()
    }

    /// Measures the last second's rates and adjusts.
    pub(crate) fn tick(&mut self) {
        if let Some((meter, floor)) = &mut self.heap {
            if let Some(rate) = meter.rate(lowprof_alloc::stats().samples) {
                let current = lowprof_alloc::interval();
                if let Some(next) = next_interval(current, rate, meter.max_per_sec, *floor) {
                    // In range by construction; an error would leave the
                    // interval as it was.
                    let _ = lowprof_alloc::set_interval(next);
                }
            }
        }
        if let Some((meter, ceiling)) = &mut self.cpu {
            if let Some(rate) = meter.rate(cpu_samples()) {
                if let Some(next) = next_hz(self.cpu_hz, rate, meter.max_per_sec, *ceiling) {
                    if lowprof_sampler::set_hz(next).is_ok() {
                        self.cpu_hz = next;
                        // The timers were re-created: start counting afresh.
                        meter.rate(cpu_samples());
                    }
                }
            }
        }
    }
}

/// CPU samples taken, kept or dropped (the budget is on the work done).
fn cpu_samples() -> u64 {
    let stats = lowprof_sampler::stats();
    stats.samples + stats.dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_interval_lands_on_the_budget_and_comes_back() {
        // 10× over: the interval grows tenfold.
        assert_eq!(next_interval(65_536, 1000.0, 100.0, 65_536), Some(655_360));
        // Within the dead band: left alone.
        assert_eq!(next_interval(655_360, 105.0, 100.0, 65_536), None);
        // The load halves: the interval halves.
        assert_eq!(next_interval(655_360, 50.0, 100.0, 65_536), Some(327_680));
        // Quiet: back to the configured interval, never below.
        assert_eq!(next_interval(131_072, 1.0, 100.0, 65_536), Some(65_536));
        assert_eq!(next_interval(65_536, 1.0, 100.0, 65_536), None);
        assert_eq!(next_interval(65_536, 0.0, 100.0, 65_536), None);
    }

    #[test]
    fn cpu_rate_drops_under_the_budget_and_recovers() {
        // Four busy threads at 99 Hz, budget 100/s: about 25 Hz.
        assert_eq!(next_hz(99, 396.0, 100.0, 99), Some(25));
        assert_eq!(next_hz(25, 100.0, 100.0, 99), None);
        // One thread left busy: back up, capped at the configured rate.
        assert_eq!(next_hz(25, 25.0, 100.0, 99), Some(99));
        assert_eq!(next_hz(99, 10.0, 100.0, 99), None);
        // Never below 1 Hz.
        assert_eq!(next_hz(2, 10_000.0, 1.0, 99), Some(1));
    }
}
