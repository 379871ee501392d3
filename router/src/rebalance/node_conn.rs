//! Control links to nodes: epochs, migration batches and probes go over connections of their
//! own (the shared `ringcache_client::Client`), apart from the multiplexed client pools, so a
//! long batch never delays client requests. The cluster's own commands are the protocol's
//! typed wire values.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ringcache_client::{Client, LinkSpec};
use ringcache_protocol::wire::{TopologyState, WireCommand};
use ringcache_protocol::Reply;

use crate::clients::lock;
use crate::state::Router;

/// `TOPOLOGY GET` → the node's epoch, shard id and change record.
pub(super) async fn node_state(
    conn: &mut Client,
    timeout: Duration,
) -> Result<TopologyState, String> {
    let addr = conn.addr().to_string();
    match conn
        .call_wire(&ringcache_protocol::wire::Topology::Get, timeout)
        .await
        .map_err(|e| e.to_string())?
    {
        Reply::Error(e) => Err(format!("{addr}: {e}")),
        r => TopologyState::from_reply(&r).map_err(|e| format!("{addr}: {e}")),
    }
}

/// Connects to one node and sends it one of the cluster's commands; `Err` names the node and
/// why (`STALEEPOCH`: the node is ahead).
pub(crate) async fn send_one(
    router: &Router,
    addr: &str,
    cmd: &impl WireCommand,
) -> Result<(), String> {
    let (timeout, link) = (router.config.connect_timeout, &router.config.node_link);
    ringcache_client::call_once(addr, &cmd.args(), timeout, link)
        .await
        .map(|_| ())
}

/// An integer reply (or a bulk string holding one).
pub(super) fn as_int(r: &Reply) -> Option<i64> {
    ringcache_protocol::wire::reply_int(r)
}

/// Connects to `addr` within `timeout`, the error as text naming the node.
/// Connects to `addr` within the router's connect timeout and authenticates as its
/// `node_link` says, the error as text naming the node.
pub(crate) async fn connect(router: &Router, addr: &str) -> Result<Client, String> {
    open(
        addr,
        router.config.connect_timeout,
        &router.config.node_link,
    )
    .await
}

async fn open(addr: &str, timeout: Duration, link: &LinkSpec) -> Result<Client, String> {
    Client::open(addr, timeout, link)
        .await
        .map_err(|e| e.to_string())
}

/// Idle control connections by node address, reused by the epoch sync (several times a second
/// to every node: a connection each time would cost every node an accept per check).
#[derive(Debug, Default)]
pub struct ControlLinks(Mutex<HashMap<String, Vec<Client>>>);

/// Idle links kept per node (the sync, a change and a failover may check a node at once).
const IDLE_PER_NODE: usize = 2;

impl ControlLinks {
    /// `TOPOLOGY GET` on `addr` over an idle link (or a new one); the link is kept if it worked.
    pub(crate) async fn node_state(
        &self,
        addr: &str,
        timeout: Duration,
        link: &LinkSpec,
    ) -> Result<TopologyState, String> {
        // An idle link may have died with a restarted node (it fails at once): then once more on
        // a new one. A link that timed out does not get a second wait.
        if let Some(mut c) = self.take(addr) {
            let asked = std::time::Instant::now();
            match node_state(&mut c, timeout).await {
                Ok(st) => {
                    self.put(addr, c);
                    return Ok(st);
                }
                Err(e) if asked.elapsed() >= timeout / 2 => return Err(e),
                Err(_) => {}
            }
        }
        let mut c = open(addr, timeout, link).await?;
        let st = node_state(&mut c, timeout).await?;
        self.put(addr, c);
        Ok(st)
    }

    fn take(&self, addr: &str) -> Option<Client> {
        let mut links = lock(&self.0);
        links.get_mut(addr).and_then(Vec::pop)
    }

    fn put(&self, addr: &str, c: Client) {
        let mut links = lock(&self.0);
        let idle = links.entry(addr.to_string()).or_default();
        if idle.len() < IDLE_PER_NODE {
            idle.push(c);
        }
    }

    /// Forgets links to nodes no longer in `keep` (a shard left, a primary was replaced).
    pub(super) fn retain(&self, keep: &[&str]) {
        let mut links = lock(&self.0);
        links.retain(|addr, _| keep.contains(&addr.as_str()));
    }
}
