//! JSON log lines: `timestamp`, `level`, `service`, `env`, `message`, the fields of the
//! enclosing spans (`request_id`, `trace_id`, `route`, ...) and of the event, flat in one
//! object per line on stdout. `service` is `metricsd`, or the event's own `service` field.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().to_owned(), Value::String(v.to_owned()));
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.insert(
            f.name().to_owned(),
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        );
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0
            .insert(f.name().to_owned(), Value::String(format!("{v:?}")));
    }
}

struct JsonLayer {
    env: String,
}

impl<S> tracing_subscriber::Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        // Span naming for the OTLP export, not log fields.
        f.0.retain(|k, _| !k.starts_with("otel.") && !k.starts_with("http."));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(f) = ext.get_mut::<Fields>() {
                values.record(f);
                f.0.retain(|k, _| !k.starts_with("otel.") && !k.starts_with("http."));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut m = Map::new();
        m.insert(
            "timestamp".into(),
            Value::String(jiff::Timestamp::now().to_string()),
        );
        m.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        m.insert("service".into(), Value::String("metricsd".into()));
        m.insert("env".into(), Value::String(self.env.clone()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    for (k, v) in &f.0 {
                        if !v.is_null() && v.as_str() != Some("") {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        let mut f = Fields::default();
        event.record(&mut f);
        for (k, v) in f.0 {
            // Keep `timestamp` and `level` ours: an event field so named becomes `field_<name>`.
            // An event's `service` is the line's `service`: seed 000's "Metric collected
            // successfully" line names the tracked item's service there.
            let k = if matches!(k.as_str(), "timestamp" | "level") {
                format!("field_{k}")
            } else {
                k
            };
            m.insert(k, v);
        }
        m.insert(
            "target".into(),
            Value::String(event.metadata().target().to_owned()),
        );
        let mut line = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
        line.push(b'\n');
        let _ = std::io::stdout().lock().write_all(&line);
    }
}

/// Installs the JSON logger at `level` (trace..error), and with `otel` the export of our
/// request spans (see [`crate::otel`]). Safe to call once per process.
pub fn init(level: &str, env: &str, otel: Option<opentelemetry_sdk::trace::SdkTracer>) {
    let lvl: tracing::Level = level.parse().unwrap_or(tracing::Level::INFO);
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(lvl)
        .with_target("hyper", tracing::Level::WARN)
        .with_target("h2", tracing::Level::WARN);
    // Only our request spans are exported, whatever the log level: not hyper's, not debug
    // spans of the store.
    let spans = otel.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.is_span() && m.name() == "request" && m.target().starts_with("metricsd_server")
            }))
    });
    let _ = tracing_subscriber::registry()
        .with(JsonLayer { env: env.to_owned() }.with_filter(filter))
        .with(spans)
        .try_init();
}
