//! Serves /debug/pprof on a free loopback port while busy, for
//! `go tool pprof`. Prints `ADDR <ip:port>`, then runs for `<seconds>`.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::io::Write;
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

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let profiler = lowprof::Profiler::builder().serve_pprof("127.0.0.1:0").start().unwrap();
    println!("ADDR {}", profiler.pprof_addr().unwrap());
    std::io::stdout().flush().unwrap();
    serve_busy_loop(Instant::now() + Duration::from_secs(seconds));
    drop(profiler);
}
