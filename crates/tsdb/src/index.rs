//! The inverted label index shared by the head and persisted blocks: label name → value →
//! series ids (roaring bitmaps), and the evaluation of matchers over it.
//!
//! Both the head's in-memory index and a block's on-disk index implement [`IndexReader`];
//! [`postings_for_matchers`] evaluates Prometheus matcher semantics over either.

use std::sync::Arc;

use metricsd_model::{Labels, MatchOp, Matcher};
use roaring::{MultiOps, RoaringBitmap};

use crate::Result;

/// Read access to an inverted index whose series ids are `u32`.
pub trait IndexReader {
    /// All label names, sorted.
    fn label_names(&self) -> Result<Vec<Arc<str>>>;
    /// Calls `f` with every value of label `name`, in sorted order.
    fn for_each_label_value(&self, name: &str, f: &mut dyn FnMut(&str)) -> Result<()>;
    /// The ids of series with `name="value"` (empty if none).
    fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap>;
    /// The ids of all series.
    fn all_postings(&self) -> Result<RoaringBitmap>;
    /// The labels of series `id`. The head answers the empty set for a series that left it
    /// since its id was read (gc runs beside readers); a block, whose ids never change,
    /// answers an error for an unknown id.
    fn series_labels(&self, id: u32) -> Result<Labels>;

    /// All values of label `name`, sorted.
    fn label_values(&self, name: &str) -> Result<Vec<Arc<str>>> {
        let mut v = Vec::new();
        self.for_each_label_value(name, &mut |s| v.push(Arc::from(s)))?;
        Ok(v)
    }
}

/// The series ids matching all of `matchers`, with Prometheus semantics: a missing label
/// is the empty string; an empty matcher list selects nothing.
///
/// Positive matchers (those that reject the empty string) intersect unions of postings; the
/// others subtract what their inverse selects, so `{a="1", b!="2"}` never scans all series
/// and `{b!="2"}` alone starts from all series, as in Prometheus.
pub fn postings_for_matchers<I: IndexReader + ?Sized>(ix: &I, matchers: &[Matcher]) -> Result<RoaringBitmap> {
    if matchers.is_empty() {
        return Ok(RoaringBitmap::new());
    }
    // Most selective first: equality, then literal sets, then regexes.
    let mut ordered: Vec<&Matcher> = matchers.iter().collect();
    ordered.sort_by_key(|m| match (m.op, m.matches_empty()) {
        (MatchOp::Equal, false) => 0,
        (_, false) if m.exact_values().is_some() => 1,
        (_, false) => 2,
        _ => 3,
    });
    let mut result: Option<RoaringBitmap> = None;
    let mut subtract = RoaringBitmap::new();
    for m in ordered {
        if m.op == MatchOp::Regex && (m.value == ".*" || m.value == "(?s:.*)") {
            continue; // matches everything, present or not
        }
        if m.matches_empty() {
            // Series without the label match; of those with it, exclude the non-matching values.
            subtract |= union_matching(ix, &m.inverse())?;
        } else {
            let p = union_matching(ix, m)?;
            let r = match result.take() {
                None => p,
                Some(r) => r & p,
            };
            if r.is_empty() {
                return Ok(r);
            }
            result = Some(r);
        }
    }
    let mut r = match result {
        Some(r) => r,
        None => ix.all_postings()?,
    };
    r -= subtract;
    Ok(r)
}

/// Union of the postings of every value of `m.name` that `m` accepts (never the empty value:
/// stored series have no empty values).
fn union_matching<I: IndexReader + ?Sized>(ix: &I, m: &Matcher) -> Result<RoaringBitmap> {
    // One k-way union instead of repeated `|=`: a regex over thousands of values spent
    // most of its time re-merging the growing result (7 ms → 0.7 ms on a 100k-series block).
    if let Some(values) = m.exact_values() {
        let mut sets = Vec::with_capacity(values.len());
        for v in values {
            if !v.is_empty() {
                sets.push(ix.postings(&m.name, v)?);
            }
        }
        return Ok(sets.union());
    }
    let mut hits: Vec<String> = Vec::new();
    ix.for_each_label_value(&m.name, &mut |v| {
        if m.matches(v) {
            hits.push(v.to_owned());
        }
    })?;
    let mut sets = Vec::with_capacity(hits.len());
    for v in &hits {
        sets.push(ix.postings(&m.name, v)?);
    }
    Ok(sets.union())
}

/// Values of label `name` among series matching `matchers` (all series when empty), sorted.
pub fn label_values_matching<I: IndexReader + ?Sized>(
    ix: &I,
    name: &str,
    matchers: &[Matcher],
) -> Result<Vec<Arc<str>>> {
    let values = ix.label_values(name)?;
    if matchers.is_empty() {
        return Ok(values);
    }
    let selected = postings_for_matchers(ix, matchers)?;
    let mut out = Vec::new();
    for v in values {
        if !ix.postings(name, &v)?.is_disjoint(&selected) {
            out.push(v);
        }
    }
    Ok(out)
}

/// Label names used by series matching `matchers` (all names when empty), sorted.
pub fn label_names_matching<I: IndexReader + ?Sized>(ix: &I, matchers: &[Matcher]) -> Result<Vec<Arc<str>>> {
    if matchers.is_empty() {
        return ix.label_names();
    }
    let selected = postings_for_matchers(ix, matchers)?;
    let mut names = std::collections::BTreeSet::new();
    for id in &selected {
        for l in &ix.series_labels(id)? {
            if !names.contains(&l.name) {
                names.insert(l.name.clone());
            }
        }
    }
    Ok(names.into_iter().collect())
}
