//! More threads than lowprof's exact-totals registry has slots (4096).
//! Usage: `registry_full <dir>`.
//!
//! 4200 threads allocate (and so register, until the registry is full),
//! then the profiler starts and `handed_site` in `main` allocates 4 blocks
//! of 8 KiB for each thread, sampled at a 4 KiB interval, which that thread
//! frees. A thread without a slot cannot be told where sampled blocks live,
//! so its frees must take the slow path until it finds out: otherwise glibc
//! would be handed a pointer it never made. Its counts reach the totals
//! when it exits.
//!
//! Writes `heap.pb.gz` and prints `key=value` lines.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};

use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

const THREADS: usize = 4200;
const BLOCKS: usize = 4;
const BLOCK: usize = 8192;

#[inline(never)]
fn handed_site() -> Vec<Box<[u8]>> {
    let mut v = Vec::with_capacity(BLOCKS);
    for _ in 0..BLOCKS {
        v.push(black_box(vec![4u8; BLOCK].into_boxed_slice()));
    }
    v
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::path::PathBuf::from(std::env::args_os().nth(1).ok_or("usage: registry_full <dir>")?);
    let registered = Arc::new(Barrier::new(THREADS + 1));
    let mut senders = Vec::with_capacity(THREADS);
    let mut handles = Vec::with_capacity(THREADS);
    for _ in 0..THREADS {
        let (tx, rx) = mpsc::channel::<Vec<Box<[u8]>>>();
        let registered = Arc::clone(&registered);
        let handle = std::thread::Builder::new().stack_size(64 << 10).spawn(move || {
            black_box(vec![0u8; 16]);
            registered.wait();
            drop(rx.recv().expect("blocks"));
        })?;
        senders.push(tx);
        handles.push(handle);
    }
    registered.wait();
    let profiler = lowprof::Profiler::builder().cpu_hz(0).heap_interval(4096).start()?;
    let before = profiler.stats().heap;
    println!("unregistered={}", before.threads_unregistered);
    for (i, tx) in senders.iter().enumerate() {
        tx.send(handed_site())?;
        if i % 256 == 255 {
            // Let the drainer keep up (drops are counted, but fewer of them
            // keep the site's numbers whole).
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    for handle in handles {
        handle.join().map_err(|_| "a thread panicked")?;
    }
    let after = profiler.stats().heap;
    println!("samples={}", after.samples - before.samples);
    println!("live_before={}", before.live_samples);
    println!("live_after={}", after.live_samples);
    profiler.heap_profile()?.write_pprof(dir.join("heap.pb.gz"))?;
    let stats = profiler.stats().heap;
    println!("dropped={}", stats.dropped_samples);
    println!("untracked={}", stats.untracked_samples);
    profiler.stop()?;
    Ok(())
}
