//! Publishing epochs: a change's topology (built from its plan), pushed as `TOPOLOGY SETMAP` to
//! every node (the shards that gain arcs must take it), then swapped in and quiesced; the way
//! back when the gainers refuse it; `TOPOLOGY DONE` once keys stop moving.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_protocol::ring::{Epoch, Ring};
use ringcache_protocol::wire::{MigrateKeys, Topology as TopologyCmd, TopologySet};

use crate::clients::lock;
use crate::pools::PoolState;
use crate::rebalance::migrating::{Migrating, MigrationMap};
use crate::rebalance::node_conn::send_one;
use crate::rebalance::outcome::GainersRefused;
use crate::rebalance::plan::ChangePlan;
use crate::record::{ChangeRecord, Membership};
use crate::shard::Shard;
use crate::shard_metrics::command_index;
use crate::state::Router;
use crate::topology::Topology;

/// What goes to the nodes with a ring: the change record while keys move, and the map of the
/// ring's addresses (any router adopts a newer ring from it).
#[derive(Debug, Clone)]
pub struct Pushed {
    pub record: Option<Bytes>,
    pub map: Bytes,
}

impl Pushed {
    pub fn of(topo: &Topology) -> Pushed {
        Pushed {
            record: ChangeRecord::of(topo).map(|r| r.encode()),
            map: Membership::of(topo).encode(),
        }
    }
}

/// `TOPOLOGY SETMAP <epoch> <my-id> <vnodes> <map> <record> <id> <weight> ...` for the node
/// serving `my_id` (the record empty unless keys move).
pub fn topology_set(ring: &Ring, pushed: &Pushed, my_id: &str) -> TopologyCmd {
    TopologyCmd::Set(
        TopologySet::for_ring(ring, pushed.record.as_ref(), my_id).with_map(pushed.map.clone()),
    )
}

/// Pushes `ring` (with its map, and the change record while keys move) to every
/// `(addr, shard id)` in parallel; the failures.
pub(super) async fn push_all(
    router: &Router,
    targets: &[(String, String)],
    ring: &Ring,
    pushed: &Pushed,
) -> Vec<String> {
    push_each(router, targets, ring, pushed)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

/// As [`push_all`], with each target's outcome in order.
async fn push_each(
    router: &Router,
    targets: &[(String, String)],
    ring: &Ring,
    pushed: &Pushed,
) -> Vec<Result<(), String>> {
    let pushes = targets.iter().map(|(addr, id)| async move {
        send_one(router, addr, &topology_set(ring, pushed, id)).await
    });
    futures::future::join_all(pushes).await
}

/// Every node of `topo` as `(address, shard id)`: primaries and replicas of the ring's shards
/// and of shards outside it still holding keys.
pub(crate) fn nodes_of(topo: &Topology) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in topo.serving_shards() {
        out.push((s.primary.clone(), s.id.clone()));
        for r in &s.replicas {
            out.push((r.clone(), s.id.clone()));
        }
    }
    out
}

/// The topology for `plan`: the ring's shards from `pool` by id, the others (still holding keys
/// of moving arcs) outside.
pub(super) fn build_topology(plan: &ChangePlan, pool: &[Arc<Shard>], what: &str) -> Topology {
    let shards: Vec<Arc<Shard>> = plan
        .next
        .shards()
        .iter()
        .filter_map(|spec| pool.iter().find(|s| s.id == spec.id).cloned())
        .collect();
    let outside: Vec<Arc<Shard>> = pool
        .iter()
        .filter(|s| plan.next.shard_index(&s.id).is_none())
        .filter(|s| plan.moves.iter().any(|m| m.from == s.id))
        .cloned()
        .collect();
    let migrating = if plan.moves.is_empty() {
        Migrating::default()
    } else {
        Migrating::new(MigrationMap::new(plan.moves.clone(), outside).describing(what, &plan.from))
    };
    Topology::from_parts(plan.next.clone(), shards, migrating)
}

/// Warms the request path of a change while its ring is being published: the side lanes to
/// every source, and the sources' connections to their targets, so the first requests on
/// moving keys do not wait for connections to be set up.
pub(super) fn warm_request_path(topo: &Topology) {
    let Some(map) = topo.migrating.map() else {
        return;
    };
    let cmd = migrate_keys_index();
    for (from, to, _) in map.groups() {
        if let (Some(src), Some(dst)) = (topo.shard_by_id(from), topo.shard_by_id(to)) {
            src.pool
                .warm_slow_lanes(&migrate_keys_request(&dst.primary, &[]), cmd);
        }
    }
}

/// `MIGRATE-KEYS <target> key...` (no key: the node's warm-up, see [`warm_request_path`]).
pub(super) fn migrate_keys_request(target: &str, keys: &[&Bytes]) -> Bytes {
    MigrateKeys::request(target, keys)
}

/// The metrics index of `MIGRATE-KEYS`.
pub(super) fn migrate_keys_index() -> u16 {
    command_index(ringcache_protocol::table::lookup(b"migrate-keys"))
}

/// Publishes `next`: the ring to every node at once (the gaining shards must all take it; the
/// others best effort, the sync task retries nodes that missed it), then the swap and the
/// quiesce. Every source refuses the arcs it lost before this router moves a key out of them,
/// so no router (this one, or another still on the old ring) can write a key at its source after
/// it left; a request a source refuses is retried at the new owner once the router follows.
pub(super) async fn publish(
    router: &Arc<Router>,
    pool: &PoolState,
    next: Topology,
    gainers: &[String],
    callers: &[u64],
) -> Result<(), GainersRefused> {
    warm_request_path(&next);
    let pushed = Pushed::of(&next);
    let gaining: Vec<&str> = next
        .serving_shards()
        .filter(|s| gainers.contains(&s.id))
        .map(|s| s.primary.as_str())
        .collect();
    let targets = nodes_of(&next);
    let results = push_each(router, &targets, &next.ring, &pushed).await;
    let refused: Vec<String> = targets
        .iter()
        .zip(&results)
        .filter(|((addr, _), r)| r.is_err() && gaining.contains(&addr.as_str()))
        .filter_map(|(_, r)| r.clone().err())
        .collect();
    if !refused.is_empty() {
        return Err(GainersRefused {
            epoch: next.ring.epoch(),
            failed: refused,
        });
    }
    let missed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if !missed.is_empty() {
        tracing::warn!(epoch = next.ring.epoch(), failed = %missed.join("; "), "some nodes missed the new ring; the epoch sync will retry");
    }
    let epoch = next.ring.epoch();
    let generation = router.store_topology(pool, Arc::new(next));
    {
        let mut st = lock(&pool.rebalance.state);
        st.nodes_epoch = st.nodes_epoch.max(epoch);
        st.ahead = None;
    }
    // This router's requests planned on the old ring are answered (or retried) before the
    // change is reported in effect.
    quiesce(router, generation, callers).await;
    pool.rebalance.sync_soon();
    Ok(())
}

/// Waits until no client has a request outstanding that was planned on a view older than
/// `generation` (bounded by the request timeout: such a request has been answered or failed by
/// then).
/// The `callers` of the change (and of any pool's change, `Router::change_callers`) are waiting
/// for it, not sending keys: they are skipped.
pub(crate) async fn quiesce(router: &Router, generation: u64, callers: &[u64]) {
    std::sync::atomic::fence(Ordering::SeqCst);
    let deadline = Instant::now() + router.config.request_timeout + Duration::from_millis(500);
    loop {
        // Callers of other pools' changes wait on their change, not on this one.
        let waiting = lock(&router.change_callers).clone();
        let old = router
            .clients
            .all()
            .iter()
            .filter(|c| {
                let e = c.busy_epoch.load(Ordering::SeqCst);
                e != 0 && e < generation && !callers.contains(&c.id) && !waiting.contains(&c.id)
            })
            .count();
        if old == 0 {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                clients = old,
                generation,
                "clients still busy on the old ring after the request timeout; going on"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Abandons a change whose ring the gaining shards refused: the current membership again, at an
/// epoch above the abandoned one, so nodes that did take it are brought back.
pub(super) async fn revert(
    router: &Arc<Router>,
    pool: &PoolState,
    cur: &Topology,
    abandoned: Epoch,
) {
    let epoch = abandoned.saturating_add(1);
    let ring = match Ring::new(epoch, cur.ring.vnodes(), cur.ring.shards().to_vec()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot rebuild the ring to revert");
            return;
        }
    };
    let topo = Topology::from_parts(ring, cur.shards.clone(), cur.migrating.clone());
    let targets = nodes_of(&topo);
    let pushed = Pushed::of(&topo);
    let ring = topo.ring.clone();
    router.store_topology(pool, Arc::new(topo));
    let failed = push_all(router, &targets, &ring, &pushed).await;
    if !failed.is_empty() {
        tracing::warn!(failed = %failed.join("; "), "revert: some nodes missed the ring; the epoch sync will retry");
    }
}

/// `TOPOLOGY DONE <epoch>` to `targets` (best effort: a node that misses it is told by the epoch
/// sync, and a stale record only makes a later router check arcs that are already empty).
pub(super) async fn done_on_nodes(
    router: &Router,
    pool: &PoolState,
    targets: &[(String, String)],
    epoch: Epoch,
) {
    lock(&pool.rebalance.state).done_epoch = epoch;
    let cmd = TopologyCmd::Done { epoch };
    let sends = targets.iter().map(|(addr, _)| send_one(router, addr, &cmd));
    let failed: Vec<String> = futures::future::join_all(sends)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if !failed.is_empty() {
        tracing::debug!(epoch, failed = %failed.join("; "), "TOPOLOGY DONE missed some nodes");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ringcache_protocol::ring::{ShardSpec, DEFAULT_VNODES};
    use ringcache_protocol::wire::WireCommand;

    #[test]
    fn topology_set_names_every_shard() {
        let r = Ring::new(
            3,
            DEFAULT_VNODES,
            vec![ShardSpec::new("a", 1), ShardSpec::new("b", 1)],
        )
        .unwrap();
        let pushed = Pushed {
            record: None,
            map: Bytes::from_static(b"M"),
        };
        let args: Vec<String> = topology_set(&r, &pushed, "b")
            .args()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(
            args,
            ["TOPOLOGY", "SETMAP", "3", "b", "2048", "M", "", "a", "1", "b", "1"]
        );
    }
}
