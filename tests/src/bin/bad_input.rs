//! Bad configurations give typed errors with the valid range; one profiler
//! at a time; restart after stop works. Exits non-zero on any surprise.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lowprof::{Error, Profiler, SampledAlloc};

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

fn main() {
    match Profiler::builder().heap_interval(0).start() {
        Err(e @ Error::InvalidHeapInterval { bytes: 0 }) => println!("heap_interval(0): {e}"),
        other => panic!("heap_interval(0) gave {other:?}"),
    }
    match Profiler::builder().heap_interval(u64::MAX).start() {
        Err(e @ Error::InvalidHeapInterval { .. }) => println!("heap_interval(MAX): {e}"),
        other => panic!("heap_interval(u64::MAX) gave {other:?}"),
    }
    match Profiler::builder().cpu_hz(5000).start() {
        Err(e @ Error::InvalidCpuHz { hz: 5000 }) => println!("cpu_hz(5000): {e}"),
        other => panic!("cpu_hz(5000) gave {other:?}"),
    }
    let first = Profiler::builder().cpu_hz(0).start().expect("first start");
    match Profiler::builder().cpu_hz(0).start() {
        Err(e @ Error::AlreadyRunning) => println!("second start: {e}"),
        other => panic!("second start gave {other:?}"),
    }
    first.stop().expect("stop");
    let again = Profiler::builder().cpu_hz(0).start().expect("start after stop");
    assert!(again.heap_profile().is_ok());
    drop(again);

    // Export settings: typed errors that name the setting and the fix.
    for (what, builder) in [
        ("otlp_endpoint", Profiler::builder().cpu_hz(0).otlp_endpoint("ftp://collector:4318")),
        (
            "otlp_compression",
            Profiler::builder().cpu_hz(0).otlp_endpoint("http://x:4318").otlp_compression("zstd"),
        ),
        (
            "export_interval",
            Profiler::builder().cpu_hz(0).export_interval(std::time::Duration::ZERO),
        ),
    ] {
        match builder.start() {
            Err(e @ Error::Config { .. }) => {
                assert!(e.to_string().contains(what), "{e}");
                println!("{what}: {e}");
            }
            other => panic!("{what} gave {other:?}"),
        }
    }
    // A header without "=" in the environment; its value never shows.
    // SAFETY: no other thread reads the environment now (no profiler runs).
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20s3cret,brokenpair")
    };
    match Profiler::builder().cpu_hz(0).otlp_endpoint("http://x:4318").start() {
        Err(e @ Error::Config { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{msg}");
            assert!(!msg.contains("s3cret"), "secrets never appear in errors: {msg}");
            println!("OTEL_EXPORTER_OTLP_HEADERS: {msg}");
        }
        other => panic!("a header without = gave {other:?}"),
    }
    // SAFETY: as above.
    unsafe { std::env::remove_var("OTEL_EXPORTER_OTLP_HEADERS") };
    let builder = Profiler::builder().header("authorization", "Bearer s3cret").serve_token("t0ken");
    let debug = format!("{builder:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("t0ken"),
        "secrets never appear in Debug: {debug}"
    );
    println!("ok");
}
