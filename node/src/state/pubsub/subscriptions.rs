//! One connection's subscriptions: its channels, patterns and shard channels, and the mailbox
//! their messages arrive in. A session holds one only while it is subscribed to something.

use std::sync::Arc;

use bytes::Bytes;
use indexmap::IndexSet;

use super::Mailbox;

/// The three kinds of subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    /// The first element of the replies confirming a subscription.
    pub fn subscribe_word(self) -> &'static [u8] {
        match self {
            Kind::Channel => b"subscribe",
            Kind::Pattern => b"psubscribe",
            Kind::Shard => b"ssubscribe",
        }
    }

    pub fn unsubscribe_word(self) -> &'static [u8] {
        match self {
            Kind::Channel => b"unsubscribe",
            Kind::Pattern => b"punsubscribe",
            Kind::Shard => b"sunsubscribe",
        }
    }
}

/// A subscribed connection's state.
#[derive(Debug)]
pub struct Subscriptions {
    pub mailbox: Arc<Mailbox>,
    /// In MONITOR mode: the mailbox also carries the commands the node runs.
    pub monitor: bool,
    channels: IndexSet<Bytes>,
    patterns: IndexSet<Bytes>,
    shard: IndexSet<Bytes>,
}

impl Subscriptions {
    pub fn new(mailbox: Arc<Mailbox>) -> Subscriptions {
        Subscriptions {
            mailbox,
            monitor: false,
            channels: IndexSet::new(),
            patterns: IndexSet::new(),
            shard: IndexSet::new(),
        }
    }

    fn set(&mut self, kind: Kind) -> &mut IndexSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    /// Adds a subscription; false if it was there already.
    pub fn insert(&mut self, kind: Kind, name: &Bytes) -> bool {
        let set = self.set(kind);
        if set.contains(name) {
            return false;
        }
        set.insert(Bytes::copy_from_slice(name))
    }

    /// Removes a subscription; false if there was none.
    pub fn remove(&mut self, kind: Kind, name: &[u8]) -> bool {
        self.set(kind).shift_remove(name)
    }

    /// Every subscription of `kind`, in the order made.
    pub fn names(&self, kind: Kind) -> Vec<Bytes> {
        match kind {
            Kind::Channel => self.channels.iter().cloned().collect(),
            Kind::Pattern => self.patterns.iter().cloned().collect(),
            Kind::Shard => self.shard.iter().cloned().collect(),
        }
    }

    /// The count a (un)subscribe reply carries: channels and patterns together, as Redis counts
    /// them, or shard channels alone.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Channel | Kind::Pattern => self.channels.len() + self.patterns.len(),
            Kind::Shard => self.shard.len(),
        }
    }

    /// Nothing left to deliver: no subscription and not monitoring.
    pub fn is_empty(&self) -> bool {
        !self.monitor && !self.subscribed()
    }

    /// Subscribed to anything (RESP2's subscribed mode).
    pub fn subscribed(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty())
    }

    /// [channels, patterns, shard channels].
    pub fn sizes(&self) -> [usize; 3] {
        [self.channels.len(), self.patterns.len(), self.shard.len()]
    }
}
