//! One shard as the router serves it: the upstream pool to its primary, read pools to its
//! replicas, and its per-command metrics. A [`crate::topology::Topology`] holds the shards of a
//! ring; failover and joins start new ones.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};
use std::sync::Arc;

use tokio::sync::watch;

use crate::io_threads::IoThreads;
use crate::shard_metrics::ShardMetrics;
use crate::upstream::{UpstreamPool, UpstreamSettings};

/// One shard as the router serves it.
#[derive(Debug)]
pub struct Shard {
    pub id: String,
    pub primary: String,
    pub replicas: Vec<String>,
    pub weight: u32,
    pub pool: UpstreamPool,
    pub metrics: Arc<ShardMetrics>,
    /// Read connections to the replicas, with the health and lag the health checker last saw.
    pub replica_links: Vec<Arc<ReplicaLink>>,
    /// Scripts sent to it that have run past [`crate::scripts::LONG_SCRIPT`] and not answered:
    /// while there are some, PING goes to it (a busy node answers BUSY, as Redis does).
    pub long_scripts: Arc<AtomicUsize>,
}

/// A replica the router may send reads to.
#[derive(Debug)]
pub struct ReplicaLink {
    pub addr: String,
    pub pool: UpstreamPool,
    /// Requests sent and not yet answered (least-connections picks the smallest).
    pub outstanding: Arc<AtomicUsize>,
    /// Reachable, replicating from this shard's primary, link up (set by the health checker).
    pub healthy: AtomicBool,
    /// Milliseconds since it last heard from its primary.
    pub lag_ms: AtomicI64,
}

impl Shard {
    /// Starts a shard's pools: the primary's and a read pool per replica.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: &str,
        primary: &str,
        replicas: &[String],
        weight: u32,
        settings: UpstreamSettings,
        stop: &watch::Receiver<bool>,
        io: &IoThreads,
    ) -> Shard {
        let metrics = Arc::new(ShardMetrics::new(id));
        let replica_links = replicas
            .iter()
            .map(|r| {
                Arc::new(ReplicaLink {
                    addr: r.clone(),
                    pool: UpstreamPool::start(
                        id,
                        r,
                        settings.clone(),
                        metrics.clone(),
                        stop.clone(),
                        io,
                    ),
                    outstanding: Arc::new(AtomicUsize::new(0)),
                    // Not trusted for reads until the health checker has seen it in sync.
                    healthy: AtomicBool::new(false),
                    lag_ms: AtomicI64::new(i64::MAX),
                })
            })
            .collect();
        Shard {
            id: id.to_string(),
            primary: primary.to_string(),
            replicas: replicas.to_vec(),
            weight,
            pool: UpstreamPool::start(id, primary, settings, metrics.clone(), stop.clone(), io),
            metrics,
            replica_links,
            long_scripts: Arc::new(AtomicUsize::new(0)),
        }
    }
}
