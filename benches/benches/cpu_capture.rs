//! Captured CPU: how much of the CPU a process really used shows up in its
//! CPU profile, for lowprof and for pprof-rs, at 99, 250 and 1000 Hz with 1
//! and 2 busy threads (a `harness = false` bench: prints a table, writes
//! `target/criterion/cpu_capture/results.json` for `report.py`).
//!
//! One run: the busy threads are spawned first and wait on a barrier (a
//! thread pool's threads exist before profiling starts; lowprof finds
//! threads started later only at its drainer's next scan, ≤ 20 ms later);
//! the profiler starts; `getrusage(RUSAGE_SELF)` is read; the threads are
//! released and each spins (a serial xorshift chain) until its own CPU clock
//! has advanced by its share of the run's CPU time (~2 CPU-seconds in all);
//! they are joined; `getrusage` is read again; the profiler stops.
//!
//! - lowprof: `lowprof::Profiler` (heap off, CPU at `hz`, per-thread
//!   timers, the real drainer); sampled CPU = the `cpu/nanoseconds` total of
//!   the final CPU profile (Σ weight × period, `weight = 1 + si_overrun`).
//! - pprof-rs: `pprof::ProfilerGuard` at `hz` (process-wide
//!   `setitimer(ITIMER_PROF)`); sampled CPU = the report's total sample count
//!   × its timer interval (`1e6 / hz` µs). pprof-rs runs in a child process
//!   (this binary re-executed with `LOWPROF_CAPTURE_CHILD=pprof`): lowprof's
//!   `SIGPROF` handler stays installed for the life of a process, and two
//!   `SIGPROF` profilers in one process would take each other's signals.
//!
//! Share = sampled / process CPU (all threads: the busy ones, the main
//! thread, lowprof's drainer, whose CPU is never sampled). "busy share" =
//! sampled / the busy threads' own CPU clocks, for reference.
//!
//! `--test` (criterion's quick mode, used by CI): one 0.2 CPU-second run per
//! profiler at 99 Hz, 1 thread; prints, writes nothing, asserts nothing
//! about the numbers. With `--features pprof-frame-pointer` only the
//! pprof-rs rows run, written to `results_pprof_fp.json`.

// Benchmarks are test-like code: a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use lowprof_benches::cpu::{Args, process_cpu, spin_for_cpu};

const GROUP: &str = "cpu_capture";
const RATES: [u32; 3] = [99, 250, 1000];
const THREADS: [usize; 2] = [1, 2];
const CPU_SECONDS: f64 = 2.0;
const BUDGET: f64 = 0.98;
/// Set in the child process that runs the pprof-rs rows.
const CHILD_ENV: &str = "LOWPROF_CAPTURE_CHILD";
/// `rates;threads;cpu_seconds`, passed to the child.
const SPEC_ENV: &str = "LOWPROF_CAPTURE_SPEC";

const PPROF_NAME: &str =
    if cfg!(feature = "pprof-frame-pointer") { "pprof-rs (frame-pointer)" } else { "pprof-rs" };

#[derive(Debug, Clone)]
struct Row {
    profiler: String,
    hz: u32,
    threads: usize,
    /// Process CPU time (getrusage) over the window, ns.
    process_cpu: u64,
    /// The busy threads' own CPU time, ns.
    busy_cpu: u64,
    /// CPU time the profile accounts for, ns.
    sampled_cpu: u64,
    /// Samples taken, i.e. signals handled (one ring record each for lowprof).
    signals: u64,
    /// Timer periods the samples stand for (lowprof: Σ `1 + si_overrun`;
    /// pprof-rs: one per sample).
    periods: u64,
    /// Samples lost (lowprof: ring drops; pprof-rs: not counted by it).
    dropped: u64,
    /// Wall time of the window, ns.
    wall: u64,
}

impl Row {
    fn share(&self) -> f64 {
        self.sampled_cpu as f64 / self.process_cpu.max(1) as f64
    }

    fn busy_share(&self) -> f64 {
        self.sampled_cpu as f64 / self.busy_cpu.max(1) as f64
    }

    fn json(&self) -> String {
        format!(
            "{{\"profiler\": \"{}\", \"hz\": {}, \"threads\": {}, \"process_cpu_ns\": {}, \
             \"busy_cpu_ns\": {}, \"sampled_cpu_ns\": {}, \"signals\": {}, \"periods\": {}, \"dropped\": {}, \
             \"wall_ns\": {}, \"share\": {:.5}, \"busy_share\": {:.5}}}",
            self.profiler,
            self.hz,
            self.threads,
            self.process_cpu,
            self.busy_cpu,
            self.sampled_cpu,
            self.signals,
            self.periods,
            self.dropped,
            self.wall,
            self.share(),
            self.busy_share()
        )
    }

    /// Parses what [`Row::json`] wrote (the child's stdout lines).
    fn parse(line: &str) -> Option<Row> {
        let field = |key: &str| -> Option<&str> {
            let at = line.find(&format!("\"{key}\": "))? + key.len() + 4;
            let rest = &line[at..];
            let end = rest.find([',', '}'])?;
            Some(rest[..end].trim().trim_matches('"'))
        };
        let num = |key: &str| -> Option<u64> { field(key)?.parse().ok() };
        Some(Row {
            profiler: field("profiler")?.to_string(),
            hz: num("hz")? as u32,
            threads: num("threads")? as usize,
            process_cpu: num("process_cpu_ns")?,
            busy_cpu: num("busy_cpu_ns")?,
            sampled_cpu: num("sampled_cpu_ns")?,
            signals: num("signals")?,
            periods: num("periods")?,
            dropped: num("dropped")?,
            wall: num("wall_ns")?,
        })
    }
}

/// Busy threads waiting for the start signal.
struct Busy {
    start: Arc<Barrier>,
    handles: Vec<std::thread::JoinHandle<u64>>,
}

impl Busy {
    /// Spawns `threads` threads that will each burn `cpu_total / threads`.
    fn spawn(threads: usize, cpu_total: u64) -> Self {
        let start = Arc::new(Barrier::new(threads + 1));
        let handles = (0..threads)
            .map(|i| {
                let start = Arc::clone(&start);
                std::thread::Builder::new()
                    .name(format!("busy-{i}"))
                    .spawn(move || {
                        start.wait();
                        spin_for_cpu(cpu_total / threads as u64)
                    })
                    .expect("spawn busy thread")
            })
            .collect();
        Self { start, handles }
    }

    /// Releases the threads and waits for them; returns (their CPU, wall).
    fn run(self) -> (u64, u64) {
        let t = Instant::now();
        self.start.wait();
        let cpu = self.handles.into_iter().map(|h| h.join().expect("busy thread")).sum();
        (cpu, t.elapsed().as_nanos() as u64)
    }
}

fn run_lowprof(hz: u32, threads: usize, cpu_total: u64) -> Row {
    let busy = Busy::spawn(threads, cpu_total);
    let stats0 = lowprof_sampler::stats();
    let profiler = lowprof::Profiler::builder()
        .heap(false)
        .cpu_hz(hz)
        .start()
        .expect("lowprof::Profiler::start");
    let cpu0 = process_cpu();
    let (busy_cpu, wall) = busy.run();
    let cpu1 = process_cpu();
    let report = profiler.stop().expect("lowprof::Profiler::stop");
    let stats1 = lowprof_sampler::stats();
    let profile = report.cpu.expect("a CPU profile");
    let sampled = profile.sample_type_index("cpu").map(|i| profile.total(i)).unwrap_or(0);
    let periods = profile.sample_type_index("samples").map(|i| profile.total(i)).unwrap_or(0);
    Row {
        profiler: "lowprof".into(),
        hz,
        threads,
        process_cpu: cpu1 - cpu0,
        busy_cpu,
        sampled_cpu: sampled.max(0) as u64,
        signals: stats1.samples - stats0.samples,
        periods: periods.max(0) as u64,
        dropped: stats1.dropped - stats0.dropped,
        wall,
    }
}

fn run_pprof(hz: u32, threads: usize, cpu_total: u64) -> Row {
    let busy = Busy::spawn(threads, cpu_total);
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(hz as i32)
        .build()
        .expect("pprof::ProfilerGuard");
    let cpu0 = process_cpu();
    let (busy_cpu, wall) = busy.run();
    let cpu1 = process_cpu();
    let report = guard.report().build_unresolved().expect("pprof-rs report");
    drop(guard);
    let samples: u64 = report.data.values().map(|&c| c.max(0) as u64).sum();
    // pprof-rs's timer interval in whole microseconds (src/timer.rs).
    let period = (1_000_000 / u64::from(hz)) * 1000;
    Row {
        profiler: PPROF_NAME.into(),
        hz,
        threads,
        process_cpu: cpu1 - cpu0,
        busy_cpu,
        sampled_cpu: samples * period,
        signals: samples,
        periods: samples,
        dropped: 0,
        wall,
    }
}

struct Spec {
    rates: Vec<u32>,
    threads: Vec<usize>,
    cpu_seconds: f64,
}

impl Spec {
    fn encode(&self) -> String {
        let list = |v: Vec<String>| v.join(",");
        format!(
            "{};{};{}",
            list(self.rates.iter().map(u32::to_string).collect()),
            list(self.threads.iter().map(usize::to_string).collect()),
            self.cpu_seconds
        )
    }

    fn decode(s: &str) -> Spec {
        let mut parts = s.split(';');
        let mut next = || parts.next().expect("capture spec: rates;threads;seconds");
        let rates = next().split(',').map(|x| x.parse().expect("rate")).collect();
        let threads = next().split(',').map(|x| x.parse().expect("threads")).collect();
        let cpu_seconds = next().parse().expect("seconds");
        Spec { rates, threads, cpu_seconds }
    }

    fn cpu_total(&self) -> u64 {
        (self.cpu_seconds * 1e9) as u64
    }
}

/// Runs the pprof-rs rows in a child process and collects them.
fn pprof_in_child(spec: &Spec) -> Vec<Row> {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .env(CHILD_ENV, "pprof")
        .env(SPEC_ENV, spec.encode())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run the pprof-rs child");
    assert!(out.status.success(), "pprof-rs child failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout).lines().filter_map(Row::parse).collect()
}

fn print_table(rows: &[Row], spec: &Spec, judge: bool) {
    println!();
    println!(
        "Captured CPU, {:.1} CPU-s per run (sampled CPU / process CPU from getrusage):",
        spec.cpu_seconds
    );
    println!(
        "| profiler | Hz | busy threads | wall s | process CPU s | sampled CPU s | signals | \
         periods | share | busy share | dropped | budget | met? |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let (budget, met) = if r.profiler == "lowprof" {
            let met = if !judge {
                "(too short to judge)"
            } else if r.share() >= BUDGET {
                "yes"
            } else {
                "**no**"
            };
            (format!("≥ {:.0} %", BUDGET * 100.0), met)
        } else {
            (String::new(), "")
        };
        println!(
            "| {} | {} | {} | {:.2} | {:.3} | {:.3} | {} | {} | {:.1} % | {:.1} % | {} | {} | {} |",
            r.profiler,
            r.hz,
            r.threads,
            r.wall as f64 / 1e9,
            r.process_cpu as f64 / 1e9,
            r.sampled_cpu as f64 / 1e9,
            r.signals,
            r.periods,
            100.0 * r.share(),
            100.0 * r.busy_share(),
            r.dropped,
            budget,
            met
        );
    }
}

fn main() {
    if std::env::var(CHILD_ENV).as_deref() == Ok("pprof") {
        let spec = Spec::decode(&std::env::var(SPEC_ENV).expect("capture spec"));
        for &hz in &spec.rates {
            for &threads in &spec.threads {
                let row = run_pprof(hz, threads, spec.cpu_total());
                println!("{}", row.json());
            }
        }
        return;
    }
    let args = Args::parse();
    if args.list {
        println!("{GROUP}: bench");
        return;
    }
    if args.filter.as_ref().is_some_and(|f| !GROUP.contains(f.as_str())) {
        return;
    }
    let spec = if args.test {
        Spec { rates: vec![99], threads: vec![1], cpu_seconds: 0.2 }
    } else {
        Spec { rates: RATES.to_vec(), threads: THREADS.to_vec(), cpu_seconds: CPU_SECONDS }
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    if !cfg!(feature = "pprof-frame-pointer") {
        for &hz in &spec.rates {
            for &threads in &spec.threads {
                let row = run_lowprof(hz, threads, spec.cpu_total());
                eprintln!("{}", row.json());
                rows.push(row);
            }
        }
    }
    for row in pprof_in_child(&spec) {
        eprintln!("{}", row.json());
        rows.push(row);
    }
    print_table(&rows, &spec, !args.test);
    println!("({:.1} s)", started.elapsed().as_secs_f64());
    if args.test {
        println!("{GROUP}: --test run, nothing written");
        return;
    }
    let file = if cfg!(feature = "pprof-frame-pointer") {
        "results_pprof_fp.json"
    } else {
        "results.json"
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let body: Vec<String> = rows.iter().map(|r| format!("    {}", r.json())).collect();
    let json = format!(
        "{{\n  \"unix_time\": {now},\n  \"cpu_seconds\": {},\n  \"budget\": {BUDGET},\n  \
         \"rows\": [\n{}\n  ]\n}}\n",
        spec.cpu_seconds,
        body.join(",\n")
    );
    lowprof_benches::cpu::write_result(GROUP, file, &json);
}
