//! The head's string interner: every label name and value is stored once and referred to by
//! a `u32` symbol, so a series' labels cost 8 bytes per pair.

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::RwLock;

/// Interned strings. A symbol lives as long as the head: strings of series that garbage
/// collection dropped stay until restart (replay interns only live series). With realistic
/// churn (pod names, say) that is a few MB a day; see docs/architecture.md.
#[derive(Default)]
pub(crate) struct Symbols {
    inner: RwLock<SymbolsInner>,
}

#[derive(Default)]
struct SymbolsInner {
    ids: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    strs: Vec<Arc<str>>,
}

impl Symbols {
    /// The symbol of `s`, adding it if new.
    pub fn intern(&self, s: &str) -> u32 {
        if let Some(&id) = self.inner.read().ids.get(s) {
            return id;
        }
        let mut w = self.inner.write();
        if let Some(&id) = w.ids.get(s) {
            return id;
        }
        let id = w.strs.len() as u32;
        let a: Arc<str> = Arc::from(s);
        w.strs.push(a.clone());
        w.ids.insert(a, id);
        id
    }

    /// Resolves symbols with one lock acquisition.
    pub fn with<R>(&self, f: impl FnOnce(&dyn Fn(u32) -> Arc<str>) -> R) -> R {
        let r = self.inner.read();
        let get = |id: u32| r.strs.get(id as usize).cloned().unwrap_or_else(|| Arc::from(""));
        f(&get)
    }

    /// Number of interned strings and their total bytes.
    pub fn stats(&self) -> (usize, usize) {
        let r = self.inner.read();
        (r.strs.len(), r.strs.iter().map(|s| s.len()).sum())
    }
}
