//! Shared pieces of lowprof's CPU-sampling benchmarks (`benches/cpu_*.rs`):
//!
//! - [`DeepThread`]: a thread that sits [`DEPTH`] frames deep (a recursion of
//!   `#[inline(never)]` functions) and runs jobs at the bottom, so that every
//!   signal it sends itself interrupts a deep stack;
//! - [`Signal`]: one way of sending a `SIGPROF` (or another signal) to the
//!   calling thread — a forged lowprof timer signal (`rt_tgsigqueueinfo` with
//!   `si_code = SI_TIMER` and lowprof's cookie) or a plain `tgkill`;
//! - [`Action`]: read, swap and restore a signal's `sigaction`, and an empty
//!   `SA_SIGINFO` handler that only counts ([`empty_calls`]);
//! - [`workload`]: the deterministic CPU-bound workload of `cpu_overhead*`;
//!   [`spin_for_cpu`]: the busy loop of `cpu_capture`;
//! - clocks ([`process_cpu`], [`thread_cpu`]), [`median`], [`results_dir`].
//!
//! Signals, handlers and the storm are in `signal.rs`; the workloads and the
//! interleaved overhead measurement in `workload.rs`.
//!
//! Everything here is benchmark support, not product code.

// Benchmark support: a broken setup (a failed syscall, a dead worker)
// should stop the benchmark loudly rather than measure something else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod signal;
mod workload;

pub use signal::*;
pub use workload::*;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Frames between the thread's entry and the code that sends the signals
/// (the recursion alone; the walk sees a few more).
pub const DEPTH: u32 = 64;

/// Signals sent between two drains of lowprof's rings in the handler
/// benchmarks. The handler pushes a thread's samples into the ring its tid
/// hashes to (~200 deep records fit in one); in production the drainer
/// empties it every 20 ms, i.e. every ≤ 5 samples per thread at the kernel's
/// tick-capped rate. Draining every 128 signals keeps every push on that
/// first ring, as in production.
pub const CHUNK: u64 = 128;

type Job = Box<dyn FnOnce() + Send>;

/// A thread [`DEPTH`] frames deep that runs jobs at the bottom of its stack.
pub struct DeepThread {
    tx: Option<SyncSender<Job>>,
    handle: Option<JoinHandle<()>>,
    tid: u64,
}

/// One frame of the recursion: not inlined, not a tail call (the result is
/// used after the call), so every level keeps its own frame and frame
/// pointer.
#[inline(never)]
fn descend(depth: u32, rx: &std::sync::mpsc::Receiver<Job>) -> u32 {
    if depth == 0 {
        while let Ok(job) = rx.recv() {
            job();
        }
        return 0;
    }
    let r = descend(black_box(depth - 1), rx);
    black_box(r) + 1
}

impl DeepThread {
    /// Spawns the thread (named `name`) and waits until it is at the bottom.
    pub fn spawn(name: &str) -> Self {
        let (tx, rx) = sync_channel::<Job>(0);
        let (tid_tx, tid_rx) = sync_channel::<u64>(1);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                tid_tx.send(gettid()).unwrap();
                black_box(descend(DEPTH, &rx));
            })
            .expect("spawn the deep thread");
        let tid = tid_rx.recv().expect("deep thread started");
        Self { tx: Some(tx), handle: Some(handle), tid }
    }

    /// The thread's kernel id.
    pub fn tid(&self) -> u64 {
        self.tid
    }

    /// Runs `f` on the thread, at the bottom of its deep stack, and returns
    /// its result.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (rtx, rrx) = sync_channel::<R>(1);
        let job: Job = Box::new(move || {
            let _ = rtx.send(f());
        });
        self.tx.as_ref().expect("deep thread running").send(job).expect("deep thread alive");
        rrx.recv().expect("job finished")
    }
}

impl Drop for DeepThread {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The calling thread's kernel id.
pub fn gettid() -> u64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u64 }
}

/// Median of `v` (sorts it); 0 for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn clock_nanos(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into a live local.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the calling thread, in nanoseconds.
pub fn thread_cpu() -> u64 {
    clock_nanos(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of thread `tid` of this process, in nanoseconds (its kernel
/// CPU clock id `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`, the way
/// lowprof's timers name another thread's clock); `None` once it exited.
pub fn thread_cpu_of(tid: u64) -> Option<u64> {
    let clock = ((!(tid as i32)) << 3) | 4 | 2;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into a live local; an invalid clock id
    // (an exited thread) is reported as an error, not undefined behaviour.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The threads of this process: (tid, name from `/proc/self/task/<tid>/comm`).
pub fn threads() -> Vec<(u64, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    let mut out: Vec<(u64, String)> = dir
        .filter_map(|e| {
            let tid: u64 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            Some((tid, comm.trim_end().to_string()))
        })
        .collect();
    out.sort();
    out
}

/// CPU time (user + system) of the whole process, from
/// `getrusage(RUSAGE_SELF)` (microsecond resolution), in nanoseconds.
pub fn process_cpu() -> u64 {
    // SAFETY: getrusage writes into a zeroed local.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) }, 0);
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Where results that are not criterion's own go: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else `target/criterion` next to the bench
/// binary (`target/release/deps/<bench>` → `target/criterion`).
pub fn results_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent()?.parent().map(|t| t.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Writes `json` to `<results_dir>/<group>/<file>` (creating the folder) and
/// says where on stderr.
pub fn write_result(group: &str, file: &str, json: &str) {
    let dir = results_dir().join(group);
    let path = dir.join(file);
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, json)) {
        Ok(()) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

/// How a bench binary was invoked: criterion's quick `--test` mode, a
/// `--list`, or a name filter (the first argument not starting with `-`).
pub struct Args {
    /// `--test` was given: run everything once, quickly, print only.
    pub test: bool,
    /// `--list` was given: run nothing.
    pub list: bool,
    /// The name filter, if any.
    pub filter: Option<String>,
}

/// Criterion's command-line options that take a value.
const OPTIONS_WITH_VALUE: [&str; 17] = [
    "--save-baseline",
    "-s",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--profile-time",
    "--output-format",
    "--color",
    "-c",
    "--format",
];

impl Args {
    /// Parses `std::env::args()` the way criterion does, for the parts the
    /// extra (non-criterion) measurements need.
    pub fn parse() -> Self {
        let mut args = Args { test: false, list: false, filter: None };
        let mut skip_value = false;
        for a in std::env::args().skip(1) {
            if skip_value {
                skip_value = false;
                continue;
            }
            match a.as_str() {
                "--test" => args.test = true,
                "--list" => args.list = true,
                s if OPTIONS_WITH_VALUE.contains(&s) => skip_value = true,
                s if !s.starts_with('-') && args.filter.is_none() => args.filter = Some(a),
                _ => {}
            }
        }
        args
    }

    /// Whether an extra measurement called `name` should run: not in
    /// `--test` or `--list` mode, and `name` contains the filter if one was
    /// given.
    pub fn run_extra(&self, name: &str) -> bool {
        !self.test && !self.list && self.filter.as_ref().is_none_or(|f| name.contains(f.as_str()))
    }
}

/// The `q` quantile of `v` (0 ≤ q ≤ 1), linear between order statistics;
/// 0 for an empty slice.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let x = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (i, f) = (x.floor() as usize, x.fract());
    let next = s.get(i + 1).copied().unwrap_or(s[i]);
    s[i] + f * (next - s[i])
}
