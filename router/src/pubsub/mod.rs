//! Pub/sub through the router.
//!
//! Channels are placed on the ring like keys. The router keeps one subscription connection per
//! shard ([`link`]) and subscribes there to every channel one of its clients wants, once,
//! however many clients want it; each message that arrives is handed to those clients' own
//! queues, which their connections write out ([`Subscriber`]). Patterns, and the keyspace
//! notification channels (published by whichever node holds the key), are subscribed on every
//! shard. PUBLISH and SPUBLISH go to the channel's shard, so a message published through one
//! router reaches the subscribers of every router. When a membership change gives a channel to
//! another shard the hub subscribes there as well, and drops the old subscription once no arc is
//! moving. A subscriber that does not read is cut off at Redis's pub/sub output limits.
//!
//! Client commands are in [`commands`].

pub mod commands;
mod link;
mod stripped;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};

use crate::clients::{lock, ClientHandle};
use crate::pools::View;
use crate::state::Router;
use link::Link;

/// Redis's `client-output-buffer-limit pubsub 32mb 8mb 60`.
const HARD_LIMIT: usize = 32 << 20;
const SOFT_LIMIT: usize = 8 << 20;
const SOFT_SECONDS: Duration = Duration::from_secs(60);
/// Messages a subscriber's connection takes for one write.
const BATCH_BYTES: usize = 256 << 10;

/// The three subscription spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// SUBSCRIBE
    Channel,
    /// PSUBSCRIBE
    Pattern,
    /// SSUBSCRIBE
    Shard,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Channel, Kind::Pattern, Kind::Shard];

    fn index(self) -> usize {
        self as usize
    }

    /// The upstream command that subscribes.
    fn subscribe(self) -> &'static str {
        match self {
            Kind::Channel => "SUBSCRIBE",
            Kind::Pattern => "PSUBSCRIBE",
            Kind::Shard => "SSUBSCRIBE",
        }
    }

    fn unsubscribe(self) -> &'static str {
        match self {
            Kind::Channel => "UNSUBSCRIBE",
            Kind::Pattern => "PUNSUBSCRIBE",
            Kind::Shard => "SUNSUBSCRIBE",
        }
    }

    /// Whether `name` of this kind is subscribed on every shard rather than its owner.
    fn everywhere(self, name: &[u8]) -> bool {
        self == Kind::Pattern
            || (self == Kind::Channel
                && (name.starts_with(b"__keyspace@") || name.starts_with(b"__keyevent@")))
    }
}

/// One client's message queue, as the hub sees it.
#[derive(Debug)]
struct Sink {
    tx: mpsc::UnboundedSender<Bytes>,
    /// Bytes queued and not yet written by the client's connection.
    queued: Arc<AtomicUsize>,
    resp3: bool,
    handle: Arc<ClientHandle>,
    /// Since when the queue has been over the soft limit.
    soft_since: Option<Instant>,
}

/// Client ids hashed by one multiply: they are sequential numbers of our own, and SipHash over
/// each subscriber of each message was a sixth of the router's instructions in a fan-out.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Ids = std::hash::BuildHasherDefault<IdHasher>;

/// Clients subscribed to one name, and the shards it is subscribed on upstream.
#[derive(Debug, Default)]
struct Entry {
    clients: HashSet<u64, Ids>,
    shards: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    sinks: HashMap<u64, Sink, Ids>,
    subs: [HashMap<Bytes, Entry>; 3],
    /// Subscription connections by shard id.
    links: HashMap<String, Link>,
    /// The ring epoch and moving state the subscriptions were placed for.
    placed: (u64, bool),
    /// Clients in MONITOR mode (their queues are in `sinks`).
    monitors: HashSet<u64, Ids>,
}

/// The router's pub/sub state.
#[derive(Debug, Default)]
pub struct Hub {
    state: Mutex<State>,
    /// Clients cut off for not reading their messages.
    pub dropped_clients: AtomicUsize,
    /// How many clients monitor, read for every request without the lock.
    monitoring: AtomicUsize,
}

/// A subscribed client's side: its queue and what it subscribed to. Dropped with the client's
/// session, which unsubscribes it.
#[derive(Debug)]
pub struct Subscriber {
    id: u64,
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    mine: [HashSet<Bytes>; 3],
    router: Weak<Router>,
}

impl Subscriber {
    /// Channels and patterns (what SUBSCRIBE and PSUBSCRIBE count), or shard channels.
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.mine[Kind::Shard.index()].len(),
            _ => self.mine[0].len() + self.mine[1].len(),
        }
    }

    /// Whether RESP2's subscribed mode applies (any subscription at all).
    pub fn active(&self) -> bool {
        self.mine.iter().any(|m| !m.is_empty())
    }

    /// Takes queued messages (waiting for at least one, then up to 256 KiB), appending them to
    /// `out`. They count against the client's limit until [`Subscriber::written`].
    pub async fn recv(&mut self, out: &mut Vec<Bytes>) {
        let Some(first) = self.rx.recv().await else {
            // The hub dropped this client (cut off): nothing more comes.
            return std::future::pending::<()>().await;
        };
        let mut taken = first.len();
        out.push(first);
        // Behind the tasks already woken (a publisher's reply among them): a fan-out's writes
        // do not delay the round trip of the PUBLISH that caused them, and the rest of the
        // fan-out lands in this batch. The message taken is kept first: the caller's
        // `select!` may drop this future while it waits.
        tokio::task::yield_now().await;
        while taken < BATCH_BYTES {
            match self.rx.try_recv() {
                Ok(msg) => {
                    taken += msg.len();
                    out.push(msg);
                }
                Err(_) => break,
            }
        }
    }

    /// `n` bytes of messages reached the client's socket.
    pub fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Relaxed);
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(router) = self.router.upgrade() {
            router.pubsub.forget(&router, self.id, &self.mine);
        }
    }
}

impl Hub {
    /// Registers client `handle`'s queue.
    pub fn subscriber(
        &self,
        router: &Router,
        handle: &Arc<ClientHandle>,
        resp3: bool,
    ) -> Subscriber {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        lock(&self.state).sinks.insert(
            handle.id,
            Sink {
                tx,
                queued: queued.clone(),
                resp3,
                handle: handle.clone(),
                soft_since: None,
            },
        );
        Subscriber {
            id: handle.id,
            rx,
            queued,
            mine: Default::default(),
            router: router.me().map(|r| Arc::downgrade(&r)).unwrap_or_default(),
        }
    }

    /// Subscribes client `id` to `name`; a receiver resolved once the shards confirmed the
    /// subscription, when this is the router's first subscriber of it.
    fn add(
        &self,
        router: &Router,
        topo: &View,
        kind: Kind,
        name: &Bytes,
        id: u64,
    ) -> Option<oneshot::Receiver<()>> {
        let mut st = lock(&self.state);
        let entry = st.subs[kind.index()].entry(name.clone()).or_default();
        entry.clients.insert(id);
        if !entry.shards.is_empty() {
            return None;
        }
        let shards = placement(topo, kind, name, &[]);
        entry.shards = shards.clone();
        let (tx, rx) = oneshot::channel();
        let mut waits = Vec::new();
        for shard in &shards {
            let link = link_for(&mut st.links, router, shard);
            waits.push(link.subscribe(kind, vec![name.clone()]));
        }
        tokio::spawn(async move {
            for w in waits {
                let _ = w.await;
            }
            let _ = tx.send(());
        });
        Some(rx)
    }

    /// Unsubscribes client `id` from `name` (upstream too when it was the last).
    fn remove(&self, kind: Kind, name: &[u8], id: u64) {
        let mut st = lock(&self.state);
        let State { subs, links, .. } = &mut *st;
        let map = &mut subs[kind.index()];
        let Some(entry) = map.get_mut(name) else {
            return;
        };
        entry.clients.remove(&id);
        if entry.clients.is_empty() {
            if let Some(entry) = map.remove(name) {
                for shard in entry.shards {
                    if let Some(link) = links.get(&shard) {
                        link.unsubscribe(kind, vec![Bytes::copy_from_slice(name)]);
                    }
                }
            }
        }
    }

    /// Every subscribed client's channels and shard channels (`false`) and patterns (`true`).
    pub fn by_client(&self) -> HashMap<u64, Vec<(Bytes, bool)>> {
        let st = lock(&self.state);
        let mut out: HashMap<u64, Vec<(Bytes, bool)>> = HashMap::new();
        for kind in Kind::ALL {
            for (name, entry) in &st.subs[kind.index()] {
                for id in &entry.clients {
                    out.entry(*id)
                        .or_default()
                        .push((name.clone(), kind == Kind::Pattern));
                }
            }
        }
        out
    }

    /// A client went away: its queue and every subscription of its.
    fn forget(&self, router: &Router, id: u64, mine: &[HashSet<Bytes>; 3]) {
        {
            let mut st = lock(&self.state);
            st.sinks.remove(&id);
            if st.monitors.remove(&id) {
                self.monitoring.store(st.monitors.len(), Relaxed);
            }
        }
        let _ = router;
        for kind in Kind::ALL {
            for name in &mine[kind.index()] {
                self.remove(kind, name, id);
            }
        }
    }

    /// How many of this router's clients a message on `channel` reaches (channel subscribers and
    /// pattern subscribers, a client once per matching pattern, as Redis counts), and how many
    /// of this router's own subscriptions on the channel's shard the node counted for it.
    fn reach(&self, kind: Kind, channel: &[u8]) -> (usize, usize) {
        let st = lock(&self.state);
        let (mut clients, mut mine) = (0, 0);
        if let Some(e) = st.subs[kind.index()].get(channel) {
            clients += e.clients.len();
            mine += 1;
        }
        if kind == Kind::Channel {
            for (pattern, e) in &st.subs[Kind::Pattern.index()] {
                if ringcache_protocol::glob::matches(pattern, channel, false) {
                    clients += e.clients.len();
                    mine += 1;
                }
            }
        }
        (clients, mine)
    }

    /// The number of this router's clients subscribed to `name` (PUBSUB NUMSUB) and whether
    /// the router itself holds a subscription to it.
    fn local(&self, kind: Kind, name: &[u8]) -> (usize, bool) {
        let st = lock(&self.state);
        st.subs[kind.index()]
            .get(name)
            .map_or((0, false), |e| (e.clients.len(), true))
    }

    /// Hands a message to every client subscribed to `name` (of `kind`). `raw` is the upstream
    /// frame, a RESP2 array, forwarded as is to RESP2 clients.
    fn deliver(&self, kind: Kind, name: &[u8], raw: &Bytes) {
        let mut st = lock(&self.state);
        let State { subs, sinks, .. } = &mut *st;
        let Some(entry) = subs[kind.index()].get(name) else {
            return;
        };
        let mut resp3: Option<Bytes> = None;
        let mut cut = Vec::new();
        for id in &entry.clients {
            let Some(sink) = sinks.get_mut(id) else {
                continue;
            };
            let bytes = if sink.resp3 {
                resp3
                    .get_or_insert_with(|| {
                        // The same array as a RESP3 push.
                        let mut b = BytesMut::from(&raw[..]);
                        b[0] = b'>';
                        b.freeze()
                    })
                    .clone()
            } else {
                raw.clone()
            };
            if !offer(sink, bytes) {
                cut.push(*id);
            }
        }
        self.cut_off(&mut st, cut);
    }

    /// Ends the clients of `ids`, whose queues went past the output limit: their subscriptions
    /// end now (counts, upstream), not when their connections notice.
    fn cut_off(&self, st: &mut State, ids: Vec<u64>) {
        for id in ids {
            for map in st.subs.iter_mut() {
                for entry in map.values_mut() {
                    entry.clients.remove(&id);
                }
            }
            if st.monitors.remove(&id) {
                self.monitoring.store(st.monitors.len(), Relaxed);
            }
            if let Some(sink) = st.sinks.remove(&id) {
                tracing::info!(
                    client = id,
                    "subscriber cut off: its messages exceed the pub/sub output limit"
                );
                self.dropped_clients.fetch_add(1, Relaxed);
                sink.handle.kill();
            }
        }
    }

    /// Whether any client monitors: the one check every request pays.
    #[inline]
    pub fn monitoring(&self) -> bool {
        self.monitoring.load(Relaxed) > 0
    }

    /// Client `id` (whose queue the hub has) monitors from now on.
    pub fn monitor(&self, id: u64) {
        let mut st = lock(&self.state);
        st.monitors.insert(id);
        self.monitoring.store(st.monitors.len(), Relaxed);
    }

    /// Sends a MONITOR line to every monitoring client.
    pub fn feed_monitors(&self, line: &Bytes) {
        let mut st = lock(&self.state);
        let State {
            sinks, monitors, ..
        } = &mut *st;
        let mut cut = Vec::new();
        for id in monitors.iter() {
            let Some(sink) = sinks.get_mut(id) else {
                continue;
            };
            if !offer(sink, line.clone()) {
                cut.push(*id);
            }
        }
        self.cut_off(&mut st, cut);
    }

    /// Places every subscription for `topo` if the ring or its moving state changed: new
    /// owners subscribe, old ones are dropped once no arc moves, links to shards gone close.
    pub fn follow(&self, router: &Router, topo: &View) {
        let moving = topo.migrating();
        let mut st = lock(&self.state);
        if st.placed == (topo.generation, moving) {
            return;
        }
        st.placed = (topo.generation, moving);
        let State { subs, links, .. } = &mut *st;
        for kind in Kind::ALL {
            for (name, entry) in subs[kind.index()].iter_mut() {
                let keep: &[String] = if moving { &entry.shards } else { &[] };
                let want = placement(topo, kind, name, keep);
                for shard in &want {
                    if !entry.shards.contains(shard) {
                        // Nobody waits for this confirmation: the clients were answered long ago.
                        drop(link_for(links, router, shard).subscribe(kind, vec![name.clone()]));
                    }
                }
                for shard in &entry.shards {
                    if !want.contains(shard) {
                        if let Some(link) = links.get(shard) {
                            link.unsubscribe(kind, vec![name.clone()]);
                        }
                    }
                }
                entry.shards = want;
            }
        }
        let live: HashSet<&str> = topo.shards.iter().map(|s| s.id.as_str()).collect();
        links.retain(|id, _| live.contains(id.as_str()));
    }
}

/// The shards `name` is subscribed on under `topo`: its owner (every shard for patterns and
/// keyspace notifications), plus `keep` while arcs move.
fn placement(topo: &View, kind: Kind, name: &[u8], keep: &[String]) -> Vec<String> {
    let mut out: Vec<String> = if kind.everywhere(name) {
        // Not on mirror-only pools: their keyspace events would repeat the served pools'.
        topo.serving_shards().map(|s| s.id.clone()).collect()
    } else {
        topo.owner(name, 0)
            .and_then(|i| topo.shards.get(i))
            .map(|s| vec![s.id.clone()])
            .unwrap_or_default()
    };
    for k in keep {
        if !out.contains(k) && topo.shard_by_id(k).is_some() {
            out.push(k.clone());
        }
    }
    out
}

fn link_for<'a>(links: &'a mut HashMap<String, Link>, router: &Router, shard: &str) -> &'a Link {
    links
        .entry(shard.to_string())
        .or_insert_with(|| Link::start(router, shard))
}

/// Queues `bytes` for a client, counted against its output limit; false (nothing queued) when
/// that puts it past the limit, for the caller to cut it off.
fn offer(sink: &mut Sink, bytes: Bytes) -> bool {
    let queued = sink.queued.fetch_add(bytes.len(), Relaxed) + bytes.len();
    if over_limit(sink, queued) {
        return false;
    }
    let _ = sink.tx.send(bytes);
    true
}

fn over_limit(sink: &mut Sink, queued: usize) -> bool {
    if queued > HARD_LIMIT {
        return true;
    }
    if queued > SOFT_LIMIT {
        let since = *sink.soft_since.get_or_insert_with(Instant::now);
        return since.elapsed() >= SOFT_SECONDS;
    }
    sink.soft_since = None;
    false
}

/// Follows ring changes for the hub every 100 ms, until the router stops.
pub async fn run(router: Arc<Router>) {
    let mut stop = router.stop_signal();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let topo = router.view();
        router.pubsub.follow(&router, &topo);
    }
}
