//! The pub/sub commands a client sends the router: (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE answered
//! from the hub, PUBLISH and SPUBLISH sent to the channel's shard, PUBSUB merged over the
//! shards, and RESP2's subscribed mode, where only these commands, PING, QUIT and RESET run.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::{Protocol, Reply};
use tokio::sync::oneshot;

use std::sync::Arc;

use ringcache_protocol::glob;

use super::Kind;
use crate::frame::{bulk_payload, elements, integer};
use crate::key_prefix::KeyPrefix;
use crate::merge::{error_bytes, Slot};
use crate::pools::View;
use crate::send::send;
use crate::session::Session;
use crate::state::Router;

/// How long a SUBSCRIBE waits for its shards to confirm before answering anyway.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

/// The refusal of RESP2's subscribed mode, if `spec` may not run in it; `None` otherwise.
pub fn refused_in_subscribed_mode(s: &Session, spec: &CommandSpec) -> Option<Slot> {
    let active = s.pubsub.as_ref().is_some_and(|p| p.active());
    if !active || s.proto != Protocol::Resp2 {
        return None;
    }
    match spec.name {
        "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
        | "sunsubscribe" | "ping" | "quit" | "reset" => None,
        name => Some(Slot::error(&format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ))),
    }
}

/// PING in RESP2's subscribed mode: `["pong", arg or ""]`.
pub fn subscribed_ping(s: &Session, a: &[Bytes]) -> Option<Slot> {
    let active = s.pubsub.as_ref().is_some_and(|p| p.active());
    if !active || s.proto != Protocol::Resp2 || a.len() > 2 {
        return None;
    }
    let arg = a.get(1).cloned().unwrap_or_default();
    let reply = Reply::Array(vec![
        Reply::Bulk(Bytes::from_static(b"pong")),
        Reply::Bulk(arg),
    ]);
    Some(Slot::reply(&reply, s.proto))
}

/// Runs a pub/sub command.
#[allow(clippy::too_many_arguments)]
pub fn run(
    router: &Router,
    topo: &View,
    s: &mut Session,
    spec: &'static CommandSpec,
    a: &[Bytes],
    raw: &Bytes,
    cmd: u16,
    start: Instant,
) -> Slot {
    match spec.name {
        "subscribe" => subscribe(router, topo, s, Kind::Channel, &a[1..]),
        "psubscribe" => subscribe(router, topo, s, Kind::Pattern, &a[1..]),
        "ssubscribe" => subscribe(router, topo, s, Kind::Shard, &a[1..]),
        "unsubscribe" => unsubscribe(router, s, Kind::Channel, &a[1..]),
        "punsubscribe" => unsubscribe(router, s, Kind::Pattern, &a[1..]),
        "sunsubscribe" => unsubscribe(router, s, Kind::Shard, &a[1..]),
        "publish" => publish(router, topo, s, Kind::Channel, a, raw, cmd, start),
        "spublish" => publish(router, topo, s, Kind::Shard, a, raw, cmd, start),
        "pubsub" => pubsub(router, topo, s, a, cmd, start),
        _ => Slot::reply(&crate::local::unsupported(spec), s.proto),
    }
}

/// MONITOR: from now on the client also receives every request this router's clients send
/// (the router's view; each node's own MONITOR shows what reaches that node).
pub fn monitor(router: &Router, s: &mut Session) -> Slot {
    let resp3 = s.proto == Protocol::Resp3;
    let hub = &router.pubsub;
    let sub = s
        .pubsub
        .get_or_insert_with(|| Box::new(hub.subscriber(router, &s.client, resp3)));
    hub.monitor(sub.id);
    Slot::reply(&Reply::OK, s.proto)
}

fn confirmation(proto: Protocol, what: &'static str, name: Option<&Bytes>, count: usize) -> Bytes {
    let name = name.map_or(Reply::Nil, |n| Reply::Bulk(n.clone()));
    let items = vec![
        Reply::Bulk(Bytes::from_static(what.as_bytes())),
        name,
        Reply::Int(count as i64),
    ];
    let mut out = BytesMut::from(&Reply::Array(items).to_bytes(proto)[..]);
    if proto == Protocol::Resp3 {
        // RESP3 sends these as pushes, as Redis does: the same aggregate, typed `>`.
        out[0] = b'>';
    }
    out.freeze()
}

fn subscribe(router: &Router, topo: &View, s: &mut Session, kind: Kind, names: &[Bytes]) -> Slot {
    let proto = s.proto;
    let hub = &router.pubsub;
    let sub = s.pubsub.get_or_insert_with(|| {
        Box::new(hub.subscriber(router, &s.client, proto == Protocol::Resp3))
    });
    let what = match kind {
        Kind::Channel => "subscribe",
        Kind::Pattern => "psubscribe",
        Kind::Shard => "ssubscribe",
    };
    let mut out = BytesMut::new();
    let mut waits = Vec::new();
    for name in names {
        let name = Bytes::copy_from_slice(name);
        if sub.mine[kind as usize].insert(name.clone()) {
            if let Some(w) = hub.add(router, topo, kind, &name, sub.id) {
                waits.push(w);
            }
            // ACL SETUSER may have narrowed the user after this command's check and looked for
            // subscribers before this one was added: checked again now that it is.
            if !s
                .user
                .rules()
                .subscription_allowed(&name, kind == Kind::Pattern)
            {
                s.client.kill();
            }
        }
        out.extend_from_slice(&confirmation(proto, what, Some(&name), sub.count(kind)));
    }
    let out = out.freeze();
    if waits.is_empty() {
        return Slot::Ready(out);
    }
    // Answered once the shards subscribed: a message published after the client read its
    // confirmation is delivered.
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let all = async {
            for w in waits {
                let _ = w.await;
            }
        };
        let _ = tokio::time::timeout(CONFIRM_WAIT, all).await;
        let _ = tx.send(Ok(out));
    });
    Slot::Forward(rx)
}

fn unsubscribe(router: &Router, s: &mut Session, kind: Kind, names: &[Bytes]) -> Slot {
    let proto = s.proto;
    let what = match kind {
        Kind::Channel => "unsubscribe",
        Kind::Pattern => "punsubscribe",
        Kind::Shard => "sunsubscribe",
    };
    let Some(sub) = s.pubsub.as_mut() else {
        if names.is_empty() {
            return Slot::Ready(confirmation(proto, what, None, 0));
        }
        let mut out = BytesMut::new();
        for name in names {
            out.extend_from_slice(&confirmation(proto, what, Some(name), 0));
        }
        return Slot::Ready(out.freeze());
    };
    let names: Vec<Bytes> = if names.is_empty() {
        sub.mine[kind as usize].iter().cloned().collect()
    } else {
        names.iter().map(|n| Bytes::copy_from_slice(n)).collect()
    };
    if names.is_empty() {
        return Slot::Ready(confirmation(proto, what, None, sub.count(kind)));
    }
    let mut out = BytesMut::new();
    for name in &names {
        if sub.mine[kind as usize].remove(name) {
            router.pubsub.remove(kind, name, sub.id);
        }
        out.extend_from_slice(&confirmation(proto, what, Some(name), sub.count(kind)));
    }
    Slot::Ready(out.freeze())
}

/// PUBLISH and SPUBLISH: sent to the channel's shard. The node counts this router's
/// subscription as one receiver; the reply counts this router's clients instead.
#[allow(clippy::too_many_arguments)]
fn publish(
    router: &Router,
    topo: &View,
    s: &Session,
    kind: Kind,
    a: &[Bytes],
    raw: &Bytes,
    cmd: u16,
    start: Instant,
) -> Slot {
    // Channels follow the routes from the `default` pool, whatever the client's listener.
    let Some(shard) = topo.owner(&a[1], 0).and_then(|i| topo.shards.get(i)) else {
        return Slot::error("ERR the ring has no shards");
    };
    let rx = send(shard, s, raw.clone(), cmd, start);
    let (clients, mine) = router.pubsub.reach(kind, &a[1]);
    if clients == 0 && mine == 0 {
        return Slot::Keyed(rx, raw.clone());
    }
    Slot::Published(rx, mine as i64, clients as i64)
}

/// PUBSUB CHANNELS | NUMSUB | NUMPAT | SHARDCHANNELS | SHARDNUMSUB over every shard.
fn pubsub(
    router: &Router,
    topo: &View,
    s: &Session,
    a: &[Bytes],
    cmd: u16,
    start: Instant,
) -> Slot {
    let sub = a[1].to_ascii_lowercase();
    if sub == b"help" {
        // The shards answer it as Redis does.
        let shard = &topo.shards[0];
        return Slot::Forward(send(shard, s, encode(a), cmd, start));
    }
    let known = matches!(
        &sub[..],
        b"channels" | b"numsub" | b"numpat" | b"shardchannels" | b"shardnumsub"
    );
    let arity_ok = match &sub[..] {
        b"channels" | b"shardchannels" => a.len() <= 3,
        b"numpat" => a.len() == 2,
        _ => true,
    };
    if !known {
        return Slot::reply(&crate::local::unknown_subcommand(&a[1], "pubsub"), s.proto);
    }
    if !arity_ok {
        let name = format!("pubsub|{}", String::from_utf8_lossy(&sub));
        return Slot::reply(
            &Reply::Error(format!(
                "ERR wrong number of arguments for '{name}' command"
            )),
            s.proto,
        );
    }
    let Some(me) = router.me() else {
        return Slot::error("ERR the router is shutting down");
    };
    let raw = encode(a);
    let bare = encode(&a[..2]);
    // A `remove_prefix` pool's nodes list stored names (renamed in `merge`, the pattern applied
    // here) and count the link's notification pattern (NUMPAT: every pattern is on every
    // shard, so the other pools' count is the count).
    let waits: Vec<_> = topo
        .shards
        .iter()
        .filter(|shard| !(sub == b"numpat" && shard.pool.keys().is_some()))
        .map(|shard| {
            let keys = shard.pool.keys().cloned();
            let raw = match (&keys, &sub[..]) {
                (None, _) => raw.clone(),
                (Some(k), b"numsub" | b"shardnumsub") => {
                    let kind = space(&sub);
                    let names = a[2..]
                        .iter()
                        .map(|n| super::stripped::node_name(k, kind, n));
                    encode(&a[..2].iter().cloned().chain(names).collect::<Vec<_>>())
                }
                (Some(_), _) => bare.clone(),
            };
            (send(shard, s, raw, cmd, start), keys)
        })
        .collect();
    let proto = s.proto;
    let args: Vec<Bytes> = a.to_vec();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut replies = Vec::with_capacity(waits.len());
        for (w, keys) in waits {
            match w.await {
                Ok(Ok(bytes)) if !crate::frame::is_error(&bytes) => replies.push((bytes, keys)),
                Ok(Ok(bytes)) => {
                    let _ = tx.send(Ok(bytes));
                    return;
                }
                Ok(Err(e)) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                Err(_) => {
                    let _ = tx.send(Ok(error_bytes(
                        "ERR the shard connection closed before replying",
                    )));
                    return;
                }
            }
        }
        let _ = tx.send(Ok(merge(&me, &sub, &args, &replies).to_bytes(proto)));
    });
    Slot::Forward(rx)
}

/// The subscription space a PUBSUB subcommand asks about: shard channels for SHARD*.
fn space(sub: &[u8]) -> Kind {
    if sub.starts_with(b"shard") {
        Kind::Shard
    } else {
        Kind::Channel
    }
}

fn encode(a: &[Bytes]) -> Bytes {
    let mut raw = BytesMut::new();
    ringcache_protocol::resp::encode_request(&mut raw, a);
    raw.freeze()
}

/// Combines the shards' PUBSUB replies; counts replace this router's one subscription by its
/// clients.
fn merge(
    router: &Router,
    sub: &[u8],
    a: &[Bytes],
    replies: &[(Bytes, Option<Arc<KeyPrefix>>)],
) -> Reply {
    let hub = &router.pubsub;
    match sub {
        b"channels" | b"shardchannels" => {
            let kind = space(sub);
            let mut seen = std::collections::BTreeSet::new();
            for (r, keys) in replies {
                for part in elements(r).unwrap_or_default() {
                    let Some(name) = bulk_payload(&r[part]) else {
                        continue;
                    };
                    let name = match keys {
                        None => Bytes::copy_from_slice(name),
                        Some(k) => match super::stripped::client_channel(k, kind, name) {
                            Some(n) if a.len() < 3 || glob::matches(&a[2], &n, false) => n,
                            _ => continue,
                        },
                    };
                    seen.insert(name);
                }
            }
            Reply::Array(seen.into_iter().map(Reply::Bulk).collect())
        }
        b"numpat" => Reply::Int(
            replies
                .iter()
                .filter_map(|(r, _)| integer(r))
                .max()
                .unwrap_or(0),
        ),
        _ => {
            let kind = space(sub);
            let mut out = Vec::new();
            for (i, name) in a[2..].iter().enumerate() {
                let mut total = 0i64;
                for (r, _) in replies {
                    let parts = elements(r).unwrap_or_default();
                    if let Some(n) = parts.get(2 * i + 1).and_then(|p| integer(&r[p.clone()])) {
                        total += n;
                    }
                }
                let (clients, subscribed) = hub.local(kind, name);
                if subscribed {
                    total = (total - 1).max(0);
                }
                out.push(Reply::Bulk(name.clone()));
                out.push(Reply::Int(total + clients as i64));
            }
            Reply::Array(out)
        }
    }
}
