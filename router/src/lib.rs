//! ringcache's router: a Redis-compatible proxy that places keys on shards with the consistent-hash
//! ring from `ringcache-protocol`, so clients see one big cache.
//!
//! Layout, following one request: [`proxy`] accepts a client and decodes its requests; [`route`]
//! decides where each goes (one shard, split per shard, every shard, or the router itself, in
//! [`local`]); [`upstream`] carries it over a few multiplexed connections per shard; [`merge`]
//! combines split replies and keeps each client's replies in request order ([`frame`] measures
//! upstream replies without decoding them). [`topology`] is the ring plus the shards' pools,
//! swapped atomically; [`config`] reads `cluster.toml`; [`metrics`] serves Prometheus text.

pub mod clients;
pub mod config;
pub mod cursor;
pub mod frame;
pub mod health;
pub mod io_threads;
pub mod l4;
pub mod local;
pub mod merge;
pub mod metrics;
pub mod proxy;
pub mod rebalance;
pub mod record;
pub mod route;
pub mod send;
pub mod session;
pub mod shard;
pub mod shard_metrics;
pub mod state;
pub mod topology;
pub mod upstream;

use std::future::Future;
use std::io;

use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{load_config, parse_config, ConfigError, RouterConfig};
pub use state::Router;

impl Router {
    /// Starts the IO threads, builds the ring at epoch 1 and starts the upstream pools (inside a
    /// tokio runtime): [`Router::build`]; then the epoch sync task, which learns the nodes' epoch
    /// and keeps every node on this router's ring. (Here, not in `state.rs`: the task belongs to
    /// the rebalancer, a layer above the router's state.)
    pub fn new(config: RouterConfig, port: u16) -> io::Result<Arc<Router>> {
        let router = Router::build(config, port)?;
        rebalance::start(&router);
        Ok(router)
    }
}

/// Runs the router on `listener` until `shutdown` resolves. If `config.metrics` is set, binds it
/// first and serves `GET /metrics` there (printing `ringcache router metrics on ADDR`).
pub async fn run(
    config: RouterConfig,
    listener: TcpListener,
    shutdown: impl Future,
) -> io::Result<()> {
    let metrics_listener = match &config.metrics {
        Some(addr) => Some(TcpListener::bind(addr.as_str()).await.map_err(|e| {
            io::Error::new(e.kind(), format!("binding metrics address {addr}: {e}"))
        })?),
        None => None,
    };
    let port = listener.local_addr()?.port();
    let router = Router::new(config, port)?;
    if let Some(l) = metrics_listener {
        let addr = l.local_addr()?;
        // The launcher and tests read this line to find the metrics port (0 picks one).
        println!("ringcache router metrics on {addr}");
        tracing::info!(%addr, "metrics listening");
        tokio::spawn(metrics::serve(router.clone(), l, router.stop_signal()));
    }
    // L4 connections get threads of their own (see `config::default_l4_threads`); 0 shares the
    // IO threads.
    let l4_io: Vec<tokio::runtime::Handle> = match router.config.l4_threads {
        _ if router.config.l4.is_empty() => Vec::new(),
        0 => router.io.handles().to_vec(),
        n => io_threads::IoThreads::start_named(n, "ringcache-l4", &router.stop_signal())?
            .handles()
            .to_vec(),
    };
    for l4 in &router.config.l4 {
        let l = TcpListener::bind(l4.listen.as_str()).await.map_err(|e| {
            io::Error::new(e.kind(), format!("binding L4 listener {}: {e}", l4.listen))
        })?;
        let members = match &l4.pool {
            config::L4Pool::Addrs(m) => m.clone(),
            config::L4Pool::Replicas(shard) => {
                let topo = router.topology.load();
                let Some(s) = topo.shards.iter().find(|s| &s.id == shard) else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("L4 pool replicas:{shard}: no such shard"),
                    ));
                };
                s.replicas
                    .iter()
                    .map(|r| l4::Member {
                        addr: r.clone(),
                        weight: 1,
                    })
                    .collect()
            }
        };
        let name = match &l4.pool {
            config::L4Pool::Replicas(s) => format!("replicas:{s}"),
            config::L4Pool::Addrs(_) => l4.listen.clone(),
        };
        let pool = std::sync::Arc::new(l4::Pool::new(name.clone(), l4.balance, &members));
        let addr = l.local_addr()?;
        // Tests and the launcher read this line to find an L4 port (0 picks one).
        println!("ringcache router l4 {name} on {addr}");
        tracing::info!(%addr, pool = %name, backends = members.len(), "L4 listening");
        router
            .l4_pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pool.clone());
        // A shard's replica pool follows the topology (failovers change who the replicas are).
        let source: Option<l4::MemberSource> = match &l4.pool {
            config::L4Pool::Replicas(shard) => {
                let (router, shard) = (router.clone(), shard.clone());
                Some(std::sync::Arc::new(move || {
                    router
                        .topology
                        .load()
                        .shards
                        .iter()
                        .find(|s| s.id == shard)
                        .map(|s| {
                            s.replicas
                                .iter()
                                .map(|r| l4::Member {
                                    addr: r.clone(),
                                    weight: 1,
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                }))
            }
            config::L4Pool::Addrs(_) => None,
        };
        tokio::spawn(l4::health_loop(
            pool.clone(),
            l4::HealthSettings::default(),
            source,
            router.stop_signal(),
        ));
        tokio::spawn(l4::serve(
            l,
            pool,
            router.config.connect_timeout,
            l4_io.clone(),
            router.stop_signal(),
        ));
    }
    tokio::spawn(health::run(
        router.clone(),
        health::HealthSettings::default(),
        router.stop_signal(),
    ));
    // Bounded: the adoption's node calls each time out after `connect_timeout`.
    router
        .rebalance
        .wait_first_sync(router.config.connect_timeout * 4)
        .await;
    tracing::info!(
        addr = %listener.local_addr()?,
        shards = router.topology.load().shards.len(),
        "router serving"
    );
    proxy::serve(router, listener, shutdown).await
}
