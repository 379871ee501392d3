//! Reading Redis's own stream payloads (RDB types 15 and 19, `STREAM_LISTPACKS` and
//! `STREAM_LISTPACKS_2`): a stream DUMPed by Redis 5 to 7.0 restores here. Each listpack node
//! starts with a master entry (live and deleted counts, the master fields), then each entry as
//! flags, id deltas from the node's key, its fields (or values only, with the master's fields),
//! and a trailing element count.

use bytes::Bytes;

use super::{listpack_items, BadPayload, Reader};
use crate::types::stream::{Group, Stream, StreamId};
use crate::types::Limits;

const DELETED: i64 = 1;
const SAME_FIELDS: i64 = 2;

fn int(item: &[u8]) -> Result<i64, BadPayload> {
    ringcache_protocol::num::parse_i64(item).ok_or(BadPayload)
}

impl Reader<'_> {
    /// An RDB length used as a number (ids, counters), not bounded by the payload.
    fn number(&mut self) -> Result<u64, BadPayload> {
        let n = self.len_or_special()?.map_err(|_| BadPayload)?;
        Ok(n as u64)
    }

    fn raw_id(&mut self) -> Result<StreamId, BadPayload> {
        let b = self.take(16)?;
        let ms = u64::from_be_bytes(b[..8].try_into().map_err(|_| BadPayload)?);
        let seq = u64::from_be_bytes(b[8..].try_into().map_err(|_| BadPayload)?);
        Ok(StreamId::new(ms, seq))
    }

    fn millis(&mut self) -> Result<i64, BadPayload> {
        let b = self.take(8)?;
        Ok(i64::from_le_bytes(b.try_into().map_err(|_| BadPayload)?))
    }

    fn id_pair(&mut self) -> Result<StreamId, BadPayload> {
        Ok(StreamId::new(self.number()?, self.number()?))
    }
}

/// Adds the live entries of one listpack node keyed by `master` to `s`.
fn read_node(s: &mut Stream, master: StreamId, lp: &[u8], lim: &Limits) -> Result<(), BadPayload> {
    let items = listpack_items(lp)?;
    let at = |i: usize| items.get(i).map(Vec::as_slice).ok_or(BadPayload);
    let nfields = usize::try_from(int(at(2)?)?).map_err(|_| BadPayload)?;
    let master_fields: Vec<&[u8]> = (0..nfields).map(|k| at(3 + k)).collect::<Result<_, _>>()?;
    let mut i = 3 + nfields + 1;
    while i < items.len() {
        let flags = int(at(i)?)?;
        let ms = master.ms.wrapping_add(int(at(i + 1)?)? as u64);
        let seq = master.seq.wrapping_add(int(at(i + 2)?)? as u64);
        i += 3;
        let mut fields: Vec<&[u8]> = Vec::new();
        if flags & SAME_FIELDS != 0 {
            for (k, f) in master_fields.iter().enumerate() {
                fields.push(f);
                fields.push(at(i + k)?);
            }
            i += nfields;
        } else {
            let n = usize::try_from(int(at(i)?)?).map_err(|_| BadPayload)?;
            i += 1;
            for k in 0..n.checked_mul(2).ok_or(BadPayload)? {
                fields.push(at(i + k)?);
            }
            i += 2 * n;
        }
        // The entry's element count, for iterating backwards.
        i += 1;
        let id = StreamId::new(ms, seq);
        if flags & DELETED == 0 {
            if s.entries.last().is_some_and(|(last, _)| last >= id) || fields.is_empty() {
                return Err(BadPayload);
            }
            s.entries.push(
                id,
                crate::types::stream::pack(&fields),
                lim.stream_node_max_entries,
                lim.stream_node_max_bytes,
            );
        }
    }
    Ok(())
}

/// A stream in Redis's RDB layout (`v2`: type 19, with first id, deleted id, counters).
pub(super) fn read_redis_stream(
    r: &mut Reader<'_>,
    v2: bool,
    lim: &Limits,
) -> Result<Stream, BadPayload> {
    let mut s = Stream::default();
    let nodes = r.len()?;
    for _ in 0..nodes {
        let key = r.string()?;
        if key.len() != 16 {
            return Err(BadPayload);
        }
        let ms = u64::from_be_bytes(key[..8].try_into().map_err(|_| BadPayload)?);
        let seq = u64::from_be_bytes(key[8..].try_into().map_err(|_| BadPayload)?);
        let lp = r.string()?;
        read_node(&mut s, StreamId::new(ms, seq), &lp, lim)?;
    }
    let length = r.number()?;
    if length != s.len() as u64 {
        return Err(BadPayload);
    }
    s.last_id = r.id_pair()?;
    if v2 {
        let _first = r.id_pair()?;
        s.max_deleted = r.id_pair()?;
        s.entries_added = r.number()?;
    } else {
        s.entries_added = length;
    }
    let groups = r.len()?;
    for _ in 0..groups {
        let name = Bytes::from(r.string()?);
        let last_id = r.id_pair()?;
        let read = if v2 {
            r.number()? as i64
        } else {
            s.entries_up_to(last_id)
                .unwrap_or(crate::types::stream::UNKNOWN_READ)
        };
        let mut g = Group::new(last_id, read);
        let pel = r.len()?;
        let mut times = Vec::with_capacity(pel);
        for _ in 0..pel {
            let id = r.raw_id()?;
            let time = r.millis()?;
            let count = r.number()?;
            times.push((id, time, count));
        }
        let consumers = r.len()?;
        for _ in 0..consumers {
            let cname = Bytes::from(r.string()?);
            let seen = r.millis()?;
            g.consumer(&cname, seen);
            let owned = r.len()?;
            for _ in 0..owned {
                let id = r.raw_id()?;
                let &(_, time, count) =
                    times.iter().find(|(i, _, _)| *i == id).ok_or(BadPayload)?;
                g.deliver(id, &cname, time, count);
            }
        }
        if g.pel.len() != pel || s.groups.insert(name, g).is_some() {
            return Err(BadPayload);
        }
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{crc64, put_len, put_str, restore, Restored, RDB_VERSION};
    use super::*;
    use crate::types::Value;

    /// A listpack element: a 7-bit unsigned integer or a short string.
    enum El<'a> {
        Int(u8),
        Str(&'a [u8]),
    }

    fn listpack(items: &[El<'_>]) -> Vec<u8> {
        let mut body = Vec::new();
        for it in items {
            let enc: Vec<u8> = match it {
                El::Int(n) => vec![*n & 0x7f],
                El::Str(s) => {
                    let mut e = vec![0x80 | s.len() as u8];
                    e.extend_from_slice(s);
                    e
                }
            };
            body.extend_from_slice(&enc);
            body.push(enc.len() as u8);
        }
        let total = 6 + body.len() + 1;
        let mut lp = (total as u32).to_le_bytes().to_vec();
        lp.extend_from_slice(&(items.len() as u16).to_le_bytes());
        lp.extend_from_slice(&body);
        lp.push(0xFF);
        lp
    }

    fn raw_id(out: &mut Vec<u8>, ms: u64, seq: u64) {
        out.extend_from_slice(&ms.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
    }

    #[test]
    fn a_redis_7_stream_payload_restores() {
        use El::{Int, Str};
        // Master id 1-0 with field "f"; 1-0 uses the master fields, 2-0 its own, 3-0 deleted.
        let lp = listpack(&[
            Int(2),
            Int(1),
            Int(1),
            Str(b"f"),
            Int(0),
            Int(SAME_FIELDS as u8),
            Int(0),
            Int(0),
            Str(b"a"),
            Int(4),
            Int(0),
            Int(1),
            Int(0),
            Int(2),
            Str(b"x"),
            Str(b"1"),
            Str(b"y"),
            Str(b"2"),
            Int(8),
            Int((DELETED | SAME_FIELDS) as u8),
            Int(2),
            Int(0),
            Str(b"c"),
            Int(4),
        ]);
        let mut p = vec![19];
        put_len(&mut p, 1);
        let mut key = Vec::new();
        raw_id(&mut key, 1, 0);
        put_str(&mut p, &key);
        put_str(&mut p, &lp);
        for n in [2, 3, 0, 1, 0, 3, 0, 3] {
            // length, last id, first id, max deleted id, entries added
            put_len(&mut p, n);
        }
        put_len(&mut p, 1);
        put_str(&mut p, b"g");
        for n in [2, 0, 2, 1] {
            // last id, entries read, pending count
            put_len(&mut p, n);
        }
        raw_id(&mut p, 1, 0);
        p.extend_from_slice(&1000i64.to_le_bytes());
        put_len(&mut p, 1);
        put_len(&mut p, 1);
        put_str(&mut p, b"c");
        p.extend_from_slice(&999i64.to_le_bytes());
        put_len(&mut p, 1);
        raw_id(&mut p, 1, 0);
        p.extend_from_slice(&RDB_VERSION.to_le_bytes());
        let crc = crc64(0, &p);
        p.extend_from_slice(&crc.to_le_bytes());

        let Ok(Restored::Obj(Value::Stream(s))) = restore(&p, &Limits::default()) else {
            panic!("the payload did not restore as a stream");
        };
        let entries: Vec<(StreamId, Vec<&[u8]>)> = s
            .entries
            .range(StreamId::MIN, StreamId::MAX)
            .map(|(id, f)| (id, crate::types::stream::unpack(f).collect()))
            .collect();
        assert_eq!(
            entries,
            vec![
                (StreamId::new(1, 0), vec![&b"f"[..], b"a"]),
                (StreamId::new(2, 0), vec![&b"x"[..], b"1", b"y", b"2"]),
            ]
        );
        assert_eq!(s.last_id, StreamId::new(3, 0));
        assert_eq!(s.max_deleted, StreamId::new(3, 0));
        assert_eq!(s.entries_added, 3);
        let g = &s.groups[&b"g"[..]];
        assert_eq!((g.last_id, g.entries_read), (StreamId::new(2, 0), 2));
        let pending = &g.pel[&StreamId::new(1, 0)];
        assert_eq!((pending.delivery_time, pending.delivery_count), (1000, 1));
        assert_eq!(&pending.consumer[..], b"c");
        assert_eq!(g.consumers[&b"c"[..]].seen_time, 999);

        // A length that disagrees with the entries is refused.
        let mut bad = p.clone();
        let at = 1 + 1 + 17 + 1 + lp.len() + if lp.len() >= 64 { 1 } else { 0 };
        bad[at] = 5;
        let crc = crc64(0, &bad[..bad.len() - 8]);
        let n = bad.len();
        bad[n - 8..].copy_from_slice(&crc.to_le_bytes());
        assert!(restore(&bad, &Limits::default()).is_err());
    }
}
