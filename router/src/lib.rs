//! ringcache's router: a Redis-compatible proxy that places keys on shards with the consistent-hash
//! ring from `ringcache-protocol`, so clients see one big cache.
//!
//! Layout, following one request: [`proxy`] accepts a client and decodes its requests; [`route`]
//! decides where each goes (one shard, split per shard, every shard, or the router itself, in
//! [`local`]); [`upstream`] carries it over a few multiplexed connections per shard; [`merge`]
//! combines split replies and keeps each client's replies in request order ([`frame`] measures
//! upstream replies without decoding them). [`topology`] is the ring plus the shards' pools,
//! swapped atomically; [`config`] reads `cluster.toml`; [`metrics`] serves Prometheus text.
//!
//! Layers (a file imports only files below it): config, topology, shard, upstream, frame, merge,
//! session, send and the state the rebalancer keeps (`rebalance::{rebalancer, migrating}`) at the
//! bottom; [`state`] (the [`Router`] every task shares) on them; what acts on the state above it
//! ([`rebalance`]'s operations, [`health`], [`l4`], [`local`], [`metrics`]); [`proxy`] (the serve
//! loop) on top, and [`run`] here starting it all.

pub mod blocking;
pub mod clients;
pub mod config;
pub mod cursor;
pub mod dedicated;
pub mod frame;
pub mod health;
pub mod info;
pub mod io_threads;
pub mod key_prefix;
pub mod l4;
pub mod latency;
pub mod local;
pub mod merge;
pub mod metrics;
pub mod mirror;
pub mod pause;
pub mod pools;
pub mod pools_config;
pub mod proxy;
pub mod pubsub;
pub mod rebalance;
pub mod record;
pub mod route;
pub mod route_change;
pub mod routes;
pub mod scripts;
pub mod send;
pub mod session;
pub mod shard;
pub mod shard_metrics;
pub mod split;
pub mod split_change;
pub mod state;
pub mod tls_config;
pub mod topology;
pub mod txn;
pub mod upstream;
pub mod wait;

use std::future::Future;
use std::io;
use std::sync::Arc;

use ringcache_protocol::tls::TlsServer;
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
        tokio::spawn(pubsub::run(router.clone()));
        Ok(router)
    }
}

/// Binds the TLS client listener `config.tls` names, with its certificates (printing
/// `ringcache router listening for TLS on ADDR`).
pub async fn bind_tls(config: &RouterConfig) -> io::Result<Option<(TcpListener, Arc<TlsServer>)>> {
    let Some(t) = &config.tls else {
        return Ok(None);
    };
    let server = TlsServer::new(t.files.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(t.listen.as_str()).await?;
    let addr = listener.local_addr()?;
    println!("ringcache router listening for TLS on {addr}");
    tracing::info!(%addr, "router listening for TLS");
    Ok(Some((listener, server)))
}

/// Runs the router on `listener` until `shutdown` resolves. If `config.metrics` is set, binds it
/// first and serves `GET /metrics` there (printing `ringcache router metrics on ADDR`); the TLS
/// listener too, if `config.tls` is set.
pub async fn run(
    config: RouterConfig,
    listener: TcpListener,
    shutdown: impl Future,
) -> io::Result<()> {
    let tls = bind_tls(&config).await?;
    run_listeners(config, listener, tls, shutdown).await
}

/// [`run`] with the TLS listener bound by the caller (who keeps its handle to reload it).
pub async fn run_listeners(
    config: RouterConfig,
    listener: TcpListener,
    tls: Option<(TcpListener, Arc<TlsServer>)>,
    shutdown: impl Future,
) -> io::Result<()> {
    let metrics_listener = metrics::bind(&config).await?;
    let port = listener.local_addr()?.port();
    let router = Router::new(config, port)?;
    if let Some(l) = metrics_listener {
        metrics::start(&router, l)?;
    }
    l4::listen::start(&router).await?;
    #[cfg(unix)]
    if router.config.aclfile.is_some() {
        tokio::spawn(reload_acl_on_sighup(router.clone()));
    }
    tokio::spawn(health::run(
        router.clone(),
        health::HealthSettings::default(),
        router.stop_signal(),
    ));
    // Bounded: the adoption's node calls each time out after `connect_timeout`.
    for pool in &router.pools {
        pool.rebalance
            .wait_first_sync(router.config.connect_timeout * 4)
            .await;
    }
    // The live split percents, once every pool's ring is the nodes' (a moving split's arcs are
    // cut by both pools' rings), before any client is served.
    if !router.view().splits.is_empty() {
        split_change::sync_all(&router).await;
    }
    tracing::info!(
        addr = %listener.local_addr()?,
        shards = router.view().shards.len(),
        "router serving"
    );
    proxy::serve_listeners(router, listener, tls, shutdown).await
}

/// Reloads the aclfile on every SIGHUP (as ACL LOAD does: a bad file changes nothing), next to
/// the membership reload the binary runs on the same signal.
#[cfg(unix)]
async fn reload_acl_on_sighup(router: Arc<Router>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match router.acl.load_file() {
            Ok(gone) => {
                for c in router.clients.all() {
                    let name = ringcache_protocol::clients::lock(&c.user).clone();
                    if gone.iter().any(|g| **g == *name) {
                        c.kill();
                    }
                }
                tracing::info!("SIGHUP: aclfile reloaded");
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: aclfile not reloaded"),
        }
    }
}
