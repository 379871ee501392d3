//! Pub/sub's shared state: which mailboxes listen to which channel, pattern and shard channel,
//! the keyspace-notification flags, and the pubsub output buffer limit.
//!
//! A publish encodes its message once per protocol and leaves a reference to the same bytes in
//! every subscriber's [`Mailbox`] (a lock, a push and a wake each); the subscribers' connections
//! write them on their own IO threads, so a publisher never writes to, or waits on, a subscriber.

pub mod mailbox;
pub mod subscriptions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_protocol::{glob, Protocol};

pub use mailbox::{BufferLimit, Mailbox};
pub use subscriptions::{Kind, Subscriptions};

/// Subscribers of each channel (or shard channel), in the order they subscribed.
type ChannelMap = HashMap<Bytes, Vec<Arc<Mailbox>>>;

#[derive(Default)]
struct Registry {
    channels: ChannelMap,
    /// Patterns in the order first subscribed, each with its subscribers.
    patterns: Vec<(Bytes, Vec<Arc<Mailbox>>)>,
}

/// Every subscription of the node.
pub struct PubSub {
    reg: RwLock<Registry>,
    shard: RwLock<ChannelMap>,
    /// `notify-keyspace-events` as flags (see `crate::cmd::notify`); 0 = off.
    notify: AtomicU32,
    /// `client-output-buffer-limit`: normal, replica and pubsub; only pubsub is enforced.
    limits: Mutex<[BufferLimit; 3]>,
    pubsub_hard: AtomicU64,
    pubsub_soft: AtomicU64,
    pubsub_secs: AtomicU64,
}

/// Client classes of `client-output-buffer-limit`, in Redis's order.
pub const LIMIT_CLASSES: [&str; 3] = ["normal", "slave", "pubsub"];

impl Default for PubSub {
    fn default() -> Self {
        const MB: u64 = 1024 * 1024;
        let limits = [
            BufferLimit {
                hard: 0,
                soft: 0,
                soft_secs: 0,
            },
            BufferLimit {
                hard: 256 * MB,
                soft: 64 * MB,
                soft_secs: 60,
            },
            BufferLimit {
                hard: 32 * MB,
                soft: 8 * MB,
                soft_secs: 60,
            },
        ];
        let p = limits[2];
        PubSub {
            reg: RwLock::default(),
            shard: RwLock::default(),
            notify: AtomicU32::new(0),
            limits: Mutex::new(limits),
            pubsub_hard: AtomicU64::new(p.hard),
            pubsub_soft: AtomicU64::new(p.soft),
            pubsub_secs: AtomicU64::new(p.soft_secs),
        }
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// `parts` as one pub/sub message: an array in RESP2, a push (`>`) in RESP3.
pub fn encode_push(proto: Protocol, parts: &[Option<&[u8]>], count: Option<i64>) -> Bytes {
    let mut out = BytesMut::with_capacity(
        16 + parts
            .iter()
            .map(|p| p.map_or(5, |p| p.len() + 16))
            .sum::<usize>(),
    );
    push_frame(&mut out, proto, parts, count);
    out.freeze()
}

/// Appends `parts` (bulk strings, `None` a nil) and an optional trailing integer as one frame.
pub fn push_frame(
    out: &mut BytesMut,
    proto: Protocol,
    parts: &[Option<&[u8]>],
    count: Option<i64>,
) {
    let tag = if proto == Protocol::Resp3 { b'>' } else { b'*' };
    let n = parts.len() + usize::from(count.is_some());
    out.put_u8(tag);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
    for p in parts {
        match p {
            Some(p) => {
                out.put_u8(b'$');
                out.extend_from_slice(itoa::Buffer::new().format(p.len()).as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(p);
                out.extend_from_slice(b"\r\n");
            }
            None if proto == Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
            None => out.extend_from_slice(b"$-1\r\n"),
        }
    }
    if let Some(c) = count {
        out.put_u8(b':');
        out.extend_from_slice(itoa::Buffer::new().format(c).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// One message, encoded on first need for each protocol.
struct Frames<'a> {
    parts: [&'a [u8]; 4],
    len: usize,
    resp2: Option<Bytes>,
    resp3: Option<Bytes>,
}

impl<'a> Frames<'a> {
    fn new(parts: &[&'a [u8]]) -> Frames<'a> {
        let mut p: [&[u8]; 4] = [&[]; 4];
        p[..parts.len()].copy_from_slice(parts);
        Frames {
            parts: p,
            len: parts.len(),
            resp2: None,
            resp3: None,
        }
    }

    fn for_proto(&mut self, proto: Protocol) -> &Bytes {
        let parts = &self.parts[..self.len];
        let slot = match proto {
            Protocol::Resp2 => &mut self.resp2,
            Protocol::Resp3 => &mut self.resp3,
        };
        slot.get_or_insert_with(|| {
            let mut p: [Option<&[u8]>; 4] = [None; 4];
            for (to, from) in p.iter_mut().zip(parts) {
                *to = Some(*from);
            }
            encode_push(proto, &p[..parts.len()], None)
        })
    }
}

impl PubSub {
    /// The limit pubsub clients are held to.
    pub fn pubsub_limit(&self) -> BufferLimit {
        BufferLimit {
            hard: self.pubsub_hard.load(Relaxed),
            soft: self.pubsub_soft.load(Relaxed),
            soft_secs: self.pubsub_secs.load(Relaxed),
        }
    }

    /// `client-output-buffer-limit`, per class in [`LIMIT_CLASSES`] order.
    pub fn buffer_limits(&self) -> [BufferLimit; 3] {
        *crate::keyspace::lock(&self.limits)
    }

    pub fn set_buffer_limits(&self, limits: [BufferLimit; 3]) {
        *crate::keyspace::lock(&self.limits) = limits;
        let p = limits[2];
        self.pubsub_hard.store(p.hard, Relaxed);
        self.pubsub_soft.store(p.soft, Relaxed);
        self.pubsub_secs.store(p.soft_secs, Relaxed);
    }

    pub fn notify_flags(&self) -> u32 {
        self.notify.load(Relaxed)
    }

    /// Sets the notification flags; the previous ones.
    pub fn swap_notify_flags(&self, flags: u32) -> u32 {
        self.notify.swap(flags, Relaxed)
    }

    /// Adds `mb` to the subscribers of `name`.
    pub fn add(&self, kind: Kind, name: &Bytes, mb: &Arc<Mailbox>) {
        match kind {
            Kind::Channel => add_to(&mut write(&self.reg).channels, name, mb),
            Kind::Shard => add_to(&mut write(&self.shard), name, mb),
            Kind::Pattern => {
                let mut reg = write(&self.reg);
                match reg.patterns.iter_mut().find(|(p, _)| p == name) {
                    Some((_, subs)) => subs.push(mb.clone()),
                    None => reg.patterns.push((name.clone(), vec![mb.clone()])),
                }
            }
        }
    }

    /// Removes the mailbox `id` from the subscribers of `name`.
    pub fn remove(&self, kind: Kind, name: &[u8], id: u64) {
        match kind {
            Kind::Channel => remove_from(&mut write(&self.reg).channels, name, id),
            Kind::Shard => remove_from(&mut write(&self.shard), name, id),
            Kind::Pattern => {
                let mut reg = write(&self.reg);
                if let Some(at) = reg.patterns.iter().position(|(p, _)| p == name) {
                    let subs = &mut reg.patterns[at].1;
                    subs.retain(|m| m.id != id);
                    if subs.is_empty() {
                        reg.patterns.remove(at);
                    }
                }
            }
        }
    }

    /// PUBLISH: queues the message for the channel's subscribers, then for those of every
    /// matching pattern (as Redis orders them); how many received it.
    pub fn publish(&self, channel: &[u8], message: &[u8]) -> usize {
        let limit = self.pubsub_limit();
        let reg = read(&self.reg);
        let mut n = 0;
        if let Some(subs) = reg.channels.get(channel) {
            let mut frames = Frames::new(&[b"message", channel, message]);
            for m in subs {
                m.deliver(frames.for_proto(m.proto()), limit);
                n += 1;
            }
        }
        for (pattern, subs) in &reg.patterns {
            if !glob::matches(pattern, channel, false) {
                continue;
            }
            let mut frames = Frames::new(&[b"pmessage", pattern, channel, message]);
            for m in subs {
                m.deliver(frames.for_proto(m.proto()), limit);
                n += 1;
            }
        }
        n
    }

    /// SPUBLISH: queues the message for the shard channel's subscribers.
    pub fn spublish(&self, channel: &[u8], message: &[u8]) -> usize {
        let limit = self.pubsub_limit();
        let shard = read(&self.shard);
        let Some(subs) = shard.get(channel) else {
            return 0;
        };
        let mut frames = Frames::new(&[b"smessage", channel, message]);
        for m in subs {
            m.deliver(frames.for_proto(m.proto()), limit);
        }
        subs.len()
    }

    /// Channels (or shard channels) with subscribers, matching `pattern` if given.
    pub fn channels(&self, shard: bool, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let list = |m: &ChannelMap| {
            m.keys()
                .filter(|c| pattern.is_none_or(|p| glob::matches(p, c, false)))
                .cloned()
                .collect()
        };
        if shard {
            list(&read(&self.shard))
        } else {
            list(&read(&self.reg).channels)
        }
    }

    /// Subscribers of a channel (or shard channel).
    pub fn numsub(&self, shard: bool, channel: &[u8]) -> usize {
        if shard {
            read(&self.shard).get(channel).map_or(0, Vec::len)
        } else {
            read(&self.reg).channels.get(channel).map_or(0, Vec::len)
        }
    }

    /// Patterns with subscribers.
    pub fn numpat(&self) -> usize {
        read(&self.reg).patterns.len()
    }

    /// Every subscriber's channels and shard channels (`false`) and patterns (`true`), by
    /// client id.
    pub fn by_client(&self) -> HashMap<u64, Vec<(Bytes, bool)>> {
        let mut out: HashMap<u64, Vec<(Bytes, bool)>> = HashMap::new();
        let mut add = |name: &Bytes, pattern: bool, mbs: &[Arc<Mailbox>]| {
            for mb in mbs {
                out.entry(mb.id).or_default().push((name.clone(), pattern));
            }
        };
        {
            let reg = read(&self.reg);
            for (name, mbs) in &reg.channels {
                add(name, false, mbs);
            }
            for (name, mbs) in &reg.patterns {
                add(name, true, mbs);
            }
        }
        for (name, mbs) in read(&self.shard).iter() {
            add(name, false, mbs);
        }
        out
    }

    /// Channels with subscribers (INFO `pubsub_channels`).
    pub fn channel_count(&self, shard: bool) -> usize {
        if shard {
            read(&self.shard).len()
        } else {
            read(&self.reg).channels.len()
        }
    }
}

fn add_to(map: &mut ChannelMap, name: &Bytes, mb: &Arc<Mailbox>) {
    map.entry(name.clone()).or_default().push(mb.clone());
}

fn remove_from(map: &mut ChannelMap, name: &[u8], id: u64) {
    if let Some(subs) = map.get_mut(name) {
        subs.retain(|m| m.id != id);
        if subs.is_empty() {
            map.remove(name);
        }
    }
}
