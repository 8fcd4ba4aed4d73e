//! The sampling session: which threads have timers, and the start / stop /
//! maintain transitions. Cold path only, serialised by one `std` mutex that
//! the signal handler never touches.
//!
//! ```text
//!  start ──► install handler (once) ─► scan tasks ─► publish regions ─► MODE on ─► arm timers
//!  maintain ─► scan tasks ─► changed set or stale regions? publish regions
//!                        ─► delete timers of gone threads ─► arm new threads ─► names
//!  stop ──► MODE off (late signals are swallowed) ─► delete every timer
//! ```
//!
//! Known limitation: threads are told apart by tid only. If a thread exits
//! and the kernel hands its tid to a new thread between two `maintain` calls
//! (it allocates ids cyclically, so that takes wrapping through `pid_max`
//! within ~10 ms), the new thread keeps the dead thread's (disarmed) timer
//! entry and is not sampled.
//!
//! Ordering guarantee: a thread's timer is armed only after a regions table
//! that was read *after* the thread was seen in `/proc/self/task` has been
//! published — its stack was mapped before it appeared there — so its first
//! signal finds its stack in the table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lowprof_core::bounds::STACK_REGIONS;

use crate::timer::{self, Jitter, TimerId};
use crate::{COUNTERS, Config, Error, TimerMode, handler, period, period_nanos, regions, threads};

/// Least time between two refreshes caused by walk misses alone.
const MISS_REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// A full thread scan runs at least this often, even when the thread count
/// looks unchanged (an exit and a start between two checks cancel out).
const FULL_SCAN_INTERVAL: Duration = Duration::from_millis(200);
/// Attempts to arm a thread before giving up on it.
const ARM_ATTEMPTS: u8 = 3;

struct Session {
    running: bool,
    installed: bool,
    mode: TimerMode,
    period_ns: i64,
    /// The `sigev_value` of timers created now: names `period_ns`
    /// ([`period`]).
    cookie: usize,
    /// Per-thread timers by tid.
    timers: BTreeMap<u64, TimerId>,
    /// Failed arming attempts of threads that have no timer.
    failures: BTreeMap<u64, u8>,
    /// Threads that blocked SIGPROF through us (the drainer): never timed.
    excluded: BTreeSet<u64>,
    /// The thread set of the last scan.
    known: BTreeSet<u64>,
    last_refresh: Option<Instant>,
    misses_at_refresh: u64,
    /// The thread-count hint at the last full scan, and when it ran.
    last_count: Option<u64>,
    last_scan: Option<Instant>,
    jitter: Jitter,
}

static SESSION: Mutex<Session> = Mutex::new(Session {
    running: false,
    installed: false,
    mode: TimerMode::PerThread,
    period_ns: 0,
    cookie: 0,
    timers: BTreeMap::new(),
    failures: BTreeMap::new(),
    excluded: BTreeSet::new(),
    known: BTreeSet::new(),
    last_refresh: None,
    misses_at_refresh: 0,
    last_count: None,
    last_scan: None,
    jitter: Jitter::new(),
});

/// Mirrors `timers.len()` for [`crate::stats`] without taking the lock.
static THREADS_TIMED: AtomicUsize = AtomicUsize::new(0);

fn session() -> MutexGuard<'static, Session> {
    SESSION.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn threads_timed() -> usize {
    THREADS_TIMED.load(Ordering::Relaxed)
}

pub(crate) fn start(config: Config) -> Result<(), Error> {
    let mut s = session();
    if s.running {
        return Err(Error::AlreadyRunning);
    }
    if !s.installed {
        handler::install()?;
        s.installed = true;
    }
    s.mode = config.mode;
    s.period_ns = period_nanos(config.hz);
    s.cookie = period::advance(s.period_ns as u64);
    s.jitter.seed();
    s.failures.clear();
    let scanned = threads::scan();
    let tids = match (&scanned, config.mode) {
        (Ok(tids), _) => tids.clone(),
        (Err(e), TimerMode::PerThread) => {
            return Err(Error::Os {
                call: "read_dir(/proc/self/task)",
                errno: e.raw_os_error().unwrap_or(0),
            });
        }
        (Err(_), TimerMode::Process) => BTreeSet::new(),
    };
    s.excluded.retain(|tid| tids.contains(tid));
    s.refresh_regions();
    let gone: Vec<u64> = s.known.difference(&tids).copied().collect();
    threads::observe(&tids, &gone);
    s.known = tids;
    match config.mode {
        TimerMode::PerThread => {
            // On before arming: the first signal of any timer is a sample.
            handler::set_mode(handler::MODE_PER_THREAD);
            s.running = true;
            let known: Vec<u64> = s.known.iter().copied().collect();
            let (armed, first_error) = s.arm(&known);
            if armed == 0 {
                if let Some((call, errno)) = first_error {
                    s.stop_locked();
                    return Err(Error::Os { call, errno });
                }
            }
        }
        TimerMode::Process => {
            handler::set_mode(handler::MODE_PROCESS);
            let period = s.period_ns;
            let first = s.jitter.first_expiry(period);
            if let Err(errno) = timer::set_process_timer(s.period_ns, first) {
                handler::set_mode(handler::MODE_OFF);
                return Err(Error::Os { call: "setitimer(ITIMER_PROF)", errno });
            }
            s.running = true;
        }
    }
    s.publish_count();
    Ok(())
}

pub(crate) fn stop() {
    session().stop_locked();
}

pub(crate) fn maintain() {
    let mut s = session();
    if !s.running {
        return;
    }
    let misses = STACK_REGIONS.misses();
    // Cheap first: one stat of /proc/self/task tells the thread count. With
    // the same count, no walk misses and a recent full scan, nothing to do
    // (the full scan lists every thread: ~100 µs of the drainer's time).
    let count = threads::count_hint();
    let scan_due = s.last_scan.is_none_or(|at| at.elapsed() >= FULL_SCAN_INTERVAL);
    if count.is_some() && count == s.last_count && !scan_due && misses <= s.misses_at_refresh {
        return;
    }
    s.last_count = count;
    s.last_scan = Some(Instant::now());
    let Ok(tids) = threads::scan() else { return };
    let new: Vec<u64> = tids.difference(&s.known).copied().collect();
    let gone: Vec<u64> = s.known.difference(&tids).copied().collect();
    let stale = misses > s.misses_at_refresh
        && s.last_refresh.is_none_or(|at| at.elapsed() >= MISS_REFRESH_INTERVAL);
    // Before arming any new thread: its stack must be in the table.
    if !new.is_empty() || !gone.is_empty() || stale {
        s.refresh_regions();
    }
    for tid in &gone {
        if let Some(timer) = s.timers.remove(tid) {
            // POSIX timers belong to the process, not to the thread they
            // target: a dead thread's timer lives on (disarmed) until deleted.
            if timer::delete_thread_timer(timer).is_err() {
                COUNTERS.timer_errors.add(1);
            }
        }
        s.failures.remove(tid);
        s.excluded.remove(tid);
    }
    threads::observe(&tids, &gone);
    s.known = tids;
    if s.mode == TimerMode::PerThread {
        // New threads, and threads whose earlier attempt failed transiently.
        let due: Vec<u64> = s
            .known
            .iter()
            .copied()
            .filter(|tid| !s.timers.contains_key(tid) && !s.excluded.contains(tid))
            .filter(|tid| s.failures.get(tid).is_none_or(|&n| n < ARM_ATTEMPTS))
            .collect();
        let _ = s.arm(&due);
    }
    s.publish_count();
}

/// Re-arms every timer at `hz` (see [`crate::set_hz`]).
pub(crate) fn set_hz(hz: u32) {
    let mut s = session();
    let period_ns = period_nanos(hz);
    if !s.running || period_ns == s.period_ns {
        return;
    }
    s.period_ns = period_ns;
    s.cookie = period::advance(period_ns as u64);
    match s.mode {
        TimerMode::PerThread => {
            // A timer's sigev_value cannot change: replace the timers. A
            // signal already queued by an old one still names the old period.
            for (_, timer) in std::mem::take(&mut s.timers) {
                if timer::delete_thread_timer(timer).is_err() {
                    COUNTERS.timer_errors.add(1);
                }
            }
            let known: Vec<u64> = s.known.iter().copied().collect();
            let _ = s.arm(&known);
        }
        TimerMode::Process => {
            // One process timer, weighted with the current period (a signal
            // in flight across the change is weighted with the new one).
            let first = s.jitter.first_expiry(period_ns);
            if timer::set_process_timer(period_ns, first).is_err() {
                COUNTERS.timer_errors.add(1);
            }
        }
    }
    s.publish_count();
}

/// Excludes the calling thread (which has just blocked SIGPROF) from
/// sampling: no timer now, none later.
pub(crate) fn exclude_current_thread() {
    let tid = threads::current_tid();
    let mut s = session();
    s.excluded.insert(tid);
    if let Some(timer) = s.timers.remove(&tid) {
        if timer::delete_thread_timer(timer).is_err() {
            COUNTERS.timer_errors.add(1);
        }
    }
    s.publish_count();
}

impl Session {
    /// Arms a timer for each of `tids` that is not excluded and has none.
    /// Returns how many were armed and the first failure.
    fn arm(&mut self, tids: &[u64]) -> (usize, Option<(&'static str, i32)>) {
        let mut armed = 0usize;
        let mut first_error = None;
        for &tid in tids {
            if self.excluded.contains(&tid) || self.timers.contains_key(&tid) {
                continue;
            }
            let Ok(raw) = i32::try_from(tid) else { continue };
            let first = self.jitter.first_expiry(self.period_ns);
            match timer::create_thread_timer(raw, self.period_ns, first, self.cookie) {
                Ok(timer) => {
                    self.timers.insert(tid, timer);
                    self.failures.remove(&tid);
                    armed += 1;
                }
                Err(failure) => {
                    // Mostly EINVAL: the thread exited since the scan.
                    COUNTERS.timer_errors.add(1);
                    *self.failures.entry(tid).or_insert(0) += 1;
                    first_error.get_or_insert(failure);
                }
            }
        }
        (armed, first_error)
    }

    fn refresh_regions(&mut self) {
        // Misses counted from here on are misses against the new table.
        self.misses_at_refresh = STACK_REGIONS.misses();
        self.last_refresh = Some(Instant::now());
        regions::refresh();
    }

    fn stop_locked(&mut self) {
        if !self.running && self.timers.is_empty() {
            return;
        }
        // Off first: a signal already in flight is swallowed, not chained to
        // someone else's handler.
        handler::set_mode(handler::MODE_OFF);
        match self.mode {
            TimerMode::PerThread => {
                for (_, timer) in std::mem::take(&mut self.timers) {
                    if timer::delete_thread_timer(timer).is_err() {
                        COUNTERS.timer_errors.add(1);
                    }
                }
            }
            TimerMode::Process => {
                let _ = timer::set_process_timer(0, 0);
            }
        }
        self.running = false;
        self.publish_count();
    }

    fn publish_count(&self) {
        THREADS_TIMED.store(self.timers.len(), Ordering::Relaxed);
    }
}
