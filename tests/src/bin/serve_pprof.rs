//! Serves /debug/pprof on a free loopback port while busy, for
//! `go tool pprof`. Prints `ADDR <ip:port>`, then runs for `<seconds>`.
//!
//! `serve_pprof restart`: serves, prints `ADDR <ip:port>`, waits for a line
//! on stdin, stops the profiler (printing `STOPPED`), then starts a second
//! profiler without the endpoint, allocates 32 MiB in a known function and
//! prints that function's `alloc_space` in the second profiler's heap
//! profile as `SECOND_ALLOC_SPACE <bytes>`: a pull request of the first
//! profiler still in flight must neither hang nor take the second one's
//! records.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

#[inline(never)]
fn serve_busy_loop(until: Instant) -> u64 {
    let mut x = 1u64;
    let mut keep = Vec::new();
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(3));
        }
        keep.push(vec![x as u8; 1024]);
        if keep.len() > 50_000 {
            keep.clear();
        }
    }
    x
}

/// 32 MiB in 4 MiB blocks: at the second profiler's 64 KiB interval each
/// block is sampled with probability 1 - e^-64, so the estimate is exact
/// unless a sample was lost (at 512 KiB one miss in 8 blocks, 0.3 % of runs,
/// already failed the test's ±5 %).
#[inline(never)]
fn second_profiler_work() -> Vec<Vec<u8>> {
    (0..8).map(|i| black_box(vec![i as u8; 4 << 20])).collect()
}

fn restart() {
    let first = lowprof::Profiler::builder().serve_pprof("127.0.0.1:0").start().unwrap();
    println!("ADDR {}", first.pprof_addr().unwrap());
    std::io::stdout().flush().unwrap();
    // Keep the first profiler busy until the test says stop.
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    first.stop().unwrap();
    println!("STOPPED");
    std::io::stdout().flush().unwrap();
    let second = lowprof::Profiler::builder().heap_interval(64 << 10).start().unwrap();
    let kept = second_profiler_work();
    // Give a stray drain of the first session every chance to happen.
    std::thread::sleep(Duration::from_millis(500));
    let heap = second.heap_profile().unwrap();
    let bytes = lowprof_tests::total_through(&heap, "alloc_space", "second_profiler_work");
    println!("SECOND_ALLOC_SPACE {bytes}");
    drop(kept);
    second.stop().unwrap();
}

fn main() {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("restart") {
        restart();
        return;
    }
    let seconds: u64 = arg.and_then(|s| s.parse().ok()).unwrap_or(10);
    let profiler = lowprof::Profiler::builder().serve_pprof("127.0.0.1:0").start().unwrap();
    println!("ADDR {}", profiler.pprof_addr().unwrap());
    std::io::stdout().flush().unwrap();
    serve_busy_loop(Instant::now() + Duration::from_secs(seconds));
    drop(profiler);
}
