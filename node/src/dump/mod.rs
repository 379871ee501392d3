//! Values as bytes: the payload of DUMP and RESTORE, in Redis's own format (an RDB object, the
//! RDB version, a CRC64), so a value dumped here restores on Redis and back. Replication
//! snapshots and migrations carry values the same way.
//!
//! Written: strings, plain lists, sets, hashes and sorted sets with binary scores (types 0, 1,
//! 2, 4, 5). Read: those, old-style sorted sets (3), integer and LZF-compressed strings, and the
//! compact encodings Redis 7.0 dumps (intset 11, listpacks 16, 17, 20, quicklist 18, ziplists
//! 10, 12, 13 and quicklist 14) and streams (15, 19), so a payload from a real Redis 7.0 restores
//! here. Streams are written in ringcache's own layout under a type byte of their own
//! (`types::stream::codec`): Redis does not read them back.

mod stream;

use crate::keyspace::entry::{Entry, ValueRef};
use crate::types::{Hash, Limits, List, Set, Value, ZSet};

const RDB_VERSION: u16 = 10;

const T_STRING: u8 = 0;
const T_LIST: u8 = 1;
const T_SET: u8 = 2;
const T_ZSET: u8 = 3;
const T_HASH: u8 = 4;
const T_ZSET_2: u8 = 5;
const T_HASH_ZIPLIST: u8 = 13;
const T_ZSET_ZIPLIST: u8 = 12;
const T_LIST_ZIPLIST: u8 = 10;
const T_SET_INTSET: u8 = 11;
const T_LIST_QUICKLIST: u8 = 14;
const T_HASH_LISTPACK: u8 = 16;
const T_ZSET_LISTPACK: u8 = 17;
const T_LIST_QUICKLIST_2: u8 = 18;
const T_SET_LISTPACK: u8 = 20;
const T_STREAM_LISTPACKS: u8 = 15;
const T_STREAM_LISTPACKS_2: u8 = 19;
/// Streams in ringcache's own layout (`types::stream::codec`), a type byte Redis does not use.
const T_STREAM_RINGCACHE: u8 = 0xC5;

/// Why a payload does not restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPayload;

/// The answer to RESTORE with a payload that does not parse (Redis's wording).
pub const BAD_PAYLOAD: &str = "ERR DUMP payload version or checksum are wrong";

fn crc64_table() -> &'static [u64; 256] {
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        // Jones polynomial, reflected (Redis's crc64).
        const POLY: u64 = 0x95AC_9329_AC4B_C9B5;
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u64;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *slot = c;
        }
        t
    })
}

pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    let t = crc64_table();
    for &b in data {
        crc = t[((crc ^ u64::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u32::MAX as usize {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len());
    out.extend_from_slice(s);
}

/// The RDB object for a value (type byte first).
pub fn encode_value(v: ValueRef<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        ValueRef::Str(s) => {
            out.push(T_STRING);
            put_str(&mut out, s);
        }
        ValueRef::Obj(Value::List(l)) => {
            out.push(T_LIST);
            put_len(&mut out, l.len());
            for item in l.iter() {
                put_str(&mut out, item);
            }
        }
        ValueRef::Obj(Value::Set(s)) => {
            out.push(T_SET);
            put_len(&mut out, s.len());
            for m in s.iter() {
                put_str(&mut out, &m);
            }
        }
        ValueRef::Obj(Value::Hash(h)) => {
            out.push(T_HASH);
            put_len(&mut out, h.len());
            for (f, v) in h.iter() {
                put_str(&mut out, f);
                put_str(&mut out, v);
            }
        }
        ValueRef::Obj(Value::ZSet(z)) => {
            out.push(T_ZSET_2);
            put_len(&mut out, z.len());
            // Redis writes the highest score first so loading appends at the head cheaply; any
            // order restores the same set.
            for (m, score) in z.iter() {
                put_str(&mut out, m);
                out.extend_from_slice(&score.to_le_bytes());
            }
        }
        ValueRef::Obj(Value::Stream(s)) => {
            out.push(T_STREAM_RINGCACHE);
            crate::types::stream::codec::encode(s, &mut out);
        }
    }
    out
}

/// DUMP's payload: the RDB object, the RDB version and a CRC64 of both.
pub fn dump(v: ValueRef<'_>) -> Vec<u8> {
    let mut out = encode_value(v);
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// What a payload restores to: a string or another value.
#[derive(Debug)]
pub enum Restored {
    Str(Vec<u8>),
    Obj(Value),
}

impl Restored {
    /// The entry holding this value at `key`.
    pub fn into_entry(self, key: &[u8], deadline: Option<i64>) -> Entry {
        match self {
            Restored::Str(s) => Entry::string(key, &s, deadline),
            Restored::Obj(v) => Entry::object(key, v, deadline),
        }
    }
}

/// Checks the footer (version, CRC) and decodes a DUMP payload.
pub fn restore(payload: &[u8], limits: &Limits) -> Result<Restored, BadPayload> {
    if payload.len() < 10 {
        return Err(BadPayload);
    }
    let (body, footer) = payload.split_at(payload.len() - 10);
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    if version > RDB_VERSION + 1 {
        return Err(BadPayload);
    }
    let crc = u64::from_le_bytes(footer[2..10].try_into().map_err(|_| BadPayload)?);
    // A zero CRC means "not computed" (Redis accepts it too).
    if crc != 0 && crc64(0, &payload[..payload.len() - 8]) != crc {
        return Err(BadPayload);
    }
    let mut r = Reader { b: body, at: 0 };
    let v = r.value(limits)?;
    if r.at != body.len() {
        return Err(BadPayload);
    }
    Ok(v)
}

/// The value of `entry` as a payload (DUMP).
pub fn dump_entry(entry: &Entry) -> Vec<u8> {
    dump(entry.value())
}

/// Appends `RESTORE <key> <deadline or 0> <payload> REPLACE ABSTTL`: the command that recreates
/// `entry` elsewhere (a migration target) with the same absolute deadline.
pub fn restore_request(out: &mut bytes::BytesMut, entry: &Entry) {
    let deadline = entry.deadline().unwrap_or(0).to_string();
    let payload = dump_entry(entry);
    ringcache_protocol::resp::encode_request(
        out,
        [
            &b"RESTORE"[..],
            entry.key(),
            deadline.as_bytes(),
            &payload,
            b"REPLACE",
            b"ABSTTL",
        ],
    );
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, BadPayload> {
        let v = *self.b.get(self.at).ok_or(BadPayload)?;
        self.at += 1;
        Ok(v)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BadPayload> {
        let end = self.at.checked_add(n).ok_or(BadPayload)?;
        let s = self.b.get(self.at..end).ok_or(BadPayload)?;
        self.at = end;
        Ok(s)
    }

    /// A length, or `Err(Some(kind))` for the special string encodings.
    fn len_or_special(&mut self) -> Result<Result<usize, u8>, BadPayload> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => Ok((first & 0x3F) as usize),
            1 => Ok((((first & 0x3F) as usize) << 8) | self.byte()? as usize),
            2 => match first {
                0x80 => {
                    let b = self.take(4)?;
                    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                }
                0x81 => {
                    let b = self.take(8)?;
                    let n = u64::from_be_bytes(b.try_into().map_err(|_| BadPayload)?);
                    Ok(usize::try_from(n).map_err(|_| BadPayload)?)
                }
                _ => return Err(BadPayload),
            },
            _ => Err(first & 0x3F),
        })
    }

    fn len(&mut self) -> Result<usize, BadPayload> {
        let n = self.len_or_special()?.map_err(|_| BadPayload)?;
        // Counts bound allocations: no element takes less than one byte.
        if n > self.b.len() {
            return Err(BadPayload);
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<Vec<u8>, BadPayload> {
        match self.len_or_special()? {
            Ok(n) => Ok(self.take(n)?.to_vec()),
            Err(0) => Ok((self.byte()? as i8).to_string().into_bytes()),
            Err(1) => {
                let b = self.take(2)?;
                Ok(i16::from_le_bytes([b[0], b[1]]).to_string().into_bytes())
            }
            Err(2) => {
                let b = self.take(4)?;
                Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]])
                    .to_string()
                    .into_bytes())
            }
            Err(3) => {
                let clen = self.len()?;
                let ulen = self.len_or_special()?.map_err(|_| BadPayload)?;
                if ulen > 512 * 1024 * 1024 {
                    return Err(BadPayload);
                }
                lzf_decompress(self.take(clen)?, ulen)
            }
            Err(_) => Err(BadPayload),
        }
    }

    fn value(&mut self, limits: &Limits) -> Result<Restored, BadPayload> {
        let t = self.byte()?;
        let v = match t {
            T_STRING => return Ok(Restored::Str(self.string()?)),
            // A stream may be empty (XDEL keeps the key): returned before the check below.
            T_STREAM_RINGCACHE => {
                let rest = self.b.get(self.at..).ok_or(BadPayload)?;
                let (s, used) =
                    crate::types::stream::codec::decode(rest, limits).map_err(|_| BadPayload)?;
                self.at += used;
                return Ok(Restored::Obj(Value::Stream(Box::new(s))));
            }
            T_STREAM_LISTPACKS | T_STREAM_LISTPACKS_2 => {
                let s = stream::read_redis_stream(self, t == T_STREAM_LISTPACKS_2, limits)?;
                return Ok(Restored::Obj(Value::Stream(Box::new(s))));
            }
            T_LIST => {
                let n = self.len()?;
                let mut l = List::default();
                for _ in 0..n {
                    l.push_back(&self.string()?, limits);
                }
                Value::List(l)
            }
            T_SET => {
                let n = self.len()?;
                let mut s = Set::default();
                for _ in 0..n {
                    s.insert(&self.string()?, limits);
                }
                Value::Set(s)
            }
            T_ZSET | T_ZSET_2 => {
                let n = self.len()?;
                let mut z = ZSet::default();
                for _ in 0..n {
                    let m = self.string()?;
                    let score = if t == T_ZSET_2 {
                        let b = self.take(8)?;
                        f64::from_le_bytes(b.try_into().map_err(|_| BadPayload)?)
                    } else {
                        let len = self.byte()?;
                        let text = match len {
                            253 => "nan".to_string(),
                            254 => "inf".to_string(),
                            255 => "-inf".to_string(),
                            n => String::from_utf8_lossy(self.take(n as usize)?).into_owned(),
                        };
                        text.parse().map_err(|_| BadPayload)?
                    };
                    if score.is_nan() {
                        return Err(BadPayload);
                    }
                    z.insert(&m, score, limits);
                }
                Value::ZSet(z)
            }
            T_HASH => {
                let n = self.len()?;
                let mut h = Hash::default();
                for _ in 0..n {
                    let f = self.string()?;
                    let v = self.string()?;
                    h.set(&f, &v, limits);
                }
                Value::Hash(h)
            }
            T_SET_INTSET => {
                let blob = self.string()?;
                let mut s = Set::default();
                for m in intset_members(&blob)? {
                    s.insert(m.to_string().as_bytes(), limits);
                }
                Value::Set(s)
            }
            T_HASH_LISTPACK | T_HASH_ZIPLIST => {
                let items = packed_items(t, &self.string()?)?;
                if items.len() % 2 != 0 {
                    return Err(BadPayload);
                }
                let mut h = Hash::default();
                for pair in items.chunks(2) {
                    h.set(&pair[0], &pair[1], limits);
                }
                Value::Hash(h)
            }
            T_ZSET_LISTPACK | T_ZSET_ZIPLIST => {
                let items = packed_items(t, &self.string()?)?;
                if items.len() % 2 != 0 {
                    return Err(BadPayload);
                }
                let mut z = ZSet::default();
                for pair in items.chunks(2) {
                    let score: f64 = std::str::from_utf8(&pair[1])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or(BadPayload)?;
                    z.insert(&pair[0], score, limits);
                }
                Value::ZSet(z)
            }
            T_SET_LISTPACK => {
                let mut s = Set::default();
                for m in packed_items(t, &self.string()?)? {
                    s.insert(&m, limits);
                }
                Value::Set(s)
            }
            T_LIST_ZIPLIST => {
                let mut l = List::default();
                for m in packed_items(t, &self.string()?)? {
                    l.push_back(&m, limits);
                }
                Value::List(l)
            }
            T_LIST_QUICKLIST | T_LIST_QUICKLIST_2 => {
                let nodes = self.len()?;
                let mut l = List::default();
                for _ in 0..nodes {
                    // Quicklist 2 nodes carry a container kind: 1 plain (one element), 2 packed.
                    let container = if t == T_LIST_QUICKLIST_2 {
                        self.len()?
                    } else {
                        2
                    };
                    let blob = self.string()?;
                    if container == 1 {
                        l.push_back(&blob, limits);
                        continue;
                    }
                    let kind = if t == T_LIST_QUICKLIST {
                        T_LIST_ZIPLIST
                    } else {
                        T_LIST_QUICKLIST_2
                    };
                    for m in packed_items(kind, &blob)? {
                        l.push_back(&m, limits);
                    }
                }
                Value::List(l)
            }
            _ => return Err(BadPayload),
        };
        if v.is_empty() {
            return Err(BadPayload);
        }
        Ok(Restored::Obj(v))
    }
}

/// Redis's LZF decompression.
fn lzf_decompress(input: &[u8], out_len: usize) -> Result<Vec<u8>, BadPayload> {
    let mut out = Vec::with_capacity(out_len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            out.extend_from_slice(input.get(i..i + n).ok_or(BadPayload)?);
            i += n;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i).ok_or(BadPayload)? as usize;
                i += 1;
            }
            let back = ((ctrl & 0x1F) << 8) + *input.get(i).ok_or(BadPayload)? as usize + 1;
            i += 1;
            let start = out.len().checked_sub(back).ok_or(BadPayload)?;
            for k in 0..len + 2 {
                let b = out[start + k];
                out.push(b);
            }
        }
        if out.len() > out_len {
            return Err(BadPayload);
        }
    }
    if out.len() != out_len {
        return Err(BadPayload);
    }
    Ok(out)
}

fn intset_members(blob: &[u8]) -> Result<Vec<i64>, BadPayload> {
    if blob.len() < 8 {
        return Err(BadPayload);
    }
    let width = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
    let n = u32::from_le_bytes([blob[4], blob[5], blob[6], blob[7]]) as usize;
    if !matches!(width, 2 | 4 | 8) || blob.len() != 8 + width * n {
        return Err(BadPayload);
    }
    Ok(blob[8..]
        .chunks(width)
        .map(|c| match width {
            2 => i64::from(i16::from_le_bytes([c[0], c[1]])),
            4 => i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            _ => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// The elements of a Redis listpack (types 16–20) or ziplist (10, 12, 13), as strings.
fn packed_items(kind: u8, blob: &[u8]) -> Result<Vec<Vec<u8>>, BadPayload> {
    if matches!(kind, T_LIST_ZIPLIST | T_ZSET_ZIPLIST | T_HASH_ZIPLIST) {
        ziplist_items(blob)
    } else {
        listpack_items(blob)
    }
}

fn listpack_items(b: &[u8]) -> Result<Vec<Vec<u8>>, BadPayload> {
    if b.len() < 7 || u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize != b.len() {
        return Err(BadPayload);
    }
    let mut out = Vec::new();
    let mut i = 6;
    loop {
        let e = *b.get(i).ok_or(BadPayload)?;
        if e == 0xFF {
            break;
        }
        let (item, enc_len): (Vec<u8>, usize) = if e & 0x80 == 0 {
            ((e & 0x7F).to_string().into_bytes(), 1)
        } else if e & 0xC0 == 0x80 {
            let n = (e & 0x3F) as usize;
            (b.get(i + 1..i + 1 + n).ok_or(BadPayload)?.to_vec(), 1 + n)
        } else if e & 0xE0 == 0xC0 {
            let hi = (e & 0x1F) as i64;
            let v = (hi << 8) | *b.get(i + 1).ok_or(BadPayload)? as i64;
            // 13-bit two's complement.
            let v = if v >= 1 << 12 { v - (1 << 13) } else { v };
            (v.to_string().into_bytes(), 2)
        } else if e & 0xF0 == 0xE0 {
            let n = (((e & 0x0F) as usize) << 8) | *b.get(i + 1).ok_or(BadPayload)? as usize;
            (b.get(i + 2..i + 2 + n).ok_or(BadPayload)?.to_vec(), 2 + n)
        } else {
            let int = |w: usize| -> Result<i64, BadPayload> {
                let s = b.get(i + 1..i + 1 + w).ok_or(BadPayload)?;
                let mut buf = [0u8; 8];
                buf[..w].copy_from_slice(s);
                let v = i64::from_le_bytes(buf);
                let shift = 64 - 8 * w as u32;
                Ok((v << shift) >> shift)
            };
            match e {
                0xF0 => {
                    let s = b.get(i + 1..i + 5).ok_or(BadPayload)?;
                    let n = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
                    (b.get(i + 5..i + 5 + n).ok_or(BadPayload)?.to_vec(), 5 + n)
                }
                0xF1 => (int(2)?.to_string().into_bytes(), 3),
                0xF2 => (int(3)?.to_string().into_bytes(), 4),
                0xF3 => (int(4)?.to_string().into_bytes(), 5),
                0xF4 => (int(8)?.to_string().into_bytes(), 9),
                _ => return Err(BadPayload),
            }
        };
        // The back-length field: 1 to 5 bytes, 7 bits each.
        let back = match enc_len {
            0..=127 => 1,
            128..=16383 => 2,
            16384..=2097151 => 3,
            2097152..=268435455 => 4,
            _ => 5,
        };
        i += enc_len + back;
        out.push(item);
    }
    Ok(out)
}

fn ziplist_items(b: &[u8]) -> Result<Vec<Vec<u8>>, BadPayload> {
    if b.len() < 11 || u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize != b.len() {
        return Err(BadPayload);
    }
    let mut out = Vec::new();
    let mut i = 10;
    loop {
        let prev = *b.get(i).ok_or(BadPayload)?;
        if prev == 0xFF {
            break;
        }
        i += if prev == 0xFE { 5 } else { 1 };
        let e = *b.get(i).ok_or(BadPayload)?;
        let take = |at: usize, n: usize| b.get(at..at + n).ok_or(BadPayload);
        let (item, len) = match e >> 6 {
            0 => {
                let n = (e & 0x3F) as usize;
                (take(i + 1, n)?.to_vec(), 1 + n)
            }
            1 => {
                let n = (((e & 0x3F) as usize) << 8) | *b.get(i + 1).ok_or(BadPayload)? as usize;
                (take(i + 2, n)?.to_vec(), 2 + n)
            }
            2 => {
                let s = take(i + 1, 4)?;
                let n = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
                (take(i + 5, n)?.to_vec(), 5 + n)
            }
            _ => {
                let (v, w): (i64, usize) = match e {
                    0xC0 => {
                        let s = take(i + 1, 2)?;
                        (i64::from(i16::from_le_bytes([s[0], s[1]])), 2)
                    }
                    0xD0 => {
                        let s = take(i + 1, 4)?;
                        (i64::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]])), 4)
                    }
                    0xE0 => {
                        let s = take(i + 1, 8)?;
                        (i64::from_le_bytes(s.try_into().map_err(|_| BadPayload)?), 8)
                    }
                    0xF0 => {
                        let s = take(i + 1, 3)?;
                        let v = i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8;
                        (i64::from(v), 3)
                    }
                    0xFE => (i64::from(*b.get(i + 1).ok_or(BadPayload)? as i8), 1),
                    0xF1..=0xFD => (i64::from(e & 0x0F) - 1, 0),
                    _ => return Err(BadPayload),
                };
                (v.to_string().into_bytes(), 1 + w)
            }
        };
        i += len;
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn crc64_matches_redis() {
        // Redis's crc64 test vector.
        assert_eq!(crc64(0, b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn string_round_trip_and_redis_payload() {
        let p = dump(ValueRef::Str(b"hello"));
        match restore(&p, &Limits::default()).unwrap() {
            Restored::Str(s) => assert_eq!(s, b"hello"),
            Restored::Obj(_) => panic!("not a string"),
        }
        // DUMP of SET k 123 on Redis 7.0.15 (an integer-encoded string).
        let redis = b"\x00\xc0{\n\x00H\xe2S\xe1\x00zg\xb9";
        match restore(redis, &Limits::default()) {
            Ok(Restored::Str(s)) => assert_eq!(s, b"123"),
            other => panic!("{other:?}"),
        }
        let mut bad = p.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(restore(&bad, &Limits::default()).is_err());
        assert!(restore(b"", &Limits::default()).is_err());
    }

    /// Payloads DUMPed by redis-server 7.0.15 restore to the same values.
    #[test]
    fn redis_payloads_restore() {
        let l = Limits::default();
        let obj = |p: &[u8]| match restore(p, &l) {
            Ok(Restored::Obj(v)) => v,
            other => panic!("{other:?}"),
        };
        // HSET h f1 v1 f2 22 (listpack).
        let h = obj(b"\x10\x15\x15\x00\x00\x00\x04\x00\x82f1\x03\x82v1\x03\x82f2\x03\x16\x01\xff\n\x00yN\xe6.\x9cH\xa9\x0c");
        let Value::Hash(h) = h else {
            panic!("not a hash")
        };
        assert_eq!(h.get(b"f2"), Some(&b"22"[..]));
        // RPUSH l a bb 123 -5000 x*70 with list-max-listpack-size 1 (quicklist of listpacks,
        // the last one LZF-compressed).
        let l2 = obj(b"\x12\x05\x02\n\n\x00\x00\x00\x01\x00\x81a\x02\xff\x02\x0b\x0b\x00\x00\x00\x01\x00\x82bb\x03\xff\x02\t\t\x00\x00\x00\x01\x00{\x01\xff\x02\x0b\x0b\x00\x00\x00\x01\x00\xf1x\xec\x03\xff\x02\xc3\x10@P\x08P\x00\x00\x00\x01\x00\xe0Fx\xe0<\x00\x01H\xff\n\x00\x7f\x97\xea)\xd2\xf2\xad_");
        let Value::List(l2) = l2 else {
            panic!("not a list")
        };
        let items: Vec<Vec<u8>> = l2.iter().map(<[u8]>::to_vec).collect();
        assert_eq!(
            items[..4],
            [
                b"a".to_vec(),
                b"bb".to_vec(),
                b"123".to_vec(),
                b"-5000".to_vec()
            ]
        );
        assert_eq!(items[4], vec![b'x'; 70]);
        // SADD s 1 2 300 70000 (intset).
        let s = obj(b"\x0b\x18\x04\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00,\x01\x00\x00p\x11\x01\x00\n\x00\x14@\xc9\xb9\xe6\xeb^j");
        assert_eq!(s.len(), 4);
        // ZADD z 1.5 a -2 b (listpack).
        let z = obj(b"\x11\x15\x15\x00\x00\x00\x04\x00\x81b\x02\xdf\xfe\x02\x81a\x02\x831.5\x04\xff\n\x00l5\x9d\xf63\xd0\x8b]");
        let Value::ZSet(z) = z else {
            panic!("not a zset")
        };
        let items: Vec<(Vec<u8>, f64)> = z.iter().map(|(m, s)| (m.to_vec(), s)).collect();
        assert!(items.contains(&(b"b".to_vec(), -2.0)) && items.contains(&(b"a".to_vec(), 1.5)));
    }

    #[test]
    fn hash_round_trip() {
        let l = Limits::default();
        let mut h = Hash::default();
        h.set(b"f1", b"v1", &l);
        h.set(b"f2", b"v2", &l);
        let p = dump(ValueRef::Obj(&Value::Hash(h)));
        match restore(&p, &l).unwrap() {
            Restored::Obj(Value::Hash(h)) => {
                assert_eq!(h.len(), 2);
                assert_eq!(h.get(b"f2"), Some(&b"v2"[..]));
            }
            other => panic!("{other:?}"),
        }
    }
}
