//! The thread that starts the profiler samples at the configured interval
//! at once. Usage: `interval_switch <dir>`.
//!
//! The main thread allocates 4 MiB first (its countdown then holds a gap
//! drawn at the default 512 KiB mean, sampling still off), starts the
//! profiler at a 4 KiB interval, allocates `KNOWN_BLOCKS` blocks of
//! `KNOWN_SIZE` bytes at `interval_switch::known_site`, and writes
//! `heap.pb.gz`. Were the old gap kept, the first stretch of up to
//! megabytes would be sampled at 512 KiB: unbiased, but far noisier than
//! the 4 KiB sigma the test checks against.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

const KNOWN_BLOCKS: usize = 512;
const KNOWN_SIZE: usize = 1000;

#[inline(never)]
fn known_site() -> Vec<Box<[u8]>> {
    (0..KNOWN_BLOCKS).map(|i| black_box(vec![i as u8; KNOWN_SIZE].into_boxed_slice())).collect()
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args_os().nth(1).expect("dir"));
    for i in 0..4096 {
        black_box(vec![i as u8; 1024]);
    }
    let profiler = lowprof::Profiler::builder().heap_interval(4096).cpu_hz(0).start().unwrap();
    let known = known_site();
    profiler.heap_profile().unwrap().write_pprof(dir.join("heap.pb.gz")).unwrap();
    drop(known);
    println!("known_blocks={KNOWN_BLOCKS}");
    println!("known_size={KNOWN_SIZE}");
}
