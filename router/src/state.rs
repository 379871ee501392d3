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
use crate::pools::PoolState;
use crate::pools_config::DEFAULT_POOL;
use crate::session::Session;
use crate::shard::Shard;
use crate::shard_metrics::ShardMetrics;
use crate::topology::Topology;
use crate::upstream::UpstreamSettings;

/// State shared by every connection of a router.
#[derive(Debug)]
pub struct Router {
    pub config: RouterConfig,
    /// The pools (`default` first), each a ring of its own with its membership changes.
    pub pools: Vec<Arc<crate::pools::PoolState>>,
    /// Every pool's topology at once, for the request path; rebuilt by `store_topology`.
    pub view: ArcSwap<crate::pools::View>,
    pub(crate) view_lock: crate::pools::ViewLock,
    /// The `[[listener]]` addresses bound, with their pools.
    pub(crate) listener_pools: Mutex<Vec<(std::net::SocketAddr, usize)>>,
    /// Clients waiting on a membership change of any pool: another pool's change does not wait
    /// for them to finish their request (see `rebalance::publish::quiesce`).
    pub change_callers: Mutex<Vec<u64>>,
    /// Held while a split changes (`crate::split_change`), so two never pick one version.
    pub split_lock: tokio::sync::Mutex<()>,
    /// Keys the split movers moved.
    pub split_keys_moved: AtomicU64,
    /// Mirrored copies outstanding (`crate::mirror`).
    pub mirror_in_flight: Arc<crate::mirror::InFlight>,
    pub clients: Clients,
    /// The router's own ACL users (its clients', not the nodes').
    pub acl: ringcache_protocol::acl::Acl,
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
    /// Pub/sub: the router's subscriptions and its subscribed clients.
    pub pubsub: crate::pubsub::Hub,
    /// Copies of the scripts and function libraries loaded through this router.
    pub scripts: crate::scripts::Scripts,
    /// Clients blocked through this router, for CLIENT UNBLOCK.
    pub blocked: crate::blocking::BlockedClients,
    /// CLIENT PAUSE: this router's clients wait (`crate::pause`).
    pub pause: ringcache_protocol::pause::Pause,
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
        let bad = |e| io::Error::new(io::ErrorKind::InvalidInput, e);
        let mut pools = vec![Arc::new(PoolState::new(
            0,
            DEFAULT_POOL,
            config.ring.read_from,
            Topology::start(
                &config,
                DEFAULT_POOL,
                config.ring.vnodes,
                &config.shards,
                1,
                &stop_rx,
                &io,
            )
            .map_err(bad)?,
        ))];
        for (i, p) in config.pools.iter().enumerate() {
            let topo = Topology::start(&config, &p.name, p.vnodes, &p.shards, 1, &stop_rx, &io)
                .map_err(bad)?;
            pools.push(Arc::new(PoolState::new(i + 1, &p.name, p.read_from, topo)));
        }
        let index = |name: &str| pools.iter().position(|p| p.name == name).unwrap_or(0);
        let listeners: Vec<usize> = config.listeners.iter().map(|l| index(&l.pool)).collect();
        let routes = Arc::new(crate::routes::Routes::new(
            config.routes.clone(),
            &listeners,
            index,
        ));
        let splits = Arc::new(crate::split::Splits::from_routes(&routes, index));
        let view = crate::pools::View::new(
            1,
            pools.iter().map(|p| p.topology.load_full()).collect(),
            routes,
            splits,
        );
        let run_id: String = {
            let mut rng = rand::thread_rng();
            (0..40)
                .map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)]))
                .collect()
        };
        let dedicated = Arc::new(tokio::sync::Semaphore::new(
            config.max_dedicated_connections,
        ));
        let acl = ringcache_protocol::acl::Acl::new(false);
        acl.set_requirepass(config.requirepass.as_deref());
        acl.limiter.burst.store(
            config.auth_failure_limit,
            std::sync::atomic::Ordering::Relaxed,
        );
        *ringcache_protocol::clients::lock(&acl.file) = config.aclfile.clone();
        if acl.file_path().is_some() {
            acl.load_file()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("aclfile: {e}")))?;
        }
        Ok(Arc::new_cyclic(|me| Router {
            pubsub: Default::default(),
            scripts: Default::default(),
            pause: Default::default(),
            blocked: Default::default(),
            dedicated,
            config,
            pools,
            view: ArcSwap::from_pointee(view),
            view_lock: Default::default(),
            listener_pools: Mutex::new(Vec::new()),
            mirror_in_flight: Default::default(),
            change_callers: Mutex::new(Vec::new()),
            split_lock: tokio::sync::Mutex::new(()),
            split_keys_moved: AtomicU64::new(0),
            clients: Clients::default(),
            acl,
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
            me: me.clone(),
        }))
    }

    /// A counted reference to this router (`None` while it is being dropped).
    pub fn me(&self) -> Option<Arc<Router>> {
        self.me.upgrade()
    }

    /// Starts pools for a shard with this router's settings (failover and joins build shards
    /// after start-up).
    /// `pool`: the name of the shard's pool.
    pub fn start_shard(
        &self,
        pool: &str,
        id: &str,
        primary: &str,
        replicas: &[String],
        weight: u32,
    ) -> Shard {
        let settings = UpstreamSettings {
            connect_timeout: self.config.connect_timeout,
            request_timeout: self.config.request_timeout,
            connections: self.io.connections_each(self.config.upstream_connections),
            link: self.config.node_link.clone(),
            keys: crate::key_prefix::for_pool(&self.config.routes, pool),
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
