//! Per-thread sampling state for std targets: one `const`-initialised,
//! `Drop`-free thread-local, so access compiles to a few `fs:`-relative
//! instructions and never registers a destructor or allocates
//! (rust-lang/rust#116390; the GlobalAlloc "re-entrance" rules).
//!
//! ```text
//!  ThreadState (thread-local)
//!  ┌──────────────────────────────────────────────────────────────────┐
//!  │ counters: countdown │ gap_sum │ allocs │ frees │ free_bytes │ seq │ ← registered in
//!  │           filter_top (the region's window, published by start)  │   REGISTRY, read by
//!  │ free_limit: 0 until registered and after exit, else HUGE_MIN     │   the drainer
//!  │ registered: 0 new, 1 in REGISTRY, 2 no slot, 3 exited            │
//!  │ gap_mean, rng, in_slow (re-entrancy guard), tid, stack_hi        │
//!  └──────────────────────────────────────────────────────────────────┘
//!  alloc fast path:  countdown -= size; < 0 → slow;  allocs += 1
//!  free fast path:   (filter_top - ptr) >> 37 == 0 or size > free_limit → cold;
//!                    frees += 1; free_bytes += size
//! ```
//!
//! The top of the region's filter window (`live::in_filter_window`) is
//! copied into every thread's block (`ThreadRegistry::publish_filter_top`,
//! at `start()`; no block is placed in the region until that is complete)
//! so the free test reads no shared line and loads no address first: a
//! thread-local load, a subtraction, a shift, a branch.
//! A thread without a registry slot cannot be told; it keeps `free_limit`
//! 0, so its frees take the cold path, until it finds the value published
//! there.
//!
//! Every counter is written only by its thread, with a relaxed load and
//! store (no lock prefix, no shared cache line), and read by the drainer
//! through the registry. Bytes allocated need no counter of their own: they
//! are the gaps drawn minus the countdown.
//!
//! A thread registers on its first slow-path visit (its first allocation:
//! the countdown starts at 0) or its first free (`free_limit` starts at 0, so
//! that free takes the cold path), and sets a pthread key whose destructor
//! folds its totals into the retired totals when it exits. glibc runs key
//! destructors after Rust's thread-local destructors, so every free those
//! make is counted; allocations and frees made even later (by another
//! key's destructor) find the countdown negative and `free_limit` 0 again,
//! take the slow paths and are added to the retired totals directly.
//!
//! One compare against `free_limit` thus does three jobs on the free fast
//! path: the one-time registration, the size test for huge sampled blocks
//! (which live in the inner allocator, see `slow.rs`), and frees after exit.

use core::cell::Cell;
use core::ffi::c_void;
use core::sync::atomic::Ordering;

use lowprof_core::live::{FILTER_NONE, in_filter_window};
use lowprof_core::poisson::{self, Rng};
use lowprof_core::registry::{Registration, ThreadCounters, ThreadRegistry, Totals};
use lowprof_core::unwind::Bounds;

use crate::state::{HUGE_MIN, REGION};

/// Threads registered at once; more are counted when they exit.
pub(crate) const MAX_THREADS: usize = 4096;
pub(crate) static REGISTRY: ThreadRegistry<MAX_THREADS> = ThreadRegistry::new();

const NEW: u8 = 0;
const REGISTERED: u8 = 1;
const NO_SLOT: u8 = 2;
const EXITED: u8 = 3;

/// The countdown after a thread's totals were folded at exit: negative for
/// any allocation size, so every later allocation takes the slow path.
const AFTER_EXIT: i64 = i64::MIN / 2;

pub(crate) struct ThreadState {
    counters: ThreadCounters,
    /// Frees of more bytes than this take the cold path: 0 before the
    /// thread registers and after it exits, else [`HUGE_MIN`].
    free_limit: Cell<usize>,
    registered: Cell<u8>,
    registration: Cell<Option<Registration>>,
    gap_mean: Cell<u64>,
    rng: Cell<u64>,
    in_slow: Cell<bool>,
    tid: Cell<u64>,
    /// This thread's stack `[lo, hi)`; hi 0 = not looked up yet, 1 = unknown.
    stack_lo: Cell<u64>,
    stack_hi: Cell<u64>,
}

impl ThreadState {
    const fn new() -> Self {
        Self {
            counters: ThreadCounters::new(),
            free_limit: Cell::new(0),
            registered: Cell::new(NEW),
            registration: Cell::new(None),
            gap_mean: Cell::new(0),
            rng: Cell::new(0),
            in_slow: Cell::new(false),
            tid: Cell::new(0),
            stack_lo: Cell::new(0),
            stack_hi: Cell::new(0),
        }
    }
}

std::thread_local! {
    static STATE: ThreadState = const { ThreadState::new() };
}

/// Allocation fast path: subtracts `size` from the countdown and counts the
/// allocation. Returns `false` when the countdown crossed zero (take the slow
/// path, which counts instead). Allocation-free, async-signal-safe.
#[inline(always)]
pub(crate) fn on_alloc(size: usize) -> bool {
    STATE
        .try_with(|s| {
            if s.counters.take(size) < 0 {
                return false;
            }
            s.counters.allocs.add_owned(1);
            true
        })
        // Thread-local storage already torn down: not sampled, not counted.
        .unwrap_or(true)
}

/// Whether `ptr` may be a sampled block: true for every block in the
/// region once this thread has the region's window, and rarely for a
/// neighbour (the cold path decides exactly). A thread that cannot have it
/// yet keeps its free limit at 0, which sends every free to the cold path.
/// Allocation-free.
#[inline(always)]
pub(crate) fn maybe_sampled(ptr: usize) -> bool {
    #[cfg(target_pointer_width = "64")]
    {
        STATE
            .try_with(|s| in_filter_window(s.counters.filter_top.load(Ordering::Relaxed), ptr))
            .unwrap_or(false)
    }
    // A 2^31 window would be half of memory (see `FILTER_NONE`).
    #[cfg(not(target_pointer_width = "64"))]
    {
        REGION.contains(ptr)
    }
}

/// Tells every registered thread the region's filter window (see the
/// module docs). Call it before sampling is switched on.
pub(crate) fn publish_region() {
    let top = REGION.filter_top();
    if top != FILTER_NONE && REGISTRY.filter_top() != top {
        REGISTRY.publish_filter_top(top);
    }
}

/// Whether blocks may be placed in the region: only once every thread can
/// recognise them (the window is published). Slow path.
pub(crate) fn region_ready() -> bool {
    REGISTRY.published_filter_top() != FILTER_NONE
}

/// Frees of more bytes than this must call [`count_free_cold`]; smaller
/// ones [`count_free`]. Allocation-free.
#[inline(always)]
pub(crate) fn free_limit() -> usize {
    STATE.try_with(|s| s.free_limit.get()).unwrap_or(0)
}

/// Deallocation fast path, for a free of at most [`free_limit`] bytes:
/// counts it. Allocation-free.
#[inline(always)]
pub(crate) fn count_free(size: usize) {
    let _ = STATE.try_with(|s| {
        s.counters.frees.add_owned(1);
        s.counters.free_bytes.add_owned(size as u64);
    });
}

/// Counts a free on the cold path: registers a thread whose first act is a
/// free, and adds a free made after the thread's exit hook straight to the
/// retired totals. Allocation-free.
pub(crate) fn count_free_cold(size: usize) {
    let late = Totals { free_count: 1, free_bytes: size as u64, ..Totals::default() };
    let counted = STATE.try_with(|s| {
        register(s);
        if s.registered.get() == EXITED {
            return false;
        }
        if s.free_limit.get() == 0 && s.registered.get() == NO_SLOT {
            learn_filter_top(s);
        }
        s.counters.frees.add_owned(1);
        s.counters.free_bytes.add_owned(size as u64);
        true
    });
    if counted != Ok(true) {
        REGISTRY.fold(&late);
    }
}

/// What the slow path decided for one allocation.
pub(crate) enum Decision {
    /// Not sampled: hand it to the inner allocator.
    Pass,
    /// Sampled, with the mean interval its gap was drawn with. The
    /// re-entrancy guard is held: call [`leave`] when done.
    Sample { mean: u64 },
}

/// The slow path of an allocation of `size` bytes whose countdown crossed
/// zero (or whose thread is new): registers the thread, counts the
/// allocation, draws the next gap and decides whether this block is sampled.
///
/// `enabled` says whether sampling is on; `draw_mean` is the interval to draw
/// the next gap with (also while off, so that turning sampling on finds every
/// thread mid-way through a genuine exponential gap: by memorylessness the
/// samples from that moment on are unbiased, with no dead zone).
///
/// Allocation-free; a nested call while the guard is held only counts.
pub(crate) fn visit(size: usize, enabled: bool, draw_mean: u64) -> Decision {
    STATE
        .try_with(|s| {
            if s.registered.get() == EXITED {
                // After the exit hook folded this thread's totals: count
                // straight into the retired ones, and stay on this path.
                REGISTRY.fold(&Totals {
                    alloc_count: 1,
                    alloc_bytes: size as u64,
                    ..Totals::default()
                });
                s.counters.countdown.set(AFTER_EXIT as u64);
                return Decision::Pass;
            }
            s.counters.allocs.add_owned(1);
            if s.in_slow.get() {
                return Decision::Pass;
            }
            s.in_slow.set(true);
            register(s);
            let mut rng = rng(s);
            let fired_mean = s.gap_mean.get();
            let decision = if fired_mean == 0 {
                // The thread's first allocation: its sampling process starts
                // now, so this block is sampled if the first gap ends in it.
                let gap = poisson::next_gap(&mut rng, draw_mean);
                if enabled && gap < size as u64 {
                    s.counters.reset_countdown(poisson::next_gap(&mut rng, draw_mean) as i64);
                    Decision::Sample { mean: draw_mean }
                } else {
                    s.counters.reset_countdown(gap as i64 - size as i64);
                    Decision::Pass
                }
            } else {
                s.counters.reset_countdown(poisson::next_gap(&mut rng, draw_mean) as i64);
                if enabled { Decision::Sample { mean: fired_mean } } else { Decision::Pass }
            };
            s.gap_mean.set(draw_mean);
            s.rng.set(rng.state());
            if matches!(decision, Decision::Pass) {
                s.in_slow.set(false);
            }
            decision
        })
        .unwrap_or(Decision::Pass)
}

/// Releases the guard taken by a [`Decision::Sample`].
pub(crate) fn leave() {
    let _ = STATE.try_with(|s| s.in_slow.set(false));
}

/// Replaces the calling thread's current gap with a fresh one of mean
/// `mean`, so that the thread that starts sampling or changes the interval
/// samples at the new mean at once, instead of after finishing a gap drawn
/// at the old one (possibly megabytes). Unbiased: the exponential gap is
/// memoryless, so what is left of it may be redrawn at any moment; the next
/// sample carries the new mean's weight. Bytes allocated stay exact
/// (`reset_countdown`). Other threads switch at their next sample. Does
/// nothing for a thread that has not allocated yet (its first allocation
/// draws at the current mean) or inside the slow path.
pub(crate) fn redraw_gap(mean: u64) {
    let _ = STATE.try_with(|s| {
        if s.gap_mean.get() == 0 || s.in_slow.get() || s.registered.get() == EXITED {
            return;
        }
        let mut rng = rng(s);
        s.counters.reset_countdown(poisson::next_gap(&mut rng, mean) as i64);
        s.gap_mean.set(mean);
        s.rng.set(rng.state());
    });
}

/// This thread's OS id (0 if unknown).
pub(crate) fn tid() -> u64 {
    STATE.try_with(|s| s.tid.get()).unwrap_or(0)
}

/// The readable range of this thread's stack above `sp`.
///
/// The first call on a thread asks pthread for its stack (exact, for every
/// thread, unlike the maps-derived table the CPU sampler uses). That call is
/// glibc's, and may use glibc's own `malloc` — never Rust's global allocator,
/// so it cannot re-enter lowprof — and, for the main thread only, read
/// `/proc/self/maps`. It happens once per thread, on its first sample (see
/// the crate README for this deviation from "no system calls").
pub(crate) fn stack_bounds(sp: u64) -> Bounds {
    let (lo, hi) = STATE
        .try_with(|s| {
            if s.stack_hi.get() == 0 {
                let (lo, hi) = crate::os::thread_stack().unwrap_or((0, 1));
                s.stack_lo.set(lo);
                s.stack_hi.set(hi);
            }
            (s.stack_lo.get(), s.stack_hi.get())
        })
        .unwrap_or((0, 1));
    if lo <= sp && sp < hi {
        Bounds { lo: sp, hi }
    } else {
        // Running on another stack (a coroutine, a signal stack): use the
        // published regions, never a range that spans other mappings.
        lowprof_core::bounds::STACK_REGIONS.for_current_thread(sp)
    }
}

/// Exact totals over all threads, and how many threads could not register
/// (their totals appear when they exit).
pub(crate) fn totals() -> (Totals, u64) {
    // Yield while a thread is mid-exit, so a preempted one can finish.
    (REGISTRY.totals_with(std::thread::yield_now), REGISTRY.unregistered())
}

/// In the child of a `fork`: keeps only the calling thread's registration
/// (with its new thread id) and retires every other, whose threads do not
/// exist here. See [`ThreadRegistry::retain_only_after_fork`].
///
/// # Safety
///
/// As [`crate::after_fork_in_child`].
pub(crate) unsafe fn after_fork_in_child() {
    let tid = crate::os::gettid();
    let (keep, unregistered) = STATE
        .try_with(|s| {
            if s.registered.get() != NEW {
                s.tid.set(tid);
            }
            match (s.registered.get(), s.registration.get()) {
                (REGISTERED, Some(r)) => (Some((r, tid)), false),
                (NO_SLOT, _) => (None, true),
                _ => (None, false),
            }
        })
        .unwrap_or((None, false));
    // SAFETY: the caller's contract (a forked child, before any other
    // thread starts); `keep` is this thread's own registration.
    unsafe { REGISTRY.retain_only_after_fork(keep, unregistered) };
}

/// Threads registered now.
pub(crate) fn threads() -> usize {
    REGISTRY.registered()
}

fn register(s: &ThreadState) {
    if s.registered.get() != NEW {
        return;
    }
    let tid = crate::os::gettid();
    s.tid.set(tid);
    // The exit hook is what makes registering safe: without it the registry
    // would keep a pointer into thread-local storage that is gone.
    if !crate::os::set_exit_hook((s as *const ThreadState).cast_mut().cast()) {
        s.registered.set(NO_SLOT);
        learn_filter_top(s);
        return;
    }
    // SAFETY: `s.counters` lives in this thread's thread-local storage until
    // the thread exits, and `thread_exit` (the pthread key destructor just
    // set) unregisters it before that storage goes.
    let registration = unsafe { REGISTRY.register(tid, &s.counters) };
    s.registration.set(registration);
    if registration.is_some() {
        s.registered.set(REGISTERED);
        // From here on frees take the fast path: counted in this block,
        // which the registry makes visible, and tested against the window
        // the registry copied or will publish into it.
        s.free_limit.set(HUGE_MIN);
    } else {
        s.registered.set(NO_SLOT);
        learn_filter_top(s);
    }
    crate::state::run_new_thread_hook();
}

/// For a thread the registry cannot publish to: copies the region's filter
/// window once it is published, and only then lets its frees take the fast
/// path.
fn learn_filter_top(s: &ThreadState) {
    let top = REGISTRY.filter_top();
    if top != FILTER_NONE {
        s.counters.filter_top.store(top, Ordering::Relaxed);
        s.free_limit.set(HUGE_MIN);
    }
}

/// The pthread key destructor: folds the exiting thread's totals into the
/// retired totals. Runs after the thread's Rust thread-local destructors.
pub(crate) extern "C" fn thread_exit(state: *mut c_void) {
    // SAFETY: the key's value is the address of this thread's ThreadState
    // (set in `register`), still alive while key destructors run.
    let Some(s) = (unsafe { state.cast::<ThreadState>().as_ref() }) else { return };
    match (s.registered.get(), s.registration.get()) {
        (REGISTERED, Some(registration)) => REGISTRY.unregister(registration, &s.counters),
        (NO_SLOT, _) => REGISTRY.fold_unregistered(&s.counters),
        _ => {}
    }
    s.registered.set(EXITED);
    // Whatever this thread still allocates or frees (in a later key's
    // destructor) takes the slow paths, which count it as retired.
    s.free_limit.set(0);
    s.counters.countdown.set(AFTER_EXIT as u64);
}

fn rng(s: &ThreadState) -> Rng {
    let state = s.rng.get();
    if state != 0 {
        return Rng::from_state(state);
    }
    // Seed from this thread's TLS address, its id and the clock: different
    // threads, and the same thread across runs, draw different gaps.
    let seed =
        (s as *const ThreadState as u64) ^ s.tid.get().rotate_left(32) ^ crate::os::clock_ns();
    Rng::new(seed)
}
