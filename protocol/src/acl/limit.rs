//! The limit on failed AUTH per client address: each address may fail `burst` times at once, then
//! `burst / 4` times a second; past that AUTH is refused without looking at the password. The
//! table is bounded: past its size the entries idle longest go.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

/// Addresses tracked at most.
const MAX_ENTRIES: usize = 4096;
/// Failures an address may make in a burst (CONFIG `auth-failure-limit`; 0 = no limit).
pub const DEFAULT_BURST: u64 = 20;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct AuthLimiter {
    pub burst: AtomicU64,
    table: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Default for AuthLimiter {
    fn default() -> Self {
        AuthLimiter {
            burst: AtomicU64::new(DEFAULT_BURST),
            table: Mutex::new(HashMap::new()),
        }
    }
}

impl AuthLimiter {
    fn refill(b: &mut Bucket, burst: f64, now: Instant) {
        let rate = (burst / 4.0).max(1.0);
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
    }

    /// False when `ip` has used up its failures: AUTH must not be tried.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let burst = self.burst.load(Relaxed);
        if burst == 0 {
            return true;
        }
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match t.get_mut(&ip) {
            Some(b) => {
                Self::refill(b, burst as f64, Instant::now());
                b.tokens >= 1.0
            }
            None => true,
        }
    }

    /// A failed AUTH from `ip` spends one of its failures.
    pub fn failed(&self, ip: IpAddr) {
        let burst = self.burst.load(Relaxed);
        if burst == 0 {
            return;
        }
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= MAX_ENTRIES && !t.contains_key(&ip) {
            // Drop the quarter idle longest: they are the least likely to be attacking now.
            let mut ages: Vec<(Instant, IpAddr)> = t.iter().map(|(k, b)| (b.at, *k)).collect();
            ages.sort();
            for (_, k) in ages.iter().take(MAX_ENTRIES / 4) {
                t.remove(k);
            }
        }
        let b = t.entry(ip).or_insert(Bucket {
            tokens: burst as f64,
            at: now,
        });
        Self::refill(b, burst as f64, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }

    /// The error refused AUTH answers.
    pub fn error(&self) -> String {
        format!(
            "ERR too many failed AUTH attempts from this address (auth-failure-limit {}); try again later",
            self.burst.load(Relaxed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused() {
        let l = AuthLimiter::default();
        l.burst.store(3, Relaxed);
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(l.allows(ip));
            l.failed(ip);
        }
        assert!(!l.allows(ip));
        assert!(l.allows([10, 0, 0, 2].into()));
    }
}
