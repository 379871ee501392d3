//! A stream as bytes for DUMP/RESTORE and migration: a private, versioned layout (Redis's RDB
//! stream encoding is not used; the DUMP footer's CRC64 covers it). Varints are LEB128; strings
//! are a varint length then their bytes.
//!
//! Layout (version 1): version byte; last id, largest deleted id, entries added; entries (count,
//! then id and packed fields each); groups (count, then name, last id, entries read + 1,
//! consumers (count, name, seen time), pending (count, id, consumer, delivery time, count)).

use bytes::Bytes;

use super::{Group, Stream, StreamId};
use crate::types::Limits;

const VERSION: u8 = 1;

fn put_u64(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_id(out: &mut Vec<u8>, id: StreamId) {
    put_u64(out, id.ms);
    put_u64(out, id.seq);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub fn encode(s: &Stream, out: &mut Vec<u8>) {
    out.push(VERSION);
    put_id(out, s.last_id);
    put_id(out, s.max_deleted);
    put_u64(out, s.entries_added);
    put_u64(out, s.len() as u64);
    for (id, packed) in s.entries.range(StreamId::MIN, StreamId::MAX) {
        put_id(out, id);
        put_bytes(out, packed);
    }
    put_u64(out, s.groups.len() as u64);
    for (name, g) in &s.groups {
        put_bytes(out, name);
        put_id(out, g.last_id);
        put_u64(out, (g.entries_read + 1) as u64);
        put_u64(out, g.consumers.len() as u64);
        for (cname, c) in &g.consumers {
            put_bytes(out, cname);
            put_u64(out, c.seen_time as u64);
        }
        put_u64(out, g.pel.len() as u64);
        for (id, p) in &g.pel {
            put_id(out, *id);
            put_bytes(out, &p.consumer);
            put_u64(out, p.delivery_time as u64);
            put_u64(out, p.delivery_count);
        }
    }
}

/// A malformed stream payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn u64(&mut self) -> Result<u64, Malformed> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.b.get(self.at).ok_or(Malformed)?;
            self.at += 1;
            n |= u64::from(b & 0x7f).checked_shl(shift).ok_or(Malformed)?;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(Malformed)
    }

    /// A count, bounded by the bytes left (every item takes at least one).
    fn count(&mut self) -> Result<usize, Malformed> {
        let n = usize::try_from(self.u64()?).map_err(|_| Malformed)?;
        if n > self.b.len() - self.at {
            return Err(Malformed);
        }
        Ok(n)
    }

    fn id(&mut self) -> Result<StreamId, Malformed> {
        Ok(StreamId::new(self.u64()?, self.u64()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.count()?;
        let s = self.b.get(self.at..self.at + n).ok_or(Malformed)?;
        self.at += n;
        Ok(s)
    }
}

/// Decodes a stream from the start of `b`: the stream and the bytes it took.
pub fn decode(b: &[u8], lim: &Limits) -> Result<(Stream, usize), Malformed> {
    let mut c = Cursor { b, at: 0 };
    if c.b.first() != Some(&VERSION) {
        return Err(Malformed);
    }
    c.at = 1;
    let mut s = Stream {
        last_id: c.id()?,
        max_deleted: c.id()?,
        entries_added: c.u64()?,
        ..Stream::default()
    };
    let n = c.count()?;
    let mut prev: Option<StreamId> = None;
    for _ in 0..n {
        let id = c.id()?;
        let packed = c.bytes()?;
        let fields = super::unpack(packed).count();
        let used: usize = super::unpack(packed).map(|f| f.len()).sum::<usize>();
        if prev.is_some_and(|p| p >= id)
            || id > s.last_id
            || fields == 0
            || !fields.is_multiple_of(2)
        {
            return Err(Malformed);
        }
        // Every byte accounted for: the fields' lengths plus their length prefixes.
        if super::pack(&super::unpack(packed).collect::<Vec<_>>()).len() != packed.len()
            || used > packed.len()
        {
            return Err(Malformed);
        }
        s.entries.push(
            id,
            packed.into(),
            lim.stream_node_max_entries,
            lim.stream_node_max_bytes,
        );
        prev = Some(id);
    }
    let groups = c.count()?;
    for _ in 0..groups {
        let name = Bytes::copy_from_slice(c.bytes()?);
        let last_id = c.id()?;
        let read = (c.u64()? as i64).wrapping_sub(1);
        let mut g = Group::new(last_id, read);
        let consumers = c.count()?;
        for _ in 0..consumers {
            let cname = Bytes::copy_from_slice(c.bytes()?);
            let seen = c.u64()? as i64;
            g.consumer(&cname, seen);
        }
        let pending = c.count()?;
        for _ in 0..pending {
            let id = c.id()?;
            let cname = c.bytes()?;
            let time = c.u64()? as i64;
            let count = c.u64()?;
            let Some((cname, _)) = g.consumers.get_key_value(cname) else {
                return Err(Malformed);
            };
            let cname = cname.clone();
            g.deliver(id, &cname, time, count);
        }
        if s.groups.insert(name, g).is_some() {
            return Err(Malformed);
        }
    }
    Ok((s, c.at))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_entries_groups_and_pending() {
        let lim = Limits::default();
        let mut s = Stream::default();
        for n in 1..=300u64 {
            s.add(
                StreamId::new(n, 1),
                &[&b"f"[..], &n.to_be_bytes()[..]],
                &lim,
            );
        }
        s.delete(StreamId::new(5, 1));
        let mut g = Group::new(StreamId::new(10, 1), 10);
        let alice = Bytes::from_static(b"alice");
        g.deliver(StreamId::new(3, 1), &alice, 1234, 2);
        g.consumer(&Bytes::from_static(b"idle"), 99);
        s.groups.insert(Bytes::from_static(b"g"), g);
        s.groups
            .insert(Bytes::from_static(b"h"), Group::new(StreamId::MIN, -1));
        let mut out = Vec::new();
        encode(&s, &mut out);
        let (back, used) = decode(&out, &lim).unwrap();
        assert_eq!(used, out.len());
        assert_eq!(back.len(), 299);
        assert_eq!(back.last_id, s.last_id);
        assert_eq!(back.max_deleted, StreamId::new(5, 1));
        assert_eq!(back.entries_added, 300);
        assert_eq!(back.groups, s.groups);
        let a: Vec<_> = s.entries.range(StreamId::MIN, StreamId::MAX).collect();
        let b: Vec<_> = back.entries.range(StreamId::MIN, StreamId::MAX).collect();
        assert_eq!(a, b);
        // Truncated or altered payloads are refused, never half-read.
        for cut in [1, out.len() / 2, out.len() - 1] {
            assert!(
                decode(&out[..cut], &lim).is_err() || decode(&out[..cut], &lim).unwrap().1 == cut
            );
        }
        let mut bad = out.clone();
        bad[0] = 9;
        assert!(decode(&bad, &lim).is_err());
    }

    #[test]
    fn empty_stream_round_trips() {
        let lim = Limits::default();
        let s = Stream {
            last_id: StreamId::new(7, 7),
            entries_added: 3,
            ..Stream::default()
        };
        let mut out = Vec::new();
        encode(&s, &mut out);
        let (back, _) = decode(&out, &lim).unwrap();
        assert!(back.is_empty());
        assert_eq!(back.last_id, StreamId::new(7, 7));
    }
}
