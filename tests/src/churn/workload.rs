//! The load: worker tasks sending pipelined batches through the router at a bounded rate, and
//! classifying each request's outcome against the model as its reply arrives. With several
//! routers, worker `w` uses router `w` modulo their number while it runs, another meanwhile.
//!
//! Worker `w` is the only writer of the keys whose index is `w` modulo the worker count; any
//! worker reads any SET key. Within a batch a key is written at most once, and a counter's GET
//! is sent right before its INCR ("read before written").

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringcache_protocol::Reply;

use super::client::{as_u64, cmd, is_ok, Answer, Cmd, Conn};
use super::followed::Timed;
use super::model::{self, Anomaly, Family, Floor, Keys, Kind, LossTracker, Model, Outcome};
use super::routers::{note_stale_router_error, Routers};

/// How long a batch may wait for its replies: above the router's 2 s request timeout, so the
/// router's own timeout error normally arrives first.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BATCH: u64 = 32;

/// Counters everybody updates (the per-second line and the summary read them).
#[derive(Default)]
pub struct Counters {
    pub reads_ok: AtomicU64,
    pub reads_failed: AtomicU64,
    pub reads_indet: AtomicU64,
    pub writes_ok: AtomicU64,
    pub writes_failed: AtomicU64,
    pub writes_indet: AtomicU64,
    /// Error replies counted as indeterminate because they do not say whether the write ran.
    pub ambiguous_errors: AtomicU64,
    pub connect_errors: AtomicU64,
    /// Error replies from a router routing by an older ring (`WRONGSHARD`, `TRYAGAIN`), and
    /// those of them received while no fault was in progress.
    pub stale_router_errors: AtomicU64,
    pub stale_router_errors_graceful: AtomicU64,
    /// Anomalies seen during the run, by kind (for the per-second line).
    pub stale: AtomicU64,
    /// Lost writes known so far (each counted once), from reads, write replies and the final check.
    pub lost_known: AtomicU64,
    pub other_anomalies: AtomicU64,
    /// Stale replica reads within the router's lag bound (not anomalies).
    pub lagged: AtomicU64,
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// State shared by the load, the per-second line, the event driver and the final check.
pub struct Shared {
    pub routers: Routers,
    pub model: Model,
    pub counters: Counters,
    pub anomalies: Mutex<Vec<Anomaly>>,
    /// The first stale-router error replies (when, which router, the text), for the summary.
    pub stale_router_examples: Mutex<Vec<String>>,
    pub losses: Mutex<LossTracker>,
    /// The load runs from `start` to `end`.
    pub start: Instant,
    pub end: Instant,
    /// Set by Ctrl-C: stop early, clean up.
    pub stop: AtomicBool,
    /// Between a JOIN/LEAVE's +OK and `migrating:0` (or while RING STATUS says migrating > 0).
    pub in_migration: AtomicBool,
    /// Faults in progress (a kill until its failover, a pause, a cut, a router restart): their
    /// latencies are kept apart, so neither migration nor steady figures include them.
    pub in_fault: AtomicUsize,
    /// The harness's own RING LOCATE sweeps (10,000 requests in a burst) in progress: their
    /// latencies are kept apart too, so the harness's bookkeeping weighs on no figure.
    pub in_sweep: AtomicUsize,
    /// Epoch-spread pollers running (each until its routers' first second after the change is
    /// over): the load keeps its requests' timestamps meanwhile, for the "followed" figure.
    pub watching: AtomicUsize,
    pub workers: usize,
}

impl Shared {
    /// The first running router's address (preload, per-second line, final check).
    pub fn router(&self) -> std::net::SocketAddr {
        self.routers.addr(self.routers.pick(0, 0))
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn record(&self, a: Anomaly) {
        let c = &self.counters;
        let new = self
            .losses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&a);
        c.lost_known.fetch_add(new, Ordering::Relaxed);
        match (a.kind, a.final_check) {
            (_, true) => {}
            (Kind::Stale, false) => bump(&c.stale),
            (Kind::Lagged, _) => bump(&c.lagged),
            // Every later INCR/APPEND reply shows the same loss again: keep only news.
            (Kind::Lost, false) if new == 0 => return,
            (Kind::Lost, false) => {}
            (_, false) => bump(&c.other_anomalies),
        }
        self.anomalies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(a);
    }
}

/// What one worker measured.
#[derive(Default)]
pub struct WorkerStats {
    /// Per-request latency in microseconds, during a migration / outside one.
    pub lat_migrating: Vec<u32>,
    pub lat_steady: Vec<u32>,
    /// While a fault was in progress (migrating or not).
    pub lat_fault: Vec<u32>,
    /// During the harness's RING LOCATE sweeps (and no fault).
    pub lat_sweep: Vec<u32>,
    /// With several routers, while a change is being followed: the requests of `lat_migrating`
    /// and `lat_steady` with when they were sent and through which router.
    pub timed: Vec<Timed>,
}

/// Marks something in progress while alive: a fault ([`Shared::in_fault`]), a sweep
/// ([`Shared::in_sweep`]) or an epoch-spread poller ([`Shared::watching`]).
pub struct Mark<'a>(&'a AtomicUsize);

impl<'a> Mark<'a> {
    pub fn new(counter: &'a AtomicUsize) -> Mark<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Mark(counter)
    }
}

impl Drop for Mark<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How an answer is counted.
enum Class {
    Ok(Reply),
    Failed,
    Indet,
}

/// Error replies that do not say whether the request ran (the router timed out or lost the
/// upstream connection with it in flight) are indeterminate, not failed.
pub fn ambiguous_error(e: &str) -> bool {
    let l = e.to_ascii_lowercase();
    [
        "timed out",
        "timeout",
        "connection lost",
        "shutting down",
        "broken pipe",
        "reset",
    ]
    .iter()
    .any(|p| l.contains(p))
}

fn classify(a: Answer, counters: &Counters) -> Class {
    match a {
        Answer::NoReply(_) => Class::Indet,
        Answer::Reply(Reply::Error(e)) if ambiguous_error(&e) => {
            bump(&counters.ambiguous_errors);
            Class::Indet
        }
        Answer::Reply(Reply::Error(_)) => Class::Failed,
        Answer::Reply(r) => Class::Ok(r),
    }
}

/// One request in a batch, with what the check needs.
enum Op {
    Set {
        i: usize,
        version: usize,
    },
    Del {
        i: usize,
        version: usize,
    },
    Get {
        i: usize,
        floor: Floor,
    },
    /// `acked`: increments (or tokens) acknowledged when the request was sent.
    CtrGet {
        i: usize,
        acked: usize,
    },
    Incr {
        i: usize,
        seq: usize,
        acked: usize,
    },
    Append {
        i: usize,
        seq: usize,
        acked: usize,
    },
}

impl Op {
    fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. } | Op::CtrGet { .. })
    }
}

/// The keys of one family that worker `w` of `n` writes.
fn owned(count: usize, w: usize, n: usize) -> Vec<usize> {
    (w..count).step_by(n.max(1)).collect()
}

/// Writes version 1 of every SET key before the clock starts, so there is data to move.
pub async fn preload(shared: &Shared) -> Result<(), String> {
    let n = shared.model.keys.n_set;
    let mut conn = Conn::connect(shared.router(), CONNECT_TIMEOUT).await?;
    let chunk = 500;
    for base in (0..n).step_by(chunk) {
        let idx: Vec<usize> = (base..(base + chunk).min(n)).collect();
        let mut cmds = Vec::with_capacity(idx.len());
        let mut versions = Vec::with_capacity(idx.len());
        for &i in &idx {
            let v = shared.model.issue(Family::Set, i, false);
            cmds.push(cmd(&[
                "SET".to_string(),
                Keys::set_key(i),
                model::set_value(i, i % shared.workers, v),
            ]));
            versions.push(v);
        }
        let answers = conn.pipeline(&cmds, OP_TIMEOUT).await;
        let mut failed = 0;
        for ((i, v), (a, at)) in idx.iter().zip(versions).zip(answers) {
            if let Answer::Reply(Reply::Error(e)) = &a {
                note_stale_router_error(shared, shared.routers.pick(0, 0), e, at);
            }
            let outcome = match classify(a, &shared.counters) {
                Class::Ok(r) if is_ok(&r) => Outcome::Ok,
                Class::Ok(_) | Class::Indet => Outcome::Indeterminate,
                Class::Failed => Outcome::Failed,
            };
            if outcome != Outcome::Ok {
                failed += 1;
            }
            count_write(&shared.counters, outcome);
            shared.model.resolve(Family::Set, *i, v, outcome, at);
        }
        if failed > 0 {
            return Err(format!(
                "{failed} of {} preload SETs did not succeed",
                idx.len()
            ));
        }
    }
    Ok(())
}

fn count_write(c: &Counters, outcome: Outcome) {
    match outcome {
        Outcome::Ok => bump(&c.writes_ok),
        Outcome::Failed => bump(&c.writes_failed),
        Outcome::Indeterminate | Outcome::Pending => bump(&c.writes_indet),
    }
}

pub async fn worker(w: usize, shared: Arc<Shared>, rate: f64, seed: u64) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let mut rng = StdRng::seed_from_u64(seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let keys = shared.model.keys;
    let n = shared.workers;
    let own_set = owned(keys.n_set, w, n);
    let own_ctr = owned(keys.n_ctr, w, n);
    let own_app = owned(keys.n_app, w, n);
    let mut conn: Option<Conn> = None;
    let routers = &shared.routers;
    let preferred = w % routers.count();
    // The router `conn` is on, and how many running routers to pass over after connect errors.
    let mut on = preferred;
    let mut skip = 0;
    let mut issued: u64 = 0;
    let total = shared.end.saturating_duration_since(shared.start);
    // Bounded: at most one iteration per millisecond of the run, plus slack.
    let max_iters = total.as_millis() as u64 * 2 + 10_000;
    for _ in 0..max_iters {
        let now = Instant::now();
        if shared.stopping() || now >= shared.end {
            break;
        }
        let target = (rate * now.saturating_duration_since(shared.start).as_secs_f64()) as u64;
        // After a stall, drop the backlog instead of bursting through it.
        if target > issued + (rate as u64).max(MAX_BATCH) {
            issued = target.saturating_sub(MAX_BATCH);
        }
        let due = target.saturating_sub(issued);
        if due == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        // Between batches (nothing in flight): leave a router the driver took down, and go
        // back to this worker's own once it runs again.
        let want = routers.pick(preferred, skip);
        let usable = match &conn {
            Some(c) => !c.is_broken() && on == want,
            None => false,
        };
        if !usable {
            match Conn::connect(routers.addr(want), CONNECT_TIMEOUT).await {
                Ok(c) => {
                    conn = Some(c);
                    on = want;
                    skip = 0;
                }
                Err(_) => {
                    bump(&shared.counters.connect_errors);
                    conn = None;
                    skip += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let n_ops = due.min(MAX_BATCH) as usize;
        let (ops, cmds) = build_batch(&shared, w, n_ops, &mut rng, &own_set, &own_ctr, &own_app);
        // Sampled at send time: a request sent inside a router's first second counts even if
        // its reply comes after the poller stopped watching.
        let watched = routers.count() > 1 && shared.watching.load(Ordering::Relaxed) > 0;
        let sent = Instant::now();
        let answers = c.pipeline(&cmds, OP_TIMEOUT).await;
        issued += ops.len() as u64;
        routers.count_request(on, ops.len() as u64);
        for (op, (answer, at)) in ops.into_iter().zip(answers) {
            if let Answer::Reply(Reply::Error(e)) = &answer {
                note_stale_router_error(&shared, on, e, at);
            }
            let us = at
                .saturating_duration_since(sent)
                .as_micros()
                .min(u32::MAX as u128) as u32;
            if shared.in_fault.load(Ordering::Relaxed) > 0 {
                stats.lat_fault.push(us);
            } else if shared.in_sweep.load(Ordering::Relaxed) > 0 {
                stats.lat_sweep.push(us);
            } else {
                if watched {
                    stats.timed.push(Timed {
                        sent,
                        us,
                        router: on,
                    });
                }
                if shared.in_migration.load(Ordering::Relaxed) {
                    stats.lat_migrating.push(us);
                } else {
                    stats.lat_steady.push(us);
                }
            }
            apply(&shared, op, answer, at);
        }
    }
    stats
}

#[allow(clippy::too_many_arguments)]
fn build_batch(
    shared: &Shared,
    w: usize,
    n_ops: usize,
    rng: &mut StdRng,
    own_set: &[usize],
    own_ctr: &[usize],
    own_app: &[usize],
) -> (Vec<Op>, Vec<Cmd>) {
    let model = &shared.model;
    let keys = model.keys;
    let mut ops = Vec::with_capacity(n_ops + 1);
    let mut cmds = Vec::with_capacity(n_ops + 1);
    let mut written: Vec<(Family, usize)> = Vec::with_capacity(n_ops);
    let pick = |rng: &mut StdRng, v: &[usize]| -> Option<usize> {
        (!v.is_empty()).then(|| v[rng.gen_range(0..v.len())])
    };
    for _ in 0..n_ops {
        let roll = rng.gen_range(0..100u32);
        let (family, own) = match roll {
            0..=34 => (Family::Set, own_set),
            35..=49 => (Family::Ctr, own_ctr),
            50..=69 => (Family::App, own_app),
            _ => (Family::Set, &[][..]),
        };
        let target = pick(rng, own).filter(|i| !written.contains(&(family, *i)));
        match (family, target) {
            (Family::Set, Some(i)) if roll >= 30 => {
                let version = model.issue(Family::Set, i, true);
                cmds.push(cmd(&["DEL".to_string(), Keys::set_key(i)]));
                ops.push(Op::Del { i, version });
                written.push((family, i));
            }
            (Family::Set, Some(i)) => {
                let version = model.issue(Family::Set, i, false);
                let value = model::set_value(i, w, version);
                cmds.push(cmd(&["SET".to_string(), Keys::set_key(i), value]));
                ops.push(Op::Set { i, version });
                written.push((family, i));
            }
            (Family::Ctr, Some(i)) => {
                let acked = model.acked(Family::Ctr, i);
                cmds.push(cmd(&["GET".to_string(), Keys::ctr_key(i)]));
                ops.push(Op::CtrGet { i, acked });
                let seq = model.issue(Family::Ctr, i, false);
                cmds.push(cmd(&["INCR".to_string(), Keys::ctr_key(i)]));
                ops.push(Op::Incr { i, seq, acked });
                written.push((family, i));
            }
            (Family::App, Some(i)) => {
                let acked = model.acked(Family::App, i);
                let seq = model.issue(Family::App, i, false);
                cmds.push(cmd(&[
                    "APPEND".to_string(),
                    Keys::app_key(i),
                    model::token(seq),
                ]));
                ops.push(Op::Append { i, seq, acked });
                written.push((family, i));
            }
            _ => {
                // A read of any SET key (also the fallback when this worker owns none).
                let i = rng.gen_range(0..keys.n_set);
                let floor = model.floor(Family::Set, i);
                cmds.push(cmd(&["GET".to_string(), Keys::set_key(i)]));
                ops.push(Op::Get { i, floor });
            }
        }
    }
    (ops, cmds)
}

fn unexpected(shared: &Shared, key: String, what: &str, r: &Reply, at: Instant) {
    shared.record(Anomaly {
        kind: Kind::Unexpected,
        key,
        count: 1,
        since: shared.start,
        at,
        detail: format!("unexpected reply to {what}: {}", super::client::brief(r)),
        final_check: false,
        write: 0,
    });
}

/// Classifies one answer, updates the model and checks the value against it.
fn apply(shared: &Shared, op: Op, answer: Answer, at: Instant) {
    let model = &shared.model;
    let c = &shared.counters;
    let class = classify(answer, c);
    if op.is_write() {
        let outcome = match &class {
            Class::Ok(_) => Outcome::Ok,
            Class::Failed => Outcome::Failed,
            Class::Indet => Outcome::Indeterminate,
        };
        count_write(c, outcome);
    } else {
        match &class {
            Class::Ok(_) => bump(&c.reads_ok),
            Class::Failed => bump(&c.reads_failed),
            Class::Indet => bump(&c.reads_indet),
        }
    }
    let start = shared.start;
    match op {
        Op::Set { i, version } | Op::Del { i, version } => {
            let outcome = match &class {
                Class::Ok(r) if is_ok(r) || matches!(r, Reply::Int(0 | 1)) => Outcome::Ok,
                Class::Ok(r) => {
                    unexpected(shared, Keys::set_key(i), "SET/DEL", r, at);
                    Outcome::Indeterminate
                }
                Class::Failed => Outcome::Failed,
                Class::Indet => Outcome::Indeterminate,
            };
            model.resolve(Family::Set, i, version, outcome, at);
        }
        Op::Get { i, floor } => {
            let value = match &class {
                Class::Ok(Reply::Bulk(b)) => Some(Some(&b[..])),
                Class::Ok(Reply::Nil) => Some(None),
                Class::Ok(r) => {
                    unexpected(shared, Keys::set_key(i), "GET", r, at);
                    None
                }
                _ => None,
            };
            if let Some(v) = value {
                if let Some(a) = model.check_set_read(i, floor, v, at, start) {
                    shared.record(a);
                }
            }
        }
        Op::CtrGet { i, acked } => match &class {
            Class::Ok(Reply::Nil) => {
                if let Some(a) = model.check_counter(i, acked, 0, Kind::Stale, at, start) {
                    shared.record(a);
                }
            }
            Class::Ok(r) => match as_u64(r) {
                Some(v) => {
                    if let Some(a) = model.check_counter(i, acked, v, Kind::Stale, at, start) {
                        shared.record(a);
                    }
                }
                None => unexpected(shared, Keys::ctr_key(i), "GET", r, at),
            },
            _ => {}
        },
        Op::Incr { i, seq, acked } => {
            let outcome = match &class {
                Class::Ok(Reply::Int(n)) if *n >= 1 => {
                    // The value before this increment.
                    let before = (*n - 1) as u64;
                    if let Some(a) = model.check_counter(i, acked, before, Kind::Lost, at, start) {
                        shared.record(a);
                    }
                    Outcome::Ok
                }
                Class::Ok(r) => {
                    unexpected(shared, Keys::ctr_key(i), "INCR", r, at);
                    Outcome::Indeterminate
                }
                Class::Failed => Outcome::Failed,
                Class::Indet => Outcome::Indeterminate,
            };
            model.resolve(Family::Ctr, i, seq, outcome, at);
        }
        Op::Append { i, seq, acked } => {
            let outcome = match &class {
                Class::Ok(Reply::Int(n)) if *n >= 0 => {
                    // Resolve first so this token counts among those that may have run.
                    model.resolve(Family::App, i, seq, Outcome::Ok, at);
                    if let Some(a) = model.check_append_reply(i, acked, *n as u64, at, start) {
                        shared.record(a);
                    }
                    Outcome::Ok
                }
                Class::Ok(r) => {
                    unexpected(shared, Keys::app_key(i), "APPEND", r, at);
                    Outcome::Indeterminate
                }
                Class::Failed => Outcome::Failed,
                Class::Indet => Outcome::Indeterminate,
            };
            model.resolve(Family::App, i, seq, outcome, at);
        }
    }
}
