//! A node's replication state: whom it follows, how far it got, and the replicas attached to it.
//! The replication engine (`crate::replication`) drives it; INFO and ROLE read it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::keyspace::{lock, now_ms};

/// One replica attached to this primary.
pub struct ReplicaLink {
    pub addr: SocketAddr,
    pub listening_port: AtomicU64,
    tx: mpsc::Sender<Bytes>,
    pub ack_offset: AtomicU64,
    pub last_ack_ms: AtomicI64,
    pub broken: AtomicBool,
    /// Bytes queued and not yet written to the socket (the snapshot waits while they pile up).
    pub queued_bytes: AtomicUsize,
    /// While the snapshot runs: which buckets have reached the queue.
    sent: Box<[AtomicBool]>,
    snapshotting: AtomicBool,
}

impl ReplicaLink {
    pub fn new(addr: SocketAddr, listening_port: u16, tx: mpsc::Sender<Bytes>) -> ReplicaLink {
        ReplicaLink {
            addr,
            listening_port: AtomicU64::new(u64::from(listening_port)),
            tx,
            ack_offset: AtomicU64::new(0),
            last_ack_ms: AtomicI64::new(now_ms()),
            broken: AtomicBool::new(false),
            queued_bytes: AtomicUsize::new(0),
            sent: (0..ringcache_protocol::hash::BUCKETS)
                .map(|_| AtomicBool::new(false))
                .collect(),
            snapshotting: AtomicBool::new(true),
        }
    }

    /// Whether bucket `b` has yet to reach this replica (the caller holds its lock).
    pub fn needs_bucket(&self, b: usize) -> bool {
        self.snapshotting.load(SeqCst) && !self.sent.get(b).is_none_or(|s| s.load(SeqCst))
    }

    /// Queues bucket `b`'s snapshot, once (the caller holds its lock).
    pub fn push_bucket(&self, b: usize, msg: Bytes) {
        if self.sent.get(b).is_some_and(|s| !s.swap(true, SeqCst)) && !msg.is_empty() {
            self.send(msg);
        }
    }

    /// Every bucket was sent: writes need no more checks.
    pub fn snapshot_done(&self) {
        self.snapshotting.store(false, SeqCst);
    }

    pub fn is_snapshotting(&self) -> bool {
        self.snapshotting.load(SeqCst)
    }

    /// Queues bytes for the socket; a full queue marks the link broken (the replica resyncs).
    pub fn send(&self, msg: Bytes) {
        let len = msg.len();
        if self.tx.try_send(msg).is_err() {
            if !self.broken.swap(true, Relaxed) {
                tracing::warn!(replica = %self.addr, "replica too far behind; dropping it (it will resync)");
            }
            return;
        }
        self.queued_bytes.fetch_add(len, Relaxed);
    }

    /// `n` queued bytes reached the socket.
    pub fn drained(&self, n: usize) {
        self.queued_bytes.fetch_sub(n, Relaxed);
    }
}

/// Where a replica is in talking to its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    Down = 0,
    Syncing = 1,
    Up = 2,
}

/// Replication state of a node.
pub struct Replication {
    /// The primary this node replicates from (`host:port`), if it is a replica.
    primary: Mutex<Option<String>>,
    is_replica: AtomicBool,
    /// Bumped on every REPLICAOF so the previous replication task stops.
    generation: AtomicU64,
    /// Primary: bytes of writes propagated. Replica: the primary's offset applied so far.
    offset: AtomicU64,
    /// Primary: writes propagated. Replica: writes applied (lost-write accounting on failover).
    writes: AtomicU64,
    /// Replica: the primary's offset and write count as last announced.
    primary_offset: AtomicU64,
    primary_writes: AtomicU64,
    last_io_ms: AtomicI64,
    /// A [`LinkState`].
    link: AtomicU8,
    links: Mutex<Vec<Arc<ReplicaLink>>>,
    has_replicas: AtomicBool,
    replid: Mutex<String>,
    /// Snapshots running now.
    snapshots: AtomicUsize,
    /// `min-replicas-to-write` and `min-replicas-max-lag` (seconds): a primary with fewer
    /// replicas heard from within the lag refuses writes (NOREPLICAS).
    pub min_replicas: AtomicU64,
    pub min_replicas_lag_s: AtomicU64,
    /// Woken whenever a replica acknowledges an offset (WAIT's clients count again).
    pub acked: tokio::sync::Notify,
}

impl Replication {
    pub fn new(run_id: &str) -> Self {
        Replication {
            primary: Mutex::new(None),
            is_replica: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            offset: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            primary_offset: AtomicU64::new(0),
            primary_writes: AtomicU64::new(0),
            last_io_ms: AtomicI64::new(0),
            link: AtomicU8::new(LinkState::Down as u8),
            links: Mutex::new(Vec::new()),
            has_replicas: AtomicBool::new(false),
            replid: Mutex::new(run_id.to_string()),
            snapshots: AtomicUsize::new(0),
            acked: tokio::sync::Notify::new(),
            min_replicas: AtomicU64::new(0),
            min_replicas_lag_s: AtomicU64::new(10),
        }
    }

    /// A primary asked for `min-replicas-to-write` good replicas that has fewer: replicas
    /// attached and heard from within `min-replicas-max-lag` (as Redis, a lag of 0 checks nothing).
    pub fn too_few_replicas(&self) -> bool {
        let wanted = self.min_replicas.load(Relaxed);
        let lag_s = self.min_replicas_lag_s.load(Relaxed);
        if wanted == 0 || lag_s == 0 || self.is_replica() {
            return false;
        }
        let now = now_ms();
        let limit = i64::try_from(lag_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let good = lock(&self.links)
            .iter()
            .filter(|l| !l.broken.load(Relaxed) && now - l.last_ack_ms.load(Relaxed) <= limit)
            .count();
        (good as u64) < wanted
    }

    pub fn is_replica(&self) -> bool {
        self.is_replica.load(Relaxed)
    }

    /// The primary this node follows, as `host:port`.
    pub fn primary(&self) -> Option<String> {
        lock(&self.primary).clone()
    }

    /// The primary this node follows, as CONFIG GET replicaof shows it (`host port`).
    pub fn primary_addr(&self) -> Option<String> {
        lock(&self.primary).clone().map(|p| p.replacen(':', " ", 1))
    }

    /// Milliseconds since the primary was last heard from (replicas), for bounded-stale reads.
    pub fn lag_ms(&self) -> i64 {
        (now_ms() - self.last_io_ms.load(Relaxed)).max(0)
    }

    pub fn link(&self) -> LinkState {
        match self.link.load(Relaxed) {
            1 => LinkState::Syncing,
            2 => LinkState::Up,
            _ => LinkState::Down,
        }
    }

    pub fn set_link(&self, state: LinkState) {
        self.link.store(state as u8, Relaxed);
    }

    /// Primary: bytes of writes propagated. Replica: the primary's offset applied so far.
    pub fn offset(&self) -> u64 {
        self.offset.load(Relaxed)
    }

    /// Primary: writes propagated. Replica: writes applied.
    pub fn writes(&self) -> u64 {
        self.writes.load(Relaxed)
    }

    pub fn replid(&self) -> String {
        lock(&self.replid).clone()
    }

    pub fn set_replid(&self, replid: String) {
        *lock(&self.replid) = replid;
    }

    /// Whether any replica is attached (writes are encoded for them only then).
    pub fn has_replicas(&self) -> bool {
        self.has_replicas.load(Relaxed)
    }

    /// The replicas attached now.
    pub fn replicas(&self) -> Vec<Arc<ReplicaLink>> {
        lock(&self.links).clone()
    }

    /// Queues `msg` (`writes` commands) for every replica, counted in the offset under the links
    /// lock: the offset a replica attaches at counts exactly the writes not queued for it. A
    /// replica whose queue is full is marked broken (it resyncs). `before` runs first for each
    /// replica still taking its snapshot, under the same lock, and says whether `msg` still goes
    /// to it (not when `before` sent it the state `msg` leaves).
    pub fn queue(&self, msg: Bytes, writes: u64, mut before: impl FnMut(&ReplicaLink) -> bool) {
        let links = lock(&self.links);
        self.offset.fetch_add(msg.len() as u64, Relaxed);
        self.writes.fetch_add(writes, Relaxed);
        let snapshots = self.snapshots.load(Relaxed) > 0;
        for l in links.iter() {
            if snapshots && l.is_snapshotting() && !before(l) {
                // The buckets' state went instead; the replica still counts these writes, as
                // this offset does, or it would trail its primary for good.
                let mut skip = bytes::BytesMut::new();
                let (n, w) = (msg.len().to_string(), writes.to_string());
                ringcache_protocol::resp::encode_request(
                    &mut skip,
                    [&b"REPLCONF"[..], b"SKIP", n.as_bytes(), w.as_bytes()],
                );
                l.send(skip.freeze());
                continue;
            }
            l.send(msg.clone());
        }
    }

    /// Replicas past their snapshot that acknowledged `offset` or more (WAIT's count; Redis
    /// counts its online replicas only, too).
    pub fn acked_at(&self, offset: u64) -> usize {
        lock(&self.links)
            .iter()
            .filter(|l| {
                !l.broken.load(Relaxed)
                    && !l.is_snapshotting()
                    && l.ack_offset.load(Relaxed) >= offset
            })
            .count()
    }

    /// Asks every replica to acknowledge its offset now (`REPLCONF GETACK *` in its stream,
    /// after the writes queued before it) rather than at its next heartbeat.
    pub fn request_acks(&self) {
        let mut msg = bytes::BytesMut::new();
        ringcache_protocol::resp::encode_request(&mut msg, [&b"REPLCONF"[..], b"GETACK", b"*"]);
        let msg = msg.freeze();
        for l in lock(&self.links).iter() {
            l.send(msg.clone());
        }
    }

    /// The replicas still taking their snapshot.
    pub fn snapshotting(&self) -> Vec<Arc<ReplicaLink>> {
        if self.snapshots.load(Relaxed) == 0 {
            return Vec::new();
        }
        lock(&self.links)
            .iter()
            .filter(|l| l.is_snapshotting())
            .cloned()
            .collect()
    }

    /// Counts a snapshot starting (`true`) or ending.
    pub fn snapshot_running(&self, running: bool) {
        if running {
            self.snapshots.fetch_add(1, Relaxed);
        } else {
            self.snapshots.fetch_sub(1, Relaxed);
        }
    }

    /// Registers a replica's link: every write queued after this reaches it. Returns the offset
    /// and write count its snapshot starts at.
    pub fn attach(&self, link: Arc<ReplicaLink>) -> (u64, u64) {
        let mut links = lock(&self.links);
        links.push(link);
        self.has_replicas.store(true, Relaxed);
        (self.offset.load(Relaxed), self.writes.load(Relaxed))
    }

    pub fn detach(&self, link: &Arc<ReplicaLink>) {
        let mut links = lock(&self.links);
        links.retain(|l| !Arc::ptr_eq(l, link));
        self.has_replicas.store(!links.is_empty(), Relaxed);
    }

    /// Stops following (REPLICAOF NO ONE): returns the former primary.
    pub fn become_primary(&self) -> Option<String> {
        let was = lock(&self.primary).take();
        self.generation.fetch_add(1, Relaxed);
        self.is_replica.store(false, Relaxed);
        self.set_link(LinkState::Down);
        // A new history starts here; replicas of the old primary must resync from this one.
        *lock(&self.replid) = format!("{:016x}{:024x}", now_ms(), rand::random::<u128>() >> 32);
        was
    }

    /// Starts following `primary` (`host:port`): returns the generation the replication task
    /// runs under (see [`Replication::is_current`]).
    pub fn become_replica(&self, primary: &str) -> u64 {
        *lock(&self.primary) = Some(primary.to_string());
        self.is_replica.store(true, Relaxed);
        self.set_link(LinkState::Down);
        let generation = self.generation.fetch_add(1, Relaxed) + 1;
        // Replicas of this node (if it was a primary) must follow the new primary themselves.
        for l in lock(&self.links).drain(..) {
            l.broken.store(true, Relaxed);
        }
        self.has_replicas.store(false, Relaxed);
        generation
    }

    /// Whether `generation` is still the latest REPLICAOF (an older task must stop).
    pub fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Relaxed) == generation
    }

    /// A full resync starts at the primary's `offset` and `writes`.
    pub fn start_sync(&self, offset: u64, writes: u64) {
        self.offset.store(offset, Relaxed);
        self.writes.store(writes, Relaxed);
        self.primary_offset.store(offset, Relaxed);
        self.primary_writes.store(writes, Relaxed);
        self.last_io_ms.store(now_ms(), Relaxed);
    }

    /// A replica applied one write of `bytes` from its primary's stream.
    pub fn applied(&self, bytes: u64) {
        self.skipped(bytes, 1);
    }

    /// A replica counts `writes` writes of `bytes` it got as their buckets' state instead.
    pub fn skipped(&self, bytes: u64, writes: u64) {
        self.offset.fetch_add(bytes, Relaxed);
        self.writes.fetch_add(writes, Relaxed);
    }

    pub fn heard_from_primary(&self) {
        self.last_io_ms.store(now_ms(), Relaxed);
    }

    /// The primary's offset and write count as its heartbeat announced them.
    pub fn primary_announced(&self, offset: u64, writes: u64) {
        self.primary_offset.store(offset, Relaxed);
        self.primary_writes.store(writes, Relaxed);
    }

    /// INFO's replication section.
    pub fn info(&self, out: &mut String) {
        let offset = self.offset.load(Relaxed);
        if let Some(p) = lock(&self.primary).clone() {
            let (host, port) = p.rsplit_once(':').unwrap_or((p.as_str(), "0"));
            let status = match self.link() {
                LinkState::Up => "up",
                _ => "down",
            };
            let _ = write!(
                out,
                "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{status}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_repl_offset:{offset}\r\nslave_read_only:1\r\nconnected_slaves:0\r\n",
                self.lag_ms() / 1000,
                u8::from(self.link() == LinkState::Syncing),
            );
        } else {
            let links = lock(&self.links);
            let _ = write!(out, "role:master\r\nconnected_slaves:{}\r\n", links.len());
            for (i, l) in links.iter().enumerate() {
                let _ = write!(
                    out,
                    "slave{i}:ip={},port={},state=online,offset={},lag={}\r\n",
                    l.addr.ip(),
                    l.listening_port.load(Relaxed),
                    l.ack_offset.load(Relaxed),
                    (now_ms() - l.last_ack_ms.load(Relaxed)).max(0) / 1000,
                );
            }
        }
        let primary_offset = if self.is_replica() {
            self.primary_offset.load(Relaxed).max(offset)
        } else {
            offset
        };
        let _ = write!(
            out,
            "master_replid:{}\r\nmaster_repl_offset:{primary_offset}\r\nringcache_repl_writes:{}\r\nringcache_repl_lag_bytes:{}\r\nringcache_repl_lag_ms:{}\r\n",
            lock(&self.replid),
            self.writes.load(Relaxed),
            primary_offset.saturating_sub(offset),
            if self.is_replica() { self.lag_ms() } else { 0 },
        );
    }
}
