//! The router's own clients: CLIENT ID/LIST/INFO/KILL, the connection limit, INFO clients.
//! (The node keeps the same registry in `node/src/clients.rs`; the two could share one in
//! `protocol` later.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the registry knows of one connection; the connection task owns the socket.
#[derive(Debug)]
pub struct ClientHandle {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    pub name: Mutex<Option<Bytes>>,
    /// Milliseconds since `created` of the last command.
    pub last_active: AtomicU64,
    pub last_cmd: Mutex<&'static str>,
    pub resp: AtomicU8,
    pub killed: AtomicBool,
    /// Woken by CLIENT KILL and by shutdown; a stored permit is not lost if the task is busy.
    pub kill: Notify,
    /// Epoch of the ring this client's outstanding requests were planned on, 0 when it has none
    /// (a membership change waits for clients on an older ring to finish: `rebalance::quiesce`).
    pub busy_epoch: AtomicU64,
}

impl ClientHandle {
    pub fn kill(&self) {
        self.killed.store(true, Relaxed);
        self.kill.notify_one();
    }

    /// One CLIENT LIST line in Redis's field order (fields a proxy does not track are 0).
    pub fn info_line(&self) -> String {
        let name = lock(&self.name)
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let age = self.created.elapsed();
        let idle_ms = (age.as_millis() as u64).saturating_sub(self.last_active.load(Relaxed));
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={}\n",
            self.id,
            self.addr,
            self.laddr,
            name,
            age.as_secs(),
            idle_ms / 1000,
            lock(&self.last_cmd),
            self.resp.load(Relaxed),
        )
    }
}

/// All connected clients.
#[derive(Debug, Default)]
pub struct Clients {
    next_id: AtomicU64,
    map: Mutex<HashMap<u64, Arc<ClientHandle>>>,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
}

impl Clients {
    /// Registers a connection unless `max` clients are already connected.
    pub fn register(
        &self,
        addr: SocketAddr,
        laddr: SocketAddr,
        max: usize,
    ) -> Option<Arc<ClientHandle>> {
        let mut map = lock(&self.map);
        if map.len() >= max {
            self.rejected_connections.fetch_add(1, Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let handle = Arc::new(ClientHandle {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::new(None),
            last_active: AtomicU64::new(0),
            last_cmd: Mutex::new("NULL"),
            resp: AtomicU8::new(2),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            busy_epoch: AtomicU64::new(0),
        });
        map.insert(id, handle.clone());
        self.total_connections.fetch_add(1, Relaxed);
        Some(handle)
    }

    pub fn unregister(&self, id: u64) {
        lock(&self.map).remove(&id);
    }

    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every client not already killed, in id order.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        let mut v: Vec<_> = lock(&self.map)
            .values()
            .filter(|c| !c.killed.load(Relaxed))
            .cloned()
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub fn kill_all(&self) {
        for c in lock(&self.map).values() {
            c.kill();
        }
    }
}
