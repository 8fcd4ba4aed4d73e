//! The drainer: a thread named `lowprof-drain` that empties the rings every
//! few milliseconds into the aggregates, keeps the CPU sampler's timers in
//! step with the process's threads, and gives freed large sampled blocks'
//! pages back. It blocks SIGPROF, so it never samples itself.
//!
//! ```text
//!  every drain_interval, or at once when woken (a new thread's first
//!  allocation wakes it through the allocator's new-thread hook, so the
//!  thread gets its CPU timer within microseconds):
//!    lock State ─► drain heap ring ─► HeapAggregate
//!               └► drain CPU ring  ─► CpuAggregate
//!    lowprof_sampler::maintain()        (timers for new threads, names, stack regions)
//!  every second: prune stale live samples; give freed large sampled
//!                blocks' pages back; adjust the rates to the budget
//!  after `duration`: stop sampling
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use lowprof_alloc::HeapEvent;

use crate::aggregate::{AllocWindow, CpuAggregate, HeapAggregate};
use crate::budget::Budget;
use crate::session::Session;

/// Identifies a CPU window; [`USER_WINDOW`] is `Profiler::cpu_profile`'s.
pub(crate) type WindowId = u64;
/// The window `Profiler::cpu_profile` reads. Open from the start when the
/// user is the only consumer; with a periodic consumer (export, files, pull
/// endpoint) it opens at the first `cpu_profile()` call, so a service that
/// never calls it does not keep every (stack, thread) of its lifetime.
pub(crate) const USER_WINDOW: WindowId = 0;

/// CPU time lost to full rings.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DroppedCpu {
    pub periods: u64,
    pub nanos: u64,
}

impl DroppedCpu {
    fn now() -> Self {
        let stats = lowprof_sampler::stats();
        Self { periods: stats.dropped_periods, nanos: stats.dropped_nanos }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            periods: self.periods.saturating_sub(earlier.periods),
            nanos: self.nanos.saturating_sub(earlier.nanos),
        }
    }
}

/// CPU samples since a window was opened or last taken. Each consumer of CPU
/// profiles (the user, the periodic exporter, a pull request) has its own,
/// so taking one never steals another's samples.
pub(crate) struct CpuWindow {
    pub agg: CpuAggregate,
    pub start: (SystemTime, Instant),
    /// Dropped CPU time already reported by an earlier take.
    pub dropped_reported: DroppedCpu,
}

impl CpuWindow {
    fn new() -> Self {
        Self {
            agg: CpuAggregate::default(),
            start: (SystemTime::now(), Instant::now()),
            dropped_reported: DroppedCpu::now(),
        }
    }
}

/// What [`State::take_window`] hands out.
pub(crate) struct TakenWindow {
    pub agg: CpuAggregate,
    pub start: (SystemTime, Instant),
    pub end: (SystemTime, Instant),
    /// CPU time dropped (rings full) during the window.
    pub dropped: DroppedCpu,
}

/// Heap allocations dropped (rings full), as the allocator counts them.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct DroppedAllocs {
    pub objects: f64,
    pub bytes: u64,
}

impl DroppedAllocs {
    /// The allocator's counters in `stats`.
    pub(crate) fn of(stats: &lowprof_alloc::HeapStats) -> Self {
        Self { objects: stats.dropped_alloc_objects, bytes: stats.dropped_alloc_bytes }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            objects: (self.objects - earlier.objects).max(0.0),
            bytes: self.bytes.saturating_sub(earlier.bytes),
        }
    }
}

/// When an alloc window (in [`HeapAggregate`]) was last taken.
struct AllocWindowMark {
    /// The start of what the window holds now.
    start: SystemTime,
    /// The dropped allocations already reported by an earlier take.
    dropped_reported: DroppedAllocs,
}

/// What [`State::take_alloc_window`] hands out: the allocations of
/// `[start, end)`.
pub(crate) struct TakenAllocWindow {
    pub window: AllocWindow,
    pub start: SystemTime,
    pub end: SystemTime,
    /// Allocations dropped (rings full) during the window.
    pub dropped: DroppedAllocs,
    /// The window's mark before this take, to give it back.
    reported_before: DroppedAllocs,
}

/// Aggregates and the scratch buffers used to drain into them.
pub(crate) struct State {
    pub heap: HeapAggregate,
    cpu_windows: Vec<(WindowId, CpuWindow)>,
    next_window: WindowId,
    /// The open alloc windows' marks, by the heap aggregate's window id.
    alloc_marks: Vec<(WindowId, AllocWindowMark)>,
    /// The heap counters when this session started: its profiles report
    /// only what happened since.
    pub heap_baseline: HeapBaseline,
    pub records: u64,
    heap_scratch: Vec<u64>,
    cpu_scratch: Vec<u64>,
    /// The profiler that owned this state has shut down: the rings may
    /// belong to a newer profiler now, so nothing is drained any more.
    closed: bool,
}

impl State {
    /// A fresh state; with `user_window` the user's CPU window is open from
    /// the start.
    pub(crate) fn new(user_window: bool) -> Self {
        let cpu_windows =
            if user_window { vec![(USER_WINDOW, CpuWindow::new())] } else { Vec::new() };
        Self {
            heap: HeapAggregate::default(),
            cpu_windows,
            next_window: USER_WINDOW + 1,
            alloc_marks: Vec::new(),
            heap_baseline: HeapBaseline::now(),
            records: 0,
            heap_scratch: vec![0; lowprof_alloc::RECORD_WORDS],
            cpu_scratch: vec![0; lowprof_sampler::RECORD_WORDS],
            closed: false,
        }
    }

    /// Marks the state closed: [`State::drain`] does nothing from now on.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// Whether [`State::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Opens a CPU window; samples drained from now on go into it too.
    pub(crate) fn open_window(&mut self) -> WindowId {
        let id = self.next_window;
        self.next_window += 1;
        self.cpu_windows.push((id, CpuWindow::new()));
        id
    }

    /// Opens the user's window if it is not open. Returns whether it was.
    pub(crate) fn ensure_user_window(&mut self) -> bool {
        if self.cpu_windows.iter().any(|(w, _)| *w == USER_WINDOW) {
            return true;
        }
        self.cpu_windows.push((USER_WINDOW, CpuWindow::new()));
        false
    }

    /// Closes a window opened with [`State::open_window`].
    pub(crate) fn close_window(&mut self, id: WindowId) {
        if id != USER_WINDOW {
            self.cpu_windows.retain(|(w, _)| *w != id);
        }
    }

    /// Everything window `id` gathered, restarting it empty.
    pub(crate) fn take_window(&mut self, id: WindowId) -> Option<TakenWindow> {
        let (_, window) = self.cpu_windows.iter_mut().find(|(w, _)| *w == id)?;
        let fresh = CpuWindow::new();
        let dropped = fresh.dropped_reported.since(window.dropped_reported);
        let old = std::mem::replace(window, fresh);
        Some(TakenWindow { agg: old.agg, start: old.start, end: window.start, dropped })
    }

    /// Opens a window of heap allocations for a consumer of deltas. It
    /// starts at the session's start (`session_start`): its first take holds
    /// everything allocated so far.
    pub(crate) fn open_alloc_window(&mut self, session_start: SystemTime) -> WindowId {
        let id = self.heap.open_alloc_window();
        let dropped_reported = DroppedAllocs {
            objects: self.heap_baseline.dropped_objects,
            bytes: self.heap_baseline.dropped_bytes,
        };
        self.alloc_marks.push((id, AllocWindowMark { start: session_start, dropped_reported }));
        id
    }

    /// The allocations of window `id` since it was opened or last taken,
    /// restarting it now; `stats` are the allocator's counters now.
    pub(crate) fn take_alloc_window(
        &mut self,
        id: WindowId,
        stats: &lowprof_alloc::HeapStats,
    ) -> Option<TakenAllocWindow> {
        let (_, mark) = self.alloc_marks.iter_mut().find(|(w, _)| *w == id)?;
        let window = self.heap.take_alloc_window(id)?;
        let end = SystemTime::now();
        let now = DroppedAllocs::of(stats);
        let taken = TakenAllocWindow {
            window,
            start: mark.start,
            end,
            dropped: now.since(mark.dropped_reported),
            reported_before: mark.dropped_reported,
        };
        *mark = AllocWindowMark { start: end, dropped_reported: now };
        Some(taken)
    }

    /// Undoes [`State::take_alloc_window`] when the round that took it
    /// failed: the allocations and drops go out with the next take instead
    /// of being lost, and that take starts where this one did.
    pub(crate) fn give_back_alloc_window(&mut self, id: WindowId, taken: TakenAllocWindow) {
        let Some((_, mark)) = self.alloc_marks.iter_mut().find(|(w, _)| *w == id) else {
            return;
        };
        *mark = AllocWindowMark { start: taken.start, dropped_reported: taken.reported_before };
        self.heap.give_back_alloc_window(id, taken.window);
    }

    /// Closes a window opened with [`State::open_alloc_window`].
    pub(crate) fn close_alloc_window(&mut self, id: WindowId) {
        self.heap.close_alloc_window(id);
        self.alloc_marks.retain(|(w, _)| *w != id);
    }

    /// Distinct CPU stacks in the user's window.
    pub(crate) fn cpu_stacks(&self) -> usize {
        self.cpu_windows
            .iter()
            .find(|(w, _)| *w == USER_WINDOW)
            .map_or(0, |(_, w)| w.agg.stacks.len())
    }

    /// Moves every queued record into the aggregates. Does nothing once
    /// closed: the rings are process-wide, and after its profiler has shut
    /// down another one may be using them.
    pub(crate) fn drain(&mut self, heap: bool, cpu: bool) {
        if self.closed {
            return;
        }
        let State { heap: heap_agg, cpu_windows, heap_scratch, cpu_scratch, records, .. } = self;
        if heap {
            let n = lowprof_alloc::drain(heap_scratch, |event| match event {
                HeapEvent::Alloc(alloc) => heap_agg.add_alloc(&alloc),
                HeapEvent::Free { sample_id } => heap_agg.add_free(sample_id),
            });
            *records += n.unwrap_or(0) as u64;
        }
        if cpu {
            *records += lowprof_sampler::drain(cpu_scratch, |sample| {
                for (_, window) in cpu_windows.iter_mut() {
                    window.agg.add(&sample);
                }
            }) as u64;
        }
    }

    /// Forgets live samples whose free record was dropped, once they
    /// outnumber the truly live ones by far (bounds the drainer's memory).
    fn prune(&mut self) {
        let live = lowprof_alloc::stats().live_samples as usize;
        if self.heap.known_live() > 2 * live + 4096 {
            let epoch = self.heap.begin_snapshot();
            let mut blocks = Vec::with_capacity(live + 64);
            lowprof_alloc::for_each_live(|b| blocks.push(b));
            self.heap.prune(&blocks, epoch);
        }
    }
}

/// Process-wide heap counters at a session's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeapBaseline {
    /// Blocks with smaller ids were sampled by an earlier session.
    pub first_sample_id: u64,
    pub dropped_objects: f64,
    pub dropped_bytes: u64,
}

impl HeapBaseline {
    fn now() -> Self {
        let stats = lowprof_alloc::stats();
        Self {
            first_sample_id: lowprof_alloc::next_sample_id(),
            dropped_objects: stats.dropped_alloc_objects,
            dropped_bytes: stats.dropped_alloc_bytes,
        }
    }
}

/// Locks `m`, recovering the data if a panic poisoned it (the aggregates
/// stay consistent between records).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Set to wake the drainer early (a new thread, stop); a futex word.
static WAKE: AtomicU32 = AtomicU32::new(0);

/// Wakes the drainer now. Allocation-free, lock-free: an atomic store and a
/// futex wake, so the allocator may call it (its new-thread hook), letting a
/// new thread get its CPU timer within microseconds instead of at the next
/// tick.
pub(crate) fn wake() {
    WAKE.store(1, Ordering::Release);
    #[cfg(target_os = "linux")]
    // SAFETY: FUTEX_WAKE on a valid, aligned u32 that lives forever.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WAKE.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

/// Sleeps until `timeout` passes or [`wake`] is called.
fn sleep_until_woken(timeout: Duration) {
    if WAKE.swap(0, Ordering::AcqRel) == 1 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT on a valid u32 while it is 0, with a valid
        // relative timeout; returns on wake, timeout or signal.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                WAKE.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                0,
                &ts,
            );
        }
        // The word stays set if a wake came: the next call returns at once
        // (clearing it here could lose a wake that arrives meanwhile).
    }
    #[cfg(not(target_os = "linux"))]
    std::thread::park_timeout(timeout);
}

/// The drainer thread's body.
pub(crate) fn run(shared: Arc<Session>) {
    // A failure only means the drainer may itself be sampled.
    let _ = lowprof_sampler::block_sigprof_on_current_thread();
    let config = &shared.config;
    let mut last_housekeeping = Instant::now();
    let mut budget = Budget::new(
        config.max_heap_samples_per_sec.filter(|_| config.heap),
        config.heap_interval.unwrap_or_else(lowprof_alloc::interval),
        config.max_cpu_samples_per_sec,
        config.cpu_hz,
    );
    if config.cpu_hz > 0 {
        lowprof_alloc::set_new_thread_hook(Some(wake));
    }
    loop {
        sleep_until_woken(config.drain_interval);
        if shared.stopping.load(Ordering::Acquire) {
            lowprof_alloc::set_new_thread_hook(None);
            return;
        }
        let sampling = !shared.sampling_stopped.load(Ordering::Acquire);
        lock(&shared.state).drain(config.heap, config.cpu_hz > 0);
        if config.cpu_hz > 0 && sampling {
            lowprof_sampler::maintain();
        }
        if last_housekeeping.elapsed() >= Duration::from_secs(1) {
            last_housekeeping = Instant::now();
            lock(&shared.state).prune();
            if config.heap {
                lowprof_alloc::release_freed_memory();
            }
            if budget.is_active() && sampling {
                budget.tick();
                shared.cpu_hz_now.store(budget.cpu_hz, Ordering::Relaxed);
            }
        }
        if let Some(limit) = config.duration {
            if sampling && shared.started.1.elapsed() >= limit {
                shared.stop_sampling();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The allocator's counters with `objects` and `bytes` dropped in all.
    fn stats_with_drops(objects: f64, bytes: u64) -> lowprof_alloc::HeapStats {
        let mut stats = lowprof_alloc::stats();
        stats.dropped_alloc_objects = objects;
        stats.dropped_alloc_bytes = bytes;
        stats
    }

    #[test]
    fn every_dropped_allocation_is_in_exactly_one_alloc_window() {
        let mut state = State::new(false);
        state.heap_baseline.dropped_objects = 10.0;
        state.heap_baseline.dropped_bytes = 1000;
        let session_start = SystemTime::now() - Duration::from_secs(5);
        let id = state.open_alloc_window(session_start);

        // The first take counts from the session's baseline, not from zero
        // (drops of an earlier session are not this one's).
        let first = state.take_alloc_window(id, &stats_with_drops(13.0, 1300)).unwrap();
        assert_eq!(first.dropped, DroppedAllocs { objects: 3.0, bytes: 300 });
        assert_eq!(first.start, session_start);
        // Nothing new: nothing dropped; the windows chain without a gap.
        let second = state.take_alloc_window(id, &stats_with_drops(13.0, 1300)).unwrap();
        assert_eq!(second.dropped, DroppedAllocs::default());
        assert_eq!(second.start, first.end);
        let third = state.take_alloc_window(id, &stats_with_drops(20.5, 2000)).unwrap();
        assert_eq!(third.dropped, DroppedAllocs { objects: 7.5, bytes: 700 });
        assert_eq!(third.start, second.end);
        // Summed over the windows: what the cumulative profile reports
        // (now minus the baseline).
        let objects: f64 = [&first, &second, &third].iter().map(|t| t.dropped.objects).sum();
        let bytes: u64 = [&first, &second, &third].iter().map(|t| t.dropped.bytes).sum();
        assert_eq!((objects, bytes), (20.5 - 10.0, 2000 - 1000));

        // A second consumer opened later still starts at the session's
        // start, with its own marks.
        let other = state.open_alloc_window(session_start);
        let taken = state.take_alloc_window(other, &stats_with_drops(21.0, 2100)).unwrap();
        assert_eq!(taken.dropped, DroppedAllocs { objects: 11.0, bytes: 1100 });
        let taken = state.take_alloc_window(id, &stats_with_drops(21.0, 2100)).unwrap();
        assert_eq!(taken.dropped, DroppedAllocs { objects: 0.5, bytes: 100 });

        // A take given back (its round failed) is reported by the next one,
        // which starts where the failed one did.
        let failed = state.take_alloc_window(id, &stats_with_drops(22.0, 2200)).unwrap();
        let failed_start = failed.start;
        state.give_back_alloc_window(id, failed);
        let next = state.take_alloc_window(id, &stats_with_drops(23.0, 2300)).unwrap();
        assert_eq!(next.dropped, DroppedAllocs { objects: 2.0, bytes: 200 });
        assert_eq!(next.start, failed_start);

        state.close_alloc_window(id);
        assert!(state.take_alloc_window(id, &stats_with_drops(21.0, 2100)).is_none());
        assert!(state.take_alloc_window(other, &stats_with_drops(21.0, 2100)).is_some());
    }
}
