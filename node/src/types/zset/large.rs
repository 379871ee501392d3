//! A large sorted set (Redis's `skiplist` encoding): the ordered [`Index`] holding every member
//! once, and the member [`Table`] giving a member's score in O(1) (then its place in the index
//! in O(log n)).

use super::index::Index;
use super::table::{member_hash, Table};

#[derive(Debug, Clone, Default)]
pub struct Large {
    index: Index,
    table: Table,
}

impl Large {
    /// A large set of `entries`, which must be in order with distinct members.
    pub fn from_sorted<'a>(entries: impl Iterator<Item = (&'a [u8], f64)> + Clone) -> Large {
        let index = Index::from_sorted(entries.clone());
        let mut table = Table::with_capacity(index.len());
        for (m, s) in entries {
            table.insert(member_hash(m), s);
        }
        Large { index, table }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn mem_usage(&self) -> usize {
        self.index.mem_usage() + self.table.mem_usage()
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        let index = &self.index;
        self.table
            .find(member_hash(member), |s| index.contains(s, member))
    }

    /// Adds `member` or moves it to `score`; true if it is new.
    pub fn insert(&mut self, member: &[u8], score: f64) -> bool {
        let hash = member_hash(member);
        let index = &self.index;
        // -0 and 0 are the same score: Redis leaves the member (and its sign) as it is.
        let new = |old: f64| if old != score { score } else { old };
        match self.table.update(hash, |s| index.contains(s, member), new) {
            Some(old) => {
                if old != score {
                    self.index.remove(old, member);
                    self.index.insert(score, member);
                }
                false
            }
            None => {
                self.index.insert(score, member);
                self.table.insert(hash, score);
                true
            }
        }
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let score = self.score(member)?;
        self.index.remove(score, member);
        self.table.remove(member_hash(member), score);
        self.table.maybe_shrink();
        Some(score)
    }

    /// The rank of `member` and its score.
    pub fn rank(&self, member: &[u8]) -> Option<(usize, f64)> {
        let score = self.score(member)?;
        Some((self.index.rank(score, member)?, score))
    }

    /// Removes ranks `start..end`, calling `f` with each member, in order.
    pub fn remove_range(&mut self, start: usize, end: usize, mut f: impl FnMut(&[u8], f64)) {
        let table = &mut self.table;
        self.index.remove_range(start, end, |m, s| {
            table.remove(member_hash(m), s);
            f(m, s);
        });
        self.table.maybe_shrink();
    }

    #[cfg(test)]
    pub fn check(&self) {
        self.index.check();
        assert_eq!(self.table.len(), self.index.len());
        for (m, s) in self.index.iter_from(0) {
            assert_eq!(self.score(m).map(f64::to_bits), Some(s.to_bits()));
        }
    }
}
