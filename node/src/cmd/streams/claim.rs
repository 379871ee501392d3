//! XCLAIM and XAUTOCLAIM: moving pending entries to another consumer of the group. Each claim
//! (and each pending entry dropped because its entry was deleted) reaches the replicas as an
//! XCLAIM that sets the exact delivery time and count, as Redis propagates it.

use bytes::Bytes;
use ringcache_protocol::Reply;

use super::super::args::{is, syntax_error};
use super::super::ctx::Ctx;
use super::args::{range_bound, strict_id};
use super::entry_reply;
use super::groups::no_key_or_group;
use super::read::{claim_cmd, setid_cmd};
use crate::types::stream::{Group, Stream, StreamId};

/// The group `a[2]` of the stream `a[1]` must exist.
fn check(ctx: &mut Ctx, a: &[Bytes]) -> Result<(), Reply> {
    match ctx.db.read::<Stream>(&a[1]) {
        Err(e) => Err(e.into()),
        Ok(Some(s)) if s.groups.contains_key(&a[2]) => Ok(()),
        Ok(_) => Err(no_key_or_group(&a[1], &a[2])),
    }
}

fn int_or(arg: &[u8], msg: &str) -> Result<i64, Reply> {
    ringcache_protocol::num::parse_i64(arg).ok_or_else(|| Reply::error(format!("ERR {msg}")))
}

struct ClaimOpts {
    ids: Vec<StreamId>,
    delivery_time: Option<i64>,
    retry_count: Option<u64>,
    force: bool,
    justid: bool,
    last_id: StreamId,
}

fn parse_xclaim(a: &[Bytes], now: i64) -> Result<ClaimOpts, Reply> {
    let mut o = ClaimOpts {
        ids: Vec::new(),
        delivery_time: None,
        retry_count: None,
        force: false,
        justid: false,
        last_id: StreamId::MIN,
    };
    let mut j = 5;
    while j < a.len() {
        match StreamId::parse(&a[j], 0) {
            Some(id) => o.ids.push(id),
            None => break,
        }
        j += 1;
    }
    while j < a.len() {
        let more = j + 1 < a.len();
        let opt = &a[j];
        if is(opt, "force") {
            o.force = true;
        } else if is(opt, "justid") {
            o.justid = true;
        } else if is(opt, "idle") && more {
            j += 1;
            let idle = int_or(&a[j], "Invalid IDLE option argument for XCLAIM")?;
            o.delivery_time = Some(now.saturating_sub(idle));
        } else if is(opt, "time") && more {
            j += 1;
            o.delivery_time = Some(int_or(&a[j], "Invalid TIME option argument for XCLAIM")?);
        } else if is(opt, "retrycount") && more {
            j += 1;
            let n = int_or(&a[j], "Invalid RETRYCOUNT option argument for XCLAIM")?;
            o.retry_count = Some(u64::try_from(n).unwrap_or(0));
        } else if is(opt, "lastid") && more {
            j += 1;
            o.last_id = strict_id(&a[j])?;
        } else {
            return Err(Reply::error(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            )));
        }
        j += 1;
    }
    Ok(o)
}

/// Gives pending entry `id` to `consumer` (delivered at `time`, its count set by the caller);
/// the propagated XCLAIM.
fn give(
    g: &mut Group,
    key: &Bytes,
    group: &Bytes,
    consumer: &Bytes,
    id: StreamId,
    time: i64,
    count: u64,
) -> Vec<Bytes> {
    g.deliver(id, consumer, time, count);
    claim_cmd(key, group, consumer, id, time, count, g.last_id)
}

/// Drops pending entry `id` whose entry is gone; the propagated XCLAIM (which drops it too).
fn drop_gone(g: &mut Group, key: &Bytes, group: &Bytes, id: StreamId) -> Option<Vec<Bytes>> {
    let p = g.pel.get(&id)?.clone();
    g.ack(id);
    Some(claim_cmd(
        key,
        group,
        &p.consumer,
        id,
        p.delivery_time,
        p.delivery_count,
        g.last_id,
    ))
}

pub fn xclaim(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if let Err(e) = check(ctx, a) {
        return e;
    }
    let min_idle = match int_or(&a[4], "Invalid min-idle-time argument for XCLAIM") {
        Ok(n) => n.max(0),
        Err(e) => return e,
    };
    let now = ctx.db.now;
    let o = match parse_xclaim(a, now) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let time = match o.delivery_time {
        Some(t) if (0..=now).contains(&t) => t,
        _ => now,
    };
    let (key, group, consumer) = (&a[1], &a[2], &a[3]);
    let r = ctx.db.update::<Stream, _>(key, false, |s, _| {
        let mut cmds = Vec::new();
        let mut out = Vec::new();
        let Some(g) = s.groups.get_mut(group) else {
            return ((out, cmds), false);
        };
        let mut moved_last = false;
        if o.last_id > g.last_id {
            g.last_id = o.last_id;
            moved_last = true;
        }
        let mut seen = false;
        for &id in &o.ids {
            let entry = s.entries.get(id);
            if entry.is_none() {
                if let Some(cmd) = drop_gone(g, key, group, id) {
                    cmds.push(cmd);
                }
                continue;
            }
            let pending = g.pel.get(&id).cloned();
            if pending.is_none() && !o.force {
                continue;
            }
            if let Some(p) = &pending {
                if min_idle > 0 && now - p.delivery_time < min_idle {
                    continue;
                }
            }
            if !seen {
                let (c, created) = g.consumer(consumer, now);
                c.seen_time = now;
                if created {
                    cmds.push(super::read::create_consumer_cmd(key, group, consumer));
                }
                seen = true;
            }
            let before = pending.map_or(0, |p| p.delivery_count);
            let count = match o.retry_count {
                Some(n) => n,
                None if o.justid => before,
                None => before + 1,
            };
            cmds.push(give(g, key, group, consumer, id, time, count));
            out.push(match (o.justid, entry) {
                (true, _) => Reply::Bulk(id.to_bytes()),
                (false, Some(f)) => entry_reply(id, f),
                (false, None) => Reply::Nil,
            });
        }
        if moved_last && cmds.is_empty() {
            cmds.push(setid_cmd(key, group, g.last_id, g.entries_read));
        }
        let changed = !cmds.is_empty() || seen;
        ((out, cmds), changed)
    });
    match r {
        Ok(Some((out, cmds))) => {
            for cmd in cmds {
                ctx.db.propagate_as(cmd);
            }
            if ctx.db.effects.rewrite.is_none() {
                ctx.db.propagate_nothing();
            }
            Reply::Array(out)
        }
        Ok(None) => Reply::Array(Vec::new()),
        Err(e) => e.into(),
    }
}

pub fn xautoclaim(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let min_idle = match int_or(&a[4], "Invalid min-idle-time argument for XAUTOCLAIM") {
        Ok(n) => n.max(0),
        Err(e) => return e,
    };
    let start = match range_bound(&a[5], true) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let (mut count, mut justid) = (100usize, false);
    let mut j = 6;
    while j < a.len() {
        if is(&a[j], "count") && j + 1 < a.len() {
            let max = i64::MAX / 16;
            match ringcache_protocol::num::parse_i64(&a[j + 1]) {
                Some(n) if (1..=max).contains(&n) => count = n as usize,
                _ => return Reply::error("ERR COUNT must be > 0"),
            }
            j += 2;
        } else if is(&a[j], "justid") {
            justid = true;
            j += 1;
        } else {
            return syntax_error();
        }
    }
    if let Err(e) = check(ctx, a) {
        return e;
    }
    let now = ctx.db.now;
    let (key, group, consumer) = (&a[1], &a[2], &a[3]);
    let r = ctx.db.update::<Stream, _>(key, false, |s, _| {
        let mut cmds = Vec::new();
        let (mut claimed, mut deleted) = (Vec::new(), Vec::new());
        let Some(g) = s.groups.get_mut(group) else {
            return ((StreamId::MIN, claimed, deleted, cmds), false);
        };
        let mut attempts = count.saturating_mul(10);
        let mut left = count;
        let mut cursor = start;
        let mut next = None;
        let mut seen = false;
        loop {
            let Some(id) = g.pel.range(cursor..).next().map(|(id, _)| *id) else {
                next = None;
                break;
            };
            if attempts == 0 || left == 0 {
                next = Some(id);
                break;
            }
            attempts -= 1;
            cursor = match id.next() {
                Some(n) => n,
                None => StreamId::MAX,
            };
            let entry = s.entries.get(id);
            let Some(entry) = entry else {
                if let Some(cmd) = drop_gone(g, key, group, id) {
                    cmds.push(cmd);
                }
                deleted.push(Reply::Bulk(id.to_bytes()));
                left -= 1;
                if id == StreamId::MAX {
                    break;
                }
                continue;
            };
            let Some(p) = g.pel.get(&id).cloned() else {
                continue;
            };
            if min_idle > 0 && now - p.delivery_time < min_idle {
                if id == StreamId::MAX {
                    break;
                }
                continue;
            }
            if !seen {
                let (c, created) = g.consumer(consumer, now);
                c.seen_time = now;
                if created {
                    cmds.push(super::read::create_consumer_cmd(key, group, consumer));
                }
                seen = true;
            }
            let count = p.delivery_count + u64::from(!justid);
            cmds.push(give(g, key, group, consumer, id, now, count));
            claimed.push(if justid {
                Reply::Bulk(id.to_bytes())
            } else {
                entry_reply(id, entry)
            });
            left -= 1;
            if id == StreamId::MAX {
                break;
            }
        }
        let changed = !cmds.is_empty() || seen;
        (
            (next.unwrap_or(StreamId::MIN), claimed, deleted, cmds),
            changed,
        )
    });
    match r {
        Ok(Some((next, claimed, deleted, cmds))) => {
            for cmd in cmds {
                ctx.db.propagate_as(cmd);
            }
            if ctx.db.effects.rewrite.is_none() {
                ctx.db.propagate_nothing();
            }
            Reply::Array(vec![
                Reply::Bulk(next.to_bytes()),
                Reply::Array(claimed),
                Reply::Array(deleted),
            ])
        }
        Ok(None) => no_key_or_group(key, group),
        Err(e) => e.into(),
    }
}
