//! Per-command latency distributions (Redis 7's latency tracking): INFO latencystats' percentiles
//! and LATENCY HISTOGRAM's cumulative counts.
//!
//! Each command that ran gets a log-linear histogram of its run times in nanoseconds, made on its
//! first call (most commands never run): 16 buckets per power of two, so a percentile is within
//! 1/16 of the true value. Redis keeps an HDR histogram of 2 significant digits; the reported
//! points (powers of two from 1 µs) are the same.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use ringcache_protocol::table;

/// Values below `2^LINEAR_BITS` ns get a bucket each; above, 16 per power of two.
const LINEAR_BITS: u32 = 4;
const SUB_BUCKETS: u64 = 1 << LINEAR_BITS;
/// Run times up to 2^42 ns (73 minutes); longer ones count in the last bucket.
const MAX_BITS: u32 = 42;
const BUCKETS: usize = (SUB_BUCKETS as usize) * (MAX_BITS - LINEAR_BITS + 2) as usize;

struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The bucket of `ns`: its own below 16, else 16 per power of two by the 4 bits after the top one.
fn bucket(ns: u64) -> usize {
    if ns < SUB_BUCKETS {
        return ns as usize;
    }
    let top = (63 - ns.leading_zeros()).min(MAX_BITS);
    let sub = (ns.min((1 << (MAX_BITS + 1)) - 1) >> (top - LINEAR_BITS)) & (SUB_BUCKETS - 1);
    ((top - LINEAR_BITS + 1) as u64 * SUB_BUCKETS + sub) as usize
}

/// The largest value bucket `b` holds, in ns.
fn highest(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB_BUCKETS {
        return b;
    }
    let top = (b / SUB_BUCKETS) as u32 + LINEAR_BITS - 1;
    let sub = b % SUB_BUCKETS;
    let width = 1u64 << (top - LINEAR_BITS);
    (1u64 << top) + (sub + 1) * width - 1
}

/// A command's name, calls, and cumulative counts by µs (LATENCY HISTOGRAM's entry).
pub type CommandHistogram = (&'static str, u64, Vec<(u64, u64)>);

/// Every command's histogram, by `table::position`.
pub struct LatencyStats {
    /// `latency-tracking`: off, nothing is recorded.
    pub enabled: AtomicBool,
    per_command: Box<[OnceLock<Histogram>]>,
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats {
            enabled: AtomicBool::new(true),
            per_command: (0..table::count()).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl std::fmt::Debug for LatencyStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyStats").finish_non_exhaustive()
    }
}

impl LatencyStats {
    /// One call of the command at `position` (`table::position`) that ran `micros` µs (Redis
    /// records µs as ns, at least 1).
    pub fn record(&self, position: usize, micros: u64) {
        if !self.enabled.load(Relaxed) {
            return;
        }
        let Some(h) = self.per_command.get(position) else {
            return;
        };
        let ns = micros.saturating_mul(1000).max(1);
        h.get_or_init(Histogram::new).counts[bucket(ns)].fetch_add(1, Relaxed);
    }

    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        for h in self.per_command.iter().filter_map(OnceLock::get) {
            for c in h.counts.iter() {
                c.store(0, Relaxed);
            }
        }
    }

    /// Each command with calls, in table order, with a snapshot of its bucket counts.
    fn snapshots(&self) -> impl Iterator<Item = (&'static str, Vec<u64>)> + '_ {
        table::all()
            .zip(self.per_command.iter())
            .filter_map(|(spec, h)| {
                let counts: Vec<u64> = h.get()?.counts.iter().map(|c| c.load(Relaxed)).collect();
                (counts.iter().any(|&c| c > 0)).then_some((spec.name, counts))
            })
    }

    /// INFO latencystats lines: `latency_percentiles_usec_<cmd>:p50=…,p99=…,p99.9=…`.
    pub fn info(&self, percentiles: &[f64], out: &mut String) {
        use std::fmt::Write as _;
        for (name, counts) in self.snapshots() {
            let total: u64 = counts.iter().sum();
            let _ = write!(out, "latency_percentiles_usec_{name}:");
            for (i, p) in percentiles.iter().enumerate() {
                let sep = if i + 1 < percentiles.len() { "," } else { "" };
                let value = at_percentile(&counts, total, *p) as f64 / 1000.0;
                let _ = write!(out, "p{}={value:.3}{sep}", trim_number(*p));
            }
            out.push_str("\r\n");
        }
    }

    /// LATENCY HISTOGRAM: each command with calls, its calls and cumulative counts at 1, 2, 4,
    /// 8 … µs where the count grows.
    pub fn histograms(&self) -> Vec<CommandHistogram> {
        self.snapshots()
            .map(|(name, counts)| {
                let total: u64 = counts.iter().sum();
                (name, total, cumulative(&counts, total))
            })
            .collect()
    }
}

/// The value at percentile `p` (0 to 100): the highest value of the bucket holding that rank.
fn at_percentile(counts: &[u64], total: u64, p: f64) -> u64 {
    let rank = (((p.clamp(0.0, 100.0) / 100.0) * total as f64 + 0.5) as u64).max(1);
    let mut seen = 0;
    for (b, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return highest(b);
        }
    }
    0
}

/// Cumulative counts of values up to 1024·2^k ns, reported as µs, where the count grew.
fn cumulative(counts: &[u64], total: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut seen, mut b, mut previous) = (0u64, 0usize, 0u64);
    for k in 0..=(MAX_BITS - 10) {
        let limit = 1024u64 << k;
        while b < counts.len() && highest(b) < limit {
            seen += counts[b];
            b += 1;
        }
        if seen > previous {
            out.push((limit / 1000, seen));
            previous = seen;
        }
        if seen == total {
            break;
        }
    }
    if seen < total {
        out.push(((1u64 << MAX_BITS) / 1000, total));
    }
    out
}

/// `latency-tracking-info-percentiles`: numbers from 0 to 100, separated by spaces.
pub fn parse_percentiles(value: &str) -> Result<Vec<f64>, String> {
    value
        .split_ascii_whitespace()
        .map(|w| match w.parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
            Ok(_) => Err(
                "latency-tracking-info-percentiles parameter should be between 0.0 and 100.0"
                    .into(),
            ),
            Err(_) => Err("latency-tracking-info-percentiles parameter should be a double".into()),
        })
        .collect()
}

/// Percentiles as CONFIG GET shows them: `50 99 99.9`.
pub fn format_percentiles(ps: &[f64]) -> String {
    ps.iter()
        .map(|p| trim_number(*p))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `99.9` as Redis writes a percentile (`%f` with trailing zeros and point trimmed): `99.9`,
/// `50`.
fn trim_number(p: f64) -> String {
    let s = format!("{p:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for ns in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            1000,
            1023,
            1024,
            50_000,
            1 << 40,
        ] {
            let b = bucket(ns);
            assert!(b >= last, "{ns}");
            assert!(highest(b) >= ns, "{ns}: bucket {b} tops at {}", highest(b));
            assert!(
                b == 0 || highest(b - 1) < ns,
                "{ns}: bucket {b} is not the first to hold it"
            );
            last = b;
        }
        assert!(bucket(u64::MAX) < BUCKETS);
    }

    #[test]
    fn percentiles_and_cumulative_counts() {
        // 90 calls of 1 µs, 10 of 100 µs.
        let mut counts = vec![0u64; BUCKETS];
        counts[bucket(1000)] += 90;
        counts[bucket(100_000)] += 10;
        let p50 = at_percentile(&counts, 100, 50.0);
        assert!((1000..1100).contains(&p50), "{p50}");
        let p99 = at_percentile(&counts, 100, 99.0);
        assert!((100_000..107_000).contains(&p99), "{p99}");
        assert_eq!(cumulative(&counts, 100), vec![(1, 90), (131, 100)]);
        assert_eq!(trim_number(99.9), "99.9");
        assert_eq!(trim_number(50.0), "50");
    }
}
