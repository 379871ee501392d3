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
pub mod io_threads;
pub mod local;
pub mod merge;
pub mod metrics;
pub mod proxy;
pub mod route;
pub mod topology;
pub mod upstream;

use std::future::Future;
use std::io;

use tokio::net::TcpListener;

pub use config::{load_config, parse_config, ConfigError, RouterConfig};
pub use proxy::Router;

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
    tracing::info!(
        addr = %listener.local_addr()?,
        shards = router.topology.load().shards.len(),
        "router serving"
    );
    proxy::serve(router, listener, shutdown).await
}
