//! XREAD and XREADGROUP: reading new entries of several streams, as a plain reader or as a
//! consumer of a group (delivering entries into the group's pending list), blocking for new
//! entries with BLOCK as BLPOP blocks (`super::super::blocking`).
//!
//! A blocked read waits with `$` already resolved to the stream's last id, so an entry added
//! later serves it; [`serve_blocked`] runs the read again for it whenever one of its streams
//! changes. What XREADGROUP changed reaches the replicas as XCLAIM and XGROUP SETID commands
//! (plus XGROUP CREATECONSUMER for a consumer it created), as Redis propagates it.

use std::time::Duration;

use bytes::Bytes;
use ringcache_protocol::{Protocol, Reply};

use super::super::args::{is, not_integer, syntax_error};
use super::super::blocking::block;
use super::super::ctx::Ctx;
use super::args::{invalid_id, strict_id};
use super::entry_reply;
use crate::keyspace::Db;
use crate::types::stream::{Stream, StreamId};

/// The id a stream is read after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadId {
    After(StreamId),
    /// `>`: entries never delivered to the group.
    New,
}

struct ReadArgs {
    /// 0: no limit.
    count: usize,
    /// `None`: no BLOCK; `Some(None)`: block for ever.
    block: Option<Option<Duration>>,
    group: Option<(Bytes, Bytes)>,
    noack: bool,
    /// Index of the first key, and the number of streams.
    streams_at: usize,
    n: usize,
}

fn parse(a: &[Bytes], xreadgroup: bool) -> Result<ReadArgs, Reply> {
    let mut r = ReadArgs {
        count: 0,
        block: None,
        group: None,
        noack: false,
        streams_at: 0,
        n: 0,
    };
    let name = if xreadgroup { "xreadgroup" } else { "xread" };
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let o = &a[i];
        if is(o, "block") && more > 0 {
            let ms = ringcache_protocol::num::parse_i64(&a[i + 1])
                .ok_or_else(|| Reply::error("ERR timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(Reply::error("ERR timeout is negative"));
            }
            r.block = Some((ms > 0).then(|| Duration::from_millis(ms as u64)));
            i += 2;
        } else if is(o, "count") && more > 0 {
            let n = ringcache_protocol::num::parse_i64(&a[i + 1]).ok_or_else(not_integer)?;
            r.count = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
            i += 2;
        } else if is(o, "streams") && more > 0 {
            r.streams_at = i + 1;
            let left = a.len() - r.streams_at;
            if !left.is_multiple_of(2) {
                return Err(Reply::error(format!(
                    "ERR Unbalanced '{name}' list of streams: for each stream key an ID or '$' must be specified."
                )));
            }
            r.n = left / 2;
            break;
        } else if is(o, "group") && more >= 2 {
            if !xreadgroup {
                return Err(Reply::error(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            r.group = Some((a[i + 1].clone(), a[i + 2].clone()));
            i += 3;
        } else if is(o, "noack") {
            if !xreadgroup {
                return Err(Reply::error(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            r.noack = true;
            i += 1;
        } else {
            return Err(syntax_error());
        }
    }
    if r.streams_at == 0 {
        return Err(syntax_error());
    }
    if xreadgroup && r.group.is_none() {
        return Err(Reply::error("ERR Missing GROUP option for XREADGROUP"));
    }
    Ok(r)
}

fn nogroup(key: &[u8], group: &[u8]) -> Reply {
    Reply::error(format!(
        "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

/// The ids to read after, `$` resolved against the streams now.
fn resolve_ids(db: &mut Db<'_>, a: &[Bytes], r: &ReadArgs) -> Result<Vec<ReadId>, Reply> {
    let mut ids = Vec::with_capacity(r.n);
    for i in 0..r.n {
        let key = &a[r.streams_at + i];
        let arg = &a[r.streams_at + r.n + i];
        let stream = db.read::<Stream>(key).map_err(Reply::from)?;
        if let Some((group, _)) = &r.group {
            if !stream.is_some_and(|s| s.groups.contains_key(group)) {
                return Err(nogroup(key, group));
            }
        }
        let id = if &arg[..] == b"$" {
            if r.group.is_some() {
                return Err(Reply::error(
                    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ));
            }
            ReadId::After(stream.map_or(StreamId::MIN, |s| s.last_id))
        } else if &arg[..] == b">" {
            if r.group.is_none() {
                return Err(Reply::error(
                    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ));
            }
            ReadId::New
        } else {
            ReadId::After(strict_id(arg).map_err(|_| invalid_id())?)
        };
        ids.push(id);
    }
    Ok(ids)
}

/// Whether the read runs as its client's command or again for a blocked client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Arrived,
    Served,
}

/// Reads every stream: `[key, entries]` for each that had something to serve.
fn read_all(
    db: &mut Db<'_>,
    a: &[Bytes],
    r: &ReadArgs,
    ids: &[ReadId],
    mode: Mode,
) -> Result<Vec<Reply>, Reply> {
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let key = &a[r.streams_at + i];
        let served = match &r.group {
            None => plain_read(db, key, *id, r.count, mode)?,
            Some((group, consumer)) => {
                group_read(db, key, group, consumer, *id, r.count, r.noack, mode)?
            }
        };
        if let Some(entries) = served {
            out.push(Reply::Array(vec![
                Reply::Bulk(key.clone()),
                Reply::Array(entries),
            ]));
        }
    }
    Ok(out)
}

fn plain_read(
    db: &mut Db<'_>,
    key: &[u8],
    id: ReadId,
    count: usize,
    mode: Mode,
) -> Result<Option<Vec<Reply>>, Reply> {
    let s = match db.read::<Stream>(key) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(_) if mode == Mode::Served => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let ReadId::After(after) = id else {
        return Ok(None);
    };
    let Some(from) = after.next() else {
        return Ok(None);
    };
    let n = if count == 0 { usize::MAX } else { count };
    let entries: Vec<Reply> = s
        .entries
        .range(from, StreamId::MAX)
        .take(n)
        .map(|(id, f)| entry_reply(id, f))
        .collect();
    Ok((!entries.is_empty()).then_some(entries))
}

#[allow(clippy::too_many_arguments)]
fn group_read(
    db: &mut Db<'_>,
    key: &Bytes,
    group: &Bytes,
    consumer: &Bytes,
    id: ReadId,
    count: usize,
    noack: bool,
    mode: Mode,
) -> Result<Option<Vec<Reply>>, Reply> {
    let gone = || Reply::error("UNBLOCKED the stream key no longer exists");
    match db.read::<Stream>(key) {
        Ok(Some(s)) if s.groups.contains_key(group) => {}
        Ok(Some(_)) => return Err(nogroup(key, group)),
        Ok(None) if mode == Mode::Served => return Err(gone()),
        Ok(None) => return Err(nogroup(key, group)),
        Err(_) if mode == Mode::Served => return Err(gone()),
        Err(e) => return Err(e.into()),
    }
    let now = db.now;
    let n = if count == 0 { usize::MAX } else { count };
    let r = db.update::<Stream, _>(key, false, |s, _| {
        let mut cmds: Vec<Vec<Bytes>> = Vec::new();
        let Some(g) = s.groups.get_mut(group) else {
            return ((None, cmds), false);
        };
        let (c, created) = g.consumer(consumer, now);
        c.seen_time = now;
        if created {
            cmds.push(create_consumer_cmd(key, group, consumer));
        }
        match id {
            ReadId::After(after) => {
                let from = after.next().unwrap_or(StreamId::MAX);
                let ids: Vec<StreamId> = c.pending.range(from..).take(n).copied().collect();
                // Reading the history is a delivery too: its time and count move.
                for id in &ids {
                    if let Some(p) = g.pel.get_mut(id) {
                        p.delivery_time = now;
                        p.delivery_count += 1;
                        let count = p.delivery_count;
                        cmds.push(claim_cmd(key, group, consumer, *id, now, count, g.last_id));
                    }
                }
                let entries = ids
                    .iter()
                    .map(|&id| match s.entries.get(id) {
                        Some(f) => entry_reply(id, f),
                        None => Reply::Array(vec![Reply::Bulk(id.to_bytes()), Reply::NilArray]),
                    })
                    .collect();
                let changed = created || !ids.is_empty();
                ((Some(entries), cmds), changed)
            }
            ReadId::New => {
                let last = g.last_id;
                let fresh: Vec<(StreamId, Reply)> = match last.next() {
                    Some(from) => s
                        .entries
                        .range(from, StreamId::MAX)
                        .take(n)
                        .map(|(id, f)| (id, entry_reply(id, f)))
                        .collect(),
                    None => Vec::new(),
                };
                if fresh.is_empty() {
                    return ((None, cmds), created);
                }
                for (id, _) in &fresh {
                    s.advance_group(group, *id);
                    if !noack {
                        if let Some(g) = s.groups.get_mut(group) {
                            g.deliver(*id, consumer, now, 1);
                            cmds.push(claim_cmd(key, group, consumer, *id, now, 1, g.last_id));
                        }
                    }
                }
                if let Some(g) = s.groups.get(group) {
                    cmds.push(setid_cmd(key, group, g.last_id, g.entries_read));
                }
                let entries = fresh.into_iter().map(|(_, r)| r).collect();
                ((Some(entries), cmds), true)
            }
        }
    });
    match r {
        Ok(Some((served, cmds))) => {
            for cmd in cmds {
                db.propagate_as(cmd);
            }
            if db.effects.rewrite.is_none() {
                db.propagate_nothing();
            }
            Ok(served)
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `XCLAIM key group consumer 0 id TIME ms RETRYCOUNT n FORCE JUSTID LASTID last`: how a
/// delivery replays on a replica.
pub fn claim_cmd(
    key: &Bytes,
    group: &Bytes,
    consumer: &Bytes,
    id: StreamId,
    time: i64,
    count: u64,
    last: StreamId,
) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XCLAIM"),
        key.clone(),
        group.clone(),
        consumer.clone(),
        Bytes::from_static(b"0"),
        id.to_bytes(),
        Bytes::from_static(b"TIME"),
        Bytes::from(time.to_string()),
        Bytes::from_static(b"RETRYCOUNT"),
        Bytes::from(count.to_string()),
        Bytes::from_static(b"FORCE"),
        Bytes::from_static(b"JUSTID"),
        Bytes::from_static(b"LASTID"),
        last.to_bytes(),
    ]
}

/// `XGROUP SETID key group id ENTRIESREAD n`.
/// XGROUP CREATECONSUMER as a consumer a command created is propagated (and notified).
pub fn create_consumer_cmd(key: &Bytes, group: &Bytes, consumer: &Bytes) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XGROUP"),
        Bytes::from_static(b"CREATECONSUMER"),
        key.clone(),
        group.clone(),
        consumer.clone(),
    ]
}

pub fn setid_cmd(key: &Bytes, group: &Bytes, id: StreamId, read: i64) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XGROUP"),
        Bytes::from_static(b"SETID"),
        key.clone(),
        group.clone(),
        id.to_bytes(),
        Bytes::from_static(b"ENTRIESREAD"),
        Bytes::from(read.to_string()),
    ]
}

/// XREAD and XREADGROUP.
pub fn xread(ctx: &mut Ctx, a: &[Bytes], xreadgroup: bool) -> Reply {
    let r = match parse(a, xreadgroup) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if r.block.is_some() && ctx.session.in_script {
        let name = if xreadgroup { "xreadgroup" } else { "xread" };
        return Reply::Error(format!(
            "ERR {name} command is not allowed with BLOCK option from scripts"
        ));
    }
    let ids = match resolve_ids(&mut ctx.db, a, &r) {
        Ok(ids) => ids,
        Err(e) => return e,
    };
    let out = match read_all(&mut ctx.db, a, &r, &ids, Mode::Arrived) {
        Ok(out) => out,
        Err(e) => return e,
    };
    if !out.is_empty() {
        return for_protocol(Reply::Array(out), &a[0], ctx.session.proto);
    }
    let Some(timeout) = r.block else {
        return Reply::NilArray;
    };
    // Waits with `$` resolved: entries added from now on serve it.
    let mut waiting = a.to_vec();
    for (i, id) in ids.iter().enumerate() {
        if let ReadId::After(after) = id {
            waiting[r.streams_at + r.n + i] = after.to_bytes();
        }
    }
    let keys = a[r.streams_at..r.streams_at + r.n].to_vec();
    block(ctx, &waiting, keys, timeout, Reply::NilArray)
}

/// The read again for a client blocked in XREAD or XREADGROUP: `None` while nothing serves it.
pub fn serve_blocked(db: &mut Db<'_>, a: &[Bytes]) -> Option<Reply> {
    let xreadgroup = is(&a[0], "xreadgroup");
    let r = parse(a, xreadgroup).ok()?;
    let ids: Vec<ReadId> = (0..r.n)
        .map(|i| {
            let arg = &a[r.streams_at + r.n + i];
            if &arg[..] == b">" {
                ReadId::New
            } else {
                ReadId::After(StreamId::parse(arg, 0).unwrap_or(StreamId::MAX))
            }
        })
        .collect();
    match read_all(db, a, &r, &ids, Mode::Served) {
        Ok(out) if out.is_empty() => None,
        Ok(out) => Some(Reply::Array(out)),
        Err(e) => Some(e),
    }
}

/// XREAD's reply in the client's protocol: RESP3 answers a map of key to entries.
pub fn for_protocol(reply: Reply, cmd: &[u8], proto: Protocol) -> Reply {
    if proto != Protocol::Resp3 || !(is(cmd, "xread") || is(cmd, "xreadgroup")) {
        return reply;
    }
    match reply {
        Reply::Array(pairs) => Reply::Map(
            pairs
                .into_iter()
                .map(|p| match p {
                    Reply::Array(mut kv) if kv.len() == 2 => {
                        let v = kv.pop().unwrap_or(Reply::Nil);
                        let k = kv.pop().unwrap_or(Reply::Nil);
                        (k, v)
                    }
                    other => (other, Reply::Nil),
                })
                .collect(),
        ),
        other => other,
    }
}
