//! Cluster commands: TOPOLOGY (the ring the router pushes, see `crate::state::topology`),
//! MIGRATE-KEYS and MIGRATE-ARC (moves, run by the connection through `crate::topology::run`).

use std::time::Duration;

use bytes::Bytes;
use ringcache_protocol::wire::{MigrateArc, MigrateKeys, Topology, TopologyState, WireCommand};
use ringcache_protocol::Reply;

use super::ctx::Ctx;
use crate::state::session::Migration;

/// Most keys one MIGRATE-ARC call moves, whatever the caller asks (bounds one command's time).
const MAX_BATCH: usize = 10_000;

/// TOPOLOGY GET | IMPORT | DONE | SET | SETMOVING | SETMAP | LEASE | RELEASE | ASKCANCEL (see
/// `crate::topology` for what each means).
pub fn topology(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let topo = &ctx.shared.topology;
    let set = match Topology::parse(a) {
        Err(e) => return e.into_reply(),
        Ok(Topology::Import) => {
            // A source node's migration connection: its keys were placed by the router's new
            // ring, which this node may not have yet; applied like the primary's stream.
            ctx.session.from_primary = true;
            return Reply::OK;
        }
        Ok(Topology::Get) => {
            return TopologyState {
                epoch: topo.epoch(),
                shard: topo.shard_id().unwrap_or_default(),
                record: topo.change(),
                map: topo.map(),
                split_version: topo.fences().version,
                split_record: Some(topo.fences().record.clone()).filter(|r| !r.is_empty()),
            }
            .into_reply()
        }
        Ok(Topology::Done { epoch }) => {
            topo.done(epoch);
            return Reply::OK;
        }
        Ok(Topology::Lease {
            holder,
            ttl_ms,
            what,
        }) => {
            return match topo.lease(&holder, Duration::from_millis(ttl_ms), &what) {
                Ok(false) => Reply::OK,
                Ok(true) => Reply::Status("CANCEL"),
                Err((holder, what)) => Reply::Error(format!("CHANGEBUSY {holder} {what}")),
            };
        }
        Ok(Topology::Release { holder }) => {
            topo.release(&holder);
            return Reply::OK;
        }
        Ok(Topology::AskCancel) => {
            return match topo.ask_cancel() {
                Some(what) => Reply::Bulk(Bytes::from(what)),
                None => Reply::Nil,
            };
        }
        Ok(Topology::Fence(fences)) => {
            let version = fences.version;
            return match topo.set_fences(fences) {
                Ok(()) => {
                    // As for a new ring: a client blocked on a key fenced off is told where it went.
                    super::blocking::release_unowned(ctx.shared);
                    Reply::OK
                }
                Err(current) => Reply::Error(format!(
                    "STALEEPOCH this node's split fences are at version {current}, newer than {version}"
                )),
            };
        }
        Ok(Topology::Set(set)) => set,
    };
    let ring = match set.ring() {
        Ok(r) => r,
        Err(e) => return Reply::Error(format!("ERR invalid ring: {e}")),
    };
    let epoch = set.epoch;
    match topo.set(ring, set.my_id, set.record, set.map) {
        Ok(()) => {
            // A client blocked on a key the new ring gives another shard would wait for pushes
            // that now go there: it is told where the key went, and its router follows it.
            super::blocking::release_unowned(ctx.shared);
            Reply::OK
        }
        Err(current) => Reply::Error(format!(
            "STALEEPOCH this node is at epoch {current}, newer than {epoch}"
        )),
    }
}

/// `MIGRATE-KEYS <target> [key ...]`: no key warms connections to the target.
pub fn migrate_keys(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match MigrateKeys::parse(a) {
        Ok(m) => ask_move(
            ctx,
            Migration::Keys {
                target: m.target,
                keys: m.keys,
            },
        ),
        Err(e) => e.into_reply(),
    }
}

/// `MIGRATE-ARC <target> <start> <end> <max-keys> [PREFIX <prefix>]`.
pub fn migrate_arc(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match MigrateArc::parse(a) {
        Ok(m) => ask_move(
            ctx,
            Migration::Arc {
                target: m.target,
                arc: m.arc,
                max: usize::try_from(m.max_keys)
                    .unwrap_or(MAX_BATCH)
                    .clamp(1, MAX_BATCH),
                prefix: m.prefix,
            },
        ),
        Err(e) => e.into_reply(),
    }
}

/// Leaves `migration` for the connection to run: it waits on another node, a command cannot.
fn ask_move(ctx: &mut Ctx, migration: Migration) -> Reply {
    ctx.session.migration = Some(Box::new(migration));
    // Replaced by the move's own reply once it ran.
    Reply::Nil
}
