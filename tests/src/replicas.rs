//! A replica next to its primary: starting one, waiting until it caught up, and comparing the
//! two keyspaces. "In sync" means: the replica's link is up and its `slave_repl_offset` equals
//! the primary's `master_repl_offset`; then the whole keyspace (type, value, absolute deadline)
//! must be equal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use ringcache_protocol::Reply;

use crate::commands::num;
use crate::procs::{start_node, Proc};
use crate::raw::{encode, Raw};
use crate::replies::ReplyExt;

/// How long a replica may take to catch up (debug builds on a shared 2-core machine).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts a node replicating from `primary` (an address) from the start.
pub fn start_replica_of(primary: SocketAddr, extra: &[&str]) -> Proc {
    let target = primary.to_string();
    let mut args = vec!["--replica-of", target.as_str()];
    args.extend_from_slice(extra);
    start_node(&args)
}

/// `INFO replication` as field → value (its header checked).
pub fn replication_info(c: &mut Raw) -> BTreeMap<String, String> {
    let r = c.cmd(&["INFO", "replication"]);
    let text = match &r {
        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("INFO replication should be a bulk string, got {other:?}"),
    };
    assert!(
        text.starts_with("# Replication\r\n"),
        "INFO replication header: {text:?}"
    );
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Whether the replica's link is up and it applied everything the primary propagated; also a
/// description of both sides for failure messages.
pub fn in_sync(p: &mut Raw, r: &mut Raw) -> (bool, String) {
    let pi = replication_info(p);
    let ri = replication_info(r);
    let ok = ri.get("master_link_status").map(String::as_str) == Some("up")
        && num(&ri, "slave_repl_offset") == num(&pi, "master_repl_offset");
    (
        ok,
        format!("primary {}: {pi:?}\nreplica {}: {ri:?}", peer(p), peer(r)),
    )
}

/// Waits up to `within` until the replica caught up with the primary (see [`in_sync`]).
pub fn wait_synced(p: &mut Raw, r: &mut Raw, within: Duration) {
    let mut last: String;
    assert_eventually!(
        {
            let (ok, state) = in_sync(p, r);
            last = state;
            ok
        },
        within,
        "replica never caught up with its primary:\n{last}"
    );
}

/// Waits up to `within` until the primary has `n` replicas attached.
pub fn wait_replicas(p: &mut Raw, n: u64, within: Duration) {
    let mut last: BTreeMap<String, String>;
    assert_eventually!(
        {
            last = replication_info(p);
            num(&last, "connected_slaves") == n
        },
        within,
        "primary never had {n} replicas: {last:?}"
    );
}

fn peer(c: &Raw) -> String {
    c.stream()
        .peer_addr()
        .map_or_else(|e| format!("(no peer: {e})"), |a| a.to_string())
}

/// Every key of a node as key → "type value deadline" (hash fields sorted; the deadline is
/// PEXPIRETIME, so it must match exactly between primary and replica).
pub fn dump(c: &mut Raw) -> BTreeMap<String, String> {
    let keys = c.cmd(&["KEYS", "*"]).strings();
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(250) {
        let mut buf = Vec::new();
        for k in chunk {
            buf.extend_from_slice(&encode(&["TYPE", k]));
            buf.extend_from_slice(&encode(&["PEXPIRETIME", k]));
        }
        c.send(&buf);
        let meta: Vec<(String, i64)> = chunk
            .iter()
            .map(|_| (c.reply().text(), c.reply().int()))
            .collect();
        let mut buf = Vec::new();
        for (k, (t, _)) in chunk.iter().zip(&meta) {
            let cmd = match t.as_str() {
                "string" => "GET",
                "hash" => "HGETALL",
                _ => "EXISTS",
            };
            buf.extend_from_slice(&encode(&[cmd, k]));
        }
        c.send(&buf);
        for (k, (t, exp)) in chunk.iter().zip(&meta) {
            let v = c.reply();
            let value = match t.as_str() {
                "string" => format!("{:?}", v.text()),
                "hash" => {
                    let mut pairs: Vec<(String, String)> =
                        v.pairs().into_iter().map(|(f, v)| (f, v.text())).collect();
                    pairs.sort();
                    format!("{pairs:?}")
                }
                // Expired between KEYS and TYPE: not part of the state.
                _ => continue,
            };
            out.insert(k.clone(), format!("{t} {value} deadline={exp}"));
        }
    }
    out
}

fn clip(s: Option<&String>) -> String {
    match s {
        None => "(missing)".into(),
        Some(s) if s.len() > 160 => format!("{}…", &s[..160]),
        Some(s) => s.clone(),
    }
}

/// Asserts both nodes hold exactly the same keys, values and deadlines; returns the key count.
pub fn assert_same_data(p: &mut Raw, r: &mut Raw, what: &str) -> usize {
    let a = dump(p);
    let b = dump(r);
    if a != b {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let diffs: Vec<String> = keys
            .into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| {
                format!(
                    "  {k}: primary {} | replica {}",
                    clip(a.get(k)),
                    clip(b.get(k))
                )
            })
            .collect();
        panic!(
            "{what}: replica {} differs from primary {} in {} keys (primary {} keys, replica {}); first:\n{}",
            peer(r),
            peer(p),
            diffs.len(),
            a.len(),
            b.len(),
            diffs[..diffs.len().min(20)].join("\n")
        );
    }
    a.len()
}
