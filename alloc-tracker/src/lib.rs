//! # lowprof-alloc
//!
//! [`SampledAlloc`] wraps any [`GlobalAlloc`] and samples its allocations as
//! a Poisson process over bytes (on average one sample per 512 KiB
//! allocated), recording each sampled block's stack and keeping track of
//! which sampled blocks are still live, so the heap in use can be shown at any
//! moment.
//!
//! ```
//! use lowprof_alloc::SampledAlloc;
//!
//! #[global_allocator]
//! static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);
//! # fn main() {}
//! ```
//!
//! Sampling starts when the profiler (the `lowprof` crate) starts; until then
//! the wrapper costs the same countdown and counting as when running.
//!
//! ## The fast paths
//!
//! ```text
//!  alloc:   countdown -= size ── ≥ 0 ─► allocs += 1 (owner-only) ─► inner.alloc
//!                          └─ < 0 ─► alloc_slow (#[cold]): draw next gap, maybe sample
//!  dealloc: (top - ptr) >> 37 == 0 ─► dealloc_in_window (#[cold]): sampled
//!           size > free_limit ─► dealloc_cold (#[cold]): the thread's first
//!                                free, a huge sampled block (> 1 MiB), after exit
//!           otherwise frees += 1, free_bytes += size ─► inner.dealloc
//!
//!  top (the end of the region's window) and free_limit are fields of the
//!  thread-local block: no shared cache line, no address to load first.
//! ```
//!
//! The countdown is one `const`-initialised, `Drop`-free thread-local: a
//! subtract and a sign branch, like tcmalloc's `Sampler` and Go's
//! `nextSample`. No shared atomic is written per allocation: exact totals are
//! counters in the same thread-local block that only their thread writes
//! (bytes allocated need none: they are the gaps drawn minus the countdown),
//! registered so the drainer can read them, and folded into the retired
//! totals by a pthread key destructor when the thread exits.
//!
//! ## Where sampled blocks go
//!
//! A sampled block is served from a region lowprof reserves once
//! (`lowprof_core::live`), never from the inner allocator, so "was this block
//! sampled?" is a subtract and a shift on free (against the thread's copy of
//! the region's window, see `tls.rs`) and a sample never touches the inner
//! allocator's slow paths (over-aligning sampled blocks through glibc was
//! measured at +3.7–4.6 ns per malloc/free pair). Blocks too big for the
//! region come from the inner allocator and are remembered in a small table
//! consulted only on frees over 1 MiB.
//!
//! The inner allocator still sees every allocation: for each sampled block
//! it also hands out a *shadow* block of the same layout, which lowprof keeps
//! (untouched) until the sampled block is freed. Without it, moving sampled
//! blocks out of the inner allocator's heap changed glibc's coalescing,
//! consolidation and trimming enough to cost several percent on some
//! workloads (measured with callgrind: `malloc_consolidate` and
//! `unlink_chunk` appeared only with sampling on). The shadow costs address
//! space and one inner allocation per sample, almost no resident memory.
//!
//! `realloc` of a sampled block is a free of the old sample plus a new
//! allocation with its own draw; `realloc` of an unsampled block is forwarded
//! to the inner `realloc`, so in-place growth is kept.
//!
//! ## Without std
//!
//! With `default-features = false` the crate is `no_std`: one global countdown
//! instead of thread-locals, and the region is memory you give it with
//! [`init_region`]. See the README for an embedded example.

#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "std")]
extern crate std;

mod control;
#[cfg(feature = "std")]
mod os;
mod slow;
mod state;

#[cfg(not(feature = "std"))]
#[path = "global.rs"]
mod thread;
#[cfg(feature = "std")]
#[path = "tls.rs"]
mod thread;

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{Ordering, compiler_fence};

#[cfg(feature = "std")]
pub use control::after_fork_in_child;
pub use control::{
    ControlError, HeapEvent, HeapStats, RECORD_WORDS, drain, enabled, for_each_live, init_region,
    interval, is_installed, next_sample_id, release_freed_memory, set_interval,
    set_new_thread_hook, start, stats, stop, validate_interval,
};
pub use lowprof_core::event::HeapAlloc;
pub use lowprof_core::live::SampledBlock;
pub use lowprof_core::poisson::{DEFAULT_MEAN_BYTES, MAX_MEAN_BYTES, MIN_MEAN_BYTES};
pub use lowprof_core::registry::Totals;

use state::{DECLARED_MEAN, INSTALLED};

/// A [`GlobalAlloc`] that samples the allocations of an inner allocator.
///
/// Declare it as the `#[global_allocator]`; all instances share one
/// process-wide sampler (there is one heap).
#[derive(Debug)]
pub struct SampledAlloc<A> {
    inner: A,
    mean: u64,
    shadow: bool,
}

impl<A> SampledAlloc<A> {
    /// Wraps `inner`, sampling on average once per 512 KiB allocated.
    pub const fn new(inner: A) -> Self {
        Self { inner, mean: DEFAULT_MEAN_BYTES, shadow: true }
    }

    /// Wraps `inner`, sampling on average once per `mean_bytes` allocated.
    /// Values outside `1..=2^40` are clamped into that range (the profiler's
    /// `heap_interval` option validates and reports instead).
    pub const fn with_interval(inner: A, mean_bytes: usize) -> Self {
        let mean = mean_bytes as u64;
        let mean = if mean < MIN_MEAN_BYTES {
            MIN_MEAN_BYTES
        } else if mean > MAX_MEAN_BYTES {
            MAX_MEAN_BYTES
        } else {
            mean
        };
        Self { inner, mean, shadow: true }
    }

    /// Turns off shadow blocks (see the crate docs): the inner allocator then
    /// no longer sees sampled allocations at all, which saves their memory
    /// twice over on memory-tight targets but changes the inner allocator's
    /// heap layout, and with it its trimming and coalescing.
    pub const fn without_shadow(mut self) -> Self {
        self.shadow = false;
        self
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }

    /// The interval new gaps are drawn with: the run-time setting if any,
    /// else this allocator's. Slow path only.
    fn draw_mean(&self) -> u64 {
        if !INSTALLED.load(Ordering::Relaxed) {
            INSTALLED.store(true, Ordering::Relaxed);
        }
        if DECLARED_MEAN.load(Ordering::Relaxed) != self.mean {
            DECLARED_MEAN.store(self.mean, Ordering::Relaxed);
        }
        control::interval()
    }
}

// SAFETY: every method either forwards to the inner allocator with the
// caller's arguments, or (for sampled blocks) returns memory from the
// sampled-block region that satisfies the layout and is freed only there;
// `dealloc` routes each pointer back to whoever produced it (region range,
// huge table, else inner). Nothing here unwinds.
unsafe impl<A: GlobalAlloc> GlobalAlloc for SampledAlloc<A> {
    /// Allocation-free apart from the inner allocator; async-signal-safe as
    /// far as the inner allocator is.
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if thread::on_alloc(layout.size()) {
            // SAFETY: forwarded with the caller's layout.
            return unsafe { self.inner.alloc(layout) };
        }
        // SAFETY: as `alloc`.
        unsafe { slow::alloc_slow(layout.size(), layout.align(), self, false) }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if thread::on_alloc(layout.size()) {
            // SAFETY: forwarded with the caller's layout.
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        // SAFETY: as `alloc_zeroed`.
        unsafe { slow::alloc_slow(layout.size(), layout.align(), self, true) }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Two branches to two functions: joined by `||` (or calling one
        // function), LLVM computed both tests and merged them with `setcc`,
        // three instructions more. Both take `__rust_dealloc`'s arguments in
        // its order, so no register moves before the tests.
        if thread::maybe_sampled(ptr as usize) {
            // SAFETY: forwarded contract.
            return unsafe { slow::dealloc_in_window(ptr, layout.size(), layout.align(), self) };
        }
        if layout.size() > thread::free_limit() {
            // SAFETY: forwarded contract.
            unsafe { slow::dealloc_cold(ptr, layout.size(), layout.align(), self) };
            // Not a tail call: with frame pointers on, a function whose
            // every exit is a tail call sets up its frame on entry; one real
            // call lets LLVM set it up in this branch alone, so the free
            // fast path of a non-inlined `__rust_dealloc` has no frame to
            // push and pop (three instructions per free). A compiler fence
            // emits nothing.
            compiler_fence(Ordering::SeqCst);
            return;
        }
        thread::count_free(layout.size());
        // SAFETY: not a sampled block, so the inner allocator made it.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    /// The free's two tests first (a block they flag goes to
    /// `realloc_cold`, which decides exactly), then the allocation's
    /// countdown.
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        if thread::maybe_sampled(ptr as usize) {
            // SAFETY: forwarded contract.
            return unsafe { slow::realloc_cold(ptr, size, align, new_size, self) };
        }
        if size > thread::free_limit() {
            // SAFETY: forwarded contract.
            let new = unsafe { slow::realloc_cold(ptr, size, align, new_size, self) };
            // See `dealloc`: keeps the frame in this branch.
            compiler_fence(Ordering::SeqCst);
            return new;
        }
        if thread::on_alloc(new_size) {
            thread::count_free(size);
            // SAFETY: unsampled, so the inner allocator made it.
            return unsafe { self.inner.realloc(ptr, layout, new_size) };
        }
        // SAFETY: forwarded contract.
        unsafe { slow::realloc_fired(ptr, size, align, new_size, self) }
    }
}
