//! start/stop life cycle in a process that had no SIGPROF handler of its own:
//! argument validation, `AlreadyRunning`, 100 start/stop cycles, stray
//! SIGPROFs while running and after stop (the default action would kill the
//! process), nothing sampled after stop, and the `setitimer` fallback.

// Linux-only: the sampler does nothing elsewhere.
#![cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use lowprof_sampler::{Config, Error, TimerMode};

fn spin_for(d: Duration) {
    let t = Instant::now();
    let mut x = 1u64;
    while t.elapsed() < d {
        for _ in 0..1000 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

fn current_sigprof_action() -> usize {
    // SAFETY: queries the action into a zeroed local.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut old), 0);
        old.sa_sigaction
    }
}

fn raise_both_ways() {
    // SAFETY: signals to our own process and thread.
    unsafe {
        assert_eq!(libc::kill(libc::getpid(), libc::SIGPROF), 0);
        assert_eq!(
            libc::syscall(libc::SYS_tgkill, libc::getpid(), common::gettid() as i32, libc::SIGPROF),
            0
        );
    }
}

/// The stats once `n` more foreign signals than in `before` have been
/// counted. `kill(getpid())` is process-directed: the kernel may hand it to
/// another thread (the harness's main thread), whose handler runs whenever
/// that thread is next scheduled, so the count can lag the `kill` call. Waits
/// at most 10 s; the caller asserts the exact count.
fn stats_after_foreign(before: &lowprof_sampler::Stats, n: u64) -> lowprof_sampler::Stats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = lowprof_sampler::stats();
        if now.foreign - before.foreign >= n || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn lifecycle() {
    assert_eq!(current_sigprof_action(), libc::SIG_DFL, "this process starts without a handler");

    // Validation.
    for hz in [0, 1001] {
        let e = lowprof_sampler::start(Config { hz, ..Config::default() }).unwrap_err();
        assert_eq!(e, Error::InvalidFrequency { hz });
        let msg = e.to_string();
        assert!(msg.contains("1..=1000") && msg.contains(&hz.to_string()), "{msg}");
    }
    assert!(!lowprof_sampler::is_running());
    assert_eq!(current_sigprof_action(), libc::SIG_DFL, "a refused start installs nothing");

    // Start, start again, stop.
    lowprof_sampler::start(Config::default()).unwrap();
    assert!(lowprof_sampler::is_running());
    let ours = current_sigprof_action();
    assert_ne!(ours, libc::SIG_DFL);
    assert_eq!(lowprof_sampler::start(Config::default()), Err(Error::AlreadyRunning));
    assert!(lowprof_sampler::stats().threads_timed >= 1);

    // A stray SIGPROF while running is foreign: counted, not sampled, harmless.
    let before = lowprof_sampler::stats();
    raise_both_ways();
    let after = stats_after_foreign(&before, 2);
    assert_eq!(after.foreign - before.foreign, 2);
    lowprof_sampler::stop();
    assert!(!lowprof_sampler::is_running());
    assert_eq!(lowprof_sampler::stats().threads_timed, 0);

    // 100 cycles, each sampling a little at 1000 Hz.
    let samples_before = lowprof_sampler::stats().samples;
    let t = Instant::now();
    for _ in 0..100 {
        lowprof_sampler::start(Config { hz: 1000, ..Config::default() }).unwrap();
        spin_for(Duration::from_millis(3));
        lowprof_sampler::stop();
        assert_eq!(lowprof_sampler::stats().threads_timed, 0);
        assert_eq!(current_sigprof_action(), ours, "installed once, never replaced");
        common::drain_now();
    }
    let cycles = t.elapsed();
    let stats = lowprof_sampler::stats();
    eprintln!("100 cycles in {cycles:?}; {stats:?}");
    assert!(stats.samples > samples_before, "the cycles sampled");
    assert_eq!(stats.timer_errors, 0);

    // After stop: stray signals are survived (the default action would kill
    // us), counted as foreign, and nothing more is sampled.
    common::drain_now();
    let before = lowprof_sampler::stats();
    for _ in 0..10 {
        raise_both_ways();
    }
    spin_for(Duration::from_millis(100));
    let after = stats_after_foreign(&before, 20);
    assert_eq!(after.foreign - before.foreign, 20);
    assert_eq!(after.samples, before.samples, "nothing sampled after stop");
    assert!(common::drain_now().is_empty());
    assert_eq!(current_sigprof_action(), ours, "the handler stays installed after stop");

    // The setitimer fallback: weight 1 per signal, SI_KERNEL signals.
    let before = lowprof_sampler::stats();
    lowprof_sampler::start(Config { hz: 250, mode: TimerMode::Process }).unwrap();
    assert_eq!(lowprof_sampler::stats().threads_timed, 0);
    let (cpu0, process0) = (common::thread_cpu_nanos(), common::process_cpu_nanos());
    spin_for(Duration::from_millis(400));
    let cpu = common::thread_cpu_nanos() - cpu0;
    let process = common::process_cpu_nanos() - process0;
    lowprof_sampler::stop();
    let samples = common::drain_now();
    let after = lowprof_sampler::stats();
    let me = common::gettid();
    let mine = samples.iter().filter(|s| s.thread == me).count() as u64;
    eprintln!(
        "Process mode: {} samples ({mine} on this thread) for {:.3} s CPU",
        samples.len(),
        cpu as f64 / 1e9
    );
    assert!(samples.iter().all(|s| s.weight == 1));
    assert_eq!(after.samples - before.samples, samples.len() as u64);
    // 250 Hz over this thread's CPU time, give or take the tick. At most
    // 250 Hz over the whole process's CPU time: ITIMER_PROF counts every
    // thread's CPU (the collector's too) and the kernel delivers the signal
    // to a thread that does not block it, this one.
    let expected = cpu * 250 / 1_000_000_000;
    let most = process * 250 / 1_000_000_000 + 3;
    // The floor is loose: ITIMER_PROF sends one signal per tick that finds
    // an expiry (weight 1, overruns lost), so on a loaded machine, where the
    // thread runs in slices shorter than a tick, signals are lost for good.
    assert!(
        mine * 2 >= expected && mine <= most,
        "{mine} samples, expected ~{expected} (at most {most})"
    );

    // Still alive after a last stray signal in the stopped state.
    raise_both_ways();
    assert!(!lowprof_sampler::is_running());
}
