//! The three known heap sites with `SampledAlloc<MiMalloc>`. Usage: `heap_sites_mimalloc <dir>`.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<mimalloc::MiMalloc> = SampledAlloc::new(mimalloc::MiMalloc);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).ok_or("usage: heap_sites_mimalloc <dir>")?;
    lowprof_tests::sites::run_sites(std::path::Path::new(&dir))?;
    Ok(())
}
