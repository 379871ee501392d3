//! Keeping the nodes' epochs in step with this router's: at start-up it adopts the nodes'
//! highest epoch (or resumes the change they record), then every few seconds (or when woken) it
//! pushes its ring to nodes behind and notes nodes ahead; and it checks which ring the nodes
//! enforce before taking over their epoch.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use ringcache_protocol::ring::{Epoch, Ring};
use ringcache_protocol::Reply;
use tokio::sync::Notify;

use crate::clients::lock;
use crate::rebalance::mover::{drive, estimate, move_back};
use crate::rebalance::node_conn::{connect, node_state};
use crate::rebalance::plan::ChangePlan;
use crate::rebalance::publish::{
    build_topology, done_on_nodes, nodes_of, push_all, topology_set, warm_request_path,
};
use crate::record::ChangeRecord;
use crate::shard::Shard;
use crate::state::Router;
use crate::topology::Topology;
use ringcache_protocol::wire::Topology as TopologyCmd;

/// How often every node's epoch is checked (and the ring re-pushed to nodes that lag, e.g. a
/// node that was down or restarted empty).
const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// Starts the epoch sync task: adopts the nodes' epoch at start-up, then every few seconds (or
/// when woken) pushes the ring to nodes behind it.
pub fn start(router: &Arc<Router>) {
    let weak = Arc::downgrade(router);
    let wake = router.rebalance.wake.clone();
    let stop = router.stop_signal();
    tokio::spawn(sync_task(weak, wake, stop));
}

async fn sync_task(
    router: Weak<Router>,
    wake: Arc<Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut adopted = false;
    loop {
        {
            let Some(router) = router.upgrade() else {
                return;
            };
            if !adopted {
                adopted = adopt_nodes_epoch(&router).await;
                let rb = &router.rebalance;
                if !rb.first_sync.swap(true, Ordering::SeqCst) {
                    rb.first_sync_done.notify_waiters();
                }
            }
            // A change in progress pushes its own ring; checking meanwhile would only see the
            // nodes it already reached as "ahead".
            if adopted {
                if let Ok(_guard) = router.rebalance.change_lock.try_lock() {
                    sync_nodes(&router).await;
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

/// At start-up: the router never pushes an epoch lower than the nodes have, so it adopts their
/// highest (same membership, that epoch number), or, if the nodes at that epoch record a change
/// still moving keys, resumes that change. False if no primary answered yet.
async fn adopt_nodes_epoch(router: &Arc<Router>) -> bool {
    let _guard = router.rebalance.change_lock.lock().await;
    let topo = router.topology.load_full();
    let timeout = router.config.connect_timeout;
    let states = futures::future::join_all(topo.shards.iter().map(|s| async move {
        let mut c = connect(&s.primary, timeout).await?;
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
    let record = states
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .find(|s| s.epoch == max && s.record.is_some())
        .and_then(|s| s.record.clone());
    if let Some(raw) = record {
        match resume(router, &topo, &raw, max).await {
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
        if let Err(e) = nodes_enforce(&topo.ring, &current, timeout).await {
            let note = format!(
                "the nodes enforce another membership at epoch {max} than this router's config ({e}); nothing is pushed until RING JOIN/LEAVE (or SIGHUP) brings this router to theirs"
            );
            tracing::error!("{note}");
            lock(&router.rebalance.state).conflict = Some(note);
        }
        match Ring::new(max, topo.ring.vnodes(), topo.ring.shards().to_vec()) {
            Ok(ring) => {
                tracing::info!(epoch = max, "adopting the nodes' ring epoch");
                router.topology.store(Arc::new(Topology::from_parts(
                    ring,
                    topo.shards.clone(),
                    topo.migrating.clone(),
                )));
            }
            Err(e) => tracing::error!(error = %e, "cannot adopt the nodes' epoch"),
        }
    }
    true
}

/// Resumes the change the nodes record at `epoch` (the previous router stopped mid-move): its
/// ring, with the arcs between its two memberships moving (those already emptied are found
/// empty in one batch each). Shards come from this router's config where it has them, else
/// from the record's addresses. The ring goes to every node before any request is served.
async fn resume(
    router: &Arc<Router>,
    config: &Topology,
    raw: &[u8],
    epoch: Epoch,
) -> Result<(), String> {
    let rec = ChangeRecord::decode(raw)?;
    let (from, to) = rec.rings(epoch)?;
    let mut pool: Vec<Arc<Shard>> = Vec::new();
    for spec in to.shards().iter().chain(from.shards()) {
        if pool.iter().any(|s| s.id == spec.id) {
            continue;
        }
        let shard = match config.shard_by_id(&spec.id) {
            Some(s) => s.clone(),
            None => {
                let place = rec
                    .place(&spec.id)
                    .ok_or_else(|| format!("no address for shard '{}'", spec.id))?;
                Arc::new(router.start_shard(&spec.id, &place.primary, &place.replicas, spec.weight))
            }
        };
        pool.push(shard);
    }
    let plan = ChangePlan {
        from: from.shards().to_vec(),
        moves: from.diff(&to),
        next: to,
        gainers: Vec::new(),
    };
    let next = build_topology(&plan, &pool, &rec.what);
    let record = ChangeRecord::of(&next).map(|r| r.encode());
    let targets = nodes_of(&next);
    let map = next.migrating.map().cloned();
    let timeout = router.config.connect_timeout;
    let rb = &router.rebalance;
    warm_request_path(&next);
    router.topology.store(Arc::new(next));
    lock(&rb.state).nodes_epoch = epoch;
    // Equal epochs are accepted: nodes behind (the previous router's push did not reach them)
    // catch up, the others get the record with this router's addresses.
    let failed = push_all(&targets, &plan.next, record.as_ref(), timeout).await;
    if !failed.is_empty() {
        tracing::warn!(epoch, failed = %failed.join("; "), "resuming: some nodes missed the ring; the epoch sync will retry");
    }
    let Some(map) = map else {
        // Nothing moves between the two memberships: the change is over.
        done_on_nodes(router, &targets, epoch).await;
        return Ok(());
    };
    let rollback = rec.what.starts_with("rollback");
    tracing::info!(change = %rec.what, epoch, arcs = plan.moves.len(), "resuming the membership change the nodes record");
    rb.cancel.store(false, Ordering::SeqCst);
    rb.start_progress(
        &rec.what,
        &plan,
        if rollback { "rolling-back" } else { "moving" },
    );
    let r = router.clone();
    tokio::spawn(async move {
        estimate(&r, &map, &from).await;
        if rollback {
            move_back(&r, &map, &rec.what).await;
        } else {
            drive(r, map, from.shards().to_vec(), rec.what).await;
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
    ring: &Ring,
    shards: &[Arc<Shard>],
    timeout: Duration,
) -> Result<(), String> {
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
            let mut c = connect(&s.primary, timeout).await?;
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

/// Checks every node's epoch; pushes the ring to those behind; notes nodes ahead (another router
/// changed membership).
pub(super) async fn sync_nodes(router: &Arc<Router>) {
    let topo = router.topology.load_full();
    // With a conflict, a node behind gets nothing (the "0" epoch never exceeds its own).
    let conflict = lock(&router.rebalance.state).conflict.is_some();
    let mine = topo.ring.epoch();
    let epoch = if conflict { 0 } else { mine };
    let timeout = router.config.connect_timeout;
    let nodes = nodes_of(&topo);
    let ring = &topo.ring;
    let record = ChangeRecord::of(&topo).map(|r| r.encode());
    let record = record.as_ref();
    // A node still recording a change this router finished (it missed `TOPOLOGY DONE`).
    let done_epoch = if conflict || record.is_some() {
        0
    } else {
        lock(&router.rebalance.state).done_epoch
    };
    let results = futures::future::join_all(nodes.iter().map(|(addr, id)| async move {
        let mut c = connect(addr, timeout).await?;
        let st = node_state(&mut c, timeout).await?;
        let e = st.epoch;
        if e < epoch {
            match c
                .call_wire(&topology_set(ring, record, id), timeout)
                .await
                .map_err(|e| e.to_string())?
            {
                Reply::Error(err) => return Err(format!("{addr}: {err}")),
                _ => {
                    tracing::info!(node = %addr, shard = %id, from = e, to = epoch, "pushed the ring to a node behind");
                    return Ok((addr.as_str(), epoch));
                }
            }
        }
        if st.record.is_some() && e <= done_epoch {
            let done = TopologyCmd::Done { epoch: done_epoch };
            let _ = c.call_wire(&done, timeout).await.map_err(|e| e.to_string())?;
        }
        Ok((addr.as_str(), e))
    }))
    .await;
    let mut max = 0;
    let mut ahead = None;
    for r in &results {
        match r {
            Ok((addr, e)) => {
                max = max.max(*e);
                if *e > mine && ahead.is_none() {
                    ahead = Some(format!(
                        "node {addr} is at epoch {e}, this router at {mine}: another router changed membership"
                    ));
                }
            }
            Err(e) => tracing::debug!(error = %e, "epoch sync"),
        }
    }
    let mut st = lock(&router.rebalance.state);
    if ahead.is_some() && st.ahead != ahead {
        tracing::warn!(note = ?ahead, "nodes are ahead of this router");
    }
    st.nodes_epoch = max;
    st.ahead = ahead;
}
