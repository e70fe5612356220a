//! The small store the query fuzz targets (`api_query`, `promql_eval`) evaluate over: eight
//! series of 200 samples from 0 s at 10–60 s steps, counters, gauges, a NaN series and a
//! histogram's buckets. Shared, so both targets meet the same data.

use metricsd_model::{Labels, Sample};
use metricsd_tsdb::{Db, DbOptions};

/// Opens a fresh store under the temp directory (`metricsd-fuzz-<name>-<pid>`) and fills it.
pub fn open(name: &str) -> (std::path::PathBuf, Db) {
    let dir = std::env::temp_dir().join(format!("metricsd-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (db, _) = Db::open(&dir, "fuzz", DbOptions::default()).unwrap();
    let mut app = db.appender();
    for (name, job, inst, step, f) in [
        ("up", "a", "1", 15_000i64, 1.0),
        ("up", "b", "2", 30_000, 1.0),
        ("x", "a", "1", 15_000, 3.0),
        ("x_total", "a", "1", 15_000, 3.0),
        ("x_total", "b", "1", 10_000, -1.5),
        ("y", "a", "2", 60_000, f64::NAN),
        ("h_bucket", "a", "+Inf", 15_000, 2.0),
        ("h_bucket", "a", "0.5", 15_000, 1.0),
    ] {
        let l = Labels::from_pairs([("__name__", name), ("job", job), ("instance", inst), ("le", inst)]);
        let s: Vec<Sample> = (0..200)
            .map(|k| Sample::new(k * step, (k % 37) as f64 * f))
            .collect();
        app.append_many(l, &s);
    }
    app.commit().unwrap();
    (dir, db)
}
