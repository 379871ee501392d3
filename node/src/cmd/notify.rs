//! Keyspace notifications (`notify-keyspace-events`): what a command did to its keys, published
//! as `__keyspace@0__:<key>` (the event as message) and `__keyevent@0__:<event>` (the key as
//! message), with Redis 7's event names and classes.
//!
//! The keyspace records, while notifications are on, each key a command changed and how (changed,
//! created, deleted, found expired: `keyspace::db::Note`); after the command, under its locks,
//! [`command`] names the events from the command and its arguments. Off (the default), nothing is
//! recorded and nothing here runs.

use bytes::{Bytes, BytesMut};

use super::args::is;
use crate::keyspace::{Db, Note};
use crate::state::Shared;

pub const KEYSPACE: u32 = 1 << 0;
pub const KEYEVENT: u32 = 1 << 1;
pub const GENERIC: u32 = 1 << 2;
pub const STRING: u32 = 1 << 3;
pub const LIST: u32 = 1 << 4;
pub const SET: u32 = 1 << 5;
pub const HASH: u32 = 1 << 6;
pub const ZSET: u32 = 1 << 7;
pub const EXPIRED: u32 = 1 << 8;
pub const EVICTED: u32 = 1 << 9;
pub const STREAM: u32 = 1 << 10;
pub const KEY_MISS: u32 = 1 << 11;
pub const MODULE: u32 = 1 << 12;
pub const NEW: u32 = 1 << 13;
/// `A`: every class but key misses and new keys.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// The class letters, in the order Redis prints them.
const CLASSES: [(u8, u32); 11] = [
    (b'g', GENERIC),
    (b'$', STRING),
    (b'l', LIST),
    (b's', SET),
    (b'h', HASH),
    (b'z', ZSET),
    (b'x', EXPIRED),
    (b'e', EVICTED),
    (b't', STREAM),
    (b'd', MODULE),
    (b'n', NEW),
];

/// Parses `notify-keyspace-events`; `None` for a character that names no class.
pub fn parse_flags(s: &[u8]) -> Option<u32> {
    let mut flags = 0;
    for &c in s {
        flags |= match c {
            b'A' => ALL,
            b'K' => KEYSPACE,
            b'E' => KEYEVENT,
            b'm' => KEY_MISS,
            _ => CLASSES.iter().find(|(l, _)| *l == c)?.1,
        };
    }
    Some(flags)
}

/// The flags as CONFIG GET shows them (`AKE`, `gKE`, `$lshzxeKE`).
pub fn format_flags(flags: u32) -> String {
    let mut s = String::new();
    if flags & ALL == ALL {
        s.push('A');
    }
    for (letter, class) in CLASSES {
        if flags & class != 0 && (flags & ALL != ALL || class & ALL == 0) {
            s.push(char::from(letter));
        }
    }
    for (letter, class) in [('K', KEYSPACE), ('E', KEYEVENT), ('m', KEY_MISS)] {
        if flags & class != 0 {
            s.push(letter);
        }
    }
    s
}

/// Publishes the events of the command that just ran against `db` (`name` and its arguments).
pub fn command(shared: &Shared, db: &mut Db<'_>, name: &str, args: &[Bytes]) {
    if db.effects.notes.is_empty() {
        return;
    }
    let mut notes = std::mem::take(&mut db.effects.notes);
    let flags = shared.pubsub.notify_flags();
    if flags == 0 {
        return;
    }
    if matches!(name, "rpoplpush" | "brpoplpush" | "lmove" | "blmove") && args[1] != args[2] {
        // Redis pushes to the destination before it pops the source (and deletes it if empty).
        notes.sort_by_key(|(k, _)| *k != args[2]);
    }
    if matches!(name, "xreadgroup" | "xclaim" | "xautoclaim") {
        // Their only event: a consumer they created, as the propagated commands name it.
        for cmd in db.effects.rewrite.iter().flatten() {
            if cmd.len() == 5 && is(&cmd[0], "xgroup") && is(&cmd[1], "createconsumer") {
                emit(shared, flags, STREAM, "xgroup-createconsumer", &cmd[2]);
            }
        }
        return;
    }
    for (key, note) in &notes {
        match note {
            Note::Expired => emit(shared, flags, EXPIRED, "expired", key),
            Note::New => emit(shared, flags, NEW, "new", key),
            Note::Changed => {
                if let Some((class, event)) = event_of(name, args, key) {
                    emit(shared, flags, class, event, key);
                    if expire_too(name, args) {
                        emit(shared, flags, GENERIC, "expire", key);
                    }
                }
            }
            Note::Removed => {
                if matches!(name, "rename" | "renamenx") {
                    emit(shared, flags, GENERIC, "rename_from", key);
                    continue;
                }
                // A collection a command left empty: the command's event, then the delete.
                if !deletes_only(name) {
                    if let Some((class, event)) = event_of(name, args, key) {
                        emit(shared, flags, class, event, key);
                    }
                }
                emit(shared, flags, GENERIC, "del", key);
            }
        }
    }
}

/// A key deleted by active expiry.
pub fn expired(shared: &Shared, key: &[u8]) {
    let flags = shared.pubsub.notify_flags();
    if flags != 0 {
        emit(shared, flags, EXPIRED, "expired", key);
    }
}

/// A key evicted under `maxmemory`.
pub fn evicted(shared: &Shared, key: &[u8]) {
    let flags = shared.pubsub.notify_flags();
    if flags != 0 {
        emit(shared, flags, EVICTED, "evicted", key);
    }
}

fn emit(shared: &Shared, flags: u32, class: u32, event: &str, key: &[u8]) {
    if flags & class == 0 {
        return;
    }
    let ps = &shared.pubsub;
    if flags & KEYSPACE != 0 {
        let mut ch = BytesMut::with_capacity(16 + key.len());
        ch.extend_from_slice(b"__keyspace@0__:");
        ch.extend_from_slice(key);
        ps.publish(&ch, event.as_bytes());
    }
    if flags & KEYEVENT != 0 {
        let mut ch = BytesMut::with_capacity(16 + event.len());
        ch.extend_from_slice(b"__keyevent@0__:");
        ch.extend_from_slice(event.as_bytes());
        ps.publish(&ch, key);
    }
}

/// Commands whose only event for a key they delete is `del` (an empty result stored, a deadline
/// in the past).
fn deletes_only(name: &str) -> bool {
    matches!(
        name,
        "del"
            | "unlink"
            | "getdel"
            | "expire"
            | "pexpire"
            | "expireat"
            | "pexpireat"
            | "getex"
            | "sinterstore"
            | "sunionstore"
            | "sdiffstore"
            | "zunionstore"
            | "zinterstore"
            | "zdiffstore"
            | "zrangestore"
            | "bitop"
            | "sort"
            | "geosearchstore"
            | "georadius"
            | "georadiusbymember"
    )
}

/// SET with a deadline, SETEX, PSETEX: `expire` follows `set`.
fn expire_too(name: &str, args: &[Bytes]) -> bool {
    match name {
        "setex" | "psetex" => true,
        "set" => args[3..]
            .iter()
            .any(|a| ["ex", "px", "exat", "pxat"].iter().any(|o| is(a, o))),
        _ => false,
    }
}

/// The argument at `i` (empty past the end).
fn arg(args: &[Bytes], i: usize) -> &[u8] {
    args.get(i).map_or(&[][..], |a| &a[..])
}

/// The direction word after LMPOP's / ZMPOP's keys (`first` is where `numkeys` is).
fn after_keys(args: &[Bytes], first: usize) -> &[u8] {
    let n = ringcache_protocol::num::parse_i64(arg(args, first)).unwrap_or(0);
    arg(args, first + 1 + usize::try_from(n).unwrap_or(0))
}

/// The event (and its class) a command's change of `key` raises; `None`: none.
fn event_of(name: &str, args: &[Bytes], key: &[u8]) -> Option<(u32, &'static str)> {
    let left_right = |side: &[u8], l: &'static str, r: &'static str| {
        if is(side, "left") {
            l
        } else {
            r
        }
    };
    let src = arg(args, 1) == key;
    Some(match name {
        "set" | "setnx" | "setex" | "psetex" | "getset" | "mset" | "msetnx" | "bitop" => {
            (STRING, "set")
        }
        "append" => (STRING, "append"),
        "setrange" => (STRING, "setrange"),
        "incr" | "decr" | "incrby" | "decrby" => (STRING, "incrby"),
        "incrbyfloat" => (STRING, "incrbyfloat"),
        "setbit" | "bitfield" => (STRING, "setbit"),
        "pfadd" | "pfmerge" => (STRING, "pfadd"),
        "del" | "unlink" | "getdel" => (GENERIC, "del"),
        "expire" | "pexpire" | "expireat" | "pexpireat" => (GENERIC, "expire"),
        "getex" if args[2..].iter().any(|a| is(a, "persist")) => (GENERIC, "persist"),
        "getex" => (GENERIC, "expire"),
        "persist" => (GENERIC, "persist"),
        "rename" | "renamenx" if src => (GENERIC, "rename_from"),
        "rename" | "renamenx" => (GENERIC, "rename_to"),
        "copy" => (GENERIC, "copy_to"),
        "restore" => (GENERIC, "restore"),
        "lpush" | "lpushx" => (LIST, "lpush"),
        "rpush" | "rpushx" => (LIST, "rpush"),
        "lpop" | "blpop" => (LIST, "lpop"),
        "rpop" | "brpop" => (LIST, "rpop"),
        "linsert" => (LIST, "linsert"),
        "lset" => (LIST, "lset"),
        "lrem" => (LIST, "lrem"),
        "ltrim" => (LIST, "ltrim"),
        "rpoplpush" | "brpoplpush" if src => (LIST, "rpop"),
        "rpoplpush" | "brpoplpush" => (LIST, "lpush"),
        "lmove" | "blmove" if src => (LIST, left_right(arg(args, 3), "lpop", "rpop")),
        "lmove" | "blmove" => (LIST, left_right(arg(args, 4), "lpush", "rpush")),
        "lmpop" => (LIST, left_right(after_keys(args, 1), "lpop", "rpop")),
        "blmpop" => (LIST, left_right(after_keys(args, 2), "lpop", "rpop")),
        "sort" => (LIST, "sortstore"),
        "xadd" => (STREAM, "xadd"),
        "xtrim" => (STREAM, "xtrim"),
        "xdel" => (STREAM, "xdel"),
        "xsetid" => (STREAM, "xsetid"),
        "xgroup|create" => (STREAM, "xgroup-create"),
        "xgroup|createconsumer" => (STREAM, "xgroup-createconsumer"),
        "xgroup|delconsumer" => (STREAM, "xgroup-delconsumer"),
        "xgroup|destroy" => (STREAM, "xgroup-destroy"),
        "xgroup|setid" => (STREAM, "xgroup-setid"),
        "hset" | "hmset" | "hsetnx" => (HASH, "hset"),
        "hdel" => (HASH, "hdel"),
        "hincrby" => (HASH, "hincrby"),
        "hincrbyfloat" => (HASH, "hincrbyfloat"),
        "sadd" => (SET, "sadd"),
        "srem" => (SET, "srem"),
        "spop" => (SET, "spop"),
        "smove" if src => (SET, "srem"),
        "smove" => (SET, "sadd"),
        "sinterstore" => (SET, "sinterstore"),
        "sunionstore" => (SET, "sunionstore"),
        "sdiffstore" => (SET, "sdiffstore"),
        "zadd" if args[2..].iter().any(|a| is(a, "incr")) => (ZSET, "zincr"),
        "zadd" | "geoadd" => (ZSET, "zadd"),
        "zincrby" => (ZSET, "zincr"),
        "zrem" => (ZSET, "zrem"),
        "zremrangebyrank" => (ZSET, "zremrangebyrank"),
        "zremrangebyscore" => (ZSET, "zremrangebyscore"),
        "zremrangebylex" => (ZSET, "zremrangebylex"),
        "zpopmin" | "bzpopmin" => (ZSET, "zpopmin"),
        "zpopmax" | "bzpopmax" => (ZSET, "zpopmax"),
        "zmpop" if is(after_keys(args, 1), "min") => (ZSET, "zpopmin"),
        "zmpop" => (ZSET, "zpopmax"),
        "bzmpop" if is(after_keys(args, 2), "min") => (ZSET, "zpopmin"),
        "bzmpop" => (ZSET, "zpopmax"),
        "zunionstore" => (ZSET, "zunionstore"),
        "zinterstore" => (ZSET, "zinterstore"),
        "zdiffstore" => (ZSET, "zdiffstore"),
        "zrangestore" => (ZSET, "zrangestore"),
        "geosearchstore" => (ZSET, "geosearchstore"),
        "georadius" | "georadiusbymember" => (ZSET, "georadiusstore"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_and_print_as_redis() {
        for (set, shown) in [
            ("gKE", "gKE"),
            ("$lshzxeKE", "$lshzxeKE"),
            ("KA", "AK"),
            ("EA", "AE"),
            ("En", "nE"),
            ("", ""),
        ] {
            let flags = parse_flags(set.as_bytes());
            assert_eq!(flags.map(format_flags).as_deref(), Some(shown), "{set}");
        }
        assert_eq!(parse_flags(b"Kq"), None);
    }

    #[test]
    fn events_follow_arguments() {
        let a = |s: &str| -> Vec<Bytes> {
            s.split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        assert_eq!(
            event_of("lmove", &a("lmove s d left right"), b"s"),
            Some((LIST, "lpop"))
        );
        assert_eq!(
            event_of("lmove", &a("lmove s d left right"), b"d"),
            Some((LIST, "rpush"))
        );
        assert_eq!(
            event_of("blmpop", &a("blmpop 0 2 a b right"), b"a"),
            Some((LIST, "rpop"))
        );
        assert_eq!(
            event_of("zmpop", &a("zmpop 1 z min"), b"z"),
            Some((ZSET, "zpopmin"))
        );
        assert_eq!(
            event_of("rename", &a("rename x y"), b"y"),
            Some((GENERIC, "rename_to"))
        );
        assert!(expire_too("set", &a("set k v ex 10")));
        assert!(!expire_too("set", &a("set k v get")));
    }
}
