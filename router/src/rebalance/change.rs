//! A membership change from the admin's side: `RING JOIN`/`LEAVE` checks the joining node,
//! plans the change at an epoch above every node's, publishes it and hands the arcs to the
//! mover; `RING CANCEL` stops the mover and waits for the rollback to be in effect.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::clients::lock;
use crate::pools::PoolState;
use crate::rebalance::lease::{ask_cancel, Lease};
use crate::rebalance::mover::{drive, estimate};
use crate::rebalance::node_conn::{as_int, connect, node_state};
use crate::rebalance::outcome::{ChangeError, ChangeOutcome};
use crate::rebalance::plan::{plan_change, Change};
use crate::rebalance::publish::{build_topology, publish, revert};
use crate::rebalance::sync::{nodes_enforce, sync_nodes};
use crate::shard::Shard;
use crate::state::Router;

/// Starts `change` and answers once its epoch is in effect (keys move in the background).
/// `caller` is the client that asked (its own request is outstanding while the change quiesces).
pub async fn begin(
    router: Arc<Router>,
    pool: Arc<PoolState>,
    change: Change,
    caller: u64,
) -> Result<ChangeOutcome, ChangeError> {
    let rb = &pool.rebalance;
    let guard = rb.change_lock.lock().await;
    if rb.in_progress() {
        return Err(ChangeError::InProgress);
    }
    // One router at a time changes the ring: of two changes sent to two routers, one gets it.
    let lease = Lease::take(&router, &pool, &change.describe()).await?;
    // Another router may have changed the ring just before: plan on the nodes' ring, not on
    // this router's view of it.
    sync_nodes(&router, &pool).await;
    if rb.in_progress() {
        return Err(ChangeError::InProgress);
    }
    if let Some(what) = lock(&rb.state).following.clone() {
        return Err(ChangeError::Elsewhere(what));
    }
    // A split's moving arcs were cut by this pool's ring as it is.
    let splits = router.view().splits.clone();
    if let Some(s) = splits.by_route.iter().flatten().find(|s| {
        (s.home == pool.index || s.pool == pool.index)
            && s.moving.as_ref().is_some_and(|(_, m)| m.live() > 0)
    }) {
        return Err(ChangeError::SplitMoving(s.prefix.clone()));
    }
    let cur = pool.topology.load_full();
    let timeout = router.config.connect_timeout;

    // The joining node must answer, must not serve another shard, and must be empty unless it
    // already took part in this shard (a change re-issued to resume).
    let mut new_shard = None;
    if let Change::Join {
        id,
        primary,
        replicas,
        weight,
    } = &change
    {
        // Shard ids and addresses are unique across pools.
        if let Some(s) = router
            .view()
            .all_shards()
            .find(|s| s.primary == *primary || s.replicas.contains(primary) || s.id == *id)
        {
            return Err(ChangeError::Taken {
                shard: s.id.clone(),
                id: id.clone(),
                primary: primary.clone(),
            });
        }
        let mut conn = match connect(&router, primary).await {
            Ok(c) => c,
            Err(e) => return Err(ChangeError::Unreachable(e)),
        };
        let (node_epoch, node_id) = match node_state(&mut conn, timeout).await {
            Ok(st) => (st.epoch, st.shard),
            Err(e) => return Err(ChangeError::NoTopology(e)),
        };
        if node_epoch > 0 && !node_id.is_empty() && node_id != *id {
            return Err(ChangeError::ServesAnother {
                primary: primary.clone(),
                serves: node_id,
                epoch: node_epoch,
            });
        }
        let keys = conn
            .call(&["DBSIZE"], timeout)
            .await
            .ok()
            .as_ref()
            .and_then(as_int)
            .unwrap_or(0);
        if keys > 0 && !(node_epoch > 0 && node_id == *id) {
            return Err(ChangeError::NotEmpty {
                primary: primary.clone(),
                keys,
            });
        }
        new_shard = Some(Arc::new(
            router.start_shard(&pool.name, id, primary, replicas, *weight),
        ));
    }

    let mut members: Vec<Arc<Shard>> = cur.serving_shards().cloned().collect();
    members.extend(new_shard);
    // Never publish below what the nodes hold.
    let me: &Router = &router;
    let epochs = futures::future::join_all(members.iter().map(|s| async move {
        let mut c = connect(me, &s.primary).await?;
        node_state(&mut c, timeout).await.map(|st| st.epoch)
    }))
    .await;
    let nodes_max = epochs
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .max()
        .unwrap_or(0);
    let plan = plan_change(&cur.ring, &change, nodes_max + 1)?;
    let converging = nodes_max > cur.ring.epoch() || lock(&rb.state).conflict.is_some();
    if converging {
        // Another router (or this one before a restart) published a ring this one did not. Go
        // on only if the nodes already enforce the ring this change leads to: then it converges
        // (moving whatever is left, a no-op for keys already moved) instead of replacing theirs.
        let at_max: Vec<Arc<Shard>> = members
            .iter()
            .zip(&epochs)
            .filter(|(s, e)| {
                plan.next.shard_index(&s.id).is_some() && matches!(e, Ok(n) if *n == nodes_max)
            })
            .map(|(s, _)| s.clone())
            .collect();
        if let Err(e) = nodes_enforce(&router, &plan.next, &at_max).await {
            return Err(ChangeError::Diverged {
                epoch: nodes_max,
                change: change.describe(),
                reason: e,
            });
        }
        tracing::info!(epoch = nodes_max, change = %change.describe(), "the nodes already enforce this change's ring: converging to it");
    }
    let old_specs = cur.ring.shards().to_vec();
    let what = change.describe();
    let next = build_topology(&plan, &members, &what);
    let map = next.migrating.map().cloned();
    tracing::info!(change = %what, epoch = plan.next.epoch(), arcs = plan.moves.len(), "membership change starting");
    // Cleared before the change becomes visible, so a RING CANCEL from then on is not lost.
    rb.cancel.store(false, Ordering::SeqCst);
    rb.start_progress(&what, &plan, "publishing");
    let watched = pool.clone();
    lease.keep_while(move || watched.rebalance.in_progress());

    if let Err(e) = publish(&router, &pool, next, &plan.gainers, &[caller]).await {
        tracing::error!(change = %what, error = %e, "membership change abandoned");
        // Bring back the nodes that took the new ring, unless that ring is the cluster's
        // already (converging): then this router's old one must not replace it.
        if !converging {
            revert(&router, &pool, &cur, plan.next.epoch()).await;
        }
        rb.set_error(&e.to_string());
        rb.finish("failed");
        return Err(ChangeError::Abandoned {
            change: what,
            reason: e,
        });
    }
    rb.update(|p| {
        if p.state == "publishing" {
            p.state = "moving";
        }
    });
    lock(&rb.state).conflict = None;
    drop(guard);
    match map {
        Some(map) => {
            let r = router.clone();
            let p = pool.clone();
            tokio::spawn(async move {
                estimate(&r, &p, &map, &cur.ring).await;
                drive(r, p, map, old_specs, what).await;
            });
            Ok(ChangeOutcome::Moving)
        }
        // Nothing to move (no arc changed owner): the change is complete.
        None => {
            rb.finish("done");
            Ok(ChangeOutcome::Done)
        }
    }
}

/// `RING CANCEL`: stops the mover and rolls back; answers once the rollback is in effect.
pub async fn cancel(
    router: Arc<Router>,
    pool: Arc<PoolState>,
    caller: u64,
) -> Result<ChangeOutcome, ChangeError> {
    let rb = &pool.rebalance;
    let (tx, rx) = oneshot::channel();
    let elsewhere = {
        let st = lock(&rb.state);
        st.current.is_none().then(|| st.following.clone()).flatten()
    };
    if let Some(what) = elsewhere {
        return cancel_elsewhere(&router, &pool, &what).await;
    }
    {
        let mut st = lock(&rb.state);
        match st.current.as_mut() {
            None => return Err(ChangeError::NothingToCancel),
            Some(p) if p.what.starts_with("rollback") => {
                return Err(ChangeError::AlreadyRollingBack)
            }
            Some(p) => p.state = "cancelling",
        }
        st.cancel_waiters.push((caller, tx));
    }
    rb.cancel.store(true, Ordering::SeqCst);
    rx.await.unwrap_or(Err(ChangeError::Ended))
}

/// How long `RING CANCEL` on a following router waits for the rollback to be in effect.
const REMOTE_CANCEL_WAIT: Duration = Duration::from_secs(10);

/// `RING CANCEL` on a router following `what`, which another router drives: asks that router
/// through the change lease, then answers once this router follows the rollback.
async fn cancel_elsewhere(
    router: &Arc<Router>,
    pool: &PoolState,
    what: &str,
) -> Result<ChangeOutcome, ChangeError> {
    if what.starts_with("rollback") {
        return Err(ChangeError::AlreadyRollingBack);
    }
    if ask_cancel(router, pool).await.is_none() {
        return Err(ChangeError::NothingToCancel);
    }
    let epoch = pool.topology.load().ring.epoch();
    let deadline = Instant::now() + REMOTE_CANCEL_WAIT;
    while Instant::now() < deadline {
        pool.rebalance.sync_soon();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if pool.topology.load().ring.epoch() == epoch {
            continue;
        }
        let following = lock(&pool.rebalance.state).following.clone();
        match following {
            Some(w) if w.starts_with("rollback") => return Ok(ChangeOutcome::RollingBack),
            Some(_) => continue,
            // The change ended before it could be cancelled, or its rollback had nothing to move.
            None => return Ok(ChangeOutcome::Done),
        }
    }
    Err(ChangeError::EndedAs("not rolled back in time"))
}
