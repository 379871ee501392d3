//! Sets, in the most compact form their members allow, converting one way only as they grow
//! (as Redis does):
//! - [`IntSet`]: sorted integers, while every member is one (parses as an i64 the way Redis
//!   parses integers) and there are at most `set-max-intset-entries` (`OBJECT ENCODING intset`);
//! - [`Packed`] strings, while there are at most `set_max_listpack_entries` members of at most
//!   `set_max_listpack_value` bytes (Redis 7.0 has no such encoding: it reports `hashtable`);
//! - a [`Table`] (`hashtable`).

mod intset;
mod table;

use std::borrow::Cow;

use bytes::Bytes;
use ringcache_protocol::num::parse_i64;

pub use intset::IntSet;
pub use table::Table;

use super::packed::Packed;
use super::Limits;

/// Redis caps an intset at 2^30 entries whatever `set-max-intset-entries` says.
const MAX_INTSET_ENTRIES: usize = 1 << 30;

#[derive(Debug, Clone)]
pub enum Set {
    Ints(IntSet),
    Packed(Packed),
    Table(Box<Table>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Ints(IntSet::default())
    }
}

/// A member as a set holds it: an intset's integer, or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl Elem<'_> {
    /// The member as an integer, if it is one in Redis's sense (an intset could hold it).
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Elem::Int(n) => Some(n),
            Elem::Str(s) => parse_i64(s),
        }
    }

    /// Calls `f` with the member's bytes (an integer as its decimal text, formatted on the stack).
    pub fn with_text<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match *self {
            Elem::Int(n) => f(itoa::Buffer::new().format(n).as_bytes()),
            Elem::Str(s) => f(s),
        }
    }

    pub fn text_len(&self) -> usize {
        match *self {
            Elem::Int(n) => itoa::Buffer::new().format(n).len(),
            Elem::Str(s) => s.len(),
        }
    }

    /// The member's bytes, owned (for replies and propagation).
    pub fn to_bytes(&self) -> Bytes {
        self.with_text(Bytes::copy_from_slice)
    }
}

impl Set {
    pub fn len(&self) -> usize {
        match self {
            Set::Ints(s) => s.len(),
            Set::Packed(p) => p.len(),
            Set::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What `OBJECT ENCODING` answers.
    pub fn encoding(&self) -> &'static str {
        match self {
            Set::Ints(_) => "intset",
            Set::Packed(_) | Set::Table(_) => "hashtable",
        }
    }

    /// Bytes the set owns, in constant time.
    pub fn mem_usage(&self) -> usize {
        match self {
            Set::Ints(s) => s.bytes(),
            Set::Packed(p) => p.bytes(),
            Set::Table(t) => t.bytes(),
        }
    }

    /// Members (integers of an intset as their decimal text).
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, [u8]>> + '_ {
        self.elems().map(|e| match e {
            Elem::Int(n) => Cow::Owned(itoa::Buffer::new().format(n).as_bytes().to_vec()),
            Elem::Str(s) => Cow::Borrowed(s),
        })
    }

    /// Members as the set holds them (an intset's in ascending order).
    pub fn elems(&self) -> Box<dyn Iterator<Item = Elem<'_>> + '_> {
        match self {
            Set::Ints(s) => Box::new(s.iter().map(Elem::Int)),
            Set::Packed(p) => Box::new(p.iter().map(Elem::Str)),
            Set::Table(t) => Box::new(t.iter().map(Elem::Str)),
        }
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.contains_elem(Elem::Str(member))
    }

    pub fn contains_elem(&self, e: Elem<'_>) -> bool {
        match self {
            // Only what parses as an integer can be in an intset.
            Set::Ints(s) => e.as_int().is_some_and(|n| s.contains(n)),
            Set::Packed(p) => e.with_text(|t| p.find(1, |m| m == t).is_some()),
            Set::Table(t) => e.with_text(|m| t.contains(m)),
        }
    }

    /// Adds `member`; true if it is new.
    pub fn insert(&mut self, member: &[u8], limits: &Limits) -> bool {
        self.insert_elem(Elem::Str(member), limits)
    }

    /// Adds `e`, converting first if the set cannot hold it as it is; true if it is new.
    pub fn insert_elem(&mut self, e: Elem<'_>, limits: &Limits) -> bool {
        match self {
            Set::Ints(s) => {
                if let Some(n) = e.as_int() {
                    if s.contains(n) {
                        return false;
                    }
                    let max = limits.set_max_intset_entries.min(MAX_INTSET_ENTRIES);
                    if s.len() < max {
                        return s.insert(n);
                    }
                }
            }
            Set::Packed(p) => {
                let (found, fits) = e.with_text(|t| {
                    (
                        p.find(1, |m| m == t).is_some(),
                        t.len() <= limits.set_max_listpack_value,
                    )
                });
                if found {
                    return false;
                }
                if fits && p.len() < limits.set_max_listpack_entries {
                    e.with_text(|t| p.push_back(t));
                    return true;
                }
            }
            Set::Table(t) => return e.with_text(|m| t.insert(m)),
        }
        // `e` is new and does not fit the current form.
        self.convert_for(e, limits);
        match self {
            Set::Packed(p) => e.with_text(|t| p.push_back(t)),
            Set::Table(t) => {
                e.with_text(|m| t.insert(m));
            }
            Set::Ints(_) => {}
        }
        true
    }

    /// Converts to the next form that can hold every member and the new `e`: packed strings if
    /// they all fit its limits, else a table.
    fn convert_for(&mut self, e: Elem<'_>, limits: &Limits) {
        let n = self.len() + 1;
        let longest_int = |s: &IntSet| {
            [s.first(), s.last()]
                .into_iter()
                .flatten()
                .map(|x| Elem::Int(x).text_len())
                .max()
                .unwrap_or(0)
        };
        let pack = match self {
            Set::Ints(s) => {
                n <= limits.set_max_listpack_entries
                    && longest_int(s).max(e.text_len()) <= limits.set_max_listpack_value
            }
            Set::Packed(_) => false,
            Set::Table(_) => return,
        };
        if pack {
            let mut p = Packed::new();
            self.elems().for_each(|m| m.with_text(|t| p.push_back(t)));
            *self = Set::Packed(p);
        } else {
            let mut t = Table::with_capacity(n);
            self.elems().for_each(|m| {
                m.with_text(|b| t.insert(b));
            });
            *self = Set::Table(Box::new(t));
        }
    }

    /// Removes `member`; true if it was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        self.remove_elem(Elem::Str(member))
    }

    pub fn remove_elem(&mut self, e: Elem<'_>) -> bool {
        match self {
            Set::Ints(s) => e.as_int().is_some_and(|n| s.remove(n)),
            Set::Packed(p) => match e.with_text(|t| p.find(1, |m| m == t)) {
                Some(pos) => {
                    p.remove(pos, 1);
                    true
                }
                None => false,
            },
            Set::Table(t) => e.with_text(|m| t.remove(m)),
        }
    }

    /// Whether [`Set::get`] is constant time (an intset or a table): random picks go by index
    /// and scans page through a table.
    pub fn is_indexed(&self) -> bool {
        !matches!(self, Set::Packed(_))
    }

    pub fn is_table(&self) -> bool {
        matches!(self, Set::Table(_))
    }

    /// The member at `index` in the set's order (walks from the front when packed).
    pub fn get(&self, index: usize) -> Option<Elem<'_>> {
        match self {
            Set::Ints(s) => s.get(index).map(Elem::Int),
            Set::Packed(p) => p.get(index).map(Elem::Str),
            Set::Table(t) => t.get_index(index).map(Elem::Str),
        }
    }

    /// The members at `indexes` (any order, repeats allowed), walking a packed set once.
    pub fn get_many(&self, indexes: &[usize]) -> Vec<Elem<'_>> {
        if self.is_indexed() {
            return indexes.iter().filter_map(|&i| self.get(i)).collect();
        }
        let all: Vec<Elem<'_>> = self.elems().collect();
        indexes
            .iter()
            .filter_map(|&i| all.get(i).copied())
            .collect()
    }

    /// Removes the members at `indexes` (distinct, any order).
    pub fn remove_indexes(&mut self, indexes: &[usize]) {
        let mut sorted = indexes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        match self {
            Set::Ints(s) => s.remove_indexes(&sorted),
            Set::Table(t) => t.remove_indexes(&sorted),
            Set::Packed(p) => {
                let mut kept = Packed::new();
                let mut drop = sorted.iter().peekable();
                for (i, m) in p.iter().enumerate() {
                    if drop.peek() == Some(&&i) {
                        drop.next();
                    } else {
                        kept.push_back(m);
                    }
                }
                *p = kept;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn members(s: &Set) -> Vec<String> {
        let mut v: Vec<String> = s
            .iter()
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn integers_stay_an_intset_until_a_string_or_the_limit() {
        let l = Limits {
            set_max_intset_entries: 4,
            ..Limits::default()
        };
        let mut s = Set::default();
        for m in ["3", "-1", "2", "3"] {
            s.insert(m.as_bytes(), &l);
        }
        assert_eq!(s.encoding(), "intset");
        assert_eq!(s.len(), 3);
        assert_eq!(s.mem_usage(), 6);
        // Not integers in Redis's sense: "+1", "01", " 1", "-0".
        for m in ["+1", "01", " 1", "-0"] {
            assert!(!s.contains(m.as_bytes()));
        }
        assert!(s.contains(b"-1"));
        assert!(s.insert(b"4", &l));
        assert!(!s.insert(b"4", &l), "an existing member never converts");
        assert_eq!(s.encoding(), "intset");
        assert!(s.insert(b"5", &l));
        assert_eq!(s.encoding(), "hashtable");
        assert!(matches!(s, Set::Packed(_)));
        assert_eq!(members(&s), ["-1", "2", "3", "4", "5"]);
        assert!(s.contains(b"5"));
        assert!(s.remove(b"5"));
        assert_eq!(s.encoding(), "hashtable", "never converts back");

        let mut t = Set::default();
        t.insert(b"1", &l);
        t.insert(b"a", &l);
        assert!(matches!(t, Set::Packed(_)));
        assert_eq!(members(&t), ["1", "a"]);
    }

    #[test]
    fn big_or_long_members_make_a_table() {
        let l = Limits::default();
        let mut s = Set::default();
        for i in 0..600 {
            s.insert(i.to_string().as_bytes(), &l);
        }
        assert!(matches!(s, Set::Table(_)));
        assert_eq!(s.len(), 600);
        let mut p = Set::default();
        p.insert(b"a", &l);
        p.insert(&[b'x'; 65], &l);
        assert!(matches!(p, Set::Table(_)));
        let mut q = Set::default();
        for i in 0..129 {
            q.insert(format!("m{i}").as_bytes(), &l);
        }
        assert!(matches!(q, Set::Table(_)));
        assert_eq!(q.len(), 129);
        assert!(q.contains(b"m0") && q.contains(b"m128"));
    }

    #[test]
    fn a_set_is_no_bigger_than_a_hash() {
        // Every key's value is boxed at the size of the largest kind.
        assert!(std::mem::size_of::<Set>() <= 32);
    }

    #[test]
    fn zero_intset_entries_never_keeps_an_intset() {
        let l = Limits {
            set_max_intset_entries: 0,
            ..Limits::default()
        };
        let mut s = Set::default();
        assert!(s.insert(b"1", &l));
        assert_eq!(s.encoding(), "hashtable");
        assert!(s.contains(b"1"));
    }

    #[test]
    fn remove_indexes_in_every_form() {
        let l = Limits::default();
        for n in [5usize, 50, 300] {
            for strings in [false, true] {
                let mut s = Set::default();
                for i in 0..n {
                    let m = if strings {
                        format!("s{i}")
                    } else {
                        i.to_string()
                    };
                    s.insert(m.as_bytes(), &l);
                }
                let picked: Vec<Vec<u8>> = s
                    .get_many(&[3, 0, 4])
                    .iter()
                    .map(|e| e.to_bytes().to_vec())
                    .collect();
                let before = s.mem_usage();
                s.remove_indexes(&[3, 0, 4]);
                assert_eq!(s.len(), n - 3);
                assert!(s.mem_usage() < before);
                for m in &picked {
                    assert!(!s.contains(m));
                }
                assert_eq!(s.elems().count(), n - 3);
            }
        }
    }
}
