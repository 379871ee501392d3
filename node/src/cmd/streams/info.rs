//! XINFO STREAM [FULL [COUNT n]], XINFO GROUPS and XINFO CONSUMERS.

use bytes::Bytes;
use ringcache_protocol::Reply;

use super::super::args::{is, not_integer, syntax_error};
use super::super::ctx::Ctx;
use super::entry_reply;
use crate::types::stream::{Group, Stream, StreamId, UNKNOWN_READ};

pub const HELP: &[&str] = &[
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
];

fn s(text: &'static str) -> Reply {
    Reply::Bulk(Bytes::from_static(text.as_bytes()))
}

fn id(id: StreamId) -> Reply {
    Reply::Bulk(id.to_bytes())
}

fn read_or_nil(n: i64) -> Reply {
    if n == UNKNOWN_READ {
        Reply::Nil
    } else {
        Reply::Int(n)
    }
}

/// The stream at `a[2]`, or Redis's error for a missing key.
fn stream<'c>(ctx: &'c mut Ctx, a: &[Bytes]) -> Result<&'c Stream, Reply> {
    match ctx.db.read::<Stream>(&a[2]) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Reply::error("ERR no such key")),
        Err(e) => Err(e.into()),
    }
}

/// Fields of XINFO STREAM both forms start with.
fn head(st: &Stream) -> Vec<(Reply, Reply)> {
    let nodes = st.entries.node_count() as i64;
    vec![
        (s("length"), Reply::Int(st.len() as i64)),
        (s("radix-tree-keys"), Reply::Int(nodes)),
        (s("radix-tree-nodes"), Reply::Int(nodes + 1)),
        (s("last-generated-id"), id(st.last_id)),
        (s("max-deleted-entry-id"), id(st.max_deleted)),
        (s("entries-added"), Reply::Int(st.entries_added as i64)),
        (s("recorded-first-entry-id"), id(st.first_id())),
    ]
}

pub fn stream_info(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut full = None;
    if a.len() > 3 {
        if !is(&a[3], "full") {
            return syntax_error();
        }
        let mut count = 10usize;
        match a.len() {
            4 => {}
            6 if is(&a[4], "count") => match ringcache_protocol::num::parse_i64(&a[5]) {
                Some(n) => count = usize::try_from(n.max(0)).unwrap_or(usize::MAX),
                None => return not_integer(),
            },
            _ => return syntax_error(),
        }
        full = Some(if count == 0 { usize::MAX } else { count });
    }
    let now = ctx.db.now;
    let st = match stream(ctx, a) {
        Ok(st) => st,
        Err(e) => return e,
    };
    let mut m = head(st);
    let Some(count) = full else {
        m.push((s("groups"), Reply::Int(st.groups.len() as i64)));
        let first = st.entries.first().map(|(i, f)| entry_reply(i, f));
        let last = st.entries.last().map(|(i, f)| entry_reply(i, f));
        m.push((s("first-entry"), first.unwrap_or(Reply::Nil)));
        m.push((s("last-entry"), last.unwrap_or(Reply::Nil)));
        return Reply::Map(m);
    };
    let entries = st
        .entries
        .range(StreamId::MIN, StreamId::MAX)
        .take(count)
        .map(|(i, f)| entry_reply(i, f))
        .collect();
    m.push((s("entries"), Reply::Array(entries)));
    let groups = st
        .groups
        .iter()
        .map(|(name, g)| full_group(st, name, g, count, now))
        .collect();
    m.push((s("groups"), Reply::Array(groups)));
    Reply::Map(m)
}

fn full_group(st: &Stream, name: &Bytes, g: &Group, count: usize, _now: i64) -> Reply {
    let pel = g
        .pel
        .iter()
        .take(count)
        .map(|(i, p)| {
            Reply::Array(vec![
                id(*i),
                Reply::Bulk(p.consumer.clone()),
                Reply::Int(p.delivery_time),
                Reply::Int(p.delivery_count as i64),
            ])
        })
        .collect();
    let consumers = g
        .consumers
        .iter()
        .map(|(cname, c)| {
            let pending = c
                .pending
                .iter()
                .take(count)
                .filter_map(|i| g.pel.get(i).map(|p| (i, p)))
                .map(|(i, p)| {
                    Reply::Array(vec![
                        id(*i),
                        Reply::Int(p.delivery_time),
                        Reply::Int(p.delivery_count as i64),
                    ])
                })
                .collect();
            Reply::Map(vec![
                (s("name"), Reply::Bulk(cname.clone())),
                (s("seen-time"), Reply::Int(c.seen_time)),
                (s("pel-count"), Reply::Int(c.pending.len() as i64)),
                (s("pending"), Reply::Array(pending)),
            ])
        })
        .collect();
    Reply::Map(vec![
        (s("name"), Reply::Bulk(name.clone())),
        (s("last-delivered-id"), id(g.last_id)),
        (s("entries-read"), read_or_nil(g.entries_read)),
        (s("lag"), st.lag(g).map_or(Reply::Nil, Reply::Int)),
        (s("pel-count"), Reply::Int(g.pel.len() as i64)),
        (s("pending"), Reply::Array(pel)),
        (s("consumers"), Reply::Array(consumers)),
    ])
}

pub fn groups(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let st = match stream(ctx, a) {
        Ok(st) => st,
        Err(e) => return e,
    };
    Reply::Array(
        st.groups
            .iter()
            .map(|(name, g)| {
                Reply::Map(vec![
                    (s("name"), Reply::Bulk(name.clone())),
                    (s("consumers"), Reply::Int(g.consumers.len() as i64)),
                    (s("pending"), Reply::Int(g.pel.len() as i64)),
                    (s("last-delivered-id"), id(g.last_id)),
                    (s("entries-read"), read_or_nil(g.entries_read)),
                    (s("lag"), st.lag(g).map_or(Reply::Nil, Reply::Int)),
                ])
            })
            .collect(),
    )
}

pub fn consumers(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let now = ctx.db.now;
    let st = match stream(ctx, a) {
        Ok(st) => st,
        Err(e) => return e,
    };
    let Some(g) = st.groups.get(&a[3]) else {
        return Reply::error(format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            String::from_utf8_lossy(&a[3]),
            String::from_utf8_lossy(&a[2])
        ));
    };
    Reply::Array(
        g.consumers
            .iter()
            .map(|(name, c)| {
                Reply::Map(vec![
                    (s("name"), Reply::Bulk(name.clone())),
                    (s("pending"), Reply::Int(c.pending.len() as i64)),
                    (s("idle"), Reply::Int((now - c.seen_time).max(0))),
                ])
            })
            .collect(),
    )
}
