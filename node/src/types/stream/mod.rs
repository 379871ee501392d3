//! Streams: entries ordered by id, each entry's fields packed into one buffer ([`entries`]),
//! plus the stream's counters (last id, largest deleted id, entries ever added) and its consumer
//! groups ([`group`]).

pub mod codec;
pub mod entries;
pub mod group;
pub mod id;

use std::collections::BTreeMap;

use bytes::Bytes;

pub use entries::{pack, unpack, Entries, TrimTo};
pub use group::{Consumer, Group, Pending, UNKNOWN_READ};
pub use id::StreamId;

use super::Limits;

#[derive(Debug, Clone, Default)]
pub struct Stream {
    pub entries: Entries,
    pub last_id: StreamId,
    /// The largest id ever deleted (0-0 if none): reads before it cannot count entries.
    pub max_deleted: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Bytes, Group>,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry's id, 0-0 when empty.
    pub fn first_id(&self) -> StreamId {
        self.entries.first().map_or(StreamId::MIN, |(id, _)| id)
    }

    /// The id `*` gives at `now_ms`: above the last id; `None` when the last id is the largest.
    pub fn auto_id(&self, now_ms: u64) -> Option<StreamId> {
        if now_ms > self.last_id.ms {
            Some(StreamId::new(now_ms, 0))
        } else {
            self.last_id.next()
        }
    }

    /// Appends an entry with `id` (the caller checked it is above the last id).
    pub fn add<B: AsRef<[u8]>>(&mut self, id: StreamId, fields: &[B], lim: &Limits) {
        self.entries.push(
            id,
            pack(fields),
            lim.stream_node_max_entries,
            lim.stream_node_max_bytes,
        );
        self.last_id = id;
        self.entries_added += 1;
    }

    /// Deletes entry `id`; whether it was there.
    pub fn delete(&mut self, id: StreamId) -> bool {
        if !self.entries.remove(id) {
            return false;
        }
        if id > self.max_deleted {
            self.max_deleted = id;
        }
        true
    }

    /// Trims (see [`Entries::trim`]); entries removed.
    pub fn trim(&mut self, to: TrimTo, approx: bool, limit: usize) -> usize {
        self.entries.trim(to, approx, limit)
    }

    /// Whether a deleted entry may lie in `from..` (counting reads past it is then impossible).
    pub fn has_tombstones_from(&self, from: StreamId) -> bool {
        if self.is_empty() || self.max_deleted.is_zero() {
            return false;
        }
        if self.first_id() > self.max_deleted {
            return false;
        }
        from <= self.max_deleted
    }

    /// How many entries were added up to and including `id`, if that can be known.
    pub fn entries_up_to(&self, id: StreamId) -> Option<i64> {
        let added = self.entries_added as i64;
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.is_empty() && id <= self.last_id {
            return Some(added);
        }
        if id == self.last_id {
            return Some(added);
        }
        if id > self.last_id {
            return None;
        }
        let first = self.first_id();
        if self.max_deleted.is_zero() || self.max_deleted < first {
            if id < first {
                return Some(added - self.len() as i64);
            }
            if id == first {
                return Some(added - self.len() as i64 + 1);
            }
        }
        None
    }

    /// A group's lag: entries added it has not read, if that can be known.
    pub fn lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if g.entries_read != UNKNOWN_READ && !self.has_tombstones_from(g.last_id) {
            return Some(self.entries_added as i64 - g.entries_read);
        }
        self.entries_up_to(g.last_id)
            .map(|read| self.entries_added as i64 - read)
    }

    /// Moves group `g`'s last delivered id to `id` (delivered now), keeping its read counter.
    pub fn advance_group(&mut self, name: &[u8], id: StreamId) {
        let tomb = self.has_tombstones_from(id);
        let estimate = self.entries_up_to(id);
        let added = self.entries_added;
        let Some(g) = self.groups.get_mut(name) else {
            return;
        };
        if id <= g.last_id {
            return;
        }
        if g.entries_read != UNKNOWN_READ && !tomb {
            g.entries_read += 1;
        } else if added > 0 {
            g.entries_read = estimate.unwrap_or(UNKNOWN_READ);
        }
        g.last_id = id;
    }

    /// Bytes the stream owns.
    pub fn mem_usage(&self) -> usize {
        self.entries.mem
            + self
                .groups
                .iter()
                .map(|(k, g)| k.len() + 64 + g.mem_usage())
                .sum::<usize>()
    }

    pub fn encoding(&self) -> &'static str {
        "stream"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_adds_and_deletes() {
        let lim = Limits::default();
        let mut s = Stream::default();
        assert_eq!(s.auto_id(5), Some(StreamId::new(5, 0)));
        for n in 1..=3 {
            s.add(StreamId::new(n, 0), &[b"f", b"v"], &lim);
        }
        assert_eq!(s.auto_id(2), Some(StreamId::new(3, 1)));
        assert_eq!(s.entries_up_to(StreamId::new(1, 0)), Some(1));
        assert_eq!(s.entries_up_to(StreamId::new(3, 0)), Some(3));
        assert_eq!(s.entries_up_to(StreamId::new(2, 0)), None);
        s.groups
            .insert(Bytes::from_static(b"g"), Group::new(StreamId::MIN, 0));
        s.advance_group(b"g", StreamId::new(1, 0));
        assert_eq!(s.groups[&b"g"[..]].entries_read, 1);
        assert_eq!(s.lag(&s.groups[&b"g"[..]]), Some(2));
        assert!(s.delete(StreamId::new(2, 0)));
        assert!(s.has_tombstones_from(StreamId::new(1, 0)));
        assert!(!s.has_tombstones_from(StreamId::new(2, 1)));
        // A deleted entry ahead: the lag cannot be known.
        assert_eq!(s.lag(&s.groups[&b"g"[..]]), None);
        // Past the deleted entry the counter counts on by one per read, as Redis's does.
        s.advance_group(b"g", StreamId::new(3, 0));
        assert_eq!(s.groups[&b"g"[..]].entries_read, 2);
        assert_eq!(s.lag(&s.groups[&b"g"[..]]), Some(1));
        assert!(s.mem_usage() > 0);
    }
}
