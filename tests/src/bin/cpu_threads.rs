//! Four equally busy threads. Usage: `cpu_threads <dir> <hz>`.
//!
//! Each thread burns 1 CPU-second in `spin`; prints the process's CPU time
//! over the profiled window (getrusage) and writes `cpu.pb.gz`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use lowprof::SampledAlloc;
use lowprof_tests::cpu::{burn_cpu, rusage_cpu_ns};

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

#[inline(never)]
fn spin(ns: u64) {
    let mut x = 5u64;
    burn_cpu(ns, || x = black_box(x.wrapping_mul(0x2545_f491_4f6c_dd1d).rotate_left(3)));
}

fn main() {
    let dir = std::path::PathBuf::from(
        std::env::args_os().nth(1).expect("usage: cpu_threads <dir> <hz>"),
    );
    let hz: u32 = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(99);
    let profiler = lowprof::Profiler::builder().cpu_hz(hz).start().unwrap();
    let before = rusage_cpu_ns();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("busy-{i}"))
                .spawn(|| spin(1_000_000_000))
                .unwrap()
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let used = rusage_cpu_ns() - before;
    let cpu = profiler.cpu_profile().unwrap();
    cpu.write_pprof(dir.join("cpu.pb.gz")).unwrap();
    let stats = profiler.stats();
    println!("process_cpu_ns={used}");
    println!("dropped={}", stats.cpu.dropped);
}
