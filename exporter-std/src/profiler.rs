//! The profiling session: starts the samplers and the drainer, turns
//! aggregates into profiles on request, and stops everything.
//!
//! ```text
//!  Profiler ──owns──► drainer thread ──► State (Mutex): aggregates
//!     │ heap_profile(): lock, drain, scan live blocks, copy stacks, unlock
//!     │                 ─► Symbolizer (its own Mutex) ─► Profile
//!     │ cpu_profile():  lock, drain, take the window, unlock ─► … ─► Profile
//!     └ stop():        stop samplers, join drainer, final profiles ─► Report
//! ```
//!
//! Symbolization runs outside the aggregate lock, so the drainer keeps
//! emptying the rings while a profile is built.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use crate::aggregate::{CpuKey, HeapKey, InUse};
use crate::assemble::{DROPPED_FRAME, Header, RawSample};
use crate::builder::ProfilerBuilder;
use crate::drain::{self, HeapBaseline, State, lock};
use crate::error::Error;
use crate::profile::{Label, LabelValue, Profile, ProfileKind, ValueType};
use crate::symbolize_thread::{Job, SymbolizeThread};

/// One profiler per process.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// What the session and its drainer share.
pub(crate) struct Shared {
    pub config: ProfilerBuilder,
    pub state: Mutex<State>,
    pub started: (SystemTime, Instant),
    /// Set to end the drainer.
    pub stopping: AtomicBool,
    /// Set once the samplers are stopped (by `duration` or `stop()`).
    pub sampling_stopped: AtomicBool,
    /// The CPU sampling period in nanoseconds.
    pub cpu_period: i64,
}

impl Shared {
    /// Stops both samplers (idempotent). Blocks sampled so far stay tracked.
    pub(crate) fn stop_sampling(&self) {
        if self.sampling_stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.config.heap {
            lowprof_alloc::stop();
        }
        if self.config.cpu_hz > 0 {
            lowprof_sampler::stop();
        }
    }
}

/// A running profiler. Dropping it stops profiling (as `stop()` does,
/// discarding the final profiles).
pub struct Profiler {
    shared: Arc<Shared>,
    drainer: Option<JoinHandle<()>>,
    symbolizer: Option<SymbolizeThread>,
    /// The process that started it: in a forked child its threads and locks
    /// are not there.
    pid: u32,
}

/// The final profiles returned by [`Profiler::stop`].
#[derive(Debug)]
pub struct Report {
    /// The heap at the moment of stopping, plus allocations since start
    /// (`None` if heap profiling was off or the allocator is not lowprof's).
    pub heap: Option<Profile>,
    /// CPU since start or since the last [`Profiler::cpu_profile`] (`None`
    /// if CPU profiling was off).
    pub cpu: Option<Profile>,
    /// Counters at the end.
    pub stats: Stats,
}

/// What the profiler has done, for monitoring it.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Heap sampling: samples, drops, live sampled blocks, exact totals.
    pub heap: lowprof_alloc::HeapStats,
    /// CPU sampling: signals, samples, drops, timed threads.
    pub cpu: lowprof_sampler::Stats,
    /// Records the drainer has taken from the rings.
    pub records_drained: u64,
    /// Distinct heap stacks seen.
    pub heap_stacks: usize,
    /// Distinct CPU stacks in the current window.
    pub cpu_stacks: usize,
    /// Whether sampling has stopped (by `duration`).
    pub sampling_stopped: bool,
}

impl Profiler {
    /// A builder with the defaults: heap on, CPU at 99 Hz.
    pub fn builder() -> ProfilerBuilder {
        ProfilerBuilder::default()
    }

    pub(crate) fn start(config: ProfilerBuilder) -> Result<Profiler, Error> {
        config.validate()?;
        if RUNNING.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(Error::AlreadyRunning);
        }
        match Self::start_running(config) {
            Ok(p) => Ok(p),
            Err(e) => {
                RUNNING.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    fn start_running(config: ProfilerBuilder) -> Result<Profiler, Error> {
        if config.heap {
            // Any allocation through a `SampledAlloc` marks it installed;
            // make sure this thread has made one.
            std::hint::black_box(Box::new(0u64));
            lowprof_alloc::start(config.heap_interval).map_err(Error::Heap)?;
        }
        if config.cpu_hz > 0 {
            let cpu = lowprof_sampler::Config { hz: config.cpu_hz, mode: config.cpu_timer };
            if let Err(e) = lowprof_sampler::start(cpu) {
                lowprof_alloc::stop();
                return Err(Error::Cpu(e));
            }
        }
        let shared = Arc::new(Shared {
            cpu_period: lowprof_sampler::period_nanos(config.cpu_hz),
            config,
            state: Mutex::new(State::new()),
            started: (SystemTime::now(), Instant::now()),
            stopping: AtomicBool::new(false),
            sampling_stopped: AtomicBool::new(false),
        });
        let symbolizer = match SymbolizeThread::spawn() {
            Ok(s) => s,
            Err(e) => {
                shared.stop_sampling();
                return Err(e);
            }
        };
        let for_thread = Arc::clone(&shared);
        let drainer = std::thread::Builder::new()
            .name("lowprof-drain".into())
            .spawn(move || drain::run(for_thread));
        match drainer {
            Ok(handle) => Ok(Profiler {
                shared,
                drainer: Some(handle),
                symbolizer: Some(symbolizer),
                pid: std::process::id(),
            }),
            Err(e) => {
                shared.stop_sampling();
                Err(Error::Spawn(e))
            }
        }
    }

    /// The heap profile now: Go's `alloc_objects`, `alloc_space` (since the
    /// profiler started) and `inuse_objects`, `inuse_space` (blocks live at
    /// this moment), unbiased per sample.
    pub fn heap_profile(&self) -> Result<Profile, Error> {
        self.symbolizer()?;
        let config = &self.shared.config;
        if !config.heap {
            return Err(Error::HeapDisabled);
        }
        if !lowprof_alloc::is_installed() {
            return Err(Error::HeapNotInstalled);
        }
        let (in_use, baseline) = self.in_use_now(config.cpu_hz > 0);
        let (stacks, values) = {
            let state = lock(&self.shared.state);
            let mut by_stack: hashbrown::HashMap<HeapKey, [f64; 4]> = hashbrown::HashMap::new();
            for (&s, e) in &state.heap.alloc {
                let v = by_stack.entry(s).or_default();
                v[0] += e.objects;
                v[1] += e.bytes;
            }
            for (&s, e) in &in_use.by_stack {
                let v = by_stack.entry(s).or_default();
                v[2] += e.objects;
                v[3] += e.bytes;
            }
            let mut keys: Vec<(HeapKey, [f64; 4])> = by_stack.into_iter().collect();
            keys.sort_unstable_by_key(|(k, _)| (k.stack, k.size));
            let mut stacks = Vec::with_capacity(keys.len());
            let mut values = Vec::with_capacity(keys.len());
            for (key, v) in keys {
                stacks.push((state.heap.stacks.get(key.stack).to_vec(), key.size));
                values.push(v.map(round));
            }
            (stacks, values)
        };
        let stats = lowprof_alloc::stats();
        let dropped = [
            stats.dropped_alloc_objects - baseline.dropped_objects,
            stats.dropped_alloc_bytes.saturating_sub(baseline.dropped_bytes) as f64,
            in_use.lost.objects,
            in_use.lost.bytes,
        ]
        .map(round);
        let samples: Vec<RawSample> = stacks
            .into_iter()
            .zip(values)
            .map(|((frames, size), v)| RawSample {
                frames,
                leaf_is_pc: false,
                values: v.to_vec(),
                labels: vec![Label {
                    key: "bytes".into(),
                    value: LabelValue::Num { value: size as i64, unit: "bytes".into() },
                }],
            })
            .collect();
        let synthetic: Vec<(&'static str, Vec<i64>)> = if dropped.iter().any(|&v| v != 0) {
            vec![(DROPPED_FRAME, dropped.to_vec())]
        } else {
            vec![]
        };
        let header = Header {
            kind: ProfileKind::Heap,
            sample_types: vec![
                ValueType::new("alloc_objects", "count"),
                ValueType::new("alloc_space", "bytes"),
                ValueType::new("inuse_objects", "count"),
                ValueType::new("inuse_space", "bytes"),
            ],
            default_sample_type: Some(3),
            period_type: ValueType::new("space", "bytes"),
            period: stats.interval as i64,
            start: self.shared.started.0,
            duration: self.shared.started.1.elapsed(),
            comments: heap_comments(&stats, &in_use),
        };
        self.symbolizer()?.build(Job { header, samples, synthetic, trim_allocator: true })
    }

    /// The sampled blocks live now, attributed to their stacks: scan the
    /// region first, then drain, so every block seen has had the chance to
    /// deliver its record; give records still in flight a second chance.
    fn in_use_now(&self, cpu: bool) -> (InUse, HeapBaseline) {
        let mut live = Vec::new();
        let mut in_use = InUse::default();
        let (epoch, baseline, mut unmatched) = {
            let mut state = lock(&self.shared.state);
            let epoch = state.heap.begin_snapshot();
            lowprof_alloc::for_each_live(|block| live.push(block));
            state.drain(true, cpu);
            let unmatched = state.heap.attribute(&live, &mut in_use);
            (epoch, state.heap_baseline, unmatched)
        };
        // Blocks from an earlier session will never get a record here.
        unmatched.retain(|b| {
            let earlier = b.sample_id < baseline.first_sample_id;
            if earlier {
                in_use.earlier.add(b.weight, b.size);
            }
            !earlier
        });
        if !unmatched.is_empty() {
            // A record is pushed right after its block is published: a
            // moment later it is in the rings.
            std::thread::sleep(std::time::Duration::from_millis(2));
            let mut state = lock(&self.shared.state);
            state.drain(true, cpu);
            unmatched = state.heap.attribute(&unmatched, &mut in_use);
        }
        for b in &unmatched {
            in_use.pending.add(b.weight, b.size);
        }
        lock(&self.shared.state).heap.prune(&live, epoch);
        (in_use, baseline)
    }

    /// The CPU profile since the profiler started or since the last call:
    /// `samples/count` and `cpu/nanoseconds`, labelled with `thread_id` and
    /// `thread_name`.
    pub fn cpu_profile(&self) -> Result<Profile, Error> {
        self.symbolizer()?;
        let config = &self.shared.config;
        if config.cpu_hz == 0 {
            return Err(Error::CpuDisabled);
        }
        let now = (SystemTime::now(), Instant::now());
        let (window, taken, dropped) = {
            let mut state = lock(&self.shared.state);
            state.drain(config.heap, true);
            let window = std::mem::replace(&mut state.cpu_window, now);
            let dropped_total = lowprof_sampler::stats().dropped_periods;
            let dropped = dropped_total.saturating_sub(state.cpu_dropped_reported);
            state.cpu_dropped_reported = dropped_total;
            (window, state.cpu.take(), dropped)
        };
        let period = self.shared.cpu_period;
        let mut rows: Vec<(&CpuKey, &u64)> = taken.periods.iter().collect();
        rows.sort_unstable_by_key(|(k, _)| (k.stack, k.thread));
        let samples: Vec<RawSample> = rows
            .into_iter()
            .map(|(key, &periods)| RawSample {
                frames: taken.stacks.get(key.stack).to_vec(),
                leaf_is_pc: true,
                values: vec![periods as i64, (periods as i64).saturating_mul(period)],
                labels: thread_labels(key.thread),
            })
            .collect();
        let synthetic: Vec<(&'static str, Vec<i64>)> = if dropped > 0 {
            vec![(DROPPED_FRAME, vec![dropped as i64, (dropped as i64).saturating_mul(period)])]
        } else {
            vec![]
        };
        let header = Header {
            kind: ProfileKind::Cpu,
            sample_types: vec![
                ValueType::new("samples", "count"),
                ValueType::new("cpu", "nanoseconds"),
            ],
            default_sample_type: Some(1),
            period_type: ValueType::new("cpu", "nanoseconds"),
            period,
            start: window.0,
            duration: now.1.duration_since(window.1),
            comments: vec![format!(
                "lowprof {}: cpu at {} Hz, {} sampling periods dropped in this window (in lowprof::dropped)",
                env!("CARGO_PKG_VERSION"),
                config.cpu_hz,
                dropped
            )],
        };
        // The window's samples carry their thread names now: names of
        // threads that have exited can go (the cache would grow forever).
        lowprof_sampler::forget_exited_threads();
        self.symbolizer()?.build(Job { header, samples, synthetic, trim_allocator: false })
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let state = lock(&self.shared.state);
        Stats {
            heap: lowprof_alloc::stats(),
            cpu: lowprof_sampler::stats(),
            records_drained: state.records,
            heap_stacks: state.heap.stacks.len(),
            cpu_stacks: state.cpu.stacks.len(),
            sampling_stopped: self.shared.sampling_stopped.load(Ordering::Acquire),
        }
    }

    /// Stops profiling and returns the final profiles.
    pub fn stop(mut self) -> Result<Report, Error> {
        if self.in_forked_child() {
            self.abandon_in_child();
            return Err(Error::ForkedChild);
        }
        self.shutdown();
        let config = &self.shared.config;
        let heap = if config.heap && lowprof_alloc::is_installed() {
            Some(self.heap_profile()?)
        } else {
            None
        };
        let cpu = if config.cpu_hz > 0 { Some(self.cpu_profile()?) } else { None };
        Ok(Report { heap, cpu, stats: self.stats() })
    }

    fn in_forked_child(&self) -> bool {
        std::process::id() != self.pid
    }

    fn symbolizer(&self) -> Result<&SymbolizeThread, Error> {
        if self.in_forked_child() {
            return Err(Error::ForkedChild);
        }
        self.symbolizer.as_ref().ok_or(Error::SymbolizerFailed)
    }

    /// In a forked child the drainer and symbolizer threads do not exist and
    /// their locks may be held for ever: turn heap sampling off (an atomic
    /// store; the child has no CPU timers, fork does not copy them) and leave
    /// the rest alone, never joining or locking.
    fn abandon_in_child(&mut self) {
        lowprof_alloc::stop();
        self.shared.sampling_stopped.store(true, Ordering::Release);
        if let Some(drainer) = self.drainer.take() {
            std::mem::forget(drainer);
        }
        if let Some(symbolizer) = self.symbolizer.take() {
            std::mem::forget(symbolizer);
        }
    }

    /// Stops the samplers and the drainer; idempotent.
    fn shutdown(&mut self) {
        if self.in_forked_child() {
            self.abandon_in_child();
            return;
        }
        self.shared.stop_sampling();
        if let Some(drainer) = self.drainer.take() {
            self.shared.stopping.store(true, Ordering::Release);
            drain::wake();
            let _ = drainer.join();
            RUNNING.store(false, Ordering::Release);
        }
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Profiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiler")
            .field("heap", &self.shared.config.heap)
            .field("cpu_hz", &self.shared.config.cpu_hz)
            .field("sampling_stopped", &self.shared.sampling_stopped.load(Ordering::Relaxed))
            .finish()
    }
}

/// The notes a heap profile carries: what was sampled and what was lost,
/// and a hint when stacks are missing.
fn heap_comments(stats: &lowprof_alloc::HeapStats, in_use: &InUse) -> Vec<String> {
    let mut comments = vec![format!(
        "lowprof {}: heap, {} samples, {} dropped (counted in {}), {} untracked",
        env!("CARGO_PKG_VERSION"),
        stats.samples,
        stats.dropped_samples,
        DROPPED_FRAME,
        stats.untracked_samples
    )];
    if in_use.pending.objects > 0.0 {
        comments.push(format!(
            "{:.0} bytes of blocks sampled during this snapshot are not in inuse_space yet (their records were \
             still in flight)",
            in_use.pending.bytes
        ));
    }
    if in_use.earlier.objects > 0.0 {
        comments.push(format!(
            "{:.0} bytes still live from an earlier profiler session are not in inuse_space",
            in_use.earlier.bytes
        ));
    }
    if stats.samples_without_stack > 0 {
        comments.push(format!(
            "{} of {} samples have no stack: build with RUSTFLAGS=\"-C force-frame-pointers=yes\" \
             (or [build] rustflags in .cargo/config.toml)",
            stats.samples_without_stack, stats.samples
        ));
    }
    comments
}

fn thread_labels(tid: u64) -> Vec<Label> {
    let mut labels = vec![Label {
        key: "thread_id".into(),
        value: LabelValue::Num { value: tid as i64, unit: String::new() },
    }];
    if let Some(name) = lowprof_sampler::thread_name(tid) {
        labels.push(Label { key: "thread_name".into(), value: LabelValue::Str(name) });
    }
    labels
}

fn round(v: f64) -> i64 {
    v.round() as i64
}
