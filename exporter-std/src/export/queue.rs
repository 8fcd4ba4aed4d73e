//! The bounded FIFO of requests waiting for the exporter thread.
//!
//! Bounded by count and by bytes; when a new request does not fit, the
//! oldest ones are dropped (the newest profile is the most useful one, and a
//! backend that is down for minutes must not make the process grow).

use std::collections::VecDeque;

/// Most requests waiting at once.
pub(crate) const MAX_QUEUED_REQUESTS: usize = 16;
/// Most bytes (uncompressed requests) waiting at once: 32 MiB, half the
/// 64 MiB the OTLP spec says a client should stay under per request.
pub(crate) const MAX_QUEUED_BYTES: usize = 32 << 20;

/// What [`Queue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// Older requests dropped to make room.
    pub dropped_oldest: u64,
    /// The new request alone is larger than the byte limit and was dropped.
    pub too_large: bool,
}

/// A FIFO of encoded requests with count and byte limits.
#[derive(Debug)]
pub(crate) struct Queue {
    /// Requests, oldest first.
    items: VecDeque<Vec<u8>>,
    /// Sum of `items`' lengths.
    bytes: usize,
    /// Count limit.
    max_requests: usize,
    /// Byte limit.
    max_bytes: usize,
}

impl Queue {
    /// An empty queue with the given limits (`max_requests` at least 1).
    pub(crate) fn new(max_requests: usize, max_bytes: usize) -> Self {
        let max_requests = max_requests.max(1);
        Self { items: VecDeque::with_capacity(max_requests), bytes: 0, max_requests, max_bytes }
    }

    /// Appends `request`, first dropping the oldest requests until it fits.
    /// A request larger than the byte limit on its own is dropped instead
    /// (nothing else is).
    pub(crate) fn push(&mut self, request: Vec<u8>) -> Pushed {
        let mut pushed = Pushed { dropped_oldest: 0, too_large: false };
        if request.len() > self.max_bytes {
            pushed.too_large = true;
            return pushed;
        }
        while self.items.len() >= self.max_requests || self.bytes + request.len() > self.max_bytes {
            let Some(old) = self.items.pop_front() else { break };
            self.bytes -= old.len();
            pushed.dropped_oldest += 1;
        }
        self.bytes += request.len();
        self.items.push_back(request);
        pushed
    }

    /// Takes the oldest request.
    pub(crate) fn pop(&mut self) -> Option<Vec<u8>> {
        let item = self.items.pop_front()?;
        self.bytes -= item.len();
        Some(item)
    }

    /// Drops every request waiting; returns how many there were.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        self.bytes = 0;
        n
    }

    /// Requests waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes waiting.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_limit_drops_oldest() {
        let mut q = Queue::new(3, 1000);
        for i in 0..5u8 {
            let p = q.push(vec![i]);
            assert_eq!(p.dropped_oldest, u64::from(i >= 3));
            assert!(!p.too_large);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(vec![2]));
        assert_eq!(q.pop(), Some(vec![3]));
        assert_eq!(q.pop(), Some(vec![4]));
        assert_eq!(q.pop(), None);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn byte_limit_drops_as_many_oldest_as_needed() {
        let mut q = Queue::new(16, 100);
        q.push(vec![1; 40]);
        q.push(vec![2; 40]);
        q.push(vec![3; 10]);
        assert_eq!(q.bytes(), 90);
        // 90 + 70 > 100: drop the 40 and the next 40, keep the 10.
        let p = q.push(vec![4; 70]);
        assert_eq!(p, Pushed { dropped_oldest: 2, too_large: false });
        assert_eq!(q.bytes(), 80);
        assert_eq!(q.pop().map(|v| v[0]), Some(3));
        assert_eq!(q.pop().map(|v| v[0]), Some(4));
        assert!(q.is_empty());
    }

    #[test]
    fn oversized_request_is_dropped_alone() {
        let mut q = Queue::new(16, 100);
        q.push(vec![1; 50]);
        let p = q.push(vec![2; 101]);
        assert_eq!(p, Pushed { dropped_oldest: 0, too_large: true });
        assert_eq!(q.len(), 1);
        assert_eq!(q.bytes(), 50);
        // Exactly the limit fits (after evicting everything else).
        let p = q.push(vec![3; 100]);
        assert_eq!(p, Pushed { dropped_oldest: 1, too_large: false });
        assert_eq!(q.len(), 1);
    }

    /// The user guide states the queue's limits: it must state these.
    #[test]
    fn the_guide_states_the_production_limits() {
        let guide = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/guide.md");
        let guide = std::fs::read_to_string(guide).unwrap();
        let stated = format!(
            "bounded queue ({MAX_QUEUED_REQUESTS} requests, {} MiB)",
            MAX_QUEUED_BYTES >> 20
        );
        assert!(guide.contains(&stated), "docs/guide.md does not say {stated:?}");
    }
}
