//! Parsing shared by the stream commands: ids (strict, range bounds, exclusive `(` bounds) and
//! the trimming options of XADD and XTRIM, with Redis's error texts.

use bytes::Bytes;
use ringcache_protocol::Reply;

use super::super::args::{is, not_integer, syntax_error};
use crate::types::stream::{StreamId, TrimTo};

pub const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

pub fn invalid_id() -> Reply {
    Reply::error(INVALID_ID)
}

/// An id where `-` and `+` are not allowed (XADD, XDEL, XACK, ...); a missing sequence is 0.
pub fn strict_id(arg: &[u8]) -> Result<StreamId, Reply> {
    StreamId::parse(arg, 0).ok_or_else(invalid_id)
}

/// A range bound: `-`, `+`, or an id whose missing sequence is `missing_seq`.
pub fn bound_id(arg: &[u8], missing_seq: u64) -> Result<StreamId, Reply> {
    match arg {
        b"-" => Ok(StreamId::MIN),
        b"+" => Ok(StreamId::MAX),
        _ => StreamId::parse(arg, missing_seq).ok_or_else(invalid_id),
    }
}

/// A range start or end that may be exclusive (`(id`): the inclusive bound it means.
pub fn range_bound(arg: &[u8], start: bool) -> Result<StreamId, Reply> {
    let missing = if start { 0 } else { u64::MAX };
    if let Some(rest) = arg.strip_prefix(b"(") {
        if rest == b"-" || rest == b"+" {
            return Err(invalid_id());
        }
        let id = StreamId::parse(rest, missing).ok_or_else(invalid_id)?;
        return if start {
            id.next()
                .ok_or_else(|| Reply::error("ERR invalid start ID for the interval"))
        } else {
            id.prev()
                .ok_or_else(|| Reply::error("ERR invalid end ID for the interval"))
        };
    }
    bound_id(arg, missing)
}

/// The id argument of XADD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddId {
    Auto,
    /// `<ms>-*`
    Ms(u64),
    Exact(StreamId),
}

/// XADD's and XTRIM's options.
#[derive(Debug, Clone, Default)]
pub struct TrimArgs {
    pub to: Option<TrimTo>,
    pub approx: bool,
    /// Entries at most per trim (0: no limit).
    pub limit: usize,
    pub nomkstream: bool,
    /// XADD: the id and the index of the first field.
    pub id: Option<AddId>,
    pub fields_at: usize,
}

fn parse_add_id(arg: &[u8]) -> Result<AddId, Reply> {
    if arg == b"*" {
        return Ok(AddId::Auto);
    }
    if let Some(ms) = arg.strip_suffix(b"-*") {
        let ms = StreamId::parse(ms, 0)
            .filter(|_| !ms.contains(&b'-'))
            .ok_or_else(invalid_id)?;
        return Ok(AddId::Ms(ms.ms));
    }
    strict_id(arg).map(AddId::Exact)
}

/// Parses XADD's (`xadd`) or XTRIM's options from `a[2]`.
pub fn parse_trim(a: &[Bytes], xadd: bool, node_max_entries: usize) -> Result<TrimArgs, Reply> {
    let mut t = TrimArgs::default();
    let mut limit_given = false;
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = &a[i];
        let maxlen = is(opt, "maxlen");
        if (maxlen || is(opt, "minid")) && more > 0 {
            if t.to.is_some() {
                return Err(Reply::error(
                    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            let next = &a[i + 1];
            if more >= 2 && (&next[..] == b"~" || &next[..] == b"=") {
                t.approx = &next[..] == b"~";
                i += 1;
            }
            let arg = &a[i + 1];
            t.to = Some(if maxlen {
                let n = ringcache_protocol::num::parse_i64(arg).ok_or_else(not_integer)?;
                if n < 0 {
                    return Err(Reply::error("ERR The MAXLEN argument must be >= 0."));
                }
                TrimTo::MaxLen(n as u64)
            } else {
                TrimTo::MinId(strict_id(arg)?)
            });
            i += 2;
            continue;
        }
        if xadd && is(opt, "nomkstream") {
            t.nomkstream = true;
            i += 1;
            continue;
        }
        if is(opt, "limit") && more > 0 {
            let n = ringcache_protocol::num::parse_i64(&a[i + 1]).ok_or_else(not_integer)?;
            if n < 0 {
                return Err(Reply::error("ERR The LIMIT argument must be >= 0."));
            }
            t.limit = usize::try_from(n).unwrap_or(usize::MAX);
            limit_given = true;
            i += 2;
            continue;
        }
        if xadd {
            t.id = Some(parse_add_id(opt)?);
            t.fields_at = i + 1;
            break;
        }
        return Err(syntax_error());
    }
    if limit_given && t.to.is_none() {
        return Err(Reply::error(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if limit_given {
        if !t.approx {
            return Err(Reply::error(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
    } else if t.approx {
        let l = 100usize.saturating_mul(node_max_entries);
        t.limit = if l == 0 || l > 1_000_000 { 10_000 } else { l };
    } else {
        t.limit = 0;
    }
    Ok(t)
}

/// A COUNT-like non-negative integer (negative counts as 0, as Redis's XRANGE does).
pub fn count_arg(arg: &[u8]) -> Result<usize, Reply> {
    let n = ringcache_protocol::num::parse_i64(arg).ok_or_else(not_integer)?;
    Ok(usize::try_from(n.max(0)).unwrap_or(usize::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn trim_options_parse_as_redis() {
        let t = parse_trim(&args("XADD k MAXLEN ~ 10 * f v"), true, 100).unwrap();
        assert_eq!(t.to, Some(TrimTo::MaxLen(10)));
        assert!(t.approx);
        assert_eq!(t.limit, 10_000);
        assert_eq!(t.id, Some(AddId::Auto));
        assert_eq!(t.fields_at, 6);
        let t = parse_trim(&args("XADD k NOMKSTREAM MINID 5 5-* f v"), true, 100).unwrap();
        assert_eq!(t.to, Some(TrimTo::MinId(StreamId::new(5, 0))));
        assert_eq!(t.id, Some(AddId::Ms(5)));
        assert!(t.nomkstream);
        assert!(parse_trim(&args("XTRIM k MAXLEN 1 LIMIT 5"), false, 100).is_err());
        assert!(parse_trim(&args("XTRIM k MAXLEN 1 MINID 5"), false, 100).is_err());
        assert!(parse_trim(&args("XTRIM k MAXLEN -1"), false, 100).is_err());
        assert!(parse_trim(&args("XTRIM k FOO"), false, 100).is_err());
    }

    #[test]
    fn range_bounds() {
        assert_eq!(range_bound(b"(5", true).unwrap(), StreamId::new(5, 1));
        // The end's missing sequence is the largest, then one below it (as Redis parses it).
        assert_eq!(
            range_bound(b"(5", false).unwrap(),
            StreamId::new(5, u64::MAX - 1)
        );
        assert_eq!(
            range_bound(b"(5-0", false).unwrap(),
            StreamId::new(4, u64::MAX)
        );
        assert_eq!(
            range_bound(b"5", false).unwrap(),
            StreamId::new(5, u64::MAX)
        );
        assert!(range_bound(b"(-", true).is_err());
        assert!(range_bound(b"(0-0", false).is_err());
    }
}
