//! The topology engine: the ownership check against the ring this node knows (kept in
//! `crate::state::topology`, set by `cmd/cluster.rs`), and key migration between nodes.
//!
//! The router pushes every new ring with `TOPOLOGY SET <epoch> <my-id> <vnodes> <id> <weight>
//! ...`; an older epoch is refused, so a stale router cannot roll a node back. Once a node has a
//! ring and knows its shard id, a command on a key it does not own answers
//! `-WRONGSHARD <epoch> <owner>`: a router on an older epoch refreshes and retries.
//!
//! While a membership change moves keys, the router pushes its ring with `TOPOLOGY SETMOVING`,
//! which adds an opaque record of the change (the router's format). Nodes keep it until
//! `TOPOLOGY DONE <epoch>` or a newer plain `SET`, and `TOPOLOGY GET` returns it: a router started
//! mid-move learns from the nodes what was moving and resumes it, instead of routing by a ring
//! whose keys are still partly at their old owners. `TOPOLOGY SETMAP` adds the router's map of
//! the ring (every shard's addresses), kept with the ring and returned by `TOPOLOGY GET`: another
//! router adopts a newer ring from it. `TOPOLOGY LEASE` grants one router at a time the right to
//! change the ring (see `crate::state::topology`). `TOPOLOGY FENCE` adds the split fences: a
//! route's keys (by prefix) in a hash range that a split gives another pool, refused whatever
//! the ring says (`-WRONGSHARD <epoch> split:<version>`).
//!
//! Migration is copy-then-switch, a key at a time atomically: the source claims the keys (one
//! move of a key at a time), reads them under their stripe locks, sends their values and absolute
//! deadlines to the target (the same state-setting commands replication uses), waits for the
//! target's acknowledgement, then, under the stripe locks again, deletes its copies (sending a
//! key again first if it changed meanwhile). A key is therefore always in exactly one place for
//! readers going through the router. Moves run on the connection's IO thread as async tasks:
//! while one waits for its target, the thread serves its other connections.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_client::Client;
use ringcache_protocol::hash::key_hash;
use ringcache_protocol::resp::encode_request;
use ringcache_protocol::ring::Arc as RingArc;
use ringcache_protocol::table::{flags, CommandSpec};
use ringcache_protocol::wire::{Topology, WireCommand};
use ringcache_protocol::Reply;

use crate::dump::restore_request;
use crate::keyspace::{now_ms, Db, Expiry};
use crate::state::session::{Migration, Session};
use crate::state::Shared;

/// Bounds on a migration's waits for its target.
const MIGRATE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const MIGRATE_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys per round trip to the target: small enough that a move's work between two waits stays
/// short next to the requests it shares the IO thread with, and that a request moving one of
/// them seldom waits for the mover's claim.
const CHUNK: usize = 64;
/// Idle connections kept per target on each thread; moves running at once each take their own.
const MAX_IDLE_PER_TARGET: usize = 8;
/// Idle connections a warm-up (`MIGRATE-KEYS <target>` with no keys) makes sure of.
const WARM_IDLE: usize = 2;
/// How an error the target answered starts (the connection worked: no point retrying).
const REFUSED: &str = "target refused: ";

thread_local! {
    /// Idle connections to migration targets, by address. Per thread: an IO thread's runtime
    /// owns the sockets it opened.
    static TARGETS: RefCell<HashMap<String, Vec<Client>>> = RefCell::new(HashMap::new());
}

/// Answers `-WRONGSHARD <epoch> <owner>` for a key this node does not own under its ring.
pub fn check_owner(
    shared: &Shared,
    session: &Session,
    spec: &CommandSpec,
    args: &[Bytes],
) -> Option<Reply> {
    // The primary's stream and migrations carry keys as they were decided elsewhere.
    if session.from_primary || spec.first_key <= 0 || spec.has(flags::ADMIN) {
        return None;
    }
    refuse_unowned(shared, spec.key_positions(args.len()).map(|i| &args[i][..]))
}

/// `-WRONGSHARD <epoch> <owner>` for the first of `keys` another shard owns under this node's
/// ring, if any.
pub fn refuse_unowned<'k>(
    shared: &Shared,
    keys: impl IntoIterator<Item = &'k [u8]>,
) -> Option<Reply> {
    let topo = &shared.topology;
    let guard = topo.ring();
    // A node no ring reached yet (empty, about to join) refuses nothing: the router knows.
    let ring = guard.as_ref()?;
    let fences = topo.any_fences();
    // One outside its ring (it left) owns nothing: a router that has not yet followed the leave
    // must not write a key here after it moved away.
    let me = topo.my_index();
    for key in keys {
        let hash = key_hash(key);
        // A route's split gives these keys to another pool, whatever this pool's ring says.
        if let Some(f) = fences
            .as_ref()
            .filter(|f| f.fences.iter().any(|f| f.refuses(key, hash)))
        {
            return Some(Reply::Error(format!(
                "WRONGSHARD {} split:{}",
                ring.epoch(),
                f.version
            )));
        }
        let owner = ring.owner_index(hash)?;
        if Some(owner as u64) != me {
            return Some(Reply::Error(format!(
                "WRONGSHARD {} {}",
                ring.epoch(),
                ring.shards()[owner].id
            )));
        }
    }
    None
}

/// Runs a move: MIGRATE-KEYS answers the number of keys moved, MIGRATE-ARC
/// `[moved, bytes, more]`.
pub async fn run(shared: &Shared, migration: Migration) -> Reply {
    match migration {
        Migration::Keys { target, keys } => {
            let moved = if keys.is_empty() {
                // No key: the router's warm-up as a change starts.
                warm(shared, &target).await.map(|()| 0)
            } else {
                migrate(shared, &target, &keys).await.map(|(n, _)| n)
            };
            match moved {
                Ok(n) => Reply::Int(n as i64),
                Err(e) => Reply::Error(format!("ERR migration to {target} failed: {e}")),
            }
        }
        Migration::Arc {
            target,
            arc,
            max,
            prefix,
        } => {
            migrate_arc(
                shared,
                &target,
                arc,
                max,
                prefix.as_deref().unwrap_or_default(),
            )
            .await
        }
        Migration::Transfer(t) => crate::cmd::migrate::run(shared, *t).await,
    }
}

/// Moves up to `max` keys of `arc` starting with `prefix`, [`CHUNK`] per round trip, and answers
/// `[moved, bytes, more]` (`more`: the arc still holds such keys).
async fn migrate_arc(
    shared: &Shared,
    target: &str,
    arc: RingArc,
    max: usize,
    prefix: &[u8],
) -> Reply {
    let (mut moved, mut bytes) = (0, 0);
    let mut keys = Vec::new();
    let mut more = false;
    let now = now_ms();
    'buckets: for b in arc.buckets() {
        // Locked only while its keys are listed: the guard never lives across an await.
        let listed: Vec<Bytes> = {
            let g = shared.keyspace.lock_bucket(b);
            g.iter()
                .filter(|e| {
                    !e.is_expired(now)
                        && e.key().starts_with(prefix)
                        && arc.contains(key_hash(e.key()))
                })
                .map(|e| Bytes::copy_from_slice(e.key()))
                .collect()
        };
        for k in listed {
            if keys.len() == max {
                more = true;
                break 'buckets;
            }
            keys.push(k);
        }
    }
    for chunk in keys.chunks(CHUNK) {
        match migrate(shared, target, chunk).await {
            Ok((n, b)) => (moved, bytes) = (moved + n, bytes + b),
            // Chunks already moved stay moved: report them, the caller's next call meets the
            // error.
            Err(_) if moved > 0 => {
                more = true;
                break;
            }
            Err(e) => return Reply::Error(format!("ERR migration to {target} failed: {e}")),
        }
    }
    Reply::Array(vec![
        Reply::Int(moved as i64),
        Reply::Int(bytes as i64),
        Reply::Int(i64::from(more)),
    ])
}

/// Moves `keys` (those present) to `target`: returns keys and bytes moved. Copy, then switch:
/// the copy is read and the local delete made under the keys' stripe locks, but the round trip
/// to the target runs without them (writers of other keys on those stripes never wait on the
/// network), holding only a claim on these keys, so two moves of one key never overlap. The
/// switch checks, under the locks, that every key is still what was sent; one written or deleted
/// here meanwhile (rare: the owner check refuses such writes) is sent again first, so no write
/// is lost between copy and delete.
async fn migrate(shared: &Shared, target: &str, keys: &[Bytes]) -> Result<(usize, usize), String> {
    if keys.is_empty() {
        return Ok((0, 0));
    }
    let ks = &shared.keyspace;
    let _claim = shared.topology.claim(keys).await;
    let mut out = BytesMut::new();
    // Each key found and where its command is in `out`.
    let mut moving: Vec<(&Bytes, Range<usize>)> = Vec::new();
    {
        let mut db = Db::for_keys(ks, keys, now_ms(), Expiry::Delete);
        for k in keys {
            if let Some(e) = db.peek(k) {
                let at = out.len();
                restore_request(&mut out, e);
                moving.push((k, at..out.len()));
            }
        }
        finish_quietly(shared, db);
    }
    if moving.is_empty() {
        return Ok((0, 0));
    }
    let bytes = out.len();
    if let Err(e) = send_and_confirm(shared, target, &out, moving.len()).await {
        return Err(undo(shared, target, &moving, e).await);
    }
    loop {
        // The locks are taken and released in this block: none is held across the network.
        let resend = {
            let mut db = Db::for_keys(ks, moving.iter().map(|(k, _)| k), now_ms(), Expiry::Delete);
            let (mut again, mut again_replies, mut now) = (BytesMut::new(), 0, BytesMut::new());
            for (k, sent) in &mut moving {
                now.clear();
                match db.peek(k) {
                    Some(e) => {
                        restore_request(&mut now, e);
                        if now[..] != out[sent.clone()] {
                            // Compared next time against what it is sent as now.
                            *sent = out.len()..out.len() + now.len();
                            out.extend_from_slice(&now);
                            again.extend_from_slice(&now);
                            again_replies += 1;
                        }
                    }
                    None if sent.end > sent.start => {
                        encode_request(&mut again, [&b"DEL"[..], &k[..]]);
                        again_replies += 1;
                        *sent = 0..0;
                    }
                    None => {}
                }
            }
            if again_replies == 0 {
                for (k, _) in &moving {
                    if db.remove(k).is_some() {
                        db.propagate_as(vec![Bytes::from_static(b"DEL"), (*k).clone()]);
                    }
                }
            }
            finish_quietly(shared, db);
            (again_replies > 0).then_some((again, again_replies))
        };
        let Some((again, again_replies)) = resend else {
            break;
        };
        // Written here meanwhile: send it again, unlocked, and check again.
        if let Err(e) = send_and_confirm(shared, target, &again, again_replies).await {
            return Err(undo(shared, target, &moving, e).await);
        }
    }
    // Keys deleted here meanwhile were not moved.
    let moved = moving
        .iter()
        .filter(|(_, sent)| sent.end > sent.start)
        .count();
    let topo = &shared.topology;
    topo.keys_migrated.fetch_add(moved as u64, Relaxed);
    topo.bytes_migrated.fetch_add(bytes as u64, Relaxed);
    Ok((moved, bytes))
}

/// Ends a read-only view: only keys found expired on the way are propagated (as deletes).
fn finish_quietly(shared: &Shared, db: Db<'_>) {
    let _ = crate::replication::release(shared, db, None);
}

/// Opens connections to `target` on this thread until [`WARM_IDLE`] are idle, so the first
/// moves of a change (a request waiting on each) do not pay for connecting.
async fn warm(shared: &Shared, target: &str) -> Result<(), String> {
    let idle = || TARGETS.with(|t| t.borrow().get(target).map_or(0, Vec::len));
    for _ in idle()..WARM_IDLE {
        park(target, connect(shared, target).await?, WARM_IDLE);
    }
    Ok(())
}

/// After a failed move: the target may hold some of the keys, so remove those copies (best
/// effort) that they never resurface there; the keys stay here, where they are authoritative.
async fn undo(
    shared: &Shared,
    target: &str,
    moving: &[(&Bytes, Range<usize>)],
    e: String,
) -> String {
    let mut del = BytesMut::new();
    let mut args: Vec<&[u8]> = vec![b"DEL"];
    args.extend(moving.iter().map(|(k, _)| &k[..]));
    encode_request(&mut del, args.iter());
    let _ = send_and_confirm(shared, target, &del, 1).await;
    e
}

/// Writes `payload` to the target and reads `replies` replies, failing on any error reply.
async fn send_and_confirm(
    shared: &Shared,
    target: &str,
    payload: &[u8],
    replies: usize,
) -> Result<(), String> {
    let idle = TARGETS.with(|t| t.borrow_mut().get_mut(target).and_then(Vec::pop));
    let reused = idle.is_some();
    let result = match idle {
        Some(c) => exchange(c, payload, replies).await,
        None => match connect(shared, target).await {
            Ok(c) => exchange(c, payload, replies).await,
            Err(e) => Err(e),
        },
    };
    let result = match result {
        Err(e) if reused && !e.starts_with(REFUSED) => {
            // An idle connection may have outlived its target (restarted): drop them all and
            // try once on a new one. Resending is harmless: the commands set absolute state.
            TARGETS.with(|t| t.borrow_mut().remove(target));
            match connect(shared, target).await {
                Ok(c) => exchange(c, payload, replies).await,
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    park(target, result?, MAX_IDLE_PER_TARGET);
    Ok(())
}

/// Keeps `conn` as an idle connection to `target` of this thread, unless `max` are idle already.
fn park(target: &str, mut conn: Client, max: usize) {
    TARGETS.with(|t| {
        let mut t = t.borrow_mut();
        let idle = t.entry(target.to_string()).or_default();
        if idle.len() < max {
            // Kept for the next move, without a read buffer meanwhile.
            conn.release_idle();
            idle.push(conn);
        }
    });
}

/// Writes `payload` on `conn` and reads `replies` replies; gives the connection back if it is
/// still in step (a broken or confused one is dropped). An error reply fails the exchange.
async fn exchange(mut conn: Client, payload: &[u8], replies: usize) -> Result<Client, String> {
    let got = conn
        .exchange(payload, replies, MIGRATE_IO_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    match got.iter().find_map(|r| r.error_text()) {
        Some(e) => Err(format!("{REFUSED}{e}")),
        None => Ok(conn),
    }
}

async fn connect(shared: &Shared, target: &str) -> Result<Client, String> {
    let tls = shared.config().tls.for_cluster().cloned();
    let conn = Client::connect_with(target, MIGRATE_CONNECT_TIMEOUT, tls.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    let mut hello = BytesMut::new();
    let mut replies = 1;
    if let Some(auth) = shared.config().peer_link().auth {
        encode_request(&mut hello, auth.auth_args());
        replies += 1;
    }
    Topology::Import.encode(&mut hello);
    exchange(conn, &hello, replies).await
}
