//! Span names, interned: a sample carries a one-word key, the drainer turns
//! it back into the name.
//!
//! ```text
//!  SpanName::new("GET /users") ─► NAMES: "GET /users" ─► key 1 (index + 1; 0 = no name)
//!  record ctx3 = 1 ─► drainer: name_of(1) = "GET /users" ─► label span_name
//! ```
//!
//! Names are kept for the life of the process, so the table is bounded: past
//! [`MAX_NAMES`] distinct names, new ones share the key of
//! [`OVERFLOW_NAME`] (high-cardinality names belong in attributes, not in
//! span names).
//!
//! The table's lock is a spin lock rather than a `Mutex` so that the fork
//! handlers ([`crate::fork`]) can hold it across `fork` and release it in
//! both processes: a forked child creating spans (the `tracing` layer calls
//! [`SpanName::new`]) never finds it held by a parent thread that does not
//! exist there. It is held only for a hash lookup or insert.

use core::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, Ordering};

use hashbrown::HashMap;

/// Most distinct span names kept.
pub const MAX_NAMES: usize = 4096;
/// The name samples get once [`MAX_NAMES`] is reached.
pub const OVERFLOW_NAME: &str = "lowprof::other_span_names";

#[derive(Default)]
struct Names {
    keys: HashMap<String, u64>,
    names: Vec<String>,
}

/// The table behind a spin lock.
struct Table {
    locked: AtomicBool,
    names: UnsafeCell<Option<Names>>,
}

// SAFETY: `names` is only reached through `with`, which holds `locked`.
unsafe impl Sync for Table {}

static NAMES: Table = Table { locked: AtomicBool::new(false), names: UnsafeCell::new(None) };

impl Table {
    fn try_lock(&self) -> bool {
        self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    fn lock(&self) {
        while !self.try_lock() {
            std::thread::yield_now();
        }
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Runs `f` on the table, locked. `f` must not panic (it only does hash
    /// map work; an allocation failure aborts the process anyway).
    fn with<R>(&self, f: impl FnOnce(&mut Names) -> R) -> R {
        self.lock();
        // SAFETY: the lock is held, so this is the only reference.
        let names = unsafe { &mut *self.names.get() };
        let out = f(names.get_or_insert_with(Names::default));
        self.unlock();
        out
    }
}

/// How often the `prepare` handler tries the lock (yielding in between)
/// before it forks without it. The lock is held for a hash lookup or an
/// insert, so normally the first or second try succeeds; a bound is needed
/// only for a holder that cannot go on: the thread calling `fork` itself
/// (from a signal handler that interrupted it here), or a holder blocked in
/// an allocator whose own fork handler already took the allocator's lock.
const FORK_LOCK_TRIES: u32 = 10_000;

thread_local! {
    /// Whether this thread's `prepare` handler holds the lock across its
    /// `fork` (per thread: two threads may fork at once).
    static TAKEN_FOR_FORK: Cell<bool> = const { Cell::new(false) };
}

/// The `prepare` handler: takes the table's lock before a `fork`, unless
/// it stays held for [`FORK_LOCK_TRIES`] tries.
pub(crate) fn lock_names_for_fork() {
    let mut taken = false;
    for _ in 0..FORK_LOCK_TRIES {
        if NAMES.try_lock() {
            taken = true;
            break;
        }
        // sched_yield: async-signal-safe, as fork may be called from a
        // signal handler.
        std::thread::yield_now();
    }
    TAKEN_FOR_FORK.with(|t| t.set(taken));
}

/// The parent's handler after a `fork`: releases what `prepare` took.
pub(crate) fn unlock_names_in_parent() {
    if TAKEN_FOR_FORK.with(Cell::get) {
        NAMES.unlock();
    }
}

/// The child's handler after a `fork`: releases what `prepare` took. If it
/// could not take the lock, the holder does not run in the child and may
/// have left the table half-updated: the child starts a new, empty table
/// (keys issued before the fork then have no name there; profiling is off
/// in the child anyway) and the old one is leaked, never dropped.
///
/// # Safety
///
/// Only in the child's `fork` handler, on the forking thread. If that
/// thread itself held the lock (it forked from a signal handler that
/// interrupted [`SpanName::new`]), the child must not return from that
/// signal handler (it should `exec` or `_exit`, as POSIX requires of a
/// child forked from a signal handler anyway).
pub(crate) unsafe fn unlock_names_in_child() {
    if !TAKEN_FOR_FORK.with(Cell::get) {
        // SAFETY: no other thread exists in the child, and the caller
        // promises the interrupted holder (if it is this thread) never
        // resumes; `ptr::write` does not drop the possibly torn old table.
        unsafe { std::ptr::write(NAMES.names.get(), None) };
    }
    NAMES.unlock();
}

/// An interned span name: cheap to copy and to store in a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanName(u64);

impl SpanName {
    /// Interns `name` (a lock and a hash lookup: create one per span kind,
    /// not per request).
    pub fn new(name: &str) -> Self {
        // The table's lock must be handled across `fork` even when no
        // profiler has started yet.
        crate::fork::install_handlers();
        // Allocate outside the lock (the allocator may sample and take
        // its slow path meanwhile).
        let owned = name.to_owned();
        let overflow = OVERFLOW_NAME.to_owned();
        NAMES.with(|names| {
            if let Some(&key) = names.keys.get(name) {
                return Self(key);
            }
            let stored = if names.names.len() < MAX_NAMES { owned } else { overflow };
            if let Some(&key) = names.keys.get(&stored) {
                return Self(key);
            }
            names.names.push(stored.clone());
            let key = names.names.len() as u64;
            names.keys.insert(stored, key);
            Self(key)
        })
    }

    /// The key samples carry (never 0).
    pub(crate) fn key(self) -> u64 {
        self.0
    }
}

/// The name of key `key`, if it is one.
pub(crate) fn name_of(key: u64) -> Option<String> {
    let index = usize::try_from(key.checked_sub(1)?).ok()?;
    NAMES.with(|names| names.names.get(index).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable() {
        let a = SpanName::new("names-test-a");
        let b = SpanName::new("names-test-b");
        assert_ne!(a, b);
        assert_eq!(SpanName::new("names-test-a"), a);
        assert_eq!(name_of(a.key()).as_deref(), Some("names-test-a"));
        assert_eq!(name_of(0), None);
        assert_eq!(name_of(u64::MAX), None);
    }
}
