//! Set commands.

use bytes::Bytes;
use rand::seq::index::sample;
use rand::Rng;
use ringcache_protocol::num::parse_i64;
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::Reply;

use super::args::{is, syntax_error, unknown_command};
use super::ctx::Ctx;
use super::hashes::{random_count, random_indexes};
use super::keys::{parse_cursor, scan_opts, scan_reply};
use crate::keyspace::Entry;
use crate::types::set::Elem;
use crate::types::{scan_window, Set, Value};

pub const NAMES: &[&str] = &[
    "sadd",
    "srem",
    "scard",
    "sismember",
    "smismember",
    "smembers",
    "srandmember",
    "spop",
    "smove",
    "sinter",
    "sintercard",
    "sinterstore",
    "sunion",
    "sunionstore",
    "sdiff",
    "sdiffstore",
    "sscan",
];

pub fn run(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    match spec.name {
        "sadd" => sadd(ctx, a),
        "srem" => srem(ctx, a),
        "scard" => read(ctx, &a[1], |s| Reply::Int(s.len() as i64), Reply::Int(0)),
        "sismember" => read(
            ctx,
            &a[1],
            |s| Reply::Int(i64::from(s.contains(&a[2]))),
            Reply::Int(0),
        ),
        "smismember" => smismember(ctx, a),
        "smembers" => read(ctx, &a[1], members_reply, Reply::Set(Vec::new())),
        "srandmember" => srandmember(ctx, a),
        "spop" => spop(ctx, a),
        "smove" => smove(ctx, a),
        "sinter" => inter(ctx, &a[1..], Out::Members),
        "sintercard" => sintercard(ctx, a),
        "sinterstore" => inter(ctx, &a[2..], Out::Store(&a[1])),
        "sunion" => union_diff(ctx, &a[1..], false, None),
        "sunionstore" => union_diff(ctx, &a[2..], false, Some(&a[1])),
        "sdiff" => union_diff(ctx, &a[1..], true, None),
        "sdiffstore" => union_diff(ctx, &a[2..], true, Some(&a[1])),
        "sscan" => sscan(ctx, a),
        _ => unknown_command(a),
    }
}

/// Answers from the set at `key` (`missing` if there is none).
fn read(ctx: &mut Ctx, key: &[u8], f: impl FnOnce(&Set) -> Reply, missing: Reply) -> Reply {
    match ctx.db.read::<Set>(key) {
        Ok(Some(s)) if !s.is_empty() => f(s),
        Ok(_) => missing,
        Err(e) => e.into(),
    }
}

fn elem_reply(e: &Elem<'_>) -> Reply {
    Reply::Bulk(e.to_bytes())
}

/// Every member, as a set reply (`~` in RESP3).
fn members_reply(s: &Set) -> Reply {
    Reply::Set(s.elems().map(|e| elem_reply(&e)).collect())
}

pub fn sadd(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let r = ctx.db.update::<Set, _>(&a[1], true, |s, l| {
        let n = a[2..].iter().filter(|m| s.insert(m, l)).count();
        (n, n > 0)
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0) as i64),
        Err(e) => e.into(),
    }
}

pub fn srem(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let r = ctx.db.update::<Set, _>(&a[1], false, |s, _| {
        let n = a[2..].iter().filter(|m| s.remove(m)).count();
        (n, n > 0)
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0) as i64),
        Err(e) => e.into(),
    }
}

pub fn smismember(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let zeros = Reply::Array(a[2..].iter().map(|_| Reply::Int(0)).collect());
    read(
        ctx,
        &a[1],
        |s| {
            Reply::Array(
                a[2..]
                    .iter()
                    .map(|m| Reply::Int(i64::from(s.contains(m))))
                    .collect(),
            )
        },
        zeros,
    )
}

/// SRANDMEMBER key [count]: one member (or nil); with a count, an array of distinct members
/// (positive) or of members drawn with repeats (negative).
pub fn srandmember(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if a.len() > 3 {
        return syntax_error();
    }
    let count = match a.get(2) {
        Some(c) => match random_count(c, false) {
            Ok(n) => Some(n),
            Err(e) => return e,
        },
        None => None,
    };
    let missing = if count.is_some() {
        Reply::Array(Vec::new())
    } else {
        Reply::Nil
    };
    read(
        ctx,
        &a[1],
        |s| {
            let Some(count) = count else {
                let i = rand::thread_rng().gen_range(0..s.len());
                return s.get(i).map(|e| elem_reply(&e)).unwrap_or(Reply::Nil);
            };
            match random_indexes(s.len(), count) {
                Ok(picked) => Reply::Array(s.get_many(&picked).iter().map(elem_reply).collect()),
                Err(e) => e,
            }
        },
        missing,
    )
}

/// SPOP key [count]. Replicas get the members it removed (SREM), or a DEL when it took them all,
/// so a random choice cannot diverge.
pub fn spop(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if a.len() > 3 {
        return syntax_error();
    }
    let count = match a.get(2) {
        Some(c) => match parse_i64(c) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => return Reply::error("ERR value is out of range, must be positive"),
        },
        None => None,
    };
    let r = ctx.db.update::<Set, _>(&a[1], false, |s, _| {
        let len = s.len();
        let take = count.map_or(1, |c| c.min(len as u64) as usize);
        if take == 0 {
            return ((Vec::new(), false), false);
        }
        let emptied = take == len;
        let picked: Vec<usize> = if emptied {
            (0..len).collect()
        } else {
            sample(&mut rand::thread_rng(), len, take).into_vec()
        };
        let members: Vec<Bytes> = s.get_many(&picked).iter().map(Elem::to_bytes).collect();
        if emptied {
            *s = Set::default();
        } else {
            s.remove_indexes(&picked);
        }
        ((members, emptied), true)
    });
    let (members, emptied) = match r {
        Ok(Some(v)) => v,
        Ok(None) => (Vec::new(), false),
        Err(e) => return e.into(),
    };
    if !members.is_empty() {
        let mut cmd = Vec::with_capacity(members.len() + 2);
        if emptied && count.is_some() {
            cmd.push(Bytes::from_static(b"DEL"));
            cmd.push(a[1].clone());
        } else {
            cmd.push(Bytes::from_static(b"SREM"));
            cmd.push(a[1].clone());
            cmd.extend(members.iter().cloned());
        }
        ctx.db.propagate_as(cmd);
    }
    match count {
        Some(_) => Reply::Set(members.into_iter().map(Reply::Bulk).collect()),
        None => members.into_iter().next().map_or(Reply::Nil, Reply::Bulk),
    }
}

/// SMOVE src dst member: 0 when `src` is missing (whatever `dst` is), WRONGTYPE when either holds
/// another type; `dst` changes (and is notified) only if the member was not in it already.
pub fn smove(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (src, dst, member) = (&a[1], &a[2], &a[3]);
    match ctx.db.read::<Set>(src) {
        Ok(None) => return Reply::Int(0),
        Err(e) => return e.into(),
        Ok(Some(_)) => {}
    }
    if let Err(e) = ctx.db.read::<Set>(dst) {
        return e.into();
    }
    if src == dst {
        return read(
            ctx,
            src,
            |s| Reply::Int(i64::from(s.contains(member))),
            Reply::Int(0),
        );
    }
    let removed = ctx.db.update::<Set, _>(src, false, |s, _| {
        let r = s.remove(member);
        (r, r)
    });
    if !matches!(removed, Ok(Some(true))) {
        return Reply::Int(0);
    }
    let added = ctx
        .db
        .update::<Set, _>(dst, true, |s, l| ((), s.insert(member, l)));
    match added {
        Ok(_) => Reply::Int(1),
        Err(e) => e.into(),
    }
}

/// What an intersection produces.
enum Out<'a> {
    /// The members (SINTER).
    Members,
    /// How many, stopping at the limit (0: none) (SINTERCARD).
    Card(u64),
    /// A set stored at the key (SINTERSTORE).
    Store(&'a [u8]),
}

/// SINTER, SINTERCARD and SINTERSTORE: the members of the smallest set that every other has.
fn inter(ctx: &mut Ctx, keys: &[Bytes], out: Out<'_>) -> Reply {
    let limits = ctx.db.limits();
    let found = match ctx.db.read_many::<Set, _>(keys) {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    let mut members = Vec::new();
    let mut card = 0u64;
    let mut stored = Set::default();
    // A missing key is an empty set: the intersection is empty.
    if found.iter().all(Option::is_some) {
        let mut sets: Vec<&Set> = found.into_iter().flatten().collect();
        sets.sort_by_key(|s| s.len());
        if let Some((&first, rest)) = sets.split_first() {
            for e in first.elems() {
                if !rest
                    .iter()
                    .all(|&s| std::ptr::eq(s, first) || s.contains_elem(e))
                {
                    continue;
                }
                card += 1;
                match out {
                    Out::Members => members.push(elem_reply(&e)),
                    Out::Card(limit) if limit > 0 && card >= limit => break,
                    Out::Card(_) => {}
                    Out::Store(_) => {
                        stored.insert_elem(e, &limits);
                    }
                }
            }
        }
    }
    match out {
        Out::Members => Reply::Set(members),
        Out::Card(_) => Reply::Int(card as i64),
        Out::Store(dst) => store(ctx, dst, stored),
    }
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]
pub fn sintercard(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let numkeys = match parse_i64(&a[1]) {
        Some(n) if n > 0 => n as u64,
        _ => return Reply::error("ERR numkeys should be greater than 0"),
    };
    if numkeys > (a.len() - 2) as u64 {
        return Reply::error("ERR Number of keys can't be greater than number of args");
    }
    let end = 2 + numkeys as usize;
    let mut limit = 0;
    let mut i = end;
    while i < a.len() {
        match a.get(i + 1) {
            Some(n) if is(&a[i], "limit") => match parse_i64(n) {
                Some(l) if l >= 0 => limit = l as u64,
                _ => return Reply::error("ERR LIMIT can't be negative"),
            },
            _ => return syntax_error(),
        }
        i += 2;
    }
    inter(ctx, &a[2..end], Out::Card(limit))
}

/// SUNION, SDIFF and their STORE forms.
fn union_diff(ctx: &mut Ctx, keys: &[Bytes], diff: bool, dst: Option<&[u8]>) -> Reply {
    let limits = ctx.db.limits();
    let found = match ctx.db.read_many::<Set, _>(keys) {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    let mut result = Set::default();
    if !diff {
        for s in found.iter().flatten() {
            s.elems().for_each(|e| {
                result.insert_elem(e, &limits);
            });
        }
    } else if let Some((Some(first), others)) = found.split_first() {
        let mut rest: Vec<&Set> = others.iter().flatten().copied().collect();
        // The first set again among the others leaves nothing.
        if !rest.iter().any(|&s| std::ptr::eq(s, *first)) {
            // Test each member of the first against the others, or copy the first and remove
            // every member of the others: whichever does less work (as Redis chooses).
            let per_member = first.len() * (rest.len() + 1) / 2;
            let copy_remove = first.len() + rest.iter().map(|s| s.len()).sum::<usize>();
            if per_member <= copy_remove {
                // Larger sets first: a member found early stops its lookups early.
                rest.sort_by_key(|s| std::cmp::Reverse(s.len()));
                for e in first.elems() {
                    if !rest.iter().any(|s| s.contains_elem(e)) {
                        result.insert_elem(e, &limits);
                    }
                }
            } else {
                first.elems().for_each(|e| {
                    result.insert_elem(e, &limits);
                });
                for s in rest {
                    if result.is_empty() {
                        break;
                    }
                    s.elems().for_each(|e| {
                        result.remove_elem(e);
                    });
                }
            }
        }
    }
    match dst {
        None => members_reply(&result),
        Some(dst) => store(ctx, dst, result),
    }
}

/// Stores a *STORE result at `dst` whatever held it before, without a deadline, or deletes `dst`
/// when the result is empty; replies with its size.
fn store(ctx: &mut Ctx, dst: &[u8], result: Set) -> Reply {
    let n = result.len();
    if n == 0 {
        ctx.db.remove(dst);
    } else {
        ctx.db.insert(Entry::object(dst, Value::Set(result), None));
    }
    Reply::Int(n as i64)
}

/// SSCAN: an intset or a packed set in one step (cursor 0); a table page by page from its end
/// (see `crate::types::scan_window`). Like Redis, the options are only parsed when the key holds
/// a set.
pub fn sscan(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let cursor = match parse_cursor(&a[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    read(
        ctx,
        &a[1],
        |s| {
            let opts = match scan_opts(a, 3, false) {
                Ok(o) => o,
                Err(e) => return e,
            };
            let mut out = Vec::new();
            let mut push = |e: Elem<'_>| {
                e.with_text(|t| {
                    if opts.matches(t) {
                        out.push(Reply::Bulk(Bytes::copy_from_slice(t)));
                    }
                })
            };
            if !s.is_table() {
                s.elems().for_each(&mut push);
                return scan_reply(0, out);
            }
            let (window, next) = scan_window(s.len(), cursor, opts.count);
            for i in window.rev() {
                if let Some(e) = s.get(i) {
                    push(e);
                }
            }
            scan_reply(next, out)
        },
        scan_reply(0, Vec::new()),
    )
}
