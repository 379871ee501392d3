//! Server commands: INFO, COMMAND, CONFIG, TIME.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use ringcache_protocol::table;
use ringcache_protocol::{Protocol, Reply};

use super::args::{arity_error, unknown_subcommand};
use super::ctx::Ctx;
use crate::config::{human_bytes, parse_memory};
use crate::store::now_ms;
use ringcache_protocol::glob;

const DEFAULT_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "stats",
    "replication",
    "keyspace",
];
const ALL_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "stats",
    "replication",
    "cluster",
    "keyspace",
];

pub fn info(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut wanted: Vec<String> = Vec::new();
    for arg in &a[1..] {
        let arg = String::from_utf8_lossy(arg).to_ascii_lowercase();
        match arg.as_str() {
            "all" | "everything" => wanted.extend(ALL_SECTIONS.iter().map(|s| s.to_string())),
            "default" => wanted.extend(DEFAULT_SECTIONS.iter().map(|s| s.to_string())),
            _ => wanted.push(arg),
        }
    }
    if wanted.is_empty() {
        wanted.extend(DEFAULT_SECTIONS.iter().map(|s| s.to_string()));
    }
    let mut out = String::new();
    for section in ALL_SECTIONS {
        if !wanted.iter().any(|w| w == section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        section_text(ctx, section, &mut out);
    }
    Reply::Verbatim(Bytes::from(out))
}

/// Resident set size from /proc (0 where it is unavailable).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn section_text(ctx: &Ctx, section: &str, out: &mut String) {
    let sh = ctx.shared;
    let cfg = sh.config();
    let _ = match section {
        "server" => {
            let uptime = sh.started.elapsed().as_secs();
            write!(
                out,
                "# Server\r\nredis_version:{}\r\nringcache_version:{}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:epoll\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nexecutable:{}\r\nconfig_file:\r\n",
                super::connection::REDIS_COMPAT_VERSION,
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
                std::process::id(),
                sh.run_id,
                sh.port,
                now_ms() * 1000,
                uptime,
                uptime / 86400,
                std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            )
        }
        "clients" => write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\nblocked_clients:0\r\ntracking_clients:0\r\n",
            sh.clients.len(),
            cfg.maxclients
        ),
        "memory" => {
            // used_memory is the process's resident memory (what an operator watches);
            // used_memory_dataset is what maxmemory bounds: the keyspace's weighed bytes.
            let dataset = sh.store.used_bytes();
            let rss = rss_bytes().max(dataset);
            write!(
                out,
                "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_dataset:{dataset}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:allkeys-lfu\r\neviction_algorithm:tinylfu\r\n",
                human_bytes(rss),
                human_bytes(rss),
                cfg.maxmemory,
                human_bytes(cfg.maxmemory),
            )
        }
        "stats" => {
            let st = &sh.store.stats;
            write!(
                out,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n",
                sh.clients.total_connections.load(Relaxed),
                sh.stats.commands.load(Relaxed),
                sh.stats.net_input.load(Relaxed),
                sh.stats.net_output.load(Relaxed),
                sh.clients.rejected_connections.load(Relaxed),
                st.expired.load(Relaxed),
                st.evicted.load(Relaxed),
                st.hits.load(Relaxed),
                st.misses.load(Relaxed),
            )
        }
        "replication" => {
            out.push_str("# Replication\r\n");
            sh.repl.info(out);
            Ok(())
        }
        "cluster" => {
            out.push_str("# Cluster\r\ncluster_enabled:0\r\n");
            sh.topology.info(out);
            Ok(())
        }
        "keyspace" => {
            out.push_str("# Keyspace\r\n");
            let (keys, expires) = sh.store.keyspace_counts();
            if keys > 0 {
                let _ = write!(out, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
            }
            Ok(())
        }
        _ => Ok(()),
    };
}

pub fn command(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    table::command_reply(a, ctx.session.proto == Protocol::Resp3)
}

/// Parameters CONFIG GET reports, with their current values.
fn config_params(ctx: &Ctx) -> Vec<(&'static str, String)> {
    let c = ctx.shared.config();
    vec![
        ("bind", c.bind.clone()),
        ("port", ctx.shared.port.to_string()),
        ("maxmemory", c.maxmemory.to_string()),
        ("maxmemory-policy", "allkeys-lfu".into()),
        ("maxclients", c.maxclients.to_string()),
        ("timeout", c.timeout.to_string()),
        ("requirepass", c.requirepass.clone().unwrap_or_default()),
        ("proto-max-bulk-len", c.limits.max_bulk_len.to_string()),
        ("databases", "1".into()),
        ("save", String::new()),
        ("appendonly", "no".into()),
        (
            "replicaof",
            ctx.shared.repl.primary_addr().unwrap_or_default(),
        ),
    ]
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
        b"get" => {
            let params = config_params(ctx);
            let mut out = Vec::new();
            for (name, value) in &params {
                let Some(p) = a[2..]
                    .iter()
                    .find(|p| glob::matches(p, name.as_bytes(), true))
                else {
                    continue;
                };
                // Redis echoes an exact (non-glob) name as the client spelled it.
                let shown = if p.iter().any(|c| b"*?[".contains(c)) {
                    Reply::bulk_str(name)
                } else {
                    Reply::Bulk(p.clone())
                };
                out.push((shown, Reply::bulk_str(value)));
            }
            Reply::Map(out)
        }
        b"set" => config_set(ctx, a),
        b"resetstat" => {
            let st = &ctx.shared.store.stats;
            for c in [&st.hits, &st.misses, &st.expired, &st.evicted] {
                c.store(0, Relaxed);
            }
            for c in [
                &ctx.shared.stats.commands,
                &ctx.shared.stats.net_input,
                &ctx.shared.stats.net_output,
            ] {
                c.store(0, Relaxed);
            }
            Reply::OK
        }
        b"rewrite" => Reply::error("ERR The server is running without a config file"),
        _ => unknown_subcommand(&a[1], "config"),
    }
}

fn config_set(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if !a.len().is_multiple_of(2) {
        return arity_error("config|set");
    }
    // Validate everything first so a failing pair leaves nothing half-applied, as in Redis.
    let mut updates: Vec<(String, String)> = Vec::new();
    for pair in a[2..].chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let value = String::from_utf8_lossy(&pair[1]).into_owned();
        let fail = |why: &str| {
            Reply::Error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
            ))
        };
        let ok = match name.as_str() {
            "maxmemory" => {
                parse_memory(&value).is_some() || return fail("argument must be a memory value")
            }
            "maxclients" | "timeout" | "proto-max-bulk-len" => {
                value.parse::<u64>().is_ok()
                    || return fail("argument couldn't be parsed into an integer")
            }
            "requirepass" => true,
            "save" | "appendonly" => {
                value.is_empty() || value == "no" || return fail("persistence is not supported")
            }
            _ => {
                return Reply::Error(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                ))
            }
        };
        if ok {
            updates.push((name, value));
        }
    }
    let mut c = ctx.shared.config_mut();
    for (name, value) in updates {
        match name.as_str() {
            "maxclients" => c.maxclients = value.parse().unwrap_or(c.maxclients),
            "timeout" => c.timeout = value.parse().unwrap_or(c.timeout),
            "proto-max-bulk-len" => {
                c.limits.max_bulk_len = value.parse().unwrap_or(c.limits.max_bulk_len)
            }
            "requirepass" => c.requirepass = (!value.is_empty()).then_some(value),
            "maxmemory" => {
                if let Some(n) = parse_memory(&value) {
                    if n != c.maxmemory {
                        c.maxmemory = n;
                        ctx.shared.store.set_maxmemory(n);
                    }
                }
            }
            _ => {}
        }
    }
    Reply::OK
}
