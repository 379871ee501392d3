//! Admin connections to nodes: epochs, migration batches and probes go over plain RESP
//! connections of their own, apart from the multiplexed client pools. `ringcache ctl` and the
//! SIGHUP reload use them to talk to a router, with the helpers reading its replies.
//! Self-contained (the protocol crate only), so a shared RESP client can replace it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::codec::ClientCodec;
use ringcache_protocol::ring::Epoch;
use ringcache_protocol::{Protocol, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

/// A plain RESP connection for control traffic (epochs, migration batches, admin tools), apart
/// from the multiplexed client pools so a long batch never delays client requests.
#[derive(Debug)]
pub struct NodeConn {
    addr: String,
    sock: TcpStream,
    buf: BytesMut,
    codec: ClientCodec,
}

impl NodeConn {
    pub async fn connect(addr: &str, timeout: Duration) -> Result<NodeConn, String> {
        let sock = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(format!("{addr}: connect timed out")),
            Ok(Err(e)) => return Err(format!("{addr}: {}", describe(&e))),
            Ok(Ok(s)) => s,
        };
        let _ = sock.set_nodelay(true);
        Ok(NodeConn {
            addr: addr.to_string(),
            sock,
            buf: BytesMut::with_capacity(4096),
            codec: ClientCodec::new(Protocol::Resp2),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// One command; an error reply is `Ok(Reply::Error)`, a transport failure `Err`.
    pub async fn call<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        timeout: Duration,
    ) -> Result<Reply, String> {
        let mut out = BytesMut::new();
        ringcache_protocol::resp::encode_request(&mut out, args.iter());
        let mut replies = self.exchange(&out, 1, timeout).await?;
        replies.pop().ok_or_else(|| "no reply".to_string())
    }

    /// Several commands pipelined; their replies in order.
    pub async fn pipeline(
        &mut self,
        cmds: &[Vec<Bytes>],
        timeout: Duration,
    ) -> Result<Vec<Reply>, String> {
        let mut out = BytesMut::new();
        for c in cmds {
            ringcache_protocol::resp::encode_request(&mut out, c.iter());
        }
        self.exchange(&out, cmds.len(), timeout).await
    }

    async fn exchange(
        &mut self,
        out: &[u8],
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Reply>, String> {
        let addr = self.addr.clone();
        let work = async {
            self.sock
                .write_all(out)
                .await
                .map_err(|e| format!("{addr}: {}", describe(&e)))?;
            let mut replies = Vec::with_capacity(n);
            while replies.len() < n {
                match self.codec.decode(&mut self.buf) {
                    Ok(Some(r)) => {
                        replies.push(r.reply);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(format!("{addr}: {e}")),
                }
                self.buf.reserve(16 * 1024);
                let got = self
                    .sock
                    .read_buf(&mut self.buf)
                    .await
                    .map_err(|e| format!("{addr}: {}", describe(&e)))?;
                if got == 0 {
                    return Err(format!("{addr}: connection closed"));
                }
            }
            Ok(replies)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{addr}: no reply within {} ms",
                timeout.as_millis()
            )),
        }
    }
}

fn describe(e: &std::io::Error) -> String {
    if e.raw_os_error().is_some() {
        e.kind().to_string()
    } else {
        e.to_string()
    }
}

pub(super) fn as_int(r: &Reply) -> Option<i64> {
    match r {
        Reply::Int(n) => Some(*n),
        Reply::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn as_text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(b) | Reply::Verbatim(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some((*s).to_string()),
        Reply::StatusOwned(s) => Some(s.clone()),
        _ => None,
    }
}

/// What `TOPOLOGY GET` tells of a node.
#[derive(Debug, Clone)]
pub(super) struct NodeState {
    pub(super) epoch: Epoch,
    pub(super) shard: String,
    /// The record of a change moving keys at `epoch` (see [`crate::record`]).
    pub(super) record: Option<Bytes>,
}

/// `TOPOLOGY GET` → the node's epoch, shard id and change record.
pub(super) async fn node_state(
    conn: &mut NodeConn,
    timeout: Duration,
) -> Result<NodeState, String> {
    match conn.call(&["TOPOLOGY", "GET"], timeout).await? {
        Reply::Array(v) if v.len() >= 2 => {
            let epoch = as_int(&v[0]).and_then(|e| u64::try_from(e).ok());
            let record = match v.get(2) {
                Some(Reply::Bulk(b)) => Some(b.clone()),
                _ => None,
            };
            match epoch {
                Some(epoch) => Ok(NodeState {
                    epoch,
                    shard: as_text(&v[1]).unwrap_or_default(),
                    record,
                }),
                None => Err(format!("{}: odd TOPOLOGY GET reply", conn.addr)),
            }
        }
        Reply::Error(e) => Err(format!("{}: {e}", conn.addr)),
        _ => Err(format!("{}: odd TOPOLOGY GET reply", conn.addr)),
    }
}

/// Sends one command to one node; `Err` names the node and why (`STALEEPOCH`: the node is
/// ahead).
pub(super) async fn send_one(addr: &str, cmd: &[Bytes], timeout: Duration) -> Result<(), String> {
    let mut conn = NodeConn::connect(addr, timeout).await?;
    match conn.call(cmd, timeout).await? {
        Reply::Error(e) => Err(format!("{addr}: {e}")),
        _ => Ok(()),
    }
}

/// The value of `name` in a `RING STATUS` (or INFO) text of `key:value` lines.
pub fn status_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The text of a `RING STATUS` reply.
pub fn reply_text(r: &Reply) -> Option<String> {
    as_text(r)
}

/// One shard as `RING NODES` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: String,
    pub primary: String,
    pub replicas: Vec<String>,
    pub weight: u32,
}

/// The shards of a `RING NODES` reply (maps in RESP3, flat name/value arrays in RESP2).
pub fn parse_ring_nodes(r: &Reply) -> Vec<NodeEntry> {
    let Reply::Array(items) = r else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let pairs: Vec<(String, &Reply)> = match item {
                Reply::Map(m) => m
                    .iter()
                    .filter_map(|(k, v)| Some((as_text(k)?, v)))
                    .collect(),
                Reply::Array(flat) => flat
                    .chunks(2)
                    .filter_map(|kv| Some((as_text(kv.first()?)?, kv.get(1)?)))
                    .collect(),
                _ => return None,
            };
            let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
            let replicas = match get("replicas") {
                Some(Reply::Array(v) | Reply::Set(v)) => v.iter().filter_map(as_text).collect(),
                _ => Vec::new(),
            };
            Some(NodeEntry {
                id: get("id").and_then(as_text)?,
                primary: get("primary").and_then(as_text)?,
                replicas,
                weight: get("weight")
                    .and_then(as_int)
                    .and_then(|w| u32::try_from(w).ok())
                    .unwrap_or(1),
            })
        })
        .collect()
}
