//! The keyspace of one node: [`BUCKETS`] hash tables, one per ring hash bucket, each behind its
//! own lock.
//!
//! A key's bucket is the top bits of its ring hash (`{tag}` rule included), so the keys of one
//! ring arc are the keys of a run of buckets: migration, SCAN and KEYS walk buckets, and no
//! second index of keys exists. A command locks the buckets of its keys (in order, so two
//! commands never deadlock) for its whole run, which makes every command atomic on its keys;
//! a transaction locks the buckets of all its commands' keys.
//!
//! Commands reach the keyspace only through a [`Db`], which records what they change (see
//! [`db::Effects`]) for replication, WATCH and blocked clients.

pub mod db;
pub mod entry;
pub mod evict;
mod expire;
mod rss_guard;

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use arc_swap::ArcSwap;
use hashbrown::HashTable;
use ringcache_protocol::hash::{bucket_of, hash_tag, BUCKETS};
use xxhash_rust::xxh3::xxh3_64;

use crate::types::Limits;

pub use db::{Db, Effects, Expiry, Note, WrongType, WRONGTYPE};
pub use entry::{Entry, ValueRef};
pub use evict::{Eviction, Policy};

/// Milliseconds since the Unix epoch (Redis keeps absolute deadlines in this unit).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The LRU clock kept in an entry's access field: seconds, 24 bits, wrapping (as Redis's).
pub fn lru_clock(now_ms: i64) -> u32 {
    ((now_ms / 1000) as u32) & 0xFF_FFFF
}

/// Locks a mutex, recovering the data if a thread panicked while holding it (a panic is a bug
/// we log, not a reason to take the node down).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Most keys [`Keyspace::warm`] takes at once.
pub const WARM_MAX: usize = 32;

#[derive(Clone, Copy)]
enum Warm {
    Control,
    Slot,
    Entry,
}

/// Where a key lives: its bucket and its hash inside the bucket's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub bucket: usize,
    hash: u64,
}

impl Place {
    pub fn of(key: &[u8]) -> Place {
        let tag = hash_tag(key);
        let ring = xxh3_64(tag);
        // Keys of one tag share a bucket: inside it they need a hash of their own.
        let own = if tag.len() == key.len() {
            ring
        } else {
            xxh3_64(key)
        };
        Place {
            bucket: bucket_of(ring),
            // The table's control bytes come from the top bits, which the bucket fixes: mix
            // the low bits up into them.
            hash: own.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        }
    }
}

fn rehash(e: &Entry) -> u64 {
    Place::of(e.key()).hash
}

/// One bucket's keys.
#[derive(Debug, Default)]
pub struct Bucket {
    table: HashTable<Entry>,
    /// Keys of this bucket that have a deadline (active expiry skips buckets with none).
    volatile: u32,
}

impl Bucket {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn volatile(&self) -> u32 {
        self.volatile
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.table.iter()
    }

    /// One step of looking `key` up, for [`Keyspace::warm`]: the loads, nothing else.
    fn warm(&self, p: Place, key: &[u8], step: Warm) {
        let found = match step {
            Warm::Control => self.table.find(p.hash, |_| false).is_some(),
            Warm::Slot => self
                .table
                .find(p.hash, |e| std::hint::black_box(e.slot_word()) == 0)
                .is_some(),
            Warm::Entry => self.find(p, key).is_some(),
        };
        std::hint::black_box(found);
    }

    fn find(&self, p: Place, key: &[u8]) -> Option<&Entry> {
        self.table.find(p.hash, |e| e.key() == key)
    }

    fn find_mut(&mut self, p: Place, key: &[u8]) -> Option<&mut Entry> {
        self.table.find_mut(p.hash, |e| e.key() == key)
    }

    /// Inserts or replaces; the replaced entry.
    fn put(&mut self, p: Place, entry: Entry) -> Option<Entry> {
        let key_deadline = entry.deadline().is_some();
        match self.table.entry(p.hash, |e| e.key() == entry.key(), rehash) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let old = std::mem::replace(o.get_mut(), entry);
                if old.deadline().is_some() {
                    self.volatile -= 1;
                }
                if key_deadline {
                    self.volatile += 1;
                }
                Some(old)
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(entry);
                if key_deadline {
                    self.volatile += 1;
                }
                None
            }
        }
    }

    fn take(&mut self, p: Place, key: &[u8]) -> Option<Entry> {
        let (e, _) = self
            .table
            .find_entry(p.hash, |e| e.key() == key)
            .ok()?
            .remove();
        if e.deadline().is_some() {
            self.volatile -= 1;
        }
        Some(e)
    }

    /// Moves the table to a fresh allocation of its size, made by the calling thread (see
    /// `rss_guard`): sizing stays `maybe_shrink`'s and growth's business.
    fn relocate(&mut self) {
        let slots = self.slots();
        if slots == 0 {
            return;
        }
        // The capacity hashbrown gives a table of `slots` (7/8 of them; one less when small).
        let capacity = if slots < 8 { slots - 1 } else { slots / 8 * 7 };
        let mut fresh = HashTable::with_capacity(capacity.max(self.table.len()));
        for e in self.table.drain() {
            fresh.insert_unique(rehash(&e), e, rehash);
        }
        self.table = fresh;
    }

    /// The slots allocated (`capacity()` shrinks with tombstones, not with the allocation):
    /// each takes an entry and a control byte, besides one group of control bytes.
    fn slots(&self) -> usize {
        self.table.allocation_size() / (std::mem::size_of::<Entry>() + 1)
    }

    /// Shrinks the table to the smallest that holds its keys once they fit in half its slots
    /// with an eighth of that half (at least two keys) to spare. Small tables too: under a full
    /// `maxmemory` a bucket holds ~10 keys whose count wanders by a few, and a table left at the
    /// largest size they briefly reached (twice the memory for the same keys) would, bucket after
    /// bucket, turn the memory of evicted keys into table slots, while the keys' freed blocks
    /// stay resident as holes no table fits. The margin keeps a bucket at a size boundary from
    /// reallocating on every write.
    fn maybe_shrink(&mut self) {
        let slots = self.slots();
        // hashbrown fills a table to 7/8 of its slots.
        let half_room = slots / 2 * 7 / 8;
        if slots > 8 && self.table.len() + (half_room / 8).max(2) <= half_room {
            self.table.shrink_to(self.table.len(), rehash);
        }
    }
}

/// Keyspace counters for INFO.
#[derive(Debug, Default)]
pub struct KeyspaceStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Keys deleted because their deadline passed (on access or by active expiry).
    pub expired: AtomicU64,
    /// Keys deleted to stay under `maxmemory`.
    pub evicted: AtomicU64,
    /// Changes made to the keyspace (Redis's `dirty`: INFO's rdb_changes_since_last_save).
    pub dirty: AtomicU64,
}

pub struct Keyspace {
    buckets: Box<[Mutex<Bucket>]>,
    pub stats: KeyspaceStats,
    keys: AtomicI64,
    volatile: AtomicI64,
    /// Registrations that want to hear of changed keys (WATCH, blocked clients): writers record
    /// the keys they touch only while this is non-zero.
    interest: AtomicUsize,
    /// Keyspace notifications are on: writers also record how they changed each key (they hold
    /// an interest meanwhile, so this is read only where interest is).
    notes: std::sync::atomic::AtomicBool,
    /// Where active expiry resumes.
    expire_cursor: AtomicUsize,
    /// Encoding thresholds (CONFIG SET hash-max-listpack-entries, ...).
    limits: ArcSwap<Limits>,
    /// Bytes held by entries (see `Entry::mem_usage`): what `maxmemory` bounds.
    used: AtomicI64,
    eviction: evict::AtomicEviction,
    /// The best eviction candidates seen so far, kept between evictions as Redis keeps them.
    evict_pool: Mutex<evict::Pool>,
    /// Memory held back from keys while the heap's pages outgrow `maxmemory`.
    rss_guard: rss_guard::RssGuard,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace::new()
    }
}

impl Keyspace {
    pub fn new() -> Keyspace {
        Keyspace {
            buckets: (0..BUCKETS)
                .map(|_| Mutex::new(Bucket::default()))
                .collect(),
            stats: KeyspaceStats::default(),
            keys: AtomicI64::new(0),
            volatile: AtomicI64::new(0),
            interest: AtomicUsize::new(0),
            notes: std::sync::atomic::AtomicBool::new(false),
            expire_cursor: AtomicUsize::new(0),
            limits: ArcSwap::from_pointee(Limits::default()),
            used: AtomicI64::new(0),
            eviction: evict::AtomicEviction::new(Eviction::default()),
            evict_pool: Mutex::new(evict::Pool::default()),
            rss_guard: rss_guard::RssGuard::default(),
        }
    }

    /// Counts `delta` bytes more (or less) held by entries changed in place.
    pub fn account(&self, delta: i64) {
        if delta != 0 {
            self.used.fetch_add(delta, Relaxed);
        }
    }

    pub fn limits(&self) -> Limits {
        **self.limits.load()
    }

    /// Pulls the entries of `keys` (a pipeline's) into cache before their commands run, one
    /// step of the lookup at a time for all of them, so the misses of a step overlap instead of
    /// each lookup waiting on four in a row: the buckets' locks, the tables' control bytes, the
    /// slots, the entries. A bucket that is busy is skipped.
    pub fn warm(&self, keys: &[&[u8]]) {
        let mut places = [Place { bucket: 0, hash: 0 }; WARM_MAX];
        let n = keys.len().min(WARM_MAX);
        for (p, k) in places.iter_mut().zip(keys) {
            *p = Place::of(k);
            // A real load of the lock's line (safe code has no prefetch instruction); its
            // value is unused, so the loads are in flight at once.
            std::hint::black_box(self.buckets[p.bucket].is_poisoned());
        }
        // Each lock taken once, before the loads: a locked instruction waits for every load
        // before it, so locking between them took the misses one at a time. A bucket already
        // held here (two keys of one bucket) or busy elsewhere is skipped.
        let held: [Option<MutexGuard<'_, Bucket>>; WARM_MAX] =
            std::array::from_fn(|i| match places[..n].get(i) {
                Some(p) => self.buckets[p.bucket].try_lock().ok(),
                None => None,
            });
        for step in [Warm::Control, Warm::Slot, Warm::Entry] {
            for ((&p, k), bucket) in places[..n].iter().zip(keys).zip(&held) {
                if let Some(bucket) = bucket {
                    bucket.warm(p, k, step);
                }
            }
        }
    }

    pub fn set_limits(&self, limits: Limits) {
        self.limits.store(std::sync::Arc::new(limits));
    }

    /// Live and not yet reclaimed keys.
    pub fn len(&self) -> u64 {
        self.keys.load(Relaxed).max(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys with a deadline.
    pub fn volatile(&self) -> u64 {
        self.volatile.load(Relaxed).max(0) as u64
    }

    pub fn lock_bucket(&self, b: usize) -> MutexGuard<'_, Bucket> {
        lock(&self.buckets[b])
    }

    /// Counts `interest` up (a WATCH or a blocked client registered, under its keys' locks).
    pub fn add_interest(&self) {
        self.interest
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn remove_interest(&self) {
        self.interest
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn has_interest(&self) -> bool {
        self.interest.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// Turns the recording of [`Note`]s on or off (keyspace notifications), with an interest
    /// held while on.
    pub fn set_notes(&self, on: bool) {
        let was = self.notes.swap(on, std::sync::atomic::Ordering::SeqCst);
        match (was, on) {
            (false, true) => self.add_interest(),
            (true, false) => self.remove_interest(),
            _ => {}
        }
    }

    pub(crate) fn notes_on(&self) -> bool {
        self.notes.load(Relaxed)
    }

    fn counted_put(&self, bucket: &mut Bucket, p: Place, entry: Entry) -> Option<Entry> {
        let new_volatile = entry.deadline().is_some();
        let mut delta = entry.mem_usage() as i64;
        let old = bucket.put(p, entry);
        if let Some(o) = &old {
            delta -= o.mem_usage() as i64;
        }
        self.account(delta);
        match &old {
            None => {
                self.keys.fetch_add(1, Relaxed);
            }
            Some(o) if o.deadline().is_some() => {
                self.volatile.fetch_sub(1, Relaxed);
            }
            Some(_) => {}
        }
        if new_volatile {
            self.volatile.fetch_add(1, Relaxed);
        }
        old
    }

    fn counted_take(&self, bucket: &mut Bucket, p: Place, key: &[u8]) -> Option<Entry> {
        let e = bucket.take(p, key)?;
        self.keys.fetch_sub(1, Relaxed);
        self.account(-(e.mem_usage() as i64));
        if e.deadline().is_some() {
            self.volatile.fetch_sub(1, Relaxed);
        }
        Some(e)
    }

    /// Removes every key.
    pub fn clear(&self) {
        for b in self.buckets.iter() {
            self.clear_bucket(&mut lock(b));
        }
    }

    /// Removes every key of a bucket the caller holds.
    pub fn clear_bucket(&self, b: &mut Bucket) {
        let n = b.table.len() as i64;
        let v = i64::from(b.volatile);
        let bytes: usize = b.table.iter().map(Entry::mem_usage).sum();
        self.account(-(bytes as i64));
        *b = Bucket::default();
        self.keys.fetch_sub(n, Relaxed);
        self.volatile.fetch_sub(v, Relaxed);
    }

    /// Calls `f` with each bucket of `range` in turn, locked.
    pub fn for_buckets(&self, range: std::ops::Range<usize>, mut f: impl FnMut(usize, &Bucket)) {
        for b in range.start..range.end.min(BUCKETS) {
            f(b, &lock(&self.buckets[b]));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_small_table_shrinks_back_once_its_keys_leave() {
        let mut b = Bucket::default();
        let keys: Vec<Vec<u8>> = (0..28).map(|i| format!("key:{i}").into_bytes()).collect();
        for k in &keys {
            b.put(Place::of(k), Entry::string(k, b"v", None));
        }
        let grown = b.table.capacity();
        assert!(grown >= 28);
        // Down to a quarter: back to the smallest table with room for the keys left, not the
        // largest it was.
        for k in &keys[7..] {
            assert!(b.take(Place::of(k), k).is_some());
            b.maybe_shrink();
        }
        assert_eq!(b.len(), 7);
        assert!(
            b.table.capacity() <= grown / 2,
            "capacity {}",
            b.table.capacity()
        );
        assert!(
            b.table.capacity() >= 14,
            "capacity {} of {grown}",
            b.table.capacity()
        );
        for k in &keys[..7] {
            assert!(b.find(Place::of(k), k).is_some());
        }
    }

    #[test]
    fn a_relocated_table_keeps_its_keys_and_its_size() {
        let mut b = Bucket::default();
        let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("key:{i}").into_bytes()).collect();
        for k in &keys {
            b.put(Place::of(k), Entry::string(k, k, None));
        }
        for k in &keys[10..] {
            assert!(b.take(Place::of(k), k).is_some());
        }
        let slots = b.slots();
        b.relocate();
        assert_eq!(b.len(), 10);
        assert_eq!(b.slots(), slots);
        for k in &keys[..10] {
            assert_eq!(b.find(Place::of(k), k).map(|e| e.key()), Some(&k[..]));
        }
        assert!(b.find(Place::of(&keys[10]), &keys[10]).is_none());
    }

    #[test]
    fn tagged_keys_share_a_bucket_but_not_a_hash() {
        let a = Place::of(b"{user1}.name");
        let b = Place::of(b"{user1}.mail");
        assert_eq!(a.bucket, b.bucket);
        assert_ne!(a.hash, b.hash);
        assert_eq!(
            Place::of(b"user1").bucket,
            bucket_of(ringcache_protocol::hash::key_hash(b"user1"))
        );
    }

    #[test]
    fn bucket_put_take_counts_deadlines() {
        let ks = Keyspace::new();
        let p = Place::of(b"k");
        let mut b = ks.lock_bucket(p.bucket);
        assert!(ks
            .counted_put(&mut b, p, Entry::string(b"k", b"1", Some(10)))
            .is_none());
        assert_eq!((b.volatile, ks.len(), ks.volatile()), (1, 1, 1));
        let old = ks.counted_put(&mut b, p, Entry::string(b"k", b"2", None));
        assert_eq!(old.unwrap().str(), Some(&b"1"[..]));
        assert_eq!((b.volatile, ks.len(), ks.volatile()), (0, 1, 0));
        assert_eq!(b.find(p, b"k").unwrap().str(), Some(&b"2"[..]));
        assert!(ks.counted_take(&mut b, p, b"k").is_some());
        assert_eq!(ks.len(), 0);
        assert!(b.find(p, b"k").is_none());
    }
}
