//! Progress of membership changes as `RING STATUS` and the metrics report them: per change,
//! per `(from, to)` stream of arcs (keys, bytes, arcs, rate, ETA), and the counters.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ringcache_protocol::ring::Epoch;
use tokio::sync::oneshot;

use crate::rebalance::migrating::MigrationMap;
use crate::rebalance::outcome::{ChangeError, ChangeOutcome};
use crate::rebalance::plan::ChangePlan;
use crate::topology::Topology;

/// Progress of one `(from, to)` stream of arcs.
#[derive(Debug, Clone)]
pub(super) struct MoveProgress {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) arcs_total: usize,
    pub(super) arcs_done: usize,
    pub(super) keys: u64,
    pub(super) bytes: u64,
    /// Keys expected to move: the source's key count × the moving arcs' share of its arcs.
    pub(super) estimate: Option<u64>,
    pub(super) started: Instant,
    pub(super) finished: Option<Instant>,
}

impl MoveProgress {
    fn elapsed(&self) -> f64 {
        self.finished
            .unwrap_or_else(Instant::now)
            .duration_since(self.started)
            .as_secs_f64()
    }

    fn rate(&self) -> f64 {
        let t = self.elapsed();
        if t > 0.0 {
            self.keys as f64 / t
        } else {
            0.0
        }
    }

    fn remaining(&self) -> Option<u64> {
        if self.arcs_done == self.arcs_total {
            return Some(0);
        }
        self.estimate.map(|e| e.saturating_sub(self.keys))
    }
}

/// One membership change (or rollback) as `RING STATUS` reports it.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    pub(super) what: String,
    /// `publishing`, `moving`, `cancelling`, `rolling-back`, `done`, `cancelled`, `failed`.
    pub(super) state: &'static str,
    pub(super) epoch: Epoch,
    pub(super) started: Instant,
    pub(super) finished: Option<Instant>,
    pub(super) moves: Vec<MoveProgress>,
    pub(super) last_error: Option<String>,
}

impl Progress {
    /// A change (or rollback) starting in `state`: one stream per `(from, to)` of `plan`.
    pub(super) fn new(what: &str, plan: &ChangePlan, state: &'static str) -> Progress {
        let map = MigrationMap::new(plan.moves.clone(), Vec::new());
        let now = Instant::now();
        let moves = map
            .groups()
            .iter()
            .map(|(from, to, arcs)| MoveProgress {
                from: from.clone(),
                to: to.clone(),
                arcs_total: arcs.len(),
                arcs_done: 0,
                keys: 0,
                bytes: 0,
                estimate: None,
                started: now,
                finished: None,
            })
            .collect();
        Progress {
            what: what.to_string(),
            state,
            epoch: plan.next.epoch(),
            started: now,
            finished: None,
            moves,
            last_error: None,
        }
    }

    pub(super) fn totals(&self) -> (usize, usize, u64, u64, Option<u64>) {
        let arcs_total = self.moves.iter().map(|m| m.arcs_total).sum();
        let arcs_done = self.moves.iter().map(|m| m.arcs_done).sum();
        let keys = self.moves.iter().map(|m| m.keys).sum();
        let bytes = self.moves.iter().map(|m| m.bytes).sum();
        let remaining = self
            .moves
            .iter()
            .map(MoveProgress::remaining)
            .sum::<Option<u64>>();
        (arcs_total, arcs_done, keys, bytes, remaining)
    }

    pub(super) fn write(&self, out: &mut String, prefix: &str) {
        let (arcs_total, arcs_done, keys, bytes, remaining) = self.totals();
        let elapsed = self
            .finished
            .unwrap_or_else(Instant::now)
            .duration_since(self.started)
            .as_secs_f64();
        let rate = if elapsed > 0.0 {
            keys as f64 / elapsed
        } else {
            0.0
        };
        let _ = write!(
            out,
            "{prefix}change:{}\r\n{prefix}state:{}\r\n{prefix}change_epoch:{}\r\n{prefix}elapsed_s:{elapsed:.1}\r\n{prefix}moves:{}\r\n{prefix}arcs_done:{arcs_done}\r\n{prefix}arcs_total:{arcs_total}\r\n{prefix}keys_moved:{keys}\r\n{prefix}bytes_moved:{bytes}\r\n",
            self.what,
            self.state,
            self.epoch,
            self.moves.len(),
        );
        let _ = match remaining {
            Some(r) => write!(out, "{prefix}keys_remaining:{r}\r\n"),
            None => write!(out, "{prefix}keys_remaining:unknown\r\n"),
        };
        let _ = write!(out, "{prefix}rate_keys_per_sec:{rate:.0}\r\n");
        let _ = match remaining {
            Some(r) if rate > 0.0 => write!(out, "{prefix}eta_s:{:.1}\r\n", r as f64 / rate),
            Some(0) => write!(out, "{prefix}eta_s:0\r\n"),
            _ => write!(out, "{prefix}eta_s:unknown\r\n"),
        };
        for (i, m) in self.moves.iter().enumerate() {
            let remaining = m
                .remaining()
                .map_or_else(|| "unknown".to_string(), |r| r.to_string());
            let eta = match m.remaining() {
                Some(0) => "0".to_string(),
                Some(r) if m.rate() > 0.0 => format!("{:.1}", r as f64 / m.rate()),
                _ => "unknown".to_string(),
            };
            let _ = write!(
                out,
                "{prefix}move{i}:from={},to={},arcs_done={},arcs_total={},keys={},bytes={},remaining={remaining},rate={:.0},eta_s={eta}\r\n",
                m.from, m.to, m.arcs_done, m.arcs_total, m.keys, m.bytes, m.rate(),
            );
        }
        if let Some(e) = &self.last_error {
            let e = e.replace(['\r', '\n'], " ");
            let _ = write!(out, "{prefix}last_error:{e}\r\n");
        }
    }
}

/// What `RING STATUS` and the metrics report of membership changes, with the callers waiting
/// for one; behind the rebalancer's lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) current: Option<Progress>,
    pub(super) last: Option<Progress>,
    /// Highest epoch a node reported, and a note if it is ahead of this router's.
    pub(super) nodes_epoch: Epoch,
    pub(super) ahead: Option<String>,
    /// Set at start-up when the nodes enforce a ring other than this router's config: nothing is
    /// pushed until a change whose ring they do enforce is published.
    pub(super) conflict: Option<String>,
    /// The change another router is driving, which this one follows (see `follow`).
    pub(super) following: Option<String>,
    /// Epoch of the last change this router finished (nodes still recording it are told).
    pub(super) done_epoch: Epoch,
    /// `RING CANCEL` callers waiting for the rollback to be in effect.
    pub(super) cancel_waiters: Vec<(u64, oneshot::Sender<Result<ChangeOutcome, ChangeError>>)>,
}

impl State {
    /// `RING STATUS` text: `key:value` lines like INFO.
    pub(super) fn status_text(&self, topo: &Topology) -> String {
        let ring = &topo.ring;
        let points: usize = ring.shards().iter().map(|s| ring.points_of(&s.id)).sum();
        let up = topo
            .shards
            .iter()
            .filter(|s| s.pool.connected() > 0)
            .count();
        let mut out = String::with_capacity(1024);
        let _ = write!(
            out,
            "# Ring\r\nepoch:{}\r\nvnodes:{}\r\nshards:{}\r\npoints:{points}\r\nshards_up:{up}\r\nmigrating:{}\r\narcs_migrating:{}\r\nnodes_epoch:{}\r\n",
            ring.epoch(),
            ring.vnodes(),
            topo.shards.len(),
            u8::from(self.current.is_some() || self.following.is_some()),
            topo.migrating.map().map_or(0, |m| m.live()),
            self.nodes_epoch,
        );
        for (id, share) in ring.shares() {
            let _ = write!(out, "share_{id}:{:.2}%\r\n", share * 100.0);
        }
        for s in topo.migrating.outside() {
            let _ = write!(out, "leaving_{}:{}\r\n", s.id, s.primary);
        }
        if let Some(w) = &self.following {
            let _ = write!(out, "following:{w} (moved by another router)\r\n");
        }
        if let Some(a) = &self.ahead {
            let _ = write!(out, "stale:{}\r\n", a.replace(['\r', '\n'], " "));
        }
        if let Some(c) = &self.conflict {
            let _ = write!(out, "conflict:{}\r\n", c.replace(['\r', '\n'], " "));
        }
        if let Some(p) = &self.current {
            out.push_str("\r\n# Migration\r\n");
            p.write(&mut out, "");
        }
        if let Some(p) = &self.last {
            out.push_str("\r\n# Last change\r\n");
            p.write(&mut out, "last_");
        }
        out
    }

    /// Prometheus families for migrations.
    pub(super) fn render_metrics(&self, c: &MigrationCounters, out: &mut String) {
        let (arcs_left, keys_left) = self.current.as_ref().map_or((0, Some(0)), |p| {
            let (total, done, _, _, remaining) = p.totals();
            (total - done, remaining)
        });
        let _ = write!(
            out,
            "# HELP ringcache_migration_keys_moved_total Keys moved between shards by membership changes.\n# TYPE ringcache_migration_keys_moved_total counter\nringcache_migration_keys_moved_total{{path=\"background\"}} {}\nringcache_migration_keys_moved_total{{path=\"request\"}} {}\n",
            c.keys_moved.load(Ordering::Relaxed),
            c.request_keys_moved.load(Ordering::Relaxed),
        );
        let _ = write!(
            out,
            "# HELP ringcache_migration_bytes_moved_total Bytes sent by the background mover (as the source encoded them).\n# TYPE ringcache_migration_bytes_moved_total counter\nringcache_migration_bytes_moved_total {}\n",
            c.bytes_moved.load(Ordering::Relaxed),
        );
        let _ = write!(
            out,
            "# HELP ringcache_migrating 1 while a membership change moves keys.\n# TYPE ringcache_migrating gauge\nringcache_migrating {}\n",
            u8::from(self.current.is_some() || self.following.is_some()),
        );
        let _ = write!(
            out,
            "# HELP ringcache_migration_arcs_remaining Arcs of the change in progress not yet empty at their source.\n# TYPE ringcache_migration_arcs_remaining gauge\nringcache_migration_arcs_remaining {arcs_left}\n",
        );
        if let Some(k) = keys_left {
            let _ = write!(
                out,
                "# HELP ringcache_migration_keys_remaining Estimated keys still to move.\n# TYPE ringcache_migration_keys_remaining gauge\nringcache_migration_keys_remaining {k}\n",
            );
        }
        let _ = write!(
            out,
            "# HELP ringcache_request_migrations_total MIGRATE-KEYS sent ahead of client commands on moving arcs.\n# TYPE ringcache_request_migrations_total counter\nringcache_request_migrations_total {}\n",
            c.request_migrations.load(Ordering::Relaxed),
        );
        let _ = write!(
            out,
            "# HELP ringcache_membership_changes_total Membership changes by outcome.\n# TYPE ringcache_membership_changes_total counter\nringcache_membership_changes_total{{result=\"done\"}} {}\nringcache_membership_changes_total{{result=\"cancelled\"}} {}\nringcache_membership_changes_total{{result=\"failed\"}} {}\n",
            c.changes_done.load(Ordering::Relaxed),
            c.changes_cancelled.load(Ordering::Relaxed),
            c.changes_failed.load(Ordering::Relaxed),
        );
        let _ = write!(
            out,
            "# HELP ringcache_nodes_epoch Highest ring epoch the nodes reported.\n# TYPE ringcache_nodes_epoch gauge\nringcache_nodes_epoch {}\n",
            self.nodes_epoch,
        );
    }
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct MigrationCounters {
    pub keys_moved: AtomicU64,
    pub bytes_moved: AtomicU64,
    /// Keys moved by `MIGRATE-KEYS` ahead of a client's command.
    pub request_keys_moved: AtomicU64,
    pub request_migrations: AtomicU64,
    pub wrongshard_retries: AtomicU64,
    pub changes_done: AtomicU64,
    pub changes_cancelled: AtomicU64,
    pub changes_failed: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_text_has_the_fields_tools_poll() {
        let now = Instant::now();
        let p = Progress {
            what: "join d".into(),
            state: "moving",
            epoch: 5,
            started: now,
            finished: None,
            moves: vec![MoveProgress {
                from: "a".into(),
                to: "d".into(),
                arcs_total: 10,
                arcs_done: 4,
                keys: 100,
                bytes: 5000,
                estimate: Some(250),
                started: now,
                finished: None,
            }],
            last_error: None,
        };
        let mut out = String::new();
        p.write(&mut out, "");
        for want in [
            "change:join d\r\n",
            "state:moving\r\n",
            "arcs_done:4\r\n",
            "arcs_total:10\r\n",
            "keys_moved:100\r\n",
            "keys_remaining:150\r\n",
            "move0:from=a,to=d,arcs_done=4,arcs_total=10,keys=100,bytes=5000,remaining=150,",
        ] {
            assert!(out.contains(want), "{want:?} not in {out}");
        }
    }
}
