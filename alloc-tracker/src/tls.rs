//! Per-thread sampling state for std targets: one `const`-initialised,
//! `Drop`-free thread-local, so access compiles to a few `fs:`-relative
//! instructions and never registers a destructor or allocates
//! (rust-lang/rust#116390; the GlobalAlloc "re-entrance" rules).
//!
//! ```text
//!  ThreadState (per thread)           SLOTS (static, one slot per live thread)
//!  ┌──────────────┐                   ┌──────────────────────────────────┐
//!  │ countdown    │ bytes to next sample point (fast path: sub + sign)   │
//!  │ gap_mean     │ mean the current gap was drawn with (0: none yet)    │
//!  │ rng          │ xorshift state                                       │
//!  │ slot ────────┼──────────────────►│ allocs │ alloc_b │ frees │ free_b │
//!  │ in_slow      │ re-entrancy guard └──────────────────────────────────┘
//!  │ tid, stack_hi│ filled on first need
//!  └──────────────┘
//! ```
//!
//! `slot` starts at a shared sentinel; the first slow-path visit claims a
//! real slot. A new thread's countdown starts at 0, so its first allocation
//! always takes the slow path and claims before the fast path ever counts.

use core::cell::Cell;

use lowprof_core::poisson::{self, Rng};
use lowprof_core::registry::{ThreadSlot, ThreadSlots, Totals};
use lowprof_core::unwind::Bounds;

/// Threads with their own exact-total slot at once; more share one slot.
pub(crate) const MAX_THREADS: usize = 4096;
pub(crate) static SLOTS: ThreadSlots<MAX_THREADS> = ThreadSlots::new();
static SENTINEL: ThreadSlot = ThreadSlot::new();

pub(crate) struct ThreadState {
    countdown: Cell<isize>,
    gap_mean: Cell<u64>,
    rng: Cell<u64>,
    slot: Cell<*const ThreadSlot>,
    in_slow: Cell<bool>,
    tid: Cell<u64>,
    /// Top of this thread's stack; 0 = not looked up yet, 1 = unknown.
    stack_hi: Cell<u64>,
}

impl ThreadState {
    const fn new() -> Self {
        Self {
            countdown: Cell::new(0),
            gap_mean: Cell::new(0),
            rng: Cell::new(0),
            slot: Cell::new(&SENTINEL),
            in_slow: Cell::new(false),
            tid: Cell::new(0),
            stack_hi: Cell::new(0),
        }
    }

    fn slot(&self) -> &'static ThreadSlot {
        // SAFETY: `slot` only ever holds the address of `SENTINEL` or of a
        // slot in `SLOTS`, both statics.
        unsafe { &*self.slot.get() }
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
            let left = s.countdown.get().wrapping_sub(size as isize);
            s.countdown.set(left);
            if left < 0 {
                return false;
            }
            let slot = s.slot();
            slot.allocs.add_owned(1);
            slot.alloc_bytes.add_owned(size as u64);
            true
        })
        // Thread-local storage already torn down: not sampled, not counted.
        .unwrap_or(true)
}

/// Deallocation fast path: counts the free. Returns `false` if this thread
/// has no slot yet (take [`count_free_slow`]). Allocation-free.
#[inline(always)]
pub(crate) fn on_free(size: usize) -> bool {
    STATE
        .try_with(|s| {
            let slot = s.slot.get();
            if core::ptr::eq(slot, &SENTINEL) {
                return false;
            }
            let slot = s.slot();
            slot.frees.add_owned(1);
            slot.free_bytes.add_owned(size as u64);
            true
        })
        .unwrap_or(true)
}

/// Counts a free for a thread that has no slot yet.
#[cold]
#[inline(never)]
pub(crate) fn count_free_slow(size: usize) {
    let _ = STATE.try_with(|s| {
        let slot = claim(s);
        slot.frees.add_owned(1);
        slot.free_bytes.add_owned(size as u64);
    });
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
/// zero (or whose thread is new): claims a slot, counts the allocation,
/// draws the next gap and decides whether this block is sampled.
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
            if s.in_slow.get() {
                let slot = s.slot();
                slot.allocs.add_owned(1);
                slot.alloc_bytes.add_owned(size as u64);
                return Decision::Pass;
            }
            s.in_slow.set(true);
            let slot = claim(s);
            slot.allocs.add_owned(1);
            slot.alloc_bytes.add_owned(size as u64);
            let mut rng = rng(s);
            let fired_mean = s.gap_mean.get();
            let decision = if fired_mean == 0 {
                // The thread's first allocation: its sampling process starts
                // now, so this block is sampled if the first gap ends in it.
                let gap = poisson::next_gap(&mut rng, draw_mean);
                if enabled && gap < size as u64 {
                    s.countdown.set(poisson::next_gap(&mut rng, draw_mean) as isize);
                    Decision::Sample { mean: draw_mean }
                } else {
                    s.countdown.set(gap as isize - size as isize);
                    Decision::Pass
                }
            } else {
                s.countdown.set(poisson::next_gap(&mut rng, draw_mean) as isize);
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
/// `/proc/self/maps`. It happens once per thread, on its first sample, and is
/// the one exception to "no syscalls in the slow path" (documented in
/// DESIGN-deviations in the crate README).
pub(crate) fn stack_bounds(sp: u64) -> Bounds {
    let hi = STATE
        .try_with(|s| {
            if s.stack_hi.get() == 0 {
                s.stack_hi.set(crate::os::thread_stack_top().unwrap_or(1));
            }
            s.stack_hi.get()
        })
        .unwrap_or(1);
    if hi > sp && hi - sp <= (1 << 30) {
        Bounds { lo: sp, hi }
    } else {
        // Running on another stack (a coroutine, a signal stack): use the
        // published regions.
        lowprof_core::bounds::STACK_REGIONS.for_current_thread(sp)
    }
}

/// Exact totals over all threads.
pub(crate) fn totals() -> (Totals, u64) {
    (SLOTS.totals(), SLOTS.overflow_users())
}

/// Frees the slots of exited threads; `alive(tid)` says whether a thread runs.
pub(crate) fn retire_exited(alive: &mut dyn FnMut(u64) -> bool) -> usize {
    let mut retired = 0;
    SLOTS.for_each_owned(|index, owner| {
        if !alive(owner) && SLOTS.retire(index, owner) {
            retired += 1;
        }
    });
    retired
}

/// Threads currently holding a slot.
pub(crate) fn threads_with_slots() -> usize {
    SLOTS.claimed()
}

fn claim(s: &ThreadState) -> &'static ThreadSlot {
    if !core::ptr::eq(s.slot.get(), &SENTINEL) {
        return s.slot();
    }
    let tid = crate::os::gettid();
    s.tid.set(tid);
    let slot = SLOTS.claim(tid);
    s.slot.set(slot);
    slot
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
