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
    // Snapshots taken with no drop before or during them (none may blame
    // lowprof::dropped), and snapshots taken after a drop (each must).
    let (mut clean, mut clean_with_frame, mut after_drop, mut after_drop_without_frame) =
        (0, 0, 0, 0);
    for _ in 0..30 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        let dropped_before = profiler.stats().heap.dropped_samples;
        let heap = profiler.heap_profile().unwrap();
        let dropped_after = profiler.stats().heap.dropped_samples;
        snapshots += 1;
        let blamed =
            heap.samples.iter().any(|s| heap.stack_names(s).contains(&lowprof::DROPPED_FRAME));
        with_dropped_frame += u64::from(blamed);
        if dropped_after == 0 {
            clean += 1;
            clean_with_frame += u64::from(blamed);
        } else if dropped_before > 0 {
            after_drop += 1;
            after_drop_without_frame += u64::from(!blamed);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let stats = profiler.stats().heap;
    println!("snapshots={snapshots}");
    println!("with_dropped_frame={with_dropped_frame}");
    println!("clean={clean}");
    println!("clean_with_frame={clean_with_frame}");
    println!("after_drop={after_drop}");
    println!("after_drop_without_frame={after_drop_without_frame}");
    println!("dropped={}", stats.dropped_samples);
    println!("samples={}", stats.samples);
}
