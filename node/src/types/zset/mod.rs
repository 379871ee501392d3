//! Sorted sets: `(member, score)` pairs ordered by score, then member bytes.
//!
//! Small sets are packed pairs in one buffer ([`listpack`], `OBJECT ENCODING listpack`) while
//! they hold at most `zset-max-listpack-entries` members of at most `zset-max-listpack-value`
//! bytes; past that they convert, for good as in Redis, to a [`Large`] set (`skiplist`): an
//! ordered chunked index holding each member once plus a member table, giving O(log n) insert,
//! remove, rank and range lookups with no allocation per member.
//!
//! Positions are ranks (0-based); ranges of scores or of members resolve to a span of ranks.

mod chunk;
mod index;
mod large;
mod listpack;
mod table;

use std::ops::Range;

use super::packed::Packed;
use super::Limits;
pub use index::cmp as order;
pub use large::Large;

#[derive(Debug, Clone)]
pub enum ZSet {
    Packed(Packed),
    Large(Box<Large>),
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet::Packed(Packed::new())
    }
}

/// A score interval; `(` in Redis's syntax makes a bound exclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRange {
    pub min: f64,
    pub min_ex: bool,
    pub max: f64,
    pub max_ex: bool,
}

impl ScoreRange {
    pub fn inclusive(min: f64, max: f64) -> ScoreRange {
        ScoreRange {
            min,
            min_ex: false,
            max,
            max_ex: false,
        }
    }

    pub fn above_min(&self, s: f64) -> bool {
        if self.min_ex {
            s > self.min
        } else {
            s >= self.min
        }
    }

    pub fn below_max(&self, s: f64) -> bool {
        if self.max_ex {
            s < self.max
        } else {
            s <= self.max
        }
    }

    pub fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.min_ex || self.max_ex))
    }
}

/// A bound of a range of members: `-`, `+`, `[member` or `(member`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LexBound<'a> {
    NegInf,
    PosInf,
    Incl(&'a [u8]),
    Excl(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexRange<'a> {
    pub min: LexBound<'a>,
    pub max: LexBound<'a>,
}

impl<'a> LexRange<'a> {
    pub fn above_min(&self, m: &[u8]) -> bool {
        match self.min {
            LexBound::NegInf => true,
            LexBound::PosInf => false,
            LexBound::Incl(b) => m >= b,
            LexBound::Excl(b) => m > b,
        }
    }

    pub fn below_max(&self, m: &[u8]) -> bool {
        match self.max {
            LexBound::NegInf => false,
            LexBound::PosInf => true,
            LexBound::Incl(b) => m <= b,
            LexBound::Excl(b) => m < b,
        }
    }

    /// Redis's emptiness test: min after max, or equal with either end exclusive (`-` and
    /// `+` count as exclusive).
    pub fn is_empty(&self) -> bool {
        use std::cmp::Ordering::*;
        use LexBound::*;
        let text = |b: LexBound<'a>| -> Option<&'a [u8]> {
            match b {
                Incl(t) | Excl(t) => Some(t),
                _ => None,
            }
        };
        let ord = match (self.min, self.max) {
            (NegInf, NegInf) | (PosInf, PosInf) => Equal,
            (NegInf, _) | (_, PosInf) => Less,
            (PosInf, _) | (_, NegInf) => Greater,
            (a, b) => text(a).cmp(&text(b)),
        };
        let exclusive = !matches!(self.min, Incl(_)) || !matches!(self.max, Incl(_));
        ord == Greater || (ord == Equal && exclusive)
    }
}

impl ZSet {
    pub fn len(&self) -> usize {
        match self {
            ZSet::Packed(p) => listpack::len(p),
            ZSet::Large(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            ZSet::Packed(_) => "listpack",
            ZSet::Large(_) => "skiplist",
        }
    }

    /// Bytes owned, in O(1).
    pub fn mem_usage(&self) -> usize {
        match self {
            ZSet::Packed(p) => p.bytes(),
            ZSet::Large(l) => l.mem_usage() + std::mem::size_of::<Large>(),
        }
    }

    /// A set of `entries` (in order, distinct members) encoded as Redis encodes a computed
    /// result (ZUNIONSTORE, ZRANGESTORE...): packed if it is within both listpack limits.
    pub fn from_sorted<'a>(
        entries: impl Iterator<Item = (&'a [u8], f64)> + Clone,
        limits: &Limits,
    ) -> ZSet {
        let (mut n, mut longest) = (0, 0);
        for (m, _) in entries.clone() {
            n += 1;
            longest = longest.max(m.len());
        }
        if n <= limits.zset_max_listpack_entries && longest <= limits.zset_max_listpack_value {
            let mut p = Packed::new();
            entries.for_each(|(m, s)| listpack::push(&mut p, m, s));
            ZSet::Packed(p)
        } else {
            ZSet::Large(Box::new(Large::from_sorted(entries)))
        }
    }

    /// Converts a packed set to the large encoding (Redis's SORT does this to the sets it reads).
    pub fn make_large(&mut self) {
        if let ZSet::Packed(p) = self {
            let large = Large::from_sorted(listpack::pairs(p).map(|x| (x.member, x.score)));
            *self = ZSet::Large(Box::new(large));
        }
    }

    /// Members and scores in order.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(0)
    }

    /// Members and scores from rank `rank` on, in order.
    pub fn iter_from(&self, rank: usize) -> Iter<'_> {
        match self {
            ZSet::Packed(p) => Iter::Packed(listpack::pairs_from(p, rank)),
            ZSet::Large(l) => Iter::Large(l.index().iter_from(rank)),
        }
    }

    /// Members and scores from rank `rank` (clamped to the last) down to the first.
    pub fn iter_rev_from(&self, rank: usize) -> RevIter<'_> {
        match self {
            ZSet::Packed(p) => {
                let n = rank.saturating_add(1).min(listpack::len(p));
                let v: Vec<(&[u8], f64)> = listpack::pairs(p)
                    .take(n)
                    .map(|x| (x.member, x.score))
                    .collect();
                RevIter::Packed(v.into_iter().rev())
            }
            ZSet::Large(l) => RevIter::Large(l.index().iter_rev_from(rank)),
        }
    }

    /// The member and score at `rank`.
    pub fn get(&self, rank: usize) -> Option<(&[u8], f64)> {
        match self {
            ZSet::Packed(p) => listpack::pairs_from(p, rank)
                .next()
                .map(|x| (x.member, x.score)),
            ZSet::Large(l) => l.index().get(rank),
        }
    }

    /// Adds `member` with `score`, or moves it to `score`; true if it is new. A new member
    /// past the limits converts a packed set.
    pub fn insert(&mut self, member: &[u8], score: f64, limits: &Limits) -> bool {
        if let ZSet::Packed(p) = self {
            if let Some((_, pair)) = listpack::find(p, member) {
                if pair.score != score {
                    listpack::remove(p, pair.pos, 1);
                    listpack::insert(p, member, score);
                }
                return false;
            }
            if listpack::len(p) < limits.zset_max_listpack_entries
                && member.len() <= limits.zset_max_listpack_value
            {
                listpack::insert(p, member, score);
                return true;
            }
            let large = Large::from_sorted(listpack::pairs(p).map(|x| (x.member, x.score)));
            *self = ZSet::Large(Box::new(large));
        }
        match self {
            ZSet::Packed(_) => false,
            ZSet::Large(l) => l.insert(member, score),
        }
    }

    /// The score of `member`.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match self {
            ZSet::Packed(p) => listpack::find(p, member).map(|(_, x)| x.score),
            ZSet::Large(l) => l.score(member),
        }
    }

    /// Removes `member`, answering its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        match self {
            ZSet::Packed(p) => {
                let (_, pair) = listpack::find(p, member)?;
                let (pos, score) = (pair.pos, pair.score);
                listpack::remove(p, pos, 1);
                Some(score)
            }
            ZSet::Large(l) => l.remove(member),
        }
    }

    /// The rank of `member` (in ascending order) and its score.
    pub fn rank(&self, member: &[u8]) -> Option<(usize, f64)> {
        match self {
            ZSet::Packed(p) => listpack::find(p, member).map(|(i, x)| (i, x.score)),
            ZSet::Large(l) => l.rank(member),
        }
    }

    /// How many members come before the first for which `before(score, member)` is false;
    /// `before` must hold for a prefix of the order.
    pub fn partition_point(&self, before: impl Fn(f64, &[u8]) -> bool) -> usize {
        match self {
            ZSet::Packed(p) => listpack::pairs(p)
                .take_while(|x| before(x.score, x.member))
                .count(),
            ZSet::Large(l) => l.index().partition_point(before),
        }
    }

    /// The ranks of the members whose scores are in `r`.
    pub fn score_span(&self, r: &ScoreRange) -> Range<usize> {
        if r.is_empty() {
            return 0..0;
        }
        let start = self.partition_point(|s, _| !r.above_min(s));
        let end = self.partition_point(|s, _| r.below_max(s));
        start..end.max(start)
    }

    /// The ranks of the members in `r` (meaningful when all scores are equal, as in Redis).
    pub fn lex_span(&self, r: &LexRange<'_>) -> Range<usize> {
        if r.is_empty() {
            return 0..0;
        }
        let start = self.partition_point(|_, m| !r.above_min(m));
        let end = self.partition_point(|_, m| r.below_max(m));
        start..end.max(start)
    }

    /// Members with `min <= score <= max`, in order.
    pub fn range_by_score(&self, min: f64, max: f64) -> impl Iterator<Item = (&[u8], f64)> + '_ {
        let span = self.score_span(&ScoreRange::inclusive(min, max));
        self.iter_from(span.start).take(span.len())
    }

    /// Removes the members at `ranks`, calling `f` with each, in order.
    pub fn remove_range(&mut self, ranks: Range<usize>, mut f: impl FnMut(&[u8], f64)) {
        let n = ranks.end.min(self.len()).saturating_sub(ranks.start);
        if n == 0 {
            return;
        }
        match self {
            ZSet::Packed(p) => {
                let mut it = listpack::pairs_from(p, ranks.start);
                let Some(first) = it.next() else {
                    return;
                };
                let pos = first.pos;
                f(first.member, first.score);
                it.take(n - 1).for_each(|x| f(x.member, x.score));
                listpack::remove(p, pos, n);
            }
            ZSet::Large(l) => l.remove_range(ranks.start, ranks.start + n, f),
        }
    }

    /// One step of ZSCAN from `cursor`: a packed set in one step; a large one by score, at least
    /// `count` members and then the rest of the last one's score (the cursor is the next
    /// score, in an order-preserving encoding), so every member present for the whole scan
    /// with an unchanged score is seen. Returns the next cursor (0 at the end).
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], f64)) -> u64 {
        let ZSet::Large(l) = self else {
            self.iter().for_each(|(m, s)| f(m, s));
            return 0;
        };
        let start = if cursor == 0 {
            0
        } else {
            l.index().partition_point(|s, _| score_cursor(s) < cursor)
        };
        let mut last = None;
        for (taken, (m, s)) in l.index().iter_from(start).enumerate() {
            let key = score_cursor(s);
            if taken >= count && last != Some(key) {
                return key;
            }
            f(m, s);
            last = Some(key);
        }
        0
    }
}

/// A score as a scan cursor: an order-preserving map of the double to a `u64` (never 0: even
/// -inf maps above it), with -0 taken as 0.
fn score_cursor(s: f64) -> u64 {
    let bits = (s + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Members and scores in order.
pub enum Iter<'a> {
    Packed(listpack::Pairs<'a>),
    Large(index::Iter<'a>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<(&'a [u8], f64)> {
        match self {
            Iter::Packed(it) => it.next().map(|x| (x.member, x.score)),
            Iter::Large(it) => it.next(),
        }
    }
}

/// Members and scores in reverse order.
pub enum RevIter<'a> {
    Packed(std::iter::Rev<std::vec::IntoIter<(&'a [u8], f64)>>),
    Large(index::RevIter<'a>),
}

impl<'a> Iterator for RevIter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<(&'a [u8], f64)> {
        match self {
            RevIter::Packed(it) => it.next(),
            RevIter::Large(it) => it.next(),
        }
    }
}

#[cfg(test)]
mod tests;
