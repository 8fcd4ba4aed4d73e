//! Heap profiles taken while other threads allocate flat out: with no record
//! dropped, no profile may blame `lowprof::dropped` (a snapshot once counted
//! blocks whose records were still in flight as lost). Prints key=value lines.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

#[inline(never)]
fn churn(stop: &AtomicBool) {
    let mut keep: Vec<Vec<u8>> = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        keep.push(black_box(vec![i as u8; 4096 + i % 4096]));
        if keep.len() > 2000 {
            keep.drain(..1000);
        }
        i += 1;
    }
}

fn main() {
    let profiler = lowprof::Profiler::builder().cpu_hz(0).heap_interval(64 * 1024).start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || churn(&stop))
        })
        .collect();
    let (mut snapshots, mut with_dropped_frame) = (0, 0);
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        let heap = profiler.heap_profile().unwrap();
        snapshots += 1;
        if heap.samples.iter().any(|s| heap.stack_names(s).contains(&lowprof::DROPPED_FRAME)) {
            with_dropped_frame += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let stats = profiler.stats().heap;
    println!("snapshots={snapshots}");
    println!("with_dropped_frame={with_dropped_frame}");
    println!("dropped={}", stats.dropped_samples);
    println!("samples={}", stats.samples);
}
