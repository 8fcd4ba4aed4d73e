//! Sending signals to the calling thread ([`Signal`]), swapping a signal's
//! action ([`Action`]) and the empty handler, the interleaved "same storm"
//! of the handler benchmarks, and the bare per-thread CPU timer
//! ([`BareTimer`]) that is the overhead benchmark's floor.

// Benchmark support: a broken setup (a failed syscall, a dead worker)
// should stop the benchmark loudly rather than measure something else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{CHUNK, DeepThread, gettid, median};

/// The `si_overrun` of a [`Signal::ForgedTimer`]: lowprof's samples of
/// forged signals weigh `1 + FORGED_OVERRUN`, its real timer's (almost
/// always) 1.
pub const FORGED_OVERRUN: i32 = 41;

/// How a signal is sent to the calling thread. Either way the kernel
/// delivers it on the way back from the system call, so the handler has run
/// when [`Signal::send`] returns.
#[derive(Clone, Copy)]
pub enum Signal {
    /// `rt_tgsigqueueinfo(pid, tid, sig, &info)` with `si_code = SI_TIMER`,
    /// `si_overrun =` [`FORGED_OVERRUN`] and `si_value = value`: with
    /// `sig = SIGPROF` and `value = lowprof_sampler::timer_cookie()`
    /// lowprof's handler takes it for one of its timers' signals and samples
    /// (weight `1 + FORGED_OVERRUN`, which tells these samples apart from
    /// the real timer's).
    ForgedTimer {
        /// Signal number.
        sig: i32,
        /// `si_value.sival_ptr`.
        value: usize,
    },
    /// `tgkill(pid, tid, sig)`: `si_code = SI_TKILL`, what `kill`-style
    /// senders produce. pprof-rs's handler does not look at `si_code`, so it
    /// samples on it as on an `ITIMER_PROF` signal.
    Tkill {
        /// Signal number.
        sig: i32,
    },
}

impl Signal {
    /// Sends `n` signals to the calling thread, one system call each, and
    /// returns the time taken. Panics if a call fails.
    #[inline(never)]
    pub fn send(self, n: u64) -> Duration {
        // SAFETY: getpid/gettid have no arguments and cannot fail.
        let (pid, tid) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid)) };
        match self {
            Signal::ForgedTimer { sig, value } => {
                let t = Instant::now();
                for _ in 0..n {
                    lowprof_sampler::queue_timer_signal(
                        pid,
                        tid as i32,
                        sig,
                        value,
                        FORGED_OVERRUN,
                    )
                    .expect("rt_tgsigqueueinfo");
                }
                t.elapsed()
            }
            Signal::Tkill { sig } => {
                let t = Instant::now();
                for _ in 0..n {
                    // SAFETY: tgkill(pid, tid, sig) takes three integers.
                    let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
                    assert_eq!(rc, 0, "tgkill: {}", std::io::Error::last_os_error());
                }
                t.elapsed()
            }
        }
    }
}

static EMPTY_CALLS: AtomicU64 = AtomicU64::new(0);

/// The empty handler: counts the call (one relaxed atomic add, so that a
/// benchmark can check the signals were delivered to it) and returns.
/// Async-signal-safe, allocation-free.
pub extern "C" fn empty_handler(
    _sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    _uc: *mut libc::c_void,
) {
    EMPTY_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Calls of [`empty_handler`] so far.
pub fn empty_calls() -> u64 {
    EMPTY_CALLS.load(Ordering::Relaxed)
}

/// A signal disposition (`struct sigaction`), to read, copy and reinstall.
#[derive(Clone, Copy)]
pub struct Action(libc::sigaction);

impl Action {
    /// The action installed for `sig` now.
    pub fn current(sig: i32) -> Self {
        // SAFETY: sigaction is plain C data, all-zero is valid; sigaction()
        // with a null new action only writes the old one into the local.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(sig, std::ptr::null(), &mut old), 0);
            Self(old)
        }
    }

    /// [`empty_handler`] with `SA_SIGINFO | SA_RESTART` plus `flags`, and an
    /// empty mask.
    pub fn empty(flags: i32) -> Self {
        // SAFETY: all-zero sigaction is valid, then filled in; sigemptyset
        // writes the local mask.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = empty_handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | flags;
            libc::sigemptyset(&mut sa.sa_mask);
            Self(sa)
        }
    }

    /// This action with its handler replaced by [`empty_handler`]: same
    /// flags (`SA_ONSTACK` decides which stack the kernel builds the signal
    /// frame on), same mask. The honest floor for the handler it replaces.
    pub fn with_empty_handler(self) -> Self {
        let mut sa = self.0;
        sa.sa_sigaction = empty_handler as *const () as usize;
        Self(sa)
    }

    /// The handler's address.
    pub fn handler(&self) -> usize {
        self.0.sa_sigaction
    }

    /// The flags.
    pub fn flags(&self) -> i32 {
        self.0.sa_flags
    }

    /// Installs this action for `sig`.
    pub fn install(&self, sig: i32) {
        // SAFETY: installs a copy of an action read from the kernel or built
        // above, for a valid signal number; handlers it names are
        // async-signal-safe `extern "C"` functions that live as long as the
        // process (this crate's or a profiler's static code).
        let rc = unsafe { libc::sigaction(sig, &self.0, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "sigaction({sig}): {}", std::io::Error::last_os_error());
    }
}

/// Sends `iters` signals the way `signal` says, in chunks of [`CHUNK`],
/// calling `between` after each chunk with the clock stopped (the handler
/// benchmarks drain lowprof's rings there). Returns the time spent sending,
/// i.e. system call + delivery + handler + `sigreturn`, `iters` times.
pub fn storm(signal: Signal, iters: u64, mut between: impl FnMut()) -> Duration {
    let mut spent = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        spent += signal.send(n);
        left -= n;
        between();
    }
    spent
}

/// One variant of an interleaved storm: a name, the action to install
/// for `sig` before its batches, and how to send.
pub struct StormVariant {
    /// Name in the printed table and the JSON.
    pub name: &'static str,
    /// Signal the action is installed for.
    pub sig: i32,
    /// Installed before each of this variant's batches.
    pub action: Action,
    /// How the signals are sent.
    pub signal: Signal,
    /// Whether the signalled thread has the bench trace context set
    /// ([`crate::set_bench_context`]) while its signals arrive.
    pub context: bool,
}

/// Per-signal times of each variant's batches.
pub struct StormResult {
    /// Variant name.
    pub name: &'static str,
    /// ns per signal of every batch.
    pub batches: Vec<f64>,
}

impl StormResult {
    /// Median batch, ns per signal.
    pub fn median(&self) -> f64 {
        median(&mut self.batches.clone())
    }

    /// Fastest batch, ns per signal.
    pub fn best(&self) -> f64 {
        self.batches.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// The "same storm" comparison: `total` signals per variant, sent on `deep`
/// in batches of `batch`, the variants' batches interleaved (the first
/// variant rotating each round) so that all of them see the same machine
/// load. `between` runs after every [`CHUNK`] signals, clock stopped.
pub fn interleaved_storm(
    deep: &DeepThread,
    variants: &[StormVariant],
    total: u64,
    batch: u64,
    between: fn(),
) -> Vec<StormResult> {
    let mut results: Vec<StormResult> =
        variants.iter().map(|v| StormResult { name: v.name, batches: Vec::new() }).collect();
    let rounds = total.div_ceil(batch);
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (k + round as usize) % variants.len();
            let v = &variants[i];
            v.action.install(v.sig);
            let (signal, context) = (v.signal, v.context);
            let spent = deep.run(move || {
                let _ctx = context.then(crate::set_bench_context);
                storm(signal, batch, between)
            });
            results[i].batches.push(spent.as_nanos() as f64 / batch as f64);
        }
    }
    results
}

/// The results of [`interleaved_storm`] as a JSON object (medians, best
/// batches, batch counts), with `extra` fields (`"key": value` pairs,
/// already JSON) appended.
pub fn storm_json(results: &[StormResult], batch: u64, extra: &[(&str, String)]) -> String {
    let mut out = String::from("{\n  \"batch\": ");
    out.push_str(&batch.to_string());
    out.push_str(",\n  \"variants\": {\n");
    for (i, r) in results.iter().enumerate() {
        out.push_str(&format!(
            "    \"{}\": {{\"median_ns\": {:.1}, \"best_ns\": {:.1}, \"batches\": {}}}{}\n",
            r.name,
            r.median(),
            r.best(),
            r.batches.len(),
            if i + 1 < results.len() { "," } else { "" }
        ));
    }
    out.push_str("  }");
    for (k, v) in extra {
        out.push_str(&format!(",\n  \"{k}\": {v}"));
    }
    out.push_str("\n}\n");
    out
}

/// A bare per-thread CPU timer: `timer_create(CLOCK_THREAD_CPUTIME_ID)` of
/// the calling thread with `SIGEV_THREAD_ID` to that thread, signal `sig`,
/// every `1e9 / hz` ns of its CPU time. With [`empty_handler`] installed
/// for `sig`, it is the floor of any signal-based sampler at that rate: the
/// kernel's timer checks, signal delivery and `sigreturn`, no sampling.
/// Deleted on drop.
pub struct BareTimer(libc::timer_t);

impl BareTimer {
    /// Arms the timer on the calling thread's CPU clock.
    pub fn start(sig: i32, hz: u32) -> Self {
        // SAFETY: sigevent is plain C data, all-zero is a valid start; the
        // fields are then set one by one (libc keeps its padding private).
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_signo = sig;
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_notify_thread_id = gettid() as i32;
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: timer_create with pointers to live locals.
        let rc = unsafe { libc::timer_create(libc::CLOCK_THREAD_CPUTIME_ID, &mut sev, &mut id) };
        assert_eq!(rc, 0, "timer_create: {}", std::io::Error::last_os_error());
        let period = 1_000_000_000 / i64::from(hz.max(1));
        let ts = libc::timespec { tv_sec: period / 1_000_000_000, tv_nsec: period % 1_000_000_000 };
        let spec = libc::itimerspec { it_interval: ts, it_value: ts };
        // SAFETY: arms the timer just created; `spec` is a live local.
        let rc = unsafe { libc::timer_settime(id, 0, &spec, std::ptr::null_mut()) };
        assert_eq!(rc, 0, "timer_settime: {}", std::io::Error::last_os_error());
        Self(id)
    }
}

impl Drop for BareTimer {
    fn drop(&mut self) {
        // SAFETY: deletes the timer this value owns, once.
        unsafe { libc::timer_delete(self.0) };
    }
}
