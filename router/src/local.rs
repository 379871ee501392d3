//! Commands the router answers itself: the connection commands (PING, ECHO, HELLO, AUTH, SELECT,
//! QUIT, RESET, CLIENT), COMMAND, CONFIG GET, INFO, TIME, and the `RING` admin commands.
//!
//! Replies and error texts follow Redis 7 (and the node, whose `cmd/connection.rs` and
//! `cmd/server.rs` hold the same logic; the shared parts could move to `protocol`).

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use ringcache_protocol::glob;
use ringcache_protocol::hash::{hash_tag, key_hash};
use ringcache_protocol::table::{self, CommandSpec};
use ringcache_protocol::{Protocol, Reply};

use crate::clients::lock;
use crate::merge::{How, Merge, Slot};
use crate::proxy::{Router, Session};
use crate::topology::Topology;

pub use ringcache_protocol::errors::{
    arity_error, unknown_command, unknown_subcommand, REDIS_COMPAT_VERSION,
};

fn syntax_error() -> Reply {
    Reply::error("ERR syntax error")
}

fn not_integer() -> Reply {
    Reply::error("ERR value is not an integer or out of range")
}

fn is(a: &[u8], kw: &str) -> bool {
    a.eq_ignore_ascii_case(kw.as_bytes())
}

fn int_arg(a: &[u8]) -> Result<i64, Reply> {
    ringcache_protocol::num::parse_i64(a).ok_or_else(not_integer)
}

/// The error for commands a multiplexing proxy cannot serve (blocking, replication, persistence).
pub fn unsupported(spec: &CommandSpec) -> Reply {
    Reply::Error(format!(
        "ERR command '{}' is not supported by the ringcache router; send it to a node directly",
        spec.name
    ))
}

/// Runs a router-answered command.
pub fn run(
    router: &Router,
    topo: &Topology,
    s: &mut Session,
    spec: &'static CommandSpec,
    a: &[Bytes],
) -> Slot {
    let reply = match spec.name {
        "ping" => match a.len() {
            1 => Reply::Status("PONG"),
            2 => Reply::Bulk(a[1].clone()),
            _ => arity_error("ping"),
        },
        "echo" => Reply::Bulk(a[1].clone()),
        "hello" => hello(router, s, a),
        "auth" => auth(router, s, a),
        "select" => match int_arg(&a[1]) {
            Ok(0) => Reply::OK,
            Ok(n) if (0..16).contains(&n) => {
                Reply::error("ERR SELECT is not allowed in cluster mode")
            }
            Ok(_) => Reply::error("ERR DB index is out of range"),
            Err(e) => e,
        },
        "quit" => {
            s.closing = true;
            Reply::OK
        }
        "reset" => {
            s.proto = Protocol::Resp2;
            *lock(&s.client.name) = None;
            if router.config.requirepass.is_some() {
                s.authenticated = false;
            }
            Reply::Status("RESET")
        }
        "client" => client(router, s, a),
        "command" => command(s, a),
        "config" => config(router, a),
        "time" => ringcache_protocol::resp::time_reply(),
        "info" => return info(router, topo, s, a),
        "ring" => return ring(router, topo, s, a),
        _ => unsupported(spec),
    };
    // After the command: HELLO 3 answers in the protocol it switches to, as Redis does.
    Slot::reply(&reply, s.proto)
}

fn wrongpass() -> Reply {
    Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
}

fn check_auth(router: &Router, user: &[u8], pass: &[u8]) -> bool {
    if user != b"default" {
        return false;
    }
    match &router.config.requirepass {
        Some(p) => p.as_bytes() == pass,
        // The default user has no password: any password is accepted, as with Redis's `nopass`.
        None => true,
    }
}

fn auth(router: &Router, s: &mut Session, a: &[Bytes]) -> Reply {
    let (user, pass) = match a.len() {
        2 => {
            if router.config.requirepass.is_none() {
                return Reply::error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
            }
            (&b"default"[..], &a[1][..])
        }
        3 => (&a[1][..], &a[2][..]),
        _ => return syntax_error(),
    };
    if check_auth(router, user, pass) {
        s.authenticated = true;
        Reply::OK
    } else {
        wrongpass()
    }
}

fn set_name(s: &Session, name: &Bytes) -> Result<(), Reply> {
    if !name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        return Err(Reply::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    *lock(&s.client.name) = (!name.is_empty()).then(|| name.clone());
    Ok(())
}

fn hello(router: &Router, s: &mut Session, a: &[Bytes]) -> Reply {
    let mut proto = None;
    if a.len() >= 2 {
        match int_arg(&a[1]) {
            Ok(2) => proto = Some(Protocol::Resp2),
            Ok(3) => proto = Some(Protocol::Resp3),
            Ok(_) => return Reply::error("NOPROTO unsupported protocol version"),
            Err(_) => {
                return Reply::error("ERR Protocol version is not an integer or out of range")
            }
        }
    }
    let mut auth: Option<(Bytes, Bytes)> = None;
    let mut name: Option<Bytes> = None;
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - i - 1;
        if is(&a[i], "auth") && more >= 2 {
            auth = Some((a[i + 1].clone(), a[i + 2].clone()));
            i += 3;
        } else if is(&a[i], "setname") && more >= 1 {
            name = Some(a[i + 1].clone());
            i += 2;
        } else {
            return Reply::Error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&a[i])
            ));
        }
    }
    if let Some((user, pass)) = &auth {
        if !check_auth(router, user, pass) {
            return wrongpass();
        }
        s.authenticated = true;
    }
    if !s.authenticated {
        return Reply::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(n) = &name {
        if let Err(e) = set_name(s, n) {
            return e;
        }
    }
    if let Some(p) = proto {
        s.proto = p;
    }
    Reply::Map(vec![
        (Reply::bulk_str("server"), Reply::bulk_str("redis")),
        (
            Reply::bulk_str("version"),
            Reply::bulk_str(REDIS_COMPAT_VERSION),
        ),
        (Reply::bulk_str("proto"), Reply::Int(s.proto.number())),
        (Reply::bulk_str("id"), Reply::Int(s.id as i64)),
        (Reply::bulk_str("mode"), Reply::bulk_str("standalone")),
        (Reply::bulk_str("role"), Reply::bulk_str("master")),
        (Reply::bulk_str("modules"), Reply::Array(Vec::new())),
    ])
}

fn client(router: &Router, s: &mut Session, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = table::lookup_sub(b"client", &sub) else {
        if sub == b"help" {
            return client_help();
        }
        return unknown_subcommand(&a[1], "client");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    match &sub[..] {
        b"id" => Reply::Int(s.id as i64),
        b"setname" => match set_name(s, &a[2]) {
            Ok(()) => Reply::OK,
            Err(e) => e,
        },
        b"getname" => lock(&s.client.name)
            .clone()
            .map(Reply::Bulk)
            .unwrap_or(Reply::Nil),
        b"list" => client_list(router, a),
        b"info" => Reply::Verbatim(Bytes::from(s.client.info_line())),
        b"kill" => client_kill(router, s, a),
        b"no-evict" if a.len() == 3 && (is(&a[2], "on") || is(&a[2], "off")) => Reply::OK,
        b"no-evict" => syntax_error(),
        _ => unknown_subcommand(&a[1], "client"),
    }
}

fn client_help() -> Reply {
    let lines = [
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are: ID <client-id>, ADDR <ip:port>, LADDR <ip:port>, SKIPME (YES|NO).",
        "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <client-id> ...]",
        "    Return information about client connections.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "HELP",
        "    Print this help.",
    ];
    Reply::Array(
        lines
            .iter()
            .map(|l| Reply::StatusOwned((*l).to_string()))
            .collect(),
    )
}

fn client_list(router: &Router, a: &[Bytes]) -> Reply {
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < a.len() {
        if is(&a[i], "type") && i + 1 < a.len() {
            let t = &a[i + 1];
            if !["normal", "master", "replica", "pubsub", "slave"]
                .iter()
                .any(|k| is(t, k))
            {
                return Reply::Error(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(t)
                ));
            }
            if !is(t, "normal") {
                return Reply::Verbatim(Bytes::new());
            }
            i += 2;
        } else if is(&a[i], "id") && i + 1 < a.len() {
            let mut v = Vec::new();
            for id in &a[i + 1..] {
                match int_arg(id) {
                    Ok(n) if n > 0 => v.push(n as u64),
                    _ => return Reply::error("ERR Invalid client ID"),
                }
            }
            ids = Some(v);
            i = a.len();
        } else {
            return syntax_error();
        }
    }
    let mut text = String::new();
    for c in router.clients.all() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id)) {
            continue;
        }
        text.push_str(&c.info_line());
    }
    Reply::Verbatim(Bytes::from(text))
}

fn client_kill(router: &Router, s: &mut Session, a: &[Bytes]) -> Reply {
    let all = router.clients.all();
    if a.len() == 3 {
        // Old form: CLIENT KILL ip:port, replies OK or an error.
        let addr = String::from_utf8_lossy(&a[2]);
        return match all.iter().find(|c| c.addr.to_string() == addr) {
            Some(c) => {
                kill(s, c);
                Reply::OK
            }
            None => Reply::error("ERR No such client"),
        };
    }
    if !a.len().is_multiple_of(2) {
        return syntax_error();
    }
    let (mut id, mut addr, mut laddr, mut skipme) = (None, None, None, true);
    for pair in a[2..].chunks(2) {
        let v = String::from_utf8_lossy(&pair[1]).into_owned();
        if is(&pair[0], "id") {
            match int_arg(&pair[1]) {
                Ok(n) if n > 0 => id = Some(n as u64),
                _ => return Reply::error("ERR client-id should be greater than 0"),
            }
        } else if is(&pair[0], "addr") {
            addr = Some(v);
        } else if is(&pair[0], "laddr") {
            laddr = Some(v);
        } else if is(&pair[0], "skipme") {
            if is(&pair[1], "yes") {
                skipme = true;
            } else if is(&pair[1], "no") {
                skipme = false;
            } else {
                return syntax_error();
            }
        } else if is(&pair[0], "type") || is(&pair[0], "user") || is(&pair[0], "maxage") {
            // Every client is a normal client of the default user: accept the filter as is.
        } else {
            return syntax_error();
        }
    }
    let mut killed = 0;
    for c in &all {
        if id.is_some_and(|id| id != c.id)
            || addr.as_ref().is_some_and(|a| *a != c.addr.to_string())
            || laddr.as_ref().is_some_and(|a| *a != c.laddr.to_string())
            || (skipme && c.id == s.id)
        {
            continue;
        }
        kill(s, c);
        killed += 1;
    }
    Reply::Int(killed)
}

fn kill(s: &mut Session, c: &crate::clients::ClientHandle) {
    if c.id == s.id {
        s.closing = true;
    } else {
        c.kill();
    }
}

/// COMMAND and its subcommands, answered from the shared table as the node does.
fn command(s: &Session, a: &[Bytes]) -> Reply {
    table::command_reply(a, s.proto == Protocol::Resp3)
}

/// CONFIG GET over the few settings a client may ask a router for; CONFIG SET and friends are
/// refused (the router is configured by its TOML file).
fn config(router: &Router, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = table::lookup_sub(b"config", &sub) else {
        return unknown_subcommand(&a[1], "config");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    if sub != b"get" {
        return Reply::Error(format!(
            "ERR CONFIG {} is not supported by the ringcache router; edit its TOML file",
            String::from_utf8_lossy(&a[1]).to_ascii_uppercase()
        ));
    }
    let c = &router.config;
    let params: [(&str, String); 8] = [
        ("port", router.port.to_string()),
        ("maxclients", c.max_clients.to_string()),
        ("timeout", "0".into()),
        ("databases", "1".into()),
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("requirepass", c.requirepass.clone().unwrap_or_default()),
        ("proto-max-bulk-len", c.limits.max_bulk_len.to_string()),
    ];
    let mut out = Vec::new();
    for (name, value) in &params {
        if a[2..]
            .iter()
            .any(|p| glob::matches(p, name.as_bytes(), true))
        {
            out.push((Reply::bulk_str(name), Reply::bulk_str(value)));
        }
    }
    Reply::Map(out)
}

const DEFAULT_SECTIONS: &[&str] = &["server", "clients", "stats", "router", "keyspace"];

/// INFO: the router's sections; `keyspace` sums the shards' (fetched with `INFO keyspace`).
fn info(router: &Router, topo: &Topology, s: &Session, a: &[Bytes]) -> Slot {
    let mut wanted: Vec<String> = Vec::new();
    for arg in &a[1..] {
        let arg = String::from_utf8_lossy(arg).to_ascii_lowercase();
        match arg.as_str() {
            "all" | "everything" | "default" => {
                wanted.extend(DEFAULT_SECTIONS.iter().map(|s| s.to_string()))
            }
            _ => wanted.push(arg),
        }
    }
    if wanted.is_empty() {
        wanted.extend(DEFAULT_SECTIONS.iter().map(|s| s.to_string()));
    }
    let mut text = String::new();
    for section in DEFAULT_SECTIONS.iter().filter(|s| **s != "keyspace") {
        if !wanted.iter().any(|w| w == section) {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        section_text(router, topo, section, &mut text);
    }
    if !wanted.iter().any(|w| w == "keyspace") {
        return Slot::reply(&Reply::Verbatim(Bytes::from(text)), s.proto);
    }
    let start = std::time::Instant::now();
    let cmd = crate::metrics::command_index(table::lookup(b"info"));
    let parts = topo
        .serving_shards()
        .map(|shard| {
            crate::proxy::send(
                shard,
                s,
                Bytes::from_static(b"*2\r\n$4\r\nINFO\r\n$8\r\nkeyspace\r\n"),
                cmd,
                start,
            )
        })
        .collect();
    Slot::Merge(Box::new(Merge::new(
        parts,
        How::Info {
            text,
            proto: s.proto,
        },
    )))
}

fn section_text(router: &Router, topo: &Topology, section: &str, out: &mut String) {
    let _ = match section {
        "server" => {
            let uptime = router.started.elapsed().as_secs();
            write!(
                out,
                "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nringcache_version:{}\r\nringcache_role:router\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:64\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
                std::process::id(),
                router.run_id,
                router.port,
                uptime / 86400,
            )
        }
        "clients" => write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n",
            router.clients.len(),
            router.config.max_clients,
        ),
        "stats" => write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\n",
            router.clients.total_connections.load(Relaxed),
            router.commands.load(Relaxed),
            router.clients.rejected_connections.load(Relaxed),
        ),
        "router" => {
            let ring = &topo.ring;
            let up = topo.shards.iter().filter(|s| s.pool.connected() > 0).count();
            let _ = write!(
                out,
                "# Router\r\nring_epoch:{}\r\nring_vnodes:{}\r\nring_shards:{}\r\nring_points:{}\r\nshards_up:{up}\r\nupstream_connections_per_shard:{}\r\nconnected_clients:{}\r\n",
                ring.epoch(),
                ring.vnodes(),
                topo.shards.len(),
                ring.shards().iter().map(|s| ring.points_of(&s.id)).sum::<usize>(),
                router.config.upstream_connections,
                router.clients.len(),
            );
            let shares = ring.shares();
            for (shard, (_, share)) in topo.shards.iter().zip(shares) {
                let _ = write!(
                    out,
                    "shard_{}:primary={},weight={},points={},share={:.2},status={},connections={}\r\n",
                    shard.id,
                    shard.primary,
                    shard.weight,
                    ring.points_of(&shard.id),
                    share * 100.0,
                    shard.pool.status().as_str(),
                    shard.pool.connected(),
                );
            }
            Ok(())
        }
        _ => Ok(()),
    };
}

/// `RING JOIN | LEAVE | CANCEL | NODES | LOCATE <key> | STATUS | HELP`. Membership changes answer
/// once their epoch is in effect (see `rebalance`), so they reply through a spawned task.
fn ring(router: &Router, topo: &Topology, s: &Session, a: &[Bytes]) -> Slot {
    let sub = a[1].to_ascii_lowercase();
    let change = match &sub[..] {
        b"join" => match crate::rebalance::parse_join(a) {
            Ok(c) => Some(c),
            Err(e) => return Slot::reply(&Reply::Error(e), s.proto),
        },
        b"leave" if a.len() == 3 => Some(crate::rebalance::Change::Leave {
            id: String::from_utf8_lossy(&a[2]).into_owned(),
        }),
        b"cancel" if a.len() == 2 => None,
        b"leave" | b"cancel" => {
            let reply = Reply::Error(format!(
                "ERR wrong number of arguments for 'ring|{}' command",
                String::from_utf8_lossy(&sub)
            ));
            return Slot::reply(&reply, s.proto);
        }
        _ => return Slot::reply(&ring_info(router, topo, &sub, a), s.proto),
    };
    let Some(me) = router.me() else {
        return Slot::error("ERR the router is shutting down");
    };
    if change.is_some() && router.rebalance.in_progress() {
        return Slot::error(crate::rebalance::IN_PROGRESS);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (proto, caller) = (s.proto, s.id);
    tokio::spawn(async move {
        let reply = match change {
            Some(c) => crate::rebalance::begin(me, c, caller).await,
            None => crate::rebalance::cancel(me, caller).await,
        };
        let _ = tx.send(Ok(reply.to_bytes(proto)));
    });
    Slot::Forward(rx)
}

fn ring_info(router: &Router, topo: &Topology, sub: &[u8], a: &[Bytes]) -> Reply {
    let ring = &topo.ring;
    match sub {
        b"nodes" if a.len() == 2 => Reply::Array(
            topo.shards
                .iter()
                .map(|s| {
                    Reply::Map(vec![
                        (Reply::bulk_str("id"), Reply::bulk_str(&s.id)),
                        (Reply::bulk_str("primary"), Reply::bulk_str(&s.primary)),
                        (
                            Reply::bulk_str("replicas"),
                            Reply::Array(s.replicas.iter().map(|r| Reply::bulk_str(r)).collect()),
                        ),
                        (Reply::bulk_str("weight"), Reply::Int(i64::from(s.weight))),
                        (
                            Reply::bulk_str("points"),
                            Reply::Int(ring.points_of(&s.id) as i64),
                        ),
                        (
                            Reply::bulk_str("status"),
                            Reply::bulk_str(s.pool.status().as_str()),
                        ),
                        (
                            Reply::bulk_str("connections"),
                            Reply::Int(s.pool.connected() as i64),
                        ),
                        (
                            Reply::bulk_str("last_error"),
                            s.pool.last_error().map_or(Reply::Nil, |e| Reply::bulk_str(&e)),
                        ),
                    ])
                })
                .collect(),
        ),
        b"locate" if a.len() == 3 => {
            let key = &a[2];
            let hash = key_hash(key);
            let Some(index) = ring.owner_index(hash) else {
                return Reply::error("ERR the ring has no shards");
            };
            let tag = hash_tag(key);
            let shard = &topo.shards[index];
            Reply::Map(vec![
                (Reply::bulk_str("shard"), Reply::bulk_str(&shard.id)),
                (Reply::bulk_str("primary"), Reply::bulk_str(&shard.primary)),
                (Reply::bulk_str("hash"), Reply::bulk_str(&hash.to_string())),
                (
                    Reply::bulk_str("hash_hex"),
                    Reply::bulk_str(&format!("{hash:016x}")),
                ),
                (
                    Reply::bulk_str("tag"),
                    if tag.len() == key.len() {
                        Reply::Nil
                    } else {
                        Reply::Bulk(Bytes::copy_from_slice(tag))
                    },
                ),
                (Reply::bulk_str("epoch"), Reply::Int(ring.epoch() as i64)),
            ])
        }
        b"status" if a.len() == 2 => {
            Reply::Verbatim(Bytes::from(router.rebalance.status_text(topo)))
        }
        b"help" if a.len() == 2 => Reply::Array(
            [
                "RING <subcommand> [<arg> ...]. Subcommands are:",
                "NODES",
                "    Every shard: id, primary, replicas, weight, points on the ring, status.",
                "LOCATE <key>",
                "    The shard owning <key>, the key's 64-bit hash and its {hash tag}.",
                "STATUS",
                "    Epoch, shares, `migrating:0|1` and the progress of a membership change, as key:value lines.",
                "JOIN <id> <primary> [<replica> ...] [WEIGHT <w>]",
                "    Add a shard; only the arcs it takes move, in the background. Replies once its epoch is in effect.",
                "LEAVE <id>",
                "    Remove a shard; its arcs move to their new owners, then its connections close.",
                "CANCEL",
                "    Stop the change in progress and move back what it moved.",
                "HELP",
                "    Print this help.",
            ]
            .iter()
            .map(|l| Reply::StatusOwned((*l).to_string()))
            .collect(),
        ),
        b"nodes" | b"status" | b"help" | b"locate" => Reply::Error(format!(
            "ERR wrong number of arguments for 'ring|{}' command",
            String::from_utf8_lossy(sub)
        )),
        _ => unknown_subcommand(&a[1], "ring"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_matches_redis() {
        let args: Vec<Bytes> = ["foo", "a", "b"].iter().map(|s| Bytes::from(*s)).collect();
        assert_eq!(
            unknown_command(&args),
            Reply::error("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
        );
        let args = vec![Bytes::from("x")];
        assert_eq!(
            unknown_command(&args),
            Reply::error("ERR unknown command 'x', with args beginning with: ")
        );
    }

    #[test]
    fn glob_patterns() {
        assert!(glob::matches(b"*", b"maxclients", true));
        assert!(glob::matches(b"MAX*", b"maxclients", true));
        assert!(glob::matches(b"p?rt", b"port", true));
        assert!(!glob::matches(b"port", b"ports", true));
    }
}
