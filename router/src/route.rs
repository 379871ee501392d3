//! Where a request goes: pure decisions from the command table and the ring, no I/O.
//!
//! - A command whose keys all belong to one shard (every single-key command, and multi-key ones
//!   whose keys share a `{tag}` or happen to land together) is forwarded whole, byte for byte.
//! - MGET, MSET, DEL, UNLINK, EXISTS and TOUCH over several shards are split per owner, sent in
//!   parallel and merged in the client's key order.
//! - Any other multi-key command over several shards (MSETNX, RENAME, COPY, SUNIONSTORE, LMOVE,
//!   ZUNIONSTORE, …) cannot be split without losing its atomicity: it gets [`CROSSSHARD`]. Keys
//!   are found by `CommandSpec::keys`, which also reads counted and keyword-placed keys.
//! - Keyspace-wide commands (DBSIZE, FLUSHALL, FLUSHDB, KEYS, SCAN, RANDOMKEY) fan out to every
//!   shard; connection and server commands are answered by the router itself.

use ringcache_protocol::table::{flags, CommandSpec};

/// The error for a multi-key command whose keys live on several shards and that cannot be split.
/// Redis Cluster says `CROSSSLOT ... same slot`; the ring has shards, not slots, and the fix is
/// the same: a `{hash tag}` puts related keys on one shard.
pub const CROSSSHARD: &str =
    "CROSSSHARD Keys in request don't hash to the same shard (use a {hash tag} to keep them together)";

/// How the parts of a split command combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitMerge {
    /// MGET: each part's values, put back in the client's key order.
    Values,
    /// MSET: OK if every part said OK.
    AllOk,
    /// DEL, UNLINK, EXISTS, TOUCH: the sum of the parts' integers.
    Sum,
}

/// How the replies of a command sent to every shard combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    /// DBSIZE
    Sum,
    /// FLUSHALL, FLUSHDB
    AllOk,
    /// KEYS
    Concat,
    /// RANDOMKEY: one of the shards' keys.
    Random,
    /// SCRIPT LOAD, FUNCTION LOAD: the first shard's reply, once every shard succeeded.
    First,
    /// SCRIPT KILL, FUNCTION KILL: OK if a shard stopped a script, else the first error.
    AnyOk,
    /// SLOWLOG GET: the newest entries of all shards, at most this many.
    SlowLog(usize),
    /// LATENCY HISTOGRAM: the shards' distributions summed (`crate::latency`).
    LatencyHistogram,
}

/// One shard's share of a split command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Ring index of the shard.
    pub shard: usize,
    /// Argument index of each key group (a key, or a key and its value for MSET) in this part,
    /// in the client's order.
    pub groups: Vec<usize>,
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Answered by the router (PING, HELLO, CLIENT, INFO, RING, ...).
    Local,
    /// Forward the request unchanged to this shard.
    Forward(usize),
    /// Split per shard. `owners[k]` is the index in `parts` holding the `k`-th key group.
    Split {
        merge: SplitMerge,
        step: usize,
        parts: Vec<Part>,
        owners: Vec<u32>,
    },
    /// A blocking command: wait on a connection of the client's own to this shard.
    Blocking(usize),
    /// Send to every shard and merge.
    FanOut(FanOut),
    /// SCAN: one shard at a time, by cursor.
    Scan,
    /// Keys over several shards in a command that cannot be split.
    CrossShard,
    /// Blocking, pub/sub, replication and other commands a multiplexing proxy cannot serve.
    Unsupported,
    /// Key groups with a missing member (`MSET a 1 b`): Redis's arity error, answered by the
    /// router (a node would refuse the dangling key first if another shard owns it).
    WrongArity,
}

/// Plans `args` (arity already checked against `spec`). `owner` gives a key's shard index.
pub fn plan(spec: &CommandSpec, args: &[bytes::Bytes], owner: impl Fn(&[u8]) -> usize) -> Plan {
    if spec.has(flags::PUBSUB) {
        return Plan::Unsupported;
    }
    // Keys where the table puts them, where a count or keyword puts them (ZUNIONSTORE, SORT ...
    // STORE), or after a container's subcommand (OBJECT ENCODING k).
    let mut keys = spec.keys(args);
    let Some(first) = keys.next() else {
        return if spec.has(flags::MOVABLEKEYS) {
            // A bad key count: any shard answers the command's own error.
            Plan::Forward(owner(b""))
        } else {
            keyless(spec, args, &owner)
        };
    };
    let split = match spec.name {
        "mget" => Some(SplitMerge::Values),
        "mset" => Some(SplitMerge::AllOk),
        "del" | "unlink" | "exists" | "touch" => Some(SplitMerge::Sum),
        _ => None,
    };
    if spec.step > 1
        && spec.last_key < 0
        && !(args.len() - first).is_multiple_of(spec.step as usize)
    {
        return Plan::WrongArity;
    }
    let home = owner(&args[first]);
    let mut others = keys.clone().map(|i| owner(&args[i]));
    if others.all(|s| s == home) {
        // A blocking command would stall every client sharing the upstream connection.
        return if spec.has(flags::BLOCKING) {
            Plan::Blocking(home)
        } else {
            Plan::Forward(home)
        };
    }
    let Some(merge) = split else {
        return Plan::CrossShard;
    };
    let step = spec.step.max(1) as usize;
    let mut parts: Vec<Part> = Vec::new();
    let mut owners = Vec::new();
    for i in std::iter::once(first).chain(keys) {
        let shard = owner(&args[i]);
        let at = match parts.iter().position(|p| p.shard == shard) {
            Some(at) => at,
            None => {
                parts.push(Part {
                    shard,
                    groups: Vec::new(),
                });
                parts.len() - 1
            }
        };
        parts[at].groups.push(i);
        owners.push(at as u32);
    }
    Plan::Split {
        merge,
        step,
        parts,
        owners,
    }
}

fn keyless(spec: &CommandSpec, args: &[bytes::Bytes], owner: &impl Fn(&[u8]) -> usize) -> Plan {
    match spec.name {
        "slowlog" => slowlog(args, owner),
        "latency" => latency(args, owner),
        // Keyless commands any one shard answers as well as all would.
        "pfselftest" | "lastsave" => Plan::Forward(owner(b"")),
        // A container's subcommand without a key (XGROUP HELP, OBJECT HELP): any shard's answer.
        "xgroup" | "xinfo" | "object" => Plan::Forward(owner(b"")),
        "ping" | "echo" | "hello" | "auth" | "select" | "quit" | "reset" | "client" | "command"
        | "config" | "info" | "time" | "ring" | "acl" => Plan::Local,
        "dbsize" => Plan::FanOut(FanOut::Sum),
        "flushall" | "flushdb" => Plan::FanOut(FanOut::AllOk),
        "keys" => Plan::FanOut(FanOut::Concat),
        "randomkey" => Plan::FanOut(FanOut::Random),
        "scan" => Plan::Scan,
        _ => Plan::Unsupported,
    }
}

/// SLOWLOG through the router: every shard's slow commands (GET merged newest first, LEN summed,
/// RESET everywhere); HELP and malformed requests get one shard's answer.
fn slowlog(args: &[bytes::Bytes], owner: &impl Fn(&[u8]) -> usize) -> Plan {
    let sub = args.get(1).map(|s| s.to_ascii_lowercase());
    match (sub.as_deref(), args.len()) {
        (Some(b"len"), 2) => Plan::FanOut(FanOut::Sum),
        (Some(b"reset"), 2) => Plan::FanOut(FanOut::AllOk),
        (Some(b"get"), 2) => Plan::FanOut(FanOut::SlowLog(10)),
        (Some(b"get"), 3) => match ringcache_protocol::num::parse_i64(&args[2]) {
            Some(-1) => Plan::FanOut(FanOut::SlowLog(usize::MAX)),
            Some(n) if n >= 0 => Plan::FanOut(FanOut::SlowLog(n as usize)),
            _ => Plan::Forward(owner(b"")),
        },
        _ => Plan::Forward(owner(b"")),
    }
}

/// LATENCY through the router: HISTOGRAM summed over the shards, RESET on every shard; the rest
/// (HELP, DOCTOR, the monitor's empty LATEST and HISTORY) is any shard's answer.
fn latency(args: &[bytes::Bytes], owner: &impl Fn(&[u8]) -> usize) -> Plan {
    match args.get(1).map(|s| s.to_ascii_lowercase()).as_deref() {
        Some(b"histogram") => Plan::FanOut(FanOut::LatencyHistogram),
        Some(b"reset") => Plan::FanOut(FanOut::Sum),
        _ => Plan::Forward(owner(b"")),
    }
}

/// The request for one part of a split command: the command name, then each of the part's key
/// groups (`step` arguments each) in order.
pub fn part_request(args: &[bytes::Bytes], part: &Part, step: usize) -> bytes::Bytes {
    let groups = &part.groups;
    let argc = 1 + groups.len() * step;
    let mut out = bytes::BytesMut::with_capacity(
        16 + groups
            .iter()
            .map(|&g| {
                args[g..g + step]
                    .iter()
                    .map(|a| a.len() + 16)
                    .sum::<usize>()
            })
            .sum::<usize>(),
    );
    let selected =
        std::iter::once(&args[0]).chain(groups.iter().flat_map(|&g| args[g..g + step].iter()));
    ringcache_protocol::resp::encode_request(&mut out, ExactLen(selected, argc));
    out.freeze()
}

/// An iterator with a known length (`encode_request` writes the count first).
struct ExactLen<I>(I, usize);

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.0.next()?;
        self.1 = self.1.saturating_sub(1);
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ringcache_protocol::hash::key_hash;
    use ringcache_protocol::ring::{Ring, ShardSpec};
    use ringcache_protocol::table::lookup;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    /// Shard = first byte of the key minus 'a', so tests say where keys live.
    fn by_letter(key: &[u8]) -> usize {
        key.first().map_or(0, |c| usize::from(c - b'a'))
    }

    fn plan_of(words: &[&str]) -> Plan {
        let a = args(words);
        let spec = lookup(a[0].as_ref()).unwrap();
        assert!(spec.arity_ok(a.len()));
        plan(spec, &a, by_letter)
    }

    #[test]
    fn single_key_and_same_shard_forward_whole() {
        assert_eq!(plan_of(&["GET", "b1"]), Plan::Forward(1));
        assert_eq!(plan_of(&["hset", "c", "f", "v"]), Plan::Forward(2));
        assert_eq!(plan_of(&["MGET", "a1", "a2", "a3"]), Plan::Forward(0));
        assert_eq!(plan_of(&["MSET", "b1", "x", "b2", "y"]), Plan::Forward(1));
        assert_eq!(plan_of(&["RENAME", "c1", "c2"]), Plan::Forward(2));
        assert_eq!(plan_of(&["MSETNX", "a1", "1", "a2", "2"]), Plan::Forward(0));
    }

    #[test]
    fn splittable_commands_split_in_client_order() {
        let Plan::Split {
            merge,
            step,
            parts,
            owners,
        } = plan_of(&["MGET", "b1", "a1", "b2", "c1", "a2"])
        else {
            panic!("not split");
        };
        assert_eq!((merge, step), (SplitMerge::Values, 1));
        assert_eq!(
            parts,
            vec![
                Part {
                    shard: 1,
                    groups: vec![1, 3]
                },
                Part {
                    shard: 0,
                    groups: vec![2, 5]
                },
                Part {
                    shard: 2,
                    groups: vec![4]
                },
            ]
        );
        assert_eq!(owners, vec![0, 1, 0, 2, 1]);

        let Plan::Split {
            merge, step, parts, ..
        } = plan_of(&["MSET", "a", "1", "b", "2", "a2", "3"])
        else {
            panic!("not split");
        };
        assert_eq!((merge, step), (SplitMerge::AllOk, 2));
        let a = args(&["MSET", "a", "1", "b", "2", "a2", "3"]);
        assert_eq!(
            &part_request(&a, &parts[0], step)[..],
            b"*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$2\r\na2\r\n$1\r\n3\r\n"
        );
        assert_eq!(
            &part_request(&a, &parts[1], step)[..],
            b"*3\r\n$4\r\nMSET\r\n$1\r\nb\r\n$1\r\n2\r\n"
        );
        for cmd in ["DEL", "unlink", "EXISTS", "touch"] {
            assert!(matches!(
                plan_of(&[cmd, "a", "b"]),
                Plan::Split {
                    merge: SplitMerge::Sum,
                    ..
                }
            ));
        }
    }

    #[test]
    fn unsplittable_multi_key_commands_across_shards_are_refused() {
        assert_eq!(plan_of(&["MSETNX", "a", "1", "b", "2"]), Plan::CrossShard);
        assert_eq!(plan_of(&["RENAME", "a", "b"]), Plan::CrossShard);
        assert_eq!(plan_of(&["RENAMENX", "a", "b"]), Plan::CrossShard);
        assert_eq!(plan_of(&["COPY", "a", "b", "REPLACE"]), Plan::CrossShard);
        assert!(CROSSSHARD.starts_with("CROSSSHARD "));
    }

    #[test]
    fn movable_and_subcommand_keys_route_by_their_keys() {
        assert_eq!(
            plan_of(&["ZUNIONSTORE", "b", "2", "b1", "b2"]),
            Plan::Forward(1)
        );
        assert_eq!(
            plan_of(&["ZUNIONSTORE", "b", "2", "b1", "c1"]),
            Plan::CrossShard
        );
        assert_eq!(
            plan_of(&["SINTERCARD", "2", "c", "c2", "LIMIT", "1"]),
            Plan::Forward(2)
        );
        assert_eq!(plan_of(&["LMPOP", "2", "a", "b", "LEFT"]), Plan::CrossShard);
        assert_eq!(
            plan_of(&["GEORADIUS", "c", "0", "0", "1", "km", "STORE", "a"]),
            Plan::CrossShard
        );
        assert_eq!(plan_of(&["OBJECT", "ENCODING", "d1"]), Plan::Forward(3));
        assert_eq!(plan_of(&["MEMORY", "USAGE", "b"]), Plan::Forward(1));
        assert_eq!(plan_of(&["SUNIONSTORE", "a", "a1", "b1"]), Plan::CrossShard);
        assert_eq!(
            plan_of(&["LMOVE", "d", "d2", "LEFT", "RIGHT"]),
            Plan::Forward(3)
        );
        assert_eq!(plan_of(&["BLPOP", "a", "0"]), Plan::Blocking(0));
        assert_eq!(plan_of(&["BLPOP", "a", "d", "0"]), Plan::CrossShard);
        assert_eq!(plan_of(&["SUBSCRIBE", "a"]), Plan::Unsupported);
        assert_eq!(plan_of(&["MULTI"]), Plan::Unsupported);
    }

    #[test]
    fn a_key_without_its_value_is_an_arity_error() {
        assert_eq!(plan_of(&["MSET", "a", "1", "b"]), Plan::WrongArity);
        assert_eq!(plan_of(&["MSET", "a", "1", "a2"]), Plan::WrongArity);
        assert_eq!(plan_of(&["MSETNX", "a", "1", "b"]), Plan::WrongArity);
    }

    #[test]
    fn keyless_commands() {
        assert_eq!(plan_of(&["PING"]), Plan::Local);
        assert_eq!(plan_of(&["ring", "nodes"]), Plan::Local);
        assert_eq!(plan_of(&["DBSIZE"]), Plan::FanOut(FanOut::Sum));
        assert_eq!(plan_of(&["FLUSHALL"]), Plan::FanOut(FanOut::AllOk));
        assert_eq!(plan_of(&["KEYS", "*"]), Plan::FanOut(FanOut::Concat));
        assert_eq!(plan_of(&["RANDOMKEY"]), Plan::FanOut(FanOut::Random));
        assert_eq!(plan_of(&["SCAN", "0"]), Plan::Scan);
        assert_eq!(plan_of(&["ROLE"]), Plan::Unsupported);
        assert!(matches!(plan_of(&["XGROUP", "HELP"]), Plan::Forward(_)));
        assert_eq!(plan_of(&["replicaof", "h", "1"]), Plan::Unsupported);
    }

    proptest::proptest! {
        /// Any command with any arguments plans and splits without panicking, and a split
        /// covers every key group exactly once.
        #[test]
        fn planning_never_panics(
            which in 0usize..200,
            words in proptest::collection::vec("[a-d][a-z0-9{}]{0,3}", 0..9),
        ) {
            let specs: Vec<_> = ringcache_protocol::table::all().collect();
            let spec = specs[which % specs.len()];
            let mut a = vec![Bytes::from_static(spec.name.as_bytes())];
            a.extend(words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())));
            if spec.arity_ok(a.len()) {
                if let Plan::Split { step, parts, owners, .. } = plan(spec, &a, by_letter) {
                    // every key group in exactly one part, on its owner's shard, in client order
                    let keys: Vec<usize> = spec.keys(&a).collect();
                    let mut covered: Vec<usize> = parts.iter().flat_map(|p| p.groups.iter().copied()).collect();
                    covered.sort_unstable();
                    proptest::prop_assert_eq!(&covered, &keys);
                    proptest::prop_assert_eq!(owners.len(), keys.len());
                    for (&key, &at) in keys.iter().zip(&owners) {
                        let part = &parts[at as usize];
                        proptest::prop_assert!(part.groups.contains(&key));
                        proptest::prop_assert_eq!(by_letter(&a[key]), part.shard);
                    }
                    for part in &parts {
                        proptest::prop_assert!(part.groups.windows(2).all(|w| w[0] < w[1]));
                        let raw = part_request(&a, part, step);
                        proptest::prop_assert!(raw.starts_with(b"*"));
                    }
                }
            }
        }
    }

    #[test]
    fn hash_tags_keep_keys_together_on_a_real_ring() {
        let shards = ["a", "b", "c"].map(|id| ShardSpec::new(id, 1)).to_vec();
        let ring = Ring::new(1, 64, shards).unwrap();
        let owner = |k: &[u8]| ring.owner_index(key_hash(k)).unwrap();
        let a = args(&[
            "MSETNX",
            "{u1}.name",
            "x",
            "{u1}.mail",
            "y",
            "{u1}.age",
            "3",
        ]);
        let p = plan(lookup(b"msetnx").unwrap(), &a, owner);
        assert!(matches!(p, Plan::Forward(_)), "{p:?}");
        // without tags, some pair of 50 keys lands on two shards
        let mut words = vec!["MSETNX".to_string()];
        for i in 0..50 {
            words.push(format!("key:{i}"));
            words.push("v".into());
        }
        let a: Vec<Bytes> = words.into_iter().map(Bytes::from).collect();
        assert_eq!(
            plan(lookup(b"msetnx").unwrap(), &a, owner),
            Plan::CrossShard
        );
    }
}
