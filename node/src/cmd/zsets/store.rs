//! ZUNION, ZINTER, ZDIFF, their STORE forms, and ZINTERCARD. Inputs may be sets (every
//! member scoring 1) as well as sorted sets.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use ringcache_protocol::Reply;

use super::super::args::{is, syntax_error};
use super::super::ctx::Ctx;
use super::range::store_result;
use super::{long_arg, parse_score, positive, with_scores};
use crate::keyspace::Db;
use crate::types::{Set, ZSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, target: &mut f64, v: f64) {
        match self {
            Aggregate::Sum => {
                *target += v;
                // inf + -inf: Redis takes 0 rather than store a NaN.
                if target.is_nan() {
                    *target = 0.0;
                }
            }
            Aggregate::Min => {
                if v < *target {
                    *target = v;
                }
            }
            Aggregate::Max => {
                if v > *target {
                    *target = v;
                }
            }
        }
    }
}

/// An input's size, 0 when missing; a type error for anything but a set or sorted set.
fn input_len(db: &mut Db<'_>, key: &[u8]) -> Result<usize, Reply> {
    match db.read::<ZSet>(key) {
        Ok(Some(z)) => Ok(z.len()),
        Ok(None) => Ok(0),
        Err(_) => match db.read::<Set>(key) {
            Ok(s) => Ok(s.map_or(0, Set::len)),
            Err(e) => Err(e.into()),
        },
    }
}

/// Calls `f` with every member of the input at `key` and its score (1 for a set's members),
/// highest first as Redis walks them (which decides the order of float additions).
fn each(db: &mut Db<'_>, key: &[u8], mut f: impl FnMut(&[u8], f64)) {
    if let Ok(Some(z)) = db.read::<ZSet>(key) {
        z.iter_rev_from(usize::MAX).for_each(|(m, s)| f(m, s));
    } else if let Ok(Some(s)) = db.read::<Set>(key) {
        s.iter().for_each(|m| f(&m, 1.0));
    }
}

/// Keeps the candidates for which `found(member, score in the input at key)` says so, looking
/// each up in that input (a set's members score 1); missing inputs hold nothing.
fn probe(
    db: &mut Db<'_>,
    key: &[u8],
    cands: &mut Vec<(Bytes, f64, f64)>,
    mut keep: impl FnMut(&mut (Bytes, f64, f64), Option<f64>) -> bool,
) {
    if let Ok(Some(z)) = db.read::<ZSet>(key) {
        cands.retain_mut(|c| {
            let s = z.score(&c.0);
            keep(c, s)
        });
        return;
    }
    let members: HashSet<Vec<u8>> = match db.read::<Set>(key) {
        Ok(Some(s)) => s.iter().map(|m| m.into_owned()).collect(),
        _ => HashSet::new(),
    };
    cands.retain_mut(|c| {
        let s = members.contains(&c.0[..]).then_some(1.0);
        keep(c, s)
    });
}

pub fn setop(ctx: &mut Ctx, name: &str, a: &[Bytes]) -> Reply {
    let store = name.ends_with("store");
    let card_only = name == "zintercard";
    let op = if name.starts_with("zunion") {
        Op::Union
    } else if name.starts_with("zinter") {
        Op::Inter
    } else {
        Op::Diff
    };
    let nk = if store { 2 } else { 1 };
    let n = match long_arg(&a[nk]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if n < 1 {
        return Reply::error(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        ));
    }
    if n > (a.len() - nk - 1) as i64 {
        return syntax_error();
    }
    let n = n as usize;
    let keys = &a[nk + 1..nk + 1 + n];
    let mut lens = Vec::with_capacity(n);
    for k in keys {
        match input_len(&mut ctx.db, k) {
            Ok(l) => lens.push(l),
            Err(e) => return e,
        }
    }
    let mut weights = vec![1.0f64; n];
    let (mut agg, mut scores, mut limit) = (Aggregate::Sum, false, 0usize);
    let mut j = nk + 1 + n;
    while j < a.len() {
        let left = a.len() - j;
        let o = &a[j];
        if op != Op::Diff && !card_only && left > n && is(o, "weights") {
            for (w, arg) in weights.iter_mut().zip(&a[j + 1..]) {
                match parse_score(arg) {
                    Some(v) => *w = v,
                    None => return Reply::error("ERR weight value is not a float"),
                }
            }
            j += n + 1;
        } else if op != Op::Diff && !card_only && left >= 2 && is(o, "aggregate") {
            let v = &a[j + 1];
            agg = if is(v, "sum") {
                Aggregate::Sum
            } else if is(v, "min") {
                Aggregate::Min
            } else if is(v, "max") {
                Aggregate::Max
            } else {
                return syntax_error();
            };
            j += 2;
        } else if !store && !card_only && is(o, "withscores") {
            scores = true;
            j += 1;
        } else if card_only && left >= 2 && is(o, "limit") {
            limit = match positive(&a[j + 1], "ERR LIMIT can't be negative") {
                Ok(l) => l as usize,
                Err(e) => return e,
            };
            j += 2;
        } else {
            return syntax_error();
        }
    }
    let weighted = |i: usize, s: f64| {
        let v = weights[i] * s;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    // Smallest inputs first, as Redis orders them (difference keeps the first input first).
    let mut order: Vec<usize> = (0..n).collect();
    if op != Op::Diff {
        order.sort_by_key(|&i| lens[i]);
    }
    let db = &mut ctx.db;
    let result: Vec<(Bytes, f64)> = match op {
        Op::Union => {
            let mut acc: HashMap<Bytes, f64> = HashMap::new();
            for &i in &order {
                each(db, &keys[i], |m, s| {
                    let v = weighted(i, s);
                    match acc.get_mut(m) {
                        Some(t) => agg.apply(t, v),
                        None => {
                            acc.insert(Bytes::copy_from_slice(m), v);
                        }
                    }
                });
            }
            acc.into_iter().collect()
        }
        Op::Inter | Op::Diff => {
            let first = order[0];
            // (member, score in the first input, result score)
            let mut cands: Vec<(Bytes, f64, f64)> = Vec::new();
            each(db, &keys[first], |m, s| {
                let v = if op == Op::Inter {
                    weighted(first, s)
                } else {
                    s
                };
                cands.push((Bytes::copy_from_slice(m), s, v));
            });
            for &i in &order[1..] {
                if cands.is_empty() {
                    break;
                }
                if op == Op::Diff {
                    probe(db, &keys[i], &mut cands, |_, s| s.is_none());
                } else if keys[i] == keys[first] {
                    // The same input: its score is the first one's.
                    cands
                        .iter_mut()
                        .for_each(|c| agg.apply(&mut c.2, c.1 * weights[i]));
                } else {
                    probe(db, &keys[i], &mut cands, |c, s| match s {
                        Some(s) => {
                            agg.apply(&mut c.2, s * weights[i]);
                            true
                        }
                        None => false,
                    });
                }
            }
            cands.into_iter().map(|(m, _, v)| (m, v)).collect()
        }
    };
    if card_only {
        let n = result.len();
        return Reply::Int(if limit > 0 { n.min(limit) } else { n } as i64);
    }
    if store {
        return store_result(ctx, &a[1], result);
    }
    let mut result = result;
    result.sort_by(|x, y| crate::types::zset::order(x.1, &x.0, y.1, &y.0));
    let items = result.iter().map(|(m, s)| (&m[..], *s));
    with_scores(ctx.session.proto, items, scores)
}
