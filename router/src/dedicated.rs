//! Connections of one client's own to a shard's primary. A transaction (WATCH … EXEC) and a
//! blocking command keep state in the node's connection, which the multiplexed upstream
//! connections share between clients, so each such client gets a connection to itself while it
//! needs one, bounded by `[router] max_dedicated_connections`.
//!
//! A link is a task owning one socket: it sends its client's requests one at a time and answers
//! each with the reply's exact bytes. The link ends (closing the socket, which ends the node's
//! transaction or blocked command) when its handle is dropped and its queue is empty, or when the
//! client stops waiting for a reply (it disconnected).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_protocol::transport::{Stream, Transport};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use crate::clients::Who;
use crate::frame::FrameScanner;
use crate::key_prefix::Queued;
use crate::shard::Shard;
use crate::state::Router;
use crate::upstream::{Dialer, UpResult, UpstreamError, UpstreamErrorKind};

/// A command no node knows: inside MULTI the node answers an error and EXEC then EXECABORT.
const NOT_QUEUED: &[u8] = b"*1\r\n$24\r\nRINGCACHE-KEYS-NOT-MOVED\r\n";

/// One request on a link.
struct Req {
    raw: Bytes,
    /// `None`: the reply is read and dropped (a transaction's MULTI replayed on a new link).
    reply: Option<oneshot::Sender<UpResult>>,
    /// Keys to bring to this shard first if their arc is moving (`MIGRATE-KEYS` at the source).
    keys: Vec<Bytes>,
    /// `None` for a blocking command: it may wait as long as its own timeout says.
    timeout: Option<Duration>,
    /// A command queued in MULTI: a `-WRONGSHARD` refusal is noted here (its epoch) and
    /// answered `QUEUED`, for EXEC to run the transaction where the keys went.
    moved: Option<Arc<AtomicU64>>,
}

/// A client's own connection to one shard (opened lazily by its task).
#[derive(Debug)]
pub struct Dedicated {
    /// Id of the shard it reaches.
    pub shard: String,
    tx: mpsc::UnboundedSender<Req>,
    dialer: Dialer,
    /// The node's id for this connection (CLIENT ID), once learned (0 before).
    pub node_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Req").field("len", &self.raw.len()).finish()
    }
}

/// The error a client gets when every dedicated connection is taken.
pub fn limit_error(max: usize) -> String {
    format!(
        "ERR max number of dedicated connections reached ({max}, [router] max_dedicated_connections): transactions and blocking commands each hold one while they run"
    )
}

impl Dedicated {
    /// A link to `shard`'s primary speaking `proto`, or the limit's error text.
    pub fn open(router: &Router, shard: &Shard, who: Who) -> Result<Dedicated, String> {
        let permit = router
            .dedicated
            .clone()
            .try_acquire_owned()
            .map_err(|_| limit_error(router.config.max_dedicated_connections))?;
        let me = router
            .me()
            .ok_or_else(|| "ERR the router is shutting down".to_string())?;
        let dialer = shard.pool.dialer();
        let (tx, rx) = mpsc::unbounded_channel();
        let node_id = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(me, dialer.clone(), who, rx, permit, node_id.clone()));
        Ok(Dedicated {
            shard: shard.id.clone(),
            tx,
            dialer,
            node_id,
        })
    }

    /// The shard's connection, for requests about this link (CLIENT UNBLOCK of its client).
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Sends `raw` after moving `keys` here if their arc is moving; the receiver gets the reply.
    pub fn send(
        &self,
        raw: Bytes,
        keys: Vec<Bytes>,
        timeout: Option<Duration>,
    ) -> oneshot::Receiver<UpResult> {
        self.send_in_multi(raw, keys, timeout, None)
    }

    /// Like [`send`](Self::send) for a command queued in MULTI (see `Req::moved`).
    pub fn send_in_multi(
        &self,
        raw: Bytes,
        keys: Vec<Bytes>,
        timeout: Option<Duration>,
        moved: Option<Arc<AtomicU64>>,
    ) -> oneshot::Receiver<UpResult> {
        let (tx, rx) = oneshot::channel();
        let req = Req {
            raw,
            reply: Some(tx),
            keys,
            timeout,
            moved,
        };
        if let Err(mpsc::error::SendError(req)) = self.tx.send(req) {
            if let Some(reply) = req.reply {
                let _ = reply.send(Err(self.dialer.error(UpstreamErrorKind::Stopped)));
            }
        }
        rx
    }

    /// Sends `raw` and drops its reply (it still runs in order with the others); a
    /// `-WRONGSHARD` refusal is noted in `moved`.
    pub fn send_quiet(
        &self,
        raw: Bytes,
        keys: Vec<Bytes>,
        timeout: Duration,
        moved: Option<Arc<AtomicU64>>,
    ) {
        let _ = self.tx.send(Req {
            raw,
            reply: None,
            keys,
            timeout: Some(timeout),
            moved,
        });
    }
}

async fn run(
    router: Arc<Router>,
    dialer: Dialer,
    who: Who,
    mut rx: mpsc::UnboundedReceiver<Req>,
    _permit: OwnedSemaphorePermit,
    node_id: Arc<AtomicU64>,
) {
    let mut sock = match dialer.connect(who.proto).await {
        Ok(s) => s,
        Err(e) => {
            // Every request queued until the client drops the link fails the same way.
            while let Some(req) = rx.recv().await {
                if let Some(reply) = req.reply {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            return;
        }
    };
    let mut buf = BytesMut::new();
    // What a stripped pool's node queued in a transaction on this link (`crate::key_prefix`).
    let mut queued: Queued = None;
    // The node's name for this connection, so CLIENT UNBLOCK through the router can reach it
    // (one round trip as the connection opens).
    let mut id_req = Req {
        raw: Bytes::from_static(b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n"),
        reply: None,
        keys: Vec::new(),
        timeout: None,
        moved: None,
    };
    // A node busy with a script answers BUSY: the link still serves (SCRIPT KILL goes this way).
    match exchange_id(&dialer, &mut sock, &mut buf, &mut id_req).await {
        Ok(Some(id)) => node_id.store(id, Relaxed),
        Ok(None) => {}
        Err(()) => return,
    }
    while let Some(mut req) = rx.recv().await {
        if !req.keys.is_empty() {
            let topo = router.view();
            let keys: Vec<&Bytes> = req.keys.iter().collect();
            if let Err(text) =
                crate::rebalance::divert::migrate_keys(&router, &topo, &keys, who, Instant::now())
                    .await
            {
                if let Some(reply) = req.reply.take() {
                    let _ = reply.send(Ok(crate::merge::error_bytes(&text)));
                }
                // Inside MULTI, a command that never reached the node must still fail the
                // transaction, as a command the node could not queue does.
                req.raw = Bytes::from_static(NOT_QUEUED);
                if exchange(&dialer, &mut sock, &mut buf, &mut req, &mut queued)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        }
        let mut result = exchange(&dialer, &mut sock, &mut buf, &mut req, &mut queued).await;
        if let (Some(moved), Ok(Some(bytes))) = (&req.moved, &result) {
            if let Some((epoch, owner)) = crate::rebalance::divert::wrongshard(bytes) {
                let mark = match crate::split_change::fenced_version(&owner) {
                    Some(v) => v | crate::split_change::SPLIT_FENCED,
                    None => epoch.max(1),
                };
                moved.store(mark, Relaxed);
                result = Ok(Some(Bytes::from_static(b"+QUEUED\r\n")));
            }
        }
        let broken = result.is_err();
        match (result, req.reply.take()) {
            (Ok(Some(bytes)), Some(reply)) => {
                let _ = reply.send(Ok(bytes));
            }
            (Err(e), Some(reply)) => {
                let _ = reply.send(Err(e));
            }
            // The client stopped waiting: the connection holds a request it no longer wants.
            (Ok(None), _) => return,
            _ => {}
        }
        if broken {
            // Requests after a broken one would run outside the transaction they belong to.
            while let Some(req) = rx.recv().await {
                if let Some(reply) = req.reply {
                    let _ = reply.send(Err(dialer.error(UpstreamErrorKind::Lost(Arc::from(
                        "the connection broke earlier in this transaction",
                    )))));
                }
            }
            return;
        }
    }
}

/// CLIENT ID on a fresh connection: `Ok(None)` if the node answered something else (BUSY),
/// `Err` if the connection failed.
async fn exchange_id(
    dialer: &Dialer,
    sock: &mut Stream,
    buf: &mut BytesMut,
    req: &mut Req,
) -> Result<Option<u64>, ()> {
    req.timeout = Some(Duration::from_secs(10));
    let reply = exchange(dialer, sock, buf, req, &mut None)
        .await
        .map_err(|_| ())?
        .ok_or(())?;
    Ok(crate::frame::integer(&reply).and_then(|n| u64::try_from(n).ok()))
}

/// Writes one request and reads its reply: `Ok(None)` if the client went away meanwhile.
async fn exchange(
    dialer: &Dialer,
    sock: &mut Stream,
    buf: &mut BytesMut,
    req: &mut Req,
    queued: &mut Queued,
) -> Result<Option<Bytes>, UpstreamError> {
    let lost = |e: std::io::Error| dialer.error(UpstreamErrorKind::Lost(Arc::from(e.to_string())));
    // A `remove_prefix` pool's node holds the keys without the prefix (`crate::key_prefix`).
    let mut renamed = dialer.keys().and_then(|k| Some((k, k.request(&req.raw)?)));
    let raw = renamed
        .as_ref()
        .map_or(&req.raw, |(_, (raw, _))| raw)
        .clone();
    sock.write_all(&raw).await.map_err(lost)?;
    let deadline = req.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut scanner = FrameScanner::default();
    loop {
        match scanner.next(buf) {
            Ok(Some(frame)) if frame.push => {
                let _ = buf.split_to(frame.len);
            }
            Ok(Some(frame)) => {
                let reply = buf.split_to(frame.len).freeze();
                return Ok(Some(match renamed.take() {
                    Some((k, (_, fix))) => k.link_reply(fix, reply, queued),
                    None => reply,
                }));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(dialer.error(UpstreamErrorKind::Protocol(Arc::from(e.0))));
            }
        }
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let closed = async {
            match &mut req.reply {
                Some(r) => r.closed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = sock.read_some(buf) => match r {
                Ok(0) => return Err(lost(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(e) => return Err(lost(e)),
            },
            _ = until => {
                let t = req.timeout.unwrap_or_default();
                return Err(dialer.error(UpstreamErrorKind::Timeout(t)));
            }
            _ = closed => return Ok(None),
        }
    }
}
