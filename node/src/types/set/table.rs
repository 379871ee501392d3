//! [`Table`]: a large set, members in an insertion-ordered table with O(1) lookup, index access
//! (random picks, scans) and removal by swapping in the last member (see
//! `crate::types::scan_window` for why scans stay sound).

use indexmap::IndexSet;

use crate::types::XxBuild;

/// Bytes a member costs beyond its own bytes: its slot (hash and pointer), its index entry and
/// its allocation's rounding.
const MEMBER_OVERHEAD: usize = 44;

#[derive(Debug, Clone, Default)]
pub struct Table {
    set: IndexSet<Box<[u8]>, XxBuild>,
    /// Bytes the members take with their overhead (kept so weighing the set is O(1)).
    bytes: usize,
}

impl Table {
    pub fn with_capacity(n: usize) -> Table {
        Table {
            set: IndexSet::with_capacity_and_hasher(n, XxBuild::default()),
            bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        self.set.contains(m)
    }

    pub fn insert(&mut self, m: &[u8]) -> bool {
        if self.set.contains(m) {
            return false;
        }
        self.set.insert(m.into());
        self.bytes += m.len() + MEMBER_OVERHEAD;
        true
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        if self.set.swap_remove(m) {
            self.bytes -= m.len() + MEMBER_OVERHEAD;
            self.maybe_shrink();
            true
        } else {
            false
        }
    }

    /// Removes the members at `sorted` (ascending, distinct indexes). From the highest down, each
    /// swap brings in a member past every index still to remove, so none of them moves.
    pub fn remove_indexes(&mut self, sorted: &[usize]) {
        for &i in sorted.iter().rev() {
            if let Some(m) = self.set.swap_remove_index(i) {
                self.bytes -= m.len() + MEMBER_OVERHEAD;
            }
        }
        self.maybe_shrink();
    }

    pub fn get_index(&self, i: usize) -> Option<&[u8]> {
        self.set.get_index(i).map(|m| &m[..])
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.set.iter().map(|m| &m[..])
    }

    /// Gives back memory once most members are gone (as Redis shrinks its dict).
    fn maybe_shrink(&mut self) {
        if self.set.capacity() > 64 && self.set.len() < self.set.capacity() / 8 {
            self.set.shrink_to_fit();
        }
    }
}
