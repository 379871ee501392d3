//! Bitmap commands: strings addressed bit by bit, the most significant bit of each byte first
//! (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP), and BITFIELD's integers of any width at any bit
//! offset (`bitfield.rs`).

use bytes::Bytes;
use ringcache_protocol::num::parse_i64;
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::Reply;

use super::args::{int_arg, is, syntax_error, unknown_command};
use super::ctx::Ctx;
use crate::keyspace::{Db, WrongType};

use super::bitfield;

pub const NAMES: &[&str] = &[
    "setbit",
    "getbit",
    "bitcount",
    "bitpos",
    "bitop",
    "bitfield",
    "bitfield_ro",
];

pub fn run(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    match spec.name {
        "setbit" => setbit(ctx, a),
        "getbit" => getbit(ctx, a),
        "bitcount" => bitcount(ctx, a),
        "bitpos" => bitpos(ctx, a),
        "bitop" => bitop(ctx, a),
        "bitfield" => bitfield::bitfield(ctx, a, false),
        "bitfield_ro" => bitfield::bitfield(ctx, a, true),
        _ => unknown_command(a),
    }
}

pub(crate) const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";

/// Parses a bit offset: a non-negative integer whose byte lies below `proto-max-bulk-len` (not
/// enforced on what a primary sends). With `hash_bits`, `#N` means N times that width
/// (BITFIELD).
pub(crate) fn bit_offset(ctx: &Ctx, arg: &[u8], hash_bits: Option<u32>) -> Result<u64, Reply> {
    let (digits, mul) = match (arg.split_first(), hash_bits) {
        (Some((b'#', rest)), Some(bits)) => (rest, i64::from(bits)),
        _ => (arg, 1),
    };
    let bad = || Reply::error(BAD_OFFSET);
    // Redis multiplies without an overflow check; wrapping keeps its answer.
    let n = parse_i64(digits).ok_or_else(bad)?.wrapping_mul(mul);
    if n < 0 || (!ctx.session.from_primary && (n >> 3) >= ctx.shared.config().limits.max_bulk_len) {
        return Err(bad());
    }
    Ok(n as u64)
}

/// Resizes the string at `key` to `len` bytes (zero-filled) and lets `edit` change it in place,
/// recording a change (replicas, WATCH) only if the length changed or `edit` says it changed
/// something: a SETBIT of a bit already set is no write, as in Redis. `None` if the key holds no
/// string.
pub(crate) fn edit_in_place<R>(
    db: &mut Db,
    key: &[u8],
    len: usize,
    edit: impl FnOnce(&mut [u8]) -> (R, bool),
) -> Option<R> {
    let ks = db.keyspace();
    let e = db.get_mut(key)?;
    let old_len = e.str()?.len();
    let before = e.mem_usage() as i64;
    let (r, changed) = e.edit_str(len, edit);
    ks.account(e.mem_usage() as i64 - before);
    if changed || len != old_len {
        db.touched(key);
    }
    Some(r)
}

pub(crate) fn bit_at(s: &[u8], pos: u64) -> bool {
    usize::try_from(pos >> 3)
        .ok()
        .and_then(|i| s.get(i))
        .is_some_and(|b| b & (0x80 >> (pos & 7)) != 0)
}

fn setbit(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let off = match bit_offset(ctx, &a[2], None) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let on = match parse_i64(&a[3]) {
        Some(v @ (0 | 1)) => v == 1,
        _ => return Reply::error("ERR bit is not an integer or out of range"),
    };
    let Ok(byte) = usize::try_from(off >> 3) else {
        return Reply::error(BAD_OFFSET);
    };
    let mask = 0x80u8 >> (off & 7);
    let db = &mut ctx.db;
    let key = &a[1];
    let len = match db.get(key) {
        None => None,
        Some(e) => match e.str() {
            Some(s) => Some(s.len()),
            None => return WrongType.into(),
        },
    };
    let Some(len) = len else {
        let mut v = vec![0u8; byte + 1];
        if on {
            v[byte] |= mask;
        }
        db.set_raw_str(key, &v, None);
        return Reply::Int(0);
    };
    let old = edit_in_place(db, key, len.max(byte + 1), |s| {
        let old = s[byte] & mask != 0;
        if on {
            s[byte] |= mask;
        } else {
            s[byte] &= !mask;
        }
        (old, old != on)
    });
    Reply::Int(i64::from(old.unwrap_or(false)))
}

fn getbit(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let off = match bit_offset(ctx, &a[2], None) {
        Ok(n) => n,
        Err(e) => return e,
    };
    match ctx.db.lookup(&a[1]) {
        None => Reply::Int(0),
        Some(e) => match e.str() {
            Some(s) => Reply::Int(i64::from(bit_at(s, off))),
            None => WrongType.into(),
        },
    }
}

/// Set bits in `s`, eight bytes at a time: each word's bit counts are summed per byte lane
/// (SWAR) and the lanes folded once per 31 words, before a lane could pass 255 (into 16-bit
/// lanes first: the eight together may).
pub fn popcount(s: &[u8]) -> u64 {
    const M1: u64 = 0x5555_5555_5555_5555;
    const M2: u64 = 0x3333_3333_3333_3333;
    const M4: u64 = 0x0f0f_0f0f_0f0f_0f0f;
    const L16: u64 = 0x00ff_00ff_00ff_00ff;
    let fold = |l: u64| ((l & L16) + ((l >> 8) & L16)).wrapping_mul(0x0001_0001_0001_0001) >> 48;
    let mut words = s.chunks_exact(8);
    let mut total = 0u64;
    let mut lanes = 0u64;
    let mut pending = 0;
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let mut x = u64::from_ne_bytes(b);
        x -= (x >> 1) & M1;
        x = (x & M2) + ((x >> 2) & M2);
        lanes += (x + (x >> 4)) & M4;
        pending += 1;
        if pending == 31 {
            total += fold(lanes);
            lanes = 0;
            pending = 0;
        }
    }
    total += fold(lanes);
    total
        + words
            .remainder()
            .iter()
            .map(|b| u64::from(b.count_ones()))
            .sum::<u64>()
}

/// A BITCOUNT / BITPOS range made absolute: negative indexes count from the end, then both are
/// clamped into the string. In bits when `bits`, else in bytes.
fn clamp_range(start: i64, end: i64, len: usize, bits: bool) -> (i64, i64) {
    let total = if bits { (len as i64) << 3 } else { len as i64 };
    let start = if start < 0 { total + start } else { start }.max(0);
    let end = if end < 0 { total + end } else { end }
        .max(0)
        .min(total - 1);
    (start, end)
}

fn unit(arg: &[u8]) -> Result<bool, Reply> {
    if is(arg, "bit") {
        Ok(true)
    } else if is(arg, "byte") {
        Ok(false)
    } else {
        Err(syntax_error())
    }
}

/// BITCOUNT key [start end [BYTE|BIT]]. A missing key counts 0 before its arguments are looked
/// at, as in Redis.
fn bitcount(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let s = match ctx.db.lookup(&a[1]) {
        None => return Reply::Int(0),
        Some(e) => match e.str() {
            Some(s) => s,
            None => return WrongType.into(),
        },
    };
    let (from, to) = match a.len() {
        2 => (0, (s.len() as i64 * 8) - 1),
        4 | 5 => {
            let (start, end) = match (int_arg(&a[2]), int_arg(&a[3])) {
                (Ok(s), Ok(e)) => (s, e),
                (Err(e), _) | (_, Err(e)) => return e,
            };
            if start < 0 && end < 0 && start > end {
                return Reply::Int(0);
            }
            let bits = match a.get(4).map(|u| unit(u)).transpose() {
                Ok(b) => b.unwrap_or(false),
                Err(e) => return e,
            };
            let (start, end) = clamp_range(start, end, s.len(), bits);
            if bits {
                (start, end)
            } else {
                (start * 8, end * 8 + 7)
            }
        }
        _ => return syntax_error(),
    };
    if from > to {
        return Reply::Int(0);
    }
    let (fb, lb) = ((from >> 3) as usize, (to >> 3) as usize);
    let Some(bytes) = s.get(fb..=lb) else {
        return Reply::Int(0);
    };
    let mut n = popcount(bytes);
    // Take off the bits of the edge bytes outside the range.
    let head = s[fb] & !(0xffu8 >> (from & 7));
    let tail = s[lb] & (0xffu8 >> (to & 7)) >> 1;
    n -= u64::from(head.count_ones() + tail.count_ones());
    Reply::Int(n as i64)
}

/// The first bit equal to `bit` among bits `from..=to` of `s` (both inside `s`).
fn find_bit(s: &[u8], from: u64, to: u64, bit: bool) -> Option<u64> {
    let (fb, lb) = ((from >> 3) as usize, (to >> 3) as usize);
    let bytes = s.get(fb..=lb)?;
    let skip = if bit { 0u8 } else { 0xff };
    let n = bytes.len();
    let mut k = 0;
    while k < n {
        if k > 0 && k + 8 < n {
            // Whole words between the edge bytes that hold no candidate.
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[k..k + 8]);
            if u64::from_ne_bytes(w) == u64::from_ne_bytes([skip; 8]) {
                k += 8;
                continue;
            }
        }
        let mut x = if bit { bytes[k] } else { !bytes[k] };
        if k == 0 {
            x &= 0xff >> (from & 7);
        }
        if k == n - 1 {
            x &= 0xff << (7 - (to & 7));
        }
        if x != 0 {
            return Some((fb + k) as u64 * 8 + u64::from(x.leading_zeros()));
        }
        k += 1;
    }
    None
}

/// BITPOS key bit [start [end [BYTE|BIT]]]. Past the end of the string there are only zeros,
/// so a clear bit is found there, unless an end was given.
fn bitpos(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let bit = match int_arg(&a[2]) {
        Ok(b @ (0 | 1)) => b == 1,
        Ok(_) => return Reply::error("ERR The bit argument must be 1 or 0."),
        Err(e) => return e,
    };
    let s = match ctx.db.lookup(&a[1]) {
        None => return Reply::Int(if bit { -1 } else { 0 }),
        Some(e) => match e.str() {
            Some(s) => s,
            None => return WrongType.into(),
        },
    };
    let len = s.len() as i64;
    let (from, to, end_given) = match a.len() {
        3 => (0, len * 8 - 1, false),
        4..=6 => {
            let start = match int_arg(&a[3]) {
                Ok(n) => n,
                Err(e) => return e,
            };
            let bits = match a.get(5).map(|u| unit(u)).transpose() {
                Ok(b) => b.unwrap_or(false),
                Err(e) => return e,
            };
            let end = match a.get(4).map(|e| int_arg(e)).transpose() {
                Ok(Some(n)) => n,
                Ok(None) if bits => (len << 3) + 7,
                Ok(None) => len - 1,
                Err(e) => return e,
            };
            let (start, end) = clamp_range(start, end, s.len(), bits);
            if bits {
                (start, end, a.len() >= 5)
            } else {
                (start * 8, end * 8 + 7, a.len() >= 5)
            }
        }
        _ => return syntax_error(),
    };
    if from > to {
        return Reply::Int(-1);
    }
    match find_bit(s, from as u64, to as u64, bit) {
        Some(p) => Reply::Int(p as i64),
        None if bit || end_given => Reply::Int(-1),
        None => Reply::Int(to + 1),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// BITOP op dest key [key ...]: shorter strings (and missing keys) count as zero-padded; the
/// result is as long as the longest, and an empty result deletes `dest`.
fn bitop(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let op = if is(&a[1], "and") {
        BitOp::And
    } else if is(&a[1], "or") {
        BitOp::Or
    } else if is(&a[1], "xor") {
        BitOp::Xor
    } else if is(&a[1], "not") {
        BitOp::Not
    } else {
        return syntax_error();
    };
    if op == BitOp::Not && a.len() != 4 {
        return Reply::error("ERR BITOP NOT must be called with a single source key.");
    }
    let mut res: Vec<u8> = Vec::new();
    for (j, key) in a[3..].iter().enumerate() {
        let s = match ctx.db.lookup(key) {
            None => &[][..],
            Some(e) => match e.str() {
                Some(s) => s,
                None => return WrongType.into(),
            },
        };
        if j == 0 {
            res = s.to_vec();
            if op == BitOp::Not {
                res.iter_mut().for_each(|b| *b = !*b);
            }
            continue;
        }
        if s.len() > res.len() {
            res.resize(s.len(), 0);
        }
        let (head, rest) = res.split_at_mut(s.len());
        match op {
            BitOp::And => {
                head.iter_mut().zip(s).for_each(|(r, x)| *r &= x);
                rest.fill(0);
            }
            BitOp::Or => head.iter_mut().zip(s).for_each(|(r, x)| *r |= x),
            BitOp::Xor => head.iter_mut().zip(s).for_each(|(r, x)| *r ^= x),
            BitOp::Not => {}
        }
    }
    let n = res.len();
    if n > 0 {
        ctx.db.set_raw_str(&a[2], &res, None);
    } else {
        ctx.db.remove(&a[2]);
    }
    Reply::Int(n as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popcount_counts_every_length() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 37 % 251) as u8).collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 247, 248, 249, 1000] {
            let want: u64 = data[..len].iter().map(|b| u64::from(b.count_ones())).sum();
            assert_eq!(popcount(&data[..len]), want, "len {len}");
        }
        assert_eq!(popcount(&[0xff; 4096]), 4096 * 8);
    }

    #[test]
    fn find_bit_respects_edges() {
        let s = [0x00, 0xff, 0x00];
        assert_eq!(find_bit(&s, 0, 23, true), Some(8));
        assert_eq!(find_bit(&s, 9, 23, true), Some(9));
        assert_eq!(find_bit(&s, 16, 23, true), None);
        assert_eq!(find_bit(&s, 8, 15, false), None);
        assert_eq!(find_bit(&s, 3, 23, false), Some(3));
        let mut long = vec![0xffu8; 100];
        long[77] = 0xfe;
        assert_eq!(find_bit(&long, 5, 799, false), Some(77 * 8 + 7));
        assert_eq!(find_bit(&long, 5, 77 * 8 + 6, false), None);
    }
}
