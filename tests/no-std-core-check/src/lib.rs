//! lowprof-core alone in a `no_std` program without a heap: it draws a
//! sampling gap and pushes a record through a ring, touching no allocator.

#![no_std]

use lowprof_core::poisson::{DEFAULT_MEAN_BYTES, Rng, next_gap};
use lowprof_core::ring::RingSet;

static RINGS: RingSet<2, 256> = RingSet::new();

/// One gap drawn and one record pushed; returns the gap.
#[unsafe(no_mangle)]
pub extern "C" fn lowprof_core_check(seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let gap = next_gap(&mut rng, DEFAULT_MEAN_BYTES);
    let _ = RINGS.push(0, 1, &[&[gap]]);
    gap
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
