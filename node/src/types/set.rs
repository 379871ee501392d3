//! Sets: sorted integers (`intset`), packed strings while small, a table once large.
//! Scaffolding: the representation and its operations are filled in by the set work.

use super::{Limits, XxBuild};
use indexmap::IndexSet;

#[derive(Debug, Clone, Default)]
pub struct Set {
    table: IndexSet<Box<[u8]>, XxBuild>,
}

impl Set {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn encoding(&self) -> &'static str {
        "hashtable"
    }

    /// Members (integers of an intset as their decimal text).
    pub fn iter(&self) -> impl Iterator<Item = std::borrow::Cow<'_, [u8]>> + '_ {
        self.table.iter().map(|m| std::borrow::Cow::Borrowed(&m[..]))
    }

    /// Adds `member`; true if it is new.
    pub fn insert(&mut self, member: &[u8], _limits: &Limits) -> bool {
        self.table.insert(member.into())
    }

    pub fn mem_usage(&self) -> usize {
        self.table.iter().map(|m| m.len() + 32).sum()
    }
}
