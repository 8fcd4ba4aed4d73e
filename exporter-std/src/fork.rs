//! What a `fork` does to a running profiler, and the handlers that make the
//! child safe.
//!
//! ```text
//!  parent: threads T1 (fork caller), drainer, symbolizer, exporter, …
//!     fork() ──► prepare: take the locks a child may need (span names;
//!                         bounded: a holder that cannot go on is skipped)
//!                parent: release what prepare took
//!                child:  release it (or start an empty name table if it
//!                        was not taken); retire the other threads'
//!                        exact-total registrations; stop heap sampling;
//!                        mark FORKED
//!  child:  only T1's copy runs. No drainer, no timers (POSIX timers and
//!          ITIMER_PROF are not inherited, pending signals are cleared).
//! ```
//!
//! Profiling is off in the child: its allocations are not sampled (nobody
//! would drain the records), the parent's `Profiler` there answers
//! [`crate::Error::ForkedChild`] and dropping it abandons the parent's
//! threads' state without joining them, and `Profiler::start` in the child
//! answers the same error while the parent's session was running at the
//! fork. Everything the child can still reach is lock-free (the allocator
//! wrapper, the trace context, the link strategies) or held across the fork
//! by these handlers (the span-name table), so the child never deadlocks on
//! a lock a parent thread held at the fork. `Profiler::stats` there reads
//! only the process-wide sampling counters.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set in a forked child of a process whose profiler was running.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Whether this process is a forked child of one whose profiler was
/// running at the fork.
pub(crate) fn in_forked_child() -> bool {
    FORKED.load(Ordering::Acquire)
}

/// Installs the fork handlers (once per process). Called when a profiler
/// starts and when a span name is first interned (its table's lock must be
/// handled across a fork even before any profiler runs).
pub(crate) fn install_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: pthread_atfork with three `extern "C" fn()` handlers that
        // live for the whole program. Failure (ENOMEM) leaves the child
        // without them: then it behaves as before this module existed, so
        // the return value is not an error worth failing start for.
        unsafe {
            libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
        }
    });
}

extern "C" fn prepare() {
    crate::trace::lock_names_for_fork();
}

extern "C" fn parent() {
    crate::trace::unlock_names_in_parent();
}

extern "C" fn child() {
    // SAFETY: this is the child's fork handler, on the forking thread.
    unsafe { crate::trace::unlock_names_in_child() };
    // The other threads' exact-total registrations go, whether or not a
    // profiler runs: one of them may have been mid-update at the fork, and
    // `stats()` would wait for it forever (seen once in CI).
    // SAFETY: this is the child's fork handler: separate memory, and no
    // thread but this one.
    unsafe { lowprof_alloc::after_fork_in_child() };
    if crate::profiler::is_running() {
        // An atomic store: async-signal-safe, as a child handler must be.
        lowprof_alloc::stop();
        FORKED.store(true, Ordering::Release);
    }
}
