//! The keyspace: a moka cache bounded by bytes (TinyLFU eviction) with per-key deadlines, striped
//! write locks so every command is atomic on its keys, and a hash-bucket index of keys so SCAN,
//! KEYS and the migration of one ring arc never scan the whole cache.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use moka::sync::Cache;
use moka::Expiry;
use ringcache_protocol::hash::{bucket_of, key_hash, BUCKETS};
use std::sync::atomic::{AtomicU64, AtomicUsize};

/// Milliseconds since the Unix epoch (Redis keeps absolute deadlines in this unit).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Redis stores small hashes as a listpack (insertion order, linear lookup) and converts to a hash
/// table past these sizes; we do the same so HGETALL order matches Redis for small hashes.
const SMALL_HASH_MAX_ENTRIES: usize = 128;
const SMALL_HASH_MAX_VALUE: usize = 64;

#[derive(Debug, Clone)]
enum HashRepr {
    Small(Vec<(Bytes, Bytes)>),
    Large(HashMap<Bytes, Bytes>),
}

/// A hash value: insertion-ordered while small, a hash table once large; its byte size is kept
/// up to date so weighing an entry never walks the hash.
#[derive(Debug, Clone)]
pub struct HashValue {
    repr: HashRepr,
    bytes: usize,
}

impl Default for HashValue {
    fn default() -> Self {
        HashValue {
            repr: HashRepr::Small(Vec::new()),
            bytes: 0,
        }
    }
}

/// Bytes a field costs beyond its field and value bytes.
const FIELD_OVERHEAD: usize = 16;

impl HashValue {
    pub fn len(&self) -> usize {
        match &self.repr {
            HashRepr::Small(v) => v.len(),
            HashRepr::Large(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, field: &[u8]) -> Option<&Bytes> {
        match &self.repr {
            HashRepr::Small(v) => v.iter().find(|(f, _)| f == field).map(|(_, v)| v),
            HashRepr::Large(m) => m.get(field),
        }
    }

    /// Sets a field; true if it is new.
    pub fn set(&mut self, field: Bytes, value: Bytes) -> bool {
        if let HashRepr::Small(v) = &mut self.repr {
            if v.len() >= SMALL_HASH_MAX_ENTRIES
                || field.len() > SMALL_HASH_MAX_VALUE
                || value.len() > SMALL_HASH_MAX_VALUE
            {
                let map = std::mem::take(v).into_iter().collect();
                self.repr = HashRepr::Large(map);
            }
        }
        let added = field.len() + value.len() + FIELD_OVERHEAD;
        let old = match &mut self.repr {
            HashRepr::Small(v) => match v.iter_mut().find(|(f, _)| *f == field) {
                Some(slot) => Some(std::mem::replace(&mut slot.1, value)),
                None => {
                    v.push((field.clone(), value));
                    None
                }
            },
            HashRepr::Large(m) => m.insert(field.clone(), value),
        };
        self.bytes += added;
        match old {
            Some(o) => {
                self.bytes -= field.len() + o.len() + FIELD_OVERHEAD;
                false
            }
            None => true,
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        let removed = match &mut self.repr {
            HashRepr::Small(v) => v
                .iter()
                .position(|(f, _)| f == field)
                .map(|i| v.remove(i).1),
            HashRepr::Large(m) => m.remove(field),
        };
        match removed {
            Some(o) => {
                self.bytes -= field.len() + o.len() + FIELD_OVERHEAD;
                true
            }
            None => false,
        }
    }

    pub fn iter(&self) -> Box<dyn Iterator<Item = (&Bytes, &Bytes)> + '_> {
        match &self.repr {
            HashRepr::Small(v) => Box::new(v.iter().map(|(f, v)| (f, v))),
            HashRepr::Large(m) => Box::new(m.iter()),
        }
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A stored value. Hashes are shared and mutated in place under the key's stripe lock.
#[derive(Debug, Clone)]
pub enum Value {
    Str(Bytes),
    Hash(Arc<Mutex<HashValue>>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
        }
    }

    pub fn new_hash(h: HashValue) -> Value {
        Value::Hash(Arc::new(Mutex::new(h)))
    }

    /// A deep copy (COPY, migration, replication snapshots must not share a hash).
    pub fn deep_clone(&self) -> Value {
        match self {
            Value::Str(b) => Value::Str(b.clone()),
            Value::Hash(h) => Value::new_hash(lock(h).clone()),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Value::Str(b) => b.len(),
            Value::Hash(h) => lock(h).bytes(),
        }
    }
}

/// Locks a mutex, recovering the data if a thread panicked while holding it (the data of a
/// cache entry stays usable; a panic is a bug we log, not a reason to take the node down).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One key's value and absolute deadline (ms since epoch), if any.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    pub expire_at: Option<i64>,
}

impl Entry {
    pub fn new(value: Value) -> Self {
        Entry {
            value,
            expire_at: None,
        }
    }

    pub fn is_expired(&self, now: i64) -> bool {
        matches!(self.expire_at, Some(t) if t <= now)
    }

    /// How long moka keeps the entry: past the deadline by a grace period, so a read still finds
    /// the entry, sees it expired and deletes it (lazy expiry, as Redis); moka reclaims the rest.
    fn ttl(&self) -> Option<Duration> {
        self.expire_at
            .map(|t| Duration::from_millis(t.saturating_sub(now_ms()).max(0) as u64) + EXPIRY_GRACE)
    }
}

struct Deadline;

impl Expiry<Bytes, Entry> for Deadline {
    fn expire_after_create(&self, _: &Bytes, v: &Entry, _: Instant) -> Option<Duration> {
        v.ttl()
    }

    fn expire_after_update(
        &self,
        _: &Bytes,
        v: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        v.ttl()
    }
}

/// See [`Entry::ttl`].
const EXPIRY_GRACE: Duration = Duration::from_secs(1);

/// Per-entry bookkeeping moka counts against `maxmemory` besides key and value bytes.
const ENTRY_OVERHEAD: usize = 64;
/// Stripes of write locks; a power of two well above the core count keeps contention negligible.
const STRIPES: usize = 4096;

/// Keyspace counters for INFO.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: std::sync::atomic::AtomicU64,
    pub misses: std::sync::atomic::AtomicU64,
    /// Keys deleted on access after their deadline.
    pub expired: std::sync::atomic::AtomicU64,
    /// Keys the cache dropped on its own: evicted for space, or expired without being read.
    pub evicted: std::sync::atomic::AtomicU64,
}

/// The keyspace of one node.
pub struct Store {
    /// Swapped whole when `maxmemory` changes (moka's capacity is fixed at build time).
    cache: ArcSwap<Cache<Bytes, Entry, KeyHash>>,
    stripes: Box<[Mutex<()>]>,
    /// Keys by hash bucket: a superset of the live keys (entries the cache dropped on its own are
    /// pruned by [`Store::sweep`]).
    buckets: Box<[Mutex<HashSet<Bytes, KeyHash>>]>,
    pub stats: Stats,
    /// Next bucket the sweeper prunes.
    sweep_cursor: AtomicUsize,
    maxmemory: AtomicU64,
}

/// Hasher for the cache and the bucket index: xxh3 over the key bytes (keys are hashed on every
/// command; SipHash's cost buys nothing here).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
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

type KeyHash = std::hash::BuildHasherDefault<KeyHasher>;

/// Keys the cache's table is sized for from the start (it grows past that as usual).
const INITIAL_KEYS: usize = 1 << 16;

fn build_cache(maxmemory: u64) -> Cache<Bytes, Entry, KeyHash> {
    // No eviction listener: with one, moka serialises every write through per-key locks (measured
    // ~6% of a SET). The sweeper prunes the index instead.
    Cache::builder()
        .weigher(|k: &Bytes, e: &Entry| {
            (k.len() + e.value.bytes() + ENTRY_OVERHEAD).min(u32::MAX as usize) as u32
        })
        .expire_after(Deadline)
        .max_capacity(if maxmemory == 0 { u64::MAX } else { maxmemory })
        // Sized for the first INITIAL_KEYS keys (~0.5 MiB of table): an empty node filling up
        // (a joining shard taking tens of thousands of keys at once) does not rehash its way
        // up from a few buckets; `rehash` was 7% of the machine's CPU during a join.
        .initial_capacity(INITIAL_KEYS)
        .build_with_hasher(KeyHash::default())
}

/// Guards of the stripes covering a set of keys; while held, no other writer touches those keys.
pub struct KeyLocks<'a> {
    _guards: Vec<MutexGuard<'a, ()>>,
}

impl Store {
    /// A store bounded to `maxmemory` bytes (0 = unbounded, as in Redis).
    pub fn new(maxmemory: u64) -> Store {
        Store {
            cache: ArcSwap::from_pointee(build_cache(maxmemory)),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            buckets: (0..BUCKETS)
                .map(|_| Mutex::new(HashSet::default()))
                .collect(),
            stats: Stats::default(),
            sweep_cursor: AtomicUsize::new(0),
            maxmemory: AtomicU64::new(maxmemory),
        }
    }

    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Changes the byte bound: a new cache with the new capacity takes every entry (writers are
    /// held off meanwhile), then replaces the old one. Rare and O(keys), like a Redis resize.
    pub fn set_maxmemory(&self, maxmemory: u64) {
        let _all: Vec<_> = self.stripes.iter().map(lock).collect();
        let next = build_cache(maxmemory);
        let now = now_ms();
        for (k, e) in self.cache.load().iter() {
            if !e.is_expired(now) {
                next.insert((*k).clone(), e);
            }
        }
        self.cache.store(Arc::new(next));
        self.maxmemory
            .store(maxmemory, std::sync::atomic::Ordering::Relaxed);
        self.cache.load().run_pending_tasks();
    }

    fn stripe(key: &[u8]) -> usize {
        (ringcache_protocol::hash::raw_hash(key) as usize) & (STRIPES - 1)
    }

    /// Locks the stripes of `keys` (sorted, so two multi-key commands never deadlock).
    pub fn lock_keys<'a, K: AsRef<[u8]>>(
        &'a self,
        keys: impl IntoIterator<Item = K>,
    ) -> KeyLocks<'a> {
        let mut idx: Vec<usize> = keys.into_iter().map(|k| Self::stripe(k.as_ref())).collect();
        idx.sort_unstable();
        idx.dedup();
        KeyLocks {
            _guards: idx.into_iter().map(|i| lock(&self.stripes[i])).collect(),
        }
    }

    /// Locks one key's stripe.
    pub fn lock_key(&self, key: &[u8]) -> MutexGuard<'_, ()> {
        lock(&self.stripes[Self::stripe(key)])
    }

    /// The live entry of a key (never an expired one).
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        let e = self.cache.load().get(key)?;
        // Only keys with a deadline pay for reading the clock.
        if e.expire_at.is_some() && e.is_expired(now_ms()) {
            self.expire_now(key);
            return None;
        }
        Some(e)
    }

    /// Deletes a key found expired, unless its stripe is busy (maybe held by this very command,
    /// which then decides itself); a later read or moka's timer removes it then.
    fn expire_now(&self, key: &[u8]) {
        let Ok(_g) = self.stripes[Self::stripe(key)].try_lock() else {
            return;
        };
        if let Some(cur) = self.cache.load().get(key) {
            if cur.is_expired(now_ms()) {
                self.cache.load().invalidate(key);
                lock(&self.buckets[bucket_of(key_hash(key))]).remove(key);
                self.stats
                    .expired
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Reads counting a keyspace hit or miss (GET-like commands).
    pub fn lookup(&self, key: &[u8]) -> Option<Entry> {
        use std::sync::atomic::Ordering::Relaxed;
        let e = self.get(key);
        if e.is_some() {
            self.stats.hits.fetch_add(1, Relaxed);
        } else {
            self.stats.misses.fetch_add(1, Relaxed);
        }
        e
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Stores an entry; the caller holds the key's stripe lock.
    pub fn put(&self, key: Bytes, entry: Entry) {
        if entry.expire_at.is_some() && entry.is_expired(now_ms()) {
            self.remove(&key);
            return;
        }
        let bucket = bucket_of(key_hash(&key));
        {
            let mut set = lock(&self.buckets[bucket]);
            if !set.contains(&key) {
                set.insert(key.clone());
            }
        }
        self.cache.load().insert(key, entry);
    }

    /// Stores a copy of client-supplied bytes (a request's buffer must not be pinned by the cache).
    pub fn put_str(&self, key: &[u8], value: &[u8], expire_at: Option<i64>) {
        self.put(
            Bytes::copy_from_slice(key),
            Entry {
                value: Value::Str(Bytes::copy_from_slice(value)),
                expire_at,
            },
        );
    }

    /// Re-inserts an entry whose hash was mutated in place, so moka re-weighs it.
    pub fn touch_entry(&self, key: &[u8], entry: Entry) {
        self.cache.load().insert(Bytes::copy_from_slice(key), entry);
    }

    /// Removes a key; true if it was live. The caller holds the key's stripe lock.
    pub fn remove(&self, key: &[u8]) -> bool {
        let live = match self.cache.load().remove(key) {
            Some(e) => !e.is_expired(now_ms()),
            None => false,
        };
        lock(&self.buckets[bucket_of(key_hash(key))]).remove(key);
        live
    }

    /// Live key count (exact: pending evictions and expiries are applied first).
    pub fn len(&self) -> u64 {
        self.cache.load().run_pending_tasks();
        self.cache.load().entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes held (what `maxmemory` bounds).
    pub fn used_bytes(&self) -> u64 {
        self.cache.load().weighted_size()
    }

    /// Removes every key.
    pub fn clear(&self) {
        self.clear_then(|| {});
    }

    /// Removes every key, then runs `also` while every stripe is still locked (FLUSHALL queues
    /// itself for replicas there, so no write can slip between the flush and its propagation).
    pub fn clear_then(&self, also: impl FnOnce()) {
        let _all: Vec<_> = self.stripes.iter().map(lock).collect();
        self.cache.load().invalidate_all();
        for b in self.buckets.iter() {
            lock(b).clear();
        }
        self.cache.load().run_pending_tasks();
        also();
    }

    /// Keys of one index bucket that are live now.
    pub fn bucket_keys(&self, bucket: usize) -> Vec<Bytes> {
        let keys: Vec<Bytes> = match self.buckets.get(bucket) {
            Some(b) => lock(b).iter().cloned().collect(),
            None => return Vec::new(),
        };
        keys.into_iter().filter(|k| self.contains(k)).collect()
    }

    /// Number of keys (live or not yet pruned) in one bucket; cheap.
    pub fn bucket_len(&self, bucket: usize) -> usize {
        self.buckets.get(bucket).map(|b| lock(b).len()).unwrap_or(0)
    }

    /// Prunes `buckets` index buckets of keys the cache no longer holds (expired unread, or
    /// evicted), resuming where the last call stopped; called periodically.
    pub fn sweep(&self, buckets: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let cache = self.cache.load();
        cache.run_pending_tasks();
        let start = self.sweep_cursor.fetch_add(buckets, Relaxed);
        for b in start..start + buckets {
            let bucket = &self.buckets[b % BUCKETS];
            let candidates: Vec<Bytes> = lock(bucket)
                .iter()
                .filter(|k| !cache.contains_key(*k))
                .cloned()
                .collect();
            for key in candidates {
                // Under the key's stripe no writer can be re-inserting it meanwhile.
                let _g = self.lock_key(&key);
                if !cache.contains_key(&key) && lock(bucket).remove(&key) {
                    self.stats.evicted.fetch_add(1, Relaxed);
                }
            }
        }
    }

    /// Counts live keys and keys with a deadline (INFO keyspace).
    pub fn keyspace_counts(&self) -> (u64, u64) {
        self.cache.load().run_pending_tasks();
        let now = now_ms();
        let mut keys = 0;
        let mut expires = 0;
        for (_, e) in self.cache.load().iter() {
            if e.is_expired(now) {
                continue;
            }
            keys += 1;
            if e.expire_at.is_some() {
                expires += 1;
            }
        }
        (keys, expires)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn put_get_expire_remove() {
        let s = Store::new(0);
        s.put_str(b"a", b"1", None);
        assert!(matches!(s.get(b"a").unwrap().value, Value::Str(ref v) if &v[..] == b"1"));
        s.put_str(b"b", b"2", Some(now_ms() - 1));
        assert!(s.get(b"b").is_none());
        s.put_str(b"c", b"3", Some(now_ms() + 60_000));
        assert_eq!(s.len(), 2);
        let bucket = bucket_of(key_hash(b"c"));
        assert!(s.bucket_keys(bucket).iter().any(|k| &k[..] == b"c"));
        assert!(s.remove(b"c"));
        assert!(!s.remove(b"c"));
        assert!(s.bucket_keys(bucket).iter().all(|k| &k[..] != b"c"));
    }

    #[test]
    fn maxmemory_bounds_the_cache() {
        let s = Store::new(1 << 20);
        let v = vec![b'x'; 1000];
        for i in 0..10_000u32 {
            s.put_str(format!("k{i}").as_bytes(), &v, None);
        }
        s.sweep(BUCKETS);
        assert!(s.used_bytes() <= 1 << 20, "used {}", s.used_bytes());
        assert!(s.len() < 10_000);
    }

    #[test]
    fn small_hash_keeps_order_then_converts() {
        let mut h = HashValue::default();
        assert!(h.set(Bytes::from_static(b"b"), Bytes::from_static(b"1")));
        assert!(h.set(Bytes::from_static(b"a"), Bytes::from_static(b"2")));
        assert!(!h.set(Bytes::from_static(b"b"), Bytes::from_static(b"3")));
        let order: Vec<_> = h.iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(
            order,
            vec![Bytes::from_static(b"b"), Bytes::from_static(b"a")]
        );
        for i in 0..200 {
            h.set(Bytes::from(format!("f{i}")), Bytes::from_static(b"v"));
        }
        assert!(matches!(h.repr, HashRepr::Large(_)));
        assert_eq!(h.len(), 202);
        assert_eq!(
            h.bytes(),
            h.iter()
                .map(|(f, v)| f.len() + v.len() + FIELD_OVERHEAD)
                .sum::<usize>()
        );
    }
}
