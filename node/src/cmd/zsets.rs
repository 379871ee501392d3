//! Sorted set commands (Redis 7.0's): adding and reading members here, ranges in [`range`],
//! unions, intersections and differences in [`store`], pops (blocking too) in [`pop`].

mod pop;
mod range;
mod store;

use bytes::Bytes;
use rand::Rng;
use ringcache_protocol::resp::format_double;
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::{Protocol, Reply};

use super::args::{bulk, int_arg, is, syntax_error, unknown_command, NOT_FLOAT, NOT_INTEGER};
use super::ctx::Ctx;
use super::hashes::{random_count, random_indexes};
use super::keys::{member_scan_args, scan_reply};
use crate::types::zset::{LexBound, LexRange, ScoreRange};
use crate::types::ZSet;

pub use pop::serve_blocked;

pub const NAMES: &[&str] = &[
    "zadd",
    "zincrby",
    "zrem",
    "zcard",
    "zscore",
    "zmscore",
    "zrank",
    "zrevrank",
    "zcount",
    "zlexcount",
    "zrange",
    "zrangestore",
    "zrevrange",
    "zrangebyscore",
    "zrevrangebyscore",
    "zrangebylex",
    "zrevrangebylex",
    "zremrangebyrank",
    "zremrangebyscore",
    "zremrangebylex",
    "zpopmin",
    "zpopmax",
    "zmpop",
    "bzpopmin",
    "bzpopmax",
    "bzmpop",
    "zrandmember",
    "zunion",
    "zinter",
    "zdiff",
    "zunionstore",
    "zinterstore",
    "zdiffstore",
    "zintercard",
    "zscan",
];

pub fn run(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    match spec.name {
        "zadd" => zadd(ctx, a, false),
        "zincrby" => zadd(ctx, a, true),
        "zrem" => zrem(ctx, a),
        "zcard" => read(ctx, a, |z| Reply::Int(z.len() as i64), Reply::Int(0)),
        "zscore" => read(
            ctx,
            a,
            |z| z.score(&a[2]).map_or(Reply::Nil, Reply::Double),
            Reply::Nil,
        ),
        "zmscore" => zmscore(ctx, a),
        "zrank" => zrank(ctx, a, false),
        "zrevrank" => zrank(ctx, a, true),
        "zcount" => zcount(ctx, a),
        "zlexcount" => zlexcount(ctx, a),
        "zrandmember" => zrandmember(ctx, a),
        "zscan" => zscan(ctx, a),
        "zrange" | "zrangestore" | "zrevrange" | "zrangebyscore" | "zrevrangebyscore"
        | "zrangebylex" | "zrevrangebylex" => range::zrange(ctx, spec.name, a),
        "zremrangebyrank" | "zremrangebyscore" | "zremrangebylex" => {
            range::zremrange(ctx, spec.name, a)
        }
        "zunion" | "zinter" | "zdiff" | "zunionstore" | "zinterstore" | "zdiffstore"
        | "zintercard" => store::setop(ctx, spec.name, a),
        "zpopmin" | "zpopmax" | "zmpop" | "bzpopmin" | "bzpopmax" | "bzmpop" => {
            pop::run(ctx, spec.name, a)
        }
        _ => unknown_command(a),
    }
}

/// Answers from the sorted set at `a[1]` (`missing` if there is none).
fn read(ctx: &mut Ctx, a: &[Bytes], f: impl FnOnce(&ZSet) -> Reply, missing: Reply) -> Reply {
    match ctx.db.read::<ZSet>(&a[1]) {
        Ok(Some(z)) => f(z),
        Ok(None) => missing,
        Err(e) => e.into(),
    }
}

/// C's `strtod` as glibc reads `s`: the value, the bytes read (0 when nothing parses), and
/// whether the value overflowed to infinity or underflowed to zero (`ERANGE`).
pub fn strtod(s: &[u8]) -> (f64, usize, bool) {
    let ws = s
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .count();
    let mut i = ws;
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let sign = if neg { -1.0 } else { 1.0 };
    let rest = &s[i..];
    let starts =
        |w: &str| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w.as_bytes());
    if starts("infinity") {
        return (sign * f64::INFINITY, i + 8, false);
    }
    if starts("inf") {
        return (sign * f64::INFINITY, i + 3, false);
    }
    if starts("nan") {
        let mut end = i + 3;
        // `nan(chars)` is read whole when the parenthesis closes.
        if s.get(end) == Some(&b'(') {
            let inner = s[end + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            if s.get(end + 1 + inner) == Some(&b')') {
                end += inner + 2;
            }
        }
        return (f64::NAN, end, false);
    }
    let digits = |from: usize, hex: bool| {
        s[from.min(s.len())..]
            .iter()
            .take_while(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count()
    };
    let hex = (starts("0x")) && {
        let int = digits(i + 2, true);
        let frac = if s.get(i + 2 + int) == Some(&b'.') {
            digits(i + 3 + int, true)
        } else {
            0
        };
        int + frac > 0
    };
    let (mant_start, exp_letter) = if hex { (i + 2, b'p') } else { (i, b'e') };
    let int = digits(mant_start, hex);
    let mut end = mant_start + int;
    let mut frac = 0;
    if s.get(end) == Some(&b'.') {
        frac = digits(end + 1, hex);
        if int + frac > 0 {
            end += 1 + frac;
        }
    }
    if int + frac == 0 {
        return (0.0, 0, false);
    }
    let mant_end = end;
    if s.get(end)
        .is_some_and(|c| c.to_ascii_lowercase() == exp_letter)
    {
        let mut j = end + 1;
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let n = digits(j, false);
        if n > 0 {
            end = j + n;
        }
    }
    let nonzero = s[mant_start..mant_end]
        .iter()
        .any(|c| c.is_ascii_hexdigit() && *c != b'0');
    let value = if hex {
        hex_value(&s[mant_start..end])
    } else {
        std::str::from_utf8(&s[mant_start..end])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let erange = value.is_infinite() || (value == 0.0 && nonzero);
    (sign * value, end, erange)
}

/// The value of a hexadecimal float body (`hhh.hhhp±ddd`, after `0x`).
fn hex_value(b: &[u8]) -> f64 {
    let (mant, exp) = match b.iter().position(|c| c.eq_ignore_ascii_case(&b'p')) {
        Some(p) => (&b[..p], &b[p + 1..]),
        None => (b, &b""[..]),
    };
    let mut m: u64 = 0;
    let mut e: i64 = 0;
    let mut seen_dot = false;
    for &c in mant {
        if c == b'.' {
            seen_dot = true;
            continue;
        }
        let d = u64::from((c as char).to_digit(16).unwrap_or(0));
        if m >> 60 == 0 {
            m = m * 16 + d;
            if seen_dot {
                e -= 4;
            }
        } else if !seen_dot {
            // Digits past 64 bits only scale (their bits are below the double's precision).
            e += 4;
        }
    }
    let exp: i64 = std::str::from_utf8(exp)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let e = (e + exp).clamp(-2000, 2000) as i32;
    // Two steps: 2^e alone may overflow or underflow where the product does not.
    (m as f64) * 2f64.powi(e / 2) * 2f64.powi(e - e / 2)
}

/// A score argument (Redis's `getDoubleFromObject`: all of it a float, no leading space, no
/// NaN, not out of range).
pub fn parse_score(a: &[u8]) -> Option<f64> {
    let (v, n, erange) = strtod(a);
    let space = a
        .first()
        .is_some_and(|c| c.is_ascii_whitespace() || *c == 0x0b);
    (!a.is_empty() && !space && n == a.len() && !erange && !v.is_nan()).then_some(v)
}

fn score_arg(a: &[u8]) -> Result<f64, Reply> {
    parse_score(a).ok_or_else(|| Reply::error(NOT_FLOAT))
}

/// One end of a score range: `[(]float`, read by strtod up to the end of the C string.
fn score_bound(a: &[u8]) -> Option<(f64, bool)> {
    let (ex, body) = match a.split_first() {
        Some((b'(', rest)) => (true, rest),
        _ => (false, a),
    };
    let (v, n, _) = strtod(body);
    let ends = body.get(n).is_none_or(|&c| c == 0);
    (ends && !v.is_nan()).then_some((v, ex))
}

pub fn score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, Reply> {
    match (score_bound(min), score_bound(max)) {
        (Some((min, min_ex)), Some((max, max_ex))) => Ok(ScoreRange {
            min,
            min_ex,
            max,
            max_ex,
        }),
        _ => Err(Reply::error("ERR min or max is not a float")),
    }
}

fn lex_bound(a: &[u8]) -> Option<LexBound<'_>> {
    match a.split_first()? {
        (b'+', []) => Some(LexBound::PosInf),
        (b'-', []) => Some(LexBound::NegInf),
        (b'(', rest) => Some(LexBound::Excl(rest)),
        (b'[', rest) => Some(LexBound::Incl(rest)),
        _ => None,
    }
}

pub fn lex_range<'a>(min: &'a [u8], max: &'a [u8]) -> Result<LexRange<'a>, Reply> {
    match (lex_bound(min), lex_bound(max)) {
        (Some(min), Some(max)) => Ok(LexRange { min, max }),
        _ => Err(Reply::error("ERR min or max not valid string range item")),
    }
}

/// Members with their scores: flat in RESP2, `[member, score]` pairs in RESP3.
pub fn with_scores<'a>(
    proto: Protocol,
    items: impl Iterator<Item = (&'a [u8], f64)>,
    scores: bool,
) -> Reply {
    let mut out = Vec::with_capacity(items.size_hint().0 * if scores { 2 } else { 1 });
    for (m, s) in items {
        if !scores {
            out.push(bulk(m));
        } else if proto == Protocol::Resp3 {
            out.push(Reply::Array(vec![bulk(m), Reply::Double(s)]));
        } else {
            out.push(bulk(m));
            out.push(Reply::Double(s));
        }
    }
    Reply::Array(out)
}

/// ZADD and ZINCRBY.
fn zadd(ctx: &mut Ctx, a: &[Bytes], zincrby: bool) -> Reply {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, zincrby);
    let mut i = 2;
    while !zincrby && i < a.len() {
        let o = &a[i];
        if is(o, "nx") {
            nx = true;
        } else if is(o, "xx") {
            xx = true;
        } else if is(o, "ch") {
            ch = true;
        } else if is(o, "incr") {
            incr = true;
        } else if is(o, "gt") {
            gt = true;
        } else if is(o, "lt") {
            lt = true;
        } else {
            break;
        }
        i += 1;
    }
    let pairs = &a[i..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return syntax_error();
    }
    if nx && xx {
        return Reply::error("ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Reply::error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && pairs.len() > 2 {
        return Reply::error("ERR INCR option supports a single increment-element pair");
    }
    let mut scores = Vec::with_capacity(pairs.len() / 2);
    for p in pairs.chunks(2) {
        match score_arg(&p[0]) {
            Ok(s) => scores.push(s),
            Err(e) => return e,
        }
    }
    let r = ctx.db.update::<ZSet, _>(&a[1], !xx, |z, l| {
        let (mut added, mut updated, mut last) = (0, 0, None);
        for (p, &score) in pairs.chunks(2).zip(&scores) {
            let member = &p[1];
            match z.score(member) {
                Some(cur) => {
                    if nx {
                        continue;
                    }
                    let new = if incr { cur + score } else { score };
                    if new.is_nan() {
                        let changed = added + updated > 0;
                        return (Err("ERR resulting score is not a number (NaN)"), changed);
                    }
                    if (lt && new >= cur) || (gt && new <= cur) {
                        continue;
                    }
                    if new != cur {
                        z.insert(member, new, l);
                        updated += 1;
                    }
                    last = Some(new);
                }
                None => {
                    if xx {
                        continue;
                    }
                    z.insert(member, score, l);
                    added += 1;
                    last = Some(score);
                }
            }
        }
        (Ok((added, updated, last)), added + updated > 0)
    });
    match r {
        Err(e) => e.into(),
        Ok(Some(Err(e))) => Reply::error(e),
        Ok(Some(Ok((_, _, last)))) if incr => last.map_or(Reply::Nil, Reply::Double),
        Ok(Some(Ok((added, updated, _)))) => Reply::Int(if ch { added + updated } else { added }),
        Ok(None) if incr => Reply::Nil,
        Ok(None) => Reply::Int(0),
    }
}

fn zrem(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let r = ctx.db.update::<ZSet, _>(&a[1], false, |z, _| {
        let mut n = 0;
        for m in &a[2..] {
            if z.is_empty() {
                break;
            }
            if z.remove(m).is_some() {
                n += 1;
            }
        }
        (n, n > 0)
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0)),
        Err(e) => e.into(),
    }
}

fn zmscore(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let nils = Reply::Array(a[2..].iter().map(|_| Reply::Nil).collect());
    read(
        ctx,
        a,
        |z| {
            Reply::Array(
                a[2..]
                    .iter()
                    .map(|m| z.score(m).map_or(Reply::Nil, Reply::Double))
                    .collect(),
            )
        },
        nils,
    )
}

fn zrank(ctx: &mut Ctx, a: &[Bytes], rev: bool) -> Reply {
    read(
        ctx,
        a,
        |z| match z.rank(&a[2]) {
            Some((r, _)) if rev => Reply::Int((z.len() - 1 - r) as i64),
            Some((r, _)) => Reply::Int(r as i64),
            None => Reply::Nil,
        },
        Reply::Nil,
    )
}

fn zcount(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let r = match score_range(&a[2], &a[3]) {
        Ok(r) => r,
        Err(e) => return e,
    };
    read(
        ctx,
        a,
        |z| Reply::Int(z.score_span(&r).len() as i64),
        Reply::Int(0),
    )
}

fn zlexcount(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let r = match lex_range(&a[2], &a[3]) {
        Ok(r) => r,
        Err(e) => return e,
    };
    read(
        ctx,
        a,
        |z| Reply::Int(z.lex_span(&r).len() as i64),
        Reply::Int(0),
    )
}

fn zrandmember(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let Some(arg) = a.get(2) else {
        return read(
            ctx,
            a,
            |z| {
                let i = rand::thread_rng().gen_range(0..z.len().max(1));
                z.get(i).map_or(Reply::Nil, |(m, _)| bulk(m))
            },
            Reply::Nil,
        );
    };
    let count = match random_count(arg, false) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let scores = match a.get(3) {
        None => false,
        Some(w) if a.len() == 4 && is(w, "withscores") => true,
        Some(_) => return syntax_error(),
    };
    if scores && count.unsigned_abs() > (i64::MAX / 2) as u64 {
        return Reply::error("ERR value is out of range");
    }
    let proto = ctx.session.proto;
    read(
        ctx,
        a,
        |z| {
            if count == 0 {
                return Reply::Array(Vec::new());
            }
            if count >= z.len() as i64 {
                // Redis walks the set from its highest member here.
                return with_scores(proto, z.iter_rev_from(usize::MAX), scores);
            }
            let picked = match random_indexes(z.len(), count) {
                Ok(p) => p,
                Err(e) => return e,
            };
            // A packed set walks from its front for each rank: read its pairs once.
            let all: Vec<(&[u8], f64)> = match z {
                ZSet::Packed(_) => z.iter().collect(),
                ZSet::Large(_) => Vec::new(),
            };
            let pick = |i: usize| all.get(i).copied().or_else(|| z.get(i));
            with_scores(proto, picked.into_iter().filter_map(pick), scores)
        },
        Reply::Array(Vec::new()),
    )
}

fn zscan(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (cursor, opts) = match member_scan_args(a) {
        Ok(x) => x,
        Err(e) => return e,
    };
    read(
        ctx,
        a,
        |z| {
            let mut out = Vec::new();
            let next = z.scan(cursor, opts.count, |m, s| {
                if opts.matches(m) {
                    out.push(bulk(m));
                    out.push(Reply::Bulk(Bytes::from(format_double(s))));
                }
            });
            scan_reply(next, out)
        },
        scan_reply(0, Vec::new()),
    )
}

/// Parses a count that must be positive (`0..=i64::MAX`), with `msg` for anything else.
fn positive(arg: &[u8], msg: &str) -> Result<i64, Reply> {
    match ringcache_protocol::num::parse_i64(arg) {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(Reply::error(msg)),
    }
}

/// Parses an integer argument in `1..=i64::MAX`, with `msg` for anything else.
fn at_least_one(arg: &[u8], msg: &str) -> Result<i64, Reply> {
    match ringcache_protocol::num::parse_i64(arg) {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(Reply::error(msg)),
    }
}

/// An integer argument (Redis's `getLongFromObjectOrReply`).
fn long_arg(arg: &[u8]) -> Result<i64, Reply> {
    int_arg(arg).map_err(|_| Reply::error(NOT_INTEGER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtod_reads_as_glibc() {
        let v = |s: &str| strtod(s.as_bytes());
        assert_eq!(v("1.5"), (1.5, 3, false));
        assert_eq!(v("  -2e3x"), (-2000.0, 6, false));
        assert_eq!(v("0x10"), (16.0, 4, false));
        assert_eq!(v("0x1.8p1"), (3.0, 7, false));
        assert_eq!(v("0x"), (0.0, 1, false));
        assert_eq!(v("1e"), (1.0, 1, false));
        assert_eq!(v("1e+"), (1.0, 1, false));
        assert_eq!(v(".5"), (0.5, 2, false));
        assert_eq!(v("5."), (5.0, 2, false));
        assert_eq!(v("."), (0.0, 0, false));
        assert_eq!(v(""), (0.0, 0, false));
        assert_eq!(v("-InFiNiTy"), (f64::NEG_INFINITY, 9, false));
        assert_eq!(v("+inf"), (f64::INFINITY, 4, false));
        assert!(v("nan").0.is_nan());
        assert_eq!(v("1e400"), (f64::INFINITY, 5, true));
        assert_eq!(v("1e-400"), (0.0, 6, true));
        assert_eq!(v("0e-400"), (0.0, 6, false));
        assert!(!v("1e-310").2);
    }

    #[test]
    fn scores_and_bounds_as_redis_reads_them() {
        assert_eq!(parse_score(b"0x10"), Some(16.0));
        assert_eq!(parse_score(b"1e-310").map(|v| v > 0.0), Some(true));
        for bad in [&b""[..], b" 1", b"1 ", b"nan", b"1e400", b"abc", b"1.2.3"] {
            assert_eq!(parse_score(bad), None);
        }
        assert_eq!(score_bound(b""), Some((0.0, false)));
        assert_eq!(score_bound(b"("), Some((0.0, true)));
        assert_eq!(score_bound(b" 1"), Some((1.0, false)));
        assert_eq!(score_bound(b"(1e400"), Some((f64::INFINITY, true)));
        assert_eq!(score_bound(b"2\0junk"), Some((2.0, false)));
        assert_eq!(score_bound(b"  "), None);
        assert_eq!(score_bound(b"(nan"), None);
        assert_eq!(score_bound(b"1x"), None);
    }
}
