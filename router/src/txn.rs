//! Transactions through the router: MULTI … EXEC, DISCARD, WATCH and UNWATCH.
//!
//! The node keeps a transaction's queued commands and watched keys per connection, so a client
//! in a transaction gets a connection of its own (`crate::dedicated`) to the shard of its first
//! key, until EXEC, DISCARD or UNWATCH. Commands queued before any key are answered `QUEUED` here
//! and replayed once the shard is known; a key on another shard is refused with CROSSSHARD and
//! the transaction ends in EXECABORT, as Redis ends one with a command it could not queue.
//!
//! At EXEC the keys' owner is read again: if a membership change gave them to another shard
//! since they were queued, the transaction runs there instead (its keys first brought over, as
//! the migration path does), or, if it WATCHed keys, it aborts as if they changed. A node that
//! refuses the EXEC because another router moved the keys gets the same treatment once this
//! router has followed. A transaction never runs on a node that does not own its keys.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use ringcache_protocol::table::{flags, CommandSpec};
use ringcache_protocol::{Protocol, Reply};
use tokio::sync::oneshot;

use crate::clients::Who;
use crate::dedicated::Dedicated;
use crate::merge::{error_bytes, Slot};
use crate::pools::View;
use crate::rebalance::divert::{catch_up_refusal, pool_at, tryagain, wrongshard};
use crate::route::CROSSSHARD;
use crate::session::Session;
use crate::split_change::SPLIT_FENCED;
use crate::state::Router;
use crate::upstream::UpResult;

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// A client's transaction (or WATCH) in progress.
#[derive(Debug, Default)]
pub struct Txn {
    /// The connection to the transaction's shard, once a key chose it.
    link: Option<Dedicated>,
    multi: bool,
    watching: bool,
    /// A command could not be queued: EXEC answers EXECABORT.
    failed: bool,
    /// Commands queued after MULTI, with their keys, to replay on a new link.
    queued: Vec<(Bytes, Vec<Bytes>)>,
    /// Every key the transaction names (queued and watched).
    keys: Vec<Bytes>,
    /// Epoch of a node's `-WRONGSHARD` to a queued command (0: none): the keys moved.
    moved: Arc<AtomicU64>,
}

/// Between MULTI and EXEC (ACL LOG's context `multi`).
pub fn in_multi(s: &Session) -> bool {
    s.txn.as_ref().is_some_and(|t| t.multi)
}

/// The requests queued in the client's transaction, as the client sent them.
pub fn queued(s: &Session) -> impl Iterator<Item = &Bytes> {
    s.txn
        .iter()
        .flat_map(|t| t.queued.iter().map(|(raw, _)| raw))
}

/// A request inside MULTI failed before reaching a node (unknown command, wrong arity).
pub fn queue_failed(s: &mut Session) {
    if let Some(t) = s.txn.as_mut().filter(|t| t.multi) {
        t.failed = true;
    }
}

/// Whether a request goes through the client's transaction.
pub fn applies(s: &Session, spec: &CommandSpec) -> bool {
    s.txn.is_some()
        || matches!(
            spec.name,
            "multi" | "watch" | "exec" | "discard" | "unwatch"
        )
}

/// The transaction's part of the request path: the request's slot, or `None` when it takes the
/// usual path (RESET and QUIT end the transaction first; commands outside MULTI on other
/// shards than a WATCH's).
pub fn dispatch(
    router: &Router,
    topo: &View,
    s: &mut Session,
    spec: &'static CommandSpec,
    args: &[Bytes],
    raw: &Bytes,
) -> Option<Slot> {
    let proto = s.proto;
    let who = s.who();
    match spec.name {
        "reset" | "quit" => {
            s.txn = None;
            return None;
        }
        "multi" => {
            let t = s.txn.get_or_insert_with(Box::default);
            if t.multi {
                return Some(Slot::error("ERR MULTI calls can not be nested"));
            }
            t.multi = true;
            return Some(match &t.link {
                Some(link) => forward(link, raw, vec![], router),
                None => Slot::reply(&Reply::OK, proto),
            });
        }
        "exec" => return Some(exec(router, s)),
        "client"
            if in_multi(s)
                && args.get(1).is_some_and(|sub| {
                    sub.eq_ignore_ascii_case(b"pause") || sub.eq_ignore_ascii_case(b"unpause")
                }) =>
        {
            // Queued on a node, it would pause that node for every router, not this one's
            // clients: refused, and the transaction with it.
            queue_failed(s);
            return Some(Slot::error(
                "ERR CLIENT PAUSE and CLIENT UNPAUSE cannot be queued in a transaction through the router",
            ));
        }
        "discard" => {
            let Some(t) = s.txn.take().filter(|t| t.multi) else {
                return Some(Slot::error("ERR DISCARD without MULTI"));
            };
            return Some(match &t.link {
                Some(link) => forward(link, raw, vec![], router),
                None => Slot::reply(&Reply::OK, proto),
            });
        }
        "unwatch" if !s.txn.as_ref().is_some_and(|t| t.multi) => {
            return Some(match s.txn.take().and_then(|t| t.link) {
                Some(link) => forward(&link, raw, vec![], router),
                None => Slot::reply(&Reply::OK, proto),
            });
        }
        _ => {}
    }
    // Copies: a transaction may outlive the read buffer these slices share.
    let keys: Vec<Bytes> = spec
        .keys(args)
        .map(|i| Bytes::copy_from_slice(&args[i]))
        .collect();
    let home = match home_of(topo, &keys, who.pool) {
        Ok(h) => h,
        Err(()) => {
            queue_failed(s);
            return Some(Slot::error(CROSSSHARD));
        }
    };
    let t = s.txn.get_or_insert_with(Box::default);
    if spec.name == "watch" {
        if t.multi {
            return Some(Slot::error("ERR WATCH inside MULTI is not allowed"));
        }
        t.watching = true;
    } else if !t.multi {
        // Outside MULTI, with keys WATCHed: commands on the watched shard keep their order with
        // the WATCH on its connection; the rest take the usual path.
        let on_link = match (&t.link, home) {
            (Some(link), Some(h)) => link.shard == topo.shards[h].id,
            _ => false,
        };
        if !on_link {
            return None;
        }
    } else if spec.has(flags::NO_MULTI) && t.link.is_none() {
        t.failed = true;
        return Some(Slot::error("ERR Command not allowed inside a transaction"));
    }
    if let (Some(link), Some(h)) = (&t.link, home) {
        if link.shard != topo.shards[h].id {
            if t.multi {
                t.failed = true;
            }
            return Some(Slot::error(CROSSSHARD));
        }
    }
    if t.multi {
        t.queued.push((Bytes::copy_from_slice(raw), keys.clone()));
    }
    t.keys.extend(keys.iter().cloned());
    if t.link.is_none() {
        let Some(h) = home else {
            // Keyless, before any key chose the shard: replayed from `queued` once one does.
            return Some(Slot::reply(&Reply::Status("QUEUED"), proto));
        };
        let link = match Dedicated::open(router, &topo.shards[h], who) {
            Ok(l) => l,
            Err(text) => {
                s.txn = None;
                return Some(Slot::error(&text));
            }
        };
        let timeout = router.config.request_timeout;
        if t.multi {
            link.send_quiet(Bytes::from_static(MULTI), vec![], timeout, None);
            let replay = t.queued.len() - 1;
            for (raw, keys) in &t.queued[..replay] {
                link.send_quiet(raw.clone(), keys.clone(), timeout, Some(t.moved.clone()));
            }
        }
        t.link = Some(link);
    }
    let link = t.link.as_ref()?;
    if t.multi {
        let timeout = Some(router.config.request_timeout);
        let rx = link.send_in_multi(raw.clone(), keys, timeout, Some(t.moved.clone()));
        return Some(Slot::Forward(rx));
    }
    Some(forward(link, raw, keys, router))
}

/// Times a transaction follows its keys to a new owner before it answers TRYAGAIN.
const MAX_RERUNS: usize = 3;

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
const DISCARD: &[u8] = b"*1\r\n$7\r\nDISCARD\r\n";

fn forward(link: &Dedicated, raw: &Bytes, keys: Vec<Bytes>, router: &Router) -> Slot {
    Slot::Forward(link.send(raw.clone(), keys, Some(router.config.request_timeout)))
}

/// The ring index of the shard owning every one of `keys` (`None`: no keys), or `Err` if they
/// are on several.
fn home_of(topo: &View, keys: &[Bytes], pool: usize) -> Result<Option<usize>, ()> {
    let mut home = None;
    for k in keys {
        let Some(owner) = topo.owner(k, pool) else {
            continue;
        };
        match home {
            None => home = Some(owner),
            Some(h) if h != owner => return Err(()),
            Some(_) => {}
        }
    }
    Ok(home)
}

fn exec(router: &Router, s: &mut Session) -> Slot {
    let Some(t) = s.txn.take() else {
        return Slot::error("ERR EXEC without MULTI");
    };
    if !t.multi {
        s.txn = Some(t);
        return Slot::error("ERR EXEC without MULTI");
    }
    if t.failed {
        if let Some(link) = &t.link {
            link.send_quiet(
                Bytes::from_static(DISCARD),
                vec![],
                router.config.request_timeout,
                None,
            );
        }
        return Slot::error(EXECABORT);
    }
    let Some(me) = router.me() else {
        return Slot::error("ERR the router is shutting down");
    };
    // The usual case, keys where they were queued: EXEC goes now, before the client's later
    // requests on other connections, as a server runs one client's commands in order.
    let topo = router.view();
    let here = match (&t.link, home_of(&topo, &t.keys, s.pool)) {
        (Some(link), Ok(Some(h))) => {
            topo.shards.get(h).is_some_and(|sh| sh.id == link.shard) && t.moved.load(Relaxed) == 0
        }
        _ => false,
    };
    let sent = match (&t.link, here) {
        (Some(link), true) => Some(link.send(
            Bytes::from_static(EXEC),
            vec![],
            Some(router.config.request_timeout),
        )),
        _ => None,
    };
    let (tx, rx) = oneshot::channel();
    tokio::spawn(run_exec(me, *t, s.who(), sent, tx));
    Slot::Forward(rx)
}

/// Runs EXEC where the keys live now (see the module's documentation).
async fn run_exec(
    router: Arc<Router>,
    mut t: Txn,
    who: Who,
    mut sent: Option<oneshot::Receiver<UpResult>>,
    mut tx: oneshot::Sender<UpResult>,
) {
    let timeout = router.config.request_timeout;
    let mut retried = 0;
    let reply = loop {
        let topo = router.view();
        if topo.shards.is_empty() {
            break error_bytes("ERR the ring has no shards");
        }
        let home = match home_of(&topo, &t.keys, who.pool) {
            Ok(h) => h.or_else(|| topo.owner(b"", who.pool)).unwrap_or(0),
            Err(()) => break error_bytes(EXECABORT),
        };
        let Some(shard) = topo.shards.get(home) else {
            break error_bytes("ERR the ring has no shards");
        };
        // EXEC already sent by the request path, on the link, in the client's order.
        let sent_now = sent.take();
        let reuse = sent_now.is_some();
        let link = match t.link.take() {
            Some(l) if reuse || (l.shard == shard.id && t.moved.load(Relaxed) == 0) => l,
            old => {
                if old.is_some() && t.watching {
                    // The watched keys moved: the WATCH on the old node no longer guards them.
                    break nil_array(who.proto);
                }
                let l = match Dedicated::open(&router, shard, who) {
                    Ok(l) => l,
                    Err(text) => break error_bytes(&text),
                };
                t.moved = Arc::new(AtomicU64::new(0));
                l.send_quiet(Bytes::from_static(MULTI), vec![], timeout, None);
                for (raw, keys) in &t.queued {
                    l.send_quiet(raw.clone(), keys.clone(), timeout, Some(t.moved.clone()));
                }
                l
            }
        };
        let rx = match sent_now {
            Some(rx) => rx,
            None => link.send(Bytes::from_static(EXEC), vec![], Some(timeout)),
        };
        let result = tokio::select! {
            r = rx => r,
            _ = tx.closed() => return,
        };
        let bytes = match result {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => break error_bytes(&e.reply_text()),
            Err(_) => break error_bytes("ERR the shard connection closed before replying"),
        };
        // A queued command refused (the node then aborts the EXEC) or the EXEC itself: the
        // node no longer owns the keys, and nothing ran.
        let refused = match t.moved.load(Relaxed) {
            0 => wrongshard(&bytes),
            v if v & SPLIT_FENCED != 0 => Some((0, format!("split:{}", v & !SPLIT_FENCED))),
            epoch => Some((epoch, shard.id.clone())),
        };
        let Some((epoch, owner)) = refused else {
            break bytes;
        };
        let Some((pool, mine)) = pool_at(&router, &topo, home) else {
            break error_bytes("ERR no such pool");
        };
        if retried >= MAX_RERUNS
            || t.watching
            || !catch_up_refusal(&router, &pool, epoch, &owner, mine).await
        {
            break tryagain(epoch, &owner, mine);
        }
        retried += 1;
    };
    let _ = tx.send(Ok(reply));
}

fn nil_array(proto: Protocol) -> Bytes {
    let mut out = bytes::BytesMut::new();
    Reply::NilArray.encode(proto, &mut out);
    out.freeze()
}

/// Whether the client holds a transaction's connection (it must not park meanwhile).
pub fn holds_link(s: &Session) -> bool {
    s.txn.as_ref().is_some_and(|t| t.link.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_constants_are_resp() {
        for raw in [MULTI, EXEC, DISCARD] {
            let mut buf = bytes::BytesMut::from(raw);
            let mut args = Vec::new();
            let mut d = ringcache_protocol::RequestDecoder::new(Default::default(), true);
            assert!(matches!(d.decode_into(&mut buf, &mut args), Ok(Some(_))));
            assert_eq!(args.len(), 1);
            assert!(buf.is_empty());
        }
    }
}
