//! The handler preserves `errno`.
//!
//! A worker loops on `close(-1)` (which fails with `EBADF`), does a few
//! microseconds of user-space work, then checks `errno` — under a 1000 Hz
//! timer plus a stream of `SIGPROF`s sent at it from the test thread, one at
//! a time (a second one sent while one is pending would merge with it),
//! alternating forged lowprof timer signals (the sampling path; forged with
//! a distinctive overrun, so that their samples can be told from the real
//! timer's) and plain `tgkill`s (the chaining path). The handler installed before lowprof
//! deliberately sets `errno` to `ENOTRECOVERABLE`, so a missing restore shows
//! up as a wrong `errno` in the worker: with the restore removed from
//! `on_sigprof`, 49 (release) and 1320 (debug) wrong values showed up in one
//! run each (checked while writing this test).

// Linux-only: the sampler does nothing elsewhere.
#![cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lowprof_sampler::Config;

static CHAINED: AtomicU64 = AtomicU64::new(0);

/// The overrun the forged signals carry: the handler weighs a timer signal
/// `1 + overrun`, so their samples (weight 1000) stand apart from the real
/// timer's (weight 1, or a few more periods when one was overrun).
const FORGED_OVERRUN: i32 = 999;
const FORGED_WEIGHT: u64 = 1 + FORGED_OVERRUN as u64;

extern "C" fn clobbering_handler(
    _sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    _uc: *mut libc::c_void,
) {
    CHAINED.fetch_add(1, Ordering::Relaxed);
    // SAFETY: this thread's errno slot.
    unsafe { *libc::__errno_location() = libc::ENOTRECOVERABLE };
}

fn install_clobbering_handler() {
    // SAFETY: a zeroed sigaction filled in before use.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = clobbering_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGPROF, &sa, std::ptr::null_mut()), 0);
    }
}

#[test]
fn errno_survives_signal_storms() {
    install_clobbering_handler();
    let collector = common::Collector::spawn();
    lowprof_sampler::start(Config { hz: 1000, ..Config::default() }).unwrap();
    let timed_before = lowprof_sampler::stats().threads_timed;
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let worker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            tid_tx.send(common::gettid() as i32).unwrap();
            let (mut calls, mut wrong) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: closing an invalid descriptor only sets errno.
                let rc = unsafe { libc::close(-1) };
                // Some user-space work between the failing call and the check
                // (as real code has), so that signals land in between.
                let mut x = std::hint::black_box(calls);
                for _ in 0..2000 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                // SAFETY: this thread's errno slot.
                let errno = unsafe { *libc::__errno_location() };
                calls += 1;
                if rc != -1 || errno != libc::EBADF {
                    wrong += 1;
                }
            }
            (calls, wrong)
        })
    };
    let tid = tid_rx.recv().unwrap();
    // The worker's stack is published (and its timer armed) by maintain().
    let waited = Instant::now();
    while lowprof_sampler::stats().threads_timed <= timed_before {
        assert!(waited.elapsed() < Duration::from_secs(30), "the worker was never timed");
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    let samples_before = lowprof_sampler::stats().samples;
    let dropped_before = lowprof_sampler::stats().dropped_periods;
    let cookie = lowprof_sampler::timer_cookie();
    let deadline = Instant::now() + Duration::from_millis(1000);
    let (mut forged, mut killed) = (0u64, 0u64);
    // One signal at a time (a second SIGPROF sent while one is pending would
    // be merged into it), alternating the two kinds.
    let wait_handled = |before: u64| {
        let t = Instant::now();
        while lowprof_sampler::stats().signals == before && t.elapsed() < Duration::from_millis(50)
        {
            std::thread::yield_now();
        }
    };
    // At least ~1 s, and on a busy machine until 300 signals were chained.
    let hard_deadline = deadline + Duration::from_secs(5);
    while (Instant::now() < deadline || CHAINED.load(Ordering::Relaxed) < 300)
        && Instant::now() < hard_deadline
    {
        let before = lowprof_sampler::stats().signals;
        if lowprof_sampler::queue_timer_signal(pid, tid, libc::SIGPROF, cookie, FORGED_OVERRUN)
            .is_ok()
        {
            forged += 1;
        }
        wait_handled(before);
        let before = lowprof_sampler::stats().signals;
        // SAFETY: tgkill to a thread of our own process.
        if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGPROF) } == 0 {
            killed += 1;
        }
        wait_handled(before);
    }
    stop.store(true, Ordering::Relaxed);
    let (calls, wrong) = worker.join().unwrap();
    lowprof_sampler::stop();
    let samples = collector.finish();
    let stats = lowprof_sampler::stats();
    let chained = CHAINED.load(Ordering::Relaxed);
    // The forged signals that reached the sampling path: a sample of their
    // weight on the worker, or their periods among the dropped ones.
    let forged_sampled =
        samples.iter().filter(|s| s.thread == tid as u64 && s.weight == FORGED_WEIGHT).count()
            as u64;
    let forged_dropped = (stats.dropped_periods - dropped_before) / FORGED_WEIGHT;
    let forged_handled = forged_sampled + forged_dropped;
    eprintln!(
        "{calls} close(-1) calls, {wrong} with a wrong errno; sent {forged} forged + {killed} tgkill; \
         chained {chained}; {} samples drained, {forged_sampled} of them forged, \
         {forged_dropped} forged dropped; {stats:?}",
        samples.len()
    );
    assert_eq!(wrong, 0, "errno was changed under the worker's feet");
    assert!(calls > 5_000, "the worker ran: {calls}");
    assert!(chained >= 100, "the clobbering handler ran: {chained}");
    // The loop sends one forged signal before each tgkill, so as many as
    // were chained at least.
    assert!(forged >= chained.max(100), "{forged} forged signals sent, {chained} chained");
    // Each was sampled (or dropped and counted) at most once; a few may
    // have merged into a SIGPROF still pending (a real timer's, or one whose
    // handling outlasted the 50 ms wait), so most, not all.
    assert!(forged_handled <= forged, "{forged_handled} forged samples of {forged} sent");
    assert!(
        forged_handled >= 100 && 2 * forged_handled >= forged,
        "the sampling path ran for the forged signals: {forged_handled} of {forged}"
    );
    assert!(stats.samples - samples_before >= 100, "the sampling path ran");
    assert_eq!(stats.foreign, chained, "every tgkill was foreign and chained, nothing else was");
}
