//! The record of a membership change that the nodes keep while it moves keys.
//!
//! A router pushes it with the change's ring (`TOPOLOGY SETMOVING`) and clears it when every arc
//! is empty (`TOPOLOGY DONE`). A router that starts while the nodes hold one (the previous router
//! was restarted or died mid-move) learns from it which arcs are still moving, between which
//! shards and at which addresses, and resumes the move. Without it the new router would route
//! by the new ring alone: keys not yet moved would stay at their old owners, which refuse them.
//! The nodes store it as opaque bytes; its format (TOML) belongs to the router.
//!
//! With every ring a router also pushes its [`Membership`]: the ring's shards and their
//! addresses. A router that meets a newer epoch than its own (another router changed the ring, or
//! failed a shard over) adopts the ring from it, without a restart or a config edit.

use bytes::Bytes;
use ringcache_protocol::ring::{Epoch, Ring, ShardSpec};
use serde::{Deserialize, Serialize};

use crate::topology::Topology;

/// Where a shard holding keys of the change is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    pub id: String,
    pub primary: String,
    #[serde(default)]
    pub replicas: Vec<String>,
}

/// A membership change in progress, as the nodes keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRecord {
    /// As `RING STATUS` names it: `join d`, `leave b`, `rollback of join d`.
    pub what: String,
    pub vnodes: u32,
    /// The membership before the change and after it (the ring at the record's epoch).
    pub from: Vec<ShardSpec>,
    pub to: Vec<ShardSpec>,
    /// Every shard of either membership, with its addresses when the record was pushed.
    pub shards: Vec<Place>,
}

/// The ring a router pushed, with every shard's addresses, as the nodes keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub vnodes: u32,
    pub members: Vec<ShardSpec>,
    pub shards: Vec<Place>,
}

impl Membership {
    /// The membership of `topo`'s ring, with the addresses of every shard serving keys.
    pub fn of(topo: &Topology) -> Membership {
        Membership {
            vnodes: topo.ring.vnodes(),
            members: topo.ring.shards().to_vec(),
            shards: topo.serving_shards().map(|s| Place::of(s)).collect(),
        }
    }

    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    pub fn decode(raw: &[u8]) -> Result<Membership, String> {
        decode(raw, "ring map")
    }

    /// The ring at `epoch`.
    pub fn ring(&self, epoch: Epoch) -> Result<Ring, String> {
        Ring::new(epoch, self.vnodes, self.members.clone()).map_err(|e| e.to_string())
    }

    /// Where shard `id` is served.
    pub fn place(&self, id: &str) -> Option<&Place> {
        self.shards.iter().find(|p| p.id == id)
    }
}

impl Place {
    /// Where `s` is served now.
    pub fn of(s: &crate::shard::Shard) -> Place {
        Place {
            id: s.id.clone(),
            primary: s.primary.clone(),
            replicas: s.replicas.clone(),
        }
    }
}

impl ChangeRecord {
    /// The record of `topo`'s change in progress, if it has one.
    pub fn of(topo: &Topology) -> Option<ChangeRecord> {
        let map = topo.migrating.map()?;
        Some(ChangeRecord {
            what: map.what().to_string(),
            vnodes: topo.ring.vnodes(),
            from: map.from().to_vec(),
            to: topo.ring.shards().to_vec(),
            shards: topo.serving_shards().map(|s| Place::of(s)).collect(),
        })
    }

    pub fn encode(&self) -> Bytes {
        encode(self)
    }

    pub fn decode(raw: &[u8]) -> Result<ChangeRecord, String> {
        decode(raw, "change record")
    }

    /// The rings before and after the change; the latter at `epoch` (the nodes' epoch).
    pub fn rings(&self, epoch: Epoch) -> Result<(Ring, Ring), String> {
        let to = Ring::new(epoch, self.vnodes, self.to.clone()).map_err(|e| e.to_string())?;
        let from = Ring::new(epoch.saturating_sub(1), self.vnodes, self.from.clone())
            .map_err(|e| e.to_string())?;
        Ok((from, to))
    }

    /// Where shard `id` was served when the record was pushed.
    pub fn place(&self, id: &str) -> Option<&Place> {
        self.shards.iter().find(|p| p.id == id)
    }
}

/// TOML of a record or map. Serializing plain strings and integers cannot fail; an empty text is
/// refused by `decode`, so a failure would show as "nothing recorded", never as a wrong record.
fn encode(value: &impl Serialize) -> Bytes {
    Bytes::from(toml::to_string(value).unwrap_or_default())
}

/// A record or map back from the nodes' bytes; errors start with `what`.
fn decode<T: serde::de::DeserializeOwned>(raw: &[u8], what: &str) -> Result<T, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("{what}: {e}"))?;
    toml::from_str(text).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record() -> ChangeRecord {
        ChangeRecord {
            what: "leave b".into(),
            vnodes: 64,
            from: vec![ShardSpec::new("a", 1), ShardSpec::new("b", 2)],
            to: vec![ShardSpec::new("a", 1)],
            shards: vec![
                Place {
                    id: "a".into(),
                    primary: "10.0.0.1:7001".into(),
                    replicas: vec!["10.0.0.1:7101".into()],
                },
                Place {
                    id: "b".into(),
                    primary: "shard-b:7001".into(),
                    replicas: vec![],
                },
            ],
        }
    }

    #[test]
    fn a_record_survives_its_encoding() {
        let r = record();
        assert_eq!(ChangeRecord::decode(&r.encode()).unwrap(), r);
        assert_eq!(r.place("b").unwrap().primary, "shard-b:7001");
        assert!(r.place("c").is_none());
    }

    #[test]
    fn the_rings_differ_by_the_change() {
        let (from, to) = record().rings(9).unwrap();
        assert_eq!((from.epoch(), to.epoch()), (8, 9));
        let moves = from.diff(&to);
        assert!(!moves.is_empty());
        assert!(moves.iter().all(|m| m.from == "b" && m.to == "a"));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(ChangeRecord::decode(b"").is_err());
        assert!(ChangeRecord::decode(b"what = 1").is_err());
        assert!(ChangeRecord::decode(&[0xff, 0xfe]).is_err());
    }
}
