//! The consistent-hash ring: which shard owns a key hash, and which arcs move when membership
//! changes. Pure data with no I/O, so the router and every node derive the same owners from the
//! same shard list and epoch.

use crate::hash::{bucket_of, key_hash, raw_hash, BUCKETS};

/// Version of a ring; a newer epoch always wins, which fences routers holding an older ring.
pub type Epoch = u64;

/// Points per unit of weight: the smallest power of two keeping the busiest of 10 random-id shards
/// ≤ 1.10 × mean (1024 breaks that for ~0.5% of id sets; 2048's worst of 5000 sets was 1.09).
pub const DEFAULT_VNODES: u32 = 2048;

/// Most points one ring may hold (256 MiB of points), checked before allocating them.
pub const MAX_POINTS: u64 = 1 << 24;

/// Why a ring could not be built or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("shard id `{0}` appears more than once")]
    DuplicateShard(String),
    #[error("shard `{0}` has weight 0; every shard needs a weight of at least 1")]
    ZeroWeight(String),
    #[error("vnodes must be at least 1")]
    ZeroVnodes,
    #[error("a shard id is empty")]
    EmptyId,
    #[error("no shard `{0}` in the ring")]
    UnknownShard(String),
    #[error("the ring would hold {0} points, more than the {MAX_POINTS} allowed")]
    TooManyPoints(u64),
    #[error("the epoch cannot go past {}", Epoch::MAX)]
    EpochExhausted,
}

/// A shard as the ring sees it: a stable id (not an address) and a weight.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSpec {
    pub id: String,
    pub weight: u32,
}

impl ShardSpec {
    pub fn new(id: impl Into<String>, weight: u32) -> ShardSpec {
        ShardSpec {
            id: id.into(),
            weight,
        }
    }
}

/// The hashes in `(start, end]` on the wrapping 2^64 circle; `start == end` is the whole circle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Arc {
    pub start: u64,
    pub end: u64,
}

impl Arc {
    /// Whether `hash` lies in the arc, across the wrap point if the arc crosses it.
    pub fn contains(&self, hash: u64) -> bool {
        use std::cmp::Ordering::*;
        match self.start.cmp(&self.end) {
            Less => self.start < hash && hash <= self.end,
            Greater => hash > self.start || hash <= self.end,
            Equal => true,
        }
    }

    /// How many hashes the arc holds (2^64 for the whole circle).
    pub fn width(&self) -> u128 {
        match self.end.wrapping_sub(self.start) {
            0 => 1 << 64,
            w => u128::from(w),
        }
    }

    /// Every index bucket (`hash::bucket_of`) holding at least one hash of the arc, each once, in
    /// circle order from the start, so a node finds an arc's keys through its bucket index.
    pub fn buckets(&self) -> impl Iterator<Item = usize> {
        let all = (0..BUCKETS).chain(0..0);
        if self.start == self.end {
            return all;
        }
        let last = bucket_of(self.end);
        // start == u64::MAX makes the arc [0, end]: it never reaches the top of the circle
        let Some(first_hash) = self.start.checked_add(1) else {
            return (0..last + 1).chain(0..0);
        };
        let first = bucket_of(first_hash);
        if self.start < self.end {
            (first..last + 1).chain(0..0)
        } else if first <= last + 1 {
            // the two runs meet or overlap, so the arc touches every bucket
            all
        } else {
            (first..BUCKETS).chain(0..last + 1)
        }
    }
}

/// A maximal arc whose owner changes from shard `from` to shard `to` between two rings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Move {
    pub arc: Arc,
    pub from: String,
    pub to: String,
}

/// Shards placed on the 2^64 hash circle: shard `id` owns `vnodes × weight` points at
/// `raw_hash("{id}#{i}")`, and a key belongs to the first point at or after its hash, wrapping.
///
/// ```
/// use ringcache_protocol::hash::key_hash;
/// use ringcache_protocol::ring::{Ring, RingError, ShardSpec, DEFAULT_VNODES};
///
/// let shards = vec![ShardSpec::new("a", 1), ShardSpec::new("b", 1), ShardSpec::new("c", 2)];
/// let ring = Ring::new(7, DEFAULT_VNODES, shards)?;
/// let before = ring.locate(b"user:42").expect("a non-empty ring owns every key");
///
/// // a join bumps the epoch and moves arcs only to the new shard
/// let next = ring.with_shard(ShardSpec::new("d", 1))?;
/// assert_eq!(next.epoch(), 8);
/// let moves = ring.diff(&next);
/// assert!(moves.iter().all(|m| m.to == "d"));
///
/// // a key changes owner exactly when one of the moved arcs holds its hash
/// let after = next.locate(b"user:42").expect("a non-empty ring owns every key");
/// let moved = moves.iter().find(|m| m.arc.contains(key_hash(b"user:42")));
/// match moved {
///     Some(m) => assert_eq!((m.from.as_str(), m.to.as_str()), (before.id.as_str(), "d")),
///     None => assert_eq!(before, after),
/// }
/// # Ok::<(), RingError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Ring {
    epoch: Epoch,
    vnodes: u32,
    /// Sorted by id, so a shard's index (and the tie-break between equal points) is deterministic.
    shards: Vec<ShardSpec>,
    /// `(hash, shard index)`, sorted; equal hashes order by shard index, i.e. by id.
    points: Vec<(u64, u32)>,
    slots: Slots,
}

/// Where each hash prefix starts in a ring's sorted points, so a lookup reads one slot and the
/// one or two points under it instead of binary-searching them all: ~13 dependent cache misses
/// for 8k points, measured at 60% of the router's own time routing a 100-key MGET.
#[derive(Debug, Clone)]
struct Slots {
    /// `64 - prefix bits`: a hash's slot is `hash >> shift`.
    shift: u32,
    /// `starts[s]` = index of the first point at or after slot `s`'s first hash; one extra
    /// entry (the point count) closes the last slot.
    starts: Vec<u32>,
}

impl Slots {
    fn new(points: &[(u64, u32)]) -> Slots {
        // About one slot per point (at most 2^20 slots, 4 MiB, for the largest rings).
        let bits = (usize::BITS - points.len().leading_zeros()).clamp(4, 20);
        let shift = 64 - bits;
        // Slots after the previous point's and up to this point's own start at this point.
        let mut starts = vec![points.len() as u32; (1 << bits) + 1];
        let mut next_slot = 0;
        for (at, &(hash, _)) in (0u32..).zip(points) {
            let slot = (hash >> shift) as usize;
            if slot >= next_slot {
                starts[next_slot..=slot].fill(at);
                next_slot = slot + 1;
            }
        }
        Slots { shift, starts }
    }

    /// The range of `points` whose hashes share `hash`'s prefix.
    fn range(&self, hash: u64) -> (usize, usize) {
        let slot = (hash >> self.shift) as usize;
        match (self.starts.get(slot), self.starts.get(slot + 1)) {
            (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
            _ => (0, 0),
        }
    }
}

impl Ring {
    /// Builds the ring for `shards` (in any order). No shards is allowed: it owns no key.
    pub fn new(epoch: Epoch, vnodes: u32, mut shards: Vec<ShardSpec>) -> Result<Ring, RingError> {
        if vnodes == 0 {
            return Err(RingError::ZeroVnodes);
        }
        let mut total: u64 = 0;
        for shard in &shards {
            if shard.id.is_empty() {
                return Err(RingError::EmptyId);
            }
            if shard.weight == 0 {
                return Err(RingError::ZeroWeight(shard.id.clone()));
            }
            total = total.saturating_add(u64::from(vnodes) * u64::from(shard.weight));
        }
        shards.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        if let Some(pair) = shards.windows(2).find(|pair| pair[0].id == pair[1].id) {
            return Err(RingError::DuplicateShard(pair[0].id.clone()));
        }
        if total > MAX_POINTS {
            return Err(RingError::TooManyPoints(total));
        }

        let mut points = Vec::with_capacity(total as usize);
        let mut name = Vec::new();
        let mut digits = itoa::Buffer::new();
        for (index, shard) in (0u32..).zip(&shards) {
            // one reused buffer instead of a `format!` per point; same bytes as "{id}#{i}"
            name.clear();
            name.extend_from_slice(shard.id.as_bytes());
            name.push(b'#');
            let prefix = name.len();
            for i in 0..u64::from(vnodes) * u64::from(shard.weight) {
                name.truncate(prefix);
                name.extend_from_slice(digits.format(i).as_bytes());
                points.push((raw_hash(&name), index));
            }
        }
        points.sort_unstable();
        Ok(Ring::from_sorted(epoch, vnodes, shards, points))
    }

    fn from_sorted(
        epoch: Epoch,
        vnodes: u32,
        shards: Vec<ShardSpec>,
        points: Vec<(u64, u32)>,
    ) -> Ring {
        let slots = Slots::new(&points);
        Ring {
            epoch,
            vnodes,
            shards,
            points,
            slots,
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The shards, sorted by id; `owner_index` indexes into this.
    pub fn shards(&self) -> &[ShardSpec] {
        &self.shards
    }

    pub fn shard_index(&self, id: &str) -> Option<usize> {
        self.shards
            .binary_search_by(|shard| shard.id.as_str().cmp(id))
            .ok()
    }

    /// How many points shard `id` has on the ring (0 if it is not in the ring).
    pub fn points_of(&self, id: &str) -> usize {
        self.shard_index(id).map_or(0, |index| {
            self.vnodes as usize * self.shards[index].weight as usize
        })
    }

    /// Index into `shards()` of the owner of `hash`: the first point at or after it, wrapping.
    pub fn owner_index(&self, hash: u64) -> Option<usize> {
        let first = self.points.first()?;
        // Points before `lo` hash below this prefix and points from `hi` on above it.
        let (lo, hi) = self.slots.range(hash);
        let at = lo
            + self
                .points
                .get(lo..hi)
                .map_or(0, |under| under.partition_point(|&(point, _)| point < hash));
        let &(_, index) = self.points.get(at).unwrap_or(first);
        Some(index as usize)
    }

    pub fn owner(&self, hash: u64) -> Option<&ShardSpec> {
        self.owner_index(hash).map(|index| &self.shards[index])
    }

    /// The shard owning `key` (its `{tag}` if it has one).
    pub fn locate(&self, key: &[u8]) -> Option<&ShardSpec> {
        self.owner(key_hash(key))
    }

    /// Fraction of the hash space each shard owns, in `shards()` order.
    pub fn shares(&self) -> Vec<(String, f64)> {
        let mut owned = vec![0u128; self.shards.len()];
        for (arc, index) in self.point_arcs() {
            owned[index as usize] += arc.width();
        }
        let circle = (1u128 << 64) as f64;
        self.shards
            .iter()
            .zip(owned)
            .map(|(shard, width)| (shard.id.clone(), width as f64 / circle))
            .collect()
    }

    /// The maximal arcs shard `id` owns, in circle order (empty if it is not in the ring).
    pub fn arcs_of(&self, id: &str) -> Vec<Arc> {
        let Some(wanted) = self.shard_index(id) else {
            return Vec::new();
        };
        let mut runs = Vec::new();
        for (arc, index) in self.point_arcs() {
            if index as usize == wanted {
                push_merged(&mut runs, arc, ());
            }
        }
        merge_wrap(&mut runs);
        runs.into_iter().map(|(arc, ())| arc).collect()
    }

    /// This ring plus `shard`, at the next epoch.
    pub fn with_shard(&self, shard: ShardSpec) -> Result<Ring, RingError> {
        let mut shards = self.shards.clone();
        shards.push(shard);
        Ring::new(self.next_epoch()?, self.vnodes, shards)
    }

    /// This ring minus shard `id`, at the next epoch.
    pub fn without_shard(&self, id: &str) -> Result<Ring, RingError> {
        let index = self
            .shard_index(id)
            .ok_or_else(|| RingError::UnknownShard(id.to_owned()))?;
        let mut shards = self.shards.clone();
        shards.remove(index);
        Ring::new(self.next_epoch()?, self.vnodes, shards)
    }

    /// Every maximal arc whose owner differs in `next`, adjacent arcs with the same `from → to`
    /// merged (across the wrap point too). Walks both sorted point lists once: O(points), no keys.
    /// If either ring is empty there is no move: no shard to take arcs from or to give them to.
    pub fn diff(&self, next: &Ring) -> Vec<Move> {
        let (old, new) = (&self.points, &next.points);
        let (Some(&(old_last, _)), Some(&(new_last, _))) = (old.last(), new.last()) else {
            return Vec::new();
        };
        // compare shard indexes, not ids, in the walk: this ring's index → the same id's in `next`
        let same_in_next: Vec<Option<u32>> = self
            .shards
            .iter()
            .map(|shard| next.shard_index(&shard.id).map(|index| index as u32))
            .collect();

        // Between two consecutive distinct points of either ring both owners are constant: each
        // interval (previous boundary, boundary] is owned by the first point at or after it.
        let mut runs: Vec<(Arc, (u32, u32))> = Vec::new();
        let (mut i, mut j) = (0, 0);
        let mut previous = old_last.max(new_last);
        loop {
            let boundary = match (old.get(i), new.get(j)) {
                (Some(&(a, _)), Some(&(b, _))) => a.min(b),
                (Some(&(a, _)), None) => a,
                (None, Some(&(b, _))) => b,
                (None, None) => break,
            };
            let from = old.get(i).unwrap_or(&old[0]).1;
            let to = new.get(j).unwrap_or(&new[0]).1;
            if same_in_next[from as usize] != Some(to) {
                let arc = Arc {
                    start: previous,
                    end: boundary,
                };
                push_merged(&mut runs, arc, (from, to));
            }
            while old.get(i).is_some_and(|&(point, _)| point == boundary) {
                i += 1;
            }
            while new.get(j).is_some_and(|&(point, _)| point == boundary) {
                j += 1;
            }
            previous = boundary;
        }
        merge_wrap(&mut runs);
        runs.into_iter()
            .map(|(arc, (from, to))| Move {
                arc,
                from: self.shards[from as usize].id.clone(),
                to: next.shards[to as usize].id.clone(),
            })
            .collect()
    }

    fn next_epoch(&self) -> Result<Epoch, RingError> {
        self.epoch.checked_add(1).ok_or(RingError::EpochExhausted)
    }

    /// The arc each point owns, in circle order (the first one's wraps from the last point).
    fn point_arcs(&self) -> impl Iterator<Item = (Arc, u32)> + '_ {
        let last = self.points.last().map_or(0, |&(hash, _)| hash);
        let mut previous = None;
        self.points.iter().filter_map(move |&(end, index)| {
            match previous.replace(end) {
                // tied with an earlier equal point, which wins: this one owns nothing
                Some(start) if start == end => None,
                Some(start) => Some((Arc { start, end }, index)),
                // start == end only when every point is equal, and then this one owns the circle
                None => Some((Arc { start: last, end }, index)),
            }
        })
    }
}

/// Appends `arc` to `runs`, extending the last run when it ends where `arc` starts with the same key.
fn push_merged<K: PartialEq>(runs: &mut Vec<(Arc, K)>, arc: Arc, key: K) {
    if let Some((last, last_key)) = runs.last_mut() {
        if *last_key == key && last.end == arc.start {
            last.end = arc.end;
            return;
        }
    }
    runs.push((arc, key));
}

/// Joins the last run onto the first when they meet across the wrap point with the same key.
fn merge_wrap<K: PartialEq>(runs: &mut Vec<(Arc, K)>) {
    if runs.len() < 2 {
        return;
    }
    let last = runs.len() - 1;
    if runs[last].1 == runs[0].1 && runs[last].0.end == runs[0].0.start {
        runs[0].0.start = runs[last].0.start;
        runs.pop();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn equal_ring(ids: &[String], vnodes: u32) -> Ring {
        let shards = ids.iter().map(|id| ShardSpec::new(id.clone(), 1)).collect();
        Ring::new(1, vnodes, shards).unwrap()
    }

    /// Hashes of `n` random 16-byte keys, through the same `key_hash` the router uses.
    fn key_hashes(seed: u64, n: usize) -> Vec<u64> {
        // splitmix64: StdRng is ~100× slower in debug builds and would dominate the suite
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut key = [0u8; 16];
        (0..n)
            .map(|_| {
                key[..8].copy_from_slice(&next().to_le_bytes());
                key[8..].copy_from_slice(&next().to_le_bytes());
                key_hash(&key)
            })
            .collect()
    }

    fn counts(ring: &Ring, hashes: &[u64]) -> Vec<usize> {
        let mut counts = vec![0; ring.shards().len()];
        for &hash in hashes {
            counts[ring.owner_index(hash).unwrap()] += 1;
        }
        counts
    }

    fn max_over_mean(counts: &[usize]) -> f64 {
        let total: usize = counts.iter().sum();
        *counts.iter().max().unwrap() as f64 * counts.len() as f64 / total as f64
    }

    /// A ring with hand-placed points, to reach ties and wraps that real hashes never produce.
    fn manual(ids: &[&str], points: &[(u64, &str)]) -> Ring {
        let shards: Vec<ShardSpec> = ids.iter().map(|&id| ShardSpec::new(id, 1)).collect();
        let mut points: Vec<(u64, u32)> = points
            .iter()
            .map(|&(hash, id)| (hash, ids.iter().position(|&i| i == id).unwrap() as u32))
            .collect();
        points.sort_unstable();
        Ring::from_sorted(1, 1, shards, points)
    }

    fn arc(start: u64, end: u64) -> Arc {
        Arc { start, end }
    }

    fn hop(arc: Arc, from: &str, to: &str) -> Move {
        Move {
            arc,
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn new_rejects_bad_shards() {
        let one = |id: &str, weight| ShardSpec::new(id, weight);
        assert_eq!(Ring::new(1, 0, vec![]).unwrap_err(), RingError::ZeroVnodes);
        assert_eq!(
            Ring::new(1, 4, vec![one("a", 1), one("", 1)]).unwrap_err(),
            RingError::EmptyId
        );
        assert_eq!(
            Ring::new(1, 4, vec![one("a", 0)]).unwrap_err(),
            RingError::ZeroWeight("a".into())
        );
        assert_eq!(
            Ring::new(1, 4, vec![one("b", 1), one("a", 1), one("b", 2)]).unwrap_err(),
            RingError::DuplicateShard("b".into())
        );
        assert_eq!(
            Ring::new(1, u32::MAX, vec![one("a", u32::MAX)]).unwrap_err(),
            RingError::TooManyPoints(u64::from(u32::MAX) * u64::from(u32::MAX))
        );
    }

    #[test]
    fn empty_ring_owns_nothing() {
        let ring = Ring::new(3, DEFAULT_VNODES, vec![]).unwrap();
        assert_eq!(ring.locate(b"k"), None);
        assert_eq!(ring.owner_index(0), None);
        assert!(ring.shares().is_empty());
        assert!(ring.arcs_of("a").is_empty());
        assert_eq!(ring.points_of("a"), 0);
        let next = ring.with_shard(ShardSpec::new("a", 1)).unwrap();
        assert_eq!(next.epoch(), 4);
        assert!(ring.diff(&next).is_empty());
        assert!(next.diff(&ring).is_empty());
    }

    #[test]
    fn points_are_named_id_hash_i_and_order_free() {
        let shards = vec![ShardSpec::new("b", 2), ShardSpec::new("a#1", 1)];
        let ring = Ring::new(1, 3, shards.clone()).unwrap();
        let mut expected: Vec<(u64, u32)> = (0..3)
            .map(|i| (raw_hash(format!("a#1#{i}").as_bytes()), 0))
            .chain((0..6).map(|i| (raw_hash(format!("b#{i}").as_bytes()), 1)))
            .collect();
        expected.sort_unstable();
        assert_eq!(ring.points, expected);
        assert_eq!(ring.shards()[0].id, "a#1");
        assert_eq!((ring.points_of("a#1"), ring.points_of("b")), (3, 6));
        assert_eq!(
            (ring.shard_index("b"), ring.shard_index("c")),
            (Some(1), None)
        );
        let reversed = Ring::new(1, 3, shards.into_iter().rev().collect()).unwrap();
        assert_eq!(reversed.points, ring.points);
    }

    /// Owners are a wire contract between routers and nodes of different builds. Expected owners
    /// come from an independent model (Python's xxhash: sorted `xxh3("{id}#{i}")` points, first
    /// at or after the key's hash).
    #[test]
    fn owners_are_pinned() {
        let shards = ["a", "b", "c"].map(|id| ShardSpec::new(id, 1)).to_vec();
        let ring = Ring::new(1, DEFAULT_VNODES, shards).unwrap();
        for (key, owner) in [
            ("user:42", "c"),
            ("key:000000012345", "c"),
            ("foo", "a"),
            ("{user:42}.mail", "c"),
            ("user:2", "a"),
            ("user:3", "b"),
        ] {
            assert_eq!(ring.locate(key.as_bytes()).unwrap().id, owner, "{key}");
        }
    }

    #[test]
    fn one_shard_owns_the_whole_circle() {
        let ring = equal_ring(&["only".into()], 5);
        assert_eq!(ring.locate(b"anything").unwrap().id, "only");
        let arcs = ring.arcs_of("only");
        assert_eq!(arcs.len(), 1);
        assert_eq!(arcs[0].start, arcs[0].end);
        assert_eq!(arcs[0].width(), 1 << 64);
        assert_eq!(ring.shares(), vec![("only".to_string(), 1.0)]);
    }

    #[test]
    fn ties_go_to_the_smaller_id() {
        let ring = manual(&["a", "b"], &[(5, "b"), (5, "a"), (10, "b")]);
        let owner = |hash| ring.owner(hash).unwrap().id.as_str();
        assert_eq!(
            [owner(3), owner(5), owner(7), owner(10), owner(11)],
            ["a", "a", "b", "b", "a"]
        );
        assert_eq!(ring.arcs_of("a"), vec![arc(10, 5)]);
        assert_eq!(ring.arcs_of("b"), vec![arc(5, 10)]);
        let all_equal = manual(&["a", "b"], &[(5, "b"), (5, "a")]);
        assert_eq!(all_equal.arcs_of("a"), vec![arc(5, 5)]);
        assert!(all_equal.arcs_of("b").is_empty());
        assert_eq!(all_equal.shares()[1].1, 0.0);
    }

    #[test]
    fn arcs_merge_runs_and_across_the_wrap() {
        let ring = manual(&["a", "b"], &[(10, "a"), (20, "a"), (30, "b"), (40, "a")]);
        assert_eq!(ring.arcs_of("a"), vec![arc(30, 20)]);
        assert_eq!(ring.arcs_of("b"), vec![arc(20, 30)]);
        let shares = ring.shares();
        assert_eq!(shares[1].1, 10.0 / 2f64.powi(64));
    }

    #[test]
    fn diff_merges_same_moves_across_the_wrap() {
        let old = manual(&["a", "b"], &[(10, "a"), (20, "b"), (30, "a")]);
        let new = manual(&["b", "c"], &[(10, "c"), (20, "b"), (30, "c")]);
        assert_eq!(old.diff(&new), vec![hop(arc(20, 10), "a", "c")]);
        assert_eq!(new.diff(&old), vec![hop(arc(20, 10), "c", "a")]);
        assert!(old.diff(&old).is_empty());

        let whole = manual(&["a"], &[(7, "a")]).diff(&manual(&["b"], &[(9, "b")]));
        assert_eq!(whole, vec![hop(arc(9, 9), "a", "b")]);

        // a boundary that only the new ring has splits an arc between two different moves
        let old = manual(&["a", "b"], &[(10, "a"), (30, "b")]);
        let new = manual(&["c", "d"], &[(10, "c"), (20, "d"), (30, "c")]);
        let expected = vec![
            hop(arc(30, 10), "a", "c"),
            hop(arc(10, 20), "b", "d"),
            hop(arc(20, 30), "b", "c"),
        ];
        assert_eq!(old.diff(&new), expected);
    }

    #[test]
    fn membership_builders_bump_the_epoch() {
        let ring = equal_ring(&["a".into(), "b".into()], 8);
        let joined = ring.with_shard(ShardSpec::new("c", 2)).unwrap();
        assert_eq!(
            (joined.epoch(), joined.vnodes(), joined.points_of("c")),
            (2, 8, 16)
        );
        assert_eq!(
            ring.with_shard(ShardSpec::new("a", 1)).unwrap_err(),
            RingError::DuplicateShard("a".into())
        );
        let left = joined.without_shard("a").unwrap();
        assert_eq!(left.epoch(), 3);
        assert_eq!(left.shards().len(), 2);
        assert_eq!(
            left.without_shard("a").unwrap_err(),
            RingError::UnknownShard("a".into())
        );
        let last = Ring::new(Epoch::MAX, 8, vec![]).unwrap();
        assert_eq!(
            last.with_shard(ShardSpec::new("a", 1)).unwrap_err(),
            RingError::EpochExhausted
        );
    }

    #[test]
    fn locate_hashes_the_tag() {
        let ids: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let ring = equal_ring(&ids, 64);
        for user in 0..100 {
            let a = format!("{{user{user}}}.name");
            let b = format!("{{user{user}}}.mail");
            assert_eq!(ring.locate(a.as_bytes()), ring.locate(b.as_bytes()));
        }
    }

    #[test]
    fn arc_contains_and_width() {
        let plain = arc(10, 20);
        assert!(!plain.contains(10) && plain.contains(11) && plain.contains(20));
        assert!(!plain.contains(21) && !plain.contains(0));
        assert_eq!(plain.width(), 10);
        let wrapping = arc(u64::MAX - 1, 1);
        assert!(wrapping.contains(u64::MAX) && wrapping.contains(0) && wrapping.contains(1));
        assert!(!wrapping.contains(u64::MAX - 1) && !wrapping.contains(2));
        assert_eq!(wrapping.width(), 3);
        let whole = arc(42, 42);
        assert!(whole.contains(42) && whole.contains(0) && whole.contains(u64::MAX));
        assert_eq!(whole.width(), 1 << 64);
    }

    #[test]
    fn arc_buckets() {
        let bucket = |b: u64| b << BUCKET_SHIFT;
        let last = BUCKETS - 1;
        let list = |arc: Arc| arc.buckets().collect::<Vec<_>>();
        assert_eq!(list(arc(bucket(3), bucket(5))), vec![3, 4, 5]);
        assert_eq!(list(arc(bucket(3) - 1, bucket(5) - 1)), vec![3, 4]);
        assert_eq!(list(arc(5, 6)), vec![0]);
        assert_eq!(list(arc(u64::MAX, 0)), vec![0]);
        assert_eq!(list(arc(u64::MAX, bucket(2))), vec![0, 1, 2]);
        assert_eq!(list(arc(u64::MAX - 1, 0)), vec![last, 0]);
        assert_eq!(list(arc(bucket(last as u64), 1)), vec![last, 0]);
        assert_eq!(list(arc(7, 7)).len(), BUCKETS);
        // nearly the whole circle, wrapping inside one bucket
        assert_eq!(list(arc(bucket(4) + 9, bucket(4) + 8)).len(), BUCKETS);
        assert_eq!(list(arc(bucket(4) + 9, bucket(4) - 1)).len(), BUCKETS);
        assert_eq!(list(arc(bucket(4) - 1, bucket(4) - 2)).len(), BUCKETS);
    }

    #[test]
    fn balance_and_join_over_a_million_keys() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let ids: Vec<String> = (0..11)
            .map(|_| format!("shard-{:08x}", rng.gen::<u32>()))
            .collect();
        let ten = equal_ring(&ids[..10], DEFAULT_VNODES);
        let hashes = key_hashes(rng.gen(), 1_000_000);
        let before = counts(&ten, &hashes);
        let balance = max_over_mean(&before);
        eprintln!("10 shards, 1M keys: busiest/mean = {balance:.4}");
        assert!(balance <= 1.10, "busiest shard holds {balance} × mean");

        let eleven = ten.with_shard(ShardSpec::new(ids[10].clone(), 1)).unwrap();
        let mut moved = 0;
        for &hash in &hashes {
            let (from, to) = (ten.owner(hash).unwrap(), eleven.owner(hash).unwrap());
            if from != to {
                assert_eq!(to.id, ids[10], "a key moved between two staying shards");
                moved += 1;
            }
        }
        let fraction = moved as f64 / hashes.len() as f64;
        eprintln!(
            "join of an 11th shard moved {fraction:.4} of keys (1/11 = {:.4})",
            1.0 / 11.0
        );
        assert!((fraction * 11.0 - 1.0).abs() <= 0.10);
    }

    #[test]
    fn weight_two_gets_twice_the_keys() {
        let shards = vec![ShardSpec::new("heavy", 2), ShardSpec::new("light", 1)];
        let ring = Ring::new(1, DEFAULT_VNODES, shards).unwrap();
        let counts = counts(&ring, &key_hashes(2, 300_000));
        let ratio = counts[0] as f64 / counts[1] as f64;
        let shares = ring.shares();
        let share_ratio = shares[0].1 / shares[1].1;
        eprintln!("weight 2:1 → keys {ratio:.4}:1, hash space {share_ratio:.4}:1");
        assert!((ratio / 2.0 - 1.0).abs() <= 0.10);
        assert!((share_ratio / 2.0 - 1.0).abs() <= 0.10);
    }

    /// Distinct shard ids, including the `#`, `{` and `:` that real ids may hold.
    fn ids(len: impl Into<prop::collection::SizeRange>) -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_set("[a-z0-9][a-z0-9:._#{}-]{0,23}", len)
            .prop_map(|ids| ids.into_iter().collect::<Vec<_>>())
            .prop_shuffle()
    }

    /// Bounds that hold only with high probability use a fixed seed so CI never flakes; set
    /// PROPTEST_RNG_SEED to try others.
    fn statistical(cases: u32) -> ProptestConfig {
        let base = ProptestConfig::with_cases(cases);
        let seeded = std::env::var_os("PROPTEST_RNG_SEED").is_some();
        ProptestConfig {
            rng_seed: if seeded {
                base.rng_seed
            } else {
                RngSeed::Fixed(0x7269_6e67)
            },
            failure_persistence: None,
            ..base
        }
    }

    proptest! {
        #![proptest_config(statistical(12))]

        #[test]
        fn ten_equal_shards_balance(ids in ids(10), seed in any::<u64>()) {
            let ring = equal_ring(&ids, DEFAULT_VNODES);
            let shares = ring.shares();
            let busiest = shares.iter().map(|&(_, share)| share).fold(0.0, f64::max);
            prop_assert!(busiest * 10.0 <= 1.10, "busiest share {busiest}");
            let balance = max_over_mean(&counts(&ring, &key_hashes(seed, 100_000)));
            prop_assert!(balance <= 1.10, "busiest shard holds {balance} × mean");
        }

        #[test]
        fn an_eleventh_shard_takes_a_fair_eleventh(ids in ids(11), seed in any::<u64>()) {
            let ten = equal_ring(&ids[..10], DEFAULT_VNODES);
            let eleven = ten.with_shard(ShardSpec::new(ids[10].clone(), 1)).unwrap();
            let hashes = key_hashes(seed, 100_000);
            let mut moved = 0;
            for &hash in &hashes {
                let (from, to) = (ten.owner(hash).unwrap(), eleven.owner(hash).unwrap());
                if from != to {
                    prop_assert_eq!(&to.id, &ids[10]);
                    moved += 1;
                }
            }
            let fraction = moved as f64 / hashes.len() as f64;
            prop_assert!((fraction * 11.0 - 1.0).abs() <= 0.10, "moved {}", fraction);
        }

        #[test]
        fn weights_are_honoured(
            shards in ids(2..7).prop_flat_map(|ids| {
                let n = ids.len();
                (Just(ids), prop::collection::vec(1u32..=3, n))
            }),
        ) {
            let (ids, weights) = shards;
            let total: u32 = weights.iter().sum();
            let specs = ids.iter().zip(&weights).map(|(id, &w)| ShardSpec::new(id.clone(), w));
            let ring = Ring::new(1, DEFAULT_VNODES, specs.collect()).unwrap();
            for (id, share) in ring.shares() {
                let weight = weights[ids.iter().position(|i| *i == id).unwrap()];
                let expected = f64::from(weight) / f64::from(total);
                prop_assert!((share / expected - 1.0).abs() <= 0.10, "{} owns {} not {}", id, share, expected);
            }
        }
    }

    /// Two rings over one pool of ids, each shard present or not with its own weight.
    fn ring_pair() -> impl Strategy<Value = (Ring, Ring)> {
        // few points per shard: many owner changes per ring, and the quadratic check stays fast
        let vnodes = 1u32..32;
        let membership = prop::collection::vec(prop::option::of(1u32..=3), 1..8);
        (
            ids(1..8),
            membership.clone(),
            membership,
            vnodes.clone(),
            vnodes,
        )
            .prop_map(|(ids, old, new, old_vnodes, new_vnodes)| {
                let pick = |weights: &[Option<u32>]| -> Vec<ShardSpec> {
                    ids.iter()
                        .zip(weights)
                        .filter_map(|(id, w)| w.map(|w| ShardSpec::new(id.clone(), w)))
                        .collect()
                };
                (
                    Ring::new(1, old_vnodes, pick(&old)).unwrap(),
                    Ring::new(2, new_vnodes, pick(&new)).unwrap(),
                )
            })
    }

    /// Hashes worth probing: random ones and each point, its neighbours and the circle's ends.
    fn probes(rings: &[&Ring], seed: u64) -> Vec<u64> {
        let mut hashes = key_hashes(seed, 500);
        hashes.extend([0, 1, u64::MAX]);
        for ring in rings {
            for &(point, _) in &ring.points {
                hashes.extend([point.wrapping_sub(1), point, point.wrapping_add(1)]);
            }
        }
        hashes
    }

    const BUCKET_SHIFT: u32 = 64 - crate::hash::BUCKET_BITS;

    /// Any hash, or one within a hash of a bucket boundary, where off-by-ones live.
    fn near_bucket_edges() -> impl Strategy<Value = u64> {
        let edge = (0..BUCKETS as u64, 0u64..3)
            .prop_map(|(bucket, d)| (bucket << BUCKET_SHIFT).wrapping_add(d).wrapping_sub(1));
        prop_oneof![any::<u64>(), edge]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn diff_covers_exactly_the_moved_keys((old, new) in ring_pair(), seed in any::<u64>()) {
            let moves = old.diff(&new);
            for &hash in &probes(&[&old, &new], seed) {
                let mut holding = moves.iter().filter(|m| m.arc.contains(hash));
                let hop = holding.next();
                prop_assert!(holding.next().is_none(), "moves overlap at {}", hash);
                match (old.owner(hash), new.owner(hash)) {
                    (Some(from), Some(to)) if from.id != to.id => {
                        let hop = hop.ok_or_else(|| TestCaseError::fail(format!("{hash} moved outside every arc")))?;
                        prop_assert_eq!((&hop.from, &hop.to), (&from.id, &to.id));
                    }
                    _ => prop_assert!(hop.is_none(), "{} did not move but {:?} holds it", hash, hop),
                }
            }
            // maximal: no two moves with the same endpoints touch
            for (at, m) in moves.iter().enumerate() {
                prop_assert!(m.arc.start != m.arc.end || moves.len() == 1);
                let touching = moves.iter().enumerate().filter(|&(other, n)| {
                    other != at && n.arc.start == m.arc.end && n.from == m.from && n.to == m.to
                });
                prop_assert_eq!(touching.count(), 0, "{:?} not merged", m);
            }
        }

        #[test]
        fn join_and_leave_move_only_the_changed_shard(
            ids in ids(2..8),
            vnodes in prop_oneof![3 => 1u32..64, 1 => Just(DEFAULT_VNODES)],
            weight in 1u32..=3,
            seed in any::<u64>(),
        ) {
            let (changed, staying) = ids.split_last().unwrap();
            let small = equal_ring(staying, vnodes);
            let big = small.with_shard(ShardSpec::new(changed.clone(), weight)).unwrap();
            let left = big.without_shard(changed).unwrap();
            prop_assert_eq!(&left.points, &small.points);

            let joined: u128 = big.arcs_of(changed).iter().map(Arc::width).sum();
            let join = small.diff(&big);
            prop_assert!(join.iter().all(|m| &m.to == changed));
            prop_assert_eq!(join.iter().map(|m| m.arc.width()).sum::<u128>(), joined);
            let leave = big.diff(&left);
            prop_assert!(leave.iter().all(|m| &m.from == changed));
            prop_assert_eq!(leave.iter().map(|m| m.arc.width()).sum::<u128>(), joined);

            for &hash in &probes(&[&big], seed) {
                let (before, after) = (big.owner(hash).unwrap(), left.owner(hash).unwrap());
                prop_assert_eq!(before != after, &before.id == changed);
            }
        }

        #[test]
        fn lookups_match_a_linear_scan(
            ids in ids(0..6),
            weights in prop::collection::vec(1u32..=3, 6),
            vnodes in 1u32..8,
            seed in any::<u64>(),
        ) {
            let specs: Vec<ShardSpec> = ids.iter().zip(&weights).map(|(id, &w)| ShardSpec::new(id.clone(), w)).collect();
            let ring = Ring::new(1, vnodes, specs.clone()).unwrap();
            let mut naive: Vec<(u64, &str)> = Vec::new();
            for spec in &specs {
                for i in 0..vnodes * spec.weight {
                    naive.push((raw_hash(format!("{}#{i}", spec.id).as_bytes()), &spec.id));
                }
            }
            let arcs: Vec<(String, Vec<Arc>)> = ids.iter().map(|id| (id.clone(), ring.arcs_of(id))).collect();
            // and either side of every slot edge of the lookup index
            let mut hashes = probes(&[&ring], seed);
            for slot in 0..ring.slots.starts.len() as u64 - 1 {
                let edge = slot << ring.slots.shift;
                hashes.extend([edge.wrapping_sub(1), edge]);
            }
            for &hash in &hashes {
                let at_or_after = naive.iter().filter(|&&(point, _)| point >= hash).min();
                let expected = at_or_after.or_else(|| naive.iter().min()).map(|&(_, id)| id);
                let owner = ring.owner(hash).map(|shard| shard.id.as_str());
                prop_assert_eq!(owner, expected);
                let holders: Vec<&str> = arcs.iter()
                    .filter(|(_, arcs)| arcs.iter().any(|arc| arc.contains(hash)))
                    .map(|(id, _)| id.as_str())
                    .collect();
                prop_assert_eq!(holders, expected.into_iter().collect::<Vec<_>>());
            }
            if !ids.is_empty() {
                let total: f64 = ring.shares().iter().map(|&(_, share)| share).sum();
                prop_assert!((total - 1.0).abs() < 1e-9);
            }
        }

        #[test]
        fn buckets_are_exactly_those_the_arc_touches(
            start in near_bucket_edges(),
            end in near_bucket_edges(),
        ) {
            let arc = Arc { start, end };
            let listed: Vec<usize> = arc.buckets().collect();
            let mut seen = vec![false; BUCKETS];
            for &bucket in &listed {
                prop_assert!(!seen[bucket], "bucket {} listed twice", bucket);
                seen[bucket] = true;
            }
            for (bucket, &listed) in seen.iter().enumerate() {
                let low = (bucket as u64) << BUCKET_SHIFT;
                let high = low | ((1 << BUCKET_SHIFT) - 1);
                // a circular interval meets [low, high] iff it reaches high or ends inside it
                let touches = arc.contains(high) || (low..=high).contains(&end);
                prop_assert_eq!(listed, touches, "bucket {}", bucket);
            }
        }
    }
}
