//! Pops across lists: LMPOP (from the first list of several that has elements), LMOVE and
//! RPOPLPUSH (from one list onto another), and their blocking forms BLPOP, BRPOP, BLMPOP,
//! BLMOVE and BRPOPLPUSH.
//!
//! A blocking command first runs as its non-blocking form; if its lists are all empty it blocks
//! (`super::super::blocking`), and [`serve_blocked`] runs that form again on the client's behalf
//! whenever one of its keys changes. However it is served, what reaches the replicas is the
//! non-blocking command with what it popped (`LPOP key`, `LPOP key count`, `LMOVE ...`).

use bytes::Bytes;
use ringcache_protocol::Reply;

use super::super::args::{is, syntax_error};
use super::super::blocking::{block, parse_timeout};
use super::super::ctx::Ctx;
use super::take;
use crate::keyspace::Db;
use crate::types::List;

/// A pop run when a command arrives (a key of another type is an error) or again for a blocked
/// client (such a key is skipped: only lists can serve it, as in Redis).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Arrived,
    Served,
}

fn side(arg: &[u8]) -> Option<bool> {
    if is(arg, "left") {
        Some(true)
    } else if is(arg, "right") {
        Some(false)
    } else {
        None
    }
}

fn side_name(front: bool) -> Bytes {
    Bytes::from_static(if front { b"LEFT" } else { b"RIGHT" })
}

/// Pops from the first of `keys` holding a list: one element (`count` None) or up to `count`.
/// Propagates as the plain pop. `None` when every list is empty.
fn pop_first(
    db: &mut Db<'_>,
    keys: &[Bytes],
    front: bool,
    count: Option<usize>,
    mode: Mode,
) -> Result<Option<(Bytes, Vec<Reply>)>, Reply> {
    for key in keys {
        match db.read::<List>(key) {
            Ok(Some(_)) => {}
            Ok(None) => continue,
            Err(_) if mode == Mode::Served => continue,
            Err(e) => return Err(e.into()),
        }
        let n = count.unwrap_or(1);
        let items = match db.update::<List, _>(key, false, |l, _| (take(l, front, n), true)) {
            Ok(Some(items)) if !items.is_empty() => items,
            _ => continue,
        };
        let name = Bytes::from_static(if front { b"LPOP" } else { b"RPOP" });
        let mut cmd = vec![name, key.clone()];
        if count.is_some() {
            cmd.push(Bytes::from(items.len().to_string()));
        }
        db.propagate_as(cmd);
        return Ok(Some((key.clone(), items)));
    }
    Ok(None)
}

/// BLPOP and BRPOP: `[key, element]`.
pub fn blpop(ctx: &mut Ctx, front: bool, a: &[Bytes]) -> Reply {
    let Some((last, keys)) = a[1..].split_last() else {
        return syntax_error();
    };
    let timeout = match parse_timeout(last) {
        Ok(t) => t,
        Err(e) => return e,
    };
    match pop_first(&mut ctx.db, keys, front, None, Mode::Arrived) {
        Ok(Some((key, items))) => key_and(key, items, false),
        Ok(None) => block(ctx, a, keys.to_vec(), timeout, Reply::NilArray),
        Err(e) => e,
    }
}

/// The reply of a blocking pop: the key, then its element (or, for LMPOP, the elements).
fn key_and(key: Bytes, items: Vec<Reply>, many: bool) -> Reply {
    let popped = if many {
        Reply::Array(items)
    } else {
        items.into_iter().next().unwrap_or(Reply::Nil)
    };
    Reply::Array(vec![Reply::Bulk(key), popped])
}

/// LMPOP's and BLMPOP's arguments after the timeout: the keys, the side, the count.
struct Mpop<'a> {
    keys: &'a [Bytes],
    front: bool,
    count: usize,
}

/// Parses `numkeys key... LEFT|RIGHT [COUNT n]` starting at `a[at]`, with Redis's errors.
fn parse_mpop(a: &[Bytes], at: usize) -> Result<Mpop<'_>, Reply> {
    let positive = |arg: &[u8], msg: &str| match ringcache_protocol::num::parse_i64(arg) {
        Some(n) if n > 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => Err(Reply::error(msg)),
    };
    let numkeys = positive(&a[at], "ERR numkeys should be greater than 0")?;
    let side_at = at.saturating_add(numkeys).saturating_add(1);
    let Some(front) = a.get(side_at).and_then(|s| side(s)) else {
        return Err(syntax_error());
    };
    let mut count = None;
    let mut i = side_at + 1;
    while i < a.len() {
        if count.is_none() && is(&a[i], "count") && i + 1 < a.len() {
            count = Some(positive(&a[i + 1], "ERR count should be greater than 0")?);
            i += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(Mpop {
        keys: &a[at + 1..side_at],
        front,
        count: count.unwrap_or(1),
    })
}

/// LMPOP and BLMPOP: `[key, [elements]]`.
pub fn lmpop(ctx: &mut Ctx, blocking: bool, a: &[Bytes]) -> Reply {
    let m = match parse_mpop(a, if blocking { 2 } else { 1 }) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let timeout = if blocking {
        match parse_timeout(&a[1]) {
            Ok(t) => t,
            Err(e) => return e,
        }
    } else {
        None
    };
    match pop_first(&mut ctx.db, m.keys, m.front, Some(m.count), Mode::Arrived) {
        Ok(Some((key, items))) => key_and(key, items, true),
        Ok(None) if blocking => block(ctx, a, m.keys.to_vec(), timeout, Reply::NilArray),
        Ok(None) => Reply::NilArray,
        Err(e) => e,
    }
}

/// Moves one element from `src` onto `dst`: the element, `None` if `src` is missing, an error
/// if either key holds another type (then nothing moves).
fn move_one(
    db: &mut Db<'_>,
    src: &Bytes,
    dst: &Bytes,
    from_front: bool,
    to_front: bool,
) -> Result<Option<Bytes>, Reply> {
    match db.read::<List>(src) {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if src == dst {
        // One change, so the key (and its deadline) stays even when it held one element.
        let r = db.update::<List, _>(src, false, |l, lim| {
            let item = if from_front {
                l.pop_front()
            } else {
                l.pop_back()
            };
            if let Some(item) = &item {
                if to_front {
                    l.push_front(item, lim);
                } else {
                    l.push_back(item, lim);
                }
            }
            (item, true)
        });
        return Ok(r.map_err(Reply::from)?.flatten().map(Bytes::from));
    }
    db.read::<List>(dst).map_err(Reply::from)?;
    let popped = db.update::<List, _>(src, false, |l, _| {
        let item = if from_front {
            l.pop_front()
        } else {
            l.pop_back()
        };
        (item, true)
    });
    let Some(item) = popped.map_err(Reply::from)?.flatten() else {
        return Ok(None);
    };
    db.update::<List, _>(dst, true, |l, lim| {
        if to_front {
            l.push_front(&item, lim);
        } else {
            l.push_back(&item, lim);
        }
        ((), true)
    })
    .map_err(Reply::from)?;
    Ok(Some(Bytes::from(item)))
}

/// LMOVE's and BLMOVE's sides (RPOPLPUSH and BRPOPLPUSH: from the right onto the left).
fn move_sides(name: &str, a: &[Bytes]) -> Option<(bool, bool)> {
    match name {
        "lmove" | "blmove" => Some((side(&a[3])?, side(&a[4])?)),
        _ => Some((false, true)),
    }
}

/// What a served (B)LMOVE or (B)RPOPLPUSH propagates as.
fn lmove_command(name: &str, a: &[Bytes], from_front: bool, to_front: bool) -> Vec<Bytes> {
    if name.ends_with("rpoplpush") {
        vec![Bytes::from_static(b"RPOPLPUSH"), a[1].clone(), a[2].clone()]
    } else {
        vec![
            Bytes::from_static(b"LMOVE"),
            a[1].clone(),
            a[2].clone(),
            side_name(from_front),
            side_name(to_front),
        ]
    }
}

/// LMOVE, RPOPLPUSH, BLMOVE and BRPOPLPUSH: the element moved.
pub fn lmove(ctx: &mut Ctx, name: &str, a: &[Bytes]) -> Reply {
    let Some((from_front, to_front)) = move_sides(name, a) else {
        return syntax_error();
    };
    let blocking = name.starts_with('b');
    let timeout = if blocking {
        match parse_timeout(&a[a.len() - 1]) {
            Ok(t) => t,
            Err(e) => return e,
        }
    } else {
        None
    };
    match move_one(&mut ctx.db, &a[1], &a[2], from_front, to_front) {
        Ok(Some(item)) => {
            if blocking {
                ctx.db
                    .propagate_as(lmove_command(name, a, from_front, to_front));
            }
            Reply::Bulk(item)
        }
        // Where it may not block (a transaction), Redis answers a null string here and a null
        // array when a blocked client times out.
        Ok(None) if blocking && !(ctx.session.in_exec || ctx.session.from_primary) => {
            block(ctx, a, vec![a[1].clone()], timeout, Reply::NilArray)
        }
        Ok(None) => Reply::Nil,
        Err(e) => e,
    }
}

/// The non-blocking form of a blocking command given its full arguments, run for a client
/// blocked on its keys: its reply, or `None` while its lists are still empty.
pub fn serve_blocked(db: &mut Db<'_>, args: &[Bytes]) -> Option<Reply> {
    let name = std::str::from_utf8(args.first()?)
        .ok()?
        .to_ascii_lowercase();
    match name.as_str() {
        "blpop" | "brpop" => {
            let keys = args.get(1..args.len().checked_sub(1)?)?;
            let (key, items) = pop_first(db, keys, name == "blpop", None, Mode::Served).ok()??;
            Some(key_and(key, items, false))
        }
        "blmpop" => {
            let m = parse_mpop(args, 2).ok()?;
            let (key, items) =
                pop_first(db, m.keys, m.front, Some(m.count), Mode::Served).ok()??;
            Some(key_and(key, items, true))
        }
        "blmove" | "brpoplpush" => {
            if args.len() < 4 {
                return None;
            }
            let (from_front, to_front) = move_sides(&name, args)?;
            // Only a list at the source serves; a destination of another type is the client's
            // error (and nothing moves), as in Redis.
            if !matches!(db.read::<List>(&args[1]), Ok(Some(_))) {
                return None;
            }
            match move_one(db, &args[1], &args[2], from_front, to_front) {
                Ok(Some(item)) => {
                    db.propagate_as(lmove_command(&name, args, from_front, to_front));
                    Some(Reply::Bulk(item))
                }
                Ok(None) => None,
                Err(e) => Some(e),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::super::args::bulk;
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn mpop_arguments_parse_as_redis() {
        let a = args("LMPOP 2 a b right COUNT 3");
        let m = parse_mpop(&a, 1).unwrap();
        assert_eq!((m.keys.len(), m.front, m.count), (2, false, 3));
        let err = |s: &str| match parse_mpop(&args(s), 1) {
            Err(Reply::Error(e)) => e,
            _ => String::new(),
        };
        assert_eq!(
            err("LMPOP 0 a LEFT"),
            "ERR numkeys should be greater than 0"
        );
        assert_eq!(err("LMPOP 5 a LEFT"), "ERR syntax error");
        assert_eq!(err("LMPOP 1 a LEFT COUNT 1 COUNT 2"), "ERR syntax error");
        assert_eq!(
            err("LMPOP 1 a LEFT COUNT 0"),
            "ERR count should be greater than 0"
        );
        assert_eq!(err("LMPOP 1 a up"), "ERR syntax error");
        assert!(parse_mpop(&args("LMPOP 9223372036854775807 a LEFT"), 1).is_err());
    }

    #[test]
    fn the_reply_of_a_blocking_pop() {
        let one = key_and(Bytes::from_static(b"k"), vec![bulk(b"v")], false);
        assert_eq!(
            one,
            Reply::Array(vec![Reply::Bulk(Bytes::from_static(b"k")), bulk(b"v")])
        );
    }
}
