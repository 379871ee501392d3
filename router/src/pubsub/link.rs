//! The router's subscription connection to one shard: subscribes and unsubscribes as the hub
//! asks, resubscribes everything after a reconnect, and hands each message to the hub.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::transport::{Stream, Transport};
use ringcache_protocol::Protocol;
use tokio::sync::{mpsc, oneshot};

use super::{stripped, Kind};
use crate::frame::{elements, FrameScanner};
use crate::key_prefix::KeyPrefix;
use crate::state::Router;

/// What the hub asks of a link.
#[derive(Debug)]
enum Ask {
    Subscribe(Kind, Vec<Bytes>, oneshot::Sender<()>),
    Unsubscribe(Kind, Vec<Bytes>),
}

/// A shard's subscription connection, run by its own task; dropped, the task ends.
#[derive(Debug)]
pub(super) struct Link {
    tx: mpsc::UnboundedSender<Ask>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Link {
    pub(super) fn start(router: &Router, shard: &str) -> Link {
        let (tx, rx) = mpsc::unbounded_channel();
        let me = router.me().map(|r| Arc::downgrade(&r)).unwrap_or_default();
        tokio::spawn(run(me, shard.to_string(), rx));
        Link { tx }
    }

    /// Subscribes to `names`; the receiver resolves once the shard confirmed them (or the
    /// shard cannot be reached now: the subscription is made when it can).
    pub(super) fn subscribe(&self, kind: Kind, names: Vec<Bytes>) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Ask::Subscribe(kind, names, tx));
        rx
    }

    pub(super) fn unsubscribe(&self, kind: Kind, names: Vec<Bytes>) {
        let _ = self.tx.send(Ask::Unsubscribe(kind, names));
    }
}

/// What the link is subscribed to (to replay after a reconnect), and who waits for
/// confirmations: each waiter is released after its count of subscribe confirmations.
#[derive(Default)]
struct Subs {
    names: [HashSet<Bytes>; 3],
    waiting: VecDeque<(usize, oneshot::Sender<()>)>,
}

/// `cmd` for `names`, as the node names them (`stripped`: a `remove_prefix` pool's node).
fn request(keys: Option<&KeyPrefix>, kind: Kind, cmd: &str, names: &[Bytes]) -> Bytes {
    let names: Vec<Bytes> = match keys {
        Some(k) => names
            .iter()
            .map(|n| stripped::node_name(k, kind, n))
            .collect(),
        None => names.to_vec(),
    };
    let mut out = BytesMut::new();
    let args = std::iter::once(cmd.as_bytes()).chain(names.iter().map(|n| &n[..]));
    let args: Vec<&[u8]> = args.collect();
    ringcache_protocol::resp::encode_request(&mut out, args);
    out.freeze()
}

async fn run(router: Weak<Router>, shard: String, mut rx: mpsc::UnboundedReceiver<Ask>) {
    let mut subs = Subs::default();
    let mut backoff = MIN_BACKOFF;
    loop {
        let dialer = {
            let Some(router) = router.upgrade() else {
                return;
            };
            let topo = router.view();
            match topo.shard_by_id(&shard) {
                Some(s) => s.pool.dialer(),
                None => return,
            }
        };
        match dialer.connect(Protocol::Resp2).await {
            Ok(sock) => {
                backoff = MIN_BACKOFF;
                let keys = dialer.keys().cloned();
                if !serve(&router, sock, &mut subs, &mut rx, keys.as_deref()).await {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(shard, error = %e, "pub/sub link unavailable");
                // Nobody waits on a shard that cannot be reached: the subscription is made
                // once it can.
                for (_, w) in subs.waiting.drain(..) {
                    let _ = w.send(());
                }
            }
        }
        // Asks that arrive meanwhile update what the next connection subscribes to.
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                ask = rx.recv() => match ask {
                    None => return,
                    Some(ask) => {
                        let (kind, names, waiter) = match ask {
                            Ask::Subscribe(k, n, w) => (k, n, Some(w)),
                            Ask::Unsubscribe(k, n) => {
                                for name in &n {
                                    subs.names[k as usize].remove(name);
                                }
                                continue;
                            }
                        };
                        subs.names[kind as usize].extend(names);
                        if let Some(w) = waiter {
                            let _ = w.send(());
                        }
                    }
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Serves one connection until it breaks (`true`: reconnect) or the hub drops the link.
async fn serve(
    router: &Weak<Router>,
    mut sock: Stream,
    subs: &mut Subs,
    rx: &mut mpsc::UnboundedReceiver<Ask>,
    keys: Option<&KeyPrefix>,
) -> bool {
    // Everything subscribed before this connection, again.
    let mut out = BytesMut::new();
    let mut replay = 0;
    if keys.is_some() {
        // Every keyspace notification of a stripped pool's node, renamed in `handle`.
        let names = [Bytes::from_static(stripped::NODE_PATTERN)];
        out.extend_from_slice(&request(None, Kind::Pattern, "PSUBSCRIBE", &names));
    }
    for kind in Kind::ALL {
        let names: Vec<Bytes> = subs.names[kind as usize].iter().cloned().collect();
        if !names.is_empty() {
            replay += names.len();
            out.extend_from_slice(&request(keys, kind, kind.subscribe(), &names));
        }
    }
    if replay > 0 {
        // Waiters queued while disconnected were released; these confirmations free no one.
        let (tx, _) = oneshot::channel();
        subs.waiting.push_front((replay, tx));
    }
    if keys.is_some() {
        let (tx, _) = oneshot::channel();
        subs.waiting.push_front((1, tx));
    }
    let mut buf = BytesMut::new();
    let mut scanner = FrameScanner::default();
    loop {
        if !out.is_empty() {
            if sock.write_all(&out).await.is_err() {
                return true;
            }
            out.clear();
        }
        loop {
            match scanner.next(&buf) {
                Ok(Some(frame)) => {
                    let raw = buf.split_to(frame.len).freeze();
                    handle(router, subs, &raw, keys);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "pub/sub link: invalid reply");
                    return true;
                }
            }
        }
        tokio::select! {
            r = sock.read_some(&mut buf) => match r {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            },
            ask = rx.recv() => match ask {
                None => return false,
                Some(Ask::Subscribe(kind, names, waiter)) => {
                    subs.waiting.push_back((names.len(), waiter));
                    out.extend_from_slice(&request(keys, kind, kind.subscribe(), &names));
                    subs.names[kind as usize].extend(names);
                }
                Some(Ask::Unsubscribe(kind, names)) => {
                    for name in &names {
                        subs.names[kind as usize].remove(name);
                    }
                    // A stripped node's notification pattern stays as long as the link.
                    let kept = |n: &Bytes| {
                        keys.is_some() && kind == Kind::Pattern && n[..] == *stripped::NODE_PATTERN
                    };
                    let names: Vec<Bytes> = names.into_iter().filter(|n| !kept(n)).collect();
                    if !names.is_empty() {
                        out.extend_from_slice(&request(keys, kind, kind.unsubscribe(), &names));
                    }
                }
            },
        }
    }
}

/// One frame from the shard: a message for the hub, or a confirmation.
fn handle(router: &Weak<Router>, subs: &mut Subs, raw: &Bytes, keys: Option<&KeyPrefix>) {
    let Some(parts) = elements(raw) else {
        return;
    };
    let Some(kind) = parts
        .first()
        .and_then(|r| crate::frame::bulk_payload(&raw[r.clone()]))
    else {
        return;
    };
    let field = |i: usize| {
        parts
            .get(i)
            .and_then(|r| crate::frame::bulk_payload(&raw[r.clone()]))
    };
    let Some(router) = router.upgrade() else {
        return;
    };
    match (kind, keys) {
        (b"message", Some(k)) => {
            if let (Some(channel), Some(payload)) = (field(1), field(2)) {
                let (channel, payload) = stripped::renamed(k, channel, payload);
                let frame = stripped::message(b"message", &channel, &payload);
                router.pubsub.deliver(Kind::Channel, &channel, &frame);
            }
        }
        (b"smessage", Some(k)) => {
            if let (Some(channel), Some(payload)) = (field(1), field(2)) {
                let mut name = BytesMut::from(k.prefix());
                name.extend_from_slice(channel);
                let frame = stripped::message(b"smessage", &name, payload);
                router.pubsub.deliver(Kind::Shard, &name, &frame);
            }
        }
        (b"pmessage", Some(k)) => {
            let (Some(pattern), Some(channel), Some(payload)) = (field(1), field(2), field(3))
            else {
                return;
            };
            if !stripped::is_notification(channel) {
                handle_plain(&router, subs, kind, raw, &field);
            } else if pattern == stripped::NODE_PATTERN {
                let (channel, payload) = stripped::renamed(k, channel, payload);
                for pattern in &subs.names[Kind::Pattern as usize] {
                    if let Some(frame) = stripped::pmessage(pattern, &channel, &payload) {
                        router.pubsub.deliver(Kind::Pattern, pattern, &frame);
                    }
                }
            }
            // A notification through a client's pattern as written: the node pattern's copy
            // (renamed) is the one delivered.
        }
        _ => handle_plain(&router, subs, kind, raw, &field),
    }
}

/// [`handle`] for a frame that names no stored key.
fn handle_plain<'a>(
    router: &Router,
    subs: &mut Subs,
    kind: &[u8],
    raw: &Bytes,
    field: &dyn Fn(usize) -> Option<&'a [u8]>,
) {
    match kind {
        b"message" => {
            if let Some(channel) = field(1) {
                router.pubsub.deliver(Kind::Channel, channel, raw);
            }
        }
        b"pmessage" => {
            if let Some(pattern) = field(1) {
                router.pubsub.deliver(Kind::Pattern, pattern, raw);
            }
        }
        b"smessage" => {
            if let Some(channel) = field(1) {
                router.pubsub.deliver(Kind::Shard, channel, raw);
            }
        }
        b"subscribe" | b"psubscribe" | b"ssubscribe" => {
            if let Some(front) = subs.waiting.front_mut() {
                front.0 = front.0.saturating_sub(1);
                if front.0 == 0 {
                    if let Some((_, w)) = subs.waiting.pop_front() {
                        let _ = w.send(());
                    }
                }
            }
        }
        _ => {}
    }
}
