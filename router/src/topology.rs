//! The router's view of the cluster: the ring and, for each of its shards, the upstream pool to
//! the shard's primary. Held in an `ArcSwap` by the router, so a membership change (a later
//! release) publishes a new `Topology` atomically while requests in progress finish on the old one.

use std::sync::Arc;

use ringcache_protocol::hash::key_hash;
use ringcache_protocol::ring::{Epoch, Ring, RingError};
use tokio::sync::watch;

use crate::config::{RouterConfig, ShardConfig};
use crate::io_threads::IoThreads;
use crate::metrics::ShardMetrics;
use crate::upstream::{UpstreamPool, UpstreamSettings};

/// One shard as the router serves it.
#[derive(Debug)]
pub struct Shard {
    pub id: String,
    pub primary: String,
    /// Kept for read replicas (a later release); every request goes to the primary now.
    pub replicas: Vec<String>,
    pub weight: u32,
    pub pool: UpstreamPool,
    pub metrics: Arc<ShardMetrics>,
}

/// A ring and its shards' pools, indexed alike: `shards[i]` is `ring.shards()[i]`.
#[derive(Debug)]
pub struct Topology {
    pub ring: Ring,
    pub shards: Vec<Arc<Shard>>,
}

impl Topology {
    /// Builds the ring at `epoch` and starts a pool per shard, with connections on every IO
    /// thread.
    pub fn start(
        config: &RouterConfig,
        epoch: Epoch,
        stop: &watch::Receiver<bool>,
        io: &IoThreads,
    ) -> Result<Topology, RingError> {
        let ring = Ring::new(epoch, config.ring.vnodes, config.shard_specs())?;
        let settings = UpstreamSettings {
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            connections: io.connections_each(config.upstream_connections),
        };
        let shards = ring
            .shards()
            .iter()
            .filter_map(|spec| config.shards.iter().find(|s| s.id == spec.id))
            .map(|s: &ShardConfig| {
                let metrics = Arc::new(ShardMetrics::new(&s.id));
                Arc::new(Shard {
                    id: s.id.clone(),
                    primary: s.primary.clone(),
                    replicas: s.replicas.clone(),
                    weight: s.weight,
                    pool: UpstreamPool::start(
                        &s.id,
                        &s.primary,
                        settings,
                        metrics.clone(),
                        stop.clone(),
                        io,
                    ),
                    metrics,
                })
            })
            .collect();
        Ok(Topology { ring, shards })
    }

    /// Ring index of the shard owning `key`; `None` only for an empty ring.
    #[inline]
    pub fn owner(&self, key: &[u8]) -> Option<usize> {
        self.ring.owner_index(key_hash(key))
    }
}
