//! CONFIG GET / SET / RESETSTAT / REWRITE over one table of Redis's parameters: each with its
//! kind (validated with Redis's error texts), its aliases (`hash-max-ziplist-entries` is
//! `hash-max-listpack-entries`), and where its value lives. Parameters that change nothing here
//! (`hz`, `lazyfree-*`, …) are still accepted and reported, as tools set them.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use ringcache_protocol::glob;
use ringcache_protocol::table;
use ringcache_protocol::Reply;

use super::args::{arity_error, unknown_subcommand};
use super::ctx::Ctx;
use crate::config::parse_memory;
use crate::keyspace::evict::Policy;
use crate::state::pubsub::{BufferLimit, LIMIT_CLASSES};
use crate::state::Shared;

#[derive(Clone, Copy)]
enum Kind {
    /// An integer in a range.
    Int(i64, i64),
    Memory,
    Bool,
    Enum(&'static [&'static str]),
    Str,
    Immutable,
    /// `notify-keyspace-events` class letters.
    Events,
    /// `client-output-buffer-limit <class> <hard> <soft> <seconds> ...`.
    BufferLimits,
    /// Percentiles from 0 to 100, space-separated (`latency-tracking-info-percentiles`).
    Percentiles,
}

struct Param {
    name: &'static str,
    alias: Option<&'static str>,
    kind: Kind,
}

const fn p(name: &'static str, alias: Option<&'static str>, kind: Kind) -> Param {
    Param { name, alias, kind }
}

const I32: i64 = i32::MAX as i64;
const POLICIES: &[&str] = &[
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "noeviction",
];

static PARAMS: &[Param] = &[
    p("bind", None, Kind::Immutable),
    p("port", None, Kind::Immutable),
    p("tls-port", None, Kind::Immutable),
    p("tls-cert-file", None, Kind::Immutable),
    p("tls-key-file", None, Kind::Immutable),
    p("tls-ca-cert-file", None, Kind::Immutable),
    p("tls-auth-clients", None, Kind::Immutable),
    p("tls-replication", None, Kind::Immutable),
    p("tls-cluster", None, Kind::Immutable),
    p("databases", None, Kind::Immutable),
    p("maxmemory", None, Kind::Memory),
    p("maxmemory-policy", None, Kind::Enum(POLICIES)),
    p("maxmemory-samples", None, Kind::Int(1, I32)),
    p("maxmemory-eviction-tenacity", None, Kind::Int(0, 100)),
    p("lfu-log-factor", None, Kind::Int(0, I32)),
    p("lfu-decay-time", None, Kind::Int(0, I32)),
    p("maxclients", None, Kind::Int(1, I32)),
    p("timeout", None, Kind::Int(0, I32)),
    p("requirepass", None, Kind::Str),
    p("aclfile", None, Kind::Immutable),
    p("auth-failure-limit", None, Kind::Int(0, I32)),
    p("acllog-max-len", None, Kind::Int(0, i64::MAX)),
    p("proto-max-bulk-len", None, Kind::Memory),
    p("save", None, Kind::Str),
    p("appendonly", None, Kind::Bool),
    p("replicaof", Some("slaveof"), Kind::Immutable),
    p("replica-read-only", Some("slave-read-only"), Kind::Bool),
    p(
        "hash-max-listpack-entries",
        Some("hash-max-ziplist-entries"),
        Kind::Int(0, i64::MAX),
    ),
    p(
        "hash-max-listpack-value",
        Some("hash-max-ziplist-value"),
        Kind::Int(0, i64::MAX),
    ),
    p("set-max-intset-entries", None, Kind::Int(0, i64::MAX)),
    p(
        "zset-max-listpack-entries",
        Some("zset-max-ziplist-entries"),
        Kind::Int(0, i64::MAX),
    ),
    p(
        "zset-max-listpack-value",
        Some("zset-max-ziplist-value"),
        Kind::Int(0, i64::MAX),
    ),
    p(
        "list-max-listpack-size",
        Some("list-max-ziplist-size"),
        Kind::Int(i32::MIN as i64, I32),
    ),
    p("list-compress-depth", None, Kind::Int(0, I32)),
    p("hll-sparse-max-bytes", None, Kind::Memory),
    p("stream-node-max-entries", None, Kind::Int(0, i64::MAX)),
    p("stream-node-max-bytes", None, Kind::Memory),
    p("hz", None, Kind::Int(0, I32)),
    p("dynamic-hz", None, Kind::Bool),
    p("active-expire-effort", None, Kind::Int(1, 10)),
    p("lazyfree-lazy-eviction", None, Kind::Bool),
    p("lazyfree-lazy-expire", None, Kind::Bool),
    p("lazyfree-lazy-server-del", None, Kind::Bool),
    p("lazyfree-lazy-user-del", None, Kind::Bool),
    p("lazyfree-lazy-user-flush", None, Kind::Bool),
    p("replica-lazy-flush", Some("slave-lazy-flush"), Kind::Bool),
    p("slowlog-log-slower-than", None, Kind::Int(-1, i64::MAX)),
    p("slowlog-max-len", None, Kind::Int(0, i64::MAX)),
    p("latency-tracking", None, Kind::Bool),
    p("latency-tracking-info-percentiles", None, Kind::Percentiles),
    p("latency-monitor-threshold", None, Kind::Int(0, i64::MAX)),
    p("activedefrag", None, Kind::Bool),
    p("stream-node-max-bytes", None, Kind::Memory),
    p("stream-node-max-entries", None, Kind::Int(0, i64::MAX)),
    p(
        "busy-reply-threshold",
        Some("lua-time-limit"),
        Kind::Int(0, i64::MAX),
    ),
    p("notify-keyspace-events", None, Kind::Events),
    p("client-output-buffer-limit", None, Kind::BufferLimits),
    p(
        "min-replicas-to-write",
        Some("min-slaves-to-write"),
        Kind::Int(0, I32),
    ),
    p(
        "min-replicas-max-lag",
        Some("min-slaves-max-lag"),
        Kind::Int(0, I32),
    ),
    p(
        "replica-serve-stale-data",
        Some("slave-serve-stale-data"),
        Kind::Bool,
    ),
    p(
        "loglevel",
        None,
        Kind::Enum(&["debug", "verbose", "notice", "warning"]),
    ),
];

fn find(name: &str) -> Option<&'static Param> {
    PARAMS
        .iter()
        .find(|p| p.name == name || p.alias == Some(name))
}

/// The value CONFIG GET reports for `p`.
fn get(sh: &Shared, p: &Param) -> String {
    let c = sh.config();
    let limits = sh.keyspace.limits();
    let ev = sh.keyspace.eviction();
    match p.name {
        "bind" => c.bind.clone(),
        "port" => sh.port.to_string(),
        "tls-port" => c.tls.port.to_string(),
        "tls-cert-file" => c.tls.cert_file.clone().unwrap_or_default(),
        "tls-key-file" => c.tls.key_file.clone().unwrap_or_default(),
        "tls-ca-cert-file" => c.tls.ca_cert_file.clone().unwrap_or_default(),
        "tls-auth-clients" => c.tls.auth_clients.as_str().into(),
        "tls-replication" => yes_no(c.tls.replication),
        "tls-cluster" => yes_no(c.tls.cluster),
        "databases" => "1".into(),
        "maxmemory" => ev.maxmemory.to_string(),
        "maxmemory-policy" => ev.policy.name().into(),
        "maxmemory-samples" => ev.samples.to_string(),
        "maxmemory-eviction-tenacity" => ev.tenacity.to_string(),
        "lfu-log-factor" => ev.lfu_log_factor.to_string(),
        "lfu-decay-time" => ev.lfu_decay_time.to_string(),
        "maxclients" => c.maxclients.to_string(),
        "timeout" => c.timeout.to_string(),
        "requirepass" => c.requirepass.clone().unwrap_or_default(),
        "aclfile" => c
            .aclfile
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_default(),
        "auth-failure-limit" => sh.acl.limiter.burst.load(Relaxed).to_string(),
        "acllog-max-len" => sh.acl.log.max_len().to_string(),
        "slowlog-log-slower-than" => sh.slowlog.threshold_us.load(Relaxed).to_string(),
        "slowlog-max-len" => sh.slowlog.max_len.load(Relaxed).to_string(),
        "proto-max-bulk-len" => c.limits.max_bulk_len.to_string(),
        "replicaof" => sh.repl.primary_addr().unwrap_or_default(),
        "hash-max-listpack-entries" => limits.hash_max_listpack_entries.to_string(),
        "hash-max-listpack-value" => limits.hash_max_listpack_value.to_string(),
        "set-max-intset-entries" => limits.set_max_intset_entries.to_string(),
        "zset-max-listpack-entries" => limits.zset_max_listpack_entries.to_string(),
        "zset-max-listpack-value" => limits.zset_max_listpack_value.to_string(),
        "list-max-listpack-size" => limits.list_max_listpack_size.to_string(),
        "list-compress-depth" => limits.list_compress_depth.to_string(),
        "hll-sparse-max-bytes" => limits.hll_sparse_max_bytes.to_string(),
        "stream-node-max-entries" => limits.stream_node_max_entries.to_string(),
        "stream-node-max-bytes" => limits.stream_node_max_bytes.to_string(),
        "notify-keyspace-events" => super::notify::format_flags(sh.pubsub.notify_flags()),
        "client-output-buffer-limit" => format_buffer_limits(&sh.pubsub.buffer_limits()),
        name => c
            .params
            .get(name)
            .cloned()
            .unwrap_or_else(|| default(name).into()),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// Redis's defaults for the parameters kept only as text.
fn default(name: &str) -> &'static str {
    match name {
        "save" | "notify-keyspace-events" => "",
        "appendonly"
        | "activedefrag"
        | "dynamic-hz"
        | "lazyfree-lazy-eviction"
        | "lazyfree-lazy-expire"
        | "lazyfree-lazy-server-del"
        | "lazyfree-lazy-user-del"
        | "lazyfree-lazy-user-flush"
        | "replica-lazy-flush" => "no",
        "replica-read-only" | "latency-tracking" | "replica-serve-stale-data" => "yes",
        "min-replicas-to-write" => "0",
        "min-replicas-max-lag" => "10",
        "hz" => "10",
        "active-expire-effort" => "1",
        "latency-monitor-threshold" => "0",
        "latency-tracking-info-percentiles" => "50 99 99.9",
        "stream-node-max-bytes" => "4096",
        "stream-node-max-entries" => "100",
        "busy-reply-threshold" => "5000",
        "loglevel" => "notice",
        _ => "",
    }
}

/// Checks `value` for `p`; the normalized value or the reason, in Redis's words.
fn validate(p: &Param, value: &str) -> Result<String, String> {
    match p.kind {
        Kind::Immutable => Err("can't set immutable config".into()),
        Kind::Events => super::notify::parse_flags(value.as_bytes())
            .map(super::notify::format_flags)
            .ok_or_else(|| "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".into()),
        Kind::BufferLimits => {
            parse_buffer_limits(value, [BufferLimit::NONE; 3]).map(|_| value.to_string())
        }
        Kind::Str => Ok(value.to_string()),
        Kind::Percentiles => crate::state::latency::parse_percentiles(value)
            .map(|ps| crate::state::latency::format_percentiles(&ps)),
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "yes" | "no" => Ok(value.to_ascii_lowercase()),
            _ => Err("argument must be 'yes' or 'no'".into()),
        },
        Kind::Enum(options) => options
            .iter()
            .find(|o| o.eq_ignore_ascii_case(value))
            .map(|o| o.to_string())
            .ok_or_else(|| {
                format!(
                    "argument(s) must be one of the following: {}",
                    options.join(", ")
                )
            }),
        Kind::Memory => parse_memory(value)
            .map(|n| n.to_string())
            .ok_or_else(|| "argument must be a memory value".into()),
        Kind::Int(min, max) => {
            let n: i64 = value
                .parse()
                .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
            if n < min || n > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            Ok(n.to_string())
        }
    }
}

/// Applies a validated value.
fn set(sh: &Shared, p: &Param, v: &str) {
    let num = || v.parse::<i64>().unwrap_or(0);
    let unum = || v.parse::<u64>().unwrap_or(0);
    let ks = &sh.keyspace;
    let mut limits = ks.limits();
    let mut ev = ks.eviction();
    match p.name {
        "maxmemory" => ev.maxmemory = unum(),
        "maxmemory-policy" => ev.policy = Policy::parse(v).unwrap_or(ev.policy),
        "maxmemory-samples" => ev.samples = num() as usize,
        "maxmemory-eviction-tenacity" => ev.tenacity = num() as u32,
        "lfu-log-factor" => ev.lfu_log_factor = num() as u32,
        "lfu-decay-time" => ev.lfu_decay_time = num() as u32,
        "hash-max-listpack-entries" => limits.hash_max_listpack_entries = num() as usize,
        "hash-max-listpack-value" => limits.hash_max_listpack_value = num() as usize,
        "set-max-intset-entries" => limits.set_max_intset_entries = num() as usize,
        "zset-max-listpack-entries" => limits.zset_max_listpack_entries = num() as usize,
        "zset-max-listpack-value" => limits.zset_max_listpack_value = num() as usize,
        "list-max-listpack-size" => limits.list_max_listpack_size = num(),
        "list-compress-depth" => limits.list_compress_depth = num(),
        "hll-sparse-max-bytes" => limits.hll_sparse_max_bytes = num() as usize,
        "stream-node-max-entries" => limits.stream_node_max_entries = num() as usize,
        "stream-node-max-bytes" => limits.stream_node_max_bytes = num() as usize,
        "notify-keyspace-events" => {
            let flags = super::notify::parse_flags(v.as_bytes()).unwrap_or(0);
            sh.pubsub.swap_notify_flags(flags);
            ks.set_notes(flags != 0);
            return;
        }
        "client-output-buffer-limit" => {
            if let Ok(l) = parse_buffer_limits(v, sh.pubsub.buffer_limits()) {
                sh.pubsub.set_buffer_limits(l);
            }
            return;
        }
        "latency-tracking" => {
            sh.stats.latency.enabled.store(v == "yes", Relaxed);
            sh.config_mut().params.insert(p.name, v.to_string());
            return;
        }
        _ => {
            let mut c = sh.config_mut();
            match p.name {
                "maxclients" => c.maxclients = num() as usize,
                "timeout" => c.timeout = unum(),
                "proto-max-bulk-len" => c.limits.max_bulk_len = num(),
                "requirepass" => {
                    c.requirepass = (!v.is_empty()).then(|| v.to_string());
                    sh.acl.set_requirepass(c.requirepass.as_deref());
                }
                "auth-failure-limit" => sh.acl.limiter.burst.store(unum(), Relaxed),
                "acllog-max-len" => sh.acl.log.set_max_len(unum() as usize),
                // Redis clamps hz to 1..500 rather than refusing.
                "hz" => {
                    c.params.insert(p.name, num().clamp(1, 500).to_string());
                }
                "slowlog-log-slower-than" => sh.slowlog.threshold_us.store(num(), Relaxed),
                "slowlog-max-len" => sh.slowlog.set_max_len(unum() as usize),
                "busy-reply-threshold" => {
                    sh.scripts.busy_ms.store(unum(), Relaxed);
                    c.params.insert(p.name, v.to_string());
                }
                "min-replicas-to-write" => {
                    sh.repl.min_replicas.store(unum(), Relaxed);
                    c.params.insert(p.name, v.to_string());
                }
                "min-replicas-max-lag" => {
                    sh.repl.min_replicas_lag_s.store(unum(), Relaxed);
                    c.params.insert(p.name, v.to_string());
                }
                _ => {
                    c.params.insert(p.name, v.to_string());
                }
            }
            return;
        }
    }
    if ev.maxmemory > 0 {
        sh.config_mut().maxmemory = ev.maxmemory;
    }
    ks.set_limits(limits);
    ks.set_eviction(ev);
    if p.name == "maxmemory" {
        // As Redis does: a lowered limit evicts at once, not at the next command.
        super::evict(sh);
    }
}

/// `client-output-buffer-limit` as CONFIG GET shows it (`normal 0 0 0 slave ... pubsub ...`).
fn format_buffer_limits(l: &[BufferLimit; 3]) -> String {
    LIMIT_CLASSES
        .iter()
        .zip(l)
        .map(|(class, l)| format!("{class} {} {} {}", l.hard, l.soft, l.soft_secs))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Applies `<class> <hard> <soft> <seconds>` groups to `base`, with Redis's errors.
fn parse_buffer_limits(v: &str, mut base: [BufferLimit; 3]) -> Result<[BufferLimit; 3], String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    if !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    for group in words.chunks(4) {
        let class = match group[0].to_ascii_lowercase().as_str() {
            "normal" => 0,
            "replica" | "slave" => 1,
            "pubsub" => 2,
            _ => {
                return Err("Invalid client class specified in buffer limit configuration.".into())
            }
        };
        let bad = || {
            "Error in hard, soft or soft_seconds setting in buffer limit configuration.".to_string()
        };
        let hard = parse_memory(group[1]).ok_or_else(bad)?;
        let soft = parse_memory(group[2]).ok_or_else(bad)?;
        let soft_secs = group[3].parse::<u64>().map_err(|_| bad())?;
        base[class] = BufferLimit {
            hard,
            soft,
            soft_secs,
        };
    }
    Ok(base)
}

pub fn config(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = table::lookup_sub(b"config", &sub) else {
        return unknown_subcommand(&a[1], "config");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    match &sub[..] {
        b"get" => config_get(ctx, a),
        b"set" => config_set(ctx, a),
        b"resetstat" => {
            let st = &ctx.shared.keyspace.stats;
            for c in [&st.hits, &st.misses, &st.expired, &st.evicted] {
                c.store(0, Relaxed);
            }
            ctx.shared.stats.reset();
            ctx.shared.acl.denied.reset();
            Reply::OK
        }
        b"rewrite" => Reply::error("ERR The server is running without a config file"),
        b"help" => ringcache_protocol::help::config(),
        _ => unknown_subcommand(&a[1], "config"),
    }
}

fn config_get(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut out: Vec<(Reply, Reply)> = Vec::new();
    for p in PARAMS {
        for name in std::iter::once(p.name).chain(p.alias) {
            let Some(pat) = a[2..]
                .iter()
                .find(|pat| glob::matches(pat, name.as_bytes(), true))
            else {
                continue;
            };
            let exact = !pat.iter().any(|c| b"*?[".contains(c));
            if exact && !pat.eq_ignore_ascii_case(name.as_bytes()) {
                continue;
            }
            // An exact name is echoed as the client spelled it, as Redis does.
            let shown = if exact {
                Reply::Bulk(pat.clone())
            } else {
                Reply::bulk_str(name)
            };
            if out.iter().any(|(n, _)| n == &shown) {
                continue;
            }
            out.push((shown, Reply::bulk_str(&get(ctx.shared, p))));
        }
    }
    Reply::Map(out)
}

fn config_set(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if !a.len().is_multiple_of(2) {
        return arity_error("config|set");
    }
    // Validate everything first so a failing pair leaves nothing half-applied, as in Redis.
    let mut updates = Vec::new();
    for pair in a[2..].chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let value = String::from_utf8_lossy(&pair[1]).into_owned();
        let Some(p) = find(&name) else {
            return Reply::Error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            ));
        };
        match validate(p, &value) {
            Ok(v) => updates.push((p, v)),
            Err(why) => {
                return Reply::Error(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
                ))
            }
        }
    }
    for (p, v) in updates {
        set(ctx.shared, p, &v);
    }
    Reply::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_speaks_redis() {
        let policy = find("maxmemory-policy").map(|p| validate(p, "foo"));
        assert!(matches!(policy, Some(Err(e)) if e.starts_with("argument(s) must be one of")));
        let samples = find("maxmemory-samples").map(|p| validate(p, "0"));
        assert_eq!(
            samples,
            Some(Err(
                "argument must be between 1 and 2147483647 inclusive".into()
            ))
        );
        assert!(find("hash-max-ziplist-entries").is_some());
        assert_eq!(
            find("appendonly").map(|p| validate(p, "YES")),
            Some(Ok("yes".into()))
        );
    }
}
