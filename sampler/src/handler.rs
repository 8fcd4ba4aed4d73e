//! The `SIGPROF` handler: classify the signal, walk the interrupted stack,
//! push one record.
//!
//! ```text
//!  on_sigprof(sig, info, ucontext)            every path restores errno
//!   ├─ si_code == SI_TIMER && si_value in period::PERIODS   (our per-thread timer)
//!   │    ├─ MODE == PER_THREAD ─► sample(weight = 1 + si_overrun, period = *si_value)
//!   │    └─ otherwise          ─► swallow (late signal of a deleted timer)
//!   ├─ si_code == SI_KERNEL && MODE == PROCESS ─► sample(weight = 1, current period)
//!   └─ anything else ─► foreign += 1, chain to the previous handler
//!
//!  sample: frames[0] = PC, then lowprof_core::unwind::walk(FP, STACK_REGIONS(SP))
//!          context = lowprof_core::context::current()   (the thread's trace and span)
//!          RINGS.push(hint = tid, TAG_CPU, [tid, weight, period, flags, context] ++ frames)
//! ```
//!
//! Everything in this module that runs inside the handler is async-signal-safe
//! and allocation-free: atomics, plain loads and stores, and one `gettid` per
//! thread. It never panics: the lints below forbid the constructs that could.

#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::arithmetic_side_effects
)]

use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use lowprof_core::bounds::STACK_REGIONS;
use lowprof_core::event::{CpuSample, FLAG_LEAF_IS_PC, FLAG_TRUNCATED, TAG_CPU};
use lowprof_core::stack::{MAX_FRAMES, Stack};
use lowprof_core::unwind;

use crate::{COUNTERS, Error, RINGS, period};

/// Not sampling.
pub(crate) const MODE_OFF: u8 = 0;
/// Sampling with per-thread timers.
pub(crate) const MODE_PER_THREAD: u8 = 1;
/// Sampling with `ITIMER_PROF`.
pub(crate) const MODE_PROCESS: u8 = 2;

/// What the handler does with our signals; written by the session under its
/// lock, read by the handler.
static MODE: AtomicU8 = AtomicU8::new(MODE_OFF);

/// The action that was installed for `SIGPROF` before ours (`SIG_DFL` = none).
static PREV_ACTION: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
/// Whether [`PREV_ACTION`] takes three arguments (`SA_SIGINFO`).
static PREV_SIGINFO: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread's kernel id, 0 until the first sample on the thread.
    /// `const`-initialised and `Drop`-free, so access never registers a
    /// destructor and never fails; see the crate docs for the `cdylib` caveat.
    static TID: Cell<u32> = const { Cell::new(0) };
}

/// Sets what the handler does with lowprof's signals.
pub(crate) fn set_mode(mode: u8) {
    MODE.store(mode, Ordering::Release);
}

/// Whether the handler is sampling.
pub(crate) fn is_active() -> bool {
    MODE.load(Ordering::Acquire) != MODE_OFF
}

/// Installs [`on_sigprof`] for `SIGPROF` with `SA_SIGINFO | SA_RESTART |
/// SA_ONSTACK`, remembering the previous action for chaining. Called once per
/// process, under the session lock; never undone.
pub(crate) fn install() -> Result<(), Error> {
    let handler: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) = on_sigprof;
    // SAFETY: sigaction structs are plain C data; all-zero is a valid value
    // (SIG_DFL, empty mask, no flags) that is then filled in. The calls pass
    // pointers to these locals only.
    unsafe {
        let mut old: libc::sigaction = core::mem::zeroed();
        // Read the current action first, so a signal arriving between the
        // install and the second record_previous already chains correctly.
        if libc::sigaction(libc::SIGPROF, core::ptr::null(), &mut old) != 0 {
            return Err(os_error("sigaction"));
        }
        record_previous(&old, handler as usize);
        let mut new: libc::sigaction = core::mem::zeroed();
        new.sa_sigaction = handler as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigemptyset(&mut new.sa_mask);
        if libc::sigaction(libc::SIGPROF, &new, &mut old) != 0 {
            return Err(os_error("sigaction"));
        }
        record_previous(&old, handler as usize);
        // A forked child is single-threaded and its thread has a new id: forget
        // the cached one. Failure only means the child may label samples with
        // the parent's id, so it is not an error.
        libc::pthread_atfork(None, None, Some(forget_tid_in_child));
    }
    Ok(())
}

fn record_previous(old: &libc::sigaction, ours: usize) {
    if old.sa_sigaction == ours {
        return;
    }
    PREV_SIGINFO.store(old.sa_flags & libc::SA_SIGINFO != 0, Ordering::Relaxed);
    PREV_ACTION.store(old.sa_sigaction, Ordering::Release);
}

fn os_error(call: &'static str) -> Error {
    Error::Os { call, errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0) }
}

extern "C" fn forget_tid_in_child() {
    let _ = TID.try_with(|tid| tid.set(0));
}

/// The `SIGPROF` handler.
///
/// Async-signal-safe, allocation-free: saves `errno`, classifies the signal,
/// samples or chains, restores `errno`. No locks, no panics, no system call
/// except `gettid` on a thread's first sample.
pub(crate) extern "C" fn on_sigprof(sig: c_int, info: *mut libc::siginfo_t, ucontext: *mut c_void) {
    // SAFETY: __errno_location returns the calling thread's errno slot, valid
    // for as long as the thread lives.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above; a plain int read.
    let saved = unsafe { *errno };
    dispatch(sig, info, ucontext);
    // SAFETY: as above; restores what the interrupted code had.
    unsafe { *errno = saved };
}

/// What a `SIGPROF` is to us.
enum Kind {
    /// A sample standing for this many timer periods of this many
    /// nanoseconds.
    Sample(u64, u64),
    /// Ours, but sampling is off (or in the other mode): ignore.
    Stale,
    /// Someone else's: chain.
    Foreign,
}

/// Async-signal-safe, allocation-free.
#[inline(always)]
fn dispatch(sig: c_int, info: *mut libc::siginfo_t, ucontext: *mut c_void) {
    COUNTERS.signals.add(1);
    let mode = MODE.load(Ordering::Acquire);
    // SAFETY: `info` is the siginfo the kernel (or a chaining handler) passed
    // to an SA_SIGINFO handler; `classify` checks it for null.
    match unsafe { classify(info, mode) } {
        Kind::Sample(weight, period_ns) => {
            // SAFETY: `ucontext` is the context the kernel saved for this
            // signal on this thread (checked for null inside).
            unsafe { sample(weight, period_ns, ucontext) }
        }
        Kind::Stale => {}
        Kind::Foreign => {
            COUNTERS.foreign.add(1);
            // SAFETY: forwards the handler's own arguments unchanged.
            unsafe { chain(sig, info, ucontext) }
        }
    }
}

/// Async-signal-safe, allocation-free: reads three fields of `info`.
///
/// # Safety
///
/// `info` is null or points to a valid `siginfo_t`.
#[inline(always)]
unsafe fn classify(info: *const libc::siginfo_t, mode: u8) -> Kind {
    if info.is_null() {
        return Kind::Foreign;
    }
    // SAFETY: non-null, valid per the contract.
    let info = unsafe { &*info };
    if info.si_code == libc::SI_TIMER {
        // SAFETY: for SI_TIMER the kernel fills the `_timer` member of the
        // union: { si_tid @16, si_overrun @20, si_sigval @24 } on 64-bit
        // Linux; libc's si_value() reads the sigval at that same offset (the
        // `_rt` member shares it) and si_overrun() reads @20. A forged
        // siginfo (rt_tgsigqueueinfo) is 128 readable bytes all the same.
        let (cookie, overrun) = unsafe { (info.si_value().sival_ptr as usize, info.si_overrun()) };
        let Some(period_ns) = period::period_of(cookie) else {
            return Kind::Foreign;
        };
        if mode != MODE_PER_THREAD {
            return Kind::Stale;
        }
        let extra = u64::try_from(overrun).unwrap_or(0);
        COUNTERS.overrun_periods.add(extra);
        return Kind::Sample(extra.saturating_add(1), period_ns);
    }
    if info.si_code == libc::SI_KERNEL && mode == MODE_PROCESS {
        return Kind::Sample(1, period::current_period());
    }
    Kind::Foreign
}

/// Calls the handler that was installed before ours, if it is a real one.
/// `SIG_DFL` is never run (it would terminate the process), `SIG_IGN` means
/// nothing to do.
///
/// Async-signal-safe and allocation-free itself; what the previous handler
/// does is its own business.
///
/// # Safety
///
/// The arguments are the ones this signal handler received.
#[inline(never)]
unsafe fn chain(sig: c_int, info: *mut libc::siginfo_t, ucontext: *mut c_void) {
    let action = PREV_ACTION.load(Ordering::Acquire);
    if action == libc::SIG_DFL || action == libc::SIG_IGN {
        return;
    }
    if PREV_SIGINFO.load(Ordering::Relaxed) {
        // SAFETY: `action` came from a sigaction with SA_SIGINFO, so it is a
        // three-argument handler; it was installed for exactly this signal.
        let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
            unsafe { core::mem::transmute::<usize, _>(action) };
        f(sig, info, ucontext);
    } else {
        // SAFETY: without SA_SIGINFO the action is a one-argument handler.
        let f: extern "C" fn(c_int) = unsafe { core::mem::transmute::<usize, _>(action) };
        f(sig);
    }
}

/// The interrupted registers the walk needs.
struct Regs {
    pc: u64,
    sp: u64,
    fp: u64,
}

/// Async-signal-safe, allocation-free: three loads.
///
/// # Safety
///
/// `ucontext` is null or the `ucontext_t` the kernel passed to this handler.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn registers(ucontext: *const c_void) -> Option<Regs> {
    if ucontext.is_null() {
        return None;
    }
    // SAFETY: non-null, a kernel-written ucontext_t per the contract.
    let uc = unsafe { &*ucontext.cast::<libc::ucontext_t>() };
    const RIP: usize = libc::REG_RIP as usize;
    const RSP: usize = libc::REG_RSP as usize;
    const RBP: usize = libc::REG_RBP as usize;
    let gregs = &uc.uc_mcontext.gregs;
    // Constant indices into a fixed-size array: checked at compile time.
    Some(Regs { pc: gregs[RIP] as u64, sp: gregs[RSP] as u64, fp: gregs[RBP] as u64 })
}

/// Async-signal-safe, allocation-free: three loads.
///
/// # Safety
///
/// `ucontext` is null or the `ucontext_t` the kernel passed to this handler.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn registers(ucontext: *const c_void) -> Option<Regs> {
    if ucontext.is_null() {
        return None;
    }
    // SAFETY: non-null, a kernel-written ucontext_t per the contract.
    let uc = unsafe { &*ucontext.cast::<libc::ucontext_t>() };
    let mc = &uc.uc_mcontext;
    Some(Regs { pc: mc.pc, sp: mc.sp, fp: mc.regs[29] })
}

/// Unsupported architecture: no registers, no samples ([`crate::start`]
/// refuses to start there anyway).
///
/// # Safety
///
/// None needed; kept `unsafe` for a uniform signature.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
unsafe fn registers(_ucontext: *const c_void) -> Option<Regs> {
    None
}

/// This thread's kernel id, cached. Async-signal-safe, allocation-free:
/// `gettid` (async-signal-safe, cannot fail) on the thread's first call only.
#[inline(always)]
fn current_tid() -> u64 {
    let cached = TID.try_with(Cell::get).unwrap_or(0);
    if cached != 0 {
        return u64::from(cached);
    }
    // SAFETY: gettid has no arguments and no failure mode.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    let tid = u32::try_from(tid).unwrap_or(0);
    let _ = TID.try_with(|c| c.set(tid));
    u64::from(tid)
}

/// Walks the interrupted stack and queues one CPU record.
///
/// Async-signal-safe, allocation-free: register loads, a bounded
/// frame-pointer walk inside the published stack region, one ring push.
///
/// # Safety
///
/// `ucontext` is null or the context the kernel saved for the signal being
/// handled on this thread.
#[inline(always)]
unsafe fn sample(weight: u64, period_ns: u64, ucontext: *mut c_void) {
    // SAFETY: per this function's contract.
    let Some(regs) = (unsafe { registers(ucontext) }) else {
        return;
    };
    // One spare slot tells a stack that filled exactly MAX_FRAMES apart from
    // one that had more (the walker stops silently when its buffer is full).
    let mut stack: Stack<{ MAX_FRAMES + 1 }> = Stack::new();
    stack.push(regs.pc);
    let bounds = STACK_REGIONS.for_current_thread(regs.sp);
    // SAFETY: `bounds` is [sp, top) where top is the end of the published
    // mapping that holds this thread's interrupted stack pointer (capped at
    // the thread's TCB, which glibc and musl put at the top of the thread's
    // own stack), or sp's own page when no region holds it. This thread's
    // stack stays mapped while the thread runs this handler, and the table is
    // republished before any new thread gets a timer and whenever the thread
    // set changes, so the region describes memory that is mapped now.
    unsafe { unwind::walk(regs.fp, bounds, &mut stack) };
    let all = stack.as_slice();
    let (frames, flags) = match all.get(..MAX_FRAMES) {
        Some(kept) if all.len() > MAX_FRAMES => {
            COUNTERS.truncated.add(1);
            (kept, FLAG_LEAF_IS_PC | FLAG_TRUNCATED)
        }
        _ => (all, FLAG_LEAF_IS_PC),
    };
    let thread = current_tid();
    // The registered reader of the thread's trace context: async-signal-safe
    // (a seqlock read of a const-initialised thread-local).
    let context = lowprof_core::context::current();
    let header =
        CpuSample { thread, weight, period_ns, flags, context, frames: &[] }.header_words();
    // The tid spreads threads over the rings; a full set drops and counts.
    if RINGS.push(thread as usize, TAG_CPU, &[&header, frames]).is_ok() {
        COUNTERS.samples.add(1);
    } else {
        // A dropped sample stood for `weight` periods, not one.
        COUNTERS.dropped_periods.add(weight);
        COUNTERS.dropped_nanos.add(weight.saturating_mul(period_ns));
    }
}
