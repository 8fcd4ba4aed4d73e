//! A switchable `#[global_allocator]` for the realistic benchmark: every
//! call goes to `System`, `CountdownOnly<System>` or `SampledAlloc<System>`
//! according to a global mode ([`set_mode`]), so the three can be measured on
//! the same workload in one process. Declare it in a binary with
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: lowprof_benches::switch::Switch = lowprof_benches::switch::Switch;
//! ```
//!
//! # Who frees what
//!
//! A block must be freed by the allocator that made it. `System` and
//! `CountdownOnly<System>` blocks are both plain `System` blocks, and
//! `SampledAlloc<System>` forwards every block it did not sample to `System`
//! too, so the only blocks that must not reach `System::dealloc` are
//! *sampled* ones (they live in lowprof's region). `SampledAlloc::dealloc`
//! recognises those and routes everything else to `System`, so it can free
//! any block of any mode.
//!
//! The simplest safe rule would be "always free through `SampledAlloc`", but
//! then the `System` and floor baselines would pay lowprof's free path
//! (region range check, huge-block threshold, per-thread free counting) and
//! the ratios would understate its overhead. Instead frees go through
//! `SampledAlloc` only once sampled mode has *ever* been entered
//! (`SAMPLED_EVER`, sticky, set before the mode switch): before that no
//! sampled block can exist, so `System::dealloc` is exact. The group runs the
//! sampled mode last, so the baselines free through `System` and the sampled
//! mode through `SampledAlloc`: each mode pays exactly its own free path plus
//! the same one-load dispatch branch. Run in any other order (e.g. with a
//! filter) it stays memory-safe; only modes measured after the sampled one
//! would carry lowprof's free path. `realloc` routes like `dealloc`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use lowprof_alloc::SampledAlloc;

use crate::CountdownOnly;

/// New allocations go to `System`.
pub const MODE_SYSTEM: u8 = 0;
/// New allocations go to `CountdownOnly<System>`.
pub const MODE_FLOOR: u8 = 1;
/// New allocations go to `SampledAlloc<System>`.
pub const MODE_SAMPLED: u8 = 2;

/// Which allocator serves new allocations.
static MODE: AtomicU8 = AtomicU8::new(MODE_SYSTEM);
/// Sticky: sampled mode has been entered, so sampled blocks may exist and
/// frees must go through `SampledAlloc` (see the module docs).
static SAMPLED_EVER: AtomicBool = AtomicBool::new(false);

static SAMPLED: SampledAlloc<System> = SampledAlloc::new(System);
static FLOOR: CountdownOnly<System> = CountdownOnly::new(System);

/// The switchable global allocator: one mode load and a branch in front of
/// whichever allocator the mode names (the same cost in every mode).
pub struct Switch;

/// Sends new allocations to the allocator `mode` names.
pub fn set_mode(mode: u8) {
    if mode == MODE_SAMPLED {
        SAMPLED_EVER.store(true, Ordering::SeqCst);
    }
    // Release: a thread that sees the new mode (Acquire below) also sees
    // `SAMPLED_EVER`, and so does any thread its blocks are handed to.
    MODE.store(mode, Ordering::Release);
}

// SAFETY: allocations are forwarded to one of three allocators; frees and
// reallocs go to `System` while no sampled block can exist and to
// `SampledAlloc<System>` (which routes unsampled blocks to `System`)
// afterwards, so every block reaches the allocator that can free it. See the
// module docs.
unsafe impl GlobalAlloc for Switch {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract, whichever allocator the mode names.
        unsafe {
            match MODE.load(Ordering::Acquire) {
                MODE_SYSTEM => System.alloc(layout),
                MODE_FLOOR => FLOOR.alloc(layout),
                _ => SAMPLED.alloc(layout),
            }
        }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract, whichever allocator the mode names.
        unsafe {
            match MODE.load(Ordering::Acquire) {
                MODE_SYSTEM => System.alloc_zeroed(layout),
                MODE_FLOOR => FLOOR.alloc_zeroed(layout),
                _ => SAMPLED.alloc_zeroed(layout),
            }
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SAMPLED_EVER.load(Ordering::Relaxed) {
            // SAFETY: `SampledAlloc` frees its sampled blocks itself and
            // every other block through `System`, which made it.
            unsafe { SAMPLED.dealloc(ptr, layout) }
        } else {
            // SAFETY: no sampled block exists yet, so `System` made it.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if SAMPLED_EVER.load(Ordering::Relaxed) {
            // SAFETY: as `dealloc`; `SampledAlloc::realloc` moves sampled
            // blocks and forwards unsampled ones to `System::realloc`.
            return unsafe { SAMPLED.realloc(ptr, layout, new_size) };
        }
        // SAFETY: no sampled block exists yet, so `System` made this one
        // (the floor forwards to `System` too); forwarded contract.
        unsafe {
            match MODE.load(Ordering::Acquire) {
                MODE_FLOOR => FLOOR.realloc(ptr, layout, new_size),
                _ => System.realloc(ptr, layout, new_size),
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
