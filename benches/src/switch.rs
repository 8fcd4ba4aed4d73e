//! A switchable `#[global_allocator]` for the realistic benchmark: every
//! call goes to the inner allocator `A` (`System` unless said otherwise),
//! `CountdownOnly<A>`, `AtomicCounting<A>` or `SampledAlloc<A>` according to
//! a global mode ([`set_mode`]), so they can be measured on the same workload
//! in one process. Declare it in a binary with
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: lowprof_benches::switch::Switch = lowprof_benches::switch::Switch::new(std::alloc::System);
//! ```
//!
//! The mode is process-wide: one `Switch` per binary (its global allocator).
//!
//! # Who frees what
//!
//! A block must be freed by the allocator that made it. Blocks of `A`,
//! `CountdownOnly<A>` and `AtomicCounting<A>` are all plain `A` blocks, and
//! `SampledAlloc<A>` forwards every block it did not sample to `A` too, so
//! the only blocks that must not reach `A::dealloc` are *sampled* ones (they
//! live in lowprof's region). `SampledAlloc::dealloc` recognises those and
//! routes everything else to `A`, so it can free any block of any mode.
//!
//! The simplest safe rule would be "always free through `SampledAlloc`", but
//! then the baselines would pay lowprof's free path (region range check,
//! huge-block threshold, per-thread free counting) and the ratios would
//! understate its overhead. Instead frees follow a *free route*, one atomic
//! byte loaded per free: `SampledAlloc` once sampled mode has *ever* been
//! entered (sticky, set before the mode switch: before that no sampled block
//! can exist, so freeing through `A` is exact), otherwise `AtomicCounting`
//! in atomic mode (which pays its atomic on free as well) and `A` in the
//! others. The group runs the sampled mode last, so the baselines free
//! through `A` and the sampled mode through `SampledAlloc`: each mode pays
//! exactly its own free path plus the same one-load dispatch. Run in any
//! other order (e.g. with a filter) it stays memory-safe; only modes measured
//! after the sampled one would carry lowprof's free path (and a block freed
//! in another mode than it was allocated in only skews `AtomicCounting`'s
//! byte count). `realloc` routes like `dealloc`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering};

use lowprof_alloc::SampledAlloc;

use crate::{AtomicCounting, CountdownOnly};

/// New allocations go to the inner allocator.
pub const MODE_INNER: u8 = 0;
/// [`MODE_INNER`] under its old name (the inner allocator is usually `System`).
pub const MODE_SYSTEM: u8 = MODE_INNER;
/// New allocations go to `CountdownOnly<A>`.
pub const MODE_FLOOR: u8 = 1;
/// New allocations go to `AtomicCounting<A>`.
pub const MODE_ATOMIC: u8 = 2;
/// New allocations go to `SampledAlloc<A>`.
pub const MODE_SAMPLED: u8 = 3;

/// Frees go to the inner allocator.
const FREE_INNER: u8 = 0;
/// Frees go to `AtomicCounting<A>` (which forwards to the inner allocator).
const FREE_ATOMIC: u8 = 1;
/// Sticky: sampled mode has been entered, so sampled blocks may exist and
/// frees must go through `SampledAlloc` (see the module docs).
const FREE_SAMPLED: u8 = 2;

/// Which allocator serves new allocations.
static MODE: AtomicU8 = AtomicU8::new(MODE_INNER);
/// Which allocator frees (one of the `FREE_*` routes).
static FREE_ROUTE: AtomicU8 = AtomicU8::new(FREE_INNER);

/// The switchable global allocator: one mode load and a branch in front of
/// whichever allocator the mode names (the same cost in every mode).
pub struct Switch<A: 'static = System> {
    inner: A,
    floor: CountdownOnly<A>,
    atomic: AtomicCounting<A>,
    sampled: SampledAlloc<A>,
}

impl<A: Copy> Switch<A> {
    /// A switch over `inner` and its three wrappers.
    pub const fn new(inner: A) -> Self {
        Self {
            inner,
            floor: CountdownOnly::new(inner),
            atomic: AtomicCounting::new(inner),
            sampled: SampledAlloc::new(inner),
        }
    }
}

/// Sends new allocations to the allocator `mode` names.
pub fn set_mode(mode: u8) {
    let route = match mode {
        MODE_SAMPLED => FREE_SAMPLED,
        MODE_ATOMIC => FREE_ATOMIC,
        _ => FREE_INNER,
    };
    // Never leave the sampled route once taken.
    let _ = FREE_ROUTE
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| (r != FREE_SAMPLED).then_some(route));
    // Release: a thread that sees the new mode (Acquire below) also sees the
    // free route, and so does any thread its blocks are handed to.
    MODE.store(mode, Ordering::Release);
}

/// Takes frees back from `SampledAlloc` after the sampled mode, when that is
/// exact: the mode is no longer sampled and no sampled block is live
/// (`lowprof_alloc::stats().live_samples == 0`: no region slot and no
/// huge-table entry; untracked samples are plain inner blocks). Returns
/// whether it did. Only for phases where the calling thread is the only one
/// allocating (the interleaved cross-check): another thread could be inside
/// a sampled allocation that started before the mode changed.
pub fn leave_sampled_route() -> bool {
    let mode = MODE.load(Ordering::Acquire);
    if mode == MODE_SAMPLED || FREE_ROUTE.load(Ordering::SeqCst) != FREE_SAMPLED {
        return FREE_ROUTE.load(Ordering::SeqCst) != FREE_SAMPLED;
    }
    if lowprof_alloc::stats().live_samples != 0 {
        return false;
    }
    let route = if mode == MODE_ATOMIC { FREE_ATOMIC } else { FREE_INNER };
    FREE_ROUTE.store(route, Ordering::SeqCst);
    true
}

// SAFETY: allocations are forwarded to one of four allocators; frees and
// reallocs go to the inner allocator (directly or through `AtomicCounting`,
// which forwards) while no sampled block can exist and to `SampledAlloc<A>`
// (which routes unsampled blocks to the inner allocator) afterwards, so every
// block reaches an allocator that can free it. See the module docs.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Switch<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract, whichever allocator the mode names.
        unsafe {
            match MODE.load(Ordering::Acquire) {
                MODE_INNER => self.inner.alloc(layout),
                MODE_FLOOR => self.floor.alloc(layout),
                MODE_ATOMIC => self.atomic.alloc(layout),
                _ => self.sampled.alloc(layout),
            }
        }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract, whichever allocator the mode names.
        unsafe {
            match MODE.load(Ordering::Acquire) {
                MODE_INNER => self.inner.alloc_zeroed(layout),
                MODE_FLOOR => self.floor.alloc_zeroed(layout),
                MODE_ATOMIC => self.atomic.alloc_zeroed(layout),
                _ => self.sampled.alloc_zeroed(layout),
            }
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match FREE_ROUTE.load(Ordering::Relaxed) {
            // SAFETY: `SampledAlloc` frees its sampled blocks itself and
            // every other block through the inner allocator, which made it.
            FREE_SAMPLED => unsafe { self.sampled.dealloc(ptr, layout) },
            // SAFETY: no sampled block exists yet, so the inner allocator
            // made it; `AtomicCounting` forwards to it.
            FREE_ATOMIC => unsafe { self.atomic.dealloc(ptr, layout) },
            // SAFETY: as above.
            _ => unsafe { self.inner.dealloc(ptr, layout) },
        }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if FREE_ROUTE.load(Ordering::Relaxed) == FREE_SAMPLED {
            // SAFETY: as `dealloc`; `SampledAlloc::realloc` moves sampled
            // blocks and forwards unsampled ones to the inner allocator.
            return unsafe { self.sampled.realloc(ptr, layout, new_size) };
        }
        // SAFETY: no sampled block exists yet, so the inner allocator made
        // this one (the floor and the counter forward to it); forwarded
        // contract.
        unsafe {
            match MODE.load(Ordering::Acquire) {
                MODE_FLOOR => self.floor.realloc(ptr, layout, new_size),
                MODE_ATOMIC => self.atomic.realloc(ptr, layout, new_size),
                _ => self.inner.realloc(ptr, layout, new_size),
            }
        }
    }
}

/// Entries of the realistic workload's map.
pub const ENTRIES: u32 = 200_000;

/// The realistic workload: builds a `BTreeMap<String, Vec<u8>>` of
/// [`ENTRIES`] entries (keys `key00000000`…, inserted in a scrambled order;
/// values 0–255 bytes) and drops it.
#[inline(never)]
pub fn workload() {
    let mut map = BTreeMap::new();
    for n in 0..ENTRIES {
        // 7919 is coprime with 200 000: a fixed permutation of 0..ENTRIES.
        let i = (n as u64 * 7919 % ENTRIES as u64) as u32;
        let len = (i.wrapping_mul(2_654_435_761) >> 24) as usize;
        map.insert(format!("key{i:08}"), vec![i as u8; len]);
    }
    black_box(&map);
    drop(map);
}
