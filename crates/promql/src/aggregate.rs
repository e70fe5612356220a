//! Aggregation operators, with Prometheus 2.x semantics per step.
//!
//! `sum`, `avg`, `count`, `min`, `max`, `group`, `stddev` and `stdvar` fold series into
//! per-group, per-step accumulators as the series stream in, so their input is never held
//! whole. `topk`, `bottomk`, `quantile` and `count_values` need the input materialised.

use std::collections::HashMap;

use metricsd_model::{Labels, METRIC_NAME, go_float, is_valid_label_name};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use crate::error::QueryError;
use crate::eval::{ABSENT, Ev, Grid, Result, Row, Val, at_step, has, unparen};

/// How series are grouped.
struct Grouping {
    without: bool,
    names: Vec<String>,
}

impl Grouping {
    fn of(a: &AggregateExpr) -> Grouping {
        match &a.modifier {
            None => Grouping {
                without: false,
                names: Vec::new(),
            },
            Some(LabelModifier::Include(l)) => Grouping {
                without: false,
                names: l.labels.clone(),
            },
            Some(LabelModifier::Exclude(l)) => Grouping {
                without: true,
                names: l.labels.clone(),
            },
        }
    }

    /// The output labels of the group a series belongs to.
    fn key(&self, l: &Labels) -> Labels {
        if self.without {
            let mut b = l.builder();
            b.del(METRIC_NAME);
            for n in &self.names {
                b.del(n);
            }
            b.build()
        } else if self.names.is_empty() {
            Labels::empty()
        } else {
            Labels::from_sorted(
                l.iter()
                    .filter(|x| self.names.iter().any(|n| **n == *x.name))
                    .cloned()
                    .collect(),
            )
        }
    }
}

/// Maps series to groups, remembering groups in order of first appearance.
struct Groups {
    grouping: Grouping,
    index: HashMap<Labels, usize>,
    labels: Vec<Labels>,
}

impl Groups {
    fn new(grouping: Grouping) -> Groups {
        Groups {
            grouping,
            index: HashMap::new(),
            labels: Vec::new(),
        }
    }

    fn group_of(&mut self, l: &Labels) -> (usize, bool) {
        let key = self.grouping.key(l);
        if let Some(&i) = self.index.get(&key) {
            return (i, false);
        }
        let i = self.labels.len();
        self.index.insert(key.clone(), i);
        self.labels.push(key);
        (i, true)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Simple {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
}

/// Per-group, per-step state of a simple aggregation.
struct Acc {
    count: Vec<u32>,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl Acc {
    fn new(n: usize) -> Acc {
        Acc {
            count: vec![0; n],
            a: vec![0.0; n],
            b: vec![0.0; n],
        }
    }

    #[inline]
    #[allow(
        clippy::indexing_slicing,
        reason = "`i` is a step of the grid the accumulator was made for (`Acc::new(g.n)`), as every input row's values are"
    )]
    fn add(&mut self, op: Simple, i: usize, v: f64) {
        let c = self.count[i];
        if c == 0 {
            self.count[i] = 1;
            self.a[i] = v;
            self.b[i] = 0.0;
            return;
        }
        let c = c + 1;
        self.count[i] = c;
        let a = &mut self.a[i];
        match op {
            Simple::Sum => *a += v,
            Simple::Avg => {
                let cf = c as f64;
                if a.is_infinite() {
                    if v.is_infinite() && (*a > 0.0) == (v > 0.0) {
                        return;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        return;
                    }
                }
                *a += v / cf - *a / cf;
            }
            Simple::Count | Simple::Group => {}
            Simple::Max => {
                if *a < v || a.is_nan() {
                    *a = v;
                }
            }
            Simple::Min => {
                if *a > v || a.is_nan() {
                    *a = v;
                }
            }
            Simple::Stddev | Simple::Stdvar => {
                let delta = v - *a;
                *a += delta / c as f64;
                self.b[i] += delta * (v - *a);
            }
        }
    }

    #[allow(
        clippy::indexing_slicing,
        reason = "`i` is a step of the grid the accumulator was made for (`Acc::new(g.n)`)"
    )]
    fn result(&self, op: Simple, i: usize) -> f64 {
        let c = self.count[i];
        if c == 0 {
            return ABSENT;
        }
        match op {
            Simple::Sum | Simple::Avg | Simple::Min | Simple::Max => self.a[i],
            Simple::Count => c as f64,
            Simple::Group => 1.0,
            Simple::Stdvar => self.b[i] / c as f64,
            Simple::Stddev => (self.b[i] / c as f64).sqrt(),
        }
    }
}

pub(crate) fn eval(ev: &mut Ev, a: &AggregateExpr, g: &Grid) -> Result<Val> {
    let op = a.op.to_string();
    let simple = match op.as_str() {
        "sum" => Some(Simple::Sum),
        "avg" => Some(Simple::Avg),
        "count" => Some(Simple::Count),
        "min" => Some(Simple::Min),
        "max" => Some(Simple::Max),
        "group" => Some(Simple::Group),
        "stddev" => Some(Simple::Stddev),
        "stdvar" => Some(Simple::Stdvar),
        _ => None,
    };
    let mut groups = Groups::new(Grouping::of(a));
    if let Some(s) = simple {
        let mut accs: Vec<Acc> = Vec::new();
        let mut budget = ev.budget();
        ev.stream(&a.expr, g, &mut |l, vals| {
            let (gi, new) = groups.group_of(l);
            if new {
                // A count and two accumulators per step.
                budget.add(0, 3 * g.n as u64)?;
                accs.push(Acc::new(g.n));
            }
            if let Some(acc) = accs.get_mut(gi) {
                for (i, v) in vals.iter().enumerate() {
                    if has(*v) {
                        acc.add(s, i, *v);
                    }
                }
            }
            Ok(())
        })?;
        let rows: Vec<Row> = groups
            .labels
            .into_iter()
            .zip(accs)
            .map(|(labels, acc)| Row {
                labels,
                vals: (0..g.n).map(|i| acc.result(s, i)).collect(),
            })
            .collect();
        ev.charge_rows(&rows)?;
        return Ok(Val::Vector(rows));
    }
    match op.as_str() {
        "topk" | "bottomk" => {
            let k = param_scalar(ev, a, g)?;
            top_k(ev, &a.expr, &mut groups, &k, op == "topk", g)
        }
        "quantile" => {
            let q = param_scalar(ev, a, g)?;
            let rows = ev.eval_vector(&a.expr, g)?;
            let member: Vec<usize> = rows.iter().map(|r| groups.group_of(&r.labels).0).collect();
            let ng = groups.labels.len();
            let mut out: Vec<Row> = groups
                .labels
                .iter()
                .map(|l| Row {
                    labels: l.clone(),
                    vals: vec![ABSENT; g.n],
                })
                .collect();
            let mut buf: Vec<Vec<f64>> = vec![Vec::new(); ng];
            for (i, &qi) in q.iter().enumerate() {
                buf.iter_mut().for_each(Vec::clear);
                for (r, &gi) in rows.iter().zip(&member) {
                    let v = at_step(&r.vals, i);
                    if has(v)
                        && let Some(b) = buf.get_mut(gi)
                    {
                        b.push(v);
                    }
                }
                for (b, o) in buf.iter_mut().zip(&mut out) {
                    if !b.is_empty()
                        && let Some(slot) = o.vals.get_mut(i)
                    {
                        *slot = crate::functions::quantile(qi, b);
                    }
                }
            }
            out.retain(|r| r.vals.iter().any(|v| has(*v)));
            ev.charge_rows(&out)?;
            Ok(Val::Vector(out))
        }
        "count_values" => {
            let label = match a.param.as_deref().map(unparen) {
                Some(Expr::StringLiteral(s)) => s.val.clone(),
                _ => {
                    return Err(QueryError::Execution(
                        "count_values needs a string parameter".into(),
                    ));
                }
            };
            if !is_valid_label_name(&label) {
                return Err(QueryError::Execution(format!("invalid label name {label:?}")));
            }
            let rows = ev.eval_vector(&a.expr, g)?;
            let grouping = Grouping::of(a);
            let mut index: HashMap<Labels, usize> = HashMap::new();
            let mut out: Vec<Row> = Vec::new();
            let mut budget = ev.budget();
            budget.add_rows(&rows)?;
            for r in &rows {
                for (i, v) in r.vals.iter().enumerate() {
                    if !has(*v) {
                        continue;
                    }
                    let mut b = r.labels.builder();
                    b.set(label.clone(), go_float(*v));
                    let with_value = b.build();
                    let key = if grouping.without {
                        grouping.key(&with_value)
                    } else {
                        let mut names = grouping.names.clone();
                        names.push(label.clone());
                        Grouping {
                            without: false,
                            names,
                        }
                        .key(&with_value)
                    };
                    let oi = match index.get(&key) {
                        Some(&oi) => oi,
                        None => {
                            // One new row per distinct value: charged before it is made.
                            budget.add(0, g.n as u64)?;
                            index.insert(key.clone(), out.len());
                            out.push(Row {
                                labels: key,
                                vals: vec![ABSENT; g.n],
                            });
                            out.len() - 1
                        }
                    };
                    if let Some(slot) = out.get_mut(oi).and_then(|o| o.vals.get_mut(i)) {
                        *slot = if has(*slot) { *slot + 1.0 } else { 1.0 };
                    }
                }
            }
            ev.charge_rows(&out)?;
            Ok(Val::Vector(out))
        }
        other => Err(QueryError::Execution(format!(
            "aggregation \"{other}\" is not supported"
        ))),
    }
}

fn param_scalar(ev: &mut Ev, a: &AggregateExpr, g: &Grid) -> Result<Vec<f64>> {
    match &a.param {
        Some(p) => ev.eval_scalar(p, g),
        None => Err(QueryError::Execution(format!(
            "aggregation {} needs a parameter",
            a.op
        ))),
    }
}

/// A candidate of `topk`/`bottomk`: a value and the input series it belongs to.
#[derive(Clone, Copy)]
struct Cand {
    v: f64,
    row: usize,
    top: bool,
}

impl Cand {
    /// How `self` ranks against `o`: `Greater` when it is *worse* (so a max-heap keeps the
    /// worst on top). NaN ranks below every number; on equal values the series seen first
    /// wins, as in Prometheus, where a later equal value does not displace a kept one.
    fn worse_cmp(&self, o: &Cand) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let by_value = match (self.v.is_nan(), o.v.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ if self.top => o.v.partial_cmp(&self.v).unwrap_or(Ordering::Equal),
            _ => self.v.partial_cmp(&o.v).unwrap_or(Ordering::Equal),
        };
        by_value.then(self.row.cmp(&o.row))
    }
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.worse_cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.worse_cmp(o)
    }
}

/// `topk`/`bottomk`: per step and group, the k largest (smallest) values, kept in bounded
/// heaps while the input streams, so the input is never held whole. The selected series
/// keep all their labels.
fn top_k(ev: &mut Ev, expr: &Expr, groups: &mut Groups, k: &[f64], top: bool, g: &Grid) -> Result<Val> {
    use std::collections::BinaryHeap;
    let mut kk = Vec::with_capacity(k.len());
    for &kf in k {
        if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&kf) {
            return Err(QueryError::Execution(format!(
                "Scalar value {} overflows int64",
                go_float(kf)
            )));
        }
        kk.push((kf as i64).max(0) as usize);
    }
    let mut labels: Vec<Labels> = Vec::new();
    let mut heaps: Vec<Vec<BinaryHeap<Cand>>> = Vec::new();
    let mut budget = ev.budget();
    ev.stream(expr, g, &mut |l, vals| {
        let row = labels.len();
        labels.push(l.clone());
        let (gi, new) = groups.group_of(l);
        if new {
            // An empty heap per step is three words.
            budget.add(0, 3 * g.n as u64)?;
            heaps.push(vec![BinaryHeap::new(); g.n]);
        }
        let Some(group_heaps) = heaps.get_mut(gi) else {
            return Ok(());
        };
        for ((v, &k), h) in vals.iter().zip(&kk).zip(group_heaps) {
            if !has(*v) || k == 0 {
                continue;
            }
            let c = Cand { v: *v, row, top };
            if h.len() < k {
                h.push(c);
            } else if let Some(mut worst) = h.peek_mut()
                && c < *worst
            {
                *worst = c;
            }
        }
        Ok(())
    })?;
    let mut out_vals: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
    let mut order: Vec<usize> = Vec::new();
    for per_step in heaps {
        for (i, h) in per_step.into_iter().enumerate() {
            // Best first: the instant-query output order.
            for c in h.into_sorted_vec() {
                let Some(ov) = out_vals.get_mut(c.row) else {
                    continue;
                };
                if ov.is_empty() {
                    ov.resize(g.n, ABSENT);
                }
                if let Some(slot) = ov.get_mut(i) {
                    *slot = c.v;
                }
                if g.n == 1 {
                    order.push(c.row);
                }
            }
        }
    }
    let mut rows: Vec<Option<Row>> = labels
        .into_iter()
        .zip(out_vals)
        .map(|(labels, vals)| (!vals.is_empty()).then_some(Row { labels, vals }))
        .collect();
    let out: Vec<Row> = if g.n == 1 {
        order
            .iter()
            .filter_map(|&ri| rows.get_mut(ri).and_then(Option::take))
            .collect()
    } else {
        rows.into_iter().flatten().collect()
    };
    ev.charge_rows(&out)?;
    Ok(Val::Vector(out))
}
