//! Staying under `maxmemory`: Redis's eviction policies over sampled keys, and the access field
//! each entry keeps for them (a 24-bit LRU clock, or an LFU counter with its last decay time).
//!
//! Before a command that may use memory runs, while the node holds more than `maxmemory`,
//! [`Keyspace::eviction_candidate`] samples `maxmemory-samples` keys from random buckets into a
//! pool of the best candidates seen so far (Redis's eviction pool: a sample of 5 alone is a poor
//! judge of what is oldest or rarest) and names the pool's best to drop by the policy (oldest
//! access, lowest frequency, nearest deadline; random policies skip the pool); the dispatcher
//! deletes it like any write (propagated as DEL, WATCH touched). With `noeviction`, or nothing
//! evictable, writes get Redis's OOM error.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

use rand::Rng;
use ringcache_protocol::hash::BUCKETS;

use super::{lock, lru_clock, Keyspace};

/// Candidates the pool keeps (Redis's EVPOOL_SIZE).
const POOL_SIZE: usize = 16;

/// Eviction candidates, best (lowest score) first.
#[derive(Debug, Default)]
pub(super) struct Pool(Vec<(u64, Vec<u8>)>);

impl Pool {
    /// Offers a sampled key: it enters if the pool has room or it beats the worst there.
    fn offer(&mut self, score: u64, key: &[u8]) {
        if let Some(i) = self.0.iter().position(|(_, k)| k == key) {
            self.0.remove(i);
        }
        if self.0.len() >= POOL_SIZE && self.0.last().is_some_and(|(s, _)| *s <= score) {
            return;
        }
        let at = self.0.partition_point(|(s, _)| *s <= score);
        self.0.insert(at, (score, key.to_vec()));
        self.0.truncate(POOL_SIZE);
    }

    fn take_best(&mut self) -> Option<Vec<u8>> {
        (!self.0.is_empty()).then(|| self.0.remove(0).1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        Some(match s.to_ascii_lowercase().as_str() {
            "noeviction" => Policy::NoEviction,
            "allkeys-lru" => Policy::AllKeysLru,
            "allkeys-lfu" => Policy::AllKeysLfu,
            "allkeys-random" => Policy::AllKeysRandom,
            "volatile-lru" => Policy::VolatileLru,
            "volatile-lfu" => Policy::VolatileLfu,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllKeysLru => "allkeys-lru",
            Policy::AllKeysLfu => "allkeys-lfu",
            Policy::AllKeysRandom => "allkeys-random",
            Policy::VolatileLru => "volatile-lru",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
        }
    }

    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }
}

/// Eviction settings (CONFIG SET maxmemory, maxmemory-policy, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eviction {
    /// Bytes the keyspace may hold; 0 = no bound.
    pub maxmemory: u64,
    pub policy: Policy,
    pub samples: usize,
    pub tenacity: u32,
    pub lfu_log_factor: u32,
    /// Minutes for an LFU counter to halve.
    pub lfu_decay_time: u32,
}

impl Default for Eviction {
    fn default() -> Self {
        Eviction {
            maxmemory: 0,
            // A cache evicts by default (Redis's default is noeviction, a database's choice).
            policy: Policy::AllKeysLfu,
            samples: 5,
            tenacity: 10,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
        }
    }
}

/// [`Eviction`] in atomics: every command that touches a key reads it (LRU/LFU bookkeeping), so
/// a read is a few plain loads instead of an `ArcSwap` guard. Fields are independent settings:
/// a read racing a CONFIG SET may see some fields old and some new, as each alone is valid.
#[derive(Debug)]
pub(super) struct AtomicEviction {
    maxmemory: AtomicU64,
    policy: AtomicU8,
    samples: AtomicUsize,
    tenacity: AtomicU32,
    lfu_log_factor: AtomicU32,
    lfu_decay_time: AtomicU32,
}

const POLICIES: [Policy; 8] = [
    Policy::NoEviction,
    Policy::AllKeysLru,
    Policy::AllKeysLfu,
    Policy::AllKeysRandom,
    Policy::VolatileLru,
    Policy::VolatileLfu,
    Policy::VolatileRandom,
    Policy::VolatileTtl,
];

impl AtomicEviction {
    pub(super) fn new(ev: Eviction) -> AtomicEviction {
        let a = AtomicEviction {
            maxmemory: AtomicU64::new(0),
            policy: AtomicU8::new(0),
            samples: AtomicUsize::new(0),
            tenacity: AtomicU32::new(0),
            lfu_log_factor: AtomicU32::new(0),
            lfu_decay_time: AtomicU32::new(0),
        };
        a.store(ev);
        a
    }

    pub(super) fn load(&self) -> Eviction {
        Eviction {
            maxmemory: self.maxmemory.load(Relaxed),
            policy: POLICIES[usize::from(self.policy.load(Relaxed)) % POLICIES.len()],
            samples: self.samples.load(Relaxed),
            tenacity: self.tenacity.load(Relaxed),
            lfu_log_factor: self.lfu_log_factor.load(Relaxed),
            lfu_decay_time: self.lfu_decay_time.load(Relaxed),
        }
    }

    pub(super) fn store(&self, ev: Eviction) {
        let code = POLICIES.iter().position(|p| *p == ev.policy).unwrap_or(0);
        self.maxmemory.store(ev.maxmemory, Relaxed);
        self.policy.store(code as u8, Relaxed);
        self.samples.store(ev.samples, Relaxed);
        self.tenacity.store(ev.tenacity, Relaxed);
        self.lfu_log_factor.store(ev.lfu_log_factor, Relaxed);
        self.lfu_decay_time.store(ev.lfu_decay_time, Relaxed);
    }
}

/// A new key's LFU counter (Redis's LFU_INIT_VAL): new keys are not evicted first.
pub const LFU_INIT: u32 = 5;

/// Minutes, 16 bits, wrapping: when an LFU counter was last decayed.
fn lfu_minutes(now_ms: i64) -> u32 {
    ((now_ms / 60_000) as u32) & 0xFFFF
}

/// The LFU counter of an access field after decaying for the minutes passed.
pub fn lfu_decayed(access: u32, now_ms: i64, decay_time: u32) -> u32 {
    let counter = access & 0xFF;
    let last = access >> 8;
    let now = lfu_minutes(now_ms);
    let elapsed = if now >= last {
        now - last
    } else {
        65535 - last + now
    };
    let periods = elapsed.checked_div(decay_time).unwrap_or(0);
    counter.saturating_sub(periods)
}

/// The access field after one access, by the policy.
pub fn touched_access(access: u32, now_ms: i64, ev: &Eviction) -> u32 {
    if !ev.policy.is_lfu() {
        return lru_clock(now_ms);
    }
    let mut counter = lfu_decayed(access, now_ms, ev.lfu_decay_time);
    // Logarithmic increment: the higher the counter, the less likely a bump.
    if counter < 255 {
        let base = counter.saturating_sub(LFU_INIT) as f64;
        let p = 1.0 / (base * f64::from(ev.lfu_log_factor) + 1.0);
        if rand::thread_rng().gen::<f64>() < p {
            counter += 1;
        }
    }
    (lfu_minutes(now_ms) << 8) | counter
}

/// The access field of a new key.
pub fn new_access(now_ms: i64, ev: &Eviction) -> u32 {
    if ev.policy.is_lfu() {
        (lfu_minutes(now_ms) << 8) | LFU_INIT
    } else {
        lru_clock(now_ms)
    }
}

impl Keyspace {
    pub fn eviction(&self) -> Eviction {
        self.eviction.load()
    }

    pub fn set_eviction(&self, ev: Eviction) {
        self.eviction.store(ev);
    }

    /// Bytes the keyspace's entries hold, by their own count (`used_memory_dataset`).
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Relaxed).max(0) as u64
    }

    /// Bytes the keyspace's own structure takes whatever it holds (its buckets' locks and empty
    /// tables), reported with `used_bytes` as Redis reports its startup memory.
    pub fn overhead_bytes(&self) -> u64 {
        (super::BUCKETS * std::mem::size_of::<std::sync::Mutex<super::Bucket>>()) as u64
    }

    /// The process's memory as Redis's `used_memory`: the allocator's count where the binary
    /// installed the counting allocator, else (a node run as a library) the keyspace's own count
    /// and its structure.
    pub fn used_memory(&self) -> u64 {
        ringcache_alloc::allocated().unwrap_or_else(|| self.used_bytes() + self.overhead_bytes())
    }

    /// Whether the node holds more than `maxmemory` (less what the RSS guard holds back, for
    /// policies that evict).
    pub fn over_limit(&self) -> bool {
        let ev = self.eviction();
        if ev.maxmemory == 0 {
            return false;
        }
        let reserve = if ev.policy == Policy::NoEviction {
            0
        } else {
            self.rss_reserve()
        };
        self.used_memory() + reserve > ev.maxmemory
    }

    /// The key the policy would drop first among sampled ones; `None` when nothing may go.
    pub fn eviction_candidate(&self, now: i64) -> Option<Vec<u8>> {
        let ev = self.eviction();
        if ev.policy == Policy::NoEviction || self.is_empty() {
            return None;
        }
        if ev.policy.volatile_only() && self.volatile() == 0 {
            return None;
        }
        let mut rng = rand::thread_rng();
        let random = matches!(ev.policy, Policy::AllKeysRandom | Policy::VolatileRandom);
        let mut pool = lock(&self.evict_pool);
        if random {
            pool.0.clear();
        }
        let mut sampled = 0;
        // Bounded: a sparse keyspace may need many probes to find its keys.
        for _ in 0..(ev.samples * 64).max(1024) {
            if sampled >= ev.samples {
                break;
            }
            let b = rng.gen_range(0..BUCKETS);
            let g = self.lock_bucket(b);
            let live = if ev.policy.volatile_only() {
                g.volatile() as usize
            } else {
                g.len()
            };
            if live == 0 {
                continue;
            }
            let pick = rng.gen_range(0..live);
            let entry = g
                .iter()
                .filter(|e| !ev.policy.volatile_only() || e.deadline().is_some())
                .nth(pick);
            let Some(e) = entry else { continue };
            sampled += 1;
            let score = match ev.policy {
                Policy::AllKeysLru | Policy::VolatileLru => {
                    // Older access, lower score: the idle time, inverted.
                    let idle = lru_clock(now).wrapping_sub(e.access()) & 0xFF_FFFF;
                    u64::MAX - u64::from(idle)
                }
                Policy::AllKeysLfu | Policy::VolatileLfu => {
                    u64::from(lfu_decayed(e.access(), now, ev.lfu_decay_time))
                }
                Policy::VolatileTtl => e.deadline().map_or(u64::MAX, |t| t.max(0) as u64),
                _ => rng.gen(),
            };
            pool.offer(score, e.key());
            if random {
                break;
            }
        }
        // A pooled key may be gone since (deleted, or evicted by the other policy); the caller
        // finds nothing to delete and asks again.
        pool.take_best()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfu_counter_grows_slowly_and_decays() {
        let ev = Eviction::default();
        let now = 10 * 60_000;
        let mut a = new_access(now, &ev);
        assert_eq!(a & 0xFF, LFU_INIT);
        for _ in 0..1000 {
            a = touched_access(a, now, &ev);
        }
        let c = a & 0xFF;
        assert!(c > LFU_INIT && c < 40, "{c}");
        // Ten minutes later with a decay time of one minute: ten less.
        assert_eq!(lfu_decayed(a, now + 10 * 60_000, 1), c - 10);
    }

    #[test]
    fn the_pool_keeps_the_best_candidates_in_order() {
        let mut pool = Pool::default();
        for i in (0..40u64).rev() {
            pool.offer(i * 10, format!("k{i}").as_bytes());
        }
        assert_eq!(pool.0.len(), POOL_SIZE);
        // A key offered again moves to its new score rather than appearing twice.
        pool.offer(5, b"k3");
        let scores: Vec<u64> = pool.0.iter().map(|(s, _)| *s).collect();
        assert_eq!(&scores[..4], &[0, 5, 10, 20]);
        assert_eq!(pool.0.iter().filter(|(_, k)| k == b"k3").count(), 1);
        // Worse than the worst of a full pool: not taken.
        pool.offer(1000, b"late");
        assert!(pool.0.iter().all(|(_, k)| k != b"late"));
        assert_eq!(pool.take_best(), Some(b"k0".to_vec()));
        assert_eq!(pool.take_best(), Some(b"k3".to_vec()));
    }

    #[test]
    fn an_overwrite_keeps_the_lfu_counter() {
        let ks = Keyspace::new();
        ks.set_eviction(Eviction {
            policy: Policy::AllKeysLfu,
            ..Eviction::default()
        });
        let now = 10 * 60_000;
        let mut db =
            super::super::Db::for_keys(&ks, [&b"k"[..]], now, super::super::Expiry::Delete);
        db.set_str(b"k", b"1", None);
        for _ in 0..2000 {
            db.get(b"k");
        }
        let before = db.peek(b"k").map(|e| e.access() & 0xFF).unwrap_or(0);
        assert!(before > LFU_INIT, "{before}");
        db.set_str(b"k", b"2", None);
        let after = db.peek(b"k").map(|e| e.access() & 0xFF).unwrap_or(0);
        assert!(after >= before, "{before} -> {after}");
    }

    #[test]
    fn policies_parse_by_name() {
        for p in ["noeviction", "allkeys-lru", "volatile-ttl", "ALLKEYS-LFU"] {
            let parsed = Policy::parse(p).map(Policy::name);
            assert_eq!(parsed, Some(p.to_ascii_lowercase().as_str()));
        }
        assert!(Policy::parse("lru").is_none());
    }
}
