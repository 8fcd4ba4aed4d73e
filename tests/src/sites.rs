//! The known heap workload: three `#[inline(never)]` call sites allocating
//! known bytes, one of which frees half of its blocks.
//!
//! | site            | blocks         | block size | freed afterwards |
//! |-----------------|----------------|------------|------------------|
//! | `site_1k`       | 65 536 (64 MiB)| 1 KiB      | none             |
//! | `site_4k`       | 65 536 (256 MiB)| 4 KiB     | every other one  |
//! | `site_300k`     | 109 (~32 MiB)  | 300 KiB    | none             |

use std::hint::black_box;
use std::path::Path;

/// One site's truth.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// The function's name as it appears in profiles.
    pub function: &'static str,
    /// Block size in bytes.
    pub size: u64,
    /// Blocks allocated.
    pub allocated: u64,
    /// Blocks still live when the profile is taken.
    pub live: u64,
}

/// The three sites.
pub const SITES: [Site; 3] = [
    Site { function: "lowprof_tests::sites::site_1k", size: 1024, allocated: 65_536, live: 65_536 },
    Site { function: "lowprof_tests::sites::site_4k", size: 4096, allocated: 65_536, live: 32_768 },
    Site {
        function: "lowprof_tests::sites::site_300k",
        size: 300 * 1024,
        allocated: 109,
        live: 109,
    },
];

/// Allocates `count` zeroed blocks of `size` bytes, each a separate allocation
/// of exactly `size` bytes.
#[inline(always)]
fn blocks(count: u64, size: u64) -> Vec<Box<[u8]>> {
    (0..count).map(|_| black_box(vec![0u8; size as usize].into_boxed_slice())).collect()
}

/// 64 MiB in 1 KiB blocks.
#[inline(never)]
pub fn site_1k() -> Vec<Box<[u8]>> {
    blocks(SITES[0].allocated, SITES[0].size)
}

/// 256 MiB in 4 KiB blocks.
#[inline(never)]
pub fn site_4k() -> Vec<Box<[u8]>> {
    blocks(SITES[1].allocated, SITES[1].size)
}

/// ~32 MiB in 300 KiB blocks.
#[inline(never)]
pub fn site_300k() -> Vec<Box<[u8]>> {
    blocks(SITES[2].allocated, SITES[2].size)
}

/// Runs the workload under a profiler with the default settings, writes
/// `heap.pb.gz` into `dir`, and prints the profiler's stats. The binary that
/// calls this declares the `#[global_allocator]`.
pub fn run_sites(dir: &Path) -> Result<(), lowprof::Error> {
    let profiler = lowprof::Profiler::builder().cpu_hz(0).start()?;
    let a = site_1k();
    let mut b = site_4k();
    let c = site_300k();
    // Free every other 4 KiB block.
    let mut keep = true;
    b.retain(|_| {
        keep = !keep;
        keep
    });
    assert_eq!(b.len() as u64, SITES[1].live);
    let profile = profiler.heap_profile()?;
    profile.write_pprof(dir.join("heap.pb.gz"))?;
    let stats = profiler.stats();
    println!(
        "samples={} dropped={} untracked={}",
        stats.heap.samples, stats.heap.dropped_samples, stats.heap.untracked_samples
    );
    black_box((&a, &b, &c));
    drop(profiler);
    Ok(())
}
