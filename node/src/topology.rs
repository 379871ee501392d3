//! The cluster topology as this node knows it, and key migration between nodes.
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
//! whose keys are still partly at their old owners.
//!
//! Migration is copy-then-switch, a key at a time atomically: the source claims the keys (one
//! move of a key at a time), reads them under their stripe locks, sends their values and absolute
//! deadlines to the target (the same state-setting commands replication uses), waits for the
//! target's acknowledgement, then, under the stripe locks again, deletes its copies (sending a
//! key again first if it changed meanwhile). A key is therefore always in exactly one place for
//! readers going through the router. Moves run on the connection's IO thread as async tasks:
//! while one waits for its target, the thread serves its other connections.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::ops::Range;
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::codec::Decoder;

use crate::cmd::{int_arg, Ctx};
use crate::replication::restore_commands;
use crate::server::Shared;
use crate::store::lock;

/// Bounds on a migration's waits for its target.
const MIGRATE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const MIGRATE_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Most keys one MIGRATE-ARC call moves, whatever the caller asks (bounds one command's time).
const MAX_BATCH: usize = 10_000;
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
    static TARGETS: RefCell<HashMap<String, Vec<TcpStream>>> = RefCell::new(HashMap::new());
}

/// What this node knows of the ring.
pub struct NodeTopology {
    shard_id: Mutex<Option<String>>,
    ring: ArcSwapOption<Ring>,
    /// This node's index in `ring`'s shards, when it is one of them.
    me: AtomicU64,
    /// The router's record of the change moving keys at `ring`'s epoch (see the module docs).
    change: Mutex<Option<Bytes>>,
    /// Keys being moved now, and a signal when some are released (see [`NodeTopology::claim`]).
    moving: Mutex<HashSet<Bytes>>,
    released: Notify,
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
            change: Mutex::new(None),
            moving: Mutex::new(HashSet::new()),
            released: Notify::new(),
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

    /// Claims `keys` for one move, waiting while another move holds any of them (all at once:
    /// a claim never waits holding part of one). Released when the returned guard drops.
    async fn claim(&self, keys: &[Bytes]) -> Claim<'_> {
        loop {
            // Created before the check, so a release between the check and the wait is seen.
            let released = self.released.notified();
            {
                let mut moving = lock(&self.moving);
                if !keys.iter().any(|k| moving.contains(k)) {
                    let keys = keys
                        .iter()
                        .filter(|k| moving.insert((*k).clone()))
                        .cloned()
                        .collect();
                    return Claim { topo: self, keys };
                }
            }
            released.await;
        }
    }

    /// Installs `ring` if it is newer than the current one (equal: accepted, idempotent), with
    /// the record of a change in progress (`None` keeps the record only at an equal epoch).
    fn set(&self, ring: Ring, shard_id: String, change: Option<Bytes>) -> Result<(), u64> {
        // Under the record's lock, so two pushes cannot pair one's ring with the other's record.
        let mut record = lock(&self.change);
        let current = self.epoch();
        if ring.epoch() < current {
            return Err(current);
        }
        if change.is_some() || ring.epoch() > current {
            *record = change;
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

    /// Forgets the change record once the change that ends at `epoch` is done (a node already
    /// on a newer epoch keeps the newer change's record).
    fn done(&self, epoch: u64) {
        let mut record = lock(&self.change);
        if self.epoch() <= epoch {
            *record = None;
        }
    }
}

/// Keys claimed by one move (see [`NodeTopology::claim`]).
struct Claim<'a> {
    topo: &'a NodeTopology,
    keys: Vec<Bytes>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut moving = lock(&self.topo.moving);
        for k in &self.keys {
            moving.remove(k);
        }
        drop(moving);
        self.topo.released.notify_waiters();
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

/// A move a command asked for: run by the connection after the command's checks
/// (`server::connection` awaits [`run`]), so the IO thread serves others while it waits.
#[derive(Debug)]
pub enum Migration {
    /// MIGRATE-KEYS: these keys.
    Keys { target: String, keys: Vec<Bytes> },
    /// MIGRATE-ARC: up to `max` keys of the arc.
    Arc {
        target: String,
        arc: RingArc,
        max: usize,
    },
}

impl Migration {
    /// The background mover's batches, as opposed to a request waiting on its keys.
    pub fn is_bulk(&self) -> bool {
        matches!(self, Migration::Arc { .. })
    }
}

/// TOPOLOGY, MIGRATE-KEYS, MIGRATE-ARC.
pub fn command(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    let migration = match spec.name {
        "topology" => return topology(ctx, a),
        "migrate-keys" => Migration::Keys {
            target: String::from_utf8_lossy(&a[1]).into_owned(),
            keys: a[2..].to_vec(),
        },
        "migrate-arc" => match parse_arc(a) {
            Ok(m) => m,
            Err(e) => return e,
        },
        _ => return Reply::error("ERR unknown topology command"),
    };
    ctx.session.migration = Some(migration);
    // Replaced by the move's own reply once it ran.
    Reply::Nil
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
        Migration::Arc { target, arc, max } => migrate_arc(shared, &target, arc, max).await,
    }
}

fn topology(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    const USAGE: &str = "ERR usage: TOPOLOGY GET | TOPOLOGY IMPORT | TOPOLOGY DONE <epoch> | TOPOLOGY SET <epoch> <my-id> <vnodes> [<id> <weight> ...] | TOPOLOGY SETMOVING <epoch> <my-id> <vnodes> <record> [<id> <weight> ...]";
    let topo = &ctx.shared.topology;
    let sub = &a[1];
    if sub.eq_ignore_ascii_case(b"import") {
        // A source node's migration connection: its keys were placed by the router's new ring,
        // which this node may not have yet; applied like the primary's stream.
        ctx.session.from_primary = true;
        return Reply::OK;
    }
    if sub.eq_ignore_ascii_case(b"get") {
        let record = lock(&topo.change).clone();
        return Reply::Array(vec![
            Reply::Int(topo.epoch() as i64),
            Reply::bulk_str(lock(&topo.shard_id).as_deref().unwrap_or("")),
            record.map_or(Reply::Nil, Reply::Bulk),
        ]);
    }
    if sub.eq_ignore_ascii_case(b"done") && a.len() == 3 {
        return match int_arg(&a[2]) {
            Ok(epoch) => {
                topo.done(u64::try_from(epoch).unwrap_or(0));
                Reply::OK
            }
            Err(_) => Reply::error("ERR epoch must be an integer"),
        };
    }
    // SETMOVING carries the change record after vnodes; the shard pairs follow either way.
    let (change, pairs_at) = if sub.eq_ignore_ascii_case(b"set") {
        (None, 5)
    } else if sub.eq_ignore_ascii_case(b"setmoving") && a.len() >= 6 {
        (Some(a[5].clone()), 6)
    } else {
        return Reply::error(USAGE);
    };
    if a.len() < pairs_at || !(a.len() - pairs_at).is_multiple_of(2) {
        return Reply::error(USAGE);
    }
    let (Ok(epoch), Ok(vnodes)) = (int_arg(&a[2]), int_arg(&a[4])) else {
        return Reply::error("ERR epoch and vnodes must be integers");
    };
    let mut shards = Vec::new();
    for pair in a[pairs_at..].chunks(2) {
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
    match topo.set(ring, me, change) {
        Ok(()) => Reply::OK,
        Err(current) => Reply::Error(format!(
            "STALEEPOCH this node is at epoch {current}, newer than {epoch}"
        )),
    }
}

/// `MIGRATE-ARC <target> <start> <end> <max-keys>`.
fn parse_arc(a: &[Bytes]) -> Result<Migration, Reply> {
    let parse = |b: &Bytes| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let (Some(start), Some(end), Some(max)) = (parse(&a[2]), parse(&a[3]), parse(&a[4])) else {
        return Err(Reply::error(
            "ERR start, end and max-keys must be unsigned integers",
        ));
    };
    Ok(Migration::Arc {
        target: String::from_utf8_lossy(&a[1]).into_owned(),
        arc: RingArc { start, end },
        max: usize::try_from(max)
            .unwrap_or(MAX_BATCH)
            .clamp(1, MAX_BATCH),
    })
}

/// Moves up to `max` keys of `arc`, [`CHUNK`] per round trip, and answers `[moved, bytes, more]`
/// (`more`: the arc still holds keys).
async fn migrate_arc(shared: &Shared, target: &str, arc: RingArc, max: usize) -> Reply {
    let (mut moved, mut bytes) = (0, 0);
    let mut keys = Vec::new();
    let mut more = false;
    'buckets: for b in arc.buckets() {
        for k in shared.store.bucket_keys(b) {
            if arc.contains(key_hash(&k)) {
                if keys.len() == max {
                    more = true;
                    break 'buckets;
                }
                keys.push(k);
            }
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
    let store = &shared.store;
    let _claim = shared.topology.claim(keys).await;
    let mut out = BytesMut::new();
    let mut replies = 0;
    // Each key found and where its commands are in `out`.
    let mut moving: Vec<(&Bytes, Range<usize>)> = Vec::new();
    {
        let _locks = store.lock_keys(keys);
        for k in keys {
            if let Some(e) = store.get(k) {
                let at = out.len();
                replies += restore_commands(&mut out, k, &e);
                moving.push((k, at..out.len()));
            }
        }
    }
    if moving.is_empty() {
        return Ok((0, 0));
    }
    let bytes = out.len();
    if let Err(e) = send_and_confirm(shared, target, &out, replies).await {
        return Err(undo(shared, target, &moving, e).await);
    }
    loop {
        let locks = store.lock_keys(moving.iter().map(|(k, _)| k));
        let (mut again, mut again_replies, mut now) = (BytesMut::new(), 0, BytesMut::new());
        for (k, sent) in &mut moving {
            now.clear();
            match store.get(k) {
                Some(e) => {
                    let n = restore_commands(&mut now, k, &e);
                    if now[..] != out[sent.clone()] {
                        // Compared next time against what it is sent as now.
                        *sent = out.len()..out.len() + now.len();
                        out.extend_from_slice(&now);
                        again.extend_from_slice(&now);
                        again_replies += n;
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
                store.remove(k);
                crate::replication::propagate_del(shared, k);
            }
            break;
        }
        // Written here meanwhile: send it again, unlocked, and check again.
        drop(locks);
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
fn park(target: &str, conn: TcpStream, max: usize) {
    TARGETS.with(|t| {
        let mut t = t.borrow_mut();
        let idle = t.entry(target.to_string()).or_default();
        if idle.len() < max {
            idle.push(conn);
        }
    });
}

/// Writes `payload` on `conn` and reads `replies` replies; gives the connection back if it is
/// still in step (a broken or confused one is dropped).
async fn exchange(
    mut conn: TcpStream,
    payload: &[u8],
    replies: usize,
) -> Result<TcpStream, String> {
    within(conn.write_all(payload)).await?;
    read_replies(&mut conn, replies).await?;
    Ok(conn)
}

/// `io`, failing after [`MIGRATE_IO_TIMEOUT`].
async fn within<T>(io: impl std::future::Future<Output = std::io::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(MIGRATE_IO_TIMEOUT, io).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

async fn connect(shared: &Shared, target: &str) -> Result<TcpStream, String> {
    let mut c =
        match tokio::time::timeout(MIGRATE_CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(r) => r.map_err(|e| e.to_string())?,
            Err(_) => return Err("connect timed out".into()),
        };
    let _ = c.set_nodelay(true);
    let mut hello = BytesMut::new();
    let mut replies = 1;
    let password = shared.config().requirepass.clone();
    if let Some(pw) = password {
        encode_request(&mut hello, [&b"AUTH"[..], pw.as_bytes()]);
        replies += 1;
    }
    encode_request(&mut hello, [&b"TOPOLOGY"[..], b"IMPORT"]);
    within(c.write_all(&hello)).await?;
    read_replies(&mut c, replies).await?;
    Ok(c)
}

async fn read_replies(conn: &mut TcpStream, mut n: usize) -> Result<(), String> {
    let mut codec = ClientCodec::new(Protocol::Resp2);
    let mut buf = BytesMut::with_capacity(4096);
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
        if within(conn.read_buf(&mut buf)).await? == 0 {
            return Err("target closed the connection".into());
        }
    }
    match first_error {
        Some(e) => Err(format!("{REFUSED}{e}")),
        None => Ok(()),
    }
}
