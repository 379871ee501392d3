//! The cluster topology as this node knows it, and key migration between nodes.
//!
//! The router pushes every new ring with `TOPOLOGY SET <epoch> <my-id> <vnodes> <id> <weight>
//! ...`; an older epoch is refused, so a stale router cannot roll a node back. Once a node has a
//! ring and knows its shard id, a command on a key it does not own answers
//! `-WRONGSHARD <epoch> <owner>`: a router on an older epoch refreshes and retries.
//!
//! Migration is copy-then-switch, one key at a time atomically: the source locks the key's stripe,
//! sends the key's value and absolute deadline to the target (the same state-setting commands
//! replication uses), waits for the target's acknowledgement, then deletes its copy. A key is
//! therefore always in exactly one place for readers going through the router.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use ringcache_protocol::codec::ClientCodec;
use ringcache_protocol::hash::key_hash;
use ringcache_protocol::resp::encode_request;
use ringcache_protocol::ring::{Arc as RingArc, Ring, ShardSpec};
use ringcache_protocol::table::{flags, CommandSpec};
use ringcache_protocol::{Protocol, Reply};
use tokio_util::codec::Decoder;

use crate::cmd::{int_arg, Ctx};
use crate::server::Shared;
use crate::store::{lock, Entry};

/// Migration I/O is blocking (it runs inside one command); these bound how long it may stall.
const MIGRATE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const MIGRATE_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Most keys one MIGRATE-ARC call moves, whatever the caller asks (bounds one command's time).
const MAX_BATCH: usize = 10_000;

/// What this node knows of the ring.
pub struct NodeTopology {
    shard_id: Mutex<Option<String>>,
    ring: ArcSwapOption<Ring>,
    /// This node's index in `ring`'s shards, when it is one of them.
    me: AtomicU64,
    /// Connections to migration targets, by address.
    targets: Mutex<HashMap<String, TcpStream>>,
    pub keys_migrated: AtomicU64,
    pub bytes_migrated: AtomicU64,
}

const NOT_A_MEMBER: u64 = u64::MAX;

impl NodeTopology {
    pub fn new(shard_id: Option<String>) -> Self {
        NodeTopology {
            shard_id: Mutex::new(shard_id),
            ring: ArcSwapOption::empty(),
            me: AtomicU64::new(NOT_A_MEMBER),
            targets: Mutex::new(HashMap::new()),
            keys_migrated: AtomicU64::new(0),
            bytes_migrated: AtomicU64::new(0),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.ring.load().as_ref().map(|r| r.epoch()).unwrap_or(0)
    }

    pub fn info(&self, out: &mut String) {
        let _ = write!(
            out,
            "ringcache_shard:{}\r\nringcache_epoch:{}\r\nringcache_keys_migrated:{}\r\nringcache_bytes_migrated:{}\r\n",
            lock(&self.shard_id).as_deref().unwrap_or(""),
            self.epoch(),
            self.keys_migrated.load(Relaxed),
            self.bytes_migrated.load(Relaxed),
        );
    }

    /// Installs `ring` if it is newer than the current one (equal: accepted, idempotent).
    fn set(&self, ring: Ring, shard_id: String) -> Result<(), u64> {
        let current = self.epoch();
        if ring.epoch() < current {
            return Err(current);
        }
        let me = ring
            .shard_index(&shard_id)
            .map(|i| i as u64)
            .unwrap_or(NOT_A_MEMBER);
        *lock(&self.shard_id) = Some(shard_id);
        self.me.store(me, Relaxed);
        self.ring.store(Some(Arc::new(ring)));
        Ok(())
    }
}

/// Answers `-WRONGSHARD <epoch> <owner>` for a key this node does not own under its ring.
pub fn check_owner(ctx: &Ctx, spec: &CommandSpec, args: &[Bytes]) -> Option<Reply> {
    // The primary's stream and migrations carry keys as they were decided elsewhere.
    if ctx.session.from_primary || spec.first_key <= 0 || spec.has(flags::ADMIN) {
        return None;
    }
    let topo = &ctx.shared.topology;
    let guard = topo.ring.load();
    let ring = guard.as_ref()?;
    let me = topo.me.load(Relaxed);
    if me == NOT_A_MEMBER {
        // A node outside the ring (joining, or removed) owns nothing yet; the router knows.
        return None;
    }
    for i in spec.key_positions(args.len()) {
        let owner = ring.owner_index(key_hash(&args[i]))?;
        if owner as u64 != me {
            return Some(Reply::Error(format!(
                "WRONGSHARD {} {}",
                ring.epoch(),
                ring.shards()[owner].id
            )));
        }
    }
    None
}

/// TOPOLOGY, MIGRATE-KEYS, MIGRATE-ARC.
pub fn command(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    match spec.name {
        "topology" => topology(ctx, a),
        "migrate-keys" => {
            let target = String::from_utf8_lossy(&a[1]).into_owned();
            match migrate(ctx.shared, &target, &a[2..]) {
                Ok((n, _)) => Reply::Int(n as i64),
                Err(e) => Reply::Error(format!("ERR migration to {target} failed: {e}")),
            }
        }
        "migrate-arc" => migrate_arc(ctx, a),
        _ => Reply::error("ERR unknown topology command"),
    }
}

fn topology(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let topo = &ctx.shared.topology;
    if a[1].eq_ignore_ascii_case(b"import") {
        // A source node's migration connection: its keys were placed by the router's new ring,
        // which this node may not have yet; applied like the primary's stream.
        ctx.session.from_primary = true;
        return Reply::OK;
    }
    if a[1].eq_ignore_ascii_case(b"get") {
        return Reply::Array(vec![
            Reply::Int(topo.epoch() as i64),
            Reply::bulk_str(lock(&topo.shard_id).as_deref().unwrap_or("")),
        ]);
    }
    if !a[1].eq_ignore_ascii_case(b"set") || a.len() < 5 || a.len().is_multiple_of(2) {
        return Reply::error(
            "ERR usage: TOPOLOGY GET | TOPOLOGY IMPORT | TOPOLOGY SET <epoch> <my-id> <vnodes> [<id> <weight> ...]",
        );
    }
    let (Ok(epoch), Ok(vnodes)) = (int_arg(&a[2]), int_arg(&a[4])) else {
        return Reply::error("ERR epoch and vnodes must be integers");
    };
    let mut shards = Vec::new();
    for pair in a[5..].chunks(2) {
        let Ok(w) = int_arg(&pair[1]) else {
            return Reply::error("ERR weights must be integers");
        };
        shards.push(ShardSpec::new(
            String::from_utf8_lossy(&pair[0]).into_owned(),
            u32::try_from(w).unwrap_or(0),
        ));
    }
    let ring = match Ring::new(
        u64::try_from(epoch).unwrap_or(0),
        u32::try_from(vnodes).unwrap_or(0),
        shards,
    ) {
        Ok(r) => r,
        Err(e) => return Reply::Error(format!("ERR invalid ring: {e}")),
    };
    let me = String::from_utf8_lossy(&a[3]).into_owned();
    match topo.set(ring, me) {
        Ok(()) => Reply::OK,
        Err(current) => Reply::Error(format!(
            "STALEEPOCH this node is at epoch {current}, newer than {epoch}"
        )),
    }
}

fn migrate_arc(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let target = String::from_utf8_lossy(&a[1]).into_owned();
    let parse = |b: &Bytes| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let (Some(start), Some(end), Some(max)) = (parse(&a[2]), parse(&a[3]), parse(&a[4])) else {
        return Reply::error("ERR start, end and max-keys must be unsigned integers");
    };
    let arc = RingArc { start, end };
    let max = (max as usize).clamp(1, MAX_BATCH);
    let store = &ctx.shared.store;
    let mut keys = Vec::new();
    let mut more = false;
    'buckets: for b in arc.buckets() {
        for k in store.bucket_keys(b) {
            if arc.contains(key_hash(&k)) {
                if keys.len() == max {
                    more = true;
                    break 'buckets;
                }
                keys.push(k);
            }
        }
    }
    match migrate(ctx.shared, &target, &keys) {
        Ok((n, bytes)) => Reply::Array(vec![
            Reply::Int(n as i64),
            Reply::Int(bytes as i64),
            Reply::Int(i64::from(more)),
        ]),
        Err(e) => Reply::Error(format!("ERR migration to {target} failed: {e}")),
    }
}

/// Moves `keys` (those present) to `target`: returns keys and bytes moved. Holds the keys' stripe
/// locks from the read until the local delete, so no write can slip in between.
fn migrate(shared: &Shared, target: &str, keys: &[Bytes]) -> Result<(usize, usize), String> {
    if keys.is_empty() {
        return Ok((0, 0));
    }
    let store = &shared.store;
    let _locks = store.lock_keys(keys);
    let mut out = BytesMut::new();
    let mut replies = 0;
    let mut moving: Vec<(&Bytes, Entry)> = Vec::new();
    for k in keys {
        if let Some(e) = store.get(k) {
            replies += crate::replication::restore_commands(&mut out, k, &e);
            moving.push((k, e));
        }
    }
    if moving.is_empty() {
        return Ok((0, 0));
    }
    let bytes = out.len();
    if let Err(e) = send_and_confirm(shared, target, &out, replies) {
        // The target may hold some of the batch: remove those copies (best effort) so they can
        // never resurface there; the keys stay here, where they still are authoritative.
        let mut del = BytesMut::new();
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(moving.iter().map(|(k, _)| &k[..]));
        encode_request(&mut del, args.iter());
        let _ = send_and_confirm(shared, target, &del, 1);
        return Err(e);
    }
    for (k, _) in &moving {
        store.remove(k);
        crate::replication::propagate_del(shared, k);
    }
    let topo = &shared.topology;
    topo.keys_migrated.fetch_add(moving.len() as u64, Relaxed);
    topo.bytes_migrated.fetch_add(bytes as u64, Relaxed);
    Ok((moving.len(), bytes))
}

/// Writes `payload` to the target and reads `replies` replies, failing on any error reply.
fn send_and_confirm(
    shared: &Shared,
    target: &str,
    payload: &[u8],
    replies: usize,
) -> Result<(), String> {
    let mut targets = lock(&shared.topology.targets);
    let result = (|| {
        let conn = match targets.get_mut(target) {
            Some(c) => c,
            None => {
                let c = connect(shared, target)?;
                targets.entry(target.to_string()).or_insert(c)
            }
        };
        conn.write_all(payload).map_err(|e| e.to_string())?;
        read_replies(conn, replies)
    })();
    if result.is_err() {
        // A broken or confused connection is not reused.
        targets.remove(target);
    }
    result
}

fn connect(shared: &Shared, target: &str) -> Result<TcpStream, String> {
    use std::net::ToSocketAddrs;
    let addr = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or("cannot resolve")?;
    let mut c =
        TcpStream::connect_timeout(&addr, MIGRATE_CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(MIGRATE_IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    c.set_write_timeout(Some(MIGRATE_IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let _ = c.set_nodelay(true);
    let mut hello = BytesMut::new();
    let mut replies = 1;
    if let Some(pw) = shared.config().requirepass.clone() {
        encode_request(&mut hello, [&b"AUTH"[..], pw.as_bytes()]);
        replies += 1;
    }
    encode_request(&mut hello, [&b"TOPOLOGY"[..], b"IMPORT"]);
    c.write_all(&hello).map_err(|e| e.to_string())?;
    read_replies(&mut c, replies)?;
    Ok(c)
}

fn read_replies(conn: &mut TcpStream, mut n: usize) -> Result<(), String> {
    let mut codec = ClientCodec::new(Protocol::Resp2);
    let mut buf = BytesMut::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    let mut first_error = None;
    while n > 0 {
        match codec.decode(&mut buf) {
            Ok(Some(r)) => {
                n -= 1;
                if let (None, Some(e)) = (&first_error, r.error_text()) {
                    first_error = Some(e.to_string());
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        let got = conn.read(&mut chunk).map_err(|e| e.to_string())?;
        if got == 0 {
            return Err("target closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..got]);
    }
    match first_error {
        Some(e) => Err(format!("target refused: {e}")),
        None => Ok(()),
    }
}
