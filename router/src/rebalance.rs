//! Membership changes that move only the affected key ranges: `RING JOIN`, `RING LEAVE`,
//! `RING CANCEL`, `RING STATUS`, the epochs pushed to the nodes, and the request path while
//! arcs migrate.
//!
//! # One change, step by step ([`begin`])
//! 1. Under [`Rebalancer::change_lock`] (failover takes it too, so two changes never pick the same
//!    epoch): the next ring is `ring.with_shard` / `ring.without_shard` at epoch
//!    `max(router, nodes) + 1`, and `diff` gives the moves (a join moves arcs only *to* the new
//!    shard, a leave only *from* the leaving one).
//! 2. The new ring is pushed (`TOPOLOGY SET`) to the shards that *gain* arcs first: under the new
//!    ring they own a superset of what they owned, so nothing this router still sends them is
//!    refused. If one of them cannot take it, the change is abandoned (the old membership is
//!    republished at a later epoch) before anything moved.
//! 3. The router swaps in the new [`Topology`] with the moving arcs marked [`Migrating`], then
//!    *quiesces*: it waits until every client's requests planned on the old ring have been
//!    answered (connections hold new requests while old ones are outstanding; see
//!    `proxy::connection`). Only then is the ring pushed to everyone else, sources included
//!    (who from then on refuse the arcs they lost with `-WRONGSHARD`), and the mover starts.
//!    So no request this router planned on the old ring can land on a source after a key left it.
//! 4. Request path: a command touching a key of a moving arc first asks the source
//!    `MIGRATE-KEYS <target> key...` (atomic per key: copy, confirm, delete), then goes to the
//!    target. A client's such requests run one after another, in order, on its own chain (and
//!    so do its later requests while the chain is busy), so a pipeline keeps its order.
//! 5. The background mover runs one worker per `(from, to)` pair: `MIGRATE-ARC <target> start
//!    end <batch>` on the source until a call reports `more = 0` (every key of the arc it held
//!    has moved, and no new one can appear there); then the arc is done and requests for it take
//!    the fast path again. Progress (keys, bytes, arcs, rate, ETA) is in
//!    `RING STATUS` and the metrics. When every arc is done the marks are dropped (same epoch:
//!    nodes never knew about them) and a leaving shard's pools are closed.
//!
//! # Cancel
//! `RING CANCEL` stops the mover after the batches in flight, then rolls back: the old
//! membership is published at the next epoch (pushed first to the shards that get their arcs
//! back), with every arc of the cancelled change marked moving in the *reverse* direction, and
//! the mover brings back whatever had moved (request path likewise). Every arc always has one
//! owner, and keys only ever travel by the nodes' atomic per-key migration, so none is lost or
//! duplicated; a deleted key is not resurrected because a moved key no longer exists at its
//! source. A rollback cannot itself be cancelled; it is done when its arcs are empty.
//!
//! # Several routers, stale epochs
//! Nodes fence: a node that is a member of its ring refuses keys it does not own
//! (`-WRONGSHARD <epoch> <owner>`). A router never pushes a ring at an epoch a node already has
//! (equal epochs are accepted by nodes, so that would silently replace another router's ring):
//! at start-up it adopts the nodes' highest epoch and only pushes to nodes below it; a change
//! goes to `max + 1`. On `-WRONGSHARD` the migration path waits briefly for this router's own
//! ring to reach that epoch (its change being published) and retries once; if the node is
//! behind, the router re-pushes its ring and retries once; otherwise (another router changed
//! membership, and this one cannot learn the new shard's address from the nodes) the client gets
//! `-TRYAGAIN`. Give the other routers the same change (`RING JOIN` with the same arguments, or
//! SIGHUP after editing `cluster.toml`): moving already-moved keys is a no-op, so it converges.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_protocol::codec::ClientCodec;
use ringcache_protocol::hash::key_hash;
use ringcache_protocol::ring::{Arc as RingArc, Epoch, Move, Ring, ShardSpec};
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::{Protocol, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::codec::Decoder;

use crate::clients::lock;
use crate::clients::Who;
use crate::merge::{error_bytes, Slot};
use crate::record::ChangeRecord;
use crate::route::{self, Plan};
use crate::send;
use crate::session::Session;
use crate::shard::Shard;
use crate::state::Router;
use crate::topology::Topology;
use crate::upstream::{UpRequest, UpResult};

/// How often every node's epoch is checked (and the ring re-pushed to nodes that lag, e.g. a
/// node that was down or restarted empty).
const SYNC_INTERVAL: Duration = Duration::from_secs(2);
/// One `MIGRATE-ARC` batch may take a while on a loaded node; the node bounds its own I/O at 5 s.
const MIGRATE_ARC_TIMEOUT: Duration = Duration::from_secs(20);
const MOVER_MIN_BACKOFF: Duration = Duration::from_millis(100);
const MOVER_MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the migration path waits for this router's ring to reach a node's newer epoch.
const CATCH_UP_WAIT: Duration = Duration::from_secs(1);

pub const IN_PROGRESS: &str = "ERR a membership change is in progress (RING STATUS)";

// ---------------------------------------------------------------------------------------------
// Moving arcs
// ---------------------------------------------------------------------------------------------

/// One arc changing owner, and whether it is empty at its source yet.
#[derive(Debug)]
pub struct MovingArc {
    pub arc: RingArc,
    pub from: String,
    pub to: String,
    done: AtomicBool,
}

impl MovingArc {
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }
}

/// The arcs of one membership change, sorted for lookup, with the shards outside the new ring
/// that still hold keys (a leaving shard, or a joined shard being rolled back).
#[derive(Debug)]
pub struct MigrationMap {
    /// Sorted by `arc.start`; arcs are disjoint.
    arcs: Vec<MovingArc>,
    /// Indexes of arcs crossing the top of the circle (or the whole circle).
    wrapping: Vec<usize>,
    /// `(from, to, arc indexes)`, sorted by `(from, to)`: one mover worker each.
    groups: Vec<(String, String, Vec<usize>)>,
    outside: Vec<Arc<Shard>>,
    /// Arcs not done yet; 0 makes every lookup a miss (the hot path checks this first).
    live: AtomicUsize,
    /// The change as `RING STATUS` names it, and the membership it started from: what the nodes
    /// keep (`record`) so a router started mid-move can resume it.
    what: String,
    from: Vec<ShardSpec>,
}

impl MigrationMap {
    pub fn new(moves: Vec<Move>, outside: Vec<Arc<Shard>>) -> MigrationMap {
        let mut arcs: Vec<MovingArc> = moves
            .into_iter()
            .map(|m| MovingArc {
                arc: m.arc,
                from: m.from,
                to: m.to,
                done: AtomicBool::new(false),
            })
            .collect();
        arcs.sort_by_key(|a| a.arc.start);
        let wrapping = arcs
            .iter()
            .enumerate()
            .filter(|(_, a)| a.arc.start >= a.arc.end)
            .map(|(i, _)| i)
            .collect();
        let mut groups: Vec<(String, String, Vec<usize>)> = Vec::new();
        for (i, a) in arcs.iter().enumerate() {
            match groups
                .iter_mut()
                .find(|(f, t, _)| *f == a.from && *t == a.to)
            {
                Some(g) => g.2.push(i),
                None => groups.push((a.from.clone(), a.to.clone(), vec![i])),
            }
        }
        groups.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let live = AtomicUsize::new(arcs.len());
        MigrationMap {
            arcs,
            wrapping,
            groups,
            outside,
            live,
            what: String::new(),
            from: Vec::new(),
        }
    }

    /// Names the change and the membership it started from.
    pub fn describing(mut self, what: &str, from: &[ShardSpec]) -> MigrationMap {
        self.what = what.to_string();
        self.from = from.to_vec();
        self
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn from(&self) -> &[ShardSpec] {
        &self.from
    }

    /// The arc holding `hash`, if it is still moving.
    pub fn find(&self, hash: u64) -> Option<&MovingArc> {
        let at = self.arcs.partition_point(|a| a.arc.start < hash);
        let found = at
            .checked_sub(1)
            .map(|i| &self.arcs[i])
            .filter(|a| a.arc.start < a.arc.end && a.arc.contains(hash))
            .or_else(|| {
                self.wrapping
                    .iter()
                    .map(|&i| &self.arcs[i])
                    .find(|a| a.arc.contains(hash))
            });
        found.filter(|a| !a.is_done())
    }

    pub fn arcs(&self) -> &[MovingArc] {
        &self.arcs
    }

    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    fn mark_done(&self, index: usize) {
        if let Some(a) = self.arcs.get(index) {
            if !a.done.swap(true, Ordering::AcqRel) {
                self.live.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// What a [`Topology`] knows of a membership change in progress: cheap to clone, empty by
/// default.
#[derive(Debug, Clone, Default)]
pub struct Migrating(Option<Arc<MigrationMap>>);

impl Migrating {
    pub fn new(map: MigrationMap) -> Migrating {
        Migrating(Some(Arc::new(map)))
    }

    /// No arc is moving (true once every arc is done, before the marks are dropped).
    #[inline]
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            None => true,
            Some(m) => m.live() == 0,
        }
    }

    /// The moving arc holding `hash`, if any.
    #[inline]
    pub fn find(&self, hash: u64) -> Option<&MovingArc> {
        match &self.0 {
            None => None,
            Some(m) if m.live() == 0 => None,
            Some(m) => m.find(hash),
        }
    }

    /// Whether `hash` lies in an arc still moving: reads of it must go to the primaries.
    #[inline]
    pub fn is_migrating(&self, hash: u64) -> bool {
        self.find(hash).is_some()
    }

    /// Shards outside the ring that still hold keys of a moving arc.
    pub fn outside(&self) -> &[Arc<Shard>] {
        self.0.as_ref().map_or(&[], |m| &m.outside)
    }

    pub fn map(&self) -> Option<&Arc<MigrationMap>> {
        self.0.as_ref()
    }
}

// ---------------------------------------------------------------------------------------------
// Planning (pure)
// ---------------------------------------------------------------------------------------------

/// A membership change as the admin asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Join {
        id: String,
        primary: String,
        replicas: Vec<String>,
        weight: u32,
    },
    Leave {
        id: String,
    },
}

impl Change {
    fn describe(&self) -> String {
        match self {
            Change::Join { id, .. } => format!("join {id}"),
            Change::Leave { id } => format!("leave {id}"),
        }
    }
}

/// The next ring and what moves to get there.
#[derive(Debug, Clone)]
pub struct ChangePlan {
    /// The membership the change starts from.
    pub from: Vec<ShardSpec>,
    pub next: Ring,
    pub moves: Vec<Move>,
    /// Shards that gain arcs: the new ring goes to them first.
    pub gainers: Vec<String>,
}

/// Plans `change` from `cur` at epoch `max(cur + 1, min_epoch)`.
pub fn plan_change(cur: &Ring, change: &Change, min_epoch: Epoch) -> Result<ChangePlan, String> {
    let mut specs = cur.shards().to_vec();
    match change {
        Change::Join { id, weight, .. } => {
            if cur.shard_index(id).is_some() {
                return Err(format!("ERR shard '{id}' is already in the ring"));
            }
            specs.push(ShardSpec::new(id.clone(), *weight));
        }
        Change::Leave { id } => {
            let Some(i) = cur.shard_index(id) else {
                return Err(format!("ERR no shard '{id}' in the ring (RING NODES)"));
            };
            if specs.len() == 1 {
                return Err(format!(
                    "ERR '{id}' is the last shard: a ring needs at least one"
                ));
            }
            specs.remove(i);
        }
    }
    plan_to(cur, specs, min_epoch)
}

/// Plans the way back from `cur` to the membership `old` (a cancelled change's starting point).
pub fn plan_rollback(cur: &Ring, old: &[ShardSpec]) -> Result<ChangePlan, String> {
    plan_to(cur, old.to_vec(), 0)
}

fn plan_to(cur: &Ring, specs: Vec<ShardSpec>, min_epoch: Epoch) -> Result<ChangePlan, String> {
    let epoch = cur
        .epoch()
        .checked_add(1)
        .ok_or("ERR the epoch is exhausted")?
        .max(min_epoch);
    let next = Ring::new(epoch, cur.vnodes(), specs).map_err(|e| format!("ERR {e}"))?;
    let moves = cur.diff(&next);
    let mut gainers: Vec<String> = moves.iter().map(|m| m.to.clone()).collect();
    gainers.sort();
    gainers.dedup();
    Ok(ChangePlan {
        from: cur.shards().to_vec(),
        next,
        moves,
        gainers,
    })
}

/// `TOPOLOGY SET <epoch> <my-id> <vnodes> <id> <weight> ...` for the node serving `my_id`, or
/// `TOPOLOGY SETMOVING` with the change `record` after `<vnodes>` while keys move.
pub fn topology_set(ring: &Ring, record: Option<&Bytes>, my_id: &str) -> Vec<Bytes> {
    let sub: &'static [u8] = if record.is_some() {
        b"SETMOVING"
    } else {
        b"SET"
    };
    let mut args = vec![
        Bytes::from_static(b"TOPOLOGY"),
        Bytes::from_static(sub),
        Bytes::from(ring.epoch().to_string()),
        Bytes::copy_from_slice(my_id.as_bytes()),
        Bytes::from(ring.vnodes().to_string()),
    ];
    args.extend(record.cloned());
    for s in ring.shards() {
        args.push(Bytes::copy_from_slice(s.id.as_bytes()));
        args.push(Bytes::from(s.weight.to_string()));
    }
    args
}

// ---------------------------------------------------------------------------------------------
// Admin connections to nodes (also used by `ringcache ctl` to talk to a router)
// ---------------------------------------------------------------------------------------------

/// A plain RESP connection for control traffic (epochs, migration batches, admin tools), apart
/// from the multiplexed client pools so a long batch never delays client requests.
#[derive(Debug)]
pub struct NodeConn {
    addr: String,
    sock: TcpStream,
    buf: BytesMut,
    codec: ClientCodec,
}

impl NodeConn {
    pub async fn connect(addr: &str, timeout: Duration) -> Result<NodeConn, String> {
        let sock = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(format!("{addr}: connect timed out")),
            Ok(Err(e)) => return Err(format!("{addr}: {}", describe(&e))),
            Ok(Ok(s)) => s,
        };
        let _ = sock.set_nodelay(true);
        Ok(NodeConn {
            addr: addr.to_string(),
            sock,
            buf: BytesMut::with_capacity(4096),
            codec: ClientCodec::new(Protocol::Resp2),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// One command; an error reply is `Ok(Reply::Error)`, a transport failure `Err`.
    pub async fn call<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        timeout: Duration,
    ) -> Result<Reply, String> {
        let mut out = BytesMut::new();
        ringcache_protocol::resp::encode_request(&mut out, args.iter());
        let mut replies = self.exchange(&out, 1, timeout).await?;
        replies.pop().ok_or_else(|| "no reply".to_string())
    }

    /// Several commands pipelined; their replies in order.
    pub async fn pipeline(
        &mut self,
        cmds: &[Vec<Bytes>],
        timeout: Duration,
    ) -> Result<Vec<Reply>, String> {
        let mut out = BytesMut::new();
        for c in cmds {
            ringcache_protocol::resp::encode_request(&mut out, c.iter());
        }
        self.exchange(&out, cmds.len(), timeout).await
    }

    async fn exchange(
        &mut self,
        out: &[u8],
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Reply>, String> {
        let addr = self.addr.clone();
        let work = async {
            self.sock
                .write_all(out)
                .await
                .map_err(|e| format!("{addr}: {}", describe(&e)))?;
            let mut replies = Vec::with_capacity(n);
            while replies.len() < n {
                match self.codec.decode(&mut self.buf) {
                    Ok(Some(r)) => {
                        replies.push(r.reply);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("{addr}: {e}")),
                }
                self.buf.reserve(16 * 1024);
                let got = self
                    .sock
                    .read_buf(&mut self.buf)
                    .await
                    .map_err(|e| format!("{addr}: {}", describe(&e)))?;
                if got == 0 {
                    return Err(format!("{addr}: connection closed"));
                }
            }
            Ok(replies)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{addr}: no reply within {} ms",
                timeout.as_millis()
            )),
        }
    }
}

fn describe(e: &std::io::Error) -> String {
    if e.raw_os_error().is_some() {
        e.kind().to_string()
    } else {
        e.to_string()
    }
}

fn as_int(r: &Reply) -> Option<i64> {
    match r {
        Reply::Int(n) => Some(*n),
        Reply::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn as_text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(b) | Reply::Verbatim(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some((*s).to_string()),
        Reply::StatusOwned(s) => Some(s.clone()),
        _ => None,
    }
}

/// What `TOPOLOGY GET` tells of a node.
#[derive(Debug, Clone)]
struct NodeState {
    epoch: Epoch,
    shard: String,
    /// The record of a change moving keys at `epoch` (see [`crate::record`]).
    record: Option<Bytes>,
}

/// `TOPOLOGY GET` → the node's epoch, shard id and change record.
async fn node_state(conn: &mut NodeConn, timeout: Duration) -> Result<NodeState, String> {
    match conn.call(&["TOPOLOGY", "GET"], timeout).await? {
        Reply::Array(v) if v.len() >= 2 => {
            let epoch = as_int(&v[0]).and_then(|e| u64::try_from(e).ok());
            let record = match v.get(2) {
                Some(Reply::Bulk(b)) => Some(b.clone()),
                _ => None,
            };
            match epoch {
                Some(epoch) => Ok(NodeState {
                    epoch,
                    shard: as_text(&v[1]).unwrap_or_default(),
                    record,
                }),
                None => Err(format!("{}: odd TOPOLOGY GET reply", conn.addr)),
            }
        }
        Reply::Error(e) => Err(format!("{}: {e}", conn.addr)),
        _ => Err(format!("{}: odd TOPOLOGY GET reply", conn.addr)),
    }
}

/// Sends one command to one node; `Err` names the node and why (`STALEEPOCH`: the node is
/// ahead).
async fn send_one(addr: &str, cmd: &[Bytes], timeout: Duration) -> Result<(), String> {
    let mut conn = NodeConn::connect(addr, timeout).await?;
    match conn.call(cmd, timeout).await? {
        Reply::Error(e) => Err(format!("{addr}: {e}")),
        _ => Ok(()),
    }
}

/// Pushes `ring` (with the change `record` while keys move) to every `(addr, shard id)` in
/// parallel; the failures.
async fn push_all(
    targets: &[(String, String)],
    ring: &Ring,
    record: Option<&Bytes>,
    timeout: Duration,
) -> Vec<String> {
    let pushes = targets.iter().map(|(addr, id)| async move {
        send_one(addr, &topology_set(ring, record, id), timeout).await
    });
    futures::future::join_all(pushes)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

/// Every node of `topo` as `(address, shard id)`: primaries and replicas of the ring's shards
/// and of shards outside it still holding keys.
fn nodes_of(topo: &Topology) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in topo.serving_shards() {
        out.push((s.primary.clone(), s.id.clone()));
        for r in &s.replicas {
            out.push((r.clone(), s.id.clone()));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// State, status and metrics
// ---------------------------------------------------------------------------------------------

/// Progress of one `(from, to)` stream of arcs.
#[derive(Debug, Clone)]
struct MoveProgress {
    from: String,
    to: String,
    arcs_total: usize,
    arcs_done: usize,
    keys: u64,
    bytes: u64,
    /// Keys expected to move: the source's key count × the moving arcs' share of its arcs.
    estimate: Option<u64>,
    started: Instant,
    finished: Option<Instant>,
}

impl MoveProgress {
    fn elapsed(&self) -> f64 {
        self.finished
            .unwrap_or_else(Instant::now)
            .duration_since(self.started)
            .as_secs_f64()
    }

    fn rate(&self) -> f64 {
        let t = self.elapsed();
        if t > 0.0 {
            self.keys as f64 / t
        } else {
            0.0
        }
    }

    fn remaining(&self) -> Option<u64> {
        if self.arcs_done == self.arcs_total {
            return Some(0);
        }
        self.estimate.map(|e| e.saturating_sub(self.keys))
    }
}

/// One membership change (or rollback) as `RING STATUS` reports it.
#[derive(Debug, Clone)]
struct Progress {
    what: String,
    /// `publishing`, `moving`, `cancelling`, `rolling-back`, `done`, `cancelled`, `failed`.
    state: &'static str,
    epoch: Epoch,
    started: Instant,
    finished: Option<Instant>,
    moves: Vec<MoveProgress>,
    last_error: Option<String>,
}

impl Progress {
    fn totals(&self) -> (usize, usize, u64, u64, Option<u64>) {
        let arcs_total = self.moves.iter().map(|m| m.arcs_total).sum();
        let arcs_done = self.moves.iter().map(|m| m.arcs_done).sum();
        let keys = self.moves.iter().map(|m| m.keys).sum();
        let bytes = self.moves.iter().map(|m| m.bytes).sum();
        let remaining = self
            .moves
            .iter()
            .map(MoveProgress::remaining)
            .sum::<Option<u64>>();
        (arcs_total, arcs_done, keys, bytes, remaining)
    }

    fn write(&self, out: &mut String, prefix: &str) {
        let (arcs_total, arcs_done, keys, bytes, remaining) = self.totals();
        let elapsed = self
            .finished
            .unwrap_or_else(Instant::now)
            .duration_since(self.started)
            .as_secs_f64();
        let rate = if elapsed > 0.0 {
            keys as f64 / elapsed
        } else {
            0.0
        };
        let _ = write!(
            out,
            "{prefix}change:{}\r\n{prefix}state:{}\r\n{prefix}change_epoch:{}\r\n{prefix}elapsed_s:{elapsed:.1}\r\n{prefix}moves:{}\r\n{prefix}arcs_done:{arcs_done}\r\n{prefix}arcs_total:{arcs_total}\r\n{prefix}keys_moved:{keys}\r\n{prefix}bytes_moved:{bytes}\r\n",
            self.what,
            self.state,
            self.epoch,
            self.moves.len(),
        );
        let _ = match remaining {
            Some(r) => write!(out, "{prefix}keys_remaining:{r}\r\n"),
            None => write!(out, "{prefix}keys_remaining:unknown\r\n"),
        };
        let _ = write!(out, "{prefix}rate_keys_per_sec:{rate:.0}\r\n");
        let _ = match remaining {
            Some(r) if rate > 0.0 => write!(out, "{prefix}eta_s:{:.1}\r\n", r as f64 / rate),
            Some(0) => write!(out, "{prefix}eta_s:0\r\n"),
            _ => write!(out, "{prefix}eta_s:unknown\r\n"),
        };
        for (i, m) in self.moves.iter().enumerate() {
            let remaining = m
                .remaining()
                .map_or_else(|| "unknown".to_string(), |r| r.to_string());
            let eta = match m.remaining() {
                Some(0) => "0".to_string(),
                Some(r) if m.rate() > 0.0 => format!("{:.1}", r as f64 / m.rate()),
                _ => "unknown".to_string(),
            };
            let _ = write!(
                out,
                "{prefix}move{i}:from={},to={},arcs_done={},arcs_total={},keys={},bytes={},remaining={remaining},rate={:.0},eta_s={eta}\r\n",
                m.from, m.to, m.arcs_done, m.arcs_total, m.keys, m.bytes, m.rate(),
            );
        }
        if let Some(e) = &self.last_error {
            let e = e.replace(['\r', '\n'], " ");
            let _ = write!(out, "{prefix}last_error:{e}\r\n");
        }
    }
}

#[derive(Debug, Default)]
struct State {
    current: Option<Progress>,
    last: Option<Progress>,
    /// Highest epoch a node reported, and a note if it is ahead of this router's.
    nodes_epoch: Epoch,
    ahead: Option<String>,
    /// Set at start-up when the nodes enforce a ring other than this router's config: nothing is
    /// pushed until a change whose ring they do enforce is published.
    conflict: Option<String>,
    /// Epoch of the last change this router finished (nodes still recording it are told).
    done_epoch: Epoch,
    /// `RING CANCEL` callers waiting for the rollback to be in effect.
    cancel_waiters: Vec<(u64, oneshot::Sender<Reply>)>,
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct MigrationCounters {
    pub keys_moved: AtomicU64,
    pub bytes_moved: AtomicU64,
    /// Keys moved by `MIGRATE-KEYS` ahead of a client's command.
    pub request_keys_moved: AtomicU64,
    pub request_migrations: AtomicU64,
    pub wrongshard_retries: AtomicU64,
    pub changes_done: AtomicU64,
    pub changes_cancelled: AtomicU64,
    pub changes_failed: AtomicU64,
}

/// The router's membership-change state: at most one change at a time.
#[derive(Debug, Default)]
pub struct Rebalancer {
    /// Held while the topology changes hands (membership change, rollback, end of a migration,
    /// epoch adoption, failover), so two changes never pick the same epoch or undo each other.
    pub change_lock: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    cancel: AtomicBool,
    /// Wakes the epoch sync task (e.g. after a failover published a new epoch).
    wake: Arc<Notify>,
    /// Set once the start-up adoption has been tried (see [`Rebalancer::wait_first_sync`]).
    first_sync: AtomicBool,
    first_sync_done: Notify,
    pub counters: MigrationCounters,
}

impl Rebalancer {
    /// Whether a change (or its rollback) is under way.
    pub fn in_progress(&self) -> bool {
        lock(&self.state).current.is_some()
    }

    /// Waits (at most `bound`) until the start-up adoption has been tried: a router started
    /// mid-move must learn the moving arcs before it routes a key (it would send keys of arcs
    /// not yet moved to their new owner, and the mover would then overwrite them).
    pub async fn wait_first_sync(&self, bound: Duration) {
        let done = self.first_sync_done.notified();
        if self.first_sync.load(Ordering::SeqCst) {
            return;
        }
        let _ = tokio::time::timeout(bound, done).await;
    }

    /// Asks the epoch sync task to check every node now (after publishing a new topology, e.g.
    /// a failover).
    pub fn sync_soon(&self) {
        self.wake.notify_one();
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        if let Some(p) = lock(&self.state).current.as_mut() {
            f(p);
        }
    }

    fn set_error(&self, e: &str) {
        self.update(|p| p.last_error = Some(e.to_string()));
    }

    /// Ends the current change with `state`; answers waiting `RING CANCEL` callers.
    fn finish(&self, state: &'static str) {
        let mut st = lock(&self.state);
        if let Some(mut p) = st.current.take() {
            p.state = state;
            p.finished = Some(Instant::now());
            for m in &mut p.moves {
                m.finished.get_or_insert_with(Instant::now);
            }
            st.last = Some(p);
        }
        let counter = match state {
            "done" => &self.counters.changes_done,
            "cancelled" => &self.counters.changes_cancelled,
            _ => &self.counters.changes_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        for (_, w) in st.cancel_waiters.drain(..) {
            let _ = w.send(Reply::error(format!(
                "ERR the change ended ({state}) before it could be cancelled"
            )));
        }
    }

    /// `RING STATUS` text: `key:value` lines like INFO.
    pub fn status_text(&self, topo: &Topology) -> String {
        let ring = &topo.ring;
        let points: usize = ring.shards().iter().map(|s| ring.points_of(&s.id)).sum();
        let up = topo
            .shards
            .iter()
            .filter(|s| s.pool.connected() > 0)
            .count();
        let st = lock(&self.state);
        let mut out = String::with_capacity(1024);
        let _ = write!(
            out,
            "# Ring\r\nepoch:{}\r\nvnodes:{}\r\nshards:{}\r\npoints:{points}\r\nshards_up:{up}\r\nmigrating:{}\r\narcs_migrating:{}\r\nnodes_epoch:{}\r\n",
            ring.epoch(),
            ring.vnodes(),
            topo.shards.len(),
            u8::from(st.current.is_some()),
            topo.migrating.map().map_or(0, |m| m.live()),
            st.nodes_epoch,
        );
        for (id, share) in ring.shares() {
            let _ = write!(out, "share_{id}:{:.2}%\r\n", share * 100.0);
        }
        for s in topo.migrating.outside() {
            let _ = write!(out, "leaving_{}:{}\r\n", s.id, s.primary);
        }
        if let Some(a) = &st.ahead {
            let _ = write!(out, "stale:{}\r\n", a.replace(['\r', '\n'], " "));
        }
        if let Some(c) = &st.conflict {
            let _ = write!(out, "conflict:{}\r\n", c.replace(['\r', '\n'], " "));
        }
        if let Some(p) = &st.current {
            out.push_str("\r\n# Migration\r\n");
            p.write(&mut out, "");
        }
        if let Some(p) = &st.last {
            out.push_str("\r\n# Last change\r\n");
            p.write(&mut out, "last_");
        }
        out
    }

    /// Prometheus families for migrations.
    pub fn render_metrics(&self, out: &mut String) {
        let c = &self.counters;
        let st = lock(&self.state);
        let (arcs_left, keys_left) = st.current.as_ref().map_or((0, Some(0)), |p| {
            let (total, done, _, _, remaining) = p.totals();
            (total - done, remaining)
        });
        let _ = write!(
            out,
            "# HELP ringcache_migration_keys_moved_total Keys moved between shards by membership changes.\n# TYPE ringcache_migration_keys_moved_total counter\nringcache_migration_keys_moved_total{{path=\"background\"}} {}\nringcache_migration_keys_moved_total{{path=\"request\"}} {}\n",
            c.keys_moved.load(Ordering::Relaxed),
            c.request_keys_moved.load(Ordering::Relaxed),
        );
        let _ = write!(
            out,
            "# HELP ringcache_migration_bytes_moved_total Bytes sent by the background mover (as the source encoded them).\n# TYPE ringcache_migration_bytes_moved_total counter\nringcache_migration_bytes_moved_total {}\n",
            c.bytes_moved.load(Ordering::Relaxed),
        );
        let _ = write!(
            out,
            "# HELP ringcache_migrating 1 while a membership change moves keys.\n# TYPE ringcache_migrating gauge\nringcache_migrating {}\n",
            u8::from(st.current.is_some()),
        );
        let _ = write!(
            out,
            "# HELP ringcache_migration_arcs_remaining Arcs of the change in progress not yet empty at their source.\n# TYPE ringcache_migration_arcs_remaining gauge\nringcache_migration_arcs_remaining {arcs_left}\n",
        );
        if let Some(k) = keys_left {
            let _ = write!(
                out,
                "# HELP ringcache_migration_keys_remaining Estimated keys still to move.\n# TYPE ringcache_migration_keys_remaining gauge\nringcache_migration_keys_remaining {k}\n",
            );
        }
        let _ = write!(
            out,
            "# HELP ringcache_request_migrations_total MIGRATE-KEYS sent ahead of client commands on moving arcs.\n# TYPE ringcache_request_migrations_total counter\nringcache_request_migrations_total {}\n",
            c.request_migrations.load(Ordering::Relaxed),
        );
        let _ = write!(
            out,
            "# HELP ringcache_membership_changes_total Membership changes by outcome.\n# TYPE ringcache_membership_changes_total counter\nringcache_membership_changes_total{{result=\"done\"}} {}\nringcache_membership_changes_total{{result=\"cancelled\"}} {}\nringcache_membership_changes_total{{result=\"failed\"}} {}\n",
            c.changes_done.load(Ordering::Relaxed),
            c.changes_cancelled.load(Ordering::Relaxed),
            c.changes_failed.load(Ordering::Relaxed),
        );
        let _ = write!(
            out,
            "# HELP ringcache_nodes_epoch Highest ring epoch the nodes reported.\n# TYPE ringcache_nodes_epoch gauge\nringcache_nodes_epoch {}\n",
            st.nodes_epoch,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Epoch sync: start-up adoption and periodic re-push
// ---------------------------------------------------------------------------------------------

/// Starts the epoch sync task: adopts the nodes' epoch at start-up, then every few seconds (or
/// when woken) pushes the ring to nodes behind it.
pub fn start(router: &Arc<Router>) {
    let weak = Arc::downgrade(router);
    let wake = router.rebalance.wake.clone();
    let stop = router.stop_signal();
    tokio::spawn(sync_task(weak, wake, stop));
}

async fn sync_task(
    router: Weak<Router>,
    wake: Arc<Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut adopted = false;
    loop {
        {
            let Some(router) = router.upgrade() else {
                return;
            };
            if !adopted {
                adopted = adopt_nodes_epoch(&router).await;
                let rb = &router.rebalance;
                if !rb.first_sync.swap(true, Ordering::SeqCst) {
                    rb.first_sync_done.notify_waiters();
                }
            }
            // A change in progress pushes its own ring; checking meanwhile would only see the
            // nodes it already reached as "ahead".
            if adopted {
                if let Ok(_guard) = router.rebalance.change_lock.try_lock() {
                    sync_nodes(&router).await;
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(SYNC_INTERVAL) => {}
        }
    }
}

/// At start-up: the router never pushes an epoch lower than the nodes have, so it adopts their
/// highest (same membership, that epoch number), or, if the nodes at that epoch record a change
/// still moving keys, resumes that change. False if no primary answered yet.
async fn adopt_nodes_epoch(router: &Arc<Router>) -> bool {
    let _guard = router.rebalance.change_lock.lock().await;
    let topo = router.topology.load_full();
    let timeout = router.config.connect_timeout;
    let states = futures::future::join_all(topo.shards.iter().map(|s| async move {
        let mut c = NodeConn::connect(&s.primary, timeout).await?;
        node_state(&mut c, timeout).await
    }))
    .await;
    if states.iter().all(Result::is_err) {
        return false;
    }
    let max = states
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|s| s.epoch))
        .max()
        .unwrap_or(0);
    let record = states
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .find(|s| s.epoch == max && s.record.is_some())
        .and_then(|s| s.record.clone());
    if let Some(raw) = record {
        match resume(router, &topo, &raw, max).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(error = %e, "cannot resume the membership change the nodes record")
            }
        }
    }
    if max > topo.ring.epoch() {
        // Nodes at the highest epoch define the cluster's ring; check they enforce this
        // router's before pushing it to any node behind.
        let current: Vec<Arc<Shard>> = topo
            .shards
            .iter()
            .zip(&states)
            .filter(|(_, e)| matches!(e, Ok(s) if s.epoch == max))
            .map(|(s, _)| s.clone())
            .collect();
        if let Err(e) = nodes_enforce(&topo.ring, &current, timeout).await {
            let note = format!(
                "the nodes enforce another membership at epoch {max} than this router's config ({e}); nothing is pushed until RING JOIN/LEAVE (or SIGHUP) brings this router to theirs"
            );
            tracing::error!("{note}");
            lock(&router.rebalance.state).conflict = Some(note);
        }
        match Ring::new(max, topo.ring.vnodes(), topo.ring.shards().to_vec()) {
            Ok(ring) => {
                tracing::info!(epoch = max, "adopting the nodes' ring epoch");
                router.topology.store(Arc::new(Topology::from_parts(
                    ring,
                    topo.shards.clone(),
                    topo.migrating.clone(),
                )));
            }
            Err(e) => tracing::error!(error = %e, "cannot adopt the nodes' epoch"),
        }
    }
    true
}

/// Resumes the change the nodes record at `epoch` (the previous router stopped mid-move): its
/// ring, with the arcs between its two memberships moving (those already emptied are found
/// empty in one batch each). Shards come from this router's config where it has them, else
/// from the record's addresses. The ring goes to every node before any request is served.
async fn resume(
    router: &Arc<Router>,
    config: &Topology,
    raw: &[u8],
    epoch: Epoch,
) -> Result<(), String> {
    let rec = ChangeRecord::decode(raw)?;
    let (from, to) = rec.rings(epoch)?;
    let mut pool: Vec<Arc<Shard>> = Vec::new();
    for spec in to.shards().iter().chain(from.shards()) {
        if pool.iter().any(|s| s.id == spec.id) {
            continue;
        }
        let shard = match config.shard_by_id(&spec.id) {
            Some(s) => s.clone(),
            None => {
                let place = rec
                    .place(&spec.id)
                    .ok_or_else(|| format!("no address for shard '{}'", spec.id))?;
                Arc::new(router.start_shard(&spec.id, &place.primary, &place.replicas, spec.weight))
            }
        };
        pool.push(shard);
    }
    let plan = ChangePlan {
        from: from.shards().to_vec(),
        moves: from.diff(&to),
        next: to,
        gainers: Vec::new(),
    };
    let next = build_topology(&plan, &pool, &rec.what);
    let record = ChangeRecord::of(&next).map(|r| r.encode());
    let targets = nodes_of(&next);
    let map = next.migrating.map().cloned();
    let timeout = router.config.connect_timeout;
    let rb = &router.rebalance;
    warm_request_path(&next);
    router.topology.store(Arc::new(next));
    lock(&rb.state).nodes_epoch = epoch;
    // Equal epochs are accepted: nodes behind (the previous router's push did not reach them)
    // catch up, the others get the record with this router's addresses.
    let failed = push_all(&targets, &plan.next, record.as_ref(), timeout).await;
    if !failed.is_empty() {
        tracing::warn!(epoch, failed = %failed.join("; "), "resuming: some nodes missed the ring; the epoch sync will retry");
    }
    let Some(map) = map else {
        // Nothing moves between the two memberships: the change is over.
        done_on_nodes(router, &targets, epoch).await;
        return Ok(());
    };
    let rollback = rec.what.starts_with("rollback");
    tracing::info!(change = %rec.what, epoch, arcs = plan.moves.len(), "resuming the membership change the nodes record");
    rb.cancel.store(false, Ordering::SeqCst);
    start_progress(
        rb,
        &rec.what,
        &plan,
        if rollback { "rolling-back" } else { "moving" },
    );
    let r = router.clone();
    tokio::spawn(async move {
        estimate(&r, &map, &from).await;
        if rollback {
            move_back(&r, &map, &rec.what).await;
        } else {
            drive(r, map, from.shards().to_vec(), rec.what).await;
        }
    });
    Ok(())
}

/// `TOPOLOGY DONE <epoch>` to `targets` (best effort: a node that misses it is told by the epoch
/// sync, and a stale record only makes a later router check arcs that are already empty).
async fn done_on_nodes(router: &Router, targets: &[(String, String)], epoch: Epoch) {
    lock(&router.rebalance.state).done_epoch = epoch;
    let cmd = [
        Bytes::from_static(b"TOPOLOGY"),
        Bytes::from_static(b"DONE"),
        Bytes::from(epoch.to_string()),
    ];
    let timeout = router.config.connect_timeout;
    let sends = targets
        .iter()
        .map(|(addr, _)| send_one(addr, &cmd, timeout));
    let failed: Vec<String> = futures::future::join_all(sends)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if !failed.is_empty() {
        tracing::debug!(epoch, failed = %failed.join("; "), "TOPOLOGY DONE missed some nodes");
    }
}

/// Sample keys per node when checking which ring the nodes enforce.
const PROBE_KEYS: usize = 512;

/// Whether the primaries of `shards` enforce `ring`: for sample keys each accepts those `ring`
/// gives it and refuses the others naming `ring`'s owner. Nodes do not report their membership;
/// this is how a router checks that its ring matches theirs before taking over their epoch.
async fn nodes_enforce(
    ring: &Ring,
    shards: &[Arc<Shard>],
    timeout: Duration,
) -> Result<(), String> {
    let keys: Vec<String> = (0..PROBE_KEYS)
        .map(|i| format!("ringcache:probe:{i}"))
        .collect();
    let cmds: Vec<Vec<Bytes>> = keys
        .iter()
        .map(|k| vec![Bytes::from_static(b"EXISTS"), Bytes::from(k.clone())])
        .collect();
    let checks = shards.iter().map(|s| {
        let (keys, cmds) = (&keys, &cmds);
        async move {
            let mut c = NodeConn::connect(&s.primary, timeout).await?;
            let replies = c.pipeline(cmds, timeout).await?;
            for (k, r) in keys.iter().zip(&replies) {
                let owner = ring.locate(k.as_bytes()).map(|o| o.id.as_str());
                let says = match r {
                    Reply::Error(e) => e
                        .strip_prefix("WRONGSHARD ")
                        .and_then(|rest| rest.split_whitespace().nth(1))
                        .map(str::to_string),
                    _ => Some(s.id.clone()),
                };
                if says.as_deref() != owner {
                    return Err(format!(
                        "shard '{}' places {k} on {says:?}, this router's ring on {owner:?}",
                        s.id
                    ));
                }
            }
            Ok(())
        }
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .collect()
}

/// Checks every node's epoch; pushes the ring to those behind; notes nodes ahead (another router
/// changed membership).
async fn sync_nodes(router: &Arc<Router>) {
    let topo = router.topology.load_full();
    // With a conflict, a node behind gets nothing (the "0" epoch never exceeds its own).
    let conflict = lock(&router.rebalance.state).conflict.is_some();
    let mine = topo.ring.epoch();
    let epoch = if conflict { 0 } else { mine };
    let timeout = router.config.connect_timeout;
    let nodes = nodes_of(&topo);
    let ring = &topo.ring;
    let record = ChangeRecord::of(&topo).map(|r| r.encode());
    let record = record.as_ref();
    // A node still recording a change this router finished (it missed `TOPOLOGY DONE`).
    let done_epoch = if conflict || record.is_some() {
        0
    } else {
        lock(&router.rebalance.state).done_epoch
    };
    let results = futures::future::join_all(nodes.iter().map(|(addr, id)| async move {
        let mut c = NodeConn::connect(addr, timeout).await?;
        let st = node_state(&mut c, timeout).await?;
        let e = st.epoch;
        if e < epoch {
            match c.call(&topology_set(ring, record, id), timeout).await? {
                Reply::Error(err) => return Err(format!("{addr}: {err}")),
                _ => {
                    tracing::info!(node = %addr, shard = %id, from = e, to = epoch, "pushed the ring to a node behind");
                    return Ok((addr.as_str(), epoch));
                }
            }
        }
        if st.record.is_some() && e <= done_epoch {
            let _ = c.call(&["TOPOLOGY", "DONE", &done_epoch.to_string()], timeout).await?;
        }
        Ok((addr.as_str(), e))
    }))
    .await;
    let mut max = 0;
    let mut ahead = None;
    for r in &results {
        match r {
            Ok((addr, e)) => {
                max = max.max(*e);
                if *e > mine && ahead.is_none() {
                    ahead = Some(format!(
                        "node {addr} is at epoch {e}, this router at {mine}: another router changed membership"
                    ));
                }
            }
            Err(e) => tracing::debug!(error = %e, "epoch sync"),
        }
    }
    let mut st = lock(&router.rebalance.state);
    if ahead.is_some() && st.ahead != ahead {
        tracing::warn!(note = ?ahead, "nodes are ahead of this router");
    }
    st.nodes_epoch = max;
    st.ahead = ahead;
}

// ---------------------------------------------------------------------------------------------
// Membership changes
// ---------------------------------------------------------------------------------------------

/// Starts `change` and answers once its epoch is in effect (keys move in the background).
/// `caller` is the client that asked (its own request is outstanding while the change quiesces).
pub async fn begin(router: Arc<Router>, change: Change, caller: u64) -> Reply {
    let rb = &router.rebalance;
    let guard = rb.change_lock.lock().await;
    if rb.in_progress() {
        return Reply::error(IN_PROGRESS);
    }
    let cur = router.topology.load_full();
    let timeout = router.config.connect_timeout;

    // The joining node must answer, must not serve another shard, and must be empty unless it
    // already took part in this shard (a change re-issued to resume).
    let mut new_shard = None;
    if let Change::Join {
        id,
        primary,
        replicas,
        weight,
    } = &change
    {
        if let Some(s) = cur
            .serving_shards()
            .find(|s| s.primary == *primary || s.replicas.contains(primary) || s.id == *id)
        {
            return Reply::Error(format!(
                "ERR shard '{}' already uses id '{id}' or address {primary}",
                s.id
            ));
        }
        let mut conn = match NodeConn::connect(primary, timeout).await {
            Ok(c) => c,
            Err(e) => return Reply::Error(format!("ERR cannot reach the new primary {e}")),
        };
        let (node_epoch, node_id) = match node_state(&mut conn, timeout).await {
            Ok(st) => (st.epoch, st.shard),
            Err(e) => return Reply::Error(format!("ERR the new primary {e}")),
        };
        if node_epoch > 0 && !node_id.is_empty() && node_id != *id {
            return Reply::Error(format!(
                "ERR {primary} already serves shard '{node_id}' (epoch {node_epoch})"
            ));
        }
        let keys = conn
            .call(&["DBSIZE"], timeout)
            .await
            .ok()
            .as_ref()
            .and_then(as_int)
            .unwrap_or(0);
        if keys > 0 && !(node_epoch > 0 && node_id == *id) {
            return Reply::Error(format!(
                "ERR {primary} holds {keys} keys; a joining node must be empty (FLUSHALL it first)"
            ));
        }
        new_shard = Some(Arc::new(router.start_shard(id, primary, replicas, *weight)));
    }

    let mut pool: Vec<Arc<Shard>> = cur.serving_shards().cloned().collect();
    pool.extend(new_shard);
    // Never publish below what the nodes hold.
    let epochs = futures::future::join_all(pool.iter().map(|s| async move {
        let mut c = NodeConn::connect(&s.primary, timeout).await?;
        node_state(&mut c, timeout).await.map(|st| st.epoch)
    }))
    .await;
    let nodes_max = epochs
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .max()
        .unwrap_or(0);
    let plan = match plan_change(&cur.ring, &change, nodes_max + 1) {
        Ok(p) => p,
        Err(e) => return Reply::Error(e),
    };
    let converging = nodes_max > cur.ring.epoch() || lock(&rb.state).conflict.is_some();
    if converging {
        // Another router (or this one before a restart) published a ring this one did not. Go
        // on only if the nodes already enforce the ring this change leads to: then it converges
        // (moving whatever is left, a no-op for keys already moved) instead of replacing theirs.
        let at_max: Vec<Arc<Shard>> = pool
            .iter()
            .zip(&epochs)
            .filter(|(s, e)| {
                plan.next.shard_index(&s.id).is_some() && matches!(e, Ok(n) if *n == nodes_max)
            })
            .map(|(s, _)| s.clone())
            .collect();
        if let Err(e) = nodes_enforce(&plan.next, &at_max, timeout).await {
            return Reply::Error(format!(
                "ERR the nodes are at epoch {nodes_max} with another membership than this router's {} would give ({e}); make this router's membership match theirs first (RING JOIN/LEAVE as on the router that changed it, or fix cluster.toml and restart)",
                change.describe()
            ));
        }
        tracing::info!(epoch = nodes_max, change = %change.describe(), "the nodes already enforce this change's ring: converging to it");
    }
    let old_specs = cur.ring.shards().to_vec();
    let what = change.describe();
    let next = build_topology(&plan, &pool, &what);
    let map = next.migrating.map().cloned();
    tracing::info!(change = %what, epoch = plan.next.epoch(), arcs = plan.moves.len(), "membership change starting");
    // Cleared before the change becomes visible, so a RING CANCEL from then on is not lost.
    rb.cancel.store(false, Ordering::SeqCst);
    start_progress(rb, &what, &plan, "publishing");

    if let Err(e) = publish(&router, next, &plan.gainers, &[caller]).await {
        tracing::error!(change = %what, error = %e, "membership change abandoned");
        // Bring back the nodes that took the new ring, unless that ring is the cluster's
        // already (converging): then this router's old one must not replace it.
        if !converging {
            revert(&router, &cur, plan.next.epoch()).await;
        }
        rb.set_error(&e);
        rb.finish("failed");
        return Reply::Error(format!("ERR {what} abandoned: {e}"));
    }
    rb.update(|p| {
        if p.state == "publishing" {
            p.state = "moving";
        }
    });
    lock(&rb.state).conflict = None;
    drop(guard);
    match map {
        Some(map) => {
            let r = router.clone();
            tokio::spawn(async move {
                estimate(&r, &map, &cur.ring).await;
                drive(r, map, old_specs, what).await;
            });
        }
        // Nothing to move (no arc changed owner): the change is complete.
        None => rb.finish("done"),
    }
    Reply::OK
}

/// The topology for `plan`: the ring's shards from `pool` by id, the others (still holding keys
/// of moving arcs) outside.
fn build_topology(plan: &ChangePlan, pool: &[Arc<Shard>], what: &str) -> Topology {
    let shards: Vec<Arc<Shard>> = plan
        .next
        .shards()
        .iter()
        .filter_map(|spec| pool.iter().find(|s| s.id == spec.id).cloned())
        .collect();
    let outside: Vec<Arc<Shard>> = pool
        .iter()
        .filter(|s| plan.next.shard_index(&s.id).is_none())
        .filter(|s| plan.moves.iter().any(|m| m.from == s.id))
        .cloned()
        .collect();
    let migrating = if plan.moves.is_empty() {
        Migrating::default()
    } else {
        Migrating::new(MigrationMap::new(plan.moves.clone(), outside).describing(what, &plan.from))
    };
    Topology::from_parts(plan.next.clone(), shards, migrating)
}

fn start_progress(rb: &Rebalancer, what: &str, plan: &ChangePlan, state: &'static str) {
    let map = MigrationMap::new(plan.moves.clone(), Vec::new());
    let now = Instant::now();
    let moves = map
        .groups
        .iter()
        .map(|(from, to, arcs)| MoveProgress {
            from: from.clone(),
            to: to.clone(),
            arcs_total: arcs.len(),
            arcs_done: 0,
            keys: 0,
            bytes: 0,
            estimate: None,
            started: now,
            finished: None,
        })
        .collect();
    lock(&rb.state).current = Some(Progress {
        what: what.to_string(),
        state,
        epoch: plan.next.epoch(),
        started: now,
        finished: None,
        moves,
        last_error: None,
    });
}

/// Warms the request path of a change while its ring is being published: the side lanes to
/// every source, and the sources' connections to their targets, so the first requests on
/// moving keys do not wait for connections to be set up.
fn warm_request_path(topo: &Topology) {
    let Some(map) = topo.migrating.map() else {
        return;
    };
    let cmd = migrate_keys_index();
    for (from, to, _) in &map.groups {
        if let (Some(src), Some(dst)) = (topo.shard_by_id(from), topo.shard_by_id(to)) {
            src.pool
                .warm_slow_lanes(&migrate_keys_request(&dst.primary, &[]), cmd);
        }
    }
}

/// `MIGRATE-KEYS <target> key...` (no key: the node's warm-up, see [`warm_request_path`]).
fn migrate_keys_request(target: &str, keys: &[&Bytes]) -> Bytes {
    let mut args: Vec<&[u8]> = vec![b"MIGRATE-KEYS", target.as_bytes()];
    args.extend(keys.iter().map(|k| &k[..]));
    let mut request = BytesMut::new();
    ringcache_protocol::resp::encode_request(&mut request, args);
    request.freeze()
}

/// The metrics index of `MIGRATE-KEYS`.
fn migrate_keys_index() -> u16 {
    crate::shard_metrics::command_index(ringcache_protocol::table::lookup(b"migrate-keys"))
}

/// Publishes `next`: ring to the gaining shards (all must take it), swap, quiesce, ring to
/// everyone else (best effort: the sync task retries nodes that missed it).
async fn publish(
    router: &Arc<Router>,
    next: Topology,
    gainers: &[String],
    callers: &[u64],
) -> Result<(), String> {
    let timeout = router.config.connect_timeout;
    warm_request_path(&next);
    let record = ChangeRecord::of(&next).map(|r| r.encode());
    let first: Vec<(String, String)> = next
        .serving_shards()
        .filter(|s| gainers.contains(&s.id))
        .map(|s| (s.primary.clone(), s.id.clone()))
        .collect();
    let failed = push_all(&first, &next.ring, record.as_ref(), timeout).await;
    if !failed.is_empty() {
        return Err(format!(
            "the shards gaining arcs could not take epoch {}: {}",
            next.ring.epoch(),
            failed.join("; ")
        ));
    }
    let epoch = next.ring.epoch();
    let ring = next.ring.clone();
    let rest: Vec<(String, String)> = nodes_of(&next)
        .into_iter()
        .filter(|(addr, _)| !first.iter().any(|(a, _)| a == addr))
        .collect();
    router.topology.store(Arc::new(next));
    {
        let mut st = lock(&router.rebalance.state);
        st.nodes_epoch = st.nodes_epoch.max(epoch);
        st.ahead = None;
    }
    quiesce(router, epoch, callers).await;
    let failed = push_all(&rest, &ring, record.as_ref(), timeout).await;
    if !failed.is_empty() {
        tracing::warn!(epoch, failed = %failed.join("; "), "some nodes missed the new ring; the epoch sync will retry");
    }
    router.rebalance.sync_soon();
    Ok(())
}

/// Waits until no client has a request outstanding that was planned on a ring older than
/// `epoch` (bounded by the request timeout: such a request has been answered or failed by then).
/// The `callers` of the change are waiting for it, not sending keys: they are skipped.
async fn quiesce(router: &Router, epoch: Epoch, callers: &[u64]) {
    std::sync::atomic::fence(Ordering::SeqCst);
    let deadline = Instant::now() + router.config.request_timeout + Duration::from_millis(500);
    loop {
        let old = router
            .clients
            .all()
            .iter()
            .filter(|c| {
                let e = c.busy_epoch.load(Ordering::SeqCst);
                e != 0 && e < epoch && !callers.contains(&c.id)
            })
            .count();
        if old == 0 {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                clients = old,
                epoch,
                "clients still busy on the old ring after the request timeout; going on"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Abandons a change whose ring the gaining shards refused: the current membership again, at an
/// epoch above the abandoned one, so nodes that did take it are brought back.
async fn revert(router: &Arc<Router>, cur: &Topology, abandoned: Epoch) {
    let epoch = abandoned.saturating_add(1);
    let ring = match Ring::new(epoch, cur.ring.vnodes(), cur.ring.shards().to_vec()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot rebuild the ring to revert");
            return;
        }
    };
    let topo = Topology::from_parts(ring, cur.shards.clone(), cur.migrating.clone());
    let targets = nodes_of(&topo);
    let record = ChangeRecord::of(&topo).map(|r| r.encode());
    router.topology.store(Arc::new(topo));
    let failed = push_all(
        &targets,
        &router.topology.load().ring,
        record.as_ref(),
        router.config.connect_timeout,
    )
    .await;
    if !failed.is_empty() {
        tracing::warn!(failed = %failed.join("; "), "revert: some nodes missed the ring; the epoch sync will retry");
    }
}

/// Reads each source's key count once so `RING STATUS` can estimate what is left.
async fn estimate(router: &Arc<Router>, map: &MigrationMap, old: &Ring) {
    let topo = router.topology.load_full();
    let timeout = router.config.connect_timeout;
    let shares: HashMap<String, f64> = old.shares().into_iter().collect();
    let mut counts: HashMap<String, Option<u64>> = HashMap::new();
    for (from, _, _) in &map.groups {
        if counts.contains_key(from) {
            continue;
        }
        let n = match topo.shard_by_id(from) {
            Some(s) => match NodeConn::connect(&s.primary, timeout).await {
                Ok(mut c) => c
                    .call(&["DBSIZE"], timeout)
                    .await
                    .ok()
                    .as_ref()
                    .and_then(as_int)
                    .and_then(|n| u64::try_from(n).ok()),
                Err(_) => None,
            },
            None => None,
        };
        counts.insert(from.clone(), n);
    }
    let circle = (1u128 << 64) as f64;
    let estimates: Vec<Option<u64>> = map
        .groups
        .iter()
        .map(|(from, _, arcs)| {
            let width: u128 = arcs.iter().map(|&i| map.arcs[i].arc.width()).sum();
            let share = shares.get(from).copied().unwrap_or(0.0);
            let n = counts.get(from).copied().flatten()?;
            (share > 0.0).then(|| ((n as f64) * (width as f64 / circle) / share).round() as u64)
        })
        .collect();
    router.rebalance.update(|p| {
        for (m, e) in p.moves.iter_mut().zip(estimates) {
            m.estimate = e;
        }
    });
}

/// Runs the mover; then ends the change, or rolls it back if it was cancelled.
async fn drive(
    router: Arc<Router>,
    map: Arc<MigrationMap>,
    old_specs: Vec<ShardSpec>,
    what: String,
) {
    let cancelled = move_all(&router, &map, true).await;
    if *router.stop_signal().borrow() {
        return;
    }
    if cancelled {
        rollback(router, old_specs, what).await;
    } else {
        complete(&router, &map, &what).await;
    }
}

/// Moves a rollback's arcs (not cancellable), then completes it.
async fn move_back(router: &Arc<Router>, map: &Arc<MigrationMap>, what: &str) {
    move_all(router, map, false).await;
    complete(router, map, what).await;
}

/// Drops the migration marks (and a leaving shard's pools) once every arc is done.
async fn complete(router: &Arc<Router>, map: &Arc<MigrationMap>, what: &str) {
    // The mover stopped because this router is shutting down, arcs left: the nodes must keep
    // the change's record (no `TOPOLOGY DONE`) so the next router resumes it.
    if *router.stop_signal().borrow() {
        return;
    }
    let rb = &router.rebalance;
    let _guard = rb.change_lock.lock().await;
    let cur = router.topology.load_full();
    if cur.migrating.map().is_some_and(|m| Arc::ptr_eq(m, map)) {
        router.topology.store(Arc::new(Topology::from_parts(
            cur.ring.clone(),
            cur.shards.clone(),
            Migrating::default(),
        )));
        // Every node, the leaving shard's too: none keeps a record of a finished change.
        done_on_nodes(router, &nodes_of(&cur), cur.ring.epoch()).await;
    }
    let summary = {
        let st = lock(&rb.state);
        st.current.as_ref().map(|p| {
            let (_, _, keys, bytes, _) = p.totals();
            (keys, bytes, p.started.elapsed())
        })
    };
    if let Some((keys, bytes, took)) = summary {
        tracing::info!(change = %what, keys, bytes, secs = took.as_secs_f64(), "membership change done");
    }
    let state = if what.starts_with("rollback") {
        "cancelled"
    } else {
        "done"
    };
    rb.finish(state);
}

/// Cancels: publishes the old membership with the change's arcs moving back, then moves them.
async fn rollback(router: Arc<Router>, old_specs: Vec<ShardSpec>, what: String) {
    let rb = &router.rebalance;
    let mut backoff = MOVER_MIN_BACKOFF;
    let map = loop {
        let guard = rb.change_lock.lock().await;
        let cur = router.topology.load_full();
        let plan = match plan_rollback(&cur.ring, &old_specs) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot plan the rollback");
                rb.set_error(&e);
                rb.finish("failed");
                return;
            }
        };
        let pool: Vec<Arc<Shard>> = cur.serving_shards().cloned().collect();
        let back = format!("rollback of {what}");
        let next = build_topology(&plan, &pool, &back);
        let map = next.migrating.map().cloned();
        start_progress(rb, &back, &plan, "rolling-back");
        let callers: Vec<u64> = lock(&rb.state)
            .cancel_waiters
            .iter()
            .map(|(id, _)| *id)
            .collect();
        match publish(&router, next, &plan.gainers, &callers).await {
            Ok(()) => {
                drop(guard);
                let waiters: Vec<_> = lock(&rb.state).cancel_waiters.drain(..).collect();
                for (_, w) in waiters {
                    let _ = w.send(Reply::OK);
                }
                tracing::info!(change = %back, epoch = plan.next.epoch(), "rolling back");
                if let Some(m) = &map {
                    estimate(&router, m, &cur.ring).await;
                }
                break map;
            }
            Err(e) => {
                // Nothing moved back yet and the arcs still have their owners: try again.
                rb.set_error(&e);
                drop(guard);
                tracing::warn!(error = %e, "rollback not published yet; retrying");
                if *router.stop_signal().borrow() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MOVER_MAX_BACKOFF);
            }
        }
    };
    match map {
        Some(map) => move_back(&router, &map, &format!("rollback of {what}")).await,
        None => rb.finish("cancelled"),
    }
}

/// `RING CANCEL`: stops the mover and rolls back; answers once the rollback is in effect.
pub async fn cancel(router: Arc<Router>, caller: u64) -> Reply {
    let rb = &router.rebalance;
    let (tx, rx) = oneshot::channel();
    {
        let mut st = lock(&rb.state);
        match st.current.as_mut() {
            None => return Reply::error("ERR no membership change in progress"),
            Some(p) if p.what.starts_with("rollback") => {
                return Reply::error("ERR already rolling back (RING STATUS)")
            }
            Some(p) => p.state = "cancelling",
        }
        st.cancel_waiters.push((caller, tx));
    }
    rb.cancel.store(true, Ordering::SeqCst);
    rx.await
        .unwrap_or_else(|_| Reply::error("ERR the change ended before it could be cancelled"))
}

/// `[ring] migration_rate`: keys per second for all of a change's streams together.
struct Pace {
    rate: u64,
    started: tokio::time::Instant,
    moved: AtomicU64,
}

impl Pace {
    fn new(rate: u64) -> Pace {
        Pace {
            rate,
            started: tokio::time::Instant::now(),
            moved: AtomicU64::new(0),
        }
    }

    /// After a batch of `n` keys: waits until the keys moved so far are within the rate.
    async fn after(&self, n: u64) {
        let total = self.moved.fetch_add(n, Ordering::Relaxed) + n;
        if self.rate == 0 || n == 0 {
            return;
        }
        let due = self.started + Duration::from_secs_f64(total as f64 / self.rate as f64);
        tokio::time::sleep_until(due).await;
    }
}

/// Moves every arc of `map`; true if stopped by `RING CANCEL` (when `cancellable`).
async fn move_all(router: &Arc<Router>, map: &Arc<MigrationMap>, cancellable: bool) -> bool {
    let pace = &Pace::new(router.config.ring.migration_rate);
    let workers = (0..map.groups.len()).map(|g| move_group(router, map, g, cancellable, pace));
    futures::future::join_all(workers)
        .await
        .into_iter()
        .any(|cancelled| cancelled)
}

/// One `(from, to)` stream: `MIGRATE-ARC` on the source, batch after batch, arc after arc.
async fn move_group(
    router: &Arc<Router>,
    map: &MigrationMap,
    group: usize,
    cancellable: bool,
    pace: &Pace,
) -> bool {
    let rb = &router.rebalance;
    let (from, to, arcs) = &map.groups[group];
    let batch = router.config.ring.migration_batch.to_string();
    let pause = router.config.ring.migration_pause;
    let stop = router.stop_signal();
    let mut conn: Option<NodeConn> = None;
    let mut backoff = MOVER_MIN_BACKOFF;
    for &index in arcs {
        let arc = &map.arcs[index];
        let (start, end) = (arc.arc.start.to_string(), arc.arc.end.to_string());
        while !arc.is_done() {
            if cancellable && rb.cancel.load(Ordering::SeqCst) {
                return true;
            }
            if *stop.borrow() {
                return false;
            }
            // Addresses come from the current topology: a failover may have replaced a primary.
            let topo = router.topology.load_full();
            let (Some(src), Some(dst)) = (topo.shard_by_id(from), topo.shard_by_id(to)) else {
                rb.set_error(&format!(
                    "shard '{from}' or '{to}' is gone from the topology"
                ));
                return false;
            };
            let attempt = async {
                if conn.as_ref().is_none_or(|c| c.addr() != src.primary) {
                    conn =
                        Some(NodeConn::connect(&src.primary, router.config.connect_timeout).await?);
                }
                let c = conn.as_mut().ok_or("no connection")?;
                let args = [
                    "MIGRATE-ARC",
                    dst.primary.as_str(),
                    start.as_str(),
                    end.as_str(),
                    batch.as_str(),
                ];
                match c.call(&args, MIGRATE_ARC_TIMEOUT).await? {
                    Reply::Array(v) if v.len() == 3 => {
                        match (as_int(&v[0]), as_int(&v[1]), as_int(&v[2])) {
                            (Some(moved), Some(bytes), Some(more)) => Ok((
                                u64::try_from(moved).unwrap_or(0),
                                u64::try_from(bytes).unwrap_or(0),
                                more != 0,
                            )),
                            _ => Err(format!("{}: odd MIGRATE-ARC reply", src.primary)),
                        }
                    }
                    Reply::Error(e) => Err(format!("{}: {e}", src.primary)),
                    _ => Err(format!("{}: odd MIGRATE-ARC reply", src.primary)),
                }
            };
            match attempt.await {
                Ok((moved, bytes, more)) => {
                    backoff = MOVER_MIN_BACKOFF;
                    rb.counters.keys_moved.fetch_add(moved, Ordering::Relaxed);
                    rb.counters.bytes_moved.fetch_add(bytes, Ordering::Relaxed);
                    // Nothing more: every key of the arc the source held was found and moved, and
                    // the source refuses new ones (it has the new ring, or this router no longer
                    // writes to it after the quiesce), so none is left.
                    let done = !more;
                    if done {
                        map.mark_done(index);
                    }
                    rb.update(|p| {
                        if let Some(m) = p.moves.get_mut(group) {
                            m.keys += moved;
                            m.bytes += bytes;
                            if done {
                                m.arcs_done += 1;
                                if m.arcs_done == m.arcs_total {
                                    m.finished = Some(Instant::now());
                                }
                            }
                        }
                    });
                    pace.after(moved).await;
                    if moved > 0 && !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(from = %from, to = %to, error = %e, "migration batch failed; retrying");
                    rb.set_error(&e);
                    conn = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MOVER_MAX_BACKOFF);
                }
            }
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------
// The request path while arcs move
// ---------------------------------------------------------------------------------------------

/// A client's requests that must run one after another: those touching a moving arc, and any
/// it sends while one of those is outstanding (so its pipeline keeps its order).
#[derive(Debug)]
pub struct Chain {
    tx: mpsc::UnboundedSender<Job>,
    pending: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Job {
    args: Vec<Bytes>,
    raw: Bytes,
    spec: &'static CommandSpec,
    cmd: u16,
    start: Instant,
    who: Who,
    reply: oneshot::Sender<UpResult>,
}

impl Chain {
    fn busy(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }
}

/// The request path's hook: returns the slot if this request goes through the client's chain
/// (it touches a moving arc, or the chain is busy), `None` for the usual fast path.
#[allow(clippy::too_many_arguments)]
pub fn divert(
    router: &Router,
    topo: &Topology,
    s: &mut Session,
    spec: &'static CommandSpec,
    plan: &Plan,
    args: &[Bytes],
    raw: &Bytes,
    cmd: u16,
    start: Instant,
) -> Option<Slot> {
    if !matches!(
        plan,
        Plan::Forward(_) | Plan::Split { .. } | Plan::FanOut(_) | Plan::Scan
    ) {
        return None;
    }
    let busy = s.chain.as_ref().is_some_and(Chain::busy);
    if !busy {
        if topo.migrating.is_empty() {
            return None;
        }
        let moving = matches!(plan, Plan::Forward(_) | Plan::Split { .. })
            && spec
                .key_positions(args.len())
                .any(|i| topo.migrating.is_migrating(key_hash(&args[i])));
        if !moving {
            return None;
        }
    }
    let Some(me) = router.me() else {
        return Some(Slot::error("ERR the router is shutting down"));
    };
    let who = s.who();
    let chain = s.chain.get_or_insert_with(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(chain_task(me, rx, pending.clone()));
        Chain { tx, pending }
    });
    let (tx, rx) = oneshot::channel();
    chain.pending.fetch_add(1, Ordering::AcqRel);
    let job = Job {
        args: args.to_vec(),
        raw: raw.clone(),
        spec,
        cmd,
        start,
        who,
        reply: tx,
    };
    if let Err(mpsc::error::SendError(job)) = chain.tx.send(job) {
        chain.pending.fetch_sub(1, Ordering::AcqRel);
        let _ = job
            .reply
            .send(Ok(error_bytes("ERR the router is shutting down")));
    }
    Some(Slot::Forward(rx))
}

/// Most requests a chain runs as one batch (a client's pipeline is usually shorter).
const CHAIN_BATCH: usize = 256;

async fn chain_task(
    router: Arc<Router>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    pending: Arc<AtomicUsize>,
) {
    let mut batch = Vec::new();
    while let Some(job) = rx.recv().await {
        batch.push(job);
        while batch.len() < CHAIN_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let replies = run_batch(&router, &batch).await;
        for (job, reply) in batch.drain(..).zip(replies) {
            let _ = job.reply.send(Ok(reply));
            pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Runs the requests a client queued on its chain as one pipeline: first every key of theirs
/// in a moving arc is moved (one `MIGRATE-KEYS` per source and target, in parallel), then
/// all of them are sent in order, as the fast path sends a pipeline, and answered in order.
/// One at a time, each paid two round trips after the previous one's reply. A request
/// refused with `-WRONGSHARD` is run again alone ([`run_job`]); if moving the keys fails,
/// every request runs alone, so only those whose keys could not be moved fail.
async fn run_batch(router: &Arc<Router>, jobs: &[Job]) -> Vec<Bytes> {
    let topo = router.topology.load_full();
    if topo.shards.is_empty() {
        return jobs
            .iter()
            .map(|_| error_bytes("ERR the ring has no shards"))
            .collect();
    }
    let plans: Vec<Plan> = jobs
        .iter()
        .map(|j| route::plan(j.spec, &j.args, |k| topo.owner(k).unwrap_or(0)))
        .collect();
    // Each key once (a batch may touch one key many times), in the order first seen.
    let mut seen = std::collections::HashSet::new();
    let mut keys: Vec<&Bytes> = Vec::new();
    for (job, plan) in jobs.iter().zip(&plans) {
        if matches!(plan, Plan::Forward(_) | Plan::Split { .. }) {
            for i in job.spec.key_positions(job.args.len()) {
                if seen.insert(&job.args[i]) {
                    keys.push(&job.args[i]);
                }
            }
        }
    }
    if let Some(first) = jobs.first() {
        if migrate_keys(router, &topo, &keys, first.who, first.start)
            .await
            .is_err()
        {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(run_job(router, job).await);
            }
            return out;
        }
    }
    let mut slots: Vec<Slot> = jobs
        .iter()
        .zip(plans)
        .map(|(job, plan)| send_job(&topo, job, plan))
        .collect();
    let mut out = Vec::with_capacity(jobs.len());
    for (job, slot) in jobs.iter().zip(&mut slots) {
        let bytes = std::future::poll_fn(|cx| slot.poll_take(cx)).await;
        if wrongshard(&bytes).is_some() {
            out.push(run_job(router, job).await);
        } else {
            out.push(bytes);
        }
    }
    out
}

fn send_job(topo: &Topology, job: &Job, plan: Plan) -> Slot {
    send::send_plan(
        topo,
        job.who,
        plan,
        &job.args,
        job.raw.clone(),
        job.cmd,
        job.start,
    )
}

/// Runs one request: moves its keys out of moving arcs at their sources, sends it to the
/// primaries, waits for the reply; on `-WRONGSHARD` catches up and retries once.
async fn run_job(router: &Arc<Router>, job: &Job) -> Bytes {
    let mut retried = false;
    loop {
        let topo = router.topology.load_full();
        if topo.shards.is_empty() {
            return error_bytes("ERR the ring has no shards");
        }
        let plan = route::plan(job.spec, &job.args, |k| topo.owner(k).unwrap_or(0));
        if matches!(plan, Plan::Forward(_) | Plan::Split { .. }) {
            let keys: Vec<&Bytes> = job
                .spec
                .key_positions(job.args.len())
                .map(|i| &job.args[i])
                .collect();
            if let Err(e) = migrate_keys(router, &topo, &keys, job.who, job.start).await {
                return error_bytes(&e);
            }
        }
        let mut slot = send_job(&topo, job, plan);
        let bytes = std::future::poll_fn(|cx| slot.poll_take(cx)).await;
        let Some((epoch, owner)) = wrongshard(&bytes) else {
            return bytes;
        };
        let mine = topo.ring.epoch();
        if retried {
            return tryagain(epoch, &owner, mine);
        }
        retried = true;
        router
            .rebalance
            .counters
            .wrongshard_retries
            .fetch_add(1, Ordering::Relaxed);
        if epoch > mine {
            // This router's own change may be publishing that epoch: wait for it briefly.
            let deadline = Instant::now() + CATCH_UP_WAIT;
            while router.topology.load().ring.epoch() < epoch && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if router.topology.load().ring.epoch() < epoch {
                return tryagain(epoch, &owner, mine);
            }
        } else if epoch < mine {
            // The node missed a push: give every node behind the current ring, then retry.
            sync_nodes(router).await;
        } else {
            // Same epoch, different ring: only another router can have pushed it. Pushing ours
            // would replace it on that node; refuse instead.
            return tryagain(epoch, &owner, mine);
        }
    }
}

/// Sends `MIGRATE-KEYS <target> key...` to each source holding some of `keys` in a moving
/// arc, in parallel, and waits for every reply.
async fn migrate_keys(
    router: &Router,
    topo: &Topology,
    keys: &[&Bytes],
    who: Who,
    start: Instant,
) -> Result<(), String> {
    let mut groups: Vec<(&str, &str, Vec<&Bytes>)> = Vec::new();
    for &key in keys {
        if let Some(m) = topo.migrating.find(key_hash(key)) {
            match groups
                .iter_mut()
                .find(|(f, t, _)| *f == m.from && *t == m.to)
            {
                Some(g) => g.2.push(key),
                None => groups.push((&m.from, &m.to, vec![key])),
            }
        }
    }
    if groups.is_empty() {
        return Ok(());
    }
    let cmd = migrate_keys_index();
    let mut waits = Vec::with_capacity(groups.len());
    for (from, to, keys) in &groups {
        let (Some(src), Some(dst)) = (topo.shard_by_id(from), topo.shard_by_id(to)) else {
            return Err(format!(
                "TRYAGAIN shard '{from}' or '{to}' of a moving arc is gone"
            ));
        };
        // On the side lanes: the source answers only after its own round trip to the target,
        // and the clients sharing a regular connection with this request must not wait on it.
        let (req, rx) = UpRequest::new(migrate_keys_request(&dst.primary, keys), cmd, start);
        src.pool.send_slow(who.io, who.id, req);
        waits.push((src.id.clone(), dst.id.clone(), rx));
    }
    let rb = &router.rebalance;
    for (from, to, rx) in waits {
        let reply = match rx.await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => return Err(e.reply_text()),
            Err(_) => return Err("ERR the shard connection closed before replying".into()),
        };
        rb.counters
            .request_migrations
            .fetch_add(1, Ordering::Relaxed);
        match reply.first() {
            Some(b':') => {
                let n = std::str::from_utf8(&reply[1..])
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                rb.counters
                    .request_keys_moved
                    .fetch_add(n, Ordering::Relaxed);
            }
            _ => {
                let text = String::from_utf8_lossy(reply.get(1..).unwrap_or_default());
                return Err(format!(
                    "TRYAGAIN moving the key from shard '{from}' to '{to}' failed: {}",
                    text.trim_end()
                ));
            }
        }
    }
    Ok(())
}

/// `-WRONGSHARD <epoch> <owner>` → `(epoch, owner)`.
fn wrongshard(reply: &[u8]) -> Option<(Epoch, String)> {
    let rest = reply.strip_prefix(b"-WRONGSHARD ")?;
    let text = std::str::from_utf8(rest).ok()?.trim_end();
    let (epoch, owner) = text.split_once(' ')?;
    Some((epoch.parse().ok()?, owner.to_string()))
}

fn tryagain(epoch: Epoch, owner: &str, mine: Epoch) -> Bytes {
    error_bytes(&format!(
        "TRYAGAIN the node says shard '{owner}' owns this key at epoch {epoch}; this router routes by epoch {mine} (another router changed membership: give this one the same change)"
    ))
}

// ---------------------------------------------------------------------------------------------
// Admin tools' side (`ringcache ctl`, SIGHUP reload)
// ---------------------------------------------------------------------------------------------

/// The value of `name` in a `RING STATUS` (or INFO) text of `key:value` lines.
pub fn status_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The text of a `RING STATUS` reply.
pub fn reply_text(r: &Reply) -> Option<String> {
    as_text(r)
}

/// One shard as `RING NODES` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: String,
    pub primary: String,
    pub replicas: Vec<String>,
    pub weight: u32,
}

/// The shards of a `RING NODES` reply (maps in RESP3, flat name/value arrays in RESP2).
pub fn parse_ring_nodes(r: &Reply) -> Vec<NodeEntry> {
    let Reply::Array(items) = r else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let pairs: Vec<(String, &Reply)> = match item {
                Reply::Map(m) => m
                    .iter()
                    .filter_map(|(k, v)| Some((as_text(k)?, v)))
                    .collect(),
                Reply::Array(flat) => flat
                    .chunks(2)
                    .filter_map(|kv| Some((as_text(kv.first()?)?, kv.get(1)?)))
                    .collect(),
                _ => return None,
            };
            let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
            let replicas = match get("replicas") {
                Some(Reply::Array(v) | Reply::Set(v)) => v.iter().filter_map(as_text).collect(),
                _ => Vec::new(),
            };
            Some(NodeEntry {
                id: get("id").and_then(as_text)?,
                primary: get("primary").and_then(as_text)?,
                replicas,
                weight: get("weight")
                    .and_then(as_int)
                    .and_then(|w| u32::try_from(w).ok())
                    .unwrap_or(1),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// RING JOIN / LEAVE / CANCEL argument parsing
// ---------------------------------------------------------------------------------------------

/// `RING JOIN <id> <primary> [<replica> ...] [WEIGHT w]`.
pub fn parse_join(a: &[Bytes]) -> Result<Change, String> {
    if a.len() < 4 {
        return Err("ERR wrong number of arguments for 'ring|join' command".into());
    }
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let id = text(&a[2]);
    check_id(&id)?;
    let primary = text(&a[3]);
    check_addr(&primary)?;
    let mut replicas = Vec::new();
    let mut weight = 1;
    let mut i = 4;
    while i < a.len() {
        if a[i].eq_ignore_ascii_case(b"weight") {
            let w = a
                .get(i + 1)
                .and_then(|w| std::str::from_utf8(w).ok())
                .and_then(|w| w.parse::<u32>().ok())
                .filter(|w| (1..=1000).contains(w))
                .ok_or("ERR WEIGHT must be an integer from 1 to 1000")?;
            weight = w;
            i += 2;
            continue;
        }
        let r = text(&a[i]);
        check_addr(&r)?;
        replicas.push(r);
        i += 1;
    }
    Ok(Change::Join {
        id,
        primary,
        replicas,
        weight,
    })
}

fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "ERR invalid shard id '{id}': use 1 to 64 letters, digits and -_.:"
        ))
    }
}

fn check_addr(addr: &str) -> Result<(), String> {
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) && !host.contains(' ')
    });
    if ok {
        Ok(())
    } else {
        Err(format!("ERR '{addr}' is not HOST:PORT"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ringcache_protocol::ring::DEFAULT_VNODES;

    fn ring(ids: &[&str]) -> Ring {
        Ring::new(
            3,
            DEFAULT_VNODES,
            ids.iter().map(|id| ShardSpec::new(*id, 1)).collect(),
        )
        .unwrap()
    }

    fn join(id: &str) -> Change {
        Change::Join {
            id: id.into(),
            primary: "127.0.0.1:1".into(),
            replicas: vec![],
            weight: 1,
        }
    }

    fn hashes(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(|i| key_hash(format!("key:{i}").as_bytes()))
    }

    #[test]
    fn a_join_moves_about_a_quarter_only_to_the_new_shard() {
        let cur = ring(&["a", "b", "c"]);
        let plan = plan_change(&cur, &join("d"), 0).unwrap();
        assert_eq!(plan.next.epoch(), 4);
        assert!(plan.moves.iter().all(|m| m.to == "d"));
        assert_eq!(plan.gainers, vec!["d".to_string()]);
        let map = MigrationMap::new(plan.moves.clone(), Vec::new());
        let n = 40_000;
        let mut moved = 0;
        for h in hashes(n) {
            let before = cur.owner(h).unwrap().id.clone();
            let after = plan.next.owner(h).unwrap().id.clone();
            // A key changes owner exactly when a moving arc holds it, and only to the new shard.
            match map.find(h) {
                Some(m) => {
                    assert_eq!((m.from.as_str(), m.to.as_str()), (before.as_str(), "d"));
                    assert_eq!(after, "d");
                    moved += 1;
                }
                None => assert_eq!(before, after),
            }
        }
        let share = moved as f64 / n as f64;
        assert!((0.225..0.275).contains(&share), "moved {share}");
    }

    #[test]
    fn a_leave_moves_only_from_the_leaving_shard() {
        let cur = ring(&["a", "b", "c", "d"]);
        let plan = plan_change(&cur, &Change::Leave { id: "b".into() }, 0).unwrap();
        assert!(plan.moves.iter().all(|m| m.from == "b" && m.to != "b"));
        let mut gainers = plan.gainers.clone();
        gainers.sort();
        assert_eq!(gainers, ["a", "c", "d"]);
        let map = MigrationMap::new(plan.moves.clone(), Vec::new());
        for h in hashes(20_000) {
            let before = cur.owner(h).unwrap().id.clone();
            let after = plan.next.owner(h).unwrap().id.clone();
            assert_eq!(map.find(h).is_some(), before == "b");
            assert_eq!(before != after, before == "b");
        }
        assert!(plan_change(&ring(&["a"]), &Change::Leave { id: "a".into() }, 0).is_err());
        assert!(plan_change(&cur, &Change::Leave { id: "x".into() }, 0).is_err());
        assert!(plan_change(&cur, &join("a"), 0).is_err());
    }

    #[test]
    fn the_epoch_never_goes_below_the_nodes() {
        let cur = ring(&["a", "b"]);
        assert_eq!(plan_change(&cur, &join("c"), 0).unwrap().next.epoch(), 4);
        assert_eq!(plan_change(&cur, &join("c"), 9).unwrap().next.epoch(), 9);
    }

    #[test]
    fn a_rollback_moves_the_same_arcs_back() {
        let old = ring(&["a", "b", "c"]);
        let fwd = plan_change(&old, &join("d"), 0).unwrap();
        let back = plan_rollback(&fwd.next, old.shards()).unwrap();
        assert_eq!(back.next.epoch(), fwd.next.epoch() + 1);
        // Same arcs, reversed; the shards getting their arcs back are published first.
        let mut f: Vec<_> = fwd
            .moves
            .iter()
            .map(|m| (m.arc.start, m.arc.end, m.to.clone(), m.from.clone()))
            .collect();
        let mut b: Vec<_> = back
            .moves
            .iter()
            .map(|m| (m.arc.start, m.arc.end, m.from.clone(), m.to.clone()))
            .collect();
        f.sort();
        b.sort();
        assert_eq!(f, b);
        assert_eq!(back.gainers, ["a", "b", "c"]);
        // Every hash has exactly one owner in the rolled-back ring: the original one.
        for h in hashes(5_000) {
            assert_eq!(old.owner(h), back.next.owner(h));
        }
    }

    #[test]
    fn lookups_cover_wrapping_arcs_and_skip_done_ones() {
        let m = |start, end, from: &str| Move {
            arc: RingArc { start, end },
            from: from.into(),
            to: "z".into(),
        };
        let map = MigrationMap::new(
            vec![m(10, 20, "a"), m(u64::MAX - 5, 3, "b"), m(100, 200, "c")],
            Vec::new(),
        );
        assert_eq!(map.find(15).map(|a| a.from.as_str()), Some("a"));
        assert!(map.find(10).is_none());
        assert_eq!(map.find(20).map(|a| a.from.as_str()), Some("a"));
        assert_eq!(map.find(2).map(|a| a.from.as_str()), Some("b"));
        assert_eq!(map.find(u64::MAX).map(|a| a.from.as_str()), Some("b"));
        assert!(map.find(50).is_none());
        assert_eq!(map.find(150).map(|a| a.from.as_str()), Some("c"));
        assert_eq!(map.groups.len(), 3);
        let c = map.arcs.iter().position(|a| a.from == "c").unwrap();
        map.mark_done(c);
        map.mark_done(c);
        assert_eq!(map.live(), 2);
        assert!(map.find(150).is_none());
        let migrating = Migrating::new(map);
        assert!(!migrating.is_empty());
        assert!(migrating.is_migrating(15));
        assert!(!Migrating::default().is_migrating(15));
        let whole = MigrationMap::new(vec![m(7, 7, "a")], Vec::new());
        assert!(whole.find(7).is_some() && whole.find(0).is_some());
    }

    /// Paused clock: the sleeps advance it, nothing waits for real.
    #[tokio::test(start_paused = true)]
    async fn the_mover_keeps_to_its_rate() {
        let start = tokio::time::Instant::now();
        let pace = Pace::new(1000);
        for _ in 0..4 {
            pace.after(250).await;
        }
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let free = Pace::new(0);
        let start = tokio::time::Instant::now();
        free.after(1_000_000).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[test]
    fn topology_set_names_every_shard() {
        let r = ring(&["a", "b"]);
        let args: Vec<String> = topology_set(&r, None, "b")
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(
            args,
            ["TOPOLOGY", "SET", "3", "b", "2048", "a", "1", "b", "1"]
        );
    }

    #[test]
    fn wrongshard_replies_parse() {
        assert_eq!(
            wrongshard(b"-WRONGSHARD 7 d\r\n"),
            Some((7, "d".to_string()))
        );
        assert_eq!(wrongshard(b"-ERR nope\r\n"), None);
        assert_eq!(wrongshard(b"+OK\r\n"), None);
        assert!(tryagain(7, "d", 6).starts_with(b"-TRYAGAIN "));
    }

    #[test]
    fn join_arguments() {
        let a =
            |w: &[&str]| -> Vec<Bytes> { w.iter().map(|s| Bytes::from(s.to_string())).collect() };
        assert_eq!(
            parse_join(&a(&["RING", "JOIN", "d", "h:1", "h:2", "WEIGHT", "2"])).unwrap(),
            Change::Join {
                id: "d".into(),
                primary: "h:1".into(),
                replicas: vec!["h:2".into()],
                weight: 2
            }
        );
        assert!(parse_join(&a(&["RING", "JOIN", "d"])).is_err());
        assert!(parse_join(&a(&["RING", "JOIN", "d", "nope"])).is_err());
        assert!(parse_join(&a(&["RING", "JOIN", "d d", "h:1"])).is_err());
        assert!(parse_join(&a(&["RING", "JOIN", "d", "h:1", "WEIGHT", "0"])).is_err());
    }

    #[test]
    fn progress_text_has_the_fields_tools_poll() {
        let now = Instant::now();
        let p = Progress {
            what: "join d".into(),
            state: "moving",
            epoch: 5,
            started: now,
            finished: None,
            moves: vec![MoveProgress {
                from: "a".into(),
                to: "d".into(),
                arcs_total: 10,
                arcs_done: 4,
                keys: 100,
                bytes: 5000,
                estimate: Some(250),
                started: now,
                finished: None,
            }],
            last_error: None,
        };
        let mut out = String::new();
        p.write(&mut out, "");
        for want in [
            "change:join d\r\n",
            "state:moving\r\n",
            "arcs_done:4\r\n",
            "arcs_total:10\r\n",
            "keys_moved:100\r\n",
            "keys_remaining:150\r\n",
            "move0:from=a,to=d,arcs_done=4,arcs_total=10,keys=100,bytes=5000,remaining=150,",
        ] {
            assert!(out.contains(want), "{want:?} not in {out}");
        }
    }
}
