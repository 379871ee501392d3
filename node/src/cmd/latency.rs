//! LATENCY: HISTOGRAM from the per-command run-time distributions (`state::latency`), and the
//! latency monitor's subcommands. The monitor (spikes of named events above
//! `latency-monitor-threshold`) records no events here, so LATEST and HISTORY are empty, as on a
//! Redis whose monitor is off, its default.

use bytes::Bytes;
use ringcache_protocol::{table, Reply};

use super::args::{arity_error, unknown_subcommand};
use super::ctx::Ctx;
use crate::state::latency::CommandHistogram;

pub fn latency(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = table::lookup_sub(b"latency", &sub) else {
        return unknown_subcommand(&a[1], "latency");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    match &sub[..] {
        b"histogram" => histogram(ctx, &a[2..]),
        b"latest" => Reply::Array(Vec::new()),
        b"history" => Reply::Array(Vec::new()),
        b"reset" => Reply::Int(0),
        b"graph" => Reply::Error(format!(
            "ERR No samples available for event '{}'",
            String::from_utf8_lossy(&a[2])
        )),
        b"doctor" => Reply::Verbatim(Bytes::from(doctor(ctx))),
        b"help" => help(),
        _ => unknown_subcommand(&a[1], "latency"),
    }
}

/// LATENCY HISTOGRAM [command ...]: each command's calls and cumulative counts by µs, in the
/// order asked (all, in table order, when none is named); a container's name stands for its
/// subcommands, an unknown name for nothing.
fn histogram(ctx: &Ctx, names: &[Bytes]) -> Reply {
    let all = ctx.shared.stats.latency.histograms();
    let chosen: Vec<&CommandHistogram> = if names.is_empty() {
        all.iter().collect()
    } else {
        names
            .iter()
            .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
            .flat_map(|n| {
                let exact = all.iter().filter(|(name, _, _)| *name == n);
                let subs = all.iter().filter(|(name, _, _)| {
                    name.strip_prefix(n.as_str())
                        .is_some_and(|r| r.starts_with('|'))
                });
                exact.chain(subs).collect::<Vec<_>>()
            })
            .collect()
    };
    let entries = chosen
        .into_iter()
        .map(|(name, calls, points)| {
            ringcache_protocol::latency::histogram_entry(
                Bytes::from_static(name.as_bytes()),
                *calls as i64,
                points
                    .iter()
                    .map(|&(usec, count)| (usec as i64, count as i64)),
            )
        })
        .collect();
    Reply::Map(entries)
}

fn doctor(ctx: &Ctx) -> String {
    let threshold = ctx
        .shared
        .config()
        .params
        .get("latency-monitor-threshold")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    if threshold == 0 {
        "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. \
         You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable \
         it. If we weren't in a deep space mission I'd suggest to take a look at \
         https://redis.io/topics/latency-monitor.\n"
            .into()
    } else {
        "Dave, no latency spike was observed during the lifetime of this Redis instance, not in \
         the slightest bit. I honestly think you ought to sleep tonight.\n"
            .into()
    }
}

fn help() -> Reply {
    Reply::status_lines(&[
        "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "DOCTOR",
        "    Return a human readable latency analysis report.",
        "GRAPH <event>",
        "    Return an ASCII latency graph for the <event> class.",
        "HISTORY <event>",
        "    Return time-latency samples for the <event> class.",
        "LATEST",
        "    Return the latest latency samples for all events.",
        "RESET [<event> ...]",
        "    Reset latency data of one or more <event> classes.",
        "    (default: reset all data for all event classes)",
        "HISTOGRAM [COMMAND ...]",
        "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
        "    If no commands are specified then all histograms are replied.",
        "HELP",
        "    Prints this help.",
    ])
}
