//! The churn harness's connection: the shared async client
//! ([`ringcache_client::Client`]) with requests pipelined in one write and each reply timed as it
//! is decoded. Every read and write is bounded by a deadline; a request without a reply (timeout,
//! close, undecodable bytes) is reported as such, never retried, because the harness must know
//! that such a write *may* have run.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_client::{admin, Client, ClientError, Credentials, LinkSpec};
use ringcache_protocol::resp::encode_request;
use ringcache_protocol::Reply;

/// One command: its arguments, the name first.
pub type Cmd = Vec<Vec<u8>>;

/// Builds a command from string-like parts.
pub fn cmd<A: AsRef<[u8]>>(parts: &[A]) -> Cmd {
    parts.iter().map(|p| p.as_ref().to_vec()).collect()
}

/// What came back for one request.
#[derive(Debug, Clone)]
pub enum Answer {
    Reply(Reply),
    /// No reply (why): the request may or may not have been executed.
    NoReply(String),
}

/// The routers' password (`--auth`): every connection authenticates with it first.
static PASSWORD: OnceLock<String> = OnceLock::new();

/// Makes every connection from now on send `AUTH password` first.
pub fn set_password(password: &str) {
    let _ = PASSWORD.set(password.to_string());
}

pub struct Conn {
    client: Client,
    broken: bool,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, String> {
        let link = LinkSpec::with_auth(PASSWORD.get().map(|pw| Credentials {
            user: None,
            password: pw.clone(),
        }))
        // `--tls`: every connection to a router goes to its TLS listener.
        .with_tls(::tests::tls::client().cloned());
        match Client::open(&addr.to_string(), timeout, &link).await {
            Ok(client) => Ok(Conn {
                client,
                broken: false,
            }),
            Err(ClientError::ConnectTimeout { .. }) => {
                Err(format!("connect {addr}: timed out after {timeout:?}"))
            }
            // The error names the address first.
            Err(e) => Err(format!("connect {e}")),
        }
    }

    /// Whether an earlier request lost its reply; the connection must not be reused then (a
    /// late reply would be taken for the next request's).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends `cmds` in one write and reads their replies in order, each with the instant it was
    /// decoded. After a missing reply, that request and every later one get `NoReply`.
    pub async fn pipeline(&mut self, cmds: &[Cmd], timeout: Duration) -> Vec<(Answer, Instant)> {
        let deadline = Instant::now() + timeout;
        let mut answers = Vec::with_capacity(cmds.len());
        if self.broken {
            let now = Instant::now();
            answers.resize(
                cmds.len(),
                (Answer::NoReply("connection unusable".into()), now),
            );
            return answers;
        }
        let mut out = BytesMut::new();
        for c in cmds {
            encode_request(&mut out, c.iter());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = self.client.send(&out, left).await {
            let why = match e {
                ClientError::Timeout { .. } => "write timed out".to_string(),
                e => format!("write: {e}"),
            };
            self.broken = true;
            answers.resize(cmds.len(), (Answer::NoReply(why), Instant::now()));
            return answers;
        }
        while answers.len() < cmds.len() {
            // A zero timeout still takes a reply that is already buffered.
            let left = deadline.saturating_duration_since(Instant::now());
            match self.client.read(left).await {
                Ok(r) => answers.push((Answer::Reply(r.reply), Instant::now())),
                Err(e) => {
                    let why = match e {
                        ClientError::Timeout { .. } => "timed out waiting for the reply".into(),
                        ClientError::Closed { .. } => "connection closed by the server".into(),
                        ClientError::Protocol { reason, .. } => {
                            format!("undecodable reply: {reason}")
                        }
                        e => format!("read: {e}"),
                    };
                    self.broken = true;
                    answers.resize(cmds.len(), (Answer::NoReply(why), Instant::now()));
                }
            }
        }
        answers
    }

    /// Runs one command; `Err` when no reply came (error replies are `Ok(Reply::Error)`).
    pub async fn call(&mut self, c: Cmd, timeout: Duration) -> Result<Reply, String> {
        let mut v = self.pipeline(&[c], timeout).await;
        match v.pop() {
            Some((Answer::Reply(r), _)) => Ok(r),
            Some((Answer::NoReply(why), _)) => Err(why),
            None => Err("no answer".into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading replies without panicking
// ---------------------------------------------------------------------------------------------

/// Bulk, status or verbatim text.
pub fn text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(b) | Reply::Verbatim(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some((*s).to_string()),
        Reply::StatusOwned(s) => Some(s.clone()),
        _ => None,
    }
}

pub fn is_ok(r: &Reply) -> bool {
    matches!(r, Reply::Status("OK")) || matches!(r, Reply::StatusOwned(s) if s == "OK")
}

/// An integer reply, or a string holding one.
pub fn as_u64(r: &Reply) -> Option<u64> {
    match r {
        Reply::Int(n) => u64::try_from(*n).ok(),
        other => text(other).and_then(|t| t.trim().parse().ok()),
    }
}

/// A RESP3 map or a RESP2 flat array of (name, value) pairs with string names.
pub fn pairs(r: &Reply) -> Option<Vec<(String, Reply)>> {
    match r {
        Reply::Map(m) => m
            .iter()
            .map(|(k, v)| text(k).map(|k| (k, v.clone())))
            .collect(),
        Reply::Array(v) if v.len().is_multiple_of(2) => v
            .chunks(2)
            .map(|p| text(&p[0]).map(|k| (k, p[1].clone())))
            .collect(),
        _ => None,
    }
}

pub fn field(r: &Reply, name: &str) -> Option<Reply> {
    pairs(r)?
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// What `RING STATUS` says about the epoch and the ranges still migrating (`None`: not said).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingStatus {
    pub epoch: Option<u64>,
    pub migrating: Option<u64>,
    /// The change in progress, or else the last one, as `change`/`last_change` name it.
    pub change: Option<String>,
}

/// Reads `RING STATUS` as a map (`epoch`, `migrating`) or as INFO-style `name:value` lines.
/// `migrating` given as a list or map counts its entries.
pub fn parse_ring_status(r: &Reply) -> RingStatus {
    fn count(v: &Reply) -> Option<u64> {
        match v {
            Reply::Array(items) | Reply::Set(items) => Some(items.len() as u64),
            Reply::Map(m) => Some(m.len() as u64),
            other => as_u64(other),
        }
    }
    if pairs(r).is_some() {
        return RingStatus {
            epoch: field(r, "epoch").as_ref().and_then(as_u64),
            migrating: field(r, "migrating").as_ref().and_then(count),
            change: field(r, "change")
                .or_else(|| field(r, "last_change"))
                .as_ref()
                .and_then(text),
        };
    }
    let mut st = RingStatus::default();
    if let Some(t) = text(r) {
        for line in t.lines() {
            if let Some((k, v)) = line.split_once(':') {
                match k.trim() {
                    "epoch" => st.epoch = v.trim().parse().ok(),
                    "migrating" => st.migrating = v.trim().parse().ok(),
                    "change" => st.change = Some(v.trim().to_string()),
                    "last_change" if st.change.is_none() => st.change = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
    }
    st
}

/// The shard a `RING LOCATE` reply names: its `shard` field, else its first element.
pub fn parse_locate(r: &Reply) -> Option<String> {
    if let Some(s) = field(r, "shard").as_ref().and_then(text) {
        return Some(s);
    }
    match r {
        Reply::Array(v) => v.first().and_then(text),
        other => text(other),
    }
}

/// One shard as `RING NODES` lists it: addresses as the router dials them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingNode {
    pub id: String,
    pub primary: String,
    pub replicas: Vec<String>,
}

/// Every shard in a `RING NODES` reply (a list of maps).
pub fn parse_ring_nodes(r: &Reply) -> Vec<RingNode> {
    admin::parse_ring_nodes(r)
        .into_iter()
        .map(|n| RingNode {
            id: n.id,
            primary: n.primary,
            replicas: n.replicas,
        })
        .collect()
}

/// A short, printable form of a reply for logs.
pub fn brief(r: &Reply) -> String {
    let s = match r {
        Reply::Error(e) => format!("-{e}"),
        Reply::Nil | Reply::NilArray => "(nil)".to_string(),
        Reply::Int(n) => format!(":{n}"),
        other => text(other).unwrap_or_else(|| format!("{other:?}")),
    };
    let mut s: String = s.chars().take(200).collect();
    if s.len() >= 200 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Reply {
        Reply::bulk_str(s)
    }

    #[test]
    fn ring_replies_as_the_router_sends_them_in_resp2() {
        // RING STATUS: a map, flattened in RESP2.
        let status = Reply::Array(vec![
            b("epoch"),
            Reply::Int(4),
            b("vnodes"),
            Reply::Int(2048),
            b("migrating"),
            Reply::Int(2),
        ]);
        let st = parse_ring_status(&status);
        assert_eq!((st.epoch, st.migrating), (Some(4), Some(2)));
        let st = parse_ring_status(&b("epoch:5\r\nmigrating:0\r\n"));
        assert_eq!((st.epoch, st.migrating), (Some(5), Some(0)));
        let st = parse_ring_status(&Reply::Array(vec![b("epoch"), Reply::Int(1)]));
        assert_eq!(st.migrating, None);
        // RING LOCATE: a map whose `shard` is the owner; or an array led by the shard id.
        let locate = Reply::Array(vec![b("shard"), b("bravo"), b("primary"), b("127.0.0.1:1")]);
        assert_eq!(parse_locate(&locate).as_deref(), Some("bravo"));
        let locate = Reply::Array(vec![b("charlie"), b("127.0.0.1:1"), b("x")]);
        assert_eq!(parse_locate(&locate).as_deref(), Some("charlie"));
        // RING NODES: a list of maps.
        let nodes = Reply::Array(vec![Reply::Array(vec![
            b("id"),
            b("alpha"),
            b("primary"),
            b("127.0.0.1:7001"),
            b("replicas"),
            Reply::Array(vec![b("127.0.0.1:7011")]),
        ])]);
        assert_eq!(
            parse_ring_nodes(&nodes),
            vec![RingNode {
                id: "alpha".into(),
                primary: "127.0.0.1:7001".into(),
                replicas: vec!["127.0.0.1:7011".into()],
            }]
        );
    }
}
