//! Changing a split's percent live, and keeping every router on the nodes' splits (see
//! [`crate::split`] for what a split is).
//!
//! # `RING SPLIT <prefix> <percent>`, step by step ([`change`])
//! 1. Under the router's split lock and the change lock of every pool a split involves (no
//!    membership change of this router starts meanwhile), the change lease of each of those
//!    pools (no other router changes a split, or their rings, meanwhile: split changes are one at
//!    a time cluster-wide). Then the nodes' rings and splits are followed, so the change starts
//!    from the cluster's state, not this router's view of it.
//! 2. The new version (`max(router, nodes) + 1`) goes to every node of every pool a split
//!    involves (`TOPOLOGY FENCE`; a node takes only a higher version, or the same one again):
//!    the two pools' primaries must all take it, or the change is abandoned (the old percents
//!    again, at a later version, before the leases are given back). From then on the side a key
//!    left refuses it, so no router, however stale, writes it there.
//! 3. The router routes by the new percent, the keys between the two cuts marked moving, and
//!    waits for requests planned on the old percent to be answered; `+OK`.
//! 4. A key of the moving range goes through the migration path as for a membership change
//!    (`MIGRATE-KEYS` at its old side, then the command at its new one); the mover empties each
//!    arc with `MIGRATE-ARC ... PREFIX <prefix>`; then the version after drops the marks, and the
//!    leases are given back.
//!
//! Other routers read the nodes' split version with every epoch sync and adopt a newer record
//! (a move only once their rings are at least those it was cut on); a router whose request a
//! node fenced off with `split:<version>` adopts it at once and retries. A move whose router died
//! is taken over by the first router that gets the leases.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache_protocol::wire::{SplitFences, Topology as TopologyCmd, TopologyState};

use crate::pools::PoolState;
use crate::rebalance::lease::{Lease, Refused};
use crate::rebalance::mover::{move_stream, Pace, Stream};
use crate::rebalance::publish::{nodes_of, quiesce};
use crate::rebalance::sync::sync_nodes;
use crate::rebalance::MigrationMap;
use crate::split::{decode_record, moves, LiveSplit, Splits};
use crate::state::Router;

/// How long a request fenced off by a newer split waits for this router to adopt it.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// What the leases taken to publish the first version are for.
const FIRST_FENCES: &str = "the first split fences";

/// A node as read: address, shard id, its `TOPOLOGY GET`.
pub type Seen<'a> = (&'a str, &'a str, Result<TopologyState, String>);

/// `RING SPLIT <prefix> <percent>`: answers once the new percent is in effect (keys move in the
/// background). `caller`: the client asking (its own request is not waited for).
pub async fn change(
    router: &Arc<Router>,
    prefix: &[u8],
    percent: u8,
    caller: u64,
) -> Result<(), String> {
    let name = String::from_utf8_lossy(prefix).into_owned();
    let no_split = || format!("ERR no route with prefix '{name}' has a split");
    let _g = router.split_lock.lock().await;
    let view = router.view();
    let ri = view.splits.index_of(prefix).ok_or_else(no_split)?;
    let involved = involved_pools(router);
    let mut guards = Vec::with_capacity(involved.len());
    for p in &involved {
        guards.push(p.rebalance.change_lock.lock().await);
    }
    let busy_pool = |p: &PoolState| {
        format!(
            "ERR pool '{}' is changing membership: change the split once that is done",
            p.name
        )
    };
    if let Some(p) = involved.iter().find(|p| p.rebalance.in_progress()) {
        return Err(busy_pool(p));
    }
    let what = format!("split {name} {percent}%");
    // A router publishing the first fences holds the leases a moment: wait for it, briefly.
    let deadline = Instant::now() + CATCH_UP_WAIT;
    let leases = loop {
        match take_leases(router, &involved, &what).await {
            Err(e) if e.contains(FIRST_FENCES) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other?,
        }
    };
    // The cluster's rings and splits, not this router's view of them.
    for p in &involved {
        sync_nodes(router, p).await;
    }
    let nodes_version = sync_all_locked(router).await;
    let view = router.view();
    if let Some(f) = view.splits.foreign.first() {
        return Err(foreign_error(f));
    }
    if nodes_version > view.splits.version {
        // Their record moves arcs of rings this router has not followed yet.
        return Err(format!(
            "ERR the nodes' splits are at version {nodes_version}, this router's at {}: try again in a moment",
            view.splits.version
        ));
    }
    if let Some(p) = involved
        .iter()
        .find(|p| p.rebalance.in_progress() || !view.pools[p.index].migrating.is_empty())
    {
        return Err(busy_pool(p));
    }
    let cur = view.splits.by_route[ri].clone().ok_or_else(no_split)?;
    let moving_elsewhere = view.splits.by_route.iter().enumerate().find_map(|(i, s)| {
        let s = s.as_ref()?;
        (i != ri && s.moving.as_ref().is_some_and(|(_, m)| m.live() > 0)).then_some(&s.prefix)
    });
    if let Some(other) = moving_elsewhere {
        return Err(format!(
            "ERR the split of '{other}' is still moving keys: change another once it is done"
        ));
    }
    if let Some((from, map)) = cur.moving.as_ref().filter(|(_, m)| m.live() > 0) {
        if cur.percent == percent && !view.splits.driving.load(Ordering::SeqCst) {
            // Its router died mid-move: this one finishes it.
            start_mover(router, ri, map.clone(), leases);
            return Ok(());
        }
        return Err(format!(
            "ERR the split of '{name}' is still moving keys from {from}% to {}%",
            cur.percent
        ));
    }
    if cur.percent == percent {
        return Ok(());
    }
    let (home, pool) = (&view.pools[cur.home].ring, &view.pools[cur.pool].ring);
    let arcs = moves(home, pool, cur.percent, percent);
    let map = Arc::new(MigrationMap::new(arcs, Vec::new()).describing(&what, &[]));
    let version = view.splits.version.max(nodes_version) + 1;
    let mut next = (*view.splits).clone();
    next.version = version;
    next.by_route[ri] = Some(LiveSplit {
        percent,
        moving: Some((cur.percent, map.clone())),
        rings: (home.epoch(), pool.epoch()),
        ..cur.clone()
    });
    let failed = push(router, &next, &[cur.home, cur.pool]).await;
    if !failed.is_empty() {
        // Nodes that took it get the old percents back at a later version, while the leases
        // still keep every other router from taking the abandoned move over.
        let mut back = (*view.splits).clone();
        back.version = version + 1;
        push(router, &back, &[]).await;
        router.store_splits(back);
        return Err(format!(
            "ERR the split change was abandoned, a node did not take it: {}",
            failed.join("; ")
        ));
    }
    let generation = router.store_splits(next);
    tracing::info!(prefix = %name, from = cur.percent, to = percent, version, "split changed; keys moving");
    // Membership changes of these pools may start again: they refuse while the split moves.
    drop(guards);
    // Requests planned on the old percents are answered before the change is reported.
    quiesce(router, generation, &[caller]).await;
    start_mover(router, ri, map, leases);
    Ok(())
}

/// Why a router whose routes lack a split of the cluster's changes none.
fn foreign_error(f: &crate::split::RecordedSplit) -> String {
    format!(
        "ERR the cluster splits '{}' at {}%, and this router has no split route for that prefix: give it the route with its split first (RING ROUTE ADD ... SPLIT, or SIGHUP with it in the file)",
        String::from_utf8_lossy(&f.prefix),
        f.percent
    )
}

/// The pools some split involves, in index order (the order leases are taken in).
fn involved_pools(router: &Router) -> Vec<Arc<PoolState>> {
    let view = router.view();
    router
        .pools
        .iter()
        .filter(|p| view.splits.involves(p.index))
        .cloned()
        .collect()
}

/// Leases renewed from the moment they are taken until this is dropped (then given back).
struct Held {
    running: Arc<AtomicBool>,
    /// Set if a renewal found another router holding one: this one was cut off longer than a
    /// lease lasts, and whatever it guards must stop.
    lost: Arc<AtomicBool>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
    }
}

/// The change lease of every pool in `pools`, for `what`, renewed until the result is dropped.
async fn take_leases(
    router: &Arc<Router>,
    pools: &[Arc<PoolState>],
    what: &str,
) -> Result<Held, String> {
    let held = Held {
        running: Arc::new(AtomicBool::new(true)),
        lost: Arc::new(AtomicBool::new(false)),
    };
    for p in pools {
        match Lease::take(router, p, what).await {
            Ok(l) => {
                // Renewed at once: planning, pushing and the quiesce may outlast a lease.
                let running = held.running.clone();
                l.on_lost(held.lost.clone())
                    .keep_while(move || running.load(Ordering::SeqCst));
            }
            Err(Refused::Busy { what, .. }) => {
                return Err(format!(
                    "ERR another router's change is in progress: {what}"
                ))
            }
            Err(Refused::NoNode) => {
                return Err(format!("ERR no node of pool '{}' answered", p.name))
            }
        }
    }
    Ok(held)
}

/// Runs the mover of split `ri`'s change in the background, the leases kept while it runs.
fn start_mover(router: &Arc<Router>, ri: usize, map: Arc<MigrationMap>, held: Held) {
    let driving = router.view().splits.driving.clone();
    driving.store(true, Ordering::SeqCst);
    let router = router.clone();
    tokio::spawn(async move {
        drive(&router, ri, &map, &held.lost).await;
        driving.store(false, Ordering::SeqCst);
        drop(held);
    });
}

/// Empties every arc of `map` (one worker per source and target), then publishes the split
/// without its marks at the next version.
async fn drive(router: &Arc<Router>, ri: usize, map: &Arc<MigrationMap>, lost: &AtomicBool) {
    let Some(prefix) = router.view().splits.by_route[ri]
        .as_ref()
        .map(|s| bytes::Bytes::copy_from_slice(s.prefix.as_bytes()))
    else {
        return;
    };
    let stream = &SplitStream { router, lost };
    let pace = &Pace::new(router.config.ring.migration_rate);
    let workers = (0..map.groups().len())
        .map(|g| move_stream(router, map, g, Some(prefix.clone()), pace, stream));
    futures::future::join_all(workers).await;
    if map.live() > 0 || lost.load(Ordering::SeqCst) {
        // Stopped with the router, or another router took the move over: the nodes' record
        // keeps it for whoever drives it.
        return;
    }
    let _g = router.split_lock.lock().await;
    let nodes_version = sync_all_locked(router).await;
    let view = router.view();
    if nodes_version > view.splits.version {
        // Cannot happen while this router holds the leases; if it does, the nodes' newer record
        // is left alone and the move is finished by whoever follows it.
        tracing::warn!(
            nodes_version,
            mine = view.splits.version,
            "the nodes' splits moved on during this router's move; not publishing its end"
        );
        return;
    }
    // Only the move this mover drove: never marks of a later one.
    let same = view.splits.by_route[ri]
        .as_ref()
        .and_then(|s| s.moving.as_ref())
        .is_some_and(|(_, m)| Arc::ptr_eq(m, map));
    if !same {
        return;
    }
    let mut next = (*view.splits).clone();
    next.version = view.splits.version.max(nodes_version) + 1;
    if let Some(s) = next.by_route[ri].as_mut() {
        s.moving = None;
    }
    let failed = push(router, &next, &[]).await;
    if !failed.is_empty() {
        tracing::warn!(failed = %failed.join("; "), "some nodes missed the split's end; the epoch sync will retry");
    }
    let version = next.version;
    router.store_splits(next);
    tracing::info!(version, "split change done: every moving key moved");
}

/// A split's stream: stopped when this router lost a lease (another took the move over),
/// waiting out a shard gone from the view, counted in `ringcache_split_keys_moved_total`.
struct SplitStream<'a> {
    router: &'a Router,
    lost: &'a AtomicBool,
}

impl Stream for SplitStream<'_> {
    fn stop(&self) -> Option<bool> {
        self.lost.load(Ordering::SeqCst).then_some(false)
    }

    fn primaries(&self, from: &str, to: &str) -> Option<(String, String)> {
        let view = self.router.view();
        Some((
            view.shard_by_id(from)?.primary.clone(),
            view.shard_by_id(to)?.primary.clone(),
        ))
    }

    fn gone(&self, from: &str, to: &str) -> bool {
        tracing::warn!(from = %from, to = %to, "a shard of the split's move is gone; retrying");
        false
    }

    fn moved(&self, _group: usize, moved: u64, _bytes: u64, _done: bool) {
        self.router
            .split_keys_moved
            .fetch_add(moved, Ordering::Relaxed);
    }

    fn failed(&self, from: &str, to: &str, error: &str) {
        tracing::warn!(from = %from, to = %to, error = %error, "split move batch failed; retrying");
    }
}

/// Pushes `splits` to every node (primaries and replicas) of every pool a split involves,
/// each node its own pool's fences; the failures of primaries of `required` pools.
async fn push(router: &Router, splits: &Splits, required: &[usize]) -> Vec<String> {
    let record = splits.record();
    let view = router.view();
    let mut sends = Vec::new();
    for (p, topo) in view.pools.iter().enumerate() {
        if !splits.involves(p) {
            continue;
        }
        let cmd = TopologyCmd::Fence(SplitFences {
            version: splits.version,
            record: record.clone(),
            fences: splits.fences_for(p),
        });
        let primaries: Vec<String> = topo.serving_shards().map(|s| s.primary.clone()).collect();
        for (addr, _) in nodes_of(topo) {
            let must = required.contains(&p) && primaries.contains(&addr);
            let cmd = cmd.clone();
            sends.push(async move {
                let r = crate::rebalance::node_conn::send_one(router, &addr, &cmd).await;
                (must, r)
            });
        }
    }
    futures::future::join_all(sends)
        .await
        .into_iter()
        .filter_map(|(must, r)| match r {
            Err(e) if must => Some(e),
            _ => None,
        })
        .collect()
}

/// [`sync_all_locked`] unless this router is changing a split (it publishes its own); the
/// highest version a node holds (0 if not read).
pub async fn sync_all(router: &Arc<Router>) -> u64 {
    match router.split_lock.try_lock() {
        Ok(_g) => sync_all_locked(router).await,
        Err(_) => 0,
    }
}

/// Reads every node of every pool a split involves, adopts a newer version and pushes this
/// router's to nodes behind (the split lock held); the highest version a node holds.
async fn sync_all_locked(router: &Arc<Router>) -> u64 {
    let view = router.view();
    let mut max = 0;
    for (p, topo) in view.pools.iter().enumerate() {
        if !view.splits.involves(p) {
            continue;
        }
        let Some(pool) = router.pools.get(p) else {
            continue;
        };
        let timeout = router.config.connect_timeout;
        let nodes = nodes_of(topo);
        let states: Vec<Seen> =
            futures::future::join_all(nodes.iter().map(|(addr, id)| async move {
                let st = pool
                    .rebalance
                    .links
                    .node_state(addr, timeout, &router.config.node_link)
                    .await;
                (addr.as_str(), id.as_str(), st)
            }))
            .await;
        max = max.max(seen_locked(router, p, &states).await);
    }
    max
}

/// What a look at pool `p`'s nodes (`states`) tells of the splits (see [`seen_locked`]);
/// skipped while this router changes a split (it publishes its own) and before every pool
/// adopted the nodes' ring (a moving split's arcs would be cut wrong).
pub async fn seen(router: &Arc<Router>, p: usize, states: &[Seen<'_>]) {
    if !router.view().splits.involves(p) || !router.pools.iter().all(|p| p.rebalance.first_synced())
    {
        return;
    }
    if let Ok(_g) = router.split_lock.try_lock() {
        seen_locked(router, p, states).await;
    }
}

/// With the split lock: a newer version at the nodes is adopted; nodes behind get this
/// router's; a first version is published when no node has one; a move no router drives is
/// taken over. Returns the highest version seen.
async fn seen_locked(router: &Arc<Router>, p: usize, states: &[Seen<'_>]) -> u64 {
    let ok = || states.iter().filter_map(|(_, _, s)| s.as_ref().ok());
    let max = ok().map(|s| s.split_version).max().unwrap_or(0);
    let view = router.view();
    let mine = view.splits.version;
    if max > mine {
        if let Some(rec) = ok()
            .filter(|s| s.split_version == max)
            .find_map(|s| s.split_record.clone())
        {
            adopt(router, max, &rec);
        }
        return max;
    }
    let splits = &view.splits;
    if !splits.foreign.is_empty() {
        // Its fences would leave out a split it has no route for.
        return max;
    }
    if mine == 0 {
        // A new cluster: the configured percents become the cluster's version 1, under the
        // leases (two routers never publish two different first versions).
        if ok().next().is_some() && !splits.driving.swap(true, Ordering::SeqCst) {
            tokio::spawn(publish_first(router.clone()));
        }
        return max;
    }
    let cmd = TopologyCmd::Fence(SplitFences {
        version: splits.version,
        record: splits.record(),
        fences: splits.fences_for(p),
    });
    let behind = states
        .iter()
        .filter(|(_, _, s)| s.as_ref().is_ok_and(|s| s.split_version < splits.version));
    let sends =
        behind.map(|(addr, _, _)| crate::rebalance::node_conn::send_one(router, addr, &cmd));
    for r in futures::future::join_all(sends).await {
        if let Err(e) = r {
            tracing::debug!(error = %e, "split sync");
        }
    }
    // A move whose router stopped renewing its leases: this one takes it over.
    let moving = splits.by_route.iter().enumerate().find_map(|(i, s)| {
        let (_, m) = s.as_ref()?.moving.as_ref()?;
        (m.live() > 0).then_some(i)
    });
    if let Some(ri) = moving {
        if !splits.driving.swap(true, Ordering::SeqCst) {
            let r = router.clone();
            tokio::spawn(take_over(r, ri));
        }
    }
    max
}

/// Publishes the configured percents as version 1 to every node of the involved pools, under
/// the leases, unless a node has a version by then (then it is adopted).
fn publish_first(router: Arc<Router>) -> futures::future::BoxFuture<'static, ()> {
    // Boxed, as `take_over`.
    Box::pin(async move {
        let router = &router;
        let driving = router.view().splits.driving.clone();
        let _g = router.split_lock.lock().await;
        let involved = involved_pools(router);
        if let Ok(_held) = take_leases(router, &involved, FIRST_FENCES).await {
            let nodes_version = sync_all_locked(router).await;
            let view = router.view();
            if view.splits.version == 0 && nodes_version == 0 {
                let mut first = (*view.splits).clone();
                first.version = 1;
                let all: Vec<usize> = involved.iter().map(|p| p.index).collect();
                // A node that missed it gets it from the epoch sync, or the version adopted.
                if push(router, &first, &all).await.is_empty() {
                    router.store_splits(first);
                    tracing::info!("split fences published at version 1");
                }
            }
        }
        driving.store(false, Ordering::SeqCst);
    })
}

/// Drives the move of split `ri` if the leases are free (its router died); gives up if the
/// nodes no longer record it once they are.
fn take_over(router: Arc<Router>, ri: usize) -> futures::future::BoxFuture<'static, ()> {
    // Boxed: it syncs the splits, whose sync may start it (a future cannot contain itself).
    Box::pin(async move {
        let router = &router;
        let driving = router.view().splits.driving.clone();
        let _g = router.split_lock.lock().await;
        let involved = involved_pools(router);
        // A membership change of this router's own holds a pool's lease (a placeholder would
        // be all a split got): later.
        if involved.iter().any(|p| p.rebalance.in_progress()) {
            driving.store(false, Ordering::SeqCst);
            return;
        }
        let Ok(leases) = take_leases(router, &involved, "a split's move taken over").await else {
            driving.store(false, Ordering::SeqCst);
            return;
        };
        // The nodes' rings and splits as they are now that no other router changes them.
        for p in &involved {
            if let Ok(_guard) = p.rebalance.change_lock.try_lock() {
                sync_nodes(router, p).await;
            }
        }
        sync_all_locked(router).await;
        let view = router.view();
        let moving = view.splits.by_route[ri]
            .as_ref()
            .and_then(|s| Some((s.prefix.clone(), s.moving.clone()?)));
        let Some((prefix, (_, map))) = moving.filter(|(_, (_, m))| m.live() > 0) else {
            driving.store(false, Ordering::SeqCst);
            return;
        };
        tracing::info!(prefix = %prefix, "taking over a split's move");
        start_mover(router, ri, map, leases);
    })
}

/// Adopts the nodes' splits at `version` from their `record` (this router's percents for
/// prefixes the record does not list); not yet while a moving split's rings are newer than this
/// router's.
pub(crate) fn adopt(router: &Router, version: u64, record: &[u8]) {
    let recorded = decode_record(record);
    let view = router.view();
    let mut next = (*view.splits).clone();
    next.version = version;
    next.adopted = Some((version, bytes::Bytes::copy_from_slice(record)));
    next.foreign = recorded
        .iter()
        .filter(|r| r.percent > 0 || r.from.is_some())
        .filter(|r| next.index_of(&r.prefix).is_none())
        .cloned()
        .collect();
    for s in next.by_route.iter_mut().flatten() {
        let Some(r) = recorded.iter().find(|r| r.prefix == s.prefix.as_bytes()) else {
            continue;
        };
        let (home, pool) = (&view.pools[s.home].ring, &view.pools[s.pool].ring);
        let moving = match r.from {
            Some(from) if from != r.percent => {
                if home.epoch() < r.rings.0 || pool.epoch() < r.rings.1 {
                    tracing::debug!(version, "the nodes' split moves arcs of newer rings; adopted once this router follows them");
                    return;
                }
                match &s.moving {
                    // The same move: keep its arcs' progress.
                    Some((f, m)) if *f == from && s.percent == r.percent => Some((from, m.clone())),
                    _ => {
                        let arcs = moves(home, pool, from, r.percent);
                        Some((from, Arc::new(MigrationMap::new(arcs, Vec::new()))))
                    }
                }
            }
            _ => None,
        };
        s.percent = r.percent;
        s.moving = moving;
        s.rings = r.rings;
    }
    router.store_splits(next);
    tracing::info!(version, "following the nodes' splits");
}

/// Set in a MULTI's `moved` mark when a split fence refused a queued command (the version in the
/// low bits).
pub const SPLIT_FENCED: u64 = 1 << 63;

/// The version of a `-WRONGSHARD <epoch> split:<version>` refusal's owner, if a split fenced it.
pub fn fenced_version(owner: &str) -> Option<u64> {
    owner.strip_prefix("split:")?.parse().ok()
}

/// After a node refused a request with `split:<version>`: brings this router (or the node) to
/// one version of the splits, or says a retry cannot succeed.
pub async fn catch_up(router: &Arc<Router>, version: u64) -> bool {
    let deadline = Instant::now() + CATCH_UP_WAIT;
    loop {
        let mine = router.view().splits.version;
        if mine > version {
            // The node is behind: give it ours.
            sync_all(router).await;
            return true;
        }
        if mine == version {
            // Caught up since the request was planned (the epoch sync adopted it meanwhile).
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sync_all(router).await;
        if router.view().splits.version >= version {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
