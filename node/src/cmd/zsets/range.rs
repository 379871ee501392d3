//! ZRANGE and its older forms (ZREVRANGE, Z[REV]RANGEBYSCORE, Z[REV]RANGEBYLEX), ZRANGESTORE,
//! and ZREMRANGEBYRANK / BYSCORE / BYLEX.

use std::ops::Range;

use bytes::Bytes;
use ringcache_protocol::Reply;

use super::super::args::{is, syntax_error};
use super::super::ctx::Ctx;
use super::{lex_range, long_arg, score_range, with_scores};
use crate::keyspace::Entry;
use crate::types::zset::{LexRange, ScoreRange};
use crate::types::{Value, ZSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// A parsed range: which members, in which direction, and how many.
enum Spec<'a> {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange<'a>),
}

/// What a range selects in `z`: ascending ranks, walked forward or backward, after skipping
/// `offset` and taking at most `limit` (negative: all; a rank range has neither, and Redis
/// ignores a `LIMIT offset -1` given with one).
fn select(z: &ZSet, spec: &Spec<'_>, rev: bool, offset: i64, limit: i64) -> Vec<(Bytes, f64)> {
    let (offset, limit) = match spec {
        Spec::Rank(..) => (0, -1),
        _ => (offset, limit),
    };
    let len = z.len();
    let span: Range<usize> = match spec {
        Spec::Rank(start, end) => {
            let n = len as i64;
            let mut start = if *start < 0 { n + start } else { *start };
            let end = if *end < 0 { n + end } else { *end };
            start = start.max(0);
            if start > end || start >= n {
                return Vec::new();
            }
            let end = end.min(n - 1);
            // Ranks count from the top in reverse.
            if rev {
                (n - 1 - end) as usize..(n - start) as usize
            } else {
                start as usize..(end + 1) as usize
            }
        }
        Spec::Score(r) => z.score_span(r),
        Spec::Lex(r) => z.lex_span(r),
    };
    // A negative offset walks past the end in Redis: nothing.
    if offset < 0 || (offset > 0 && offset as u64 >= len as u64) {
        return Vec::new();
    }
    let skip = (offset as usize).min(span.len());
    let take = if limit < 0 {
        span.len() - skip
    } else {
        (limit as usize).min(span.len() - skip)
    };
    let copy = |(m, s): (&[u8], f64)| (Bytes::copy_from_slice(m), s);
    if take == 0 {
        Vec::new()
    } else if rev {
        z.iter_rev_from(span.end - 1 - skip)
            .take(take)
            .map(copy)
            .collect()
    } else {
        z.iter_from(span.start + skip)
            .take(take)
            .map(copy)
            .collect()
    }
}

/// ZRANGE, ZRANGESTORE, ZREVRANGE, Z[REV]RANGEBYSCORE and Z[REV]RANGEBYLEX.
pub fn zrange(ctx: &mut Ctx, name: &str, a: &[Bytes]) -> Reply {
    let store = name == "zrangestore";
    let src = if store { 2 } else { 1 };
    let (mut by, mut rev) = match name {
        "zrevrange" => (Some(By::Rank), Some(true)),
        "zrangebyscore" => (Some(By::Score), Some(false)),
        "zrevrangebyscore" => (Some(By::Score), Some(true)),
        "zrangebylex" => (Some(By::Lex), Some(false)),
        "zrevrangebylex" => (Some(By::Lex), Some(true)),
        _ => (None, None),
    };
    let fixed_by = by.is_some();
    let fixed_rev = rev.is_some();
    let (mut scores, mut offset, mut limit) = (false, 0, -1);
    let mut j = src + 3;
    while j < a.len() {
        let left = a.len() - j - 1;
        let o = &a[j];
        if !store && is(o, "withscores") {
            scores = true;
        } else if is(o, "limit") && left >= 2 {
            offset = match long_arg(&a[j + 1]) {
                Ok(n) => n,
                Err(e) => return e,
            };
            limit = match long_arg(&a[j + 2]) {
                Ok(n) => n,
                Err(e) => return e,
            };
            j += 2;
        } else if !fixed_rev && is(o, "rev") {
            rev = Some(true);
        } else if !fixed_by && is(o, "bylex") {
            by = Some(By::Lex);
        } else if !fixed_by && is(o, "byscore") {
            by = Some(By::Score);
        } else {
            return syntax_error();
        }
        j += 1;
    }
    let by = by.unwrap_or(By::Rank);
    let rev = rev.unwrap_or(false);
    if limit != -1 && by == By::Rank {
        return Reply::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
    }
    if scores && by == By::Lex {
        return Reply::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        );
    }
    // Reverse score and member ranges are written max first.
    let (lo, hi) = if rev && by != By::Rank {
        (&a[src + 2], &a[src + 1])
    } else {
        (&a[src + 1], &a[src + 2])
    };
    let spec = match by {
        By::Rank => match (long_arg(lo), long_arg(hi)) {
            (Ok(s), Ok(e)) => Spec::Rank(s, e),
            (Err(e), _) | (_, Err(e)) => return e,
        },
        By::Score => match score_range(lo, hi) {
            Ok(r) => Spec::Score(r),
            Err(e) => return e,
        },
        By::Lex => match lex_range(lo, hi) {
            Ok(r) => Spec::Lex(r),
            Err(e) => return e,
        },
    };
    let picked = match ctx.db.read::<ZSet>(&a[src]) {
        Ok(Some(z)) => select(z, &spec, rev, offset, limit),
        Ok(None) => Vec::new(),
        Err(e) => return e.into(),
    };
    if !store {
        let items = picked.iter().map(|(m, s)| (&m[..], *s));
        return with_scores(ctx.session.proto, items, scores);
    }
    if picked.is_empty() {
        ctx.db.remove(&a[1]);
        return Reply::Int(0);
    }
    // Redis adds the range member by member to a set that starts packed unless a rank range
    // is known to be too long, so it converts (and keeps zero signs) exactly at the same point.
    let limits = ctx.db.limits();
    let mut z = if by == By::Rank && picked.len() > limits.zset_max_listpack_entries {
        ZSet::Large(Box::default())
    } else {
        ZSet::default()
    };
    for (m, s) in &picked {
        z.insert(m, *s, &limits);
    }
    let n = z.len();
    ctx.db.insert(Entry::object(&a[1], Value::ZSet(z), None));
    Reply::Int(n as i64)
}

/// Stores `items` (any order) at `dst` as a new sorted set, or deletes `dst` when there are
/// none (Redis's STORE commands); replies with the size.
pub fn store_result(ctx: &mut Ctx, dst: &[u8], mut items: Vec<(Bytes, f64)>) -> Reply {
    if items.is_empty() {
        ctx.db.remove(dst);
        return Reply::Int(0);
    }
    items.sort_by(|x, y| crate::types::zset::order(x.1, &x.0, y.1, &y.0));
    let z = ZSet::from_sorted(items.iter().map(|(m, s)| (&m[..], *s)), &ctx.db.limits());
    let n = z.len();
    ctx.db.insert(Entry::object(dst, Value::ZSet(z), None));
    Reply::Int(n as i64)
}

/// ZREMRANGEBYRANK, ZREMRANGEBYSCORE and ZREMRANGEBYLEX.
pub fn zremrange(ctx: &mut Ctx, name: &str, a: &[Bytes]) -> Reply {
    let spec = match name {
        "zremrangebyrank" => match (long_arg(&a[2]), long_arg(&a[3])) {
            (Ok(s), Ok(e)) => Spec::Rank(s, e),
            (Err(e), _) | (_, Err(e)) => return e,
        },
        "zremrangebyscore" => match score_range(&a[2], &a[3]) {
            Ok(r) => Spec::Score(r),
            Err(e) => return e,
        },
        _ => match lex_range(&a[2], &a[3]) {
            Ok(r) => Spec::Lex(r),
            Err(e) => return e,
        },
    };
    let r = ctx.db.update::<ZSet, _>(&a[1], false, |z, _| {
        let span = match &spec {
            Spec::Rank(start, end) => {
                let n = z.len() as i64;
                let start = (if *start < 0 { n + start } else { *start }).max(0);
                let end = if *end < 0 { n + end } else { *end };
                if start > end || start >= n {
                    0..0
                } else {
                    start as usize..(end.min(n - 1) + 1) as usize
                }
            }
            Spec::Score(r) => z.score_span(r),
            Spec::Lex(r) => z.lex_span(r),
        };
        let n = span.len();
        z.remove_range(span, |_, _| ());
        (n, n > 0)
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0) as i64),
        Err(e) => e.into(),
    }
}
