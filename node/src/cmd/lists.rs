//! List commands. The pops that take from one of several lists (LMPOP) and from one list into
//! another (LMOVE), and the blocking forms of both, are in [`pops`].

mod pops;

use bytes::Bytes;
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::Reply;

use super::args::{bulk, int_arg, is, syntax_error, unknown_command};
use super::ctx::Ctx;
use crate::types::List;

pub use pops::serve_blocked;

pub const NAMES: &[&str] = &[
    "lpush",
    "rpush",
    "lpushx",
    "rpushx",
    "linsert",
    "llen",
    "lindex",
    "lset",
    "lrange",
    "ltrim",
    "lpos",
    "lrem",
    "lpop",
    "rpop",
    "lmove",
    "rpoplpush",
    "lmpop",
    "blpop",
    "brpop",
    "blmove",
    "brpoplpush",
    "blmpop",
];

pub fn run(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    match spec.name {
        "lpush" => push(ctx, a, true, false),
        "rpush" => push(ctx, a, false, false),
        "lpushx" => push(ctx, a, true, true),
        "rpushx" => push(ctx, a, false, true),
        "linsert" => linsert(ctx, a),
        "llen" => read(ctx, a, |l| Reply::Int(l.len() as i64), Reply::Int(0)),
        "lindex" => lindex(ctx, a),
        "lset" => lset(ctx, a),
        "lrange" => lrange(ctx, a),
        "ltrim" => ltrim(ctx, a),
        "lpos" => lpos(ctx, a),
        "lrem" => lrem(ctx, a),
        "lpop" => pop(ctx, a, true),
        "rpop" => pop(ctx, a, false),
        "lmove" | "rpoplpush" | "blmove" | "brpoplpush" => pops::lmove(ctx, spec.name, a),
        "lmpop" | "blmpop" => pops::lmpop(ctx, spec.name == "blmpop", a),
        "blpop" | "brpop" => pops::blpop(ctx, spec.name == "blpop", a),
        _ => unknown_command(a),
    }
}

/// Answers from the list at `a[1]` (`missing` if there is none).
fn read(ctx: &mut Ctx, a: &[Bytes], f: impl FnOnce(&List) -> Reply, missing: Reply) -> Reply {
    match ctx.db.read::<List>(&a[1]) {
        Ok(Some(l)) => f(l),
        Ok(None) => missing,
        Err(e) => e.into(),
    }
}

/// A Redis index (negative counts from the end) into a list of `len`, if it is inside.
fn index_of(len: usize, index: i64) -> Option<usize> {
    let i = if index < 0 {
        (len as i64).checked_add(index)?
    } else {
        index
    };
    usize::try_from(i).ok().filter(|&i| i < len)
}

/// The elements a Redis range `start..=end` (negative counts from the end) covers in a list of
/// `len`: the first index and how many, or `None` if the range is empty.
fn range_of(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end };
    if start > end || start >= len {
        return None;
    }
    let end = end.min(len - 1);
    Some((start as usize, (end - start + 1) as usize))
}

/// Takes `n` elements from the front (or the back, in that order) of `l`.
fn take(l: &mut List, front: bool, n: usize) -> Vec<Reply> {
    let items: Vec<Reply> = if front {
        l.iter().take(n).map(bulk).collect()
    } else {
        l.iter_rev().take(n).map(bulk).collect()
    };
    if front {
        l.remove_front(items.len());
    } else {
        l.remove_back(items.len());
    }
    items
}

/// LPUSH, RPUSH, LPUSHX and RPUSHX (`existing`: only onto a list already there).
fn push(ctx: &mut Ctx, a: &[Bytes], front: bool, existing: bool) -> Reply {
    let r = ctx.db.update::<List, _>(&a[1], !existing, |l, lim| {
        for item in &a[2..] {
            if front {
                l.push_front(item, lim);
            } else {
                l.push_back(item, lim);
            }
        }
        (l.len(), true)
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0) as i64),
        Err(e) => e.into(),
    }
}

fn linsert(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let after = if is(&a[2], "after") {
        true
    } else if is(&a[2], "before") {
        false
    } else {
        return syntax_error();
    };
    let r = ctx
        .db
        .update::<List, _>(&a[1], false, |l, lim| match l.position(&a[3]) {
            Some(i) => {
                l.insert(i + usize::from(after), &a[4], lim);
                (l.len() as i64, true)
            }
            None => (-1, false),
        });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0)),
        Err(e) => e.into(),
    }
}

fn lindex(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    // The key is looked up before the index is parsed, as Redis does.
    read(
        ctx,
        a,
        |l| match int_arg(&a[2]) {
            Ok(i) => index_of(l.len(), i)
                .and_then(|i| l.get(i))
                .map(bulk)
                .unwrap_or(Reply::Nil),
            Err(e) => e,
        },
        Reply::Nil,
    )
}

fn lset(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match ctx.db.read::<List>(&a[1]) {
        Ok(Some(_)) => {}
        Ok(None) => return Reply::error("ERR no such key"),
        Err(e) => return e.into(),
    }
    let index = match int_arg(&a[2]) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let r = ctx
        .db
        .update::<List, _>(&a[1], false, |l, lim| match index_of(l.len(), index) {
            Some(i) => (l.set(i, &a[3], lim), true),
            None => (false, false),
        });
    match r {
        Ok(Some(true)) => Reply::OK,
        Ok(_) => Reply::error("ERR index out of range"),
        Err(e) => e.into(),
    }
}

/// The two integer arguments of LRANGE and LTRIM.
fn two_ints(a: &[Bytes]) -> Result<(i64, i64), Reply> {
    Ok((int_arg(&a[2])?, int_arg(&a[3])?))
}

fn lrange(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (start, end) = match two_ints(a) {
        Ok(r) => r,
        Err(e) => return e,
    };
    read(
        ctx,
        a,
        |l| match range_of(l.len(), start, end) {
            Some((from, n)) => Reply::Array(l.iter_from(from).take(n).map(bulk).collect()),
            None => Reply::Array(Vec::new()),
        },
        Reply::Array(Vec::new()),
    )
}

fn ltrim(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (start, end) = match two_ints(a) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let r = ctx.db.update::<List, _>(&a[1], false, |l, _| {
        let len = l.len();
        let (front, back) = match range_of(len, start, end) {
            Some((from, n)) => (from, len - from - n),
            None => (len, 0),
        };
        l.remove_front(front);
        l.remove_back(back);
        ((), front + back > 0)
    });
    match r {
        Ok(_) => Reply::OK,
        Err(e) => e.into(),
    }
}

/// A non-negative integer argument; `msg` is the error for anything else (Redis's text).
fn non_negative(arg: &[u8], msg: &str) -> Result<usize, Reply> {
    match ringcache_protocol::num::parse_i64(arg) {
        Some(n) if n >= 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => Err(Reply::error(msg)),
    }
}

/// LPOS's options: rank (negative: from the end), count (`None`: not given), maxlen.
fn lpos_opts(a: &[Bytes]) -> Result<(i64, Option<usize>, usize), Reply> {
    let (mut rank, mut count, mut maxlen) = (1, None, 0);
    let mut i = 3;
    while i < a.len() {
        let more = i + 1 < a.len();
        if is(&a[i], "rank") && more {
            rank = int_arg(&a[i + 1])?;
            if rank == 0 {
                return Err(Reply::error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if is(&a[i], "count") && more {
            count = Some(non_negative(&a[i + 1], "ERR COUNT can't be negative")?);
        } else if is(&a[i], "maxlen") && more {
            maxlen = non_negative(&a[i + 1], "ERR MAXLEN can't be negative")?;
        } else {
            return Err(syntax_error());
        }
        i += 2;
    }
    Ok((rank, count, maxlen))
}

fn lpos(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (rank, count, maxlen) = match lpos_opts(a) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let missing = if count.is_some() {
        Reply::Array(Vec::new())
    } else {
        Reply::Nil
    };
    read(
        ctx,
        a,
        |l| {
            let from_back = rank < 0;
            // Redis negates i64::MIN into itself, which every match then passes.
            let rank = match rank {
                i64::MIN => 1,
                r => usize::try_from(r.unsigned_abs()).unwrap_or(usize::MAX),
            };
            let len = l.len();
            let items: Box<dyn Iterator<Item = &[u8]>> = if from_back {
                Box::new(l.iter_rev())
            } else {
                Box::new(l.iter())
            };
            let limit = if maxlen == 0 { usize::MAX } else { maxlen };
            let mut matches = 0usize;
            let mut found = Vec::new();
            for (seen, item) in items.take(limit).enumerate() {
                if item != &a[2][..] {
                    continue;
                }
                matches += 1;
                if matches < rank {
                    continue;
                }
                let at = if from_back { len - 1 - seen } else { seen } as i64;
                match count {
                    None => return Reply::Int(at),
                    Some(n) => {
                        found.push(Reply::Int(at));
                        if n != 0 && found.len() >= n {
                            break;
                        }
                    }
                }
            }
            if count.is_some() {
                Reply::Array(found)
            } else {
                Reply::Nil
            }
        },
        missing,
    )
}

fn lrem(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let count = match int_arg(&a[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let r = ctx.db.update::<List, _>(&a[1], false, |l, lim| {
        let n = l.remove_matching(&a[3], count, lim);
        (n, n > 0)
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0) as i64),
        Err(e) => e.into(),
    }
}

/// LPOP and RPOP, with an optional count (then the reply is an array).
fn pop(ctx: &mut Ctx, a: &[Bytes], front: bool) -> Reply {
    if a.len() > 3 {
        return super::args::arity_error(if front { "lpop" } else { "rpop" });
    }
    let count = match a.get(2) {
        Some(c) => match non_negative(c, "ERR value is out of range, must be positive") {
            Ok(n) => Some(n),
            Err(e) => return e,
        },
        None => None,
    };
    let missing = if count.is_some() {
        Reply::NilArray
    } else {
        Reply::Nil
    };
    if count == Some(0) {
        return read(ctx, a, |_| Reply::Array(Vec::new()), missing);
    }
    let r = ctx.db.update::<List, _>(&a[1], false, |l, _| match count {
        None => {
            let item = if front { l.pop_front() } else { l.pop_back() };
            (item.map_or(Reply::Nil, |v| Reply::Bulk(v.into())), true)
        }
        Some(n) => (Reply::Array(take(l, front, n)), true),
    });
    match r {
        Ok(Some(reply)) => reply,
        Ok(None) => missing,
        Err(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_and_ranges_as_redis() {
        assert_eq!(index_of(3, 0), Some(0));
        assert_eq!(index_of(3, -1), Some(2));
        assert_eq!(index_of(3, -4), None);
        assert_eq!(index_of(3, 3), None);
        assert_eq!(index_of(3, i64::MIN), None);
        assert_eq!(range_of(5, 0, -1), Some((0, 5)));
        assert_eq!(range_of(5, -100, 100), Some((0, 5)));
        assert_eq!(range_of(5, 1, 0), None);
        assert_eq!(range_of(5, 0, -6), None);
        assert_eq!(range_of(5, 0, -5), Some((0, 1)));
        assert_eq!(range_of(5, 5, 10), None);
        assert_eq!(range_of(5, i64::MIN, i64::MAX), Some((0, 5)));
        assert_eq!(range_of(0, 0, -1), None);
    }
}
