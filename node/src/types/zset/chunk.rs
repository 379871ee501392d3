//! A leaf of the large sorted set's index: sorted entries packed in one buffer, each
//! `[score: f64, 8 bytes little-endian][member length: varint][member]`.

use std::cmp::Ordering;

use crate::types::packed::{get_varint, put_varint, varint_len};

/// Most entries in a chunk (a chunk past either limit splits in two).
pub const MAX_COUNT: usize = 128;
/// Most bytes in a chunk holding two entries or more.
pub const MAX_BYTES: usize = 2048;
/// A chunk with fewer entries merges into a neighbour when the two fit in one.
pub const MIN_COUNT: usize = MAX_COUNT / 4;
/// How full bulk building fills a chunk, leaving room for inserts before the first split.
pub const FILL_COUNT: usize = MAX_COUNT * 3 / 4;
pub const FILL_BYTES: usize = MAX_BYTES * 3 / 4;

/// Bytes an entry takes in a chunk.
pub fn entry_len(member: &[u8]) -> usize {
    8 + varint_len(member.len()) + member.len()
}

/// The entry at byte `off`: its score, its member and the offset of the next entry.
pub fn entry(buf: &[u8], off: usize) -> (f64, &[u8], usize) {
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

#[derive(Debug, Default)]
pub struct Chunk {
    pub buf: Vec<u8>,
    pub count: u32,
}

impl Clone for Chunk {
    fn clone(&self) -> Self {
        // Keep the capacity: the index accounts for it.
        let mut buf = Vec::with_capacity(self.buf.capacity());
        buf.extend_from_slice(&self.buf);
        Chunk {
            buf,
            count: self.count,
        }
    }
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn first(&self) -> (f64, &[u8]) {
        let (s, m, _) = entry(&self.buf, 0);
        (s, m)
    }

    /// Entries with their offsets: `(offset, score, member, next offset)`.
    pub fn entries(&self) -> impl Iterator<Item = (usize, f64, &[u8], usize)> + '_ {
        let mut off = 0;
        (0..self.len()).map(move |_| {
            let (s, m, next) = entry(&self.buf, off);
            let at = off;
            off = next;
            (at, s, m, next)
        })
    }

    /// The byte offset of entry `i` (the end of the buffer for `i == len`).
    pub fn offset_of(&self, i: usize) -> usize {
        let mut off = 0;
        for _ in 0..i.min(self.len()) {
            off = entry(&self.buf, off).2;
        }
        off
    }

    pub fn offsets(&self, out: &mut Vec<usize>) {
        out.clear();
        out.extend(self.entries().map(|(at, ..)| at));
    }

    /// Inserts an entry at byte `off` (an entry boundary).
    pub fn insert_at(&mut self, off: usize, score: f64, member: &[u8]) {
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
    pub fn remove_span(&mut self, from: usize, to: usize, n: usize) {
        let to = to.min(self.buf.len());
        self.buf.drain(from.min(to)..to);
        self.count -= n as u32;
        if self.buf.capacity() > self.buf.len() + self.buf.len() / 2 + 64 {
            self.buf.shrink_to(self.buf.len() + self.buf.len() / 8);
        }
    }

    /// Splits off the entries from `mid` on.
    pub fn split_off(&mut self, mid: usize) -> Chunk {
        let at = self.offset_of(mid);
        let tail = Chunk {
            buf: self.buf.split_off(at),
            count: self.count - mid as u32,
        };
        self.count = mid as u32;
        self.buf.shrink_to(self.buf.len() + self.buf.len() / 8);
        tail
    }

    /// Appends every entry of `next` (which follows this chunk's entries).
    pub fn append(&mut self, next: &Chunk) {
        self.buf.reserve_exact(next.buf.len());
        self.buf.extend_from_slice(&next.buf);
        self.count += next.count;
    }

    pub fn is_full(&self) -> bool {
        self.len() > MAX_COUNT || (self.buf.len() > MAX_BYTES && self.len() > 1)
    }

    /// Whether `a` and `b` fit in one chunk.
    pub fn fits(a: &Chunk, b: &Chunk) -> bool {
        a.len() + b.len() <= MAX_COUNT && a.buf.len() + b.buf.len() <= MAX_BYTES
    }
}
