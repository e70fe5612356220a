//! Time is the clock's: the future bound, the lower bound, and that the head cut, the
//! out-of-order window and retention follow the (injected) clock, never the newest sample.

use std::sync::atomic::Ordering;

use metricsd_model::{Labels, MatchOp, Matcher};
use metricsd_tsdb::{Clock, Db, DbOptions, Error, MIN_TIMESTAMP, Queryable};

const H: i64 = 3600 * 1000;
const D: i64 = 24 * H;
/// 2026-12-01T00:00:00Z.
const NOW: i64 = 1_796_083_200_000;

fn l(name: &str) -> Labels {
    Labels::from_pairs([("__name__", name)])
}

fn count(db: &Db) -> usize {
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    q.select(&[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()])
        .unwrap()
        .iter()
        .map(|s| s.samples().unwrap().len())
        .sum()
}

fn opts(clock: Clock) -> DbOptions {
    DbOptions {
        clock,
        retention_ms: 15 * D,
        ..DbOptions::default()
    }
}

#[test]
fn samples_beyond_the_future_bound_are_rejected_and_create_no_series() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = Clock::manual(NOW);
    let (db, _) = Db::open(dir.path(), "t", opts(clock)).unwrap();
    let mut a = db.appender();
    a.append(l("ok"), NOW + 10 * 60 * 1000, 1.0); // exactly at the bound
    a.append(l("late"), NOW + 10 * 60 * 1000 + 1, 1.0);
    a.append(l("max"), i64::MAX, 1.0);
    a.append(l("y2999"), 32_472_144_000_000, 1.0);
    let rep = a.commit().unwrap();
    assert_eq!(rep.accepted, 1);
    assert_eq!(rep.series_created, 1, "rejected samples create no series");
    assert_eq!(rep.rejected.len(), 3);
    for (_, e) in &rep.rejected {
        assert!(matches!(e, Error::TooFarInFuture { .. }), "{e}");
        assert!(e.to_string().contains("creation_grace_period_seconds"), "{e}");
        assert_eq!(e.status(), metricsd_tsdb::Status::InvalidInput);
    }
    assert_eq!(db.head().num_series(), 1);
    // Imports too.
    let e = db
        .import(vec![(l("imp"), vec![metricsd_model::Sample::new(NOW + H, 1.0)])])
        .unwrap_err();
    assert!(matches!(e, Error::TooFarInFuture { .. }), "{e}");
}

#[test]
fn timestamps_near_i64_min_are_rejected_without_sentinel_confusion() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = Clock::manual(NOW);
    let (db, _) = Db::open(dir.path(), "t", opts(clock)).unwrap();
    let mut a = db.appender();
    a.append(l("a"), i64::MIN, 5.0);
    a.append(l("b"), i64::MIN + 1, 5.0);
    a.append(l("c"), MIN_TIMESTAMP - 1, 5.0);
    let rep = a.commit().unwrap();
    assert_eq!(rep.accepted, 0);
    for (_, e) in &rep.rejected {
        assert!(
            matches!(e, Error::OutOfBounds { min_valid, .. } if *min_valid == MIN_TIMESTAMP),
            "{e}"
        );
        assert!(!e.to_string().contains("duplicate"), "{e}");
    }
    assert_eq!(db.head().num_series(), 0);
    // The oldest accepted timestamp works, and window arithmetic does not overflow.
    let mut a = db.appender();
    a.append(l("old"), MIN_TIMESTAMP, 1.0);
    a.append(l("now"), NOW, 1.0);
    assert_eq!(a.commit().unwrap().accepted, 2);
    db.compact().unwrap();
    // Retention (15d before now) removed the ancient sample, not the current one.
    assert_eq!(count(&db), 1);
}

/// A store holding a sample far in the future (written before the bound existed: here by a
/// store whose clock was far ahead) keeps everything younger than its retention by the
/// clock, through compactions and restarts, and accepts later writes.
#[test]
fn a_far_future_sample_in_the_wal_deletes_nothing_and_blocks_nothing() {
    for future in [i64::MAX, 32_472_144_000_000] {
        let dir = tempfile::tempdir().unwrap();
        {
            // The old world: a clock that lets anything in.
            let (clock, _) = Clock::manual(i64::MAX / 2);
            let o = DbOptions {
                max_future_ms: i64::MAX,
                ..opts(clock)
            };
            let (db, _) = Db::open(dir.path(), "t", o).unwrap();
            let mut a = db.appender();
            for i in 0..100 {
                // Five days of data up to now, and the far-future sample.
                a.append(l("m"), NOW - 5 * D + i * (5 * D / 100), i as f64);
            }
            a.append(l("future"), future, 1.0);
            assert_eq!(a.commit().unwrap().accepted, 101);
        }
        let (clock, cell) = Clock::manual(NOW);
        for round in 0..3 {
            let t = cell.load(Ordering::Relaxed);
            let (db, _) = Db::open(dir.path(), "t", opts(clock.clone())).unwrap();
            assert!(db.head().min_valid_time() <= t, "round {round}");
            db.compact().unwrap();
            db.compact().unwrap();
            assert!(
                db.head().min_valid_time() <= t - H,
                "round {round}: min_valid {} is not behind the clock",
                db.head().min_valid_time()
            );
            assert!(count(&db) >= 101, "round {round}: data lost ({})", count(&db));
            // Later writes are accepted: in order, a little out of order, new series.
            let mut a = db.appender();
            a.append(l("m"), t, 1.0);
            a.append(l("future"), t - 1000, 1.0);
            a.append(l(&format!("new{round}")), t - 30 * 60 * 1000, 1.0);
            let rep = a.commit().unwrap();
            assert_eq!(rep.accepted, 3, "round {round}: {:?}", rep.rejected);
            db.compact().unwrap();
            cell.fetch_add(H, Ordering::Relaxed);
        }
        let (db, _) = Db::open(dir.path(), "t", opts(clock)).unwrap();
        assert_eq!(count(&db), 101 + 9);
    }
}

#[test]
fn retention_is_measured_from_the_clock_not_the_newest_sample() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, cell) = Clock::manual(NOW);
    let o = DbOptions {
        retention_ms: 2 * D,
        ..opts(clock)
    };
    let (db, _) = Db::open(dir.path(), "t", o).unwrap();
    let mut a = db.appender();
    for i in 0..24 {
        a.append(l("m"), NOW - D + i * H, 1.0);
    }
    a.append(l("m"), NOW + 5 * 60 * 1000, 1.0);
    assert_eq!(a.commit().unwrap().accepted, 25);
    db.flush_head_before(NOW).unwrap();
    assert!(!db.blocks().is_empty());
    db.compact().unwrap();
    assert_eq!(count(&db), 25);
    // Historical data: the clock is far ahead, retention follows the newest sample.
    cell.store(NOW + 365 * D, Ordering::Relaxed);
    db.compact().unwrap();
    assert_eq!(
        count(&db),
        25,
        "the newest sample is within retention of the rest"
    );
    // Four days of clock later relative to the data: everything older than 2 days before
    // the newest sample goes, as before.
    let mut a = db.appender();
    a.append(l("m"), NOW + 3 * D, 1.0);
    assert_eq!(a.commit().unwrap().accepted, 1);
    db.flush_head_before(NOW + 3 * D).unwrap();
    db.compact().unwrap();
    assert!(count(&db) < 26);
}

#[test]
fn the_head_cut_never_moves_min_valid_past_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, _) = Clock::manual(NOW);
    let (db, _) = Db::open(dir.path(), "t", opts(clock)).unwrap();
    let mut a = db.appender();
    a.append(l("m"), NOW - 5 * H, 1.0);
    a.append(l("m"), NOW, 2.0);
    a.append(l("soon"), NOW + 9 * 60 * 1000, 2.0);
    assert_eq!(a.commit().unwrap().accepted, 3);
    db.compact().unwrap();
    assert!(db.head().min_valid_time() <= NOW - H);
    db.flush_head_before(i64::MAX).unwrap();
    assert!(db.head().min_valid_time() <= NOW);
    let mut a = db.appender();
    a.append(l("m"), NOW + 1, 3.0);
    assert_eq!(a.commit().unwrap().accepted, 1);
    assert_eq!(count(&db), 4);
}
