//! The ordered half of a large sorted set: every `(score, member)` entry in order, in a
//! three-level tree with no allocation per member. Leaves are [`Chunk`]s of at most 128 entries
//! / 2 KiB packed in one buffer; groups list up to [`GROUP_MAX`] leaves in order with their
//! counts; a Fenwick tree over the groups' sizes gives ranks. Finding a member's place is two
//! binary searches (groups, then leaves, by their first entries) and a walk of one leaf; finding
//! a rank is a Fenwick descent, a sum over one group's counts and a walk of one leaf. A split or
//! merge moves at most one group's list of leaves, and only a group's split or merge (every few
//! thousand changes) rebuilds the Fenwick tree, so every change is O(log n) amortized.

use std::cmp::Ordering;

pub use super::chunk::cmp;
use super::chunk::{entry, Chunk, FILL_BYTES, FILL_COUNT, MIN_COUNT};

/// Most leaves in a group (a group past it splits in two).
const GROUP_MAX: usize = 128;
/// A group with fewer leaves merges into a neighbour when the two fit in one.
const GROUP_MIN: usize = GROUP_MAX / 4;
const GROUP_FILL: usize = GROUP_MAX * 3 / 4;

#[derive(Debug, Default)]
struct Group {
    /// Leaf ids (indexes into the arena), in order.
    leaves: Vec<u32>,
    /// Entries in each leaf.
    counts: Vec<u16>,
    /// Entries in the group.
    len: usize,
    /// The bytes of `leaves` and `counts` as last added to the index's total.
    accounted: usize,
}

impl Group {
    fn new() -> Group {
        Group::default()
    }

    /// Bytes the group owns besides its leaves.
    fn bytes(&self) -> usize {
        self.leaves.capacity() * 4 + self.counts.capacity() * 2
    }

    fn push(&mut self, id: u32, count: usize) {
        self.leaves.push(id);
        self.counts.push(count as u16);
        self.len += count;
    }
}

impl Clone for Group {
    fn clone(&self) -> Self {
        // Same capacities, so the accounted bytes stay true.
        let mut leaves = Vec::with_capacity(self.leaves.capacity());
        leaves.extend_from_slice(&self.leaves);
        let mut counts = Vec::with_capacity(self.counts.capacity());
        counts.extend_from_slice(&self.counts);
        Group {
            leaves,
            counts,
            len: self.len,
            accounted: self.accounted,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Leaves by id; ids of emptied leaves wait in `free`.
    arena: Vec<Chunk>,
    free: Vec<u32>,
    groups: Vec<Group>,
    /// Fenwick tree over the groups' sizes, 1-based (`tree[0]` unused).
    tree: Vec<usize>,
    len: usize,
    /// Capacity of every leaf's buffer.
    buf_bytes: usize,
    /// Every group's accounted bytes.
    meta_bytes: usize,
}

/// Where an entry is: group, leaf in the group, entry in the leaf.
#[derive(Debug, Clone, Copy)]
struct At {
    g: usize,
    j: usize,
    i: usize,
}

impl Index {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes owned, in O(1).
    pub fn mem_usage(&self) -> usize {
        self.buf_bytes
            + self.arena.capacity() * std::mem::size_of::<Chunk>()
            + self.free.capacity() * 4
            + self.groups.capacity() * std::mem::size_of::<Group>()
            + self.meta_bytes
            + self.tree.capacity() * std::mem::size_of::<usize>()
    }

    /// An index of `entries`, which must be in order with distinct members.
    pub fn from_sorted<'a>(entries: impl Iterator<Item = (&'a [u8], f64)>) -> Index {
        let mut ix = Index::default();
        let mut cur = Chunk::default();
        for (m, s) in entries {
            if cur.len() >= FILL_COUNT || cur.buf.len() >= FILL_BYTES {
                ix.push_leaf(std::mem::take(&mut cur));
            }
            let off = cur.buf.len();
            cur.insert_at(off, s, m);
        }
        if cur.len() > 0 {
            ix.push_leaf(cur);
        }
        ix.rebuild();
        ix
    }

    /// Appends a leaf at the end (bulk building).
    fn push_leaf(&mut self, mut c: Chunk) {
        c.buf.shrink_to_fit();
        let n = c.len();
        self.len += n;
        let id = self.alloc(c);
        if self
            .groups
            .last()
            .is_none_or(|g| g.leaves.len() >= GROUP_FILL)
        {
            self.groups.push(Group::new());
        }
        if let Some(g) = self.groups.last_mut() {
            g.push(id, n);
        }
        self.sync(self.groups.len() - 1);
    }

    /// Brings the byte total up to date with group `g`'s vectors.
    fn sync(&mut self, g: usize) {
        if let Some(grp) = self.groups.get_mut(g) {
            let now = grp.bytes();
            self.meta_bytes = self.meta_bytes + now - grp.accounted;
            grp.accounted = now;
        }
    }

    /// Removes group `g`, taking its bytes out of the total.
    fn remove_group(&mut self, g: usize) -> Group {
        let grp = self.groups.remove(g);
        self.meta_bytes -= grp.accounted;
        grp
    }

    fn alloc(&mut self, c: Chunk) -> u32 {
        self.buf_bytes += c.buf.capacity();
        match self.free.pop() {
            Some(id) => {
                if let Some(slot) = self.arena.get_mut(id as usize) {
                    *slot = c;
                }
                id
            }
            None => {
                self.arena.push(c);
                (self.arena.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, id: u32) {
        if let Some(c) = self.arena.get_mut(id as usize) {
            self.buf_bytes -= c.buf.capacity();
            *c = Chunk::default();
            self.free.push(id);
        }
    }

    fn leaf_id(&self, g: usize, j: usize) -> u32 {
        self.groups[g].leaves[j]
    }

    fn leaf(&self, g: usize, j: usize) -> &Chunk {
        &self.arena[self.leaf_id(g, j) as usize]
    }

    /// Changes leaf `(g, j)` with `f`, keeping the byte count and the leaf's count right.
    fn edit_leaf<R>(&mut self, g: usize, j: usize, f: impl FnOnce(&mut Chunk) -> R) -> R {
        let id = self.leaf_id(g, j) as usize;
        let c = &mut self.arena[id];
        let (cap, n) = (c.buf.capacity(), c.len());
        let r = f(c);
        let (cap2, n2) = (c.buf.capacity(), c.len());
        self.buf_bytes = self.buf_bytes + cap2 - cap;
        self.groups[g].counts[j] = n2 as u16;
        self.count(g, n2, n);
        r
    }

    /// Adds `add` and takes `sub` entries to group `g`'s size (and the whole).
    fn count(&mut self, g: usize, add: usize, sub: usize) {
        let grp = &mut self.groups[g];
        grp.len = grp.len + add - sub;
        self.len = self.len + add - sub;
        let mut k = g + 1;
        while k < self.tree.len() {
            self.tree[k] = self.tree[k] + add - sub;
            k += k & k.wrapping_neg();
        }
    }

    fn rebuild(&mut self) {
        let n = self.groups.len();
        self.tree.clear();
        self.tree.reserve_exact(n + 1);
        self.tree.push(0);
        self.tree.extend(self.groups.iter().map(|g| g.len));
        for j in 1..=n {
            let p = j + (j & j.wrapping_neg());
            if p <= n {
                self.tree[p] += self.tree[j];
            }
        }
        if self.tree.capacity() > 2 * self.tree.len() + 16 {
            self.tree.shrink_to_fit();
        }
    }

    /// Entries in groups `0..g`.
    fn prefix(&self, g: usize) -> usize {
        let mut k = g.min(self.tree.len().saturating_sub(1));
        let mut sum = 0;
        while k > 0 {
            sum += self.tree[k];
            k &= k - 1;
        }
        sum
    }

    /// Entries before leaf `j` of group `g`.
    fn rank_of(&self, at: At) -> usize {
        let before: usize = self.groups[at.g].counts[..at.j]
            .iter()
            .map(|&c| usize::from(c))
            .sum();
        self.prefix(at.g) + before + at.i
    }

    /// Where entry `rank` is (`rank < len`).
    fn locate_rank(&self, rank: usize) -> At {
        let n = self.groups.len();
        let (mut g, mut rem) = (0, rank);
        let mut step = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            if g + step <= n && self.tree[g + step] <= rem {
                g += step;
                rem -= self.tree[g];
            }
            step >>= 1;
        }
        let counts = self.groups.get(g).map_or(&[][..], |gr| &gr.counts[..]);
        for (j, &c) in counts.iter().enumerate() {
            let c = usize::from(c);
            if rem < c {
                return At { g, j, i: rem };
            }
            rem -= c;
        }
        At { g, j: 0, i: 0 }
    }

    fn group_first(&self, gr: &Group) -> (f64, &[u8]) {
        gr.leaves
            .first()
            .and_then(|&id| self.arena.get(id as usize))
            .map_or((0.0, &b""[..]), Chunk::first)
    }

    /// The leaf where entries for which `before` holds end: the last leaf whose first entry
    /// satisfies it, and the count of such leaf-first entries' groups; `None` if no entry does.
    fn last_leaf_where(&self, before: impl Fn(f64, &[u8]) -> bool) -> Option<(usize, usize)> {
        let g = self.groups.partition_point(|gr| {
            let (s, m) = self.group_first(gr);
            before(s, m)
        });
        let g = g.checked_sub(1)?;
        let j = self.groups[g].leaves.partition_point(|&id| {
            let (s, m) = self.arena[id as usize].first();
            before(s, m)
        });
        Some((g, j.saturating_sub(1)))
    }

    /// How many entries come before the first for which `before` is false; `before` must hold
    /// for a prefix of the order.
    pub fn partition_point(&self, before: impl Fn(f64, &[u8]) -> bool) -> usize {
        let Some((g, j)) = self.last_leaf_where(&before) else {
            return 0;
        };
        let i = self
            .leaf(g, j)
            .entries()
            .take_while(|&(_, s, m, _)| before(s, m))
            .count();
        self.rank_of(At { g, j, i })
    }

    /// The leaf where `(score, member)` is or would go.
    fn leaf_for(&self, score: f64, member: &[u8]) -> (usize, usize) {
        self.last_leaf_where(|s, m| cmp(s, m, score, member) != Ordering::Greater)
            .unwrap_or((0, 0))
    }

    /// Where `(score, member)` is, with its byte span in the leaf.
    fn find(&self, score: f64, member: &[u8]) -> Option<(At, usize, usize)> {
        if self.groups.is_empty() {
            return None;
        }
        let (g, j) = self.leaf_for(score, member);
        for (i, (from, s, m, to)) in self.leaf(g, j).entries().enumerate() {
            match cmp(s, m, score, member) {
                Ordering::Less => continue,
                Ordering::Equal => return Some((At { g, j, i }, from, to)),
                Ordering::Greater => return None,
            }
        }
        None
    }

    pub fn contains(&self, score: f64, member: &[u8]) -> bool {
        self.find(score, member).is_some()
    }

    /// The 0-based rank of `(score, member)`.
    pub fn rank(&self, score: f64, member: &[u8]) -> Option<usize> {
        self.find(score, member).map(|(at, ..)| self.rank_of(at))
    }

    /// Inserts `(score, member)`; the member must not be in the index.
    pub fn insert(&mut self, score: f64, member: &[u8]) {
        if self.groups.is_empty() {
            let id = self.alloc(Chunk::default());
            let mut g = Group::new();
            g.push(id, 0);
            self.groups.push(g);
            self.sync(0);
            self.rebuild();
        }
        let (g, j) = self.leaf_for(score, member);
        let c = self.leaf(g, j);
        let off = c
            .entries()
            .find(|&(_, s, m, _)| cmp(s, m, score, member) == Ordering::Greater)
            .map_or(c.buf.len(), |(at, ..)| at);
        let (appended, prepended) = (off == c.buf.len(), off == 0);
        let (full, n) = self.edit_leaf(g, j, |c| {
            c.insert_at(off, score, member);
            (c.is_full(), c.len())
        });
        if !full {
            return;
        }
        // Growing at either end of the set (rising timestamps as scores) leaves the old leaf
        // full rather than two half-empty ones.
        let last = g + 1 == self.groups.len() && j + 1 == self.groups[g].leaves.len();
        let mid = if appended && last {
            n - 1
        } else if prepended && g == 0 && j == 0 {
            1
        } else {
            n / 2
        };
        self.split_leaf(g, j, mid);
        if self.groups[g].leaves.len() > GROUP_MAX {
            self.split_group(g);
        }
    }

    /// Splits leaf `(g, j)` before its entry `mid` (and the halves again if still too big).
    fn split_leaf(&mut self, g: usize, j: usize, mid: usize) {
        let n = self.leaf(g, j).len();
        let mid = mid.clamp(1, n.saturating_sub(1).max(1));
        let tail = self.edit_leaf(g, j, |c| c.split_off(mid));
        let tail_n = tail.len();
        let id = self.alloc(tail);
        let grp = &mut self.groups[g];
        grp.leaves.insert(j + 1, id);
        grp.counts.insert(j + 1, tail_n as u16);
        self.sync(g);
        self.count(g, tail_n, 0);
        // Halves split by count may still be over the byte limit (long members).
        if self.leaf(g, j + 1).is_full() {
            self.split_leaf(g, j + 1, tail_n / 2);
        }
        if self.leaf(g, j).is_full() {
            self.split_leaf(g, j, mid / 2);
        }
    }

    fn split_group(&mut self, g: usize) {
        let grp = &mut self.groups[g];
        let half = grp.leaves.len() / 2;
        let mut tail = Group::new();
        for (&id, &c) in grp.leaves[half..].iter().zip(&grp.counts[half..]) {
            tail.push(id, usize::from(c));
        }
        grp.leaves.truncate(half);
        grp.counts.truncate(half);
        grp.leaves.shrink_to(GROUP_MAX);
        grp.counts.shrink_to(GROUP_MAX);
        grp.len -= tail.len;
        self.groups.insert(g + 1, tail);
        self.sync(g);
        self.sync(g + 1);
        self.rebuild();
        // A group can only pass the maximum by a few leaves at once; this guards the rest.
        for k in [g + 1, g] {
            if self
                .groups
                .get(k)
                .is_some_and(|gr| gr.leaves.len() > GROUP_MAX)
            {
                self.split_group(k);
            }
        }
    }

    /// Removes `(score, member)`; false if it is not there.
    pub fn remove(&mut self, score: f64, member: &[u8]) -> bool {
        let Some((at, from, to)) = self.find(score, member) else {
            return false;
        };
        self.edit_leaf(at.g, at.j, |c| c.remove_span(from, to, 1));
        self.tidy_leaf(at.g, at.j);
        true
    }

    /// Drops leaf `(g, j)` if empty or merges it into a neighbour if small, then tidies its
    /// group.
    fn tidy_leaf(&mut self, g: usize, j: usize) {
        let Some(grp) = self.groups.get(g) else {
            return;
        };
        let Some(&id) = grp.leaves.get(j) else {
            return;
        };
        let c = &self.arena[id as usize];
        if c.len() == 0 {
            self.release(id);
            let grp = &mut self.groups[g];
            grp.leaves.remove(j);
            grp.counts.remove(j);
            self.sync(g);
        } else if c.len() < MIN_COUNT {
            let fits = |k: usize| {
                let n = &self.arena[grp.leaves[k] as usize];
                Chunk::fits(c, n)
            };
            let left = if j + 1 < grp.leaves.len() && fits(j + 1) {
                j
            } else if j > 0 && fits(j - 1) {
                j - 1
            } else {
                return self.tidy_group(g);
            };
            let right_id = grp.leaves[left + 1];
            let right = std::mem::take(&mut self.arena[right_id as usize]);
            self.edit_leaf(g, left, |c| c.append(&right));
            // The right leaf's entries now count in the left one.
            self.buf_bytes -= right.buf.capacity();
            self.free.push(right_id);
            let grp = &mut self.groups[g];
            grp.leaves.remove(left + 1);
            grp.counts.remove(left + 1);
            self.sync(g);
            self.count(g, 0, right.len());
        }
        self.tidy_group(g);
    }

    /// Drops group `g` if empty or merges it into a neighbour if small.
    fn tidy_group(&mut self, g: usize) {
        let Some(grp) = self.groups.get(g) else {
            return;
        };
        let n = grp.leaves.len();
        if n == 0 {
            self.remove_group(g);
            self.rebuild();
            return;
        }
        if n >= GROUP_MIN {
            return;
        }
        let fits = |k: usize| {
            self.groups
                .get(k)
                .is_some_and(|o| o.leaves.len() + n <= GROUP_MAX)
        };
        let left = if fits(g + 1) {
            g
        } else if g > 0 && fits(g - 1) {
            g - 1
        } else {
            return;
        };
        let right = self.remove_group(left + 1);
        let grp = &mut self.groups[left];
        for (&id, &c) in right.leaves.iter().zip(&right.counts) {
            grp.push(id, usize::from(c));
        }
        self.sync(left);
        self.rebuild();
    }

    /// The entry at `rank`.
    pub fn get(&self, rank: usize) -> Option<(&[u8], f64)> {
        if rank >= self.len {
            return None;
        }
        let at = self.locate_rank(rank);
        let c = self.leaf(at.g, at.j);
        let (s, m, _) = entry(&c.buf, c.offset_of(at.i));
        Some((m, s))
    }

    /// Entries from `rank` on, in order.
    pub fn iter_from(&self, rank: usize) -> Iter<'_> {
        if rank >= self.len {
            return Iter {
                ix: self,
                g: self.groups.len(),
                j: 0,
                off: 0,
                left: 0,
            };
        }
        let at = self.locate_rank(rank);
        let c = self.leaf(at.g, at.j);
        Iter {
            ix: self,
            g: at.g,
            j: at.j,
            off: c.offset_of(at.i),
            left: c.len() - at.i,
        }
    }

    /// Entries from `rank` (clamped to the last) down to the first, in reverse order.
    pub fn iter_rev_from(&self, rank: usize) -> RevIter<'_> {
        let mut it = RevIter {
            ix: self,
            g: 0,
            j: 0,
            offs: Vec::new(),
            pos: 0,
        };
        if self.len > 0 {
            let at = self.locate_rank(rank.min(self.len - 1));
            (it.g, it.j, it.pos) = (at.g, at.j, at.i + 1);
            self.leaf(at.g, at.j).offsets(&mut it.offs);
        }
        it
    }

    /// Removes the entries at ranks `start..end`, calling `f` with each, in order.
    pub fn remove_range(&mut self, start: usize, end: usize, mut f: impl FnMut(&[u8], f64)) {
        let end = end.min(self.len);
        if start >= end {
            return;
        }
        let first = self.locate_rank(start);
        let (mut g, mut j, mut i) = (first.g, first.j, first.i);
        let mut n = end - start;
        while n > 0 && g < self.groups.len() {
            let take = n.min(self.leaf(g, j).len() - i);
            self.edit_leaf(g, j, |c| {
                let from = c.offset_of(i);
                let mut off = from;
                for _ in 0..take {
                    let (s, m, next) = entry(&c.buf, off);
                    f(m, s);
                    off = next;
                }
                c.remove_span(from, off, take);
            });
            n -= take;
            i = 0;
            j += 1;
            if j == self.groups[g].leaves.len() {
                g += 1;
                j = 0;
            }
        }
        // Emptied leaves and groups go; the partial leaves at both ends may merge.
        let last = g.min(self.groups.len().saturating_sub(1));
        let mut freed = Vec::new();
        for grp in &mut self.groups[first.g..=last] {
            let mut k = 0;
            while k < grp.leaves.len() {
                if grp.counts[k] == 0 {
                    freed.push(grp.leaves.remove(k));
                    grp.counts.remove(k);
                } else {
                    k += 1;
                }
            }
        }
        let changed = !freed.is_empty();
        freed.into_iter().for_each(|id| self.release(id));
        if changed {
            for k in (first.g..=last).rev() {
                if self.groups[k].leaves.is_empty() {
                    self.remove_group(k);
                } else {
                    self.sync(k);
                }
            }
            self.rebuild();
        }
        for rank in [start, start.saturating_sub(1)] {
            if rank < self.len {
                let at = self.locate_rank(rank);
                self.tidy_leaf(at.g, at.j);
            }
        }
        if self.groups.capacity() > 2 * self.groups.len() + 16 {
            self.groups.shrink_to_fit();
        }
        if self.len == 0 {
            *self = Index::default();
        }
    }

    /// Checks every invariant (tests).
    #[cfg(test)]
    pub fn check(&self) {
        let mut prev: Option<(f64, Vec<u8>)> = None;
        let (mut n, mut bytes, mut leaves) = (0, 0, 0);
        for (g, grp) in self.groups.iter().enumerate() {
            assert!(!grp.leaves.is_empty(), "empty group {g}");
            assert!(grp.leaves.len() <= GROUP_MAX, "overfull group {g}");
            assert_eq!(self.prefix(g), n);
            let mut in_group = 0;
            for (&id, &count) in grp.leaves.iter().zip(&grp.counts) {
                let c = &self.arena[id as usize];
                assert!(c.len() > 0, "empty leaf in group {g}");
                assert!(!c.is_full(), "overfull leaf in group {g}");
                assert_eq!(c.len(), usize::from(count));
                assert_eq!(c.offset_of(c.len()), c.buf.len());
                for (_, s, m, _) in c.entries() {
                    if let Some((ps, pm)) = &prev {
                        assert_eq!(cmp(*ps, pm, s, m), Ordering::Less);
                    }
                    prev = Some((s, m.to_vec()));
                }
                in_group += c.len();
                bytes += c.buf.capacity();
                leaves += 1;
            }
            assert_eq!(in_group, grp.len);
            n += in_group;
        }
        assert_eq!(n, self.len);
        assert_eq!(bytes, self.buf_bytes);
        let meta: usize = self.groups.iter().map(Group::bytes).sum();
        assert_eq!(meta, self.meta_bytes);
        assert_eq!(leaves + self.free.len(), self.arena.len());
    }
}

pub struct Iter<'a> {
    ix: &'a Index,
    g: usize,
    j: usize,
    off: usize,
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<(&'a [u8], f64)> {
        let groups = &self.ix.groups;
        while self.left == 0 {
            self.j += 1;
            if self.j >= groups.get(self.g)?.leaves.len() {
                self.g += 1;
                self.j = 0;
            }
            let id = *groups.get(self.g)?.leaves.get(self.j)?;
            self.off = 0;
            self.left = self.ix.arena.get(id as usize)?.len();
        }
        let id = *groups.get(self.g)?.leaves.get(self.j)?;
        let (s, m, next) = entry(&self.ix.arena.get(id as usize)?.buf, self.off);
        self.off = next;
        self.left -= 1;
        Some((m, s))
    }
}

pub struct RevIter<'a> {
    ix: &'a Index,
    g: usize,
    j: usize,
    /// Entry offsets of the current leaf; `offs[..pos]` are still to come.
    offs: Vec<usize>,
    pos: usize,
}

impl<'a> Iterator for RevIter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<(&'a [u8], f64)> {
        let groups = &self.ix.groups;
        while self.pos == 0 {
            if self.j > 0 {
                self.j -= 1;
            } else if self.g > 0 {
                self.g -= 1;
                self.j = groups.get(self.g)?.leaves.len().checked_sub(1)?;
            } else {
                return None;
            }
            let id = *groups.get(self.g)?.leaves.get(self.j)?;
            self.ix.arena.get(id as usize)?.offsets(&mut self.offs);
            self.pos = self.offs.len();
        }
        self.pos -= 1;
        let id = *groups.get(self.g)?.leaves.get(self.j)?;
        let (s, m, _) = entry(
            &self.ix.arena.get(id as usize)?.buf,
            *self.offs.get(self.pos)?,
        );
        Some((m, s))
    }
}
