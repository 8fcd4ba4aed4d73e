//! The heap benches' interleaved cross-check. Criterion measures the
//! variants of a group one after the other, so load that changes during a
//! run (this is a shared 2-core VM) moves its ratios by more than the
//! effects being measured. Here every variant runs one batch per round, the
//! first variant rotating, and each batch records its wall time and the
//! calling thread's CPU time (immune to time spent descheduled); the report
//! takes per-round *paired* ratios to the variant's inner allocator (median
//! and interquartile range), which cancel load that changes from round to
//! round. Written to `<results>/<group>/interleaved.json` for `report.py`.

use std::time::Instant;

use crate::cpu::{median, quantile, thread_cpu};

/// One batch: wall and thread-CPU nanoseconds and the ops it ran.
#[derive(Debug, Clone, Copy, Default)]
pub struct Batch {
    /// Wall-clock nanoseconds of the timed part.
    pub wall_ns: u64,
    /// The calling thread's CPU nanoseconds over the same part.
    pub cpu_ns: u64,
    /// Ops (pairs, map builds) in the batch.
    pub ops: u64,
}

impl Batch {
    /// Times `f` (one op) `ops` times on the calling thread.
    pub fn time(ops: u64, mut f: impl FnMut()) -> Batch {
        let (c0, w0) = (thread_cpu(), Instant::now());
        for _ in 0..ops {
            f();
        }
        let wall_ns = w0.elapsed().as_nanos() as u64;
        Batch { wall_ns, cpu_ns: thread_cpu() - c0, ops }
    }

    /// Adds another timed part.
    pub fn add(&mut self, other: Batch) {
        self.wall_ns += other.wall_ns;
        self.cpu_ns += other.cpu_ns;
        self.ops += other.ops;
    }
}

/// A variant of the cross-check and the variant (of the same process) its
/// ratio is taken to; a baseline names itself.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Benchmark id, as in the criterion group.
    pub name: &'static str,
    /// The inner allocator's variant.
    pub inner: &'static str,
}

/// Per-round times per op of one variant.
#[derive(Debug, Clone)]
pub struct Rounds {
    /// The variant.
    pub variant: Variant,
    /// Wall nanoseconds per op, one entry per round.
    pub wall: Vec<f64>,
    /// Thread-CPU nanoseconds per op, one entry per round.
    pub cpu: Vec<f64>,
}

/// Runs `rounds` rounds; in each every variant (the first one rotating)
/// runs one batch, `run(i)` for variant `i`.
pub fn interleave(
    variants: &[Variant],
    rounds: usize,
    mut run: impl FnMut(usize) -> Batch,
) -> Vec<Rounds> {
    let mut out: Vec<Rounds> = variants
        .iter()
        .map(|&variant| Rounds {
            variant,
            wall: Vec::with_capacity(rounds),
            cpu: Vec::with_capacity(rounds),
        })
        .collect();
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (k + round) % variants.len();
            let b = run(i);
            let ops = b.ops.max(1) as f64;
            out[i].wall.push(b.wall_ns as f64 / ops);
            out[i].cpu.push(b.cpu_ns as f64 / ops);
        }
    }
    out
}

/// 25th, 50th and 75th percentiles of the per-round ratios `a[k] / b[k]`.
fn paired(a: &[f64], b: &[f64]) -> [f64; 3] {
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    [quantile(&r, 0.25), quantile(&r, 0.5), quantile(&r, 0.75)]
}

/// Prints the cross-check (medians and paired ratios) and returns it as
/// JSON; `extra` is a list of further `"key": value` members.
pub fn report(
    group: &str,
    results: &[Rounds],
    per_batch: &str,
    extra: &[(&str, String)],
) -> String {
    let med = |v: &[f64]| median(&mut v.to_vec());
    eprintln!(
        "{group}: interleaved, {} rounds, batches of {per_batch}",
        results.first().map_or(0, |r| r.wall.len())
    );
    let mut members = Vec::new();
    for r in results {
        let inner = results.iter().find(|b| b.variant.name == r.variant.inner).unwrap_or(r);
        let (w, c) = (paired(&r.wall, &inner.wall), paired(&r.cpu, &inner.cpu));
        eprintln!(
            "  {:<26} wall {:>12.2} ns/op  cpu {:>12.2} ns/op  vs {:<10} wall {:.4}× [{:.3}–{:.3}]  cpu {:.4}× [{:.3}–{:.3}]",
            r.variant.name,
            med(&r.wall),
            med(&r.cpu),
            r.variant.inner,
            w[1],
            w[0],
            w[2],
            c[1],
            c[0],
            c[2]
        );
        members.push(format!(
            "    \"{}\": {{\"inner\": \"{}\", \"wall_ns_per_op\": {:.3}, \"cpu_ns_per_op\": {:.3}, \
             \"wall_paired\": [{:.5}, {:.5}, {:.5}], \"cpu_paired\": [{:.5}, {:.5}, {:.5}]}}",
            r.variant.name,
            r.variant.inner,
            med(&r.wall),
            med(&r.cpu),
            w[0],
            w[1],
            w[2],
            c[0],
            c[1],
            c[2]
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rounds = results.first().map_or(0, |r| r.wall.len());
    let extra: String = extra.iter().map(|(k, v)| format!("  \"{k}\": {v},\n")).collect();
    format!(
        "{{\n  \"unix_time\": {now},\n  \"rounds\": {rounds},\n  \"per_batch\": \"{per_batch}\",\n{extra}  \
         \"variants\": {{\n{}\n  }}\n}}\n",
        members.join(",\n")
    )
}
