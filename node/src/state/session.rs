//! One connection's state: what a command may read or change about the connection it runs on,
//! and what the connection does next (reply, close, hand over to replication, run a move).

use std::sync::Arc;

use bytes::Bytes;
use ringcache_protocol::ring::Arc as RingArc;
use ringcache_protocol::Protocol;

use crate::clients::ClientHandle;

/// What the connection does after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flow {
    #[default]
    Continue,
    /// Send the reply, then close (QUIT, CLIENT KILL of oneself).
    CloseAfterReply,
    /// Close without replying (HTTP probes: Redis's "possible SECURITY ATTACK").
    CloseNow,
}

/// Per-connection state a command may read or change.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub proto: Protocol,
    pub authenticated: bool,
    pub client: Arc<ClientHandle>,
    pub flow: Flow,
    /// Set when this connection became a replica's link (SYNC/PSYNC): it now streams writes.
    pub is_replication_link: bool,
    /// The port a replica on this connection listens on (REPLCONF listening-port).
    pub replica_port: Option<u16>,
    /// Set on the connection a replica reads its primary's stream from: writes are allowed.
    pub from_primary: bool,
    pub last_cmd: &'static str,
    /// A move MIGRATE-KEYS or MIGRATE-ARC asked for, for the connection to run (see
    /// [`Migration`]).
    pub migration: Option<Migration>,
}

/// A move a command asked for: run by the connection after the command's checks
/// (`server::connection` awaits `topology::run`), so the IO thread serves others while it waits.
#[derive(Debug)]
pub enum Migration {
    /// MIGRATE-KEYS: these keys.
    Keys { target: String, keys: Vec<Bytes> },
    /// MIGRATE-ARC: up to `max` keys of the arc.
    Arc {
        target: String,
        arc: RingArc,
        max: usize,
    },
}

impl Migration {
    /// The background mover's batches, as opposed to a request waiting on its keys.
    pub fn is_bulk(&self) -> bool {
        matches!(self, Migration::Arc { .. })
    }
}
