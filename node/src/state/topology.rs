//! The cluster topology as this node knows it: the ring and its epoch, this node's place in it,
//! the router's record of a change in progress, and the keys being moved now. The topology
//! engine (`crate::topology`) checks ownership and moves keys with it; TOPOLOGY sets it.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwapOption, Guard};
use bytes::Bytes;
use ringcache_protocol::ring::Ring;
use ringcache_protocol::wire::SplitFences;
use tokio::sync::Notify;

use crate::keyspace::lock;

/// What this node knows of the ring.
pub struct NodeTopology {
    shard_id: Mutex<Option<String>>,
    ring: ArcSwapOption<Ring>,
    /// Keys a route's split gives another pool (see `TOPOLOGY FENCE`).
    fences: arc_swap::ArcSwap<SplitFences>,
    /// Whether `fences` lists any (the keyed commands' check skips them otherwise).
    fenced: std::sync::atomic::AtomicBool,
    /// This node's index in `ring`'s shards, when it is one of them.
    me: AtomicU64,
    /// The router's record of the change moving keys at `ring`'s epoch (see `crate::topology`),
    /// and its map of the ring (every shard's addresses), from which any router adopts it.
    change: Mutex<Records>,
    /// The router allowed to change the ring now (see [`NodeTopology::lease`]).
    lease: Mutex<Option<Lease>>,
    /// Keys being moved now, and a signal when some are released (see [`NodeTopology::claim`]).
    moving: Mutex<HashSet<Bytes>>,
    released: Notify,
    pub keys_migrated: AtomicU64,
    pub bytes_migrated: AtomicU64,
}

const NOT_A_MEMBER: u64 = u64::MAX;

/// What the router pushed with the ring, opaque to the node.
#[derive(Default)]
struct Records {
    change: Option<Bytes>,
    map: Option<Bytes>,
}

/// A router's claim to change the ring until `until` (renewed while its change runs).
struct Lease {
    holder: String,
    what: String,
    until: Instant,
    /// Another router was asked to cancel the change (`TOPOLOGY ASKCANCEL`); the holder learns it
    /// when it renews.
    cancel: bool,
}

impl NodeTopology {
    pub fn new(shard_id: Option<String>) -> Self {
        NodeTopology {
            shard_id: Mutex::new(shard_id),
            ring: ArcSwapOption::empty(),
            fences: arc_swap::ArcSwap::from_pointee(SplitFences::default()),
            fenced: std::sync::atomic::AtomicBool::new(false),
            me: AtomicU64::new(NOT_A_MEMBER),
            change: Mutex::new(Records::default()),
            lease: Mutex::new(None),
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

    /// The split fences.
    pub fn fences(&self) -> Guard<Arc<SplitFences>> {
        self.fences.load()
    }

    /// The split fences if there are any (read on every keyed command).
    #[inline]
    pub fn any_fences(&self) -> Option<Guard<Arc<SplitFences>>> {
        self.fenced.load(Relaxed).then(|| self.fences.load())
    }

    /// Installs `fences` if they are a newer version than this node's (the same fences again
    /// are accepted: a push repeated); refused with the current version otherwise, so two
    /// routers' different fences never share a version.
    pub fn set_fences(&self, fences: SplitFences) -> Result<(), u64> {
        // Under the record's lock, as rings are set, so two pushes never interleave.
        let _records = lock(&self.change);
        let current = self.fences.load();
        if fences.version < current.version
            || (fences.version == current.version && fences != **current)
        {
            return Err(current.version);
        }
        self.fenced.store(!fences.fences.is_empty(), Relaxed);
        self.fences.store(Arc::new(fences));
        Ok(())
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
        lock(&self.change).change.clone()
    }

    /// The router's map of the current ring, if it pushed one.
    pub fn map(&self) -> Option<Bytes> {
        lock(&self.change).map.clone()
    }

    /// Grants `holder` the right to change the ring for `ttl` if no other holder's lease runs
    /// (true: a cancel of its change was asked for); else the running lease's holder and change.
    /// Routers take it on every primary in shard-id order before a change, so of two changes
    /// started at once through two routers one wins.
    pub fn lease(&self, holder: &str, ttl: Duration, what: &str) -> Result<bool, (String, String)> {
        let mut lease = lock(&self.lease);
        let now = Instant::now();
        let mut cancel = false;
        if let Some(l) = lease.as_ref() {
            if l.holder != holder && l.until > now {
                return Err((l.holder.clone(), l.what.clone()));
            }
            cancel = l.holder == holder && l.cancel;
        }
        *lease = Some(Lease {
            holder: holder.to_string(),
            what: what.to_string(),
            until: now + ttl,
            cancel,
        });
        Ok(cancel)
    }

    /// Asks the holder of the running lease to cancel its change; the change, if a lease runs.
    pub fn ask_cancel(&self) -> Option<String> {
        let mut lease = lock(&self.lease);
        let l = lease.as_mut().filter(|l| l.until > Instant::now())?;
        l.cancel = true;
        Some(l.what.clone())
    }

    /// Ends `holder`'s lease (another holder's is left alone).
    pub fn release(&self, holder: &str) {
        let mut lease = lock(&self.lease);
        if lease.as_ref().is_some_and(|l| l.holder == holder) {
            *lease = None;
        }
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
    /// the record of a change in progress and the ring's map (`None` keeps either only at an
    /// equal epoch). Refused with the current epoch if `ring` is older.
    pub fn set(
        &self,
        ring: Ring,
        shard_id: String,
        change: Option<Bytes>,
        map: Option<Bytes>,
    ) -> Result<(), u64> {
        // Under the record's lock, so two pushes cannot pair one's ring with the other's record.
        let mut records = lock(&self.change);
        let current = self.epoch();
        if ring.epoch() < current {
            return Err(current);
        }
        let newer = ring.epoch() > current;
        if change.is_some() || newer {
            records.change = change;
        }
        if map.is_some() || newer {
            records.map = map;
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
        let mut records = lock(&self.change);
        if self.epoch() <= epoch {
            records.change = None;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ringcache_protocol::ring::ShardSpec;

    fn ring(epoch: u64) -> Ring {
        Ring::new(epoch, 64, vec![ShardSpec::new("a", 1)]).unwrap()
    }

    #[test]
    fn one_lease_holder_at_a_time_until_it_expires_or_is_released() {
        let t = NodeTopology::new(None);
        let long = Duration::from_secs(60);
        assert_eq!(t.lease("r1", long, "join d"), Ok(false));
        // The holder renews; another router is told who holds it and for what.
        assert_eq!(t.lease("r1", long, "join d"), Ok(false));
        // A cancel asked through another router reaches the holder when it renews.
        assert_eq!(t.ask_cancel().as_deref(), Some("join d"));
        assert_eq!(t.lease("r1", long, "join d"), Ok(true));
        assert_eq!(
            t.lease("r2", long, "leave b"),
            Err(("r1".to_string(), "join d".to_string()))
        );
        // Only the holder's release counts.
        t.release("r2");
        assert!(t.lease("r2", long, "leave b").is_err());
        t.release("r1");
        assert_eq!(t.ask_cancel(), None);
        t.lease("r2", Duration::from_millis(1), "leave b").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(t.lease("r1", long, "join d"), Ok(false));
    }

    #[test]
    fn the_map_follows_the_ring_and_survives_done() {
        let t = NodeTopology::new(None);
        let map = Bytes::from_static(b"m3");
        let rec = Bytes::from_static(b"r3");
        t.set(ring(3), "a".into(), Some(rec), Some(map.clone()))
            .unwrap();
        t.done(3);
        assert_eq!((t.change(), t.map()), (None, Some(map.clone())));
        // An equal epoch without a map keeps it; a newer one replaces it; an older is refused.
        t.set(ring(3), "a".into(), None, None).unwrap();
        assert_eq!(t.map(), Some(map));
        t.set(ring(4), "a".into(), None, None).unwrap();
        assert_eq!(t.map(), None);
        assert_eq!(t.set(ring(2), "a".into(), None, None), Err(4));
    }
}
