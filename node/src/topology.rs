//! The cluster topology as this node knows it (ring epoch and the arcs it owns).

use std::fmt::Write;

use bytes::Bytes;
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::Reply;

use crate::cmd::Ctx;

/// What this node knows of the ring.
pub struct NodeTopology {
    shard_id: Option<String>,
}

impl NodeTopology {
    pub fn new(shard_id: Option<String>) -> Self {
        NodeTopology { shard_id }
    }

    pub fn info(&self, out: &mut String) {
        let _ = write!(
            out,
            "ringcache_shard:{}\r\nringcache_epoch:0\r\n",
            self.shard_id.as_deref().unwrap_or("")
        );
    }
}

/// TOPOLOGY, MIGRATE-KEY, RESTORE-KEYS (cluster-internal commands).
pub fn command(_ctx: &mut Ctx, spec: &CommandSpec, _a: &[Bytes]) -> Reply {
    Reply::Error(format!(
        "ERR {} is not available on this node yet",
        spec.name
    ))
}
