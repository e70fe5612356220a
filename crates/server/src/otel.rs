//! Our own request spans, exported over OTLP/HTTP (protobuf) when `enable_tracing` is on
//! (`ACCESS_ENABLE_TRACING`).
//!
//! - Endpoint and options come from the standard variables the exporter reads:
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), else `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   plus `/v1/traces`, else `http://localhost:4318/v1/traces`; `OTEL_EXPORTER_OTLP_TIMEOUT`
//!   (10 s), `OTEL_EXPORTER_OTLP_HEADERS`; the batch processor's `OTEL_BSP_*`. Plain HTTP
//!   only (no TLS client is built in): export to a local collector or agent.
//! - Each request's span (`observe` in `api`) continues the caller's W3C `traceparent`: it
//!   is a child of the caller's span, in the caller's trace, and sampled as the caller
//!   decided (parent-based sampling; requests without a parent are all sampled).
//! - Exporting never blocks or fails a request: spans go to the SDK's batch processor, a
//!   bounded queue (2048 spans, the surplus dropped) drained by its own thread, which sends
//!   with the blocking HTTP client. (The async client would panic there for want of a Tokio
//!   reactor: opentelemetry-rust#2673.) A collector that is down costs failed exports on
//!   that thread, nothing on the request path.
//! - `service.name` is `metricsd`.

use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// Builds the exporting tracer provider. Call [`SdkTracerProvider::shutdown`] at exit to
/// flush the spans still queued.
pub fn provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("cannot build the OTLP span exporter: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("metricsd")
                .build(),
        )
        .build())
}

/// The tracer for [`crate::logging::init`].
pub fn tracer(p: &SdkTracerProvider) -> SdkTracer {
    p.tracer("metricsd")
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the caller's span named by `traceparent`, if any. Without an
/// OpenTelemetry layer installed this does nothing.
pub(crate) fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(cx);
}
