//! Sorted sets: packed (member, score) pairs while small, an ordered index with a member table
//! once large. Scaffolding: the representation and its operations are filled in by the zset work.

use super::Limits;

#[derive(Debug, Clone, Default)]
pub struct ZSet {
    items: Vec<(f64, Box<[u8]>)>,
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn encoding(&self) -> &'static str {
        "listpack"
    }

    /// Members and scores in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], f64)> + '_ {
        self.items.iter().map(|(s, m)| (&m[..], *s))
    }

    /// Adds or updates `member`; true if it is new.
    pub fn insert(&mut self, member: &[u8], score: f64, _limits: &Limits) -> bool {
        let new = self.remove(member).is_none();
        let at = self
            .items
            .partition_point(|(s, m)| (*s, &m[..]) < (score, member));
        self.items.insert(at, (score, member.into()));
        new
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.items
            .iter()
            .find(|(_, m)| &m[..] == member)
            .map(|(s, _)| *s)
    }

    /// Removes `member`, answering its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let at = self.items.iter().position(|(_, m)| &m[..] == member)?;
        Some(self.items.remove(at).0)
    }

    /// Members with `min <= score <= max`, in order.
    pub fn range_by_score(&self, min: f64, max: f64) -> impl Iterator<Item = (&[u8], f64)> + '_ {
        self.iter().filter(move |(_, s)| *s >= min && *s <= max)
    }

    pub fn mem_usage(&self) -> usize {
        self.items.iter().map(|(_, m)| m.len() + 32).sum()
    }
}
