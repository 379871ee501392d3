//! Pub/sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PUBLISH, SPUBLISH and PUBSUB, with
//! Redis 7's replies. The (un)subscribe confirmations are pushes (RESP3 `>`): one frame per
//! channel, sent even under CLIENT REPLY OFF.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::table;
use ringcache_protocol::{Protocol, Reply};

use super::args::{arity_error, unknown_subcommand};
use super::ctx::Ctx;
use crate::state::pubsub::{push_frame, Kind, Mailbox, Subscriptions};
use crate::state::session::Session;
use crate::state::Shared;

/// The commands whose replies are pushes.
pub fn is_push_command(name: &str) -> bool {
    matches!(
        name,
        "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ssubscribe" | "sunsubscribe"
    )
}

/// Commands a RESP2 client may send while subscribed.
pub fn allowed_while_subscribed(name: &str) -> bool {
    is_push_command(name) || matches!(name, "ping" | "quit" | "reset")
}

/// The error for any other command, naming it as Redis does (`client|id`).
pub fn subscribed_refusal(spec: &table::CommandSpec, args: &[Bytes]) -> Reply {
    let sub = args
        .get(1)
        .and_then(|s| table::lookup_sub(spec.name.as_bytes(), &s.to_ascii_lowercase()));
    Reply::Error(format!(
        "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
        sub.map_or(spec.name, |s| s.name)
    ))
}

/// The session's subscriptions, made (with its mailbox) on first use.
fn subscriptions(session: &mut Session) -> &mut Subscriptions {
    let proto = session.proto;
    let client = &session.client;
    session.pubsub.get_or_insert_with(|| {
        let mb = Arc::new(Mailbox::new(client.clone(), proto));
        Box::new(Subscriptions::new(mb))
    })
}

/// MONITOR: from now on the connection also receives every command the node runs.
pub fn monitor(ctx: &mut Ctx) -> Reply {
    if ctx.session.in_exec {
        // A transaction expects one reply per command (Redis's words).
        return Reply::error("ERR MONITOR isn't allowed for DENY BLOCKING client");
    }
    let subs = subscriptions(ctx.session);
    subs.monitor = true;
    let mb = subs.mailbox.clone();
    ctx.shared.monitors.add(&mb);
    Reply::OK
}

/// Shows a command that ran to the monitors (not administrative ones, as Redis).
pub fn feed_monitors(
    shared: &Shared,
    session: &Session,
    spec: &'static table::CommandSpec,
    args: &[Bytes],
) {
    if !ringcache_protocol::monitor::shown(spec, args) {
        return;
    }
    let client = if session.in_script {
        "lua".to_string()
    } else {
        session.client.addr.to_string()
    };
    shared
        .monitors
        .feed(&client, args, shared.pubsub.pubsub_limit());
}

/// (P|S)SUBSCRIBE name...
pub fn subscribe(ctx: &mut Ctx, a: &[Bytes], kind: Kind) -> Reply {
    let proto = ctx.session.proto;
    let user = ctx.session.user.clone();
    let subs = subscriptions(ctx.session);
    let mut out = BytesMut::new();
    let mut refused = false;
    for name in &a[1..] {
        if subs.insert(kind, name) {
            ctx.shared.pubsub.add(kind, name, &subs.mailbox);
            // ACL SETUSER may have narrowed the user after this command's check and looked for
            // subscribers before this one was added: checked again now that it is.
            refused |= user
                .as_ref()
                .is_some_and(|u| !u.rules().subscription_allowed(name, kind == Kind::Pattern));
        }
        let count = subs.count(kind) as i64;
        push_frame(
            &mut out,
            proto,
            &[Some(kind.subscribe_word()), Some(name)],
            Some(count),
        );
    }
    let sizes = subs.sizes();
    ctx.session.client.set_subscriptions(sizes);
    if refused {
        ctx.session.client.kill();
    }
    Reply::Raw(out.freeze())
}

/// (P|S)UNSUBSCRIBE [name...]: every subscription of the kind without names.
pub fn unsubscribe(ctx: &mut Ctx, a: &[Bytes], kind: Kind) -> Reply {
    let proto = ctx.session.proto;
    let word = kind.unsubscribe_word();
    let mut out = BytesMut::new();
    let Some(subs) = ctx.session.pubsub.as_mut() else {
        // Not subscribed: every name (or the lone nil) answers a count of 0.
        if a.len() == 1 {
            push_frame(&mut out, proto, &[Some(word), None], Some(0));
        }
        for name in &a[1..] {
            push_frame(&mut out, proto, &[Some(word), Some(name)], Some(0));
        }
        return Reply::Raw(out.freeze());
    };
    let names = if a.len() == 1 {
        subs.names(kind)
    } else {
        a[1..].to_vec()
    };
    if names.is_empty() {
        push_frame(
            &mut out,
            proto,
            &[Some(word), None],
            Some(subs.count(kind) as i64),
        );
    }
    for name in &names {
        if subs.remove(kind, name) {
            ctx.shared.pubsub.remove(kind, name, subs.mailbox.id);
        }
        let count = subs.count(kind) as i64;
        push_frame(&mut out, proto, &[Some(word), Some(name)], Some(count));
    }
    ctx.session.client.set_subscriptions(subs.sizes());
    // The connection drops the emptied subscriptions once it has sent what arrived before.
    Reply::Raw(out.freeze())
}

/// Drops every subscription of the session (RESET, a closing connection), without replies.
pub fn unsubscribe_all(shared: &Shared, session: &mut Session) {
    let Some(subs) = session.pubsub.take() else {
        return;
    };
    session.client.set_subscriptions([0; 3]);
    if subs.monitor {
        shared.monitors.remove(subs.mailbox.id);
    }
    for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
        for name in subs.names(kind) {
            shared.pubsub.remove(kind, &name, subs.mailbox.id);
        }
    }
}

/// PUBLISH channel message; replicas publish it too.
pub fn publish(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let n = ctx.shared.pubsub.publish(&a[1], &a[2]);
    if ctx.shared.repl.has_replicas() {
        ctx.db.propagate_as(a.to_vec());
    }
    Reply::Int(n as i64)
}

/// SPUBLISH shardchannel message; replicas publish it too.
pub fn spublish(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let n = ctx.shared.pubsub.spublish(&a[1], &a[2]);
    if ctx.shared.repl.has_replicas() {
        ctx.db.propagate_as(a.to_vec());
    }
    Reply::Int(n as i64)
}

/// PUBSUB CHANNELS | NUMSUB | NUMPAT | SHARDCHANNELS | SHARDNUMSUB | HELP.
pub fn pubsub(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    if sub == b"help" {
        return help();
    }
    let Some(spec) = table::lookup_sub(b"pubsub", &sub) else {
        return unknown_subcommand(&a[1], "pubsub");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    let ps = &ctx.shared.pubsub;
    let bulks = |v: Vec<Bytes>| Reply::Array(v.into_iter().map(Reply::Bulk).collect());
    let numsub = |shard: bool| {
        let mut out = Vec::with_capacity((a.len() - 2) * 2);
        for ch in &a[2..] {
            out.push(Reply::Bulk(ch.clone()));
            out.push(Reply::Int(ps.numsub(shard, ch) as i64));
        }
        Reply::Array(out)
    };
    match &sub[..] {
        b"channels" => bulks(ps.channels(false, a.get(2).map(|p| &p[..]))),
        b"shardchannels" => bulks(ps.channels(true, a.get(2).map(|p| &p[..]))),
        b"numsub" => numsub(false),
        b"shardnumsub" => numsub(true),
        b"numpat" => Reply::Int(ps.numpat() as i64),
        _ => unknown_subcommand(&a[1], "pubsub"),
    }
}

fn help() -> Reply {
    let lines = [
        "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CHANNELS [<pattern>]",
        "    Return the currently active channels matching a <pattern> (default: '*').",
        "NUMPAT",
        "    Return number of subscriptions to patterns.",
        "NUMSUB [<channel> ...]",
        "    Return the number of subscribers for the specified channels, excluding",
        "    pattern subscriptions(default: no channels).",
        "SHARDCHANNELS [<pattern>]",
        "    Return the currently active shard level channels matching a <pattern> (default: '*').",
        "SHARDNUMSUB [<shardchannel> ...]",
        "    Return the number of subscribers for the specified shard level channel(s)",
        "HELP",
        "    Prints this help.",
    ];
    Reply::status_lines(&lines)
}

/// PING while subscribed over RESP2: `["pong", <argument or "">]`.
pub fn subscribed_ping(a: &[Bytes]) -> Reply {
    Reply::Array(vec![
        Reply::bulk_str("pong"),
        Reply::Bulk(a.get(1).cloned().unwrap_or_default()),
    ])
}

/// Whether the session is in RESP2's subscribed mode.
pub fn in_resp2_subscribed_mode(session: &Session) -> bool {
    session.proto == Protocol::Resp2 && session.pubsub.as_ref().is_some_and(|s| s.subscribed())
}
