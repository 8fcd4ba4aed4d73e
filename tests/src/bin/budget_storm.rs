//! Workloads that exceed the sample budget. Usage: `budget_storm <dir> heap|cpu`.
//!
//! - `heap`: interval 64 KiB, budget 100 heap samples/s. 2 s quiet, then an
//!   allocation storm of 64 MiB/s from `storm_site` (1000 samples/s at the
//!   configured interval: 10× the budget) for 8 s, then quiet again for 3 s
//!   or until the interval is back (at most 13 s).
//!   Prints the sample rate over the storm's last 5 s, the interval during
//!   the storm and after it, and the storm site's true bytes; writes
//!   `heap.pb.gz`.
//! - `cpu`: four threads busy for 6 CPU-seconds each at 99 Hz under a
//!   budget of 30 CPU samples/s (~200 samples/s at 99 Hz on two free
//!   cores, ~100 on one: 3–7× over). Prints the sample rate over the last 4 s, the
//!   rate in Hz the profiler settled on and the process CPU time; writes
//!   `cpu.pb.gz`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;
use lowprof_tests::cpu::{burn_cpu, process_cpu_ns};

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

const BLOCK: usize = 4096;

/// Allocates (and frees) 4 KiB blocks starting with `fill` at
/// `bytes_per_sec` until `until`. Returns the blocks allocated. Inlined into
/// each site, so that a block's stack names the site that allocated it and
/// no other; `fill` differs between the sites, so that their code differs
/// and the compiler cannot merge them into one function.
#[inline(always)]
fn paced_blocks(fill: u8, bytes_per_sec: f64, until: Instant) -> u64 {
    let start = Instant::now();
    let mut blocks = 0u64;
    while Instant::now() < until {
        let due = (start.elapsed().as_secs_f64() * bytes_per_sec / BLOCK as f64) as u64;
        while blocks < due {
            let mut v = Vec::<u8>::with_capacity(BLOCK);
            v.push(fill);
            black_box(&v);
            blocks += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    blocks
}

/// The storm: every block here is in `storm_bytes`.
#[inline(never)]
fn storm_site(bytes_per_sec: f64, until: Instant) -> u64 {
    paced_blocks(1, bytes_per_sec, until)
}

/// The quiet phases, on their own code path: their blocks are not the
/// storm's, and must not be counted at `storm_site`.
#[inline(never)]
fn quiet_site(bytes_per_sec: f64, until: Instant) -> u64 {
    paced_blocks(2, bytes_per_sec, until)
}

fn heap(dir: &Path) {
    let profiler = lowprof::Profiler::builder()
        .cpu_hz(0)
        .heap_interval(64 << 10)
        .max_heap_samples_per_sec(100.0)
        .start()
        .unwrap();
    let secs = |s: f64| Instant::now() + Duration::from_secs_f64(s);
    quiet_site(1.0e6, secs(2.0));
    println!("interval_before={}", profiler.stats().heap.interval);
    let storm_start = Instant::now();
    let mut blocks = storm_site(64.0 * 1048576.0, secs(3.0));
    let (t0, s0) = (Instant::now(), profiler.stats().heap.samples);
    blocks += storm_site(64.0 * 1048576.0, storm_start + Duration::from_secs(8));
    let (t1, s1) = (Instant::now(), profiler.stats().heap.samples);
    println!("storm_rate={:.1}", (s1 - s0) as f64 / (t1 - t0).as_secs_f64());
    println!("interval_storm={}", profiler.stats().heap.interval);
    println!("storm_bytes={}", blocks * BLOCK as u64);
    // The interval comes back at the drainer's second housekeeping tick
    // after the storm (~2 s); a drainer the machine holds back takes longer,
    // so keep the quiet workload going (up to 10 s more) until it has.
    let quiet_start = Instant::now();
    quiet_site(1.0e6, secs(3.0));
    let give_up = secs(10.0);
    while profiler.stats().heap.interval != 64 << 10 && Instant::now() < give_up {
        quiet_site(1.0e6, secs(0.1));
    }
    println!("interval_after={}", profiler.stats().heap.interval);
    println!("quiet_secs={:.1}", quiet_start.elapsed().as_secs_f64());
    let stats = profiler.stats();
    println!("dropped={}", stats.heap.dropped_samples);
    profiler.heap_profile().unwrap().write_pprof(dir.join("heap.pb.gz")).unwrap();
}

#[inline(never)]
fn busy_thread(ns: u64) {
    let mut x = 1u64;
    burn_cpu(ns, || x = black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7)));
}

fn cpu(dir: &Path) {
    let cpu_before = process_cpu_ns();
    let profiler = lowprof::Profiler::builder()
        .heap(false)
        .cpu_hz(99)
        .max_cpu_samples_per_sec(30.0)
        .start()
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("busy-{i}"))
                .spawn(|| busy_thread(6_000_000_000))
                .unwrap()
        })
        .collect();
    // Four threads on two cores: 6 CPU-seconds each take ~12 s of wall time.
    std::thread::sleep(Duration::from_secs(4));
    let (t0, s0) = (Instant::now(), profiler.stats().cpu.samples);
    std::thread::sleep(Duration::from_secs(4));
    let (t1, s1) = (Instant::now(), profiler.stats().cpu.samples);
    println!("cpu_rate={:.1}", (s1 - s0) as f64 / (t1 - t0).as_secs_f64());
    println!("cpu_hz={}", profiler.stats().cpu_hz);
    for t in threads {
        t.join().unwrap();
    }
    // Read before stop(): the final profile's symbolization runs on
    // lowprof's own threads, which block SIGPROF and are never sampled.
    let used = process_cpu_ns() - cpu_before;
    let report = profiler.stop().unwrap();
    println!("process_cpu_ns={used}");
    println!("dropped={}", report.stats.cpu.dropped);
    report.cpu.unwrap().write_pprof(dir.join("cpu.pb.gz")).unwrap();
}

fn main() {
    let usage = "usage: budget_storm <dir> heap|cpu";
    let dir = std::path::PathBuf::from(std::env::args_os().nth(1).expect(usage));
    match std::env::args().nth(2).as_deref() {
        Some("heap") => heap(&dir),
        Some("cpu") => cpu(&dir),
        _ => panic!("{usage}"),
    }
}
