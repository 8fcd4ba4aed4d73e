//! Sampling state for targets without std: one global countdown shared by
//! every context (embedded targets usually run one core; an interrupt that
//! allocates while the slow path runs is passed straight through by the
//! guard).
//!
//! Same functions as `tls.rs`, so the allocator code is written once. The
//! countdown and totals are updated with relaxed loads and stores, so they
//! are exact only while allocations do not overlap: an interrupt handler
//! that allocates between the load and the store of the interrupted
//! allocation, or a second core, can lose an update. A lost countdown update
//! means fewer samples at unchanged weights, i.e. estimates biased low by the
//! share of overlapping allocations; keep allocation out of interrupt
//! handlers (as most embedded code does) for exact numbers. Needs a target
//! with atomic compare-and-swap (the rings use it).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lowprof_core::poisson::{self, Rng};
use lowprof_core::registry::{ThreadCounters, Totals};
use lowprof_core::unwind::Bounds;

static COUNTERS: ThreadCounters = ThreadCounters::new();
static GAP_MEAN: AtomicU64 = AtomicU64::new(0);
static RNG: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
static IN_SLOW: AtomicBool = AtomicBool::new(false);

/// Allocation fast path (see `tls.rs`).
#[inline(always)]
pub(crate) fn on_alloc(size: usize) -> bool {
    if COUNTERS.take(size) < 0 {
        return false;
    }
    COUNTERS.allocs.add_owned(1);
    true
}

/// Whether `ptr` may be a sampled block (see `tls.rs`). The region here is
/// any memory the program gave, so the exact test.
#[inline(always)]
pub(crate) fn maybe_sampled(ptr: usize) -> bool {
    crate::state::REGION.contains(ptr)
}

/// Nothing to tell: [`maybe_sampled`] reads the region itself.
pub(crate) fn publish_region() {}

/// The region may be used as soon as it exists.
pub(crate) fn region_ready() -> bool {
    true
}

/// Frees above this size take the cold path (see `tls.rs`; without threads
/// there is no registration, so only huge blocks do).
#[inline(always)]
pub(crate) fn free_limit() -> usize {
    crate::state::HUGE_MIN
}

/// Deallocation fast path (see `tls.rs`).
#[inline(always)]
pub(crate) fn count_free(size: usize) {
    COUNTERS.frees.add_owned(1);
    COUNTERS.free_bytes.add_owned(size as u64);
}

/// Deallocation cold path: the same count.
pub(crate) fn count_free_cold(size: usize) {
    count_free(size);
}

/// What the slow path decided (see `tls.rs`).
pub(crate) enum Decision {
    /// Not sampled.
    Pass,
    /// Sampled with this mean; call [`leave`] when done.
    Sample { mean: u64 },
}

/// The slow path (see `tls.rs` for the reasoning).
pub(crate) fn visit(size: usize, enabled: bool, draw_mean: u64) -> Decision {
    COUNTERS.allocs.add_owned(1);
    if IN_SLOW.swap(true, Ordering::Acquire) {
        return Decision::Pass;
    }
    let mut rng = Rng::from_state(RNG.load(Ordering::Relaxed));
    let fired_mean = GAP_MEAN.load(Ordering::Relaxed);
    let decision = if fired_mean == 0 {
        let gap = poisson::next_gap(&mut rng, draw_mean);
        if enabled && gap < size as u64 {
            COUNTERS.reset_countdown(poisson::next_gap(&mut rng, draw_mean) as i64);
            Decision::Sample { mean: draw_mean }
        } else {
            COUNTERS.reset_countdown(gap as i64 - size as i64);
            Decision::Pass
        }
    } else {
        COUNTERS.reset_countdown(poisson::next_gap(&mut rng, draw_mean) as i64);
        if enabled { Decision::Sample { mean: fired_mean } } else { Decision::Pass }
    };
    GAP_MEAN.store(draw_mean, Ordering::Relaxed);
    RNG.store(rng.state(), Ordering::Relaxed);
    if matches!(decision, Decision::Pass) {
        IN_SLOW.store(false, Ordering::Release);
    }
    decision
}

/// Releases the guard taken by a [`Decision::Sample`].
pub(crate) fn leave() {
    IN_SLOW.store(false, Ordering::Release);
}

/// Replaces the global gap with a fresh one of mean `mean` (see
/// `tls::redraw_gap`); nothing before the first allocation or inside the
/// slow path.
pub(crate) fn redraw_gap(mean: u64) {
    if GAP_MEAN.load(Ordering::Relaxed) == 0 || IN_SLOW.swap(true, Ordering::Acquire) {
        return;
    }
    let mut rng = Rng::from_state(RNG.load(Ordering::Relaxed));
    COUNTERS.reset_countdown(poisson::next_gap(&mut rng, mean) as i64);
    GAP_MEAN.store(mean, Ordering::Relaxed);
    RNG.store(rng.state(), Ordering::Relaxed);
    IN_SLOW.store(false, Ordering::Release);
}

/// No thread ids without an OS.
pub(crate) fn tid() -> u64 {
    0
}

/// Stack bounds come from regions the application publishes into
/// `lowprof_core::bounds::STACK_REGIONS` (its stack's start and end).
pub(crate) fn stack_bounds(sp: u64) -> Bounds {
    lowprof_core::bounds::STACK_REGIONS.for_current_thread(sp)
}

/// Exact totals (one core) and the unregistered count (always 0 here).
pub(crate) fn totals() -> (Totals, u64) {
    (COUNTERS.totals(), 0)
}

/// One "thread".
pub(crate) fn threads() -> usize {
    1
}
