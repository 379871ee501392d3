//! Commands the router answers itself: the connection commands (PING, ECHO, HELLO, AUTH, SELECT,
//! QUIT, RESET, CLIENT), COMMAND, CONFIG GET, INFO, TIME, and the `RING` admin commands.
//!
//! Replies and error texts follow Redis 7 (and the node, whose `cmd/server.rs` holds the same
//! logic; HELLO, AUTH, RESET and CLIENT are shared with it in `ringcache_protocol::clients`).

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use ringcache_protocol::clients::{self, Conn};
use ringcache_protocol::glob;
use ringcache_protocol::hash::{hash_tag, key_hash};
use ringcache_protocol::table::{self, CommandSpec};
use ringcache_protocol::{Protocol, Reply};

use crate::clients::{ClientHandle, Clients, RouterClient};
use crate::merge::{How, Merge, Slot};
use crate::pools::{PoolState, View};
use crate::rebalance::{self, ChangeError, ChangeOutcome};
use crate::session::Session;
use crate::state::Router;

pub use ringcache_protocol::errors::{
    arity_error, unknown_command, unknown_subcommand, REDIS_COMPAT_VERSION,
};

fn not_integer() -> Reply {
    Reply::error("ERR value is not an integer or out of range")
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
    topo: &View,
    s: &mut Session,
    spec: &'static CommandSpec,
    a: &[Bytes],
) -> Slot {
    if spec.name == "ping" {
        if let Some(slot) = crate::scripts::ping_busy(router, topo, s, a) {
            return slot;
        }
    }
    let reply = match spec.name {
        "ping" => match a.len() {
            1 => Reply::Status("PONG"),
            2 => Reply::Bulk(a[1].clone()),
            _ => arity_error("ping"),
        },
        "echo" => Reply::Bulk(a[1].clone()),
        "hello" => clients::hello(&mut Local { router, s }, a),
        "auth" => clients::auth(&mut Local { router, s }, a),
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
        "reset" => clients::reset(&mut Local { router, s }),
        "client" if a.len() > 1 && a[1].eq_ignore_ascii_case(b"pause") => {
            ringcache_protocol::pause::client_pause(&router.pause, a)
        }
        "client" if a.len() > 1 && a[1].eq_ignore_ascii_case(b"unpause") => {
            ringcache_protocol::pause::client_unpause(&router.pause, a)
        }
        "client" => clients::client(&mut Local { router, s }, a),
        "acl" => ringcache_protocol::acl::command::acl(&mut Local { router, s }, a),
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

/// What a router connection lends the connection commands shared with the node.
struct Local<'a> {
    router: &'a Router,
    s: &'a mut Session,
}

impl Conn for Local<'_> {
    type Ext = RouterClient;

    fn client(&self) -> &ClientHandle {
        &self.s.client
    }

    fn clients(&self) -> &Clients {
        &self.router.clients
    }

    fn acl(&self) -> &ringcache_protocol::acl::Acl {
        &self.router.acl
    }

    fn user(&self) -> std::sync::Arc<ringcache_protocol::acl::User> {
        self.s.user.clone()
    }

    fn set_user(&mut self, u: std::sync::Arc<ringcache_protocol::acl::User>) {
        self.s.user = u;
        self.s.authenticated = true;
    }

    fn authenticated(&mut self) -> &mut bool {
        &mut self.s.authenticated
    }

    fn proto(&mut self) -> &mut Protocol {
        &mut self.s.proto
    }

    fn role(&self) -> &'static str {
        "master"
    }

    fn close_after_reply(&mut self) {
        self.s.closing = true;
    }

    fn subscriptions(&self) -> std::collections::HashMap<u64, Vec<(Bytes, bool)>> {
        self.router.pubsub.by_client()
    }
}

/// COMMAND and its subcommands, answered from the shared table as the node does.
fn command(s: &Session, a: &[Bytes]) -> Reply {
    table::command_reply(a, s.proto == Protocol::Resp3)
}

/// The settings the router answers for itself; the rest are the nodes'.
const ROUTER_PARAMS: [&str; 9] = [
    "port",
    "maxclients",
    "timeout",
    "databases",
    "save",
    "appendonly",
    "requirepass",
    "proto-max-bulk-len",
    "acllog-max-len",
];

/// CONFIG through the router: the router's own settings are answered here (and not set: its
/// TOML file sets them); a node's setting is set on every shard and read from the first, so a
/// client tuning the cache (`notify-keyspace-events`, `maxmemory-policy`, ...) tunes all of it.
/// A shard that joins later keeps its own settings.
pub fn config_slot(
    router: &Router,
    topo: &View,
    s: &Session,
    a: &[Bytes],
    raw: &Bytes,
    cmd: u16,
    start: std::time::Instant,
) -> Slot {
    let sub = a[1].to_ascii_lowercase();
    let arity_ok = table::lookup_sub(b"config", &sub).is_some_and(|spec| spec.arity_ok(a.len()));
    let is_router = |p: &Bytes| {
        ROUTER_PARAMS
            .iter()
            .any(|r| r.as_bytes().eq_ignore_ascii_case(p))
    };
    let to_nodes = arity_ok
        && !topo.shards.is_empty()
        && match &sub[..] {
            b"get" => !a[2..].iter().all(is_router),
            // The router's own settings come from its TOML file; the ones it only reports
            // (save, appendonly, ...) are the nodes' to set.
            b"set" => !a[2..].iter().step_by(2).any(|p| {
                ["port", "maxclients", "requirepass", "acllog-max-len"]
                    .iter()
                    .any(|r| r.as_bytes().eq_ignore_ascii_case(p))
            }),
            b"resetstat" => true,
            _ => false,
        };
    if !to_nodes {
        return Slot::reply(&config(router, a), s.proto);
    }
    if sub == b"get" {
        return Slot::Forward(crate::send::send(
            &topo.shards[0],
            s,
            raw.clone(),
            cmd,
            start,
        ));
    }
    let plan = crate::route::Plan::FanOut(crate::route::FanOut::AllOk);
    crate::send::send_plan(topo, s.who(), plan, a, raw.clone(), cmd, start)
}

/// CONFIG GET over the few settings a client may ask a router for; CONFIG SET and friends of
/// them are refused (the router is configured by its TOML file).
fn config(router: &Router, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = table::lookup_sub(b"config", &sub) else {
        return unknown_subcommand(&a[1], "config");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    if sub == b"help" {
        return ringcache_protocol::help::config();
    }
    if let Some(reply) = set_own(router, &sub, a) {
        return reply;
    }
    if sub != b"get" {
        return Reply::Error(format!(
            "ERR CONFIG {} is not supported by the ringcache router; edit its TOML file",
            String::from_utf8_lossy(&a[1]).to_ascii_uppercase()
        ));
    }
    let c = &router.config;
    let params: [(&str, String); ROUTER_PARAMS.len()] = [
        ("port", router.port.to_string()),
        ("maxclients", c.max_clients.to_string()),
        ("timeout", "0".into()),
        ("databases", "1".into()),
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("requirepass", c.requirepass.clone().unwrap_or_default()),
        ("proto-max-bulk-len", c.limits.max_bulk_len.to_string()),
        ("acllog-max-len", router.acl.log.max_len().to_string()),
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

/// `CONFIG SET acllog-max-len N`: the one setting of the router's own a client may change (the
/// router keeps its own ACL log; the rest come from its TOML file).
fn set_own(router: &Router, sub: &[u8], a: &[Bytes]) -> Option<Reply> {
    if sub != b"set" || a.len() != 4 || !a[2].eq_ignore_ascii_case(b"acllog-max-len") {
        return None;
    }
    Some(match ringcache_protocol::num::parse_i64(&a[3]) {
        Some(n) if n >= 0 => {
            router.acl.log.set_max_len(usize::try_from(n).unwrap_or(usize::MAX));
            Reply::OK
        }
        Some(_) => Reply::error(
            "ERR CONFIG SET failed (possibly related to argument 'acllog-max-len') - argument must be between 0 and 9223372036854775807 inclusive",
        ),
        None => Reply::error(
            "ERR CONFIG SET failed (possibly related to argument 'acllog-max-len') - argument couldn't be parsed into an integer",
        ),
    })
}

/// The sections the router answers itself; every other one is the shards', merged.
const ROUTER_SECTIONS: &[&str] = &["server", "router"];
/// Redis's default sections, then the router's own.
fn default_sections() -> impl Iterator<Item = String> {
    clients::INFO_DEFAULT_SECTIONS
        .iter()
        .chain(["router"].iter())
        .map(|s| s.to_string())
}

/// INFO: the router's sections, then the shards' (see `crate::info`).
fn info(router: &Router, topo: &View, s: &Session, a: &[Bytes]) -> Slot {
    let mut wanted: Vec<String> = Vec::new();
    for arg in &a[1..] {
        let arg = String::from_utf8_lossy(arg).to_ascii_lowercase();
        match arg.as_str() {
            "default" => wanted.extend(default_sections()),
            "all" | "everything" => {
                wanted.extend(default_sections());
                wanted.extend(["commandstats", "latencystats"].map(String::from));
            }
            _ => wanted.push(arg),
        }
    }
    if wanted.is_empty() {
        wanted.extend(default_sections());
    }
    let mut text = String::new();
    for section in ROUTER_SECTIONS {
        if !wanted.iter().any(|w| w == section) {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        section_text(router, topo, section, &mut text);
    }
    let mut shard_sections: Vec<&str> = Vec::new();
    for w in &wanted {
        if !ROUTER_SECTIONS.contains(&w.as_str()) && !shard_sections.contains(&w.as_str()) {
            shard_sections.push(w);
        }
    }
    if shard_sections.is_empty() || topo.shards.is_empty() {
        return Slot::reply(&Reply::Verbatim(Bytes::from(text)), s.proto);
    }
    let mut request = bytes::BytesMut::new();
    ringcache_protocol::resp::encode_request(
        &mut request,
        std::iter::once("INFO")
            .chain(shard_sections.iter().copied())
            .collect::<Vec<_>>(),
    );
    let request = request.freeze();
    let start = std::time::Instant::now();
    let cmd = crate::shard_metrics::command_index(table::lookup(b"info"));
    let parts = topo
        .serving_shards()
        .map(|shard| crate::send::send(shard, s, request.clone(), cmd, start))
        .collect();
    // The client-facing counters are the router's.
    let overrides = vec![
        (
            "total_connections_received",
            router.clients.total_connections.load(Relaxed),
        ),
        ("total_commands_processed", router.commands.load(Relaxed)),
        (
            "rejected_connections",
            router.clients.rejected_connections.load(Relaxed),
        ),
        // Clients: the router's own, but blocked ones are those the nodes hold blocked (and
        // those a pause holds here, added below).
        ("connected_clients", router.clients.len() as u64),
        ("maxclients", router.config.max_clients as u64),
        ("parked_clients", router.clients.parked() as u64),
        // The router checks its clients' permissions: the nodes see only its own user.
        (
            "acl_access_denied_auth",
            router.acl.denied.auth.load(Relaxed),
        ),
        ("acl_access_denied_cmd", router.acl.denied.cmd.load(Relaxed)),
        ("acl_access_denied_key", router.acl.denied.key.load(Relaxed)),
        (
            "acl_access_denied_channel",
            router.acl.denied.channel.load(Relaxed),
        ),
    ];
    let adds = vec![("blocked_clients", router.pause.waiting.load(Relaxed) as u64)];
    Slot::Merge(Box::new(Merge::new(
        parts,
        How::Info {
            text,
            proto: s.proto,
            overrides,
            adds,
        },
    )))
}

fn section_text(router: &Router, topo: &View, section: &str, out: &mut String) {
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
        "router" => {
            let def = &topo.pools[0];
            let ring = &def.ring;
            let up = def.shards.iter().filter(|s| s.pool.connected() > 0).count();
            let _ = write!(
                out,
                "# Router\r\nring_epoch:{}\r\nring_vnodes:{}\r\nring_shards:{}\r\nring_points:{}\r\nshards_up:{up}\r\nupstream_connections_per_shard:{}\r\nconnected_clients:{}\r\npools:{}\r\nroutes:{}\r\n",
                ring.epoch(),
                ring.vnodes(),
                def.shards.len(),
                ring.shards().iter().map(|s| ring.points_of(&s.id)).sum::<usize>(),
                router.config.upstream_connections,
                router.clients.len(),
                topo.pools.len(),
                topo.routes.list.len(),
            );
            for (pool, t) in router.pools.iter().zip(&topo.pools) {
                let shares = t.ring.shares();
                for (shard, (_, share)) in t.shards.iter().zip(shares) {
                    let _ = write!(
                        out,
                        "shard_{}:primary={},weight={},points={},share={:.2},status={},connections={},pool={}\r\n",
                        shard.id,
                        shard.primary,
                        shard.weight,
                        t.ring.points_of(&shard.id),
                        share * 100.0,
                        shard.pool.status().as_str(),
                        shard.pool.connected(),
                        pool.name,
                    );
                }
            }
            Ok(())
        }
        _ => Ok(()),
    };
}

/// `RING JOIN | LEAVE | CANCEL | NODES | STATUS [POOL <name>]`, `RING LOCATE <key> | ROUTES |
/// HELP`. Membership changes answer once their epoch is in effect (see `rebalance`), so they
/// reply through a spawned task.
fn ring(router: &Router, topo: &View, s: &Session, a: &[Bytes]) -> Slot {
    let sub = a[1].to_ascii_lowercase();
    if matches!(&sub[..], b"locate" | b"routes" | b"help") {
        return Slot::reply(&ring_info(router, topo, s, &sub, a), s.proto);
    }
    if &sub[..] == b"split" {
        return ring_split(router, s, a);
    }
    if &sub[..] == b"mirror" {
        return Slot::reply(&ring_mirror(router, a), s.proto);
    }
    if &sub[..] == b"route" {
        return Slot::reply(&ring_route(router, a), s.proto);
    }
    // A trailing `POOL <name>` picks the pool (else `default`).
    let (pool, a) = match a.len() {
        n if n >= 4 && a[n - 2].eq_ignore_ascii_case(b"pool") => {
            let name = String::from_utf8_lossy(&a[n - 1]);
            match router.pool_named(&name) {
                Some(p) => (p.clone(), &a[..n - 2]),
                None => {
                    let e = Reply::Error(format!("ERR no pool named '{name}'"));
                    return Slot::reply(&e, s.proto);
                }
            }
        }
        _ => (router.default_pool().clone(), a),
    };
    let change = match &sub[..] {
        b"join" => match rebalance::parse_join(a) {
            Ok(c) => Some(c),
            Err(e) => return Slot::reply(&change_reply(Err(e)), s.proto),
        },
        b"leave" if a.len() == 3 => Some(rebalance::Change::Leave {
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
        _ => return Slot::reply(&pool_info(&pool, &sub, a), s.proto),
    };
    let Some(me) = router.me() else {
        return Slot::error("ERR the router is shutting down");
    };
    if change.is_some() && pool.rebalance.in_progress() {
        return Slot::reply(&change_reply(Err(ChangeError::InProgress)), s.proto);
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (proto, caller) = (s.proto, s.id);
    clients::lock(&router.change_callers).push(caller);
    tokio::spawn(async move {
        let callers = me.clone();
        let outcome = match change {
            Some(c) => rebalance::begin(me, pool, c, caller).await,
            None => rebalance::cancel(me, pool, caller).await,
        };
        let mut waiting = clients::lock(&callers.change_callers);
        if let Some(i) = waiting.iter().position(|&c| c == caller) {
            waiting.swap_remove(i);
        }
        drop(waiting);
        let _ = tx.send(Ok(change_reply(outcome).to_bytes(proto)));
    });
    Slot::Forward(rx)
}

const PERCENT_ERROR: &str = "ERR percent must be an integer from 0 to 100";

/// A percent argument, 0 to 100.
fn percent_arg(a: &[u8]) -> Option<u8> {
    std::str::from_utf8(a)
        .ok()
        .and_then(|p| p.parse::<u8>().ok())
        .filter(|p| *p <= 100)
}

/// `RING SPLIT <prefix> <percent>`: answers once the new percent is in effect (keys move in the
/// background, see `split_change`).
fn ring_split(router: &Router, s: &Session, a: &[Bytes]) -> Slot {
    if a.len() != 4 {
        return Slot::error("ERR wrong number of arguments for 'ring|split' command");
    }
    let Some(percent) = percent_arg(&a[3]) else {
        return Slot::error(PERCENT_ERROR);
    };
    let Some(me) = router.me() else {
        return Slot::error("ERR the router is shutting down");
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (proto, caller, prefix) = (s.proto, s.id, a[2].clone());
    clients::lock(&router.change_callers).push(caller);
    tokio::spawn(async move {
        let outcome = crate::split_change::change(&me, &prefix, percent, caller).await;
        let mut waiting = clients::lock(&me.change_callers);
        if let Some(i) = waiting.iter().position(|&c| c == caller) {
            waiting.swap_remove(i);
        }
        drop(waiting);
        let reply = match outcome {
            Ok(()) => Reply::OK,
            Err(e) => Reply::Error(e),
        };
        let _ = tx.send(Ok(reply.to_bytes(proto)));
    });
    Slot::Forward(rx)
}

/// `RING ROUTE ADD <prefix> <pool> [SPLIT <pool>] | DEL <prefix>`: adds or removes a route on
/// this router, if no key changes pool (see `route_change`).
fn ring_route(router: &Router, a: &[Bytes]) -> Reply {
    const USAGE: &str =
        "ERR usage: RING ROUTE ADD <prefix> <pool> [SPLIT <pool>] | RING ROUTE DEL <prefix>";
    let arg = |i: usize| String::from_utf8_lossy(&a[i]).into_owned();
    let done = match a.len() {
        5 | 7 if a[2].eq_ignore_ascii_case(b"add") => {
            let split = match a.len() {
                7 if a[5].eq_ignore_ascii_case(b"split") => Some(arg(6)),
                7 => return Reply::error(USAGE),
                _ => None,
            };
            crate::route_change::add(router, &arg(3), &arg(4), split.as_deref())
        }
        4 if a[2].eq_ignore_ascii_case(b"del") => crate::route_change::remove(router, &arg(3)),
        _ => return Reply::error(USAGE),
    };
    match done {
        Ok(()) => Reply::OK,
        Err(e) => Reply::Error(e),
    }
}

/// `RING MIRROR <prefix> OFF | <pool> <percent> [WRITES_ONLY]`: sets the mirror of the route on
/// `prefix`, on this router (mirrors are each router's own: nothing is kept on the nodes).
fn ring_mirror(router: &Router, a: &[Bytes]) -> Reply {
    const USAGE: &str =
        "ERR usage: RING MIRROR <prefix> OFF | RING MIRROR <prefix> <pool> <percent> [WRITES_ONLY]";
    if a.len() < 4 || a.len() > 6 {
        return Reply::error(USAGE);
    }
    // Route indexes shift when a route is added or removed (under the same lock).
    let Ok(_g) = router.split_lock.try_lock() else {
        return Reply::error("ERR a split or route change is under way: try again");
    };
    let topo = router.view();
    let prefix = String::from_utf8_lossy(&a[2]);
    let Some(r) = topo.routes.list.iter().position(|r| r.prefix == prefix) else {
        return Reply::Error(format!("ERR no route with prefix '{prefix}'"));
    };
    let route = &topo.routes.list[r];
    let mirror = if a.len() == 4 && a[3].eq_ignore_ascii_case(b"off") {
        None
    } else {
        if a.len() == 4 || (a.len() == 6 && !a[5].eq_ignore_ascii_case(b"writes_only")) {
            return Reply::error(USAGE);
        }
        let name = String::from_utf8_lossy(&a[3]).into_owned();
        let Some(pool) = router.pool_named(&name) else {
            return Reply::Error(format!("ERR no pool named '{name}'"));
        };
        if name == route.pool || route.split.as_ref().is_some_and(|s| s.pool == name) {
            return Reply::Error(format!(
                "ERR '{name}' is the route's own pool or its split's"
            ));
        }
        // The config's rule (`pools_config`): a pool holding names without a prefix holds
        // nothing else, and such a route's commands are not copied.
        if route.remove_prefix || topo.routes.strips(&name) {
            return Reply::error(
                "ERR a route removing its prefix, and its pool, take no mirror (remove_prefix)",
            );
        }
        let Some(percent) = percent_arg(&a[4]) else {
            return Reply::error(PERCENT_ERROR);
        };
        let config = crate::pools_config::MirrorConfig {
            pool: name,
            percent,
            writes_only: a.len() == 6,
        };
        Some((config, pool.index))
    };
    router.update_routes(|routes| routes.with_mirror(r, mirror));
    Reply::OK
}

/// A membership change request's reply: `+OK` once its epoch is in effect, or the error's text
/// (the only place a change's outcome becomes a client reply).
fn change_reply(outcome: Result<ChangeOutcome, ChangeError>) -> Reply {
    match outcome {
        Ok(ChangeOutcome::Moving | ChangeOutcome::Done | ChangeOutcome::RollingBack) => Reply::OK,
        Err(e) => Reply::Error(e.to_string()),
    }
}

/// `RING NODES | STATUS` of one pool.
fn pool_info(pool: &PoolState, sub: &[u8], a: &[Bytes]) -> Reply {
    let topo = pool.topology.load_full();
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
                            s.pool
                                .last_error()
                                .map_or(Reply::Nil, |e| Reply::bulk_str(&e)),
                        ),
                        (Reply::bulk_str("pool"), Reply::bulk_str(&pool.name)),
                    ])
                })
                .collect(),
        ),
        b"status" if a.len() == 2 => {
            Reply::Verbatim(Bytes::from(pool.rebalance.status_text(&topo)))
        }
        b"nodes" | b"status" => Reply::Error(format!(
            "ERR wrong number of arguments for 'ring|{}' command",
            String::from_utf8_lossy(sub)
        )),
        _ => unknown_subcommand(&a[1], "ring"),
    }
}

/// `RING LOCATE | ROUTES | HELP`: the router's routes, across pools.
fn ring_info(router: &Router, topo: &View, s: &Session, sub: &[u8], a: &[Bytes]) -> Reply {
    match sub {
        b"locate" if a.len() == 3 => {
            let routed = topo.route(&a[2], s.pool);
            // A `remove_prefix` route's pool holds (and places) the name without the prefix.
            let key = routed.stored(&a[2]);
            let hash = key_hash(key);
            let (Some(pool), Some(t)) = (router.pools.get(routed.pool), topo.pools.get(routed.pool))
            else {
                return Reply::error("ERR no such pool");
            };
            let ring = &t.ring;
            let Some(index) = ring.owner_index(hash) else {
                return Reply::error("ERR the ring has no shards");
            };
            let tag = hash_tag(key);
            let shard = &t.shards[index];
            let route = routed.route.map(|r| &topo.routes.list[r]);
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
                (Reply::bulk_str("pool"), Reply::bulk_str(&pool.name)),
                (
                    Reply::bulk_str("route"),
                    route.map_or(Reply::Nil, |r| Reply::bulk_str(&r.prefix)),
                ),
                // On the split's side of its route (sent to the split's pool).
                (Reply::bulk_str("split"), Reply::Int(i64::from(routed.split))),
                (
                    Reply::bulk_str("node_key"),
                    Reply::Bulk(Bytes::copy_from_slice(key)),
                ),
            ])
        }
        b"routes" if a.len() == 2 => Reply::Array(
            topo.routes
                .list
                .iter()
                .zip(topo.routes.stats.iter())
                .zip(&topo.splits.by_route)
                .map(|((r, st), split)| {
                    let n = |c: &std::sync::atomic::AtomicU64| Reply::Int(c.load(Relaxed) as i64);
                    let mirror = r.mirror.as_ref();
                    let moving_from = split
                        .as_ref()
                        .and_then(|s| s.moving.as_ref())
                        .filter(|(_, m)| m.live() > 0);
                    Reply::Map(vec![
                        (Reply::bulk_str("prefix"), Reply::bulk_str(&r.prefix)),
                        (Reply::bulk_str("pool"), Reply::bulk_str(&r.pool)),
                        (
                            Reply::bulk_str("ignore_case"),
                            Reply::Int(i64::from(r.ignore_case)),
                        ),
                        (
                            Reply::bulk_str("remove_prefix"),
                            Reply::Int(i64::from(r.remove_prefix)),
                        ),
                        (
                            Reply::bulk_str("mirror"),
                            mirror.map_or(Reply::Nil, |m| Reply::bulk_str(&m.pool)),
                        ),
                        (
                            Reply::bulk_str("mirror_percent"),
                            Reply::Int(mirror.map_or(0, |m| i64::from(m.percent))),
                        ),
                        (
                            Reply::bulk_str("mirror_writes_only"),
                            Reply::Int(i64::from(mirror.is_some_and(|m| m.writes_only))),
                        ),
                        (Reply::bulk_str("requests"), n(&st.requests)),
                        (Reply::bulk_str("mirrored"), n(&st.mirrored)),
                        (Reply::bulk_str("mirror_drops"), n(&st.mirror_drops)),
                        (Reply::bulk_str("mirror_errors"), n(&st.mirror_errors)),
                        (
                            Reply::bulk_str("split"),
                            r.split
                                .as_ref()
                                .map_or(Reply::Nil, |s| Reply::bulk_str(&s.pool)),
                        ),
                        (
                            Reply::bulk_str("split_percent"),
                            Reply::Int(split.as_ref().map_or(0, |s| i64::from(s.percent))),
                        ),
                        // While keys move after a change: the percent they move from.
                        (
                            Reply::bulk_str("split_moving_from"),
                            moving_from.map_or(Reply::Nil, |(f, _)| Reply::Int(i64::from(*f))),
                        ),
                        (
                            Reply::bulk_str("split_arcs_left"),
                            Reply::Int(moving_from.map_or(0, |(_, m)| m.live() as i64)),
                        ),
                    ])
                })
                .collect(),
        ),
        b"help" if a.len() == 2 => Reply::status_lines(&[
                "RING <subcommand> [<arg> ...]. Subcommands are:",
                "NODES [POOL <name>]",
                "    Every shard of a pool (default: `default`): id, primary, replicas, weight, points on the ring, status.",
                "LOCATE <key>",
                "    The pool, route and shard owning <key>, the key's 64-bit hash and its {hash tag}.",
                "ROUTES",
                "    Every key-prefix route: prefix, pool, ignore_case, its mirror, its split, its counters.",
                "MIRROR <prefix> OFF|<pool> <percent> [WRITES_ONLY]",
                "    Set or remove the mirror of the route on <prefix>, on this router.",
                "ROUTE ADD <prefix> <pool> [SPLIT <pool>] | ROUTE DEL <prefix>",
                "    Add or remove a route on this router, if no key changes pool (a split at 0% moves keys later).",
                "SPLIT <prefix> <percent>",
                "    Send <percent> of the keys of the route on <prefix> to its split's pool; only the keys changing side move, in the background.",
                "STATUS [POOL <name>]",
                "    A pool's epoch, shares, `migrating:0|1` and the progress of a membership change, as key:value lines.",
                "JOIN <id> <primary> [<replica> ...] [WEIGHT <w>] [POOL <name>]",
                "    Add a shard to a pool; only the arcs it takes move, in the background. Replies once its epoch is in effect.",
                "LEAVE <id> [POOL <name>]",
                "    Remove a shard; its arcs move to their new owners, then its connections close.",
                "CANCEL [POOL <name>]",
                "    Stop the pool's change in progress and move back what it moved.",
                "HELP",
                "    Print this help.",
            ]),
        b"help" | b"locate" | b"routes" => Reply::Error(format!(
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
