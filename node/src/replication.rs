//! Replication: a primary streams its writes to replicas; a replica is read-only.
//!
//! Writes are propagated as deterministic commands: relative expiries become absolute deadlines
//! (`SET k v PXAT t`, `PEXPIREAT`), increments become the resulting value, so primary and replica
//! agree whatever the delay.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::table::{flags, CommandSpec};
use ringcache_protocol::Reply;
use tokio::net::TcpStream;

use crate::cmd::Ctx;
use crate::server::Shared;

/// Replication state of a node.
pub struct Replication {
    replica: AtomicBool,
    offset: AtomicU64,
    has_replicas: AtomicBool,
    replid: String,
}

impl Replication {
    pub fn new(run_id: &str) -> Self {
        Replication {
            replica: AtomicBool::new(false),
            offset: AtomicU64::new(0),
            has_replicas: AtomicBool::new(false),
            replid: run_id.to_string(),
        }
    }

    pub fn is_replica(&self) -> bool {
        self.replica.load(Relaxed)
    }

    pub fn primary_addr(&self) -> Option<String> {
        None
    }

    pub fn info(&self, _shared: &Shared, out: &mut String) {
        let _ = write!(
            out,
            "role:master\r\nconnected_slaves:0\r\nmaster_replid:{}\r\nmaster_repl_offset:{}\r\n",
            self.replid,
            self.offset.load(Relaxed)
        );
    }
}

/// Refuses writes on a replica (except from its primary's stream).
pub fn check_write(ctx: &Ctx, spec: &CommandSpec) -> Option<Reply> {
    if spec.has(flags::WRITE) && ctx.shared.repl.is_replica() && !ctx.session.from_primary {
        return Some(Reply::error(
            "READONLY You can't write against a read only replica.",
        ));
    }
    None
}

/// Sends a write to the replicas verbatim.
pub fn propagate(shared: &Shared, args: &[Bytes]) {
    if !shared.repl.has_replicas.load(Relaxed) {
        return;
    }
    let mut buf = BytesMut::new();
    ringcache_protocol::resp::encode_request(&mut buf, args.iter());
    shared.repl.offset.fetch_add(buf.len() as u64, Relaxed);
}

/// Sends `SET key value [PXAT deadline]`.
pub fn propagate_value(shared: &Shared, key: &[u8], value: &[u8], expire_at: Option<i64>) {
    if !shared.repl.has_replicas.load(Relaxed) {
        return;
    }
    let mut args = vec![
        Bytes::from_static(b"SET"),
        Bytes::copy_from_slice(key),
        Bytes::copy_from_slice(value),
    ];
    if let Some(t) = expire_at {
        args.push(Bytes::from_static(b"PXAT"));
        args.push(Bytes::from(t.to_string()));
    }
    propagate(shared, &args);
}

/// Sends `PEXPIREAT key deadline` or `PERSIST key`.
pub fn propagate_expire(shared: &Shared, key: &[u8], expire_at: Option<i64>) {
    if !shared.repl.has_replicas.load(Relaxed) {
        return;
    }
    let key = Bytes::copy_from_slice(key);
    match expire_at {
        Some(t) => propagate(
            shared,
            &[
                Bytes::from_static(b"PEXPIREAT"),
                key,
                Bytes::from(t.to_string()),
            ],
        ),
        None => propagate(shared, &[Bytes::from_static(b"PERSIST"), key]),
    }
}

/// Sends `DEL key`.
pub fn propagate_del(shared: &Shared, key: &[u8]) {
    if !shared.repl.has_replicas.load(Relaxed) {
        return;
    }
    propagate(
        shared,
        &[Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)],
    );
}

/// ROLE, REPLICAOF / SLAVEOF, SYNC / PSYNC, REPLCONF.
pub fn command(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    match spec.name {
        "role" => Reply::Array(vec![
            Reply::bulk_str("master"),
            Reply::Int(ctx.shared.repl.offset.load(Relaxed) as i64),
            Reply::Array(Vec::new()),
        ]),
        "replconf" => Reply::OK,
        _ => {
            let _ = a;
            Reply::error("ERR replication is not available on this node yet")
        }
    }
}

/// Starts the replication client when the node was started as a replica.
pub fn start(_shared: Arc<Shared>, _stop: tokio::sync::watch::Receiver<bool>) {}

/// Serves a replica's link after SYNC/PSYNC.
pub async fn serve_replica(
    _shared: &Shared,
    _sock: TcpStream,
    _inbuf: BytesMut,
) -> std::io::Result<()> {
    Ok(())
}
