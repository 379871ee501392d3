//! The router's view of the cluster: the ring and, for each of its shards, the upstream pool to
//! the shard's primary. Held in an `ArcSwap` by the router, so a membership change (a later
//! release) publishes a new `Topology` atomically while requests in progress finish on the old one.

use std::sync::Arc;

use ringcache_protocol::hash::key_hash;
use ringcache_protocol::ring::{Epoch, Ring, RingError};
use tokio::sync::watch;

use crate::config::{RouterConfig, ShardConfig};
use crate::io_threads::IoThreads;
use crate::rebalance::migrating::Migrating;
use crate::shard::Shard;
use crate::upstream::UpstreamSettings;

/// A ring and its shards' pools, indexed alike: `shards[i]` is `ring.shards()[i]`.
#[derive(Debug)]
pub struct Topology {
    pub ring: Ring,
    pub shards: Vec<Arc<Shard>>,
    /// Arcs being moved by a membership change in progress (empty otherwise), and shards
    /// outside the ring still holding keys of them (see `rebalance`).
    pub migrating: Migrating,
}

impl Topology {
    /// Builds a pool's ring (`vnodes`, `pool_shards`) at `epoch` and starts a pool per shard, with connections on every IO
    /// thread.
    pub fn start(
        config: &RouterConfig,
        pool: &str,
        vnodes: u32,
        pool_shards: &[ShardConfig],
        epoch: Epoch,
        stop: &watch::Receiver<bool>,
        io: &IoThreads,
    ) -> Result<Topology, RingError> {
        let specs = pool_shards
            .iter()
            .map(|s| ringcache_protocol::ring::ShardSpec::new(s.id.clone(), s.weight))
            .collect();
        let ring = Ring::new(epoch, vnodes, specs)?;
        let settings = UpstreamSettings {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            connections: io.connections_each(config.upstream_connections),
            link: config.node_link.clone(),
            keys: crate::key_prefix::for_pool(&config.routes, pool),
        };
        let shards = ring
            .shards()
            .iter()
            .filter_map(|spec| pool_shards.iter().find(|s| s.id == spec.id))
            .map(|s: &ShardConfig| {
                Arc::new(Shard::start(
                    &s.id,
                    &s.primary,
                    &s.replicas,
                    s.weight,
                    settings.clone(),
                    stop,
                    io,
                ))
            })
            .collect();
        Ok(Topology {
            ring,
            shards,
            migrating: Migrating::default(),
        })
    }

    /// A topology from its parts (membership changes build these; `shards` in ring order).
    pub fn from_parts(ring: Ring, shards: Vec<Arc<Shard>>, migrating: Migrating) -> Topology {
        Topology {
            ring,
            shards,
            migrating,
        }
    }

    /// Every shard holding keys: the ring's, then shards outside it that a migration is still
    /// emptying (fan-out commands ask them all).
    pub fn serving_shards(&self) -> impl Iterator<Item = &Arc<Shard>> {
        self.shards.iter().chain(self.migrating.outside())
    }

    /// A serving shard by id.
    pub fn shard_by_id(&self, id: &str) -> Option<&Arc<Shard>> {
        match self.ring.shard_index(id) {
            Some(i) => self.shards.get(i),
            None => self.migrating.outside().iter().find(|s| s.id == id),
        }
    }

    /// This topology with shard `index` replaced (a failover), at the next epoch.
    pub fn with_shard_replaced(
        &self,
        index: usize,
        shard: Arc<Shard>,
    ) -> Result<Topology, RingError> {
        let ring = Ring::new(
            self.ring
                .epoch()
                .checked_add(1)
                .ok_or(RingError::EpochExhausted)?,
            self.ring.vnodes(),
            self.ring.shards().to_vec(),
        )?;
        let mut shards = self.shards.clone();
        if let Some(slot) = shards.get_mut(index) {
            *slot = shard;
        }
        Ok(Topology {
            ring,
            shards,
            migrating: self.migrating.clone(),
        })
    }

    /// True while the arc holding `hash` is being moved between shards (reads then go to the
    /// primaries, where the key is in exactly one place). Arcs migrate only during a membership
    /// change; `migrating` lists them.
    pub fn is_migrating(&self, hash: u64) -> bool {
        self.migrating.is_migrating(hash)
    }

    /// Ring index of the shard owning `key`; `None` only for an empty ring.
    #[inline]
    pub fn owner(&self, key: &[u8]) -> Option<usize> {
        // A one-shard ring owns every key: skip hashing (a 100-key MGET hashes 100 keys).
        if self.ring.shards().len() == 1 {
            return Some(0);
        }
        self.ring.owner_index(key_hash(key))
    }
}
