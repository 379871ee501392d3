//! String commands.

use bytes::Bytes;
use ringcache_protocol::num::{incr_float, parse_i64, IncrFloatError};
use ringcache_protocol::Reply;

use super::args::{arity_error, bulk, int_arg, is, not_integer, syntax_error, NOT_FLOAT};
use super::ctx::Ctx;
use crate::keyspace::{Db, WrongType};

/// Redis's `proto-max-bulk-len` bound on a string built by APPEND / SETRANGE.
pub const MAX_STRING: usize = 512 * 1024 * 1024;

pub fn too_big() -> Reply {
    Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

fn invalid_expire(cmd: &str) -> Reply {
    Reply::Error(format!("ERR invalid expire time in '{cmd}' command"))
}

fn pxat(t: i64) -> [Bytes; 2] {
    [Bytes::from_static(b"PXAT"), Bytes::from(t.to_string())]
}

pub fn get(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match ctx.db.lookup(&a[1]) {
        None => Reply::Nil,
        Some(e) => match e.str() {
            Some(v) => bulk(v),
            None => WrongType.into(),
        },
    }
}

/// Expiry options shared by SET and GETEX.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ExpireOpt {
    None,
    At(i64),
    KeepTtl,
    Persist,
}

/// Parses `EX|PX|EXAT|PXAT value` starting at `a[i]`; returns the absolute deadline in ms.
fn parse_expire(a: &[Bytes], i: usize, cmd: &str, now: i64) -> Result<i64, Reply> {
    let unit = &a[i];
    let Some(v) = a.get(i + 1) else {
        return Err(syntax_error());
    };
    let n = int_arg(v)?;
    if n <= 0 {
        return Err(invalid_expire(cmd));
    }
    let at = if is(unit, "ex") {
        n.checked_mul(1000).and_then(|ms| ms.checked_add(now))
    } else if is(unit, "px") {
        n.checked_add(now)
    } else if is(unit, "exat") {
        n.checked_mul(1000)
    } else {
        Some(n)
    };
    at.ok_or_else(|| invalid_expire(cmd))
}

pub fn set(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (mut nx, mut xx, mut get, mut expire) = (false, false, false, ExpireOpt::None);
    let now = ctx.db.now;
    let mut i = 3;
    while i < a.len() {
        let o = &a[i];
        let has_expire = expire != ExpireOpt::None;
        if is(o, "nx") && !xx {
            nx = true;
        } else if is(o, "xx") && !nx {
            xx = true;
        } else if is(o, "get") {
            get = true;
        } else if is(o, "keepttl") && !has_expire {
            expire = ExpireOpt::KeepTtl;
        } else if (is(o, "ex") || is(o, "px") || is(o, "exat") || is(o, "pxat"))
            && !has_expire
            && i + 1 < a.len()
        {
            match parse_expire(a, i, "set", now) {
                Ok(at) => expire = ExpireOpt::At(at),
                Err(e) => return e,
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let db = &mut ctx.db;
    let key = &a[1];
    let deadline = match expire {
        ExpireOpt::At(t) => Some(t),
        _ => None,
    };
    if !(nx || xx || get || expire == ExpireOpt::KeepTtl) {
        // Plain SET [EX..]: nothing depends on the old value.
        db.set_str(key, &a[2], deadline);
        propagate_set(db, a, expire);
        return Reply::OK;
    }
    let (exists, old, old_deadline) = match db.get(key) {
        None => (false, None, None),
        Some(e) => match e.str() {
            Some(v) => (true, Some(bulk(v)), e.deadline()),
            None if get => return WrongType.into(),
            None => (true, None, e.deadline()),
        },
    };
    if (nx && exists) || (xx && !exists) {
        return if get {
            old.unwrap_or(Reply::Nil)
        } else {
            Reply::Nil
        };
    }
    let deadline = match expire {
        ExpireOpt::KeepTtl => old_deadline,
        _ => deadline,
    };
    db.set_str(key, &a[2], deadline);
    propagate_set(db, a, expire);
    if get {
        old.unwrap_or(Reply::Nil)
    } else {
        Reply::OK
    }
}

/// What a SET that happened replays as: the value with an absolute deadline (a replica a moment
/// behind must not live the key longer), or KEEPTTL.
fn propagate_set(db: &mut Db, a: &[Bytes], expire: ExpireOpt) {
    if a.len() == 3 {
        // `SET key value` replays as received.
        return;
    }
    let mut cmd = vec![Bytes::from_static(b"SET"), a[1].clone(), a[2].clone()];
    match expire {
        ExpireOpt::At(t) => cmd.extend(pxat(t)),
        ExpireOpt::KeepTtl => cmd.push(Bytes::from_static(b"KEEPTTL")),
        _ => {}
    }
    db.propagate_as(cmd);
}

pub fn setnx(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if ctx.db.exists(&a[1]) {
        return Reply::Int(0);
    }
    ctx.db.set_str(&a[1], &a[2], None);
    Reply::Int(1)
}

/// SETEX (unit 1000) and PSETEX (unit 1).
pub fn setex(ctx: &mut Ctx, a: &[Bytes], unit: i64, cmd: &str) -> Reply {
    let n = match int_arg(&a[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if n <= 0 {
        return invalid_expire(cmd);
    }
    let Some(at) = n
        .checked_mul(unit)
        .and_then(|ms| ms.checked_add(ctx.db.now))
    else {
        return invalid_expire(cmd);
    };
    ctx.db.set_str(&a[1], &a[3], Some(at));
    let mut set = vec![Bytes::from_static(b"SET"), a[1].clone(), a[3].clone()];
    set.extend(pxat(at));
    ctx.db.propagate_as(set);
    Reply::OK
}

pub fn getex(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut expire = ExpireOpt::None;
    let now = ctx.db.now;
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        if (is(o, "ex") || is(o, "px") || is(o, "exat") || is(o, "pxat"))
            && expire == ExpireOpt::None
            && i + 1 < a.len()
        {
            match parse_expire(a, i, "getex", now) {
                Ok(at) => expire = ExpireOpt::At(at),
                Err(e) => return e,
            }
            i += 1;
        } else if is(o, "persist") && expire == ExpireOpt::None {
            expire = ExpireOpt::Persist;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let db = &mut ctx.db;
    let key = &a[1];
    let (val, deadline) = match db.lookup(key) {
        None => return Reply::Nil,
        Some(e) => match e.str() {
            Some(v) => (bulk(v), e.deadline()),
            None => return WrongType.into(),
        },
    };
    match expire {
        ExpireOpt::At(t) if t <= now => {
            db.remove(key);
            db.propagate_as(vec![Bytes::from_static(b"DEL"), key.clone()]);
        }
        ExpireOpt::At(t) => {
            db.set_deadline(key, Some(t));
            db.propagate_as(vec![
                Bytes::from_static(b"PEXPIREAT"),
                key.clone(),
                Bytes::from(t.to_string()),
            ]);
        }
        ExpireOpt::Persist if deadline.is_some() => {
            db.set_deadline(key, None);
            db.propagate_as(vec![Bytes::from_static(b"PERSIST"), key.clone()]);
        }
        _ => {}
    }
    val
}

pub fn getdel(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let val = match ctx.db.lookup(&a[1]) {
        None => return Reply::Nil,
        Some(e) => match e.str() {
            Some(v) => bulk(v),
            None => return WrongType.into(),
        },
    };
    ctx.db.remove(&a[1]);
    ctx.db
        .propagate_as(vec![Bytes::from_static(b"DEL"), a[1].clone()]);
    val
}

pub fn getset(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let old = match ctx.db.get_str(&a[1]) {
        Ok(o) => o.map(bulk).unwrap_or(Reply::Nil),
        Err(e) => return e.into(),
    };
    ctx.db.set_str(&a[1], &a[2], None);
    old
}

pub fn mget(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    Reply::Array(
        a[1..]
            .iter()
            .map(|k| match ctx.db.lookup(k) {
                Some(e) => e.str().map(bulk).unwrap_or(Reply::Nil),
                None => Reply::Nil,
            })
            .collect(),
    )
}

/// MSET and MSETNX (all-or-nothing when `nx`).
pub fn mset(ctx: &mut Ctx, a: &[Bytes], nx: bool) -> Reply {
    if a.len().is_multiple_of(2) {
        return arity_error(if nx { "msetnx" } else { "mset" });
    }
    if nx && a[1..].iter().step_by(2).any(|k| ctx.db.exists(k)) {
        return Reply::Int(0);
    }
    for pair in a[1..].chunks(2) {
        ctx.db.set_str(&pair[0], &pair[1], None);
    }
    if nx {
        Reply::Int(1)
    } else {
        Reply::OK
    }
}

/// Resizes the string at `key` (creating it) and edits it in place: APPEND, SETRANGE, SETBIT.
/// `len` gets the current length and answers the new one. The length after, or why not.
pub fn edit_string(
    db: &mut Db,
    key: &[u8],
    len: impl FnOnce(usize) -> Result<usize, Reply>,
    edit: impl FnOnce(&mut [u8]),
) -> Result<usize, Reply> {
    let cur = match db.get(key) {
        None => None,
        Some(e) => Some(e.str().ok_or(WrongType)?.len()),
    };
    let new_len = len(cur.unwrap_or(0))?;
    if cur.is_none() {
        db.set_str(key, b"", None);
    }
    db.edit_str(key, new_len, edit);
    Ok(new_len)
}

pub fn append(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let add = &a[2];
    // On a missing key Redis stores the argument as SET would (its encoding too).
    match ctx.db.exists(&a[1]) {
        false if add.len() <= MAX_STRING => {
            ctx.db.set_str(&a[1], add, None);
            return Reply::Int(add.len() as i64);
        }
        _ => {}
    }
    let r = edit_string(
        &mut ctx.db,
        &a[1],
        |cur| {
            if cur + add.len() > MAX_STRING {
                Err(too_big())
            } else {
                Ok(cur + add.len())
            }
        },
        |v| {
            let at = v.len() - add.len();
            v[at..].copy_from_slice(add);
        },
    );
    match r {
        Ok(n) => Reply::Int(n as i64),
        Err(e) => e,
    }
}

pub fn strlen(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match ctx.db.get_str(&a[1]) {
        Ok(Some(v)) => Reply::Int(v.len() as i64),
        Ok(None) => Reply::Int(0),
        Err(e) => e.into(),
    }
}

/// Redis's range rule for GETRANGE/SUBSTR (and BITCOUNT/BITPOS byte ranges): negative indexes
/// count from the end, both ends clamp; `None` for an empty range.
pub fn clamp_range(mut start: i64, mut end: i64, len: i64) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return None;
    }
    Some((start as usize, end as usize))
}

pub fn getrange(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (Ok(start), Ok(end)) = (int_arg(&a[2]), int_arg(&a[3])) else {
        return not_integer();
    };
    let v = match ctx.db.get_str(&a[1]) {
        Ok(Some(v)) => v,
        Ok(None) => return Reply::Bulk(Bytes::new()),
        Err(e) => return e.into(),
    };
    match clamp_range(start, end, v.len() as i64) {
        Some((s, e)) => bulk(&v[s..=e]),
        None => Reply::Bulk(Bytes::new()),
    }
}

pub fn setrange(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let offset = match int_arg(&a[2]) {
        Ok(n) if n < 0 => return Reply::error("ERR offset is out of range"),
        Ok(n) => n as usize,
        Err(e) => return e,
    };
    let value = &a[3];
    if value.is_empty() {
        // Nothing to write: the length, and no key created.
        return match ctx.db.get_str(&a[1]) {
            Ok(v) => Reply::Int(v.map_or(0, <[u8]>::len) as i64),
            Err(e) => e.into(),
        };
    }
    if offset.saturating_add(value.len()) > MAX_STRING {
        // The type error goes first, as in Redis.
        if let Err(e) = ctx.db.get_str(&a[1]) {
            return e.into();
        }
        return too_big();
    }
    let r = edit_string(
        &mut ctx.db,
        &a[1],
        |cur| Ok(cur.max(offset + value.len())),
        |v| v[offset..offset + value.len()].copy_from_slice(value),
    );
    match r {
        Ok(n) => Reply::Int(n as i64),
        Err(e) => e,
    }
}

/// INCR, DECR, INCRBY, DECRBY: the TTL is kept, as in Redis.
pub fn incrby(ctx: &mut Ctx, a: &[Bytes], by: i64) -> Reply {
    let key = &a[1];
    let (cur, deadline) = match ctx.db.get(key) {
        None => (0, None),
        Some(e) => match e.str() {
            Some(v) => match parse_i64(v) {
                Some(n) => (n, e.deadline()),
                None => return not_integer(),
            },
            None => return WrongType.into(),
        },
    };
    let Some(n) = cur.checked_add(by) else {
        return Reply::error("ERR increment or decrement would overflow");
    };
    let mut buf = itoa::Buffer::new();
    ctx.db.set_str(key, buf.format(n).as_bytes(), deadline);
    Reply::Int(n)
}

pub fn incrbyfloat(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let key = &a[1];
    let (text, deadline) = {
        let (cur, deadline) = match ctx.db.get(key) {
            None => (None, None),
            Some(e) => match e.str() {
                Some(v) => (Some(v), e.deadline()),
                None => return WrongType.into(),
            },
        };
        let text = match incr_float(cur, &a[2], false) {
            Ok(t) => t,
            Err(IncrFloatError::Overflow) => {
                return Reply::error("ERR increment would produce NaN or Infinity")
            }
            Err(_) => return Reply::error(NOT_FLOAT),
        };
        (text, deadline)
    };
    ctx.db.set_str(key, text.as_bytes(), deadline);
    if let Some(e) = ctx.db.get_mut(key) {
        e.mark_plain();
    }
    // The result, not the increment: a replica's float arithmetic must not drift.
    ctx.db.propagate_as(vec![
        Bytes::from_static(b"SET"),
        key.clone(),
        Bytes::from(text.clone()),
        Bytes::from_static(b"KEEPTTL"),
    ]);
    Reply::Bulk(Bytes::from(text))
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN].
pub fn lcs(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (mut len_only, mut idx, mut with_len, mut min_len) = (false, false, false, 0usize);
    let mut i = 3;
    while i < a.len() {
        if is(&a[i], "len") {
            len_only = true;
        } else if is(&a[i], "idx") {
            idx = true;
        } else if is(&a[i], "withmatchlen") {
            with_len = true;
        } else if is(&a[i], "minmatchlen") && i + 1 < a.len() {
            match int_arg(&a[i + 1]) {
                Ok(n) => min_len = n.max(0) as usize,
                Err(e) => return e,
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    if len_only && idx {
        return Reply::error("ERR If you want both the length and indexes, please just use IDX.");
    }
    let fetch = |db: &mut Db, k: &[u8]| -> Result<Vec<u8>, Reply> {
        match db.get(k) {
            None => Ok(Vec::new()),
            Some(e) => e
                .str()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| Reply::error("ERR The specified keys must contain string values")),
        }
    };
    let (x, y) = match (fetch(&mut ctx.db, &a[1]), fetch(&mut ctx.db, &a[2])) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    super::lcs::reply(&x, &y, len_only, idx, with_len, min_len)
}
