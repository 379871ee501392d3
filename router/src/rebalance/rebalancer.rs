//! The rebalancer's state, as the [`Router`](crate::state::Router) holds it: the lock that
//! serializes topology changes, the change under way and its progress, the epoch sync task's
//! wake-up, the counters. The operations acting on it live in the sibling files.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::clients::lock;
use crate::rebalance::node_conn::ControlLinks;
use crate::rebalance::outcome::ChangeError;
use crate::rebalance::plan::ChangePlan;
use crate::rebalance::progress::{MigrationCounters, Progress, State};
use crate::topology::Topology;

/// The router's membership-change state: at most one change at a time.
#[derive(Debug, Default)]
pub struct Rebalancer {
    /// Held while the topology changes hands (membership change, rollback, end of a migration,
    /// epoch adoption, failover), so two changes never pick the same epoch or undo each other.
    pub change_lock: tokio::sync::Mutex<()>,
    pub(super) state: Mutex<State>,
    /// Set by `RING CANCEL`: the mover stops after the batches in flight.
    pub(super) cancel: AtomicBool,
    /// Wakes the epoch sync task (e.g. after a failover published a new epoch).
    pub(super) wake: Arc<Notify>,
    /// Set once the start-up adoption has been tried (see [`Rebalancer::wait_first_sync`]).
    pub(super) first_sync: AtomicBool,
    pub(super) first_sync_done: Notify,
    pub counters: MigrationCounters,
    /// Idle connections the epoch sync reuses.
    pub(crate) links: ControlLinks,
}

impl Rebalancer {
    /// Whether the start-up adoption of the nodes' ring has been tried.
    pub fn first_synced(&self) -> bool {
        self.first_sync.load(Ordering::SeqCst)
    }

    /// Whether a change (or its rollback) is under way.
    pub fn in_progress(&self) -> bool {
        lock(&self.state).current.is_some()
    }

    /// Waits (at most `bound`) until the start-up adoption has been tried: a router started
    /// mid-move must learn the moving arcs before it routes a key (it would send keys of arcs
    /// not yet moved to their new owner, and the mover would then overwrite them).
    pub async fn wait_first_sync(&self, bound: Duration) {
        let done = self.first_sync_done.notified();
        if self.first_sync.load(Ordering::SeqCst) {
            return;
        }
        let _ = tokio::time::timeout(bound, done).await;
    }

    /// Asks the epoch sync task to check every node now (after publishing a new topology, e.g.
    /// a failover).
    pub fn sync_soon(&self) {
        self.wake.notify_one();
    }

    /// A `RING CANCEL` sent to another router reached this one through the change lease: cancel
    /// the change this router drives (unless it is already a rollback).
    pub(super) fn cancel_asked_elsewhere(&self) {
        let mut st = lock(&self.state);
        if let Some(p) = st.current.as_mut() {
            if !p.what.starts_with("rollback") && p.state != "cancelling" {
                tracing::info!(change = %p.what, "cancel asked through another router");
                p.state = "cancelling";
                self.cancel.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Changes the progress of the change under way, if any.
    pub(super) fn update(&self, f: impl FnOnce(&mut Progress)) {
        if let Some(p) = lock(&self.state).current.as_mut() {
            f(p);
        }
    }

    pub(super) fn set_error(&self, e: &str) {
        self.update(|p| p.last_error = Some(e.to_string()));
    }

    /// Ends the current change with `state`; answers waiting `RING CANCEL` callers.
    pub(super) fn finish(&self, state: &'static str) {
        let mut st = lock(&self.state);
        if let Some(mut p) = st.current.take() {
            p.state = state;
            p.finished = Some(Instant::now());
            for m in &mut p.moves {
                m.finished.get_or_insert_with(Instant::now);
            }
            st.last = Some(p);
        }
        let counter = match state {
            "done" => &self.counters.changes_done,
            "cancelled" => &self.counters.changes_cancelled,
            _ => &self.counters.changes_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        for (_, w) in st.cancel_waiters.drain(..) {
            let _ = w.send(Err(ChangeError::EndedAs(state)));
        }
    }

    /// Makes `what` the change under way, in `state` (`publishing`, `moving`, `rolling-back`).
    pub(super) fn start_progress(&self, what: &str, plan: &ChangePlan, state: &'static str) {
        lock(&self.state).current = Some(Progress::new(what, plan, state));
    }

    /// `RING STATUS` text: `key:value` lines like INFO.
    pub fn status_text(&self, topo: &Topology) -> String {
        lock(&self.state).status_text(topo)
    }

    /// Prometheus families for migrations.
    pub fn render_metrics(&self, out: &mut String) {
        lock(&self.state).render_metrics(&self.counters, out);
    }
}
