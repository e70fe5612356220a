//! Family metadata per tenant (type, help, unit, buckets): kept in memory, saved next to the tenant's store so a restart knows each family's type.

use super::*;

impl Collector {
    pub(super) fn meta_path(&self, tenant: &str) -> PathBuf {
        self.opts.meta_dir.join(format!("{tenant}.jsonl"))
    }

    pub(super) fn load_meta(&self, tenant: &str) -> Vec<Meta> {
        let Ok(text) = std::fs::read_to_string(self.meta_path(tenant)) else {
            return Vec::new();
        };
        // A torn last line (crash while appending) is skipped; later lines win.
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub(super) fn save_meta(&self, tenant: &str, metas: &[Meta]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.opts.meta_dir)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.meta_path(tenant))?;
        let mut buf = Vec::new();
        for m in metas {
            serde_json::to_writer(&mut buf, m).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        f.write_all(&buf)
    }

    /// Metadata of every metric name of `tenant`. A read: it creates no per-tenant state
    /// (a tenant not tracked since start is read from its metadata file, if any).
    pub fn metadata(&self, tenant: &str) -> HashMap<String, Meta> {
        let state = self.tenants.lock().get(tenant).cloned();
        match state {
            Some(s) => s
                .lock()
                .meta
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => self
                .load_meta(tenant)
                .into_iter()
                .map(|m| (m.name.clone(), m))
                .collect(),
        }
    }
}
