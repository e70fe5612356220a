//! Tenants: one [`Db`] per tenant under `<root>/tenants/<id>/`, opened lazily, maintained by
//! one background thread, fsynced by one [`FsyncScheduler`] thread.
//!
//! # Decisions
//! - **Bounded.** At most [`StorageOptions::max_tenants`] tenants exist (on disk, open or
//!   not); a write for a new tenant beyond it is refused with [`Error::TooManyTenants`].
//!   Only a write creates a tenant ([`Storage::tenant`]); reads
//!   ([`Storage::existing_tenant`]) of an unknown tenant create nothing.
//! - **Idle tenants are closed.** A tenant that nobody used (no [`Storage::tenant`] or
//!   [`Storage::existing_tenant`]) for [`StorageOptions::idle_close_after`] and that nobody
//!   holds is closed by the maintenance pass: its WAL is flushed and fsynced, its files
//!   closed and its head's memory released. Its next use opens it again (replaying its WAL,
//!   as a restart does). While closed it is not compacted, so its retention is applied
//!   after it is next opened.
//! - **One fsync thread.** Every tenant's WAL under [`crate::FsyncPolicy::Interval`] is
//!   fsynced by the storage's one [`FsyncScheduler`], not by a thread of its own.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::db::{Db, DbOptions, OpenReport};
use crate::wal::FsyncScheduler;
use crate::{Error, Result};

/// The tenant used when a request names none.
pub const DEFAULT_TENANT: &str = "default";

/// Whether `id` is a usable tenant id: 1–128 characters of `[a-zA-Z0-9_.-]`, not `.`/`..`.
/// Tenant ids become directory names, so nothing else is allowed.
pub fn is_valid_tenant(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Settings of a [`Storage`] as a whole (per-tenant ones are in [`DbOptions`]).
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Most tenants (0 = no limit). Default 1000.
    pub max_tenants: usize,
    /// A tenant unused this long is closed (see the module docs); `None` keeps every tenant
    /// open. Default 15 minutes.
    pub idle_close_after: Option<Duration>,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            max_tenants: 1000,
            idle_close_after: Some(Duration::from_secs(15 * 60)),
        }
    }
}

/// All tenants' stores. Each tenant is a separate partition (head, WAL, blocks), so a
/// read of one tenant can never see another's data, and retention or deletion of one
/// tenant touches only its directory.
pub struct Storage {
    root: PathBuf,
    defaults: DbOptions,
    opts: StorageOptions,
    overrides: RwLock<HashMap<String, DbOptions>>,
    /// The open tenants.
    tenants: RwLock<HashMap<String, Arc<Db>>>,
    /// Every tenant that exists (a directory), open or closed.
    known: RwLock<HashSet<String>>,
    /// Serializes opening and closing, so two requests for a new tenant open it once, and a
    /// tenant is never open twice.
    opening: Mutex<()>,
    /// Fsyncs every tenant's WAL.
    fsync: FsyncScheduler,
}

impl Storage {
    /// Opens the storage rooted at `root` with default [`StorageOptions`], opening every
    /// existing tenant. Returns each tenant's open report.
    pub fn open(root: &Path, defaults: DbOptions) -> Result<(Storage, Vec<(String, OpenReport)>)> {
        Storage::open_with(root, defaults, StorageOptions::default())
    }

    /// Opens the storage rooted at `root`, opening every existing tenant (all of them, even
    /// beyond `max_tenants`: they exist). Returns each tenant's open report.
    pub fn open_with(
        root: &Path,
        defaults: DbOptions,
        opts: StorageOptions,
    ) -> Result<(Storage, Vec<(String, OpenReport)>)> {
        let dir = root.join("tenants");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let fsync = FsyncScheduler::new().map_err(|e| Error::io("spawn fsync thread for", &dir, e))?;
        let s = Storage {
            root: root.to_owned(),
            defaults,
            opts,
            overrides: RwLock::new(HashMap::new()),
            tenants: RwLock::new(HashMap::new()),
            known: RwLock::new(HashSet::new()),
            opening: Mutex::new(()),
            fsync,
        };
        let mut reports = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("read dir", &dir, e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| is_valid_tenant(n))
            .collect();
        names.sort();
        for name in names {
            let (db, rep) = s.open_tenant(&name)?;
            s.tenants.write().insert(name.clone(), db);
            s.known.write().insert(name.clone());
            reports.push((name, rep));
        }
        Ok((s, reports))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The storage's options.
    pub fn options(&self) -> &StorageOptions {
        &self.opts
    }

    /// The one fsync scheduler of every tenant's WAL.
    pub fn fsync_scheduler(&self) -> &FsyncScheduler {
        &self.fsync
    }

    /// Sets options for one tenant (retention, limits), applied when it is next opened;
    /// call before the tenant's first use.
    pub fn set_tenant_options(&self, tenant: &str, opts: DbOptions) {
        self.overrides.write().insert(tenant.to_owned(), opts);
    }

    fn open_tenant(&self, tenant: &str) -> Result<(Arc<Db>, OpenReport)> {
        let mut opts = self
            .overrides
            .read()
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        if opts.fsync_scheduler.is_none() {
            opts.fsync_scheduler = Some(self.fsync.clone());
        }
        let dir = self.root.join("tenants").join(tenant);
        let (db, rep) = Db::open(&dir, tenant, opts)?;
        db.touch();
        Ok((Arc::new(db), rep))
    }

    /// The open store of `tenant`, marked as used.
    fn open_one(&self, tenant: &str) -> Option<Arc<Db>> {
        let db = self.tenants.read().get(tenant).cloned()?;
        db.touch();
        Some(db)
    }

    /// The store of `tenant`, created on first use (for writes). A new tenant beyond
    /// [`StorageOptions::max_tenants`] is refused with [`Error::TooManyTenants`].
    pub fn tenant(&self, tenant: &str) -> Result<Arc<Db>> {
        self.tenant_for_write(tenant).map(|(db, _)| db)
    }

    /// [`Storage::tenant`], and whether this call created the tenant: a writer whose
    /// samples were all refused then calls [`Storage::forget_unused`], so that only an
    /// accepted write leaves a tenant behind.
    pub fn tenant_for_write(&self, tenant: &str) -> Result<(Arc<Db>, bool)> {
        if let Some(db) = self.open_one(tenant) {
            return Ok((db, false));
        }
        if !is_valid_tenant(tenant) {
            return Err(Error::InvalidTenant(tenant.to_owned()));
        }
        let _o = self.opening.lock();
        if let Some(db) = self.open_one(tenant) {
            return Ok((db, false));
        }
        if self.known.read().contains(tenant) {
            // Closed while idle: reopened, not created.
            let (db, _) = self.open_tenant(tenant)?;
            self.tenants.write().insert(tenant.to_owned(), db.clone());
            return Ok((db, false));
        }
        let max = self.opts.max_tenants;
        {
            let known = self.known.read();
            if max > 0 && !known.contains(tenant) && known.len() >= max {
                return Err(Error::TooManyTenants {
                    tenant: tenant.to_owned(),
                    limit: max,
                });
            }
        }
        let (db, _) = self.open_tenant(tenant)?;
        self.tenants.write().insert(tenant.to_owned(), db.clone());
        self.known.write().insert(tenant.to_owned());
        Ok((db, true))
    }

    /// Removes `tenant` (store, directory, its place under `max_tenants`) if it holds
    /// nothing (no series, no blocks) and nobody holds it: for a tenant that
    /// [`Storage::tenant_for_write`] created for a write whose every sample was refused.
    /// Returns whether it was removed.
    pub fn forget_unused(&self, tenant: &str) -> bool {
        let _o = self.opening.lock();
        let db = {
            let mut open = self.tenants.write();
            let unused = open.get(tenant).is_some_and(|db| {
                Arc::strong_count(db) == 1 && db.head().num_series() == 0 && db.blocks().is_empty()
            });
            if !unused {
                return false;
            }
            self.known.write().remove(tenant);
            open.remove(tenant)
        };
        let dir = db.as_ref().map(|d| d.dir().to_owned());
        drop(db);
        if let Some(dir) = dir
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(tenant, error = %e, "cannot remove an unused tenant's directory");
        }
        true
    }

    /// The store of `tenant` if it exists (for reads: an unknown tenant has no data, and
    /// reading must not create anything). A closed tenant is opened again; if that fails
    /// the failure is logged and the tenant reads as empty.
    pub fn existing_tenant(&self, tenant: &str) -> Option<Arc<Db>> {
        if let Some(db) = self.open_one(tenant) {
            return Some(db);
        }
        if !self.known.read().contains(tenant) {
            return None;
        }
        let _o = self.opening.lock();
        if let Some(db) = self.open_one(tenant) {
            return Some(db);
        }
        match self.open_tenant(tenant) {
            Ok((db, rep)) => {
                tracing::info!(tenant, report = ?rep, "tenant reopened");
                self.tenants.write().insert(tenant.to_owned(), db.clone());
                Some(db)
            }
            Err(e) => {
                tracing::error!(tenant, error = %e, "cannot reopen tenant");
                None
            }
        }
    }

    /// Ids of every tenant that exists (open or closed), sorted.
    pub fn tenants(&self) -> Vec<String> {
        let mut v: Vec<String> = self.known.read().iter().cloned().collect();
        v.sort();
        v
    }

    /// Number of tenants that exist (open or closed).
    pub fn num_tenants(&self) -> usize {
        self.known.read().len()
    }

    /// The open tenants' stores (without opening closed ones or marking any as used).
    pub fn open_tenants(&self) -> Vec<Arc<Db>> {
        self.tenants.read().values().cloned().collect()
    }

    /// Closes the tenants unused for [`StorageOptions::idle_close_after`] that nobody holds
    /// (see the module docs). Returns how many were closed.
    pub fn close_idle(&self) -> usize {
        let Some(idle) = self.opts.idle_close_after else {
            return 0;
        };
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        // Held while the closed stores drop (their WALs are flushed and fsynced), so a
        // tenant is reopened only after its files are closed.
        let _o = self.opening.lock();
        let closed: Vec<Arc<Db>> = {
            let mut open = self.tenants.write();
            let doomed: Vec<String> = open
                .iter()
                .filter(|(_, db)| Arc::strong_count(db) == 1 && db.idle_ms() >= idle_ms)
                .map(|(name, _)| name.clone())
                .collect();
            doomed.iter().filter_map(|n| open.remove(n)).collect()
        };
        let n = closed.len();
        for db in closed {
            tracing::info!(tenant = db.tenant(), "closing idle tenant");
            if let Err(e) = db.close() {
                tracing::error!(tenant = db.tenant(), error = %e, "closing an idle tenant's WAL failed");
            }
        }
        n
    }

    /// Runs [`Db::compact`] on every open tenant; logs and skips failures.
    pub fn compact_all(&self) {
        for db in self.open_tenants() {
            if let Err(e) = db.compact() {
                tracing::error!(tenant = db.tenant(), error = %e, "compaction failed");
            }
        }
    }

    /// Moves every open tenant's newly closed head chunks out of memory
    /// ([`Db::settle_head_chunks`]); returns the chunks moved.
    pub fn settle_all(&self) -> usize {
        self.open_tenants().iter().map(|db| db.settle_head_chunks()).sum()
    }

    /// Fsyncs every open tenant's WAL (closed ones were fsynced when they closed).
    pub fn sync_all(&self) -> Result<()> {
        for db in self.open_tenants() {
            db.sync()?;
        }
        Ok(())
    }

    /// Starts the maintenance thread: [`Storage::compact_all`] every `every`, and
    /// [`Storage::settle_all`] every [`SETTLE_TICK`] in between (closed head chunks leave
    /// memory, and their samples the WAL, within seconds, not at the next compaction). It stops when the returned
    /// handle is dropped or [`Maintenance::stop`] is called.
    pub fn start_maintenance(self: &Arc<Self>, every: Duration) -> Maintenance {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak = Arc::downgrade(self);
        let stop2 = stop.clone();
        let running = Arc::new(AtomicBool::new(true));
        let running2 = running.clone();
        let handle = std::thread::Builder::new()
            .name("tsdb-maintenance".into())
            .spawn(move || {
                let tick = every.min(SETTLE_TICK);
                let mut last_compaction = std::time::Instant::now();
                loop {
                    {
                        let (m, cv) = &*stop2;
                        let mut stopped = m.lock();
                        if !*stopped {
                            cv.wait_for(&mut stopped, tick);
                        }
                        if *stopped {
                            break;
                        }
                    }
                    let Some(s) = weak.upgrade() else { break };
                    if last_compaction.elapsed() + Duration::from_millis(50) >= every {
                        last_compaction = std::time::Instant::now();
                        s.compact_all();
                        s.close_idle();
                    } else {
                        s.settle_all();
                    }
                }
                running2.store(false, Ordering::Release);
            })
            .ok();
        Maintenance {
            stop,
            handle,
            running,
        }
    }
}

/// How often the maintenance thread asks each tenant whether a settle pass is due
/// ([`Db::settle_head_chunks`]: after [`SETTLE_EVERY`], or sooner when many chunks wait).
pub const SETTLE_TICK: Duration = Duration::from_secs(1);

/// A tenant's settle pass runs at least this often while chunks are cut.
pub const SETTLE_EVERY: Duration = Duration::from_secs(5);

/// A tenant's settle pass runs at the next tick once this many chunks wait for it: after a
/// burst, chunks leave memory (and the WAL) as soon as the pass can take them, while a
/// steady trickle costs one pass over the series per [`SETTLE_EVERY`].
pub const SETTLE_SOON_CHUNKS: usize = 4096;

/// The running maintenance thread; stops it on drop.
pub struct Maintenance {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
    running: Arc<AtomicBool>,
}

impl Maintenance {
    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock() = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }

    /// Whether the thread is still running.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["default", "team-a", "a.b_c", "X1"] {
            assert!(is_valid_tenant(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(129)] {
            assert!(!is_valid_tenant(bad), "{bad}");
        }
    }
}
