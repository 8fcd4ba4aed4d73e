//! A `tracing_subscriber::Layer` that keeps the thread's trace context in
//! step with the span it is in.
//!
//! ```text
//!  on_enter(span) ─► ids of span (computed once, kept in its extensions)
//!                 ─► PREVIOUS.push(set_raw(ids))      (thread-local stack)
//!  on_exit(span)  ─► set_raw(PREVIOUS.pop())
//!
//!  ids: tracing-opentelemetry's context, when its layer is installed
//!       (feature `opentelemetry`) and the span has a valid one;
//!       else trace = [process salt: 8 bytes][bijective mix of the root span's tracing id],
//!            span  = the span's tracing id
//!  span_name label: the root span's name (the endpoint, for a request span)
//! ```
//!
//! `tracing` span ids are unique among the spans open at one time in one
//! process; the random per-process salt keeps the trace ids of different
//! processes (and of two spans that reused one id at different times, as
//! far as the salt goes) apart. They are not W3C ids another service would
//! know: with OpenTelemetry tracing, use the `opentelemetry` feature.

use std::cell::RefCell;

use lowprof_core::event::ContextWords;
use tracing_core::Subscriber;
use tracing_core::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::{SpanName, set_raw, words_for};

thread_local! {
    /// The contexts entered spans replaced, innermost last.
    static PREVIOUS: RefCell<Vec<ContextWords>> = const { RefCell::new(Vec::new()) };
}

/// A span's context, kept in its extensions once computed.
#[derive(Clone, Copy)]
struct SpanContext(ContextWords);

/// Sets lowprof's trace context while a `tracing` span is entered.
///
/// ```no_run
/// # #[cfg(feature = "tracing")] {
/// use tracing_subscriber::prelude::*;
/// tracing_subscriber::registry().with(lowprof::trace::ProfilingLayer::new()).init();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ProfilingLayer {
    salt: [u8; 8],
    span_names: bool,
}

impl Default for ProfilingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ProfilingLayer {
    /// A layer that links samples to spans and labels them with their root
    /// span's name.
    pub fn new() -> Self {
        Self { salt: process_salt(), span_names: true }
    }

    /// Whether samples get a `span_name` label with the root span's name
    /// (default on).
    pub fn with_span_names(mut self, on: bool) -> Self {
        self.span_names = on;
        self
    }

    /// The context of span `id`, from OpenTelemetry when possible.
    fn compute<S>(&self, id: &Id, ctx: &Context<'_, S>) -> Option<ContextWords>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let span = ctx.span(id)?;
        let root = span.scope().from_root().next()?;
        let name = self.span_names.then(|| SpanName::new(root.name()));
        let (trace_id, span_id) = match otel_ids(id) {
            Some(ids) => ids,
            None => {
                // The low half is what ratio samplers look at: spread the
                // (small, sequential) root id over it, one to one.
                let mut trace_id = [0u8; 16];
                trace_id[..8].copy_from_slice(&self.salt);
                let low = mix(root.id().into_u64() ^ u64::from_be_bytes(self.salt));
                trace_id[8..].copy_from_slice(&low.to_be_bytes());
                (trace_id, id.into_u64().to_be_bytes())
            }
        };
        Some(words_for(trace_id, span_id, name))
    }
}

impl<S> Layer<S> for ProfilingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // Without OpenTelemetry the ids are known now; with it, the
        // OpenTelemetry layer may not have seen the span yet: at first entry.
        if cfg!(feature = "opentelemetry") {
            return;
        }
        if let Some(words) = self.compute(id, &ctx) {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(SpanContext(words));
            }
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let known = span.extensions().get::<SpanContext>().copied();
        let words = match known {
            Some(SpanContext(words)) => words,
            None => {
                // No extension lock is held while OpenTelemetry is asked.
                let Some(words) = self.compute(id, &ctx) else { return };
                span.extensions_mut().insert(SpanContext(words));
                words
            }
        };
        let previous = set_raw(words);
        let _ = PREVIOUS.try_with(|stack| stack.borrow_mut().push(previous));
    }

    fn on_exit(&self, _id: &Id, _ctx: Context<'_, S>) {
        let previous = PREVIOUS.try_with(|stack| stack.borrow_mut().pop()).ok().flatten();
        set_raw(previous.unwrap_or(lowprof_core::context::NONE));
    }
}

/// The span's OpenTelemetry trace and span ids, if tracing-opentelemetry's
/// layer is installed and gave it a valid context.
#[cfg(feature = "opentelemetry")]
fn otel_ids(id: &Id) -> Option<([u8; 16], [u8; 8])> {
    use opentelemetry::trace::TraceContextExt;
    let cx = tracing_core::dispatcher::get_default(|dispatch| {
        tracing_opentelemetry::get_otel_context(id, dispatch)
    })?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| (sc.trace_id().to_bytes(), sc.span_id().to_bytes()))
}

#[cfg(not(feature = "opentelemetry"))]
fn otel_ids(_id: &Id) -> Option<([u8; 16], [u8; 8])> {
    None
}

/// SplitMix64's finaliser: a bijection on u64 that spreads nearby values.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 8 random bytes for this process (the std hasher's random keys, the
/// process id and the time).
fn process_salt() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    let salt = h.finish().to_be_bytes();
    if salt == [0; 8] { [1; 8] } else { salt }
}
