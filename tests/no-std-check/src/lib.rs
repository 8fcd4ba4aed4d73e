//! What an embedded target does with lowprof: a `no_std` program whose
//! global allocator is `SampledAlloc` around its own allocator, with a static
//! buffer for sampled blocks.

#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use lowprof_alloc::SampledAlloc;

/// A stand-in for the firmware's allocator: a bump allocator over a static
/// arena that never frees.
struct Bump;

const ARENA_BYTES: usize = 256 * 1024;
static mut ARENA: [u8; ARENA_BYTES] = [0; ARENA_BYTES];
static NEXT: AtomicUsize = AtomicUsize::new(0);

// SAFETY: hands out disjoint, aligned ranges of ARENA (a CAS-free bump is
// enough for this single-core stand-in); null when full.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = ptr::addr_of_mut!(ARENA) as usize;
        let start = (base + NEXT.load(Ordering::Relaxed) + layout.align() - 1) & !(layout.align() - 1);
        let end = start + layout.size();
        if end > base + ARENA_BYTES {
            return ptr::null_mut();
        }
        NEXT.store(end - base, Ordering::Relaxed);
        start as *mut u8
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOC: SampledAlloc<Bump> = SampledAlloc::with_interval(Bump, 4096);

/// Memory for sampled blocks.
static mut SAMPLED: [u8; 64 * 1024] = [0; 64 * 1024];

/// Starts heap sampling; returns 0 on success.
#[unsafe(no_mangle)]
pub extern "C" fn lowprof_embedded_start() -> i32 {
    // SAFETY: called once at start-up, before anything else touches SAMPLED;
    // the mutable reference is handed to lowprof for good.
    let region = unsafe { &mut *ptr::addr_of_mut!(SAMPLED) };
    if lowprof_alloc::init_region(region).is_err() {
        return 1;
    }
    match lowprof_alloc::start(None) {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

/// Samples taken so far.
#[unsafe(no_mangle)]
pub extern "C" fn lowprof_embedded_samples() -> u64 {
    lowprof_alloc::stats().samples
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
