//! A program that does not declare `SampledAlloc`: asking for a heap profile
//! must say so, not return an empty profile.

// A test program: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn main() {
    let profiler = lowprof::Profiler::builder().cpu_hz(0).start().expect("start");
    let _work: Vec<Vec<u8>> = (0..1000).map(|i| vec![0u8; i]).collect();
    match profiler.heap_profile() {
        Err(e @ lowprof::Error::HeapNotInstalled) => println!("{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(p) => panic!("got a profile with {} samples instead of an error", p.samples.len()),
    }
}
