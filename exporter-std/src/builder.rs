//! `Profiler::builder()`: what to sample and how often, validated at
//! `start()` with errors that state the valid range.

use std::time::Duration;

use lowprof_sampler::TimerMode;

use crate::error::Error;
use crate::profiler::Profiler;

/// Default pause between two drains of the rings (and CPU thread checks).
///
/// Each wake-up of the drainer costs ~100 µs of CPU on a VM (measured with
/// `benches/examples/cpu_idle.rs`), so 50 ms keeps an idle profiler at ~0.2 %
/// of a core, while the rings (thousands of records) never come close to
/// full and a new thread waits at most this long for its CPU timer.
pub const DEFAULT_DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// Configures and starts a [`Profiler`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .start()"]
pub struct ProfilerBuilder {
    pub(crate) heap: bool,
    pub(crate) heap_interval: Option<u64>,
    pub(crate) cpu_hz: u32,
    pub(crate) cpu_timer: TimerMode,
    pub(crate) duration: Option<Duration>,
    pub(crate) drain_interval: Duration,
}

impl Default for ProfilerBuilder {
    fn default() -> Self {
        Self {
            heap: true,
            heap_interval: None,
            cpu_hz: lowprof_sampler::DEFAULT_HZ,
            cpu_timer: TimerMode::PerThread,
            duration: None,
            drain_interval: DEFAULT_DRAIN_INTERVAL,
        }
    }
}

impl ProfilerBuilder {
    /// Turns heap profiling on (the default) or off.
    pub fn heap(mut self, on: bool) -> Self {
        self.heap = on;
        self
    }

    /// Mean bytes allocated between two heap samples (default: the
    /// allocator's, 524288). Valid: 1 ..= 2^40.
    pub fn heap_interval(mut self, bytes: u64) -> Self {
        self.heap_interval = Some(bytes);
        self
    }

    /// CPU samples per CPU-second of each thread (default 99; 0 turns CPU
    /// profiling off). Valid: 1 ..= 1000.
    pub fn cpu_hz(mut self, hz: u32) -> Self {
        self.cpu_hz = hz;
        self
    }

    /// Per-thread CPU timers (the default) or the process-wide
    /// `setitimer(ITIMER_PROF)` fallback for systems without them.
    pub fn cpu_timer(mut self, mode: TimerMode) -> Self {
        self.cpu_timer = mode;
        self
    }

    /// Stops sampling by itself after `duration` (profiles stay available).
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// How often the drainer empties the rings and looks for new threads
    /// (default 50 ms). Shorter: new threads are sampled sooner and bursts
    /// drop less; longer: less drainer work. Clamped to 1 ms ..= 1 s.
    pub fn drain_interval(mut self, interval: Duration) -> Self {
        self.drain_interval = interval.clamp(Duration::from_millis(1), Duration::from_secs(1));
        self
    }

    /// Checks the configuration.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let Some(bytes) = self.heap_interval {
            lowprof_alloc::validate_interval(bytes)
                .map_err(|_| Error::InvalidHeapInterval { bytes })?;
        }
        if self.cpu_hz != 0
            && !(lowprof_sampler::MIN_HZ..=lowprof_sampler::MAX_HZ).contains(&self.cpu_hz)
        {
            return Err(Error::InvalidCpuHz { hz: self.cpu_hz });
        }
        Ok(())
    }

    /// Starts profiling. One profiler runs per process at a time.
    pub fn start(self) -> Result<Profiler, Error> {
        Profiler::start(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_states_the_range() {
        let e = ProfilerBuilder::default().heap_interval(0).validate().unwrap_err();
        assert!(matches!(e, Error::InvalidHeapInterval { bytes: 0 }));
        assert!(e.to_string().contains("1..=1099511627776"), "{e}");
        let e = ProfilerBuilder::default().heap_interval(u64::MAX).validate().unwrap_err();
        assert!(matches!(e, Error::InvalidHeapInterval { .. }));
        let e = ProfilerBuilder::default().cpu_hz(5000).validate().unwrap_err();
        assert!(e.to_string().contains("1..=1000"), "{e}");
        ProfilerBuilder::default().cpu_hz(0).heap_interval(1).validate().unwrap();
        ProfilerBuilder::default().cpu_hz(1000).heap_interval(1 << 40).validate().unwrap();
    }
}
