//! The head's inverted index: label name → value → series ids.

use std::collections::BTreeMap;
use std::sync::Arc;

use hashbrown::HashMap;
use roaring::RoaringBitmap;

/// Postings of the head. Values are kept in a `BTreeMap` so that label-value listings and
/// regex scans walk them in sorted order without sorting per query.
#[derive(Default)]
pub(crate) struct MemPostings {
    by_name: HashMap<Arc<str>, BTreeMap<Arc<str>, RoaringBitmap>, foldhash::fast::RandomState>,
    all: RoaringBitmap,
}

impl MemPostings {
    pub fn add(&mut self, id: u32, labels: impl Iterator<Item = (Arc<str>, Arc<str>)>) {
        for (n, v) in labels {
            self.by_name
                .entry(n)
                .or_default()
                .entry(v)
                .or_default()
                .insert(id);
        }
        self.all.insert(id);
    }

    pub fn remove(&mut self, id: u32, labels: impl Iterator<Item = (Arc<str>, Arc<str>)>) {
        for (n, v) in labels {
            let Some(values) = self.by_name.get_mut(&n) else {
                continue;
            };
            if let Some(p) = values.get_mut(&v) {
                p.remove(id);
                if p.is_empty() {
                    values.remove(&v);
                }
            }
            if values.is_empty() {
                self.by_name.remove(&n);
            }
        }
        self.all.remove(id);
    }

    pub fn get(&self, name: &str, value: &str) -> RoaringBitmap {
        self.by_name
            .get(name)
            .and_then(|m| m.get(value))
            .cloned()
            .unwrap_or_default()
    }

    pub fn all(&self) -> RoaringBitmap {
        self.all.clone()
    }

    pub fn names(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self.by_name.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&str)) {
        if let Some(m) = self.by_name.get(name) {
            for v in m.keys() {
                f(v);
            }
        }
    }

    /// `(name, number of values, number of series with the name)` for every name.
    pub fn cardinalities(&self) -> Vec<(Arc<str>, usize, u64)> {
        self.by_name
            .iter()
            .map(|(n, m)| (n.clone(), m.len(), m.values().map(|p| p.len()).sum()))
            .collect()
    }

    /// `(name, value, series)` for every pair.
    pub fn pairs(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>, u64)> {
        self.by_name
            .iter()
            .flat_map(|(n, m)| m.iter().map(move |(v, p)| (n, v, p.len())))
    }

    pub fn mem_size(&self) -> usize {
        self.by_name
            .values()
            .map(|m| m.values().map(|p| p.serialized_size() + 48).sum::<usize>() + 64)
            .sum::<usize>()
            + self.all.serialized_size()
    }
}
