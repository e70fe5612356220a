//! Opening a block index file of arbitrary bytes never panics, and neither does reading
//! every series, label name, label value and postings list it claims to have.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metricsd_tsdb::block::BlockIndex;
use metricsd_tsdb::index::IndexReader;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("metricsd-fuzz-index-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("index");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(ix) = BlockIndex::open(&path) else { return };
    if let Ok(names) = ix.label_names() {
        for n in names.iter().take(64) {
            let _ = ix.for_each_label_value(n, &mut |v| {
                let _ = ix.postings(n, v);
            });
        }
    }
    for id in 0..ix.num_series().min(1024) {
        let _ = ix.series_labels(id);
    }
    let _ = ix.all_postings();
});
