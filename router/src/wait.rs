//! WAIT through the router: how many replicas of every shard acknowledged the client's writes.
//!
//! A node's WAIT counts replicas that acknowledged the offset after the connection's last write,
//! but the router's upstream connections carry many clients' writes and a WAIT there would hold
//! all of them up. So the router waits until the client's earlier requests are answered (its
//! slot starts only at the front of the client's FIFO: every write before it has reached its
//! node and been propagated), then sends each serving shard's primary `REPLCONF WAIT n timeout`
//! on a connection of the client's own: wait for `n` replicas to acknowledge everything that
//! node propagated so far. The answer is the smallest count over the shards (every shard has at
//! least that many replicas holding the writes); the first error, if any, instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::clients::Who;
use crate::dedicated::Dedicated;
use crate::merge::{error_bytes, received};
use crate::state::Router;
use crate::upstream::UpResult;

/// A reply whose request goes out only once every reply before it in the client's FIFO was
/// taken (polled for the first time at the front).
pub struct Deferred {
    start: Option<Box<dyn FnOnce() -> oneshot::Receiver<UpResult> + Send>>,
    rx: Option<oneshot::Receiver<UpResult>>,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("started", &self.start.is_none())
            .finish()
    }
}

impl Deferred {
    pub fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Bytes> {
        if let Some(start) = self.start.take() {
            self.rx = Some(start());
        }
        match &mut self.rx {
            Some(rx) => Pin::new(rx).poll(cx).map(received),
            None => Poll::Ready(error_bytes(crate::merge::CLOSED)),
        }
    }
}

/// WAIT numreplicas timeout, for `who`: a slot that starts when it reaches the FIFO's front.
pub fn run(router: Arc<Router>, who: Who, args: &[Bytes]) -> Deferred {
    // Copies: the wait may outlive the read buffer the arguments share.
    let (n, timeout) = (
        Bytes::copy_from_slice(&args[1]),
        Bytes::copy_from_slice(&args[2]),
    );
    Deferred {
        start: Some(Box::new(move || {
            let (tx, rx) = oneshot::channel();
            tokio::spawn(wait(router, who, n, timeout, tx));
            rx
        })),
        rx: None,
    }
}

async fn wait(
    router: Arc<Router>,
    who: Who,
    n: Bytes,
    timeout: Bytes,
    mut tx: oneshot::Sender<UpResult>,
) {
    let mut raw = bytes::BytesMut::new();
    ringcache_protocol::resp::encode_request(&mut raw, [&b"REPLCONF"[..], b"WAIT", &n, &timeout]);
    let raw = raw.freeze();
    let topo = router.view();
    let mut links = Vec::new();
    let mut replies = Vec::new();
    for shard in topo.serving_shards() {
        let link = match Dedicated::open(&router, shard, who) {
            Ok(l) => l,
            Err(text) => {
                let _ = tx.send(Ok(error_bytes(&text)));
                return;
            }
        };
        replies.push(link.send(raw.clone(), Vec::new(), None));
        // Held until every shard answered: dropping a link closes its node connection.
        links.push(link);
    }
    let all = async {
        let mut least: Option<i64> = None;
        for rx in replies {
            let bytes = received(rx.await);
            match crate::frame::integer(&bytes) {
                Some(count) => least = Some(least.map_or(count, |l| l.min(count))),
                // A node's refusal (a bad argument) or a connection error: the client's answer.
                None => return bytes,
            }
        }
        let count = least.unwrap_or(0);
        ringcache_protocol::Reply::Int(count).to_bytes(ringcache_protocol::Protocol::Resp2)
    };
    let reply = tokio::select! {
        r = all => r,
        // The client went away: dropping the links ends the nodes' waits.
        _ = tx.closed() => return,
    };
    drop(links);
    let _ = tx.send(Ok(reply));
}
