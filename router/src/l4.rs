//! The L4 forwarder: whole TCP connections spliced to a pool of backends (by default a shard's
//! replicas), the backend picked by a balancing policy among the healthy ones.
//!
//! Each accepted connection gets one backend for its whole life; bytes are copied both ways
//! (`copy_bidirectional`), an EOF from one side is passed on as a half-close to the other, and an
//! error on either side closes both. Backends are health-checked with PING in the background.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

/// How a connection picks its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Fewest active connections (ties: the earliest listed).
    #[default]
    LeastConnections,
    RoundRobin,
    /// Smooth weighted round-robin (nginx's): over any window each backend gets its weight's share.
    WeightedRoundRobin,
    /// Fewest active connections per unit of weight.
    WeightedLeastConnections,
    /// The client's IP picks the backend, so one client keeps landing on the same one.
    SourceHash,
}

impl FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "least-connections" | "leastconn" => Policy::LeastConnections,
            "round-robin" | "roundrobin" => Policy::RoundRobin,
            "weighted-round-robin" | "weighted" => Policy::WeightedRoundRobin,
            "weighted-least-connections" => Policy::WeightedLeastConnections,
            "source-hash" | "source" => Policy::SourceHash,
            other => {
                return Err(format!(
                    "'{other}' is not one of least-connections, round-robin, weighted-round-robin, weighted-least-connections, source-hash"
                ))
            }
        })
    }
}

/// A pool member as written in `cluster.toml`: `host:port` or `host:port@weight`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub addr: String,
    pub weight: u32,
}

impl FromStr for Member {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, weight) = match s.rsplit_once('@') {
            Some((a, w)) => (
                a,
                w.parse::<u32>()
                    .ok()
                    .filter(|w| *w > 0)
                    .ok_or_else(|| format!("'{s}': weight must be a whole number ≥ 1"))?,
            ),
            None => (s, 1),
        };
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("'{s}' is not HOST:PORT[@WEIGHT]")),
        }
        Ok(Member {
            addr: addr.to_string(),
            weight,
        })
    }
}

/// One backend of a pool, with its live counters.
#[derive(Debug)]
pub struct Backend {
    pub addr: String,
    pub weight: u32,
    pub active: AtomicUsize,
    pub total: AtomicU64,
    pub healthy: AtomicBool,
    fails: AtomicU32,
    passes: AtomicU32,
}

/// Health-check settings: PING every `interval`, `fall` failures in a row mark a backend down,
/// `rise` successes mark it up again.
#[derive(Debug, Clone, Copy)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(500),
            fall: 3,
            rise: 2,
        }
    }
}

/// A set of backends and the policy choosing among them.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub policy: Policy,
    /// Swapped whole when the pool's membership changes (a `replicas:<id>` pool after a failover).
    backends: arc_swap::ArcSwap<Vec<Arc<Backend>>>,
    next: AtomicUsize,
    /// Smooth weighted round-robin's running weights, one per backend.
    current: Mutex<Vec<i64>>,
}

impl Pool {
    pub fn new(name: impl Into<String>, policy: Policy, members: &[Member]) -> Pool {
        Pool {
            name: name.into(),
            policy,
            backends: arc_swap::ArcSwap::from_pointee(members.iter().map(new_backend).collect()),
            next: AtomicUsize::new(0),
            current: Mutex::new(vec![0; members.len()]),
        }
    }

    /// The backends now (a snapshot; connections keep the backend they were given).
    pub fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        self.backends.load_full()
    }

    /// Replaces the membership, keeping the counters and health of backends that stay.
    pub fn set_members(&self, members: &[Member]) {
        let old = self.backends.load_full();
        let next: Vec<Arc<Backend>> = members
            .iter()
            .map(|m| {
                old.iter()
                    .find(|b| b.addr == m.addr && b.weight == m.weight)
                    .cloned()
                    .unwrap_or_else(|| new_backend(m))
            })
            .collect();
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *cur = vec![0; next.len()];
        self.backends.store(Arc::new(next));
    }

    /// Picks a healthy backend for a client (None when every backend is down).
    pub fn pick(&self, client: Option<IpAddr>) -> Option<Arc<Backend>> {
        let backends = self.backends.load();
        let healthy: Vec<usize> = (0..backends.len())
            .filter(|&i| backends[i].healthy.load(Relaxed))
            .collect();
        if healthy.is_empty() {
            return None;
        }
        let i = match self.policy {
            Policy::LeastConnections => *healthy
                .iter()
                .min_by_key(|&&i| backends[i].active.load(Relaxed))?,
            Policy::WeightedLeastConnections => *healthy.iter().min_by(|&&a, &&b| {
                // Compare active/weight without division: a.active * b.weight vs b.active * a.weight.
                let (ba, bb) = (&backends[a], &backends[b]);
                let x = ba.active.load(Relaxed) as u64 * u64::from(bb.weight);
                let y = bb.active.load(Relaxed) as u64 * u64::from(ba.weight);
                x.cmp(&y)
            })?,
            Policy::RoundRobin => healthy[self.next.fetch_add(1, Relaxed) % healthy.len()],
            Policy::WeightedRoundRobin => {
                let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
                if cur.len() != backends.len() {
                    *cur = vec![0; backends.len()];
                }
                let total: i64 = healthy.iter().map(|&i| i64::from(backends[i].weight)).sum();
                let mut best = healthy[0];
                for &i in &healthy {
                    cur[i] += i64::from(backends[i].weight);
                    if cur[i] > cur[best] {
                        best = i;
                    }
                }
                cur[best] -= total;
                best
            }
            Policy::SourceHash => {
                let key = match client {
                    Some(IpAddr::V4(ip)) => ip.octets().to_vec(),
                    Some(IpAddr::V6(ip)) => ip.octets().to_vec(),
                    None => Vec::new(),
                };
                let h = ringcache_protocol::hash::raw_hash(&key);
                healthy[(h % healthy.len() as u64) as usize]
            }
        };
        Some(backends[i].clone())
    }

    /// Active connections per backend (metrics, RING STATUS).
    pub fn snapshot(&self) -> Vec<(String, usize, bool)> {
        self.backends
            .load()
            .iter()
            .map(|b| {
                (
                    b.addr.clone(),
                    b.active.load(Relaxed),
                    b.healthy.load(Relaxed),
                )
            })
            .collect()
    }
}

fn new_backend(m: &Member) -> Arc<Backend> {
    Arc::new(Backend {
        addr: m.addr.clone(),
        weight: m.weight.max(1),
        active: AtomicUsize::new(0),
        total: AtomicU64::new(0),
        healthy: AtomicBool::new(true),
        fails: AtomicU32::new(0),
        passes: AtomicU32::new(0),
    })
}

/// Counts a connection on a backend for as long as it lives.
struct Active(Arc<Backend>);

impl Active {
    fn new(b: Arc<Backend>) -> Active {
        b.active.fetch_add(1, Relaxed);
        b.total.fetch_add(1, Relaxed);
        Active(b)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

/// Where an L4 listener's connections run: how many each thread carries, per backend.
///
/// A new connection goes to the thread with the fewest connections to its backend, then the fewest
/// overall, so every thread carries every backend. Plain round robin pinned each backend to one
/// thread (least-connections alternates backends in step with it), and bench-l4 then left the
/// machine 11-15% idle at -P 1 against 3-5% with the mix: each thread ping-pongs with one server.
struct Spread {
    threads: usize,
    /// Live connections per thread, per backend address (addresses of removed backends stay; few).
    by_backend: std::collections::HashMap<String, Arc<[AtomicUsize]>>,
}

impl Spread {
    fn new(threads: usize) -> Spread {
        Spread {
            threads: threads.max(1),
            by_backend: std::collections::HashMap::new(),
        }
    }

    /// Live connections on `thread`, all backends together.
    fn on_thread(&self, thread: usize) -> usize {
        self.by_backend
            .values()
            .map(|counts| counts[thread].load(Relaxed))
            .sum()
    }

    /// Picks the thread for a connection to `backend` and counts it there until the slot drops.
    fn place(&mut self, backend: &str) -> ThreadSlot {
        let threads = self.threads;
        let counts = self
            .by_backend
            .entry(backend.to_string())
            .or_insert_with(|| (0..threads).map(|_| AtomicUsize::new(0)).collect())
            .clone();
        let thread = (0..threads)
            .min_by_key(|&t| (counts[t].load(Relaxed), self.on_thread(t)))
            .unwrap_or(0);
        counts[thread].fetch_add(1, Relaxed);
        ThreadSlot { counts, thread }
    }
}

/// One connection counted on its thread (for its backend) for as long as it lives.
struct ThreadSlot {
    counts: Arc<[AtomicUsize]>,
    thread: usize,
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        self.counts[self.thread].fetch_sub(1, Relaxed);
    }
}

/// Accepts connections on `listener` and splices each to a backend of `pool`, until `stop`.
pub async fn serve(
    listener: TcpListener,
    pool: Arc<Pool>,
    connect_timeout: Duration,
    io: Vec<tokio::runtime::Handle>,
    mut stop: watch::Receiver<bool>,
) {
    let mut spread = Spread::new(io.len());
    let mut backoff = Duration::from_millis(5);
    loop {
        let (client, peer) = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok(c) => { backoff = Duration::from_millis(5); c }
                Err(e) => {
                    tracing::warn!(pool = %pool.name, error = %e, "L4 accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let Some(backend) = pool.pick(Some(peer.ip())) else {
            tracing::debug!(pool = %pool.name, %peer, "no healthy backend; closing");
            continue;
        };
        // Counted from the pick, so concurrent picks already see this connection.
        let active = Active::new(backend);
        let slot = spread.place(&active.0.addr);
        let span = tracing::debug_span!("l4", pool = %pool.name, client = %peer, upstream = %active.0.addr);
        // Each connection lives on one IO thread (a current-thread runtime), like the proxy's
        // clients: both directions wake on the same thread, no work stealing.
        let Some(handle) = io.get(slot.thread).cloned() else {
            tokio::spawn(forward(client, (active, slot), connect_timeout).instrument(span));
            continue;
        };
        let Ok(std_client) = client.into_std() else {
            continue;
        };
        handle.spawn(
            async move {
                if let Ok(client) = TcpStream::from_std(std_client) {
                    forward(client, (active, slot), connect_timeout).await;
                }
            }
            .instrument(span),
        );
    }
}

/// Splices `client` to the backend `active` counts it on; both counts drop when it ends.
async fn forward(
    mut client: TcpStream,
    (active, slot): (Active, ThreadSlot),
    connect_timeout: Duration,
) {
    let addr = active.0.addr.clone();
    let upstream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "L4 upstream connect failed");
            return;
        }
        Err(_) => {
            tracing::debug!("L4 upstream connect timed out");
            return;
        }
    };
    let mut upstream = upstream;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // copy_bidirectional forwards an EOF as a write shutdown (half-close) and stops both ways on
    // an error; dropping the sockets then closes both.
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(up, down, "L4 connection closed"),
        Err(e) => tracing::debug!(error = %e, "L4 connection ended with an error"),
    }
    drop((active, slot));
}

/// Where a pool's membership comes from when it can change (a shard's replicas).
pub type MemberSource = Arc<dyn Fn() -> Vec<Member> + Send + Sync>;

/// Health-checks every backend of `pool` with PING until `stop`, first refreshing its members
/// from `members` when given.
pub async fn health_loop(
    pool: Arc<Pool>,
    settings: HealthSettings,
    members: Option<MemberSource>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(settings.interval);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        if let Some(source) = &members {
            let want = source();
            let have = pool.backends();
            let same = want.len() == have.len()
                && want
                    .iter()
                    .zip(have.iter())
                    .all(|(m, b)| m.addr == b.addr && m.weight == b.weight);
            if !same {
                tracing::info!(pool = %pool.name, backends = want.len(), "L4 pool membership changed");
                pool.set_members(&want);
            }
        }
        let name = pool.name.as_str();
        let backends = pool.backends();
        let checks = backends.iter().map(|b| async move {
            let ok = ping(&b.addr, settings.timeout).await;
            record(name, b, ok, settings);
        });
        futures::future::join_all(checks).await;
    }
}

fn record(pool: &str, b: &Backend, ok: bool, s: HealthSettings) {
    if ok {
        b.fails.store(0, Relaxed);
        let passes = b.passes.fetch_add(1, Relaxed) + 1;
        if !b.healthy.load(Relaxed) && passes >= s.rise {
            b.healthy.store(true, Relaxed);
            tracing::info!(pool, backend = %b.addr, "backend up");
        }
    } else {
        b.passes.store(0, Relaxed);
        let fails = b.fails.fetch_add(1, Relaxed) + 1;
        if b.healthy.load(Relaxed) && fails >= s.fall {
            b.healthy.store(false, Relaxed);
            tracing::warn!(pool, backend = %b.addr, "backend down");
        }
    }
}

/// True if `addr` answers PING with +PONG (or -NOAUTH: alive, just password-protected).
pub async fn ping(addr: &str, timeout: Duration) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"*1\r\n$4\r\nPING\r\n").await.ok()?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.ok()?;
        let reply = &buf[..n];
        Some(reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH"))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

/// The address a listener is bound to, for logs and the launcher.
pub fn bound(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pool(policy: Policy, members: &[&str]) -> Pool {
        let m: Vec<Member> = members.iter().map(|s| s.parse().unwrap()).collect();
        Pool::new("t", policy, &m)
    }

    #[test]
    fn members_and_policies_parse() {
        assert_eq!(
            "10.0.0.1:7001@3".parse::<Member>().unwrap(),
            Member {
                addr: "10.0.0.1:7001".into(),
                weight: 3
            }
        );
        assert!("x".parse::<Member>().is_err());
        assert!("h:1@0".parse::<Member>().is_err());
        assert_eq!("source-hash".parse::<Policy>().unwrap(), Policy::SourceHash);
        assert!("fastest".parse::<Policy>().is_err());
    }

    #[test]
    fn every_io_thread_carries_every_backend() {
        // Least-connections alternates a, b, a, b...; each thread must get both, evenly.
        let mut spread = Spread::new(2);
        let held: Vec<(String, ThreadSlot)> = ["a", "b", "a", "b", "a", "b", "a", "b"]
            .iter()
            .map(|b| (b.to_string(), spread.place(b)))
            .collect();
        for thread in 0..2 {
            for backend in ["a", "b"] {
                let n = held
                    .iter()
                    .filter(|(b, s)| b == backend && s.thread == thread)
                    .count();
                assert_eq!(n, 2, "thread {thread}, backend {backend}");
            }
            assert_eq!(spread.on_thread(thread), 4);
        }
        // One backend only: the threads still share it evenly, and closed connections free their slot.
        drop(held);
        assert!((0..2).all(|t| spread.on_thread(t) == 0));
        let one: Vec<ThreadSlot> = (0..6).map(|_| spread.place("c")).collect();
        let threads: Vec<usize> = one.iter().map(|s| s.thread).collect();
        assert_eq!(threads, [0, 1, 0, 1, 0, 1]);
        let single = Spread::new(0).place("a");
        assert_eq!(single.thread, 0);
    }

    #[test]
    fn least_connections_evens_out_and_refills_the_emptier() {
        let p = pool(Policy::LeastConnections, &["a:1", "b:1"]);
        let held: Vec<Active> = (0..30)
            .map(|_| Active::new(p.pick(None).unwrap()))
            .collect();
        assert_eq!(p.backends()[0].active.load(Relaxed), 15);
        assert_eq!(p.backends()[1].active.load(Relaxed), 15);
        // Close five on b: the next connection goes to b.
        let mut held = held;
        let mut closed = 0;
        held.retain(|a| {
            if a.0.addr == "b:1" && closed < 5 {
                closed += 1;
                false
            } else {
                true
            }
        });
        assert_eq!(p.pick(None).unwrap().addr, "b:1");
    }

    #[test]
    fn round_robin_and_weights() {
        let p = pool(Policy::RoundRobin, &["a:1", "b:1", "c:1"]);
        let picks: Vec<String> = (0..6).map(|_| p.pick(None).unwrap().addr.clone()).collect();
        assert_eq!(picks, ["a:1", "b:1", "c:1", "a:1", "b:1", "c:1"]);

        let p = pool(Policy::WeightedRoundRobin, &["a:1@3", "b:1@1"]);
        let a = (0..400)
            .filter(|_| p.pick(None).unwrap().addr == "a:1")
            .count();
        assert_eq!(a, 300);

        let p = pool(Policy::WeightedLeastConnections, &["a:1@2", "b:1@1"]);
        let _held: Vec<Active> = (0..30)
            .map(|_| Active::new(p.pick(None).unwrap()))
            .collect();
        assert_eq!(p.backends()[0].active.load(Relaxed), 20);
        assert_eq!(p.backends()[1].active.load(Relaxed), 10);
    }

    #[test]
    fn source_hash_is_sticky_and_unhealthy_backends_are_skipped() {
        let p = pool(Policy::SourceHash, &["a:1", "b:1", "c:1"]);
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let first = p.pick(Some(ip)).unwrap().addr.clone();
        for _ in 0..10 {
            assert_eq!(p.pick(Some(ip)).unwrap().addr, first);
        }
        let p = pool(Policy::LeastConnections, &["a:1", "b:1"]);
        p.backends()[0].healthy.store(false, Relaxed);
        for _ in 0..5 {
            assert_eq!(p.pick(None).unwrap().addr, "b:1");
        }
        p.backends()[1].healthy.store(false, Relaxed);
        assert!(p.pick(None).is_none());
    }

    #[test]
    fn membership_changes_keep_the_backends_that_stay() {
        let p = pool(Policy::LeastConnections, &["a:1", "b:1"]);
        let held = Active::new(p.pick(None).unwrap());
        assert_eq!(held.0.addr, "a:1");
        p.set_members(&["a:1".parse().unwrap(), "c:1".parse().unwrap()]);
        let now = p.backends();
        assert_eq!(now.len(), 2);
        assert_eq!(
            now[0].active.load(Relaxed),
            1,
            "a keeps its open connection's count"
        );
        assert_eq!(now[1].addr, "c:1");
        assert_eq!(p.pick(None).unwrap().addr, "c:1");
    }

    #[test]
    fn health_marks_down_after_fall_and_up_after_rise() {
        let p = pool(Policy::RoundRobin, &["a:1"]);
        let backends = p.backends();
        let b = &backends[0];
        let s = HealthSettings::default();
        record("t", b, false, s);
        record("t", b, false, s);
        assert!(b.healthy.load(Relaxed));
        record("t", b, false, s);
        assert!(!b.healthy.load(Relaxed));
        record("t", b, true, s);
        assert!(!b.healthy.load(Relaxed));
        record("t", b, true, s);
        assert!(b.healthy.load(Relaxed));
    }
}
