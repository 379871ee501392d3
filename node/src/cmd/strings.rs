//! String commands.

use bytes::{Bytes, BytesMut};
use ringcache_protocol::num::{incr_float, parse_i64, IncrFloatError};
use ringcache_protocol::Reply;

use super::args::{arity_error, int_arg, is, not_integer, syntax_error, wrongtype, NOT_FLOAT};
use super::ctx::Ctx;
use crate::store::{now_ms, Entry, Store, Value};

/// Redis's `proto-max-bulk-len` bound on a string built by APPEND / SETRANGE.
const MAX_STRING: usize = 512 * 1024 * 1024;

fn too_big() -> Reply {
    Reply::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

fn invalid_expire(cmd: &str) -> Reply {
    Reply::Error(format!("ERR invalid expire time in '{cmd}' command"))
}

/// Reads a string value: Ok(None) if missing, Err(WRONGTYPE) if another type.
fn get_str(store: &Store, key: &[u8]) -> Result<Option<(Bytes, Entry)>, Reply> {
    match store.get(key) {
        None => Ok(None),
        Some(e) => match &e.value {
            Value::Str(b) => Ok(Some((b.clone(), e))),
            _ => Err(wrongtype()),
        },
    }
}

pub fn get(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match ctx.store().lookup(&a[1]) {
        None => Reply::Nil,
        Some(Entry {
            value: Value::Str(b),
            ..
        }) => Reply::Bulk(b),
        Some(_) => wrongtype(),
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
fn parse_expire(a: &[Bytes], i: usize, cmd: &str) -> Result<i64, Reply> {
    let unit = &a[i];
    let Some(v) = a.get(i + 1) else {
        return Err(syntax_error());
    };
    let n = int_arg(v)?;
    if n <= 0 {
        return Err(invalid_expire(cmd));
    }
    let now = now_ms();
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
            match parse_expire(a, i, "set") {
                Ok(at) => expire = ExpireOpt::At(at),
                Err(e) => return e,
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let store = ctx.store();
    let key = &a[1];
    let _g = store.lock_key(key);
    if !(nx || xx || get || expire == ExpireOpt::KeepTtl) {
        // Plain SET [EX..]: nothing depends on the old value, so skip reading it.
        let expire_at = match expire {
            ExpireOpt::At(t) => Some(t),
            _ => None,
        };
        store.put_str(key, &a[2], expire_at);
        crate::replication::propagate_value(ctx.shared, key, &a[2], expire_at);
        return Reply::OK;
    }
    let old = store.get(key);
    let old_str = match &old {
        Some(Entry {
            value: Value::Str(b),
            ..
        }) => Some(b.clone()),
        Some(_) if get => return wrongtype(),
        _ => None,
    };
    let exists = old.is_some();
    if (nx && exists) || (xx && !exists) {
        return if get { opt_bulk(old_str) } else { Reply::Nil };
    }
    let expire_at = match expire {
        ExpireOpt::At(t) => Some(t),
        ExpireOpt::KeepTtl => old.as_ref().and_then(|e| e.expire_at),
        _ => None,
    };
    store.put_str(key, &a[2], expire_at);
    crate::replication::propagate_value(ctx.shared, key, &a[2], expire_at);
    if get {
        opt_bulk(old_str)
    } else {
        Reply::OK
    }
}

fn opt_bulk(b: Option<Bytes>) -> Reply {
    b.map(Reply::Bulk).unwrap_or(Reply::Nil)
}

pub fn setnx(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    if store.contains(&a[1]) {
        return Reply::Int(0);
    }
    store.put_str(&a[1], &a[2], None);
    crate::replication::propagate(ctx.shared, a);
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
    let Some(at) = n.checked_mul(unit).and_then(|ms| ms.checked_add(now_ms())) else {
        return invalid_expire(cmd);
    };
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    store.put_str(&a[1], &a[3], Some(at));
    crate::replication::propagate_value(ctx.shared, &a[1], &a[3], Some(at));
    Reply::OK
}

pub fn getex(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut expire = ExpireOpt::None;
    let mut i = 2;
    while i < a.len() {
        let o = &a[i];
        if (is(o, "ex") || is(o, "px") || is(o, "exat") || is(o, "pxat"))
            && expire == ExpireOpt::None
            && i + 1 < a.len()
        {
            match parse_expire(a, i, "getex") {
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
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let (val, mut entry) = match get_str(store, &a[1]) {
        Ok(Some(v)) => v,
        Ok(None) => {
            store
                .stats
                .misses
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Reply::Nil;
        }
        Err(e) => return e,
    };
    store
        .stats
        .hits
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match expire {
        ExpireOpt::At(t) => {
            entry.expire_at = Some(t);
            store.put(a[1].clone(), entry);
            crate::replication::propagate_expire(ctx.shared, &a[1], Some(t));
        }
        ExpireOpt::Persist if entry.expire_at.is_some() => {
            entry.expire_at = None;
            store.put(a[1].clone(), entry);
            crate::replication::propagate_expire(ctx.shared, &a[1], None);
        }
        _ => {}
    }
    Reply::Bulk(val)
}

pub fn getdel(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    match get_str(store, &a[1]) {
        Ok(Some((v, _))) => {
            store.remove(&a[1]);
            crate::replication::propagate_del(ctx.shared, &a[1]);
            Reply::Bulk(v)
        }
        Ok(None) => Reply::Nil,
        Err(e) => e,
    }
}

pub fn getset(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let old = match get_str(store, &a[1]) {
        Ok(o) => o.map(|(v, _)| v),
        Err(e) => return e,
    };
    store.put_str(&a[1], &a[2], None);
    crate::replication::propagate_value(ctx.shared, &a[1], &a[2], None);
    opt_bulk(old)
}

pub fn mget(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    Reply::Array(
        a[1..]
            .iter()
            .map(|k| match store.lookup(k) {
                Some(Entry {
                    value: Value::Str(b),
                    ..
                }) => Reply::Bulk(b),
                _ => Reply::Nil,
            })
            .collect(),
    )
}

/// MSET and MSETNX (all-or-nothing when `nx`).
pub fn mset(ctx: &mut Ctx, a: &[Bytes], nx: bool) -> Reply {
    if a.len().is_multiple_of(2) {
        return arity_error(if nx { "msetnx" } else { "mset" });
    }
    let store = ctx.store();
    let _g = store.lock_keys(a[1..].iter().step_by(2));
    if nx && a[1..].iter().step_by(2).any(|k| store.contains(k)) {
        return Reply::Int(0);
    }
    for pair in a[1..].chunks(2) {
        store.put_str(&pair[0], &pair[1], None);
    }
    // Replicas get MSET even for MSETNX: replaying it is harmless, see replication.rs.
    let mut cmd = a.to_vec();
    cmd[0] = Bytes::from_static(b"MSET");
    crate::replication::propagate(ctx.shared, &cmd);
    if nx {
        Reply::Int(1)
    } else {
        Reply::OK
    }
}

pub fn append(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let (old, expire_at) = match get_str(store, &a[1]) {
        Ok(Some((v, e))) => (v, e.expire_at),
        Ok(None) => (Bytes::new(), None),
        Err(e) => return e,
    };
    if old.len() + a[2].len() > MAX_STRING {
        return too_big();
    }
    let mut v = BytesMut::with_capacity(old.len() + a[2].len());
    v.extend_from_slice(&old);
    v.extend_from_slice(&a[2]);
    let len = v.len();
    let v = v.freeze();
    crate::replication::propagate_value(ctx.shared, &a[1], &v, expire_at);
    store.put(
        Bytes::copy_from_slice(&a[1]),
        Entry {
            value: Value::Str(v),
            expire_at,
        },
    );
    Reply::Int(len as i64)
}

pub fn strlen(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match get_str(ctx.store(), &a[1]) {
        Ok(Some((v, _))) => Reply::Int(v.len() as i64),
        Ok(None) => Reply::Int(0),
        Err(e) => e,
    }
}

pub fn getrange(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (Ok(mut start), Ok(mut end)) = (int_arg(&a[2]), int_arg(&a[3])) else {
        return not_integer();
    };
    let v = match get_str(ctx.store(), &a[1]) {
        Ok(Some((v, _))) => v,
        Ok(None) => return Reply::Bulk(Bytes::new()),
        Err(e) => return e,
    };
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Reply::Bulk(Bytes::new());
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
        return Reply::Bulk(Bytes::new());
    }
    Reply::Bulk(v.slice(start as usize..=end as usize))
}

pub fn setrange(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let offset = match int_arg(&a[2]) {
        Ok(n) if n < 0 => return Reply::error("ERR offset is out of range"),
        Ok(n) => n as usize,
        Err(e) => return e,
    };
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let (old, expire_at) = match get_str(store, &a[1]) {
        Ok(Some((v, e))) => (v, e.expire_at),
        Ok(None) => (Bytes::new(), None),
        Err(e) => return e,
    };
    let value = &a[3];
    if value.is_empty() {
        return Reply::Int(old.len() as i64);
    }
    if offset.saturating_add(value.len()) > MAX_STRING {
        return too_big();
    }
    let mut v = BytesMut::from(&old[..]);
    if v.len() < offset + value.len() {
        v.resize(offset + value.len(), 0);
    }
    v[offset..offset + value.len()].copy_from_slice(value);
    let len = v.len();
    let v = v.freeze();
    crate::replication::propagate_value(ctx.shared, &a[1], &v, expire_at);
    store.put(
        Bytes::copy_from_slice(&a[1]),
        Entry {
            value: Value::Str(v),
            expire_at,
        },
    );
    Reply::Int(len as i64)
}

/// INCR, DECR, INCRBY, DECRBY: the TTL is kept, as in Redis.
pub fn incrby(ctx: &mut Ctx, key: &Bytes, by: i64) -> Reply {
    let store = ctx.store();
    let _g = store.lock_key(key);
    let (cur, expire_at) = match get_str(store, key) {
        Ok(Some((v, e))) => match parse_i64(&v) {
            Some(n) => (n, e.expire_at),
            None => return not_integer(),
        },
        Ok(None) => (0, None),
        Err(e) => return e,
    };
    let Some(n) = cur.checked_add(by) else {
        return Reply::error("ERR increment or decrement would overflow");
    };
    let mut buf = itoa::Buffer::new();
    let text = buf.format(n);
    store.put_str(key, text.as_bytes(), expire_at);
    crate::replication::propagate_value(ctx.shared, key, text.as_bytes(), expire_at);
    Reply::Int(n)
}

pub fn incrbyfloat(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let (cur, expire_at) = match get_str(store, &a[1]) {
        Ok(Some((v, e))) => (Some(v), e.expire_at),
        Ok(None) => (None, None),
        Err(e) => return e,
    };
    let text = match incr_float(cur.as_deref(), &a[2], false) {
        Ok(t) => t,
        Err(IncrFloatError::Overflow) => {
            return Reply::error("ERR increment would produce NaN or Infinity")
        }
        Err(_) => return Reply::error(NOT_FLOAT),
    };
    store.put_str(&a[1], text.as_bytes(), expire_at);
    crate::replication::propagate_value(ctx.shared, &a[1], text.as_bytes(), expire_at);
    Reply::Bulk(Bytes::from(text))
}
