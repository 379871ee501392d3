//! An L4 pool: its backends with their live counters, and the policy picking one for a new
//! connection (`[[l4]] balance` in `cluster.toml`).

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

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
    /// Health probes failed / passed in a row (see `health::record`).
    pub(super) fails: AtomicU32,
    pub(super) passes: AtomicU32,
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
pub(super) struct Active(pub(super) Arc<Backend>);

impl Active {
    pub(super) fn new(b: Arc<Backend>) -> Active {
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
}
