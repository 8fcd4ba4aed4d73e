//! The main job: profile a realistic workload and write its profiles.
//!
//! Four worker threads generate and parse access-log lines, index them and
//! aggregate per-user statistics; a session cache keeps growing the whole
//! time (the "leak" a heap profile should point at). After a few seconds the
//! demo writes
//!
//! - `profiles/heap.pb.gz` and `profiles/heap.svg` (in-use heap),
//! - `profiles/allocs.svg` (all allocations since start),
//! - `profiles/cpu.pb.gz` and `profiles/cpu.svg`,
//!
//! and prints the top allocation sites by in-use bytes and the top functions
//! by CPU. Read the files with `go tool pprof -top profiles/heap.pb.gz`.
//!
//! Run: `cargo run --release -p lowprof --example demo [seconds] [output dir]`
//! (defaults: 5 seconds, `profiles`).

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lowprof::SampledAlloc;

#[global_allocator]
static ALLOC: SampledAlloc<std::alloc::System> = SampledAlloc::new(std::alloc::System);

/// One parsed log line.
#[derive(Debug, Clone)]
struct Request {
    user: String,
    path: String,
    status: u16,
    bytes: u64,
    latency_us: u32,
}

/// A tiny deterministic generator, so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Produces a batch of access-log lines as one text buffer.
#[inline(never)]
fn generate_log(rng: &mut Lcg, lines: usize) -> String {
    let mut text = String::with_capacity(lines * 96);
    for _ in 0..lines {
        let user = rng.next() % 5000;
        let depth = 1 + rng.next() % 4;
        let mut path = String::new();
        for _ in 0..depth {
            path.push('/');
            path.push_str(
                ["api", "v2", "users", "orders", "items", "search", "static"]
                    [(rng.next() % 7) as usize],
            );
        }
        let status = [200, 200, 200, 201, 304, 404, 500][(rng.next() % 7) as usize];
        text.push_str(&format!(
            "user{user} GET {path} {status} {} {}\n",
            rng.next() % 65536,
            rng.next() % 20000
        ));
    }
    text
}

/// Parses log lines into records.
#[inline(never)]
fn parse_log(text: &str) -> Vec<Request> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let user = f.next()?.to_owned();
            let _method = f.next()?;
            let path = f.next()?.to_owned();
            let status = f.next()?.parse().ok()?;
            let bytes = f.next()?.parse().ok()?;
            let latency_us = f.next()?.parse().ok()?;
            Some(Request { user, path, status, bytes, latency_us })
        })
        .collect()
}

/// Indexes requests by path.
#[inline(never)]
fn index_by_path(requests: &[Request]) -> HashMap<String, Vec<usize>> {
    let mut index: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        index.entry(r.path.clone()).or_default().push(i);
    }
    index
}

/// Per-user statistics: count, bytes, latency percentiles.
#[inline(never)]
fn aggregate_users(requests: &[Request]) -> BTreeMap<String, (u64, u64, u32)> {
    let mut latencies: HashMap<&str, Vec<u32>> = HashMap::new();
    let mut totals: BTreeMap<String, (u64, u64, u32)> = BTreeMap::new();
    for r in requests {
        latencies.entry(&r.user).or_default().push(r.latency_us);
        let t = totals.entry(r.user.clone()).or_default();
        t.0 += 1;
        t.1 += r.bytes;
    }
    for (user, mut l) in latencies {
        l.sort_unstable();
        if let Some(t) = totals.get_mut(user) {
            t.2 = l[l.len() * 99 / 100];
        }
    }
    totals
}

/// The growing cache: remembers every session it sees and never evicts.
#[inline(never)]
fn remember_sessions(cache: &Mutex<Vec<Vec<u8>>>, requests: &[Request]) {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    for r in requests.iter().filter(|r| r.status >= 400) {
        let mut session = Vec::with_capacity(512);
        session.extend_from_slice(r.user.as_bytes());
        session.extend_from_slice(r.path.as_bytes());
        session.resize(512, 0);
        cache.push(session);
    }
}

/// Burns CPU the way checksumming a response would.
#[inline(never)]
fn checksum(requests: &[Request]) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    for _ in 0..8 {
        for r in requests {
            for b in r.path.bytes().chain(r.user.bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
            }
        }
    }
    h
}

fn worker(seed: u64, until: Instant, cache: Arc<Mutex<Vec<Vec<u8>>>>) -> u64 {
    let mut rng = Lcg(seed);
    let mut acc = 0u64;
    while Instant::now() < until {
        let text = generate_log(&mut rng, 2000);
        let requests = parse_log(&text);
        let index = index_by_path(&requests);
        let users = aggregate_users(&requests);
        remember_sessions(&cache, &requests);
        acc ^= checksum(&requests) ^ index.len() as u64 ^ users.len() as u64;
    }
    acc
}

/// User plus system CPU time of the whole process so far.
fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; zeroed is a valid rusage.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let out =
        std::path::PathBuf::from(std::env::args().nth(2).unwrap_or_else(|| "profiles".into()));
    let profiler = lowprof::Profiler::builder().start()?;

    let until = Instant::now() + Duration::from_secs(seconds);
    let cache = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..4u64)
        .map(|i| {
            let cache = Arc::clone(&cache);
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker(i + 1, until, cache))
        })
        .collect::<Result<_, _>>()?;
    let mut acc = 0;
    for w in workers {
        acc ^= w.join().map_err(|_| "a worker panicked")?;
    }
    black_box(acc);

    std::fs::create_dir_all(&out)?;
    let heap = profiler.heap_profile()?;
    heap.write_pprof(out.join("heap.pb.gz"))?;
    heap.write_flamegraph(out.join("heap.svg"))?;
    heap.write_flamegraph_of("alloc_space", out.join("allocs.svg"))?;
    let cpu = profiler.cpu_profile()?;
    cpu.write_pprof(out.join("cpu.pb.gz"))?;
    cpu.write_flamegraph(out.join("cpu.svg"))?;

    println!("Top allocation sites by in-use bytes (estimated):");
    for t in heap.top_sites("inuse_space", 8) {
        println!("  {:>12} bytes  {}", t.value, t.name);
    }
    println!("Top functions by CPU:");
    let total_cpu = cpu.total(1).max(1);
    for t in cpu.top_sites("cpu", 8) {
        println!("  {:>5.1}%  {}", 100.0 * t.value as f64 / total_cpu as f64, t.name);
    }
    let sampled_cpu = cpu.total(1) as f64 / 1e9;
    let process_cpu = process_cpu_seconds();
    println!(
        "CPU sampled: {sampled_cpu:.2} s of {process_cpu:.2} s used by the process ({:.0}%)",
        100.0 * sampled_cpu / process_cpu.max(1e-9)
    );
    let report = profiler.stop()?;
    let s = &report.stats;
    println!(
        "heap: {} samples, {} dropped, {} live sampled blocks; exact: {} allocations, {} bytes",
        s.heap.samples,
        s.heap.dropped_samples,
        s.heap.live_samples,
        s.heap.totals.alloc_count,
        s.heap.totals.alloc_bytes
    );
    println!(
        "cpu: {} samples ({} signals), {} dropped, {} threads timed",
        s.cpu.samples, s.cpu.signals, s.cpu.dropped, s.cpu.threads_timed
    );
    let written = ["heap.pb.gz", "heap.svg", "allocs.svg", "cpu.pb.gz", "cpu.svg"]
        .map(|file| out.join(file).display().to_string());
    println!("wrote {}", written.join(" "));
    Ok(())
}
