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

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_protocol::hash::BUCKETS;
use ringcache_protocol::resp::encode_request;
use ringcache_protocol::table::{flags, CommandSpec};
use ringcache_protocol::{Limits, Protocol, Reply, RequestDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use ringcache_client::Client;

use crate::clients::{ClientHandle, NodeClient};
use crate::state::replication::{LinkState, ReplicaLink};
use crate::state::session::{Flow, Session};
use crate::state::Shared;
use crate::store::{lock, now_ms, Entry, Value};

/// Writes queued for one replica before it counts as too far behind (it is dropped and resyncs).
const LINK_QUEUE: usize = 262_144;
const HEARTBEAT: Duration = Duration::from_secs(1);
const RECONNECT_BACKOFF: Duration = Duration::from_millis(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on each step of the handshake (a primary busy snapshotting others still answers in time).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A primary silent for this long is considered gone; the replica reconnects.
const PRIMARY_SILENCE: Duration = Duration::from_secs(5);

/// Refuses writes on a replica (except from its primary's stream).
pub fn check_write(shared: &Shared, session: &Session, spec: &CommandSpec) -> Option<Reply> {
    if spec.has(flags::WRITE) && shared.repl.is_replica() && !session.from_primary {
        return Some(Reply::error(
            "READONLY You can't write against a read only replica.",
        ));
    }
    None
}

/// Queues a write for every replica. Called under the written keys' stripe locks, so writes to
/// one key reach replicas in the order they happened.
pub fn propagate(shared: &Shared, args: &[Bytes]) {
    if !shared.repl.has_replicas() {
        return;
    }
    let mut buf = BytesMut::new();
    encode_request(&mut buf, args.iter());
    shared.repl.queue(buf.freeze(), 1);
}

/// Sends `SET key value [PXAT deadline]`.
pub fn propagate_value(shared: &Shared, key: &[u8], value: &[u8], expire_at: Option<i64>) {
    if !shared.repl.has_replicas() {
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
    if !shared.repl.has_replicas() {
        return;
    }
    let mut buf = BytesMut::new();
    let n = restore_commands(&mut buf, &Bytes::copy_from_slice(key), entry);
    shared.repl.queue(buf.freeze(), n as u64);
}

/// Sends `PEXPIREAT key deadline` or `PERSIST key`.
pub fn propagate_expire(shared: &Shared, key: &[u8], expire_at: Option<i64>) {
    if !shared.repl.has_replicas() {
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
    if !shared.repl.has_replicas() {
        return;
    }
    propagate(
        shared,
        &[Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)],
    );
}

/// Makes this node a primary (REPLICAOF NO ONE), keeping its data.
pub fn promote(shared: &Shared) {
    if let Some(p) = shared.repl.become_primary() {
        tracing::info!(former_primary = %p, "promoted to primary");
    }
}

/// Makes this node a replica of `primary` (`host:port`) and starts following it.
pub fn follow(shared: Arc<Shared>, primary: String) {
    let generation = shared.repl.become_replica(&primary);
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
    shared.repl.is_current(generation)
}

async fn replica_task(shared: Arc<Shared>, primary: String, generation: u64) {
    while current(&shared, generation) {
        match sync_once(&shared, &primary, generation).await {
            Ok(()) => {}
            Err(e) => tracing::info!(%primary, error = %e, "replication link down; retrying"),
        }
        shared.repl.set_link(LinkState::Down);
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
    let mut link = Client::connect(primary, CONNECT_TIMEOUT)
        .await
        .map_err(|e| io_err(e.to_string()))?;
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
    link.send(&hello, HANDSHAKE_TIMEOUT)
        .await
        .map_err(|e| io_err(e.to_string()))?;
    shared.repl.set_link(LinkState::Syncing);

    // Replies to AUTH / REPLCONF, then the FULLRESYNC line.
    let (start_offset, start_writes) = loop {
        let reply = link
            .read(HANDSHAKE_TIMEOUT)
            .await
            .map_err(|e| io_err(format!("primary did not answer: {e}")))?
            .reply;
        let line = match reply {
            Reply::Error(e) => return Err(io_err(format!("primary refused: -{e}"))),
            Reply::StatusOwned(s) => s,
            _ => continue,
        };
        if let Some(rest) = line.strip_prefix("FULLRESYNC ") {
            let mut parts = rest.split_whitespace();
            let replid = parts.next().unwrap_or("").to_string();
            let offset: u64 = parts.next().and_then(|o| o.parse().ok()).unwrap_or(0);
            let writes: u64 = parts.next().and_then(|o| o.parse().ok()).unwrap_or(0);
            shared.repl.set_replid(replid);
            break (offset, writes);
        }
    };
    // From here on the link carries the primary's stream of commands, not replies.
    let (mut sock, mut inbuf) = link.into_parts();
    if !current(shared, generation) {
        return Ok(());
    }
    // A full resync replaces everything this node held.
    shared.store.clear();
    shared.repl.start_sync(start_offset, start_writes);
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
            let is_replconf = args
                .first()
                .is_some_and(|n| n.eq_ignore_ascii_case(b"replconf"));
            if is_replconf
                && args
                    .get(1)
                    .is_some_and(|s| s.eq_ignore_ascii_case(b"snapshot-end"))
            {
                snapshot_done = true;
            }
            (shared.apply)(shared, &mut session, &args);
            if snapshot_done && !is_replconf {
                shared.repl.applied(raw.len() as u64);
            }
        }
        args.clear();
        if !current(shared, generation) {
            return Ok(());
        }
        if last_ack.elapsed() >= HEARTBEAT {
            let mut ack = BytesMut::new();
            let off = shared.repl.offset().to_string();
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
            Ok(Ok(_)) => shared.repl.heard_from_primary(),
            Ok(Err(e)) => return Err(e),
            Err(_) if shared.repl.lag_ms() > PRIMARY_SILENCE.as_millis() as i64 => {
                return Err(io_err("primary silent"));
            }
            Err(_) => {}
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
    // From here on every write is queued for the link.
    let (start_offset, start_writes) = shared.repl.attach(link.clone());
    tracing::info!(replica = %addr, offset = start_offset, "replica attached; sending snapshot");
    let start = (start_offset, start_writes);
    let result = stream_to_replica(shared, &link, &mut rd, &mut wr, &mut rx, start).await;
    shared.repl.detach(&link);
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
    let replid = shared.repl.replid();
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
                let off = shared.repl.offset().to_string();
                let writes = shared.repl.writes().to_string();
                encode_request(&mut out, [&b"REPLCONF"[..], b"OFFSET", off.as_bytes(), writes.as_bytes()]);
                wr.write_all(&out).await?;
                out.clear();
            }
            n = rd.read_buf(&mut ack_buf) => {
                if n? == 0 {
                    return Ok(());
                }
                while let Ok(Some(_)) = ack_decoder.decode_into(&mut ack_buf, &mut ack_args) {
                    if ack_args.len() >= 3 && ack_args[0].eq_ignore_ascii_case(b"replconf") {
                        let v: u64 = std::str::from_utf8(&ack_args[2]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                        if ack_args[1].eq_ignore_ascii_case(b"ack") {
                            link.ack_offset.store(v, Relaxed);
                            link.last_ack_ms.store(now_ms(), Relaxed);
                        } else if ack_args[1].eq_ignore_ascii_case(b"listening-port") {
                            link.listening_port.store(v, Relaxed);
                        }
                    }
                }
                ack_args.clear();
            }
        }
    }
}
