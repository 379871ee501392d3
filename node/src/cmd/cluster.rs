//! Cluster commands: TOPOLOGY (the ring the router pushes, see `crate::state::topology`),
//! MIGRATE-KEYS and MIGRATE-ARC (moves, run by the connection through `crate::topology::run`).

use bytes::Bytes;
use ringcache_protocol::ring::{Arc as RingArc, Ring, ShardSpec};
use ringcache_protocol::Reply;

use super::args::int_arg;
use super::ctx::Ctx;
use crate::state::session::Migration;

/// Most keys one MIGRATE-ARC call moves, whatever the caller asks (bounds one command's time).
const MAX_BATCH: usize = 10_000;

/// TOPOLOGY GET | IMPORT | DONE | SET | SETMOVING (see `crate::topology` for what each means).
pub fn topology(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    const USAGE: &str = "ERR usage: TOPOLOGY GET | TOPOLOGY IMPORT | TOPOLOGY DONE <epoch> | TOPOLOGY SET <epoch> <my-id> <vnodes> [<id> <weight> ...] | TOPOLOGY SETMOVING <epoch> <my-id> <vnodes> <record> [<id> <weight> ...]";
    let topo = &ctx.shared.topology;
    let sub = &a[1];
    if sub.eq_ignore_ascii_case(b"import") {
        // A source node's migration connection: its keys were placed by the router's new ring,
        // which this node may not have yet; applied like the primary's stream.
        ctx.session.from_primary = true;
        return Reply::OK;
    }
    if sub.eq_ignore_ascii_case(b"get") {
        let record = topo.change();
        return Reply::Array(vec![
            Reply::Int(topo.epoch() as i64),
            Reply::bulk_str(topo.shard_id().as_deref().unwrap_or("")),
            record.map_or(Reply::Nil, Reply::Bulk),
        ]);
    }
    if sub.eq_ignore_ascii_case(b"done") && a.len() == 3 {
        return match int_arg(&a[2]) {
            Ok(epoch) => {
                topo.done(u64::try_from(epoch).unwrap_or(0));
                Reply::OK
            }
            Err(_) => Reply::error("ERR epoch must be an integer"),
        };
    }
    // SETMOVING carries the change record after vnodes; the shard pairs follow either way.
    let (change, pairs_at) = if sub.eq_ignore_ascii_case(b"set") {
        (None, 5)
    } else if sub.eq_ignore_ascii_case(b"setmoving") && a.len() >= 6 {
        (Some(a[5].clone()), 6)
    } else {
        return Reply::error(USAGE);
    };
    if a.len() < pairs_at || !(a.len() - pairs_at).is_multiple_of(2) {
        return Reply::error(USAGE);
    }
    let (Ok(epoch), Ok(vnodes)) = (int_arg(&a[2]), int_arg(&a[4])) else {
        return Reply::error("ERR epoch and vnodes must be integers");
    };
    let mut shards = Vec::new();
    for pair in a[pairs_at..].chunks(2) {
        let Ok(w) = int_arg(&pair[1]) else {
            return Reply::error("ERR weights must be integers");
        };
        shards.push(ShardSpec::new(
            String::from_utf8_lossy(&pair[0]).into_owned(),
            u32::try_from(w).unwrap_or(0),
        ));
    }
    let ring = match Ring::new(
        u64::try_from(epoch).unwrap_or(0),
        u32::try_from(vnodes).unwrap_or(0),
        shards,
    ) {
        Ok(r) => r,
        Err(e) => return Reply::Error(format!("ERR invalid ring: {e}")),
    };
    let me = String::from_utf8_lossy(&a[3]).into_owned();
    match topo.set(ring, me, change) {
        Ok(()) => Reply::OK,
        Err(current) => Reply::Error(format!(
            "STALEEPOCH this node is at epoch {current}, newer than {epoch}"
        )),
    }
}

/// `MIGRATE-KEYS <target> [key ...]`: no key warms connections to the target.
pub fn migrate_keys(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    ask_move(
        ctx,
        Migration::Keys {
            target: String::from_utf8_lossy(&a[1]).into_owned(),
            keys: a[2..].to_vec(),
        },
    )
}

/// `MIGRATE-ARC <target> <start> <end> <max-keys>`.
pub fn migrate_arc(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match parse_arc(a) {
        Ok(m) => ask_move(ctx, m),
        Err(e) => e,
    }
}

/// Leaves `migration` for the connection to run: it waits on another node, a command cannot.
fn ask_move(ctx: &mut Ctx, migration: Migration) -> Reply {
    ctx.session.migration = Some(migration);
    // Replaced by the move's own reply once it ran.
    Reply::Nil
}

/// Parses `MIGRATE-ARC <target> <start> <end> <max-keys>`.
fn parse_arc(a: &[Bytes]) -> Result<Migration, Reply> {
    let parse = |b: &Bytes| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let (Some(start), Some(end), Some(max)) = (parse(&a[2]), parse(&a[3]), parse(&a[4])) else {
        return Err(Reply::error(
            "ERR start, end and max-keys must be unsigned integers",
        ));
    };
    Ok(Migration::Arc {
        target: String::from_utf8_lossy(&a[1]).into_owned(),
        arc: RingArc { start, end },
        max: usize::try_from(max)
            .unwrap_or(MAX_BATCH)
            .clamp(1, MAX_BATCH),
    })
}
