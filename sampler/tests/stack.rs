//! The recorded stacks are the real ones.
//!
//! 1. `chain_a → chain_b → chain_c`, all `#[inline(never)]`, `chain_c` busy:
//!    samples read `[PC in c, return address in b, return address in a, …]`.
//! 2. `sorter` sorts a big `Vec` with `sort_unstable` over and over: the leaf
//!    is the sort code (monomorphised `core::slice::sort::…`), not `sorter`,
//!    and `sorter` appears among the callers.
//!
//! 3. A stack deeper than `MAX_FRAMES` keeps the leaf end and is flagged
//!    `FLAG_TRUNCATED`.
//!
//! They run for a budget of this thread's CPU time (not wall time), so a
//! loaded machine does not thin out the samples.
//!
//! Addresses are attributed with the test binary's own `.symtab` (exact
//! function extents); a return address is looked up at `address - 1`, inside
//! its call instruction.

// Linux-only: the sampler does nothing elsewhere.
#![cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;

use common::{Collector, Sample, Symbols, call_site};
use lowprof_core::event::{FLAG_LEAF_IS_PC, FLAG_TRUNCATED};
use lowprof_core::stack::MAX_FRAMES;
use lowprof_sampler::Config;

#[inline(never)]
fn chain_c(until: u64) -> u64 {
    let mut x: u64 = black_box(1);
    while common::thread_cpu_nanos() < until {
        let mut i = 0u32;
        while i < 10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            i += 1;
        }
    }
    x
}

#[inline(never)]
fn chain_b(until: u64) -> u64 {
    black_box(chain_c(black_box(until))).wrapping_add(1)
}

#[inline(never)]
fn chain_a(until: u64) -> u64 {
    black_box(chain_b(black_box(until))).wrapping_add(2)
}

/// Refills `v` with pseudo-random values (outside `sorter`, so that time
/// spent here is not counted as `sorter`'s own).
#[inline(never)]
fn scramble(v: &mut [u64], seed: u64) {
    let mut x = seed | 1;
    for e in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *e = x;
    }
}

#[inline(never)]
fn sorter(until: u64) -> u64 {
    let mut v = vec![0u64; 200_000];
    let mut round = 0u64;
    while common::thread_cpu_nanos() < until {
        round += 1;
        scramble(&mut v, round);
        v.sort_unstable();
        black_box(&v);
    }
    v[0]
}

/// Recurses `depth` frames, then spins until the CPU deadline.
#[inline(never)]
fn recurse(depth: u32, until: u64) -> u64 {
    if depth == 0 {
        return chain_c(until);
    }
    black_box(recurse(black_box(depth - 1), until)).wrapping_add(1)
}

fn collect(work: impl FnOnce()) -> Vec<Sample> {
    let collector = Collector::spawn();
    lowprof_sampler::start(Config { hz: 1000, ..Config::default() }).unwrap();
    work();
    lowprof_sampler::stop();
    let me = common::gettid();
    collector.finish().into_iter().filter(|s| s.thread == me).collect()
}

/// This thread's samples while `work` runs, repeated (at most 20 times)
/// until there are at least `min`. On a loaded machine the kernel can notice
/// timer expiries late and fold many into one signal (one sample weighing
/// `1 + overrun`), so a fixed amount of CPU may give far fewer samples than
/// periods: 38 for 600 ms at 1000 Hz was seen with two busy loops running.
fn collect_at_least(min: usize, mut work: impl FnMut()) -> Vec<Sample> {
    let mut samples = Vec::new();
    for _ in 0..20 {
        samples.extend(collect(&mut work));
        if samples.len() >= min {
            break;
        }
    }
    samples
}

#[test]
fn stacks_are_real() {
    let syms = Symbols::load();

    // 1. a → b → c.
    let (a, b, c) = (
        syms.of(chain_a as *const () as usize),
        syms.of(chain_b as *const () as usize),
        syms.of(chain_c as *const () as usize),
    );
    let samples = collect_at_least(50, || {
        black_box(chain_a(common::thread_cpu_nanos() + 600_000_000));
    });
    let in_c: Vec<&Sample> = samples.iter().filter(|s| c.contains(s.frames[0])).collect();
    let exact = in_c
        .iter()
        .filter(|s| {
            s.frames.len() >= 3
                && b.contains(call_site(s.frames[1]))
                && a.contains(call_site(s.frames[2]))
        })
        .count();
    eprintln!(
        "a→b→c: {} samples, {} with the leaf in c, {exact} of those read [c, b, a, …]; depth {:?}",
        samples.len(),
        in_c.len(),
        in_c.first().map(|s| s.frames.len())
    );
    assert!(samples.len() >= 50, "{} samples", samples.len());
    assert!(
        in_c.len() * 10 >= samples.len() * 8,
        "most leaves are in c: {} of {}",
        in_c.len(),
        samples.len()
    );
    assert!(
        exact * 100 >= in_c.len() * 95,
        "{exact} of {} leaf-in-c samples have b then a",
        in_c.len()
    );
    // The walk goes on past a into the test harness (the stack is complete),
    // and is not marked truncated.
    assert!(in_c.iter().all(|s| s.frames.len() > 4 && s.frames.len() < MAX_FRAMES));
    assert!(samples.iter().all(|s| s.flags == FLAG_LEAF_IS_PC), "not truncated");

    // A stack deeper than MAX_FRAMES keeps its leaf end and says it was cut.
    let truncated_before = lowprof_sampler::stats().truncated;
    let samples = collect_at_least(5, || {
        black_box(recurse(200, common::thread_cpu_nanos() + 200_000_000));
    });
    let recurse_sym = syms.of(recurse as *const () as usize);
    let deep: Vec<&Sample> = samples.iter().filter(|s| c.contains(s.frames[0])).collect();
    assert!(!deep.is_empty());
    for s in &deep {
        assert_eq!(s.frames.len(), MAX_FRAMES);
        assert_eq!(s.flags, FLAG_LEAF_IS_PC | FLAG_TRUNCATED);
        assert!(s.frames[1..].iter().all(|&r| recurse_sym.contains(call_site(r))), "leaf end kept");
    }
    assert!(lowprof_sampler::stats().truncated - truncated_before >= deep.len() as u64);
    eprintln!("deep: {} samples, all {MAX_FRAMES} frames and flagged truncated", deep.len());

    // 2. sort_unstable under sorter.
    let sorter_sym = syms.of(sorter as *const () as usize);
    let scramble_sym = syms.of(scramble as *const () as usize);
    let samples = collect_at_least(50, || {
        black_box(sorter(common::thread_cpu_nanos() + 800_000_000));
    });
    let under_sorter: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.frames[1..].iter().any(|&r| sorter_sym.contains(call_site(r))))
        .collect();
    let in_sort_code: Vec<&Sample> = under_sorter
        .iter()
        .copied()
        .filter(|s| !sorter_sym.contains(s.frames[0]) && !scramble_sym.contains(s.frames[0]))
        .collect();
    // Between the leaf and sorter's frame there is the sort's own code: the
    // leaf itself in a release build; in a debug build the leaf is often an
    // unoptimised helper (`ptr::read`, `lt`) called from it.
    let is_sort = |addr: u64| syms.containing(addr).is_some_and(|f| f.name.contains("sort"));
    let named_sort = in_sort_code
        .iter()
        .filter(|s| {
            let k =
                s.frames.iter().skip(1).position(|&r| sorter_sym.contains(call_site(r))).unwrap()
                    + 1;
            is_sort(s.frames[0]) || s.frames[1..k].iter().any(|&r| is_sort(call_site(r)))
        })
        .count();
    let leaf_in_sorter = under_sorter.iter().filter(|s| sorter_sym.contains(s.frames[0])).count();
    eprintln!(
        "sorter: {} samples, {} under sorter, {leaf_in_sorter} with the leaf in sorter itself, \
         {} with the leaf in neither sorter nor scramble, \
         {named_sort} with the leaf in, or called from, a function named *sort*",
        samples.len(),
        under_sorter.len(),
        in_sort_code.len()
    );
    assert!(samples.len() >= 50);
    assert!(
        under_sorter.len() * 10 >= samples.len() * 9,
        "sorter is a caller of nearly every sample"
    );
    assert!(leaf_in_sorter * 20 <= under_sorter.len(), "the leaf is hardly ever sorter itself");
    assert!(
        in_sort_code.len() * 10 >= under_sorter.len() * 8,
        "the leaf is sort code, not sorter itself"
    );
    assert!(named_sort * 10 >= in_sort_code.len() * 9, "the leaf functions are the sort's own");
}
