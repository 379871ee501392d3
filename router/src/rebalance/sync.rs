//! Keeping this router and the nodes in step: at start-up it adopts the nodes' ring (or resumes
//! the change they record), then several times a second (or when woken) it follows a newer ring
//! another router published, takes over a change whose router died, pushes its ring to nodes
//! behind and notes nodes ahead; and it checks which ring the nodes enforce before taking over
//! their epoch when they keep no map.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use ringcache_protocol::ring::{Epoch, Ring};
use ringcache_protocol::Reply;
use tokio::sync::Notify;

use crate::clients::lock;
use crate::pools::PoolState;
use crate::rebalance::follow::{change_over, follow, topology_for};
use crate::rebalance::lease::Lease;
use crate::rebalance::mover::{drive, estimate, move_back};
use crate::rebalance::node_conn::{connect, node_state, send_one};
use crate::rebalance::plan::ChangePlan;
use crate::rebalance::publish::{done_on_nodes, nodes_of, push_all, topology_set, Pushed};
use crate::record::{ChangeRecord, Membership, Place};
use crate::shard::Shard;
use crate::state::Router;
use crate::topology::Topology;
use ringcache_protocol::wire::{Topology as TopologyCmd, TopologyState};

/// How often every node's epoch is checked: a change made through another router is followed
/// within this (plus a round trip), and the ring re-pushed to nodes that lag (a node that was
/// down or restarted empty).
const SYNC_INTERVAL: Duration = Duration::from_millis(400);

/// Starts the epoch sync task: adopts the nodes' epoch at start-up, then every few seconds (or
/// when woken) pushes the ring to nodes behind it.
pub fn start(router: &Arc<Router>) {
    for pool in &router.pools {
        let weak = Arc::downgrade(router);
        let wake = pool.rebalance.wake.clone();
        let stop = router.stop_signal();
        tokio::spawn(sync_task(weak, pool.clone(), wake, stop));
    }
}

async fn sync_task(
    router: Weak<Router>,
    pool: Arc<PoolState>,
    wake: Arc<Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let pool = &pool;
    let mut adopted = false;
    loop {
        {
            let Some(router) = router.upgrade() else {
                return;
            };
            if !adopted {
                adopted = adopt_nodes_epoch(&router, pool).await;
                let rb = &pool.rebalance;
                if !rb.first_sync.swap(true, Ordering::SeqCst) {
                    rb.first_sync_done.notify_waiters();
                }
            }
            // A change in progress pushes its own ring; checking meanwhile would only see the
            // nodes it already reached as "ahead".
            if adopted {
                if let Ok(_guard) = pool.rebalance.change_lock.try_lock() {
                    sync_nodes(&router, pool).await;
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(SYNC_INTERVAL) => {}
        }
    }
}

/// At start-up: the router never pushes an epoch lower than the nodes have. If the nodes keep a
/// map of their ring it follows it (and the change they record: it drives that change if no
/// other router holds the change lease, else it follows it). Without a map it adopts their
/// highest epoch (same membership, that epoch number) or resumes the change they record. False
/// if no primary answered yet.
async fn adopt_nodes_epoch(router: &Arc<Router>, pool: &Arc<PoolState>) -> bool {
    let _guard = pool.rebalance.change_lock.lock().await;
    let topo = pool.topology.load_full();
    let timeout = router.config.connect_timeout;
    let states = futures::future::join_all(topo.shards.iter().map(|s| async move {
        let mut c = connect(router, &s.primary).await?;
        node_state(&mut c, timeout).await
    }))
    .await;
    if states.iter().all(Result::is_err) {
        return false;
    }
    let max = states
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|s| s.epoch))
        .max()
        .unwrap_or(0);
    let at_max: Vec<&TopologyState> = states
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|s| s.epoch == max)
        .collect();
    if let Some(map) = newest_map(&at_max) {
        let record = at_max.iter().find_map(|s| s.record.clone());
        if let Some(raw) = &record {
            if take_over(router, pool, &topo, raw, max).await {
                return true;
            }
        }
        if max > topo.ring.epoch() || record.is_some() {
            let rec = record.as_deref().and_then(|r| ChangeRecord::decode(r).ok());
            if let Err(e) = follow(router, pool, max, &map, rec.as_ref()) {
                tracing::error!(error = %e, "cannot follow the nodes' ring");
            }
        }
        return true;
    }
    let record = at_max.iter().find_map(|s| s.record.clone());
    if let Some(raw) = record {
        match resume(router, pool, &topo, &raw, max).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(error = %e, "cannot resume the membership change the nodes record")
            }
        }
    }
    if max > topo.ring.epoch() {
        // Nodes at the highest epoch define the cluster's ring; check they enforce this
        // router's before pushing it to any node behind.
        let current: Vec<Arc<Shard>> = topo
            .shards
            .iter()
            .zip(&states)
            .filter(|(_, e)| matches!(e, Ok(s) if s.epoch == max))
            .map(|(s, _)| s.clone())
            .collect();
        if let Err(e) = nodes_enforce(router, &topo.ring, &current).await {
            let note = format!(
                "the nodes enforce another membership at epoch {max} than this router's config ({e}); nothing is pushed until RING JOIN/LEAVE (or SIGHUP) brings this router to theirs"
            );
            tracing::error!("{note}");
            lock(&pool.rebalance.state).conflict = Some(note);
        }
        match Ring::new(max, topo.ring.vnodes(), topo.ring.shards().to_vec()) {
            Ok(ring) => {
                tracing::info!(epoch = max, "adopting the nodes' ring epoch");
                router.store_topology(
                    pool,
                    Arc::new(Topology::from_parts(
                        ring,
                        topo.shards.clone(),
                        topo.migrating.clone(),
                    )),
                );
            }
            Err(e) => tracing::error!(error = %e, "cannot adopt the nodes' epoch"),
        }
    }
    true
}

/// The map the nodes keep with their newest ring, if one of them has it.
fn newest_map(at_max: &[&TopologyState]) -> Option<Membership> {
    at_max
        .iter()
        .filter_map(|s| s.map.as_deref())
        .find_map(|m| Membership::decode(m).ok())
}

/// Drives the change the nodes record at `epoch` if no router holds the change lease (the one
/// that started it died or was restarted): true if this router now drives it.
async fn take_over(
    router: &Arc<Router>,
    pool: &Arc<PoolState>,
    topo: &Topology,
    raw: &[u8],
    epoch: Epoch,
) -> bool {
    let what = ChangeRecord::decode(raw).map_or_else(|_| "a change".to_string(), |r| r.what);
    let Ok(lease) = Lease::take(router, pool, &what).await else {
        return false;
    };
    match resume(router, pool, topo, raw, epoch).await {
        Ok(()) => {
            let watched = pool.clone();
            lease.keep_while(move || watched.rebalance.in_progress());
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot resume the membership change the nodes record");
            false
        }
    }
}

/// Resumes the change the nodes record at `epoch` (the previous router stopped mid-move): its
/// ring, with the arcs between its two memberships moving (those already emptied are found
/// empty in one batch each). Shards come from this router's config where it has them, else
/// from the record's addresses. The ring goes to every node before any request is served.
async fn resume(
    router: &Arc<Router>,
    pool: &Arc<PoolState>,
    config: &Topology,
    raw: &[u8],
    epoch: Epoch,
) -> Result<(), String> {
    let rec = ChangeRecord::decode(raw)?;
    let (from, to) = rec.rings(epoch)?;
    let moves = from.diff(&to);
    // This router's config first: a record's addresses may be a previous router's view.
    let place = |id: &str| match config.shard_by_id(id) {
        Some(s) => Some(Place::of(s)),
        None => rec.place(id).cloned(),
    };
    let next = topology_for(router, pool, config, to, Some(&rec), &place)?;
    let pushed = Pushed::of(&next);
    let targets = nodes_of(&next);
    let map = next.migrating.map().cloned();
    let rb = &pool.rebalance;
    let ring = next.ring.clone();
    router.store_topology(pool, Arc::new(next));
    lock(&rb.state).nodes_epoch = epoch;
    // Equal epochs are accepted: nodes behind (the previous router's push did not reach them)
    // catch up, the others get the record with this router's addresses.
    let failed = push_all(router, &targets, &ring, &pushed).await;
    if !failed.is_empty() {
        tracing::warn!(epoch, failed = %failed.join("; "), "resuming: some nodes missed the ring; the epoch sync will retry");
    }
    let Some(map) = map else {
        // Nothing moves between the two memberships: the change is over.
        lock(&rb.state).following = None;
        done_on_nodes(router, pool, &targets, epoch).await;
        return Ok(());
    };
    let rollback = rec.what.starts_with("rollback");
    tracing::info!(change = %rec.what, epoch, arcs = moves.len(), "resuming the membership change the nodes record");
    rb.cancel.store(false, Ordering::SeqCst);
    let plan = ChangePlan {
        from: from.shards().to_vec(),
        moves,
        next: ring,
        gainers: Vec::new(),
    };
    rb.start_progress(
        &rec.what,
        &plan,
        if rollback { "rolling-back" } else { "moving" },
    );
    // Driven here from now on (set after the progress, so RING STATUS never shows neither).
    lock(&rb.state).following = None;
    let r = router.clone();
    let p = pool.clone();
    tokio::spawn(async move {
        estimate(&r, &p, &map, &from).await;
        if rollback {
            move_back(&r, &p, &map, &rec.what).await;
        } else {
            drive(r, p, map, from.shards().to_vec(), rec.what).await;
        }
    });
    Ok(())
}

/// Sample keys per node when checking which ring the nodes enforce.
const PROBE_KEYS: usize = 512;

/// Whether the primaries of `shards` enforce `ring`: for sample keys each accepts those `ring`
/// gives it and refuses the others naming `ring`'s owner. Nodes do not report their membership;
/// this is how a router checks that its ring matches theirs before taking over their epoch.
pub(super) async fn nodes_enforce(
    router: &Router,
    ring: &Ring,
    shards: &[Arc<Shard>],
) -> Result<(), String> {
    let timeout = router.config.connect_timeout;
    let keys: Vec<String> = (0..PROBE_KEYS)
        .map(|i| format!("ringcache:probe:{i}"))
        .collect();
    let cmds: Vec<Vec<Bytes>> = keys
        .iter()
        .map(|k| vec![Bytes::from_static(b"EXISTS"), Bytes::from(k.clone())])
        .collect();
    let checks = shards.iter().map(|s| {
        let (keys, cmds) = (&keys, &cmds);
        async move {
            let mut c = connect(router, &s.primary).await?;
            let replies = c.pipeline(cmds, timeout).await.map_err(|e| e.to_string())?;
            for (k, r) in keys.iter().zip(&replies) {
                let owner = ring.locate(k.as_bytes()).map(|o| o.id.as_str());
                let says = match r {
                    Reply::Error(e) => e
                        .strip_prefix("WRONGSHARD ")
                        .and_then(|rest| rest.split_whitespace().nth(1))
                        .map(str::to_string),
                    _ => Some(s.id.clone()),
                };
                if says.as_deref() != owner {
                    return Err(format!(
                        "shard '{}' places {k} on {says:?}, this router's ring on {owner:?}",
                        s.id
                    ));
                }
            }
            Ok(())
        }
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .collect()
}

/// Checks every node's epoch. A newer ring with its map is followed (another router changed
/// membership or failed a shard over); a change this router follows is dropped once the nodes
/// stop recording it, and taken over if the router driving it lets its lease lapse. Then the
/// ring goes to nodes behind, and `TOPOLOGY DONE` to nodes still recording a finished change.
pub async fn sync_nodes(router: &Arc<Router>, pool: &Arc<PoolState>) {
    let timeout = router.config.connect_timeout;
    let topo = pool.topology.load_full();
    let nodes = nodes_of(&topo);
    let links = &pool.rebalance.links;
    links.retain(&nodes.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>());
    let states: Vec<NodeSeen> =
        futures::future::join_all(nodes.iter().map(|(addr, id)| async move {
            (
                addr.as_str(),
                id.as_str(),
                links
                    .node_state(addr, timeout, &router.config.node_link)
                    .await,
            )
        }))
        .await;
    follow_or_push(router, pool, &states).await;
    // The split fences travel with the same look at the nodes, once the ring is the nodes'.
    crate::split_change::seen(router, pool.index, &states).await;
}

/// What [`sync_nodes`] does with the nodes' states: follows a newer ring, drops or takes over a
/// change it follows, or pushes this router's ring to nodes behind.
async fn follow_or_push(router: &Arc<Router>, pool: &Arc<PoolState>, states: &[NodeSeen<'_>]) {
    let topo = pool.topology.load_full();
    let ok: Vec<&TopologyState> = states
        .iter()
        .filter_map(|(_, _, r)| r.as_ref().ok())
        .collect();
    let max = ok.iter().map(|s| s.epoch).max().unwrap_or(0);
    let at_max: Vec<&TopologyState> = ok.iter().copied().filter(|s| s.epoch == max).collect();
    let driving = pool.rebalance.in_progress();
    let following = lock(&pool.rebalance.state).following.is_some();
    if !driving && max > topo.ring.epoch() {
        if let Some(map) = newest_map(&at_max) {
            let rec = at_max
                .iter()
                .find_map(|s| s.record.as_deref())
                .and_then(|r| ChangeRecord::decode(r).ok());
            match follow(router, pool, max, &map, rec.as_ref()) {
                Ok(()) => return,
                Err(e) => tracing::warn!(epoch = max, error = %e, "cannot follow the nodes' ring"),
            }
        }
    } else if !driving && following && max == topo.ring.epoch() {
        match at_max.iter().find_map(|s| s.record.clone()) {
            None => change_over(router, pool),
            Some(raw) => {
                take_over(router, pool, &topo, &raw, max).await;
            }
        }
        return;
    }
    push_behind(router, pool, states).await;
}

/// A node as the sync saw it: address, shard id, its `TOPOLOGY GET`.
type NodeSeen<'a> = (&'a str, &'a str, Result<TopologyState, String>);

/// Pushes this router's ring to the nodes `states` show behind it; sends `TOPOLOGY DONE` to
/// those still recording a change it finished; notes nodes ahead.
async fn push_behind(router: &Arc<Router>, pool: &PoolState, states: &[NodeSeen<'_>]) {
    let topo = pool.topology.load_full();
    // With a conflict, a node behind gets nothing (the "0" epoch never exceeds its own).
    let conflict = lock(&pool.rebalance.state).conflict.is_some();
    let mine = topo.ring.epoch();
    let epoch = if conflict { 0 } else { mine };
    let ring = &topo.ring;
    let pushed = Pushed::of(&topo);
    let pushed = &pushed;
    // A node still recording a change this router finished (it missed `TOPOLOGY DONE`).
    let done_epoch = if conflict || pushed.record.is_some() {
        0
    } else {
        lock(&pool.rebalance.state).done_epoch
    };
    let sends = states.iter().filter_map(|(addr, id, st)| {
        let st = st.as_ref().ok()?;
        let (behind, done) = (st.epoch < epoch, st.record.is_some() && st.epoch <= done_epoch);
        (behind || done).then_some(async move {
            if behind {
                send_one(router, addr, &topology_set(ring, pushed, id)).await?;
                tracing::info!(node = %addr, shard = %id, from = st.epoch, to = epoch, "pushed the ring to a node behind");
            } else {
                send_one(router, addr, &TopologyCmd::Done { epoch: done_epoch }).await?;
            }
            Ok::<(), String>(())
        })
    });
    for r in futures::future::join_all(sends).await {
        if let Err(e) = r {
            tracing::debug!(error = %e, "epoch sync");
        }
    }
    let mut max = 0;
    let mut ahead = None;
    for (addr, _, st) in states {
        match st {
            Ok(st) => {
                let e = st.epoch;
                max = max.max(e);
                if e > mine && ahead.is_none() {
                    ahead = Some(format!(
                        "node {addr} is at epoch {e}, this router at {mine}: another router changed membership"
                    ));
                }
            }
            Err(e) => tracing::debug!(error = %e, "epoch sync"),
        }
    }
    let mut st = lock(&pool.rebalance.state);
    if ahead.is_some() && st.ahead != ahead {
        tracing::warn!(note = ?ahead, "nodes are ahead of this router");
    }
    st.nodes_epoch = max;
    st.ahead = ahead;
}
