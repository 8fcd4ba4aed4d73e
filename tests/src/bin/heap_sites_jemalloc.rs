//! The three known heap sites with `SampledAlloc<Jemalloc>`. Usage: `heap_sites_jemalloc <dir>`.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<tikv_jemallocator::Jemalloc> =
    SampledAlloc::new(tikv_jemallocator::Jemalloc);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).ok_or("usage: heap_sites_jemalloc <dir>")?;
    lowprof_tests::sites::run_sites(std::path::Path::new(&dir))?;
    Ok(())
}
