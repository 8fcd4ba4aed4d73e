//! `SA_RESTART` semantics: a thread blocked in a slow system call is never
//! woken with `EINTR` by lowprof's SIGPROFs, while sampling and after stop.
//!
//! A reader thread blocks in `read(2)` on an empty pipe (called through
//! libc directly: std's wrappers retry `EINTR` themselves and would hide a
//! missing `SA_RESTART`). While it sleeps in the kernel (state `S` in
//! `/proc/self/task/<tid>/stat`), the test sends it SIGPROFs one at a time:
//! forged lowprof timer signals (the sampling path walks its stack) and
//! plain `tgkill`s (the foreign path, ignored since no handler came before
//! lowprof's). Then it writes to the pipe: the one `read` must return those
//! bytes, not `-1`/`EINTR`. The same again after `stop()`, with the handler
//! left installed.
//!
//! Checked while writing this test: with `SA_RESTART` removed from the
//! handler's flags, the first signal ends the read early and the test fails.

// Linux-only: the sampler does nothing elsewhere.
#![cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use lowprof_sampler::Config;

/// The scheduler state of thread `tid` (`R`, `S`, …; `X` once it ended).
fn thread_state(tid: i32) -> char {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return 'X';
    };
    // "tid (comm) S ...": the state follows the last ')'.
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.trim_start().chars().next().unwrap()
}

/// The `read` system call's number.
#[cfg(target_arch = "x86_64")]
const SYS_READ: u64 = 0;
#[cfg(target_arch = "aarch64")]
const SYS_READ: u64 = 63;

/// The system call thread `tid` is blocked in, if any.
fn blocked_in(tid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Waits until thread `tid` sleeps in the kernel inside `read` (not, say,
/// in a futex on its way there: the signals must hit the read).
fn wait_blocked(tid: i32) {
    let t = Instant::now();
    loop {
        match thread_state(tid) {
            'S' if blocked_in(tid) == Some(SYS_READ) => return,
            'X' | 'Z' => panic!("the reader's read returned before the write (EINTR?)"),
            _ => {}
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the reader never blocked in read");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether a SIGPROF is pending for thread `tid` (its own pending set).
fn sigprof_pending(tid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
        return false;
    };
    let mask = status.lines().find_map(|l| l.strip_prefix("SigPnd:")).unwrap().trim();
    u64::from_str_radix(mask, 16).unwrap() & (1 << (libc::SIGPROF - 1)) != 0
}

/// Waits until the signal just sent to `tid` was delivered (no longer
/// pending, so the next one cannot merge with it) and the handler has run
/// more than `before` times.
fn wait_handled(tid: i32, before: u64) {
    let t = Instant::now();
    while sigprof_pending(tid) || lowprof_sampler::stats().signals == before {
        assert!(t.elapsed() < Duration::from_secs(30), "the signal was never handled");
        std::thread::yield_now();
    }
}

/// What the reader's one `read` returned: the byte count (or -1) and errno.
struct ReadResult {
    rc: isize,
    errno: i32,
    bytes: Vec<u8>,
}

/// Blocks a thread in `read` on an empty pipe, hits it with `signals`
/// forged and `signals` plain SIGPROFs while it is blocked, then writes.
/// Returns what the read returned and how many handler runs were seen.
fn read_through_signals(signals: u64) -> (ReadResult, u64) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let [read_fd, write_fd] = fds;
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        tid_tx.send(common::gettid() as i32).unwrap();
        let mut buf = [0u8; 16];
        // SAFETY: reads at most 16 bytes into `buf`, from our own pipe.
        let rc = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
        // SAFETY: this thread's errno slot.
        let errno = unsafe { *libc::__errno_location() };
        let bytes = buf[..rc.max(0) as usize].to_vec();
        ReadResult { rc, errno, bytes }
    });
    let tid = tid_rx.recv().unwrap();
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    let handled_before = lowprof_sampler::stats().signals;
    for _ in 0..signals {
        wait_blocked(tid);
        let before = lowprof_sampler::stats().signals;
        assert_eq!(common::forge_timer_signal(pid, tid), 0);
        wait_handled(tid, before);
        wait_blocked(tid);
        let before = lowprof_sampler::stats().signals;
        // SAFETY: a SIGPROF to a thread of this process.
        assert_eq!(unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGPROF) }, 0);
        wait_handled(tid, before);
    }
    let handled = lowprof_sampler::stats().signals - handled_before;
    wait_blocked(tid);
    // SAFETY: writes 5 bytes from a static buffer to our own pipe.
    assert_eq!(unsafe { libc::write(write_fd, b"hello".as_ptr().cast(), 5) }, 5);
    let result = reader.join().unwrap();
    // SAFETY: closes the pipe's two descriptors, which nothing else uses.
    unsafe {
        libc::close(read_fd);
        libc::close(write_fd);
    }
    (result, handled)
}

fn assert_restarted(what: &str, r: &ReadResult) {
    assert!(
        r.rc == 5 && r.bytes == b"hello",
        "{what}: read returned {} (errno {}) instead of the 5 bytes written; EINTR is {}",
        r.rc,
        r.errno,
        libc::EINTR
    );
}

#[test]
fn blocking_reads_restart_across_sigprof() {
    let collector = common::Collector::spawn();
    lowprof_sampler::start(Config { hz: 1000, ..Config::default() }).unwrap();
    let samples_before = lowprof_sampler::stats().samples;
    let (result, handled) = read_through_signals(50);
    // Other threads' timer signals count too, hence at least.
    assert!(handled >= 100, "{handled} handler runs for the 100 signals sent while blocked");
    assert_restarted("while sampling", &result);
    let stats = lowprof_sampler::stats();
    assert!(stats.samples - samples_before >= 50, "the forged signals were sampled: {stats:?}");

    // After stop the handler stays installed and must stay harmless.
    lowprof_sampler::stop();
    let (result, handled) = read_through_signals(20);
    assert!(handled >= 40, "{handled} handler runs for the 40 signals sent while blocked");
    assert_restarted("after stop", &result);
    collector.finish();
}
