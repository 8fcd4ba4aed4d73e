//! The three known heap sites with `SampledAlloc<System>`. Usage: `heap_sites <dir>`.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).ok_or("usage: heap_sites <dir>")?;
    lowprof_tests::sites::run_sites(std::path::Path::new(&dir))?;
    Ok(())
}
