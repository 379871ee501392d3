//! Several routers in front of one cluster (`--routers N`): where each serves and whether it
//! runs, how the load picks one, the error replies that show a router routing by an old ring, and
//! how long every running router takes to reach a membership change's epoch.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::backend::router_name;
use super::client::{self, cmd, Conn, RingStatus};
use super::followed::{Followed, FOLLOW_WINDOW};
use super::workload::{Mark, Shared};

/// How long every running router may take to reach a change's epoch before the change counts
/// as not followed (the routers follow each other within about a second).
pub const SPREAD_BOUND: Duration = Duration::from_secs(15);
const SPREAD_POLL: Duration = Duration::from_millis(20);
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The routers as the load and the driver see them.
pub struct Routers {
    addrs: RwLock<Vec<SocketAddr>>,
    /// Cleared by the driver while it has a router down (killed, restarting).
    live: Vec<AtomicBool>,
    /// Requests the load sent through each router.
    pub requests: Vec<AtomicU64>,
    /// Stale-router error replies each router gave the load.
    pub stale_errors: Vec<AtomicU64>,
}

impl Routers {
    /// `addrs` must not be empty (the harness always has a router 1).
    pub fn new(addrs: Vec<SocketAddr>) -> Routers {
        let n = addrs.len().max(1);
        Routers {
            addrs: RwLock::new(addrs),
            live: (0..n).map(|_| AtomicBool::new(true)).collect(),
            requests: (0..n).map(|_| AtomicU64::new(0)).collect(),
            stale_errors: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn count(&self) -> usize {
        self.live.len()
    }

    /// Router `i`'s address (router 1's for an unknown `i`).
    pub fn addr(&self, i: usize) -> SocketAddr {
        let addrs = self.addrs.read().unwrap_or_else(|e| e.into_inner());
        addrs
            .get(i)
            .or_else(|| addrs.first())
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn set_addr(&self, i: usize, addr: SocketAddr) {
        let mut addrs = self.addrs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = addrs.get_mut(i) {
            *a = addr;
        }
    }

    pub fn is_live(&self, i: usize) -> bool {
        self.live.get(i).is_some_and(|l| l.load(Ordering::Relaxed))
    }

    pub fn set_live(&self, i: usize, live: bool) {
        if let Some(l) = self.live.get(i) {
            l.store(live, Ordering::Relaxed);
        }
    }

    /// The running routers' indexes, in order.
    pub fn live(&self) -> Vec<usize> {
        (0..self.count()).filter(|i| self.is_live(*i)).collect()
    }

    /// The `skip`-th running router from `preferred` on (wrapping around); `preferred` itself
    /// when none runs (a lone router being restarted is waited for, as before `--routers`).
    pub fn pick(&self, preferred: usize, skip: usize) -> usize {
        let n = self.count();
        let live: Vec<usize> = (0..n)
            .map(|k| (preferred + k) % n)
            .filter(|i| self.is_live(*i))
            .collect();
        if live.is_empty() {
            preferred % n
        } else {
            live[skip % live.len()]
        }
    }

    pub fn count_request(&self, i: usize, n: u64) {
        if let Some(c) = self.requests.get(i) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn count_stale_error(&self, i: usize) {
        if let Some(c) = self.stale_errors.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An error reply (text without its `-`) that a router routing by an older ring than the nodes'
/// gives: the node refused the key (`WRONGSHARD`) or the router could not catch up (`TRYAGAIN`).
pub fn stale_router_error(e: &str) -> bool {
    let e = e.trim_start_matches('-');
    e.starts_with("WRONGSHARD") || e.starts_with("TRYAGAIN")
}

/// Counts `e` (an error reply router `router` gave at `at`) if it is a stale-router error:
/// apart when no fault was in progress, and keeps the first few as examples.
pub fn note_stale_router_error(shared: &Shared, router: usize, e: &str, at: Instant) {
    if !stale_router_error(e) {
        return;
    }
    let c = &shared.counters;
    c.stale_router_errors.fetch_add(1, Ordering::Relaxed);
    let faulted = shared.in_fault.load(Ordering::Relaxed) > 0;
    if !faulted {
        c.stale_router_errors_graceful
            .fetch_add(1, Ordering::Relaxed);
    }
    shared.routers.count_stale_error(router);
    let mut ex = shared
        .stale_router_examples
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if ex.len() < 5 {
        let text: String = e.chars().take(200).collect();
        ex.push(format!(
            "t={:.1}s {} [{}]: -{text}",
            at.saturating_duration_since(shared.start).as_secs_f64(),
            router_name(router),
            if faulted { "fault" } else { "graceful" }
        ));
    }
}

/// One status connection per router, reconnected when a call got no reply.
pub struct StatusConns(Vec<Option<Conn>>);

impl StatusConns {
    pub fn new(n: usize) -> StatusConns {
        StatusConns((0..n).map(|_| None).collect())
    }

    /// `RING STATUS` of router `i` at `addr`.
    pub async fn status(&mut self, i: usize, addr: SocketAddr) -> Result<RingStatus, String> {
        if i >= self.0.len() {
            self.0.resize_with(i + 1, || None);
        }
        let slot = &mut self.0[i];
        if !matches!(slot, Some(c) if !c.is_broken()) {
            *slot = Some(Conn::connect(addr, CONNECT_TIMEOUT).await?);
        }
        let Some(c) = slot.as_mut() else {
            return Err("not connected".into());
        };
        match c.call(cmd(&["RING", "STATUS"]), STATUS_TIMEOUT).await? {
            ringcache_protocol::Reply::Error(e) => Err(e),
            r => Ok(client::parse_ring_status(&r)),
        }
    }
}

/// What the epoch-spread poller measured of one change.
pub struct Spread {
    /// How long after `since` every running router reported the epoch; else which were behind.
    pub took: Result<Duration, String>,
    /// When each router other than the change's own first reported it.
    pub followed: Vec<Followed>,
}

/// How long after `since` every running router reported an epoch of at least `target` (polled
/// every 20 ms, bounded by [`SPREAD_BOUND`]), and when each router but `via` (the change's) first
/// did. Marks [`Shared::watching`] from its first poll until [`FOLLOW_WINDOW`] after its last
/// (or the end of the load), so the load keeps the timestamps of those routers' first second.
pub async fn epoch_spread(shared: Arc<Shared>, target: u64, since: Instant, via: usize) -> Spread {
    let _watch = Mark::new(&shared.watching);
    let routers = &shared.routers;
    let mut conns = StatusConns::new(routers.count());
    let mut followed: Vec<Followed> = Vec::new();
    let deadline = since + SPREAD_BOUND;
    let mut last = String::from("not polled");
    let mut took = None;
    let polls = SPREAD_BOUND.as_millis() / SPREAD_POLL.as_millis() + 10;
    for _ in 0..polls {
        let mut behind = Vec::new();
        for i in routers.live() {
            match conns.status(i, routers.addr(i)).await {
                Ok(RingStatus { epoch: Some(e), .. }) if e >= target => {
                    if i != via && !followed.iter().any(|f| f.router == i) {
                        followed.push(Followed {
                            router: i,
                            at: Instant::now(),
                        });
                    }
                }
                Ok(RingStatus { epoch: Some(e), .. }) => {
                    behind.push(format!("{} at epoch {e}", router_name(i)))
                }
                Ok(_) => behind.push(format!("{}: no epoch in RING STATUS", router_name(i))),
                Err(e) => behind.push(format!("{}: {e}", router_name(i))),
            }
        }
        if behind.is_empty() {
            took = Some(since.elapsed());
            break;
        }
        last = behind.join(", ");
        if Instant::now() >= deadline || shared.stopping() {
            break;
        }
        tokio::time::sleep(SPREAD_POLL).await;
    }
    // The last follower's first second still counts: keep watching until it is over.
    if let Some(f) = followed.iter().map(|f| f.at).max() {
        let until = (f + FOLLOW_WINDOW).min(shared.end);
        if !shared.stopping() {
            tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
        }
    }
    Spread {
        took: took.ok_or_else(|| {
            format!("not every router reached epoch {target} within {SPREAD_BOUND:?} ({last})")
        }),
        followed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_preferred_router_else_the_next_running_one() {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let r = Routers::new(vec![a(1), a(2), a(3)]);
        assert_eq!(r.pick(1, 0), 1);
        r.set_live(1, false);
        assert_eq!(r.pick(1, 0), 2);
        assert_eq!(r.pick(1, 1), 0);
        assert_eq!(r.live(), vec![0, 2]);
        let one = Routers::new(vec![a(1)]);
        one.set_live(0, false);
        assert_eq!(one.pick(0, 3), 0);
        assert!(stale_router_error("TRYAGAIN the node says"));
        assert!(stale_router_error("-WRONGSHARD 7 d"));
        assert!(!stale_router_error("ERR timeout"));
    }
}
