//! The CPU-bound work of the benchmarks: the busy loop of `cpu_capture`
//! ([`spin_for_cpu`]), the deterministic [`workload`] of `cpu_overhead*`,
//! and the interleaved overhead cross-check ([`interleaved_overhead`],
//! [`overhead_report`]).

// Benchmark support: a broken setup (a failed syscall, a dead worker)
// should stop the benchmark loudly rather than measure something else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Instant;

use super::{median, process_cpu, quantile, thread_cpu};

/// One serial xorshift chain of `n` steps: a latency-bound loop without
/// calls or memory traffic.
#[inline(never)]
pub fn xorshift_steps(n: u64) -> u64 {
    let mut x: u64 = black_box(0x9e37_79b9_7f4a_7c15);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// Spins on [`xorshift_steps`] until the calling thread has used `nanos` of
/// CPU time (read every ~0.2 ms of work); returns the CPU time used.
pub fn spin_for_cpu(nanos: u64) -> u64 {
    let t0 = thread_cpu();
    loop {
        black_box(xorshift_steps(black_box(200_000)));
        let spent = thread_cpu() - t0;
        if spent >= nanos {
            return spent;
        }
    }
}

/// Elements the [`workload`] sorts: 2^20 `u64`s (8 MiB).
pub const WORKLOAD_LEN: usize = 1 << 20;

/// Frames of plain recursion above the [`workload`]'s sort, so that a
/// sample's stack is as deep as a typical application's (~30–40 frames with
/// the sort's own).
pub const WORKLOAD_DEPTH: u32 = 16;

/// The CPU-bound workload of `cpu_overhead*`: fill `buf` with a fixed
/// pseudo-random sequence, sort it (`sort_unstable`, no allocation), and
/// fold it into a hash; ~20 ms on this class of machine. Deterministic:
/// the same result every call (the result is the checksum).
pub fn workload(buf: &mut [u64]) -> u64 {
    nest(WORKLOAD_DEPTH, buf)
}

#[inline(never)]
fn nest(depth: u32, buf: &mut [u64]) -> u64 {
    if depth == 0 {
        return fill_sort_hash(buf);
    }
    let r = nest(black_box(depth - 1), buf);
    black_box(r)
}

#[inline(never)]
fn fill_sort_hash(buf: &mut [u64]) -> u64 {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for v in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *v = x;
    }
    buf.sort_unstable();
    hash(buf)
}

#[inline(never)]
fn hash(buf: &[u64]) -> u64 {
    // FNV-1a over words, then a final avalanche: a serial chain per element.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &v in buf {
        h = (h ^ v).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h.wrapping_mul(0xff51_afd7_ed55_8ccd)
}

/// Per-iteration costs of one variant in [`interleaved_overhead`].
pub struct OverheadResult {
    /// Variant name.
    pub name: &'static str,
    /// Wall time per workload call, ns, one entry per batch.
    pub wall: Vec<f64>,
    /// CPU time of the calling thread per workload call (includes the
    /// signal handlers that ran on it), ns, per batch.
    pub thread_cpu: Vec<f64>,
    /// CPU time of the whole process per workload call (adds the
    /// profiler's own threads, e.g. lowprof's drainer), ns, per batch.
    pub process_cpu: Vec<f64>,
}

/// The overhead cross-check: `rounds` rounds; in each, every variant (the
/// first one rotating) is switched on with `switch(i)` and runs `per_batch`
/// [`workload`] calls on the calling thread. Interleaving gives every
/// variant the same share of the machine's good and bad moments, which
/// criterion's one-variant-after-the-other order cannot.
pub fn interleaved_overhead(
    names: &[&'static str],
    rounds: usize,
    per_batch: usize,
    mut switch: impl FnMut(usize),
) -> Vec<OverheadResult> {
    let mut buf = vec![0u64; WORKLOAD_LEN];
    let mut out: Vec<OverheadResult> = names
        .iter()
        .map(|&name| OverheadResult {
            name,
            wall: Vec::new(),
            thread_cpu: Vec::new(),
            process_cpu: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for k in 0..names.len() {
            let i = (k + round) % names.len();
            switch(i);
            // One untimed call: the profiler's threads and timers settle.
            black_box(workload(&mut buf));
            let (p0, t0, w0) = (process_cpu(), thread_cpu(), Instant::now());
            for _ in 0..per_batch {
                black_box(workload(&mut buf));
            }
            let wall = w0.elapsed().as_nanos() as f64;
            let (t1, p1) = (thread_cpu(), process_cpu());
            let n = per_batch as f64;
            out[i].wall.push(wall / n);
            out[i].thread_cpu.push((t1 - t0) as f64 / n);
            out[i].process_cpu.push((p1 - p0) as f64 / n);
        }
    }
    out
}

/// Per-round ratios `a[k] / b[k]` (the variant's batch over the baseline's
/// batch of the same round): their 25th, 50th and 75th percentiles.
fn paired(a: &[f64], b: &[f64]) -> [f64; 3] {
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    [quantile(&r, 0.25), quantile(&r, 0.5), quantile(&r, 0.75)]
}

/// Prints the cross-check's medians and ratios to the first variant, and
/// returns them as JSON. Ratios are given two ways: median over median, and
/// the per-round paired ratio (median and interquartile range), which
/// cancels load that changes from round to round.
pub fn overhead_report(results: &[OverheadResult], rounds: usize, per_batch: usize) -> String {
    let med = |v: &Vec<f64>| median(&mut v.clone());
    let base = &results[0];
    let (bw, bt, bp) = (med(&base.wall), med(&base.thread_cpu), med(&base.process_cpu));
    eprintln!(
        "interleaved: {rounds} rounds × {per_batch} workload calls per variant (median ms per \
         call; ratio to {}, median over median [per-round paired ratio: 25th–50th–75th \
         percentile]):",
        base.name
    );
    let mut json =
        format!("{{\n  \"rounds\": {rounds},\n  \"per_batch\": {per_batch},\n  \"variants\": {{\n");
    let fmt3 = |q: [f64; 3]| format!("{:.4}–{:.4}–{:.4}", q[0], q[1], q[2]);
    let arr3 = |q: [f64; 3]| format!("[{:.5}, {:.5}, {:.5}]", q[0], q[1], q[2]);
    for (i, r) in results.iter().enumerate() {
        let (w, t, p) = (med(&r.wall), med(&r.thread_cpu), med(&r.process_cpu));
        let pw = paired(&r.wall, &base.wall);
        let pt = paired(&r.thread_cpu, &base.thread_cpu);
        let pp = paired(&r.process_cpu, &base.process_cpu);
        eprintln!("  {:<16} other threads' CPU {:.3} ms per call", r.name, (p - t) / 1e6);
        eprintln!("    wall        {:>7.3} ms  {:.4}×  [{}]", w / 1e6, w / bw, fmt3(pw));
        eprintln!("    thread CPU  {:>7.3} ms  {:.4}×  [{}]", t / 1e6, t / bt, fmt3(pt));
        eprintln!("    process CPU {:>7.3} ms  {:.4}×  [{}]", p / 1e6, p / bp, fmt3(pp));
        json.push_str(&format!(
            "    \"{}\": {{\"wall_ns\": {w:.0}, \"thread_cpu_ns\": {t:.0}, \"process_cpu_ns\": {p:.0}, \
             \"wall_ratio\": {:.5}, \"thread_cpu_ratio\": {:.5}, \"process_cpu_ratio\": {:.5}, \
             \"wall_paired\": {}, \"thread_cpu_paired\": {}, \"process_cpu_paired\": {}}}{}\n",
            r.name,
            w / bw,
            t / bt,
            p / bp,
            arr3(pw),
            arr3(pt),
            arr3(pp),
            if i + 1 < results.len() { "," } else { "" }
        ));
    }
    json.push_str("  }\n}\n");
    json
}
