//! Changes inside a list (LINSERT, LSET, LREM): they may overfill a chunk, which is then split,
//! or thin chunks out, which are then merged with their neighbours when the two fit in one.

use super::{fits, Chunk, List};
use crate::types::Limits;

impl List {
    /// Merges chunk `ci` with the next one if together they fit; whether it did.
    fn merge_next(&mut self, ci: usize, fill: i64) -> bool {
        let (Some(a), Some(b)) = (self.chunks.get(ci), self.chunks.get(ci + 1)) else {
            return false;
        };
        if !fits(fill, a.bytes() + b.bytes(), a.len() + b.len()) {
            return false;
        }
        let Some(b) = self.chunks.remove(ci + 1) else {
            return false;
        };
        self.bytes -= b.bytes();
        self.edit_chunk(ci, |a| a.append(&b));
        true
    }

    /// Merges chunk `ci` with its neighbours where they fit together.
    fn merge_around(&mut self, ci: usize, fill: i64) {
        self.merge_next(ci, fill);
        if ci > 0 {
            self.merge_next(ci - 1, fill);
        }
    }

    /// Inserts `item` before the element at `index` (at the tail if `index` is the length).
    pub fn insert(&mut self, index: usize, item: &[u8], limits: &Limits) {
        let fill = limits.list_max_listpack_size;
        if index == 0 {
            return self.push_front(item, limits);
        }
        let Some((ci, i)) = self.locate(index) else {
            return self.push_back(item, limits);
        };
        self.len += 1;
        if self.takes(ci, item, fill) {
            self.edit_chunk(ci, |c| {
                if let Some(p) = c.pos(i) {
                    c.insert(p, item);
                }
            });
            return;
        }
        // At a chunk's start, the previous chunk's end is the same place.
        if i == 0 && ci > 0 && self.takes(ci - 1, item, fill) {
            self.edit_chunk(ci - 1, |c| c.push_back(item));
            return;
        }
        if i == 0 {
            self.insert_chunk(ci, Self::single(item));
            self.merge_around(ci, fill);
            return;
        }
        // Split the chunk where the element goes, then put it on whichever side takes it.
        let tail = self.edit_chunk(ci, |c| c.split_off(i)).unwrap_or_default();
        self.insert_chunk(ci + 1, tail);
        if self.takes(ci, item, fill) {
            self.edit_chunk(ci, |c| c.push_back(item));
        } else if self.takes(ci + 1, item, fill) {
            self.edit_chunk(ci + 1, |c| c.push_front(item));
        } else {
            self.insert_chunk(ci + 1, Self::single(item));
            self.merge_around(ci + 1, fill);
        }
    }

    /// Replaces the element at `index`; false if there is none.
    pub fn set(&mut self, index: usize, item: &[u8], limits: &Limits) -> bool {
        let fill = limits.list_max_listpack_size;
        let Some((ci, i)) = self.locate(index) else {
            return false;
        };
        self.edit_chunk(ci, |c| {
            if let Some(p) = c.pos(i) {
                c.replace(p, item);
            }
        });
        let overflowed = self
            .chunks
            .get(ci)
            .is_some_and(|c| !fits(fill, c.bytes(), c.len()));
        if !overflowed {
            return true;
        }
        // The chunk overflowed: the element moves to a chunk of its own between the others.
        let tail = self
            .edit_chunk(ci, |c| c.split_off(i + 1))
            .unwrap_or_default();
        let mid = self.edit_chunk(ci, |c| c.split_off(i)).unwrap_or_default();
        self.insert_chunk(ci + 1, tail);
        self.insert_chunk(ci + 1, mid);
        let at = if self.chunks.get(ci).is_some_and(Chunk::is_empty) {
            self.chunks.remove(ci);
            ci
        } else {
            ci + 1
        };
        self.merge_around(at, fill);
        true
    }

    /// The index of the first element equal to `item`.
    pub fn position(&self, item: &[u8]) -> Option<usize> {
        self.iter().position(|x| x == item)
    }

    /// Removes elements equal to `item` (LREM): `count` > 0 the first `count` of them, < 0 the
    /// last `-count`, 0 all. How many it removed.
    pub fn remove_matching(&mut self, item: &[u8], count: i64, limits: &Limits) -> usize {
        let fill = limits.list_max_listpack_size;
        let from_back = count < 0;
        let mut quota = if count == 0 {
            usize::MAX
        } else {
            usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
        };
        let mut removed = 0;
        let n = self.chunks.len();
        for step in 0..n {
            if quota == 0 {
                break;
            }
            let ci = if from_back { n - 1 - step } else { step };
            let Some(c) = self.chunks.get(ci) else {
                break;
            };
            let hits: Vec<_> = c
                .iter_pos()
                .filter(|(_, x)| *x == item)
                .map(|(p, _)| p)
                .collect();
            if hits.is_empty() {
                continue;
            }
            let take = hits.len().min(quota);
            let chosen = if from_back {
                &hits[hits.len() - take..]
            } else {
                &hits[..take]
            };
            // Back to front, so the positions not yet removed stay valid.
            self.edit_chunk(ci, |c| chosen.iter().rev().for_each(|&p| c.remove(p, 1)));
            self.len -= take;
            removed += take;
            quota -= take;
        }
        if removed > 0 {
            self.compact(fill);
        }
        removed
    }

    /// Drops empty chunks and merges neighbours that fit together (after removals inside).
    fn compact(&mut self, fill: i64) {
        self.chunks.retain(|c| !c.is_empty());
        let mut ci = 0;
        while ci + 1 < self.chunks.len() {
            if !self.merge_next(ci, fill) {
                ci += 1;
            }
        }
    }
}
