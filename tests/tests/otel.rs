//! `ProfilingLayer` next to tracing-opentelemetry: samples get the
//! OpenTelemetry trace and span ids (the ones exported traces carry), and
//! tracing's own ids when no OpenTelemetry layer is installed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lowprof::trace::{ProfilingLayer, current};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

fn otel_ids(span: &tracing::Span) -> ([u8; 16], [u8; 8]) {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    assert!(sc.is_valid());
    (sc.trace_id().to_bytes(), sc.span_id().to_bytes())
}

#[test]
fn ids_come_from_the_opentelemetry_context() {
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("lowprof-test")))
        .with(ProfilingLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(current(), None);
        let request = tracing::info_span!("GET /users");
        {
            let _in_request = request.enter();
            let want = otel_ids(&request);
            assert_eq!(current(), Some(want), "the request span's OpenTelemetry ids");
            let query = tracing::info_span!("db_query");
            {
                let _in_query = query.enter();
                let (trace, span) = current().unwrap();
                assert_eq!((trace, span), otel_ids(&query), "the child's own span id");
                assert_eq!(trace, want.0, "in the request's trace");
                assert_ne!(span, want.1);
            }
            assert_eq!(current(), Some(want), "leaving the child restores the parent");
        }
        assert_eq!(current(), None, "leaving the request restores no context");
    });
}

#[test]
fn without_opentelemetry_the_tracing_ids_are_used() {
    let subscriber = tracing_subscriber::registry().with(ProfilingLayer::new());
    tracing::subscriber::with_default(subscriber, || {
        let a = tracing::info_span!("a");
        let b = tracing::info_span!("b");
        let _in_a = a.enter();
        let (trace_a, span_a) = current().unwrap();
        assert_eq!(span_a, a.id().unwrap().into_u64().to_be_bytes());
        drop(_in_a);
        let _in_b = b.enter();
        let (trace_b, _) = current().unwrap();
        // Two root spans: two traces.
        assert_ne!(trace_a, trace_b);
    });
}
