//! One connection's state: what a command may read or change about the connection it runs on,
//! and what the connection does next (reply, close, hand over to replication, run a move).

use std::sync::Arc;

use bytes::Bytes;
use ringcache_protocol::ring::Arc as RingArc;
use ringcache_protocol::Protocol;

use crate::clients::ClientHandle;
use crate::state::blocking::Waiter;
use crate::state::pubsub::Subscriptions;
use crate::state::watch::WatchFlag;

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

/// CLIENT REPLY: whether command replies are sent (pub/sub messages always are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    #[default]
    On,
    Off,
    /// CLIENT REPLY SKIP just ran: the next command's reply is not sent.
    SkipNext,
    /// This command's reply is not sent.
    Skip,
}

/// Per-connection state a command may read or change.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub proto: Protocol,
    pub authenticated: bool,
    /// The ACL user whose permissions every request is checked against; `None` for the
    /// node's own sessions (a replica applying its primary's stream), which are not checked.
    pub user: Option<Arc<ringcache_protocol::acl::User>>,
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
    pub migration: Option<Box<Migration>>,
    /// Commands queued since MULTI.
    pub multi: Option<Multi>,
    /// Keys this client WATCHes and the flag a change of any of them raises.
    pub watch: Watch,
    /// Set when the command just run blocked (BLPOP on empty lists...): the connection waits.
    pub blocked: Option<(Arc<Waiter>, Option<std::time::Duration>)>,
    /// Set while EXEC runs the queued commands (blocking commands do not block then).
    pub in_exec: bool,
    /// Set while a script's `redis.call` runs a command (SORT orders a set it would leave
    /// unsorted, so the script's result does not depend on the set's layout).
    pub in_script: bool,
    /// A large RESTORE payload decoded off the IO thread before the command runs, with the
    /// payload it came from (the command uses it only for that same payload).
    /// Boxed: rare, and every connection's session would carry its size.
    pub predecoded: Option<Box<Predecoded>>,
    /// When the input being executed was read (blocked clients queue in this order).
    pub read_at: std::time::Instant,
    /// Set while subscribed to anything (boxed: most connections never subscribe).
    pub pubsub: Option<Box<Subscriptions>>,
    pub reply: ReplyMode,
    /// The replication offset right after this client's last command that propagated a write
    /// (what WAIT waits for replicas to acknowledge).
    pub woff: u64,
    /// Set when WAIT must wait for replicas: the connection waits (see `server::wait_acks`).
    pub repl_wait: Option<Box<ReplWait>>,
}

/// A WAIT that waits: `replicas` acknowledging `offset`, until `timeout` (none: for ever).
#[derive(Debug)]
pub struct ReplWait {
    pub offset: u64,
    pub replicas: u64,
    pub timeout: Option<std::time::Duration>,
}

/// A RESTORE payload and what decoding it gave.
pub type Predecoded = (
    Bytes,
    Result<crate::dump::Restored, crate::dump::BadPayload>,
);

/// A transaction being queued.
#[derive(Debug, Default)]
pub struct Multi {
    pub queued: Vec<Vec<Bytes>>,
    /// A command failed to queue (unknown, wrong arity...): EXEC answers EXECABORT.
    pub failed: bool,
}

/// WATCHed keys.
#[derive(Debug, Default)]
pub struct Watch {
    pub keys: Vec<Bytes>,
    pub flag: WatchFlag,
}

impl Session {
    /// A session for connection `id` (`authenticated` when no password is required).
    pub fn new(id: u64, client: Arc<ClientHandle>, authenticated: bool) -> Session {
        Session {
            id,
            proto: Protocol::Resp2,
            authenticated,
            user: None,
            client,
            flow: Flow::Continue,
            is_replication_link: false,
            replica_port: None,
            from_primary: false,
            last_cmd: "NULL",
            migration: None,
            multi: None,
            watch: Watch::default(),
            blocked: None,
            in_exec: false,
            in_script: false,
            predecoded: None,
            read_at: std::time::Instant::now(),
            pubsub: None,
            reply: ReplyMode::On,
            woff: 0,
            repl_wait: None,
        }
    }
}

/// A move a command asked for: run by the connection after the command's checks
/// (`server::serve_session` awaits `topology::run`), so the IO thread serves others while it waits.
#[derive(Debug)]
pub enum Migration {
    /// MIGRATE-KEYS: these keys.
    Keys { target: String, keys: Vec<Bytes> },
    /// A client's MIGRATE to another server.
    Transfer(Box<crate::cmd::migrate::Transfer>),
    /// MIGRATE-ARC: up to `max` keys of the arc.
    Arc {
        target: String,
        arc: RingArc,
        max: usize,
        /// Only keys starting with it (a split's keys).
        prefix: Option<Bytes>,
    },
}

impl Migration {
    /// The background mover's batches, as opposed to a request waiting on its keys.
    pub fn is_bulk(&self) -> bool {
        matches!(self, Migration::Arc { .. })
    }
}
