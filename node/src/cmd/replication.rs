//! Replication commands: ROLE, REPLICAOF / SLAVEOF, SYNC / PSYNC, REPLCONF. They parse their
//! arguments and hand the work to the replication engine (`crate::replication`).

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use ringcache_protocol::Reply;

use super::args::is;
use super::ctx::Ctx;
use crate::keyspace::{now_ms, Db, Expiry};
use crate::state::replication::LinkState;

pub fn role(ctx: &Ctx) -> Reply {
    let repl = &ctx.shared.repl;
    if let Some(p) = repl.primary() {
        let (host, port) = p.rsplit_once(':').unwrap_or((p.as_str(), "0"));
        let state = match repl.link() {
            LinkState::Up => "connected",
            LinkState::Syncing => "sync",
            LinkState::Down => "connect",
        };
        return Reply::Array(vec![
            Reply::bulk_str("slave"),
            Reply::bulk_str(host),
            Reply::Int(port.parse().unwrap_or(0)),
            Reply::bulk_str(state),
            Reply::Int(repl.offset() as i64),
        ]);
    }
    let replicas = repl
        .replicas()
        .iter()
        .map(|l| {
            Reply::Array(vec![
                Reply::bulk_str(&l.addr.ip().to_string()),
                Reply::bulk_str(&l.listening_port.load(Relaxed).to_string()),
                Reply::bulk_str(&l.ack_offset.load(Relaxed).to_string()),
            ])
        })
        .collect();
    Reply::Array(vec![
        Reply::bulk_str("master"),
        Reply::Int(repl.offset() as i64),
        Reply::Array(replicas),
    ])
}

/// REPLICAOF and SLAVEOF: `<host> <port>` follows that primary, `NO ONE` makes this node one.
pub fn replicaof(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if is(&a[1], "no") && is(&a[2], "one") {
        crate::replication::promote(ctx.shared);
        return Reply::OK;
    }
    let Ok(port) = std::str::from_utf8(&a[2]).unwrap_or("").parse::<u16>() else {
        return Reply::error("ERR Invalid master port");
    };
    let host = String::from_utf8_lossy(&a[1]).into_owned();
    let target = format!("{host}:{port}");
    if ctx.shared.repl.primary().as_deref() == Some(target.as_str()) {
        return Reply::Status("OK Already connected to specified master");
    }
    crate::replication::follow(ctx.shared.self_arc(), target);
    Reply::OK
}

/// SYNC and PSYNC: the connection becomes the replica's link once this reply is sent.
pub fn sync(ctx: &mut Ctx) -> Reply {
    if ctx.shared.repl.is_replica() {
        // Chained replication is not supported: a replica's data may lag its primary.
        return Reply::error("ERR this node is a replica; sync from its primary");
    }
    ctx.session.is_replication_link = true;
    Reply::Nil
}

pub fn replconf(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let repl = &ctx.shared.repl;
    let sub = a.get(1).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let num = |i: usize| -> u64 {
        a.get(i)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    match &sub[..] {
        // Sent by the primary inside the stream: only meaningful on the replica side.
        b"offset" if ctx.session.from_primary => {
            repl.primary_announced(num(2), num(3));
            Reply::OK
        }
        b"listening-port" => {
            ctx.session.replica_port = u16::try_from(num(2)).ok();
            Reply::OK
        }
        // A snapshot key: `REPLCONF KEY <key> <deadline or 0> <payload>`.
        b"key" if ctx.session.from_primary && a.len() == 5 => {
            restore_snapshot_key(ctx, &a[2], num(3), &a[4]);
            Reply::OK
        }
        // Writes the primary replaced with their buckets' state during the snapshot.
        b"skip" if ctx.session.from_primary => {
            repl.skipped(num(2), num(3));
            Reply::OK
        }
        // The primary's function libraries, in its snapshot: `REPLCONF FUNCTION FLUSH` and
        // `REPLCONF FUNCTION LOAD REPLACE <code>`, run as the FUNCTION command they carry.
        b"function" if ctx.session.from_primary && a.len() > 2 => {
            let reply = crate::script::host::run_elsewhere(ctx.shared, ctx.session, &a[1..]);
            if let Reply::Error(e) = reply {
                tracing::warn!(error = %e, "cannot take a function library from the primary");
            }
            Reply::OK
        }
        // A router's WAIT for its client, on a connection of that client's own: the writes
        // to wait for are everything this node propagated before it (the router sends it once
        // the client's earlier requests were answered).
        b"wait" if a.len() == 4 && !ctx.session.from_primary => {
            wait_for(ctx, repl.offset(), &a[2], &a[3])
        }
        b"snapshot-end" if ctx.session.from_primary => {
            repl.set_link(LinkState::Up);
            tracing::info!(offset = num(2), "replica in sync with its primary");
            Reply::OK
        }
        _ => Reply::OK,
    }
}

/// Installs one key of the primary's snapshot.
fn restore_snapshot_key(ctx: &mut Ctx, key: &Bytes, deadline: u64, payload: &[u8]) {
    let ks = &ctx.shared.keyspace;
    let restored = match crate::dump::restore(payload, &ks.limits()) {
        Ok(v) => v,
        Err(_) => {
            tracing::warn!(key = %String::from_utf8_lossy(key), "undecodable snapshot key from the primary");
            return;
        }
    };
    let deadline = (deadline > 0).then_some(deadline as i64);
    let mut db = Db::for_keys(ks, [key], now_ms(), Expiry::Keep);
    db.insert(restored.into_entry(key, deadline));
    let _ = crate::replication::release(ctx.shared, db, None);
}

/// WAIT numreplicas timeout: how many replicas acknowledged this client's writes, waiting up to
/// `timeout` ms (0: for ever) for `numreplicas` of them.
pub fn wait(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let offset = ctx.session.woff;
    wait_for(ctx, offset, &a[1], &a[2])
}

fn wait_for(ctx: &mut Ctx, offset: u64, replicas: &[u8], timeout: &[u8]) -> Reply {
    let repl = &ctx.shared.repl;
    if repl.is_replica() {
        return Reply::error(
            "ERR WAIT cannot be used with replica instances. Please also note that since Redis \
             4.0 if a replica is configured to be writable (which is not the default) writes to \
             replicas are just local and are not propagated.",
        );
    }
    let Some(replicas) = ringcache_protocol::num::parse_i64(replicas) else {
        return super::args::not_integer();
    };
    let ms = match ringcache_protocol::pause::timeout_ms(timeout) {
        Ok(ms) => ms,
        Err(e) => return e,
    };
    let acked = repl.acked_at(offset);
    // In a transaction or a script WAIT cannot block: it answers the count now, as Redis does.
    if acked as i64 >= replicas || ctx.session.in_exec || ctx.session.in_script {
        return Reply::Int(acked as i64);
    }
    ctx.session.repl_wait = Some(Box::new(crate::state::session::ReplWait {
        offset,
        replicas: replicas as u64,
        timeout: (ms > 0).then(|| std::time::Duration::from_millis(ms)),
    }));
    repl.request_acks();
    // A placeholder: the connection answers once replicas acknowledged or the timeout passed.
    Reply::Nil
}
