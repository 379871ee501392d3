//! What ACL rules need to know about each command: its ACL categories and its key specs' access
//! flags (from Redis's COMMAND INFO, generated into `generated/acl.rs`), and which arguments are
//! pub/sub channels.

use bytes::Bytes;

use crate::table::{self, CommandSpec};

/// ACL categories, one bit each, in the order `ACL CAT` lists them.
pub mod categories {
    pub const KEYSPACE: u32 = 1 << 0;
    pub const READ: u32 = 1 << 1;
    pub const WRITE: u32 = 1 << 2;
    pub const SET: u32 = 1 << 3;
    pub const SORTEDSET: u32 = 1 << 4;
    pub const LIST: u32 = 1 << 5;
    pub const HASH: u32 = 1 << 6;
    pub const STRING: u32 = 1 << 7;
    pub const BITMAP: u32 = 1 << 8;
    pub const HYPERLOGLOG: u32 = 1 << 9;
    pub const GEO: u32 = 1 << 10;
    pub const STREAM: u32 = 1 << 11;
    pub const PUBSUB: u32 = 1 << 12;
    pub const ADMIN: u32 = 1 << 13;
    pub const FAST: u32 = 1 << 14;
    pub const SLOW: u32 = 1 << 15;
    pub const BLOCKING: u32 = 1 << 16;
    pub const DANGEROUS: u32 = 1 << 17;
    pub const CONNECTION: u32 = 1 << 18;
    pub const TRANSACTION: u32 = 1 << 19;
    pub const SCRIPTING: u32 = 1 << 20;
}

/// Category names, bit `i` named by `CATEGORY_NAMES[i]`.
pub const CATEGORY_NAMES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The category bit of `name` (any case), if it is one.
pub fn category(name: &str) -> Option<u32> {
    CATEGORY_NAMES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .map(|i| 1 << i)
}

/// Redis's key spec flags (`CMD_KEY_*`), as COMMAND INFO and COMMAND GETKEYSANDFLAGS name them.
pub mod key_spec_flags {
    /// What decides the permission a key needs: ACCESS reads; INSERT, DELETE, UPDATE write.
    pub const KEY_ACCESS: u16 = 1;
    pub const KEY_INSERT: u16 = 1 << 1;
    pub const KEY_DELETE: u16 = 1 << 2;
    pub const KEY_UPDATE: u16 = 1 << 3;
    /// Not a key (a shard channel, named where a key would be for routing): never checked as one.
    pub const KEY_NOT_KEY: u16 = 1 << 4;
    /// What the command does to the key as a whole: reads, reads and writes, overwrites, removes.
    pub const KEY_RO: u16 = 1 << 5;
    pub const KEY_RW: u16 = 1 << 6;
    pub const KEY_OW: u16 = 1 << 7;
    pub const KEY_RM: u16 = 1 << 8;
    pub const KEY_INCOMPLETE: u16 = 1 << 9;
    pub const KEY_VARIABLE_FLAGS: u16 = 1 << 10;

    /// Names in the order Redis lists them.
    pub const NAMES: &[(u16, &str)] = &[
        (KEY_RO, "RO"),
        (KEY_RW, "RW"),
        (KEY_OW, "OW"),
        (KEY_RM, "RM"),
        (KEY_ACCESS, "access"),
        (KEY_UPDATE, "update"),
        (KEY_INSERT, "insert"),
        (KEY_DELETE, "delete"),
        (KEY_NOT_KEY, "not_key"),
        (KEY_INCOMPLETE, "incomplete"),
        (KEY_VARIABLE_FLAGS, "variable_flags"),
    ];

    /// The writes among the flags: a key with any of them needs write permission.
    pub const WRITES: u16 = KEY_INSERT | KEY_DELETE | KEY_UPDATE;
}
pub use key_spec_flags::*;

/// Where a key spec's keys begin.
#[derive(Debug, Clone, Copy)]
pub enum Begin {
    Index(i32),
    /// After the last (or, with a negative start, first from the end) match of the keyword.
    Keyword(&'static str, i32),
    Unknown,
}

/// How a key spec's keys continue from where they begin.
#[derive(Debug, Clone, Copy)]
pub enum Find {
    Range { last: i32, step: i32, limit: i32 },
    Keynum { at: i32, first: i32, step: i32 },
    Unknown,
}

#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    pub flags: u16,
    pub begin: Begin,
    pub find: Find,
}

/// One command's ACL facts.
#[derive(Debug, Clone, Copy)]
pub struct CommandAcl {
    pub name: &'static str,
    pub categories: u32,
    pub keys: &'static [KeySpec],
}

mod generated {
    include!("../generated/acl.rs");
}

/// ringcache's own commands: administrative, as Redis files its replication commands.
static OWN: CommandAcl = CommandAcl {
    name: "",
    categories: categories::ADMIN | categories::DANGEROUS | categories::SLOW,
    keys: &[],
};

/// Commands that change the cluster's state on a node: only a user other than a `default` that
/// has a password may run them (see [`super::User::check`]).
pub const CLUSTER_COMMANDS: &[&str] = &[
    "topology",
    "migrate-keys",
    "migrate-arc",
    "sync",
    "psync",
    "replconf",
    "replicaof",
    "slaveof",
];

/// The ACL facts of a command in the table.
pub fn acl_of(spec: &CommandSpec) -> &'static CommandAcl {
    generated::REDIS_ACL
        .get(table::position(spec))
        .unwrap_or(&OWN)
}

/// The spec permissions are checked against: a container's subcommand when it has one (`CLIENT
/// ID` is `client|id`), else the command itself.
pub fn effective(spec: &'static CommandSpec, args: &[Bytes]) -> &'static CommandSpec {
    match args.get(1) {
        Some(sub) if has_subcommands(spec) => {
            table::lookup_sub(spec.name.as_bytes(), sub).unwrap_or(spec)
        }
        _ => spec,
    }
}

/// True for a container command (`client`, `config`, ...).
pub fn has_subcommands(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "acl"
            | "client"
            | "command"
            | "config"
            | "object"
            | "memory"
            | "function"
            | "script"
            | "pubsub"
            | "xgroup"
            | "xinfo"
    )
}

/// The parent of a subcommand (`client` for `client|id`).
pub fn parent(spec: &CommandSpec) -> Option<&'static CommandSpec> {
    let (p, _) = spec.name.split_once('|')?;
    table::lookup(p.as_bytes())
}

/// Which permission (KEY_* flags) the key at argument `pos` needs, by the first key spec that
/// covers it; a key no spec covers needs both read and write.
pub fn key_flags(spec: &CommandSpec, args: &[Bytes], pos: usize) -> u16 {
    spec_flags(spec, args, pos).unwrap_or(KEY_ACCESS | KEY_UPDATE)
}

/// The key spec flags of the key at argument `pos`, as COMMAND GETKEYSANDFLAGS gives them: the
/// first key spec covering it, or what the arguments decide where Redis asks its getkeys procs
/// (specs with `variable_flags`, or incomplete).
pub fn spec_flags(spec: &CommandSpec, args: &[Bytes], pos: usize) -> Option<u16> {
    let has = |from: usize, words: &[&str]| {
        args.iter()
            .skip(from)
            .any(|a| words.iter().any(|w| a.eq_ignore_ascii_case(w.as_bytes())))
    };
    let decided = match spec.name {
        "set" if has(3, &["get"]) => KEY_RW | KEY_ACCESS | KEY_UPDATE,
        "set" => KEY_OW | KEY_UPDATE,
        "bitfield" if has(2, &["set", "incrby"]) => KEY_RW | KEY_ACCESS | KEY_UPDATE,
        "bitfield" => KEY_RO | KEY_ACCESS,
        // Past the sorted key, SORT lists only its STORE destination.
        "sort" if pos > 1 => KEY_OW | KEY_UPDATE,
        "sort" => KEY_RO | KEY_ACCESS,
        "migrate" => KEY_RW | KEY_ACCESS | KEY_DELETE,
        _ => {
            return acl_of(spec)
                .keys
                .iter()
                .find(|ks| covers(ks, args, pos))
                .map(|ks| ks.flags)
        }
    };
    Some(decided)
}

/// Whether a key spec counts its keys with an argument that says none (`ZUNIONSTORE d 0`):
/// Redis's COMMAND GETKEYS then finds no key at all, the destination included.
pub fn counts_no_keys(spec: &CommandSpec, args: &[Bytes]) -> bool {
    acl_of(spec)
        .keys
        .iter()
        .any(|ks| match (ks.begin, ks.find) {
            (Begin::Index(start), Find::Keynum { at, .. }) => {
                key_count(args, i64::from(start), at).is_some_and(|n| n < 1)
            }
            _ => false,
        })
}

/// Redis's names of key spec flags, in its order.
pub fn flag_names(flags: u16) -> impl Iterator<Item = &'static str> {
    NAMES
        .iter()
        .filter(move |(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
}

/// The key count a `keynum` spec reads at `at` past where its keys begin, if it is a number.
fn key_count(args: &[Bytes], start: i64, at: i32) -> Option<i64> {
    args.get(usize::try_from(start + i64::from(at)).ok()?)
        .and_then(|a| crate::num::parse_i64(a))
}

fn covers(ks: &KeySpec, args: &[Bytes], pos: usize) -> bool {
    let argc = args.len() as i64;
    let start = match ks.begin {
        Begin::Index(i) => i64::from(i),
        Begin::Keyword(kw, from) => {
            let found = if from >= 0 {
                (i64::from(from)..argc)
                    .find(|&i| args[i as usize].eq_ignore_ascii_case(kw.as_bytes()))
            } else {
                (1..=argc + i64::from(from))
                    .rev()
                    .find(|&i| args[i as usize].eq_ignore_ascii_case(kw.as_bytes()))
            };
            match found {
                Some(i) => i + 1,
                None => return false,
            }
        }
        Begin::Unknown => return false,
    };
    let pos = pos as i64;
    if start <= 0 || pos < start || start >= argc {
        return false;
    }
    let (first, last, step) = match ks.find {
        Find::Range { last, step, limit } => {
            let last = i64::from(last);
            let end = if last >= 0 {
                start + last
            } else if limit <= 1 {
                argc + last
            } else {
                start + (argc - start) / i64::from(limit) - 1
            };
            (start, end, i64::from(step.max(1)))
        }
        Find::Keynum { at, first, step } => {
            let Some(n) = key_count(args, start, at) else {
                return false;
            };
            let step = i64::from(step.max(1));
            let first = start + i64::from(first);
            (first, first + (n - 1) * step, step)
        }
        Find::Unknown => return false,
    };
    pos >= first && pos <= last.min(argc - 1) && (pos - first) % step == 0
}

/// How a command names pub/sub channels: none, its argument 1 (PUBLISH), or every argument
/// (SUBSCRIBE; `pattern` for PSUBSCRIBE, whose patterns must be allowed literally).
pub enum Channels {
    None,
    First,
    All { pattern: bool },
}

pub fn channels_of(spec: &CommandSpec) -> Channels {
    match spec.name {
        "publish" | "spublish" => Channels::First,
        "subscribe" | "ssubscribe" => Channels::All { pattern: false },
        "psubscribe" => Channels::All { pattern: true },
        _ => Channels::None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn flags_of(cmd: &str, pos: usize) -> u16 {
        let a = args(cmd);
        let spec = table::lookup(&a[0]).unwrap();
        key_flags(spec, &a, pos)
    }

    #[test]
    fn key_spec_flags() {
        assert_eq!(flags_of("GET k", 1), KEY_RO | KEY_ACCESS);
        assert_eq!(
            flags_of("LMOVE a b LEFT RIGHT", 1),
            KEY_RW | KEY_ACCESS | KEY_DELETE
        );
        assert_eq!(flags_of("LMOVE a b LEFT RIGHT", 2), KEY_RW | KEY_INSERT);
        assert_eq!(flags_of("ZUNIONSTORE d 2 a b", 1), KEY_OW | KEY_UPDATE);
        assert_eq!(flags_of("ZUNIONSTORE d 2 a b", 4), KEY_RO | KEY_ACCESS);
        assert_eq!(
            flags_of("GEORADIUS g 0 0 1 km STORE dst", 7),
            KEY_OW | KEY_UPDATE
        );
        assert_eq!(
            flags_of("XREAD COUNT 2 STREAMS a b 0 0", 5),
            KEY_RO | KEY_ACCESS
        );
        assert_eq!(flags_of("MSET a 1 b 2", 3), KEY_OW | KEY_UPDATE);
        assert_eq!(flags_of("DEL a", 1), KEY_RM | KEY_DELETE);
        // Where the arguments decide, as Redis's getkeys procs do.
        assert_eq!(flags_of("SET k v", 1), KEY_OW | KEY_UPDATE);
        assert_eq!(flags_of("SET k v GET", 1), KEY_RW | KEY_ACCESS | KEY_UPDATE);
        assert_eq!(flags_of("SORT k STORE d", 1), KEY_RO | KEY_ACCESS);
        assert_eq!(flags_of("SORT k STORE d", 3), KEY_OW | KEY_UPDATE);
        assert_eq!(flags_of("BITFIELD k GET u8 0", 1), KEY_RO | KEY_ACCESS);
        assert_eq!(
            flag_names(KEY_RW | KEY_ACCESS | KEY_DELETE).collect::<Vec<_>>(),
            ["RW", "access", "delete"]
        );
        assert_eq!(
            acl_of(table::lookup(b"topology").unwrap()).categories & categories::ADMIN,
            categories::ADMIN
        );
        assert_eq!(acl_of(table::lookup(b"get").unwrap()).name, "get");
    }
}
