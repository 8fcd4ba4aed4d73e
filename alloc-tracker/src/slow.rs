//! The allocator's rare paths: sampling an allocation, ending a sampled
//! block, and the realloc cases. Everything here is `#[cold]`; the fast paths
//! in `lib.rs` reach it about once per mean interval of allocated bytes, or
//! on the free of a sampled block.
//!
//! ```text
//!  alloc_slow ─► visit (count, draw next gap, decide)
//!                 ├─ Pass   ─► inner allocator
//!                 └─ Sample ─► place (region slot + shadow | inner + huge table | inner, untracked)
//!                              └► record: walk frame pointers ─► HEAP_ALLOC ─► ring
//!  dealloc_sampled ─► region free ─► shadow back to inner ─► HEAP_FREE ─► ring ─► recycle
//! ```
//!
//! Nothing here allocates through the global allocator, takes a lock, waits
//! or makes a system call (but, once per thread, the stack lookup in
//! `tls.rs`): freed sampled slots of 64 KiB or more are queued as dirty and
//! their pages given back by the drainer, unless reused first.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use lowprof_core::event::{
    FLAG_TRUNCATED, FLAG_UNTRACKED, HeapAlloc, TAG_HEAP_ALLOC, TAG_HEAP_FREE,
};
use lowprof_core::live::SampledBlock;
use lowprof_core::poisson;
use lowprof_core::stack::Stack;
use lowprof_core::unwind;

use crate::SampledAlloc;
use crate::state::{COUNTS, HUGE, HUGE_MIN, NEXT_SAMPLE_ID, REGION, RINGS};
use crate::thread::{self, Decision};

/// Freed sampled slots at least this large give their pages back to the
/// system, from the drainer ([`crate::release_freed_memory`]), unless a new
/// sampled block reuses them first.
const RELEASE_MIN_BYTES: usize = 64 * 1024;

/// The caller's `Layout` again, from the size and alignment the cold paths
/// take in its place (so that the fast paths pass `__rust_alloc`'s
/// arguments on in their own registers; see [`dealloc_cold`]).
///
/// # Safety
///
/// `size` and `align` are `layout.size()` and `layout.align()` of one valid
/// `Layout`.
#[inline(always)]
unsafe fn caller_layout(size: usize, align: usize) -> Layout {
    // SAFETY: taken apart from a valid `Layout` (the caller's contract), so
    // `align` is a power of two and `size` rounded up to it does not exceed
    // `isize::MAX`.
    unsafe { Layout::from_size_align_unchecked(size, align) }
}

/// An allocation whose countdown crossed zero. Arguments in
/// `__rust_alloc`'s order, the allocator after them (see [`dealloc_cold`]).
///
/// # Safety
///
/// As `GlobalAlloc::alloc`, with `size` and `align` those of its layout
/// (so `size` is non-zero).
#[cold]
#[inline(never)]
pub(crate) unsafe fn alloc_slow<A: GlobalAlloc>(
    size: usize,
    align: usize,
    this: &SampledAlloc<A>,
    zeroed: bool,
) -> *mut u8 {
    // SAFETY: the callers pass the parts of a `Layout`.
    let layout = unsafe { caller_layout(size, align) };
    // This function's own frame record: the walk starts at its caller.
    let fp = unwind::current_frame_pointer();
    COUNTS.slow_visits.add(1);
    match thread::visit(layout.size(), crate::control::enabled(), this.draw_mean()) {
        Decision::Pass => {
            // SAFETY: forwarded with the caller's layout.
            unsafe { inner_alloc(&this.inner, layout, zeroed) }
        }
        Decision::Sample { mean } => {
            // SAFETY: as above.
            let ptr = unsafe { sample(this, layout, zeroed, mean, fp) };
            thread::leave();
            ptr
        }
    }
}

/// A free of a block in the filter's window: sampled, or rarely a
/// neighbour of the region.
///
/// The arguments come in the order `__rust_dealloc` receives them (pointer,
/// size, alignment), the allocator last, so the fast path jumps here with
/// no register moved (see [`dealloc_cold`]).
///
/// # Safety
///
/// As `GlobalAlloc::dealloc`, with `size` and `align` those of its layout.
#[cold]
#[inline(never)]
pub(crate) unsafe fn dealloc_in_window<A: GlobalAlloc>(
    ptr: *mut u8,
    size: usize,
    align: usize,
    this: &SampledAlloc<A>,
) {
    // SAFETY: forwarded contract.
    unsafe { dealloc_cold(ptr, size, align, this) }
}

/// Every free the fast path does not finish: a block in the filter's
/// window, or one of more than the thread's free limit (its first free, a
/// possibly huge sampled block, a free after its exit hook; a new thread's
/// free of a sampled block). Decides with the exact tests.
///
/// Takes the layout as its size and alignment, in `__rust_dealloc`'s
/// order, and the allocator last: passed as `(this, ptr, layout)`, the
/// non-inlined `__rust_dealloc` moved the pointer and the size into other
/// registers before its tests and back before calling `free` (three
/// `mov`s per free).
///
/// # Safety
///
/// As `GlobalAlloc::dealloc`, with `size` and `align` those of its layout.
#[cold]
#[inline(never)]
pub(crate) unsafe fn dealloc_cold<A: GlobalAlloc>(
    ptr: *mut u8,
    size: usize,
    align: usize,
    this: &SampledAlloc<A>,
) {
    // SAFETY: the callers pass the parts of a `Layout`.
    let layout = unsafe { caller_layout(size, align) };
    // SAFETY: forwarded contract, with the exact test.
    unsafe {
        if REGION.contains(ptr as usize) {
            dealloc_sampled(this, ptr, layout)
        } else {
            dealloc_outside_region(this, ptr, layout)
        }
    }
}

/// A free of a block inside the sampled-block region: ends the sample and
/// gives the shadow block back to the inner allocator.
///
/// # Safety
///
/// As `GlobalAlloc::dealloc`, and `ptr` is in the region.
unsafe fn dealloc_sampled<A: GlobalAlloc>(this: &SampledAlloc<A>, ptr: *mut u8, layout: Layout) {
    thread::count_free_cold(layout.size());
    let freed = REGION.free(ptr as usize);
    if freed.block.sample_id == 0 {
        // Already free (a double free in the program): never recycle twice,
        // which would hand one slot to two owners.
        return;
    }
    if freed.word != 0 {
        // SAFETY: the shadow was allocated from the inner allocator with
        // this block's layout when the block was sampled (`place`).
        unsafe { this.inner.dealloc(freed.word as *mut u8, layout) };
    }
    COUNTS.freed_samples.add(1);
    let _ = RINGS.push(thread::tid() as usize, TAG_HEAP_FREE, &[&[freed.block.sample_id]]);
    if freed.slot_len >= RELEASE_MIN_BYTES {
        // No system call here: reused warm, or released by the drainer.
        REGION.recycle_dirty(freed);
    } else {
        REGION.recycle(freed);
    }
}

/// A free, on the cold path, of a block the inner allocator made: it may be
/// a huge sampled block; the count registers a new thread, or goes to the
/// retired totals after the thread's exit hook.
///
/// # Safety
///
/// As `GlobalAlloc::dealloc`, and `ptr` is not in the region.
unsafe fn dealloc_outside_region<A: GlobalAlloc>(
    this: &SampledAlloc<A>,
    ptr: *mut u8,
    layout: Layout,
) {
    if layout.size() > HUGE_MIN {
        if let Some(block) = HUGE.remove(ptr as usize) {
            COUNTS.freed_samples.add(1);
            let _ = RINGS.push(thread::tid() as usize, TAG_HEAP_FREE, &[&[block.sample_id]]);
        }
    }
    thread::count_free_cold(layout.size());
    // SAFETY: the block came from the inner allocator with this layout.
    unsafe { this.inner.dealloc(ptr, layout) };
}

/// realloc of a block the fast path's free tests flagged: in the filter's
/// window, or larger than the thread's free limit. Decides exactly, as
/// [`dealloc_cold`] does: a sampled block moves ([`realloc_move`]); any
/// other is forwarded, its free counted on the cold path (which registers a
/// new thread, or counts into the retired totals after the exit hook), and
/// its new size drawn as usual (possibly sampled, through
/// [`realloc_fired`]). Arguments in `__rust_realloc`'s order, the allocator
/// last, like the other cold paths (for `realloc`, LLVM still moves
/// registers for the inner allocator's own fallback path). Reached by a
/// real call from the size-limit branch, so a sample taken here has the
/// `__rust_realloc` frame on its stack, which the exporter trims with the
/// other allocator frames.
///
/// # Safety
///
/// As `GlobalAlloc::realloc`, with `size` and `align` those of its layout.
#[cold]
#[inline(never)]
pub(crate) unsafe fn realloc_cold<A: GlobalAlloc>(
    ptr: *mut u8,
    size: usize,
    align: usize,
    new_size: usize,
    this: &SampledAlloc<A>,
) -> *mut u8 {
    // SAFETY: the callers pass the parts of a `Layout`.
    let layout = unsafe { caller_layout(size, align) };
    if REGION.contains(ptr as usize) || (size > HUGE_MIN && HUGE.contains(ptr as usize)) {
        // SAFETY: forwarded contract.
        return unsafe { realloc_move(this, ptr, layout, new_size) };
    }
    if thread::on_alloc(new_size) {
        thread::count_free_cold(size);
        // SAFETY: unsampled, so the inner allocator made it.
        return unsafe { this.inner.realloc(ptr, layout, new_size) };
    }
    // SAFETY: forwarded contract.
    unsafe { realloc_fired(ptr, size, align, new_size, this) }
}

/// realloc of a sampled block: a new allocation (sampled or not, on its own
/// draw), a copy, and the end of the old sample.
///
/// # Safety
///
/// As `GlobalAlloc::realloc`.
#[cold]
#[inline(never)]
pub(crate) unsafe fn realloc_move<A: GlobalAlloc>(
    this: &SampledAlloc<A>,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    // SAFETY: realloc's contract makes this layout valid.
    let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
    // SAFETY: `new_size` is non-zero (realloc's contract).
    let new = unsafe { this.alloc(new_layout) };
    if !new.is_null() {
        // SAFETY: both blocks are valid for the smaller size and distinct.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            this.dealloc(ptr, layout);
        }
    }
    new
}

/// realloc of an unsampled block whose countdown crossed zero: if the new
/// size is sampled, move it into a sampled block; otherwise forward to the
/// inner realloc (keeping in-place growth). Arguments in `__rust_realloc`'s
/// order, the allocator last, like the other cold paths (see
/// [`dealloc_cold`]).
///
/// # Safety
///
/// As `GlobalAlloc::realloc`, with `size` and `align` those of its layout.
#[cold]
#[inline(never)]
pub(crate) unsafe fn realloc_fired<A: GlobalAlloc>(
    ptr: *mut u8,
    size: usize,
    align: usize,
    new_size: usize,
    this: &SampledAlloc<A>,
) -> *mut u8 {
    // SAFETY: the callers pass the parts of a `Layout`.
    let layout = unsafe { caller_layout(size, align) };
    let fp = unwind::current_frame_pointer();
    COUNTS.slow_visits.add(1);
    match thread::visit(new_size, crate::control::enabled(), this.draw_mean()) {
        Decision::Pass => {
            thread::count_free_cold(layout.size());
            // SAFETY: forwarded unchanged.
            unsafe { this.inner.realloc(ptr, layout, new_size) }
        }
        Decision::Sample { mean } => {
            // SAFETY: realloc's contract makes this layout valid.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: non-zero size.
            let new = unsafe { sample(this, new_layout, false, mean, fp) };
            thread::leave();
            if !new.is_null() {
                thread::count_free_cold(layout.size());
                // SAFETY: distinct blocks valid for the smaller size; the old
                // one is unsampled, so it belongs to the inner allocator.
                unsafe {
                    ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    this.inner.dealloc(ptr, layout);
                }
            }
            new
        }
    }
}

/// Samples one allocation: places it, records it, returns the user pointer
/// (null if the memory could not be had).
///
/// # Safety
///
/// `layout` has a non-zero size.
unsafe fn sample<A: GlobalAlloc>(
    this: &SampledAlloc<A>,
    layout: Layout,
    zeroed: bool,
    mean: u64,
    fp: u64,
) -> *mut u8 {
    let size = layout.size() as u64;
    let block = SampledBlock::new(
        NEXT_SAMPLE_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
        size,
        poisson::sample_weight(size, mean),
    );
    // SAFETY: forwarded contract.
    let (ptr, tracked) = unsafe { place(&this.inner, this.shadow, layout, zeroed, block) };
    if !ptr.is_null() {
        COUNTS.samples.add(1);
        record(block, tracked.then_some(ptr as usize), fp);
    }
    ptr
}

/// Puts a sampled block where a free will recognise it: a region slot, or
/// for blocks too big for any slot the inner allocator plus the huge table.
/// Returns the pointer and whether the block is tracked for the in-use view.
///
/// # Safety
///
/// `layout` has a non-zero size.
unsafe fn place<A: GlobalAlloc>(
    inner: &A,
    shadow: bool,
    layout: Layout,
    zeroed: bool,
    block: SampledBlock,
) -> (*mut u8, bool) {
    // The region only once every thread's free can tell its blocks (a
    // concurrent `start` may have switched sampling on first).
    let slot =
        if thread::region_ready() { REGION.alloc(layout.size(), layout.align()) } else { None };
    if let Some(slot) = slot {
        let ptr = slot.user as *mut u8;
        if zeroed {
            // SAFETY: the slot holds `layout.size()` bytes after `user`, and
            // it is ours alone until published and returned.
            unsafe { ptr::write_bytes(ptr, 0, layout.size()) };
        }
        // The shadow keeps the inner allocator's heap as it would be without
        // lowprof (crate docs). Null (out of memory) just means no shadow.
        // SAFETY: forwarded contract; never touched, freed with this layout.
        let shadow = if shadow { unsafe { inner.alloc(layout) } } else { ptr::null_mut() };
        REGION.publish(slot, block.sample_id, block.size, block.weight, shadow as u64);
        COUNTS.published.add(1);
        return (ptr, true);
    }
    // SAFETY: forwarded contract.
    let ptr = unsafe { inner_alloc(inner, layout, zeroed) };
    if ptr.is_null() {
        return (ptr, false);
    }
    if layout.size() > HUGE_MIN && HUGE.insert(ptr as usize, block) {
        COUNTS.published.add(1);
        return (ptr, true);
    }
    COUNTS.untracked.add(1);
    (ptr, false)
}

/// Walks this thread's stack from the allocator's frame and queues a
/// `HEAP_ALLOC` record; a full ring drops it, adds its estimate to the
/// dropped totals and marks the tracked block (at `tracked_at`) as one whose
/// record was lost, so nothing disappears without a count.
fn record(block: SampledBlock, tracked_at: Option<usize>, fp: u64) {
    let tracked = tracked_at.is_some();
    let sp = unwind::current_stack_pointer();
    let bounds = thread::stack_bounds(sp);
    let mut stack: Stack = Stack::new();
    // SAFETY: `bounds` is the readable part of this thread's own stack above
    // the current stack pointer, which stays mapped while we run.
    unsafe { unwind::walk(fp, bounds, &mut stack) };
    let mut flags = 0;
    if !tracked {
        flags |= FLAG_UNTRACKED;
    }
    if stack.is_truncated() {
        flags |= FLAG_TRUNCATED;
    }
    if stack.is_empty() {
        COUNTS.no_stack.add(1);
    }
    let tid = thread::tid();
    let event = HeapAlloc {
        sample_id: block.sample_id,
        size: block.size,
        weight: block.weight,
        thread: tid,
        flags,
        // The thread's trace context, through the reader `lowprof` registers
        // (a seqlock read of a const thread-local: no allocation, no lock).
        context: lowprof_core::context::current(),
        frames: stack.as_slice(),
    };
    if RINGS.push(tid as usize, TAG_HEAP_ALLOC, &[&event.header_words(), stack.as_slice()]).is_err()
    {
        COUNTS.dropped_samples.add(1);
        // Rounded to the nearest unit (the weight is positive; `+ 0.5` as
        // `f64::round` needs std): truncating lost up to 1/1024 object per
        // drop, an undercount of ~1.8σ after millions of drops.
        COUNTS.dropped_objects_x1024.add((block.weight * 1024.0 + 0.5) as u64);
        COUNTS.dropped_bytes.add((block.weight * block.size as f64 + 0.5) as u64);
        match tracked_at {
            Some(ptr) if REGION.contains(ptr) => REGION.mark_record_lost(ptr),
            Some(ptr) => HUGE.mark_record_lost(ptr),
            None => {}
        }
    }
}

/// # Safety
///
/// As `GlobalAlloc::alloc`.
#[inline(always)]
unsafe fn inner_alloc<A: GlobalAlloc>(inner: &A, layout: Layout, zeroed: bool) -> *mut u8 {
    // SAFETY: forwarded contract.
    unsafe { if zeroed { inner.alloc_zeroed(layout) } else { inner.alloc(layout) } }
}
