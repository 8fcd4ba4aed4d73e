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

use std::sync::{Mutex, PoisonError};

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

static NAMES: Mutex<Option<Names>> = Mutex::new(None);

/// An interned span name: cheap to copy and to store in a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanName(u64);

impl SpanName {
    /// Interns `name` (a lock and a hash lookup: create one per span kind,
    /// not per request).
    pub fn new(name: &str) -> Self {
        let mut guard = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
        let names = guard.get_or_insert_with(Names::default);
        if let Some(&key) = names.keys.get(name) {
            return Self(key);
        }
        let stored = if names.names.len() < MAX_NAMES { name } else { OVERFLOW_NAME };
        if let Some(&key) = names.keys.get(stored) {
            return Self(key);
        }
        names.names.push(stored.to_owned());
        let key = names.names.len() as u64;
        names.keys.insert(stored.to_owned(), key);
        Self(key)
    }

    /// The key samples carry (never 0).
    pub(crate) fn key(self) -> u64 {
        self.0
    }
}

/// The name of key `key`, if it is one.
pub(crate) fn name_of(key: u64) -> Option<String> {
    let index = usize::try_from(key.checked_sub(1)?).ok()?;
    let guard = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    guard.as_ref()?.names.get(index).cloned()
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
