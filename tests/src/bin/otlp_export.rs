//! Exports to an OTLP endpoint every 500 ms while doing known CPU and heap
//! work, writing the same rounds as pprof files too, so a test can compare
//! what was sent with what was written.
//! Usage: `otlp_export <endpoint> <files dir> <seconds> [timeout ms] [deadline s]`.
//!
//! Works for `seconds`; then, with `deadline s`, keeps running until every
//! request made so far has an outcome (nothing queued or in flight), but
//! not past `deadline` seconds after its start, so a test can wait for
//! retries to finish without guessing a sleep. Then stops and prints the
//! profiler's export counters as key=value lines (`settled` says whether
//! the export settled before the deadline).

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

/// The W3C trace-context example ids.
const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

#[inline(never)]
fn otlp_cpu_work(until: Instant) -> u64 {
    let mut x = 1u64;
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(7));
        }
    }
    x
}

#[inline(never)]
fn otlp_heap_work(keep: &mut Vec<Vec<u8>>) {
    for i in 0..2000 {
        keep.push(black_box(vec![i as u8; 4096]));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().expect("endpoint");
    let dir = args.next().expect("files dir");
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let timeout_ms: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let deadline: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let started = Instant::now();
    let profiler = lowprof::Profiler::builder()
        .otlp_endpoint(endpoint)
        .header("authorization", "Bearer test-secret-token")
        .otlp_timeout(Duration::from_millis(timeout_ms))
        .service_name("lowprof-export-test")
        .export_interval(Duration::from_millis(500))
        .write_dir(dir)
        .keep_files(1000)
        .start()
        .unwrap();
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut keep = Vec::new();
    // All the work runs in one trace's span: samples carry it as a Link.
    let context = lowprof::trace::set_context(TRACE_ID, SPAN_ID);
    while Instant::now() < until {
        otlp_cpu_work(Instant::now() + Duration::from_millis(50));
        otlp_heap_work(&mut keep);
        if keep.len() > 20_000 {
            keep.clear();
        }
    }
    drop(context);
    // Until every request so far has an outcome, or the deadline.
    let deadline = started + Duration::from_secs_f64(deadline);
    let settled = loop {
        let stats = profiler.stats().export.expect("export stats");
        if stats.enqueued > 0 && stats.queued == 0 && !stats.in_flight {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("settled={settled}");
    println!("settled_after_ms={}", started.elapsed().as_millis());
    let report = profiler.stop().unwrap();
    let export = report.stats.export.expect("export stats");
    println!("enqueued={}", export.enqueued);
    println!("abandoned={}", export.abandoned);
    println!("requests_sent={}", export.requests_sent);
    println!("requests_failed={}", export.requests_failed);
    println!("retries={}", export.retries);
    println!("rejected={}", export.rejected);
    println!("partial_successes={}", export.partial_successes);
    println!("dropped_queue_full={}", export.dropped_queue_full);
    println!("files_written={}", report.stats.files.map_or(0, |f| f.written));
    println!("last_error={}", export.last_error.unwrap_or_default());
}
