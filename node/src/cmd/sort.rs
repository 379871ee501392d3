//! SORT and SORT_RO: the elements of a list, set or sorted set sorted as numbers (or bytes with
//! ALPHA), optionally by other keys' values (BY pattern), with other keys' values in the reply
//! (GET pattern), a LIMIT, and STORE into a list. Patterns read any key, so a SORT with one runs
//! holding every bucket's lock (`needs_every_key`).

use std::cmp::Ordering;

use bytes::Bytes;
use ringcache_protocol::table::{self, CommandSpec};
use ringcache_protocol::Reply;

use super::args::{int_arg, is, syntax_error};
use super::ctx::Ctx;
use crate::keyspace::{Db, Entry, ValueRef};
use crate::types::{List, Value, ZSet};

pub const NAMES: &[&str] = &["sort", "sort_ro"];

struct Options {
    desc: bool,
    alpha: bool,
    limit: (i64, i64),
    store: Option<Bytes>,
    by: Option<Bytes>,
    gets: Vec<Bytes>,
}

fn parse(a: &[Bytes], readonly: bool, any_key: bool) -> Result<Options, Reply> {
    let mut o = Options {
        desc: false,
        alpha: false,
        limit: (0, -1),
        store: None,
        by: None,
        gets: Vec::new(),
    };
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        let w = &a[j];
        if is(w, "asc") {
            o.desc = false;
        } else if is(w, "desc") {
            o.desc = true;
        } else if is(w, "alpha") {
            o.alpha = true;
        } else if is(w, "limit") && left >= 2 {
            o.limit = (int_arg(&a[j + 1])?, int_arg(&a[j + 2])?);
            j += 2;
        } else if !readonly && is(w, "store") && left >= 1 {
            o.store = Some(a[j + 1].clone());
            j += 1;
        } else if is(w, "by") && left >= 1 {
            // A pattern reads keys the ACL check never saw: only for a user that may read any.
            if !any_key && a[j + 1].contains(&b'*') {
                return Err(Reply::error(
                    "ERR BY option of SORT denied due to insufficient ACL permissions.",
                ));
            }
            o.by = Some(a[j + 1].clone());
            j += 1;
        } else if is(w, "get") && left >= 1 {
            if !any_key {
                return Err(Reply::error(
                    "ERR GET option of SORT denied due to insufficient ACL permissions.",
                ));
            }
            o.gets.push(a[j + 1].clone());
            j += 1;
        } else {
            return Err(syntax_error());
        }
        j += 1;
    }
    Ok(o)
}

/// Whether the request reads keys its arguments do not name (a BY or GET pattern).
pub fn needs_every_key(args: &[Bytes]) -> bool {
    args.windows(2).skip(2).any(|w| {
        (is(&w[0], "by") && w[1].contains(&b'*')) || (is(&w[0], "get") && &w[1][..] != b"#")
    })
}

/// A pattern's value for `elem`: `#` is the element; `*` is replaced by it, and `->field` reads
/// a hash field instead of a string.
fn lookup(db: &mut Db, pattern: &[u8], elem: &[u8]) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(elem.to_vec());
    }
    let star = pattern.iter().position(|&c| c == b'*')?;
    let after = &pattern[star + 1..];
    let arrow = after
        .windows(2)
        .position(|w| w == b"->")
        .filter(|&i| i + 2 < after.len());
    let (suffix, field) = match arrow {
        Some(i) => (&after[..i], Some(&after[i + 2..])),
        None => (after, None),
    };
    let mut key = pattern[..star].to_vec();
    key.extend_from_slice(elem);
    key.extend_from_slice(suffix);
    let e: &Entry = db.get(&key)?;
    match (e.value(), field) {
        (ValueRef::Str(s), None) => Some(s.to_vec()),
        (ValueRef::Obj(Value::Hash(h)), Some(f)) => h.get(f).map(<[u8]>::to_vec),
        _ => None,
    }
}

/// `strtod` over the whole text, as SORT reads scores (an empty text is 0).
fn score_of(s: &[u8]) -> Option<f64> {
    if s.is_empty() {
        return Some(0.0);
    }
    ringcache_protocol::num::parse_f64(s)
}

struct Item {
    elem: Vec<u8>,
    score: f64,
    by: Option<Vec<u8>>,
}

pub fn run(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    let any_key = match (&ctx.session.user, table::lookup(spec.name.as_bytes())) {
        (Some(u), Some(top)) => u.may_read_any_key(top, a),
        _ => true,
    };
    let o = match parse(a, spec.name == "sort_ro", any_key) {
        Ok(o) => o,
        Err(e) => return e,
    };
    // Redis converts a sorted set it sorts to its large encoding (OBJECT ENCODING shows it).
    let _ = ctx.db.update::<ZSet, _>(&a[1], false, |z, _| {
        z.make_large();
        ((), false)
    });
    let Some(e) = ctx.db.get(&a[1]) else {
        return finish(ctx, &o, Vec::new());
    };
    // A constant BY pattern means "do not sort": the value's own order.
    let mut dont_sort = o.by.as_ref().is_some_and(|b| !b.contains(&b'*'));
    let mut alpha = o.alpha;
    let (elems, is_set): (Vec<Vec<u8>>, bool) = match e.obj() {
        Some(Value::List(l)) => (l.iter().map(<[u8]>::to_vec).collect(), false),
        Some(Value::Set(s)) => (s.iter().map(|m| m.to_vec()).collect(), true),
        Some(Value::ZSet(z)) => (z.iter().map(|(m, _)| m.to_vec()).collect(), false),
        _ => return super::args::wrongtype(),
    };
    // A set has no order of its own: stored results (and a script's) are sorted so replicas
    // agree.
    let mut by = o.by.clone();
    if dont_sort && is_set && (o.store.is_some() || ctx.session.in_script) {
        dont_sort = false;
        alpha = true;
        by = None;
    }
    let len = elems.len() as i64;
    let start = o.limit.0.clamp(0, len);
    let count = o.limit.1.clamp(-1, len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    let start = if start >= len {
        end = len - 2;
        len - 1
    } else {
        start
    };
    end = end.min(len - 1);
    let mut items: Vec<Item> = elems
        .into_iter()
        .map(|elem| Item {
            elem,
            score: 0.0,
            by: None,
        })
        .collect();
    if dont_sort {
        if o.desc {
            items.reverse();
        }
    } else {
        for it in &mut items {
            let value = match &by {
                Some(p) => match lookup(&mut ctx.db, p, &it.elem) {
                    Some(v) => v,
                    None => continue,
                },
                None => it.elem.clone(),
            };
            if alpha {
                if by.is_some() {
                    it.by = Some(value);
                }
            } else {
                match score_of(&value) {
                    Some(s) => it.score = s,
                    None => {
                        return Reply::error(
                            "ERR One or more scores can't be converted into double",
                        )
                    }
                }
            }
        }
        let by_pattern = by.is_some();
        items.sort_by(|x, y| {
            let c = if !alpha {
                x.score
                    .partial_cmp(&y.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| x.elem.cmp(&y.elem))
            } else if by_pattern {
                x.by.cmp(&y.by)
            } else {
                x.elem.cmp(&y.elem)
            };
            if o.desc {
                c.reverse()
            } else {
                c
            }
        });
    }
    let picked: Vec<Item> = if end >= start && start >= 0 {
        items
            .into_iter()
            .skip(start as usize)
            .take((end - start + 1) as usize)
            .collect()
    } else {
        Vec::new()
    };
    let out: Vec<Option<Vec<u8>>> = if o.gets.is_empty() {
        picked.into_iter().map(|it| Some(it.elem)).collect()
    } else {
        let mut out = Vec::new();
        for it in &picked {
            for g in &o.gets {
                out.push(lookup(&mut ctx.db, g, &it.elem));
            }
        }
        out
    };
    finish(ctx, &o, out)
}

/// The reply, or the STORE into a list (an empty result deletes the destination).
fn finish(ctx: &mut Ctx, o: &Options, out: Vec<Option<Vec<u8>>>) -> Reply {
    let Some(dest) = &o.store else {
        return Reply::Array(
            out.into_iter()
                .map(|v| v.map_or(Reply::Nil, |v| Reply::Bulk(Bytes::from(v))))
                .collect(),
        );
    };
    let n = out.len() as i64;
    if out.is_empty() {
        ctx.db.remove(dest);
    } else {
        let limits = ctx.db.limits();
        let mut l = List::default();
        for v in &out {
            l.push_back(v.as_deref().unwrap_or(b""), &limits);
        }
        ctx.db.insert(Entry::object(dest, Value::List(l), None));
    }
    Reply::Int(n)
}
