//! Clients blocked on keys (BLPOP, BLMOVE, BZPOPMIN, ...): who waits for which key, in the order
//! they blocked.
//!
//! A blocked client registers while holding its keys' locks (so a push cannot slip between its
//! empty check and its registration) and then waits on its connection without holding an IO
//! thread. A command that changed a key someone waits for serves the waiters right after it ran,
//! before its own reply is sent: each waiter's command runs again, non-blocking, on the waiter's
//! behalf (see `crate::cmd::blocking`), first come first served.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ringcache_protocol::Reply;

use crate::keyspace::lock;

#[derive(Debug)]
enum WaitState {
    Waiting,
    Served(Reply),
    Gone,
}

/// One blocked client.
#[derive(Debug)]
pub struct Waiter {
    pub client: u64,
    /// The blocking command as the client sent it.
    pub args: Vec<Bytes>,
    /// The keys it waits on, in the command's order.
    pub keys: Vec<Bytes>,
    /// What it answers when the timeout passes (a null array or a null string, by command).
    pub timeout_reply: Reply,
    state: Mutex<WaitState>,
    /// Woken once served (a permit is kept if the client is not waiting yet).
    pub woken: tokio::sync::Notify,
    /// When its request was read: clients on different IO threads queue in arrival order.
    pub arrived: std::time::Instant,
}

impl Waiter {
    pub fn new(client: u64, args: Vec<Bytes>, keys: Vec<Bytes>, timeout_reply: Reply) -> Waiter {
        Waiter {
            client,
            args,
            keys,
            timeout_reply,
            state: Mutex::new(WaitState::Waiting),
            woken: tokio::sync::Notify::new(),
            arrived: std::time::Instant::now(),
        }
    }

    /// The same waiter, its request read at `t`.
    pub fn arrived_at(mut self, t: std::time::Instant) -> Waiter {
        self.arrived = t;
        self
    }

    /// Runs `serve` if the client still waits; a `Some` reply serves it (and wakes it). Whether
    /// it was served.
    pub fn try_serve(&self, serve: impl FnOnce() -> Option<Reply>) -> bool {
        let mut st = lock(&self.state);
        if !matches!(*st, WaitState::Waiting) {
            return false;
        }
        match serve() {
            Some(reply) => {
                *st = WaitState::Served(reply);
                drop(st);
                self.woken.notify_one();
                true
            }
            None => false,
        }
    }

    /// Stops waiting (timeout, disconnect): the reply it was served with meanwhile, if any.
    pub fn finish(&self) -> Option<Reply> {
        let mut st = lock(&self.state);
        match std::mem::replace(&mut *st, WaitState::Gone) {
            WaitState::Served(r) => Some(r),
            _ => None,
        }
    }

    pub fn is_waiting(&self) -> bool {
        matches!(*lock(&self.state), WaitState::Waiting)
    }
}

#[derive(Default)]
pub struct Blocked {
    by_key: Mutex<HashMap<Bytes, VecDeque<Arc<Waiter>>>>,
    clients: AtomicUsize,
}

impl Blocked {
    /// Registers `w` on its keys (the caller holds their locks).
    pub fn add(&self, w: Arc<Waiter>) {
        let mut m = lock(&self.by_key);
        for k in &w.keys {
            let q = m.entry(k.clone()).or_default();
            if !q.iter().any(|x| Arc::ptr_eq(x, &w)) {
                // After every client whose request was read no later than this one's.
                let at = q
                    .iter()
                    .rposition(|x| x.arrived <= w.arrived)
                    .map_or(0, |i| i + 1);
                q.insert(at, w.clone());
            }
        }
        self.clients.fetch_add(1, Relaxed);
    }

    /// Unregisters `w` from every key.
    pub fn remove(&self, w: &Arc<Waiter>) {
        let mut m = lock(&self.by_key);
        let mut found = false;
        for k in &w.keys {
            if let Some(q) = m.get_mut(k) {
                let before = q.len();
                q.retain(|x| !Arc::ptr_eq(x, w));
                found |= q.len() != before;
                if q.is_empty() {
                    m.remove(k);
                }
            }
        }
        if found {
            self.clients.fetch_sub(1, Relaxed);
        }
    }

    /// The waiter of client `id`, if it is blocked.
    pub fn of_client(&self, id: u64) -> Option<Arc<Waiter>> {
        lock(&self.by_key)
            .values()
            .flat_map(|q| q.iter())
            .find(|w| w.client == id)
            .cloned()
    }

    /// Every blocked client, once each.
    pub fn all(&self) -> Vec<Arc<Waiter>> {
        let m = lock(&self.by_key);
        let mut seen = std::collections::HashSet::new();
        m.values()
            .flat_map(|q| q.iter())
            .filter(|w| seen.insert(Arc::as_ptr(w)))
            .cloned()
            .collect()
    }

    /// The clients waiting on `key`, first blocked first.
    pub fn waiters(&self, key: &[u8]) -> Vec<Arc<Waiter>> {
        lock(&self.by_key)
            .get(key)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Blocked clients (INFO's `blocked_clients`).
    pub fn count(&self) -> usize {
        self.clients.load(Relaxed)
    }

    /// Keys with a waiter (`INFO` keyspace stats; FLUSHALL needs none).
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(keys: &[&str]) -> Arc<Waiter> {
        Arc::new(Waiter::new(
            1,
            vec![],
            keys.iter()
                .map(|k| Bytes::copy_from_slice(k.as_bytes()))
                .collect(),
            Reply::NilArray,
        ))
    }

    #[test]
    fn waiters_in_order_and_served_once() {
        let b = Blocked::default();
        let (w1, w2) = (waiter(&["a", "b"]), waiter(&["a"]));
        b.add(w1.clone());
        b.add(w2.clone());
        assert_eq!(b.count(), 2);
        let q = b.waiters(b"a");
        assert!(Arc::ptr_eq(&q[0], &w1) && Arc::ptr_eq(&q[1], &w2));
        assert!(w1.try_serve(|| Some(Reply::Int(1))));
        assert!(!w1.try_serve(|| Some(Reply::Int(2))));
        assert!(!w2.try_serve(|| None));
        assert!(w2.is_waiting());
        b.remove(&w1);
        assert_eq!(b.waiters(b"b").len(), 0);
        assert_eq!(w1.finish(), Some(Reply::Int(1)));
        assert_eq!(w2.finish(), None);
        assert!(!w2.try_serve(|| Some(Reply::Int(3))));
    }

    #[test]
    fn waiters_queue_by_arrival_not_registration() {
        let b = Blocked::default();
        let early = std::time::Instant::now();
        let late = early + std::time::Duration::from_millis(1);
        let key = vec![Bytes::from_static(b"k")];
        let second = Arc::new(Waiter::new(2, vec![], key.clone(), Reply::Nil).arrived_at(late));
        let first = Arc::new(Waiter::new(1, vec![], key, Reply::Nil).arrived_at(early));
        b.add(second.clone());
        b.add(first.clone());
        let q = b.waiters(b"k");
        assert!(Arc::ptr_eq(&q[0], &first) && Arc::ptr_eq(&q[1], &second));
        assert_eq!(b.of_client(2).map(|w| w.client), Some(2));
        assert!(b.of_client(3).is_none());
    }
}
