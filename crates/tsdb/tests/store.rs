//! Store-level tests: append rules, durability across SIGKILL, corruption, and a model-based
//! property test over random append / cut / compact / restart / delete sequences.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use metricsd_model::{Labels, MatchOp, Matcher, Sample};
use metricsd_tsdb::{Db, DbOptions, Error, Queryable, Storage};
use proptest::prelude::*;

fn labels(name: &str, i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", name.to_owned()),
        ("i", i.to_string()),
        ("job", "test".to_owned()),
    ])
}

fn small_opts() -> DbOptions {
    DbOptions {
        block_range_ms: 1000,
        retention_ms: 0,
        ooo_window_ms: 5000,
        ..DbOptions::default()
    }
}

fn read_all(db: &Db) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    let mut out = BTreeMap::new();
    for s in q
        .select(&[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()])
        .unwrap()
    {
        let v: Vec<(i64, u64)> = s
            .samples()
            .unwrap()
            .iter()
            .map(|x| (x.t, x.v.to_bits()))
            .collect();
        if !v.is_empty() {
            out.insert(s.labels().clone(), v);
        }
    }
    out
}

#[test]
fn append_rules_follow_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        ooo_window_ms: 0,
        ..DbOptions::default()
    };
    let (db, _) = Db::open(dir.path(), "default", opts).unwrap();
    let l = labels("m", 0);
    let mut a = db.appender();
    a.append(l.clone(), 1000, 1.0);
    a.append(l.clone(), 2000, 2.0);
    assert_eq!(a.commit().unwrap().accepted, 2);

    let mut a = db.appender();
    a.append(l.clone(), 2000, 2.0); // duplicate: accepted, nothing stored
    a.append(l.clone(), 2000, 3.0); // conflicting duplicate
    a.append(l.clone(), 1500, 1.5); // out of order, window 0
    a.append(l.clone(), 3000, f64::from_bits(metricsd_model::STALE_NAN));
    let r = a.commit().unwrap();
    assert_eq!(r.accepted, 2, "{r:?}");
    assert_eq!(r.duplicates, 1);
    assert!(
        matches!(r.rejected[0], (1, Error::DuplicateSample { t: 2000, .. })),
        "{r:?}"
    );
    assert!(
        matches!(
            r.rejected[1],
            (
                2,
                Error::OutOfOrder {
                    t: 1500,
                    last: 2000,
                    ..
                }
            )
        ),
        "{r:?}"
    );
    let all = read_all(&db);
    assert_eq!(
        all[&l],
        vec![
            (1000, 1f64.to_bits()),
            (2000, 2f64.to_bits()),
            (3000, metricsd_model::STALE_NAN)
        ]
    );
}

#[test]
fn out_of_order_window_accepts_recent_and_rejects_old() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        ooo_window_ms: 10_000,
        ..DbOptions::default()
    };
    let (db, _) = Db::open(dir.path(), "default", opts).unwrap();
    let l = labels("m", 0);
    let mut a = db.appender();
    a.append(l.clone(), 100_000, 1.0);
    a.commit().unwrap();
    let mut a = db.appender();
    a.append(l.clone(), 95_000, 2.0); // within the window
    a.append(l.clone(), 80_000, 3.0); // too old
    let r = a.commit().unwrap();
    assert_eq!((r.accepted, r.out_of_order), (1, 1), "{r:?}");
    assert!(matches!(r.rejected[0].1, Error::OutOfBounds { t: 80_000, .. }));
    assert_eq!(
        read_all(&db)[&l].iter().map(|x| x.0).collect::<Vec<_>>(),
        [95_000, 100_000]
    );
}

#[test]
fn limits_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        max_series: 2,
        ..DbOptions::default()
    };
    let (db, _) = Db::open(dir.path(), "t1", opts).unwrap();
    let mut a = db.appender();
    for i in 0..3 {
        a.append(labels("m", i), 1000, 1.0);
    }
    let mut many = vec![("__name__".to_owned(), "m".to_owned())];
    many.extend((0..100).map(|i| (format!("l{i}"), "v".to_owned())));
    a.append(Labels::from_pairs(many), 1000, 1.0);
    let r = a.commit().unwrap();
    assert_eq!(r.accepted, 2);
    let msgs: Vec<String> = r.rejected.iter().map(|(_, e)| e.to_string()).collect();
    assert!(
        msgs[0].contains("max_metric_series") && msgs[0].contains("t1"),
        "{msgs:?}"
    );
    assert!(msgs[1].contains("max_label_names_per_series"), "{msgs:?}");
}

#[test]
fn head_cut_compaction_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        block_range_ms: 1000,
        retention_ms: 20_000,
        ooo_window_ms: 0,
        ..DbOptions::default()
    };
    let (db, _) = Db::open(dir.path(), "default", opts).unwrap();
    for step in 0..200 {
        let mut a = db.appender();
        for i in 0..10 {
            a.append(labels("m", i), step * 250, (step * i as i64) as f64);
        }
        a.commit().unwrap();
        if step % 8 == 0 {
            db.compact().unwrap();
        }
    }
    db.compact().unwrap();
    let blocks = db.blocks();
    assert!(!blocks.is_empty());
    // Compacted ranges are 1s, 3s, 9s (capped at retention/10 = 2s → only 1s here).
    let newest = db.head().max_time().unwrap();
    for b in blocks.iter() {
        assert!(
            b.meta().max_time > newest - 20_000,
            "block beyond retention kept: {:?}",
            b.meta()
        );
    }
    let all = read_all(&db);
    let first = all[&labels("m", 3)].first().unwrap().0;
    assert!(
        first >= newest - 21_000,
        "old data not deleted: first={first} newest={newest}"
    );
    assert_eq!(all[&labels("m", 3)].last().unwrap().0, 199 * 250);
}

#[test]
fn tenants_are_isolated_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let (st, _) = Storage::open(dir.path(), DbOptions::default()).unwrap();
    let a = st.tenant("a").unwrap();
    let b = st.tenant("b").unwrap();
    let mut app = a.appender();
    app.append(labels("secret", 0), 1000, 42.0);
    app.commit().unwrap();
    assert_eq!(read_all(&a).len(), 1);
    assert!(read_all(&b).is_empty());
    assert!(dir.path().join("tenants/a/wal").is_dir());
    assert!(st.tenant("../x").is_err());
    assert!(st.existing_tenant("nobody").is_none());
    drop((a, b, st));
    let (st, reports) = Storage::open(dir.path(), DbOptions::default()).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(read_all(&st.tenant("a").unwrap()).len(), 1);
}

#[test]
fn delete_hides_samples_in_head_and_blocks_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (db, _) = Db::open(dir.path(), "default", small_opts()).unwrap();
        let mut a = db.appender();
        for t in 0..40 {
            a.append(labels("m", 0), t * 100, t as f64);
            a.append(labels("m", 1), t * 100, t as f64);
        }
        a.commit().unwrap();
        db.flush_head_before(2000).unwrap(); // [0, 2000) in blocks, the rest in the head
        let n = db.delete(&[Matcher::equal("i", "0")], 1500, 2500).unwrap();
        assert!(n >= 2, "head and block series affected: {n}");
    }
    let (db, _) = Db::open(dir.path(), "default", small_opts()).unwrap();
    let check = |db: &Db| {
        let all = read_all(db);
        let ts: Vec<i64> = all[&labels("m", 0)].iter().map(|x| x.0).collect();
        assert!(ts.iter().all(|&t| !(1500..=2500).contains(&t)), "{ts:?}");
        assert_eq!(ts.len(), 40 - 11);
        assert_eq!(all[&labels("m", 1)].len(), 40);
    };
    check(&db);
    db.compact().unwrap();
    db.flush_head_before(10_000).unwrap();
    db.compact().unwrap();
    check(&db);
}

#[test]
fn backfill_writes_blocks_that_merge_with_live_data() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "default", small_opts()).unwrap();
    let mut a = db.appender();
    a.append(labels("m", 0), 50_000, 5.0);
    a.commit().unwrap();
    let hist: Vec<Sample> = (0..30).map(|t| Sample::new(t * 100, t as f64)).collect();
    let written = db.import(vec![(labels("m", 0), hist)]).unwrap();
    assert_eq!(written.len(), 3);
    db.compact().unwrap();
    let all = read_all(&db);
    assert_eq!(all[&labels("m", 0)].len(), 31);
}

// ---------------------------------------------------------------------------------------
// Durability: a child process appends and prints each acknowledged batch; the parent kills
// it with SIGKILL and checks that every acknowledged sample is there after reopening.

const CHILD_ENV: &str = "METRICSD_TSDB_CHILD_DIR";

/// Head chunks of `n` samples, so that head checkpoints name chunk files soon.
fn chunks_of(n: usize) -> DbOptions {
    DbOptions {
        chunk_max_samples: n,
        ..DbOptions::default()
    }
}

fn durable_opts() -> DbOptions {
    chunks_of(8)
}

#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let (db, _) = Db::open(Path::new(&dir), "default", durable_opts()).unwrap();
    std::thread::scope(|scope| {
        // Head checkpoints back to back, so the kill lands in one at a random step.
        scope.spawn(|| {
            loop {
                let st = db.checkpoint_head().unwrap();
                let mut o = std::io::stdout().lock();
                writeln!(o, "CKPT {}", st.index).unwrap();
                o.flush().unwrap();
                drop(o);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        child_appends(&db);
    });
}

fn child_appends(db: &Db) {
    let out = std::io::stdout();
    for batch in 0..1_000_000i64 {
        let mut a = db.appender();
        for i in 0..50 {
            a.append(
                labels("durable", i),
                1_000 + batch * 15_000,
                (batch * 50 + i as i64) as f64,
            );
        }
        let r = a.commit().unwrap();
        assert_eq!(r.accepted, 50);
        let mut o = out.lock();
        writeln!(o, "ACK {batch}").unwrap();
        o.flush().unwrap();
    }
}

#[test]
fn acknowledged_samples_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut acked, mut checkpoints) = (-1i64, 0);
    let reader = BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ACK ") {
            acked = n.parse().unwrap();
        }
        checkpoints += usize::from(line.starts_with("CKPT "));
        if acked >= 300 && checkpoints >= 5 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(acked >= 300);
    let (db, report) = Db::open(dir.path(), "default", durable_opts()).unwrap();
    assert_eq!(report.lost_chunks, 0, "{report:?}");
    let all = read_all(&db);
    for i in 0..50 {
        let got = &all[&labels("durable", i)];
        assert!(
            got.len() as i64 > acked,
            "series {i}: {} samples, {} acknowledged",
            got.len(),
            acked + 1
        );
        for (b, (t, v)) in got.iter().enumerate().take(acked as usize + 1) {
            assert_eq!(*t, 1_000 + b as i64 * 15_000);
            assert_eq!(f64::from_bits(*v), (b as i64 * 50 + i as i64) as f64);
        }
    }
    assert_eq!(report.replay_rejected, 0);
}

// ---------------------------------------------------------------------------------------
// Corruption: the store opens, reports what it dropped, keeps the rest.

fn fill(db: &Db, series: usize, points: i64) {
    let mut a = db.appender();
    for i in 0..series {
        for t in 0..points {
            a.append(labels("c", i), t * 100, (t * i as i64) as f64);
        }
    }
    a.commit().unwrap();
}

fn wal_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .bytes()
                    .all(|c| c.is_ascii_digit())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn torn_wal_tail_is_truncated_and_earlier_data_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (db, _) = Db::open(dir.path(), "default", small_opts()).unwrap();
        fill(&db, 5, 10);
        let mut a = db.appender();
        a.append(labels("c", 0), 5_000, 1.0);
        a.commit().unwrap();
    }
    let last = wal_segments(dir.path())
        .into_iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let (db, report) = Db::open(dir.path(), "default", small_opts()).unwrap();
    assert!(report.lost_anything(), "{report:?}");
    let all = read_all(&db);
    assert_eq!(all.len(), 5);
    assert!(all.values().all(|v| v.len() >= 10));
}

fn corrupt_byte(path: &Path, offset_from_middle: i64) {
    let mut data = std::fs::read(path).unwrap();
    let at = (data.len() as i64 / 2 + offset_from_middle) as usize;
    data[at] ^= 0xff;
    std::fs::write(path, data).unwrap();
}

fn only_block(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.file_name().unwrap().len() == 26)
        .unwrap()
}

#[test]
fn corrupt_chunk_costs_only_its_samples() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (db, _) = Db::open(dir.path(), "default", small_opts()).unwrap();
        fill(&db, 20, 10);
        db.flush_head_before(1000).unwrap();
        assert_eq!(db.blocks().len(), 1);
    }
    let block = only_block(dir.path());
    corrupt_byte(&block.join("chunks").join("000001"), 0);
    let (db, report) = Db::open(dir.path(), "default", small_opts()).unwrap();
    assert_eq!(report.corrupt_chunks.len(), 1, "{report:?}");
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    let series = q.select(&[Matcher::equal("__name__", "c")]).unwrap();
    assert_eq!(series.len(), 20);
    let readable = series.iter().filter(|s| s.samples().is_ok()).count();
    assert_eq!(readable, 19);
}

/// Another process truncates a block's chunk file and index while the store has them open
/// (issue 11: a mapped file truncated underneath raised SIGBUS and killed the process).
/// Reads of the lost chunks fail with a store error naming the file by its last two
/// components (never the data directory's path), the other chunks still read, and the
/// index, held in memory, still answers.
#[test]
fn block_files_truncated_underneath_are_corruption_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "default", small_opts()).unwrap();
    fill(&db, 20, 10);
    db.flush_head_before(1000).unwrap();
    assert_eq!(db.blocks().len(), 1);
    let block = only_block(dir.path());
    let seg = block.join("chunks").join("000001");
    let truncate = |path: &Path, len: u64| {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(len).unwrap();
    };
    let full = std::fs::metadata(&seg).unwrap().len();
    truncate(&seg, full / 2);
    truncate(&block.join("index"), 0);

    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    let series = q.select(&[Matcher::equal("__name__", "c")]).unwrap();
    assert_eq!(
        series.len(),
        20,
        "the index is read at open: selection still works"
    );
    let (mut ok, mut failed) = (0, 0);
    for s in &series {
        let mut it = s.iter();
        let n = it.by_ref().count();
        match it.err() {
            None => {
                assert_eq!(n, 10);
                ok += 1;
            }
            // Through the storage seam: a store failure, its message without file paths.
            Some(e) => {
                assert_eq!(e.kind(), metricsd_storage::ErrorKind::Internal, "{e}");
                let m = e.message();
                assert!(
                    m.contains("reading the chunk failed") || m.contains("overruns the file"),
                    "{m}"
                );
                assert!(m.contains("chunks/000001"), "names the file: {m}");
                assert!(!m.contains(seg.to_str().unwrap()), "no path: {m}");
                failed += 1;
            }
        }
    }
    assert!(ok > 0 && failed > 0, "{ok} series read, {failed} failed");

    // Nothing left of the chunk file: every read fails, none crashes.
    truncate(&seg, 0);
    for s in &series {
        let e = s.samples().unwrap_err();
        assert_eq!(e.kind(), metricsd_storage::ErrorKind::Internal, "{e}");
    }
    // Label lookups answer from the in-memory index.
    assert_eq!(q.label_values("i", &[]).unwrap().len(), 20);
}

#[test]
fn corrupt_index_moves_block_aside_and_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (db, _) = Db::open(dir.path(), "default", small_opts()).unwrap();
        fill(&db, 20, 10);
        db.flush_head_before(1000).unwrap();
        let mut a = db.appender();
        a.append(labels("c", 0), 3000, 1.0);
        a.commit().unwrap();
    }
    let block = only_block(dir.path());
    corrupt_byte(&block.join("index"), 0);
    let (db, report) = Db::open(dir.path(), "default", small_opts()).unwrap();
    assert_eq!(report.corrupt_blocks.len(), 1, "{report:?}");
    assert!(report.corrupt_blocks[0].1.contains("index"), "{report:?}");
    let all = read_all(&db);
    assert_eq!(
        all[&labels("c", 0)],
        vec![(3000, 1f64.to_bits())],
        "head data kept"
    );
    assert!(
        block
            .with_file_name(format!(
                "{}.corrupt",
                block.file_name().unwrap().to_str().unwrap()
            ))
            .is_dir()
    );
}

// ---------------------------------------------------------------------------------------
// Model-based: the store agrees with a BTreeMap across random operation sequences.

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<(usize, i64, f64)>),
    Cut(i64),
    Compact,
    Restart,
    Delete(usize, i64, i64),
    /// A head checkpoint (closed chunks moved to chunk files first).
    Checkpoint,
}

fn op() -> impl Strategy<Value = Op> {
    let value = prop_oneof![
        4 => (-1000i32..1000).prop_map(f64::from),
        1 => any::<f64>(),
        1 => Just(f64::from_bits(metricsd_model::STALE_NAN)),
    ];
    prop_oneof![
        8 => prop::collection::vec((0usize..6, 0i64..20_000, value), 1..40).prop_map(Op::Append),
        1 => (0i64..20_000).prop_map(Op::Cut),
        1 => Just(Op::Compact),
        1 => Just(Op::Restart),
        1 => (0usize..6, 0i64..20_000, 0i64..3000).prop_map(|(s, a, len)| Op::Delete(s, a, a + len)),
        2 => Just(Op::Checkpoint),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn store_agrees_with_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        // Chunks of 4 samples: checkpoints name chunk files often.
        let opts = || DbOptions { chunk_max_samples: 4, ..small_opts() };
        let mut db = Db::open(dir.path(), "default", opts()).unwrap().0;
        let mut model: BTreeMap<Labels, BTreeMap<i64, u64>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append(samples) => {
                    let mut a = db.appender();
                    for &(s, t, v) in &samples {
                        a.append(labels("p", s), t, v);
                    }
                    let r = a.commit().unwrap();
                    let rejected: Vec<usize> = r.rejected.iter().map(|x| x.0).collect();
                    for (i, &(s, t, v)) in samples.iter().enumerate() {
                        if !rejected.contains(&i) {
                            // The newest accepted write of a timestamp wins. The head rejects
                            // conflicts with data it holds; a conflict with persisted data is
                            // accepted and wins.
                            model.entry(labels("p", s)).or_default().insert(t, v.to_bits());
                        }
                    }
                }
                Op::Cut(t) => { db.flush_head_before(t).unwrap(); }
                Op::Compact => { db.compact().unwrap(); }
                Op::Restart => {
                    drop(db);
                    let (d, report) = Db::open(dir.path(), "default", opts()).unwrap();
                    prop_assert!(!report.lost_anything(), "{:?}", report);
                    db = d;
                }
                Op::Checkpoint => { db.checkpoint_head().unwrap(); }
                Op::Delete(s, a, b) => {
                    db.delete(&[Matcher::equal("i", s.to_string())], a, b).unwrap();
                    if let Some(m) = model.get_mut(&labels("p", s)) {
                        m.retain(|t, _| *t < a || *t > b);
                    }
                }
            }
            let want: BTreeMap<Labels, Vec<(i64, u64)>> = model
                .iter()
                .filter(|(_, m)| !m.is_empty())
                .map(|(l, m)| (l.clone(), m.iter().map(|(t, v)| (*t, *v)).collect()))
                .collect();
            prop_assert_eq!(read_all(&db), want);
        }
    }
}

#[test]
fn recompressed_head_chunks_read_back_identically_and_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "default", DbOptions::default()).unwrap();
    let mut a = db.appender();
    let mut want = Vec::new();
    for t in 0..2000i64 {
        // A counter with two decimals and jittered timestamps: XOR's weak spot.
        let (ts, v) = (
            t * 15_000 + (t * 7919 % 11) - 5,
            (t * 1234 + t * t % 97) as f64 / 100.0,
        );
        a.append(labels("r", 0), ts, v);
        want.push((ts, v.to_bits()));
    }
    a.append(labels("r", 1), 5, f64::from_bits(metricsd_model::STALE_NAN));
    a.commit().unwrap();
    let before = db.head().mem_size();
    let (n, b, after) = db.head().recompress(true);
    assert!(n >= 8, "{n} chunks re-encoded");
    assert!(after < b, "re-encoding grew the chunks: {b} → {after}");
    // The closed chunks left memory for `chunks_head/`.
    let (files, bytes) = db.head().chunk_file_stats();
    assert!(
        files == 1 && bytes as usize >= after,
        "{files} files, {bytes} bytes"
    );
    assert!(
        db.head().mem_size() + after <= before,
        "{} + {after} > {before}",
        db.head().mem_size()
    );
    assert_eq!(
        db.head().recompress(true).0,
        0,
        "settled chunks are not re-encoded again"
    );
    assert_eq!(read_all(&db)[&labels("r", 0)], want);
    // Appends, deletes and the out-of-order check keep working on re-encoded chunks.
    let mut a = db.appender();
    a.append(labels("r", 0), want[1900].0, 1.0); // conflicts with a re-encoded sample, within the window
    a.append(labels("r", 0), 2001 * 15_000, 1.0);
    let r = a.commit().unwrap();
    assert!(
        matches!(r.rejected[..], [(0, Error::DuplicateSample { .. })]),
        "{r:?}"
    );
    db.delete(&[Matcher::equal("i", "0")], want[0].0, want[99].0)
        .unwrap();
    let kept = read_all(&db)[&labels("r", 0)].clone();
    assert_eq!(kept.len(), 2000 - 100 + 1);
    // Without a head checkpoint that names them, the chunk files are not a recovery source:
    // reopening replays the WAL alone and deletes what the files held.
    drop(db);
    assert!(
        dir.path()
            .join("chunks_head")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
    let (db, _) = Db::open(dir.path(), "default", DbOptions::default()).unwrap();
    assert!(
        dir.path()
            .join("chunks_head")
            .read_dir()
            .unwrap()
            .next()
            .is_none()
    );
    assert_eq!(read_all(&db)[&labels("r", 0)], kept);
    assert_eq!(db.head().chunk_file_stats().0, 0);
    assert!(
        db.head().recompress(false).0 >= 8,
        "chunks cut during replay are moved out again"
    );
    assert_eq!(db.head().chunk_file_stats().0, 1);
    assert_eq!(read_all(&db)[&labels("r", 0)], kept);
    // Cutting the head into blocks removes the files whose chunks all went.
    db.flush_head_before(i64::MAX).unwrap();
    assert_eq!(db.head().chunk_file_stats().0, 0);
    assert_eq!(read_all(&db)[&labels("r", 0)], kept);
}

/// A big head's settle pass is split among threads: every chunk is moved once, to the
/// chunk files, and reads back as written.
#[test]
fn a_settle_pass_split_among_threads_moves_every_chunk_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "default", DbOptions::default()).unwrap();
    let mut a = db.appender();
    for i in 0..301 {
        for t in 0..250i64 {
            a.append(
                labels("r", i),
                t * 15_000 + (t * 7 + i as i64) % 5,
                (t * (i as i64 + 1)) as f64 / 100.0,
            );
        }
    }
    a.commit().unwrap();
    let want = read_all(&db);
    let (n, b, after) = db.head().recompress_on(true, Some(3));
    assert_eq!(n, 301 * 2, "two closed chunks per series");
    assert!(after < b, "{b} → {after}");
    assert_eq!(db.head().recompress_on(true, Some(3)).0, 0, "moved once");
    let (files, bytes) = db.head().chunk_file_stats();
    assert!(
        files >= 1 && bytes as usize >= after,
        "{files} files, {bytes} bytes"
    );
    assert_eq!(read_all(&db), want);
    // What decides when a head checkpoint is due: the estimate of its size is close to
    // what it writes (it names the chunks in files and repeats the open chunks' samples).
    let est = db.head().checkpoint_estimate();
    let written = db.checkpoint_head().unwrap().bytes_written;
    eprintln!("checkpoint: estimated {est} B, wrote {written} B");
    assert!(
        est * 2 >= written && est <= written * 2,
        "estimated {est} B, wrote {written} B"
    );
}

/// A series ref stays usable when its series leaves the head (compaction, gc) and when the
/// store is reopened: appends through it land in the right series, never in a lost one.
#[test]
fn series_refs_survive_gc_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "default", small_opts()).unwrap();
    let r = db.series_ref(&labels("m", 0)).unwrap();
    assert_eq!(r.labels(), &labels("m", 0));
    assert_eq!(
        db.series_ref(&labels("m", 0)).unwrap().id(),
        r.id(),
        "found, not created twice"
    );
    let mut a = db.appender();
    for t in 0..3 {
        a.append_ref(&r, t * 100, t as f64);
    }
    assert_eq!(a.commit().unwrap().accepted, 3);
    // Another series moves time on; compaction cuts m0's samples into a block and gc removes
    // it from the head.
    let mut a = db.appender();
    a.append(labels("other", 1), 5000, 1.0);
    a.commit().unwrap();
    db.compact().unwrap();
    assert!(!db.blocks().is_empty());
    assert_eq!(db.head().num_series(), 1, "m0 left the head");
    let mut a = db.appender();
    a.append_ref(&r, 5100, 10.0);
    let rep = a.commit().unwrap();
    assert_eq!((rep.accepted, rep.series_created), (1, 1), "{rep:?}");
    drop(db);
    let (db, _) = Db::open(dir.path(), "default", small_opts()).unwrap();
    let mut a = db.appender();
    a.append_ref(&r, 5200, 11.0);
    a.commit().unwrap();
    let got: Vec<(i64, f64)> = read_all(&db)[&labels("m", 0)]
        .iter()
        .map(|&(t, v)| (t, f64::from_bits(v)))
        .collect();
    assert_eq!(
        got,
        vec![(0, 0.0), (100, 1.0), (200, 2.0), (5100, 10.0), (5200, 11.0)]
    );
    assert_eq!(db.head().num_series(), 2);
}

/// Series found by key ([`Db::keyed_series`]) take their samples like series found by
/// labels; the key is forgotten when the series leaves the head, and a handle found before
/// that still stores its samples (in the series recreated by its labels). A series the limit
/// rejects is not remembered, and a handle from another store is refused.
#[test]
fn keyed_series_follow_their_series() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DbOptions {
        max_series: 2,
        ..small_opts()
    };
    let (db, _) = Db::open(dir.path(), "default", opts).unwrap();
    assert!(db.keyed_series(7).is_none());
    let mut a = db.appender();
    a.append_keyed(7, labels("m", 0), &[Sample::new(0, 0.0), Sample::new(100, 1.0)]);
    a.append_keyed(8, labels("other", 1), &[Sample::new(0, 5.0)]);
    a.append_keyed(9, labels("over", 2), &[Sample::new(0, 5.0)]);
    let rep = a.commit().unwrap();
    assert_eq!((rep.accepted, rep.series_created, rep.rejected.len()), (3, 2, 1));
    assert!(
        db.keyed_series(9).is_none(),
        "rejected by the series limit: not remembered"
    );
    let k = db.keyed_series(7).expect("remembered at commit");
    let mut a = db.appender();
    a.append_known(k.clone(), &[Sample::new(200, 2.0)]);
    assert_eq!(a.commit().unwrap().accepted, 1);
    // m0 leaves the head: its key goes with it; the handle still stores.
    let mut a = db.appender();
    a.append_known(db.keyed_series(8).unwrap(), &[Sample::new(5000, 1.0)]);
    a.commit().unwrap();
    db.compact().unwrap();
    assert_eq!(db.head().num_series(), 1, "m0 left the head");
    assert!(db.keyed_series(7).is_none(), "forgotten with its series");
    let mut a = db.appender();
    a.append_known(k.clone(), &[Sample::new(5100, 10.0)]);
    let rep = a.commit().unwrap();
    assert_eq!((rep.accepted, rep.series_created), (1, 1), "{rep:?}");
    let got: Vec<(i64, f64)> = read_all(&db)[&labels("m", 0)]
        .iter()
        .map(|&(t, v)| (t, f64::from_bits(v)))
        .collect();
    assert_eq!(got, vec![(0, 0.0), (100, 1.0), (200, 2.0), (5100, 10.0)]);
    // Another store does not take it.
    let dir2 = tempfile::tempdir().unwrap();
    let (db2, _) = Db::open(dir2.path(), "other", small_opts()).unwrap();
    let mut a = db2.appender();
    a.append_known(k, &[Sample::new(5200, 1.0)]);
    let rep = a.commit().unwrap();
    assert_eq!((rep.accepted, rep.rejected.len()), (0, 1));
    assert!(read_all(&db2).is_empty());
}

/// Label strings of series that left the head are dropped (label churn does not grow the
/// head forever), and a handle held across that keeps its own labels even when the freed
/// symbols are reused by new strings: its samples land in its series, not in a newcomer's.
#[test]
fn symbols_of_removed_series_are_dropped_and_held_handles_keep_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "default", small_opts()).unwrap();
    let pod = |p: &str| Labels::from_pairs([("__name__", "up"), ("pod", p)]);
    let mut a = db.appender();
    for i in 0..50 {
        a.append_keyed(i, pod(&format!("old-{i}")), &[Sample::new(0, 1.0)]);
    }
    a.commit().unwrap();
    let held = db.keyed_series(7).unwrap();
    let held_ref = db.series_ref(&pod("old-8")).unwrap();
    assert_eq!(db.head().num_symbols(), 3 + 50);
    // Time moves on in another series; the old pods leave the head.
    let mut a = db.appender();
    a.append(pod("new-0"), 5000, 1.0);
    a.commit().unwrap();
    db.compact().unwrap();
    assert_eq!(db.head().num_series(), 1);
    assert_eq!(db.head().num_symbols(), 3 + 1, "the old pods' strings are gone");
    // New pods take the freed symbols.
    let mut a = db.appender();
    for i in 1..50 {
        a.append(pod(&format!("new-{i}")), 5000, 2.0);
    }
    a.commit().unwrap();
    let mut a = db.appender();
    a.append_known(held, &[Sample::new(5100, 3.0)]);
    a.append_ref(&held_ref, 5100, 4.0);
    let rep = a.commit().unwrap();
    assert_eq!((rep.accepted, rep.series_created), (2, 2), "{rep:?}");
    let all = read_all(&db);
    let vals =
        |l: &Labels| -> Vec<(i64, f64)> { all[l].iter().map(|&(t, v)| (t, f64::from_bits(v))).collect() };
    assert_eq!(vals(&pod("old-7")), [(0, 1.0), (5100, 3.0)]);
    assert_eq!(vals(&pod("old-8")), [(0, 1.0), (5100, 4.0)]);
    for i in 1..50 {
        assert_eq!(vals(&pod(&format!("new-{i}"))), [(5000, 2.0)], "new-{i}");
    }
    assert_eq!(db.head().num_symbols(), 3 + 50 + 2);
}

#[test]
fn a_tenant_created_for_refused_samples_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let opts = metricsd_tsdb::StorageOptions {
        max_tenants: 1,
        ..Default::default()
    };
    let (storage, _) = Storage::open_with(dir.path(), DbOptions::default(), opts).unwrap();
    let (db, created) = storage.tenant_for_write("new").unwrap();
    assert!(created);
    let mut a = db.appender();
    a.append(labels("m", 0), i64::MAX, 1.0);
    assert_eq!(a.commit().unwrap().accepted, 0);
    assert!(!storage.forget_unused("new"), "held by the writer");
    drop(db);
    assert!(storage.forget_unused("new"));
    assert!(!dir.path().join("tenants/new").exists());
    assert_eq!(storage.num_tenants(), 0);
    // Its place under max_tenants is free again.
    let (db, created) = storage.tenant_for_write("other").unwrap();
    assert!(created);
    let mut a = db.appender();
    a.append(labels("m", 0), 1000, 1.0);
    assert_eq!(a.commit().unwrap().accepted, 1);
    drop(db);
    assert!(!storage.forget_unused("other"), "a tenant with data stays");
    assert!(matches!(
        storage.tenant("third"),
        Err(Error::TooManyTenants { .. })
    ));
}

/// The store through the storage seam alone: what the rules engine and importers use.
#[test]
fn the_store_reads_and_writes_through_the_storage_seam() {
    use metricsd_storage::{Appendable, Queryable};
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = Db::open(dir.path(), "default", DbOptions::default()).unwrap();
    let store: &dyn Appendable = &db;
    let mut app = store.appender();
    let l = labels("seam", 0);
    app.append(&l, 1000, 1.0);
    app.append(&l, 2000, 2.0);
    app.append(&l, 2000, 3.0); // a conflicting duplicate: reported, the rest stored
    let r = app.commit().unwrap();
    assert_eq!(r.appended, 2);
    assert_eq!(r.rejected.len(), 1, "{r:?}");
    assert_eq!(r.rejected[0].0, 2);
    let q: &dyn Queryable = &db;
    let got = q
        .querier(0, 5000)
        .unwrap()
        .select(&[Matcher::equal("__name__", "seam")])
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples().unwrap().len(), 2);
    let err = q.querier(2, 1).err().unwrap();
    assert_eq!(err.kind(), metricsd_storage::ErrorKind::InvalidInput, "{err}");
}

/// Bytes of the files under `dir/sub`.
fn dir_bytes(dir: &Path, sub: &str) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| {
                        let m = e.metadata().unwrap();
                        if m.is_dir() { walk(&e.path()) } else { m.len() }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&dir.join(sub))
}

/// A head checkpoint hands the closed chunks over to the chunk files: the WAL shrinks to
/// the series and the samples not in a file, replay restores the chunks without decoding
/// them, and every sample, delete, duplicate rule and later append behaves as before.
#[test]
fn head_checkpoint_names_chunk_files_and_drops_their_wal() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || DbOptions {
        ooo_window_ms: 3 * 3600 * 1000,
        clock: metricsd_tsdb::Clock::from_fn(|| 500 * 15_000 + 60_000),
        ..DbOptions::default()
    };
    let (db, _) = Db::open(dir.path(), "default", opts()).unwrap();
    for step in 0..500i64 {
        let mut a = db.appender();
        for i in 0..40 {
            a.append(
                labels("cp", i),
                step * 15_000,
                (step * (i as i64 + 1)) as f64 / 4.0,
            );
        }
        a.commit().unwrap();
    }
    // Out-of-order samples, a delete and a series with an open chunk only.
    let mut a = db.appender();
    a.append(labels("cp", 0), 7_500, 0.5);
    a.append(labels("lone", 0), 1_000, 1.0);
    a.commit().unwrap();
    db.delete(&[Matcher::equal("i", "1")], 30_000, 300_000).unwrap();
    let wal_before = dir_bytes(dir.path(), "wal");
    let stats = db.checkpoint_head().unwrap();
    let wal_after = dir_bytes(dir.path(), "wal");
    assert!(stats.segments_deleted >= 1, "{stats:?}");
    assert!(
        wal_after * 4 < wal_before,
        "the WAL kept {wal_after} of {wal_before} bytes"
    );
    assert!(db.head().chunk_file_stats().1 > 0);
    // Written after the checkpoint: in a segment after it.
    let mut a = db.appender();
    a.append(labels("cp", 2), 500 * 15_000, 9.0);
    a.append(labels("new", 0), 500 * 15_000, 2.0);
    a.commit().unwrap();
    let want = read_all(&db);
    assert_eq!(want[&labels("cp", 0)].len(), 501);
    assert_eq!(want[&labels("cp", 1)].len(), 500 - 19);
    drop(db);

    let (db, report) = Db::open(dir.path(), "default", opts()).unwrap();
    assert!(!report.lost_anything(), "{report:?}");
    assert!(report.replayed_chunks >= 40 * 4, "{report:?}");
    assert!(
        report.replayed_samples < 40 * 500 / 2,
        "replay decoded {} samples: the chunk files should hold most",
        report.replayed_samples
    );
    assert_eq!(read_all(&db), want);
    // The duplicate rules see the restored chunks: the same value again is a duplicate,
    // another value a conflict, and appends continue after the newest sample.
    let newest = want[&labels("cp", 3)].last().copied().unwrap();
    let mut a = db.appender();
    a.append(labels("cp", 3), newest.0, f64::from_bits(newest.1));
    a.append(labels("cp", 3), newest.0, 12345.0);
    a.append(labels("cp", 3), newest.0 + 15_000, 1.0);
    let r = a.commit().unwrap();
    assert!(
        matches!(r.rejected[..], [(1, Error::DuplicateSample { .. })]),
        "{r:?}"
    );

    // A second checkpoint after the reopen, another reopen, then the cut into blocks.
    db.checkpoint_head().unwrap();
    let want = read_all(&db);
    drop(db);
    let (db, report) = Db::open(dir.path(), "default", opts()).unwrap();
    assert!(!report.lost_anything(), "{report:?}");
    assert_eq!(report.chunk_files_removed, 0, "{report:?}");
    assert_eq!(read_all(&db), want);
    db.flush_head_before(i64::MAX).unwrap();
    assert_eq!(read_all(&db), want);
    drop(db);
    let (db, report) = Db::open(dir.path(), "default", opts()).unwrap();
    assert!(!report.lost_anything(), "{report:?}");
    assert!(read_all(&db) == want, "the data read back differs");
}

/// A chunk file that disappears or is cut short under a checkpoint that names it costs
/// the samples of its chunks, which the open report counts; a torn tail after the last
/// named chunk costs nothing. The store opens either way.
#[test]
fn damaged_chunk_files_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || chunks_of(10);
    let (db, _) = Db::open(dir.path(), "default", opts()).unwrap();
    fill(&db, 5, 200);
    db.checkpoint_head().unwrap();
    let want = read_all(&db);
    drop(db);
    let files: Vec<_> = std::fs::read_dir(dir.path().join("chunks_head"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // Garbage after the last chunk: a write torn by a crash before any checkpoint named it.
    let mut f = std::fs::OpenOptions::new().append(true).open(&files[0]).unwrap();
    f.write_all(&[0xAB; 100]).unwrap();
    drop(f);
    let (db, report) = Db::open(dir.path(), "default", opts()).unwrap();
    assert!(!report.lost_anything(), "{report:?}");
    assert_eq!(read_all(&db), want);
    drop(db);
    // Cut short: the chunks past the cut are lost and reported.
    let len = std::fs::metadata(&files[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (db, report) = Db::open(dir.path(), "default", opts()).unwrap();
    assert!(report.lost_chunks > 0 && report.lost_anything(), "{report:?}");
    let got = read_all(&db);
    let (n_got, n_want): (usize, usize) = (
        got.values().map(Vec::len).sum(),
        want.values().map(Vec::len).sum(),
    );
    assert!(n_got < n_want && n_got > 0, "{n_got} of {n_want} samples");
    drop(db);
    // Gone: every named chunk lost, the store opens.
    std::fs::remove_file(&files[0]).unwrap();
    let (_db, report) = Db::open(dir.path(), "default", opts()).unwrap();
    assert!(report.lost_chunks > 0, "{report:?}");
}

/// A delete logged after a head checkpoint rewrites the restored chunks it touches into
/// memory at every replay; the files the checkpoint names must survive those reopens until
/// a newer checkpoint stops naming them (a reviewer's scenario: they were deleted at the
/// first reopen and the samples the delete kept were lost at the second).
#[test]
fn files_named_by_the_checkpoint_outlive_a_replayed_delete() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || chunks_of(10);
    let (db, _) = Db::open(dir.path(), "default", opts()).unwrap();
    fill(&db, 3, 200);
    db.checkpoint_head().unwrap();
    // One sample out of every chunk (10 samples each) of every series: each restored
    // chunk is rewritten into memory, and the file is left with no chunk in use.
    for k in 0..20i64 {
        let t = (k * 10 + 5) * 100;
        db.delete(&[Matcher::equal("job", "test")], t, t).unwrap();
    }
    let mut want = read_all(&db);
    assert_eq!(want[&labels("c", 1)].len(), 180);
    drop(db);
    for round in 0..3i64 {
        let (db, report) = Db::open(dir.path(), "default", opts()).unwrap();
        assert!(!report.lost_anything(), "round {round}: {report:?}");
        assert!(read_all(&db) == want, "round {round}: the data read back differs");
        // New chunks go to a file numbered above every named one.
        let mut a = db.appender();
        for t in 0..25 {
            a.append(labels("c", 9), 1_000_000 + (round * 25 + t) * 100, t as f64);
        }
        a.commit().unwrap();
        db.head().recompress(true);
        want = read_all(&db);
    }
    // A newer checkpoint no longer names the rewritten chunks' file... but still holds the
    // others; after it and a reopen, everything reads back.
    let (db, _) = Db::open(dir.path(), "default", opts()).unwrap();
    let want = read_all(&db);
    db.checkpoint_head().unwrap();
    drop(db);
    let (db, report) = Db::open(dir.path(), "default", opts()).unwrap();
    assert!(!report.lost_anything(), "{report:?}");
    assert!(read_all(&db) == want, "the data read back differs");
}
