//! Connections from the router to a shard: a few multiplexed TCP connections per backend, each
//! carrying many clients' requests.
//!
//! Each connection is one task owning the socket and a FIFO of requests in flight. Clients hand it
//! `(request bytes, reply sender)` over an unbounded channel (each client bounds its own
//! outstanding requests); the task drains everything queued into one write, reads replies as
//! they come, measures them with [`FrameScanner`] and answers the oldest request in flight with
//! the exact reply bytes. A client always uses the same connection of a shard, so its requests
//! to that shard run in the order it sent them.
//!
//! While a write of many requests has had no reply yet, what arrives is held for the next write,
//! sent when the first reply comes back: a few requests go out at once, and under load the node
//! reads (and the kernel carries) a few large batches instead of many small ones.
//!
//! Failure is prompt, never a hang: a refused or timed-out connect, a broken connection, or a
//! reply slower than `request_timeout` fails every request in flight on that connection with an
//! error naming the shard; while the backend stays down new requests fail at once, and the task
//! reconnects with backoff.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_client::LinkSpec;
use ringcache_protocol::resp::encode_request;
use ringcache_protocol::transport::{Stream, Transport};
use ringcache_protocol::Protocol;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::frame::{self, FrameScanner};
use crate::io_threads::IoThreads;
use crate::key_prefix::{KeyPrefix, ReplyFix};
use crate::shard_metrics::ShardMetrics;

/// Why an upstream request failed. Always carries the shard id and address, so the error a client
/// sees says which shard is in trouble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    pub shard: Arc<str>,
    pub addr: Arc<str>,
    pub kind: UpstreamErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Could not connect (refused, unreachable, connect timeout, name not resolved).
    Connect(Arc<str>),
    /// The connection broke with the request in flight; it may or may not have run.
    Lost(Arc<str>),
    /// No reply within the request timeout; the connection was dropped.
    Timeout(Duration),
    /// The backend sent something that is not RESP.
    Protocol(Arc<str>),
    /// The backend refused `HELLO 3`, so RESP3 clients cannot use it.
    NoResp3(Arc<str>),
    /// The backend refused the router's `AUTH` ([router] node_user / node_password).
    Auth(Arc<str>),
    /// The router is shutting down or the shard left the ring.
    Stopped,
}

impl UpstreamError {
    /// Whether trying again later may succeed (everything but a protocol mismatch).
    pub fn retryable(&self) -> bool {
        !matches!(
            self.kind,
            UpstreamErrorKind::Protocol(_) | UpstreamErrorKind::NoResp3(_)
        )
    }

    /// The backend could not be reached or dropped the connection: the request got no reply.
    pub fn connection_lost(&self) -> bool {
        matches!(
            self.kind,
            UpstreamErrorKind::Connect(_) | UpstreamErrorKind::Lost(_)
        )
    }

    /// The error reply a client gets (without the leading `-`).
    pub fn reply_text(&self) -> String {
        let (shard, addr) = (&self.shard, &self.addr);
        match &self.kind {
            UpstreamErrorKind::Connect(why) => {
                format!("ERR shard '{shard}' ({addr}) unavailable: {why}")
            }
            UpstreamErrorKind::Lost(why) => {
                format!("ERR shard '{shard}' ({addr}) unavailable: connection lost ({why})")
            }
            UpstreamErrorKind::Timeout(t) => format!(
                "ERR shard '{shard}' ({addr}) timed out: no reply within {} ms",
                t.as_millis()
            ),
            UpstreamErrorKind::Protocol(why) => {
                format!("ERR shard '{shard}' ({addr}) sent an invalid reply: {why}")
            }
            UpstreamErrorKind::NoResp3(why) => {
                format!("ERR shard '{shard}' ({addr}) does not speak RESP3: {why}")
            }
            UpstreamErrorKind::Auth(why) => format!(
                "ERR shard '{shard}' ({addr}) unavailable: the node refused the router's credentials ({why})"
            ),
            UpstreamErrorKind::Stopped => {
                format!("ERR shard '{shard}' ({addr}) unavailable: the router is shutting down")
            }
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reply_text())
    }
}

impl std::error::Error for UpstreamError {}

/// An upstream's answer: the reply's exact bytes, or why there is none.
pub type UpResult = Result<Bytes, UpstreamError>;

/// One request for an upstream connection.
#[derive(Debug)]
pub struct UpRequest {
    /// Exactly one RESP request.
    pub raw: Bytes,
    pub reply: oneshot::Sender<UpResult>,
    /// Metrics index of the command.
    pub cmd: u16,
    /// When the client's request arrived (latency and request timeout count from here).
    pub start: Instant,
    /// Counts the request against a replica's outstanding requests until it is answered.
    pub outstanding: Option<Outstanding>,
    /// A script: it may run past `request_timeout` (a busy node still answers it), so its
    /// connection waits for it instead of giving it and every request behind it up.
    pub patient: bool,
    /// Gives the reply the client's key names back (a `remove_prefix` pool's node).
    pub fix: Option<Box<ReplyFix>>,
}

impl UpRequest {
    /// A request for `raw` and the receiver of its reply.
    pub fn new(raw: Bytes, cmd: u16, start: Instant) -> (UpRequest, oneshot::Receiver<UpResult>) {
        let (reply, rx) = oneshot::channel();
        let req = UpRequest {
            raw,
            reply,
            cmd,
            start,
            outstanding: None,
            patient: false,
            fix: None,
        };
        (req, rx)
    }

    /// The same request for a script, which its connection waits for past the request timeout.
    pub fn patient(mut self) -> UpRequest {
        self.patient = true;
        self
    }
}

/// One outstanding request on a backend: increments on creation, decrements when dropped, which
/// happens once the request is answered or failed, wherever that is.
#[derive(Debug)]
pub struct Outstanding(Arc<std::sync::atomic::AtomicUsize>);

impl Outstanding {
    pub fn new(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Outstanding {
        counter.fetch_add(1, Relaxed);
        Outstanding(counter.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Timeouts, sizes and credentials of a pool.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Connections per IO thread and protocol.
    pub connections: usize,
    /// What each connection sends before its first request.
    pub link: LinkSpec,
    /// The prefix this pool's nodes hold keys without (a `remove_prefix` route's pool).
    pub keys: Option<Arc<KeyPrefix>>,
}

/// What one shard's connections share: identity, settings, state and metrics.
#[derive(Debug)]
struct PoolShared {
    shard: Arc<str>,
    addr: Arc<str>,
    settings: UpstreamSettings,
    connected: AtomicUsize,
    last_error: Mutex<Option<String>>,
    metrics: Arc<ShardMetrics>,
    stop: watch::Receiver<bool>,
}

impl PoolShared {
    fn error(&self, kind: UpstreamErrorKind) -> UpstreamError {
        UpstreamError {
            shard: self.shard.clone(),
            addr: self.addr.clone(),
            kind,
        }
    }

    fn set_last_error(&self, e: Option<&UpstreamError>) {
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        *last = e.map(UpstreamError::reply_text);
    }
}

/// The multiplexed connections to one backend. Each IO thread has its own: `connections`
/// speaking RESP2, and as many speaking RESP3 (opened on first use by a RESP3 client there), so
/// replies are forwarded unchanged whatever protocol a client chose.
#[derive(Debug)]
pub struct UpstreamPool {
    shared: Arc<PoolShared>,
    per_io: Vec<IoConns>,
}

/// One IO thread's connections to a backend.
#[derive(Debug)]
struct IoConns {
    handle: tokio::runtime::Handle,
    resp2: Vec<mpsc::UnboundedSender<UpRequest>>,
    resp3: OnceLock<Vec<mpsc::UnboundedSender<UpRequest>>>,
    /// Side lanes for requests the node answers only after a round trip of its own
    /// (`MIGRATE-KEYS`): opened on first use, so such a request never holds up the clients
    /// whose requests share a connection in `resp2`.
    slow: OnceLock<Vec<mpsc::UnboundedSender<UpRequest>>>,
}

/// Side lanes per IO thread and shard (see [`IoConns::slow`]): several, so that concurrent
/// slow requests of different clients do not queue behind each other either.
const SLOW_LANES: usize = 4;

/// Connection health as RING NODES reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolStatus {
    Up,
    Down,
    Connecting,
}

impl PoolStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolStatus::Up => "up",
            PoolStatus::Down => "down",
            PoolStatus::Connecting => "connecting",
        }
    }
}

impl UpstreamPool {
    /// Starts the RESP2 connections to `addr` on every IO thread.
    pub fn start(
        shard: &str,
        addr: &str,
        settings: UpstreamSettings,
        metrics: Arc<ShardMetrics>,
        stop: watch::Receiver<bool>,
        io: &IoThreads,
    ) -> UpstreamPool {
        let shared = Arc::new(PoolShared {
            shard: Arc::from(shard),
            addr: Arc::from(addr),
            settings,
            connected: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            metrics,
            stop,
        });
        let per_io = (0..io.len())
            .map(|i| {
                let handle = io.handle(i).clone();
                IoConns {
                    resp2: spawn_connections(&shared, Protocol::Resp2, &handle, i, None),
                    resp3: OnceLock::new(),
                    slow: OnceLock::new(),
                    handle,
                }
            })
            .collect();
        UpstreamPool { shared, per_io }
    }

    pub fn shard(&self) -> &str {
        &self.shared.shard
    }

    /// The prefix this backend holds keys without, if any (see `crate::key_prefix`).
    pub fn keys(&self) -> Option<&Arc<KeyPrefix>> {
        self.shared.settings.keys.as_ref()
    }

    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Connections currently open (every IO thread, both protocols).
    pub fn connected(&self) -> usize {
        self.shared.connected.load(Relaxed)
    }

    pub fn status(&self) -> PoolStatus {
        if self.connected() > 0 {
            PoolStatus::Up
        } else if self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            PoolStatus::Down
        } else {
            PoolStatus::Connecting
        }
    }

    /// Opens connections of one client's own to this backend, with the pool's settings.
    pub fn dialer(&self) -> Dialer {
        Dialer(self.shared.clone())
    }

    /// The last connection error, if the backend is not reachable now.
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Queues `req` on IO thread `io`'s connection `client_id % connections` for `proto`: a
    /// client always uses the same connection of a shard, so its requests there keep their order.
    pub fn send(&self, io: usize, proto: Protocol, client_id: u64, req: UpRequest) {
        self.send_on(io, proto, client_id, req, false);
    }

    /// Like [`send`](Self::send), on a side lane (RESP2) kept for requests the node answers
    /// only after a round trip of its own, like `MIGRATE-KEYS`.
    pub fn send_slow(&self, io: usize, client_id: u64, req: UpRequest) {
        self.send_on(io, Protocol::Resp2, client_id, req, true);
    }

    /// Opens the side lanes on every IO thread now and sends `raw` on each (replies ignored):
    /// a change's first `MIGRATE-KEYS` then finds the lanes connected, and `raw` (a keyless
    /// `MIGRATE-KEYS <target>`) has the node connect to the target from each of its threads.
    pub fn warm_slow_lanes(&self, raw: &Bytes, cmd: u16) {
        for (io, mine) in self.per_io.iter().enumerate() {
            for lane in self.slow_lanes(mine, io) {
                let _ = lane.send(UpRequest::new(raw.clone(), cmd, Instant::now()).0);
            }
        }
    }

    /// IO thread `io`'s side lanes, started on first use.
    fn slow_lanes<'a>(
        &self,
        mine: &'a IoConns,
        io: usize,
    ) -> &'a [mpsc::UnboundedSender<UpRequest>] {
        mine.slow.get_or_init(|| {
            spawn_connections(
                &self.shared,
                Protocol::Resp2,
                &mine.handle,
                io,
                Some(SLOW_LANES),
            )
        })
    }

    fn send_on(&self, io: usize, proto: Protocol, client_id: u64, req: UpRequest, slow: bool) {
        let req = match &self.shared.settings.keys {
            Some(keys) => renamed(keys, req),
            None => req,
        };
        let Some(mine) = self.per_io.get(io) else {
            let _ = req
                .reply
                .send(Err(self.shared.error(UpstreamErrorKind::Stopped)));
            return;
        };
        let conns: &[_] = match (slow, proto) {
            (true, _) => self.slow_lanes(mine, io),
            (false, Protocol::Resp2) => &mine.resp2,
            (false, Protocol::Resp3) => mine.resp3.get_or_init(|| {
                spawn_connections(&self.shared, Protocol::Resp3, &mine.handle, io, None)
            }),
        };
        let at = (client_id % conns.len().max(1) as u64) as usize;
        let Some(conn) = conns.get(at) else {
            let _ = req
                .reply
                .send(Err(self.shared.error(UpstreamErrorKind::Stopped)));
            return;
        };
        if let Err(mpsc::error::SendError(req)) = conn.send(req) {
            let _ = req
                .reply
                .send(Err(self.shared.error(UpstreamErrorKind::Stopped)));
        }
    }
}

/// Starts `lanes` connections (default: the pool's setting) on `handle`.
fn spawn_connections(
    shared: &Arc<PoolShared>,
    proto: Protocol,
    handle: &tokio::runtime::Handle,
    io: usize,
    lanes: Option<usize>,
) -> Vec<mpsc::UnboundedSender<UpRequest>> {
    (0..lanes.unwrap_or(shared.settings.connections).max(1))
        .map(|i| {
            let (tx, rx) = mpsc::unbounded_channel();
            let span = tracing::debug_span!(
                "upstream",
                shard = %shared.shard,
                addr = %shared.addr,
                io,
                conn = i,
                resp = proto.number()
            );
            handle.spawn(connection_task(shared.clone(), proto, rx).instrument(span));
            tx
        })
        .collect()
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Requests taken from the channel per wakeup.
const BATCH: usize = 512;
/// Stop taking requests while this much is unwritten (the backend is not reading).
const MAX_UNWRITTEN: usize = 4 << 20;
const READ_CHUNK: usize = 16 * 1024;
/// Requests held for the next write go out at once past this many bytes.
const HOLD_MAX: usize = 64 * 1024;
/// Requests on their way, unanswered, before new ones are held for the next write.
const HOLD_BEHIND: usize = 16;

/// Describes an I/O error the way an operator reads it (`connection refused`), not `os error 111`.
fn describe(e: &io::Error) -> String {
    if e.raw_os_error().is_some() {
        e.kind().to_string()
    } else {
        e.to_string()
    }
}

/// Connects, serves until the connection breaks, and reconnects with backoff, until the pool is
/// dropped or the router stops.
async fn connection_task(
    shared: Arc<PoolShared>,
    proto: Protocol,
    mut rx: mpsc::UnboundedReceiver<UpRequest>,
) {
    let mut stop = shared.stop.clone();
    let mut backoff = MIN_BACKOFF;
    loop {
        if *stop.borrow() {
            break;
        }
        let attempt = tokio::select! {
            r = connect(&shared, proto) => r,
            _ = stop.changed() => break,
        };
        let failure = match attempt {
            Ok(sock) => {
                tracing::debug!("connected");
                backoff = MIN_BACKOFF;
                shared.connected.fetch_add(1, Relaxed);
                shared.set_last_error(None);
                // Monomorphic either way: a plain link pays nothing for TLS being possible.
                let end = match sock {
                    Stream::Plain(s) => serve(&shared, s, &mut rx, &mut stop).await,
                    Stream::Tls(t) => serve(&shared, t, &mut rx, &mut stop).await,
                };
                shared.connected.fetch_sub(1, Relaxed);
                match end {
                    End::Done => return,
                    End::Stopped => break,
                    End::Broken(e) => e,
                }
            }
            Err(e) => e,
        };
        tracing::debug!(error = %failure, "upstream unavailable");
        shared.set_last_error(Some(&failure));
        // Until the next attempt, requests fail at once instead of waiting on a dead backend.
        let retry_at = tokio::time::Instant::now() + backoff;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        let mut queued = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                n = rx.recv_many(&mut queued, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    for req in queued.drain(..) {
                        record(&shared, req.cmd, req.start, true);
                        let _ = req.reply.send(Err(failure.clone()));
                    }
                }
                _ = tokio::time::sleep_until(retry_at) => break,
            }
        }
    }
    // Stopping: whatever is still queued gets an answer, not a dropped channel.
    rx.close();
    while let Some(req) = rx.recv().await {
        let _ = req
            .reply
            .send(Err(shared.error(UpstreamErrorKind::Stopped)));
    }
}

fn record(shared: &PoolShared, cmd: u16, start: Instant, error: bool) {
    shared.metrics.observe(cmd, start.elapsed(), error);
}

/// Opens a connection (resolving the address afresh, so a restarted container is found) and, for
/// RESP3, switches it with `HELLO 3`.
async fn connect(shared: &PoolShared, proto: Protocol) -> Result<Stream, UpstreamError> {
    let timeout = shared.settings.connect_timeout;
    let fail = |why: String| shared.error(UpstreamErrorKind::Connect(Arc::from(why)));
    let sock = match tokio::time::timeout(timeout, TcpStream::connect(&*shared.addr)).await {
        Err(_) => {
            return Err(fail(format!(
                "connect timed out after {} ms",
                timeout.as_millis()
            )))
        }
        Ok(Err(e)) => return Err(fail(describe(&e))),
        Ok(Ok(sock)) => sock,
    };
    sock.set_nodelay(true).map_err(|e| fail(describe(&e)))?;
    let mut sock = match &shared.settings.link.tls {
        None => Stream::Plain(sock),
        Some(tls) => match tokio::time::timeout(timeout, tls.connect(sock, &shared.addr)).await {
            Err(_) => return Err(fail("TLS handshake timed out".into())),
            Ok(Err(e)) => return Err(fail(format!("TLS handshake: {e}"))),
            Ok(Ok(s)) => Stream::Tls(s),
        },
    };
    if let Some(auth) = &shared.settings.link.auth {
        let mut req = BytesMut::new();
        encode_request(&mut req, auth.auth_args());
        match tokio::time::timeout(timeout, handshake(&mut sock, req)).await {
            Err(_) => return Err(fail("AUTH timed out".into())),
            Ok(Err(HelloError::Refused(why))) => {
                return Err(shared.error(UpstreamErrorKind::Auth(Arc::from(why))))
            }
            Ok(Err(e)) => return Err(e.into_upstream(shared)),
            Ok(Ok(())) => {}
        }
    }
    if proto == Protocol::Resp3 {
        let hello = BytesMut::from(&b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"[..]);
        match tokio::time::timeout(timeout, handshake(&mut sock, hello)).await {
            Err(_) => return Err(fail("HELLO 3 timed out".into())),
            Ok(Err(e)) => return Err(e.into_upstream(shared)),
            Ok(Ok(())) => {}
        }
    }
    Ok(sock)
}

/// Connects to one backend outside its pool (`crate::dedicated`), as the pool connects.
#[derive(Debug, Clone)]
pub struct Dialer(Arc<PoolShared>);

impl Dialer {
    /// A connection speaking `proto` (HELLO 3 sent for RESP3).
    pub async fn connect(&self, proto: Protocol) -> Result<Stream, UpstreamError> {
        connect(&self.0, proto).await
    }

    /// An error naming this backend.
    pub fn error(&self, kind: UpstreamErrorKind) -> UpstreamError {
        self.0.error(kind)
    }

    pub fn shard(&self) -> &str {
        &self.0.shard
    }

    /// The prefix this backend holds keys without, if any (see `crate::key_prefix`).
    pub fn keys(&self) -> Option<&Arc<KeyPrefix>> {
        self.0.settings.keys.as_ref()
    }

    /// One request on a connection of its own, opened and closed for it (rare requests that
    /// must not queue behind others: CLIENT UNBLOCK).
    pub async fn call_once(&self, raw: Bytes) -> UpResult {
        let lost = |e: io::Error| self.error(UpstreamErrorKind::Lost(Arc::from(describe(&e))));
        let mut sock = self.connect(Protocol::Resp2).await?;
        sock.write_all(&raw).await.map_err(lost)?;
        let mut buf = BytesMut::new();
        let mut scanner = FrameScanner::default();
        let timeout = self.0.settings.request_timeout;
        let read = async {
            loop {
                match scanner.next(&buf) {
                    Ok(Some(f)) => return Ok(buf.split_to(f.len).freeze()),
                    Ok(None) => {}
                    Err(e) => return Err(self.error(UpstreamErrorKind::Protocol(Arc::from(e.0)))),
                }
                match sock.read_some(&mut buf).await {
                    Ok(0) => return Err(lost(io::ErrorKind::UnexpectedEof.into())),
                    Ok(_) => {}
                    Err(e) => return Err(lost(e)),
                }
            }
        };
        tokio::time::timeout(timeout, read)
            .await
            .unwrap_or_else(|_| Err(self.error(UpstreamErrorKind::Timeout(timeout))))
    }
}

enum HelloError {
    Io(io::Error),
    Refused(String),
    Invalid(&'static str),
}

impl HelloError {
    fn into_upstream(self, shared: &PoolShared) -> UpstreamError {
        shared.error(match self {
            HelloError::Io(e) => UpstreamErrorKind::Connect(Arc::from(describe(&e))),
            HelloError::Refused(why) => UpstreamErrorKind::NoResp3(Arc::from(why)),
            HelloError::Invalid(why) => UpstreamErrorKind::Protocol(Arc::from(why)),
        })
    }
}

/// Sends one handshake request (`AUTH`, `HELLO 3`) and reads its one reply.
async fn handshake(sock: &mut Stream, mut hello: BytesMut) -> Result<(), HelloError> {
    while !hello.is_empty() || sock.pending_out() {
        sock.tcp().writable().await.map_err(HelloError::Io)?;
        sock.write_now(&mut hello).map_err(HelloError::Io)?;
    }
    let mut buf = BytesMut::with_capacity(1024);
    let mut scanner = FrameScanner::default();
    loop {
        // Reads before waiting: TLS may hold decrypted bytes the socket no longer signals.
        match sock.read_now(&mut buf) {
            Ok(0) => {
                return Err(HelloError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the handshake",
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sock.tcp().readable().await.map_err(HelloError::Io)?;
                continue;
            }
            Err(e) => return Err(HelloError::Io(e)),
        }
        match scanner.next(&buf) {
            Ok(Some(f)) => {
                let raw = &buf[..f.len];
                if let Some(text) = frame::error_text(raw) {
                    return Err(HelloError::Refused(
                        String::from_utf8_lossy(text).into_owned(),
                    ));
                }
                if f.len != buf.len() {
                    return Err(HelloError::Invalid("extra bytes after the HELLO reply"));
                }
                return Ok(());
            }
            Ok(None) => {}
            Err(e) => return Err(HelloError::Invalid(e.0)),
        }
    }
}

enum End {
    /// Every client handle is gone and nothing is in flight.
    Done,
    Stopped,
    Broken(UpstreamError),
}

struct InFlight {
    reply: oneshot::Sender<UpResult>,
    cmd: u16,
    start: Instant,
    patient: bool,
    fix: Option<Box<ReplyFix>>,
}

/// `req` with the key names this pool's nodes hold (see `crate::key_prefix`).
fn renamed(keys: &KeyPrefix, mut req: UpRequest) -> UpRequest {
    if let Some((raw, fix)) = keys.request(&req.raw) {
        req.raw = raw;
        req.fix = fix.map(Box::new);
    }
    req
}

/// Runs one connected socket: writes queued requests in batches, matches replies in order.
async fn serve<T: Transport>(
    shared: &PoolShared,
    mut sock: T,
    rx: &mut mpsc::UnboundedReceiver<UpRequest>,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    // Both taken when bytes are to be written or read, given back once they are: an idle link
    // holds no buffer.
    let mut out = BytesMut::new();
    let mut inbuf = BytesMut::new();
    let mut scanner = FrameScanner::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut open = true;
    // `awaiting`: a write went out and no reply has come back since. Behind HOLD_BEHIND or more
    // such requests, what arrives is held in `out` (`holding`) and goes with the next write,
    // once a reply shows the node read the last one.
    let mut awaiting = false;
    let mut holding = false;
    let timeout = shared.settings.request_timeout;
    // Checking the oldest request a few times per timeout costs no timer per request.
    let mut ticker = tokio::time::interval((timeout / 4).max(Duration::from_millis(5)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lost = |why: String| shared.error(UpstreamErrorKind::Lost(Arc::from(why)));

    let end = loop {
        if !open && inflight.is_empty() && out.is_empty() {
            break End::Done;
        }
        tokio::select! {
            biased;
            r = sock.tcp().readable() => {
                if let Err(e) = r {
                    break End::Broken(lost(describe(&e)));
                }
                let before = inflight.len();
                match read_replies(shared, &mut sock, &mut inbuf, &mut scanner, &mut inflight) {
                    Ok(()) => {}
                    Err(e) => break End::Broken(e),
                }
                if inflight.len() < before {
                    awaiting = false;
                    if holding {
                        holding = false;
                        awaiting = true;
                        if let Err(e) = sock.write_now(&mut out) {
                            break End::Broken(lost(describe(&e)));
                        }
                    }
                }
                if inbuf.is_empty() && inflight.is_empty() {
                    inbuf = BytesMut::new();
                    if out.is_empty() {
                        out = BytesMut::new();
                    }
                }
            }
            n = rx.recv_many(&mut batch, BATCH), if open && out.len() < MAX_UNWRITTEN => {
                if n == 0 {
                    open = false;
                    continue;
                }
                // Bytes the socket did not take yet go first, held or not.
                let unwritten = !out.is_empty() && !holding;
                let on_its_way = inflight.len();
                for req in batch.drain(..) {
                    out.extend_from_slice(&req.raw);
                    inflight.push_back(InFlight {
                        reply: req.reply,
                        cmd: req.cmd,
                        start: req.start,
                        patient: req.patient,
                        fix: req.fix,
                    });
                }
                // Only behind a batch big enough to keep the node busy: with a few requests
                // on their way, holding adds their round trip to the next ones' latency and
                // saves little (measured: -15% GET throughput with 8 clients).
                let hold = holding || (awaiting && !unwritten && on_its_way >= HOLD_BEHIND);
                if hold && out.len() < HOLD_MAX {
                    holding = true;
                    continue;
                }
                holding = false;
                awaiting = true;
                // Write at once: usually the whole batch fits the socket and no wakeup is needed.
                if let Err(e) = sock.write_now(&mut out) {
                    break End::Broken(lost(describe(&e)));
                }
            }
            r = sock.tcp().writable(), if (!out.is_empty() && !holding) || sock.pending_out() => {
                holding = false;
                if let Err(e) = r.and_then(|()| sock.write_now(&mut out)) {
                    break End::Broken(lost(describe(&e)));
                }
            }
            _ = ticker.tick(), if !inflight.is_empty() => {
                if inflight.front().is_some_and(|f| !f.patient && f.start.elapsed() > timeout) {
                    tracing::debug!(in_flight = inflight.len(), "request timed out; dropping the connection");
                    break End::Broken(shared.error(UpstreamErrorKind::Timeout(timeout)));
                }
            }
            _ = stop.changed() => break End::Stopped,
        }
    };
    let error = match &end {
        End::Broken(e) => e.clone(),
        _ => shared.error(UpstreamErrorKind::Stopped),
    };
    for f in inflight.drain(..) {
        record(shared, f.cmd, f.start, true);
        let _ = f.reply.send(Err(error.clone()));
    }
    end
}

/// Reads what the socket has and answers every complete reply, oldest request first.
fn read_replies<T: Transport>(
    shared: &PoolShared,
    sock: &mut T,
    inbuf: &mut BytesMut,
    scanner: &mut FrameScanner,
    inflight: &mut VecDeque<InFlight>,
) -> Result<(), UpstreamError> {
    let lost = |why: String| shared.error(UpstreamErrorKind::Lost(Arc::from(why)));
    loop {
        if inbuf.capacity() - inbuf.len() < READ_CHUNK / 4 {
            inbuf.reserve(READ_CHUNK);
        }
        match sock.read_now(inbuf) {
            Ok(0) => return Err(lost("closed by the shard".into())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(lost(describe(&e))),
        }
        // A full read may mean more is waiting; a short one means the socket is drained, so
        // clear the readiness without another recv (tokio's own `poll_read` does the same).
        if T::SHORT_READ_DRAINS && inbuf.capacity() > inbuf.len() {
            let _ = sock.tcp().try_io(tokio::io::Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
            break;
        }
    }
    let now = Instant::now();
    loop {
        let frame = match scanner.next(inbuf) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(shared.error(UpstreamErrorKind::Protocol(Arc::from(e.0))));
            }
        };
        let raw = inbuf.split_to(frame.len).freeze();
        if frame.push {
            // RESP3 out-of-band data (e.g. invalidation) answers no request.
            continue;
        }
        let Some(f) = inflight.pop_front() else {
            return Err(shared.error(UpstreamErrorKind::Protocol(Arc::from(
                "a reply to no request",
            ))));
        };
        shared.metrics.observe(
            f.cmd,
            now.saturating_duration_since(f.start),
            frame::is_error(&raw),
        );
        let raw = match (&f.fix, &shared.settings.keys) {
            (Some(fix), Some(keys)) => keys.reply(fix, raw),
            _ => raw,
        };
        let _ = f.reply.send(Ok(raw));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn err(kind: UpstreamErrorKind) -> UpstreamError {
        UpstreamError {
            shard: Arc::from("b"),
            addr: Arc::from("127.0.0.1:7002"),
            kind,
        }
    }

    #[test]
    fn error_texts_name_the_shard() {
        assert_eq!(
            err(UpstreamErrorKind::Connect(Arc::from("connection refused"))).reply_text(),
            "ERR shard 'b' (127.0.0.1:7002) unavailable: connection refused"
        );
        assert_eq!(
            err(UpstreamErrorKind::Timeout(Duration::from_millis(2000))).reply_text(),
            "ERR shard 'b' (127.0.0.1:7002) timed out: no reply within 2000 ms"
        );
        assert!(err(UpstreamErrorKind::Lost(Arc::from("x"))).retryable());
        assert!(!err(UpstreamErrorKind::Protocol(Arc::from("x"))).retryable());
    }

    #[test]
    fn io_errors_read_like_english() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(describe(&e), "connection refused");
    }
}
