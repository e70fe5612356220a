//! The Prometheus API's envelopes and value encoding:
//! `{"status":"success","data":...,"warnings":[...]}` and
//! `{"status":"error","errorType":"bad_data","error":"..."}`; sample values as
//! `[<unix seconds>, "<value>"]` with the timestamp written as Prometheus writes it
//! (`1700000000.5` is `1700000000.500`) and the value as Go's `FormatFloat(v, 'f', -1, 64)`.
//! Query results are written by hand: a range result can hold millions of points, and a
//! `serde_json::Value` per point would cost more than the query.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use metricsd_model::Labels;
use metricsd_promql::{QueryError, QueryResult, Value};

/// An error answered in Prometheus' shape. The status follows `errorType` as Prometheus
/// maps it: `bad_data` 400, `execution` 422, `canceled` 499, `timeout` 503, `not_found`
/// 404, `internal` and anything else (`unavailable` included) 500.
#[derive(Debug, Clone, PartialEq)]
pub struct PromError {
    /// `bad_data`, `execution`, `timeout`, `canceled`, `internal`, `unavailable`, `not_found`.
    pub error_type: &'static str,
    /// What is wrong.
    pub message: String,
}

impl PromError {
    fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        PromError {
            error_type,
            message: message.into(),
        }
    }

    /// A `bad_data` error (400).
    pub fn bad_data(message: impl Into<String>) -> Self {
        PromError::new("bad_data", message)
    }

    /// `invalid parameter "name": why` (400), Prometheus' text for a bad parameter.
    pub fn invalid_param(name: &str, why: impl std::fmt::Display) -> Self {
        PromError::bad_data(format!("invalid parameter \"{name}\": {why}"))
    }

    /// An `internal` error (500).
    pub fn internal(message: impl Into<String>) -> Self {
        PromError::new("internal", message)
    }

    /// An `unavailable` error (500, as Prometheus answers it), e.g. `admin APIs disabled`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        PromError::new("unavailable", message)
    }

    /// A query's error; parse and type errors name the `query` parameter, as Prometheus does.
    pub fn from_query(e: QueryError) -> Self {
        match e {
            QueryError::Parse(_) | QueryError::BadParam(_) => PromError::invalid_param("query", e),
            // The store's text names files of the data directory: logged, not sent.
            QueryError::Storage(_) => {
                tracing::error!(error = %e, "storage error in a query");
                PromError::new(e.error_type(), crate::error::STORAGE_ERROR_MESSAGE)
            }
            _ => PromError::new(e.error_type(), e.to_string()),
        }
    }

    /// A store error: bad input is `bad_data`, everything else `internal` (its text, which
    /// names files, is logged; the client gets a generic message).
    pub fn from_store(e: &metricsd_tsdb::Error) -> Self {
        Self::store_failure(e.kind(), e)
    }

    /// The answer to a read that failed through the storage seam.
    pub fn from_read(e: &metricsd_storage::Error) -> Self {
        Self::store_failure(e.kind(), e)
    }

    fn store_failure(kind: metricsd_storage::ErrorKind, e: &dyn std::fmt::Display) -> Self {
        match kind {
            metricsd_storage::ErrorKind::InvalidInput => PromError::bad_data(e.to_string()),
            _ => {
                tracing::error!(error = %e, "storage error");
                PromError::internal(crate::error::STORAGE_ERROR_MESSAGE)
            }
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        let code = match self.error_type {
            "bad_data" => 400,
            "execution" => 422,
            "canceled" => 499,
            "timeout" => 503,
            "not_found" => 404,
            _ => 500,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for PromError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl PromError {
    /// The response body: `{"status":"error","errorType":"...","error":"..."}`.
    pub fn body(&self) -> String {
        let mut body = String::from(r#"{"status":"error","errorType":"#);
        write_str(&mut body, self.error_type);
        body.push_str(r#","error":"#);
        write_str(&mut body, &self.message);
        body.push('}');
        body
    }
}

/// A task of the blocking pool that panicked or was cancelled ([`crate::blocking`]).
impl From<crate::tenant::TenantError> for PromError {
    fn from(e: crate::tenant::TenantError) -> Self {
        match e {
            crate::tenant::TenantError::Header => {
                PromError::bad_data(format!("invalid X-Scope-OrgID: {}", crate::tenant::RULE))
            }
            _ => PromError::invalid_param(e.field(), e.message()),
        }
    }
}

impl From<tokio::task::JoinError> for PromError {
    fn from(e: tokio::task::JoinError) -> Self {
        PromError::internal(format!("worker failed: {e}"))
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let body = self.body();
        json_response(self.status(), body)
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `{"status":"success","data":<data>}` plus `"warnings"` when there are any; `data` is
/// JSON text.
pub fn success_raw(data: &str, warnings: &[String]) -> Response {
    json_response(StatusCode::OK, success_body(data, warnings))
}

/// The body [`success_raw`] answers.
pub fn success_body(data: &str, warnings: &[String]) -> String {
    let mut body = String::with_capacity(data.len() + 64);
    body.push_str(r#"{"status":"success","data":"#);
    body.push_str(data);
    if !warnings.is_empty() {
        body.push_str(r#","warnings":["#);
        for (i, w) in warnings.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            write_str(&mut body, w);
        }
        body.push(']');
    }
    body.push('}');
    body
}

/// `{"status":"success","data":<data>}`.
pub fn success(data: serde_json::Value) -> Response {
    success_raw(&data.to_string(), &[])
}

/// Writes `s` as a JSON string.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Writes a ms timestamp as Prometheus does: seconds, then `.` and three digits of
/// milliseconds unless they are zero (`1700000000`, `1700000000.050`, `-1.500`).
pub fn write_ts(out: &mut String, t: i64) {
    let abs = t.unsigned_abs();
    if t < 0 {
        out.push('-');
    }
    let _ = write!(out, "{}", abs / 1000);
    let frac = abs % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

/// Writes `[t, "v"]`.
fn write_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_ts(out, t);
    out.push_str(",\"");
    metricsd_model::write_go_float(out, v);
    out.push_str("\"]");
}

/// Writes labels as a JSON object in label order.
pub fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, &l.name);
        out.push(':');
        write_str(out, &l.value);
    }
    out.push('}');
}

/// Writes a query's `data`: `{"resultType":...,"result":...}`, plus Prometheus' `stats`
/// object when `eval_seconds` is given (the request's `stats` parameter).
pub fn write_query_data(out: &mut String, res: &QueryResult, eval_seconds: Option<f64>) {
    out.push_str(r#"{"resultType":""#);
    out.push_str(res.value.result_type());
    out.push_str(r#"","result":"#);
    match &res.value {
        Value::Scalar { t, v } => write_point(out, *t, *v),
        Value::String { t, s } => {
            out.push('[');
            write_ts(out, *t);
            out.push(',');
            write_str(out, s);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                write_labels(out, &s.labels);
                out.push_str(r#","value":"#);
                write_point(out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                write_labels(out, &s.labels);
                out.push_str(r#","values":["#);
                for (j, p) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_point(out, p.t, p.v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    if let Some(secs) = eval_seconds {
        let st = &res.stats;
        let _ = write!(
            out,
            r#","stats":{{"timings":{{"evalTotalTime":{secs},"resultSortTime":0,"queryPreparationTime":0,"innerEvalTime":{secs},"execQueueTime":0,"execTotalTime":{secs}}},"samples":{{"totalQueryableSamples":{},"peakSamples":{}}}}}"#,
            st.samples_loaded, st.peak_points
        );
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use metricsd_model::Sample;
    use metricsd_promql::{QueryStats, RangeSeries, VectorSample};

    fn ts(t: i64) -> String {
        let mut s = String::new();
        write_ts(&mut s, t);
        s
    }

    fn val(v: f64) -> String {
        let mut s = String::new();
        metricsd_model::write_go_float(&mut s, v);
        s
    }

    #[test]
    fn timestamps_as_prometheus_writes_them() {
        assert_eq!(ts(1_700_000_000_000), "1700000000");
        assert_eq!(ts(1_700_000_000_500), "1700000000.500");
        assert_eq!(ts(1_700_000_000_050), "1700000000.050");
        assert_eq!(ts(1_700_000_000_005), "1700000000.005");
        assert_eq!(ts(0), "0");
        assert_eq!(ts(-1500), "-1.500");
        assert_eq!(ts(i64::MIN), "-9223372036854775.808");
    }

    #[test]
    fn values_as_go_format_float_f() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (0.0, "0"),
            (-0.0, "-0"),
            (0.1, "0.1"),
            (1.5e-7, "0.00000015"),
            (1e21, "1000000000000000000000"),
            (123456789.125, "123456789.125"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::MAX, &format!("{}", f64::MAX)),
        ];
        for (v, want) in cases {
            assert_eq!(val(*v), *want, "{v}");
        }
    }

    #[test]
    fn strings_escape() {
        let mut s = String::new();
        write_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        assert_eq!(serde_json::from_str::<String>(&s).unwrap(), "a\"b\\c\nd\u{1}é");
    }

    fn result(value: Value) -> QueryResult {
        QueryResult {
            value,
            warnings: vec![],
            stats: QueryStats::default(),
        }
    }

    #[test]
    fn query_data_shapes() {
        let data = |v: Value| {
            let mut s = String::new();
            write_query_data(&mut s, &result(v), None);
            serde_json::from_str::<serde_json::Value>(&s).unwrap()
        };
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(
            data(Value::Vector(vec![VectorSample {
                labels: l.clone(),
                t: 1_500,
                v: 1.0
            }])),
            serde_json::json!({"resultType": "vector", "result": [
                {"metric": {"__name__": "up", "job": "a\"b"}, "value": [1.5, "1"]}
            ]})
        );
        assert_eq!(
            data(Value::Matrix(vec![RangeSeries {
                labels: l,
                points: vec![Sample::new(1000, f64::NAN), Sample::new(2000, 2.5)]
            }])),
            serde_json::json!({"resultType": "matrix", "result": [
                {"metric": {"__name__": "up", "job": "a\"b"}, "values": [[1, "NaN"], [2, "2.5"]]}
            ]})
        );
        assert_eq!(
            data(Value::Scalar { t: 1000, v: -1.0 }),
            serde_json::json!({"resultType": "scalar", "result": [1, "-1"]})
        );
        assert_eq!(
            data(Value::String {
                t: 1000,
                s: "x".into()
            }),
            serde_json::json!({"resultType": "string", "result": [1, "x"]})
        );
        assert_eq!(
            data(Value::Vector(vec![])),
            serde_json::json!({"resultType": "vector", "result": []})
        );
        let mut s = String::new();
        write_query_data(&mut s, &result(Value::Vector(vec![])), Some(0.25));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["stats"]["timings"]["evalTotalTime"], 0.25);
        assert_eq!(v["stats"]["samples"]["totalQueryableSamples"], 0);
    }

    #[test]
    fn errors_map_to_prometheus_statuses() {
        let st = |e: PromError| e.status().as_u16();
        assert_eq!(st(PromError::bad_data("x")), 400);
        assert_eq!(st(PromError::from_query(QueryError::Execution("x".into()))), 422);
        assert_eq!(st(PromError::unavailable("admin APIs disabled")), 500);
        assert_eq!(st(PromError::from_query(QueryError::Canceled("eval"))), 499);
        assert_eq!(st(PromError::from_query(QueryError::Timeout("eval"))), 503);
        assert_eq!(st(PromError::from_query(QueryError::Storage("x".into()))), 500);
        let e = PromError::from_query(QueryError::Parse("parse error: x".into()));
        assert_eq!(e.message, "invalid parameter \"query\": parse error: x");
        assert_eq!((e.error_type, st(e)), ("bad_data", 400));
    }
}
