//! Trace-linked samples: which trace and span a CPU or heap sample was taken
//! in.
//!
//! ```text
//!  request thread                         SIGPROF handler / allocator slow path
//!  let _g = set_context(trace, span);     (same thread, interrupting it)
//!     │ strategy.should_link(trace)?          │
//!     ▼                                       ▼
//!  CONTEXT (thread-local ContextSlot) ◄── lowprof_core::context::current()
//!     seq │ trace_hi │ trace_lo │ span │ name key      (seqlock: never waits)
//!                                             │
//!                                             ▼ record words ctx0..ctx3
//!  drainer: pprof labels trace_id, span_id (hex), span_name; OTLP Link table
//! ```
//!
//! The slot is a `const`-initialised, `Drop`-free thread-local, so the signal
//! handler and the allocator read it without locks, allocation or lazy
//! initialisation (`lowprof_core::context` has the sequence-counter
//! protocol that keeps their reads untorn). A [`ContextGuard`] puts
//! back what was there before when it is dropped, so nested spans restore
//! their parent.
//!
//! Whether a trace's samples carry its ids is decided by the process-wide
//! [`SamplingStrategy`] (default [`AlwaysSample`]) when the context is set;
//! samples of unlinked traces are still profiled, only without the ids.

mod names;
mod strategy;
#[cfg(feature = "tracing")]
mod tracing_layer;

use core::marker::PhantomData;

use lowprof_core::context::{self, ContextSlot, NONE};
use lowprof_core::event::ContextWords;

pub use names::SpanName;
pub(crate) use names::{
    lock_names_for_fork, name_of, unlock_names_in_child, unlock_names_in_parent,
};
pub use strategy::{
    AlwaysSample, NeverSample, ProbabilisticSampler, RateSampler, SamplingStrategy,
    set_sampling_strategy,
};
#[cfg(feature = "tracing")]
pub use tracing_layer::ProfilingLayer;

/// The pprof label holding a sample's trace id (32 lower-case hex digits).
/// OTLP profiles carry it as the sample's `Link` instead.
pub const TRACE_ID_LABEL: &str = "trace_id";
/// The pprof label holding a sample's span id (16 lower-case hex digits).
pub const SPAN_ID_LABEL: &str = "span_id";
/// The pprof label holding the name of the sample's root span.
pub const SPAN_NAME_LABEL: &str = "span_name";

thread_local! {
    /// This thread's trace context. `const`-initialised and `Drop`-free:
    /// access is a plain TLS offset, safe in a signal handler.
    static CONTEXT: ContextSlot = const { ContextSlot::new() };
}

/// The reader lowprof's samplers call (registered once, on first use).
fn read_context() -> ContextWords {
    CONTEXT.try_with(ContextSlot::get).unwrap_or(NONE)
}

fn register_reader() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if !REGISTERED.load(Ordering::Relaxed) {
        context::set_source(read_context);
        REGISTERED.store(true, Ordering::Relaxed);
    }
}

/// Replaces the thread's context with `words`, returning the old one.
fn swap(words: ContextWords) -> ContextWords {
    register_reader();
    CONTEXT
        .try_with(|slot| {
            let old = slot.get();
            slot.set(words);
            old
        })
        .unwrap_or(NONE)
}

/// The words for a context, after the sampling strategy's decision.
fn words_for(trace_id: [u8; 16], span_id: [u8; 8], name: Option<SpanName>) -> ContextWords {
    let name_key = name.map_or(0, SpanName::key);
    if trace_id == [0; 16] || span_id == [0; 8] || !strategy::should_link(&trace_id) {
        // Invalid ids (all zero in W3C) or a trace the strategy leaves out:
        // no link, but the span name still groups the samples.
        return [0, 0, 0, name_key];
    }
    context::pack(trace_id, span_id, name_key)
}

/// Marks the calling thread as working for span `span_id` of trace
/// `trace_id` (W3C ids, as OpenTelemetry's `TraceId::to_bytes()` and
/// `SpanId::to_bytes()` give them) until the guard is dropped. CPU and heap
/// samples taken meanwhile carry the ids, if the [`SamplingStrategy`] links
/// this trace.
///
/// Cheap (a few stores; no allocation, no lock with the default strategy),
/// so it can be called on every span entry.
///
/// ```
/// let trace_id = [0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36];
/// let span_id = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
/// let _guard = lowprof::trace::set_context(trace_id, span_id);
/// // … handle the request: its samples link to the span …
/// ```
#[must_use = "the context is reset when the guard is dropped"]
pub fn set_context(trace_id: [u8; 16], span_id: [u8; 8]) -> ContextGuard {
    ContextGuard { previous: swap(words_for(trace_id, span_id, None)), _thread_bound: PhantomData }
}

/// [`set_context`] with a span name: samples also get a `span_name` label,
/// so they can be grouped by endpoint (`go tool pprof -tagfocus
/// span_name=GET_/users`) whether or not their trace is linked.
#[must_use = "the context is reset when the guard is dropped"]
pub fn set_context_named(trace_id: [u8; 16], span_id: [u8; 8], name: SpanName) -> ContextGuard {
    ContextGuard {
        previous: swap(words_for(trace_id, span_id, Some(name))),
        _thread_bound: PhantomData,
    }
}

/// The calling thread's context as samples see it: `(trace_id, span_id)`, or
/// `None` when no linked context is set.
pub fn current() -> Option<([u8; 16], [u8; 8])> {
    let words = CONTEXT.try_with(ContextSlot::get).unwrap_or(NONE);
    (words[..3] != [0; 3]).then(|| context::unpack(words))
}

/// Restores the thread's previous trace context when dropped. Not `Send`:
/// the context belongs to the thread that set it.
#[derive(Debug)]
pub struct ContextGuard {
    previous: ContextWords,
    _thread_bound: PhantomData<*const ()>,
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        swap(self.previous);
    }
}

/// Sets the context without a guard (the `tracing` layer keeps its own
/// stack of previous contexts, since enter and exit are separate calls).
#[cfg(feature = "tracing")]
fn set_raw(words: ContextWords) -> ContextWords {
    swap(words)
}

/// Hex of the ids, as pprof labels carry them.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: [u8; 16] = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ];
    const SPAN: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

    #[test]
    fn guards_nest_and_restore() {
        assert_eq!(current(), None);
        {
            let _outer = set_context(TRACE, SPAN);
            assert_eq!(current(), Some((TRACE, SPAN)));
            assert_eq!(lowprof_core::context::current(), context::pack(TRACE, SPAN, 0));
            {
                let _inner = set_context(TRACE, [1; 8]);
                assert_eq!(current(), Some((TRACE, [1; 8])));
            }
            assert_eq!(current(), Some((TRACE, SPAN)), "inner guard restored the outer span");
        }
        assert_eq!(current(), None);
        assert_eq!(lowprof_core::context::current(), NONE);
    }

    #[test]
    fn all_zero_ids_are_no_link_but_keep_the_name() {
        let name = SpanName::new("GET /users");
        let _g = set_context_named([0; 16], SPAN, name);
        assert_eq!(current(), None);
        assert_eq!(lowprof_core::context::current(), [0, 0, 0, name.key()]);
    }

    #[test]
    fn other_threads_have_their_own_context() {
        let _g = set_context(TRACE, SPAN);
        let seen = std::thread::spawn(current).join().unwrap();
        assert_eq!(seen, None);
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&SPAN), "00f067aa0ba902b7");
    }
}
