//! `metricsd query` and `metricsd query-range`: send the query to a running server's
//! Prometheus API (a form-encoded POST, so long expressions fit) and print the result as a
//! table or as the server's JSON. The server's error message is printed as it gave it.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// Where and how to query.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// URL of the metricsd server.
    #[arg(long, env = "METRICSD_SERVER", default_value = "http://localhost:8012")]
    server: String,
    /// Tenant to query (sent as X-Scope-OrgID) [default: the server's default tenant].
    #[arg(long)]
    tenant: Option<String>,
    /// Query timeout, a duration (30s) or seconds; the server's own limit still applies.
    #[arg(long)]
    timeout: Option<String>,
    /// Output: a table (series, value, timestamp) or the server's JSON.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

/// Sends `params` to `path` and prints the answer. 0 when the query succeeded, 1 otherwise.
pub fn run(args: &ClientArgs, path: &str, mut params: Vec<(&'static str, String)>) -> ExitCode {
    if let Some(t) = &args.timeout {
        params.push(("timeout", t.clone()));
    }
    let url = format!("{}{path}", args.server.trim_end_matches('/'));
    let (status, body) = match post(&url, args.tenant.as_deref(), &params) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("metricsd: cannot query {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(v) = serde_json::from_str::<Value>(&body) else {
        eprintln!("metricsd: HTTP {status} from {url}: {}", body.trim());
        return ExitCode::FAILURE;
    };
    if v["status"] != "success" {
        let kind = v["errorType"].as_str().unwrap_or("error");
        let msg = v["error"].as_str().unwrap_or(body.trim());
        eprintln!("metricsd: {kind}: {msg}");
        return ExitCode::FAILURE;
    }
    if let Some(ws) = v["warnings"].as_array() {
        for w in ws {
            eprintln!("warning: {}", w.as_str().unwrap_or_default());
        }
    }
    match args.output {
        Output::Json => println!("{}", body.trim_end()),
        Output::Table => match table(&v["data"]) {
            Ok(t) if t.is_empty() => eprintln!("empty result"),
            Ok(t) => print!("{t}"),
            Err(e) => {
                eprintln!("metricsd: unexpected answer from {url}: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    ExitCode::SUCCESS
}

/// POSTs the form with the binary's one HTTP client (reqwest, which the OTLP exporter uses
/// too); error statuses carry the server's message and are read like any answer.
fn post(url: &str, tenant: Option<&str>, params: &[(&str, String)]) -> Result<(u16, String), reqwest::Error> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // A query may run for up to the server's query timeout; the server bounds it.
        .timeout(None)
        .build()?;
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let mut rq = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(t) = tenant {
        rq = rq.header("X-Scope-OrgID", t);
    }
    let resp = rq.send()?;
    let status = resp.status().as_u16();
    let body = resp.text()?;
    Ok((status, body))
}

/// The rows of a result: series, value, timestamp; one row per point of a matrix.
fn table(data: &Value) -> Result<String, String> {
    let mut rows: Vec<[String; 3]> = Vec::new();
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("vector") => {
            for s in result.as_array().ok_or("result is not a list")? {
                let (t, v) = point(&s["value"])?;
                rows.push([series(&s["metric"]), v, t]);
            }
        }
        Some("matrix") => {
            for s in result.as_array().ok_or("result is not a list")? {
                let name = series(&s["metric"]);
                for p in s["values"].as_array().ok_or("values is not a list")? {
                    let (t, v) = point(p)?;
                    rows.push([name.clone(), v, t]);
                }
            }
        }
        Some("scalar") => {
            let (t, v) = point(result)?;
            rows.push(["scalar".into(), v, t]);
        }
        Some("string") => {
            let (t, v) = point(result)?;
            rows.push(["string".into(), v, t]);
        }
        other => return Err(format!("unknown resultType {other:?}")),
    }
    if rows.is_empty() {
        return Ok(String::new());
    }
    let header = ["SERIES".to_string(), "VALUE".into(), "TIMESTAMP".into()];
    let w0 = rows
        .iter()
        .chain([&header])
        .map(|r| r[0].chars().count())
        .max()
        .unwrap_or(0);
    let w1 = rows
        .iter()
        .chain([&header])
        .map(|r| r[1].chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let _ = writeln!(out, "{:<w0$}  {:<w1$}  {}", r[0], r[1], r[2]);
    }
    Ok(out)
}

/// `[1700000000.5, "1"]` as (RFC 3339 time, value text).
fn point(p: &Value) -> Result<(String, String), String> {
    let secs = p[0].as_f64().ok_or("a point without a timestamp")?;
    let v = p[1].as_str().ok_or("a point without a value")?;
    let ms = (secs * 1000.0).round() as i64;
    let t = jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| secs.to_string());
    Ok((t, v.to_owned()))
}

/// A series as PromQL writes it: `name{label="value",...}`.
fn series(metric: &Value) -> String {
    let Some(m) = metric.as_object() else {
        return "{}".into();
    };
    let mut out = m
        .get("__name__")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let labels: Vec<String> = m
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| {
            let v = v.as_str().unwrap_or_default();
            let esc = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            format!("{k}=\"{esc}\"")
        })
        .collect();
    if !labels.is_empty() || out.is_empty() {
        out.push('{');
        out.push_str(&labels.join(","));
        out.push('}');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_of_each_result_type() {
        let t = table(&json!({"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "a\"b"}, "value": [1700000000.5, "1"]},
            {"metric": {}, "value": [1700000000, "NaN"]},
        ]}))
        .unwrap();
        assert_eq!(
            t,
            "SERIES          VALUE  TIMESTAMP\n\
             up{job=\"a\\\"b\"}  1      2023-11-14T22:13:20.5Z\n\
             {}              NaN    2023-11-14T22:13:20Z\n"
        );
        let t = table(&json!({"resultType": "matrix", "result": [
            {"metric": {"job": "x"}, "values": [[1, "1"], [2, "2"]]},
        ]}))
        .unwrap();
        assert_eq!(t.lines().count(), 3);
        assert!(t.lines().nth(2).unwrap().starts_with("{job=\"x\"}  2"), "{t}");
        let t = table(&json!({"resultType": "scalar", "result": [1, "3.5"]})).unwrap();
        assert!(t.contains("scalar  3.5"), "{t}");
        assert_eq!(table(&json!({"resultType": "vector", "result": []})).unwrap(), "");
        assert!(table(&json!({"resultType": "nope"})).is_err());
    }
}
