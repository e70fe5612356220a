//! The head's string interner: every label name and value is stored once and referred to by
//! a `u32` symbol, so a series' labels cost 8 bytes per pair.
//!
//! # Garbage collection
//! A symbol counts the label slots of head series that use it ([`Symbols::acquire`] when a
//! series is created, [`Symbols::release`] when [`super::Head::gc`] removes it). At zero its
//! string is dropped and its id goes to a free list, to be reused by the next new string.
//! So with label churn (pod names, say) the table stays the size of the live series' label
//! strings, instead of growing until restart.
//!
//! Reusing ids is safe because nothing resolves the symbols of a removed series after its
//! release. A removed series that anyone still holds (a reader mid-query, an appender's
//! handle) gets its labels materialised before the release (`MemSeries::tomb`), and
//! [`super::Head::labels_of`] answers from them. It checks under this table's read lock,
//! and the release takes the write lock, so no reader can see the release without also
//! seeing the materialised labels.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hashbrown::HashMap;
use metricsd_model::Labels;
use parking_lot::RwLock;

/// Interned strings with use counts. See the module docs.
#[derive(Default)]
pub(crate) struct Symbols {
    inner: RwLock<SymbolsInner>,
}

#[derive(Default)]
struct SymbolsInner {
    ids: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    /// The string of each id; a free id holds the empty string.
    strs: Vec<Arc<str>>,
    /// Label slots of live series using each id (atomic, so taking a use needs only the
    /// read lock when the string is known).
    uses: Vec<AtomicU32>,
    /// Ids whose string was dropped, for reuse.
    free: Vec<u32>,
}

impl Symbols {
    /// The (name, value) symbols of `labels`, interning new strings, and counting one use
    /// of each.
    pub fn acquire(&self, labels: &Labels) -> Box<[(u32, u32)]> {
        {
            let r = self.inner.read();
            let known: Option<Box<[(u32, u32)]>> = labels
                .iter()
                .map(|l| Some((*r.ids.get(&*l.name)?, *r.ids.get(&*l.value)?)))
                .collect();
            if let Some(ids) = known {
                for &(n, v) in &ids {
                    r.count_use(n);
                    r.count_use(v);
                }
                return ids;
            }
        }
        let mut w = self.inner.write();
        labels
            .iter()
            .map(|l| (w.use_of(&l.name), w.use_of(&l.value)))
            .collect()
    }

    /// Gives back one use of each of `ids`; a symbol left unused is dropped. The caller
    /// guarantees that nothing resolves a released use afterwards (see the module docs).
    pub fn release(&self, ids: impl IntoIterator<Item = u32>) {
        let mut w = self.inner.write();
        for id in ids {
            let Some(uses) = w.uses.get(id as usize) else {
                debug_assert!(false, "release of unknown symbol {id}");
                continue;
            };
            let before = uses.fetch_sub(1, Ordering::Relaxed);
            debug_assert!(before > 0, "symbol {id} released more often than acquired");
            if before == 1
                && let Some(slot) = w.strs.get_mut(id as usize)
            {
                let s = std::mem::replace(slot, Arc::from(""));
                w.ids.remove(&s);
                w.free.push(id);
            }
        }
    }

    /// Resolves symbols with one lock acquisition.
    pub fn with<R>(&self, f: impl FnOnce(&dyn Fn(u32) -> Arc<str>) -> R) -> R {
        let r = self.inner.read();
        let get = |id: u32| r.strs.get(id as usize).cloned().unwrap_or_else(|| Arc::from(""));
        f(&get)
    }

    /// Number of live strings and their total bytes.
    pub fn stats(&self) -> (usize, usize) {
        let r = self.inner.read();
        (r.ids.len(), r.ids.keys().map(|s| s.len()).sum())
    }
}

impl SymbolsInner {
    /// The symbol of `s` (added if new), counting one use.
    fn use_of(&mut self, s: &str) -> u32 {
        let id = match self.ids.get(s) {
            Some(&id) => id,
            None => self.add(s),
        };
        self.count_use(id);
        id
    }

    /// Counts one use of `id`, a symbol of `ids` (which has a string and a count).
    fn count_use(&self, id: u32) {
        match self.uses.get(id as usize) {
            Some(uses) => {
                uses.fetch_add(1, Ordering::Relaxed);
            }
            None => debug_assert!(false, "use of unknown symbol {id}"),
        }
    }

    fn add(&mut self, s: &str) -> u32 {
        let a: Arc<str> = Arc::from(s);
        // A free id is one `strs` has a slot for.
        let reused = self.free.pop().and_then(|id| {
            *self.strs.get_mut(id as usize)? = a.clone();
            Some(id)
        });
        let id = match reused {
            Some(id) => id,
            None => {
                self.strs.push(a.clone());
                self.uses.push(AtomicU32::new(0));
                (self.strs.len() - 1) as u32
            }
        };
        self.ids.insert(a, id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_symbols_are_dropped_and_their_ids_reused() {
        let s = Symbols::default();
        let flat = |b: &[(u32, u32)]| -> Vec<u32> { b.iter().flat_map(|&(n, v)| [n, v]).collect() };
        let a = s.acquire(&Labels::from_pairs([("job", "a")]));
        let b = s.acquire(&Labels::from_pairs([("job", "b")]));
        assert_eq!(a[0].0, b[0].0, "one symbol per string");
        assert_eq!(s.stats().0, 3);
        s.release(flat(&a));
        assert_eq!(s.stats(), (2, "job".len() + "b".len()), "`a` had one use");
        let c = s.acquire(&Labels::from_pairs([("job", "c")]));
        assert_eq!(c[0].1, a[0].1, "the freed id is reused");
        s.with(|get| {
            assert_eq!(&*get(c[0].1), "c");
            assert_eq!(&*get(b[0].0), "job", "still used by b and c");
        });
        s.release(flat(&b));
        s.release(flat(&c));
        assert_eq!(s.stats(), (0, 0));
    }
}
