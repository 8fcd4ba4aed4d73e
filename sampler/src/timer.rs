//! The timers that make `SIGPROF`s: one POSIX timer per thread on that
//! thread's CPU clock, or the process-wide `ITIMER_PROF` fallback.
//!
//! ```text
//!  clock id of thread T  = (!T << 3) | CPUCLOCK_PERTHREAD (4) | CPUCLOCK_SCHED (2)
//!  sigevent              = { SIGEV_THREAD_ID, SIGPROF, thread T, sigev_value = cookie }
//!  timer_settime         = { interval: 1e9/hz ns, first: uniform in (0, interval] }
//! ```
//!
//! The raw clock id lets one thread create a timer on another thread's CPU
//! clock (`CLOCK_THREAD_CPUTIME_ID` only names the caller's), the way
//! async-profiler's ctimer engine does; `SIGEV_THREAD_ID` delivers the signal
//! to that same thread, so the handler walks the stack that consumed the CPU.
//! The kernel's timer calls are made directly (`syscall`), so the timer id is
//! the kernel's `int` (the same one it reports in `si_timerid`) with the same
//! behaviour under glibc and musl.
//!
//! None of this runs in the signal handler.

use core::ffi::c_int;

/// A kernel POSIX timer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerId(c_int);

/// The kernel's CPU clock id of thread `tid` (`MAKE_THREAD_CPUCLOCK(tid,
/// CPUCLOCK_SCHED)` in the kernel's `posix-timers.h`).
pub(crate) fn thread_cpu_clock(tid: i32) -> libc::clockid_t {
    const CPUCLOCK_PERTHREAD_MASK: libc::clockid_t = 4;
    const CPUCLOCK_SCHED: libc::clockid_t = 2;
    ((!tid) << 3) | CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn timespec(nanos: i64) -> libc::timespec {
    libc::timespec { tv_sec: (nanos / 1_000_000_000) as _, tv_nsec: (nanos % 1_000_000_000) as _ }
}

/// Creates and arms a timer that sends `SIGPROF` carrying `cookie` to thread
/// `tid` every `period_ns` of that thread's CPU time, first after `first_ns`.
///
/// Returns the failed call and its errno (`EINVAL` when the thread has exited
/// in the meantime).
pub(crate) fn create_thread_timer(
    tid: i32,
    period_ns: i64,
    first_ns: i64,
    cookie: usize,
) -> Result<TimerId, (&'static str, i32)> {
    // SAFETY: sigevent is plain C data and all-zero is a valid start; its
    // padding fields are private in libc, hence zeroed() and field stores.
    let mut sev: libc::sigevent = unsafe { core::mem::zeroed() };
    sev.sigev_value = libc::sigval { sival_ptr: cookie as *mut libc::c_void };
    sev.sigev_signo = libc::SIGPROF;
    sev.sigev_notify = libc::SIGEV_THREAD_ID;
    sev.sigev_notify_thread_id = tid;
    let mut id: c_int = 0;
    // SAFETY: timer_create(clockid_t, struct sigevent *, kernel timer_t *)
    // with pointers to live locals; libc's sigevent has the kernel's layout
    // (value, signo, notify, then the union whose first int is the thread id).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_timer_create,
            thread_cpu_clock(tid),
            &mut sev as *mut libc::sigevent,
            &mut id as *mut c_int,
        )
    };
    if rc != 0 {
        return Err(("timer_create", last_errno()));
    }
    let timer = TimerId(id);
    let spec = libc::itimerspec { it_interval: timespec(period_ns), it_value: timespec(first_ns) };
    // SAFETY: timer_settime(timer_t, int, const struct itimerspec *, struct
    // itimerspec *) on the timer just created; `spec` is a live local.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_timer_settime,
            id,
            0,
            &spec as *const libc::itimerspec,
            core::ptr::null_mut::<libc::itimerspec>(),
        )
    };
    if rc != 0 {
        let errno = last_errno();
        let _ = delete_thread_timer(timer);
        return Err(("timer_settime", errno));
    }
    Ok(timer)
}

/// Deletes a timer made by [`create_thread_timer`]. A signal it already
/// queued may still arrive; the handler swallows it once sampling is off.
pub(crate) fn delete_thread_timer(timer: TimerId) -> Result<(), i32> {
    // SAFETY: timer_delete(timer_t) takes the id by value.
    let rc = unsafe { libc::syscall(libc::SYS_timer_delete, timer.0) };
    if rc != 0 { Err(last_errno()) } else { Ok(()) }
}

fn timeval(nanos: i64) -> libc::timeval {
    let micros = (nanos / 1000).max(1);
    libc::timeval { tv_sec: (micros / 1_000_000) as _, tv_usec: (micros % 1_000_000) as _ }
}

/// Arms `ITIMER_PROF` (process CPU time, `SI_KERNEL` signals) with a first
/// expiry of `first_ns`, or disarms it with `period_ns == 0`.
pub(crate) fn set_process_timer(period_ns: i64, first_ns: i64) -> Result<(), i32> {
    let zero = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let value = if period_ns == 0 {
        libc::itimerval { it_interval: zero, it_value: zero }
    } else {
        libc::itimerval { it_interval: timeval(period_ns), it_value: timeval(first_ns) }
    };
    // SAFETY: setitimer with a pointer to a live local and no old value.
    let rc = unsafe { libc::setitimer(libc::ITIMER_PROF, &value, core::ptr::null_mut()) };
    if rc != 0 { Err(last_errno()) } else { Ok(()) }
}

/// A splitmix64 generator for first-expiry jitter (statistical quality is
/// irrelevant here; independence from the workload is what matters).
#[derive(Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    /// An unseeded generator; [`Jitter::seed`] it before use.
    pub(crate) const fn new() -> Self {
        Self(0)
    }

    /// Seeds from the monotonic clock, the process id and a stack address.
    pub(crate) fn seed(&mut self) {
        if self.0 != 0 {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let local = 0u8;
        let addr = &local as *const u8 as u64;
        self.0 = now ^ u64::from(std::process::id()).rotate_left(32) ^ addr | 1;
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A first expiry uniform in `(0, period_ns]` (Go's defence against
    /// short threads all being sampled at the same offset).
    pub(crate) fn first_expiry(&mut self, period_ns: i64) -> i64 {
        let period = period_ns.max(1) as u64;
        (1 + self.next() % period) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ids_match_the_kernel_encoding() {
        // CLOCK_THREAD_CPUTIME_ID of "thread 0" is the calling thread: the
        // kernel's MAKE_THREAD_CPUCLOCK(0, CPUCLOCK_SCHED) is -2.
        assert_eq!(thread_cpu_clock(0), -2);
        assert_eq!(thread_cpu_clock(1), (-2 << 3) | 6);
        // The raw id of our own tid reads the same clock as
        // CLOCK_THREAD_CPUTIME_ID.
        // SAFETY: gettid cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime with a live local.
        assert_eq!(unsafe { libc::clock_gettime(thread_cpu_clock(tid), &mut ts) }, 0);
    }

    #[test]
    fn first_expiry_is_in_range() {
        let mut j = Jitter::new();
        j.seed();
        for period in [1i64, 2, 1_000_000, 10_101_010] {
            for _ in 0..1000 {
                let f = j.first_expiry(period);
                assert!(f >= 1 && f <= period, "{f} for {period}");
            }
        }
    }

    #[test]
    fn time_conversions() {
        let t = timespec(1_500_000_001);
        assert_eq!((t.tv_sec, t.tv_nsec), (1, 500_000_001));
        let v = timeval(1_000_000_000);
        assert_eq!((v.tv_sec, v.tv_usec), (1, 0));
        let v = timeval(1_000_000);
        assert_eq!((v.tv_sec, v.tv_usec), (0, 1000));
    }
}
