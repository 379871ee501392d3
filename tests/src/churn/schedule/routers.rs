//! The driver's events on routers: a restart mid-move, and (with several routers) a SIGKILL
//! with the change it was given still in flight, which another router must finish; and the
//! epoch-spread figures collected after the load.

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;

use super::{Driver, EventRecord, Fault, POLL};
use crate::churn::backend::router_name;
use crate::churn::client::RingStatus;
use crate::churn::routers::SPREAD_BOUND;
use crate::churn::workload::Mark;

/// How long the other routers have to finish a killed router's change.
const TAKEOVER_WAIT: Duration = Duration::from_secs(15);
/// The fault window of a router kill: its in-flight requests end with it, nothing else should.
const KILL_WINDOW: Duration = Duration::from_millis(300);

impl Driver<'_> {
    /// Restarts the event's router mid-move: a member leaves and, right after +OK, the router is
    /// restarted with the new membership in its config (the leaving shard is not in it). The new
    /// router must come up on the current epoch and finish the move it learns from the nodes
    /// (or another router finishes it). With fewer than three members, a plain restart.
    pub(super) fn restart_router(&mut self) -> EventRecord {
        let at = self.elapsed();
        let verb = self.backend.verbs().restart_router;
        let members = self.members();
        let Some(id) = members
            .choose(&mut self.rng)
            .cloned()
            .filter(|_| members.len() >= 3)
        else {
            let result = self.restart_router_now(self.via);
            let name = format!("restart router ({verb}){}", self.via_note());
            return self.record(at, name, result);
        };
        let args = ["RING".to_string(), "LEAVE".into(), id.clone()];
        let name = format!("leave {id} + restart router ({verb}) mid-move");
        let mut rec = self.change(at, name, &id, false, true, &args, |d, _| {
            let moving = d.migrating_now();
            d.restart_router_now(d.via)
                .map(|s| format!("restarted at {moving}: {s}"))
        });
        if rec.moves.is_none() {
            if let Err(e) = &mut rec.result {
                *e = format!("RING LEAVE failed: {e}");
            }
            return rec;
        }
        // The new router reports the change only if it resumed it. If it reports none, the old
        // one finished the move before it stopped (a `docker restart` takes a while to deliver
        // its SIGTERM); either way every key must be readable at its owner, which the final
        // check verifies.
        let expected = format!("leave {id}");
        if let Ok(what) = &mut rec.result {
            match self.ring_status().map(|s| s.change) {
                Ok(Some(c)) if c == expected => what.push_str("; the new router resumed the move"),
                Ok(None) if self.shared.routers.count() > 1 => what.push_str(
                    "; the new router reports no change: the old one finished the move before stopping, or another router took it over",
                ),
                Ok(None) => what.push_str(
                    "; the new router reports no change: the old one finished the move before stopping",
                ),
                other => {
                    rec.result = Err(format!(
                        "{what}; the new router reports another change than {expected:?}: {other:?}"
                    ))
                }
            }
        }
        rec
    }

    /// `migrating:N` as RING STATUS says it now, for event descriptions.
    pub(super) fn migrating_now(&mut self) -> String {
        match self.ring_status() {
            Ok(RingStatus {
                migrating: Some(n), ..
            }) => format!("migrating:{n}"),
            Ok(_) => "migrating unknown".to_string(),
            Err(e) => format!("RING STATUS failed: {e}"),
        }
    }

    /// Restarts router `i` with the current membership in its config, then checks it knows the
    /// epoch the old one had.
    pub(super) fn restart_router_now(&mut self, i: usize) -> Result<String, String> {
        // Until the new router serves on the current epoch.
        let _fault = Mark::new(&self.shared.in_fault);
        let epoch_before = self.ring_status_on(i).ok().and_then(|s| s.epoch);
        let start = Instant::now();
        let members = self.router_members();
        // With others running, the load leaves it meanwhile (a lone router is waited for).
        let several = self.shared.routers.count() > 1;
        if several {
            self.shared.routers.set_live(i, false);
        }
        let restarted = self.backend.restart_router(i, &members);
        self.forget_router(i);
        self.faults.push(Fault {
            start,
            end: Instant::now(),
            shards: None,
        });
        if several {
            self.shared.routers.set_live(i, true);
        }
        let how = restarted.map_err(|e| format!("{e:#}"))?;
        // The new router must come up on the current epoch (bounded wait for it to learn it).
        let epoch_after = self.wait_epoch(i, epoch_before);
        let took = start.elapsed().as_secs_f64();
        let summary = format!(
            "{how}; serving after {took:.1}s; epoch before {}, after {}",
            fmt_opt(epoch_before),
            fmt_opt(epoch_after)
        );
        if epoch_after.is_some() && epoch_after >= epoch_before {
            Ok(summary)
        } else {
            Err(format!(
                "{summary}: the new router did not reach the current epoch"
            ))
        }
    }

    /// Forgets router `i`'s admin connection and takes its address again (it may have moved).
    pub(super) fn forget_router(&mut self, i: usize) {
        if let Some(c) = self.admins.get_mut(i) {
            *c = None;
        }
        self.shared.routers.set_addr(i, self.backend.router_addr(i));
    }

    /// Bounded wait (5 s) until router `i` reports an epoch of at least `want`; the last epoch
    /// it reported.
    fn wait_epoch(&mut self, i: usize, want: Option<u64>) -> Option<u64> {
        let mut epoch = None;
        for _ in 0..50 {
            epoch = self.ring_status_on(i).ok().and_then(|s| s.epoch);
            if epoch.is_some() && epoch >= want {
                break;
            }
            std::thread::sleep(POLL);
        }
        epoch
    }

    /// A join (half the time, while a spare no later join needs is left) or a leave through the
    /// event's router, which is SIGKILLed right after +OK. Another router must finish the
    /// change; then the killed one is started again and must come up on the current epoch.
    pub(super) fn kill_router(&mut self) -> EventRecord {
        let at = self.elapsed();
        let r = self.via;
        let verb = self.backend.verbs().kill;
        if self.shared.routers.live().len() < 2 {
            let name = format!("kill {} ({verb}) mid-change", router_name(r));
            return self.record(at, name, Err("needs two running routers".into()));
        }
        // A spare that no later join needs (a compose file may have no more than the joins').
        let unused = self.shards.iter().filter(|s| !s.ever_member).count();
        let spare = self
            .shards
            .iter()
            .find(|s| !s.ever_member)
            .filter(|_| unused > self.joins_ahead)
            .cloned();
        let members = self.members();
        let join = match &spare {
            Some(_) if members.len() < 2 => true,
            Some(_) => self.rng.gen_bool(0.5),
            None => false,
        };
        let (id, args) = match (join, spare) {
            (true, Some(s)) => {
                let mut args = vec![
                    "RING".to_string(),
                    "JOIN".into(),
                    s.id.clone(),
                    self.addr(&s.primary),
                ];
                args.extend(s.replica.iter().map(|n| self.addr(n)));
                (s.id, args)
            }
            _ => match members.choose(&mut self.rng).cloned() {
                Some(id) if members.len() >= 2 => {
                    let args = vec!["RING".to_string(), "LEAVE".into(), id.clone()];
                    (id, args)
                }
                _ => {
                    let name = format!("kill {} ({verb}) mid-change", router_name(r));
                    let why = "no spare to join and fewer than two shards to leave";
                    return self.record(at, name, Err(why.into()));
                }
            },
        };
        let change = format!("{} {id}", if join { "join" } else { "leave" });
        let name = format!("{change} + kill {} ({verb}) mid-change", router_name(r));
        let mut rec = self.change(at, name, &id, join, true, &args, |d, _| {
            d.kill_router_mid_change(r, &change)
        });
        if rec.moves.is_none() {
            if let Err(e) = &mut rec.result {
                let verb = if join { "JOIN" } else { "LEAVE" };
                *e = format!("RING {verb} failed: {e} (no change in flight: kill skipped)");
            }
        }
        rec
    }

    /// Kills router `r` (its change `change` just acknowledged), waits for another to finish it,
    /// starts `r` again and checks it serves the change's epoch.
    fn kill_router_mid_change(&mut self, r: usize, change: &str) -> Result<String, String> {
        let moving = self.migrating_now();
        let target = self.change_epoch;
        let start = Instant::now();
        self.shared.routers.set_live(r, false);
        let killed = self.backend.kill_router(r);
        self.faults.push(Fault {
            start,
            end: Instant::now() + KILL_WINDOW,
            shards: None,
        });
        self.forget_router(r);
        if let Err(e) = killed {
            self.shared.routers.set_live(r, true);
            return Err(format!("killing {}: {e:#}", router_name(r)));
        }
        self.via = self.pick_router();
        let mut notes = vec![format!("killed {} at {moving}", router_name(r))];
        let mut failed = false;
        if moving == "migrating:0" {
            notes.push("the change had finished before the kill: nothing to take over".into());
        } else {
            match self.wait_takeover(r, change, target, start) {
                Ok(s) => notes.push(s),
                Err(e) => {
                    notes.push(e);
                    failed = true;
                }
            }
        }
        // Started again with the current membership; it must come up on the change's epoch.
        let members = self.router_members();
        let restarted = self.backend.start_router(r, &members);
        self.forget_router(r);
        match restarted {
            Ok(()) => {
                let epoch = self.wait_epoch(r, target);
                let reached = epoch.is_some() && epoch >= target;
                failed |= !reached;
                notes.push(format!(
                    "{} started again at epoch {} ({}: {})",
                    router_name(r),
                    fmt_opt(epoch),
                    if reached { "current" } else { "STALE" },
                    fmt_opt(target)
                ));
            }
            Err(e) => {
                failed = true;
                notes.push(format!("starting {} again: {e:#}", router_name(r)));
            }
        }
        // Back in the load either way: a stale router shows in the stale-router errors.
        self.shared.routers.set_live(r, true);
        let text = notes.join("; ");
        if failed {
            Err(text)
        } else {
            Ok(text)
        }
    }

    /// Polls the running routers until one reports `change` done at epoch `target` or later
    /// (`migrating:0`: with it as its last change, it took the change over; without, the killed
    /// router `r_killed` had finished it); bounded by [`TAKEOVER_WAIT`].
    fn wait_takeover(
        &mut self,
        r_killed: usize,
        change: &str,
        target: Option<u64>,
        since: Instant,
    ) -> Result<String, String> {
        let named = |c: &Option<String>| {
            c.as_deref()
                .is_some_and(|c| c == change || c.starts_with(&format!("{change} ")))
        };
        let mut last = String::from("no answer");
        for _ in 0..(TAKEOVER_WAIT.as_millis() / POLL.as_millis() + 10) {
            let mut seen = Vec::new();
            for i in self.shared.routers.live() {
                match self.ring_status_on(i) {
                    Ok(
                        s @ RingStatus {
                            migrating: Some(0), ..
                        },
                    ) if s.epoch.is_some() && s.epoch >= target => {
                        // A router on the change's epoch that follows no change found the nodes
                        // no longer recording it: the killed router finished the move between
                        // the harness's look and the kill taking effect.
                        let who = if named(&s.change) {
                            router_name(i)
                        } else {
                            format!("{} (before the kill took effect)", router_name(r_killed))
                        };
                        return Ok(format!(
                            "{who} finished {change:?} {:.1}s after the kill",
                            since.elapsed().as_secs_f64()
                        ));
                    }
                    Ok(s) => seen.push(format!(
                        "{}: epoch {}, migrating {}, change {}",
                        router_name(i),
                        fmt_opt(s.epoch),
                        fmt_opt(s.migrating),
                        s.change.as_deref().unwrap_or("-")
                    )),
                    Err(e) => seen.push(format!("{}: {e}", router_name(i))),
                }
            }
            last = seen.join("; ");
            if since.elapsed() >= TAKEOVER_WAIT || self.shared.stopping() {
                break;
            }
            std::thread::sleep(POLL);
        }
        Err(format!(
            "no running router finished {change:?} within {TAKEOVER_WAIT:?} of the kill (last: {last})"
        ))
    }

    /// Collects the epoch-spread measurements (each bounded by [`SPREAD_BOUND`]).
    pub fn finish_spreads(&mut self) {
        let rt = self.rt;
        for rec in &mut self.records {
            let Some(task) = rec.spread_task.take() else {
                continue;
            };
            let bound = SPREAD_BOUND + Duration::from_secs(10);
            let got = rt.block_on(async { tokio::time::timeout(bound, task).await });
            rec.epoch_spread = Some(match got {
                Ok(Ok(s)) => {
                    rec.followed = s.followed;
                    s.took
                }
                Ok(Err(e)) => Err(format!("the measuring task failed: {e}")),
                Err(_) => Err(format!("the measuring task did not end within {bound:?}")),
            });
        }
    }
}

fn fmt_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}
