//! Hashes: field/value pairs packed in insertion order while small (Redis's `listpack`), an
//! insertion-ordered table once a field or value is longer than `hash-max-listpack-value` or
//! there are more than `hash-max-listpack-entries` fields (`hashtable`). Like Redis, a hash
//! never converts back.

use indexmap::IndexMap;

use super::packed::{Packed, Pos};
use super::{Limits, XxBuild};

type Map = IndexMap<Box<[u8]>, Box<[u8]>, XxBuild>;

/// A large hash and the bytes its fields and values take (kept so weighing it is O(1)).
#[derive(Debug, Clone, Default)]
pub struct Table {
    map: Map,
    bytes: usize,
}

/// Bytes a field costs in a table beyond its field and value bytes (entry, index, allocations).
const FIELD_OVERHEAD: usize = 48;

impl Table {
    fn insert(&mut self, f: &[u8], v: &[u8]) -> bool {
        self.bytes += f.len() + v.len() + FIELD_OVERHEAD;
        match self.map.insert(f.into(), v.into()) {
            Some(old) => {
                self.bytes -= f.len() + old.len() + FIELD_OVERHEAD;
                false
            }
            None => true,
        }
    }

    fn remove(&mut self, f: &[u8]) -> bool {
        // Swap-remove keeps removal O(1); see `super::scan_window` for why scans stay sound.
        match self.map.swap_remove(f) {
            Some(old) => {
                self.bytes -= f.len() + old.len() + FIELD_OVERHEAD;
                true
            }
            None => false,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Hash {
    /// `[field][value]` pairs.
    Packed(Packed),
    Table(Box<Table>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash::Packed(Packed::new())
    }
}

impl Hash {
    pub fn len(&self) -> usize {
        match self {
            Hash::Packed(p) => p.len() / 2,
            Hash::Table(t) => t.map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Hash::Packed(_) => "listpack",
            Hash::Table(_) => "hashtable",
        }
    }

    fn packed_field(p: &Packed, field: &[u8]) -> Option<Pos> {
        p.find(2, |f| f == field)
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            Hash::Packed(p) => {
                let pos = Self::packed_field(p, field)?;
                let (_, value_at) = p.at(pos.offset);
                Some(p.at(value_at).0)
            }
            Hash::Table(t) => t.map.get(field).map(|v| &v[..]),
        }
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// Converts to a table if `field`/`value` or one more field would pass the limits.
    fn grow_for(&mut self, field: &[u8], value: &[u8], limits: &Limits) {
        if let Hash::Packed(p) = self {
            let max = limits.hash_max_listpack_value;
            if field.len() > max
                || value.len() > max
                || p.len() / 2 >= limits.hash_max_listpack_entries
            {
                let mut t = Table {
                    map: Map::with_capacity_and_hasher(p.len() / 2 + 1, XxBuild::default()),
                    bytes: 0,
                };
                let mut it = p.iter();
                while let (Some(f), Some(v)) = (it.next(), it.next()) {
                    t.insert(f, v);
                }
                *self = Hash::Table(Box::new(t));
            }
        }
    }

    /// Sets `field`; true if it is new.
    pub fn set(&mut self, field: &[u8], value: &[u8], limits: &Limits) -> bool {
        if let Hash::Packed(p) = self {
            if let Some(pos) = Self::packed_field(p, field) {
                if value.len() <= limits.hash_max_listpack_value {
                    let (_, value_at) = p.at(pos.offset);
                    let vpos = Pos {
                        index: pos.index + 1,
                        offset: value_at,
                    };
                    p.replace(vpos, value);
                    return false;
                }
            }
        }
        self.grow_for(field, value, limits);
        match self {
            Hash::Packed(p) => {
                p.push_back(field);
                p.push_back(value);
                true
            }
            Hash::Table(t) => t.insert(field, value),
        }
    }

    /// Removes `field`; true if it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Packed(p) => match Self::packed_field(p, field) {
                Some(pos) => {
                    p.remove(pos, 2);
                    true
                }
                None => false,
            },
            Hash::Table(t) => t.remove(field),
        }
    }

    /// Fields and values in the hash's order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &[u8])> + '_> {
        match self {
            Hash::Packed(p) => {
                let mut it = p.iter();
                Box::new(std::iter::from_fn(move || Some((it.next()?, it.next()?))))
            }
            Hash::Table(t) => Box::new(t.map.iter().map(|(f, v)| (&f[..], &v[..]))),
        }
    }

    /// The pair at `index` in the hash's order (random picks: O(1) for tables).
    pub fn get_index(&self, index: usize) -> Option<(&[u8], &[u8])> {
        match self {
            Hash::Packed(p) => {
                let pos = p.pos(index * 2)?;
                let (f, value_at) = p.at(pos.offset);
                Some((f, p.at(value_at).0))
            }
            Hash::Table(t) => t.map.get_index(index).map(|(f, v)| (&f[..], &v[..])),
        }
    }

    /// Whether [`Hash::get_index`] is constant time (a table), so scans can page through it.
    pub fn is_table(&self) -> bool {
        matches!(self, Hash::Table(_))
    }

    pub fn mem_usage(&self) -> usize {
        match self {
            Hash::Packed(p) => p.bytes(),
            Hash::Table(t) => t.bytes,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn small_hash_keeps_order_then_converts() {
        let l = Limits::default();
        let mut h = Hash::default();
        assert!(h.set(b"b", b"1", &l));
        assert!(h.set(b"a", b"2", &l));
        assert!(!h.set(b"b", b"3", &l));
        assert_eq!(h.get(b"b"), Some(&b"3"[..]));
        let order: Vec<_> = h.iter().map(|(f, _)| f.to_vec()).collect();
        assert_eq!(order, vec![b"b".to_vec(), b"a".to_vec()]);
        assert_eq!(h.encoding(), "listpack");
        for i in 0..200 {
            h.set(format!("f{i}").as_bytes(), b"v", &l);
        }
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.len(), 202);
        assert_eq!(h.get(b"a"), Some(&b"2"[..]));
        assert!(h.remove(b"a"));
        assert!(!h.remove(b"a"));
        assert_eq!(h.len(), 201);
    }

    #[test]
    fn a_long_value_converts() {
        let l = Limits::default();
        let mut h = Hash::default();
        h.set(b"f", b"short", &l);
        h.set(b"f", &[b'x'; 65], &l);
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.get(b"f").unwrap().len(), 65);
        assert_eq!(h.len(), 1);
        assert_eq!(h.get_index(0).unwrap().0, b"f");
    }
}
