//! Requests of two kinds in trace contexts, under a profiler. Usage:
//! `trace_spans <dir> <mode>`, mode one of:
//!
//! - `api`: 8 `checkout` and 8 `search` requests, each in its own trace
//!   and span set with `lowprof::trace::set_context_named`; a checkout costs
//!   three times the CPU and allocates three times the bytes of a search.
//!   Writes `cpu.pb.gz` and `heap.pb.gz`; prints `span <kind> <trace> <span>`
//!   per request.
//! - `tracing`: the same requests as `tracing` spans under
//!   `lowprof::trace::ProfilingLayer` (ids from tracing's span ids).
//! - `ratio`: 2000 traces under `ProbabilisticSampler(0.25)`, each making one
//!   allocation big enough to be sampled for sure; writes `heap.pb.gz` and
//!   prints `trace <id>` per trace.
//! - `flip`: one thread switches between two contexts as fast as it can for
//!   2 CPU-seconds under 1000 Hz sampling, allocating in each; writes
//!   `cpu.pb.gz` and `heap.pb.gz` (every sample must carry one of the two
//!   pairs of ids whole, or none: never a torn mix).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;

use lowprof::SampledAlloc;
use lowprof::trace::{self, ProbabilisticSampler, SpanName};
use lowprof_tests::cpu::burn_cpu;
use tracing_subscriber::prelude::*;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

/// CPU and bytes of one unit of work: a checkout is three units, a search one.
/// Few, long requests: a timer expiry the kernel notices late (on a loaded
/// machine) is charged to whatever runs when it is noticed, so every switch
/// between kinds can move a little CPU from one to the other.
const UNIT_CPU_NS: u64 = 80_000_000;
const UNIT_BYTES: usize = 48 << 20;
const BLOCK: usize = 64 << 10;
const REQUESTS_PER_KIND: usize = 8;

/// A deterministic stream of W3C-shaped ids (SplitMix64).
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn trace(&mut self) -> [u8; 16] {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&self.next().to_be_bytes());
        t[8..].copy_from_slice(&self.next().to_be_bytes());
        t
    }

    fn span(&mut self) -> [u8; 8] {
        self.next().to_be_bytes()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `units` of CPU and of allocation (blocks allocated, touched and freed).
#[inline(never)]
fn work(units: u64) {
    let mut x = 1u64;
    burn_cpu(units * UNIT_CPU_NS, || {
        x = black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7))
    });
    for _ in 0..(units as usize * UNIT_BYTES / BLOCK) {
        let mut block = Vec::<u8>::with_capacity(BLOCK);
        block.push(1);
        black_box(&block);
    }
}

fn kinds() -> impl Iterator<Item = (&'static str, u64)> {
    (0..REQUESTS_PER_KIND).flat_map(|_| [("checkout", 3), ("search", 1)])
}

fn with_api(dir: &Path) {
    let profiler = lowprof::Profiler::builder().start().unwrap();
    let names = [SpanName::new("checkout"), SpanName::new("search")];
    let mut ids = Ids(7);
    for (kind, units) in kinds() {
        let (trace_id, span_id) = (ids.trace(), ids.span());
        println!("span {kind} {} {}", hex(&trace_id), hex(&span_id));
        let name = if kind == "checkout" { names[0] } else { names[1] };
        let _guard = trace::set_context_named(trace_id, span_id, name);
        work(units);
    }
    write(&profiler, dir);
}

fn with_tracing(dir: &Path) {
    tracing_subscriber::registry().with(trace::ProfilingLayer::new()).init();
    let profiler = lowprof::Profiler::builder().start().unwrap();
    for (kind, units) in kinds() {
        let span = if kind == "checkout" {
            tracing::info_span!("checkout")
        } else {
            tracing::info_span!("search")
        };
        let _entered = span.enter();
        // A child span: its samples carry its own span id, the trace of the
        // request and the request's (root) name.
        let child = tracing::info_span!("db_query");
        let _in_child = child.enter();
        let (trace_id, span_id) = trace::current().unwrap();
        println!("span {kind} {} {}", hex(&trace_id), hex(&span_id));
        work(units);
    }
    write(&profiler, dir);
}

fn with_ratio(dir: &Path) {
    trace::set_sampling_strategy(ProbabilisticSampler::new(0.25).unwrap());
    let profiler = lowprof::Profiler::builder().cpu_hz(0).start().unwrap();
    let mut ids = Ids(11);
    let mut report = String::with_capacity(2000 * 40);
    for i in 0..2000 {
        let (trace_id, span_id) = (ids.trace(), ids.span());
        report.push_str(&format!("trace {}\n", hex(&trace_id)));
        let _guard = trace::set_context(trace_id, span_id);
        black_box(one_allocation());
        if i % 200 == 199 {
            // Every one of these allocations is sampled: give the drainer
            // (every 50 ms) time to empty the ring before it fills.
            std::thread::sleep(std::time::Duration::from_millis(120));
        }
    }
    print!("{report}");
    let heap = profiler.heap_profile().unwrap();
    heap.write_pprof(dir.join("heap.pb.gz")).unwrap();
}

/// 8 MiB, never touched: sampled with probability 1 − e^−16 at the default
/// 512 KiB mean, so every trace has a sample.
#[inline(never)]
fn one_allocation() -> Vec<u8> {
    Vec::with_capacity(8 << 20)
}

fn write(profiler: &lowprof::Profiler, dir: &Path) {
    profiler.cpu_profile().unwrap().write_pprof(dir.join("cpu.pb.gz")).unwrap();
    profiler.heap_profile().unwrap().write_pprof(dir.join("heap.pb.gz")).unwrap();
}

/// The two contexts `flip` switches between.
const FLIP_A: ([u8; 16], [u8; 8]) = ([0xaa; 16], [0xa1; 8]);
const FLIP_B: ([u8; 16], [u8; 8]) = ([0xbb; 16], [0xb2; 8]);

#[inline(never)]
fn flip_work(heap: &mut Vec<Vec<u8>>) {
    for _ in 0..64 {
        heap.push(black_box(vec![0u8; 1024]));
    }
    if heap.len() > 4096 {
        heap.clear();
    }
}

fn with_flip(dir: &Path) {
    let profiler =
        lowprof::Profiler::builder().cpu_hz(1000).heap_interval(64 << 10).start().unwrap();
    let until = lowprof_tests::cpu::thread_cpu_ns() + 2_000_000_000;
    let mut heap = Vec::new();
    while lowprof_tests::cpu::thread_cpu_ns() < until {
        for _ in 0..1000 {
            let _a = trace::set_context(FLIP_A.0, FLIP_A.1);
            flip_work(&mut heap);
            let _b = trace::set_context(FLIP_B.0, FLIP_B.1);
            flip_work(&mut heap);
        }
    }
    write(&profiler, dir);
}

fn main() {
    let usage = "usage: trace_spans <dir> api|tracing|ratio|flip";
    let dir = std::path::PathBuf::from(std::env::args_os().nth(1).expect(usage));
    match std::env::args().nth(2).as_deref() {
        Some("api") => with_api(&dir),
        Some("tracing") => with_tracing(&dir),
        Some("ratio") => with_ratio(&dir),
        Some("flip") => with_flip(&dir),
        _ => panic!("{usage}"),
    }
}
