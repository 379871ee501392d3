//! Walking a list from its back: chunks are walked front to back only (an element's length
//! precedes it), so each chunk's elements are gathered and handed out in reverse.

use std::collections::vec_deque;

use super::Chunk;

/// A list's elements, back to front.
pub struct RevIter<'a> {
    chunks: vec_deque::Iter<'a, Chunk>,
    /// The current chunk's elements not yet handed out, front to back.
    cur: Vec<&'a [u8]>,
}

impl<'a> RevIter<'a> {
    pub(super) fn new(chunks: &'a std::collections::VecDeque<Chunk>) -> RevIter<'a> {
        RevIter {
            chunks: chunks.iter(),
            cur: Vec::new(),
        }
    }
}

impl<'a> Iterator for RevIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if let Some(item) = self.cur.pop() {
                return Some(item);
            }
            let c = self.chunks.next_back()?;
            self.cur.extend(c.iter());
        }
    }
}
