//! Blocking commands' machinery: blocking a client when its keys hold nothing, and serving the
//! clients blocked on keys a command just changed (see `crate::state::blocking`).
//!
//! Each blocking command has a non-blocking form its family implements (`lists::serve_blocked`,
//! `zsets::serve_blocked`): it runs once when the command arrives and again for every change of
//! the keys while the client waits. Serving happens right after the changing command, before
//! its reply goes out, so a client that pushes and then reads sees the blocked client's pop.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringcache_protocol::table;
use ringcache_protocol::Reply;

use super::ctx::Ctx;
use crate::keyspace::{now_ms, Db, Expiry};
use crate::state::blocking::Waiter;
use crate::state::Shared;

/// A blocking command's non-blocking form: `None` while its keys still hold nothing for it.
pub type ServeFn = fn(&mut Db<'_>, &[Bytes]) -> Option<Reply>;

fn serve_fn(name: &str) -> Option<ServeFn> {
    match name {
        "blpop" | "brpop" | "blmove" | "brpoplpush" | "blmpop" => Some(super::lists::serve_blocked),
        "bzpopmin" | "bzpopmax" | "bzmpop" => Some(super::zsets::serve_blocked),
        "xread" | "xreadgroup" => Some(super::streams::serve_blocked),
        _ => None,
    }
}

/// Parses a blocking command's timeout as Redis does: seconds, decimals allowed, rounded up to
/// a millisecond; 0 waits for ever.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Duration>, Reply> {
    let secs = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .ok_or_else(|| Reply::error("ERR timeout is not a float or out of range"))?;
    let ms = (secs * 1000.0).ceil();
    if ms < 0.0 {
        return Err(Reply::error("ERR timeout is negative"));
    }
    // Past a century a deadline is as good as none.
    if ms == 0.0 || ms > 3.2e12 {
        return Ok(None);
    }
    Ok(Some(Duration::from_millis(ms as u64)))
}

/// Blocks the client on `keys` (whose locks `ctx.db` holds) until one of them can serve it or
/// `timeout` passes; inside a transaction, answers `timeout_reply` at once, as Redis does.
/// The reply returned here is a placeholder: the connection sends the real one.
pub fn block(
    ctx: &mut Ctx,
    args: &[Bytes],
    keys: Vec<Bytes>,
    timeout: Option<Duration>,
    timeout_reply: Reply,
) -> Reply {
    if ctx.session.in_exec || ctx.session.from_primary {
        return timeout_reply;
    }
    let w = Arc::new(
        Waiter::new(ctx.session.id, args.to_vec(), keys, timeout_reply)
            .arrived_at(ctx.session.read_at),
    );
    ctx.shared.blocked.add(w.clone());
    ctx.shared.keyspace.add_interest();
    ctx.session.blocked = Some((w, timeout));
    Reply::Nil
}

/// CLIENT UNBLOCK id [TIMEOUT|ERROR]: the blocked client answers its timeout reply, or an
/// UNBLOCKED error; 1 if it was blocked.
pub fn client_unblock(shared: &Shared, a: &[Bytes]) -> Reply {
    if a.len() < 3 || a.len() > 4 {
        return super::args::arity_error("client|unblock");
    }
    let Some(id) = ringcache_protocol::num::parse_i64(&a[2]) else {
        return super::args::not_integer();
    };
    let error = match a.get(3) {
        None => false,
        Some(r) if super::args::is(r, "timeout") => false,
        Some(r) if super::args::is(r, "error") => true,
        Some(_) => return Reply::error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
    };
    let Some(w) = u64::try_from(id)
        .ok()
        .and_then(|id| shared.blocked.of_client(id))
    else {
        return Reply::Int(0);
    };
    let reply = if error {
        Reply::error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
    } else {
        w.timeout_reply.clone()
    };
    if !w.try_serve(|| Some(reply)) {
        return Reply::Int(0);
    }
    shared.blocked.remove(&w);
    shared.keyspace.remove_interest();
    Reply::Int(1)
}

/// Answers `-WRONGSHARD` to every client blocked on a key this node no longer owns.
pub fn release_unowned(shared: &Shared) {
    if shared.blocked.is_empty() {
        return;
    }
    for w in shared.blocked.all() {
        let Some(refused) = crate::topology::refuse_unowned(shared, w.keys.iter().map(|k| &k[..]))
        else {
            continue;
        };
        if w.try_serve(|| Some(refused)) {
            shared.blocked.remove(&w);
            shared.keyspace.remove_interest();
        }
    }
}

/// The blocked client stops waiting (timeout or disconnect): its reply.
pub fn unblock(shared: &Shared, w: &Arc<Waiter>) -> Reply {
    let served = w.finish();
    if served.is_none() {
        shared.blocked.remove(w);
        shared.keyspace.remove_interest();
    }
    served.unwrap_or_else(|| w.timeout_reply.clone())
}

/// Serves the clients blocked on `touched` keys, first blocked first, following the keys their
/// own commands push to (BLMOVE chains).
pub fn serve_ready(shared: &Shared, touched: Vec<Bytes>) {
    let mut ready: VecDeque<Bytes> = touched.into();
    // Bounded: each round serves a client, and clients are finite; this guards a bug.
    let mut rounds = 0;
    while let Some(key) = ready.pop_front() {
        for w in shared.blocked.waiters(&key) {
            rounds += 1;
            if rounds > 1_000_000 {
                tracing::error!("bug: serving blocked clients does not end");
                return;
            }
            let Some(spec) = table::lookup(&w.args[0]) else {
                continue;
            };
            let Some(serve) = serve_fn(spec.name) else {
                continue;
            };
            let keys = spec.keys(&w.args).map(|i| &w.args[i]);
            let mut db = Db::for_keys(&shared.keyspace, keys, now_ms(), Expiry::Delete);
            crate::replication::before_write(shared, &mut db);
            if !w.try_serve(|| serve(&mut db, &w.args)) {
                if w.is_waiting() {
                    // Nothing left for this client, so for none after it either.
                    break;
                }
                continue;
            }
            shared.blocked.remove(&w);
            shared.keyspace.remove_interest();
            if !db.effects.notes.is_empty() {
                super::notify::command(shared, &mut db, spec.name, &w.args);
            }
            let touched = crate::replication::release(shared, db, Some((spec, &w.args)));
            ready.extend(touched.into_iter().filter(|k| *k != key));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_redis() {
        assert_eq!(parse_timeout(b"0").unwrap(), None);
        assert_eq!(
            parse_timeout(b"0.5").unwrap(),
            Some(Duration::from_millis(500))
        );
        assert!(parse_timeout(b"-1").is_err());
        assert!(parse_timeout(b"abc").is_err());
        assert!(parse_timeout(b"inf").is_err());
        assert_eq!(
            parse_timeout(b"0.0001").unwrap(),
            Some(Duration::from_millis(1))
        );
    }
}
