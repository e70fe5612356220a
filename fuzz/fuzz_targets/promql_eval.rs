//! Any query text, evaluated as an instant and a short range query over a small store,
//! answers a result or an error and never panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use metricsd_model::{Labels, Sample};
use metricsd_promql::{Engine, EngineOptions, QueryContext};
use metricsd_tsdb::{Db, DbOptions};

struct Store {
    _dir: std::path::PathBuf,
    db: Db,
}

fn store() -> &'static Store {
    static S: OnceLock<Store> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("metricsd-fuzz-promql-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (db, _) = Db::open(&dir, "fuzz", DbOptions::default()).unwrap();
        let mut app = db.appender();
        for (name, job, inst, step, f) in [
            ("up", "a", "1", 15_000i64, 1.0),
            ("up", "b", "2", 30_000, 1.0),
            ("x_total", "a", "1", 15_000, 3.0),
            ("x_total", "b", "1", 10_000, -1.5),
            ("y", "a", "2", 60_000, f64::NAN),
            ("h_bucket", "a", "+Inf", 15_000, 2.0),
            ("h_bucket", "a", "0.5", 15_000, 1.0),
        ] {
            let l = Labels::from_pairs([("__name__", name), ("job", job), ("instance", inst), ("le", inst)]);
            let s: Vec<Sample> = (0..200).map(|k| Sample::new(k * step, (k % 37) as f64 * f)).collect();
            app.append_many(l, &s);
        }
        app.commit().unwrap();
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
