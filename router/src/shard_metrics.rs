//! Per-shard request metrics: counters and latency histograms per (command, shard), kept in
//! pre-registered atomics so the hot path only does a few relaxed additions. The shard label
//! `router` counts commands the router answers itself (and errors it produces, such as
//! CROSSSHARD); [`crate::metrics`] serves them with the rest of the router's state.

use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use ringcache_protocol::table::{self, CommandSpec};

/// Histogram bucket upper bounds, in microseconds (rendered in seconds).
const BOUNDS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

/// Counters of one command against one shard.
#[derive(Debug, Default)]
pub struct CommandStats {
    requests: AtomicU64,
    errors: AtomicU64,
    sum_us: AtomicU64,
    /// Per bucket, not cumulative; the last one is +Inf.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
}

/// Every command's counters for one shard (or for the router itself).
#[derive(Debug)]
pub struct ShardMetrics {
    /// The `shard` label value, already escaped.
    label: String,
    per_command: Box<[CommandStats]>,
}

impl ShardMetrics {
    /// Write commands this shard answered without an error (failover counts the ones its dead
    /// primary acknowledged after the last health probe).
    pub fn acked_writes(&self) -> u64 {
        command_names()
            .iter()
            .zip(self.per_command.iter())
            .filter(|(name, _)| {
                ringcache_protocol::table::lookup(name.as_bytes()).is_some_and(|c| c.is_write())
            })
            .map(|(_, s)| {
                s.requests
                    .load(Relaxed)
                    .saturating_sub(s.errors.load(Relaxed))
            })
            .sum()
    }

    /// The `shard` label value, already escaped.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn new(shard: &str) -> ShardMetrics {
        ShardMetrics {
            label: escape_label(shard),
            per_command: (0..command_names().len())
                .map(|_| CommandStats::default())
                .collect(),
        }
    }

    /// Records one request of command `cmd` (see [`command_index`]).
    #[inline]
    pub fn observe(&self, cmd: u16, elapsed: Duration, error: bool) {
        let Some(s) = self.per_command.get(usize::from(cmd)) else {
            return;
        };
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        s.requests.fetch_add(1, Relaxed);
        if error {
            s.errors.fetch_add(1, Relaxed);
        }
        s.sum_us.fetch_add(us, Relaxed);
        let bucket = BOUNDS_US.partition_point(|&b| b < us);
        s.buckets[bucket].fetch_add(1, Relaxed);
    }

    /// Requests and errors recorded for command `cmd` (tests, INFO).
    pub fn counts(&self, cmd: u16) -> (u64, u64) {
        self.per_command.get(usize::from(cmd)).map_or((0, 0), |s| {
            (s.requests.load(Relaxed), s.errors.load(Relaxed))
        })
    }
}

/// Multiplicative hash of a pointer: the keys are distinct addresses of static command names.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

struct CommandIndex {
    names: Vec<&'static str>,
    by_addr: HashMap<usize, u16, BuildHasherDefault<AddrHasher>>,
}

fn index() -> &'static CommandIndex {
    static INDEX: std::sync::OnceLock<CommandIndex> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let mut names: Vec<&'static str> = table::top_level().map(|c| c.name).collect();
        let by_addr = table::top_level()
            .enumerate()
            .map(|(i, c)| (c.name.as_ptr() as usize, i as u16))
            .collect();
        names.push("unknown");
        CommandIndex { names, by_addr }
    })
}

/// Metric label of every command index; the last is `unknown`.
pub fn command_names() -> &'static [&'static str] {
    &index().names
}

/// The metrics index of a command (`None` = not in the table).
#[inline]
pub fn command_index(spec: Option<&'static CommandSpec>) -> u16 {
    let idx = index();
    spec.and_then(|s| idx.by_addr.get(&(s.name.as_ptr() as usize)).copied())
        .unwrap_or((idx.names.len() - 1) as u16)
}

/// Escapes a Prometheus label value (backslash, double quote, newline).
pub(crate) fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes `ringcache_requests_total`, `ringcache_errors_total` and
/// `ringcache_request_duration_seconds` for every block of counters.
pub fn write_command_families(blocks: &[&ShardMetrics], out: &mut String) {
    let names = command_names();
    let counter = |out: &mut String, name: &str, help: &str, get: &dyn Fn(&CommandStats) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for b in blocks {
            for (i, s) in b.per_command.iter().enumerate() {
                let v = get(s);
                if v > 0 || (s.requests.load(Relaxed) > 0) {
                    let _ = writeln!(
                        out,
                        "{name}{{command=\"{}\",shard=\"{}\"}} {v}",
                        names[i], b.label
                    );
                }
            }
        }
    };
    counter(
        out,
        "ringcache_requests_total",
        "Requests handled, by command and shard (router = answered by the router).",
        &|s| s.requests.load(Relaxed),
    );
    counter(
        out,
        "ringcache_errors_total",
        "Error replies, by command and shard.",
        &|s| s.errors.load(Relaxed),
    );

    let name = "ringcache_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a request's arrival to its shard's reply.\n# TYPE {name} histogram"
    );
    for b in blocks {
        for (i, s) in b.per_command.iter().enumerate() {
            let count = s.requests.load(Relaxed);
            if count == 0 {
                continue;
            }
            let labels = format!("command=\"{}\",shard=\"{}\"", names[i], b.label);
            let mut cumulative = 0;
            for (bound, bucket) in BOUNDS_US.iter().zip(&s.buckets) {
                cumulative += bucket.load(Relaxed);
                let le = *bound as f64 / 1e6;
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            cumulative += s.buckets[BOUNDS_US.len()].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
            let sum = s.sum_us.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            // _count equals the +Inf bucket even while other threads add to `requests`
            let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_have_stable_indexes() {
        let get = table::lookup(b"get");
        let i = command_index(get);
        assert_eq!(command_names()[usize::from(i)], "get");
        assert_eq!(command_names()[usize::from(command_index(None))], "unknown");
        // subcommand specs are not top level: they count as unknown, never panic
        let sub = table::lookup(b"client|id");
        assert!(sub.is_some(), "the table knows client|id");
        assert_eq!(command_names()[usize::from(command_index(sub))], "unknown");
    }

    #[test]
    fn observe_buckets() {
        let m = ShardMetrics::new("a\"b");
        assert_eq!(m.label, "a\\\"b");
        let get = command_index(table::lookup(b"get"));
        m.observe(get, Duration::from_micros(50), false);
        m.observe(get, Duration::from_micros(300), true);
        m.observe(get, Duration::from_secs(60), false);
        assert_eq!(m.counts(get), (3, 1));
        let s = &m.per_command[usize::from(get)];
        assert_eq!(s.buckets[0].load(Relaxed), 1);
        assert_eq!(s.buckets[2].load(Relaxed), 1);
        assert_eq!(s.buckets[BOUNDS_US.len()].load(Relaxed), 1);
    }
}
