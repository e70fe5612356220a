//! Tenants: one [`Db`] per tenant under `<root>/tenants/<id>/`, opened lazily, maintained by
//! one background thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::db::{Db, DbOptions, OpenReport};
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

/// All tenants' stores. Each tenant is a separate partition (head, WAL, blocks), so a
/// read of one tenant can never see another's data, and retention or deletion of one
/// tenant touches only its directory.
pub struct Storage {
    root: PathBuf,
    defaults: DbOptions,
    overrides: RwLock<HashMap<String, DbOptions>>,
    tenants: RwLock<HashMap<String, Arc<Db>>>,
    /// Serializes opening, so two requests for a new tenant open it once.
    opening: Mutex<()>,
}

impl Storage {
    /// Opens the storage rooted at `root`, opening every existing tenant. Returns each
    /// tenant's open report.
    pub fn open(root: &Path, defaults: DbOptions) -> Result<(Storage, Vec<(String, OpenReport)>)> {
        let dir = root.join("tenants");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let s = Storage {
            root: root.to_owned(),
            defaults,
            overrides: RwLock::new(HashMap::new()),
            tenants: RwLock::new(HashMap::new()),
            opening: Mutex::new(()),
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
            reports.push((name, rep));
        }
        Ok((s, reports))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Sets options for one tenant (retention, limits), applied when it is next opened;
    /// call before the tenant's first use.
    pub fn set_tenant_options(&self, tenant: &str, opts: DbOptions) {
        self.overrides.write().insert(tenant.to_owned(), opts);
    }

    fn open_tenant(&self, tenant: &str) -> Result<(Arc<Db>, OpenReport)> {
        let opts = self
            .overrides
            .read()
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        let dir = self.root.join("tenants").join(tenant);
        let (db, rep) = Db::open(&dir, tenant, opts)?;
        Ok((Arc::new(db), rep))
    }

    /// The store of `tenant`, created on first use (for writes).
    pub fn tenant(&self, tenant: &str) -> Result<Arc<Db>> {
        if let Some(db) = self.tenants.read().get(tenant) {
            return Ok(db.clone());
        }
        if !is_valid_tenant(tenant) {
            return Err(Error::InvalidTenant(tenant.to_owned()));
        }
        let _o = self.opening.lock();
        if let Some(db) = self.tenants.read().get(tenant) {
            return Ok(db.clone());
        }
        let (db, _) = self.open_tenant(tenant)?;
        self.tenants.write().insert(tenant.to_owned(), db.clone());
        Ok(db)
    }

    /// The store of `tenant` if it exists (for reads: an unknown tenant has no data, and
    /// reading must not create directories).
    pub fn existing_tenant(&self, tenant: &str) -> Option<Arc<Db>> {
        self.tenants.read().get(tenant).cloned()
    }

    /// Tenant ids, sorted.
    pub fn tenants(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tenants.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Runs [`Db::compact`] on every tenant; logs and skips failures.
    pub fn compact_all(&self) {
        let dbs: Vec<Arc<Db>> = self.tenants.read().values().cloned().collect();
        for db in dbs {
            if let Err(e) = db.compact() {
                tracing::error!(tenant = db.tenant(), error = %e, "compaction failed");
            }
        }
    }

    /// Fsyncs every tenant's WAL.
    pub fn sync_all(&self) -> Result<()> {
        let dbs: Vec<Arc<Db>> = self.tenants.read().values().cloned().collect();
        for db in dbs {
            db.sync()?;
        }
        Ok(())
    }

    /// Starts the maintenance thread: [`Storage::compact_all`] every `every`. It stops when
    /// the returned handle is dropped or [`Maintenance::stop`] is called.
    pub fn start_maintenance(self: &Arc<Self>, every: Duration) -> Maintenance {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak = Arc::downgrade(self);
        let stop2 = stop.clone();
        let running = Arc::new(AtomicBool::new(true));
        let running2 = running.clone();
        let handle = std::thread::Builder::new()
            .name("tsdb-maintenance".into())
            .spawn(move || {
                loop {
                    {
                        let (m, cv) = &*stop2;
                        let mut stopped = m.lock();
                        if !*stopped {
                            cv.wait_for(&mut stopped, every);
                        }
                        if *stopped {
                            break;
                        }
                    }
                    let Some(s) = weak.upgrade() else { break };
                    s.compact_all();
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
