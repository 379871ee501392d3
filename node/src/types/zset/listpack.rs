//! A small sorted set (Redis's `listpack` encoding): `[member][score]` pairs in one
//! [`Packed`] buffer, sorted by score then member. Every operation walks the pairs, which the
//! `zset-max-listpack-entries` limit keeps short.
//!
//! A score is stored in as few bytes as it needs: an integer below 2^55 in magnitude as 0 to 7
//! bytes of zigzag little-endian, anything else as the 8 bytes of the double. Like Redis's
//! listpack, this keeps no sign on zero: -0 reads back as 0.

use std::cmp::Ordering;

use super::index::cmp;
use crate::types::packed::{Packed, Pos};

/// Integers below this magnitude are stored as integers (they fit in 7 zigzag bytes).
const INT_LIMIT: f64 = (1u64 << 55) as f64;

/// Encodes `score` into `buf`; the bytes used.
fn encode(score: f64, buf: &mut [u8; 8]) -> usize {
    if score.fract() == 0.0 && score.abs() < INT_LIMIT {
        let i = score as i64;
        let z = ((i << 1) ^ (i >> 63)) as u64;
        let len = (8 - z.leading_zeros() / 8) as usize;
        buf[..len].copy_from_slice(&z.to_le_bytes()[..len]);
        len.min(7)
    } else {
        *buf = score.to_le_bytes();
        8
    }
}

fn decode(b: &[u8]) -> f64 {
    if b.len() == 8 {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        return f64::from_le_bytes(a);
    }
    let mut a = [0u8; 8];
    let n = b.len().min(7);
    a[..n].copy_from_slice(&b[..n]);
    let z = u64::from_le_bytes(a);
    (((z >> 1) as i64) ^ -((z & 1) as i64)) as f64
}

/// A pair and where it sits.
#[derive(Debug, Clone, Copy)]
pub struct Pair<'a> {
    pub pos: Pos,
    pub member: &'a [u8],
    pub score: f64,
}

/// The pairs in order.
#[derive(Clone)]
pub struct Pairs<'a> {
    p: &'a Packed,
    offset: usize,
    index: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Pair<'a>;

    fn next(&mut self) -> Option<Pair<'a>> {
        if self.index + 1 >= self.p.len() {
            return None;
        }
        let pos = Pos {
            index: self.index,
            offset: self.offset,
        };
        let (member, score_at) = self.p.at(self.offset);
        let (score, next) = self.p.at(score_at);
        self.offset = next;
        self.index += 2;
        Some(Pair {
            pos,
            member,
            score: decode(score),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.p.len().saturating_sub(self.index) / 2;
        (left, Some(left))
    }
}

pub fn pairs(p: &Packed) -> Pairs<'_> {
    Pairs {
        p,
        offset: 0,
        index: 0,
    }
}

/// Pairs from rank `rank` on.
pub fn pairs_from(p: &Packed, rank: usize) -> Pairs<'_> {
    match p.pos(rank.saturating_mul(2)) {
        Some(pos) => Pairs {
            p,
            offset: pos.offset,
            index: pos.index,
        },
        None => Pairs {
            p,
            offset: p.bytes(),
            index: p.len(),
        },
    }
}

/// Pairs in the set.
pub fn len(p: &Packed) -> usize {
    p.len() / 2
}

pub fn find<'a>(p: &'a Packed, member: &[u8]) -> Option<(usize, Pair<'a>)> {
    pairs(p).enumerate().find(|(_, pair)| pair.member == member)
}

/// Inserts `(member, score)` in order; the member must not be in the set.
pub fn insert(p: &mut Packed, member: &[u8], score: f64) {
    let at = pairs(p)
        .find(|pair| cmp(pair.score, pair.member, score, member) == Ordering::Greater)
        .map_or_else(|| p.end(), |pair| pair.pos);
    let mut buf = [0u8; 8];
    let n = encode(score, &mut buf);
    p.insert(at, member);
    let score_at = Pos {
        index: at.index + 1,
        offset: at.offset + crate::types::packed::encoded_len(member),
    };
    p.insert(score_at, &buf[..n]);
}

/// Appends `(member, score)`, which must come after every pair in the set.
pub fn push(p: &mut Packed, member: &[u8], score: f64) {
    let mut buf = [0u8; 8];
    let n = encode(score, &mut buf);
    p.push_back(member);
    p.push_back(&buf[..n]);
}

/// Removes `n` pairs from the one at `pos`.
pub fn remove(p: &mut Packed, pos: Pos, n: usize) {
    p.remove(pos, n.saturating_mul(2));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_round_trip_compactly() {
        for (s, len) in [
            (0.0, 0),
            (1.0, 1),
            (-1.0, 1),
            (127.0, 1),
            (128.0, 2),
            (-1e15, 7),
            (1.5, 8),
            (f64::INFINITY, 8),
            (f64::NEG_INFINITY, 8),
            (36028797018963968.0, 8),
            (-36028797018963960.0, 7),
            (f64::MAX, 8),
            (5e-324, 8),
        ] {
            let mut buf = [0u8; 8];
            let n = encode(s, &mut buf);
            assert_eq!(n, len, "{s}");
            assert_eq!(decode(&buf[..n]).to_bits(), s.to_bits(), "{s}");
        }
        let mut buf = [0u8; 8];
        let n = encode(-0.0, &mut buf);
        assert_eq!(decode(&buf[..n]).to_bits(), 0.0f64.to_bits());
    }
}
