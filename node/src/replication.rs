//! Replication: a primary streams its writes to replicas; a replica is read-only.
//!
//! A replica connects, sends `REPLCONF listening-port P` and `SYNC`. The primary answers
//! `+FULLRESYNC <replid> <offset> <writes>`, registers the link (from then on every write is
//! queued for it) and streams a snapshot bucket by bucket (`REPLCONF KEY <key> <deadline>
//! <payload>` per key, the payload a DUMP), then `REPLCONF SNAPSHOT-END`, and a heartbeat
//! (`REPLCONF OFFSET <offset> <writes>`) every second.
//!
//! The snapshot is consistent with the stream: a bucket's keys reach the link's queue exactly
//! once, under the bucket's lock, either by the snapshot walking to it or just before the first
//! write that touches it runs (`before_write`; the write follows it). So every write reaches the
//! replica after the state it applies to, and commands are propagated as they are (LPUSH,
//! INCR), not as the state they leave. A write whose buckets reached a snapshotting replica as
//! state instead (it attached between `before_write` and the write's propagation) goes as
//! `REPLCONF SKIP <bytes> <writes>`, so the replica's offset still counts it. Commands whose
//! replay would differ are rewritten by the commands themselves (relative deadlines made
//! absolute, random pops made explicit).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_protocol::hash::BUCKETS;
use ringcache_protocol::resp::encode_request;
use ringcache_protocol::table::{flags, CommandSpec};
use ringcache_protocol::transport::Transport;
use ringcache_protocol::{Limits, Reply, RequestDecoder};
use tokio::sync::mpsc;

use ringcache_client::Client;

use crate::clients::{ClientHandle, NodeClient};
use crate::keyspace::{now_ms, Bucket, Db};
use crate::state::replication::{LinkState, ReplicaLink};
use crate::state::session::Session;
use crate::state::Shared;

/// Writes queued for one replica before it counts as too far behind (it is dropped and resyncs).
const LINK_QUEUE: usize = 262_144;
const HEARTBEAT: Duration = Duration::from_secs(1);
const RECONNECT_BACKOFF: Duration = Duration::from_millis(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on each step of the handshake (a primary busy snapshotting others still answers in time).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A primary silent for this long is considered gone; the replica reconnects.
const PRIMARY_SILENCE: Duration = Duration::from_secs(5);

/// Refuses writes on a replica (except from its primary's stream), and on a primary short of
/// the good replicas `min-replicas-to-write` asks for.
pub fn check_write(shared: &Shared, session: &Session, spec: &CommandSpec) -> Option<Reply> {
    if !spec.has(flags::WRITE) {
        return None;
    }
    write_refusal(shared, session).map(Reply::error)
}

/// Why a write from `session` may not run now, if it may not (also asked by scripts, before
/// they start and at each write they make).
pub fn write_refusal(shared: &Shared, session: &Session) -> Option<&'static str> {
    if session.from_primary {
        return None;
    }
    if shared.repl.is_replica() {
        return Some("READONLY You can't write against a read only replica.");
    }
    if shared.repl.too_few_replicas() {
        return Some("NOREPLICAS Not enough good replicas to write.");
    }
    None
}

/// The commands that replay what `db`'s command did: the deletes of keys it found expired, then
/// the command's rewrite, or the command itself if it changed anything.
pub fn propagation(db: &mut Db<'_>, cmd: Option<(&CommandSpec, &[Bytes])>) -> Vec<Vec<Bytes>> {
    let e = &mut db.effects;
    let mut cmds = std::mem::take(&mut e.before);
    match (e.rewrite.take(), cmd) {
        (Some(r), _) => cmds.extend(r),
        (None, Some((spec, args))) if e.dirty > 0 && spec.is_write() => cmds.push(args.to_vec()),
        _ => {}
    }
    e.dirty = 0;
    cmds
}

/// Hands on what `db`'s command (if any) changed: its writes to the replicas and its touched
/// keys to WATCHers, both while its locks are still held; then releases them. The touched keys
/// (blocked clients may wait on them).
pub fn release(
    shared: &Shared,
    mut db: Db<'_>,
    cmd: Option<(&CommandSpec, &[Bytes])>,
) -> Vec<Bytes> {
    if shared.repl.has_replicas() {
        let cmds = propagation(&mut db, cmd);
        if !cmds.is_empty() {
            propagate(shared, &mut db, &cmds);
        }
    } else {
        // No one to send them to: spare every write copying its arguments.
        let e = &mut db.effects;
        e.before.clear();
        e.rewrite = None;
        e.dirty = 0;
    }
    let touched = std::mem::take(&mut db.effects.touched);
    if !touched.is_empty() {
        shared.watches.touch(&touched);
    }
    drop(db);
    touched
}

/// Before a write runs: replicas still taking their snapshot get the buckets it holds as they
/// are now, so the write replays on the state it found.
pub fn before_write(shared: &Shared, db: &mut Db<'_>) {
    for link in shared.repl.snapshotting() {
        for b in db.held_buckets() {
            if link.needs_bucket(b) {
                let msg = db.with_bucket(b, snapshot_bucket).unwrap_or_default();
                link.push_bucket(b, msg);
            }
        }
    }
}

/// Queues `cmds` for every replica, under the locks `db` holds, so writes to one key reach
/// replicas in the order they happened. A replica still taking its snapshot first gets the
/// buckets these writes touch (see the module docs).
pub fn propagate(shared: &Shared, db: &mut Db<'_>, cmds: &[Vec<Bytes>]) {
    let repl = &shared.repl;
    if !repl.has_replicas() {
        return;
    }
    let mut buf = BytesMut::new();
    for c in cmds {
        encode_request(&mut buf, c.iter());
    }
    let held = db.held_buckets();
    repl.queue(buf.freeze(), cmds.len() as u64, |link| {
        // A replica that attached after `before_write` looked: none of these buckets reached it
        // (the snapshot cannot read them while they are held), so their state now replaces
        // the commands. One that still lacks only some is a path that skipped `before_write`;
        // the commands then go too (right for the deletes such paths make).
        let needed: Vec<usize> = held
            .iter()
            .copied()
            .filter(|&b| link.needs_bucket(b))
            .collect();
        for &b in &needed {
            let msg = db.with_bucket(b, snapshot_bucket).unwrap_or_default();
            link.push_bucket(b, msg);
        }
        needed.is_empty() || needed.len() < held.len()
    });
}

/// Queues `DEL key` for the replicas (a key deleted under its bucket's lock outside any
/// command: active expiry).
pub fn propagate_expired(shared: &Shared, bucket: &Bucket, key: &[u8], now: i64) {
    let repl = &shared.repl;
    if !repl.has_replicas() {
        return;
    }
    let b = crate::keyspace::Place::of(key).bucket;
    let mut buf = BytesMut::new();
    encode_request(&mut buf, [&b"DEL"[..], key]);
    repl.queue(buf.freeze(), 1, |link| {
        // The bucket's state already lacks the key: it replaces the DEL.
        if link.needs_bucket(b) {
            link.push_bucket(b, snapshot_bucket(bucket, now));
            return false;
        }
        true
    });
}

/// A bucket's live keys as `REPLCONF KEY <key> <deadline or 0> <payload>` commands.
fn snapshot_bucket(bucket: &Bucket, now: i64) -> Bytes {
    let mut out = BytesMut::new();
    for e in bucket.iter() {
        if e.is_expired(now) {
            continue;
        }
        let deadline = e.deadline().unwrap_or(0).to_string();
        let payload = crate::dump::dump_entry(e);
        encode_request(
            &mut out,
            [
                &b"REPLCONF"[..],
                b"KEY",
                e.key(),
                deadline.as_bytes(),
                &payload,
            ],
        );
    }
    out.freeze()
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
    let client = Arc::new(ClientHandle::new(
        0,
        addr,
        addr,
        NodeClient {
            last_active_ms: AtomicI64::new(0),
            subscriptions: Default::default(),
        },
    ));
    let mut s = Session::new(0, client, true);
    s.from_primary = true;
    s
}

async fn sync_once(shared: &Arc<Shared>, primary: &str, generation: u64) -> std::io::Result<()> {
    let tls = shared.config().tls.for_replication().cloned();
    let mut link = Client::connect_with(primary, CONNECT_TIMEOUT, tls.as_ref())
        .await
        .map_err(|e| io_err(e.to_string()))?;
    let mut hello = BytesMut::new();
    if let Some(auth) = shared.config().peer_link().auth {
        encode_request(&mut hello, auth.auth_args());
    }
    // A TLS-only node (`--port 0`) is reached at its TLS port, as Redis announces it.
    let port = match shared.port {
        0 => shared.config().tls.port,
        p => p,
    }
    .to_string();
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
    shared.keyspace.clear();
    shared.repl.start_sync(start_offset, start_writes);
    tracing::info!(%primary, offset = start_offset, "full resync started");

    let limits = Limits {
        max_multibulk_len: i64::MAX,
        ..Limits::default()
    };
    let mut decoder = RequestDecoder::new(limits, true);
    let mut session = primary_session(shared);
    let mut args = Vec::new();
    let mut last_ack = Instant::now();
    let mut ack_now = false;
    loop {
        while let Some(raw) = decoder
            .decode_into(&mut inbuf, &mut args)
            .map_err(|e| io_err(e.to_string()))?
        {
            // After REPLICAOF NO ONE / a new primary, nothing more from this link may apply.
            if !current(shared, generation) {
                return Ok(());
            }
            // Snapshot keys and heartbeats are not writes: the offset counts writes only, as
            // the primary counts them.
            let is_replconf = args
                .first()
                .is_some_and(|n| n.eq_ignore_ascii_case(b"replconf"));
            // A client's WAIT on the primary asked: acknowledge at once, not at the heartbeat.
            if is_replconf
                && args
                    .get(1)
                    .is_some_and(|s| s.eq_ignore_ascii_case(b"getack"))
            {
                ack_now = true;
            }
            (shared.apply)(shared, &mut session, &args);
            if !is_replconf {
                shared.repl.applied(raw.len() as u64);
            }
        }
        args.clear();
        if inbuf.is_empty() {
            // Between bursts of the stream the link holds no buffer.
            inbuf = BytesMut::new();
        }
        if !current(shared, generation) {
            return Ok(());
        }
        if ack_now || last_ack.elapsed() >= HEARTBEAT {
            ack_now = false;
            let mut ack = BytesMut::new();
            let off = shared.repl.offset().to_string();
            encode_request(&mut ack, [&b"REPLCONF"[..], b"ACK", off.as_bytes()]);
            sock.write_all(&ack).await?;
            last_ack = Instant::now();
        }
        // Room is taken once the stream has bytes, so a quiet link waits without a buffer.
        let read = sock.read_some_in(&mut inbuf, 64 * 1024);
        let n = tokio::time::timeout(HEARTBEAT, read).await;
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

/// Serves a replica's link after SYNC: snapshot, then the write stream, until it goes away.
pub async fn serve_replica<T: Transport>(
    shared: &Shared,
    mut sock: T,
    listening_port: Option<u16>,
) -> std::io::Result<()> {
    let addr = sock.tcp().peer_addr()?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(LINK_QUEUE);
    let link = Arc::new(ReplicaLink::new(
        addr,
        listening_port.unwrap_or(addr.port()),
        tx,
    ));
    // From here on every write is queued for the link.
    shared.repl.snapshot_running(true);
    let (start_offset, start_writes) = shared.repl.attach(link.clone());
    tracing::info!(replica = %addr, offset = start_offset, "replica attached; sending snapshot");
    let producer = {
        let (shared, link) = (shared.self_arc(), link.clone());
        tokio::task::spawn_blocking(move || produce_snapshot(&shared, &link, start_offset))
    };
    let start = (start_offset, start_writes);
    let result = stream_to_replica(shared, &link, &mut sock, &mut rx, start).await;
    // A producer still walking stops at its next bucket.
    link.broken.store(true, Relaxed);
    let _ = producer.await;
    shared.repl.detach(&link);
    tracing::info!(replica = %addr, "replica detached");
    result
}

/// Bytes of snapshot queued ahead of the socket before the walk waits.
const SNAPSHOT_AHEAD: usize = 8 * 1024 * 1024;

/// Walks every bucket into the link's queue (those a write has not sent already), then
/// `REPLCONF SNAPSHOT-END`. Runs on a blocking thread: serializing big values is CPU work.
fn produce_snapshot(shared: &Shared, link: &ReplicaLink, start_offset: u64) {
    // Function libraries first (a replica's own are replaced); REPLCONF, as the snapshot's keys,
    // so the replica's offset counts only the write stream.
    let mut libs = BytesMut::new();
    encode_request(&mut libs, [&b"REPLCONF"[..], b"FUNCTION", b"FLUSH"]);
    for code in shared.scripts.library_codes() {
        encode_request(
            &mut libs,
            [&b"REPLCONF"[..], b"FUNCTION", b"LOAD", b"REPLACE", &code],
        );
    }
    link.send(libs.freeze());
    let mut keys = 0usize;
    for b in 0..BUCKETS {
        while link.queued_bytes.load(Relaxed) > SNAPSHOT_AHEAD {
            if link.broken.load(Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if link.broken.load(Relaxed) {
            shared.repl.snapshot_running(false);
            return;
        }
        let g = shared.keyspace.lock_bucket(b);
        if link.needs_bucket(b) {
            keys += g.len();
            link.push_bucket(b, snapshot_bucket(&g, now_ms()));
        }
    }
    link.snapshot_done();
    shared.repl.snapshot_running(false);
    let mut end = BytesMut::new();
    let off = start_offset.to_string();
    encode_request(
        &mut end,
        [&b"REPLCONF"[..], b"SNAPSHOT-END", off.as_bytes()],
    );
    link.send(end.freeze());
    tracing::info!(replica = %link.addr, keys, "snapshot queued; streaming writes");
}

async fn stream_to_replica<T: Transport>(
    shared: &Shared,
    link: &ReplicaLink,
    sock: &mut T,
    rx: &mut mpsc::Receiver<Bytes>,
    (start_offset, writes): (u64, u64),
) -> std::io::Result<()> {
    let replid = shared.repl.replid();
    // The write count lets the replica's count line up with ours (lost-write accounting).
    sock.write_all(format!("+FULLRESYNC {replid} {start_offset} {writes}\r\n").as_bytes())
        .await?;
    // Both taken when there is something to write or read, given back when the link goes quiet.
    let mut out = BytesMut::new();
    let mut ack_buf = BytesMut::new();
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
                sock.write_all(&out).await?;
                link.drained(out.len());
                out.clear();
                if rx.is_empty() {
                    out = BytesMut::new();
                }
            }
            _ = heartbeat.tick() => {
                // Heartbeats go out once the snapshot is sent: the replica's offset counts
                // from its end.
                if !link.is_snapshotting() {
                    let off = shared.repl.offset().to_string();
                    let writes = shared.repl.writes().to_string();
                    let mut hb = BytesMut::new();
                    encode_request(&mut hb, [&b"REPLCONF"[..], b"OFFSET", off.as_bytes(), writes.as_bytes()]);
                    link.send(hb.freeze());
                }
            }
            n = sock.read_some(&mut ack_buf) => {
                if n? == 0 {
                    return Ok(());
                }
                while let Ok(Some(_)) = ack_decoder.decode_into(&mut ack_buf, &mut ack_args) {
                    if ack_args.len() >= 3 && ack_args[0].eq_ignore_ascii_case(b"replconf") {
                        let v: u64 = std::str::from_utf8(&ack_args[2]).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                        if ack_args[1].eq_ignore_ascii_case(b"ack") {
                            link.ack_offset.store(v, Relaxed);
                            link.last_ack_ms.store(now_ms(), Relaxed);
                            shared.repl.acked.notify_waiters();
                        } else if ack_args[1].eq_ignore_ascii_case(b"listening-port") {
                            link.listening_port.store(v, Relaxed);
                        }
                    }
                }
                ack_args.clear();
                if ack_buf.is_empty() {
                    ack_buf = BytesMut::new();
                }
            }
        }
    }
}

/// Waits until `wait.replicas` replicas acknowledged `wait.offset` or its timeout passes, and
/// answers how many did (`None`: the client went away). Input the client sends meanwhile stays
/// buffered for after, as for a blocked command.
pub async fn wait_acks<T: Transport>(
    shared: &Shared,
    sock: &mut T,
    inbuf: &mut BytesMut,
    handle: &ClientHandle,
    wait: crate::state::session::ReplWait,
) -> Option<Reply> {
    let deadline = wait.timeout.map(|t| tokio::time::Instant::now() + t);
    let acked = async {
        loop {
            // Registered before counting, so an acknowledgement between the two is not missed.
            let acked = shared.repl.acked.notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            let n = shared.repl.acked_at(wait.offset);
            if n as u64 >= wait.replicas {
                return n;
            }
            let until = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = acked => {}
                () = until => return shared.repl.acked_at(wait.offset),
            }
        }
    };
    let n = crate::server::hold(sock, inbuf, handle, acked).await?;
    Some(Reply::Int(n as i64))
}
