//! Control links to nodes: epochs, migration batches and probes go over connections of their
//! own (the shared `ringcache_client::Client`), apart from the multiplexed client pools, so a
//! long batch never delays client requests. The cluster's own commands are the protocol's
//! typed wire values.

use std::time::Duration;

use ringcache_client::Client;
use ringcache_protocol::wire::{TopologyState, WireCommand};
use ringcache_protocol::Reply;

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
pub(super) async fn send_one(
    addr: &str,
    cmd: &impl WireCommand,
    timeout: Duration,
) -> Result<(), String> {
    ringcache_client::call_once(addr, &cmd.args(), timeout)
        .await
        .map(|_| ())
}

/// An integer reply (or a bulk string holding one).
pub(super) fn as_int(r: &Reply) -> Option<i64> {
    ringcache_protocol::wire::reply_int(r)
}

/// Connects to `addr` within `timeout`, the error as text naming the node.
pub(super) async fn connect(addr: &str, timeout: Duration) -> Result<Client, String> {
    Client::connect(addr, timeout)
        .await
        .map_err(|e| e.to_string())
}
