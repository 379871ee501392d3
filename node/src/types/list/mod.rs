//! Lists: a deque of packed chunks, Redis's `quicklist`. Each chunk is one [`Packed`] buffer
//! holding up to `list-max-listpack-size` elements (a positive setting) or up to 4..64 KiB of
//! them (-1..-5), so an element costs its bytes plus a byte or two, and both ends are cheap.
//! An element too large for a chunk gets a chunk of its own (Redis's "plain" node).
//!
//! Positions are found by skipping whole chunks by their counts, from whichever end is
//! nearer. The bytes the chunks hold are counted as they change, so weighing a list is O(1).

mod edit;
mod iter;

use std::collections::VecDeque;

use super::packed::{Packed, Pos};
use super::Limits;

pub use iter::RevIter;

/// A chunk: its elements carry back-lengths, so the tail end is as cheap as the head.
type Chunk = Packed<true>;

/// Bytes a chunk costs beyond its elements (its slot in the deque and its allocation).
const CHUNK_OVERHEAD: usize = 48;

/// Chunk sizes for `list-max-listpack-size` -1..-5 (Redis's optimization levels).
const SIZE_LEVELS: [usize; 5] = [4096, 8192, 16384, 32768, 65536];

/// Largest chunk a positive (count) setting allows, as Redis bounds it.
const SIZE_SAFETY_LIMIT: usize = 8192;

/// Whether a chunk of `bytes` bytes and `count` elements is within `fill`
/// (`list-max-listpack-size`). A single element always is: it gets a chunk of its own.
fn fits(fill: i64, bytes: usize, count: usize) -> bool {
    if count <= 1 {
        return true;
    }
    if fill < 0 {
        // Below -5, Redis's largest level.
        let level = (fill.unsigned_abs() as usize).min(SIZE_LEVELS.len()) - 1;
        return SIZE_LEVELS.get(level).is_some_and(|&max| bytes <= max);
    }
    bytes <= SIZE_SAFETY_LIMIT && count as u64 <= fill.max(1) as u64
}

#[derive(Debug, Clone, Default)]
pub struct List {
    chunks: VecDeque<Chunk>,
    len: usize,
    /// Bytes of every chunk's buffer (kept as they change).
    bytes: usize,
}

impl List {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn mem_usage(&self) -> usize {
        self.bytes + self.chunks.len() * CHUNK_OVERHEAD
    }

    /// Elements front to back.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Elements back to front.
    pub fn iter_rev(&self) -> RevIter<'_> {
        RevIter::new(&self.chunks)
    }

    /// Elements from index `start` on (front to back), skipping whole chunks to get there.
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let (ci, skip) = self.locate(start).unwrap_or((self.chunks.len(), 0));
        self.chunks.range(ci..).flat_map(|c| c.iter()).skip(skip)
    }

    /// The chunk holding element `index` and the element's index in it, walking from the
    /// nearer end.
    fn locate(&self, index: usize) -> Option<(usize, usize)> {
        if index >= self.len {
            return None;
        }
        if index < self.len / 2 {
            let mut left = index;
            for (ci, c) in self.chunks.iter().enumerate() {
                if left < c.len() {
                    return Some((ci, left));
                }
                left -= c.len();
            }
        } else {
            // Elements after `index`, counted from the back.
            let mut after = self.len - 1 - index;
            for (ci, c) in self.chunks.iter().enumerate().rev() {
                if after < c.len() {
                    return Some((ci, c.len() - 1 - after));
                }
                after -= c.len();
            }
        }
        None
    }

    pub fn get(&self, index: usize) -> Option<&[u8]> {
        let (ci, i) = self.locate(index)?;
        self.chunks.get(ci)?.get(i)
    }

    /// Changes chunk `ci` with `f`, keeping the byte count.
    fn edit_chunk<R>(&mut self, ci: usize, f: impl FnOnce(&mut Chunk) -> R) -> Option<R> {
        let c = self.chunks.get_mut(ci)?;
        let before = c.bytes();
        let r = f(c);
        self.bytes = self.bytes + c.bytes() - before;
        Some(r)
    }

    /// Puts a new chunk at `ci`.
    fn insert_chunk(&mut self, ci: usize, c: Chunk) {
        if c.is_empty() {
            return;
        }
        self.bytes += c.bytes();
        self.chunks.insert(ci, c);
    }

    /// Removes chunk `ci` (its elements leave the count too).
    fn remove_chunk(&mut self, ci: usize) -> Option<Chunk> {
        let c = self.chunks.remove(ci)?;
        self.bytes -= c.bytes();
        self.len -= c.len();
        Some(c)
    }

    fn single(item: &[u8]) -> Chunk {
        let mut c = Chunk::default();
        c.push_back(item);
        c
    }

    /// Whether chunk `ci` can take `item` too.
    fn takes(&self, ci: usize, item: &[u8], fill: i64) -> bool {
        self.chunks
            .get(ci)
            .is_some_and(|c| fits(fill, c.bytes() + Chunk::encoded_len(item), c.len() + 1))
    }

    /// Appends at the tail.
    pub fn push_back(&mut self, item: &[u8], limits: &Limits) {
        let last = self.chunks.len().wrapping_sub(1);
        if self.takes(last, item, limits.list_max_listpack_size) {
            self.edit_chunk(last, |c| c.push_back(item));
        } else {
            self.insert_chunk(self.chunks.len(), Self::single(item));
        }
        self.len += 1;
    }

    /// Prepends at the head.
    pub fn push_front(&mut self, item: &[u8], limits: &Limits) {
        if self.takes(0, item, limits.list_max_listpack_size) {
            self.edit_chunk(0, |c| c.push_front(item));
        } else {
            self.insert_chunk(0, Self::single(item));
        }
        self.len += 1;
    }

    /// Removes and returns the first element.
    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        let item = self.chunks.front()?.get(0)?.to_vec();
        self.remove_front(1);
        Some(item)
    }

    /// Removes and returns the last element.
    pub fn pop_back(&mut self) -> Option<Vec<u8>> {
        let last = self.chunks.len().checked_sub(1)?;
        let item = self.edit_chunk(last, |c| {
            let pos = c.pos(c.len().checked_sub(1)?)?;
            let item = c.at(pos.offset).0.to_vec();
            c.remove(pos, 1);
            Some(item)
        })??;
        self.len -= 1;
        if self.chunks.get(last).is_some_and(Chunk::is_empty) {
            self.chunks.remove(last);
        }
        Some(item)
    }

    /// Removes the first `n` elements (all of them if there are fewer).
    pub fn remove_front(&mut self, mut n: usize) {
        while n > 0 {
            let Some(c) = self.chunks.front() else {
                return;
            };
            let k = c.len();
            if k <= n {
                self.remove_chunk(0);
                n -= k;
            } else {
                self.edit_chunk(0, |c| {
                    c.remove(
                        Pos {
                            index: 0,
                            offset: 0,
                        },
                        n,
                    )
                });
                self.len -= n;
                n = 0;
            }
        }
    }

    /// Removes the last `n` elements (all of them if there are fewer).
    pub fn remove_back(&mut self, mut n: usize) {
        while n > 0 {
            let Some(c) = self.chunks.back() else {
                return;
            };
            let (k, last) = (c.len(), self.chunks.len() - 1);
            if k <= n {
                self.remove_chunk(last);
                n -= k;
            } else {
                self.edit_chunk(last, |c| drop(c.split_off(k - n)));
                self.len -= n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
