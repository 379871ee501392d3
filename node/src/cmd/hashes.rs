//! Hash commands. A hash is mutated in place under its key's stripe lock, then re-inserted so the
//! cache re-weighs it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::seq::SliceRandom;
use rand::Rng;
use ringcache_protocol::num::{incr_float, parse_i64, IncrFloatError};
use ringcache_protocol::{Protocol, Reply};

use super::args::{arity_error, int_arg, is, syntax_error, wrongtype, NOT_FLOAT};
use super::ctx::Ctx;
use super::keys::{parse_cursor, scan_opts};
use crate::store::{lock, Entry, HashValue, Store, Value};
use ringcache_protocol::glob;

type Shared = Arc<Mutex<HashValue>>;

/// Most elements HRANDFIELD with a negative count returns.
const MAX_RANDOM_REPLY: u64 = 1 << 24;

/// The hash at `key`: Ok(None) if missing, Err(WRONGTYPE) for another type.
fn get_hash(store: &Store, key: &[u8]) -> Result<Option<(Shared, Entry)>, Reply> {
    match store.get(key) {
        None => Ok(None),
        Some(e) => match &e.value {
            Value::Hash(h) => Ok(Some((h.clone(), e))),
            _ => Err(wrongtype()),
        },
    }
}

/// The hash at `key`, created empty if missing (caller holds the stripe lock).
fn get_or_create(store: &Store, key: &[u8]) -> Result<(Shared, Entry), Reply> {
    match get_hash(store, key)? {
        Some(v) => Ok(v),
        None => {
            let e = Entry::new(Value::new_hash(HashValue::default()));
            match &e.value {
                Value::Hash(h) => Ok((h.clone(), e)),
                Value::Str(_) => Err(wrongtype()),
            }
        }
    }
}

fn copy(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// HSET (reply: fields added) and HMSET (reply: OK).
pub fn hset(ctx: &mut Ctx, a: &[Bytes], hmset: bool) -> Reply {
    if !a.len().is_multiple_of(2) {
        return arity_error(if hmset { "hmset" } else { "hset" });
    }
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let (h, entry) = match get_or_create(store, &a[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let added = {
        let mut h = lock(&h);
        a[2..]
            .chunks(2)
            .filter(|p| h.set(copy(&p[0]), copy(&p[1])))
            .count()
    };
    store.put(copy(&a[1]), entry);
    crate::replication::propagate(ctx.shared, a);
    if hmset {
        Reply::OK
    } else {
        Reply::Int(added as i64)
    }
}

pub fn hsetnx(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let (h, entry) = match get_or_create(store, &a[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    {
        let mut h = lock(&h);
        if h.get(&a[2]).is_some() {
            return Reply::Int(0);
        }
        h.set(copy(&a[2]), copy(&a[3]));
    }
    store.put(copy(&a[1]), entry);
    crate::replication::propagate(ctx.shared, a);
    Reply::Int(1)
}

pub fn hget(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match get_hash(ctx.store(), &a[1]) {
        Ok(Some((h, _))) => lock(&h)
            .get(&a[2])
            .cloned()
            .map(Reply::Bulk)
            .unwrap_or(Reply::Nil),
        Ok(None) => Reply::Nil,
        Err(e) => e,
    }
}

pub fn hmget(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match get_hash(ctx.store(), &a[1]) {
        Ok(Some((h, _))) => {
            let h = lock(&h);
            Reply::Array(
                a[2..]
                    .iter()
                    .map(|f| h.get(f).cloned().map(Reply::Bulk).unwrap_or(Reply::Nil))
                    .collect(),
            )
        }
        Ok(None) => Reply::Array(a[2..].iter().map(|_| Reply::Nil).collect()),
        Err(e) => e,
    }
}

pub fn hdel(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let (h, entry) = match get_hash(store, &a[1]) {
        Ok(Some(v)) => v,
        Ok(None) => return Reply::Int(0),
        Err(e) => return e,
    };
    let (removed, empty) = {
        let mut h = lock(&h);
        let n = a[2..].iter().filter(|f| h.remove(f)).count();
        (n, h.is_empty())
    };
    if removed > 0 {
        if empty {
            store.remove(&a[1]);
        } else {
            store.put(copy(&a[1]), entry);
        }
        crate::replication::propagate(ctx.shared, a);
    }
    Reply::Int(removed as i64)
}

pub fn hexists(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match get_hash(ctx.store(), &a[1]) {
        Ok(Some((h, _))) => Reply::Int(i64::from(lock(&h).get(&a[2]).is_some())),
        Ok(None) => Reply::Int(0),
        Err(e) => e,
    }
}

pub fn hlen(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match get_hash(ctx.store(), &a[1]) {
        Ok(Some((h, _))) => Reply::Int(lock(&h).len() as i64),
        Ok(None) => Reply::Int(0),
        Err(e) => e,
    }
}

pub fn hstrlen(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match get_hash(ctx.store(), &a[1]) {
        Ok(Some((h, _))) => Reply::Int(lock(&h).get(&a[2]).map(|v| v.len()).unwrap_or(0) as i64),
        Ok(None) => Reply::Int(0),
        Err(e) => e,
    }
}

/// HKEYS, HVALS and HGETALL (a map in RESP3).
pub fn hgetall(ctx: &mut Ctx, a: &[Bytes], fields: bool, values: bool) -> Reply {
    let h = match get_hash(ctx.store(), &a[1]) {
        Ok(Some((h, _))) => h,
        Ok(None) if fields && values => return Reply::Map(Vec::new()),
        Ok(None) => return Reply::Array(Vec::new()),
        Err(e) => return e,
    };
    let h = lock(&h);
    if fields && values {
        Reply::Map(
            h.iter()
                .map(|(f, v)| (Reply::Bulk(f.clone()), Reply::Bulk(v.clone())))
                .collect(),
        )
    } else {
        Reply::Array(
            h.iter()
                .map(|(f, v)| Reply::Bulk(if fields { f.clone() } else { v.clone() }))
                .collect(),
        )
    }
}

pub fn hincrby(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let by = match int_arg(&a[3]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let (h, entry) = match get_or_create(store, &a[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let n = {
        let mut h = lock(&h);
        let cur = match h.get(&a[2]) {
            Some(v) => match parse_i64(v) {
                Some(n) => n,
                None => return Reply::error("ERR hash value is not an integer"),
            },
            None => 0,
        };
        let Some(n) = cur.checked_add(by) else {
            return Reply::error("ERR increment or decrement would overflow");
        };
        h.set(copy(&a[2]), Bytes::from(n.to_string()));
        n
    };
    store.put(copy(&a[1]), entry);
    // Replicas get the result, so a replayed write cannot count twice.
    crate::replication::propagate(
        ctx.shared,
        &[
            Bytes::from_static(b"HSET"),
            a[1].clone(),
            a[2].clone(),
            Bytes::from(n.to_string()),
        ],
    );
    Reply::Int(n)
}

pub fn hincrbyfloat(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    // The increment is checked before the key, as Redis does (its errors come first).
    if let Err(e) = incr_float(None, &a[3], true) {
        return incr_float_error(e);
    }
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let (h, entry) = match get_or_create(store, &a[1]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let text = {
        let mut h = lock(&h);
        let text = match incr_float(h.get(&a[2]).map(|v| &v[..]), &a[3], true) {
            Ok(t) => Bytes::from(t),
            Err(e) => return incr_float_error(e),
        };
        h.set(copy(&a[2]), text.clone());
        text
    };
    store.put(copy(&a[1]), entry);
    // Replicas get the result, not the increment, so float rounding cannot diverge.
    crate::replication::propagate(
        ctx.shared,
        &[
            Bytes::from_static(b"HSET"),
            a[1].clone(),
            a[2].clone(),
            text.clone(),
        ],
    );
    Reply::Bulk(text)
}

pub fn hrandfield(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let with_values = match a.len() {
        2 | 3 => false,
        4 if is(&a[3], "withvalues") => true,
        _ => return syntax_error(),
    };
    let count = match a.get(2) {
        Some(c) => match int_arg(c) {
            Ok(i64::MIN) => {
                return Reply::error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
            }
            Ok(n) => Some(n),
            Err(e) => return e,
        },
        None => None,
    };
    let h = match get_hash(ctx.store(), &a[1]) {
        Ok(Some((h, _))) => h,
        Ok(None) => {
            return if count.is_some() {
                Reply::Array(Vec::new())
            } else {
                Reply::Nil
            }
        }
        Err(e) => return e,
    };
    let h = lock(&h);
    let pairs: Vec<(&Bytes, &Bytes)> = h.iter().collect();
    let mut rng = rand::thread_rng();
    let Some(count) = count else {
        return match pairs.choose(&mut rng) {
            Some((f, _)) => Reply::Bulk((*f).clone()),
            None => Reply::Nil,
        };
    };
    let picked: Vec<(&Bytes, &Bytes)> = if count >= 0 {
        let n = (count as usize).min(pairs.len());
        pairs.choose_multiple(&mut rng, n).copied().collect()
    } else {
        // Repeats allowed: the reply size is the client's choice, so bound it rather than allocate
        // whatever was asked for.
        if count.unsigned_abs() > MAX_RANDOM_REPLY || pairs.is_empty() {
            return Reply::error("ERR count is too large: at most 16777216 elements per reply");
        }
        (0..count.unsigned_abs())
            .map(|_| pairs[rng.gen_range(0..pairs.len())])
            .collect()
    };
    let proto = ctx.session.proto;
    let mut out = Vec::with_capacity(picked.len() * 2);
    for (f, v) in picked {
        if with_values && proto == Protocol::Resp3 {
            out.push(Reply::Array(vec![
                Reply::Bulk(f.clone()),
                Reply::Bulk(v.clone()),
            ]));
        } else {
            out.push(Reply::Bulk(f.clone()));
            if with_values {
                out.push(Reply::Bulk(v.clone()));
            }
        }
    }
    Reply::Array(out)
}

/// HSCAN returns the whole hash in one step (cursor 0), which meets SCAN's guarantees.
pub fn hscan(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if let Err(e) = parse_cursor(&a[2]) {
        return e;
    }
    let opts = match scan_opts(a, 3, false) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut out = Vec::new();
    match get_hash(ctx.store(), &a[1]) {
        Ok(Some((h, _))) => {
            for (f, v) in lock(&h).iter() {
                if let Some(p) = &opts.pattern {
                    if !glob::matches(p, f, false) {
                        continue;
                    }
                }
                out.push(Reply::Bulk(f.clone()));
                if !opts.novalues {
                    out.push(Reply::Bulk(v.clone()));
                }
            }
        }
        Ok(None) => {}
        Err(e) => return e,
    }
    Reply::Array(vec![
        Reply::Bulk(Bytes::from_static(b"0")),
        Reply::Array(out),
    ])
}

/// HINCRBYFLOAT's error texts (Redis 7).
fn incr_float_error(e: IncrFloatError) -> Reply {
    Reply::error(match e {
        IncrFloatError::BadIncrement => NOT_FLOAT,
        IncrFloatError::InfiniteIncrement => "ERR value is NaN or Infinity",
        IncrFloatError::BadCurrent => "ERR hash value is not a float",
        IncrFloatError::Overflow => "ERR increment would produce NaN or Infinity",
    })
}
