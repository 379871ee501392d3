//! The state a router's connections and background tasks share: config, the swappable
//! [`Topology`], clients, IO threads, the rebalancer's and the failover's state, the L4 pools.
//! The modules acting on it (`proxy`, `local`, `rebalance`, `health`, `l4`, `metrics`) sit above
//! this file; it imports none of them but the state they keep here.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use ringcache_protocol::park::Lot;

use crate::clients::Clients;
use crate::config::RouterConfig;
use crate::io_threads::IoThreads;
use crate::l4::pool::Pool;
use crate::rebalance::rebalancer::Rebalancer;
use crate::session::Session;
use crate::shard::Shard;
use crate::shard_metrics::ShardMetrics;
use crate::topology::Topology;
use crate::upstream::UpstreamSettings;

/// State shared by every connection of a router.
#[derive(Debug)]
pub struct Router {
    pub config: RouterConfig,
    /// The ring and pools, swapped whole when membership changes.
    pub topology: ArcSwap<Topology>,
    pub clients: Clients,
    /// Commands the router answers itself (shard label `router`).
    pub metrics: ShardMetrics,
    pub commands: AtomicU64,
    pub started: Instant,
    pub run_id: String,
    /// The client-facing port (for INFO and CONFIG GET port).
    pub port: u16,
    pub io: IoThreads,
    /// Each IO thread's parked idle connections (`proxy` parks and resumes them).
    pub lots: Vec<Arc<Lot<Box<Session>>>>,
    stop: watch::Sender<bool>,
    pub failover: FailoverStats,
    /// The L4 listeners' pools (RING STATUS and metrics show their connections).
    pub l4_pools: Mutex<Vec<Arc<Pool>>>,
    /// Membership changes: RING JOIN/LEAVE/CANCEL/STATUS, epochs pushed to nodes.
    pub rebalance: Rebalancer,
    /// Pub/sub: the router's subscriptions and its subscribed clients.
    pub pubsub: crate::pubsub::Hub,
    /// Copies of the scripts and function libraries loaded through this router.
    pub scripts: crate::scripts::Scripts,
    /// Clients blocked through this router, for CLIENT UNBLOCK.
    pub blocked: crate::blocking::BlockedClients,
    /// Permits for connections of one client's own (`crate::dedicated`).
    pub dedicated: Arc<tokio::sync::Semaphore>,
    /// This router, for tasks a request spawns (the migration path).
    me: Weak<Router>,
}

/// Failover counters for metrics and INFO (the health checker counts them).
#[derive(Debug, Default)]
pub struct FailoverStats {
    pub failovers: AtomicU64,
    /// Writes acknowledged by a failed primary that its promoted replica never applied.
    pub lost_writes: AtomicU64,
}

impl Drop for Router {
    fn drop(&mut self) {
        // Ends the IO threads and upstream tasks even if `serve` never ran to its end.
        self.stop();
    }
}

impl Router {
    /// Starts the IO threads, builds the ring at epoch 1 and starts the upstream pools (inside a
    /// tokio runtime). `Router::new` (in `lib.rs`, above the rebalancer) also starts the epoch
    /// sync task.
    pub fn build(config: RouterConfig, port: u16) -> io::Result<Arc<Router>> {
        use rand::Rng;
        let (stop, stop_rx) = watch::channel(false);
        let io = IoThreads::start(config.io_threads, &stop_rx)?;
        let lots = io
            .handles()
            .iter()
            .map(|h| {
                let _in = h.enter();
                Lot::new()
            })
            .collect::<io::Result<Vec<_>>>()?;
        let topology = Topology::start(&config, 1, &stop_rx, &io)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let run_id: String = {
            let mut rng = rand::thread_rng();
            (0..40)
                .map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)]))
                .collect()
        };
        let dedicated = Arc::new(tokio::sync::Semaphore::new(
            config.max_dedicated_connections,
        ));
        Ok(Arc::new_cyclic(|me| Router {
            pubsub: Default::default(),
            scripts: Default::default(),
            blocked: Default::default(),
            dedicated,
            config,
            topology: ArcSwap::from_pointee(topology),
            clients: Clients::default(),
            metrics: ShardMetrics::new("router"),
            commands: AtomicU64::new(0),
            started: Instant::now(),
            run_id,
            port,
            io,
            lots,
            stop,
            failover: FailoverStats::default(),
            l4_pools: Mutex::new(Vec::new()),
            rebalance: Rebalancer::default(),
            me: me.clone(),
        }))
    }

    /// A counted reference to this router (`None` while it is being dropped).
    pub fn me(&self) -> Option<Arc<Router>> {
        self.me.upgrade()
    }

    /// Starts pools for a shard with this router's settings (failover and joins build shards
    /// after start-up).
    pub fn start_shard(&self, id: &str, primary: &str, replicas: &[String], weight: u32) -> Shard {
        let settings = UpstreamSettings {
            connect_timeout: self.config.connect_timeout,
            request_timeout: self.config.request_timeout,
            connections: self.io.connections_each(self.config.upstream_connections),
            link: self.config.node_link.clone(),
        };
        Shard::start(
            id,
            primary,
            replicas,
            weight,
            settings,
            &self.stop.subscribe(),
            &self.io,
        )
    }

    /// Tells background tasks (upstream connections, metrics) to stop.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops the background tasks (the end of `proxy::serve`, or the last reference dropped).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        for lot in &self.lots {
            lot.close();
        }
    }
}
