//! The driver carrying out the plan: each event (joins, leaves, kills, pauses, cuts; the router
//! restarts and kills are in [`super::routers`]) and how it went.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;

use super::{
    is_join, move_stats, Driver, EventKind, EventRecord, Fault, Plan, ShardState, CHANGE_TIMEOUT,
    MIGRATION_WAIT,
};
use crate::churn::backend::Backend;
use crate::churn::client::cmd;
use crate::churn::routers::epoch_spread;
use crate::churn::workload::{Mark, Shared};

impl Driver<'_> {
    pub fn run_plan(&mut self, plan: &Plan) {
        for (n, &(at, kind)) in plan.events.iter().enumerate() {
            self.joins_ahead = plan.events[n + 1..]
                .iter()
                .filter(|(_, k)| is_join(*k))
                .count();
            // Wait for the event's time (bounded by the end of the load).
            for _ in 0..100_000 {
                if self.elapsed() >= at || self.shared.stopping() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.shared.stopping() || Instant::now() + Duration::from_secs(1) >= self.shared.end
            {
                self.records.push(EventRecord::plain(
                    self.elapsed(),
                    format!("{kind:?}"),
                    Err("skipped: the load ended before its turn".into()),
                ));
                continue;
            }
            self.check_liveness();
            for (id, what) in self.sync_roles() {
                let note = format!(
                    "t={:.1}s: shard {id} was failed over since the last event, not by the harness: {what}",
                    self.elapsed().as_secs_f64()
                );
                self.log(&note);
                self.notes.push(note);
            }
            self.via = self.pick_router();
            let rec = match kind {
                EventKind::Join => self.join(None),
                EventKind::KillMidMove => {
                    let kill_target = self.rng.gen_bool(0.5);
                    self.join(Some(kill_target))
                }
                EventKind::Leave => self.leave(),
                EventKind::KillPrimary => self.kill_primary(),
                EventKind::Pause => self.pause(),
                EventKind::Cut => self.cut(),
                EventKind::RestartRouter => self.restart_router(),
                EventKind::KillRouter => self.kill_router(),
                EventKind::Split => self.split(),
            };
            match &rec.result {
                Ok(what) => self.log(&format!("event {}: ok: {what}", rec.name)),
                Err(why) => self.log(&format!("event {} FAILED: {why}", rec.name)),
            }
            self.records.push(rec);
            // Let moves finish before the next event (bounded).
            if let Err(e) = self.wait_migrations(Instant::now(), MIGRATION_WAIT) {
                self.log(&format!("after the event: {e}"));
            }
        }
    }

    pub(super) fn record(
        &self,
        at: Duration,
        name: String,
        result: Result<String, String>,
    ) -> EventRecord {
        EventRecord::plain(at, name, result)
    }

    /// A membership change: `change` sends it (its `Err` is the refusal); the owners of every test
    /// key are located before and after, and the migration it starts is waited for. `then` runs
    /// right after +OK (a kill mid-move).
    /// With `faulted` (`then` injects a fault), the whole move counts as a fault: the latency
    /// figures during migration are those of graceful changes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn change(
        &mut self,
        at: Duration,
        name: String,
        changed: &str,
        join: bool,
        faulted: bool,
        args: &[String],
        then: impl FnOnce(&mut Self, &[String]) -> Result<String, String>,
    ) -> EventRecord {
        let name = format!("{name}{}", self.via_note());
        let members_before = self.members();
        let before = self.locate_all();
        if let Err(e) = self.admin(cmd(args), CHANGE_TIMEOUT) {
            return self.record(at, name, Err(e));
        }
        let shared: &Shared = self.shared;
        let _fault = faulted.then(|| Mark::new(&shared.in_fault));
        let ok_at = Instant::now();
        self.shared.in_migration.store(true, Ordering::Relaxed);
        // The epoch it published, from its router (one round trip, before any kill).
        self.change_epoch = self.ring_status().ok().and_then(|s| s.epoch);
        let (epoch_spread, spread_task) = match self.change_epoch {
            Some(e) => {
                let task = epoch_spread(Arc::clone(self.shared), e, ok_at, self.via);
                (None, Some(self.rt.spawn(task)))
            }
            None => (
                Some(Err("no epoch in RING STATUS after +OK".to_string())),
                None,
            ),
        };
        if let Some(s) = self.shard_mut(changed) {
            s.member = join;
            s.ever_member |= join;
        }
        self.history.push(self.members());
        let result = then(self, &members_before);
        let migration = Some(self.wait_migrations(ok_at, MIGRATION_WAIT));
        self.shared.in_migration.store(false, Ordering::Relaxed);
        // Located once the move is over: the owners depend on the ring alone, and 10,000 RING
        // LOCATEs sent mid-move would load the router exactly while latency is being measured.
        let after = self.locate_all();
        let moves = match (&before, &after) {
            (Ok(b), Ok(a)) => Ok(move_stats(b, a, changed, members_before.len(), join)),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        };
        EventRecord {
            at,
            name,
            result,
            moves: Some(moves),
            migration,
            epoch_spread,
            followed: Vec::new(),
            spread_task,
        }
    }

    /// `RING JOIN` of the next spare; with `kill_target`, kills the target (true) or a source
    /// (false) primary right after +OK.
    pub(super) fn join(&mut self, kill_target: Option<bool>) -> EventRecord {
        let at = self.elapsed();
        let Some(spare) = self.shards.iter().find(|s| !s.ever_member) else {
            return self.record(at, "join".into(), Err("no spare shard left".into()));
        };
        let id = spare.id.clone();
        let mut args = vec![
            "RING".to_string(),
            "JOIN".into(),
            id.clone(),
            self.addr(&spare.primary),
        ];
        args.extend(spare.replica.iter().map(|r| self.addr(r)));
        let name = match kill_target {
            None => format!("join {id}"),
            Some(true) => format!("join {id} + kill target mid-move"),
            Some(false) => format!("join {id} + kill source mid-move"),
        };
        let faulted = kill_target.is_some();
        let mut rec = self.change(
            at,
            name,
            &id.clone(),
            true,
            faulted,
            &args,
            |d, members_before| {
                let Some(target) = kill_target else {
                    return Ok("the new epoch is in effect".to_string());
                };
                // Kill at once, while keys move: the target, or one of the old members (with this
                // many vnodes every old member gives arcs to the new shard).
                let victim = if target {
                    Some(id.clone())
                } else {
                    members_before.choose(&mut d.rng).cloned()
                };
                let victim = victim.unwrap_or_else(|| id.clone());
                let migrating = d.migrating_now();
                d.crash_primary(&victim)
                    .map(|s| format!("killed {victim}'s primary at {migrating}: {s}"))
                    .map_err(|e| format!("killed {victim}'s primary at {migrating}: {e}"))
            },
        );
        if rec.moves.is_none() {
            if let Err(e) = &mut rec.result {
                *e = format!("RING JOIN failed: {e}");
                if kill_target.is_some() {
                    e.push_str(" (no move to interrupt: kill skipped)");
                }
            }
        }
        rec
    }

    pub(super) fn leave(&mut self) -> EventRecord {
        let at = self.elapsed();
        let members_before = self.members();
        if members_before.len() < 2 {
            return self.record(
                at,
                "leave".into(),
                Err("fewer than two shards in the ring".into()),
            );
        }
        let Some(id) = members_before.choose(&mut self.rng).cloned() else {
            return self.record(at, "leave".into(), Err("no member".into()));
        };
        let args = ["RING".to_string(), "LEAVE".into(), id.clone()];
        let mut rec = self.change(
            at,
            format!("leave {id}"),
            &id,
            false,
            false,
            &args,
            |_, _| Ok("the new epoch is in effect".into()),
        );
        if rec.moves.is_none() {
            if let Err(e) = &mut rec.result {
                *e = format!("RING LEAVE failed: {e}");
            }
        }
        rec
    }

    /// Kills shard `id`'s primary; waits for the router to promote the replica, else restarts
    /// the primary (empty) on its address. Records the fault window.
    pub(super) fn crash_primary(&mut self, id: &str) -> Result<String, String> {
        let _fault = Mark::new(&self.shared.in_fault);
        let start = Instant::now();
        let Some(shard) = self.shards.iter().find(|s| s.id == id).cloned() else {
            return Err(format!("no shard {id}"));
        };
        if let Err(e) = self.backend.kill(&shard.primary) {
            return Err(format!("killing {}: {e:#}", shard.primary));
        }
        let failover = match &shard.replica {
            Some(r) => {
                let addr = self.addr(r);
                self.wait_failover(id, &addr)
            }
            None => Err("the shard has no replica to fail over to".into()),
        };
        let result = match failover {
            Ok(took) => {
                if let Some(s) = self.shard_mut(id) {
                    if let Some(r) = s.replica.take() {
                        s.primary = r;
                    }
                }
                Ok(format!(
                    "the router promoted the replica in {:.1}s",
                    took.as_secs_f64()
                ))
            }
            Err(e) => {
                let addr = self.addr(&shard.primary);
                match self.backend.start(&shard.primary, None) {
                    Ok(()) => Err(format!("{e}; restarted the primary, empty, on {addr}")),
                    Err(e2) => Err(format!("{e}; restarting the primary failed: {e2:#}")),
                }
            }
        };
        self.faults.push(Fault {
            start,
            end: Instant::now(),
            shards: Some(vec![id.to_string()]),
        });
        result
    }

    pub(super) fn kill_primary(&mut self) -> EventRecord {
        let at = self.elapsed();
        let candidates: Vec<String> = self
            .shards
            .iter()
            .filter(|s| s.member && s.replica.is_some() && self.backend.is_up(&s.primary))
            .map(|s| s.id.clone())
            .collect();
        let Some(id) = candidates.choose(&mut self.rng).cloned() else {
            return self.record(
                at,
                "kill primary".into(),
                Err("no member shard with a replica".into()),
            );
        };
        let result = self.crash_primary(&id);
        let how = self.backend.verbs().kill;
        self.record(at, format!("kill {id} primary ({how})"), result)
    }

    /// A member shard whose primary runs, and its nodes.
    pub(super) fn running_member(&mut self) -> Option<ShardState> {
        let candidates: Vec<ShardState> = self
            .shards
            .iter()
            .filter(|s| s.member && self.backend.is_up(&s.primary))
            .cloned()
            .collect();
        candidates.choose(&mut self.rng).cloned()
    }

    /// `hurt` a node, wait `ms`, `heal` it; records the fault window on its shard and whether the
    /// router failed the shard over meanwhile.
    pub(super) fn timed_fault(
        &mut self,
        id: &str,
        node: &str,
        ms: u64,
        hurt: fn(&mut dyn Backend, &str) -> anyhow::Result<()>,
        heal: fn(&mut dyn Backend, &str) -> anyhow::Result<()>,
    ) -> Result<String, String> {
        let _fault = Mark::new(&self.shared.in_fault);
        let start = Instant::now();
        if let Err(e) = hurt(self.backend.as_mut(), node) {
            return Err(format!("{e:#}"));
        }
        std::thread::sleep(Duration::from_millis(ms));
        let healed = heal(self.backend.as_mut(), node);
        self.faults.push(Fault {
            start,
            end: Instant::now(),
            shards: Some(vec![id.to_string()]),
        });
        let mut what = match healed {
            Ok(()) => format!("healed after {ms} ms"),
            Err(e) => return Err(format!("healing: {e:#}")),
        };
        for (shard, note) in self.sync_roles() {
            if shard == id {
                what.push_str("; ");
                what.push_str(&note);
            } else {
                let note = format!(
                    "t={:.1}s: shard {shard} was failed over during the fault on {id}: {note}",
                    self.elapsed().as_secs_f64()
                );
                self.log(&note);
                self.notes.push(note);
            }
        }
        Ok(what)
    }

    pub(super) fn pause(&mut self) -> EventRecord {
        let at = self.elapsed();
        let Some(s) = self.running_member() else {
            return self.record(at, "pause".into(), Err("no running member primary".into()));
        };
        let ms = self.rng.gen_range(1000..=2000u64);
        let how = self.backend.verbs().pause;
        let name = format!("pause {} primary ({how} {ms} ms)", s.id);
        let result = self.timed_fault(&s.id, &s.primary, ms, |b, n| b.pause(n), |b, n| b.resume(n));
        self.record(at, name, result)
    }

    /// Cuts a member's primary or replica off the network for 2–4 s (long enough for the router
    /// to fail a primary over), then reconnects it.
    pub(super) fn cut(&mut self) -> EventRecord {
        let at = self.elapsed();
        let Some(s) = self.running_member() else {
            return self.record(at, "cut".into(), Err("no running member primary".into()));
        };
        let replica = s.replica.clone().filter(|r| self.backend.is_up(r));
        let (role, node) = match replica {
            Some(r) if self.rng.gen_bool(0.5) => ("replica", r),
            _ => ("primary", s.primary.clone()),
        };
        let ms = self.rng.gen_range(2000..=4000u64);
        let name = format!("cut {}'s {role} ({node}) off the network for {ms} ms", s.id);
        let result = self.timed_fault(&s.id, &node, ms, |b, n| b.cut(n), |b, n| b.heal(n));
        self.record(at, name, result)
    }
}
