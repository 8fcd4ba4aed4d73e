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

use core::cell::UnsafeCell;
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
    fn lock(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
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

/// Takes the table's lock before a `fork` (the `prepare` handler).
pub(crate) fn lock_names_for_fork() {
    NAMES.lock();
}

/// Releases the lock [`lock_names_for_fork`] took, in the parent or the
/// child after the fork.
///
/// # Safety
///
/// Only after [`lock_names_for_fork`], once.
pub(crate) unsafe fn unlock_names_after_fork() {
    NAMES.unlock();
}

/// An interned span name: cheap to copy and to store in a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanName(u64);

impl SpanName {
    /// Interns `name` (a lock and a hash lookup: create one per span kind,
    /// not per request).
    pub fn new(name: &str) -> Self {
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
