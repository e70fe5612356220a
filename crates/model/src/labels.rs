//! Label sets: the identity of a series.

use std::fmt;
use std::sync::Arc;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One `name="value"` pair. Strings are `Arc<str>` so that label sets handed out by the
/// store share its interned strings instead of copying them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// The label name.
    pub name: Arc<str>,
    /// The label value; never empty in a stored series (an empty value means "no label").
    pub value: Arc<str>,
}

impl Label {
    /// A label from anything string-like.
    pub fn new(name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A set of labels sorted by name, without duplicate names and without empty values.
///
/// # Invariants
/// Sorted strictly by name; no label has an empty value. Every constructor establishes this
/// (empty values are dropped, duplicates keep the last value), so equality and hashing of two
/// `Labels` is equality of the series they name.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The empty label set.
    pub const fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order. Empty values are dropped; for a repeated
    /// name the last value wins (use [`crate::validate_labels`] to reject duplicates instead).
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<Arc<str>>,
        V: Into<Arc<str>>,
    {
        let mut v: Vec<Label> = pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect();
        Self::normalize(&mut v);
        Labels(v)
    }

    /// Builds from labels already sorted by name with unique names and no empty values.
    /// Checked in debug builds only; the store uses it on data it wrote itself.
    pub fn from_sorted(v: Vec<Label>) -> Self {
        debug_assert!(
            v.windows(2).all(|w| matches!(w, [a, b] if a.name < b.name)),
            "labels not sorted/unique"
        );
        debug_assert!(v.iter().all(|l| !l.value.is_empty()), "empty label value");
        Labels(v)
    }

    fn normalize(v: &mut Vec<Label>) {
        // Stable sort keeps input order among equal names, so "last wins" below is well defined.
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v.drain(..) {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        out.retain(|l| !l.value.is_empty());
        *v = out;
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|l| &*l.value)
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// The labels in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// The labels as a slice.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A stable 64-bit hash of the label set (xxh3 over names and values with separators).
    /// Stable across processes and versions: it may be persisted.
    pub fn stable_hash(&self) -> u64 {
        with_pair_bytes(
            self.0.iter().map(|l| (&*l.name, &*l.value)),
            xxhash_rust::xxh3::xxh3_64,
        )
    }

    /// A builder starting from these labels.
    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.0.clone(),
        }
    }

    /// Consumes the set, returning its labels.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Prometheus' text form: `name{a="b", c="d"}`, values escaped as in the exposition format.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(n) = name {
            f.write_str(n)?;
        }
        let mut first = true;
        let rest = self.0.iter().filter(|l| &*l.name != METRIC_NAME);
        let mut any = false;
        for l in rest {
            if first {
                f.write_str("{")?;
                first = false;
            } else {
                f.write_str(", ")?;
            }
            any = true;
            write!(f, "{}=\"", l.name)?;
            for c in l.value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        if any {
            f.write_str("}")?;
        } else if name.is_none() {
            f.write_str("{}")?;
        }
        Ok(())
    }
}

/// Edits a label set: set, delete, keep; [`LabelsBuilder::build`] restores the invariants.
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    /// Sets `name` to `value` (an empty value deletes the label).
    pub fn set(&mut self, name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> &mut Self {
        let l = Label::new(name, value);
        match self.labels.iter_mut().find(|x| x.name == l.name) {
            Some(x) => x.value = l.value,
            None => self.labels.push(l),
        }
        self
    }

    /// Deletes label `name`.
    pub fn del(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| &*l.name != name);
        self
    }

    /// Keeps only labels whose name is in `names`.
    pub fn keep(&mut self, names: &[&str]) -> &mut Self {
        self.labels.retain(|l| names.contains(&&*l.name));
        self
    }

    /// The resulting label set.
    pub fn build(&self) -> Labels {
        let mut v = self.labels.clone();
        Labels::normalize(&mut v);
        Labels(v)
    }
}

/// Calls `f` with the label pairs' bytes, each name and value followed by `0xff` (a byte
/// UTF-8 never contains, so `("a", "bc")` and `("ab", "c")` differ). Built on the stack for
/// label sets up to 512 bytes: hashing it in one shot costs a fraction of streaming the
/// pieces into a hasher, and gives the same value.
#[allow(
    clippy::indexing_slicing,
    reason = "`buf` is sized to the sum of the parts written into it"
)]
pub fn with_pair_bytes<'a, R>(
    pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let len: usize = pairs.clone().map(|(n, v)| n.len() + v.len() + 2).sum();
    let mut stack = [0u8; 512];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let mut n = 0;
    for (name, value) in pairs {
        for part in [name.as_bytes(), value.as_bytes()] {
            buf[n..n + part.len()].copy_from_slice(part);
            buf[n + part.len()] = 0xff;
            n += part.len() + 1;
        }
    }
    f(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_sorted_deduplicated_and_empty_values_dropped() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        let names: Vec<_> = l.iter().map(|l| &*l.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn display_escapes_like_prometheus() {
        let l = Labels::from_pairs([("__name__", "m"), ("p", "C:\\x\n\"q\"")]);
        assert_eq!(l.to_string(), r#"m{p="C:\\x\n\"q\""}"#);
        assert_eq!(Labels::empty().to_string(), "{}");
        assert_eq!(Labels::from_pairs([("a", "b")]).to_string(), r#"{a="b"}"#);
    }

    #[test]
    fn stable_hash_is_the_streamed_xxh3_of_the_pairs() {
        // The value must not change between versions (it is the head's series key).
        for labels in [
            Labels::empty(),
            Labels::from_pairs([("__name__", "up"), ("job", "node")]),
            Labels::from_pairs([("__name__", "x".repeat(300)), ("long", "y".repeat(400))]),
        ] {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for l in labels.iter() {
                h.update(l.name.as_bytes());
                h.update(&[0xff]);
                h.update(l.value.as_bytes());
                h.update(&[0xff]);
            }
            assert_eq!(labels.stable_hash(), h.digest(), "{labels}");
        }
    }

    #[test]
    fn stable_hash_separates_names_from_values() {
        let a = Labels::from_pairs([("ab", "c")]);
        let b = Labels::from_pairs([("a", "bc")]);
        assert_ne!(a.stable_hash(), b.stable_hash());
        assert_eq!(a.stable_hash(), Labels::from_pairs([("ab", "c")]).stable_hash());
    }

    #[test]
    fn builder_sets_and_deletes() {
        let l = Labels::from_pairs([("a", "1"), ("b", "2")]);
        let m = l.builder().set("c", "3").del("a").set("b", "").build();
        assert_eq!(m, Labels::from_pairs([("c", "3")]));
    }
}
