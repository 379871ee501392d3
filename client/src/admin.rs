//! The router's admin commands as typed values: `RING STATUS` and `RING NODES` read into
//! structs, and the one flow that sends a membership change and follows it until its keys have
//! moved (used by `ringcache ctl` and by the router's SIGHUP reload).

use std::time::Duration;

use ringcache_protocol::wire::{reply_int, reply_text};
use ringcache_protocol::Reply;

use crate::error::ClientError;
use crate::Client;

/// A `RING STATUS` reply: `key:value` lines (with `# Section` headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingStatus {
    pub text: String,
}

impl RingStatus {
    pub fn from_reply(r: &Reply) -> Option<RingStatus> {
        reply_text(r).map(|text| RingStatus { text })
    }

    /// The value of `name`, if the status has that line.
    pub fn field(&self, name: &str) -> Option<&str> {
        status_field(&self.text, name)
    }

    /// A numeric field.
    pub fn num(&self, name: &str) -> Option<f64> {
        self.field(name)?.parse().ok()
    }

    /// Whether a change is moving keys now.
    pub fn migrating(&self) -> bool {
        self.field("migrating") != Some("0")
    }

    pub fn epoch(&self) -> Option<u64> {
        self.field("epoch")?.parse().ok()
    }

    /// How the last change ended (`done`, `cancelled`, `failed`), once it has.
    pub fn last_state(&self) -> Option<&str> {
        self.field("last_state")
    }
}

/// The value of `name` in a text of `key:value` lines (`RING STATUS`, `INFO`).
pub fn status_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// One shard as `RING NODES` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: String,
    pub primary: String,
    pub replicas: Vec<String>,
    pub weight: u32,
    /// Every other field the router reports for the shard (status, points, ...), as text.
    pub other: Vec<(String, String)>,
}

impl NodeEntry {
    /// A reported field by name (`status`, `points`, ...).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.other
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Field `name` of one map of a reply (a map in RESP3, a flat name/value array in RESP2) as
/// text; `None` if it is missing or nil.
pub fn map_field(item: &Reply, name: &str) -> Option<String> {
    let value = match item {
        Reply::Map(m) => m
            .iter()
            .find(|(k, _)| reply_text(k).as_deref() == Some(name))
            .map(|(_, v)| v),
        Reply::Array(flat) => flat
            .chunks(2)
            .find(|kv| reply_text(&kv[0]).as_deref() == Some(name))
            .and_then(|kv| kv.get(1)),
        _ => None,
    }?;
    match value {
        Reply::Int(n) => Some(n.to_string()),
        v => reply_text(v),
    }
}

/// The shards of a `RING NODES` reply (maps in RESP3, flat name/value arrays in RESP2).
pub fn parse_ring_nodes(r: &Reply) -> Vec<NodeEntry> {
    let Reply::Array(items) = r else {
        return Vec::new();
    };
    items.iter().filter_map(node_entry).collect()
}

fn node_entry(item: &Reply) -> Option<NodeEntry> {
    let pairs: Vec<(String, &Reply)> = match item {
        Reply::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((reply_text(k)?, v)))
            .collect(),
        Reply::Array(flat) => flat
            .chunks(2)
            .filter_map(|kv| Some((reply_text(kv.first()?)?, kv.get(1)?)))
            .collect(),
        _ => return None,
    };
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let replicas = match get("replicas") {
        Some(Reply::Array(v) | Reply::Set(v)) => v.iter().filter_map(reply_text).collect(),
        _ => Vec::new(),
    };
    let other = pairs
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "id" | "primary" | "replicas" | "weight"))
        .filter_map(|(k, v)| {
            let text = reply_text(v).or_else(|| reply_int(v).map(|n| n.to_string()))?;
            Some((k.clone(), text))
        })
        .collect();
    Some(NodeEntry {
        id: get("id").and_then(reply_text)?,
        primary: get("primary").and_then(reply_text)?,
        replicas,
        weight: get("weight")
            .and_then(reply_int)
            .and_then(|w| u32::try_from(w).ok())
            .unwrap_or(1),
        other,
    })
}

/// A membership change sent to a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingChange {
    Join {
        id: String,
        primary: String,
        replicas: Vec<String>,
        weight: u32,
    },
    Leave {
        id: String,
    },
    Cancel,
}

impl RingChange {
    /// `RING JOIN <id> <primary> [<replica> ...] WEIGHT <w>`, `RING LEAVE <id>`, `RING CANCEL`.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["RING".to_string()];
        match self {
            RingChange::Join {
                id,
                primary,
                replicas,
                weight,
            } => {
                a.extend(["JOIN".into(), id.clone(), primary.clone()]);
                a.extend(replicas.iter().cloned());
                a.extend(["WEIGHT".into(), weight.to_string()]);
            }
            RingChange::Leave { id } => a.extend(["LEAVE".into(), id.clone()]),
            RingChange::Cancel => a.push("CANCEL".into()),
        }
        a
    }

    /// `join d`, `leave b`, `cancel`: how logs and progress lines name it.
    pub fn describe(&self) -> String {
        match self {
            RingChange::Join { id, .. } => format!("join {id}"),
            RingChange::Leave { id } => format!("leave {id}"),
            RingChange::Cancel => "cancel".into(),
        }
    }

    /// The state the change ends in when it succeeds (a cancel succeeds once its rollback is
    /// done).
    pub fn success_state(&self) -> &'static str {
        match self {
            RingChange::Cancel => "cancelled",
            _ => "done",
        }
    }

    /// `Ok` if the final status `st` says this change succeeded.
    pub fn outcome(&self, st: &RingStatus) -> Result<(), AdminError> {
        let state = st.last_state().unwrap_or("unknown");
        if state == self.success_state() {
            Ok(())
        } else {
            Err(AdminError::Ended {
                what: self.describe(),
                state: state.to_string(),
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Link(#[from] ClientError),
    #[error("{what}: {reply}")]
    Refused { what: String, reply: String },
    #[error("{what} ended {state}")]
    Ended { what: String, state: String },
    #[error("odd RING STATUS reply: {0:?}")]
    OddStatus(Reply),
}

/// An admin connection to a router.
pub struct Admin {
    pub client: Client,
    /// Bound on plain admin commands.
    pub timeout: Duration,
    /// The pool its `RING` commands are about (`POOL <name>` appended; `None`: `default`).
    pub pool: Option<String>,
}

/// A change answers once its epoch is in effect on the nodes: a few round trips, more when a
/// node is slow, so far longer than a plain command.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

impl Admin {
    /// Connects and, if `password` is given, authenticates.
    pub async fn connect(
        addr: &str,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Admin, AdminError> {
        let client = Client::connect(addr, timeout).await?;
        let mut admin = Admin {
            client,
            timeout,
            pool: None,
        };
        if let Some(pw) = password {
            admin.command(&["AUTH", pw], "AUTH").await?;
        }
        Ok(admin)
    }

    /// One command whose error reply becomes `Err` (`what` names it there).
    pub async fn command<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        what: &str,
    ) -> Result<Reply, AdminError> {
        match self.client.call(args, self.timeout).await? {
            Reply::Error(e) => Err(AdminError::Refused {
                what: what.to_string(),
                reply: e,
            }),
            r => Ok(r),
        }
    }

    /// `args` with `POOL <name>` appended when this admin is about a pool.
    fn in_pool(&self, mut args: Vec<String>) -> Vec<String> {
        if let Some(p) = &self.pool {
            args.extend(["POOL".to_string(), p.clone()]);
        }
        args
    }

    pub async fn status(&mut self) -> Result<RingStatus, AdminError> {
        let args = self.in_pool(vec!["RING".into(), "STATUS".into()]);
        let r = self.command(&args, "RING STATUS").await?;
        RingStatus::from_reply(&r).ok_or(AdminError::OddStatus(r))
    }

    pub async fn nodes(&mut self) -> Result<Vec<NodeEntry>, AdminError> {
        let args = self.in_pool(vec!["RING".into(), "NODES".into()]);
        let r = self.command(&args, "RING NODES").await?;
        Ok(parse_ring_nodes(&r))
    }

    /// Sends `change`; `Ok` once its epoch is in effect (keys still moving).
    pub async fn start(&mut self, change: &RingChange) -> Result<(), AdminError> {
        let args = self.in_pool(change.args());
        match self.client.call(&args, CHANGE_TIMEOUT).await? {
            Reply::Error(e) => Err(AdminError::Refused {
                what: change.describe(),
                reply: e,
            }),
            _ => Ok(()),
        }
    }

    /// Polls `RING STATUS` every `poll` until no change is moving keys, handing each status
    /// read meanwhile to `progress`; the final status (see [`RingChange::outcome`]).
    pub async fn follow(
        &mut self,
        poll: Duration,
        mut progress: impl FnMut(&RingStatus),
    ) -> Result<RingStatus, AdminError> {
        loop {
            tokio::time::sleep(poll).await;
            let st = self.status().await?;
            if !st.migrating() {
                return Ok(st);
            }
            progress(&st);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn status_fields() {
        let st = RingStatus {
            text: "# Ring\r\nepoch:5\r\nmigrating:1\r\nlast_state:done\r\nrate:2.5\r\n".into(),
        };
        assert_eq!(st.epoch(), Some(5));
        assert!(st.migrating());
        assert_eq!(st.last_state(), Some("done"));
        assert_eq!(st.num("rate"), Some(2.5));
        assert_eq!(st.field("missing"), None);
        // `epoch` must not match a longer name that starts with it.
        assert_eq!(status_field("epochs:3\r\nepoch:4\r\n", "epoch"), Some("4"));
    }

    #[test]
    fn ring_nodes_in_both_protocols() {
        let b = |s: &str| Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()));
        let resp2 = Reply::Array(vec![Reply::Array(vec![
            b("id"),
            b("a"),
            b("primary"),
            b("127.0.0.1:7001"),
            b("replicas"),
            Reply::Array(vec![b("127.0.0.1:7401")]),
            b("weight"),
            Reply::Int(2),
            b("status"),
            b("up"),
        ])]);
        let resp3 = Reply::Array(vec![Reply::Map(vec![
            (b("id"), b("a")),
            (b("primary"), b("127.0.0.1:7001")),
            (b("replicas"), Reply::Set(vec![b("127.0.0.1:7401")])),
            (b("weight"), Reply::Int(2)),
            (b("status"), b("up")),
        ])]);
        for r in [resp2, resp3] {
            let n = parse_ring_nodes(&r);
            assert_eq!(n.len(), 1);
            assert_eq!(n[0].id, "a");
            assert_eq!(n[0].primary, "127.0.0.1:7001");
            assert_eq!(n[0].replicas, vec!["127.0.0.1:7401".to_string()]);
            assert_eq!(n[0].weight, 2);
            assert_eq!(n[0].get("status"), Some("up"));
        }
    }

    #[test]
    fn change_arguments() {
        let j = RingChange::Join {
            id: "d".into(),
            primary: "h:1".into(),
            replicas: vec!["h:2".into()],
            weight: 1,
        };
        assert_eq!(j.args(), ["RING", "JOIN", "d", "h:1", "h:2", "WEIGHT", "1"]);
        assert_eq!(j.describe(), "join d");
        assert_eq!(RingChange::Cancel.success_state(), "cancelled");
        assert_eq!(
            RingChange::Leave { id: "b".into() }.args(),
            ["RING", "LEAVE", "b"]
        );
    }
}
