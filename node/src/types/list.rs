//! Lists: a deque of packed chunks (Redis's `quicklist`).
//! Scaffolding: the representation and its operations are filled in by the list work.

use super::packed::Packed;
use super::Limits;
use std::collections::VecDeque;

#[derive(Debug, Clone, Default)]
pub struct List {
    chunks: VecDeque<Packed>,
    len: usize,
}

impl List {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements front to back.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Appends at the tail.
    pub fn push_back(&mut self, item: &[u8], _limits: &Limits) {
        if self.chunks.is_empty() {
            self.chunks.push_back(Packed::new());
        }
        if let Some(c) = self.chunks.back_mut() {
            c.push_back(item);
        }
        self.len += 1;
    }

    pub fn mem_usage(&self) -> usize {
        self.chunks.iter().map(|c| c.bytes() + 32).sum()
    }
}
