//! Binary operators: arithmetic, comparison (filtering or `bool`), set operators, with
//! Prometheus' vector matching (`on`/`ignoring`, `group_left`/`group_right`).

use std::collections::HashMap;

use metricsd_model::{Labels, METRIC_NAME};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::error::QueryError;
use crate::eval::{ABSENT, Ev, Grid, Result, Row, Val, drop_name, has, merge_same_labels};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Arithmetic drops the metric name (atan2 keeps it, as in Prometheus 2.x).
    fn drops_name(self) -> bool {
        matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow)
    }

    /// `(value, keep)`: for comparisons the value is the left operand and `keep` the outcome.
    #[inline]
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => unreachable!("set operators are not elementwise"),
        }
    }
}

pub(crate) fn eval(ev: &mut Ev, b: &BinaryExpr, g: &Grid) -> Result<Val> {
    let op_s = b.op.to_string();
    let op =
        Op::parse(&op_s).ok_or_else(|| QueryError::Execution(format!("unknown binary operator {op_s}")))?;
    let return_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs, g)?;
    let (pinned_before, slots_before) = (ev.pinned, ev.pinned_slots);
    match &lhs {
        Val::Vector(rows) => {
            ev.pinned += rows.iter().map(Row::present).sum::<u64>();
            ev.pinned_slots += rows.iter().map(|r| r.vals.len() as u64).sum::<u64>();
        }
        Val::Scalar(v) => ev.pinned_slots += v.len() as u64,
        _ => {}
    }
    let rhs = ev.eval(&b.rhs, g);
    (ev.pinned, ev.pinned_slots) = (pinned_before, slots_before);
    let rhs = rhs?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
            l.iter()
                .zip(&r)
                .map(|(l, r)| {
                    let (v, keep) = op.apply(*l, *r);
                    if op.is_comparison() {
                        if keep { 1.0 } else { 0.0 }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Val::Vector(l), Val::Scalar(r)) => vector_scalar(op, l, &r, false, return_bool),
        (Val::Scalar(l), Val::Vector(r)) => vector_scalar(op, r, &l, true, return_bool),
        (Val::Vector(l), Val::Vector(r)) => {
            let m = Matching::of(b);
            match op {
                Op::And | Op::Or | Op::Unless => set_op(op, l, r, &m, g),
                _ => vector_vector(op, l, r, &m, return_bool, g),
            }
        }
        _ => Err(QueryError::Execution(format!(
            "binary operator {op_s} is not defined between these operand types"
        ))),
    }
}

fn vector_scalar(op: Op, rows: Vec<Row>, s: &[f64], swap: bool, return_bool: bool) -> Result<Val> {
    let drop = op.drops_name() || return_bool;
    let mut out = Vec::with_capacity(rows.len());
    for mut r in rows {
        let mut any = false;
        for (x, &sv) in r.vals.iter_mut().zip(s) {
            if !has(*x) {
                continue;
            }
            let (lv, rv) = if swap { (sv, *x) } else { (*x, sv) };
            let (mut v, mut keep) = op.apply(lv, rv);
            if op.is_comparison() && swap {
                v = rv;
            }
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            if keep {
                *x = v;
                any = true;
            } else {
                *x = ABSENT;
            }
        }
        if any {
            if drop {
                r.labels = drop_name(&r.labels);
            }
            out.push(r);
        }
    }
    Ok(Val::Vector(if drop { merge_same_labels(out)? } else { out }))
}

/// The vector-matching parameters of a binary expression.
struct Matching {
    on: bool,
    labels: Vec<String>,
    card: Card,
    include: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

impl Matching {
    fn of(b: &BinaryExpr) -> Matching {
        let (mut on, mut labels) = (false, Vec::new());
        let (mut card, mut include) = (Card::OneToOne, Vec::new());
        if let Some(m) = &b.modifier {
            match &m.matching {
                Some(LabelModifier::Include(l)) => {
                    on = true;
                    labels = l.labels.clone();
                }
                Some(LabelModifier::Exclude(l)) => labels = l.labels.clone(),
                None => {}
            }
            match &m.card {
                VectorMatchCardinality::ManyToOne(l) => {
                    card = Card::ManyToOne;
                    include = l.labels.clone();
                }
                VectorMatchCardinality::OneToMany(l) => {
                    card = Card::OneToMany;
                    include = l.labels.clone();
                }
                _ => {}
            }
        }
        Matching {
            on,
            labels,
            card,
            include,
        }
    }

    /// The matching signature of a series: the `on` labels, or all but the `ignoring`
    /// labels and the name.
    fn signature(&self, l: &Labels) -> Labels {
        if self.on {
            Labels::from_sorted(
                l.iter()
                    .filter(|x| self.labels.iter().any(|n| **n == *x.name))
                    .cloned()
                    .collect(),
            )
        } else {
            let mut b = l.builder();
            b.del(METRIC_NAME);
            for n in &self.labels {
                b.del(n);
            }
            b.build()
        }
    }

    /// The labels of a result element, from the "many" side `l` and the "one" side `r`.
    fn result_labels(&self, l: &Labels, r: &Labels, op: Op, return_bool: bool) -> Labels {
        let mut b = l.builder();
        if op.drops_name() || return_bool {
            b.del(METRIC_NAME);
        }
        if self.card == Card::OneToOne {
            if self.on {
                let keep: Vec<&str> = self.labels.iter().map(String::as_str).collect();
                b.keep(&keep);
            } else {
                for n in &self.labels {
                    b.del(n);
                }
            }
        }
        for n in &self.include {
            match r.get(n) {
                Some(v) => {
                    b.set(n.clone(), v.to_owned());
                }
                None => {
                    b.del(n);
                }
            }
        }
        b.build()
    }
}

/// Signatures of a side's rows, interned to small integers.
fn signatures(m: &Matching, rows: &[Row], ids: &mut HashMap<Labels, usize>) -> Vec<usize> {
    rows.iter()
        .map(|r| {
            let s = m.signature(&r.labels);
            let n = ids.len();
            *ids.entry(s).or_insert(n)
        })
        .collect()
}

fn set_op(op: Op, l: Vec<Row>, r: Vec<Row>, m: &Matching, g: &Grid) -> Result<Val> {
    let mut ids = HashMap::new();
    let ls = signatures(m, &l, &mut ids);
    let rs = signatures(m, &r, &mut ids);
    let nsig = ids.len();
    // For each signature and step: whether the other side has a value there.
    let presence = |rows: &[Row], sigs: &[usize]| -> Vec<Vec<bool>> {
        let mut p = vec![Vec::new(); nsig];
        for (row, &s) in rows.iter().zip(sigs) {
            let Some(ps) = p.get_mut(s) else {
                continue;
            };
            if ps.is_empty() {
                ps.resize(g.n, false);
            }
            for (present, v) in ps.iter_mut().zip(&row.vals) {
                if has(*v) {
                    *present = true;
                }
            }
        }
        p
    };
    let at =
        |p: &Vec<Vec<bool>>, s: usize, i: usize| p.get(s).and_then(|p| p.get(i)).copied().unwrap_or(false);
    match op {
        Op::And | Op::Unless => {
            let rp = presence(&r, &rs);
            let want = op == Op::And;
            let mut out = Vec::with_capacity(l.len());
            for (mut row, s) in l.into_iter().zip(ls) {
                let mut any = false;
                for (i, v) in row.vals.iter_mut().enumerate() {
                    if has(*v) {
                        if at(&rp, s, i) != want {
                            *v = ABSENT;
                        } else {
                            any = true;
                        }
                    }
                }
                if any {
                    out.push(row);
                }
            }
            Ok(Val::Vector(out))
        }
        Op::Or => {
            let lp = presence(&l, &ls);
            let mut out = l;
            for (mut row, s) in r.into_iter().zip(rs) {
                let mut any = false;
                for (i, v) in row.vals.iter_mut().enumerate() {
                    if has(*v) {
                        if at(&lp, s, i) {
                            *v = ABSENT;
                        } else {
                            any = true;
                        }
                    }
                }
                if any {
                    out.push(row);
                }
            }
            Ok(Val::Vector(merge_same_labels(out)?))
        }
        _ => unreachable!(),
    }
}

#[allow(
    clippy::indexing_slicing,
    reason = "signature ids index `by_sig` and `matched_one` (both `nsig` long, the count of ids); row indices come from enumerating `one` and `many`, whose signatures `many_sigs` holds in order; `out` indices are rows pushed to it; every row, `many_any`, `one_any` and a resized `matched_one` entry hold one value per step of `g`, and `present` has two entries where read"
)]
fn vector_vector(op: Op, l: Vec<Row>, r: Vec<Row>, m: &Matching, return_bool: bool, g: &Grid) -> Result<Val> {
    // Make the left side the "many" side.
    let swapped = m.card == Card::OneToMany;
    let (many, one) = if swapped { (r, l) } else { (l, r) };
    let mut ids = HashMap::new();
    let one_sigs = signatures(m, &one, &mut ids);
    let many_sigs = signatures(m, &many, &mut ids);
    let nsig = ids.len();
    let mut by_sig: Vec<Vec<usize>> = vec![Vec::new(); nsig];
    for (ri, &s) in one_sigs.iter().enumerate() {
        by_sig[s].push(ri);
    }
    // Steps where the many side has any value: Prometheus checks the one side for
    // duplicates only at those (it short-circuits on an empty side).
    let mut many_any = vec![false; g.n];
    for row in &many {
        for (i, v) in row.vals.iter().enumerate() {
            if has(*v) {
                many_any[i] = true;
            }
        }
    }
    let mut one_any = vec![false; g.n];
    for row in &one {
        for (i, v) in row.vals.iter().enumerate() {
            if has(*v) {
                one_any[i] = true;
            }
        }
    }
    for members in by_sig.iter().filter(|m| m.len() > 1) {
        for (i, _) in many_any.iter().enumerate().filter(|(_, a)| **a) {
            let present: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&ri| has(one[ri].vals[i]))
                .collect();
            if present.len() > 1 {
                let side = if swapped { "left" } else { "right" };
                let sig = m.signature(&one[present[0]].labels);
                return Err(QueryError::Execution(format!(
                    "found duplicate series for the match group {sig} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    one[present[1]].labels, one[present[0]].labels
                )));
            }
        }
    }
    // Output rows keyed by their labels; per signature and step, what has matched.
    let mut out: Vec<Row> = Vec::new();
    let mut out_index: HashMap<Labels, usize> = HashMap::new();
    let mut matched_one: Vec<Vec<bool>> = vec![Vec::new(); nsig];
    let mut matched_many: HashMap<(usize, usize), ()> = HashMap::new();
    let mut pair_labels: HashMap<(usize, usize), usize> = HashMap::new();
    for (li, lrow) in many.iter().enumerate() {
        let s = many_sigs[li];
        let members = &by_sig[s];
        if members.is_empty() {
            continue;
        }
        for i in 0..g.n {
            let lv = lrow.vals[i];
            if !has(lv) || !one_any[i] {
                continue;
            }
            let Some(&ri) = members.iter().find(|&&ri| has(one[ri].vals[i])) else {
                continue;
            };
            let rv = one[ri].vals[i];
            let (a, bv) = if swapped { (rv, lv) } else { (lv, rv) };
            let (mut v, keep) = op.apply(a, bv);
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            let oi = match pair_labels.get(&(li, ri)) {
                Some(&oi) => oi,
                None => {
                    let labels = m.result_labels(&lrow.labels, &one[ri].labels, op, return_bool);
                    let oi = *out_index.entry(labels.clone()).or_insert_with(|| {
                        out.push(Row {
                            labels,
                            vals: vec![ABSENT; g.n],
                        });
                        out.len() - 1
                    });
                    pair_labels.insert((li, ri), oi);
                    oi
                }
            };
            if m.card == Card::OneToOne {
                let ms = &mut matched_one[s];
                if ms.is_empty() {
                    ms.resize(g.n, false);
                }
                if ms[i] {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                    ));
                }
                ms[i] = true;
            } else if matched_many.insert((oi, i), ()).is_some() {
                return Err(QueryError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches".into(),
                ));
            }
            let slot = &mut out[oi].vals[i];
            if has(*slot) {
                return Err(QueryError::Execution(crate::eval::SAME_LABELSET.into()));
            }
            *slot = v;
        }
    }
    out.retain(|r| r.vals.iter().any(|v| has(*v)));
    Ok(Val::Vector(out))
}
