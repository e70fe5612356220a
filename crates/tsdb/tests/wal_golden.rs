//! Golden WAL directories: the WAL of every format version we have written must replay, byte
//! for byte the same records, with every later version of the code.
//!
//! `testdata/wal/<version>/` holds a checkpoint (series, samples and a tombstone kept by it)
//! followed by two segments. They are written by [`workload`] with the code of that version
//! (`METRICSD_WRITE_GOLDEN=<version> cargo test -p metricsd-tsdb --test wal_golden`) and
//! never rewritten: a format change adds a version directory, it does not touch the old ones.
//!
//! - `v1`: uncompressed records (types 1–3), written by commit `3de0379`.
//! - `v2`: series (type 5) and samples (type 4) compressed against the segment's earlier
//!   records, tombstones as in v1 (issue 12).

use std::path::{Path, PathBuf};

use metricsd_model::Labels;
use metricsd_tsdb::FsyncPolicy;
use metricsd_tsdb::wal::{Record, RefSample, RefSeries, RefTombstone, Wal, WalOptions};

fn golden_dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/wal")
        .join(version)
}

fn series(r: u64, host: usize, extra: &str) -> RefSeries {
    RefSeries {
        series_ref: r,
        labels: Labels::from_pairs([
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", extra),
            ("instance", &format!("host-{host}:9100")),
            ("job", "node"),
        ]),
    }
}

/// The records, in order: before the checkpoint (segment 0), then segments 1 and 2.
fn workload() -> (Vec<Record>, Vec<Record>) {
    let mut before = vec![Record::Series(
        (1..=4).map(|r| series(r, r as usize, "0")).collect(),
    )];
    // Regular scrapes, a counter reset, a staleness marker, an irregular timestamp.
    let mut samples = Vec::new();
    for step in 0..30i64 {
        for r in 1..=4u64 {
            let v = match (r, step) {
                (2, 17) => f64::from_bits(0x7ff0_0000_0000_0002), // Prometheus' stale NaN
                (3, s) if s > 20 => (s - 20) as f64,              // reset
                _ => (step as f64) * 1.5 + r as f64 * 1000.25,
            };
            let jitter = if r == 4 { (step * 7) % 5 } else { 0 };
            samples.push(RefSample {
                series_ref: r,
                t: 1_700_000_000_000 + step * 15_000 + jitter,
                v,
            });
        }
    }
    before.push(Record::Samples(samples));
    before.push(Record::Tombstones(vec![RefTombstone {
        series_ref: 1,
        mint: 1_700_000_000_000,
        maxt: 1_700_000_030_000,
    }]));
    let mut after = vec![Record::Series(vec![series(5, 9, "1"), series(6, 9, "2")])];
    after.push(Record::Samples(
        (0..10)
            .flat_map(|i| {
                [5u64, 6, 1].map(move |r| RefSample {
                    series_ref: r,
                    t: 1_700_000_450_000 + i * 15_000,
                    v: if r == 6 { -0.0 } else { i as f64 / 3.0 },
                })
            })
            .collect(),
    ));
    after.push(Record::Samples(vec![RefSample {
        series_ref: 5,
        t: i64::MIN + 1,
        v: f64::INFINITY,
    }]));
    (before, after)
}

fn opts() -> WalOptions {
    WalOptions {
        segment_size: 128 << 20,
        fsync: FsyncPolicy::Never,
    }
}

fn write(dir: &Path) {
    let (before, after) = workload();
    let (wal, _) = Wal::open(dir, opts()).unwrap();
    wal.log(&before).unwrap();
    // Keeps everything: the checkpoint holds the three records of segment 0.
    wal.checkpoint(0, Some).unwrap();
    wal.log(&after[..2]).unwrap();
    wal.cut_segment().unwrap();
    wal.log(&after[2..]).unwrap();
    wal.close().unwrap();
}

fn bits(r: &Record) -> String {
    match r {
        Record::Samples(s) => format!(
            "{:?}",
            s.iter()
                .map(|x| (x.series_ref, x.t, x.v.to_bits()))
                .collect::<Vec<_>>()
        ),
        other => format!("{other:?}"),
    }
}

fn check(version: &str) {
    let src = golden_dir(version);
    assert!(src.is_dir(), "{} is missing", src.display());
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&src, tmp.path());
    let (wal, report) = Wal::open(tmp.path(), opts()).unwrap();
    assert!(report.is_clean(), "{version}: {report:?}");
    let mut got = Vec::new();
    let stats = wal
        .replay(|r| {
            got.push(r);
            Ok(())
        })
        .unwrap();
    assert_eq!(stats.checkpoint, Some(0), "{version}");
    let (before, after) = workload();
    let want: Vec<Record> = before.into_iter().chain(after).collect();
    assert_eq!(
        got.iter().map(bits).collect::<Vec<_>>(),
        want.iter().map(bits).collect::<Vec<_>>(),
        "{version}: replayed records differ"
    );
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

#[test]
fn golden_wals_replay() {
    if let Ok(v) = std::env::var("METRICSD_WRITE_GOLDEN") {
        let dir = golden_dir(&v);
        assert!(
            !dir.exists(),
            "{} exists: golden files are never rewritten",
            dir.display()
        );
        write(&dir);
    }
    for v in ["v1", "v2"] {
        check(v);
    }
}

/// What the current code writes is byte for byte the newest golden version: a change of
/// the format must add a version directory (and a decoder for it), not slip in.
#[test]
fn current_format_is_the_newest_golden_version() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path());
    let golden = golden_dir("v2");
    for rel in ["00000001", "00000002", "checkpoint.00000000/00000000"] {
        let want = std::fs::read(golden.join(rel)).unwrap();
        let got = std::fs::read(tmp.path().join(rel)).unwrap();
        assert!(
            got == want,
            "{rel} differs from testdata/wal/v2/{rel} ({} vs {} bytes)",
            got.len(),
            want.len()
        );
    }
}

/// What the current code writes replays as the same records.
#[test]
fn current_format_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path());
    let (wal, _) = Wal::open(tmp.path(), opts()).unwrap();
    let mut n = 0;
    wal.replay(|_| {
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 6);
}

/// A v1 WAL opened by today's code keeps its records and appends in today's format after
/// them: an upgrade in place replays both.
#[test]
fn v1_wal_upgrades_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&golden_dir("v1"), tmp.path());
    let (before, after) = workload();
    let more = after.clone();
    {
        let (wal, report) = Wal::open(tmp.path(), opts()).unwrap();
        assert!(report.is_clean(), "{report:?}");
        wal.log(&more).unwrap();
        wal.checkpoint(wal.segment_range().unwrap().1, Some).unwrap();
        wal.log(&more).unwrap();
    }
    let (wal, _) = Wal::open(tmp.path(), opts()).unwrap();
    let mut got = Vec::new();
    wal.replay(|r| {
        got.push(r);
        Ok(())
    })
    .unwrap();
    let want: Vec<Record> = before
        .into_iter()
        .chain(after)
        .chain(more.clone())
        .chain(more)
        .collect();
    assert_eq!(
        got.iter().map(bits).collect::<Vec<_>>(),
        want.iter().map(bits).collect::<Vec<_>>()
    );
}
