//! Consumer groups: the group's last delivered id and read counter, its pending entries list
//! (PEL: delivered, not yet acknowledged) and its consumers, each with its own view of the PEL.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::id::StreamId;

/// Read counter value meaning "unknown" (Redis's `SCG_INVALID_ENTRIES_READ`).
pub const UNKNOWN_READ: i64 = -1;

/// A pending entry: delivered to `consumer`, not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub delivery_time: i64,
    pub delivery_count: u64,
    pub consumer: Bytes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumer {
    /// When it last read or claimed (ms).
    pub seen_time: i64,
    pub pending: BTreeSet<StreamId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub last_id: StreamId,
    /// Entries the group has read, or [`UNKNOWN_READ`].
    pub entries_read: i64,
    pub pel: BTreeMap<StreamId, Pending>,
    pub consumers: BTreeMap<Bytes, Consumer>,
}

/// Bytes a pending entry costs (two tree slots and its record).
const PENDING_MEM: usize = 80;
const CONSUMER_MEM: usize = 64;

impl Group {
    pub fn new(last_id: StreamId, entries_read: i64) -> Group {
        Group {
            last_id,
            entries_read,
            ..Group::default()
        }
    }

    /// The consumer `name`, created if missing (true if it was created).
    pub fn consumer(&mut self, name: &Bytes, now: i64) -> (&mut Consumer, bool) {
        let created = !self.consumers.contains_key(name);
        let c = self
            .consumers
            .entry(name.clone())
            .or_insert_with(|| Consumer {
                seen_time: now,
                pending: BTreeSet::new(),
            });
        (c, created)
    }

    /// Records `id` as delivered to `consumer` at `now` (moving it from another consumer), its
    /// delivery count set to `count`.
    pub fn deliver(&mut self, id: StreamId, consumer: &Bytes, now: i64, count: u64) {
        let prev = self.pel.get(&id).cloned();
        if let Some(p) = &prev {
            if p.consumer != *consumer {
                if let Some(c) = self.consumers.get_mut(&p.consumer) {
                    c.pending.remove(&id);
                }
            }
        }
        self.pel.insert(
            id,
            Pending {
                delivery_time: now,
                delivery_count: count,
                consumer: consumer.clone(),
            },
        );
        let (c, _) = self.consumer(consumer, now);
        c.pending.insert(id);
    }

    /// Acknowledges `id`; whether it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        let Some(p) = self.pel.remove(&id) else {
            return false;
        };
        if let Some(c) = self.consumers.get_mut(&p.consumer) {
            c.pending.remove(&id);
        }
        true
    }

    /// Removes consumer `name`; its pending count, `None` if missing.
    pub fn remove_consumer(&mut self, name: &[u8]) -> Option<usize> {
        let c = self.consumers.remove(name)?;
        for id in &c.pending {
            self.pel.remove(id);
        }
        Some(c.pending.len())
    }

    pub fn mem_usage(&self) -> usize {
        self.pel.len() * PENDING_MEM
            + self
                .consumers
                .keys()
                .map(|k| k.len() + CONSUMER_MEM)
                .sum::<usize>()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn deliver_moves_between_consumers_and_ack_clears() {
        let mut g = Group::new(StreamId::MIN, 0);
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        let id = StreamId::new(1, 0);
        g.deliver(id, &a, 10, 1);
        g.deliver(id, &b, 20, 2);
        assert_eq!(g.pel[&id].delivery_count, 2);
        assert!(g.consumers[&a].pending.is_empty());
        assert!(g.consumers[&b].pending.contains(&id));
        assert!(g.ack(id));
        assert!(!g.ack(id));
        assert!(g.consumers[&b].pending.is_empty());
        g.deliver(id, &a, 30, 1);
        assert_eq!(g.remove_consumer(b"a"), Some(1));
        assert!(g.pel.is_empty());
    }
}
