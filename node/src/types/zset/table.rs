//! The member table of a large sorted set: a member's score in O(1). A slot holds only the
//! score and 32 bits of the member's hash (12 bytes); the member's bytes live once, in the
//! index, and a lookup confirms a hash match there (`is_member(score)`: is `(score, member)` in
//! the index). Two members sharing 32 hash bits and a score have interchangeable slots, so the
//! table is a multiset of `(hash, score)` and removing either slot is right.

use hashbrown::HashTable;

#[derive(Debug, Clone, Copy)]
struct Slot([u8; 12]);

impl Slot {
    fn new(hash: u32, score: f64) -> Slot {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&score.to_le_bytes());
        b[8..].copy_from_slice(&hash.to_le_bytes());
        Slot(b)
    }

    fn score(&self) -> f64 {
        let mut s = [0u8; 8];
        s.copy_from_slice(&self.0[..8]);
        f64::from_le_bytes(s)
    }

    fn hash(&self) -> u32 {
        let mut h = [0u8; 4];
        h.copy_from_slice(&self.0[8..]);
        u32::from_le_bytes(h)
    }

    fn set_score(&mut self, score: f64) {
        self.0[..8].copy_from_slice(&score.to_le_bytes());
    }
}

/// The 32 hash bits a slot keeps of `member`.
pub fn member_hash(member: &[u8]) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(member) >> 32) as u32
}

/// The table's hash of a slot: the kept bits spread over 64 (the table takes its bucket from the
/// low bits and a tag from the top ones).
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn rehash(s: &Slot) -> u64 {
    spread(s.hash())
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    t: HashTable<Slot>,
}

impl Table {
    pub fn with_capacity(n: usize) -> Table {
        Table {
            t: HashTable::with_capacity(n),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// Bytes owned, in O(1).
    pub fn mem_usage(&self) -> usize {
        self.t.allocation_size()
    }

    /// The score of the member hashing to `hash` that `is_member` confirms.
    pub fn find(&self, hash: u32, mut is_member: impl FnMut(f64) -> bool) -> Option<f64> {
        self.t
            .find(spread(hash), |s| s.hash() == hash && is_member(s.score()))
            .map(Slot::score)
    }

    /// Sets the score of the member `is_member` confirms to `new(old score)`; the old score, or
    /// `None` if the member is absent.
    pub fn update(
        &mut self,
        hash: u32,
        mut is_member: impl FnMut(f64) -> bool,
        new: impl FnOnce(f64) -> f64,
    ) -> Option<f64> {
        let slot = self
            .t
            .find_mut(spread(hash), |s| s.hash() == hash && is_member(s.score()))?;
        let old = slot.score();
        slot.set_score(new(old));
        Some(old)
    }

    pub fn insert(&mut self, hash: u32, score: f64) {
        self.t
            .insert_unique(spread(hash), Slot::new(hash, score), rehash);
    }

    /// Removes a slot of `(hash, score)` (the same bits: -0 is not 0 here).
    pub fn remove(&mut self, hash: u32, score: f64) -> bool {
        let bits = score.to_bits();
        match self.t.find_entry(spread(hash), |s| {
            s.hash() == hash && s.score().to_bits() == bits
        }) {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Gives memory back once the table is mostly empty (as Redis resizes its dicts).
    pub fn maybe_shrink(&mut self) {
        let cap = self.t.capacity();
        if cap > 64 && self.t.len() * 8 < cap {
            self.t.shrink_to(self.t.len() * 2, rehash);
        }
    }
}
