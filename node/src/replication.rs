//! Replication: a primary streams its writes to replicas; a replica is read-only.
//!
//! A replica connects, sends `REPLCONF listening-port P` and `SYNC`. The primary answers
//! `+FULLRESYNC <replid> <offset>`, registers the link (from then on every write is queued for
//! it), sends a snapshot key by key (each key read under its stripe lock), `REPLCONF SNAPSHOT-END`,
//! then the queued writes and a heartbeat (`REPLCONF OFFSET <offset> <writes>`) every second.
//!
//! Every propagated write sets state rather than changes it: relative expiries become absolute
//! deadlines (`SET k v PXAT t`, `PEXPIREAT`), INCR/APPEND/HINCRBY become the resulting value. So a
//! write queued before the snapshot read its key and replayed after it leaves the same state, and
//! primary and replica agree on expiry whatever the delay.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_protocol::hash::BUCKETS;
use ringcache_protocol::resp::encode_request;
use ringcache_protocol::table::{flags, CommandSpec};
use ringcache_protocol::{Limits, Protocol, Reply, RequestDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::clients::{ClientHandle, NodeClient};
use crate::cmd::{dispatch, is, Ctx, Flow, Session};
use crate::server::Shared;
use crate::store::{lock, now_ms, Entry, Value};

/// Writes queued for one replica before it counts as too far behind (it is dropped and resyncs).
const LINK_QUEUE: usize = 262_144;
const HEARTBEAT: Duration = Duration::from_secs(1);
const RECONNECT_BACKOFF: Duration = Duration::from_millis(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A primary silent for this long is considered gone; the replica reconnects.
const PRIMARY_SILENCE: Duration = Duration::from_secs(5);

/// One replica attached to this primary.
struct ReplicaLink {
    addr: SocketAddr,
    listening_port: AtomicU64,
    tx: mpsc::Sender<Bytes>,
    ack_offset: AtomicU64,
    last_ack_ms: AtomicI64,
    broken: AtomicBool,
}

/// Where a replica is in talking to its primary.
const LINK_DOWN: u8 = 0;
const LINK_SYNCING: u8 = 1;
const LINK_UP: u8 = 2;

/// Replication state of a node.
pub struct Replication {
    /// The primary this node replicates from (`host:port`), if it is a replica.
    primary: Mutex<Option<String>>,
    is_replica: AtomicBool,
    /// Bumped on every REPLICAOF so the previous replication task stops.
    generation: AtomicU64,
    /// Primary: bytes of writes propagated. Replica: the primary's offset applied so far.
    offset: AtomicU64,
    /// Primary: writes propagated. Replica: writes applied (lost-write accounting on failover).
    writes: AtomicU64,
    /// Replica: the primary's offset and write count as last announced.
    primary_offset: AtomicU64,
    primary_writes: AtomicU64,
    last_io_ms: AtomicI64,
    link: AtomicU8,
    links: Mutex<Vec<Arc<ReplicaLink>>>,
    has_replicas: AtomicBool,
    replid: Mutex<String>,
}

impl Replication {
    pub fn new(run_id: &str) -> Self {
        Replication {
            primary: Mutex::new(None),
            is_replica: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            offset: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            primary_offset: AtomicU64::new(0),
            primary_writes: AtomicU64::new(0),
            last_io_ms: AtomicI64::new(0),
            link: AtomicU8::new(LINK_DOWN),
            links: Mutex::new(Vec::new()),
            has_replicas: AtomicBool::new(false),
            replid: Mutex::new(run_id.to_string()),
        }
    }

    pub fn is_replica(&self) -> bool {
        self.is_replica.load(Relaxed)
    }

    pub fn primary_addr(&self) -> Option<String> {
        lock(&self.primary).clone().map(|p| p.replacen(':', " ", 1))
    }

    /// Milliseconds since the primary was last heard from (replicas), for bounded-stale reads.
    pub fn lag_ms(&self) -> i64 {
        (now_ms() - self.last_io_ms.load(Relaxed)).max(0)
    }

    pub fn info(&self, _shared: &Shared, out: &mut String) {
        let offset = self.offset.load(Relaxed);
        if let Some(p) = lock(&self.primary).clone() {
            let (host, port) = p.rsplit_once(':').unwrap_or((p.as_str(), "0"));
            let status = match self.link.load(Relaxed) {
                LINK_UP => "up",
                _ => "down",
            };
            let _ = write!(
                out,
                "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\nmaster_link_status:{status}\r\nmaster_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\nslave_repl_offset:{offset}\r\nslave_read_only:1\r\nconnected_slaves:0\r\n",
                self.lag_ms() / 1000,
                u8::from(self.link.load(Relaxed) == LINK_SYNCING),
            );
        } else {
            let links = lock(&self.links);
            let _ = write!(out, "role:master\r\nconnected_slaves:{}\r\n", links.len());
            for (i, l) in links.iter().enumerate() {
                let _ = write!(
                    out,
                    "slave{i}:ip={},port={},state=online,offset={},lag={}\r\n",
                    l.addr.ip(),
                    l.listening_port.load(Relaxed),
                    l.ack_offset.load(Relaxed),
                    (now_ms() - l.last_ack_ms.load(Relaxed)).max(0) / 1000,
                );
            }
        }
        let primary_offset = if self.is_replica() {
            self.primary_offset.load(Relaxed).max(offset)
        } else {
            offset
        };
        let _ = write!(
            out,
            "master_replid:{}\r\nmaster_repl_offset:{primary_offset}\r\nringcache_repl_writes:{}\r\nringcache_repl_lag_bytes:{}\r\nringcache_repl_lag_ms:{}\r\n",
            lock(&self.replid),
            self.writes.load(Relaxed),
            primary_offset.saturating_sub(offset),
            if self.is_replica() { self.lag_ms() } else { 0 },
        );
    }
}

/// Refuses writes on a replica (except from its primary's stream).
pub fn check_write(ctx: &Ctx, spec: &CommandSpec) -> Option<Reply> {
    if spec.has(flags::WRITE) && ctx.shared.repl.is_replica() && !ctx.session.from_primary {
        return Some(Reply::error(
            "READONLY You can't write against a read only replica.",
        ));
    }
    None
}

/// Queues a write for every replica. Called under the written keys' stripe locks, so writes to
/// one key reach replicas in the order they happened.
pub fn propagate(shared: &Shared, args: &[Bytes]) {
    let repl = &shared.repl;
    if !repl.has_replicas.load(Relaxed) {
        return;
    }
    let mut buf = BytesMut::new();
    encode_request(&mut buf, args.iter());
    let msg = buf.freeze();
    let links = lock(&repl.links);
    repl.offset.fetch_add(msg.len() as u64, Relaxed);
    repl.writes.fetch_add(1, Relaxed);
    for l in links.iter() {
        if l.tx.try_send(msg.clone()).is_err() && !l.broken.swap(true, Relaxed) {
            tracing::warn!(replica = %l.addr, "replica too far behind; dropping it (it will resync)");
        }
    }
}

/// Sends `SET key value [PXAT deadline]`.
pub fn propagate_value(shared: &Shared, key: &[u8], value: &[u8], expire_at: Option<i64>) {
    if !shared.repl.has_replicas.load(Relaxed) {
        return;
    }
    propagate(shared, &set_command(key, value, expire_at));
}

fn set_command(key: &[u8], value: &[u8], expire_at: Option<i64>) -> Vec<Bytes> {
    let mut args = vec![
        Bytes::from_static(b"SET"),
        Bytes::copy_from_slice(key),
        Bytes::copy_from_slice(value),
    ];
    if let Some(t) = expire_at {
        args.push(Bytes::from_static(b"PXAT"));
        args.push(Bytes::from(t.to_string()));
    }
    args
}

/// Sends the commands that recreate `entry` at `key` (the value and its deadline).
pub fn propagate_entry(shared: &Shared, key: &[u8], entry: &Entry) {
    let repl = &shared.repl;
    if !repl.has_replicas.load(Relaxed) {
        return;
    }
    let mut buf = BytesMut::new();
    let n = restore_commands(&mut buf, &Bytes::copy_from_slice(key), entry);
    let msg = buf.freeze();
    let links = lock(&repl.links);
    repl.offset.fetch_add(msg.len() as u64, Relaxed);
    repl.writes.fetch_add(n as u64, Relaxed);
    for l in links.iter() {
        if l.tx.try_send(msg.clone()).is_err() && !l.broken.swap(true, Relaxed) {
            tracing::warn!(replica = %l.addr, "replica too far behind; dropping it (it will resync)");
        }
    }
}

/// Sends `PEXPIREAT key deadline` or `PERSIST key`.
pub fn propagate_expire(shared: &Shared, key: &[u8], expire_at: Option<i64>) {
    if !shared.repl.has_replicas.load(Relaxed) {
        return;
    }
    let key = Bytes::copy_from_slice(key);
    match expire_at {
        Some(t) => propagate(
            shared,
            &[
                Bytes::from_static(b"PEXPIREAT"),
                key,
                Bytes::from(t.to_string()),
            ],
        ),
        None => propagate(shared, &[Bytes::from_static(b"PERSIST"), key]),
    }
}

/// Sends `DEL key`.
pub fn propagate_del(shared: &Shared, key: &[u8]) {
    if !shared.repl.has_replicas.load(Relaxed) {
        return;
    }
    propagate(
        shared,
        &[Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)],
    );
}

/// ROLE, REPLICAOF / SLAVEOF, SYNC / PSYNC, REPLCONF.
pub fn command(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    let repl = &ctx.shared.repl;
    match spec.name {
        "role" => role(ctx),
        "replicaof" | "slaveof" => {
            if is(&a[1], "no") && is(&a[2], "one") {
                promote(ctx.shared);
                return Reply::OK;
            }
            let Ok(port) = std::str::from_utf8(&a[2]).unwrap_or("").parse::<u16>() else {
                return Reply::error("ERR Invalid master port");
            };
            let host = String::from_utf8_lossy(&a[1]).into_owned();
            let target = format!("{host}:{port}");
            if lock(&repl.primary).as_deref() == Some(target.as_str()) {
                return Reply::Status("OK Already connected to specified master");
            }
            follow(ctx.shared.self_arc(), target);
            Reply::OK
        }
        "sync" | "psync" => {
            if repl.is_replica() {
                // Chained replication is not supported: a replica's data may lag its primary.
                return Reply::error("ERR this node is a replica; sync from its primary");
            }
            ctx.session.is_replication_link = true;
            Reply::Nil
        }
        "replconf" => replconf(ctx, a),
        _ => Reply::error("ERR unknown replication command"),
    }
}

fn role(ctx: &Ctx) -> Reply {
    let repl = &ctx.shared.repl;
    if let Some(p) = lock(&repl.primary).clone() {
        let (host, port) = p.rsplit_once(':').unwrap_or((p.as_str(), "0"));
        let state = match repl.link.load(Relaxed) {
            LINK_UP => "connected",
            LINK_SYNCING => "sync",
            _ => "connect",
        };
        return Reply::Array(vec![
            Reply::bulk_str("slave"),
            Reply::bulk_str(host),
            Reply::Int(port.parse().unwrap_or(0)),
            Reply::bulk_str(state),
            Reply::Int(repl.offset.load(Relaxed) as i64),
        ]);
    }
    let replicas = lock(&repl.links)
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
        Reply::Int(repl.offset.load(Relaxed) as i64),
        Reply::Array(replicas),
    ])
}

fn replconf(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
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
            repl.primary_offset.store(num(2), Relaxed);
            repl.primary_writes.store(num(3), Relaxed);
            Reply::OK
        }
        b"listening-port" => {
            ctx.session.replica_port = u16::try_from(num(2)).ok();
            Reply::OK
        }
        b"snapshot-end" if ctx.session.from_primary => {
            repl.link.store(LINK_UP, Relaxed);
            tracing::info!(offset = num(2), "replica in sync with its primary");
            Reply::OK
        }
        _ => Reply::OK,
    }
}

/// Makes this node a primary (REPLICAOF NO ONE), keeping its data.
pub fn promote(shared: &Shared) {
    let repl = &shared.repl;
    let was = lock(&repl.primary).take();
    repl.generation.fetch_add(1, Relaxed);
    repl.is_replica.store(false, Relaxed);
    repl.link.store(LINK_DOWN, Relaxed);
    // A new history starts here; replicas of the old primary must resync from this one.
    *lock(&repl.replid) = format!("{:016x}{:024x}", now_ms(), rand::random::<u128>() >> 32);
    if let Some(p) = was {
        tracing::info!(former_primary = %p, "promoted to primary");
    }
}

/// Makes this node a replica of `primary` (`host:port`) and starts following it.
pub fn follow(shared: Arc<Shared>, primary: String) {
    let repl = &shared.repl;
    *lock(&repl.primary) = Some(primary.clone());
    repl.is_replica.store(true, Relaxed);
    repl.link.store(LINK_DOWN, Relaxed);
    let generation = repl.generation.fetch_add(1, Relaxed) + 1;
    // Replicas of this node (if it was a primary) must follow the new primary themselves.
    for l in lock(&repl.links).drain(..) {
        l.broken.store(true, Relaxed);
    }
    repl.has_replicas.store(false, Relaxed);
    tracing::info!(%primary, "following primary");
    tokio::spawn(replica_task(shared, primary, generation));
}

/// Starts following the primary given on the command line, if any.
pub fn start(shared: Arc<Shared>, _stop: tokio::sync::watch::Receiver<bool>) {
    let primary = shared.config().replica_of.clone();
    if let Some(p) = primary {
        follow(shared, p);
    }
}

fn current(shared: &Shared, generation: u64) -> bool {
    shared.repl.generation.load(Relaxed) == generation
}

async fn replica_task(shared: Arc<Shared>, primary: String, generation: u64) {
    while current(&shared, generation) {
        match sync_once(&shared, &primary, generation).await {
            Ok(()) => {}
            Err(e) => tracing::info!(%primary, error = %e, "replication link down; retrying"),
        }
        shared.repl.link.store(LINK_DOWN, Relaxed);
        tokio::time::sleep(RECONNECT_BACKOFF).await;
    }
}

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

/// A session for applying the primary's stream (writes allowed, replies discarded).
fn primary_session(shared: &Shared) -> Session {
    let addr: SocketAddr = ([127, 0, 0, 1], shared.port).into();
    Session {
        id: 0,
        proto: Protocol::Resp2,
        authenticated: true,
        client: Arc::new(ClientHandle::new(
            0,
            addr,
            addr,
            NodeClient {
                last_active_ms: AtomicI64::new(0),
            },
        )),
        flow: Flow::Continue,
        is_replication_link: false,
        replica_port: None,
        from_primary: true,
        last_cmd: "NULL",
        migration: None,
    }
}

async fn sync_once(shared: &Arc<Shared>, primary: &str, generation: u64) -> std::io::Result<()> {
    let mut sock = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(primary))
        .await
        .map_err(|_| io_err("connect timeout"))??;
    sock.set_nodelay(true)?;
    let mut hello = BytesMut::new();
    if let Some(pw) = shared.config().requirepass.clone() {
        encode_request(&mut hello, [&b"AUTH"[..], pw.as_bytes()]);
    }
    let port = shared.port.to_string();
    encode_request(
        &mut hello,
        [&b"REPLCONF"[..], b"listening-port", port.as_bytes()],
    );
    encode_request(&mut hello, [&b"SYNC"[..]]);
    sock.write_all(&hello).await?;
    shared.repl.link.store(LINK_SYNCING, Relaxed);

    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    // Replies to AUTH / REPLCONF, then the FULLRESYNC line.
    let (start_offset, start_writes) = loop {
        let line = read_line(&mut sock, &mut inbuf).await?;
        if let Some(rest) = line.strip_prefix("+FULLRESYNC ") {
            let mut parts = rest.split_whitespace();
            let replid = parts.next().unwrap_or("").to_string();
            let offset: u64 = parts.next().and_then(|o| o.parse().ok()).unwrap_or(0);
            let writes: u64 = parts.next().and_then(|o| o.parse().ok()).unwrap_or(0);
            *lock(&shared.repl.replid) = replid;
            break (offset, writes);
        }
        if line.starts_with('-') {
            return Err(io_err(format!("primary refused: {line}")));
        }
    };
    if !current(shared, generation) {
        return Ok(());
    }
    // A full resync replaces everything this node held.
    shared.store.clear();
    shared.repl.offset.store(start_offset, Relaxed);
    shared.repl.writes.store(start_writes, Relaxed);
    shared.repl.primary_offset.store(start_offset, Relaxed);
    shared.repl.primary_writes.store(start_writes, Relaxed);
    shared.repl.last_io_ms.store(now_ms(), Relaxed);
    tracing::info!(%primary, offset = start_offset, "full resync started");

    let limits = Limits {
        max_multibulk_len: i64::MAX,
        ..Limits::default()
    };
    let mut decoder = RequestDecoder::new(limits, true);
    let mut session = primary_session(shared);
    let mut args = Vec::new();
    let mut snapshot_done = false;
    let mut last_ack = Instant::now();
    loop {
        while let Some(raw) = decoder
            .decode_into(&mut inbuf, &mut args)
            .map_err(|e| io_err(e.to_string()))?
        {
            // After REPLICAOF NO ONE / a new primary, nothing more from this link may apply.
            if !current(shared, generation) {
                return Ok(());
            }
            let is_replconf = args.first().is_some_and(|n| is(n, "replconf"));
            if is_replconf && args.get(1).is_some_and(|s| is(s, "snapshot-end")) {
                snapshot_done = true;
            }
            let mut ctx = Ctx {
                shared,
                session: &mut session,
            };
            let _ = dispatch(&mut ctx, &args);
            if snapshot_done && !is_replconf {
                shared.repl.offset.fetch_add(raw.len() as u64, Relaxed);
                shared.repl.writes.fetch_add(1, Relaxed);
            }
        }
        args.clear();
        if !current(shared, generation) {
            return Ok(());
        }
        if last_ack.elapsed() >= HEARTBEAT {
            let mut ack = BytesMut::new();
            let off = shared.repl.offset.load(Relaxed).to_string();
            encode_request(&mut ack, [&b"REPLCONF"[..], b"ACK", off.as_bytes()]);
            sock.write_all(&ack).await?;
            last_ack = Instant::now();
        }
        if inbuf.capacity() - inbuf.len() < 16 * 1024 {
            inbuf.reserve(64 * 1024);
        }
        let n = tokio::time::timeout(HEARTBEAT, sock.read_buf(&mut inbuf)).await;
        match n {
            Ok(Ok(0)) => return Err(io_err("primary closed the link")),
            Ok(Ok(_)) => shared.repl.last_io_ms.store(now_ms(), Relaxed),
            Ok(Err(e)) => return Err(e),
            Err(_) if shared.repl.lag_ms() > PRIMARY_SILENCE.as_millis() as i64 => {
                return Err(io_err("primary silent"));
            }
            Err(_) => {}
        }
    }
}

/// Reads one `\r\n`-terminated line (a status or error reply).
async fn read_line(sock: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(i + 2);
            return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        if buf.len() > 64 * 1024 {
            return Err(io_err("reply line too long"));
        }
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read_buf(buf))
            .await
            .map_err(|_| io_err("primary did not answer"))??;
        if n == 0 {
            return Err(io_err("primary closed the link"));
        }
    }
}

/// Appends the commands that recreate `entry` at `key` elsewhere (a replica's snapshot, a
/// migration target); returns how many commands (so how many replies) that is.
pub fn restore_commands(out: &mut BytesMut, key: &Bytes, entry: &Entry) -> usize {
    match &entry.value {
        Value::Str(v) => {
            let args = set_command(key, v, entry.expire_at);
            encode_request(out, args.iter());
            1
        }
        Value::Hash(h) => {
            encode_request(out, [&b"DEL"[..], key]);
            let h = lock(h);
            let mut args: Vec<&[u8]> = vec![b"HSET", key];
            for (f, v) in h.iter() {
                args.push(f);
                args.push(v);
            }
            encode_request(out, args.iter());
            match entry.expire_at {
                Some(t) => {
                    let t = t.to_string();
                    encode_request(out, [&b"PEXPIREAT"[..], key, t.as_bytes()]);
                    3
                }
                None => 2,
            }
        }
    }
}

/// Serves a replica's link after SYNC: snapshot, then the write stream, until it goes away.
pub async fn serve_replica(
    shared: &Shared,
    sock: TcpStream,
    listening_port: Option<u16>,
) -> std::io::Result<()> {
    let addr = sock.peer_addr()?;
    let (mut rd, mut wr) = sock.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(LINK_QUEUE);
    let link = Arc::new(ReplicaLink {
        addr,
        listening_port: AtomicU64::new(u64::from(listening_port.unwrap_or(addr.port()))),
        tx,
        ack_offset: AtomicU64::new(0),
        last_ack_ms: AtomicI64::new(now_ms()),
        broken: AtomicBool::new(false),
    });
    let repl = &shared.repl;
    let (start_offset, start_writes) = {
        // Registered under the links lock: every write after this point is queued for the link.
        let mut links = lock(&repl.links);
        links.push(link.clone());
        repl.has_replicas.store(true, Relaxed);
        (repl.offset.load(Relaxed), repl.writes.load(Relaxed))
    };
    tracing::info!(replica = %addr, offset = start_offset, "replica attached; sending snapshot");
    let start = (start_offset, start_writes);
    let result = stream_to_replica(shared, &link, &mut rd, &mut wr, &mut rx, start).await;
    let mut links = lock(&repl.links);
    links.retain(|l| !Arc::ptr_eq(l, &link));
    repl.has_replicas.store(!links.is_empty(), Relaxed);
    tracing::info!(replica = %addr, "replica detached");
    result
}

async fn stream_to_replica(
    shared: &Shared,
    link: &ReplicaLink,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Bytes>,
    (start_offset, writes): (u64, u64),
) -> std::io::Result<()> {
    let replid = lock(&shared.repl.replid).clone();
    // The write count lets the replica's count line up with ours (lost-write accounting).
    wr.write_all(format!("+FULLRESYNC {replid} {start_offset} {writes}\r\n").as_bytes())
        .await?;
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut keys = 0u64;
    for bucket in 0..BUCKETS {
        for key in shared.store.bucket_keys(bucket) {
            let _g = shared.store.lock_key(&key);
            if let Some(entry) = shared.store.get(&key) {
                restore_commands(&mut out, &key, &entry);
                keys += 1;
            }
        }
        if out.len() >= 64 * 1024 {
            wr.write_all(&out).await?;
            out.clear();
        }
    }
    let off = start_offset.to_string();
    encode_request(
        &mut out,
        [&b"REPLCONF"[..], b"SNAPSHOT-END", off.as_bytes()],
    );
    wr.write_all(&out).await?;
    out.clear();
    tracing::info!(replica = %link.addr, keys, "snapshot sent; streaming writes");

    let mut ack_buf = BytesMut::with_capacity(1024);
    let mut ack_decoder = RequestDecoder::new(Limits::default(), true);
    let mut ack_args = Vec::new();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        if link.broken.load(Relaxed) {
            return Err(io_err("replica fell too far behind"));
        }
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return Ok(()) };
                out.extend_from_slice(&msg);
                // Batch whatever else is queued into the same write.
                while out.len() < 256 * 1024 {
                    match rx.try_recv() {
                        Ok(m) => out.extend_from_slice(&m),
                        Err(_) => break,
                    }
                }
                wr.write_all(&out).await?;
                out.clear();
            }
            _ = heartbeat.tick() => {
                let repl = &shared.repl;
                let off = repl.offset.load(Relaxed).to_string();
                let writes = repl.writes.load(Relaxed).to_string();
                encode_request(&mut out, [&b"REPLCONF"[..], b"OFFSET", off.as_bytes(), writes.as_bytes()]);
                wr.write_all(&out).await?;
                out.clear();
            }
            n = rd.read_buf(&mut ack_buf) => {
                if n? == 0 {
                    return Ok(());
                }
                while let Ok(Some(_)) = ack_decoder.decode_into(&mut ack_buf, &mut ack_args) {
                    if ack_args.len() >= 3 && is(&ack_args[0], "replconf") {
                        let v: u64 = std::str::from_utf8(&ack_args[2]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                        if is(&ack_args[1], "ack") {
                            link.ack_offset.store(v, Relaxed);
                            link.last_ack_ms.store(now_ms(), Relaxed);
                        } else if is(&ack_args[1], "listening-port") {
                            link.listening_port.store(v, Relaxed);
                        }
                    }
                }
                ack_args.clear();
            }
        }
    }
}
