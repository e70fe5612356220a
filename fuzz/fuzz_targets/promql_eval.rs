//! Any query text, evaluated as an instant and a short range query over a small store,
//! answers a result or an error and never panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use metricsd_promql::{Engine, EngineOptions, QueryContext};
use metricsd_tsdb::Db;

#[path = "common/store.rs"]
mod common_store;

struct Store {
    _dir: std::path::PathBuf,
    db: Db,
}

fn store() -> &'static Store {
    static S: OnceLock<Store> = OnceLock::new();
    S.get_or_init(|| {
        let (dir, db) = common_store::open("promql");
        Store { _dir: dir, db }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else { return };
    if q.len() > 512 {
        return;
    }
    let engine = Engine::new(EngineOptions {
        max_samples: 200_000,
        timeout: std::time::Duration::from_millis(500),
        ..EngineOptions::default()
    });
    let ctx = QueryContext::default();
    let db = &store().db;
    let _ = engine.instant_query(db, q, 1_000_000, &ctx);
    let _ = engine.range_query(db, q, 0, 3_000_000, 60_000, &ctx);
});
