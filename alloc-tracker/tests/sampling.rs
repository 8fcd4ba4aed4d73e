//! The allocator on its own, as the process's global allocator: estimates
//! against known truth, the live view, exact totals, realloc, threads.
//! One #[test] (the allocator state is process-wide).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;
use std::collections::HashMap;

use lowprof_alloc::{HeapEvent, SampledAlloc};

#[global_allocator]
static ALLOC: SampledAlloc<System> = SampledAlloc::new(System);

const MEAN: u64 = 64 * 1024;

#[derive(Default)]
struct Drained {
    /// sample_id -> (size, weight)
    allocs: HashMap<u64, (u64, f64)>,
    frees: Vec<u64>,
}

fn drain_all(into: &mut Drained) {
    let mut scratch = vec![0u64; lowprof_alloc::RECORD_WORDS];
    // Collect first: inserting into a map while draining would allocate
    // inside the callback, which is fine, but keep it simple.
    let mut events = Vec::new();
    lowprof_alloc::drain(&mut scratch, |e| match e {
        HeapEvent::Alloc(a) => events.push((a.sample_id, a.size, a.weight, a.frames.len())),
        HeapEvent::Free { sample_id } => events.push((sample_id, 0, -1.0, 0)),
    })
    .unwrap();
    for (id, size, weight, frames) in events {
        if weight < 0.0 {
            into.frees.push(id);
        } else {
            assert!(frames > 0, "every sample has a stack");
            into.allocs.insert(id, (size, weight));
        }
    }
}

fn estimate_bytes(d: &Drained, size: u64) -> f64 {
    d.allocs.values().filter(|(s, _)| *s == size).map(|(s, w)| *s as f64 * w).sum()
}

/// 4 standard errors of the Poisson byte-sampling estimator for `total`
/// bytes in blocks of `size` (Var = Σ s²(1-p)/p).
fn four_sigma(total: f64, size: u64) -> f64 {
    let p = -(-(size as f64) / MEAN as f64).exp_m1();
    let n = total / size as f64;
    4.0 * (n * (size as f64).powi(2) * (1.0 - p) / p).sqrt()
}

#[inline(never)]
fn allocate_blocks(count: usize, size: usize) -> Vec<Vec<u8>> {
    (0..count).map(|_| std::hint::black_box(vec![1u8; size])).collect()
}

#[test]
fn sampling_end_to_end() {
    lowprof_alloc::start(Some(MEAN)).unwrap();
    assert!(lowprof_alloc::is_installed());
    assert_eq!(lowprof_alloc::interval(), MEAN);
    let mut d = Drained::default();
    drain_all(&mut d);
    d.allocs.clear();

    let before = lowprof_alloc::stats().totals;
    // 64 MiB in 1 KiB blocks, 32 MiB in 128 KiB blocks. Both sites have
    // enough misses on average (here 35 of 256) for the estimate to be near
    // normal out to 4σ; blocks far above the interval (e.g. 300 KiB, missed
    // with probability 1 %) make a single miss worth 1σ and fail by chance.
    let small = allocate_blocks(64 * 1024, 1024);
    let big = allocate_blocks(256, 128 * 1024);
    drain_all(&mut d);
    let small_est = estimate_bytes(&d, 1024);
    let truth = 64.0 * 1024.0 * 1024.0;
    assert!(
        (small_est - truth).abs() < four_sigma(truth, 1024),
        "1 KiB site: {small_est} vs {truth} ± {}",
        four_sigma(truth, 1024)
    );
    let big_truth = (big.len() * 128 * 1024) as f64;
    let big_est = estimate_bytes(&d, 128 * 1024);
    assert!(
        (big_est - big_truth).abs() < four_sigma(big_truth, 128 * 1024),
        "{big_est} vs {big_truth}"
    );

    // The live view holds exactly the sampled blocks we still hold.
    let mut live = 0usize;
    lowprof_alloc::for_each_live(|b| {
        assert!(d.allocs.contains_key(&b.sample_id) || b.size != 1024, "unknown live sample");
        live += 1;
    });
    let sampled_small = d.allocs.values().filter(|(s, _)| *s == 1024).count();
    assert!(live >= sampled_small, "{live} live < {sampled_small} sampled");

    // Free half of the small blocks: in-use estimate halves, frees arrive.
    let mut small = small;
    small.truncate(32 * 1024);
    drain_all(&mut d);
    let mut live_small_est = 0.0;
    lowprof_alloc::for_each_live(|b| {
        if b.size == 1024 {
            live_small_est += b.size as f64 * b.weight;
        }
    });
    let half = truth / 2.0;
    assert!(
        (live_small_est - half).abs() < four_sigma(half, 1024),
        "in use {live_small_est} vs {half}"
    );
    assert!(!d.frees.is_empty());

    // Exact totals: at least what we did (the test harness allocates too).
    let after = lowprof_alloc::stats().totals;
    assert!(after.alloc_count - before.alloc_count >= (64 * 1024 + big.len()) as u64);
    assert!(after.alloc_bytes - before.alloc_bytes >= 96 * 1024 * 1024 - 1024 * 1024);
    assert!(after.free_count - before.free_count >= 32 * 1024);

    // realloc: growth of sampled and unsampled blocks keeps the contents.
    for round in 0..2000u32 {
        let mut v: Vec<u32> = Vec::with_capacity(1);
        for i in 0..(round % 700 + 1) {
            v.push(i ^ round);
        }
        for (i, x) in v.iter().enumerate() {
            assert_eq!(*x, i as u32 ^ round);
        }
    }
    // Threads that exit while their sampled blocks live on, freed later by
    // another thread.
    let handles: Vec<_> =
        (0..8).map(|_| std::thread::spawn(|| allocate_blocks(2048, 4096))).collect();
    let kept: Vec<Vec<Vec<u8>>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    drop(kept);
    drop(small);
    drop(big);
    drain_all(&mut d);
    let stats = lowprof_alloc::stats();
    assert_eq!(stats.corrupt_records, 0);
    assert_eq!(stats.dropped_samples, 0);
    assert!(stats.samples > 100);
    lowprof_alloc::stop();
}
