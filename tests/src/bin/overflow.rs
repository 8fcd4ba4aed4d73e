//! Storms that overflow the rings, then normal work. Usage: `overflow <dir>`.
//!
//! The drainer runs only once a second here, so the rings overflow:
//! - signal storm: 4 threads each send themselves 200 000 forged timer
//!   `SIGPROF`s (`rt_tgsigqueueinfo` with lowprof's timer cookie: the handler
//!   samples each one) from `signal_storm`;
//! - allocation storm: 4 threads allocate 64-byte blocks as fast as they can
//!   for a second at a 64-byte mean interval (nearly every allocation is a
//!   sample) from `alloc_storm`.
//!
//! Then, with the storms over: `after_site` allocates (and keeps) known
//! blocks and `after_cpu` burns CPU. Prints the drop counters and the truth
//! for `after_site`; writes `heap.pb.gz` and `cpu.pb.gz`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;
use lowprof_tests::cpu::burn_cpu;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

#[inline(never)]
fn signal_storm(n: u64) {
    // SAFETY: getpid/gettid cannot fail.
    let (pid, tid) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid) as i32) };
    let cookie = lowprof_sampler::timer_cookie();
    for _ in 0..n {
        lowprof_sampler::queue_timer_signal(pid, tid, libc::SIGPROF, cookie, 0)
            .expect("rt_tgsigqueueinfo failed");
    }
}

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
    let profiler = lowprof::Profiler::builder()
        .heap_interval(64)
        .cpu_hz(1000)
        .drain_interval(Duration::from_secs(1))
        .start()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(1);
    let storms: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    signal_storm(200_000);
                } else {
                    alloc_storm(until);
                }
            })
        })
        .collect();
    for t in storms {
        t.join().unwrap();
    }
    let during = profiler.stats();
    println!("heap_dropped={}", during.heap.dropped_samples);
    println!("cpu_dropped={}", during.cpu.dropped);
    // Storms over: back to a normal interval, and empty every ring now (a
    // heap profile drains the heap and CPU rings synchronously) rather than
    // hoping the drainer ran within a fixed sleep.
    lowprof_alloc::set_interval(512 * 1024).unwrap();
    profiler.heap_profile().unwrap();
    let mut keep = Vec::new();
    after_site(&mut keep);
    after_cpu();
    let heap = profiler.heap_profile().unwrap();
    heap.write_pprof(dir.join("heap.pb.gz")).unwrap();
    let cpu = profiler.cpu_profile().unwrap();
    cpu.write_pprof(dir.join("cpu.pb.gz")).unwrap();
    let stats = profiler.stats();
    println!("heap_dropped_objects={}", stats.heap.dropped_alloc_objects.round() as u64);
    println!("cpu_dropped_periods={}", stats.cpu.dropped_periods);
    println!("after_blocks={}", keep.len());
    println!("after_size=2048");
    black_box(keep);
}
