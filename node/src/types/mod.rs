//! The values a key can hold besides strings (which live inline in their entry, see
//! `crate::keyspace::entry`): lists, hashes, sets and sorted sets, each compact while small
//! ([`packed::Packed`]) and a table or tree once past Redis's `*-max-listpack-*` thresholds
//! ([`Limits`]), as Redis converts them, so `OBJECT ENCODING` answers what Redis would.

pub mod geohash;
pub mod hash;
pub mod hll;
pub mod list;
pub mod packed;
pub mod set;
pub mod stream;
pub mod zset;

pub use hash::Hash;
pub use list::List;
pub use set::Set;
pub use stream::Stream;
pub use zset::ZSet;

/// Thresholds that decide a value's encoding (CONFIG SET `hash-max-listpack-entries`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub hash_max_listpack_entries: usize,
    pub hash_max_listpack_value: usize,
    pub set_max_intset_entries: usize,
    /// Small sets of strings stay packed up to these (Redis 7.0 has no such encoding and
    /// reports `hashtable` for them; the memory saving is ours).
    pub set_max_listpack_entries: usize,
    pub set_max_listpack_value: usize,
    pub zset_max_listpack_entries: usize,
    pub zset_max_listpack_value: usize,
    /// Positive: elements per list chunk; negative: -1..-5 for 4..64 KiB chunks.
    pub list_max_listpack_size: i64,
    pub list_compress_depth: i64,
    /// HyperLogLogs stay sparse up to this many bytes.
    pub hll_sparse_max_bytes: usize,
    /// Stream entries per node and bytes per node (what `~` trimming removes at once).
    pub stream_node_max_entries: usize,
    pub stream_node_max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            hash_max_listpack_entries: 128,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            set_max_listpack_entries: 128,
            set_max_listpack_value: 64,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            list_max_listpack_size: -2,
            list_compress_depth: 0,
            hll_sparse_max_bytes: 3000,
            stream_node_max_entries: 100,
            stream_node_max_bytes: 4096,
        }
    }
}

/// A non-string value.
#[derive(Debug, Clone)]
pub enum Value {
    List(List),
    Hash(Hash),
    Set(Set),
    ZSet(ZSet),
    Stream(Box<Stream>),
}

impl Value {
    /// What `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }

    /// What `OBJECT ENCODING` answers (Redis 7.0's names).
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::List(_) => "quicklist",
            Value::Hash(h) => h.encoding(),
            Value::Set(s) => s.encoding(),
            Value::ZSet(z) => z.encoding(),
            Value::Stream(s) => s.encoding(),
        }
    }

    /// Elements (list items, fields, members).
    pub fn len(&self) -> usize {
        match self {
            Value::List(v) => v.len(),
            Value::Hash(v) => v.len(),
            Value::Set(v) => v.len(),
            Value::ZSet(v) => v.len(),
            Value::Stream(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the value owns beyond its own struct (MEMORY USAGE, eviction).
    pub fn mem_usage(&self) -> usize {
        match self {
            Value::List(v) => v.mem_usage(),
            Value::Hash(v) => v.mem_usage(),
            Value::Set(v) => v.mem_usage(),
            Value::ZSet(v) => v.mem_usage(),
            Value::Stream(v) => v.mem_usage(),
        }
    }
}

/// One type of [`Value`], for typed access through `Db::read` and `Db::update`.
pub trait Kind: Default + Sized {
    fn of(v: &Value) -> Option<&Self>;
    fn of_mut(v: &mut Value) -> Option<&mut Self>;
    fn into_value(self) -> Value;
    fn is_empty(&self) -> bool;
    /// Bytes the value owns, in constant time (kept as it changes): eviction weighs every write.
    fn mem_usage(&self) -> usize;
}

macro_rules! kind {
    ($t:ident) => {
        impl Kind for $t {
            fn of(v: &Value) -> Option<&Self> {
                match v {
                    Value::$t(x) => Some(x),
                    _ => None,
                }
            }
            fn of_mut(v: &mut Value) -> Option<&mut Self> {
                match v {
                    Value::$t(x) => Some(x),
                    _ => None,
                }
            }
            fn into_value(self) -> Value {
                Value::$t(self)
            }
            fn is_empty(&self) -> bool {
                self.len() == 0
            }
            fn mem_usage(&self) -> usize {
                $t::mem_usage(self)
            }
        }
    };
}

kind!(List);
kind!(Hash);
kind!(Set);
kind!(ZSet);

/// A stream is kept when its last entry goes (XDEL, XTRIM): never "empty" to `Db::update`.
impl Kind for Stream {
    fn of(v: &Value) -> Option<&Self> {
        match v {
            Value::Stream(x) => Some(x),
            _ => None,
        }
    }
    fn of_mut(v: &mut Value) -> Option<&mut Self> {
        match v {
            Value::Stream(x) => Some(x),
            _ => None,
        }
    }
    fn into_value(self) -> Value {
        Value::Stream(Box::new(self))
    }
    fn is_empty(&self) -> bool {
        false
    }
    fn mem_usage(&self) -> usize {
        Stream::mem_usage(self)
    }
}

/// Hasher for member tables: xxh3 over the bytes (SipHash's cost buys nothing here: a member
/// table is per key, and flooding one key only slows that key).
#[derive(Default, Clone, Copy)]
pub struct XxHasher(u64);

impl std::hash::Hasher for XxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_usize(&mut self, n: usize) {
        // `[u8]` hashes its length first: fold it in cheaply.
        self.0 = self.0.rotate_left(5) ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type XxBuild = std::hash::BuildHasherDefault<XxHasher>;

/// A scan cursor over a table with O(1) removal by swapping in the last element: walking from
/// the end toward the front, a removal never moves an unvisited element into the visited part
/// (it moves the last one, already visited, down), so every element present for the whole scan
/// is returned at least once, Redis's SCAN guarantee. The cursor is the next index + 1; 0 starts
/// at the end and ends the walk.
pub fn scan_window(len: usize, cursor: u64, count: usize) -> (std::ops::Range<usize>, u64) {
    let top = if cursor == 0 {
        len
    } else {
        (cursor as usize).min(len)
    };
    let bottom = top.saturating_sub(count.max(1));
    let next = if bottom == 0 { 0 } else { bottom as u64 };
    (bottom..top, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_window_walks_down_to_zero() {
        assert_eq!(scan_window(25, 0, 10), (15..25, 15));
        assert_eq!(scan_window(25, 15, 10), (5..15, 5));
        assert_eq!(scan_window(25, 5, 10), (0..5, 0));
        // The table shrank under the cursor: clamp.
        assert_eq!(scan_window(3, 15, 10), (0..3, 0));
        assert_eq!(scan_window(0, 0, 10), (0..0, 0));
    }
}
