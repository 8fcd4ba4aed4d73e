//! Known stacks. Usage: `cpu_stacks <dir>`.
//!
//! `chain_a → chain_b → chain_c`, with `chain_c` spinning; then `sorter`
//! sorting a large vector again and again (the leaf is inside std's sort).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use lowprof::SampledAlloc;
use lowprof_tests::cpu::burn_cpu;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

#[inline(never)]
fn chain_c() {
    let mut x = 7u64;
    burn_cpu(1_000_000_000, || x = black_box(x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1));
}

#[inline(never)]
fn chain_b() {
    chain_c();
    black_box(());
}

#[inline(never)]
fn chain_a() {
    chain_b();
    black_box(());
}

#[inline(never)]
fn sorter() {
    let mut v: Vec<u64> = (0..200_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let until = lowprof_tests::cpu::thread_cpu_ns() + 1_000_000_000;
    let mut round = 0u64;
    while lowprof_tests::cpu::thread_cpu_ns() < until {
        for x in v.iter_mut() {
            *x = x.rotate_left(13) ^ round;
        }
        v.sort_unstable();
        round += 1;
    }
    black_box(v);
}

fn main() {
    let dir =
        std::path::PathBuf::from(std::env::args_os().nth(1).expect("usage: cpu_stacks <dir>"));
    let profiler = lowprof::Profiler::builder().cpu_hz(250).start().unwrap();
    chain_a();
    sorter();
    profiler.cpu_profile().unwrap().write_pprof(dir.join("cpu.pb.gz")).unwrap();
}
