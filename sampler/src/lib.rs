//! # lowprof-sampler
//!
//! The CPU half of lowprof: `SIGPROF` delivered by per-thread CPU timers, a
//! handler that walks the interrupted stack by frame pointers without locks,
//! allocation or system calls, and lock-free rings that the exporter's drainer
//! thread empties.
//!
//! ```text
//!  every thread T (found in /proc/self/task)        drainer thread (SIGPROF blocked)
//!  ─────────────────────────────────────────        ──────────────────────────────────
//!  timer_create(T's CPU clock, SIGEV_THREAD_ID=T) ◄── start() / maintain(), every drain (~50 ms):
//!        │ every 1e9/hz ns of T's CPU time             scan tasks, publish stack regions,
//!        ▼                                             arm new threads, delete dead ones,
//!  SIGPROF on T ─► handler (on T, any instruction)     read thread names
//!        save errno
//!        ours? (si_code == SI_TIMER && cookie) ─no──► chain to the previous handler
//!        weight = 1 + si_overrun
//!        frames = [interrupted PC, walk(RBP/x29) within STACK_REGIONS(SP)]
//!        RINGS.push(hint = tid, [tid, weight, flags, ctx…, frames…])
//!        restore errno                        ──────► drain(): CpuSample → aggregate
//! ```
//!
//! ## Why per-thread timers
//!
//! A process-wide `setitimer(ITIMER_PROF)` is accounted per scheduler tick and
//! delivers at most one signal per tick to the whole process, so a process
//! busy on more than ~2.5 cores is under-sampled, and the signal tends to land
//! on the same few threads (Go commit 8cfd8c3db8, golang/go#35057: "20 cores in
//! `top`, 2.4 in the profile"). Each thread therefore gets its own POSIX timer
//! on its own CPU clock (`timer_create` with the raw clock id of its tid, as
//! async-profiler's ctimer does, and `SIGEV_THREAD_ID` so the signal lands on
//! that very thread). The first expiry is random in `(0, period]` so that short
//! threads are not all sampled at the same offset (Go does the same).
//! [`TimerMode::Process`] keeps `setitimer` as a fallback for kernels or
//! sandboxes without per-thread timers.
//!
//! ## Why samples are weighted by the overrun
//!
//! CPU timers are checked on the scheduler tick, so a thread receives at most
//! `CONFIG_HZ` signals per CPU-second: at 1000 Hz with `CONFIG_HZ=250` it gets
//! ~250 signals, and the kernel reports the periods that expired in between in
//! `si_overrun`. A sample therefore stands for `1 + si_overrun` periods
//! ([`lowprof_core::event::CpuSample::weight`]), which keeps the sampled CPU
//! time equal to the real one at every frequency (98.5–99.4% of `getrusage`
//! at 99 and 1000 Hz in `tests/split.rs`).
//!
//! Two limits remain, both measured in `tests/threads.rs`:
//!
//! - A tick checks only the thread it finds running, so when neighbours'
//!   wake-ups keep preempting a thread between ticks, its expiries are noticed
//!   late (seen: 30 periods). The overrun still counts them, but a thread's
//!   tail after its last signal is lost when it exits or sampling stops, so
//!   short-lived threads on a contended machine are under-sampled.
//! - A thread is found by scanning `/proc/self/task`, so it is sampled from the
//!   first [`maintain`] after it starts (there is no `pthread_create` hook).
//!   The `lowprof` profiler calls it at once when a new thread first
//!   allocates (through the allocator's new-thread hook), else at its next
//!   tick.
//!
//! ## Why the handler stays installed
//!
//! After [`stop`] a signal may still be queued (a timer that fired just before
//! it was deleted, a `kill` from outside). Restoring `SIG_DFL` would make that
//! late signal terminate the process (tikv/tikv#9217), so the handler is
//! installed once per process and never removed; while stopped it swallows
//! signals from lowprof's own timers and passes every other `SIGPROF` on to the
//! handler that was installed before lowprof, if there was one. An earlier
//! `SIG_DFL` is never invoked (that would kill the process); `SIG_IGN` is
//! honoured by returning.
//!
//! ## Async-signal-safety rules of the handler
//!
//! The handler may interrupt any instruction of any thread, including malloc,
//! a lock holder, or another handler. Everything it reaches (documented as
//! "async-signal-safe, allocation-free") therefore:
//!
//! - never allocates, never takes a lock (not even a spin lock), never blocks,
//!   never panics;
//! - makes no system call except one `gettid` per thread, cached in a
//!   thread-local;
//! - saves `errno` on entry and restores it on every exit path (a chained
//!   handler may change it);
//! - reads stack memory only inside the stack region that holds the interrupted
//!   stack pointer ([`lowprof_core::bounds::STACK_REGIONS`], which [`start`]
//!   and [`maintain`] publish from `/proc/self/maps` *before* a new thread's
//!   timer is armed);
//! - drops a sample it cannot queue and counts it ([`Stats::dropped`]).
//!
//! `SIGPROF` is not re-entered: without `SA_NODEFER` the kernel blocks it while
//! the handler runs. The handler runs on the alternate signal stack if the
//! thread has one (`SA_ONSTACK`); it needs about 1.5 KiB of it.
//!
//! ## Caveat: thread-locals in a `cdylib`
//!
//! The thread id is cached in a `const`-initialised, `Drop`-free thread-local.
//! In an executable or a statically linked library that is a plain
//! `fs:`/`tpidr_el0`-relative load. When this crate is linked into a shared
//! object that is `dlopen`ed (a `cdylib`), the TLS model may be
//! global-dynamic, and the first access on a thread goes through
//! `__tls_get_addr`, which may allocate that thread's TLS block with `malloc`
//! — not async-signal-safe if the signal interrupted `malloc`. Load such a
//! library at startup (or link it) when CPU sampling is on.
//!
//! ## Platforms
//!
//! Linux on x86_64 and aarch64. Elsewhere the crate builds, [`start`] returns
//! [`Error::Unsupported`] and the other functions do nothing.
//!
//! ## Usage (what the exporter does)
//!
//! ```no_run
//! use lowprof_sampler::{Config, RECORD_WORDS};
//! lowprof_sampler::start(Config::default())?;
//! std::thread::spawn(|| {
//!     lowprof_sampler::block_sigprof_on_current_thread().ok();
//!     let mut scratch = vec![0u64; RECORD_WORDS];
//!     while lowprof_sampler::is_running() {
//!         lowprof_sampler::maintain();
//!         lowprof_sampler::drain(&mut scratch, |sample| {
//!             let _ = (sample.thread, sample.weight, sample.frames);
//!         });
//!         std::thread::sleep(std::time::Duration::from_millis(10));
//!     }
//! });
//! # Ok::<(), lowprof_sampler::Error>(())
//! ```

#![deny(clippy::undocumented_unsafe_blocks)]

mod error;
#[cfg(target_os = "linux")]
mod handler;
mod period;
#[cfg(target_os = "linux")]
mod regions;
#[cfg(target_os = "linux")]
mod session;
#[cfg(target_os = "linux")]
mod threads;
#[cfg(target_os = "linux")]
mod timer;

use lowprof_core::counters::Counter;
use lowprof_core::event::{CPU_HEADER, CpuSample, TAG_CPU};
use lowprof_core::ring::RingSet;
use lowprof_core::stack::MAX_FRAMES;

pub use error::Error;

/// Lowest accepted sampling frequency.
pub const MIN_HZ: u32 = 1;
/// Highest accepted sampling frequency. The kernel tick caps the signal rate
/// anyway (usually 250 or 1000 per CPU-second); above it, samples only grow
/// heavier.
pub const MAX_HZ: u32 = 1000;
/// The default frequency: 99 Hz, off the beat of periodic 100 Hz work.
pub const DEFAULT_HZ: u32 = 99;

/// Words a [`drain`] scratch buffer must hold: the header and the deepest
/// stack one record carries.
pub const RECORD_WORDS: usize = CPU_HEADER + MAX_FRAMES;

/// Rings in [`RINGS`]: enough that concurrent handlers on a many-core machine
/// rarely find their ring claimed (a claimed ring is skipped, never waited
/// on), few enough that a drain pass stays short.
const RING_COUNT: usize = 16;
/// Words per ring (128 KiB). A typical record is 20–60 words, so one ring
/// buffers a few hundred samples and the set ~5 000: at 1000 Hz on 32 busy
/// threads that is ~150 ms of samples, 3× the drainer's default 50 ms period
/// (at 99 Hz, over a minute).
/// The 2 MiB live in `.bss` and only the pages actually written cost memory.
const RING_WORDS: usize = 16 * 1024;

const _: () = assert!(RECORD_WORDS <= RingSet::<RING_COUNT, RING_WORDS>::MAX_PAYLOAD);

/// The CPU sample rings: pushed by the handler on any thread, drained by
/// [`drain`].
pub(crate) static RINGS: RingSet<RING_COUNT, RING_WORDS> = RingSet::new();

/// How the per-thread CPU time is turned into signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimerMode {
    /// One POSIX timer per thread on that thread's CPU clock, delivering
    /// `SIGPROF` to that thread (`timer_create` + `SIGEV_THREAD_ID`). Accurate
    /// on any number of cores. The default.
    #[default]
    PerThread,
    /// One process-wide `setitimer(ITIMER_PROF)`. Under-samples processes
    /// busy on more than ~2.5 cores; use it only where per-thread timers are
    /// unavailable. Every signal weighs 1.
    Process,
}

/// What [`start`] arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Samples per CPU-second of each thread, [`MIN_HZ`]`..=`[`MAX_HZ`].
    pub hz: u32,
    /// Per-thread timers or the process-wide fallback.
    pub mode: TimerMode,
}

impl Default for Config {
    fn default() -> Self {
        Self { hz: DEFAULT_HZ, mode: TimerMode::PerThread }
    }
}

/// Counters since the process started (they survive [`stop`]/[`start`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// `SIGPROF`s the handler received, ours or not.
    pub signals: u64,
    /// Samples queued for [`drain`].
    pub samples: u64,
    /// Samples lost because every ring was full or busy.
    pub dropped: u64,
    /// Timer periods those lost samples stood for (each `1 + overrun`).
    pub dropped_periods: u64,
    /// CPU nanoseconds those lost samples stood for (periods × the period
    /// each was taken at).
    pub dropped_nanos: u64,
    /// `SIGPROF`s that did not come from lowprof's timers (passed on to the
    /// previous handler, or ignored if there was none).
    pub foreign: u64,
    /// Threads that have a per-thread timer right now.
    pub threads_timed: usize,
    /// `timer_create`/`timer_settime`/`timer_delete` failures (mostly threads
    /// that exited between the scan and the call).
    pub timer_errors: u64,
    /// Walks whose stack pointer was in no published stack region (the walk
    /// then covered one page; a refresh of the table follows).
    pub bounds_misses: u64,
    /// Samples whose stack was deeper than [`lowprof_core::stack::MAX_FRAMES`]
    /// (the root end was cut).
    pub truncated: u64,
    /// Timer periods carried by `si_overrun` (expirations that did not get a
    /// signal of their own), summed.
    pub overrun_periods: u64,
}

/// Counters written by the handler and the session.
pub(crate) struct Counters {
    pub(crate) signals: Counter,
    pub(crate) samples: Counter,
    pub(crate) foreign: Counter,
    pub(crate) truncated: Counter,
    pub(crate) overrun_periods: Counter,
    pub(crate) timer_errors: Counter,
    pub(crate) dropped_periods: Counter,
    pub(crate) dropped_nanos: Counter,
}

pub(crate) static COUNTERS: Counters = Counters {
    signals: Counter::new(),
    samples: Counter::new(),
    foreign: Counter::new(),
    truncated: Counter::new(),
    overrun_periods: Counter::new(),
    timer_errors: Counter::new(),
    dropped_periods: Counter::new(),
    dropped_nanos: Counter::new(),
};

/// The sampling period for `hz`: `1e9 / hz` nanoseconds (0 for `hz == 0`).
pub fn period_nanos(hz: u32) -> i64 {
    if hz == 0 { 0 } else { 1_000_000_000 / i64::from(hz) }
}

fn validate(config: &Config) -> Result<(), Error> {
    if (MIN_HZ..=MAX_HZ).contains(&config.hz) {
        Ok(())
    } else {
        Err(Error::InvalidFrequency { hz: config.hz })
    }
}

/// Starts CPU sampling for every thread of the process.
///
/// Callable from any thread. Validates `config.hz`, installs the `SIGPROF`
/// handler (once per process; it is never removed), publishes the stack
/// regions, then arms a timer for every current thread ([`TimerMode::PerThread`])
/// or the process-wide `ITIMER_PROF` ([`TimerMode::Process`]). Threads created
/// later are picked up by [`maintain`].
///
/// # Errors
///
/// [`Error::InvalidFrequency`] outside `1..=1000` Hz (callers map 0 to "off"
/// themselves), [`Error::AlreadyRunning`], [`Error::Unsupported`] off Linux
/// x86_64/aarch64, [`Error::Os`] if the handler or every timer could not be
/// installed (nothing is left armed then).
pub fn start(config: Config) -> Result<(), Error> {
    validate(&config)?;
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        session::start(config)
    }
    #[cfg(all(target_os = "linux", not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
    {
        Err(Error::Unsupported(
            "on this CPU architecture (lowprof-sampler reads registers on x86_64 and aarch64)",
        ))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(Error::Unsupported("on this operating system (lowprof-sampler needs Linux)"))
    }
}

/// Stops CPU sampling: deletes every timer (or disarms `ITIMER_PROF`).
///
/// The handler stays installed as a no-op for lowprof's own late signals and
/// keeps chaining other `SIGPROF`s to the previous handler. Samples already
/// queued can still be [`drain`]ed. Does nothing if not running.
pub fn stop() {
    #[cfg(target_os = "linux")]
    session::stop();
}

/// Housekeeping for the drainer, every drain (~50 ms) while running: arms timers
/// for new threads (after republishing the stack regions, so a new thread's
/// stack is known before its first signal), deletes timers of exited threads,
/// republishes the regions when walks missed them (at most every 100 ms), and
/// reads new threads' names. Does nothing if not running.
pub fn maintain() {
    #[cfg(target_os = "linux")]
    session::maintain();
}

/// Pops every CPU sample queued when the call began, oldest first per ring,
/// and hands each to `f`. Returns how many were handed over.
///
/// `scratch` must hold [`RECORD_WORDS`] words; with less, nothing is popped
/// (and nothing is lost) and 0 is returned. Also returns 0 if another thread
/// is draining right now.
pub fn drain(scratch: &mut [u64], mut f: impl FnMut(CpuSample<'_>)) -> usize {
    if scratch.len() < RECORD_WORDS {
        return 0;
    }
    let mut delivered = 0usize;
    let _ = RINGS.drain(scratch, |record| {
        if record.tag == TAG_CPU {
            if let Some(sample) = CpuSample::decode(record.words) {
                delivered += 1;
                f(sample);
            }
        }
    });
    delivered
}

/// The name of thread `tid` (its `/proc/self/task/<tid>/comm`), as read by
/// [`start`]/[`maintain`] off the hot path, or on demand if the thread is
/// alive but was not seen yet. Kept after the thread exits, until
/// [`forget_exited_threads`].
pub fn thread_name(tid: u64) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        threads::name(tid)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = tid;
        None
    }
}

/// Forgets the names of threads that have exited (call it after their
/// samples have been drained and aggregated).
pub fn forget_exited_threads() {
    #[cfg(target_os = "linux")]
    threads::forget_exited();
}

/// Counters since the process started.
pub fn stats() -> Stats {
    let dropped = RINGS.dropped();
    #[cfg(target_os = "linux")]
    let (threads_timed, bounds_misses) =
        (session::threads_timed(), lowprof_core::bounds::STACK_REGIONS.misses());
    #[cfg(not(target_os = "linux"))]
    let (threads_timed, bounds_misses) = (0, 0);
    Stats {
        signals: COUNTERS.signals.get(),
        samples: COUNTERS.samples.get(),
        dropped,
        dropped_periods: COUNTERS.dropped_periods.get(),
        dropped_nanos: COUNTERS.dropped_nanos.get(),
        foreign: COUNTERS.foreign.get(),
        threads_timed,
        timer_errors: COUNTERS.timer_errors.get(),
        bounds_misses,
        truncated: COUNTERS.truncated.get(),
        overrun_periods: COUNTERS.overrun_periods.get(),
    }
}

/// Whether sampling is running (between a successful [`start`] and [`stop`]).
pub fn is_running() -> bool {
    #[cfg(target_os = "linux")]
    {
        handler::is_active()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// Blocks `SIGPROF` on the calling thread (`pthread_sigmask`) and excludes the
/// thread from sampling: the drainer calls it first, so that it is never
/// interrupted by the handler it is draining for, and gets no timer.
/// Threads the caller spawns afterwards inherit the blocked mask.
///
/// # Errors
///
/// [`Error::Os`] if `pthread_sigmask` fails.
pub fn block_sigprof_on_current_thread() -> Result<(), Error> {
    #[cfg(unix)]
    {
        // SAFETY: `set` is a local sigset_t initialised by sigemptyset before
        // use; pthread_sigmask only reads it.
        let rc = unsafe {
            let mut set: libc::sigset_t = core::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPROF);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, core::ptr::null_mut())
        };
        if rc != 0 {
            return Err(Error::Os { call: "pthread_sigmask", errno: rc });
        }
    }
    #[cfg(target_os = "linux")]
    session::exclude_current_thread();
    Ok(())
}

/// The value lowprof's timers carry in `sigev_value` now (and the handler
/// checks in `si_value`): the address of the static slot that holds the
/// current timer period, in this copy of the crate, so two copies linked
/// into one program never take each other's signals.
///
/// Tests and benchmarks may forge a sample with it: `rt_tgsigqueueinfo` of a
/// `SIGPROF` whose `si_code` is `SI_TIMER` and whose `si_value` is this cookie
/// is handled exactly like a timer signal (weighted with the current period).
pub fn timer_cookie() -> usize {
    period::current_cookie()
}

/// Queues signal `sig` to thread `tid` of process `pid` (this process) with a
/// POSIX timer's `siginfo` (`si_code = SI_TIMER`, `si_overrun = overrun`,
/// `si_value = value`), through `rt_tgsigqueueinfo`. With `SIGPROF` and
/// [`timer_cookie`] as the value, lowprof's handler takes it for one of its
/// timers' signals: for tests and benchmarks that need samples on demand.
/// Sent to the calling thread, the handler has run when this returns.
///
/// # Errors
///
/// The system call's error (`EINVAL`, `ESRCH`, `EPERM`).
#[cfg(target_os = "linux")]
#[doc(hidden)]
#[inline]
pub fn queue_timer_signal(
    pid: i32,
    tid: i32,
    sig: i32,
    value: usize,
    overrun: i32,
) -> std::io::Result<()> {
    /// `siginfo_t` as the kernel's `_timer` member lays it out (64-bit
    /// Linux): the three common ints, padding, `si_tid`, `si_overrun`,
    /// `si_sigval`; 128 bytes in all.
    #[repr(C, align(8))]
    struct TimerSiginfo {
        signo: i32,
        errno: i32,
        code: i32,
        pad: i32,
        timerid: i32,
        overrun: i32,
        value: usize,
        rest: [u64; 12],
    }
    const _: () = assert!(core::mem::size_of::<TimerSiginfo>() == 128);
    let info = TimerSiginfo {
        signo: sig,
        errno: 0,
        code: libc::SI_TIMER,
        pad: 0,
        timerid: 0,
        overrun,
        value,
        rest: [0; 12],
    };
    // SAFETY: rt_tgsigqueueinfo reads 128 bytes of `info`, a live local of
    // that size; the kernel accepts any si_code for a thread of this process.
    let rc = unsafe {
        libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, sig, &info as *const TimerSiginfo)
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// The timer period in nanoseconds that new samples are taken at (0 before
/// the first [`start`]).
pub fn current_period_nanos() -> u64 {
    period::current_period()
}

/// Changes the sampling rate of a running session: every thread's timer is
/// re-created at `hz` (each with a fresh random phase, so no CPU time is
/// systematically lost or double-counted). Samples already taken keep the
/// period they were taken at. Cold path (one `timer_create` per thread):
/// call it from the drainer, at most about once a second.
///
/// # Errors
///
/// [`Error::InvalidFrequency`] outside `1..=1000` Hz. Does nothing if not
/// running.
pub fn set_hz(hz: u32) -> Result<(), Error> {
    validate(&Config { hz, mode: TimerMode::PerThread })?;
    #[cfg(target_os = "linux")]
    session::set_hz(hz);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_bounds() {
        for hz in [0, 1001, u32::MAX] {
            assert_eq!(
                validate(&Config { hz, ..Config::default() }),
                Err(Error::InvalidFrequency { hz })
            );
        }
        for hz in [1, 99, 1000] {
            assert_eq!(validate(&Config { hz, ..Config::default() }), Ok(()));
        }
        assert_eq!(period_nanos(99), 10_101_010);
        assert_eq!(period_nanos(1000), 1_000_000);
        assert_eq!(period_nanos(0), 0);
        assert_eq!(Config::default(), Config { hz: 99, mode: TimerMode::PerThread });
    }

    #[test]
    fn small_scratch_pops_nothing() {
        let mut small = [0u64; RECORD_WORDS - 1];
        assert_eq!(drain(&mut small, |_| {}), 0);
    }
}
