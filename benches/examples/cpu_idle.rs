//! lowprof's background cost on an idle program: starts `lowprof::Profiler`
//! (heap off, CPU at 99 Hz) and sleeps, so that `strace -f -c` or
//! `perf stat --per-thread` can show what its drainer thread does.
//!
//! ```sh
//! cargo build -j 2 --profile bench -p lowprof-benches --example cpu_idle
//! strace -f -c -o /tmp/idle.strace target/release/examples/cpu_idle 5
//! perf stat --per-thread -e task-clock target/release/examples/cpu_idle 5
//! ```

// Example code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use lowprof_benches::cpu::{process_cpu, thread_cpu_of, threads};

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let profiler = lowprof::Profiler::builder().heap(false).cpu_hz(99).start().expect("start");
    let (p0, w0) = (process_cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (p1, wall) = (process_cpu(), w0.elapsed().as_secs_f64());
    for (tid, name) in threads() {
        if let Some(ns) = thread_cpu_of(tid) {
            println!("thread {tid} {name:<16} {:.3} ms CPU in all", ns as f64 / 1e6);
        }
    }
    drop(profiler);
    println!(
        "idle, lowprof at 99 Hz: process CPU {:.3} ms per second ({:.3} % of a core)",
        (p1 - p0) as f64 / wall / 1e6,
        (p1 - p0) as f64 / wall / 1e7
    );
}
