//! The ordered half of a large sorted set: every `(score, member)` entry in order, packed into
//! chunks of at most [`MAX_COUNT`] entries / [`MAX_BYTES`] bytes (a two-level B-tree with no
//! allocation per member), and a Fenwick tree over the chunks' counts, so that the rank of an
//! entry, or the entry at a rank, is found in O(log n): a binary search over the chunks' first
//! entries, a Fenwick prefix sum, and a walk of at most one chunk.
//!
//! An entry is `[score: f64, 8 bytes little-endian][member length: varint][member]`.

use std::cmp::Ordering;

/// Most entries in a chunk (a chunk past either limit splits in two).
const MAX_COUNT: usize = 128;
/// Most bytes in a chunk holding two entries or more.
const MAX_BYTES: usize = 2048;
/// A chunk with fewer entries merges into a neighbour when the two fit in one.
const MIN_COUNT: usize = MAX_COUNT / 4;
/// How full bulk building fills a chunk, leaving room for inserts before the first split.
const FILL_COUNT: usize = MAX_COUNT * 3 / 4;
const FILL_BYTES: usize = MAX_BYTES * 3 / 4;

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(buf: &[u8], at: usize) -> (usize, usize) {
    let mut n = 0usize;
    let mut shift = 0;
    let mut i = at;
    while let Some(&b) = buf.get(i) {
        n |= ((b & 0x7F) as usize).checked_shl(shift).unwrap_or(0);
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    (n, i - at)
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Bytes an entry takes in a chunk.
pub fn entry_len(member: &[u8]) -> usize {
    8 + varint_len(member.len()) + member.len()
}

/// The entry at byte `off`: its score, its member and the offset of the next entry.
fn entry(buf: &[u8], off: usize) -> (f64, &[u8], usize) {
    let score = buf
        .get(off..off + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0.0, f64::from_le_bytes);
    let (len, n) = get_varint(buf, off + 8);
    let start = (off + 8 + n).min(buf.len());
    let end = start.saturating_add(len).min(buf.len());
    (score, &buf[start..end], end)
}

/// The sorted set's order: by score, then by member bytes (scores are never NaN).
pub fn cmp(s1: f64, m1: &[u8], s2: f64, m2: &[u8]) -> Ordering {
    s1.partial_cmp(&s2)
        .unwrap_or(Ordering::Equal)
        .then_with(|| m1.cmp(m2))
}

#[derive(Debug, Clone, Default)]
struct Chunk {
    buf: Vec<u8>,
    count: u32,
}

impl Chunk {
    fn len(&self) -> usize {
        self.count as usize
    }

    fn first(&self) -> (f64, &[u8]) {
        let (s, m, _) = entry(&self.buf, 0);
        (s, m)
    }

    /// Entries with their offsets: `(offset, score, member, next offset)`.
    fn entries(&self) -> impl Iterator<Item = (usize, f64, &[u8], usize)> + '_ {
        let mut off = 0;
        (0..self.len()).map(move |_| {
            let (s, m, next) = entry(&self.buf, off);
            let at = off;
            off = next;
            (at, s, m, next)
        })
    }

    /// The byte offset of entry `i` (the end of the buffer for `i == len`).
    fn offset_of(&self, i: usize) -> usize {
        let mut off = 0;
        for _ in 0..i.min(self.len()) {
            off = entry(&self.buf, off).2;
        }
        off
    }

    fn offsets(&self, out: &mut Vec<usize>) {
        out.clear();
        out.extend(self.entries().map(|(at, ..)| at));
    }

    /// Inserts an entry at byte `off` (an entry boundary).
    fn insert_at(&mut self, off: usize, score: f64, member: &[u8]) {
        let need = entry_len(member);
        if self.buf.capacity() - self.buf.len() < need {
            // Grow by a quarter, not double: spare capacity is memory every chunk pays for.
            self.buf.reserve_exact(need + self.buf.len() / 4);
        }
        self.buf.extend_from_slice(&score.to_le_bytes());
        put_varint(&mut self.buf, member.len());
        self.buf.extend_from_slice(member);
        if let Some(tail) = self.buf.get_mut(off..) {
            tail.rotate_right(need);
        }
        self.count += 1;
    }

    /// Removes the `n` entries in bytes `from..to`.
    fn remove_span(&mut self, from: usize, to: usize, n: usize) {
        let to = to.min(self.buf.len());
        self.buf.drain(from.min(to)..to);
        self.count -= n as u32;
        if self.buf.capacity() > self.buf.len() + self.buf.len() / 2 + 64 {
            self.buf.shrink_to(self.buf.len() + self.buf.len() / 8);
        }
    }

    fn is_full(&self) -> bool {
        self.len() > MAX_COUNT || (self.buf.len() > MAX_BYTES && self.len() > 1)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Index {
    chunks: Vec<Chunk>,
    /// Fenwick tree over the chunks' counts, 1-based (`tree[0]` unused).
    tree: Vec<usize>,
    len: usize,
    /// Capacity of every chunk's buffer.
    buf_bytes: usize,
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
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.tree.capacity() * std::mem::size_of::<usize>()
    }

    /// An index of `entries`, which must be in order with distinct members.
    pub fn from_sorted<'a>(entries: impl Iterator<Item = (&'a [u8], f64)>) -> Index {
        let mut ix = Index::default();
        let mut cur = Chunk::default();
        for (m, s) in entries {
            if cur.len() >= FILL_COUNT || cur.buf.len() >= FILL_BYTES {
                ix.push_chunk(std::mem::take(&mut cur));
            }
            let off = cur.buf.len();
            cur.insert_at(off, s, m);
            ix.len += 1;
        }
        if cur.len() > 0 {
            ix.push_chunk(cur);
        }
        ix.rebuild();
        ix
    }

    fn push_chunk(&mut self, mut c: Chunk) {
        c.buf.shrink_to_fit();
        self.buf_bytes += c.buf.capacity();
        self.chunks.push(c);
    }

    fn rebuild(&mut self) {
        let n = self.chunks.len();
        self.tree.clear();
        self.tree.reserve_exact(n + 1);
        self.tree.push(0);
        self.tree.extend(self.chunks.iter().map(Chunk::len));
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

    fn tree_add(&mut self, k: usize, add: usize, sub: usize) {
        let mut j = k + 1;
        while j < self.tree.len() {
            self.tree[j] = self.tree[j] + add - sub;
            j += j & j.wrapping_neg();
        }
    }

    /// Entries in chunks `0..k`.
    fn prefix(&self, k: usize) -> usize {
        let mut j = k.min(self.tree.len().saturating_sub(1));
        let mut sum = 0;
        while j > 0 {
            sum += self.tree[j];
            j &= j - 1;
        }
        sum
    }

    /// The chunk holding entry `rank` and the entry's index in it (`rank < len`).
    fn locate_rank(&self, rank: usize) -> (usize, usize) {
        let n = self.chunks.len();
        let mut pos = 0;
        let mut rem = rank;
        let mut step = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            if pos + step <= n && self.tree[pos + step] <= rem {
                pos += step;
                rem -= self.tree[pos];
            }
            step >>= 1;
        }
        (pos, rem)
    }

    /// The chunk where `(score, member)` is or would go: the last whose first entry is not
    /// after it (or the first chunk).
    fn chunk_for(&self, score: f64, member: &[u8]) -> usize {
        let k = self.chunks.partition_point(|c| {
            let (s, m) = c.first();
            cmp(s, m, score, member) != Ordering::Greater
        });
        k.saturating_sub(1)
    }

    /// How many entries come before the first for which `before` is false; `before` must hold
    /// for a prefix of the order (`partition_point` over the entries).
    pub fn partition_point(&self, before: impl Fn(f64, &[u8]) -> bool) -> usize {
        let k = self.chunks.partition_point(|c| {
            let (s, m) = c.first();
            before(s, m)
        });
        if k == 0 {
            return 0;
        }
        let i = self.chunks[k - 1]
            .entries()
            .take_while(|&(_, s, m, _)| before(s, m))
            .count();
        self.prefix(k - 1) + i
    }

    /// Where `(score, member)` is: chunk, index in it, byte span.
    fn find(&self, score: f64, member: &[u8]) -> Option<(usize, usize, usize, usize)> {
        let k = self.chunk_for(score, member);
        let c = self.chunks.get(k)?;
        for (i, (at, s, m, next)) in c.entries().enumerate() {
            match cmp(s, m, score, member) {
                Ordering::Less => continue,
                Ordering::Equal => return Some((k, i, at, next)),
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
        self.find(score, member)
            .map(|(k, i, ..)| self.prefix(k) + i)
    }

    /// Inserts `(score, member)`; the member must not be in the index.
    pub fn insert(&mut self, score: f64, member: &[u8]) {
        if self.chunks.is_empty() {
            self.chunks.push(Chunk::default());
            self.rebuild();
        }
        let k = self.chunk_for(score, member);
        let Some(c) = self.chunks.get_mut(k) else {
            return;
        };
        let off = c
            .entries()
            .find(|&(_, s, m, _)| cmp(s, m, score, member) == Ordering::Greater)
            .map_or(c.buf.len(), |(at, ..)| at);
        let cap = c.buf.capacity();
        c.insert_at(off, score, member);
        let full = c.is_full();
        self.buf_bytes = self.buf_bytes + c.buf.capacity() - cap;
        self.len += 1;
        if full {
            self.split(k);
        } else {
            self.tree_add(k, 1, 0);
        }
    }

    /// Splits chunk `k` in two halves.
    fn split(&mut self, k: usize) {
        let Some(c) = self.chunks.get_mut(k) else {
            return;
        };
        let cap = c.buf.capacity();
        let mid = c.len() / 2;
        let at = c.offset_of(mid);
        let tail = Chunk {
            buf: c.buf.split_off(at),
            count: c.count - mid as u32,
        };
        c.count = mid as u32;
        c.buf.shrink_to(c.buf.len() + c.buf.len() / 8);
        self.buf_bytes = self.buf_bytes + c.buf.capacity() + tail.buf.capacity() - cap;
        self.chunks.insert(k + 1, tail);
        self.rebuild();
        // Halves split by count may still be over the byte limit (long members).
        if self.chunks.get(k + 1).is_some_and(Chunk::is_full) {
            self.split(k + 1);
        }
        if self.chunks.get(k).is_some_and(Chunk::is_full) {
            self.split(k);
        }
    }

    /// Removes `(score, member)`; false if it is not there.
    pub fn remove(&mut self, score: f64, member: &[u8]) -> bool {
        let Some((k, _, from, to)) = self.find(score, member) else {
            return false;
        };
        let c = &mut self.chunks[k];
        let cap = c.buf.capacity();
        c.remove_span(from, to, 1);
        self.buf_bytes = self.buf_bytes + c.buf.capacity() - cap;
        self.len -= 1;
        if !self.tidy(k) {
            self.tree_add(k, 0, 1);
        }
        true
    }

    /// Drops chunk `k` if empty or merges it into a neighbour if small: true if the chunks
    /// changed (the Fenwick tree is rebuilt).
    fn tidy(&mut self, k: usize) -> bool {
        let Some(c) = self.chunks.get(k) else {
            return false;
        };
        if c.len() == 0 {
            self.buf_bytes -= c.buf.capacity();
            self.chunks.remove(k);
            self.rebuild();
            return true;
        }
        if c.len() >= MIN_COUNT {
            return false;
        }
        let fits = |a: &Chunk, b: &Chunk| {
            a.len() + b.len() <= MAX_COUNT && a.buf.len() + b.buf.len() <= MAX_BYTES
        };
        let into = if self.chunks.get(k + 1).is_some_and(|n| fits(c, n)) {
            k
        } else if k > 0 && fits(&self.chunks[k - 1], c) {
            k - 1
        } else {
            return false;
        };
        let next = self.chunks.remove(into + 1);
        let c = &mut self.chunks[into];
        let cap = c.buf.capacity();
        c.buf.reserve_exact(next.buf.len());
        c.buf.extend_from_slice(&next.buf);
        c.count += next.count;
        self.buf_bytes = self.buf_bytes + c.buf.capacity() - cap - next.buf.capacity();
        self.rebuild();
        true
    }

    /// The entry at `rank`.
    pub fn get(&self, rank: usize) -> Option<(&[u8], f64)> {
        if rank >= self.len {
            return None;
        }
        let (k, i) = self.locate_rank(rank);
        let c = self.chunks.get(k)?;
        let (s, m, _) = entry(&c.buf, c.offset_of(i));
        Some((m, s))
    }

    /// Entries from `rank` on, in order.
    pub fn iter_from(&self, rank: usize) -> Iter<'_> {
        if rank >= self.len {
            return Iter {
                chunks: &[],
                k: 0,
                off: 0,
                left: 0,
            };
        }
        let (k, i) = self.locate_rank(rank);
        let c = &self.chunks[k];
        Iter {
            chunks: &self.chunks,
            k,
            off: c.offset_of(i),
            left: c.len() - i,
        }
    }

    /// Entries from `rank` down to the first, in reverse order.
    pub fn iter_rev_from(&self, rank: usize) -> RevIter<'_> {
        let mut it = RevIter {
            chunks: &self.chunks,
            k: 0,
            offs: Vec::new(),
            pos: 0,
        };
        if self.len == 0 {
            return it;
        }
        let (k, i) = self.locate_rank(rank.min(self.len - 1));
        it.k = k;
        self.chunks[k].offsets(&mut it.offs);
        it.pos = i + 1;
        it
    }

    /// Removes the entries at ranks `start..end`, calling `f` with each, in order.
    pub fn remove_range(&mut self, start: usize, end: usize, mut f: impl FnMut(&[u8], f64)) {
        let end = end.min(self.len);
        if start >= end {
            return;
        }
        let (first, mut i) = self.locate_rank(start);
        let mut k = first;
        let mut n = end - start;
        while n > 0 && k < self.chunks.len() {
            let c = &mut self.chunks[k];
            let take = n.min(c.len() - i);
            let from = c.offset_of(i);
            let mut off = from;
            for _ in 0..take {
                let (s, m, next) = entry(&c.buf, off);
                f(m, s);
                off = next;
            }
            let cap = c.buf.capacity();
            c.remove_span(from, off, take);
            self.buf_bytes = self.buf_bytes + c.buf.capacity() - cap;
            self.tree_add(k, 0, take);
            self.len -= take;
            n -= take;
            k += 1;
            i = 0;
        }
        // Chunks emptied in between go; the partial ones at both ends may merge.
        if self.chunks[first..k].iter().any(|c| c.len() == 0) {
            let emptied = self.chunks[first..k]
                .iter()
                .filter(|c| c.len() == 0)
                .map(|c| c.buf.capacity())
                .sum::<usize>();
            self.buf_bytes -= emptied;
            let mut at = 0;
            self.chunks.retain(|c| {
                at += 1;
                at <= first || at > k || c.len() > 0
            });
            self.rebuild();
        }
        if first < self.chunks.len() {
            self.tidy(first);
        }
        if self.chunks.capacity() > 2 * self.chunks.len() + 16 {
            self.chunks.shrink_to_fit();
        }
    }

    /// Checks every invariant (tests).
    #[cfg(test)]
    pub fn check(&self) {
        let mut prev: Option<(f64, Vec<u8>)> = None;
        let mut n = 0;
        let mut bytes = 0;
        for (k, c) in self.chunks.iter().enumerate() {
            assert!(c.len() > 0, "empty chunk {k}");
            assert!(!c.is_full(), "overfull chunk {k}");
            assert_eq!(c.offset_of(c.len()), c.buf.len());
            for (_, s, m, _) in c.entries() {
                if let Some((ps, pm)) = &prev {
                    assert_eq!(cmp(*ps, pm, s, m), Ordering::Less);
                }
                prev = Some((s, m.to_vec()));
            }
            assert_eq!(self.prefix(k), n);
            n += c.len();
            bytes += c.buf.capacity();
        }
        assert_eq!(n, self.len);
        assert_eq!(bytes, self.buf_bytes);
    }
}

pub struct Iter<'a> {
    chunks: &'a [Chunk],
    k: usize,
    off: usize,
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<(&'a [u8], f64)> {
        while self.left == 0 {
            self.k += 1;
            let c = self.chunks.get(self.k)?;
            self.off = 0;
            self.left = c.len();
        }
        let c = self.chunks.get(self.k)?;
        let (s, m, next) = entry(&c.buf, self.off);
        self.off = next;
        self.left -= 1;
        Some((m, s))
    }
}

pub struct RevIter<'a> {
    chunks: &'a [Chunk],
    k: usize,
    /// Entry offsets of chunk `k`; `offs[..pos]` are still to come.
    offs: Vec<usize>,
    pos: usize,
}

impl<'a> Iterator for RevIter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<(&'a [u8], f64)> {
        while self.pos == 0 {
            if self.k == 0 {
                return None;
            }
            self.k -= 1;
            self.chunks.get(self.k)?.offsets(&mut self.offs);
            self.pos = self.offs.len();
        }
        self.pos -= 1;
        let c = self.chunks.get(self.k)?;
        let (s, m, _) = entry(&c.buf, *self.offs.get(self.pos)?);
        Some((m, s))
    }
}
