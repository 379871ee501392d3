//! INFO through the router: the router answers its own sections (server, router) and asks
//! every shard for the rest (clients, memory, persistence, stats, replication, cpu, errorstats,
//! commandstats, keyspace, ...), which it merges into one cluster-wide view: a field whose value
//! is an integer on every shard is summed (`used_memory`, `expired_keys`, `keyspace_hits`), a
//! structured one (`db0:keys=..,expires=..`, `cmdstat_get:calls=..`) is summed field by field,
//! anything else is the first shard's. The client-facing counters (connected clients,
//! connections, commands processed) are the router's own; blocked clients are the nodes'.

use std::fmt::Write;

use bytes::Bytes;
use ringcache_protocol::{Protocol, Reply};

use crate::frame;
use crate::upstream::UpResult;

/// One section of an INFO reply: its header and its fields in order.
#[derive(Debug, Default)]
struct Section {
    title: String,
    fields: Vec<(String, String)>,
}

fn parse(body: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in body.lines() {
        let line = line.trim_end();
        if let Some(title) = line.strip_prefix("# ") {
            out.push(Section {
                title: title.to_string(),
                fields: Vec::new(),
            });
        } else if let Some((k, v)) = line.split_once(':') {
            if let Some(section) = out.last_mut() {
                section.fields.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// `a` and `b` combined: integers summed, `k=v,...` lists summed per integer field.
/// Fields every shard holds a copy of (the router loads each script and library on every
/// shard): the cluster has what one shard has, the largest, not their sum.
const COPIED: [&str; 8] = [
    "number_of_cached_scripts",
    "number_of_functions",
    "number_of_libraries",
    "used_memory_lua",
    "used_memory_vm_eval",
    "used_memory_scripts_eval",
    "used_memory_vm_functions",
    "used_memory_functions",
];

fn combine(key: &str, a: &str, b: &str) -> String {
    if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
        if COPIED.contains(&key) {
            return x.max(y).to_string();
        }
        return x.saturating_add(y).to_string();
    }
    if key.starts_with("latency_percentiles_usec_") {
        return slowest(a, b);
    }
    if a.contains('=') && b.contains('=') {
        return per_field(a, b, |x, y| {
            Some(
                x.parse::<i64>()
                    .ok()?
                    .saturating_add(y.parse().ok()?)
                    .to_string(),
            )
        });
    }
    a.to_string()
}

/// `a`'s `k=v,...` fields, each combined by `f` with `b`'s of the same name where it gives a
/// value, else as they are.
fn per_field(a: &str, b: &str, f: impl Fn(&str, &str) -> Option<String>) -> String {
    let theirs: Vec<(&str, &str)> = b.split(',').filter_map(|f| f.split_once('=')).collect();
    a.split(',')
        .map(|field| {
            field
                .split_once('=')
                .and_then(|(k, v)| {
                    let (_, v2) = theirs.iter().find(|(k2, _)| *k2 == k)?;
                    Some(format!("{k}={}", f(v, v2)?))
                })
                .unwrap_or_else(|| field.to_string())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Two shards' latency percentiles (`p50=1.003,p99=…`): each the larger, so the cluster's line
/// bounds what any shard saw (percentiles of two distributions do not add).
fn slowest(a: &str, b: &str) -> String {
    per_field(a, b, |x, y| {
        Some(format!(
            "{:.3}",
            x.parse::<f64>().ok()?.max(y.parse().ok()?)
        ))
    })
}

/// The client's INFO reply: `text` (the router's own sections), then the shards' sections merged,
/// with `overrides` replacing fields of the merged ones and `adds` added to them.
pub fn merge(
    text: &str,
    proto: Protocol,
    parts: &[UpResult],
    overrides: &[(&str, u64)],
    adds: &[(&str, u64)],
) -> Bytes {
    let mut merged: Vec<Section> = Vec::new();
    for p in parts {
        let Some(body) = p.as_ref().ok().and_then(|raw| frame::bulk_payload(raw)) else {
            tracing::debug!("INFO: a shard did not answer");
            continue;
        };
        for section in parse(&String::from_utf8_lossy(body)) {
            let Some(mine) = merged.iter_mut().find(|s| s.title == section.title) else {
                merged.push(section);
                continue;
            };
            for (k, v) in section.fields {
                match mine.fields.iter_mut().find(|(k2, _)| *k2 == k) {
                    Some((_, v2)) => *v2 = combine(&k, v2, &v),
                    None => mine.fields.push((k, v)),
                }
            }
        }
    }
    let mut out = text.to_string();
    for section in &mut merged {
        for (k, v) in section.fields.iter_mut() {
            if let Some((_, n)) = overrides.iter().find(|(name, _)| name == k) {
                *v = n.to_string();
            } else if let Some((_, n)) = adds.iter().find(|(name, _)| name == k) {
                *v = (v.parse::<u64>().unwrap_or(0) + n).to_string();
            }
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let _ = write!(out, "# {}\r\n", section.title);
        for (k, v) in &section.fields {
            let _ = write!(out, "{k}:{v}\r\n");
        }
    }
    Reply::Verbatim(Bytes::from(out)).to_bytes(proto)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> UpResult {
        Ok(Reply::Verbatim(Bytes::from(s.to_string())).to_bytes(Protocol::Resp2))
    }

    #[test]
    fn shards_sum_their_counts() {
        let a = "# Clients\r\nblocked_clients:1\r\n\r\n# Memory\r\nused_memory:100\r\nmem_allocator:mimalloc\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n";
        let b = "# Clients\r\nblocked_clients:2\r\n\r\n# Memory\r\nused_memory:50\r\nmem_allocator:mimalloc\r\n\r\n# Stats\r\ntotal_commands_processed:9\r\n\r\n# Keyspace\r\ndb0:keys=4,expires=0,avg_ttl=0\r\n";
        let got = merge(
            "# Server\r\nx:1\r\n",
            Protocol::Resp2,
            &[bulk(a), bulk(b)],
            &[("total_commands_processed", 77)],
            &[("blocked_clients", 4)],
        );
        let text =
            String::from_utf8_lossy(frame::bulk_payload(&got).expect("a bulk reply")).into_owned();
        assert!(
            text.starts_with("# Server\r\nx:1\r\n\r\n# Clients\r\nblocked_clients:7\r\n"),
            "{text}"
        );
        assert!(text.contains("# Memory\r\nused_memory:150\r\n"), "{text}");
        assert!(text.contains("mem_allocator:mimalloc\r\n"), "{text}");
        assert!(
            text.contains("db0:keys=7,expires=1,avg_ttl=0\r\n"),
            "{text}"
        );
        assert!(
            text.contains("# Stats\r\ntotal_commands_processed:77\r\n"),
            "{text}"
        );
    }

    #[test]
    fn latency_percentiles_take_the_slowest_shard() {
        let a =
            "# Latencystats\r\nlatency_percentiles_usec_get:p50=1.003,p99=8.191,p99.9=20.479\r\n";
        let b =
            "# Latencystats\r\nlatency_percentiles_usec_get:p50=2.047,p99=4.095,p99.9=20.479\r\n";
        let got = merge("", Protocol::Resp2, &[bulk(a), bulk(b)], &[], &[]);
        let text =
            String::from_utf8_lossy(frame::bulk_payload(&got).expect("a bulk reply")).into_owned();
        assert!(
            text.contains("latency_percentiles_usec_get:p50=2.047,p99=8.191,p99.9=20.479\r\n"),
            "{text}"
        );
    }

    #[test]
    fn copies_on_every_shard_count_once() {
        let a =
            "# Memory\r\nused_memory_lua:900\r\nused_memory:10\r\nnumber_of_cached_scripts:3\r\n";
        let b =
            "# Memory\r\nused_memory_lua:800\r\nused_memory:10\r\nnumber_of_cached_scripts:3\r\n";
        let got = merge("", Protocol::Resp2, &[bulk(a), bulk(b)], &[], &[]);
        let text =
            String::from_utf8_lossy(frame::bulk_payload(&got).expect("a bulk reply")).into_owned();
        assert!(text.contains("used_memory_lua:900\r\n"), "{text}");
        assert!(text.contains("number_of_cached_scripts:3\r\n"), "{text}");
        assert!(text.contains("used_memory:20\r\n"), "{text}");
    }
}
