//! Bad configurations give typed errors with the valid range; one profiler
//! at a time; restart after stop works. Exits non-zero on any surprise.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lowprof::{Error, Profiler, SampledAlloc};

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

fn main() {
    match Profiler::builder().heap_interval(0).start() {
        Err(e @ Error::InvalidHeapInterval { bytes: 0 }) => println!("heap_interval(0): {e}"),
        other => panic!("heap_interval(0) gave {other:?}"),
    }
    match Profiler::builder().heap_interval(u64::MAX).start() {
        Err(e @ Error::InvalidHeapInterval { .. }) => println!("heap_interval(MAX): {e}"),
        other => panic!("heap_interval(u64::MAX) gave {other:?}"),
    }
    match Profiler::builder().cpu_hz(5000).start() {
        Err(e @ Error::InvalidCpuHz { hz: 5000 }) => println!("cpu_hz(5000): {e}"),
        other => panic!("cpu_hz(5000) gave {other:?}"),
    }
    let first = Profiler::builder().cpu_hz(0).start().expect("first start");
    match Profiler::builder().cpu_hz(0).start() {
        Err(e @ Error::AlreadyRunning) => println!("second start: {e}"),
        other => panic!("second start gave {other:?}"),
    }
    first.stop().expect("stop");
    let again = Profiler::builder().cpu_hz(0).start().expect("start after stop");
    assert!(again.heap_profile().is_ok());
    drop(again);
    println!("ok");
}
