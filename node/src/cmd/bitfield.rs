//! BITFIELD and BITFIELD_RO: signed (`i1`..`i64`) and unsigned (`u1`..`u63`) integers at any
//! bit offset of a string (`#N` = the N-th field of that width), with GET, SET, INCRBY and the
//! OVERFLOW policy (WRAP, SAT, FAIL) that applies to the operations after it.

use bytes::Bytes;
use ringcache_protocol::Reply;

use super::args::{int_arg, is, syntax_error};
use super::bitmaps::{bit_offset, edit_in_place};
use super::ctx::Ctx;
use crate::keyspace::WrongType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    Set(i64),
    IncrBy(i64),
}

#[derive(Debug, Clone, Copy)]
struct Op {
    kind: Kind,
    offset: u64,
    bits: u32,
    signed: bool,
    overflow: Overflow,
}

fn bad_type() -> Reply {
    Reply::error(
        "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
    )
}

/// `i<bits>` or `u<bits>`: (signed, bits).
fn field_type(arg: &[u8]) -> Result<(bool, u32), Reply> {
    let (signed, rest) = match arg.split_first() {
        Some((b'i', rest)) => (true, rest),
        Some((b'u', rest)) => (false, rest),
        _ => return Err(bad_type()),
    };
    match ringcache_protocol::num::parse_i64(rest) {
        Some(n) if n >= 1 && n <= if signed { 64 } else { 63 } => Ok((signed, n as u32)),
        _ => Err(bad_type()),
    }
}

/// The operations of a BITFIELD, or the first argument error (errors come before any key
/// lookup, as in Redis).
fn parse(ctx: &Ctx, a: &[Bytes]) -> Result<Vec<Op>, Reply> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        let sub = &a[j];
        let kind = if is(sub, "get") && left >= 2 {
            Kind::Get
        } else if is(sub, "set") && left >= 3 {
            Kind::Set(0)
        } else if is(sub, "incrby") && left >= 3 {
            Kind::IncrBy(0)
        } else if is(sub, "overflow") && left >= 1 {
            let t = &a[j + 1];
            overflow = if is(t, "wrap") {
                Overflow::Wrap
            } else if is(t, "sat") {
                Overflow::Sat
            } else if is(t, "fail") {
                Overflow::Fail
            } else {
                return Err(Reply::error("ERR Invalid OVERFLOW type specified"));
            };
            j += 2;
            continue;
        } else {
            return Err(syntax_error());
        };
        let (signed, bits) = field_type(&a[j + 1])?;
        let offset = bit_offset(ctx, &a[j + 2], Some(bits))?;
        let kind = match kind {
            Kind::Get => kind,
            Kind::Set(_) => Kind::Set(int_arg(&a[j + 3])?),
            Kind::IncrBy(_) => Kind::IncrBy(int_arg(&a[j + 3])?),
        };
        ops.push(Op {
            kind,
            offset,
            bits,
            signed,
            overflow,
        });
        j += if kind == Kind::Get { 3 } else { 4 };
    }
    Ok(ops)
}

/// `bits` bits from bit `offset` (most significant first); bits past the string read as 0.
fn get_bits(s: &[u8], offset: u64, bits: u32) -> u64 {
    (0..u64::from(bits)).fold(0, |v, i| {
        (v << 1) | u64::from(super::bitmaps::bit_at(s, offset + i))
    })
}

/// Stores the low `bits` bits of `value` at bit `offset` (inside `s`).
fn set_bits(s: &mut [u8], offset: u64, bits: u32, value: u64) {
    for i in 0..u64::from(bits) {
        let pos = offset + i;
        let Some(b) = usize::try_from(pos >> 3).ok().and_then(|at| s.get_mut(at)) else {
            return;
        };
        let mask = 0x80u8 >> (pos & 7);
        if (value >> (u64::from(bits) - 1 - i)) & 1 == 1 {
            *b |= mask;
        } else {
            *b &= !mask;
        }
    }
}

fn get_signed(s: &[u8], offset: u64, bits: u32) -> i64 {
    let mut v = get_bits(s, offset, bits);
    if bits < 64 && v & (1 << (bits - 1)) != 0 {
        v |= u64::MAX << bits;
    }
    v as i64
}

/// `value + incr` in an unsigned field of `bits` bits: `None` if it fits, else what WRAP or SAT
/// make of it (FAIL ignores it). A SET checks its value with `incr` 0.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<u64> {
    let max = (1u64 << bits) - 1;
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = (value as i64).wrapping_neg();
    let wrapped = value.wrapping_add(incr as u64) & max;
    if value > max || (incr > 0 && incr > max_incr) {
        Some(if ow == Overflow::Sat { max } else { wrapped })
    } else if incr < 0 && incr < min_incr {
        Some(if ow == Overflow::Sat { 0 } else { wrapped })
    } else {
        None
    }
}

/// As [`unsigned_overflow`] for a signed field (two's complement), with Redis's checks (and
/// their wrapping intermediate values) so the corner cases answer alike.
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<i64> {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let wrapped = {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr)
    {
        Some(if ow == Overflow::Sat { max } else { wrapped })
    } else if value < min
        || (bits != 64 && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        Some(if ow == Overflow::Sat { min } else { wrapped })
    } else {
        None
    }
}

/// Runs one SET or INCRBY on `s`: its reply and whether it changed the field.
fn write(s: &mut [u8], op: &Op) -> (Reply, bool) {
    let (delta, is_set) = match op.kind {
        Kind::Set(v) => (v, true),
        Kind::IncrBy(v) => (v, false),
        Kind::Get => return (read(s, op), false),
    };
    let (reply, old, new, overflowed) = if op.signed {
        let old = get_signed(s, op.offset, op.bits);
        let (new, over) = if is_set {
            match signed_overflow(delta, 0, op.bits, op.overflow) {
                Some(w) => (w, true),
                None => (delta, false),
            }
        } else {
            match signed_overflow(old, delta, op.bits, op.overflow) {
                Some(w) => (w, true),
                None => (old.wrapping_add(delta), false),
            }
        };
        let reply = if is_set { old } else { new };
        (reply, old as u64, new as u64, over)
    } else {
        let old = get_bits(s, op.offset, op.bits);
        let (new, over) = if is_set {
            match unsigned_overflow(delta as u64, 0, op.bits, op.overflow) {
                Some(w) => (w, true),
                None => (delta as u64, false),
            }
        } else {
            match unsigned_overflow(old, delta, op.bits, op.overflow) {
                Some(w) => (w, true),
                None => (old.wrapping_add(delta as u64), false),
            }
        };
        let reply = if is_set { old as i64 } else { new as i64 };
        (reply, old, new, over)
    };
    if overflowed && op.overflow == Overflow::Fail {
        return (Reply::Nil, false);
    }
    set_bits(s, op.offset, op.bits, new);
    (Reply::Int(reply), old != new)
}

fn read(s: &[u8], op: &Op) -> Reply {
    if op.signed {
        Reply::Int(get_signed(s, op.offset, op.bits))
    } else {
        Reply::Int(get_bits(s, op.offset, op.bits) as i64)
    }
}

/// Runs every operation in order on `s`: the replies and whether any changed `s`.
fn run_all(s: &mut [u8], ops: &[Op]) -> (Vec<Reply>, bool) {
    let mut changed = false;
    let replies = ops
        .iter()
        .map(|op| {
            let (r, c) = write(s, op);
            changed |= c;
            r
        })
        .collect();
    (replies, changed)
}

/// BITFIELD key [GET type offset | SET type offset value | INCRBY type offset increment |
/// OVERFLOW WRAP|SAT|FAIL ...]; BITFIELD_RO takes GETs only.
pub fn bitfield(ctx: &mut Ctx, a: &[Bytes], read_only: bool) -> Reply {
    let ops = match parse(ctx, a) {
        Ok(ops) => ops,
        Err(e) => return e,
    };
    let key = &a[1];
    let Some(highest) = ops
        .iter()
        .filter(|o| o.kind != Kind::Get)
        .map(|o| o.offset + u64::from(o.bits) - 1)
        .max()
    else {
        let s = match ctx.db.lookup(key) {
            None => &[][..],
            Some(e) => match e.str() {
                Some(s) => s,
                None => return WrongType.into(),
            },
        };
        return Reply::Array(ops.iter().map(|op| read(s, op)).collect());
    };
    if read_only {
        return Reply::error("ERR BITFIELD_RO only supports the GET subcommand");
    }
    let Ok(need) = usize::try_from((highest >> 3) + 1) else {
        return Reply::error(super::bitmaps::BAD_OFFSET);
    };
    let len = match ctx.db.get(key) {
        None => None,
        Some(e) => match e.str() {
            Some(s) => Some(s.len()),
            None => return WrongType.into(),
        },
    };
    let replies = match len {
        None => {
            // A new key: created even if every write failed its OVERFLOW FAIL check, as in
            // Redis (and propagated, so replicas hold it too).
            let mut s = vec![0u8; need];
            let (replies, _) = run_all(&mut s, &ops);
            ctx.db.set_raw_str(key, &s, None);
            replies
        }
        Some(len) => {
            edit_in_place(&mut ctx.db, key, len.max(need), |s| run_all(s, &ops)).unwrap_or_default()
        }
    };
    Reply::Array(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_at_odd_offsets() {
        let mut s = vec![0u8; 16];
        set_bits(&mut s, 3, 13, 0x1abc);
        assert_eq!(get_bits(&s, 3, 13), 0x1abc);
        set_bits(&mut s, 60, 64, u64::MAX - 5);
        assert_eq!(get_signed(&s, 60, 64), -6);
        set_bits(&mut s, 0, 5, 0b10000);
        assert_eq!(get_signed(&s, 0, 5), -16);
        assert_eq!(get_bits(&s, 0, 5), 16);
    }

    #[test]
    fn overflow_policies() {
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Wrap), Some(4));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Sat), Some(255));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Sat), Some(0));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Wrap), Some(251));
        assert_eq!(unsigned_overflow(5, 10, 8, Overflow::Wrap), None);
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Wrap), Some(-126));
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Sat), Some(127));
        assert_eq!(signed_overflow(-120, -10, 8, Overflow::Sat), Some(-128));
        assert_eq!(
            signed_overflow(i64::MAX, 1, 64, Overflow::Wrap),
            Some(i64::MIN)
        );
        assert_eq!(
            signed_overflow(i64::MAX, 1, 64, Overflow::Sat),
            Some(i64::MAX)
        );
        assert_eq!(signed_overflow(-5, 3, 64, Overflow::Sat), None);
    }
}
