//! A service started with secrets in its command line and environment, as
//! real services are. Usage: `no_secrets <otlp endpoint> <dir> [args...]`
//! (the extra arguments are the "secrets"; so is every variable the test
//! sets). Profiles heap and CPU for a second with OTLP export every 200 ms
//! and files in `<dir>`, then writes `heap.pb.gz`, `cpu.pb.gz`, `heap.svg`
//! and `cpu.svg` there from `stop()`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

#[inline(never)]
fn no_secrets_work(keep: &mut Vec<Vec<u8>>) {
    for i in 0..64 {
        keep.push(black_box(vec![i as u8; 4096]));
    }
    let mut x = 1u64;
    for i in 0..200_000u64 {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    black_box(x);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().expect("endpoint");
    let dir = std::path::PathBuf::from(args.next().expect("dir"));
    let profiler = lowprof::Profiler::builder()
        .cpu_hz(250)
        .heap_interval(64 * 1024)
        .otlp_endpoint(endpoint)
        .export_interval(Duration::from_millis(200))
        .write_dir(dir.join("rotating"))
        .start()
        .unwrap();
    profiler.cpu_profile().unwrap();
    let mut keep = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        no_secrets_work(&mut keep);
        keep.truncate(4096);
    }
    let report = profiler.stop().unwrap();
    let (heap, cpu) = (report.heap.unwrap(), report.cpu.unwrap());
    heap.write_pprof(dir.join("heap.pb.gz")).unwrap();
    cpu.write_pprof(dir.join("cpu.pb.gz")).unwrap();
    heap.write_flamegraph(dir.join("heap.svg")).unwrap();
    cpu.write_flamegraph(dir.join("cpu.svg")).unwrap();
    let export = report.stats.export.unwrap();
    println!("requests_sent={}", export.requests_sent);
}
