//! The node's registry of connected clients (`ringcache_protocol::clients`), with what the node
//! adds per client: when it last ran a command, in wall-clock milliseconds.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ringcache_protocol::clients::ClientExt;

use crate::keyspace::now_ms;

/// The node's per-client state, read through the handle (`handle.last_active_ms`).
#[derive(Debug)]
pub struct NodeClient {
    /// `now_ms()` at the client's last command (at connect before its first).
    pub last_active_ms: AtomicI64,
    /// Channels, patterns and shard channels subscribed to (for CLIENT LIST).
    pub subscriptions: [AtomicU32; 3],
}

impl Default for NodeClient {
    fn default() -> Self {
        NodeClient {
            last_active_ms: AtomicI64::new(now_ms()),
            subscriptions: Default::default(),
        }
    }
}

impl NodeClient {
    pub fn set_subscriptions(&self, counts: [usize; 3]) {
        for (c, n) in self.subscriptions.iter().zip(counts) {
            c.store(u32::try_from(n).unwrap_or(u32::MAX), Relaxed);
        }
    }
}

impl ClientExt for NodeClient {
    fn idle_secs(&self, _age: Duration) -> u64 {
        ((now_ms() - self.last_active_ms.load(Relaxed)).max(0) / 1000) as u64
    }

    fn mark_active(&self, _created: Instant) {
        self.last_active_ms.store(now_ms(), Relaxed);
    }

    fn subscriptions(&self) -> [u32; 3] {
        self.subscriptions.each_ref().map(|c| c.load(Relaxed))
    }
}

pub type ClientHandle = ringcache_protocol::clients::ClientHandle<NodeClient>;
pub type Clients = ringcache_protocol::clients::Clients<NodeClient>;
