//! Stream commands: XADD, XLEN, XRANGE, XREVRANGE, XDEL, XTRIM, XSETID here; XREAD and
//! XREADGROUP in [`read`], consumer groups in [`groups`] and [`claim`], XINFO in [`info`].

mod args;
mod claim;
mod groups;
mod info;
mod read;

use bytes::Bytes;
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::Reply;

use super::args::{arity_error, is, syntax_error, unknown_command, unknown_subcommand};
use super::ctx::Ctx;
use crate::types::stream::{unpack, Stream, StreamId};
use args::{count_arg, parse_trim, range_bound, strict_id, AddId};

pub use read::{for_protocol, serve_blocked};

pub const NAMES: &[&str] = &[
    "xadd",
    "xlen",
    "xrange",
    "xrevrange",
    "xdel",
    "xtrim",
    "xsetid",
    "xread",
    "xreadgroup",
    "xgroup",
    "xgroup|create",
    "xgroup|destroy",
    "xgroup|setid",
    "xgroup|createconsumer",
    "xgroup|delconsumer",
    "xgroup|help",
    "xack",
    "xpending",
    "xclaim",
    "xautoclaim",
    "xinfo",
    "xinfo|stream",
    "xinfo|groups",
    "xinfo|consumers",
    "xinfo|help",
];

pub fn run(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    match spec.name {
        "xadd" => xadd(ctx, a),
        "xlen" => match ctx.db.read::<Stream>(&a[1]) {
            Ok(s) => Reply::Int(s.map_or(0, |s| s.len() as i64)),
            Err(e) => e.into(),
        },
        "xrange" => xrange(ctx, a, false),
        "xrevrange" => xrange(ctx, a, true),
        "xdel" => xdel(ctx, a),
        "xtrim" => xtrim(ctx, a),
        "xsetid" => xsetid(ctx, a),
        "xread" => read::xread(ctx, a, false),
        "xreadgroup" => read::xread(ctx, a, true),
        "xack" => groups::xack(ctx, a),
        "xpending" => groups::xpending(ctx, a),
        "xclaim" => claim::xclaim(ctx, a),
        "xautoclaim" => claim::xautoclaim(ctx, a),
        "xgroup|create" => groups::create(ctx, a),
        "xgroup|destroy" => groups::destroy(ctx, a),
        "xgroup|setid" => groups::setid(ctx, a),
        "xgroup|createconsumer" => groups::create_consumer(ctx, a),
        "xgroup|delconsumer" => groups::del_consumer(ctx, a),
        "xinfo|stream" => info::stream_info(ctx, a),
        "xinfo|groups" => info::groups(ctx, a),
        "xinfo|consumers" => info::consumers(ctx, a),
        "xgroup|help" => help(groups::HELP, "XGROUP"),
        "xinfo|help" => help(info::HELP, "XINFO"),
        "xgroup" | "xinfo" => match a.get(1) {
            Some(sub) if is(sub, "help") => arity_error(&format!("{}|help", spec.name)),
            Some(sub) => unknown_subcommand(sub, spec.name),
            None => arity_error(spec.name),
        },
        _ => unknown_command(a),
    }
}

/// A HELP reply: the command's header, its lines, then the usual footer.
fn help(lines: &[&str], name: &str) -> Reply {
    let mut out = vec![Reply::Status(leak_header(name))];
    out.extend(lines.iter().map(|l| Reply::StatusOwned((*l).to_string())));
    out.push(Reply::Status("HELP"));
    out.push(Reply::Status("    Prints this help."));
    Reply::Array(out)
}

fn leak_header(name: &str) -> &'static str {
    if name == "XGROUP" {
        "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    } else {
        "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    }
}

/// An entry as replied: `[id, [field, value, ...]]`.
pub fn entry_reply(id: StreamId, packed: &[u8]) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(id.to_bytes()),
        Reply::Array(
            unpack(packed)
                .map(|f| Reply::Bulk(Bytes::copy_from_slice(f)))
                .collect(),
        ),
    ])
}

fn xadd(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let lim = ctx.db.limits();
    let t = match parse_trim(a, true, lim.stream_node_max_entries) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let Some(add_id) = t.id else {
        return arity_error("xadd");
    };
    let fields = &a[t.fields_at.min(a.len())..];
    if fields.is_empty() || !fields.len().is_multiple_of(2) {
        return arity_error("xadd");
    }
    if add_id == AddId::Exact(StreamId::MIN) {
        return Reply::error("ERR The ID specified in XADD must be greater than 0-0");
    }
    match ctx.db.read::<Stream>(&a[1]) {
        Ok(None) if t.nomkstream => return Reply::Nil,
        Ok(_) => {}
        Err(e) => return e.into(),
    }
    let now = u64::try_from(ctx.db.now).unwrap_or(0);
    let r = ctx.db.update::<Stream, _>(&a[1], true, |s, lim| {
        if s.last_id == StreamId::MAX {
            return (
                Err("ERR The stream has exhausted the last possible ID, unable to add more items"),
                false,
            );
        }
        let id = match add_id {
            AddId::Auto => s.auto_id(now),
            AddId::Ms(ms) if ms == s.last_id.ms => s.last_id.next().filter(|n| n.ms == ms),
            AddId::Ms(ms) => Some(StreamId::new(ms, 0)),
            AddId::Exact(id) => Some(id),
        };
        let Some(id) = id.filter(|id| *id > s.last_id) else {
            return (
                Err("ERR The ID specified in XADD is equal or smaller than the target stream top item"),
                false,
            );
        };
        s.add(id, fields, lim);
        let trimmed = t.to.map(|to| s.trim(to, t.approx, t.limit));
        (Ok((id, trimmed.map(|_| s.len()))), true)
    });
    match r {
        Ok(Some(Ok((id, trimmed_len)))) => {
            let mut cmd = vec![Bytes::from_static(b"XADD"), a[1].clone()];
            if let Some(len) = trimmed_len {
                cmd.push(Bytes::from_static(b"MAXLEN"));
                cmd.push(Bytes::from_static(b"="));
                cmd.push(Bytes::from(len.to_string()));
            }
            cmd.push(id.to_bytes());
            cmd.extend(fields.iter().cloned());
            ctx.db.propagate_as(cmd);
            Reply::Bulk(id.to_bytes())
        }
        Ok(Some(Err(e))) => Reply::error(e),
        Ok(None) => Reply::Nil,
        Err(e) => e.into(),
    }
}

fn xrange(ctx: &mut Ctx, a: &[Bytes], rev: bool) -> Reply {
    let (start_arg, end_arg) = if rev { (&a[3], &a[2]) } else { (&a[2], &a[3]) };
    let start = match range_bound(start_arg, true) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let end = match range_bound(end_arg, false) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let mut count = None;
    let mut i = 4;
    while i < a.len() {
        if is(&a[i], "count") && i + 1 < a.len() {
            match count_arg(&a[i + 1]) {
                Ok(n) => count = Some(n),
                Err(e) => return e,
            }
            i += 2;
        } else {
            return syntax_error();
        }
    }
    let s = match ctx.db.read::<Stream>(&a[1]) {
        Ok(Some(s)) => s,
        Ok(None) => return Reply::Array(Vec::new()),
        Err(e) => return e.into(),
    };
    if count == Some(0) {
        return Reply::NilArray;
    }
    let n = count.unwrap_or(usize::MAX);
    let out: Vec<Reply> = if rev {
        let r = s.entries.range_rev(start, end);
        r.take(n).map(|(id, f)| entry_reply(id, f)).collect()
    } else {
        let r = s.entries.range(start, end);
        r.take(n).map(|(id, f)| entry_reply(id, f)).collect()
    };
    Reply::Array(out)
}

fn xdel(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut ids = Vec::with_capacity(a.len() - 2);
    for arg in &a[2..] {
        match strict_id(arg) {
            Ok(id) => ids.push(id),
            Err(e) => return e,
        }
    }
    let r = ctx.db.update::<Stream, _>(&a[1], false, |s, _| {
        let n = ids.iter().filter(|id| s.delete(**id)).count();
        (n, n > 0)
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0) as i64),
        Err(e) => e.into(),
    }
}

fn xtrim(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let t = match parse_trim(a, false, ctx.db.limits().stream_node_max_entries) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let Some(to) = t.to else {
        return syntax_error();
    };
    let r = ctx.db.update::<Stream, _>(&a[1], false, |s, _| {
        let n = s.trim(to, t.approx, t.limit);
        ((n, s.len()), n > 0)
    });
    match r {
        Ok(Some((n, len))) => {
            if t.approx && n > 0 {
                ctx.db.propagate_as(vec![
                    Bytes::from_static(b"XTRIM"),
                    a[1].clone(),
                    Bytes::from_static(b"MAXLEN"),
                    Bytes::from_static(b"="),
                    Bytes::from(len.to_string()),
                ]);
            }
            Reply::Int(n as i64)
        }
        Ok(None) => Reply::Int(0),
        Err(e) => e.into(),
    }
}

fn xsetid(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let id = match strict_id(&a[2]) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let mut added: Option<i64> = None;
    let mut max_deleted: Option<StreamId> = None;
    let mut i = 3;
    while i < a.len() {
        let more = i + 1 < a.len();
        if is(&a[i], "entriesadded") && more {
            match ringcache_protocol::num::parse_i64(&a[i + 1]) {
                Some(n) if n >= 0 => added = Some(n),
                Some(_) => return Reply::error("ERR entries_added must be positive"),
                None => return super::args::not_integer(),
            }
        } else if is(&a[i], "maxdeletedid") && more {
            match strict_id(&a[i + 1]) {
                Ok(m) if id < m => {
                    return Reply::error(
                        "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                    )
                }
                Ok(m) => max_deleted = Some(m),
                Err(e) => return e,
            }
        } else {
            return syntax_error();
        }
        i += 2;
    }
    let r = ctx.db.update::<Stream, _>(&a[1], false, |s, _| {
        if let Some(n) = added {
            if (s.len() as i64) > n {
                return (
                    Err("ERR The entries_added specified in XSETID is smaller than the target stream length"),
                    false,
                );
            }
        }
        if let Some((last, _)) = s.entries.last() {
            if id < last {
                return (
                    Err("ERR The ID specified in XSETID is smaller than the target stream top item"),
                    false,
                );
            }
        }
        s.last_id = id;
        if let Some(n) = added {
            s.entries_added = n as u64;
        }
        if let Some(m) = max_deleted {
            s.max_deleted = m;
        }
        (Ok(()), true)
    });
    match r {
        Ok(Some(Ok(()))) => Reply::OK,
        Ok(Some(Err(e))) => Reply::error(e),
        Ok(None) => Reply::error("ERR no such key"),
        Err(e) => e.into(),
    }
}
