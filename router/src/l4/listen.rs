//! Starting the config's `[[l4]]` listeners: each is bound, gets its pool (a fixed list of
//! backends, or a shard's replicas that follow the topology through failovers), its health
//! checks and its accept loop, on the L4 threads.

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::runtime::Handle;

use crate::config::L4Pool;
use crate::io_threads::IoThreads;
use crate::l4::forward::serve;
use crate::l4::health::{health_loop, HealthSettings, MemberSource};
use crate::l4::pool::{Member, Pool};
use crate::pools::View;
use crate::state::Router;

/// Binds every `[[l4]]` listener of the router's config and starts serving it (printing
/// `ringcache router l4 NAME on ADDR`); the pools go to `router.l4_pools`.
pub async fn start(router: &Arc<Router>) -> io::Result<()> {
    // L4 connections get threads of their own (see `config::default_l4_threads`); 0 shares the
    // IO threads.
    let l4_io: Vec<Handle> = match router.config.l4_threads {
        _ if router.config.l4.is_empty() => Vec::new(),
        0 => router.io.handles().to_vec(),
        n => IoThreads::start_named(n, "ringcache-l4", &router.stop_signal())?
            .handles()
            .to_vec(),
    };
    for l4 in &router.config.l4 {
        let l = TcpListener::bind(l4.listen.as_str()).await.map_err(|e| {
            io::Error::new(e.kind(), format!("binding L4 listener {}: {e}", l4.listen))
        })?;
        let members = match &l4.pool {
            L4Pool::Addrs(m) => m.clone(),
            L4Pool::Replicas(shard) => {
                let Some(members) = replicas_of(&router.view(), shard) else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("L4 pool replicas:{shard}: no such shard"),
                    ));
                };
                members
            }
        };
        let name = match &l4.pool {
            L4Pool::Replicas(s) => format!("replicas:{s}"),
            L4Pool::Addrs(_) => l4.listen.clone(),
        };
        let pool = Arc::new(Pool::new(name.clone(), l4.balance, &members));
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
        let source: Option<MemberSource> = match &l4.pool {
            L4Pool::Replicas(shard) => {
                let (router, shard) = (router.clone(), shard.clone());
                Some(Arc::new(move || {
                    replicas_of(&router.view(), &shard).unwrap_or_default()
                }))
            }
            L4Pool::Addrs(_) => None,
        };
        // A shard's replicas are nodes: checked over TLS when the router's links are.
        let tls = match &l4.pool {
            L4Pool::Replicas(_) => router.config.node_link.tls.clone(),
            L4Pool::Addrs(_) => None,
        };
        tokio::spawn(health_loop(
            pool.clone(),
            HealthSettings::default(),
            tls,
            source,
            router.stop_signal(),
        ));
        tokio::spawn(serve(
            l,
            pool,
            router.config.connect_timeout,
            l4_io.clone(),
            router.stop_signal(),
        ));
    }
    Ok(())
}

/// The replicas of `shard` as pool members (weight 1), if the topology has that shard.
fn replicas_of(topo: &View, shard: &str) -> Option<Vec<Member>> {
    let s = topo.shards.iter().find(|s| s.id == shard)?;
    Some(
        s.replicas
            .iter()
            .map(|r| Member {
                addr: r.clone(),
                weight: 1,
            })
            .collect(),
    )
}
