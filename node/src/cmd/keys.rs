//! Keyspace commands.

use bytes::Bytes;
use rand::Rng;
use ringcache_protocol::hash::BUCKETS;
use ringcache_protocol::Reply;

use super::args::{int_arg, is, syntax_error};
use super::ctx::Ctx;
use crate::store::{now_ms, Entry};
use ringcache_protocol::glob;

/// DEL and UNLINK.
pub fn del(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    let _g = store.lock_keys(&a[1..]);
    let mut n = 0;
    for k in &a[1..] {
        if store.remove(k) {
            n += 1;
            crate::replication::propagate_del(ctx.shared, k);
        }
    }
    Reply::Int(n)
}

/// EXISTS and TOUCH (each argument counts, duplicates included).
pub fn exists(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    Reply::Int(a[1..].iter().filter(|k| store.contains(k)).count() as i64)
}

pub fn type_(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match ctx.store().get(&a[1]) {
        Some(e) => Reply::Status(e.value.type_name()),
        None => Reply::Status("none"),
    }
}

/// EXPIRE, PEXPIRE (relative) and EXPIREAT, PEXPIREAT (absolute), with NX/XX/GT/LT.
pub fn expire(ctx: &mut Ctx, a: &[Bytes], unit: i64, absolute: bool, cmd: &str) -> Reply {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for o in &a[3..] {
        if is(o, "nx") {
            nx = true;
        } else if is(o, "xx") {
            xx = true;
        } else if is(o, "gt") {
            gt = true;
        } else if is(o, "lt") {
            lt = true;
        } else {
            return Reply::Error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(o)
            ));
        }
    }
    if nx && (xx || gt || lt) {
        return Reply::error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return Reply::error("ERR GT and LT options at the same time are not compatible");
    }
    let when = match int_arg(&a[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let base = if absolute { 0 } else { now_ms() };
    let Some(at) = when.checked_mul(unit).and_then(|ms| ms.checked_add(base)) else {
        return Reply::Error(format!("ERR invalid expire time in '{cmd}' command"));
    };
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    let Some(mut entry) = store.get(&a[1]) else {
        return Reply::Int(0);
    };
    let cur = entry.expire_at;
    let allowed = match cur {
        None => !(xx || gt),
        Some(c) => !nx && (!gt || at > c) && (!lt || at < c),
    };
    if !allowed {
        return Reply::Int(0);
    }
    if at <= now_ms() {
        store.remove(&a[1]);
        crate::replication::propagate_del(ctx.shared, &a[1]);
    } else {
        entry.expire_at = Some(at);
        store.put(Bytes::copy_from_slice(&a[1]), entry);
        crate::replication::propagate_expire(ctx.shared, &a[1], Some(at));
    }
    Reply::Int(1)
}

/// TTL, PTTL (remaining) and EXPIRETIME, PEXPIRETIME (absolute).
pub fn ttl(ctx: &mut Ctx, a: &[Bytes], unit: i64, absolute: bool) -> Reply {
    let Some(e) = ctx.store().get(&a[1]) else {
        return Reply::Int(-2);
    };
    let Some(at) = e.expire_at else {
        return Reply::Int(-1);
    };
    if absolute {
        return Reply::Int(if unit == 1 { at } else { (at + 500) / 1000 });
    }
    let left = (at - now_ms()).max(0);
    Reply::Int(if unit == 1 { left } else { (left + 500) / 1000 })
}

pub fn persist(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    let _g = store.lock_key(&a[1]);
    match store.get(&a[1]) {
        Some(mut e) if e.expire_at.is_some() => {
            e.expire_at = None;
            store.put(Bytes::copy_from_slice(&a[1]), e);
            crate::replication::propagate_expire(ctx.shared, &a[1], None);
            Reply::Int(1)
        }
        _ => Reply::Int(0),
    }
}

/// RENAME and RENAMENX: the value moves with its deadline.
pub fn rename(ctx: &mut Ctx, a: &[Bytes], nx: bool) -> Reply {
    let store = ctx.store();
    let _g = store.lock_keys(&a[1..3]);
    let Some(entry) = store.get(&a[1]) else {
        return Reply::error("ERR no such key");
    };
    if a[1] == a[2] {
        return if nx { Reply::Int(0) } else { Reply::OK };
    }
    if nx && store.contains(&a[2]) {
        return Reply::Int(0);
    }
    store.remove(&a[1]);
    // Replicas get the resulting state (DEL src, then dst's value): replaying a RENAME after a
    // snapshot would move whatever src holds by then.
    crate::replication::propagate_del(ctx.shared, &a[1]);
    crate::replication::propagate_entry(ctx.shared, &a[2], &entry);
    store.put(Bytes::copy_from_slice(&a[2]), entry);
    if nx {
        Reply::Int(1)
    } else {
        Reply::OK
    }
}

pub fn copy(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        if is(&a[i], "replace") {
            replace = true;
        } else if is(&a[i], "db") && i + 1 < a.len() {
            match int_arg(&a[i + 1]) {
                Ok(0) => {}
                Ok(_) => return Reply::error("ERR DB index is out of range"),
                Err(e) => return e,
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    if a[1] == a[2] {
        return Reply::error("ERR source and destination objects are the same");
    }
    let store = ctx.store();
    let _g = store.lock_keys(&a[1..3]);
    let Some(entry) = store.get(&a[1]) else {
        return Reply::Int(0);
    };
    if !replace && store.contains(&a[2]) {
        return Reply::Int(0);
    }
    let copy = Entry {
        value: entry.value.deep_clone(),
        expire_at: entry.expire_at,
    };
    crate::replication::propagate_entry(ctx.shared, &a[2], &copy);
    store.put(Bytes::copy_from_slice(&a[2]), copy);
    Reply::Int(1)
}

pub fn keys(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let store = ctx.store();
    let pattern = &a[1];
    let all = &pattern[..] == b"*";
    let mut out = Vec::new();
    for b in 0..BUCKETS {
        for k in store.bucket_keys(b) {
            if all || glob::matches(pattern, &k, false) {
                out.push(Reply::Bulk(k));
            }
        }
    }
    Reply::Array(out)
}

/// Options shared by SCAN and HSCAN.
pub struct ScanOpts {
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub type_: Option<Bytes>,
    pub novalues: bool,
}

/// Parses `[MATCH p] [COUNT n] [TYPE t]` from `a[from..]`.
pub fn scan_opts(a: &[Bytes], from: usize, allow_type: bool) -> Result<ScanOpts, Reply> {
    let mut o = ScanOpts {
        pattern: None,
        count: 10,
        type_: None,
        novalues: false,
    };
    let mut i = from;
    while i < a.len() {
        let has_arg = i + 1 < a.len();
        if is(&a[i], "count") && has_arg {
            let n = int_arg(&a[i + 1])?;
            if n < 1 {
                return Err(syntax_error());
            }
            o.count = n as usize;
            i += 2;
        } else if is(&a[i], "match") && has_arg {
            o.pattern = Some(a[i + 1].clone());
            i += 2;
        } else if allow_type && is(&a[i], "type") && has_arg {
            o.type_ = Some(a[i + 1].clone());
            i += 2;
        } else {
            return Err(syntax_error());
        }
    }
    Ok(o)
}

/// Parses a SCAN cursor (an unsigned 64-bit number).
pub fn parse_cursor(c: &[u8]) -> Result<u64, Reply> {
    std::str::from_utf8(c)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|_| !c.is_empty() && c[0].is_ascii_digit())
        .ok_or_else(|| Reply::error("ERR invalid cursor"))
}

/// SCAN walks the hash-bucket index in order: the cursor is the next bucket, so every key present
/// for the whole iteration is returned at least once, as Redis guarantees.
pub fn scan(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let cursor = match parse_cursor(&a[1]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let opts = match scan_opts(a, 2, true) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let store = ctx.store();
    let mut bucket = cursor as usize;
    let mut visited = 0;
    let mut out = Vec::new();
    while bucket < BUCKETS && visited < opts.count {
        for k in store.bucket_keys(bucket) {
            visited += 1;
            if let Some(p) = &opts.pattern {
                if !glob::matches(p, &k, false) {
                    continue;
                }
            }
            if let Some(t) = &opts.type_ {
                match store.get(&k) {
                    Some(e) if t.eq_ignore_ascii_case(e.value.type_name().as_bytes()) => {}
                    _ => continue,
                }
            }
            out.push(Reply::Bulk(k));
        }
        bucket += 1;
    }
    let next = if bucket >= BUCKETS { 0 } else { bucket };
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(next.to_string())),
        Reply::Array(out),
    ])
}

pub fn randomkey(ctx: &mut Ctx) -> Reply {
    let store = ctx.store();
    let mut rng = rand::thread_rng();
    // Random probes first; then a walk from a random bucket so a sparse keyspace still answers.
    for _ in 0..64 {
        let keys = store.bucket_keys(rng.gen_range(0..BUCKETS));
        if !keys.is_empty() {
            return Reply::Bulk(keys[rng.gen_range(0..keys.len())].clone());
        }
    }
    let start = rng.gen_range(0..BUCKETS);
    for i in 0..BUCKETS {
        let keys = store.bucket_keys((start + i) % BUCKETS);
        if !keys.is_empty() {
            return Reply::Bulk(keys[rng.gen_range(0..keys.len())].clone());
        }
    }
    Reply::Nil
}

/// FLUSHDB and FLUSHALL, `[ASYNC|SYNC]`.
pub fn flush(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if a.len() > 2 || (a.len() == 2 && !is(&a[1], "async") && !is(&a[1], "sync")) {
        return syntax_error();
    }
    let shared = ctx.shared;
    shared
        .store
        .clear_then(|| crate::replication::propagate(shared, &a[..1]));
    Reply::OK
}
