//! Malloc/free pairs of mixed sizes, calling `GlobalAlloc::alloc`/`dealloc`
//! directly on allocator instances in this process (the bench binary's own
//! global allocator stays the default), so that every variant runs in the
//! same process and machine noise largely cancels in the ratios:
//!
//! - `System` vs `CountdownOnly<System>` (the floor) vs `SampledAlloc<System>`
//! - `Jemalloc` vs `CountdownOnly<Jemalloc>` vs `SampledAlloc<Jemalloc>`
//!
//! on one thread (`heap_pairs_1t`) and on two threads running the same loop
//! on their own blocks, started together (`heap_pairs_2t`; time per pair per
//! thread). Sampling is on (`lowprof_alloc::start(Some(524288))`) for the
//! whole run.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::Criterion;
use lowprof_alloc::SampledAlloc;
use lowprof_benches::{CountdownOnly, PairLoop, TimedPairs};
use tikv_jemallocator::Jemalloc;

static SYS: System = System;
static SYS_FLOOR: CountdownOnly<System> = CountdownOnly::new(System);
static SYS_SAMPLED: SampledAlloc<System> = SampledAlloc::new(System);
static JE: Jemalloc = Jemalloc;
static JE_FLOOR: CountdownOnly<Jemalloc> = CountdownOnly::new(Jemalloc);
static JE_SAMPLED: SampledAlloc<Jemalloc> = SampledAlloc::new(Jemalloc);

/// Benchmark ids, in the order they run (each wrapper right after its
/// inner allocator). `report.py` relies on these names.
const VARIANTS: [&str; 6] = [
    "System",
    "CountdownOnly<System>",
    "SampledAlloc<System>",
    "Jemalloc",
    "CountdownOnly<Jemalloc>",
    "SampledAlloc<Jemalloc>",
];

/// One pair loop per variant, in [`VARIANTS`] order. Each thread has its own.
fn loops() -> Vec<Box<dyn TimedPairs>> {
    vec![
        Box::new(PairLoop::new(&SYS)),
        Box::new(PairLoop::new(&SYS_FLOOR)),
        Box::new(PairLoop::new(&SYS_SAMPLED)),
        Box::new(PairLoop::new(&JE)),
        Box::new(PairLoop::new(&JE_FLOOR)),
        Box::new(PairLoop::new(&JE_SAMPLED)),
    ]
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(40)
        .configure_from_args()
}

#[derive(Clone, Copy)]
enum Job {
    Run { variant: usize, iters: u64 },
    Exit,
}

struct Shared {
    start: Barrier,
    done: Barrier,
    job: Mutex<Job>,
    times: Mutex<Vec<Duration>>,
}

/// Persistent worker threads (their thread-locals and pair rings stay warm
/// across batches), released together by a barrier for each batch.
struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            start: Barrier::new(threads + 1),
            done: Barrier::new(threads + 1),
            job: Mutex::new(Job::Exit),
            times: Mutex::new(Vec::with_capacity(threads)),
        });
        let handles = (0..threads)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("pairs-{i}"))
                    .spawn(move || {
                        let mut loops = loops();
                        loop {
                            shared.start.wait();
                            let job = *shared.job.lock().unwrap();
                            let Job::Run { variant, iters } = job else {
                                break;
                            };
                            let spent = loops[variant].run_timed(iters);
                            shared.times.lock().unwrap().push(spent);
                            shared.done.wait();
                        }
                    })
                    .expect("spawn bench worker")
            })
            .collect();
        Self { shared, handles }
    }

    /// Every worker runs `iters` pairs of `variant`, all released at once;
    /// returns the slowest worker's time (the batch's wall time, less the
    /// drains between chunks).
    fn run(&self, variant: usize, iters: u64) -> Duration {
        *self.shared.job.lock().unwrap() = Job::Run { variant, iters };
        self.shared.times.lock().unwrap().clear();
        self.shared.start.wait();
        self.shared.done.wait();
        let times = self.shared.times.lock().unwrap();
        times.iter().copied().max().unwrap_or_default()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        *self.shared.job.lock().unwrap() = Job::Exit;
        self.shared.start.wait();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn pairs_1t(c: &mut Criterion) {
    let mut loops = loops();
    let mut group = c.benchmark_group("heap_pairs_1t");
    for (variant, name) in VARIANTS.iter().enumerate() {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| loops[variant].run_timed(iters));
        });
    }
    group.finish();
}

fn pairs_2t(c: &mut Criterion) {
    let pool = Pool::new(2);
    let mut group = c.benchmark_group("heap_pairs_2t");
    for (variant, name) in VARIANTS.iter().enumerate() {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| pool.run(variant, iters));
        });
    }
    group.finish();
}

fn main() {
    lowprof_benches::start_sampling();
    eprintln!(
        "heap_pairs: mean size {:.0} bytes, sampling interval {} bytes",
        lowprof_benches::mean_size(),
        lowprof_benches::INTERVAL
    );
    let mut c = config();
    pairs_1t(&mut c);
    pairs_2t(&mut c);
    c.final_summary();
    eprintln!("{}", lowprof_benches::stats_line());
}
