//! A client's chain: the queue its requests take while they must run one after another (see
//! [`divert`](mod@crate::rebalance::divert)). The client's [`Session`](crate::session::Session)
//! holds it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ringcache_protocol::table::CommandSpec;
use tokio::sync::{mpsc, oneshot};

use crate::clients::Who;
use crate::upstream::UpResult;

/// A client's requests that must run one after another: those touching a moving arc, and any
/// it sends while one of those is outstanding (so its pipeline keeps its order).
#[derive(Debug)]
pub struct Chain {
    pub(super) tx: mpsc::UnboundedSender<Job>,
    /// Requests queued and not yet answered.
    pub(super) pending: Arc<AtomicUsize>,
}

/// One request on a chain, with where its reply goes.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) args: Vec<Bytes>,
    pub(super) raw: Bytes,
    pub(super) spec: &'static CommandSpec,
    pub(super) cmd: u16,
    pub(super) start: Instant,
    pub(super) who: Who,
    pub(super) reply: oneshot::Sender<UpResult>,
}

impl Chain {
    pub(super) fn busy(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }
}
