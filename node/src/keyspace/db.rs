//! [`Db`]: a command's view of the keyspace, holding the locks of the buckets its keys live in,
//! and the door every change goes through.
//!
//! What a command changes is recorded in [`Effects`]: how many changes it made (nothing changed:
//! nothing to propagate), the keys it touched (for WATCH and blocked clients, collected only while
//! someone listens), what to propagate instead of the command when the command itself would
//! not replay the same (relative deadlines, random pops), and what to propagate before it (keys
//! found expired). The dispatcher hands them on after the command; no command propagates by
//! itself.

use std::sync::MutexGuard;

use bytes::Bytes;

use super::evict::{new_access, touched_access, Eviction};
use super::{lock, Bucket, Entry, Keyspace, Place};
use crate::types::{Kind, Limits, Value};

/// How keys past their deadline are treated (Redis: a replica never deletes them itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A primary: an expired key is deleted when met, and the delete propagated.
    Delete,
    /// A replica serving a client: an expired key reads as missing but stays.
    Hide,
    /// A replica applying its primary's stream: keys exist until the primary deletes them.
    Keep,
}

/// What a command changed.
#[derive(Debug, Default)]
pub struct Effects {
    /// Changes made (Redis's `dirty`): a write command that made none is not propagated.
    pub dirty: u64,
    /// Keys changed, in order, while [`Keyspace::has_interest`].
    pub touched: Vec<Bytes>,
    /// Propagate these commands instead of the command as received.
    pub rewrite: Option<Vec<Vec<Bytes>>>,
    /// Propagate these first (deletes of keys found expired).
    pub before: Vec<Vec<Bytes>>,
    /// How each key changed, in order, while keyspace notifications are on.
    pub notes: Vec<(Bytes, Note)>,
}

/// How a command changed a key (what keyspace notifications name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    Changed,
    /// Created (before its `Changed`).
    New,
    /// Deleted by the command.
    Removed,
    /// Found past its deadline and deleted.
    Expired,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.dirty == 0 && self.before.is_empty() && self.rewrite.is_none()
    }
}

enum Held<'a> {
    None,
    One(usize, MutexGuard<'a, Bucket>),
    /// Sorted by bucket.
    Many(Vec<(usize, MutexGuard<'a, Bucket>)>),
    All(Vec<MutexGuard<'a, Bucket>>),
}

/// A type error, answered as Redis's WRONGTYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongType;

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

impl From<WrongType> for ringcache_protocol::Reply {
    fn from(_: WrongType) -> Self {
        ringcache_protocol::Reply::error(WRONGTYPE)
    }
}

pub struct Db<'a> {
    ks: &'a Keyspace,
    held: Held<'a>,
    /// The command's clock: every deadline check of one command (or transaction) uses it.
    pub now: i64,
    pub expiry: Expiry,
    pub eviction: Eviction,
    pub effects: Effects,
    /// The first key's place, found when its bucket was locked: most commands have one key,
    /// and hashing it again for its lookup cost ~100 instructions (a copy of a short key
    /// tells it apart from any other key the command touches).
    first: Option<FirstKey>,
}

/// Keys up to this long have their place remembered by [`Db::for_keys`].
const FIRST_KEY_MAX: usize = 24;

#[derive(Clone, Copy)]
struct FirstKey {
    key: [u8; FIRST_KEY_MAX],
    len: u8,
    place: Place,
}

impl FirstKey {
    fn of(key: &[u8], place: Place) -> Option<FirstKey> {
        (key.len() <= FIRST_KEY_MAX).then(|| {
            let mut k = [0u8; FIRST_KEY_MAX];
            k[..key.len()].copy_from_slice(key);
            FirstKey {
                key: k,
                len: key.len() as u8,
                place,
            }
        })
    }
}

impl<'a> Db<'a> {
    fn new(ks: &'a Keyspace, held: Held<'a>, now: i64, expiry: Expiry) -> Db<'a> {
        Db {
            ks,
            held,
            now,
            expiry,
            eviction: ks.eviction(),
            effects: Effects::default(),
            first: None,
        }
    }

    /// Where `key` lives: remembered for the command's first key, else hashed.
    #[inline]
    fn place(&self, key: &[u8]) -> Place {
        match &self.first {
            Some(f) if key == &f.key[..usize::from(f.len)] => f.place,
            _ => Place::of(key),
        }
    }

    /// A view holding no lock (commands without keys; keyspace-wide ones lock bucket by bucket).
    pub fn unlocked(ks: &'a Keyspace, now: i64, expiry: Expiry) -> Db<'a> {
        Db::new(ks, Held::None, now, expiry)
    }

    /// A view holding the buckets of `keys`.
    pub fn for_keys<K: AsRef<[u8]>>(
        ks: &'a Keyspace,
        keys: impl IntoIterator<Item = K>,
        now: i64,
        expiry: Expiry,
    ) -> Db<'a> {
        let mut keys = keys.into_iter();
        let Some(k0) = keys.next() else {
            return Db::new(ks, Held::None, now, expiry);
        };
        let p0 = Place::of(k0.as_ref());
        let first = FirstKey::of(k0.as_ref(), p0);
        // One key (most commands): no list of buckets to build.
        let Some(k1) = keys.next() else {
            let mut db = Db::new(
                ks,
                Held::One(p0.bucket, lock(&ks.buckets[p0.bucket])),
                now,
                expiry,
            );
            db.first = first;
            return db;
        };
        let mut buckets = vec![p0.bucket, Place::of(k1.as_ref()).bucket];
        buckets.extend(keys.map(|k| Place::of(k.as_ref()).bucket));
        // One order for every command: two commands never wait on each other in a cycle.
        buckets.sort_unstable();
        buckets.dedup();
        let held = if buckets.len() == 1 {
            Held::One(buckets[0], lock(&ks.buckets[buckets[0]]))
        } else {
            Held::Many(
                buckets
                    .into_iter()
                    .map(|b| (b, lock(&ks.buckets[b])))
                    .collect(),
            )
        };
        let mut db = Db::new(ks, held, now, expiry);
        db.first = first;
        db
    }

    /// Adds the bucket of `key` to the buckets this view holds without waiting (a script
    /// touching a key it did not declare): false if another command holds it now. Never a
    /// blocking lock: this view already holds buckets out of order with that one.
    pub fn try_add_key(&mut self, key: &[u8]) -> bool {
        let b = Place::of(key).bucket;
        if self.bucket_ref(b).is_some() || matches!(self.held, Held::All(_)) {
            return true;
        }
        let guard = match self.ks.buckets[b].try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        self.held = match std::mem::replace(&mut self.held, Held::None) {
            Held::None => Held::One(b, guard),
            Held::One(i, g) => {
                let mut v = vec![(i, g), (b, guard)];
                v.sort_unstable_by_key(|(i, _)| *i);
                Held::Many(v)
            }
            Held::Many(mut v) => {
                let at = v.partition_point(|(i, _)| *i < b);
                v.insert(at, (b, guard));
                Held::Many(v)
            }
            all @ Held::All(_) => all,
        };
        true
    }

    /// Takes every bucket this view does not hold yet, without waiting (a script running a
    /// command over the whole keyspace): false, holding what it held before, if another command
    /// holds one of them.
    pub fn try_add_all(&mut self) -> bool {
        let before = self.held_buckets();
        let n = self.ks.buckets.len();
        if before.len() == n {
            return true;
        }
        let mut held: Vec<Option<MutexGuard<'a, Bucket>>> = (0..n).map(|_| None).collect();
        match std::mem::replace(&mut self.held, Held::None) {
            Held::One(b, g) => held[b] = Some(g),
            Held::Many(v) => v.into_iter().for_each(|(b, g)| held[b] = Some(g)),
            Held::None | Held::All(_) => {}
        }
        let ks = self.ks;
        let mut complete = true;
        for (b, slot) in held.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            match ks.buckets[b].try_lock() {
                Ok(g) => *slot = Some(g),
                Err(std::sync::TryLockError::Poisoned(e)) => *slot = Some(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {
                    complete = false;
                    break;
                }
            }
        }
        if complete {
            self.held = Held::All(held.into_iter().flatten().collect());
            return true;
        }
        // Give back what this call took; keep what the view held.
        let kept: Vec<(usize, MutexGuard<'a, Bucket>)> = held
            .into_iter()
            .enumerate()
            .filter(|(b, _)| before.binary_search(b).is_ok())
            .filter_map(|(b, g)| g.map(|g| (b, g)))
            .collect();
        self.held = match kept.len() {
            0 => Held::None,
            1 => {
                let mut kept = kept;
                match kept.pop() {
                    Some((b, g)) => Held::One(b, g),
                    None => Held::None,
                }
            }
            _ => Held::Many(kept),
        };
        false
    }

    /// A view holding every bucket (a transaction with a keyspace-wide command).
    pub fn all(ks: &'a Keyspace, now: i64, expiry: Expiry) -> Db<'a> {
        Db::new(
            ks,
            Held::All(ks.buckets.iter().map(lock).collect()),
            now,
            expiry,
        )
    }

    pub fn keyspace(&self) -> &'a Keyspace {
        self.ks
    }

    /// Encoding thresholds, read when a command needs them (most never do).
    pub fn limits(&self) -> Limits {
        self.ks.limits()
    }

    /// The buckets this view holds, in order (replication orders writes by them).
    pub fn held_buckets(&self) -> Vec<usize> {
        match &self.held {
            Held::None => Vec::new(),
            Held::One(b, _) => vec![*b],
            Held::Many(v) => v.iter().map(|(b, _)| *b).collect(),
            Held::All(v) => (0..v.len()).collect(),
        }
    }

    pub fn holds_all(&self) -> bool {
        matches!(self.held, Held::All(_))
    }

    fn bucket(&mut self, b: usize) -> Option<&mut Bucket> {
        match &mut self.held {
            Held::One(i, g) if *i == b => Some(g),
            Held::Many(v) => v
                .binary_search_by_key(&b, |(i, _)| *i)
                .ok()
                .map(|at| &mut *v[at].1),
            Held::All(v) => v.get_mut(b).map(|g| &mut **g),
            _ => None,
        }
    }

    /// The bucket of `p`, which the view must hold: a command touching a key outside its key
    /// positions is a bug, logged and treated as a missing key.
    fn slot(&mut self, p: Place, key: &[u8]) -> Option<&mut Bucket> {
        let held = self.bucket(p.bucket);
        if held.is_none() {
            tracing::error!(
                key = %String::from_utf8_lossy(key),
                "bug: a command touched a key whose bucket it does not hold"
            );
        }
        held
    }

    /// Records a change of `key` (WATCH, blocked clients, propagation).
    #[inline]
    pub fn touched(&mut self, key: &[u8]) {
        self.touched_as(key, Note::Changed);
    }

    #[inline]
    fn touched_as(&mut self, key: &[u8], note: Note) {
        self.effects.dirty += 1;
        self.ks
            .stats
            .dirty
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.ks.has_interest() {
            let key = Bytes::copy_from_slice(key);
            self.note(&key, note);
            self.effects.touched.push(key);
        }
    }

    /// Records how `key` changed, while keyspace notifications are on (callers hold interest).
    fn note(&mut self, key: &Bytes, note: Note) {
        if self.ks.notes_on() {
            self.effects.notes.push((key.clone(), note));
        }
    }

    /// Propagate `cmds` instead of the command (relative deadlines made absolute, random
    /// choices made explicit). Several calls add up.
    pub fn propagate_as(&mut self, cmd: Vec<Bytes>) {
        self.effects.rewrite.get_or_insert_with(Vec::new).push(cmd);
    }

    /// Propagate nothing for this command even though it changed something (its changes were
    /// propagated another way).
    pub fn propagate_nothing(&mut self) {
        self.effects.rewrite.get_or_insert_with(Vec::new);
    }

    /// The entry of `key` if it is live, deleting it if its deadline passed (on a primary).
    fn live(&mut self, key: &[u8]) -> Option<(&mut Bucket, Place)> {
        let p = self.place(key);
        let (now, expiry) = (self.now, self.expiry);
        let bucket = self.slot(p, key)?;
        let expired = match bucket.find(p, key) {
            None => return None,
            Some(e) => expiry != Expiry::Keep && e.is_expired(now),
        };
        if !expired {
            return Some((self.bucket(p.bucket)?, p));
        }
        if expiry == Expiry::Delete {
            let ks = self.ks;
            let bucket = self.bucket(p.bucket)?;
            ks.counted_take(bucket, p, key);
            ks.stats
                .expired
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.effects.before.push(vec![
                Bytes::from_static(b"DEL"),
                Bytes::copy_from_slice(key),
            ]);
            if self.ks.has_interest() {
                let key = Bytes::copy_from_slice(key);
                self.note(&key, Note::Expired);
                self.effects.touched.push(key);
            }
        }
        None
    }

    /// The live entry of `key`, marking it accessed.
    pub fn get(&mut self, key: &[u8]) -> Option<&Entry> {
        self.get_mut(key).map(|e| &*e)
    }

    /// The live entry of `key` to change in place; call [`Db::touched`] once changed.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let (now, ev) = (self.now, self.eviction);
        let (bucket, p) = self.live(key)?;
        let e = bucket.find_mut(p, key)?;
        e.set_access(touched_access(e.access(), now, &ev));
        Some(e)
    }

    /// The live entry of `key` without marking it accessed (TYPE, OBJECT, TTL).
    pub fn peek(&mut self, key: &[u8]) -> Option<&Entry> {
        let (bucket, p) = self.live(key)?;
        bucket.find(p, key)
    }

    pub fn exists(&mut self, key: &[u8]) -> bool {
        self.live(key).is_some()
    }

    /// Reads counting a keyspace hit or miss (what INFO's keyspace_hits counts).
    pub fn lookup(&mut self, key: &[u8]) -> Option<&Entry> {
        use std::sync::atomic::Ordering::Relaxed;
        let hit = self.exists(key);
        let stats = &self.ks.stats;
        if hit {
            stats.hits.fetch_add(1, Relaxed);
        } else {
            stats.misses.fetch_add(1, Relaxed);
        }
        if hit {
            self.get(key)
        } else {
            None
        }
    }

    /// Stores `entry` (replacing any value of its key); the replaced entry.
    pub fn insert(&mut self, mut entry: Entry) -> Option<Entry> {
        let key = Bytes::copy_from_slice(entry.key());
        let p = self.place(&key);
        // A replaced key that had expired counts as missing to the caller.
        let old_access = self.peek(&key).map(Entry::access);
        let live_old = old_access.is_some();
        // Overwriting is an access: the key keeps its LFU counter, as Redis's overwrite does
        // (a hot key rewritten must not look new to the eviction policy).
        entry.set_access(match old_access {
            Some(a) => touched_access(a, self.now, &self.eviction),
            None => new_access(self.now, &self.eviction),
        });
        let ks = self.ks;
        let bucket = self.slot(p, &key)?;
        let old = ks.counted_put(bucket, p, entry);
        if !live_old && self.ks.has_interest() {
            self.note(&key, Note::New);
        }
        self.touched(&key);
        old.filter(|_| live_old)
    }

    /// Stores a string value with a deadline.
    pub fn set_str(&mut self, key: &[u8], value: &[u8], deadline: Option<i64>) -> Option<Entry> {
        self.insert(Entry::string(key, value, deadline))
    }

    /// Stores the string `value` at `key` as a raw string (see `Entry::mark_raw`).
    pub fn set_raw_str(&mut self, key: &[u8], value: &[u8], deadline: Option<i64>) {
        self.set_str(key, value, deadline);
        if let Some(e) = self.get_mut(key) {
            e.mark_raw();
        }
    }

    /// Deletes `key`; the entry if it was live.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let p = self.place(key);
        self.live(key)?;
        let ks = self.ks;
        let bucket = self.slot(p, key)?;
        let e = ks.counted_take(bucket, p, key)?;
        bucket.maybe_shrink();
        self.touched_as(key, Note::Removed);
        Some(e)
    }

    /// Sets or clears `key`'s deadline; false if the key is missing. A deadline already past
    /// deletes the key (as Redis does), and the caller propagates a DEL.
    pub fn set_deadline(&mut self, key: &[u8], deadline: Option<i64>) -> bool {
        if self.live(key).is_none() {
            return false;
        }
        let p = Place::of(key);
        let (now, ks, expiry) = (self.now, self.ks, self.expiry);
        if matches!(deadline, Some(t) if t <= now) && expiry == Expiry::Delete {
            if let Some(bucket) = self.bucket(p.bucket) {
                ks.counted_take(bucket, p, key);
            }
            self.touched_as(key, Note::Removed);
            return true;
        }
        let Some(bucket) = self.bucket(p.bucket) else {
            return false;
        };
        let Some(e) = bucket.find_mut(p, key) else {
            return false;
        };
        let before = e.deadline().is_some();
        let size = e.mem_usage() as i64;
        e.set_deadline(deadline);
        let grown = e.mem_usage() as i64 - size;
        let after = deadline.is_some();
        if before != after {
            let d: i32 = if after { 1 } else { -1 };
            bucket.volatile = bucket.volatile.wrapping_add_signed(d);
            ks.volatile
                .fetch_add(i64::from(d), std::sync::atomic::Ordering::Relaxed);
        }
        ks.account(grown);
        self.touched(key);
        true
    }

    /// The string at `key`: `Ok(None)` if missing, `Err` if another type.
    pub fn get_str(&mut self, key: &[u8]) -> Result<Option<&[u8]>, WrongType> {
        match self.get(key) {
            None => Ok(None),
            Some(e) => e.str().map(Some).ok_or(WrongType),
        }
    }

    /// The value of type `T` at `key`: `Ok(None)` if missing, `Err` if another type.
    pub fn read<T: Kind>(&mut self, key: &[u8]) -> Result<Option<&T>, WrongType> {
        match self.get(key) {
            None => Ok(None),
            Some(e) => match e.obj() {
                Some(v) => T::of(v).map(Some).ok_or(WrongType),
                None => Err(WrongType),
            },
        }
    }

    /// The values of type `T` at several keys at once, for multi-key reads (SINTER, SUNION):
    /// `None` for a missing key, `Err` at the first key (in order) holding another type. Each
    /// key is looked up as [`Db::read`] does first (expiry, access), then all are borrowed
    /// together.
    pub fn read_many<T: Kind, K: AsRef<[u8]>>(
        &mut self,
        keys: &[K],
    ) -> Result<Vec<Option<&T>>, WrongType> {
        for k in keys {
            self.read::<T>(k.as_ref())?;
        }
        let (now, expiry) = (self.now, self.expiry);
        let this = &*self;
        Ok(keys
            .iter()
            .map(|k| {
                let key = k.as_ref();
                let p = this.place(key);
                let e = this.bucket_ref(p.bucket)?.find(p, key)?;
                if expiry != Expiry::Keep && e.is_expired(now) {
                    return None;
                }
                e.obj().and_then(T::of)
            })
            .collect())
    }

    /// A bucket this view holds, shared (several values borrowed at once).
    fn bucket_ref(&self, b: usize) -> Option<&Bucket> {
        match &self.held {
            Held::One(i, g) if *i == b => Some(g),
            Held::Many(v) => v
                .binary_search_by_key(&b, |(i, _)| *i)
                .ok()
                .map(|at| &*v[at].1),
            Held::All(v) => v.get(b).map(|g| &**g),
            _ => None,
        }
    }

    /// Changes the value of type `T` at `key` with `f`, creating an empty one first when
    /// `create` (and the key is missing). `f` returns its result and whether it changed the value;
    /// a value left empty is deleted, as Redis never keeps an empty collection. `Ok(None)`: the
    /// key is missing and `create` is false.
    pub fn update<T: Kind, R>(
        &mut self,
        key: &[u8],
        create: bool,
        f: impl FnOnce(&mut T, &Limits) -> (R, bool),
    ) -> Result<Option<R>, WrongType> {
        let limits = self.ks.limits();
        let exists = match self.get(key) {
            None => false,
            Some(e) => match e.obj() {
                Some(v) if T::of(v).is_some() => true,
                _ => return Err(WrongType),
            },
        };
        if !exists {
            if !create {
                return Ok(None);
            }
            let mut fresh = T::default();
            let (r, changed) = f(&mut fresh, &limits);
            if changed && !fresh.is_empty() {
                self.insert(Entry::object(key, fresh.into_value(), None));
            }
            return Ok(Some(r));
        }
        let (r, changed, empty, delta) = {
            let Some(v) = self.get_mut(key).and_then(Entry::obj_mut) else {
                return Ok(None);
            };
            let Some(t) = T::of_mut(v) else {
                return Err(WrongType);
            };
            let before = t.mem_usage();
            let (r, changed) = f(t, &limits);
            (
                r,
                changed,
                t.is_empty(),
                t.mem_usage() as i64 - before as i64,
            )
        };
        self.ks.account(delta);
        if empty {
            self.remove(key);
        } else if changed {
            self.touched(key);
        }
        Ok(Some(r))
    }

    /// Removes every key (FLUSHALL): through the locks this view holds when it holds them all.
    pub fn clear(&mut self) {
        let ks = self.ks;
        match &mut self.held {
            Held::All(v) => v.iter_mut().for_each(|g| ks.clear_bucket(g)),
            _ => ks.clear(),
        }
    }

    /// Calls `f` with bucket `b` (held by this view, or locked for the call when the view holds
    /// nothing): keyspace-wide commands walk buckets this way.
    pub fn with_bucket<R>(&mut self, b: usize, f: impl FnOnce(&Bucket, i64) -> R) -> Option<R> {
        let now = self.now;
        if matches!(self.held, Held::None) {
            let g = lock(self.ks.buckets.get(b)?);
            return Some(f(&g, now));
        }
        self.bucket(b).map(|g| f(g, now))
    }

    /// Resizes the string at `key` to `len` bytes and edits it in place (APPEND, SETRANGE,
    /// SETBIT); `None` if the key is missing. The key must hold a string.
    pub fn edit_str<R>(
        &mut self,
        key: &[u8],
        len: usize,
        edit: impl FnOnce(&mut [u8]) -> R,
    ) -> Option<R> {
        let ks = self.ks;
        let e = self.get_mut(key)?;
        let before = e.mem_usage() as i64;
        let r = e.edit_str(len, edit);
        ks.account(e.mem_usage() as i64 - before);
        self.touched(key);
        Some(r)
    }

    /// Replaces `key`'s value, keeping its deadline (a write that changes the type, e.g. a
    /// string SET over a hash keeps no deadline: use [`Db::insert`] for that).
    pub fn replace_value(&mut self, key: &[u8], value: Value) -> bool {
        let ks = self.ks;
        let Some(e) = self.get_mut(key) else {
            return false;
        };
        let before = e.mem_usage() as i64;
        e.set_obj(value);
        ks.account(e.mem_usage() as i64 - before);
        self.touched(key);
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::Hash;

    #[test]
    fn expired_keys_are_deleted_and_propagated_on_a_primary_only() {
        let ks = Keyspace::new();
        let mut db = Db::for_keys(&ks, [b"k"], 1000, Expiry::Delete);
        db.set_str(b"k", b"v", Some(1500));
        assert_eq!(db.get_str(b"k").unwrap(), Some(&b"v"[..]));
        drop(db);
        let mut hidden = Db::for_keys(&ks, [b"k"], 2000, Expiry::Hide);
        assert!(hidden.get(b"k").is_none());
        // `kept` and `hidden` cannot hold the same bucket at once.
        drop(hidden);
        let mut kept = Db::for_keys(&ks, [b"k"], 2000, Expiry::Keep);
        assert!(kept.get(b"k").is_some());
        drop(kept);
        assert_eq!(ks.len(), 1);
        let mut db = Db::for_keys(&ks, [b"k"], 2000, Expiry::Delete);
        assert!(db.get(b"k").is_none());
        assert_eq!(db.effects.before.len(), 1);
        assert_eq!(ks.len(), 0);
    }

    #[test]
    fn update_creates_and_deletes_empty_values() {
        let ks = Keyspace::new();
        let mut db = Db::for_keys(&ks, [b"h", b"s"], 0, Expiry::Delete);
        let r = db
            .update::<Hash, _>(b"h", false, |_, _| ((), true))
            .unwrap();
        assert!(r.is_none());
        db.update::<Hash, _>(b"h", true, |h, l| {
            h.set(b"f", b"v", l);
            ((), true)
        })
        .unwrap();
        assert_eq!(db.read::<Hash>(b"h").unwrap().unwrap().len(), 1);
        db.set_str(b"s", b"x", None);
        assert_eq!(db.read::<Hash>(b"s").unwrap_err(), WrongType);
        db.update::<Hash, _>(b"h", false, |h, _| (h.remove(b"f"), true))
            .unwrap();
        assert!(!db.exists(b"h"));
        assert_eq!(ks.len(), 1);
    }

    #[test]
    fn try_add_key_takes_free_buckets_and_never_waits() {
        let ks = Keyspace::new();
        let (a, b) = (b"script-key-a", b"script-key-b");
        assert_ne!(Place::of(a).bucket, Place::of(b).bucket);
        let mut db = Db::for_keys(&ks, [a], 0, Expiry::Delete);
        let other = Db::for_keys(&ks, [b], 0, Expiry::Delete);
        assert!(!db.try_add_key(b), "held by another view");
        drop(other);
        assert!(db.try_add_key(b));
        assert!(db.try_add_key(a), "already held");
        db.set_str(b, b"v", None);
        assert_eq!(db.get_str(b).unwrap(), Some(&b"v"[..]));
        assert_eq!(db.held_buckets().len(), 2);
        let c = b"script-key-c";
        assert!(![a, b]
            .iter()
            .any(|k| Place::of(*k).bucket == Place::of(c).bucket));
        let blocker = Db::for_keys(&ks, [c], 0, Expiry::Delete);
        assert!(!db.try_add_all(), "one bucket is held elsewhere");
        assert_eq!(db.held_buckets().len(), 2, "keeps what it held");
        drop(blocker);
        assert!(db.try_add_all());
        assert!(db.holds_all());
        assert_eq!(db.get_str(b).unwrap(), Some(&b"v"[..]));
        let mut none = Db::unlocked(&ks, 0, Expiry::Delete);
        drop(db);
        assert!(none.try_add_key(a));
        assert_eq!(none.held_buckets(), vec![Place::of(a).bucket]);
    }
}
