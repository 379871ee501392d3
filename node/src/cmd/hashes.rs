//! Hash commands.

use bytes::Bytes;
use rand::seq::index::sample;
use rand::Rng;
use ringcache_protocol::num::{incr_float, parse_i64, IncrFloatError};
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::{Protocol, Reply};

use super::args::{arity_error, bulk, int_arg, is, syntax_error, unknown_command, NOT_FLOAT};
use super::ctx::Ctx;
use super::keys::{member_scan_args, scan_reply};
use crate::types::{scan_window, Hash};

pub const NAMES: &[&str] = &[
    "hset",
    "hmset",
    "hsetnx",
    "hget",
    "hmget",
    "hdel",
    "hexists",
    "hlen",
    "hkeys",
    "hvals",
    "hgetall",
    "hincrby",
    "hincrbyfloat",
    "hstrlen",
    "hrandfield",
    "hscan",
];

pub fn run(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    match spec.name {
        "hset" | "hmset" => hset(ctx, a, spec.name == "hmset"),
        "hsetnx" => hsetnx(ctx, a),
        "hget" => hget(ctx, a),
        "hmget" => hmget(ctx, a),
        "hdel" => hdel(ctx, a),
        "hexists" => read(
            ctx,
            a,
            |h| Reply::Int(i64::from(h.contains(&a[2]))),
            Reply::Int(0),
        ),
        "hlen" => read(ctx, a, |h| Reply::Int(h.len() as i64), Reply::Int(0)),
        "hstrlen" => read(
            ctx,
            a,
            |h| Reply::Int(h.get(&a[2]).map_or(0, <[u8]>::len) as i64),
            Reply::Int(0),
        ),
        "hkeys" => hgetall(ctx, a, true, false),
        "hvals" => hgetall(ctx, a, false, true),
        "hgetall" => hgetall(ctx, a, true, true),
        "hincrby" => hincrby(ctx, a),
        "hincrbyfloat" => hincrbyfloat(ctx, a),
        "hrandfield" => hrandfield(ctx, a),
        "hscan" => hscan(ctx, a),
        _ => unknown_command(a),
    }
}

/// Answers from the hash at `a[1]` (`missing` if there is none).
fn read(ctx: &mut Ctx, a: &[Bytes], f: impl FnOnce(&Hash) -> Reply, missing: Reply) -> Reply {
    match ctx.db.read::<Hash>(&a[1]) {
        Ok(Some(h)) => f(h),
        Ok(None) => missing,
        Err(e) => e.into(),
    }
}

/// HSET (reply: fields added) and HMSET (reply: OK).
pub fn hset(ctx: &mut Ctx, a: &[Bytes], hmset: bool) -> Reply {
    if !a.len().is_multiple_of(2) {
        return arity_error(if hmset { "hmset" } else { "hset" });
    }
    let added = ctx.db.update::<Hash, _>(&a[1], true, |h, l| {
        let n = a[2..].chunks(2).filter(|p| h.set(&p[0], &p[1], l)).count();
        (n, true)
    });
    match added {
        Ok(_) if hmset => Reply::OK,
        Ok(n) => Reply::Int(n.unwrap_or(0) as i64),
        Err(e) => e.into(),
    }
}

pub fn hsetnx(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let r = ctx.db.update::<Hash, _>(&a[1], true, |h, l| {
        if h.contains(&a[2]) {
            (false, false)
        } else {
            h.set(&a[2], &a[3], l);
            (true, true)
        }
    });
    match r {
        Ok(set) => Reply::Int(i64::from(set == Some(true))),
        Err(e) => e.into(),
    }
}

pub fn hget(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    read(
        ctx,
        a,
        |h| h.get(&a[2]).map(bulk).unwrap_or(Reply::Nil),
        Reply::Nil,
    )
}

pub fn hmget(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let nils = Reply::Array(a[2..].iter().map(|_| Reply::Nil).collect());
    read(
        ctx,
        a,
        |h| {
            Reply::Array(
                a[2..]
                    .iter()
                    .map(|f| h.get(f).map(bulk).unwrap_or(Reply::Nil))
                    .collect(),
            )
        },
        nils,
    )
}

pub fn hdel(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let r = ctx.db.update::<Hash, _>(&a[1], false, |h, _| {
        let n = a[2..].iter().filter(|f| h.remove(f)).count();
        (n, n > 0)
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0) as i64),
        Err(e) => e.into(),
    }
}

/// HKEYS, HVALS and HGETALL (a map in RESP3).
pub fn hgetall(ctx: &mut Ctx, a: &[Bytes], fields: bool, values: bool) -> Reply {
    let empty = if fields && values {
        Reply::Map(Vec::new())
    } else {
        Reply::Array(Vec::new())
    };
    read(
        ctx,
        a,
        |h| {
            if fields && values {
                Reply::Map(h.iter().map(|(f, v)| (bulk(f), bulk(v))).collect())
            } else {
                Reply::Array(
                    h.iter()
                        .map(|(f, v)| bulk(if fields { f } else { v }))
                        .collect(),
                )
            }
        },
        empty,
    )
}

pub fn hincrby(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let by = match int_arg(&a[3]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let r = ctx.db.update::<Hash, _>(&a[1], true, |h, l| {
        let cur = match h.get(&a[2]) {
            Some(v) => match parse_i64(v) {
                Some(n) => n,
                None => return (Err("ERR hash value is not an integer"), false),
            },
            None => 0,
        };
        let Some(n) = cur.checked_add(by) else {
            return (Err("ERR increment or decrement would overflow"), false);
        };
        h.set(&a[2], itoa::Buffer::new().format(n).as_bytes(), l);
        (Ok(n), true)
    });
    match r {
        Ok(Some(Ok(n))) => Reply::Int(n),
        Ok(Some(Err(e))) => Reply::error(e),
        Ok(None) => Reply::Int(0),
        Err(e) => e.into(),
    }
}

pub fn hincrbyfloat(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    // The increment is checked before the key, as Redis does (its errors come first).
    if let Err(e) = incr_float(None, &a[3], true) {
        return incr_float_error(e);
    }
    let r = ctx.db.update::<Hash, _>(&a[1], true, |h, l| {
        match incr_float(h.get(&a[2]), &a[3], true) {
            Ok(t) => {
                h.set(&a[2], t.as_bytes(), l);
                (Ok(t), true)
            }
            Err(e) => (Err(e), false),
        }
    });
    let text = match r {
        Ok(Some(Ok(t))) => Bytes::from(t),
        Ok(Some(Err(e))) => return incr_float_error(e),
        Ok(None) => return Reply::Nil,
        Err(e) => return e.into(),
    };
    // Replicas get the result, not the increment, so float rounding cannot diverge.
    ctx.db.propagate_as(vec![
        Bytes::from_static(b"HSET"),
        a[1].clone(),
        a[2].clone(),
        text.clone(),
    ]);
    Reply::Bulk(text)
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

/// Most elements a random pick with a negative count returns (the count is the client's to
/// choose; the reply is bounded rather than allocated blindly).
pub const MAX_RANDOM_REPLY: u64 = 1 << 24;

/// Parses the count of HRANDFIELD / SRANDMEMBER / ZRANDMEMBER as Redis does: i64::MIN is out of
/// range, and with values (twice the elements) so is a magnitude past half the range.
pub fn random_count(arg: &[u8], with_values: bool) -> Result<i64, Reply> {
    let n = int_arg(arg)?;
    if n == i64::MIN {
        return Err(Reply::error(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    if with_values && n.unsigned_abs() > (i64::MAX / 2) as u64 {
        return Err(Reply::error("ERR value is out of range"));
    }
    Ok(n)
}

/// `count` random indexes below `len`: distinct for a non-negative count, repeats allowed for a
/// negative one.
pub fn random_indexes(len: usize, count: i64) -> Result<Vec<usize>, Reply> {
    let mut rng = rand::thread_rng();
    if count >= 0 {
        let n = (count as usize).min(len);
        let mut picked = sample(&mut rng, len, n).into_vec();
        if n == len {
            picked.sort_unstable();
        }
        return Ok(picked);
    }
    if count.unsigned_abs() > MAX_RANDOM_REPLY {
        return Err(Reply::error(
            "ERR count is too large: at most 16777216 elements per reply",
        ));
    }
    Ok((0..count.unsigned_abs())
        .map(|_| rng.gen_range(0..len))
        .collect())
}

pub fn hrandfield(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let with_values = match a.len() {
        2 | 3 => false,
        4 if is(&a[3], "withvalues") => true,
        _ => return syntax_error(),
    };
    let count = match a.get(2) {
        Some(c) => match random_count(c, with_values) {
            Ok(n) => Some(n),
            Err(e) => return e,
        },
        None => None,
    };
    let proto = ctx.session.proto;
    let missing = if count.is_some() {
        Reply::Array(Vec::new())
    } else {
        Reply::Nil
    };
    read(
        ctx,
        a,
        |h| {
            let Some(count) = count else {
                let i = rand::thread_rng().gen_range(0..h.len());
                return h.get_index(i).map(|(f, _)| bulk(f)).unwrap_or(Reply::Nil);
            };
            let picked = match random_indexes(h.len(), count) {
                Ok(p) => p,
                Err(e) => return e,
            };
            // A packed hash walks from the front for each index: collect its pairs once.
            let pairs: Vec<(&[u8], &[u8])> = if h.is_table() {
                Vec::new()
            } else {
                h.iter().collect()
            };
            let pair = |i: usize| {
                if h.is_table() {
                    h.get_index(i)
                } else {
                    pairs.get(i).copied()
                }
            };
            let mut out = Vec::with_capacity(picked.len() * 2);
            for (f, v) in picked.into_iter().filter_map(pair) {
                if with_values && proto == Protocol::Resp3 {
                    out.push(Reply::Array(vec![bulk(f), bulk(v)]));
                } else {
                    out.push(bulk(f));
                    if with_values {
                        out.push(bulk(v));
                    }
                }
            }
            Reply::Array(out)
        },
        missing,
    )
}

/// HSCAN: a packed hash in one step (cursor 0); a table page by page from its end (see
/// `crate::types::scan_window` for why that keeps SCAN's guarantee).
pub fn hscan(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (cursor, opts) = match member_scan_args(a) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let empty = scan_reply(0, Vec::new());
    read(
        ctx,
        a,
        |h| {
            let mut out = Vec::new();
            let mut push = |f: &[u8], v: &[u8]| {
                if opts.matches(f) {
                    out.push(bulk(f));
                    if !opts.novalues {
                        out.push(bulk(v));
                    }
                }
            };
            if !h.is_table() {
                h.iter().for_each(|(f, v)| push(f, v));
                return scan_reply(0, out);
            }
            let (window, next) = scan_window(h.len(), cursor, opts.count);
            for i in window.rev() {
                if let Some((f, v)) = h.get_index(i) {
                    push(f, v);
                }
            }
            scan_reply(next, out)
        },
        empty,
    )
}
