//! The change lease: one router at a time changes the ring. Before a membership change, a
//! rollback or a failover, a router takes `TOPOLOGY LEASE` on every reachable node in shard-id
//! order, so of two routers starting changes at once the first node refuses one
//! (`-CHANGEBUSY <holder> <what>`), which gives back what it took. The holder renews it while its
//! change runs; if the holder dies the lease lapses after [`TTL`] and another router's epoch sync
//! takes the change over from the nodes' record. A `RING CANCEL` sent to another router reaches
//! the holder through the lease: that router marks it on the nodes (`TOPOLOGY ASKCANCEL`) and the
//! holder's next renewal answers `+CANCEL`.

use std::sync::Arc;
use std::time::Duration;

use ringcache_protocol::wire::Topology as TopologyCmd;
use ringcache_protocol::Reply;

use crate::pools::PoolState;
use crate::rebalance::node_conn::{connect, send_one};
use crate::rebalance::publish::nodes_of;
use crate::state::Router;

/// How long a lease lasts unless renewed: how soon a dead router's change is taken over.
pub const TTL: Duration = Duration::from_secs(3);
/// How often the holder renews it.
const RENEW: Duration = Duration::from_secs(1);
/// How often the holder checks whether its change is over.
const CHECK: Duration = Duration::from_millis(100);

/// A lease taken on `addrs`; given back when dropped unless handed to [`Lease::keep_while`].
///
/// [`ChangeError`]: crate::rebalance::ChangeError
#[derive(Debug)]
pub struct Lease {
    router: Arc<Router>,
    pool: Arc<PoolState>,
    addrs: Vec<String>,
    what: String,
    kept: bool,
    /// Set when a renewal finds another router holding the lease (see [`Lease::on_lost`]).
    lost: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Why the lease was not granted (as a client error: [`ChangeError`]'s `From`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Another router holds it for `what`.
    Busy { holder: String, what: String },
    /// No node answered.
    NoNode,
}

impl Lease {
    /// Takes the lease for `what` on every reachable node of `pool`'s current ring (primaries
    /// and replicas), in shard-id order; on a refusal gives back what it took.
    pub async fn take(
        router: &Arc<Router>,
        pool: &Arc<PoolState>,
        what: &str,
    ) -> Result<Lease, Refused> {
        let mut lease = Lease {
            router: router.clone(),
            pool: pool.clone(),
            addrs: Vec::new(),
            what: what.to_string(),
            kept: false,
            lost: None,
        };
        // A change of this router holds the lease already and its keeper gives it back: a
        // failover or a re-pointing meanwhile must neither rename nor release it.
        if pool.rebalance.in_progress() {
            lease.kept = true;
            return Ok(lease);
        }
        let topo = pool.topology.load_full();
        // Replicas too: a shard whose only primary is down still has a node to decide on.
        let mut nodes: Vec<(String, String)> = nodes_of(&topo)
            .into_iter()
            .map(|(addr, id)| (id, addr))
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        for (_, addr) in &nodes {
            match lease.ask(addr).await {
                Ok(Some(_)) => lease.addrs.push(addr.to_string()),
                // Down, or a node of a build without leases: the others decide.
                Ok(None) => {}
                Err(refused) => return Err(refused),
            }
        }
        if lease.addrs.is_empty() {
            return Err(Refused::NoNode);
        }
        Ok(lease)
    }

    /// `Ok(Some(cancel))`: granted (`cancel`: another router was asked to cancel this change);
    /// `Ok(None)`: no answer; `Err`: another holder's.
    async fn ask(&self, addr: &str) -> Result<Option<bool>, Refused> {
        let timeout = self.router.config.connect_timeout;
        let cmd = TopologyCmd::Lease {
            holder: self.router.run_id.clone(),
            ttl_ms: TTL.as_millis() as u64,
            what: self.what.clone(),
        };
        let Ok(mut c) = connect(&self.router, addr).await else {
            return Ok(None);
        };
        match c.call_wire(&cmd, timeout).await {
            Ok(Reply::Error(e)) => match e.strip_prefix("CHANGEBUSY ") {
                Some(rest) => {
                    let (holder, what) = rest.split_once(' ').unwrap_or((rest, ""));
                    Err(Refused::Busy {
                        holder: holder.to_string(),
                        what: what.to_string(),
                    })
                }
                None => Ok(None),
            },
            Ok(Reply::Status(s)) => Ok(Some(s == "CANCEL")),
            Ok(Reply::StatusOwned(s)) => Ok(Some(s == "CANCEL")),
            Ok(_) => Ok(Some(false)),
            Err(_) => Ok(None),
        }
    }

    /// Sets `flag` if a renewal finds another router holding the lease (this one was cut off
    /// longer than the lease lasts): the work it guards should stop.
    pub fn on_lost(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> Lease {
        self.lost = Some(flag);
        self
    }

    /// Renews the lease every second while `running` says so, then gives it back (checked ten
    /// times a second, so the next change, through any router, need not wait for a renewal).
    pub fn keep_while(mut self, running: impl Fn() -> bool + Send + 'static) {
        self.kept = true;
        tokio::spawn(async move {
            let mut stop = self.router.stop_signal();
            let mut renewed = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(CHECK) => {}
                }
                if !running() {
                    break;
                }
                if renewed.elapsed() < RENEW {
                    continue;
                }
                renewed = tokio::time::Instant::now();
                for addr in &self.addrs {
                    match self.ask(addr).await {
                        Ok(Some(true)) => self.pool.rebalance.cancel_asked_elsewhere(),
                        Err(Refused::Busy { holder, what }) => {
                            tracing::warn!(node = %addr, %holder, %what, "another router took the change lease (this one was cut off longer than its lease)");
                            if let Some(lost) = &self.lost {
                                lost.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                        _ => {}
                    }
                }
            }
            // Over (or this router stops): the lease goes back even with the change unfinished,
            // so another router takes it over at once.
            release_on(&self.router, std::mem::take(&mut self.addrs)).await;
        });
    }

    /// Gives the lease back now.
    pub async fn release(mut self) {
        self.kept = true;
        // A change this router took over meanwhile holds it now (same holder on the nodes).
        if !self.pool.rebalance.in_progress() {
            release_on(&self.router, std::mem::take(&mut self.addrs)).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.kept || self.addrs.is_empty() || self.pool.rebalance.in_progress() {
            return;
        }
        let (router, addrs) = (self.router.clone(), std::mem::take(&mut self.addrs));
        tokio::spawn(async move { release_on(&router, addrs).await });
    }
}

async fn release_on(router: &Router, addrs: Vec<String>) {
    let cmd = TopologyCmd::Release {
        holder: router.run_id.clone(),
    };
    let sends = addrs.iter().map(|a| send_one(router, a, &cmd));
    futures::future::join_all(sends).await;
}

/// `RING CANCEL` on a router following another's change: asks the holder of the lease, through
/// the primaries, to cancel it; the change asked about, or `None` if no lease runs.
pub async fn ask_cancel(router: &Router, pool: &PoolState) -> Option<String> {
    let topo = pool.topology.load_full();
    let timeout = router.config.connect_timeout;
    for s in topo.serving_shards() {
        let Ok(mut c) = connect(router, &s.primary).await else {
            continue;
        };
        match c.call_wire(&TopologyCmd::AskCancel, timeout).await {
            Ok(Reply::Bulk(what)) => return Some(String::from_utf8_lossy(&what).into_owned()),
            Ok(Reply::Nil) => return None,
            _ => {}
        }
    }
    None
}
