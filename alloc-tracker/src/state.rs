//! The process-wide state shared by every `SampledAlloc` instance and read by
//! the drainer: one per process, because the allocator is.
//!
//! ```text
//!  CONTROL.mean   0 = sampling off, else the mean bytes between samples
//!  REGION         where sampled blocks live (lowprof_core::live)
//!  HUGE           sampled blocks too big for the region
//!  RINGS          HEAP_ALLOC / HEAP_FREE records for the drainer
//!  SLOTS          per-thread exact totals (std)
//!  COUNTS         samples taken, samples whose event or slot was lost, …
//! ```

use core::sync::atomic::{AtomicBool, AtomicU64};

use lowprof_core::counters::Counter;
use lowprof_core::live::{HugeTable, Region};
use lowprof_core::ring::RingSet;

/// Rings for heap records. 8 × 8192 words = 512 KiB of address space, touched
/// only as used. A record is 8 header words plus up to 128 frames; at the
/// default 512 KiB interval even 4 GB/s of allocation is ~8000 samples/s, a
/// few hundred per 20 ms drain.
pub(crate) const RINGS_N: usize = 8;
/// Words per heap ring.
pub(crate) const RING_WORDS: usize = 8192;
pub(crate) static RINGS: RingSet<RINGS_N, RING_WORDS> = RingSet::new();

pub(crate) static REGION: Region = Region::new();
pub(crate) static HUGE: HugeTable<256> = HugeTable::new();

/// Sampled blocks larger than this that do not fit the region go to the
/// inner allocator and the [`HUGE`] table, and only frees larger than this
/// look there. A constant, so the free fast path compares with an immediate.
/// (The std region's slots reach 16–256 MiB; a smaller no_std region leaves
/// sampled blocks between its largest slot and this size untracked, counted.)
pub(crate) const HUGE_MIN: usize = 1 << 20;

/// Whether sampling is on.
pub(crate) static ENABLED: AtomicBool = AtomicBool::new(false);
/// Mean interval set at run time (0: use the allocator's own).
pub(crate) static MEAN_OVERRIDE: AtomicU64 = AtomicU64::new(0);
/// The mean interval the global allocator was declared with (0 until its
/// first slow-path visit).
pub(crate) static DECLARED_MEAN: AtomicU64 = AtomicU64::new(0);

/// Set by the first slow-path visit of any `SampledAlloc`: proof that one is
/// serving allocations (the global allocator, in a normal program).
pub(crate) static INSTALLED: AtomicBool = AtomicBool::new(false);

/// A `fn()` called by each new thread after it registers (0: none).
pub(crate) static NEW_THREAD_HOOK: core::sync::atomic::AtomicUsize =
    core::sync::atomic::AtomicUsize::new(0);

/// Calls the new-thread hook, if any. Slow path only. (Without std there
/// are no threads to register, so nothing calls it.)
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) fn run_new_thread_hook() {
    let hook = NEW_THREAD_HOOK.load(core::sync::atomic::Ordering::Acquire);
    if hook != 0 {
        // SAFETY: only `set_new_thread_hook` stores here, and only the
        // address of a `fn()`.
        let hook: fn() = unsafe { core::mem::transmute::<usize, fn()>(hook) };
        hook();
    }
}

/// Identifiers for sampled blocks; 0 is never used.
pub(crate) static NEXT_SAMPLE_ID: AtomicU64 = AtomicU64::new(1);

/// Counts kept on the slow paths.
pub(crate) struct Counts {
    /// Allocations sampled.
    pub samples: Counter,
    /// Sampled blocks placed where a free finds them (region or huge table).
    pub published: Counter,
    /// Tracked sampled blocks that have been freed.
    pub freed_samples: Counter,
    /// Samples whose record was dropped because the rings were full.
    pub dropped_samples: Counter,
    /// Samples whose stack walk found no frame at all (code built without
    /// frame pointers).
    pub no_stack: Counter,
    /// Sampled allocations whose block could not be placed in the region or
    /// the huge table: their allocation is counted, their in-use part is lost.
    pub untracked: Counter,
    /// Estimated objects of samples whose record was dropped (×1024, fixed point).
    pub dropped_objects_x1024: Counter,
    /// Estimated bytes of samples whose record was dropped.
    pub dropped_bytes: Counter,
    /// Slow-path visits (samples, thread first visits, rechecks while off).
    pub slow_visits: Counter,
    /// Pages of large freed sampled blocks given back to the kernel.
    pub released_bytes: Counter,
}

pub(crate) static COUNTS: Counts = Counts {
    samples: Counter::new(),
    published: Counter::new(),
    freed_samples: Counter::new(),
    dropped_samples: Counter::new(),
    no_stack: Counter::new(),
    untracked: Counter::new(),
    dropped_objects_x1024: Counter::new(),
    dropped_bytes: Counter::new(),
    slow_visits: Counter::new(),
    released_bytes: Counter::new(),
};
