//! The whole request path of `/api/v1/query` and `/api/v1/query_range` after HTTP: the
//! form values (`query`, `time`, `start`, `end`, `step`, `timeout`, `stats`) parsed as the
//! server's handlers parse them, the query evaluated over a small store, the answer encoded
//! (`metricsd_server::query_request`). Never panics; an answer is a success body of
//! Prometheus' shape, an error one of Prometheus' error types with its status.
//!
//! Input: `<path>?<url query>` then, after the first newline, a form-encoded body. A path
//! containing `range` is a range query, anything else an instant query. Seeds in
//! `fuzz/seeds/api_query`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use metricsd_server::{Config, query_request};
use metricsd_tsdb::Db;

#[path = "common/store.rs"]
mod common_store;

struct Store {
    _dir: std::path::PathBuf,
    db: Db,
    cfg: Config,
}

/// Samples from 0 to 3,000 s; queries are evaluated at "now" = 3,000 s.
const NOW_MS: i64 = 3_000_000;

fn store() -> &'static Store {
    static S: OnceLock<Store> = OnceLock::new();
    S.get_or_init(|| {
        let (dir, db) = common_store::open("api-query");
        // Bounds small enough for a fuzzer's pace: a query may take up to a second.
        let cfg = Config {
            query_timeout_seconds: 1,
            query_max_samples: 1_000_000,
            ..Config::default()
        };
        Store { _dir: dir, db, cfg }
    })
}

const ERROR_TYPES: [(&str, u16); 4] = [
    ("bad_data", 400),
    ("execution", 422),
    ("timeout", 503),
    ("canceled", 499),
];

fuzz_target!(|data: &[u8]| {
    if data.len() > 16 << 10 {
        return;
    }
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let (path, url_query) = match head.iter().position(|&b| b == b'?') {
        Some(i) => (&head[..i], Some(&head[i + 1..])),
        None => (head, None),
    };
    let range = path.windows(5).any(|w| w == b"range");
    let url_query = url_query.map(String::from_utf8_lossy);
    let s = store();
    match query_request(&s.cfg, &s.db, range, url_query.as_deref(), body, NOW_MS) {
        Ok(body) => {
            let v: serde_json::Value = serde_json::from_str(&body).expect("success body is JSON");
            assert_eq!(v["status"], "success", "{body}");
            let kind = v["data"]["resultType"].as_str().expect("data.resultType");
            assert!(["vector", "matrix", "scalar", "string"].contains(&kind), "{body}");
            assert!(!v["data"]["result"].is_null(), "{body}");
            if range {
                assert_eq!(kind, "matrix", "{body}");
            }
            if let Some(w) = v.get("warnings") {
                assert!(
                    w.as_array().is_some_and(|w| w.iter().all(|x| x.is_string())),
                    "{body}"
                );
            }
        }
        Err(e) => {
            // Prometheus' error types only; `internal` would be a bug here (the store is
            // healthy), `canceled` too (nothing cancels), but a client can see 499 only
            // by going away, so it is not listed as a failure.
            let status = ERROR_TYPES
                .iter()
                .find(|(t, _)| *t == e.error_type)
                .map(|(_, s)| *s)
                .unwrap_or_else(|| panic!("error type {:?}: {e}", e.error_type));
            assert_eq!(e.status().as_u16(), status, "{e}");
            assert!(!e.message.is_empty());
            let v: serde_json::Value = serde_json::from_str(&e.body()).expect("error body is JSON");
            assert_eq!(v["status"], "error");
            assert_eq!(v["errorType"], e.error_type);
            assert_eq!(v["error"], e.message.as_str());
        }
    }
});
