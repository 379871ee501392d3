//! Blocking commands through the router (BLPOP, BRPOP, BLMOVE, BLMPOP, BZPOPMIN, BZMPOP, …).
//!
//! Each waits on a connection of its client's own (`crate::dedicated`): on a multiplexed
//! connection it would hold up every client behind it. The connection is released when the
//! command is answered or the client goes away (the node then forgets the blocked client). If a
//! membership change gives the key to another shard while the client waits, the node answers
//! `-WRONGSHARD`; the router follows the change and sends the command again to the key's new
//! owner with what is left of its timeout, so the client sees one answer, as from one server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_protocol::table::CommandSpec;
use tokio::sync::oneshot;

use crate::clients::{lock, Who};
use crate::dedicated::Dedicated;
use crate::merge::{error_bytes, Slot};
use crate::rebalance::divert::{catch_up_refusal, pool_at, tryagain, wrongshard};
use crate::route::CROSSSHARD;
use crate::state::Router;
use crate::upstream::{Dialer, UpResult};

/// Moves of one waiting command's key the router follows before it answers TRYAGAIN.
const MAX_FOLLOWS: usize = 8;

/// Starts `args` (a blocking command, its keys on one shard) on a connection of its own.
pub fn run(router: &Router, who: Who, spec: &'static CommandSpec, args: &[Bytes]) -> Slot {
    let Some(me) = router.me() else {
        return Slot::error("ERR the router is shutting down");
    };
    // Copies: the command may wait far longer than the read buffer these slices share lives.
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(wait(me, who, spec, args, tx));
    Slot::Blocked(rx)
}

/// Where the command's timeout is: BLMPOP and BZMPOP put it first, the others last.
fn timeout_at(spec: &CommandSpec, args: &[Bytes]) -> usize {
    match spec.name {
        "blmpop" | "bzmpop" => 1,
        _ => args.len() - 1,
    }
}

/// The timeout in seconds as the client gave it (`None`: not a number; the node says so).
fn timeout_secs(arg: &[u8]) -> Option<f64> {
    std::str::from_utf8(arg)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite())
}

fn encode(args: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    ringcache_protocol::resp::encode_request(&mut out, args);
    out.freeze()
}

async fn wait(
    router: Arc<Router>,
    who: Who,
    spec: &'static CommandSpec,
    mut args: Vec<Bytes>,
    mut tx: oneshot::Sender<UpResult>,
) {
    let at = timeout_at(spec, &args);
    let started = Instant::now();
    let deadline = timeout_secs(&args[at])
        .filter(|t| *t > 0.0)
        .map(|t| started + Duration::from_secs_f64(t.min(1e9)));
    let mut follows = 0;
    let reply = loop {
        let topo = router.view();
        let keys: Vec<Bytes> = spec.keys(&args).map(|i| args[i].clone()).collect();
        let mut owners = keys.iter().filter_map(|k| topo.owner(k, who.pool));
        let Some(home) = owners.next() else {
            break error_bytes("ERR the ring has no shards");
        };
        if owners.any(|o| o != home) {
            break error_bytes(CROSSSHARD);
        }
        let Some(shard) = topo.shards.get(home) else {
            break error_bytes("ERR the ring has no shards");
        };
        let link = match Dedicated::open(&router, shard, who) {
            Ok(l) => l,
            Err(text) => break error_bytes(&text),
        };
        let _blocked = Registered::new(&router, who.id, &link);
        let rx = link.send(encode(&args), keys, None);
        let result = tokio::select! {
            r = rx => r,
            // The client went away: dropping the link closes the node's blocked connection.
            _ = tx.closed() => return,
        };
        // A connection error is no `-WRONGSHARD`: it is the reply.
        let bytes = crate::merge::received(result);
        let Some((epoch, owner)) = wrongshard(&bytes) else {
            break bytes;
        };
        let Some((pool, mine)) = pool_at(&router, &topo, home) else {
            break error_bytes("ERR no such pool");
        };
        follows += 1;
        if follows > MAX_FOLLOWS || !catch_up_refusal(&router, &pool, epoch, &owner, mine).await {
            break tryagain(epoch, &owner, mine);
        }
        if let Some(d) = deadline {
            // What is left of the client's timeout; a spent one still asks once, without waiting
            // long, so the reply is the command's own timeout reply.
            let left = d.saturating_duration_since(Instant::now()).as_secs_f64();
            args[at] = Bytes::from(format!("{:.3}", left.max(0.001)));
        }
    };
    let _ = tx.send(Ok(reply));
}

/// The clients blocked through this router, by client id: where their command waits.
#[derive(Debug, Default)]
pub struct BlockedClients(Mutex<HashMap<u64, (Dialer, Arc<AtomicU64>)>>);

/// A client listed in [`BlockedClients`] while its command waits on `link`.
struct Registered<'a>(&'a Router, u64);

impl<'a> Registered<'a> {
    fn new(router: &'a Router, id: u64, link: &Dedicated) -> Registered<'a> {
        lock(&router.blocked.0).insert(id, (link.dialer().clone(), link.node_id.clone()));
        Registered(router, id)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.0.blocked.0).remove(&self.1);
    }
}

/// CLIENT UNBLOCK <id> [TIMEOUT|ERROR] for a client of this router: its node unblocks the
/// connection its command waits on. `:0` if the client is not blocked here.
pub fn client_unblock(router: &Router, who: Who, a: &[Bytes]) -> Slot {
    if a.len() < 3 || a.len() > 4 {
        return Slot::reply(&crate::local::arity_error("client|unblock"), who.proto);
    }
    let Some(id) = ringcache_protocol::num::parse_i64(&a[2]).and_then(|n| u64::try_from(n).ok())
    else {
        return Slot::error("ERR value is not an integer or out of range");
    };
    if let Some(mode) = a.get(3) {
        if !mode.eq_ignore_ascii_case(b"timeout") && !mode.eq_ignore_ascii_case(b"error") {
            return Slot::error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
        }
    }
    let found = lock(&router.blocked.0).get(&id).cloned();
    let Some((dialer, node_id)) = found else {
        return Slot::reply(&ringcache_protocol::Reply::Int(0), who.proto);
    };
    let node_id = node_id.load(Relaxed).to_string();
    let mut args: Vec<&[u8]> = vec![b"CLIENT", b"UNBLOCK", node_id.as_bytes()];
    if let Some(mode) = a.get(3) {
        args.push(mode);
    }
    let mut raw = BytesMut::new();
    ringcache_protocol::resp::encode_request(&mut raw, args);
    let raw = raw.freeze();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(dialer.call_once(raw).await);
    });
    Slot::Forward(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_protocol::table::lookup;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::from(w.to_string())).collect()
    }

    #[test]
    fn the_timeout_is_found_where_each_command_keeps_it() {
        let a = args(&["BLPOP", "a", "b", "1.5"]);
        let spec = lookup(b"blpop").expect("blpop");
        assert_eq!(timeout_at(spec, &a), 3);
        let a = args(&["BLMPOP", "2", "1", "a", "LEFT"]);
        let spec = lookup(b"blmpop").expect("blmpop");
        assert_eq!(timeout_at(spec, &a), 1);
        assert_eq!(timeout_secs(b"1.5"), Some(1.5));
        assert_eq!(timeout_secs(b"x"), None);
        assert_eq!(timeout_secs(b"inf"), None);
    }
}
