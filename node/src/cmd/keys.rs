//! Keyspace commands: DEL, EXISTS, TYPE, expiry, RENAME, COPY, KEYS, SCAN, RANDOMKEY, FLUSH*,
//! OBJECT, DUMP, RESTORE. Every type goes everywhere a key goes.

use bytes::Bytes;
use rand::Rng;
use ringcache_protocol::glob;
use ringcache_protocol::hash::BUCKETS;
use ringcache_protocol::Reply;

use super::args::{int_arg, is, syntax_error, unknown_subcommand};
use super::ctx::Ctx;
use crate::dump;
use crate::keyspace::{Entry, ValueRef};

/// DEL and UNLINK.
pub fn del(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let n = a[1..].iter().filter(|k| ctx.db.remove(k).is_some()).count();
    Reply::Int(n as i64)
}

/// EXISTS (each argument counts, duplicates included).
pub fn exists(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let n = a[1..].iter().filter(|k| ctx.db.exists(k)).count();
    Reply::Int(n as i64)
}

/// TOUCH: like EXISTS, marking each key accessed.
pub fn touch(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let n = a[1..].iter().filter(|k| ctx.db.get(k).is_some()).count();
    Reply::Int(n as i64)
}

pub fn type_(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match ctx.db.peek(&a[1]) {
        Some(e) => Reply::Status(e.value().type_name()),
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
    let now = ctx.db.now;
    let base = if absolute { 0 } else { now };
    let Some(at) = when.checked_mul(unit).and_then(|ms| ms.checked_add(base)) else {
        return Reply::Error(format!("ERR invalid expire time in '{cmd}' command"));
    };
    let Some(cur) = ctx.db.get(&a[1]).map(Entry::deadline) else {
        return Reply::Int(0);
    };
    // GT and LT compare with "no deadline" as infinite (Redis 7's rule).
    let allowed = match cur {
        None => !(xx || gt),
        Some(c) => !nx && (!gt || at > c) && (!lt || at < c),
    };
    if !allowed {
        return Reply::Int(0);
    }
    let key = a[1].clone();
    if at <= now && !ctx.session.from_primary {
        ctx.db.remove(&key);
        ctx.db.propagate_as(vec![Bytes::from_static(b"DEL"), key]);
    } else {
        ctx.db.set_deadline(&key, Some(at));
        ctx.db.propagate_as(vec![
            Bytes::from_static(b"PEXPIREAT"),
            key,
            Bytes::from(at.to_string()),
        ]);
    }
    Reply::Int(1)
}

/// TTL, PTTL (remaining) and EXPIRETIME, PEXPIRETIME (absolute).
pub fn ttl(ctx: &mut Ctx, a: &[Bytes], unit: i64, absolute: bool) -> Reply {
    let now = ctx.db.now;
    let Some(e) = ctx.db.peek(&a[1]) else {
        return Reply::Int(-2);
    };
    let Some(at) = e.deadline() else {
        return Reply::Int(-1);
    };
    if absolute {
        return Reply::Int(if unit == 1 { at } else { (at + 500) / 1000 });
    }
    let left = (at - now).max(0);
    Reply::Int(if unit == 1 { left } else { (left + 500) / 1000 })
}

pub fn persist(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let has = ctx.db.get(&a[1]).is_some_and(|e| e.deadline().is_some());
    if !has {
        return Reply::Int(0);
    }
    ctx.db.set_deadline(&a[1], None);
    Reply::Int(1)
}

/// RENAME and RENAMENX: the value moves with its deadline.
pub fn rename(ctx: &mut Ctx, a: &[Bytes], nx: bool) -> Reply {
    if !ctx.db.exists(&a[1]) {
        return Reply::error("ERR no such key");
    }
    if a[1] == a[2] {
        return if nx { Reply::Int(0) } else { Reply::OK };
    }
    if nx && ctx.db.exists(&a[2]) {
        return Reply::Int(0);
    }
    if let Some(e) = ctx.db.remove(&a[1]) {
        ctx.db.insert(e.rekey(&a[2]));
    }
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
    let Some(copy) = ctx
        .db
        .get(&a[1])
        .map(|e| e.with_key(&a[2], e.obj().cloned()))
    else {
        return Reply::Int(0);
    };
    if !replace && ctx.db.exists(&a[2]) {
        return Reply::Int(0);
    }
    ctx.db.insert(copy);
    Reply::Int(1)
}

/// Visits every live key (KEYS, and SCAN bucket by bucket).
fn bucket_keys(
    ctx: &mut Ctx,
    b: usize,
    mut keep: impl FnMut(&Entry) -> bool,
    out: &mut Vec<Reply>,
) {
    let hide = ctx.db.expiry != crate::keyspace::Expiry::Keep;
    ctx.db.with_bucket(b, |bucket, now| {
        for e in bucket.iter() {
            if (hide && e.is_expired(now)) || !keep(e) {
                continue;
            }
            out.push(Reply::Bulk(Bytes::copy_from_slice(e.key())));
        }
    });
}

pub fn keys(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let pattern = &a[1];
    let all = &pattern[..] == b"*";
    let mut out = Vec::new();
    for b in 0..BUCKETS {
        bucket_keys(
            ctx,
            b,
            |e| all || glob::matches(pattern, e.key(), false),
            &mut out,
        );
    }
    Reply::Array(out)
}

/// Options shared by SCAN and the per-type scans (HSCAN, SSCAN, ZSCAN).
pub struct ScanOpts {
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub type_: Option<Bytes>,
    pub novalues: bool,
}

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

impl ScanOpts {
    /// Whether `item` passes MATCH.
    pub fn matches(&self, item: &[u8]) -> bool {
        self.pattern
            .as_ref()
            .is_none_or(|p| glob::matches(p, item, false))
    }
}

/// Parses a SCAN cursor (an unsigned 64-bit number).
/// A member scan's cursor (`a[2]`) and options (from `a[3]`): HSCAN and ZSCAN, which check both
/// before the key. (SSCAN reads its options only once the key holds a set, as Redis does.)
pub fn member_scan_args(a: &[Bytes]) -> Result<(u64, ScanOpts), Reply> {
    Ok((parse_cursor(&a[2])?, scan_opts(a, 3, false)?))
}

pub fn parse_cursor(c: &[u8]) -> Result<u64, Reply> {
    std::str::from_utf8(c)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|_| !c.is_empty() && c[0].is_ascii_digit())
        .ok_or_else(|| Reply::error("ERR invalid cursor"))
}

/// The `[cursor, [items...]]` reply of every SCAN.
pub fn scan_reply(next: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(next.to_string())),
        Reply::Array(items),
    ])
}

/// SCAN walks the buckets in order: the cursor is the next bucket, so every key present for the
/// whole iteration is returned at least once, as Redis guarantees.
pub fn scan(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let cursor = match parse_cursor(&a[1]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let opts = match scan_opts(a, 2, true) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut bucket = cursor as usize;
    let mut out = Vec::new();
    while bucket < BUCKETS && out.len() < opts.count {
        bucket_keys(
            ctx,
            bucket,
            |e| {
                opts.matches(e.key())
                    && opts
                        .type_
                        .as_ref()
                        .is_none_or(|t| t.eq_ignore_ascii_case(e.value().type_name().as_bytes()))
            },
            &mut out,
        );
        bucket += 1;
    }
    let next = if bucket >= BUCKETS { 0 } else { bucket as u64 };
    scan_reply(next, out)
}

pub fn randomkey(ctx: &mut Ctx) -> Reply {
    if ctx.db.keyspace().is_empty() {
        return Reply::Nil;
    }
    let mut rng = rand::thread_rng();
    // Random probes first; then a walk from a random bucket so a sparse keyspace still answers.
    let start = rng.gen_range(0..BUCKETS);
    for probe in (0..64)
        .map(|_| rng.gen_range(0..BUCKETS))
        .chain((0..BUCKETS).map(|i| (start + i) % BUCKETS))
    {
        let mut keys = Vec::new();
        bucket_keys(ctx, probe, |_| true, &mut keys);
        if !keys.is_empty() {
            let i = rng.gen_range(0..keys.len());
            return keys.swap_remove(i);
        }
    }
    Reply::Nil
}

/// FLUSHDB and FLUSHALL [ASYNC|SYNC]: every key goes (the view holds every bucket).
pub fn flush(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if a.len() > 2 || (a.len() == 2 && !is(&a[1], "async") && !is(&a[1], "sync")) {
        return syntax_error();
    }
    // Watchers of keys that exist see the flush as a change.
    for k in ctx.shared.watches.keys() {
        if ctx.db.exists(&k) {
            ctx.db.touched(&k);
        }
    }
    // So do clients blocked on keys that exist (XREADGROUP learns its stream is gone).
    for w in ctx.shared.blocked.all() {
        for k in &w.keys {
            if ctx.db.exists(k) {
                ctx.db.touched(k);
            }
        }
    }
    ctx.db.clear();
    ctx.db.effects.dirty += 1;
    Reply::OK
}

/// OBJECT ENCODING | FREQ | IDLETIME | REFCOUNT | HELP.
pub fn object(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    if sub == b"help" {
        return Reply::status_lines(&[
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Prints this help.",
        ]);
    }
    if a.len() != 3 || !matches!(&sub[..], b"encoding" | b"freq" | b"idletime" | b"refcount") {
        return unknown_subcommand(&a[1], "object");
    }
    let (now, ev) = (ctx.db.now, ctx.db.eviction);
    let Some(e) = ctx.db.peek(&a[2]) else {
        return Reply::Nil;
    };
    // An entry's access field holds its LRU clock or, under an LFU policy, its LFU counter.
    match &sub[..] {
        b"encoding" => Reply::bulk_str(encoding(e)),
        b"refcount" => Reply::Int(1),
        b"idletime" if ev.policy.is_lfu() => Reply::error(
            "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        b"idletime" => {
            let clock = crate::keyspace::lru_clock(now);
            let idle = clock.wrapping_sub(e.access()) & 0xFF_FFFF;
            Reply::Int(i64::from(idle))
        }
        b"freq" if ev.policy.is_lfu() => Reply::Int(i64::from(
            crate::keyspace::evict::lfu_decayed(e.access(), now, ev.lfu_decay_time),
        )),
        _ => Reply::error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
    }
}

/// Redis 7.0's encoding names, by the same rules.
fn encoding(e: &Entry) -> &'static str {
    match e.value() {
        ValueRef::Str(s) => {
            let canonical_int = s.len() <= 20 && ringcache_protocol::num::parse_i64(s).is_some();
            if canonical_int && !e.is_raw() && !e.is_plain() {
                "int"
            } else if s.len() <= 44 && !e.is_raw() {
                "embstr"
            } else {
                "raw"
            }
        }
        ValueRef::Obj(v) => v.encoding(),
    }
}

pub fn dump(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match ctx.db.peek(&a[1]) {
        Some(e) => Reply::Bulk(Bytes::from(dump::dump_entry(e))),
        None => Reply::Nil,
    }
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f].
pub fn restore(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (mut replace, mut abs) = (false, false);
    let mut i = 4;
    while i < a.len() {
        if is(&a[i], "replace") {
            replace = true;
        } else if is(&a[i], "absttl") {
            abs = true;
        } else if (is(&a[i], "idletime") || is(&a[i], "freq")) && i + 1 < a.len() {
            match int_arg(&a[i + 1]) {
                Ok(n) if n < 0 && is(&a[i], "idletime") => {
                    return Reply::error("ERR Invalid IDLETIME value, must be >= 0")
                }
                Ok(n) if !(0..=255).contains(&n) && is(&a[i], "freq") => {
                    return Reply::error("ERR Invalid FREQ value, must be >= 0 and <= 255")
                }
                Ok(_) => {}
                Err(e) => return e,
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let ttl = match int_arg(&a[2]) {
        Ok(n) if n < 0 => return Reply::error("ERR Invalid TTL value, must be >= 0"),
        Ok(n) => n,
        Err(e) => return e,
    };
    if !replace && ctx.db.exists(&a[1]) {
        return Reply::error("BUSYKEY Target key name already exists.");
    }
    let predecoded = match ctx.session.predecoded.take().map(|b| *b) {
        Some((payload, r)) if payload.as_ptr() == a[3].as_ptr() && payload.len() == a[3].len() => {
            Some(r)
        }
        _ => None,
    };
    let decoded = predecoded.unwrap_or_else(|| dump::restore(&a[3], &ctx.db.limits()));
    let restored = match decoded {
        Ok(v) => v,
        Err(_) => return Reply::error(dump::BAD_PAYLOAD),
    };
    let now = ctx.db.now;
    let deadline = match (ttl, abs) {
        (0, _) => None,
        (t, true) => Some(t),
        (t, false) => Some(now.saturating_add(t)),
    };
    if matches!(deadline, Some(t) if t <= now) {
        // Already expired: as Redis, the key is not created (and an old one is replaced away).
        ctx.db.remove(&a[1]);
        ctx.db
            .propagate_as(vec![Bytes::from_static(b"DEL"), a[1].clone()]);
        return Reply::OK;
    }
    ctx.db.insert(restored.into_entry(&a[1], deadline));
    if let (Some(t), false) = (deadline, abs) {
        // A replica restores the same deadline, not the same TTL from a later start.
        let mut cmd = vec![
            Bytes::from_static(b"RESTORE"),
            a[1].clone(),
            Bytes::from(t.to_string()),
            a[3].clone(),
            Bytes::from_static(b"REPLACE"),
            Bytes::from_static(b"ABSTTL"),
        ];
        cmd.truncate(6);
        ctx.db.propagate_as(cmd);
    }
    Reply::OK
}
