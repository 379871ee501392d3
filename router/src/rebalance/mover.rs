//! The background mover: one worker per `(from, to)` stream calls `MIGRATE-ARC` on the source,
//! batch after batch, until each arc is empty, at `[ring] migration_rate`; then the change is
//! completed (marks dropped, `TOPOLOGY DONE`), or, after `RING CANCEL`, rolled back and the
//! arcs moved home the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache_protocol::ring::{Ring, ShardSpec};
use ringcache_protocol::Reply;

use crate::clients::lock;
use crate::pools::PoolState;
use crate::rebalance::migrating::{Migrating, MigrationMap};
use crate::rebalance::node_conn::{as_int, connect};
use crate::rebalance::outcome::ChangeOutcome;
use crate::rebalance::plan::plan_rollback;
use crate::rebalance::publish::{build_topology, done_on_nodes, nodes_of, publish};
use crate::shard::Shard;
use crate::state::Router;
use crate::topology::Topology;
use ringcache_client::Client;
use ringcache_protocol::wire::{ArcBatch, MigrateArc};

/// One `MIGRATE-ARC` batch may take a while on a loaded node; the node bounds its own I/O at 5 s.
const MIGRATE_ARC_TIMEOUT: Duration = Duration::from_secs(20);
const MOVER_MIN_BACKOFF: Duration = Duration::from_millis(100);
const MOVER_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Reads each source's key count once so `RING STATUS` can estimate what is left.
pub(super) async fn estimate(
    router: &Arc<Router>,
    pool: &PoolState,
    map: &MigrationMap,
    old: &Ring,
) {
    let topo = pool.topology.load_full();
    let timeout = router.config.connect_timeout;
    let shares: HashMap<String, f64> = old.shares().into_iter().collect();
    let mut counts: HashMap<String, Option<u64>> = HashMap::new();
    for (from, _, _) in map.groups() {
        if counts.contains_key(from) {
            continue;
        }
        let n = match topo.shard_by_id(from) {
            Some(s) => match connect(router, &s.primary).await {
                Ok(mut c) => c
                    .call(&["DBSIZE"], timeout)
                    .await
                    .ok()
                    .as_ref()
                    .and_then(as_int)
                    .and_then(|n| u64::try_from(n).ok()),
                Err(_) => None,
            },
            None => None,
        };
        counts.insert(from.clone(), n);
    }
    let circle = (1u128 << 64) as f64;
    let estimates: Vec<Option<u64>> = map
        .groups()
        .iter()
        .map(|(from, _, arcs)| {
            let width: u128 = arcs.iter().map(|&i| map.arcs()[i].arc.width()).sum();
            let share = shares.get(from).copied().unwrap_or(0.0);
            let n = counts.get(from).copied().flatten()?;
            (share > 0.0).then(|| ((n as f64) * (width as f64 / circle) / share).round() as u64)
        })
        .collect();
    pool.rebalance.update(|p| {
        for (m, e) in p.moves.iter_mut().zip(estimates) {
            m.estimate = e;
        }
    });
}

/// Runs the mover; then ends the change, or rolls it back if it was cancelled.
pub(super) async fn drive(
    router: Arc<Router>,
    pool: Arc<PoolState>,
    map: Arc<MigrationMap>,
    old_specs: Vec<ShardSpec>,
    what: String,
) {
    let cancelled = move_all(&router, &pool, &map, true).await;
    if *router.stop_signal().borrow() {
        return;
    }
    if cancelled {
        rollback(router, pool, old_specs, what).await;
    } else {
        complete(&router, &pool, &map, &what).await;
    }
}

/// Moves a rollback's arcs (not cancellable), then completes it.
pub(super) async fn move_back(
    router: &Arc<Router>,
    pool: &PoolState,
    map: &Arc<MigrationMap>,
    what: &str,
) {
    move_all(router, pool, map, false).await;
    complete(router, pool, map, what).await;
}

/// Drops the migration marks (and a leaving shard's pools) once every arc is done.
async fn complete(router: &Arc<Router>, pool: &PoolState, map: &Arc<MigrationMap>, what: &str) {
    // The mover stopped because this router is shutting down, arcs left: the nodes must keep
    // the change's record (no `TOPOLOGY DONE`) so the next router resumes it.
    if *router.stop_signal().borrow() {
        return;
    }
    let rb = &pool.rebalance;
    let _guard = rb.change_lock.lock().await;
    let cur = pool.topology.load_full();
    if cur.migrating.map().is_some_and(|m| Arc::ptr_eq(m, map)) {
        router.store_topology(
            pool,
            Arc::new(Topology::from_parts(
                cur.ring.clone(),
                cur.shards.clone(),
                Migrating::default(),
            )),
        );
        // Every node, the leaving shard's too: none keeps a record of a finished change.
        done_on_nodes(router, pool, &nodes_of(&cur), cur.ring.epoch()).await;
    }
    let summary = {
        let st = lock(&rb.state);
        st.current.as_ref().map(|p| {
            let (_, _, keys, bytes, _) = p.totals();
            (keys, bytes, p.started.elapsed())
        })
    };
    if let Some((keys, bytes, took)) = summary {
        tracing::info!(change = %what, keys, bytes, secs = took.as_secs_f64(), "membership change done");
    }
    let state = if what.starts_with("rollback") {
        "cancelled"
    } else {
        "done"
    };
    rb.finish(state);
}

/// Cancels: publishes the old membership with the change's arcs moving back, then moves them.
async fn rollback(
    router: Arc<Router>,
    pool: Arc<PoolState>,
    old_specs: Vec<ShardSpec>,
    what: String,
) {
    let rb = &pool.rebalance;
    let mut backoff = MOVER_MIN_BACKOFF;
    let map = loop {
        let guard = rb.change_lock.lock().await;
        let cur = pool.topology.load_full();
        let plan = match plan_rollback(&cur.ring, &old_specs) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot plan the rollback");
                rb.set_error(&e.to_string());
                rb.finish("failed");
                return;
            }
        };
        let members: Vec<Arc<Shard>> = cur.serving_shards().cloned().collect();
        let back = format!("rollback of {what}");
        let next = build_topology(&plan, &members, &back);
        let map = next.migrating.map().cloned();
        rb.start_progress(&back, &plan, "rolling-back");
        let callers: Vec<u64> = lock(&rb.state)
            .cancel_waiters
            .iter()
            .map(|(id, _)| *id)
            .collect();
        match publish(&router, &pool, next, &plan.gainers, &callers).await {
            Ok(()) => {
                drop(guard);
                let waiters: Vec<_> = lock(&rb.state).cancel_waiters.drain(..).collect();
                for (_, w) in waiters {
                    let _ = w.send(Ok(ChangeOutcome::RollingBack));
                }
                tracing::info!(change = %back, epoch = plan.next.epoch(), "rolling back");
                if let Some(m) = &map {
                    estimate(&router, &pool, m, &cur.ring).await;
                }
                break map;
            }
            Err(e) => {
                // Nothing moved back yet and the arcs still have their owners: try again.
                rb.set_error(&e.to_string());
                drop(guard);
                tracing::warn!(error = %e, "rollback not published yet; retrying");
                if *router.stop_signal().borrow() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MOVER_MAX_BACKOFF);
            }
        }
    };
    match map {
        Some(map) => move_back(&router, &pool, &map, &format!("rollback of {what}")).await,
        None => rb.finish("cancelled"),
    }
}

/// `[ring] migration_rate`: keys per second for all of a change's streams together (a
/// membership change's or a split's).
pub(crate) struct Pace {
    rate: u64,
    started: tokio::time::Instant,
    moved: AtomicU64,
}

impl Pace {
    pub(crate) fn new(rate: u64) -> Pace {
        Pace {
            rate,
            started: tokio::time::Instant::now(),
            moved: AtomicU64::new(0),
        }
    }

    /// After a batch of `n` keys: waits until the keys moved so far are within the rate.
    async fn after(&self, n: u64) {
        let total = self.moved.fetch_add(n, Ordering::Relaxed) + n;
        if self.rate == 0 || n == 0 {
            return;
        }
        let due = self.started + Duration::from_secs_f64(total as f64 / self.rate as f64);
        tokio::time::sleep_until(due).await;
    }
}

/// Moves every arc of `map`; true if stopped by `RING CANCEL` (when `cancellable`).
async fn move_all(
    router: &Arc<Router>,
    pool: &PoolState,
    map: &Arc<MigrationMap>,
    cancellable: bool,
) -> bool {
    let pace = &Pace::new(router.config.ring.migration_rate);
    let stream = &RingStream { pool, cancellable };
    let workers = (0..map.groups().len()).map(|g| move_stream(router, map, g, None, pace, stream));
    futures::future::join_all(workers)
        .await
        .into_iter()
        .any(|cancelled| cancelled)
}

/// What a stream's mover does its own way for a membership change and for a split's change.
pub(crate) trait Stream {
    /// `Some(cancelled)`: stop before the next batch.
    fn stop(&self) -> Option<bool>;
    /// The primaries of shards `from` and `to` now (a failover may have replaced one); `None`
    /// if either is gone.
    fn primaries(&self, from: &str, to: &str) -> Option<(String, String)>;
    /// A shard of the stream is gone: true to give up, false to look again after a pause.
    fn gone(&self, from: &str, to: &str) -> bool;
    /// A batch of stream `group` moved `moved` keys (`bytes`), emptying its arc if `done`.
    fn moved(&self, group: usize, moved: u64, bytes: u64, done: bool);
    /// A batch failed (retried after a backoff).
    fn failed(&self, from: &str, to: &str, error: &str);
}

/// One `(from, to)` stream of `map`: `MIGRATE-ARC` on the source (only keys starting with
/// `prefix`, if given), batch after batch, arc after arc, at `pace`; true if `stream` stopped it
/// as cancelled.
pub(crate) async fn move_stream(
    router: &Router,
    map: &MigrationMap,
    group: usize,
    prefix: Option<bytes::Bytes>,
    pace: &Pace,
    stream: &impl Stream,
) -> bool {
    let (from, to, arcs) = &map.groups()[group];
    let batch = router.config.ring.migration_batch as u64;
    let pause = router.config.ring.migration_pause;
    let stop = router.stop_signal();
    let mut conn: Option<Client> = None;
    let mut backoff = MOVER_MIN_BACKOFF;
    for &index in arcs {
        let arc = &map.arcs()[index];
        while !arc.is_done() {
            if let Some(cancelled) = stream.stop() {
                return cancelled;
            }
            if *stop.borrow() {
                return false;
            }
            let Some((src, dst)) = stream.primaries(from, to) else {
                if stream.gone(from, to) {
                    return false;
                }
                tokio::time::sleep(MOVER_MAX_BACKOFF).await;
                continue;
            };
            let attempt = arc_batch(
                router,
                &mut conn,
                &src,
                &dst,
                arc.arc,
                batch,
                prefix.clone(),
            );
            match attempt.await {
                Ok(b) => {
                    backoff = MOVER_MIN_BACKOFF;
                    // Nothing more: every key of the arc the source held was found and moved, and
                    // the source refuses new ones (it took the new ring, or the split's fences,
                    // before any key moved), so none is left.
                    let done = !b.more;
                    stream.moved(group, b.moved, b.bytes, done);
                    if done {
                        map.mark_done(index);
                    }
                    pace.after(b.moved).await;
                    if b.moved > 0 && !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(e) => {
                    stream.failed(from, to, &e);
                    conn = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MOVER_MAX_BACKOFF);
                }
            }
        }
    }
    false
}

/// A membership change's stream: stopped by `RING CANCEL` (when `cancellable`), counted in its
/// pool's progress.
struct RingStream<'a> {
    pool: &'a PoolState,
    cancellable: bool,
}

impl Stream for RingStream<'_> {
    fn stop(&self) -> Option<bool> {
        (self.cancellable && self.pool.rebalance.cancel.load(Ordering::SeqCst)).then_some(true)
    }

    fn primaries(&self, from: &str, to: &str) -> Option<(String, String)> {
        let topo = self.pool.topology.load_full();
        Some((
            topo.shard_by_id(from)?.primary.clone(),
            topo.shard_by_id(to)?.primary.clone(),
        ))
    }

    fn gone(&self, from: &str, to: &str) -> bool {
        self.pool.rebalance.set_error(&format!(
            "shard '{from}' or '{to}' is gone from the topology"
        ));
        true
    }

    fn moved(&self, group: usize, moved: u64, bytes: u64, done: bool) {
        let rb = &self.pool.rebalance;
        rb.counters.keys_moved.fetch_add(moved, Ordering::Relaxed);
        rb.counters.bytes_moved.fetch_add(bytes, Ordering::Relaxed);
        rb.update(|p| {
            if let Some(m) = p.moves.get_mut(group) {
                m.keys += moved;
                m.bytes += bytes;
                if done {
                    m.arcs_done += 1;
                    if m.arcs_done == m.arcs_total {
                        m.finished = Some(Instant::now());
                    }
                }
            }
        });
    }

    fn failed(&self, from: &str, to: &str, error: &str) {
        tracing::warn!(from = %from, to = %to, error = %error, "migration batch failed; retrying");
        self.pool.rebalance.set_error(error);
    }
}

/// One `MIGRATE-ARC <target> <arc> <batch> [PREFIX <prefix>]` on `source`, over `conn` (opened,
/// or reopened when the source changed, here).
pub(crate) async fn arc_batch(
    router: &Router,
    conn: &mut Option<Client>,
    source: &str,
    target: &str,
    arc: ringcache_protocol::ring::Arc,
    batch: u64,
    prefix: Option<bytes::Bytes>,
) -> Result<ArcBatch, String> {
    if conn.as_ref().is_none_or(|c| c.addr() != source) {
        *conn = Some(connect(router, source).await?);
    }
    let c = conn.as_mut().ok_or("no connection")?;
    let cmd = MigrateArc {
        target: target.to_string(),
        arc,
        max_keys: batch,
        prefix,
    };
    match c
        .call_wire(&cmd, MIGRATE_ARC_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?
    {
        Reply::Error(e) => Err(format!("{source}: {e}")),
        r => ArcBatch::from_reply(&r).map_err(|e| format!("{source}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paused clock: the sleeps advance it, nothing waits for real.
    #[tokio::test(start_paused = true)]
    async fn the_mover_keeps_to_its_rate() {
        let start = tokio::time::Instant::now();
        let pace = Pace::new(1000);
        for _ in 0..4 {
            pace.after(250).await;
        }
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let free = Pace::new(0);
        let start = tokio::time::Instant::now();
        free.after(1_000_000).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
