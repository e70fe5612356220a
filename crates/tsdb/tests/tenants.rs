//! Tenants are bounded: a tenant limit, one fsync thread for all WALs, idle tenants closed
//! and reopened on use, reads that create nothing. One test per process aspect that counts
//! threads, so it runs alone in this binary.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use metricsd_model::{Labels, MatchOp, Matcher};
use metricsd_tsdb::{Clock, DbOptions, Error, Queryable, Storage, StorageOptions};

const NOW: i64 = 1_796_083_200_000;

fn l(name: &str) -> Labels {
    Labels::from_pairs([("__name__", name)])
}

fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == name)
        .count()
}

fn count(storage: &Storage, tenant: &str) -> usize {
    let Some(db) = storage.existing_tenant(tenant) else {
        return 0;
    };
    let q = db.querier(i64::MIN, i64::MAX).unwrap();
    q.select(&[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()])
        .unwrap()
        .iter()
        .map(|s| s.samples().unwrap().len())
        .sum()
}

#[test]
fn tenants_are_bounded_share_one_fsync_thread_and_idle_ones_close() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, cell) = Clock::manual(NOW);
    let db_opts = DbOptions {
        clock,
        wal: metricsd_tsdb::WalOptions {
            fsync: metricsd_tsdb::FsyncPolicy::Interval(Duration::from_millis(20)),
            ..Default::default()
        },
        ..DbOptions::default()
    };
    let opts = StorageOptions {
        max_tenants: 300,
        idle_close_after: Some(Duration::from_secs(600)),
    };
    let before = threads_named("wal-fsync");
    let (storage, _) = Storage::open_with(dir.path(), db_opts.clone(), opts.clone()).unwrap();
    for i in 0..300 {
        let db = storage.tenant(&format!("t{i}")).unwrap();
        let mut a = db.appender();
        a.append(l("m"), NOW - 1000, i as f64);
        assert_eq!(a.commit().unwrap().accepted, 1);
    }
    assert_eq!(storage.num_tenants(), 300);
    assert_eq!(storage.fsync_scheduler().len(), 300);
    assert_eq!(
        threads_named("wal-fsync") - before,
        1,
        "one fsync thread for 300 WALs"
    );
    // The limit: a new tenant is refused, a known one is not.
    let e = storage
        .tenant("one-more")
        .err()
        .expect("the 301st tenant is refused");
    assert!(matches!(e, Error::TooManyTenants { limit: 300, .. }), "{e}");
    assert!(e.to_string().contains("max_tenants"), "{e}");
    assert_eq!(e.status(), metricsd_tsdb::Status::LimitExceeded);
    assert!(storage.tenant("t7").is_ok());
    assert!(!dir.path().join("tenants/one-more").exists());
    // A new tenant whose every sample is refused leaves nothing behind.
    let (db, created) = storage.tenant_for_write("t0").unwrap();
    assert!(!created);
    drop(db);
    assert!(!storage.forget_unused("t0"), "a tenant with data stays");
    // Reads of unknown tenants create nothing.
    assert!(storage.existing_tenant("nobody").is_none());
    assert!(!dir.path().join("tenants/nobody").exists());
    assert_eq!(storage.num_tenants(), 300);
    // The background fsync ran for every WAL.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if storage.open_tenants().iter().all(|db| db.healthy()) {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }

    // Idle: nothing is closed before the timeout, a held tenant is never closed.
    assert_eq!(storage.close_idle(), 0);
    cell.fetch_add(601_000, Ordering::Relaxed);
    let held = storage.tenant("t1").unwrap();
    cell.fetch_add(1_000, Ordering::Relaxed);
    assert_eq!(storage.close_idle(), 299, "every idle tenant but the held one");
    assert_eq!(storage.open_tenants().len(), 1);
    assert_eq!(storage.num_tenants(), 300, "closed tenants still count");
    drop(held);
    // The scheduler forgot the closed WALs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.fsync_scheduler().len() > 1 {
        assert!(Instant::now() < deadline, "{}", storage.fsync_scheduler().len());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reopened lazily, by a read or a write, with their data.
    assert_eq!(count(&storage, "t5"), 1);
    let db = storage.tenant("t6").unwrap();
    let mut a = db.appender();
    a.append(l("m"), NOW, 1.0);
    assert_eq!(a.commit().unwrap().accepted, 1);
    drop(db);
    assert_eq!(count(&storage, "t6"), 2);
    assert_eq!(storage.open_tenants().len(), 3);
    assert!(
        storage.tenant("one-more").is_err(),
        "the limit counts closed tenants"
    );

    // A restart opens them all (they exist), still one fsync thread.
    drop(storage);
    let (storage, reports) = Storage::open_with(dir.path(), db_opts, opts).unwrap();
    assert_eq!(reports.len(), 300);
    assert_eq!(threads_named("wal-fsync") - before, 1);
    assert_eq!(count(&storage, "t6"), 2);
    assert_eq!(count(&storage, "t299"), 1);
}
