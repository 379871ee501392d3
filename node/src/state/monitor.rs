//! MONITOR: the connections that see every command the node runs, each as one status line
//! (`ringcache_protocol::monitor`), queued in their mailboxes under the pub/sub output limit, so
//! a monitor that stops reading is cut off rather than buffered for.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::pubsub::{BufferLimit, Mailbox};

#[derive(Default)]
pub struct Monitors {
    list: RwLock<Vec<Arc<Mailbox>>>,
    /// How many there are, read on every command without the lock.
    count: AtomicUsize,
}

impl Monitors {
    /// Whether any connection monitors: the one check every command pays.
    #[inline]
    pub fn active(&self) -> bool {
        self.count.load(Relaxed) > 0
    }

    pub fn add(&self, mb: &Arc<Mailbox>) {
        let mut l = self.list.write().unwrap_or_else(|e| e.into_inner());
        if !l.iter().any(|m| m.id == mb.id) {
            l.push(mb.clone());
            self.count.store(l.len(), Relaxed);
        }
    }

    pub fn remove(&self, id: u64) {
        let mut l = self.list.write().unwrap_or_else(|e| e.into_inner());
        l.retain(|m| m.id != id);
        self.count.store(l.len(), Relaxed);
    }

    /// Sends one command, run by `client` (its address, or `lua`), to every monitor.
    pub fn feed(&self, client: &str, args: &[Bytes], limit: BufferLimit) {
        let line = ringcache_protocol::monitor::line_now(client, args);
        for m in self.list.read().unwrap_or_else(|e| e.into_inner()).iter() {
            m.deliver(&line, limit);
        }
    }
}
