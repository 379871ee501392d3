//! A subscriber's mailbox: publishers leave encoded messages in it and wake the subscriber's
//! connection, which writes them on its own IO thread. Counted in bytes until written, and
//! bounded by `client-output-buffer-limit pubsub`: past it the queue is dropped and the client
//! cut off, so a subscriber that does not read never makes a publisher wait or the node grow.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringcache_protocol::Protocol;
use tokio::sync::Notify;

use crate::clients::ClientHandle;
use crate::keyspace::lock;

/// Redis's `client-output-buffer-limit` for one class of clients: a hard limit in bytes, and a
/// soft limit that may be exceeded for `soft_secs` seconds (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_secs: u64,
}

impl BufferLimit {
    pub const NONE: BufferLimit = BufferLimit {
        hard: 0,
        soft: 0,
        soft_secs: 0,
    };

    /// Whether `used` bytes break the limit, given since when the soft limit has been exceeded
    /// (updated here, as Redis's `checkClientOutputBufferLimits` does).
    fn broken(&self, used: u64, soft_since: &mut Option<Instant>) -> bool {
        if self.hard > 0 && used >= self.hard {
            return true;
        }
        if self.soft > 0 && used >= self.soft {
            // The first time only starts the clock.
            return match soft_since {
                None => {
                    *soft_since = Some(Instant::now());
                    false
                }
                Some(t) => t.elapsed() > Duration::from_secs(self.soft_secs),
            };
        }
        *soft_since = None;
        false
    }
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// Bytes queued or taken and not yet written.
    bytes: u64,
    soft_since: Option<Instant>,
    /// Cut off: nothing is queued any more.
    closed: bool,
}

/// One subscribed connection's queue of messages.
#[derive(Debug)]
pub struct Mailbox {
    pub id: u64,
    client: Arc<ClientHandle>,
    /// The protocol messages are encoded for (2 or 3), kept in step with the session.
    proto: AtomicU8,
    queue: Mutex<Queue>,
    /// Woken when a message is queued (a permit waits if the connection is busy).
    pub ready: Notify,
}

impl Mailbox {
    pub fn new(client: Arc<ClientHandle>, proto: Protocol) -> Mailbox {
        Mailbox {
            id: client.id,
            client,
            proto: AtomicU8::new(proto.number() as u8),
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
        }
    }

    pub fn proto(&self) -> Protocol {
        if self.proto.load(Relaxed) == 3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        }
    }

    pub fn set_proto(&self, proto: Protocol) {
        self.proto.store(proto.number() as u8, Relaxed);
    }

    /// Queues `frame` and wakes the connection; false if that broke `limit` (the client is then
    /// being closed and its queue dropped) or the client was already cut off.
    pub fn deliver(&self, frame: &Bytes, limit: BufferLimit) -> bool {
        let mut q = lock(&self.queue);
        if q.closed {
            return false;
        }
        q.bytes += frame.len() as u64;
        let used = q.bytes;
        if limit.broken(used, &mut q.soft_since) {
            q.closed = true;
            q.frames = VecDeque::new();
            q.bytes = 0;
            drop(q);
            tracing::info!(
                client = self.id,
                used,
                "client closed for overcoming of output buffer limits"
            );
            self.client.kill();
            return false;
        }
        q.frames.push_back(frame.clone());
        drop(q);
        self.ready.notify_one();
        true
    }

    /// Appends every queued frame to `out`; the bytes taken, still counted until [`Mailbox::sent`].
    pub fn take(&self, out: &mut BytesMut) -> usize {
        let mut q = lock(&self.queue);
        let mut n = 0;
        while let Some(f) = q.frames.pop_front() {
            n += f.len();
            out.extend_from_slice(&f);
        }
        n
    }

    /// `n` bytes taken were written (or handed to the connection's output).
    pub fn sent(&self, n: usize) {
        let mut q = lock(&self.queue);
        q.bytes = q.bytes.saturating_sub(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_and_soft_limits() {
        let l = BufferLimit {
            hard: 100,
            soft: 10,
            soft_secs: 60,
        };
        let mut since = None;
        assert!(!l.broken(5, &mut since));
        assert!(since.is_none());
        // Over the soft limit: the clock starts, nothing breaks before 60 s.
        assert!(!l.broken(50, &mut since));
        assert!(since.is_some());
        assert!(!l.broken(50, &mut since));
        // Back under it: the clock stops.
        assert!(!l.broken(5, &mut since));
        assert!(since.is_none());
        assert!(l.broken(100, &mut since));
        let long_ago = Instant::now().checked_sub(Duration::from_secs(61));
        let mut since = long_ago;
        assert!(long_ago.is_none() || l.broken(50, &mut since));
        let none = BufferLimit {
            hard: 0,
            soft: 0,
            soft_secs: 0,
        };
        assert!(!none.broken(u64::MAX, &mut None));
    }
}
