//! A client of the Prometheus HTTP query API, and the parsed shape of its answers.
//!
//! [`parse_answer`] is pure (status and body in, [`Answer`] out) so the comparator's inputs
//! can be tested without a server. Shapes as Prometheus documents them
//! (`docs/querying/api.md`): `{"status":"success","data":{"resultType":..,"result":..}}` or
//! `{"status":"error","errorType":..,"error":..}`; sample values are strings (`"NaN"`,
//! `"+Inf"`, `"-Inf"` or a Go float), timestamps are Unix seconds as JSON numbers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::queries::Params;

/// A label set (`__name__` included when present).
pub type LabelSet = BTreeMap<String, String>;

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    /// Labels.
    pub labels: LabelSet,
    /// Timestamp, ms.
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// One series of a range result.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSeries {
    /// Labels.
    pub labels: LabelSet,
    /// `(timestamp ms, value)` in the answer's order.
    pub points: Vec<(i64, f64)>,
}

/// A successful result.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// `resultType: scalar`.
    Scalar {
        /// Timestamp, ms.
        t: i64,
        /// Value.
        v: f64,
    },
    /// `resultType: string`.
    String {
        /// Timestamp, ms.
        t: i64,
        /// Value.
        s: String,
    },
    /// `resultType: vector`, in the answer's order.
    Vector(Vec<VectorSample>),
    /// `resultType: matrix`, in the answer's order.
    Matrix(Vec<MatrixSeries>),
}

impl QueryValue {
    /// The API's `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            QueryValue::Scalar { .. } => "scalar",
            QueryValue::String { .. } => "string",
            QueryValue::Vector(_) => "vector",
            QueryValue::Matrix(_) => "matrix",
        }
    }
}

/// What a server answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `status: success`.
    Ok(QueryValue),
    /// `status: error`.
    Err {
        /// `errorType` (`bad_data`, `execution`, ...).
        error_type: String,
        /// `error`, the message.
        error: String,
        /// The HTTP status.
        status: u16,
    },
    /// No answer in the API's shape: transport failure, not JSON, missing fields.
    Broken(String),
}

/// Parses a Prometheus API answer.
pub fn parse_answer(status: u16, body: &str) -> Answer {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return Answer::Broken(format!(
                "HTTP {status}, body is not JSON ({e}): {}",
                abbreviate(body)
            ));
        }
    };
    match v["status"].as_str() {
        Some("success") => match parse_data(&v["data"]) {
            Ok(qv) => Answer::Ok(qv),
            Err(e) => Answer::Broken(format!("HTTP {status}: {e}: {}", abbreviate(body))),
        },
        Some("error") => Answer::Err {
            error_type: v["errorType"].as_str().unwrap_or("").to_string(),
            error: v["error"].as_str().unwrap_or("").to_string(),
            status,
        },
        _ => Answer::Broken(format!("HTTP {status}, no status field: {}", abbreviate(body))),
    }
}

/// Server text quoted in a report, cut to 300 bytes.
fn abbreviate(s: &str) -> String {
    metricsd_model::abbreviate_to(s.trim(), 300)
}

fn parse_data(d: &Value) -> Result<QueryValue, String> {
    let result = &d["result"];
    match d["resultType"].as_str() {
        Some("scalar") => {
            let (t, v) = point(result)?;
            Ok(QueryValue::Scalar { t, v })
        }
        Some("string") => {
            let a = result
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or("string result is not [t, \"s\"]")?;
            Ok(QueryValue::String {
                t: timestamp(&a[0])?,
                s: a[1].as_str().ok_or("string value is not a string")?.to_string(),
            })
        }
        Some("vector") => {
            let items = result.as_array().ok_or("vector result is not an array")?;
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                let (t, v) = point(&it["value"])?;
                out.push(VectorSample {
                    labels: labels(&it["metric"])?,
                    t,
                    v,
                });
            }
            Ok(QueryValue::Vector(out))
        }
        Some("matrix") => {
            let items = result.as_array().ok_or("matrix result is not an array")?;
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                let pts = it["values"].as_array().ok_or("matrix series without values")?;
                out.push(MatrixSeries {
                    labels: labels(&it["metric"])?,
                    points: pts.iter().map(point).collect::<Result<_, _>>()?,
                });
            }
            Ok(QueryValue::Matrix(out))
        }
        other => Err(format!("unknown resultType {other:?}")),
    }
}

fn labels(m: &Value) -> Result<LabelSet, String> {
    let obj = m.as_object().ok_or("metric is not an object")?;
    obj.iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                v.as_str().ok_or("label value is not a string")?.to_string(),
            ))
        })
        .collect()
}

fn point(p: &Value) -> Result<(i64, f64), String> {
    let a = p
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or("sample is not [t, \"v\"]")?;
    let v = a[1].as_str().ok_or("sample value is not a string")?;
    Ok((
        timestamp(&a[0])?,
        parse_value(v).ok_or_else(|| format!("bad sample value {v:?}"))?,
    ))
}

/// Unix seconds (a JSON number with up to 3 decimals) to ms.
fn timestamp(t: &Value) -> Result<i64, String> {
    let s = t.as_f64().ok_or("timestamp is not a number")?;
    Ok((s * 1000.0).round() as i64)
}

/// A sample value as Prometheus writes it: `NaN`, `+Inf`, `-Inf` or a float.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) => s.parse().ok(),
        _ => None,
    }
}

/// A Prometheus-API-compatible server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `base` (`http://host:port`, no trailing slash needed).
    pub fn new(base: &str, timeout: Duration) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent: crate::http_agent(timeout),
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The GET URL of `query` at `params` (what [`Client::query`] requests; for reports).
    pub fn url(&self, query: &str, params: &Params) -> String {
        let mut u = format!("{}{}?query={}", self.base, params.path(), urlencode(query));
        for (k, v) in params.form() {
            u += &format!("&{k}={}", urlencode(&v));
        }
        u
    }

    /// Runs `query` at `params`.
    pub fn query(&self, query: &str, params: &Params) -> Answer {
        match self.query_raw(query, params) {
            Ok((status, body)) => parse_answer(status, &body),
            Err(e) => Answer::Broken(e),
        }
    }

    /// Runs `query` at `params`; the HTTP status and the whole body (up to 1 GiB), unparsed.
    pub fn query_raw(&self, query: &str, params: &Params) -> Result<(u16, String), String> {
        let mut rq = self
            .agent
            .get(format!("{}{}", self.base, params.path()))
            .query("query", query);
        for (k, v) in params.form() {
            rq = rq.query(k, v);
        }
        let mut r = rq.call().map_err(|e| format!("request failed: {e}"))?;
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| format!("HTTP {status}, reading the body: {e}"))?;
        Ok((status, body))
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_result_type_and_errors() {
        let a = parse_answer(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"+Inf"]}}"#,
        );
        assert_eq!(
            a,
            Answer::Ok(QueryValue::Scalar {
                t: 1_700_000_000_500,
                v: f64::INFINITY
            })
        );
        let a = parse_answer(
            200,
            r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
        );
        assert_eq!(
            a,
            Answer::Ok(QueryValue::String {
                t: 1000,
                s: "x".into()
            })
        );
        let a = parse_answer(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b\"c"},"value":[1.001,"-1e-05"]}]}}"#,
        );
        let Answer::Ok(QueryValue::Vector(v)) = a else {
            panic!("{a:?}")
        };
        assert_eq!((v[0].labels["a"].as_str(), v[0].t, v[0].v), ("b\"c", 1001, -1e-5));
        let a = parse_answer(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"NaN"],[2,"-Inf"]]}]}}"#,
        );
        let Answer::Ok(QueryValue::Matrix(m)) = a else {
            panic!("{a:?}")
        };
        assert!(m[0].points[0].1.is_nan());
        assert_eq!(m[0].points[1], (2000, f64::NEG_INFINITY));
        let a = parse_answer(
            422,
            r#"{"status":"error","errorType":"execution","error":"many-to-many"}"#,
        );
        assert!(matches!(a, Answer::Err { ref error_type, status: 422, .. } if error_type == "execution"));
        assert!(matches!(
            parse_answer(404, "404 page not found"),
            Answer::Broken(_)
        ));
        assert!(matches!(
            parse_answer(
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"one"]}]}}"#
            ),
            Answer::Broken(_)
        ));
    }

    #[test]
    fn urls_are_encoded() {
        assert_eq!(urlencode("a{b=\"c d\"}+1"), "a%7Bb%3D%22c%20d%22%7D%2B1");
        let c = Client::new("http://h:1/", Duration::from_secs(1));
        assert_eq!(
            c.url("up", &Params::Instant { time_ms: 1500 }),
            "http://h:1/api/v1/query?query=up&time=1.500"
        );
    }
}
