//! Server commands: INFO (Redis 7's sections and fields), COMMAND, MEMORY, and CONFIG (in
//! `super::config`).

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use ringcache_protocol::table;
use ringcache_protocol::{Protocol, Reply};

use super::args::{int_arg, is, syntax_error, unknown_subcommand};
use super::ctx::Ctx;
use crate::config::human_bytes;
use crate::keyspace::{lru_clock, now_ms};

pub use super::config::config;

use ringcache_protocol::clients::INFO_DEFAULT_SECTIONS as DEFAULT_SECTIONS;
/// Every section, in Redis's order (`INFO all` / `everything`).
const ALL_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "commandstats",
    "errorstats",
    "latencystats",
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

/// A field of /proc/self/stat (1-based, as proc(5) numbers them), 0 where unavailable.
fn proc_stat(field: usize) -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The command name may hold spaces: fields count from after its closing paren.
            let rest = s.rsplit_once(')')?.1;
            rest.split_whitespace().nth(field - 3)?.parse().ok()
        })
        .unwrap_or(0)
}

/// INFO memory's scripting fields (one VM holds both scripts and functions here).
fn scripting_memory(sh: &crate::state::Shared) -> String {
    let s = &sh.scripts;
    let vm = s.vm_memory.load(Relaxed);
    let eval = s.scripts_memory.load(Relaxed);
    let functions = s.functions_memory.load(Relaxed);
    format!(
        "used_memory_lua:{vm}\r\nused_memory_vm_eval:{vm}\r\nused_memory_lua_human:{}\r\nused_memory_scripts_eval:{eval}\r\nnumber_of_cached_scripts:{}\r\nnumber_of_functions:{}\r\nnumber_of_libraries:{}\r\nused_memory_vm_functions:0\r\nused_memory_vm_total:{vm}\r\nused_memory_vm_total_human:{}\r\nused_memory_functions:{functions}\r\nused_memory_scripts:{}\r\nused_memory_scripts_human:{}\r\n",
        human_bytes(vm as u64),
        s.cached_scripts.load(Relaxed),
        s.functions.load(Relaxed),
        s.libraries.load(Relaxed),
        human_bytes(vm as u64),
        eval + functions,
        human_bytes((eval + functions) as u64),
    )
}

/// Resident set size from /proc (0 where it is unavailable).
pub fn rss_bytes() -> u64 {
    statm().map_or(0, |(resident, _)| resident)
}

/// Anonymous resident bytes (RSS less file-backed and shared pages: the heap, stacks), 0 where
/// /proc is unavailable.
pub fn anon_rss_bytes() -> u64 {
    statm().map_or(0, |(resident, shared)| resident.saturating_sub(shared))
}

/// Resident and shared bytes from /proc/self/statm (its second and third fields, in pages).
fn statm() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut pages = text
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>().ok().map(|p| p * 4096));
    Some((pages.next()??, pages.next()??))
}

fn section_text(ctx: &Ctx, section: &str, out: &mut String) {
    let sh = ctx.shared;
    let cfg = sh.config();
    let ks = &sh.keyspace;
    let _ = match section {
        "server" => {
            let uptime = sh.started.elapsed().as_secs();
            write!(
                out,
                "# Server\r\nredis_version:{}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\nredis_mode:standalone\r\nringcache_version:{}\r\nos:{} {}\r\narch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\natomicvar_api:c11-builtin\r\nprocess_id:{}\r\nprocess_supervised:no\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:10\r\nconfigured_hz:10\r\nlru_clock:{}\r\nexecutable:{}\r\nconfig_file:\r\nio_threads_active:0\r\n",
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
                lru_clock(now_ms()),
                std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            )
        }
        "clients" => write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\nclient_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\nblocked_clients:{}\r\ntracking_clients:0\r\nclients_in_timeout_table:{}\r\nparked_clients:{}\r\n",
            sh.clients.len(),
            cfg.maxclients,
            sh.blocked.count() + sh.pause.waiting.load(std::sync::atomic::Ordering::Relaxed),
            sh.blocked.count(),
            sh.clients.parked(),
        ),
        "memory" => {
            // used_memory (what maxmemory bounds) is the allocator's count; the dataset is the
            // entries' own count, and the overhead what else the process holds.
            let ev = ks.eviction();
            let used = ks.used_memory();
            let dataset = ks.used_bytes().min(used);
            let overhead = used - dataset;
            let startup = ks.overhead_bytes();
            let rss = rss_bytes();
            write!(
                out,
                "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{used}\r\nused_memory_peak_human:{}\r\nused_memory_overhead:{overhead}\r\nused_memory_startup:{startup}\r\nused_memory_dataset:{dataset}\r\ntotal_system_memory:0\r\n{}maxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmaxmemory_rss_reserve:{}\r\nmem_fragmentation_ratio:{:.2}\r\nmem_allocator:mimalloc\r\nlazyfree_pending_objects:0\r\n",
                human_bytes(used),
                human_bytes(rss),
                human_bytes(used),
                scripting_memory(sh),
                ev.maxmemory,
                human_bytes(ev.maxmemory),
                ev.policy.name(),
                ks.rss_reserve(),
                if used > 0 { rss as f64 / used as f64 } else { 1.0 },
            )
        }
        "persistence" => write!(
            out,
            "# Persistence\r\nloading:0\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\ncurrent_fork_perc:0.00\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:ok\r\nrdb_last_bgsave_time_sec:-1\r\nrdb_current_bgsave_time_sec:-1\r\naof_enabled:0\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\naof_last_rewrite_time_sec:-1\r\naof_current_rewrite_time_sec:-1\r\naof_last_bgrewrite_status:ok\r\naof_last_write_status:ok\r\n",
            ks.stats.dirty.load(Relaxed),
            sh.started_unix,
        ),
        "stats" => {
            let st = &ks.stats;
            write!(
                out,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ninstantaneous_ops_per_sec:0\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:{}\r\nsync_full:0\r\nsync_partial_ok:0\r\nsync_partial_err:0\r\nexpired_keys:{}\r\nexpired_stale_perc:0.00\r\nexpired_time_cap_reached_count:0\r\nevicted_keys:{}\r\nevicted_clients:0\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\npubsubshard_channels:{}\r\nlatest_fork_usec:0\r\ntotal_forks:0\r\nmigrate_cached_sockets:0\r\ntotal_error_replies:{}\r\n",
                sh.clients.total_connections.load(Relaxed),
                sh.stats.commands.load(Relaxed),
                sh.stats.net_input.load(Relaxed),
                sh.stats.net_output.load(Relaxed),
                sh.clients.rejected_connections.load(Relaxed),
                st.expired.load(Relaxed),
                st.evicted.load(Relaxed),
                st.hits.load(Relaxed),
                st.misses.load(Relaxed),
                sh.pubsub.channel_count(false),
                sh.pubsub.numpat(),
                sh.pubsub.channel_count(true),
                sh.stats.error_replies.load(Relaxed),
            )
            .map(|()| sh.acl.denied.info(out))
        }
        "replication" => {
            out.push_str("# Replication\r\n");
            sh.repl.info(out);
            Ok(())
        }
        "cpu" => {
            // /proc reports clock ticks (100 a second on Linux).
            let (user, sys) = (proc_stat(14) as f64 / 100.0, proc_stat(15) as f64 / 100.0);
            write!(
                out,
                "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_children:0.000000\r\nused_cpu_sys_main_thread:{sys:.6}\r\nused_cpu_user_main_thread:{user:.6}\r\n",
            )
        }
        "modules" => write!(out, "# Modules\r\n"),
        "commandstats" => {
            out.push_str("# Commandstats\r\n");
            sh.stats.commandstats(out);
            Ok(())
        }
        "errorstats" => {
            out.push_str("# Errorstats\r\n");
            for (code, n) in crate::keyspace::lock(&sh.stats.errors).iter() {
                let _ = write!(out, "errorstat_{code}:count={n}\r\n");
            }
            Ok(())
        }
        "latencystats" => {
            out.push_str("# Latencystats\r\n");
            sh.stats.latency.info(&sh.latency_percentiles(), out);
            Ok(())
        }
        "cluster" => {
            out.push_str("# Cluster\r\ncluster_enabled:0\r\n");
            sh.topology.info(out);
            Ok(())
        }
        "keyspace" => {
            out.push_str("# Keyspace\r\n");
            let (keys, expires) = (ks.len(), ks.volatile());
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

/// MEMORY USAGE key [SAMPLES n] | MALLOC-STATS | PURGE | HELP.
pub fn memory(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if is(&a[1], "help") && a.len() == 2 {
        return Reply::status_lines(&[
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
            "MALLOC-STATS",
            "    Return internal statistics report from the memory allocator.",
            "PURGE",
            "    Attempt to purge dirty pages for reclamation by the allocator.",
            "HELP",
            "    Prints this help.",
        ]);
    }
    if a.len() == 2 && is(&a[1], "malloc-stats") {
        return Reply::Bulk(Bytes::from(ringcache_alloc::stats_text()));
    }
    if a.len() == 2 && is(&a[1], "purge") {
        ringcache_alloc::release_free_pages();
        return Reply::OK;
    }
    if !is(&a[1], "usage") || a.len() < 3 {
        return unknown_subcommand(&a[1], "memory");
    }
    match a.len() {
        3 => {}
        5 if is(&a[3], "samples") => {
            if let Err(e) = int_arg(&a[4]) {
                return e;
            }
        }
        _ => return syntax_error(),
    }
    match ctx.db.peek(&a[2]) {
        Some(e) => Reply::Int(e.mem_usage() as i64),
        None => Reply::Nil,
    }
}

/// SLOWLOG GET [count] | LEN | RESET | HELP.
pub fn slowlog(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let log = &ctx.shared.slowlog;
    match a.len() {
        2 if is(&a[1], "help") => Reply::status_lines(&[
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
            "HELP",
            "    Prints this help.",
        ]),
        2 if is(&a[1], "reset") => {
            log.reset();
            Reply::OK
        }
        2 if is(&a[1], "len") => Reply::Int(log.len() as i64),
        2 if is(&a[1], "get") => log.reply(Some(10)),
        3 if is(&a[1], "get") => match int_arg(&a[2]) {
            Ok(-1) => log.reply(None),
            Ok(n) if n >= 0 => log.reply(Some(n as usize)),
            _ => Reply::error("ERR count should be greater than or equal to -1"),
        },
        _ => unknown_subcommand(&a[1], "slowlog"),
    }
}
