//! The arcs a membership change moves, as the [`Topology`](crate::topology::Topology) holds
//! them: looked up on the request path (is this key's arc still moving?), marked done one by one
//! by the mover, with the shards outside the new ring that still hold keys.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use ringcache_protocol::ring::{Arc as RingArc, Move, ShardSpec};

use crate::shard::Shard;

/// One arc changing owner, and whether it is empty at its source yet.
#[derive(Debug)]
pub struct MovingArc {
    pub arc: RingArc,
    pub from: String,
    pub to: String,
    done: AtomicBool,
}

impl MovingArc {
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

/// The arcs of one membership change, sorted for lookup, with the shards outside the new ring
/// that still hold keys (a leaving shard, or a joined shard being rolled back).
#[derive(Debug)]
pub struct MigrationMap {
    /// Sorted by `arc.start`; arcs are disjoint.
    arcs: Vec<MovingArc>,
    /// Indexes of arcs crossing the top of the circle (or the whole circle).
    wrapping: Vec<usize>,
    /// `(from, to, arc indexes)`, sorted by `(from, to)`: one mover worker each.
    groups: Vec<(String, String, Vec<usize>)>,
    outside: Vec<Arc<Shard>>,
    /// Arcs not done yet; 0 makes every lookup a miss (the hot path checks this first).
    live: AtomicUsize,
    /// The change as `RING STATUS` names it, and the membership it started from: what the nodes
    /// keep (`record`) so a router started mid-move can resume it.
    what: String,
    from: Vec<ShardSpec>,
}

impl MigrationMap {
    pub fn new(moves: Vec<Move>, outside: Vec<Arc<Shard>>) -> MigrationMap {
        let mut arcs: Vec<MovingArc> = moves
            .into_iter()
            .map(|m| MovingArc {
                arc: m.arc,
                from: m.from,
                to: m.to,
                done: AtomicBool::new(false),
            })
            .collect();
        arcs.sort_by_key(|a| a.arc.start);
        let wrapping = arcs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.arc.start >= a.arc.end)
            .map(|(i, _)| i)
            .collect();
        let mut groups: Vec<(String, String, Vec<usize>)> = Vec::new();
        for (i, a) in arcs.iter().enumerate() {
            match groups
                .iter_mut()
                .find(|(f, t, _)| *f == a.from && *t == a.to)
            {
                Some(g) => g.2.push(i),
                None => groups.push((a.from.clone(), a.to.clone(), vec![i])),
            }
        }
        groups.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let live = AtomicUsize::new(arcs.len());
        MigrationMap {
            arcs,
            wrapping,
            groups,
            outside,
            live,
            what: String::new(),
            from: Vec::new(),
        }
    }

    /// Names the change and the membership it started from.
    pub fn describing(mut self, what: &str, from: &[ShardSpec]) -> MigrationMap {
        self.what = what.to_string();
        self.from = from.to_vec();
        self
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn from(&self) -> &[ShardSpec] {
        &self.from
    }

    /// The arc holding `hash`, if it is still moving.
    pub fn find(&self, hash: u64) -> Option<&MovingArc> {
        let at = self.arcs.partition_point(|a| a.arc.start < hash);
        let found = at
            .checked_sub(1)
            .map(|i| &self.arcs[i])
            .filter(|a| a.arc.start < a.arc.end && a.arc.contains(hash))
            .or_else(|| {
                self.wrapping
                    .iter()
                    .map(|&i| &self.arcs[i])
                    .find(|a| a.arc.contains(hash))
            });
        found.filter(|a| !a.is_done())
    }

    pub fn arcs(&self) -> &[MovingArc] {
        &self.arcs
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// `(from, to, arc indexes)` streams, sorted by `(from, to)`: one mover worker each.
    pub fn groups(&self) -> &[(String, String, Vec<usize>)] {
        &self.groups
    }

    /// Marks arc `index` empty at its source: requests for it take the fast path again.
    pub(crate) fn mark_done(&self, index: usize) {
        if let Some(a) = self.arcs.get(index) {
            if !a.done.swap(true, Ordering::AcqRel) {
                self.live.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// What a [`Topology`](crate::topology::Topology) knows of a membership change in progress:
/// cheap to clone, empty by default.
#[derive(Debug, Clone, Default)]
pub struct Migrating(Option<Arc<MigrationMap>>);

impl Migrating {
    pub fn new(map: MigrationMap) -> Migrating {
        Migrating(Some(Arc::new(map)))
    }

    /// No arc is moving (true once every arc is done, before the marks are dropped).
    #[inline]
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            None => true,
            Some(m) => m.live() == 0,
        }
    }

    /// The moving arc holding `hash`, if any.
    #[inline]
    pub fn find(&self, hash: u64) -> Option<&MovingArc> {
        match &self.0 {
            None => None,
            Some(m) if m.live() == 0 => None,
            Some(m) => m.find(hash),
        }
    }

    /// Whether `hash` lies in an arc still moving: reads of it must go to the primaries.
    #[inline]
    pub fn is_migrating(&self, hash: u64) -> bool {
        self.find(hash).is_some()
    }

    /// Shards outside the ring that still hold keys of a moving arc.
    pub fn outside(&self) -> &[Arc<Shard>] {
        self.0.as_ref().map_or(&[], |m| &m.outside)
    }

    pub fn map(&self) -> Option<&Arc<MigrationMap>> {
        self.0.as_ref()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lookups_cover_wrapping_arcs_and_skip_done_ones() {
        let m = |start, end, from: &str| Move {
            arc: RingArc { start, end },
            from: from.into(),
            to: "z".into(),
        };
        let map = MigrationMap::new(
            vec![m(10, 20, "a"), m(u64::MAX - 5, 3, "b"), m(100, 200, "c")],
            Vec::new(),
        );
        assert_eq!(map.find(15).map(|a| a.from.as_str()), Some("a"));
        assert!(map.find(10).is_none());
        assert_eq!(map.find(20).map(|a| a.from.as_str()), Some("a"));
        assert_eq!(map.find(2).map(|a| a.from.as_str()), Some("b"));
        assert_eq!(map.find(u64::MAX).map(|a| a.from.as_str()), Some("b"));
        assert!(map.find(50).is_none());
        assert_eq!(map.find(150).map(|a| a.from.as_str()), Some("c"));
        assert_eq!(map.groups.len(), 3);
        let c = map.arcs.iter().position(|a| a.from == "c").unwrap();
        map.mark_done(c);
        map.mark_done(c);
        assert_eq!(map.live(), 2);
        assert!(map.find(150).is_none());
        let migrating = Migrating::new(map);
        assert!(!migrating.is_empty());
        assert!(migrating.is_migrating(15));
        assert!(!Migrating::default().is_migrating(15));
        let whole = MigrationMap::new(vec![m(7, 7, "a")], Vec::new());
        assert!(whole.find(7).is_some() && whole.find(0).is_some());
    }
}
