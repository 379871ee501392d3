//! Following the nodes: a router that meets a newer epoch than its own (another router changed
//! membership or failed a shard over) adopts the ring from the map the nodes keep with it (every
//! shard's addresses), and a change still moving keys from their record. It routes that change's
//! moving arcs through the request path like the router driving it, but leaves the background
//! mover to that router while its lease runs (see [`super::lease`]); the epoch sync takes the
//! change over once the lease lapses.

use std::sync::Arc;

use ringcache_protocol::ring::{Epoch, Ring};

use crate::clients::lock;
use crate::pools::PoolState;
use crate::rebalance::migrating::Migrating;
use crate::rebalance::plan::ChangePlan;
use crate::rebalance::publish::{build_topology, warm_request_path};
use crate::record::{ChangeRecord, Membership, Place};
use crate::shard::Shard;
use crate::state::Router;
use crate::topology::Topology;

/// The topology for `ring` (the nodes' ring at its epoch), with the change `record` moving keys
/// if there is one: shards this router already serves at the same addresses are kept, the others
/// started at the addresses `place` gives (the nodes' map, the record, this router's config).
pub(super) fn topology_for(
    router: &Router,
    home: &PoolState,
    current: &Topology,
    ring: Ring,
    record: Option<&ChangeRecord>,
    place: &dyn Fn(&str) -> Option<Place>,
) -> Result<Topology, String> {
    let from = match record {
        Some(rec) => Some(rec.rings(ring.epoch())?.0),
        None => None,
    };
    let mut pool: Vec<Arc<Shard>> = Vec::new();
    let specs = ring
        .shards()
        .iter()
        .chain(from.iter().flat_map(|r| r.shards()));
    for spec in specs {
        if pool.iter().any(|s| s.id == spec.id) {
            continue;
        }
        let p = place(&spec.id).ok_or_else(|| format!("no address for shard '{}'", spec.id))?;
        let shard = match current.shard_by_id(&spec.id) {
            Some(s) if s.primary == p.primary && s.replicas == p.replicas => s.clone(),
            _ => Arc::new(router.start_shard(
                &home.name,
                &spec.id,
                &p.primary,
                &p.replicas,
                spec.weight,
            )),
        };
        pool.push(shard);
    }
    let (Some(from), Some(rec)) = (from, record) else {
        let shards = ring
            .shards()
            .iter()
            .filter_map(|spec| pool.iter().find(|s| s.id == spec.id).cloned())
            .collect();
        return Ok(Topology::from_parts(ring, shards, Migrating::default()));
    };
    let plan = ChangePlan {
        from: from.shards().to_vec(),
        moves: from.diff(&ring),
        next: ring,
        gainers: Vec::new(),
    };
    let topo = build_topology(&plan, &pool, &rec.what);
    warm_request_path(&topo);
    Ok(topo)
}

/// Adopts the nodes' ring at `epoch` from their `map`, with their change `record` if keys move.
pub(super) fn follow(
    router: &Router,
    pool: &PoolState,
    epoch: Epoch,
    map: &Membership,
    record: Option<&ChangeRecord>,
) -> Result<(), String> {
    let current = pool.topology.load_full();
    let ring = map.ring(epoch)?;
    let place = |id: &str| {
        map.place(id)
            .or_else(|| record.and_then(|r| r.place(id)))
            .cloned()
    };
    let next = topology_for(router, pool, &current, ring, record, &place)?;
    let moving = next.migrating.map().map(|m| m.what().to_string());
    router.store_topology(pool, Arc::new(next));
    let mut st = lock(&pool.rebalance.state);
    st.nodes_epoch = st.nodes_epoch.max(epoch);
    st.ahead = None;
    st.conflict = None;
    st.following.clone_from(&moving);
    drop(st);
    match &moving {
        Some(what) => {
            tracing::info!(epoch, change = %what, "following the nodes' ring; another router is moving its keys")
        }
        None => tracing::info!(epoch, "following the nodes' ring"),
    }
    Ok(())
}

/// The change another router drove is over (the nodes no longer record it): its arcs take the
/// fast path again.
pub(super) fn change_over(router: &Router, pool: &PoolState) {
    let current = pool.topology.load_full();
    let done = Topology::from_parts(
        current.ring.clone(),
        current.shards.clone(),
        Migrating::default(),
    );
    router.store_topology(pool, Arc::new(done));
    let what = lock(&pool.rebalance.state).following.take();
    tracing::info!(epoch = current.ring.epoch(), change = ?what, "the change another router drove is done");
}
