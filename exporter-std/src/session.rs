//! The profiling session: what the profiler's threads share, and how
//! aggregates become profiles.
//!
//! ```text
//!  Session (Arc) ◄── Profiler (start/stop), drainer, periodic exporter, pull server
//!   ├ state (Mutex): heap aggregate (+ alloc windows), CPU windows (one per consumer)
//!   ├ symbolizer thread (blazesym, !Send, on its own thread)
//!   │ heap_profile(): scan live blocks, drain, attribute ─► symbolize ─► Profile
//!   │ heap_round(alloc window): the same snapshot, plus the window's allocations
//!   │     taken under the same lock ─► cumulative / alloc delta / in-use Profiles
//!   └ cpu_profile_of(window): drain, take the window ─► symbolize ─► Profile
//! ```
//!
//! Symbolization runs outside the aggregate lock, so the drainer keeps
//! emptying the rings while a profile is built.
//!
//! A session is *closed* when its profiler shuts down (`stop()`, drop),
//! before another profiler can start: the rings are process-wide, so a
//! thread still holding the session (a `/debug/pprof` request in flight)
//! must not drain the next profiler's records. Closing happens under the
//! state lock and every drain checks it under the same lock; profiles asked
//! for afterwards fail with [`Error::Stopped`], and a CPU window being
//! waited for ends at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::aggregate::{CpuKey, CpuTime, HeapKey, InUse, is_linked};
use crate::assemble::{DROPPED_FRAME, Header, RawSample};
use crate::builder::ProfilerBuilder;
use crate::drain::{HeapBaseline, State, TakenWindow, USER_WINDOW, WindowId, lock};
use crate::error::Error;
use crate::profile::{Label, LabelValue, Profile, ProfileKind, Sample, ValueType};
use crate::profiler::Stats;
use crate::symbolize_thread::{Job, SymbolizeThread};
use crate::trace::{SPAN_ID_LABEL, SPAN_NAME_LABEL, TRACE_ID_LABEL};

/// What the profiler's threads share.
pub(crate) struct Session {
    pub config: ProfilerBuilder,
    pub state: Mutex<State>,
    pub started: (SystemTime, Instant),
    /// Set to end the drainer.
    pub stopping: AtomicBool,
    /// Set once the samplers are stopped (by `duration` or `stop()`).
    pub sampling_stopped: AtomicBool,
    /// The configured CPU sampling period in nanoseconds.
    pub cpu_period: i64,
    /// The CPU rate now (below `cpu_hz` while over the CPU budget).
    pub cpu_hz_now: std::sync::atomic::AtomicU32,
    symbolizer: SymbolizeThread,
    /// The process that started the session: in a forked child its threads
    /// and locks are not there.
    pid: u32,
    /// Set (and `closed_changed` signalled) by [`Session::close`]; the
    /// authority for drains is `State::is_closed`, this wakes sleepers.
    closed: Mutex<bool>,
    closed_changed: Condvar,
}

impl Session {
    pub(crate) fn new(
        config: ProfilerBuilder,
        symbolizer: SymbolizeThread,
        user_window: bool,
    ) -> Self {
        Self {
            cpu_period: lowprof_sampler::period_nanos(config.cpu_hz),
            cpu_hz_now: std::sync::atomic::AtomicU32::new(config.cpu_hz),
            config,
            state: Mutex::new(State::new(user_window)),
            started: (SystemTime::now(), Instant::now()),
            stopping: AtomicBool::new(false),
            sampling_stopped: AtomicBool::new(false),
            symbolizer,
            pid: std::process::id(),
            closed: Mutex::new(false),
            closed_changed: Condvar::new(),
        }
    }

    /// Closes the session (idempotent): nothing drains into it any more,
    /// profiles fail with [`Error::Stopped`], and [`Session::cpu_for`] calls
    /// waiting for their window return at once. Call it before another
    /// profiler can start.
    pub(crate) fn close(&self) {
        // Under the state lock: a drain in progress finishes first, and none
        // starts after this.
        lock(&self.state).close();
        *lock(&self.closed) = true;
        self.closed_changed.notify_all();
    }

    /// The state, locked, unless the session is closed.
    fn open_state(&self) -> Result<MutexGuard<'_, State>, Error> {
        let state = lock(&self.state);
        if state.is_closed() {
            return Err(Error::Stopped);
        }
        Ok(state)
    }

    /// Sleeps for `duration`, or until the session is closed; returns
    /// whether it was closed.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))] // for the pull endpoint
    fn sleep_unless_closed(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut closed = lock(&self.closed);
        loop {
            if *closed {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            closed = match self.closed_changed.wait_timeout(closed, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

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

    /// Whether this is a forked child of the process that started the session.
    pub(crate) fn in_forked_child(&self) -> bool {
        std::process::id() != self.pid
    }

    fn symbolizer(&self) -> Result<&SymbolizeThread, Error> {
        if self.in_forked_child() {
            return Err(Error::ForkedChild);
        }
        Ok(&self.symbolizer)
    }

    /// The heap profile now: Go's `alloc_objects`, `alloc_space` (since the
    /// profiler started) and `inuse_objects`, `inuse_space` (blocks live at
    /// this moment), unbiased per sample.
    pub(crate) fn heap_profile(&self) -> Result<Profile, Error> {
        Ok(self.heap_snapshot(None)?.0)
    }

    /// One periodic round's heap, from one snapshot: the cumulative profile
    /// of [`Session::heap_profile`] (for files), and for OTLP the allocations
    /// since the previous take of alloc window `window` (see
    /// [`State::open_alloc_window`]) and the in-use heap at this moment.
    pub(crate) fn heap_round(&self, window: WindowId) -> Result<HeapRound, Error> {
        let (profile, taken) = self.heap_snapshot(Some(window))?;
        let (start, end) = taken.ok_or(Error::Stopped)?;
        Ok(HeapRound::split(profile, start, end))
    }

    /// The heap profile now, as [`Session::heap_profile`]; with `window`,
    /// two more columns hold the allocations of that alloc window, taken
    /// (and restarted) under the same lock that reads the cumulative sums,
    /// so that every record is in exactly one window. Returns the window's
    /// `(start, end)` too.
    fn heap_snapshot(
        &self,
        window: Option<WindowId>,
    ) -> Result<(Profile, Option<(SystemTime, SystemTime)>), Error> {
        self.symbolizer()?;
        drop(self.open_state()?);
        let config = &self.config;
        if !config.heap {
            return Err(Error::HeapDisabled);
        }
        if !lowprof_alloc::is_installed() {
            return Err(Error::HeapNotInstalled);
        }
        let (in_use, baseline) = self.in_use_now(config.cpu_hz > 0)?;
        let (stacks, values, stats, taken, folded) = {
            let mut state = self.open_state()?;
            // The allocator's counters with the sums they belong to.
            let stats = lowprof_alloc::stats();
            let taken = match window {
                // Only its consumer closes a window, after its last round.
                Some(id) => Some(state.take_alloc_window(id, &stats).ok_or(Error::Stopped)?),
                None => None,
            };
            let mut by_stack: hashbrown::HashMap<HeapKey, [f64; 6]> = hashbrown::HashMap::new();
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
            for (&s, e) in taken.iter().flat_map(|t| &t.window.alloc) {
                let v = by_stack.entry(s).or_default();
                v[4] += e.objects;
                v[5] += e.bytes;
            }
            let width = if taken.is_some() { 6 } else { 4 };
            let mut keys: Vec<(HeapKey, [f64; 6])> = by_stack.into_iter().collect();
            keys.sort_unstable_by_key(|(k, _)| (k.stack, k.size, k.context));
            let mut stacks = Vec::with_capacity(keys.len());
            let mut values = Vec::with_capacity(keys.len());
            for (key, v) in keys {
                stacks.push((state.heap.stacks.get(key.stack).to_vec(), key.size, key.context));
                values.push(v[..width].iter().map(|&x| round(x)).collect::<Vec<i64>>());
            }
            (stacks, values, stats, taken, state.heap.alloc_links.folded)
        };
        let mut dropped = vec![
            stats.dropped_alloc_objects - baseline.dropped_objects,
            stats.dropped_alloc_bytes.saturating_sub(baseline.dropped_bytes) as f64,
            in_use.lost.objects,
            in_use.lost.bytes,
        ];
        if let Some(taken) = &taken {
            dropped.extend([taken.dropped.objects, taken.dropped.bytes as f64]);
        }
        let dropped: Vec<i64> = dropped.into_iter().map(round).collect();
        let samples: Vec<RawSample> = stacks
            .into_iter()
            .zip(values)
            .map(|((frames, size, context), values)| {
                let mut labels = vec![Label {
                    key: "bytes".into(),
                    value: LabelValue::Num { value: size as i64, unit: "bytes".into() },
                }];
                labels.extend(context_labels(context));
                RawSample { frames, leaf_is_pc: false, values, labels }
            })
            .collect();
        let synthetic: Vec<(&'static str, Vec<i64>)> =
            if dropped.iter().any(|&v| v != 0) { vec![(DROPPED_FRAME, dropped)] } else { vec![] };
        let mut sample_types = vec![
            ValueType::new("alloc_objects", "count"),
            ValueType::new("alloc_space", "bytes"),
            ValueType::new("inuse_objects", "count"),
            ValueType::new("inuse_space", "bytes"),
        ];
        if taken.is_some() {
            sample_types.extend([
                ValueType::new(WINDOW_ALLOC_OBJECTS, "count"),
                ValueType::new(WINDOW_ALLOC_SPACE, "bytes"),
            ]);
        }
        let header = Header {
            kind: ProfileKind::Heap,
            sample_types,
            default_sample_type: Some(3),
            period_type: ValueType::new("space", "bytes"),
            period: stats.interval as i64,
            start: self.started.0,
            duration: self.started.1.elapsed(),
            comments: heap_comments(&stats, &in_use, folded),
        };
        let job = Job { header, samples, synthetic, trim_allocator: true };
        match self.symbolizer().and_then(|s| s.build(job)) {
            Ok(profile) => Ok((profile, taken.map(|t| (t.start, t.end)))),
            Err(e) => {
                // The round fails: its allocations go out with the next one.
                if let (Some(id), Some(taken), Ok(mut state)) = (window, taken, self.open_state()) {
                    state.give_back_alloc_window(id, taken);
                }
                Err(e)
            }
        }
    }

    /// The sampled blocks live now, attributed to their stacks: scan the
    /// region first, then drain, so every block seen has had the chance to
    /// deliver its record; give records still in flight a second chance.
    fn in_use_now(&self, cpu: bool) -> Result<(InUse, HeapBaseline), Error> {
        let mut live = Vec::new();
        let mut in_use = InUse::default();
        let (epoch, baseline, mut unmatched) = {
            let mut state = self.open_state()?;
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
            let mut state = self.open_state()?;
            state.drain(true, cpu);
            unmatched = state.heap.attribute(&unmatched, &mut in_use);
        }
        for b in &unmatched {
            in_use.pending.add(b.weight, b.size);
        }
        lock(&self.state).heap.prune(&live, epoch);
        Ok((in_use, baseline))
    }

    /// The CPU profile of window `window` since it was opened or last taken:
    /// `samples/count` and `cpu/nanoseconds`, labelled with `thread_id` and
    /// `thread_name`.
    pub(crate) fn cpu_profile_of(&self, window: WindowId) -> Result<Profile, Error> {
        self.symbolizer()?;
        let config = &self.config;
        if config.cpu_hz == 0 {
            return Err(Error::CpuDisabled);
        }
        let taken = {
            let mut state = self.open_state()?;
            state.drain(config.heap, true);
            state.take_window(window).ok_or(Error::CpuDisabled)?
        };
        let dropped = taken.dropped;
        let period = self.cpu_period;
        let mut rows: Vec<(&CpuKey, &CpuTime)> = taken.agg.time.iter().collect();
        rows.sort_unstable_by_key(|(k, _)| (k.stack, k.thread, k.context));
        let samples: Vec<RawSample> = rows
            .into_iter()
            .map(|(key, time)| {
                let mut labels = thread_labels(key.thread);
                labels.extend(context_labels(key.context));
                RawSample {
                    frames: taken.agg.stacks.get(key.stack).to_vec(),
                    leaf_is_pc: true,
                    values: vec![time.periods as i64, time.nanos as i64],
                    labels,
                }
            })
            .collect();
        let synthetic: Vec<(&'static str, Vec<i64>)> = if dropped.periods > 0 {
            vec![(DROPPED_FRAME, vec![dropped.periods as i64, dropped.nanos as i64])]
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
            start: taken.start.0,
            duration: taken.end.1.duration_since(taken.start.1),
            comments: cpu_comments(config.cpu_hz, &taken),
        };
        // The window's samples carry their thread names now: names of
        // threads that have exited can go (the cache would grow forever).
        lowprof_sampler::forget_exited_threads();
        self.symbolizer()?.build(Job { header, samples, synthetic, trim_allocator: false })
    }

    /// The CPU profile of the next `duration` (blocks that long), in a window
    /// of its own: other consumers' windows are not disturbed. Fails with
    /// [`Error::Stopped`] as soon as the session is closed, without waiting
    /// out `duration`.
    #[cfg_attr(not(feature = "serve"), allow(dead_code))] // for the pull endpoint
    pub(crate) fn cpu_for(&self, duration: Duration) -> Result<Profile, Error> {
        if self.config.cpu_hz == 0 {
            return Err(Error::CpuDisabled);
        }
        let window = self.open_state()?.open_window();
        let profile = if self.sleep_unless_closed(duration) {
            Err(Error::Stopped)
        } else {
            self.cpu_profile_of(window)
        };
        lock(&self.state).close_window(window);
        profile
    }

    /// The user's CPU window (opened now if it was not open: see
    /// `Profiler::cpu_profile`).
    pub(crate) fn cpu_profile(&self) -> Result<Profile, Error> {
        self.user_cpu_profile(
            "first cpu_profile() call with a periodic consumer configured: CPU samples are kept for \
             cpu_profile() from now on; the next call returns the time since this one",
        )
    }

    /// The user's CPU window at `stop()`: as [`Session::cpu_profile`], with
    /// the note an empty final profile needs.
    pub(crate) fn final_cpu_profile(&self) -> Result<Profile, Error> {
        self.user_cpu_profile(
            "cpu_profile() was never called while a periodic consumer (OTLP, write_dir or the pull \
             endpoint) was configured: the CPU samples went to that consumer, and this final profile \
             is empty",
        )
    }

    /// The user's window, opening it with `note_if_new` in the comments if
    /// it was not open (only with a periodic consumer: see `Profiler`).
    fn user_cpu_profile(&self, note_if_new: &str) -> Result<Profile, Error> {
        let was_open = lock(&self.state).ensure_user_window();
        let mut profile = self.cpu_profile_of(USER_WINDOW)?;
        if !was_open {
            profile.comments.push(note_if_new.into());
        }
        Ok(profile)
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> Stats {
        let state = lock(&self.state);
        Stats {
            heap: lowprof_alloc::stats(),
            cpu: lowprof_sampler::stats(),
            records_drained: state.records,
            heap_stacks: state.heap.stacks.len(),
            cpu_stacks: state.cpu_stacks(),
            sampling_stopped: self.sampling_stopped.load(Ordering::Acquire),
            cpu_hz: self.cpu_hz_now.load(Ordering::Relaxed),
            export: None,
            files: None,
        }
    }
}

/// Internal names of the alloc-window columns of a heap snapshot; they
/// never leave this module ([`HeapRound::split`] renames them).
const WINDOW_ALLOC_OBJECTS: &str = "lowprof_window_alloc_objects";
const WINDOW_ALLOC_SPACE: &str = "lowprof_window_alloc_space";

/// One periodic round's heap profiles, all from one snapshot.
///
/// Go's heap profiles (and so pprof files) are cumulative: allocations
/// since the start, plus what is live now. A backend that takes each OTLP
/// profile as the measurement of its own time range (Pyroscope does) needs
/// something else: a snapshot at one instant for what is live, and only
/// the new allocations for the range since the previous round. Summing the
/// `alloc_delta`s of all rounds gives the last `cumulative` alloc totals
/// (up to the rounding of each row).
pub(crate) struct HeapRound {
    /// `alloc_*` since the session started and `inuse_*` now: what
    /// [`Session::heap_profile`] returns, for the pprof files.
    pub cumulative: Profile,
    /// `alloc_objects`, `alloc_space` of `[previous round, now)` (the first
    /// round: since the session start): `start` is the previous round, and
    /// `duration` reaches now.
    pub alloc_delta: Profile,
    /// `inuse_objects`, `inuse_space` now: `start` now, `duration` zero.
    pub in_use: Profile,
}

impl HeapRound {
    /// Splits a snapshot with alloc-window columns, the window covering
    /// `[start, end)`.
    fn split(snapshot: Profile, start: SystemTime, end: SystemTime) -> Self {
        let mut alloc_delta = project(&snapshot, &[4, 5], Some(1));
        alloc_delta.sample_types =
            vec![ValueType::new("alloc_objects", "count"), ValueType::new("alloc_space", "bytes")];
        alloc_delta.start = start;
        alloc_delta.duration = end.duration_since(start).unwrap_or(Duration::ZERO);
        alloc_delta.comments.push(
            "alloc_* hold only the allocations of [time, time + duration), since the previous \
             export round; files and /debug/pprof/allocs hold them since the profiler started"
                .to_owned(),
        );
        let mut in_use = project(&snapshot, &[2, 3], Some(1));
        in_use.start = end;
        in_use.duration = Duration::ZERO;
        let cumulative = project(&snapshot, &[0, 1, 2, 3], Some(3));
        Self { cumulative, alloc_delta, in_use }
    }
}

/// `profile` with only the value columns `columns` (in that order), and
/// without the samples that are zero in all of them.
fn project(profile: &Profile, columns: &[usize], default_sample_type: Option<usize>) -> Profile {
    let pick = |values: &[i64]| -> Vec<i64> {
        columns.iter().map(|&c| values.get(c).copied().unwrap_or(0)).collect()
    };
    Profile {
        sample_types: columns
            .iter()
            .filter_map(|&c| profile.sample_types.get(c).cloned())
            .collect(),
        default_sample_type,
        samples: profile
            .samples
            .iter()
            .filter_map(|sample| {
                let values = pick(&sample.values);
                values.iter().any(|&v| v != 0).then(|| Sample { values, ..sample.clone() })
            })
            .collect(),
        ..profile.clone()
    }
}

/// What the pull endpoint serves: this session's profiles.
#[cfg(feature = "serve")]
impl crate::serve::ProfileSource for Session {
    fn heap(&self) -> Result<Profile, Error> {
        self.heap_profile()
    }

    fn cpu_for(&self, duration: Duration) -> Result<Profile, Error> {
        Session::cpu_for(self, duration)
    }
}

/// The notes a heap profile carries: what was sampled and what was lost,
/// a hint when stacks are missing, and folded links (`folded`: alloc rows
/// of the heap aggregate whose trace ids were folded away).
fn heap_comments(stats: &lowprof_alloc::HeapStats, in_use: &InUse, folded: u64) -> Vec<String> {
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
    if folded > 0 {
        comments.push(format!(
            "{folded} alloc rows lost their trace ids (more than {} linked rows since the profiler started; \
             totals are kept)",
            crate::aggregate::MAX_LINKED_ROWS
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

/// The notes a CPU profile carries: the rate, what was dropped, rate
/// changes and folded links.
fn cpu_comments(configured_hz: u32, taken: &TakenWindow) -> Vec<String> {
    let mut comments = vec![format!(
        "lowprof {}: cpu at {} Hz, {} sampling periods dropped in this window (in {})",
        env!("CARGO_PKG_VERSION"),
        configured_hz,
        taken.dropped.periods,
        DROPPED_FRAME
    )];
    if let Some((shortest, longest)) = taken.agg.period_range.filter(|(lo, hi)| lo != hi) {
        let hz = |ns: u64| 1e9 / ns.max(1) as f64;
        comments.push(format!(
            "the CPU sample budget varied the rate between {:.0} and {:.0} Hz in this window; each sample \
             is weighted with its own period",
            hz(longest),
            hz(shortest)
        ));
    }
    if taken.agg.links.folded > 0 {
        comments.push(format!(
            "{} rows lost their trace ids (more than {} linked rows in one window; totals are kept)",
            taken.agg.links.folded,
            crate::aggregate::MAX_LINKED_ROWS
        ));
    }
    comments
}

/// `trace_id`, `span_id` (lower-case hex) when the sample is linked, and
/// `span_name` when it has one.
fn context_labels(context: lowprof_core::event::ContextWords) -> Vec<Label> {
    let mut labels = Vec::new();
    if is_linked(&context) {
        let (trace, span) = lowprof_core::context::unpack(context);
        labels.push(Label {
            key: TRACE_ID_LABEL.into(),
            value: LabelValue::Str(crate::trace::hex(&trace)),
        });
        labels.push(Label {
            key: SPAN_ID_LABEL.into(),
            value: LabelValue::Str(crate::trace::hex(&span)),
        });
    }
    if let Some(name) = crate::trace::name_of(context[3]) {
        labels.push(Label { key: SPAN_NAME_LABEL.into(), value: LabelValue::Str(name) });
    }
    labels
}

fn round(v: f64) -> i64 {
    v.round() as i64
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_heap_round_splits_into_cumulative_alloc_delta_and_in_use() {
        // The fixture with window columns: rows 0 and 2 allocated in this
        // window, row 1 only before it.
        let mut snapshot = crate::pprof::fixture::heap();
        snapshot.sample_types.extend([
            ValueType::new(WINDOW_ALLOC_OBJECTS, "count"),
            ValueType::new(WINDOW_ALLOC_SPACE, "bytes"),
        ]);
        for (sample, delta) in
            snapshot.samples.iter_mut().zip([[1, 512], [0, 0], [2, 2000], [0, 0]])
        {
            sample.values.extend(delta);
        }
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        let end = start + Duration::from_millis(60_250);
        let round = HeapRound::split(snapshot.clone(), start, end);

        // The file: exactly what heap_profile() gives, cumulative since start.
        assert_eq!(round.cumulative, crate::pprof::fixture::heap());

        let types = |p: &Profile| -> Vec<String> {
            p.sample_types.iter().map(|t| t.r#type.clone()).collect()
        };
        let d = &round.alloc_delta;
        assert_eq!(types(d), ["alloc_objects", "alloc_space"]);
        assert_eq!((d.start, d.duration), (start, Duration::from_millis(60_250)));
        let values: Vec<&[i64]> = d.samples.iter().map(|s| s.values.as_slice()).collect();
        assert_eq!(values, [&[1, 512][..], &[2, 2000][..]], "rows without new allocations go");
        assert_eq!(d.samples[0].labels, snapshot.samples[0].labels);
        assert_eq!(d.default_sample_type, Some(1));
        assert!(d.comments.last().unwrap().contains("since the previous export round"));

        let u = &round.in_use;
        assert_eq!(types(u), ["inuse_objects", "inuse_space"]);
        assert_eq!((u.start, u.duration), (end, Duration::ZERO));
        let values: Vec<&[i64]> = u.samples.iter().map(|s| s.values.as_slice()).collect();
        assert_eq!(values, [&[1, 512][..], &[3, 3000][..], &[1, 10][..]]);
        assert_eq!(u.default_sample_type, Some(1));
        // Comments and tables travel along.
        assert_eq!((&u.comments, &u.locations), (&snapshot.comments, &snapshot.locations));
        // A clock stepped back gives an empty range, not a panic.
        let round = HeapRound::split(snapshot, end, start);
        assert_eq!(round.alloc_delta.duration, Duration::ZERO);
    }

    #[test]
    fn a_closed_session_fails_at_once_without_draining() {
        let config = ProfilerBuilder::default().cpu_hz(99);
        let symbolizer = SymbolizeThread::spawn().unwrap();
        let session = Arc::new(Session::new(config, symbolizer, false));
        // A pull request waiting out a 300 s CPU window.
        let t = Instant::now();
        let waiter = {
            let session = Arc::clone(&session);
            std::thread::spawn(move || session.cpu_for(Duration::from_secs(300)))
        };
        // Close only once the waiter's window is open (else it would meet
        // a closed session at once and prove nothing about waking).
        let deadline = Instant::now() + Duration::from_secs(30);
        while lock(&session.state).take_window(USER_WINDOW + 1).is_none() {
            assert!(Instant::now() < deadline, "the waiter never opened its window");
            std::thread::sleep(Duration::from_millis(1));
        }
        session.close();
        let answer = waiter.join().unwrap();
        assert!(matches!(answer, Err(Error::Stopped)), "{answer:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "woke at close: {:?}", t.elapsed());
        // Its window is gone, and nothing can be taken any more.
        assert!(lock(&session.state).take_window(USER_WINDOW + 1).is_none());
        assert!(matches!(session.heap_profile(), Err(Error::Stopped)));
        assert!(matches!(session.cpu_profile(), Err(Error::Stopped)));
        assert!(matches!(session.cpu_for(Duration::from_secs(300)), Err(Error::Stopped)));
        assert!(lock(&session.state).is_closed());
        session.close();
        let message = Error::Stopped.to_string();
        assert!(message.contains("stopped") && message.contains("start a new profiler"));
    }

    #[test]
    fn heap_comments_say_when_trace_links_were_folded() {
        let stats = lowprof_alloc::stats();
        let in_use = InUse::default();
        let comments = heap_comments(&stats, &in_use, 0);
        assert!(!comments.iter().any(|c| c.contains("trace ids")), "{comments:?}");
        let comments = heap_comments(&stats, &in_use, 7);
        assert!(
            comments.iter().any(|c| c.starts_with("7 alloc rows lost their trace ids")),
            "{comments:?}"
        );
    }
}
