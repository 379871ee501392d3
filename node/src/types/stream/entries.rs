//! A stream's entries: an ordered map from id to the entry's fields and values packed into one
//! buffer (a length-prefixed run of byte strings), grouped into nodes the way Redis groups
//! entries into listpacks (`stream-node-max-entries`, `stream-node-max-bytes`), so that trimming
//! with `~` removes whole nodes only and leaves what Redis would leave.

use std::collections::{BTreeMap, VecDeque};

use super::id::StreamId;

/// Bytes an entry costs beyond its packed buffer (map slot, box header).
pub const ENTRY_OVERHEAD: usize = 40;

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

/// One node: the entries added while it was the tail (deleted ones still count, as in Redis).
#[derive(Debug, Clone, Copy)]
struct Node {
    first: StreamId,
    slots: usize,
    live: usize,
    bytes: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Entries {
    map: BTreeMap<StreamId, Box<[u8]>>,
    nodes: VecDeque<Node>,
    /// Bytes of the packed buffers plus per-entry overhead.
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
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn first(&self) -> Option<(StreamId, &[u8])> {
        self.map.first_key_value().map(|(k, v)| (*k, &v[..]))
    }

    pub fn last(&self) -> Option<(StreamId, &[u8])> {
        self.map.last_key_value().map(|(k, v)| (*k, &v[..]))
    }

    pub fn get(&self, id: StreamId) -> Option<&[u8]> {
        self.map.get(&id).map(|v| &v[..])
    }

    /// Entries with ids in `from..=to`, ascending.
    pub fn range(
        &self,
        from: StreamId,
        to: StreamId,
    ) -> impl DoubleEndedIterator<Item = (StreamId, &[u8])> {
        let r = if from <= to {
            self.map.range(from..=to)
        } else {
            self.map.range(StreamId::MAX..StreamId::MAX)
        };
        r.map(|(k, v)| (*k, &v[..]))
    }

    /// Appends an entry (its id above every other), opening a node when the tail one is full.
    pub fn push(&mut self, id: StreamId, packed: Box<[u8]>, max_entries: usize, max_bytes: usize) {
        let size = packed.len();
        let full = match self.nodes.back() {
            None => true,
            Some(n) => {
                (max_bytes > 0 && n.bytes + size >= max_bytes)
                    || (max_entries > 0 && n.slots >= max_entries)
            }
        };
        if full {
            self.nodes.push_back(Node {
                first: id,
                slots: 0,
                live: 0,
                bytes: 0,
            });
        }
        if let Some(n) = self.nodes.back_mut() {
            n.slots += 1;
            n.live += 1;
            n.bytes += size;
        }
        self.mem += size + ENTRY_OVERHEAD;
        self.map.insert(id, packed);
    }

    /// The index of the node holding `id`.
    fn node_of(&self, id: StreamId) -> Option<usize> {
        let at = self.nodes.partition_point(|n| n.first <= id);
        at.checked_sub(1)
    }

    /// Deletes the entry `id`; whether it was there.
    pub fn remove(&mut self, id: StreamId) -> bool {
        let Some(buf) = self.map.remove(&id) else {
            return false;
        };
        self.mem -= buf.len() + ENTRY_OVERHEAD;
        if let Some(i) = self.node_of(id) {
            if let Some(n) = self.nodes.get_mut(i) {
                n.live = n.live.saturating_sub(1);
                if n.live == 0 {
                    self.nodes.remove(i);
                }
            }
        }
        true
    }

    /// Trims from the oldest entry; `approx` removes whole nodes only, at most `limit` entries
    /// when `limit > 0`. The entries removed.
    pub fn trim(&mut self, to: TrimTo, approx: bool, limit: usize) -> usize {
        let mut removed = 0;
        while let Some(node) = self.nodes.front().copied() {
            let len = self.map.len();
            let over = match to {
                TrimTo::MaxLen(n) => len as u64 > n,
                TrimTo::MinId(min) => self.map.first_key_value().is_some_and(|(k, _)| *k < min),
            };
            if !over {
                break;
            }
            let next_first = self.nodes.get(1).map(|n| n.first);
            let whole = match to {
                TrimTo::MaxLen(n) => (len - node.live) as u64 >= n,
                // The whole node is below the minimum when the next node starts at or below it.
                TrimTo::MinId(min) => next_first.is_some_and(|f| f <= min),
            };
            if whole {
                if limit > 0 && removed + node.live > limit {
                    break;
                }
                let ids: Vec<StreamId> = match next_first {
                    Some(f) => self.map.range(..f).map(|(k, _)| *k).collect(),
                    None => self.map.keys().copied().collect(),
                };
                for id in ids {
                    if let Some(buf) = self.map.remove(&id) {
                        self.mem -= buf.len() + ENTRY_OVERHEAD;
                        removed += 1;
                    }
                }
                self.nodes.pop_front();
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

    /// Approximate heap bytes besides entries (node bookkeeping).
    pub fn node_mem(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
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
        assert_eq!(e.mem, 2 * (pack(&[b"a", b"b"]).len() + ENTRY_OVERHEAD));
    }
}
