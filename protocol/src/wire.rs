//! The cluster's own wire commands, each one type with `args` (what the sender puts on the wire)
//! and `parse` (what the receiver reads back), so the router and the nodes cannot disagree on a
//! field's place. Replies the sender reads are typed the same way (`from_reply` / `into_reply`).
//!
//! | command | sent by | answered |
//! | --- | --- | --- |
//! | `TOPOLOGY GET` | router | `[epoch, shard id, record or nil, map or nil, split version, split record or nil]`: [`TopologyState`] |
//! | `TOPOLOGY IMPORT` | a migration source, to its target | `+OK`; the connection then applies keys as placed elsewhere |
//! | `TOPOLOGY SET <epoch> <my-id> <vnodes> [<id> <weight> ...]` | router | `+OK` or `-STALEEPOCH` |
//! | `TOPOLOGY SETMOVING <epoch> <my-id> <vnodes> <record> [<id> <weight> ...]` | router, while keys move | as SET |
//! | `TOPOLOGY SETMAP <epoch> <my-id> <vnodes> <map> <record or ""> [<id> <weight> ...]` | router: the ring with its map (every shard's addresses), which any router can adopt | as SET |
//! | `TOPOLOGY DONE <epoch>` | router, once a change's keys moved | `+OK` |
//! | `TOPOLOGY LEASE <holder> <ttl-ms> <what>` | router, before and while it changes the ring | `+OK`, or `-CHANGEBUSY <holder> <what>` while another holder's lease runs |
//! | `TOPOLOGY RELEASE <holder>` | router, once its change is over | `+OK` |
//! | `TOPOLOGY FENCE <version> <record> [<prefix> <lo> <hi> ...]` | router, when a split changes | `+OK` or `-STALEEPOCH`: keys with `prefix` whose hash is in `[lo, hi)` are refused (`-WRONGSHARD <epoch> split:<version>`) |
//! | `TOPOLOGY ASKCANCEL` | router asked to cancel a change another router drives | the change, or nil if no lease runs; its holder's next `LEASE` answers `+CANCEL` |
//! | `MIGRATE-KEYS <target> [key ...]` | router, for a request on a moving key | keys moved (no key: warm-up) |
//! | `MIGRATE-ARC <target> <start> <end> <max-keys> [PREFIX <prefix>]` | router's mover | `[moved, bytes, more]`: [`ArcBatch`] (only keys starting with `prefix`) |

use bytes::{Bytes, BytesMut};

use crate::resp::{encode_request, Reply};
use crate::ring::{Arc as RingArc, Epoch, Ring, RingError, ShardSpec};

/// Why the arguments of a wire command do not parse. The texts are the client-visible errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("ERR usage: TOPOLOGY GET | TOPOLOGY IMPORT | TOPOLOGY DONE <epoch> | TOPOLOGY SET <epoch> <my-id> <vnodes> [<id> <weight> ...] | TOPOLOGY SETMOVING <epoch> <my-id> <vnodes> <record> [<id> <weight> ...] | TOPOLOGY SETMAP <epoch> <my-id> <vnodes> <map> <record> [<id> <weight> ...] | TOPOLOGY LEASE <holder> <ttl-ms> <what> | TOPOLOGY RELEASE <holder> | TOPOLOGY ASKCANCEL | TOPOLOGY FENCE <version> <record> [<prefix> <lo> <hi> ...]")]
    TopologyUsage,
    #[error("ERR ttl must be a positive integer")]
    BadTtl,
    #[error("ERR epoch must be an integer")]
    BadDoneEpoch,
    #[error("ERR epoch and vnodes must be integers")]
    BadEpochOrVnodes,
    #[error("ERR weights must be integers")]
    BadWeight,
    #[error("ERR start, end and max-keys must be unsigned integers")]
    BadArc,
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(&'static str),
    #[error("odd {0} reply")]
    OddReply(&'static str),
}

impl WireError {
    /// The error as a reply to the sender.
    pub fn into_reply(self) -> Reply {
        Reply::Error(self.to_string())
    }
}

/// A command the cluster sends itself.
pub trait WireCommand: Sized {
    /// The command as arguments, its name first.
    fn args(&self) -> Vec<Bytes>;

    /// Parses the arguments of a received command (its name first).
    fn parse(args: &[Bytes]) -> Result<Self, WireError>;

    /// Appends the command as a RESP request.
    fn encode(&self, out: &mut BytesMut) {
        encode_request(out, self.args());
    }

    /// The command as one RESP request.
    fn to_request(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

fn num_bytes(n: impl itoa::Integer) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A signed integer argument as Redis reads one.
fn int(b: &[u8]) -> Option<i64> {
    crate::num::parse_i64(b)
}

/// An unsigned integer argument (plain digits).
fn uint(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn is(a: &[u8], kw: &str) -> bool {
    a.eq_ignore_ascii_case(kw.as_bytes())
}

/// `TOPOLOGY ...`: every subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Get,
    Import,
    Set(TopologySet),
    Done {
        epoch: Epoch,
    },
    /// Who may change the ring: one router at a time, for `ttl_ms` unless renewed.
    Lease {
        holder: String,
        ttl_ms: u64,
        what: String,
    },
    Release {
        holder: String,
    },
    AskCancel,
    /// The split fences of the node, replacing the older ones (see [`SplitFences`]).
    Fence(SplitFences),
}

/// What `TOPOLOGY FENCE` sets: keys a node refuses whatever its ring says, because a route's
/// split sends them to another pool; versioned apart from the ring's epoch (a split spans pools).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitFences {
    pub version: u64,
    /// The router's record of every split (opaque to nodes), returned by `TOPOLOGY GET`.
    pub record: Bytes,
    pub fences: Vec<SplitFence>,
}

/// Keys starting with `prefix` whose hash lies in `[lo, hi)` (`hi` up to 2^64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitFence {
    pub prefix: Bytes,
    pub lo: u128,
    pub hi: u128,
}

impl SplitFence {
    #[inline]
    pub fn refuses(&self, key: &[u8], hash: u64) -> bool {
        let h = u128::from(hash);
        self.lo <= h && h < self.hi && key.starts_with(&self.prefix)
    }
}

/// `TOPOLOGY SET` (no record), `TOPOLOGY SETMOVING` (with the record of the change in progress)
/// or `TOPOLOGY SETMAP` (with the map of the ring's addresses, and a record if keys move): the
/// ring as the node named `my_id` is to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySet {
    pub epoch: Epoch,
    pub my_id: String,
    pub vnodes: u32,
    /// The router's record of the change moving keys at `epoch` (opaque to nodes).
    pub record: Option<Bytes>,
    /// The router's map of the ring: every shard's addresses (opaque to nodes), so that any
    /// router can adopt the ring from the nodes.
    pub map: Option<Bytes>,
    pub shards: Vec<ShardSpec>,
}

impl TopologySet {
    /// The push of `ring` to the node serving `my_id`.
    pub fn for_ring(ring: &Ring, record: Option<&Bytes>, my_id: &str) -> TopologySet {
        TopologySet {
            epoch: ring.epoch(),
            my_id: my_id.to_string(),
            vnodes: ring.vnodes(),
            record: record.cloned(),
            map: None,
            shards: ring.shards().to_vec(),
        }
    }

    /// This push with the ring's `map` (sent as `SETMAP`).
    pub fn with_map(mut self, map: Bytes) -> TopologySet {
        self.map = Some(map);
        self
    }

    /// The ring this push describes.
    pub fn ring(&self) -> Result<Ring, RingError> {
        Ring::new(self.epoch, self.vnodes, self.shards.clone())
    }
}

impl WireCommand for Topology {
    fn args(&self) -> Vec<Bytes> {
        let mut args = vec![Bytes::from_static(b"TOPOLOGY")];
        match self {
            Topology::Get => args.push(Bytes::from_static(b"GET")),
            Topology::Import => args.push(Bytes::from_static(b"IMPORT")),
            Topology::Done { epoch } => {
                args.extend([Bytes::from_static(b"DONE"), num_bytes(*epoch)]);
            }
            Topology::Lease {
                holder,
                ttl_ms,
                what,
            } => args.extend([
                Bytes::from_static(b"LEASE"),
                Bytes::copy_from_slice(holder.as_bytes()),
                num_bytes(*ttl_ms),
                Bytes::copy_from_slice(what.as_bytes()),
            ]),
            Topology::Release { holder } => args.extend([
                Bytes::from_static(b"RELEASE"),
                Bytes::copy_from_slice(holder.as_bytes()),
            ]),
            Topology::AskCancel => args.push(Bytes::from_static(b"ASKCANCEL")),
            Topology::Fence(f) => {
                args.extend([
                    Bytes::from_static(b"FENCE"),
                    num_bytes(f.version),
                    f.record.clone(),
                ]);
                for fence in &f.fences {
                    args.extend([
                        fence.prefix.clone(),
                        Bytes::from(fence.lo.to_string()),
                        Bytes::from(fence.hi.to_string()),
                    ]);
                }
            }
            Topology::Set(s) => {
                let sub: &'static [u8] = match (&s.map, &s.record) {
                    (Some(_), _) => b"SETMAP",
                    (None, Some(_)) => b"SETMOVING",
                    (None, None) => b"SET",
                };
                args.extend([
                    Bytes::from_static(sub),
                    num_bytes(s.epoch),
                    Bytes::copy_from_slice(s.my_id.as_bytes()),
                    num_bytes(s.vnodes),
                ]);
                if let Some(map) = &s.map {
                    args.push(map.clone());
                    args.push(s.record.clone().unwrap_or_default());
                } else {
                    args.extend(s.record.clone());
                }
                for shard in &s.shards {
                    args.push(Bytes::copy_from_slice(shard.id.as_bytes()));
                    args.push(num_bytes(shard.weight));
                }
            }
        }
        args
    }

    fn parse(a: &[Bytes]) -> Result<Self, WireError> {
        let sub = a.get(1).ok_or(WireError::Arity("topology"))?;
        if is(sub, "get") {
            return Ok(Topology::Get);
        }
        if is(sub, "import") {
            return Ok(Topology::Import);
        }
        if is(sub, "done") && a.len() == 3 {
            let epoch = int(&a[2]).ok_or(WireError::BadDoneEpoch)?;
            return Ok(Topology::Done {
                epoch: u64::try_from(epoch).unwrap_or(0),
            });
        }
        if is(sub, "lease") && a.len() == 5 {
            let ttl_ms = uint(&a[3]).filter(|t| *t > 0).ok_or(WireError::BadTtl)?;
            return Ok(Topology::Lease {
                holder: text(&a[2]),
                ttl_ms,
                what: text(&a[4]),
            });
        }
        if is(sub, "askcancel") && a.len() == 2 {
            return Ok(Topology::AskCancel);
        }
        if is(sub, "fence") && a.len() >= 4 && (a.len() - 4).is_multiple_of(3) {
            let wide = |b: &Bytes| {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(|t| t.parse::<u128>().ok())
                    .filter(|v| *v <= 1 << 64)
            };
            let version = uint(&a[2]).ok_or(WireError::TopologyUsage)?;
            let fences = a[4..]
                .chunks(3)
                .map(|f| match (wide(&f[1]), wide(&f[2])) {
                    (Some(lo), Some(hi)) => Ok(SplitFence {
                        prefix: f[0].clone(),
                        lo,
                        hi,
                    }),
                    _ => Err(WireError::TopologyUsage),
                })
                .collect::<Result<_, _>>()?;
            return Ok(Topology::Fence(SplitFences {
                version,
                record: a[3].clone(),
                fences,
            }));
        }
        if is(sub, "release") && a.len() == 3 {
            return Ok(Topology::Release {
                holder: text(&a[2]),
            });
        }
        // SETMOVING carries the change record after vnodes, SETMAP the map and the record (empty:
        // none); the shard pairs follow either way.
        let (record, map, pairs_at) = if is(sub, "set") {
            (None, None, 5)
        } else if is(sub, "setmoving") && a.len() >= 6 {
            (Some(a[5].clone()), None, 6)
        } else if is(sub, "setmap") && a.len() >= 7 {
            let record = (!a[6].is_empty()).then(|| a[6].clone());
            (record, Some(a[5].clone()), 7)
        } else {
            return Err(WireError::TopologyUsage);
        };
        if a.len() < pairs_at || !(a.len() - pairs_at).is_multiple_of(2) {
            return Err(WireError::TopologyUsage);
        }
        let (Some(epoch), Some(vnodes)) = (int(&a[2]), int(&a[4])) else {
            return Err(WireError::BadEpochOrVnodes);
        };
        let shards = a[pairs_at..]
            .chunks(2)
            .map(|pair| {
                let w = int(&pair[1]).ok_or(WireError::BadWeight)?;
                Ok(ShardSpec::new(
                    text(&pair[0]),
                    u32::try_from(w).unwrap_or(0),
                ))
            })
            .collect::<Result<_, WireError>>()?;
        Ok(Topology::Set(TopologySet {
            epoch: u64::try_from(epoch).unwrap_or(0),
            my_id: text(&a[3]),
            vnodes: u32::try_from(vnodes).unwrap_or(0),
            record,
            map,
            shards,
        }))
    }
}

/// What `TOPOLOGY GET` tells of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyState {
    pub epoch: Epoch,
    /// The shard id the node serves (empty before any ring reached it).
    pub shard: String,
    /// The record of a change moving keys at `epoch`.
    pub record: Option<Bytes>,
    /// The map of the ring at `epoch` (every shard's addresses), if the router pushed one.
    pub map: Option<Bytes>,
    /// The version of the split fences the node holds (0: none) and the router's record of them.
    pub split_version: u64,
    pub split_record: Option<Bytes>,
}

impl TopologyState {
    pub fn into_reply(self) -> Reply {
        Reply::Array(vec![
            Reply::Int(self.epoch as i64),
            Reply::Bulk(Bytes::from(self.shard)),
            self.record.map_or(Reply::Nil, Reply::Bulk),
            self.map.map_or(Reply::Nil, Reply::Bulk),
            Reply::Int(self.split_version as i64),
            self.split_record.map_or(Reply::Nil, Reply::Bulk),
        ])
    }

    pub fn from_reply(r: &Reply) -> Result<TopologyState, WireError> {
        const ODD: WireError = WireError::OddReply("TOPOLOGY GET");
        let Reply::Array(v) = r else {
            return Err(ODD);
        };
        let epoch = v
            .first()
            .and_then(reply_int)
            .and_then(|e| u64::try_from(e).ok())
            .ok_or(ODD)?;
        let shard = v.get(1).and_then(reply_text).ok_or(ODD)?;
        let bulk = |i: usize| match v.get(i) {
            Some(Reply::Bulk(b)) => Some(b.clone()),
            _ => None,
        };
        Ok(TopologyState {
            epoch,
            shard,
            record: bulk(2),
            map: bulk(3),
            split_version: v
                .get(4)
                .and_then(reply_int)
                .and_then(|e| u64::try_from(e).ok())
                .unwrap_or(0),
            split_record: bulk(5),
        })
    }
}

/// `MIGRATE-KEYS <target> [key ...]`: move these keys to `target` now (no key: open the
/// connections a change is about to need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateKeys {
    pub target: String,
    pub keys: Vec<Bytes>,
}

impl WireCommand for MigrateKeys {
    fn args(&self) -> Vec<Bytes> {
        let mut args = Vec::with_capacity(self.keys.len() + 2);
        args.push(Bytes::from_static(b"MIGRATE-KEYS"));
        args.push(Bytes::copy_from_slice(self.target.as_bytes()));
        args.extend(self.keys.iter().cloned());
        args
    }

    fn parse(a: &[Bytes]) -> Result<Self, WireError> {
        let target = a.get(1).ok_or(WireError::Arity("migrate-keys"))?;
        Ok(MigrateKeys {
            target: text(target),
            keys: a[2..].to_vec(),
        })
    }
}

impl MigrateKeys {
    /// The request for `keys` of the client's command, without copying them into a
    /// `MigrateKeys` first (the request path builds one per moving key it meets).
    pub fn request(target: &str, keys: &[&Bytes]) -> Bytes {
        let mut args: Vec<&[u8]> = Vec::with_capacity(keys.len() + 2);
        args.push(b"MIGRATE-KEYS");
        args.push(target.as_bytes());
        args.extend(keys.iter().map(|k| &k[..]));
        let mut out = BytesMut::new();
        encode_request(&mut out, args);
        out.freeze()
    }
}

/// `MIGRATE-ARC <target> <start> <end> <max-keys> [PREFIX <prefix>]`: move up to `max_keys`
/// keys of the arc (only those starting with `prefix`: a split's keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateArc {
    pub target: String,
    pub arc: RingArc,
    pub max_keys: u64,
    pub prefix: Option<Bytes>,
}

impl WireCommand for MigrateArc {
    fn args(&self) -> Vec<Bytes> {
        let mut args = vec![
            Bytes::from_static(b"MIGRATE-ARC"),
            Bytes::copy_from_slice(self.target.as_bytes()),
            num_bytes(self.arc.start),
            num_bytes(self.arc.end),
            num_bytes(self.max_keys),
        ];
        if let Some(p) = &self.prefix {
            args.extend([Bytes::from_static(b"PREFIX"), p.clone()]);
        }
        args
    }

    fn parse(a: &[Bytes]) -> Result<Self, WireError> {
        let prefix = match a.len() {
            5 => None,
            7 if is(&a[5], "prefix") => Some(a[6].clone()),
            _ => return Err(WireError::Arity("migrate-arc")),
        };
        let (Some(start), Some(end), Some(max_keys)) = (uint(&a[2]), uint(&a[3]), uint(&a[4]))
        else {
            return Err(WireError::BadArc);
        };
        Ok(MigrateArc {
            target: text(&a[1]),
            arc: RingArc { start, end },
            max_keys,
            prefix,
        })
    }
}

/// What one `MIGRATE-ARC` call did: `[moved, bytes, more]` (`more`: the arc still holds keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArcBatch {
    pub moved: u64,
    pub bytes: u64,
    pub more: bool,
}

impl ArcBatch {
    pub fn into_reply(self) -> Reply {
        Reply::Array(vec![
            Reply::Int(self.moved as i64),
            Reply::Int(self.bytes as i64),
            Reply::Int(i64::from(self.more)),
        ])
    }

    pub fn from_reply(r: &Reply) -> Result<ArcBatch, WireError> {
        const ODD: WireError = WireError::OddReply("MIGRATE-ARC");
        match r {
            Reply::Array(v) if v.len() == 3 => {
                let n = |i: usize| {
                    v.get(i)
                        .and_then(reply_int)
                        .and_then(|n| u64::try_from(n).ok())
                        .ok_or(ODD)
                };
                Ok(ArcBatch {
                    moved: n(0)?,
                    bytes: n(1)?,
                    more: n(2)? != 0,
                })
            }
            _ => Err(ODD),
        }
    }
}

/// An integer reply, or a bulk string holding one.
pub fn reply_int(r: &Reply) -> Option<i64> {
    match r {
        Reply::Int(n) => Some(*n),
        Reply::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// The text of a string-like reply (bulk, verbatim or status).
pub fn reply_text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(b) | Reply::Verbatim(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some((*s).to_string()),
        Reply::StatusOwned(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::request::RequestDecoder;

    /// Encodes, decodes with the server's own request decoder, parses: the value comes back.
    fn round_trip<C: WireCommand + PartialEq + std::fmt::Debug>(cmd: C) {
        let mut buf = BytesMut::from(&cmd.to_request()[..]);
        let mut args = Vec::new();
        let mut decoder = RequestDecoder::default();
        // Pushes come from routers that authenticated: more than 10 arguments are allowed.
        decoder.authenticated = true;
        decoder.decode_into(&mut buf, &mut args).unwrap().unwrap();
        assert!(buf.is_empty(), "one request, no trailing bytes");
        assert_eq!(C::parse(&args).unwrap(), cmd);
    }

    #[test]
    fn topology_commands_round_trip() {
        round_trip(Topology::Get);
        round_trip(Topology::Import);
        round_trip(Topology::Done { epoch: 42 });
        let ring = Ring::new(
            7,
            64,
            vec![ShardSpec::new("a", 1), ShardSpec::new("b:2", 3)],
        )
        .unwrap();
        let plain = TopologySet::for_ring(&ring, None, "a");
        let back = plain.ring().unwrap();
        assert_eq!(
            (back.epoch(), back.vnodes(), back.shards()),
            (ring.epoch(), ring.vnodes(), ring.shards())
        );
        round_trip(Topology::Set(plain));
        let record = Bytes::from_static(b"{\"opaque\": [1, 2]}");
        round_trip(Topology::Set(TopologySet::for_ring(
            &ring,
            Some(&record),
            "b:2",
        )));
        let map = Bytes::from_static(b"shards = []");
        round_trip(Topology::Set(
            TopologySet::for_ring(&ring, None, "a").with_map(map.clone()),
        ));
        round_trip(Topology::Set(
            TopologySet::for_ring(&ring, Some(&record), "a").with_map(map),
        ));
        round_trip(Topology::Lease {
            holder: "r1".into(),
            ttl_ms: 3000,
            what: "join d".into(),
        });
        round_trip(Topology::Release {
            holder: "r1".into(),
        });
        round_trip(Topology::AskCancel);
    }

    #[test]
    fn topology_set_layout_is_pinned() {
        // Routers and nodes of different builds meet on the wire: the field order must not move.
        let ring = Ring::new(
            3,
            2048,
            vec![ShardSpec::new("a", 1), ShardSpec::new("b", 1)],
        )
        .unwrap();
        let args = Topology::Set(TopologySet::for_ring(&ring, None, "b")).args();
        assert_eq!(
            args,
            ["TOPOLOGY", "SET", "3", "b", "2048", "a", "1", "b", "1"]
                .map(|s| Bytes::from_static(s.as_bytes()))
        );
        let moving = Topology::Set(TopologySet::for_ring(
            &ring,
            Some(&Bytes::from_static(b"R")),
            "a",
        ));
        assert_eq!(
            &moving.args()[1..6],
            ["SETMOVING", "3", "a", "2048", "R"].map(|s| Bytes::from_static(s.as_bytes()))
        );
    }

    #[test]
    fn migrate_commands_round_trip() {
        round_trip(MigrateKeys {
            target: "127.0.0.1:7004".into(),
            keys: vec![Bytes::from_static(b"k1"), Bytes::from_static(b"{t}k2")],
        });
        round_trip(MigrateKeys {
            target: "h:1".into(),
            keys: vec![],
        });
        round_trip(MigrateArc {
            target: "h:1".into(),
            arc: RingArc {
                start: u64::MAX - 5,
                end: 17,
            },
            max_keys: 1000,
            prefix: None,
        });
        round_trip(MigrateArc {
            target: "h:1".into(),
            arc: RingArc { start: 3, end: 9 },
            max_keys: 10,
            prefix: Some(Bytes::from_static(b"user:")),
        });
        round_trip(Topology::Fence(SplitFences {
            version: 4,
            record: Bytes::from_static(b"rec"),
            fences: vec![
                SplitFence {
                    prefix: Bytes::from_static(b"u:"),
                    lo: 0,
                    hi: 1 << 63,
                },
                SplitFence {
                    prefix: Bytes::from_static(b""),
                    lo: 5,
                    hi: 1 << 64,
                },
            ],
        }));
        let keys = [Bytes::from_static(b"x")];
        let req = MigrateKeys::request("h:1", &[&keys[0]]);
        assert_eq!(
            req,
            MigrateKeys {
                target: "h:1".into(),
                keys: keys.to_vec()
            }
            .to_request()
        );
    }

    #[test]
    fn replies_round_trip() {
        let st = TopologyState {
            epoch: 9,
            shard: "c".into(),
            record: Some(Bytes::from_static(b"rec")),
            map: Some(Bytes::from_static(b"map")),
            split_version: 3,
            split_record: Some(Bytes::from_static(b"s")),
        };
        assert_eq!(
            TopologyState::from_reply(&st.clone().into_reply()).unwrap(),
            st
        );
        let none = TopologyState {
            record: None,
            map: None,
            split_version: 0,
            split_record: None,
            ..st
        };
        assert_eq!(
            TopologyState::from_reply(&none.clone().into_reply()).unwrap(),
            none
        );
        let b = ArcBatch {
            moved: 64,
            bytes: 7000,
            more: true,
        };
        assert_eq!(ArcBatch::from_reply(&b.into_reply()).unwrap(), b);
        assert!(ArcBatch::from_reply(&Reply::OK).is_err());
    }

    #[test]
    fn bad_arguments_name_the_problem() {
        let args = |v: &[&str]| -> Vec<Bytes> {
            v.iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect()
        };
        assert_eq!(
            Topology::parse(&args(&["TOPOLOGY", "SET", "x", "a", "64"])),
            Err(WireError::BadEpochOrVnodes)
        );
        assert_eq!(
            Topology::parse(&args(&["TOPOLOGY", "SET", "1", "a", "64", "b"])),
            Err(WireError::TopologyUsage)
        );
        assert_eq!(
            Topology::parse(&args(&["TOPOLOGY", "SET", "1", "a", "64", "b", "w"])),
            Err(WireError::BadWeight)
        );
        assert_eq!(
            Topology::parse(&args(&["TOPOLOGY", "DONE", "e"])),
            Err(WireError::BadDoneEpoch)
        );
        assert_eq!(
            MigrateArc::parse(&args(&["MIGRATE-ARC", "h:1", "-1", "2", "3"])),
            Err(WireError::BadArc)
        );
    }
}
