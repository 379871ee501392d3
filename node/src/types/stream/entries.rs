//! A stream's entries: an ordered map from id to the entry's fields and values packed into one
//! buffer (a length-prefixed run of byte strings), grouped into nodes the way Redis groups
//! entries into listpacks (`stream-node-max-entries`, `stream-node-max-bytes`), so that trimming
//! with `~` removes whole nodes only and leaves what Redis would leave.

use std::collections::BTreeMap;

use super::id::StreamId;

/// Packs field/value strings into one buffer: each a LEB128 length then its bytes.
pub fn pack<B: AsRef<[u8]>>(items: &[B]) -> Box<[u8]> {
    let total: usize = items.iter().map(|i| i.as_ref().len() + 5).sum();
    let mut out = Vec::with_capacity(total);
    for item in items {
        let item = item.as_ref();
        let mut n = item.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(item);
    }
    out.into_boxed_slice()
}

/// The strings [`pack`] packed, in order (stops at a malformed tail).
pub fn unpack(buf: &[u8]) -> Unpack<'_> {
    Unpack { buf }
}

pub struct Unpack<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for Unpack<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let mut n = 0usize;
        let mut shift = 0;
        let mut at = 0;
        loop {
            let b = *self.buf.get(at)?;
            at += 1;
            n |= usize::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let end = at.checked_add(n)?;
        let item = self.buf.get(at..end)?;
        self.buf = &self.buf[end..];
        Some(item)
    }
}

/// Bytes a node costs besides its buffer (its map slot and header).
pub const NODE_OVERHEAD: usize = 96;

/// Entries added while it was the tail, in one buffer: per entry a flag byte (1: deleted), the
/// id's milliseconds as a varint delta from the previous entry, its sequence as a varint, then
/// its packed fields, length first. Deleted entries keep their place until the node goes, as in
/// Redis's listpacks.
#[derive(Debug, Clone)]
struct Node {
    buf: Vec<u8>,
    /// The last id written (deleted or not).
    last: StreamId,
    slots: usize,
    live: usize,
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
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

fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        n |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// One decoded slot of a node.
struct Slot<'a> {
    id: StreamId,
    deleted: bool,
    /// Offset of its flag byte.
    at: usize,
    fields: &'a [u8],
}

/// The slots of a node, in order.
struct Slots<'a> {
    buf: &'a [u8],
    at: usize,
    ms: u64,
}

impl<'a> Slots<'a> {
    fn of(first: StreamId, node: &'a Node) -> Slots<'a> {
        Slots {
            buf: &node.buf,
            at: 0,
            ms: first.ms,
        }
    }
}

impl<'a> Iterator for Slots<'a> {
    type Item = Slot<'a>;

    fn next(&mut self) -> Option<Slot<'a>> {
        let at = self.at;
        let flag = *self.buf.get(at)?;
        let mut pos = at + 1;
        self.ms = self.ms.wrapping_add(varint(self.buf, &mut pos)?);
        let seq = varint(self.buf, &mut pos)?;
        let len = usize::try_from(varint(self.buf, &mut pos)?).ok()?;
        let fields = self.buf.get(pos..pos.checked_add(len)?)?;
        self.at = pos + len;
        Some(Slot {
            id: StreamId::new(self.ms, seq),
            deleted: flag != 0,
            at,
            fields,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Entries {
    /// Nodes by the id of their first slot.
    nodes: BTreeMap<StreamId, Node>,
    len: usize,
    /// Bytes of the node buffers plus per-node overhead.
    pub mem: usize,
}

/// How far XTRIM / XADD's trimming goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimTo {
    MaxLen(u64),
    MinId(StreamId),
}

impl Entries {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn live_of<'a>(first: &StreamId, node: &'a Node) -> impl Iterator<Item = Slot<'a>> {
        Slots::of(*first, node).filter(|s| !s.deleted)
    }

    pub fn first(&self) -> Option<(StreamId, &[u8])> {
        let (k, n) = self.nodes.first_key_value()?;
        Self::live_of(k, n).next().map(|s| (s.id, s.fields))
    }

    pub fn last(&self) -> Option<(StreamId, &[u8])> {
        let (k, n) = self.nodes.last_key_value()?;
        Self::live_of(k, n).last().map(|s| (s.id, s.fields))
    }

    /// The node that would hold `id`.
    fn node_of(&self, id: StreamId) -> Option<(&StreamId, &Node)> {
        self.nodes.range(..=id).next_back()
    }

    pub fn get(&self, id: StreamId) -> Option<&[u8]> {
        let (k, n) = self.node_of(id)?;
        Self::live_of(k, n)
            .find(|s| s.id >= id)
            .filter(|s| s.id == id)
            .map(|s| s.fields)
    }

    /// Entries with ids in `from..=to`, ascending.
    pub fn range(&self, from: StreamId, to: StreamId) -> impl Iterator<Item = (StreamId, &[u8])> {
        let start = self.node_of(from).map_or(from, |(k, _)| *k);
        let nodes = if from <= to {
            self.nodes.range(start..)
        } else {
            self.nodes.range(StreamId::MAX..StreamId::MAX)
        };
        nodes
            .take_while(move |(k, _)| **k <= to)
            .flat_map(|(k, n)| Self::live_of(k, n))
            .skip_while(move |s| s.id < from)
            .take_while(move |s| s.id <= to)
            .map(|s| (s.id, s.fields))
    }

    /// Entries with ids in `from..=to`, descending (a node decoded at a time).
    pub fn range_rev(
        &self,
        from: StreamId,
        to: StreamId,
    ) -> impl Iterator<Item = (StreamId, &[u8])> {
        let nodes = if from <= to {
            self.nodes.range(..=to)
        } else {
            self.nodes.range(StreamId::MAX..StreamId::MAX)
        };
        nodes
            .rev()
            .map(move |(k, n)| {
                let mut v: Vec<(StreamId, &[u8])> = Self::live_of(k, n)
                    .filter(|s| s.id >= from && s.id <= to)
                    .map(|s| (s.id, s.fields))
                    .collect();
                v.reverse();
                (k, v)
            })
            .take_while(move |(k, v)| !v.is_empty() || **k > from)
            .flat_map(|(_, v)| v)
    }

    /// Appends an entry (its id above every other), opening a node when the tail one is full.
    pub fn push(&mut self, id: StreamId, packed: Box<[u8]>, max_entries: usize, max_bytes: usize) {
        let size = packed.len();
        let full = match self.nodes.last_key_value() {
            None => true,
            Some((_, n)) => {
                (max_bytes > 0 && n.buf.len() + size >= max_bytes)
                    || (max_entries > 0 && n.slots >= max_entries)
            }
        };
        if full {
            // The old tail is sealed: give back its spare capacity.
            if let Some(mut tail) = self.nodes.last_entry() {
                let n = tail.get_mut();
                let before = n.buf.capacity();
                n.buf.shrink_to_fit();
                self.mem -= before - n.buf.capacity();
            }
            self.nodes.insert(
                id,
                Node {
                    buf: Vec::new(),
                    last: id,
                    slots: 0,
                    live: 0,
                },
            );
            self.mem += NODE_OVERHEAD;
        }
        let Some(mut tail) = self.nodes.last_entry() else {
            return;
        };
        let n = tail.get_mut();
        let before = n.buf.capacity();
        n.buf.push(0);
        put_varint(&mut n.buf, id.ms.wrapping_sub(n.last.ms));
        put_varint(&mut n.buf, id.seq);
        put_varint(&mut n.buf, size as u64);
        n.buf.extend_from_slice(&packed);
        n.last = id;
        n.slots += 1;
        n.live += 1;
        self.mem += n.buf.capacity() - before;
        self.len += 1;
    }

    /// Deletes the entry `id`; whether it was there.
    pub fn remove(&mut self, id: StreamId) -> bool {
        let Some((&key, node)) = self.node_of(id) else {
            return false;
        };
        let Some(at) = Self::live_of(&key, node)
            .find(|s| s.id >= id)
            .filter(|s| s.id == id)
            .map(|s| s.at)
        else {
            return false;
        };
        let Some(node) = self.nodes.get_mut(&key) else {
            return false;
        };
        node.buf[at] = 1;
        node.live -= 1;
        self.len -= 1;
        if node.live == 0 {
            let cap = node.buf.capacity();
            self.nodes.remove(&key);
            self.mem -= cap + NODE_OVERHEAD;
        }
        true
    }

    /// Trims from the oldest entry; `approx` removes whole nodes only, at most `limit` entries
    /// when `limit > 0`. The entries removed.
    pub fn trim(&mut self, to: TrimTo, approx: bool, limit: usize) -> usize {
        let mut removed = 0;
        while let Some((&key, node)) = self.nodes.first_key_value() {
            let over = match to {
                TrimTo::MaxLen(n) => self.len as u64 > n,
                TrimTo::MinId(min) => self.first().is_some_and(|(id, _)| id < min),
            };
            if !over {
                break;
            }
            let whole = match to {
                TrimTo::MaxLen(n) => (self.len - node.live) as u64 >= n,
                TrimTo::MinId(min) => node.last < min,
            };
            if whole {
                if limit > 0 && removed + node.live > limit {
                    break;
                }
                let (live, cap) = (node.live, node.buf.capacity());
                self.nodes.remove(&key);
                self.mem -= cap + NODE_OVERHEAD;
                self.len -= live;
                removed += live;
                continue;
            }
            if approx {
                break;
            }
            // Exact: one entry at a time from the front.
            let Some((id, _)) = self.first() else {
                break;
            };
            self.remove(id);
            removed += 1;
        }
        removed
    }

    /// Nodes (XINFO's radix-tree-keys).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(n: u64) -> StreamId {
        StreamId::new(n, 0)
    }

    #[test]
    fn packs_and_unpacks() {
        let big = vec![b'x'; 300];
        let items: Vec<&[u8]> = vec![b"f", b"", &big, b"value"];
        let p = pack(&items);
        let back: Vec<&[u8]> = unpack(&p).collect();
        assert_eq!(back, items);
        assert_eq!(unpack(&p[..p.len() - 1]).count(), 3);
    }

    #[test]
    fn approx_trim_removes_whole_nodes() {
        let mut e = Entries::default();
        for n in 1..=25 {
            e.push(id(n), pack(&[b"a", b"b"]), 10, 4096);
        }
        assert_eq!(e.trim(TrimTo::MaxLen(12), true, 0), 10);
        assert_eq!(e.len(), 15);
        assert_eq!(e.trim(TrimTo::MaxLen(12), false, 0), 3);
        assert_eq!(e.first().unwrap().0, id(14));
        assert_eq!(e.trim(TrimTo::MinId(id(21)), true, 0), 7);
        assert_eq!(e.first().unwrap().0, id(21));
        assert_eq!(e.trim(TrimTo::MinId(id(23)), false, 0), 2);
        assert!(e.remove(id(25)));
        assert!(!e.remove(id(25)));
        assert_eq!(e.len(), 2);
        let rest: Vec<_> = e
            .range(StreamId::MIN, StreamId::MAX)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(rest, [id(23), id(24)]);
        let back: Vec<_> = e.range_rev(id(0), id(24)).map(|(i, _)| i).collect();
        assert_eq!(back, [id(24), id(23)]);
        assert_eq!(e.get(id(24)), Some(&pack(&[b"a", b"b"])[..]));
        assert_eq!(e.get(id(25)), None);
        assert!(e.remove(id(23)));
        assert!(e.remove(id(24)));
        assert_eq!(e.mem, 0);
        assert_eq!(e.node_count(), 0);
    }
}
