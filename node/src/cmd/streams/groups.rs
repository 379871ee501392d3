//! Consumer group management: XGROUP CREATE / DESTROY / SETID / CREATECONSUMER / DELCONSUMER,
//! XACK and XPENDING.

use bytes::Bytes;
use ringcache_protocol::Reply;

use super::super::args::{int_arg, is, syntax_error, wrongtype};
use super::super::ctx::Ctx;
use super::args::{bound_id, range_bound, strict_id};
use crate::types::stream::{Group, Stream, StreamId, UNKNOWN_READ};

pub const HELP: &[&str] = &[
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
];

fn sub_syntax(sub: &[u8]) -> Reply {
    Reply::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try XGROUP HELP.",
        String::from_utf8_lossy(sub)
    ))
}

fn no_group(key: &[u8], group: &[u8]) -> Reply {
    Reply::error(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        String::from_utf8_lossy(group),
        String::from_utf8_lossy(key)
    ))
}

/// NOGROUP as XPENDING, XCLAIM and XAUTOCLAIM word it.
pub fn no_key_or_group(key: &[u8], group: &[u8]) -> Reply {
    Reply::error(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

const NEEDS_KEY: &str = "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.";

/// ENTRIESREAD's value: non-negative or -1.
fn entries_read(arg: &[u8]) -> Result<i64, Reply> {
    let n = int_arg(arg)?;
    if n < 0 && n != UNKNOWN_READ {
        return Err(Reply::error(
            "ERR value for ENTRIESREAD must be positive or -1",
        ));
    }
    Ok(n)
}

/// The stream at `a[2]` must exist (and be a stream); with `group`, the group `a[3]` too.
fn check(ctx: &mut Ctx, a: &[Bytes], group: bool) -> Result<(), Reply> {
    match ctx.db.read::<Stream>(&a[2]) {
        Err(e) => Err(e.into()),
        Ok(Some(s)) if group && !s.groups.contains_key(&a[3]) => Err(no_group(&a[2], &a[3])),
        Ok(Some(_)) => Ok(()),
        Ok(None) if group => Err(no_group(&a[2], &a[3])),
        Ok(None) => Err(Reply::error(NEEDS_KEY)),
    }
}

/// `$` (the stream's last id) or a strict id.
fn group_id(s: Option<&Stream>, arg: &[u8]) -> Result<StreamId, Reply> {
    if arg == b"$" {
        return Ok(s.map_or(StreamId::MIN, |s| s.last_id));
    }
    bound_id(arg, 0)
}

pub fn create(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (mut mkstream, mut read) = (false, UNKNOWN_READ);
    let mut i = 5;
    while i < a.len() {
        if is(&a[i], "mkstream") {
            mkstream = true;
            i += 1;
        } else if is(&a[i], "entriesread") && i + 1 < a.len() {
            match entries_read(&a[i + 1]) {
                Ok(n) => read = n,
                Err(e) => return e,
            }
            i += 2;
        } else {
            return sub_syntax(&a[1]);
        }
    }
    if a.len() > 8 {
        return sub_syntax(&a[1]);
    }
    let id = match ctx.db.read::<Stream>(&a[2]) {
        Err(e) => return e.into(),
        Ok(None) if !mkstream => return Reply::error(NEEDS_KEY),
        Ok(s) => match group_id(s, &a[4]) {
            Ok(id) => id,
            Err(e) => return e,
        },
    };
    let r = ctx.db.update::<Stream, _>(&a[2], true, |s, _| {
        if s.groups.contains_key(&a[3]) {
            return (false, false);
        }
        s.groups.insert(a[3].clone(), Group::new(id, read));
        (true, true)
    });
    match r {
        Ok(Some(true)) => Reply::OK,
        Ok(_) => Reply::error("BUSYGROUP Consumer Group name already exists"),
        Err(e) => e.into(),
    }
}

pub fn setid(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut read = UNKNOWN_READ;
    match a.len() {
        5 => {}
        7 if is(&a[5], "entriesread") => match entries_read(&a[6]) {
            Ok(n) => read = n,
            Err(e) => return e,
        },
        _ => return sub_syntax(&a[1]),
    }
    if let Err(e) = check(ctx, a, true) {
        return e;
    }
    let id = match group_id(ctx.db.read::<Stream>(&a[2]).ok().flatten(), &a[4]) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let _ = ctx.db.update::<Stream, _>(&a[2], false, |s, _| {
        if let Some(g) = s.groups.get_mut(&a[3]) {
            g.last_id = id;
            g.entries_read = read;
        }
        ((), true)
    });
    Reply::OK
}

pub fn destroy(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if let Err(e) = check(ctx, a, false) {
        return e;
    }
    let r = ctx.db.update::<Stream, _>(&a[2], false, |s, _| {
        let gone = s.groups.remove(&a[3]).is_some();
        (gone, gone)
    });
    match r {
        Ok(Some(true)) => Reply::Int(1),
        Ok(_) => Reply::Int(0),
        Err(e) => e.into(),
    }
}

pub fn create_consumer(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if let Err(e) = check(ctx, a, true) {
        return e;
    }
    let now = ctx.db.now;
    let r = ctx.db.update::<Stream, _>(&a[2], false, |s, _| {
        let created = s
            .groups
            .get_mut(&a[3])
            .is_some_and(|g| g.consumer(&a[4], now).1);
        (created, created)
    });
    match r {
        Ok(Some(true)) => Reply::Int(1),
        Ok(_) => Reply::Int(0),
        Err(e) => e.into(),
    }
}

pub fn del_consumer(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if let Err(e) = check(ctx, a, true) {
        return e;
    }
    let r = ctx.db.update::<Stream, _>(&a[2], false, |s, _| {
        let n = s
            .groups
            .get_mut(&a[3])
            .and_then(|g| g.remove_consumer(&a[4]));
        (n.unwrap_or(0), n.is_some())
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0) as i64),
        Err(e) => e.into(),
    }
}

pub fn xack(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match ctx.db.read::<Stream>(&a[1]) {
        Err(e) => return e.into(),
        Ok(Some(s)) if s.groups.contains_key(&a[2]) => {}
        Ok(_) => return Reply::Int(0),
    }
    let mut ids = Vec::with_capacity(a.len() - 3);
    for arg in &a[3..] {
        match strict_id(arg) {
            Ok(id) => ids.push(id),
            Err(e) => return e,
        }
    }
    let r = ctx.db.update::<Stream, _>(&a[1], false, |s, _| {
        let Some(g) = s.groups.get_mut(&a[2]) else {
            return (0, false);
        };
        let n = ids.iter().filter(|id| g.ack(**id)).count();
        (n, n > 0)
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0) as i64),
        Err(e) => e.into(),
    }
}

/// XPENDING's extended form: range, count, an idle minimum and a consumer.
struct Extended {
    start: StreamId,
    end: StreamId,
    count: usize,
    min_idle: i64,
    consumer: Option<Bytes>,
}

fn parse_extended(a: &[Bytes]) -> Result<Option<Extended>, Reply> {
    if a.len() == 3 {
        return Ok(None);
    }
    if a.len() < 6 || a.len() > 9 {
        return Err(syntax_error());
    }
    let mut at = 3;
    let mut min_idle = 0;
    if is(&a[3], "idle") {
        min_idle = int_arg(&a[4])?;
        if a.len() < 8 {
            return Err(syntax_error());
        }
        at += 2;
    }
    let count = int_arg(&a[at + 2])?.max(0);
    let start = range_bound(&a[at], true)?;
    let end = range_bound(&a[at + 1], false)?;
    Ok(Some(Extended {
        start,
        end,
        count: usize::try_from(count).unwrap_or(usize::MAX),
        min_idle,
        consumer: a.get(at + 3).cloned(),
    }))
}

pub fn xpending(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let ext = match parse_extended(a) {
        Ok(e) => e,
        Err(e) => return e,
    };
    let now = ctx.db.now;
    let s = match ctx.db.read::<Stream>(&a[1]) {
        Err(_) => return wrongtype(),
        Ok(s) => s,
    };
    let Some(g) = s.and_then(|s| s.groups.get(&a[2])) else {
        return no_key_or_group(&a[1], &a[2]);
    };
    let Some(x) = ext else {
        let (Some(first), Some(last)) = (g.pel.keys().next(), g.pel.keys().next_back()) else {
            return Reply::Array(vec![Reply::Int(0), Reply::Nil, Reply::Nil, Reply::NilArray]);
        };
        let consumers = g
            .consumers
            .iter()
            .filter(|(_, c)| !c.pending.is_empty())
            .map(|(name, c)| {
                Reply::Array(vec![
                    Reply::Bulk(name.clone()),
                    Reply::Bulk(Bytes::from(c.pending.len().to_string())),
                ])
            })
            .collect();
        return Reply::Array(vec![
            Reply::Int(g.pel.len() as i64),
            Reply::Bulk(first.to_bytes()),
            Reply::Bulk(last.to_bytes()),
            Reply::Array(consumers),
        ]);
    };
    if x.start > x.end || x.count == 0 {
        return Reply::Array(Vec::new());
    }
    let ids: Box<dyn Iterator<Item = StreamId> + '_> = match &x.consumer {
        Some(name) => match g.consumers.get(name) {
            Some(c) => Box::new(c.pending.range(x.start..=x.end).copied()),
            None => return Reply::Array(Vec::new()),
        },
        None => Box::new(g.pel.range(x.start..=x.end).map(|(id, _)| *id)),
    };
    let mut out = Vec::new();
    for id in ids {
        if out.len() >= x.count {
            break;
        }
        let Some(p) = g.pel.get(&id) else {
            continue;
        };
        let idle = (now - p.delivery_time).max(0);
        if x.min_idle > 0 && idle < x.min_idle {
            continue;
        }
        out.push(Reply::Array(vec![
            Reply::Bulk(id.to_bytes()),
            Reply::Bulk(p.consumer.clone()),
            Reply::Int(idle),
            Reply::Int(p.delivery_count as i64),
        ]));
    }
    Reply::Array(out)
}
