//! A client connection's state that commands read or change (protocol, AUTH, closing, its chain
//! of requests during a migration, the epoch its requests were planned on).

use std::sync::Arc;

use ringcache_protocol::Protocol;

use crate::clients::{ClientHandle, Who};
use crate::rebalance::chain::Chain;
use crate::txn::Txn;

/// Per-connection state a command may read or change.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    /// The IO thread this connection lives on (its upstream connections are that thread's).
    pub io: usize,
    /// The pool of keys no route matches (the listener's; 0: `default`).
    pub pool: usize,
    pub proto: Protocol,
    pub authenticated: bool,
    /// The ACL user every request is checked against.
    pub user: Arc<ringcache_protocol::acl::User>,
    /// Stop reading requests; close once the owed replies are written (QUIT, protocol error,
    /// CLIENT KILL, shutdown).
    pub closing: bool,
    /// Close at once without a reply (an HTTP request on the RESP port).
    pub close_now: bool,
    pub client: Arc<ClientHandle>,
    pub last_cmd: &'static str,
    /// Requests that must run in order during a migration (created on first use).
    pub chain: Option<Chain>,
    /// Generation of the view the outstanding requests were planned on.
    pub epoch: u64,
    /// What `client.busy_epoch` holds (0: nothing outstanding), to store it only on changes.
    pub busy_mark: u64,
    /// A transaction or WATCH in progress, with its connection (`crate::txn`).
    pub txn: Option<Box<Txn>>,
    /// Its pub/sub queue and subscriptions, once it subscribed (`crate::pubsub`).
    pub pubsub: Option<Box<crate::pubsub::Subscriber>>,
    /// CLIENT REPLY: replies dropped while off, or for the next command after SKIP.
    pub replies: Replies,
}

/// CLIENT REPLY's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replies {
    #[default]
    On,
    Off,
    /// Drop the next command's reply (CLIENT REPLY SKIP).
    Skip,
}

impl Session {
    /// A new connection's session: RESP2, as `user`, authenticated unless it needs a password.
    pub fn new(
        client: Arc<ClientHandle>,
        io: usize,
        authenticated: bool,
        user: Arc<ringcache_protocol::acl::User>,
    ) -> Session {
        Session {
            id: client.id,
            io,
            pool: 0,
            proto: Protocol::Resp2,
            authenticated,
            user,
            closing: false,
            close_now: false,
            client,
            last_cmd: "NULL",
            chain: None,
            epoch: 0,
            busy_mark: 0,
            txn: None,
            pubsub: None,
            replies: Replies::On,
        }
    }

    pub fn who(&self) -> Who {
        Who {
            io: self.io,
            proto: self.proto,
            id: self.id,
            pool: self.pool,
        }
    }
}
