//! The router's registry of its own clients (`ringcache_protocol::clients`), with what the router
//! adds per client: when it last ran a command, and the ring epoch its requests were planned on.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ringcache_protocol::clients::ClientExt;
use ringcache_protocol::Protocol;

pub(crate) use ringcache_protocol::clients::lock;

/// The router's per-client state, read through the handle (`handle.busy_epoch`).
#[derive(Debug, Default)]
pub struct RouterClient {
    /// Milliseconds since the handle's `created` of the last command.
    pub last_active: AtomicU64,
    /// Epoch of the ring this client's outstanding requests were planned on, 0 when it has none
    /// (a membership change waits for clients on an older ring to finish:
    /// `rebalance::publish::quiesce`).
    pub busy_epoch: AtomicU64,
}

impl ClientExt for RouterClient {
    fn idle_secs(&self, age: Duration) -> u64 {
        (age.as_millis() as u64).saturating_sub(self.last_active.load(Relaxed)) / 1000
    }

    fn mark_active(&self, created: Instant) {
        self.last_active
            .store(created.elapsed().as_millis() as u64, Relaxed);
    }
}

pub type ClientHandle = ringcache_protocol::clients::ClientHandle<RouterClient>;
pub type Clients = ringcache_protocol::clients::Clients<RouterClient>;

/// The client a request travels for: its IO thread, protocol and id pick the upstream
/// connection, so its requests to one shard keep their order.
#[derive(Debug, Clone, Copy)]
pub struct Who {
    pub io: usize,
    pub proto: Protocol,
    pub id: u64,
    /// The pool of its keys that no route matches (its listener's).
    pub pool: usize,
}
