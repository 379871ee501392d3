//! The seeded schedule of membership changes and faults, and the driver that carries it out on a
//! plain thread (process control is blocking; admin commands run on the load's runtime).
//!
//! An event that the cluster refuses (today: `RING JOIN`/`LEAVE` before the router supports
//! them) is recorded as failed with the error, and the run goes on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ringcache_protocol::Reply;
use tokio::runtime::Handle;

use super::backend::{Backend, RouterShard, ShardState};
use super::client::{self, cmd, Answer, Cmd, Conn, RingNode, RingStatus};
use super::workload::{Mark, Shared};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleKind {
    /// Joins, leaves and faults (kills, a kill mid-move, a pause, a router restart; in compose
    /// mode also a node cut off the network).
    Full,
    /// Joins and leaves only.
    Graceful,
    /// No membership change, no fault.
    None,
}

impl ScheduleKind {
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Full => "full",
            ScheduleKind::Graceful => "graceful",
            ScheduleKind::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Join,
    Leave,
    KillPrimary,
    /// Join a spare, then SIGKILL the move's source or target right after +OK.
    KillMidMove,
    /// Freeze a primary (SIGSTOP, `docker pause`) for 1–2 s.
    Pause,
    /// Cut a node off the network for 2–4 s, then reconnect it (backends that can: compose).
    Cut,
    RestartRouter,
}

pub struct Plan {
    /// Offsets from the start of the load, increasing.
    pub events: Vec<(Duration, EventKind)>,
    pub spares: usize,
}

/// Spreads the events over 10%..70% of the run, seeded, so the tail of the run sees the cluster
/// settle under load. `cut`: the full schedule also cuts a node off the network.
pub fn plan(kind: ScheduleKind, seed: u64, duration: Duration, cut: bool) -> Plan {
    use EventKind::*;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kinds = match kind {
        ScheduleKind::Full => vec![Join, Leave, KillPrimary, KillMidMove, Pause, RestartRouter],
        ScheduleKind::Graceful => vec![Join, Leave, Join, Leave],
        ScheduleKind::None => Vec::new(),
    };
    if kind == ScheduleKind::Full {
        if cut {
            kinds.push(Cut);
        }
        kinds.shuffle(&mut rng);
    }
    let spares = kinds
        .iter()
        .filter(|k| matches!(k, Join | KillMidMove))
        .count();
    let first = duration.mul_f64(0.1);
    let slot = duration.mul_f64(0.6) / (kinds.len().max(1) as u32);
    let jitter_ms = (slot.as_millis() as u64 / 4).max(1);
    let events = kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let at = first + slot * i as u32 + Duration::from_millis(rng.gen_range(0..jitter_ms));
            (at, k)
        })
        .collect();
    Plan { events, spares }
}

/// A window in which a fault could have lost writes on `shards` (`None`: every shard).
#[derive(Debug, Clone)]
pub struct Fault {
    pub start: Instant,
    pub end: Instant,
    pub shards: Option<Vec<String>>,
}

/// Keys whose owner changed across one membership change.
#[derive(Debug, Clone)]
pub struct MoveStats {
    pub members_before: usize,
    pub moved: usize,
    /// Moved between two shards that are in the ring before and after: must be 0.
    pub between_staying: usize,
    /// K/(n+1) for a join, K/n for a leave.
    pub expected: f64,
}

pub struct EventRecord {
    /// Offset from the start of the load.
    pub at: Duration,
    pub name: String,
    /// What happened, or why the event failed.
    pub result: Result<String, String>,
    pub moves: Option<Result<MoveStats, String>>,
    /// From RING JOIN/LEAVE +OK until `migrating:0`.
    pub migration: Option<Result<Duration, String>>,
}

pub struct Driver<'a> {
    rt: &'a Handle,
    shared: &'a Arc<Shared>,
    pub backend: Box<dyn Backend>,
    /// Every shard, members and spares, and which node is its primary now.
    pub shards: Vec<ShardState>,
    rng: StdRng,
    admin: Option<Conn>,
    pub records: Vec<EventRecord>,
    /// Every membership the harness put in place, in order (to know which shards a key had).
    pub history: Vec<Vec<String>>,
    pub faults: Vec<Fault>,
    /// Processes found dead that the harness did not kill.
    pub crashes: Vec<String>,
    /// Failovers the harness did not cause (or wait for), for the summary.
    pub notes: Vec<String>,
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// RING JOIN/LEAVE reply once the new epoch is in effect (keys move afterwards).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
const MIGRATION_WAIT: Duration = Duration::from_secs(30);
const FAILOVER_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

impl<'a> Driver<'a> {
    pub fn new(
        rt: &'a Handle,
        shared: &'a Arc<Shared>,
        backend: Box<dyn Backend>,
        seed: u64,
    ) -> Driver<'a> {
        let shards = backend.initial_shards();
        let mut d = Driver {
            rt,
            shared,
            backend,
            shards,
            // Distinct from the plan's stream, still fixed by the seed.
            rng: StdRng::seed_from_u64(seed.wrapping_add(0x5eed)),
            admin: None,
            records: Vec::new(),
            history: Vec::new(),
            faults: Vec::new(),
            crashes: Vec::new(),
            notes: Vec::new(),
        };
        d.history.push(d.members());
        d
    }

    fn elapsed(&self) -> Duration {
        self.shared.start.elapsed()
    }

    fn log(&self, msg: &str) {
        println!("[t={:.1}s] {msg}", self.elapsed().as_secs_f64());
    }

    pub fn members(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter(|s| s.member)
            .map(|s| s.id.clone())
            .collect()
    }

    fn shard_mut(&mut self, id: &str) -> Option<&mut ShardState> {
        self.shards.iter_mut().find(|s| s.id == id)
    }

    fn addr(&self, node: &str) -> String {
        self.backend
            .addr(node)
            .unwrap_or_else(|| format!("{node}:?"))
    }

    /// The router's `[[shard]]` list for the current membership.
    fn router_members(&self) -> Vec<RouterShard> {
        self.shards
            .iter()
            .filter(|s| s.member)
            .map(|s| RouterShard {
                id: s.id.clone(),
                primary: self.addr(&s.primary),
                replicas: s.replica.iter().map(|r| self.addr(r)).collect(),
            })
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Admin commands on the router
    // -----------------------------------------------------------------------------------------

    /// Sends admin commands pipelined on the admin connection (reconnecting to the current router
    /// address if needed). `Err` if any got no reply.
    fn admin_pipeline(&mut self, cmds: &[Cmd], timeout: Duration) -> Result<Vec<Reply>, String> {
        let addr = self.shared.router();
        let mut conn = self.admin.take();
        let rt = self.rt;
        let result = rt.block_on(async {
            let mut c = match conn.take() {
                Some(c) if !c.is_broken() => c,
                _ => Conn::connect(addr, Duration::from_secs(2)).await?,
            };
            let answers = c.pipeline(cmds, timeout).await;
            let mut replies = Vec::with_capacity(answers.len());
            for (a, _) in answers {
                match a {
                    Answer::Reply(r) => replies.push(r),
                    Answer::NoReply(why) => return Err(why),
                }
            }
            Ok((c, replies))
        });
        match result {
            Ok((c, replies)) => {
                self.admin = Some(c);
                Ok(replies)
            }
            Err(e) => Err(e),
        }
    }

    /// One admin command; an error reply is an `Err` with its text.
    fn admin(&mut self, c: Cmd, timeout: Duration) -> Result<Reply, String> {
        let mut replies = self.admin_pipeline(&[c], timeout)?;
        match replies.pop() {
            Some(Reply::Error(e)) => Err(e),
            Some(r) => Ok(r),
            None => Err("no reply".into()),
        }
    }

    pub fn ring_status(&mut self) -> Result<RingStatus, String> {
        self.admin(cmd(&["RING", "STATUS"]), ADMIN_TIMEOUT)
            .map(|r| client::parse_ring_status(&r))
    }

    fn ring_nodes(&mut self) -> Result<Vec<RingNode>, String> {
        self.admin(cmd(&["RING", "NODES"]), ADMIN_TIMEOUT)
            .map(|r| client::parse_ring_nodes(&r))
    }

    /// Polls RING STATUS until `migrating` is 0; returns how long that took from `since`.
    pub fn wait_migrations(&mut self, since: Instant, bound: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + bound;
        let mut last = String::from("no answer yet");
        for _ in 0..(bound.as_millis() / POLL.as_millis() + 10) {
            match self.ring_status() {
                Ok(RingStatus {
                    migrating: Some(0), ..
                }) => return Ok(since.elapsed()),
                Ok(RingStatus {
                    migrating: Some(n), ..
                }) => last = format!("migrating:{n}"),
                Ok(RingStatus {
                    migrating: None, ..
                }) => return Err("RING STATUS reports no `migrating` field".into()),
                Err(e) => last = format!("RING STATUS failed: {e}"),
            }
            if Instant::now() >= deadline || self.shared.stopping() {
                break;
            }
            std::thread::sleep(POLL);
        }
        Err(format!(
            "migrations not finished after {bound:?} (last: {last})"
        ))
    }

    /// The owner of every test key, by `RING LOCATE`.
    fn locate_all(&mut self) -> Result<Vec<String>, String> {
        let shared: &Shared = self.shared;
        let _sweep = Mark::new(&shared.in_sweep);
        let keys = self.shared.model.keys.all();
        let mut owners = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let cmds: Vec<Cmd> = chunk.iter().map(|k| cmd(&["RING", "LOCATE", k])).collect();
            let replies = self.admin_pipeline(&cmds, Duration::from_secs(20))?;
            for (k, r) in chunk.iter().zip(replies) {
                if let Reply::Error(e) = &r {
                    return Err(format!("RING LOCATE {k}: {e}"));
                }
                owners.push(client::parse_locate(&r).ok_or_else(|| {
                    format!("RING LOCATE {k}: no shard in {}", client::brief(&r))
                })?);
            }
        }
        Ok(owners)
    }

    /// Polls RING NODES until shard `id`'s primary is `replica`.
    fn wait_failover(&mut self, id: &str, replica: &str) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::from("no answer");
        for _ in 0..(FAILOVER_WAIT.as_millis() / 200 + 10) {
            match self.ring_nodes() {
                Ok(nodes) => match nodes.iter().find(|n| n.id == id) {
                    Some(n) if n.primary == replica => return Ok(start.elapsed()),
                    Some(n) => last = format!("RING NODES names {} as {id}'s primary", n.primary),
                    None => last = format!("RING NODES does not list {id}"),
                },
                Err(e) => last = format!("RING NODES failed: {e}"),
            }
            if start.elapsed() >= FAILOVER_WAIT || self.shared.stopping() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "no failover to {replica} within {FAILOVER_WAIT:?} ({last})"
        ))
    }

    /// Takes every shard's primary from RING NODES: the router fails shards over on its own
    /// (after a pause or a cut, or when it finds a primary unresponsive). Returns the shards that
    /// changed, with a note for each.
    fn sync_roles(&mut self) -> Vec<(String, String)> {
        let nodes = match self.ring_nodes() {
            Ok(n) => n,
            Err(e) => {
                self.log(&format!("RING NODES failed: {e}"));
                return Vec::new();
            }
        };
        let mut changed = Vec::new();
        for n in nodes {
            let Some(s) = self.shards.iter().find(|s| s.id == n.id) else {
                continue;
            };
            let Some(replica) = s.replica.clone() else {
                continue;
            };
            if self.backend.addr(&replica).as_deref() != Some(n.primary.as_str()) {
                continue;
            }
            let old = s.primary.clone();
            let old_up = self.backend.is_up(&old);
            if let Some(s) = self.shard_mut(&n.id) {
                s.primary = replica.clone();
                s.replica = old_up.then(|| old.clone());
            }
            changed.push((
                n.id,
                format!("the router failed over to {replica} ({old} is its replica now)"),
            ));
        }
        changed
    }

    // -----------------------------------------------------------------------------------------
    // The schedule
    // -----------------------------------------------------------------------------------------

    pub fn run_plan(&mut self, plan: &Plan) {
        for &(at, kind) in &plan.events {
            // Wait for the event's time (bounded by the end of the load).
            for _ in 0..100_000 {
                if self.elapsed() >= at || self.shared.stopping() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.shared.stopping() || Instant::now() + Duration::from_secs(1) >= self.shared.end
            {
                self.records.push(EventRecord {
                    at: self.elapsed(),
                    name: format!("{kind:?}"),
                    result: Err("skipped: the load ended before its turn".into()),
                    moves: None,
                    migration: None,
                });
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

    fn record(&self, at: Duration, name: String, result: Result<String, String>) -> EventRecord {
        EventRecord {
            at,
            name,
            result,
            moves: None,
            migration: None,
        }
    }

    /// A membership change: `change` sends it (its `Err` is the refusal); the owners of every test
    /// key are located before and after, and the migration it starts is waited for. `then` runs
    /// right after +OK (a kill mid-move).
    /// With `faulted` (`then` injects a fault), the whole move counts as a fault: the latency
    /// figures during migration are those of graceful changes.
    #[allow(clippy::too_many_arguments)]
    fn change(
        &mut self,
        at: Duration,
        name: String,
        changed: &str,
        join: bool,
        faulted: bool,
        args: &[String],
        then: impl FnOnce(&mut Self, &[String]) -> Result<String, String>,
    ) -> EventRecord {
        let members_before = self.members();
        let before = self.locate_all();
        if let Err(e) = self.admin(cmd(args), CHANGE_TIMEOUT) {
            return self.record(at, name, Err(e));
        }
        let shared: &Shared = self.shared;
        let _fault = faulted.then(|| Mark::new(&shared.in_fault));
        let ok_at = Instant::now();
        self.shared.in_migration.store(true, Ordering::Relaxed);
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
        }
    }

    /// `RING JOIN` of the next spare; with `kill_target`, kills the target (true) or a source
    /// (false) primary right after +OK.
    fn join(&mut self, kill_target: Option<bool>) -> EventRecord {
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

    fn leave(&mut self) -> EventRecord {
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
    fn crash_primary(&mut self, id: &str) -> Result<String, String> {
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

    fn kill_primary(&mut self) -> EventRecord {
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
    fn running_member(&mut self) -> Option<ShardState> {
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
    fn timed_fault(
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

    fn pause(&mut self) -> EventRecord {
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
    fn cut(&mut self) -> EventRecord {
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

    /// Restarts the router mid-move: a member leaves and, right after +OK, the router is
    /// restarted with the new membership in its config (the leaving shard is not in it). The new
    /// router must come up on the current epoch and finish the move it learns from the nodes.
    /// With fewer than three members, a plain restart.
    fn restart_router(&mut self) -> EventRecord {
        let at = self.elapsed();
        let verb = self.backend.verbs().restart_router;
        let members = self.members();
        let Some(id) = members
            .choose(&mut self.rng)
            .cloned()
            .filter(|_| members.len() >= 3)
        else {
            let result = self.restart_router_now();
            return self.record(at, format!("restart router ({verb})"), result);
        };
        let args = ["RING".to_string(), "LEAVE".into(), id.clone()];
        let name = format!("leave {id} + restart router ({verb}) mid-move");
        let mut rec = self.change(at, name, &id, false, true, &args, |d, _| {
            let moving = d.migrating_now();
            d.restart_router_now()
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
    fn migrating_now(&mut self) -> String {
        match self.ring_status() {
            Ok(RingStatus {
                migrating: Some(n), ..
            }) => format!("migrating:{n}"),
            Ok(_) => "migrating unknown".to_string(),
            Err(e) => format!("RING STATUS failed: {e}"),
        }
    }

    /// Restarts the router with the current membership in its config, then checks it knows the
    /// epoch the old one had.
    fn restart_router_now(&mut self) -> Result<String, String> {
        // Until the new router serves on the current epoch.
        let _fault = Mark::new(&self.shared.in_fault);
        let epoch_before = self.ring_status().ok().and_then(|s| s.epoch);
        let start = Instant::now();
        let members = self.router_members();
        let restarted = self.backend.restart_router(&members);
        self.admin = None;
        self.shared.set_router(self.backend.router_addr());
        self.faults.push(Fault {
            start,
            end: Instant::now(),
            shards: None,
        });
        let how = restarted.map_err(|e| format!("{e:#}"))?;
        // The new router must come up on the current epoch (bounded wait for it to learn it).
        let mut epoch_after = None;
        for _ in 0..50 {
            epoch_after = self.ring_status().ok().and_then(|s| s.epoch);
            if epoch_after.is_some() && epoch_after >= epoch_before {
                break;
            }
            std::thread::sleep(POLL);
        }
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

    /// Restarts whatever died without the harness killing it (and records it as a crash).
    pub fn check_liveness(&mut self) {
        for (name, tail) in self.backend.exited() {
            let at = self.elapsed();
            self.log(&format!("{name} exited on its own; {tail}"));
            self.crashes.push(format!(
                "t={:.1}s {name} exited on its own",
                at.as_secs_f64()
            ));
            let start = Instant::now();
            let restarted = if name == "router" {
                let members = self.router_members();
                let r = self.backend.start_router(&members);
                self.shared.set_router(self.backend.router_addr());
                r.map_err(|e| format!("{e:#}"))
            } else {
                self.restart_node(&name)
            };
            if let Err(e) = restarted {
                self.crashes.push(format!("restarting {name}: {e}"));
            }
            let shards = name.rsplit_once('-').map(|(id, _)| vec![id.to_string()]);
            self.faults.push(Fault {
                start: self.shared.start,
                end: start.max(Instant::now()),
                shards: if name == "router" { None } else { shards },
            });
        }
    }

    /// Starts node `name` again, as a replica of its shard's primary unless it is the primary.
    fn restart_node(&mut self, name: &str) -> Result<(), String> {
        let Some(s) = self
            .shards
            .iter()
            .find(|s| s.primary == name || s.replica.as_deref() == Some(name))
        else {
            return Err(format!("{name} is in no shard"));
        };
        let of = (s.primary != name).then(|| self.addr(&s.primary));
        self.backend
            .start(name, of.as_deref())
            .map_err(|e| format!("{e:#}"))
    }

    /// After the load: heals paused and cut nodes, restarts whatever is down, and restarts a
    /// missing router.
    pub fn heal_all(&mut self) {
        self.backend.heal_faults();
        self.check_liveness();
        if !self.backend.router_up() {
            let members = self.router_members();
            if let Err(e) = self.backend.start_router(&members) {
                self.log(&format!("heal: router: {e:#}"));
            }
            self.shared.set_router(self.backend.router_addr());
        }
        let down: Vec<String> = self
            .shards
            .iter()
            .filter(|s| !self.backend.is_up(&s.primary))
            .map(|s| s.primary.clone())
            .collect();
        for node in down {
            if let Err(e) = self.restart_node(&node) {
                self.log(&format!("heal: {node}: {e}"));
            }
        }
    }
}

/// Keys moved by a change from `before` to `after` owners (one entry per test key); `changed` is
/// the joining or leaving shard, `members_before` the ring's size before the change.
pub fn move_stats(
    before: &[String],
    after: &[String],
    changed: &str,
    members_before: usize,
    join: bool,
) -> MoveStats {
    let moved = before.iter().zip(after).filter(|(b, a)| b != a).count();
    let between_staying = before
        .iter()
        .zip(after)
        .filter(|(b, a)| b != a && b.as_str() != changed && a.as_str() != changed)
        .count();
    let keys = before.len();
    let expected = if join {
        keys as f64 / (members_before + 1) as f64
    } else {
        keys as f64 / members_before.max(1) as f64
    };
    MoveStats {
        members_before,
        moved,
        between_staying,
        expected,
    }
}

fn fmt_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use ringcache_protocol::ring::{Ring, ShardSpec};

    use super::*;
    use crate::churn::local::VNODES;
    use crate::churn::model::Keys;

    fn owners(ids: &[&str], keys: &[String]) -> Vec<String> {
        let specs = ids.iter().map(|id| ShardSpec::new(*id, 1)).collect();
        let ring = match Ring::new(1, VNODES, specs) {
            Ok(r) => r,
            Err(e) => panic!("ring: {e:?}"),
        };
        keys.iter()
            .map(|k| {
                ring.locate(k.as_bytes())
                    .map_or_else(String::new, |s| s.id.clone())
            })
            .collect()
    }

    #[test]
    fn a_join_moves_about_a_share_and_nothing_between_staying_shards() {
        let keys = Keys::new(10_000).all();
        let before = owners(&["alpha", "bravo", "charlie"], &keys);
        let after = owners(&["alpha", "bravo", "charlie", "delta"], &keys);
        let m = move_stats(&before, &after, "delta", 3, true);
        assert_eq!(m.between_staying, 0);
        let ratio = m.moved as f64 / m.expected;
        assert!(
            (0.8..1.2).contains(&ratio),
            "moved {} vs {}",
            m.moved,
            m.expected
        );
        let left = owners(&["alpha", "charlie", "delta"], &keys);
        let m = move_stats(&after, &left, "bravo", 4, false);
        assert_eq!(m.between_staying, 0);
        // A wrong ring (a different shard set) shows up as moves between staying shards.
        let m = move_stats(
            &before,
            &owners(&["alpha", "bravo", "echo"], &keys),
            "delta",
            3,
            true,
        );
        assert!(m.between_staying > 0);
    }

    #[test]
    fn plans_are_seeded_and_bounded() {
        let d = Duration::from_secs(60);
        let a = plan(ScheduleKind::Full, 7, d, false);
        let b = plan(ScheduleKind::Full, 7, d, false);
        assert_eq!(a.events, b.events);
        assert_eq!(a.events.len(), 6);
        assert_eq!(a.spares, 2);
        assert!(a.events.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(a
            .events
            .iter()
            .all(|(at, _)| *at >= d / 10 && *at <= d.mul_f64(0.75)));
        let c = plan(ScheduleKind::Full, 7, d, true);
        assert_eq!(c.events.len(), 7);
        assert_eq!(
            c.events
                .iter()
                .filter(|(_, k)| *k == EventKind::Cut)
                .count(),
            1
        );
        assert!(!a.events.iter().any(|(_, k)| *k == EventKind::Cut));
        let g = plan(ScheduleKind::Graceful, 7, d, true);
        assert!(g
            .events
            .iter()
            .all(|(_, k)| matches!(k, EventKind::Join | EventKind::Leave)));
        assert!(plan(ScheduleKind::None, 7, d, true).events.is_empty());
    }
}
