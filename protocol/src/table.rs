//! The command table: name, arity, flags and key positions of every command ringcache knows, the
//! single source for the node (arity checks, COMMAND) and the router (which args are keys).
//!
//! Redis's own commands come from `generated/` (made by `scripts/gen-command-table.py` from a real
//! Redis 7), so COMMAND INFO / COMMAND DOCS replies are byte-for-byte Redis's.

use std::collections::HashMap;

use bytes::Bytes;

use crate::errors::{arity_error, unknown_subcommand};
use crate::resp::Reply;
use std::sync::OnceLock;

pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const SKIP_MONITOR: u32 = 1 << 9;
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    pub const FAST: u32 = 1 << 11;
    pub const NO_AUTH: u32 = 1 << 12;
    pub const MAY_REPLICATE: u32 = 1 << 13;
    pub const NO_MULTI: u32 = 1 << 14;
    pub const MOVABLEKEYS: u32 = 1 << 15;
    pub const ALLOW_BUSY: u32 = 1 << 16;
    /// Keys may be none (EVAL with numkeys 0): COMMAND GETKEYS answers an empty list.
    pub const NO_MANDATORY_KEYS: u32 = 1 << 17;
}

/// Arity, flags and key positions of one command (or `parent|sub` subcommand), as `COMMAND INFO`
/// reports them: a negative arity means "at least |arity| arguments", counting the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    pub name: &'static str,
    pub arity: i32,
    pub flags: u32,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
}

mod generated {
    include!("generated/table.rs");
}

/// ringcache's own commands (cluster administration), not in Redis.
static OWN_COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ring",
        arity: -2,
        flags: flags::ADMIN | flags::NOSCRIPT | flags::LOADING | flags::STALE,
        first_key: 0,
        last_key: 0,
        step: 0,
    },
    CommandSpec {
        name: "topology",
        arity: -2,
        flags: flags::ADMIN | flags::NOSCRIPT | flags::LOADING | flags::STALE,
        first_key: 0,
        last_key: 0,
        step: 0,
    },
    // MIGRATE-KEYS target [key ...]: move these keys to the target node, atomically per key;
    // with no key, open connections to the target now (the router's warm-up as a change starts).
    CommandSpec {
        name: "migrate-keys",
        arity: -2,
        flags: flags::ADMIN | flags::WRITE | flags::NOSCRIPT,
        first_key: 0,
        last_key: 0,
        step: 0,
    },
    // MIGRATE-ARC target start end max-keys [PREFIX p]: move up to max-keys keys of the arc
    // (start, end] (only those starting with p).
    CommandSpec {
        name: "migrate-arc",
        arity: -5,
        flags: flags::ADMIN | flags::WRITE | flags::NOSCRIPT,
        first_key: 0,
        last_key: 0,
        step: 0,
    },
    CommandSpec {
        name: "sync",
        arity: 1,
        flags: flags::ADMIN | flags::NOSCRIPT | flags::NO_MULTI,
        first_key: 0,
        last_key: 0,
        step: 0,
    },
    CommandSpec {
        name: "psync",
        arity: -3,
        flags: flags::ADMIN | flags::NOSCRIPT | flags::NO_MULTI,
        first_key: 0,
        last_key: 0,
        step: 0,
    },
    CommandSpec {
        name: "replconf",
        arity: -1,
        flags: flags::ADMIN | flags::NOSCRIPT | flags::LOADING | flags::STALE,
        first_key: 0,
        last_key: 0,
        step: 0,
    },
];

/// FNV-1a: command names are short and trusted-shape, so a tiny hash beats SipHash on every request.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf29ce484222325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        self.0 = h;
    }
}

type Index = HashMap<&'static str, &'static CommandSpec, std::hash::BuildHasherDefault<Fnv>>;

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        generated::REDIS_COMMANDS
            .iter()
            .chain(OWN_COMMANDS)
            .map(|c| (c.name, c))
            .collect()
    })
}

/// Lowercases a command name into a stack buffer; `None` if it is too long to be any command.
fn lower(name: &[u8], buf: &mut [u8; 48]) -> Option<usize> {
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    Some(name.len())
}

/// Looks a command up by name, any case (`get`, `GET`), or a subcommand as `client|id`.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    thread_local! {
        /// The thread's last commands found: a pipeline repeats one command and a script
        /// cycles through a few, and comparing names is a fifth of the cost of hashing one (5%
        /// of a node's instructions under GET -P 16).
        static RECENT: [std::cell::Cell<Option<&'static CommandSpec>>; RECENT_LEN] =
            const { [const { std::cell::Cell::new(None) }; RECENT_LEN] };
        static NEXT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    let hit = RECENT.with(|recent| {
        recent
            .iter()
            .filter_map(std::cell::Cell::get)
            .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
    });
    if hit.is_some() {
        return hit;
    }
    let mut buf = [0u8; 48];
    let n = lower(name, &mut buf)?;
    let s = std::str::from_utf8(&buf[..n]).ok()?;
    let found = index().get(s).copied()?;
    let slot = NEXT.with(|next| {
        let slot = next.get();
        next.set((slot + 1) % RECENT_LEN);
        slot
    });
    RECENT.with(|recent| recent[slot].set(Some(found)));
    Some(found)
}

/// How many recently found commands each thread remembers.
const RECENT_LEN: usize = 4;

/// The subcommand `sub` of `spec` (`CLIENT` and `ID`: `client|id`); `None` at once for the
/// commands that have none, whose second argument is usually a key.
pub fn subcommand(spec: &'static CommandSpec, sub: &[u8]) -> Option<&'static CommandSpec> {
    static PARENTS: OnceLock<Vec<bool>> = OnceLock::new();
    let parents = PARENTS.get_or_init(|| {
        let mut parents = vec![false; count()];
        for c in all() {
            if let Some(parent) = c.name.split_once('|').and_then(|(p, _)| index().get(p)) {
                parents[position(parent)] = true;
            }
        }
        parents
    });
    if !parents.get(position(spec)).copied().unwrap_or(false) {
        return None;
    }
    lookup_sub(spec.name.as_bytes(), sub)
}

/// What a call counts as in INFO commandstats and latencystats: a container's subcommand
/// (`config|get`), as Redis counts it, else the command itself.
pub fn counted_as(spec: &'static CommandSpec, args: &[bytes::Bytes]) -> &'static CommandSpec {
    // No container takes a key in first place: GET, SET and the like need no lookup.
    if spec.first_key > 0 {
        return spec;
    }
    args.get(1)
        .and_then(|sub| subcommand(spec, sub))
        .unwrap_or(spec)
}

/// Looks up `parent sub` (e.g. `CLIENT ID`) as the subcommand `client|id`.
pub fn lookup_sub(parent: &[u8], sub: &[u8]) -> Option<&'static CommandSpec> {
    // Joined on the stack: every command with an argument asks (a script's each `redis.call`),
    // most of them for a key that names no subcommand.
    let mut joined = [0u8; 48];
    let n = parent.len() + 1 + sub.len();
    if n > joined.len() {
        return None;
    }
    joined[..parent.len()].copy_from_slice(parent);
    joined[parent.len()] = b'|';
    joined[parent.len() + 1..n].copy_from_slice(sub);
    lookup(&joined[..n])
}

/// How many commands and subcommands the table holds (indexes run below this).
pub fn count() -> usize {
    generated::REDIS_COMMANDS.len() + OWN_COMMANDS.len()
}

/// A command's position in [`all`]: per-command counters are arrays indexed by it.
pub fn position(spec: &CommandSpec) -> usize {
    let size = std::mem::size_of::<CommandSpec>();
    let at = spec as *const CommandSpec as usize;
    let offset_in = |slice: &'static [CommandSpec]| {
        let base = slice.as_ptr() as usize;
        (at >= base && at < base + std::mem::size_of_val(slice)).then(|| (at - base) / size)
    };
    if let Some(i) = offset_in(generated::REDIS_COMMANDS) {
        return i;
    }
    offset_in(OWN_COMMANDS).map_or(0, |i| generated::REDIS_COMMANDS.len() + i)
}

/// Every command and subcommand in the table.
pub fn all() -> impl Iterator<Item = &'static CommandSpec> {
    generated::REDIS_COMMANDS.iter().chain(OWN_COMMANDS)
}

/// Top-level commands only (what `COMMAND` and `COMMAND COUNT` list).
pub fn top_level() -> impl Iterator<Item = &'static CommandSpec> {
    all().filter(|c| !c.name.contains('|'))
}

impl CommandSpec {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    pub fn is_write(&self) -> bool {
        self.has(flags::WRITE)
    }

    /// True if `argc` arguments (name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// Positions of the key arguments in a request of `argc` arguments, following first/last/step
    /// (a negative last counts from the end, as in COMMAND INFO).
    pub fn key_positions(&self, argc: usize) -> KeyPositions {
        if self.first_key <= 0 || self.step <= 0 {
            return KeyPositions {
                next: 1,
                last: 0,
                step: 1,
            };
        }
        let last = if self.last_key < 0 {
            argc as i64 + i64::from(self.last_key)
        } else {
            i64::from(self.last_key)
        };
        let last = last.min(argc as i64 - 1);
        KeyPositions {
            next: self.first_key as usize,
            last: last.max(0) as usize,
            step: self.step as usize,
        }
    }
}

/// Iterator over key argument positions.
#[derive(Debug, Clone)]
pub struct KeyPositions {
    next: usize,
    last: usize,
    step: usize,
}

impl Iterator for KeyPositions {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.next == 0 || self.next > self.last {
            return None;
        }
        let i = self.next;
        self.next += self.step;
        Some(i)
    }
}

type Blobs = &'static [(&'static str, &'static [u8])];

static INFO2: Blobs = include!("generated/info2.rs");
static INFO3: Blobs = include!("generated/info3.rs");
static DOCS2: Blobs = include!("generated/docs2.rs");
static DOCS3: Blobs = include!("generated/docs3.rs");

fn blob(table: Blobs, name: &str) -> Option<&'static [u8]> {
    table.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Redis's exact `COMMAND INFO` entry for a command, RESP2 or RESP3.
pub fn info_entry(name: &str, resp3: bool) -> Option<&'static [u8]> {
    blob(if resp3 { INFO3 } else { INFO2 }, name)
}

/// A command's COMMAND INFO entry: Redis's own bytes for Redis's commands, built from the table for
/// ringcache's own (no ACL categories, tips, key specs or subcommands).
pub fn info_reply(c: &CommandSpec, resp3: bool) -> Reply {
    if let Some(b) = info_entry(c.name, resp3) {
        return Reply::Raw(Bytes::from_static(b));
    }
    let names = [
        (flags::WRITE, "write"),
        (flags::READONLY, "readonly"),
        (flags::DENYOOM, "denyoom"),
        (flags::ADMIN, "admin"),
        (flags::NOSCRIPT, "noscript"),
        (flags::LOADING, "loading"),
        (flags::STALE, "stale"),
        (flags::FAST, "fast"),
        (flags::NO_MULTI, "no_multi"),
    ];
    let flag_replies = names
        .iter()
        .filter(|(f, _)| c.has(*f))
        .map(|(_, n)| Reply::Status(n))
        .collect();
    Reply::Array(vec![
        Reply::bulk_str(c.name),
        Reply::Int(i64::from(c.arity)),
        Reply::Set(flag_replies),
        Reply::Int(i64::from(c.first_key)),
        Reply::Int(i64::from(c.last_key)),
        Reply::Int(i64::from(c.step)),
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

/// COMMAND, COMMAND COUNT/LIST/INFO/DOCS/GETKEYS/GETKEYSANDFLAGS, answered from this table
/// (Redis's own bytes for Redis's commands) by the node and the router alike.
pub fn command_reply(a: &[Bytes], resp3: bool) -> Reply {
    if a.len() == 1 {
        return Reply::Array(top_level().map(|c| info_reply(c, resp3)).collect());
    }
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = lookup_sub(b"command", &sub) else {
        return unknown_subcommand(&a[1], "command");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    let names = |from: usize| -> Vec<String> {
        if a.len() > from {
            a[from..]
                .iter()
                .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
                .collect()
        } else {
            top_level().map(|c| c.name.to_string()).collect()
        }
    };
    match &sub[..] {
        b"count" => Reply::Int(top_level().count() as i64),
        b"list" => command_list(&a[2..]),
        b"info" => Reply::Array(
            names(2)
                .iter()
                .map(|n| match lookup(n.as_bytes()) {
                    Some(c) => info_reply(c, resp3),
                    None => Reply::Nil,
                })
                .collect(),
        ),
        b"docs" => Reply::Map(
            names(2)
                .iter()
                .filter_map(|n| {
                    docs_entry(n, resp3)
                        .map(|b| (Reply::bulk_str(n), Reply::Raw(Bytes::from_static(b))))
                })
                .collect(),
        ),
        b"getkeys" | b"getkeysandflags" => getkeys(&a[2..], &sub[..] == b"getkeysandflags"),
        b"help" => crate::help::command(),
        _ => unknown_subcommand(&a[1], "command"),
    }
}

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN glob]: commands and
/// subcommands (`client|list`), as Redis lists them; there are no modules.
fn command_list(filter: &[Bytes]) -> Reply {
    let keep: Box<dyn Fn(&CommandSpec) -> bool> = match filter {
        [] => Box::new(|_| true),
        [by, kind, value] if by.eq_ignore_ascii_case(b"filterby") => {
            match &kind.to_ascii_lowercase()[..] {
                b"module" => Box::new(|_| false),
                b"aclcat" => {
                    let category = std::str::from_utf8(value)
                        .ok()
                        .and_then(crate::acl::spec::category);
                    Box::new(move |c| {
                        category
                            .is_some_and(|bit| crate::acl::spec::acl_of(c).categories & bit != 0)
                    })
                }
                b"pattern" => {
                    let pattern = value.clone();
                    Box::new(move |c| crate::glob::matches(&pattern, c.name.as_bytes(), true))
                }
                _ => return Reply::error("ERR syntax error"),
            }
        }
        _ => return Reply::error("ERR syntax error"),
    };
    Reply::Array(
        all()
            .filter(|c| keep(c))
            .map(|c| Reply::bulk_str(c.name))
            .collect(),
    )
}

/// COMMAND GETKEYS (`with_flags`: GETKEYSANDFLAGS) of the command `c`, as Redis checks it: a
/// command (or subcommand) known and with keys, its arity, then the keys its arguments name.
fn getkeys(c: &[Bytes], with_flags: bool) -> Reply {
    use crate::acl::spec;
    let cmd = match lookup(&c[0]) {
        Some(cmd) if spec::has_subcommands(cmd) && c.len() > 1 => lookup_sub(&c[0], &c[1]),
        found => found,
    };
    let Some(cmd) = cmd else {
        return Reply::error("ERR Invalid command specified");
    };
    let has_keys = cmd.first_key > 0
        || spec::acl_of(cmd)
            .keys
            .iter()
            .any(|ks| ks.flags & spec::KEY_NOT_KEY == 0);
    if !has_keys {
        return Reply::error("ERR The command has no key arguments");
    }
    if !cmd.arity_ok(c.len()) {
        return Reply::error("ERR Invalid number of arguments specified for command");
    }
    if spec::counts_no_keys(cmd, c) {
        return if cmd.has(flags::NO_MANDATORY_KEYS) {
            Reply::Array(Vec::new())
        } else {
            Reply::error("ERR Invalid arguments specified for command")
        };
    }
    // The parent's key finder knows its subcommands' keys (XGROUP CREATE, MEMORY USAGE).
    let finder = spec::parent(cmd).unwrap_or(cmd);
    // Movable keys too (EVAL's and FCALL's numkeys, ZUNIONSTORE's, SORT ... STORE).
    let keys: Vec<Reply> = finder
        .keys(c)
        .map(|i| {
            let key = Reply::Bulk(c[i].clone());
            if !with_flags {
                return key;
            }
            let flags = spec::spec_flags(cmd, c, i).unwrap_or(0);
            let names = spec::flag_names(flags).map(Reply::Status).collect();
            Reply::Array(vec![key, Reply::Set(names)])
        })
        .collect();
    if keys.is_empty() && !cmd.has(flags::NO_MANDATORY_KEYS) {
        return Reply::error("ERR Invalid arguments specified for command");
    }
    Reply::Array(keys)
}

/// Redis's exact `COMMAND DOCS` entry (the doc map, without the name) for a command.
pub fn docs_entry(name: &str, resp3: bool) -> Option<&'static [u8]> {
    blob(if resp3 { DOCS3 } else { DOCS2 }, name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lookup_any_case() {
        let get = lookup(b"GeT").unwrap();
        assert_eq!(
            (get.arity, get.first_key, get.last_key, get.step),
            (2, 1, 1, 1)
        );
        assert!(get.has(flags::READONLY) && get.has(flags::FAST));
        assert!(lookup(b"set").unwrap().is_write());
        assert!(lookup(b"nosuch").is_none());
        assert_eq!(lookup_sub(b"CLIENT", b"ID").unwrap().arity, 2);
    }

    #[test]
    fn recent_commands_stay_found_and_subcommands_only_for_parents() {
        for _ in 0..3 {
            for name in ["incr", "GET", "expire", "SET", "hget"] {
                assert_eq!(lookup(name.as_bytes()).unwrap().name, name.to_lowercase());
            }
        }
        let client = lookup(b"client").unwrap();
        assert_eq!(subcommand(client, b"id").unwrap().name, "client|id");
        assert!(subcommand(client, b"nosuch").is_none());
        // `get|id` would never be asked: GET has no subcommands.
        assert!(subcommand(lookup(b"get").unwrap(), b"id").is_none());
    }

    #[test]
    fn key_positions_follow_the_table() {
        let mset = lookup(b"mset").unwrap();
        assert_eq!(mset.key_positions(5).collect::<Vec<_>>(), vec![1, 3]);
        let del = lookup(b"del").unwrap();
        assert_eq!(del.key_positions(4).collect::<Vec<_>>(), vec![1, 2, 3]);
        let ping = lookup(b"ping").unwrap();
        assert_eq!(ping.key_positions(2).count(), 0);
        let rename = lookup(b"rename").unwrap();
        assert_eq!(rename.key_positions(3).collect::<Vec<_>>(), vec![1, 2]);
        assert!(!lookup(b"get").unwrap().arity_ok(3));
        assert!(lookup(b"del").unwrap().arity_ok(9));
    }

    #[test]
    fn indexes_follow_all() {
        for (i, c) in all().enumerate() {
            assert_eq!(position(c), i, "{}", c.name);
        }
        assert_eq!(all().count(), count());
    }

    #[test]
    fn blobs_exist_for_every_redis_command() {
        for c in generated::REDIS_COMMANDS {
            assert!(info_entry(c.name, false).is_some(), "{}", c.name);
            assert!(docs_entry(c.name, true).is_some(), "{}", c.name);
        }
    }
}
