//! ZPOPMIN, ZPOPMAX, ZMPOP, and the blocking BZPOPMIN, BZPOPMAX and BZMPOP (which wait in
//! `super::super::blocking` while their keys hold nothing).

use bytes::Bytes;
use ringcache_protocol::{Protocol, Reply};

use super::super::args::{bulk, is, syntax_error};
use super::super::blocking::{block, parse_timeout};
use super::super::ctx::Ctx;
use super::{at_least_one, positive};
use crate::keyspace::Db;
use crate::types::ZSet;

/// A parsed multi-key pop: its keys (positions in the arguments), which end, how many.
struct Pop {
    keys: std::ops::Range<usize>,
    max: bool,
    count: usize,
}

/// ZMPOP's and BZMPOP's `numkeys key... MIN|MAX [COUNT count]` from `a[at]` on.
fn parse_mpop(a: &[Bytes], at: usize) -> Result<Pop, Reply> {
    let n = at_least_one(&a[at], "ERR numkeys should be greater than 0")? as u64;
    let where_at = n
        .checked_add(at as u64 + 1)
        .filter(|&w| w < a.len() as u64)
        .ok_or_else(syntax_error)? as usize;
    let max = match &a[where_at] {
        w if is(w, "min") => false,
        w if is(w, "max") => true,
        _ => return Err(syntax_error()),
    };
    let mut count = None;
    let mut j = where_at + 1;
    while j < a.len() {
        if count.is_none() && is(&a[j], "count") && j + 1 < a.len() {
            count = Some(at_least_one(
                &a[j + 1],
                "ERR count should be greater than 0",
            )?);
            j += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(Pop {
        keys: at + 1..where_at,
        max,
        count: count.map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX)),
    })
}

/// A pop's key and its members with their scores.
type Popped = (Bytes, Vec<(Bytes, f64)>);

/// Pops up to `count` members from the first of `keys` holding a sorted set: the key and the
/// members, lowest first for MIN, highest first for MAX. A key of another type is an error
/// when `strict`, and skipped otherwise (a blocked client is served only by sorted sets).
fn pop_first(
    db: &mut Db<'_>,
    keys: &[Bytes],
    max: bool,
    count: usize,
    strict: bool,
) -> Result<Option<Popped>, Reply> {
    for key in keys {
        let r = db.update::<ZSet, _>(key, false, |z, _| {
            let len = z.len();
            let n = count.min(len);
            let span = if max { len - n..len } else { 0..n };
            let mut out = Vec::with_capacity(n);
            z.remove_range(span, |m, s| out.push((Bytes::copy_from_slice(m), s)));
            if max {
                out.reverse();
            }
            let popped = !out.is_empty();
            (out, popped)
        });
        match r {
            Ok(Some(items)) if !items.is_empty() => return Ok(Some((key.clone(), items))),
            Ok(_) => continue,
            Err(e) if strict => return Err(e.into()),
            Err(_) => continue,
        }
    }
    Ok(None)
}

fn pairs(items: &[(Bytes, f64)]) -> Reply {
    Reply::Array(
        items
            .iter()
            .map(|(m, s)| Reply::Array(vec![bulk(m), Reply::Double(*s)]))
            .collect(),
    )
}

fn flat(items: &[(Bytes, f64)]) -> Vec<Reply> {
    items
        .iter()
        .flat_map(|(m, s)| [bulk(m), Reply::Double(*s)])
        .collect()
}

/// What replicas get for a pop: ZPOPMIN/ZPOPMAX of the key, with the count when given.
fn propagate(db: &mut Db<'_>, key: &Bytes, max: bool, count: Option<usize>) {
    let name: &'static [u8] = if max { b"ZPOPMAX" } else { b"ZPOPMIN" };
    let mut cmd = vec![Bytes::from_static(name), key.clone()];
    if let Some(n) = count {
        cmd.push(Bytes::from(n.to_string()));
    }
    db.propagate_as(cmd);
}

pub fn run(ctx: &mut Ctx, name: &str, a: &[Bytes]) -> Reply {
    match name {
        "zpopmin" | "zpopmax" => zpop(ctx, a, name == "zpopmax"),
        "zmpop" => match parse_mpop(a, 1) {
            Ok(p) => match pop_first(&mut ctx.db, &a[p.keys.clone()], p.max, p.count, true) {
                Ok(Some((key, items))) => {
                    propagate(&mut ctx.db, &key, p.max, Some(items.len()));
                    Reply::Array(vec![Reply::Bulk(key), pairs(&items)])
                }
                Ok(None) => Reply::NilArray,
                Err(e) => e,
            },
            Err(e) => e,
        },
        "bzpopmin" | "bzpopmax" => {
            let timeout = match parse_timeout(&a[a.len() - 1]) {
                Ok(t) => t,
                Err(e) => return e,
            };
            match serve(&mut ctx.db, a, true) {
                Ok(Some(r)) => r,
                Ok(None) => block(ctx, a, a[1..a.len() - 1].to_vec(), timeout, Reply::NilArray),
                Err(e) => e,
            }
        }
        _ => {
            let p = match parse_mpop(a, 2) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let timeout = match parse_timeout(&a[1]) {
                Ok(t) => t,
                Err(e) => return e,
            };
            match serve(&mut ctx.db, a, true) {
                Ok(Some(r)) => r,
                Ok(None) => block(ctx, a, a[p.keys].to_vec(), timeout, Reply::NilArray),
                Err(e) => e,
            }
        }
    }
}

fn zpop(ctx: &mut Ctx, a: &[Bytes], max: bool) -> Reply {
    if a.len() > 3 {
        return syntax_error();
    }
    let count = match a.get(2) {
        Some(c) => match positive(c, "ERR value is out of range, must be positive") {
            Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(e) => return e,
        },
        None => None,
    };
    if count == Some(0) {
        return match ctx.db.read::<ZSet>(&a[1]) {
            Err(e) => e.into(),
            Ok(_) => Reply::Array(Vec::new()),
        };
    }
    let nested = count.is_some() && ctx.session.proto == Protocol::Resp3;
    match pop_first(&mut ctx.db, &a[1..2], max, count.unwrap_or(1), true) {
        Ok(Some((_, items))) if nested => pairs(&items),
        Ok(Some((_, items))) => Reply::Array(flat(&items)),
        Ok(None) => Reply::Array(Vec::new()),
        Err(e) => e,
    }
}

/// The non-blocking form of a blocking pop given its whole arguments; `None` while its keys
/// hold nothing. Served pops propagate as ZPOPMIN/ZPOPMAX.
fn serve(db: &mut Db<'_>, a: &[Bytes], strict: bool) -> Result<Option<Reply>, Reply> {
    let Some(name) = a.first() else {
        return Ok(None);
    };
    if is(name, "bzmpop") {
        let p = parse_mpop(a, 2)?;
        let Some((key, items)) = pop_first(db, &a[p.keys], p.max, p.count, strict)? else {
            return Ok(None);
        };
        propagate(db, &key, p.max, Some(items.len()));
        return Ok(Some(Reply::Array(vec![Reply::Bulk(key), pairs(&items)])));
    }
    let max = is(name, "bzpopmax");
    let keys = a.get(1..a.len().saturating_sub(1)).unwrap_or(&[]);
    let Some((key, items)) = pop_first(db, keys, max, 1, strict)? else {
        return Ok(None);
    };
    propagate(db, &key, max, None);
    let mut out = vec![Reply::Bulk(key)];
    out.extend(flat(&items));
    Ok(Some(Reply::Array(out)))
}

/// The non-blocking form of BZPOPMIN, BZPOPMAX and BZMPOP (see `super::super::blocking`).
pub fn serve_blocked(db: &mut Db<'_>, args: &[Bytes]) -> Option<Reply> {
    serve(db, args, false).ok().flatten()
}
