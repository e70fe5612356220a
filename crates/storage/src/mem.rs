//! [`MemStore`]: the storage traits over an in-memory map, for tests and small embedders.
//! Not a production store: no limits, no persistence, every select copies its samples.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::{
    AppendReport, Appendable, Appender, Error, ErrorKind, Labels, Matcher, Querier, Queryable, Result,
    Sample, SampleIterator, Series, SeriesData,
};

/// Series and their samples, sorted by time (a later write of a timestamp replaces it).
#[derive(Default)]
pub struct MemStore {
    series: RwLock<BTreeMap<Labels, BTreeMap<i64, f64>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Adds samples of one series directly.
    pub fn add(&self, labels: Labels, samples: impl IntoIterator<Item = (i64, f64)>) {
        self.series.write().entry(labels).or_default().extend(samples);
    }
}

impl Queryable for MemStore {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier + '_>> {
        if mint > maxt {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("query range start {mint} is after its end {maxt}"),
            ));
        }
        Ok(Box::new(MemQuerier {
            store: self,
            mint,
            maxt,
        }))
    }
}

struct MemQuerier<'a> {
    store: &'a MemStore,
    mint: i64,
    maxt: i64,
}

fn matches(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

impl MemQuerier<'_> {
    fn matching(&self, matchers: &[Matcher]) -> Vec<(Labels, Vec<Sample>)> {
        self.store
            .series
            .read()
            .iter()
            .filter(|(l, _)| matches(l, matchers))
            .map(|(l, s)| {
                let v: Vec<Sample> = s
                    .range(self.mint..=self.maxt)
                    .map(|(&t, &v)| Sample::new(t, v))
                    .collect();
                (l.clone(), v)
            })
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }
}

impl Querier for MemQuerier<'_> {
    fn select(&self, matchers: &[Matcher]) -> Result<Vec<Series>> {
        if matchers.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .matching(matchers)
            .into_iter()
            .map(|(l, v)| Series::new(l, Arc::new(MemSamples(v))))
            .collect())
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<Arc<str>>> {
        let mut names: Vec<Arc<str>> = self
            .matching(matchers)
            .iter()
            .flat_map(|(l, _)| l.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<Arc<str>>> {
        let mut values: Vec<Arc<str>> = self
            .matching(matchers)
            .iter()
            .filter_map(|(l, _)| l.iter().find(|x| &*x.name == name).map(|x| x.value.clone()))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }

    fn range(&self) -> (i64, i64) {
        (self.mint, self.maxt)
    }
}

struct MemSamples(Vec<Sample>);

impl SeriesData for MemSamples {
    fn iter(&self) -> Box<dyn SampleIterator + '_> {
        Box::new(MemIter(self.0.iter()))
    }
}

struct MemIter<'a>(std::slice::Iter<'a, Sample>);

impl Iterator for MemIter<'_> {
    type Item = Sample;
    fn next(&mut self) -> Option<Sample> {
        self.0.next().copied()
    }
}

impl SampleIterator for MemIter<'_> {
    fn err(&self) -> Option<Error> {
        None
    }
}

impl Appendable for MemStore {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(MemAppender {
            store: self,
            batch: Vec::new(),
        })
    }
}

struct MemAppender<'a> {
    store: &'a MemStore,
    batch: Vec<(Labels, i64, f64)>,
}

impl Appender for MemAppender<'_> {
    fn append(&mut self, labels: &Labels, t: i64, v: f64) {
        self.batch.push((labels.clone(), t, v));
    }

    fn commit(self: Box<Self>) -> Result<AppendReport> {
        let n = self.batch.len();
        let mut map = self.store.series.write();
        for (l, t, v) in self.batch {
            map.entry(l).or_default().insert(t, v);
        }
        Ok(AppendReport {
            appended: n,
            rejected: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_by_matchers_within_the_range_sorted_by_labels() {
        let s = MemStore::new();
        let l = |job: &str| Labels::from_pairs([("__name__", "up"), ("job", job)]);
        s.add(l("b"), [(10, 1.0), (20, 2.0)]);
        s.add(l("a"), [(30, 3.0)]);
        let q = s.querier(15, 30).unwrap();
        let got = q.select(&[Matcher::equal("__name__", "up")]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].labels(), &l("a"));
        assert_eq!(got[1].samples().unwrap(), vec![Sample::new(20, 2.0)]);
        assert!(q.select(&[]).unwrap().is_empty());
        assert_eq!(q.label_values("job", &[]).unwrap().len(), 2);
        let err = s.querier(2, 1).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
