//! Connection commands: PING, HELLO, AUTH, SELECT, RESET, CLIENT (REPLY here) (the last four, shared with the
//! router, in `ringcache_protocol::clients`).

use std::sync::Arc;

use bytes::Bytes;
use ringcache_protocol::acl::{Acl, User};
use ringcache_protocol::clients::Conn;
use ringcache_protocol::{Protocol, Reply};

use super::args::{arity_error, int_arg, is};
use super::ctx::Ctx;
use crate::clients::{ClientHandle, Clients, NodeClient};
use crate::state::session::{Flow, ReplyMode};

pub use ringcache_protocol::clients::{auth, client, hello, reset};
pub use ringcache_protocol::errors::REDIS_COMPAT_VERSION;

pub fn ping(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if a.len() <= 2 && super::pubsub::in_resp2_subscribed_mode(ctx.session) {
        return super::pubsub::subscribed_ping(a);
    }
    match a.len() {
        1 => Reply::Status("PONG"),
        2 => Reply::Bulk(a[1].clone()),
        _ => {
            let _ = ctx;
            arity_error("ping")
        }
    }
}

/// What a node connection lends the shared connection commands.
impl Conn for Ctx<'_> {
    type Ext = NodeClient;

    fn client(&self) -> &ClientHandle {
        &self.session.client
    }

    fn clients(&self) -> &Clients {
        &self.shared.clients
    }

    fn acl(&self) -> &Acl {
        &self.shared.acl
    }

    fn user(&self) -> Arc<User> {
        self.session
            .user
            .clone()
            .unwrap_or_else(|| self.shared.acl.default_user())
    }

    fn set_user(&mut self, u: Arc<User>) {
        self.session.user = Some(u);
        self.session.authenticated = true;
    }

    fn authenticated(&mut self) -> &mut bool {
        &mut self.session.authenticated
    }

    fn proto(&mut self) -> &mut Protocol {
        &mut self.session.proto
    }

    fn role(&self) -> &'static str {
        if self.shared.repl.is_replica() {
            "replica"
        } else {
            "master"
        }
    }

    fn close_after_reply(&mut self) {
        self.session.flow = Flow::CloseAfterReply;
    }

    fn subscriptions(&self) -> std::collections::HashMap<u64, Vec<(Bytes, bool)>> {
        self.shared.pubsub.by_client()
    }
}

/// Only database 0 exists: a ring shards keys, not databases (as in Redis Cluster).
pub fn select(a: &[Bytes]) -> Reply {
    match int_arg(&a[1]) {
        Ok(0) => Reply::OK,
        Ok(n) if (0..16).contains(&n) => Reply::error("ERR SELECT is not allowed in cluster mode"),
        Ok(_) => Reply::error("ERR DB index is out of range"),
        Err(e) => e,
    }
}

/// `CLIENT REPLY ON|OFF|SKIP`: OFF and SKIP answer nothing (the connection drops the reply).
pub fn client_reply(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if a.len() != 3 {
        return arity_error("client|reply");
    }
    let mode = if is(&a[2], "on") {
        ReplyMode::On
    } else if is(&a[2], "off") {
        ReplyMode::Off
    } else if is(&a[2], "skip") {
        ReplyMode::SkipNext
    } else {
        return Reply::error("ERR syntax error");
    };
    ctx.session.reply = mode;
    Reply::OK
}
