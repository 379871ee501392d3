//! The cluster topology as this node knows it: the ring and its epoch, this node's place in it,
//! the router's record of a change in progress, and the keys being moved now. The topology
//! engine (`crate::topology`) checks ownership and moves keys with it; TOPOLOGY sets it.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwapOption, Guard};
use bytes::Bytes;
use ringcache_protocol::ring::Ring;
use tokio::sync::Notify;

use crate::keyspace::lock;

/// What this node knows of the ring.
pub struct NodeTopology {
    shard_id: Mutex<Option<String>>,
    ring: ArcSwapOption<Ring>,
    /// This node's index in `ring`'s shards, when it is one of them.
    me: AtomicU64,
    /// The router's record of the change moving keys at `ring`'s epoch (see `crate::topology`).
    change: Mutex<Option<Bytes>>,
    /// Keys being moved now, and a signal when some are released (see [`NodeTopology::claim`]).
    moving: Mutex<HashSet<Bytes>>,
    released: Notify,
    pub keys_migrated: AtomicU64,
    pub bytes_migrated: AtomicU64,
}

const NOT_A_MEMBER: u64 = u64::MAX;

impl NodeTopology {
    pub fn new(shard_id: Option<String>) -> Self {
        NodeTopology {
            shard_id: Mutex::new(shard_id),
            ring: ArcSwapOption::empty(),
            me: AtomicU64::new(NOT_A_MEMBER),
            change: Mutex::new(None),
            moving: Mutex::new(HashSet::new()),
            released: Notify::new(),
            keys_migrated: AtomicU64::new(0),
            bytes_migrated: AtomicU64::new(0),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.ring.load().as_ref().map(|r| r.epoch()).unwrap_or(0)
    }

    /// The ring, if the router pushed one (a cheap guard: read on every keyed command).
    pub fn ring(&self) -> Guard<Option<Arc<Ring>>> {
        self.ring.load()
    }

    /// This node's index in the ring's shards, unless it is outside the ring.
    pub fn my_index(&self) -> Option<u64> {
        let me = self.me.load(Relaxed);
        (me != NOT_A_MEMBER).then_some(me)
    }

    pub fn shard_id(&self) -> Option<String> {
        lock(&self.shard_id).clone()
    }

    /// The router's record of the change in progress, if any.
    pub fn change(&self) -> Option<Bytes> {
        lock(&self.change).clone()
    }

    pub fn info(&self, out: &mut String) {
        let _ = write!(
            out,
            "ringcache_shard:{}\r\nringcache_epoch:{}\r\nringcache_keys_migrated:{}\r\nringcache_bytes_migrated:{}\r\n",
            lock(&self.shard_id).as_deref().unwrap_or(""),
            self.epoch(),
            self.keys_migrated.load(Relaxed),
            self.bytes_migrated.load(Relaxed),
        );
    }

    /// Claims `keys` for one move, waiting while another move holds any of them (all at once:
    /// a claim never waits holding part of one). Released when the returned guard drops.
    pub async fn claim(&self, keys: &[Bytes]) -> Claim<'_> {
        loop {
            // Created before the check, so a release between the check and the wait is seen.
            let released = self.released.notified();
            {
                let mut moving = lock(&self.moving);
                if !keys.iter().any(|k| moving.contains(k)) {
                    let keys = keys
                        .iter()
                        .filter(|k| moving.insert((*k).clone()))
                        .cloned()
                        .collect();
                    return Claim { topo: self, keys };
                }
            }
            released.await;
        }
    }

    /// Installs `ring` if it is newer than the current one (equal: accepted, idempotent), with
    /// the record of a change in progress (`None` keeps the record only at an equal epoch).
    /// Refused with the current epoch if `ring` is older.
    pub fn set(&self, ring: Ring, shard_id: String, change: Option<Bytes>) -> Result<(), u64> {
        // Under the record's lock, so two pushes cannot pair one's ring with the other's record.
        let mut record = lock(&self.change);
        let current = self.epoch();
        if ring.epoch() < current {
            return Err(current);
        }
        if change.is_some() || ring.epoch() > current {
            *record = change;
        }
        let me = ring
            .shard_index(&shard_id)
            .map(|i| i as u64)
            .unwrap_or(NOT_A_MEMBER);
        *lock(&self.shard_id) = Some(shard_id);
        self.me.store(me, Relaxed);
        self.ring.store(Some(Arc::new(ring)));
        Ok(())
    }

    /// Forgets the change record once the change that ends at `epoch` is done (a node already
    /// on a newer epoch keeps the newer change's record).
    pub fn done(&self, epoch: u64) {
        let mut record = lock(&self.change);
        if self.epoch() <= epoch {
            *record = None;
        }
    }
}

/// Keys claimed by one move (see [`NodeTopology::claim`]).
pub struct Claim<'a> {
    topo: &'a NodeTopology,
    keys: Vec<Bytes>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut moving = lock(&self.topo.moving);
        for k in &self.keys {
            moving.remove(k);
        }
        drop(moving);
        self.topo.released.notify_waiters();
    }
}
