//! A program that had its own SIGPROF handler keeps it: lowprof chains every
//! SIGPROF that is not from its own timers to that handler — while running
//! and after stop — and never passes its own timer signals on.

// Linux-only: the sampler does nothing elsewhere.
#![cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lowprof_sampler::Config;

static CALLS: AtomicU64 = AtomicU64::new(0);
static LAST_CODE: AtomicU64 = AtomicU64::new(0);

extern "C" fn my_handler(sig: libc::c_int, info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    assert_eq!(sig, libc::SIGPROF);
    CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the kernel's siginfo, passed through unchanged by lowprof.
    LAST_CODE.store(unsafe { (*info).si_code } as u32 as u64, Ordering::Relaxed);
}

fn spin_for(d: Duration) {
    let t = Instant::now();
    let mut x = 1u64;
    while t.elapsed() < d {
        for _ in 0..1000 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

fn raise() {
    // SAFETY: a signal to our own thread.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_tgkill, libc::getpid(), common::gettid() as i32, libc::SIGPROF),
            0
        )
    };
}

#[test]
fn chains_to_the_previous_handler() {
    // SAFETY: installs a handler with a zeroed, then filled-in, sigaction.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = my_handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGPROF, &sa, std::ptr::null_mut()), 0);
    }
    raise();
    assert_eq!(CALLS.load(Ordering::Relaxed), 1, "our handler alone");

    for round in 0..3 {
        lowprof_sampler::start(Config { hz: 1000, ..Config::default() }).unwrap();
        let samples_before = lowprof_sampler::stats().samples;
        // Lots of lowprof timer signals: none may reach my_handler.
        spin_for(Duration::from_millis(150));
        let calls = CALLS.load(Ordering::Relaxed);
        raise();
        assert_eq!(
            CALLS.load(Ordering::Relaxed),
            calls + 1,
            "round {round}: a stray signal is chained while running"
        );
        assert_eq!(
            LAST_CODE.load(Ordering::Relaxed),
            libc::SI_TKILL as u32 as u64,
            "siginfo passed through"
        );
        spin_for(Duration::from_millis(50));
        lowprof_sampler::stop();
        let stats = lowprof_sampler::stats();
        assert!(stats.samples > samples_before, "round {round}: lowprof sampled");
        raise();
        raise();
        assert_eq!(CALLS.load(Ordering::Relaxed), calls + 3, "round {round}: chained after stop");
        common::drain_now();
    }
    let stats = lowprof_sampler::stats();
    eprintln!("{stats:?}; my_handler ran {} times", CALLS.load(Ordering::Relaxed));
    assert_eq!(
        CALLS.load(Ordering::Relaxed),
        1 + 3 * 3,
        "exactly the stray signals reached my handler"
    );
    assert_eq!(stats.foreign, 3 * 3);
}
