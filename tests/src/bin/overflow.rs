//! Storms that overflow the rings, then normal work. Usage: `overflow <dir>`.
//!
//! The drainer runs only once a second here, so the rings overflow:
//! - signal storm: 2 threads each send themselves 200 000 forged timer
//!   `SIGPROF`s (`rt_tgsigqueueinfo` with lowprof's timer cookie and
//!   overrun 0: the handler takes each for one timer period) from
//!   `signal_storm`. Sent to the calling thread, each is handled before the
//!   call returns, so none merges with another: each becomes a sample of
//!   weight 1 on that thread or one dropped period;
//! - allocation storm: 2 threads allocate 64-byte blocks as fast as they can
//!   for a second at a 64-byte mean interval (nearly every allocation is a
//!   sample) from `alloc_storm`, counting them.
//!
//! Right after the storms a heap profile is taken (everything in it was
//! sampled at the 64-byte interval) and written to `heap_storm.pb.gz`. Then,
//! at a 512 KiB interval: `after_site` allocates (and keeps) known blocks and
//! `after_cpu` burns CPU; `heap.pb.gz` and `cpu.pb.gz` are written.
//!
//! Prints the truths the test checks the profiles against: the forged
//! signals sent and the threads that sent them, the blocks `alloc_storm`
//! allocated, the process's exact allocation count over the storm profile's
//! window, the process CPU time, and `after_site`'s blocks; and the drop
//! counters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;
use lowprof_tests::cpu::{burn_cpu, process_cpu_ns};

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

/// Forged signals each signal-storm thread sends.
const FORGED_PER_THREAD: u64 = 200_000;

/// Sends `n` forged timer signals to the calling thread; returns its id.
#[inline(never)]
fn signal_storm(n: u64) -> i32 {
    // SAFETY: getpid/gettid cannot fail.
    let (pid, tid) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid) as i32) };
    let cookie = lowprof_sampler::timer_cookie();
    for _ in 0..n {
        lowprof_sampler::queue_timer_signal(pid, tid, libc::SIGPROF, cookie, 0)
            .expect("rt_tgsigqueueinfo failed");
    }
    tid
}

/// Allocates (and frees) 64-byte blocks until `until`; returns how many.
#[inline(never)]
fn alloc_storm(until: Instant) -> u64 {
    let mut n = 0;
    while Instant::now() < until {
        for _ in 0..1000 {
            black_box(vec![0u8; 64]);
            n += 1;
        }
    }
    n
}

#[inline(never)]
fn after_site(keep: &mut Vec<Vec<u8>>) {
    for _ in 0..20_000 {
        keep.push(black_box(vec![5u8; 2048]));
    }
}

#[inline(never)]
fn after_cpu() {
    let mut x = 1u64;
    burn_cpu(500_000_000, || x = black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7)));
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args_os().nth(1).expect("dir"));
    // Exact allocation count before sampling starts: the storm profile's
    // window opens just after this (`Profiler::start` allocates a little
    // before it turns sampling on).
    let allocs_at_start = lowprof_alloc::stats().totals.alloc_count;
    let profiler = lowprof::Profiler::builder()
        .heap_interval(64)
        .cpu_hz(1000)
        .drain_interval(Duration::from_secs(1))
        .start()
        .unwrap();
    let storm_cpu_before = process_cpu_ns();
    let until = Instant::now() + Duration::from_secs(1);
    let signal_threads: Vec<_> =
        (0..2).map(|_| std::thread::spawn(|| signal_storm(FORGED_PER_THREAD))).collect();
    let alloc_threads: Vec<_> =
        (0..2).map(|_| std::thread::spawn(move || alloc_storm(until))).collect();
    let signal_tids: Vec<i32> = signal_threads.into_iter().map(|t| t.join().unwrap()).collect();
    let storm_allocs: u64 = alloc_threads.into_iter().map(|t| t.join().unwrap()).sum();
    let storm_cpu_ns = process_cpu_ns() - storm_cpu_before;
    // The heap profile of the storms, taken at once and still at the 64-byte
    // interval. The exact count is read just before its drain (the few
    // allocations in between are the edge the test allows for).
    let during = profiler.stats();
    let storm_heap = profiler.heap_profile().unwrap();
    // Storms over: back to a normal interval, and empty every ring now (a
    // heap profile drains the heap and CPU rings synchronously; the storm
    // profile's own work was sampled at 64 bytes) rather than hoping the
    // drainer ran within a fixed sleep.
    lowprof_alloc::set_interval(512 * 1024).unwrap();
    storm_heap.write_pprof(dir.join("heap_storm.pb.gz")).unwrap();
    profiler.heap_profile().unwrap();
    let mut keep = Vec::new();
    after_site(&mut keep);
    after_cpu();
    let heap = profiler.heap_profile().unwrap();
    heap.write_pprof(dir.join("heap.pb.gz")).unwrap();
    let cpu = profiler.cpu_profile().unwrap();
    cpu.write_pprof(dir.join("cpu.pb.gz")).unwrap();
    // Every timer expiry the CPU profile can hold happened by now.
    let process_cpu = process_cpu_ns();
    let stats = profiler.stats();
    println!("forged={}", FORGED_PER_THREAD * signal_tids.len() as u64);
    let tids: Vec<String> = signal_tids.iter().map(i32::to_string).collect();
    println!("signal_tids={}", tids.join(","));
    println!("storm_allocs={storm_allocs}");
    println!("storm_window_allocs={}", during.heap.totals.alloc_count - allocs_at_start);
    println!("storm_cpu_ns={storm_cpu_ns}");
    println!("process_cpu_ns={process_cpu}");
    println!("threads={}", std::fs::read_dir("/proc/self/task").unwrap().count());
    println!("heap_dropped={}", during.heap.dropped_samples);
    println!("heap_dropped_objects={}", during.heap.dropped_alloc_objects.round() as u64);
    println!("cpu_dropped={}", during.cpu.dropped);
    println!("cpu_dropped_periods={}", stats.cpu.dropped_periods);
    println!("after_blocks={}", keep.len());
    println!("after_size=2048");
    black_box(keep);
}
