//! CPU time split 75/25 between two functions. Usage: `cpu_split <dir> <hz>`.
//!
//! Alternates 600 ms of CPU in `work_a` with 200 ms in `work_b`, five times
//! (4 CPU-seconds), under a profiler at `hz`; writes `cpu.pb.gz`. Few, long
//! phases: a timer expiry the kernel notices late (on a loaded machine) is
//! charged to whatever runs when it is noticed, so every switch can move a
//! little CPU from one function to the other.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use lowprof::SampledAlloc;
use lowprof_tests::cpu::burn_cpu;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

#[inline(never)]
fn work_a(ns: u64) {
    let mut x = 1u64;
    burn_cpu(ns, || x = black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7)));
}

#[inline(never)]
fn work_b(ns: u64) {
    let mut x = 3u64;
    burn_cpu(ns, || x = black_box(x.wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(9)));
}

fn main() {
    let dir =
        std::path::PathBuf::from(std::env::args_os().nth(1).expect("usage: cpu_split <dir> <hz>"));
    let hz: u32 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(99);
    let profiler = lowprof::Profiler::builder().cpu_hz(hz).start().unwrap();
    for _ in 0..5 {
        work_a(600_000_000);
        work_b(200_000_000);
    }
    let cpu = profiler.cpu_profile().unwrap();
    cpu.write_pprof(dir.join("cpu.pb.gz")).unwrap();
    println!("dropped={}", profiler.stats().cpu.dropped);
}
