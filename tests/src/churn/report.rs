//! The per-second line while the run goes, and the summary (with its verdict) at the end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache_protocol::ring::{Ring, ShardSpec};

use super::check::FinalRead;
use super::client::{self, cmd, Conn};
use super::followed::{self, Timed};
use super::local::VNODES;
use super::model::{Anomaly, Kind, LossTracker};
use super::routers::{StatusConns, SPREAD_BOUND};
use super::schedule::{EventRecord, Fault};
use super::workload::{get, Shared};

/// `t=12s reads ok/err | writes ok/err | lost | stale | epoch E | migrating M`, once a second,
/// until `done` (bounded by `max_secs`). Reads and writes count the last second; lost (writes
/// found missing by reads and INCR/APPEND replies, each once) and stale are totals so far. With
/// several routers, also each one's epoch (`-` while it is down) and the stale-router errors.
pub async fn ticker(shared: Arc<Shared>, done: Arc<AtomicBool>, max_secs: u64) {
    let mut admin: Option<Conn> = None;
    let mut others = StatusConns::new(shared.routers.count());
    let c = &shared.counters;
    let mut last = [0u64; 4];
    for sec in 1..=max_secs {
        let when = shared.start + Duration::from_secs(sec);
        tokio::time::sleep_until(tokio::time::Instant::from_std(when)).await;
        if done.load(Ordering::Relaxed) {
            break;
        }
        let usable = matches!(&admin, Some(a) if !a.is_broken());
        if !usable {
            admin = Conn::connect(shared.router(), Duration::from_millis(500))
                .await
                .ok();
        }
        let status = match admin.as_mut() {
            Some(a) => match a
                .call(cmd(&["RING", "STATUS"]), Duration::from_millis(800))
                .await
            {
                Ok(r) => Some(client::parse_ring_status(&r)),
                Err(_) => None,
            },
            None => None,
        };
        let now = [
            get(&c.reads_ok),
            get(&c.reads_failed) + get(&c.reads_indet),
            get(&c.writes_ok),
            get(&c.writes_failed) + get(&c.writes_indet),
        ];
        let d: Vec<u64> = now.iter().zip(&last).map(|(n, l)| n - l).collect();
        last = now;
        let (epoch, migrating) = match status {
            Some(s) => (fmt(s.epoch), fmt(s.migrating)),
            None => ("?".to_string(), "?".to_string()),
        };
        let mut routers = String::new();
        if shared.routers.count() > 1 {
            let mut epochs = Vec::new();
            for i in 0..shared.routers.count() {
                epochs.push(if shared.routers.is_live(i) {
                    match others.status(i, shared.routers.addr(i)).await {
                        Ok(s) => fmt(s.epoch),
                        Err(_) => "?".to_string(),
                    }
                } else {
                    "-".to_string()
                });
            }
            routers = format!(
                " | router epochs {} | stale-router errors {}",
                epochs.join("/"),
                get(&c.stale_router_errors)
            );
        }
        println!(
            "t={sec}s reads {}/{} | writes {}/{} | lost {} | stale {} | epoch {epoch} | migrating {migrating}{routers}",
            d[0],
            d[1],
            d[2],
            d[3],
            get(&c.lost_known),
            get(&c.stale),
        );
    }
}

fn fmt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

/// Everything the summary is made of.
pub struct RunFacts<'a> {
    pub seed: u64,
    pub schedule: &'static str,
    /// `local` or `compose`.
    pub backend: &'static str,
    pub shards: usize,
    pub spares: usize,
    pub keys: usize,
    pub rate: u32,
    pub workers: usize,
    pub routers: usize,
    pub duration: Duration,
    pub shared: &'a Shared,
    pub records: &'a [EventRecord],
    pub history: &'a [Vec<String>],
    pub faults: &'a [Fault],
    pub crashes: &'a [String],
    /// Failovers the harness did not cause.
    pub notes: &'a [String],
    pub final_read: &'a FinalRead,
    pub final_migration: Result<Duration, String>,
    pub lat_migrating: Vec<u32>,
    pub lat_steady: Vec<u32>,
    pub lat_fault: Vec<u32>,
    pub lat_sweep: Vec<u32>,
    /// Requests sent while a change was being followed, for [`followed`].
    pub timed: Vec<Timed>,
    /// Load workers that panicked or did not finish in time (their operations are unchecked).
    pub workers_unfinished: usize,
}

/// Which shards ever owned a key, over every membership the run had.
struct Owners {
    rings: Vec<Ring>,
}

impl Owners {
    fn new(history: &[Vec<String>]) -> Owners {
        let mut seen: Vec<Vec<String>> = Vec::new();
        for m in history {
            let mut m = m.clone();
            m.sort();
            if !seen.contains(&m) {
                seen.push(m);
            }
        }
        let rings = seen
            .into_iter()
            .filter_map(|m| {
                let specs = m.into_iter().map(|id| ShardSpec::new(id, 1)).collect();
                Ring::new(0, VNODES, specs).ok()
            })
            .collect();
        Owners { rings }
    }

    fn of(&self, key: &str) -> HashSet<String> {
        self.rings
            .iter()
            .filter_map(|r| r.locate(key.as_bytes()).map(|s| s.id.clone()))
            .collect()
    }
}

/// A fault explains an anomaly if it was still going on after the missing write was sent
/// (in flight during a failover, it may be acknowledged by the old primary just after the fault),
/// began before the anomaly was seen, and hit a shard that held the key.
fn crash_caused(a: &Anomaly, faults: &[Fault], owners: &Owners) -> bool {
    let mut held: Option<HashSet<String>> = None;
    faults.iter().any(|f| {
        if f.end < a.since || f.start > a.at {
            return false;
        }
        match &f.shards {
            None => true,
            Some(ids) => {
                let held = held.get_or_insert_with(|| owners.of(&a.key));
                ids.iter().any(|id| held.contains(id))
            }
        }
    })
}

fn percentile(sorted: &[u32], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = (sorted.len() - 1) * p / 100;
    Some(f64::from(sorted[i]) / 1000.0)
}

fn latency_line(name: &str, mut v: Vec<u32>) -> String {
    v.sort_unstable();
    match (percentile(&v, 50), percentile(&v, 99)) {
        (Some(p50), Some(p99)) => format!(
            "{name}: p50 {p50:.2} ms, p99 {p99:.2} ms ({} requests)",
            v.len()
        ),
        _ => format!("{name}: n/a (no requests)"),
    }
}

fn family(key: &str) -> &'static str {
    if key.starts_with("churn-c-") {
        "incr"
    } else if key.starts_with("churn-a-") {
        "append"
    } else {
        "set"
    }
}

/// Prints the summary; returns whether the run passed.
pub fn summarize(f: RunFacts<'_>) -> bool {
    let shared = f.shared;
    let c = &shared.counters;
    let anomalies: Vec<Anomaly> = shared
        .anomalies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let owners = Owners::new(f.history);

    // (kind, crash?) -> total: stale reads count reads, resurrected count keys, the rest writes.
    let mut totals: BTreeMap<(Kind, bool), u64> = BTreeMap::new();
    // Lost writes, each once: a SET key's by position, a counter's or APPEND key's by the
    // largest shortfall seen; a stale read shows a lost write too (its effect is missing).
    let mut set_lost: HashMap<(String, usize), bool> = HashMap::new();
    let mut shortfall: HashMap<String, (u64, bool)> = HashMap::new();
    let mut during_run = LossTracker::default();
    let mut lost_during_run = 0u64;
    let mut resurrected: HashMap<String, bool> = HashMap::new();
    let mut examples: Vec<String> = Vec::new();
    let mut crash_examples: Vec<String> = Vec::new();
    let secs = |t: Instant| {
        if t >= shared.start {
            t.duration_since(shared.start).as_secs_f64()
        } else {
            -shared.start.duration_since(t).as_secs_f64()
        }
    };
    for a in &anomalies {
        let crash = crash_caused(a, f.faults, &owners);
        if !a.final_check {
            lost_during_run += during_run.add(a);
        }
        match a.kind {
            Kind::Lost | Kind::Stale => {
                if family(&a.key) == "set" {
                    set_lost.entry((a.key.clone(), a.write)).or_insert(crash);
                } else {
                    let e = shortfall.entry(a.key.clone()).or_insert((0, crash));
                    if a.count > e.0 {
                        *e = (a.count, crash);
                    }
                }
                if a.kind == Kind::Stale {
                    *totals.entry((Kind::Stale, crash)).or_default() += 1;
                }
            }
            Kind::Resurrected => {
                resurrected.entry(a.key.clone()).or_insert(crash);
            }
            // Reads, not increments; allowed, so not listed below either.
            Kind::Lagged => {
                *totals.entry((Kind::Lagged, crash)).or_default() += 1;
                continue;
            }
            _ => *totals.entry((a.kind, crash)).or_default() += a.count,
        }
        let repeat = a.kind == Kind::Lost && !a.final_check;
        // Graceful findings first: they are what fails the run.
        let list = if crash {
            &mut crash_examples
        } else {
            &mut examples
        };
        if list.len() < 8 && !repeat {
            list.push(format!(
                "  {} [{}] {} at t={:.1}s (since t={:.1}s): {}",
                a.kind.name(),
                if crash { "crash" } else { "graceful" },
                a.key,
                secs(a.at),
                secs(a.since),
                a.detail
            ));
        }
    }
    examples.extend(crash_examples);
    let mut lost_by_family: BTreeMap<&str, u64> = BTreeMap::new();
    for ((key, _), crash) in &set_lost {
        *totals.entry((Kind::Lost, *crash)).or_default() += 1;
        *lost_by_family.entry(family(key)).or_default() += 1;
    }
    for (key, (n, crash)) in &shortfall {
        *totals.entry((Kind::Lost, *crash)).or_default() += n;
        *lost_by_family.entry(family(key)).or_default() += n;
    }
    for crash in resurrected.values() {
        *totals.entry((Kind::Resurrected, *crash)).or_default() += 1;
    }
    let total = |k: Kind, crash: bool| totals.get(&(k, crash)).copied().unwrap_or(0);
    let others = |crash: bool| -> u64 {
        [
            Kind::Duplicated,
            Kind::Phantom,
            Kind::Reordered,
            Kind::Unexpected,
        ]
        .iter()
        .map(|k| total(*k, crash))
        .sum()
    };

    let reads = [get(&c.reads_ok), get(&c.reads_failed), get(&c.reads_indet)];
    let writes = [
        get(&c.writes_ok),
        get(&c.writes_failed),
        get(&c.writes_indet),
    ];
    let ops_ok = reads[0] + writes[0];
    let ops_failed = reads[1] + writes[1];
    let ops_indet = reads[2] + writes[2];
    let ops = ops_ok + ops_failed + ops_indet;

    println!();
    println!("== churn summary ==");
    println!(
        "seed {} | schedule {} | {} | {} shards (+{} spare) | {} keys | rate {}/s | {} workers | load {:.0}s",
        f.seed,
        f.schedule,
        f.backend,
        f.shards,
        f.spares,
        f.keys,
        f.rate,
        f.workers,
        f.duration.as_secs_f64()
    );
    println!("operations: {ops} (ok {ops_ok}, failed {ops_failed}, indeterminate {ops_indet})");
    println!(
        "  reads:  ok {}, failed {}, indeterminate {}",
        reads[0], reads[1], reads[2]
    );
    println!(
        "  writes: ok {}, failed {}, indeterminate {} ({} ambiguous error replies, e.g. router timeouts, counted as indeterminate)",
        writes[0],
        writes[1],
        writes[2],
        get(&c.ambiguous_errors)
    );
    if get(&c.connect_errors) > 0 {
        println!(
            "  failed connects to the router: {}",
            get(&c.connect_errors)
        );
    }
    let stale_router_errors = get(&c.stale_router_errors);
    let stale_router_graceful = get(&c.stale_router_errors_graceful);
    println!(
        "stale-router errors (WRONGSHARD/TRYAGAIN replies to the harness's requests): graceful {stale_router_graceful}, during a fault {}",
        stale_router_errors - stale_router_graceful
    );
    for e in shared
        .stale_router_examples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        println!("  {e}");
    }
    if f.routers > 1 {
        let r = &shared.routers;
        let per: Vec<String> = (0..f.routers)
            .map(|i| {
                format!(
                    "{} {} requests, {} stale-router errors",
                    super::backend::router_name(i),
                    get(&r.requests[i]),
                    get(&r.stale_errors[i])
                )
            })
            .collect();
        println!("  load per router: {}", per.join("; "));
    }
    println!(
        "lost writes: graceful {}, crash {} (set {}, incr {}, append {})",
        total(Kind::Lost, false),
        total(Kind::Lost, true),
        lost_by_family.get("set").copied().unwrap_or(0),
        lost_by_family.get("incr").copied().unwrap_or(0),
        lost_by_family.get("append").copied().unwrap_or(0),
    );
    println!(
        "  of which seen during the run (stale reads, INCR/APPEND replies): {lost_during_run}"
    );
    println!(
        "stale reads (reads): graceful {}, crash {}",
        total(Kind::Stale, false),
        total(Kind::Stale, true)
    );
    let lagged = total(Kind::Lagged, false) + total(Kind::Lagged, true);
    if let Some(bound) = shared.model.replica_lag {
        println!(
            "replica reads behind by at most {} ms (allowed: the router reads from replicas): {lagged} reads",
            bound.as_millis()
        );
    }
    println!(
        "resurrected keys (keys): graceful {}, crash {}",
        total(Kind::Resurrected, false),
        total(Kind::Resurrected, true)
    );
    println!(
        "duplicated / phantom / reordered / unexpected replies: graceful {} / {} / {} / {}, crash {}",
        total(Kind::Duplicated, false),
        total(Kind::Phantom, false),
        total(Kind::Reordered, false),
        total(Kind::Unexpected, false),
        others(true)
    );
    println!(
        "final state: {} of {} keys read through the router, {} unreadable",
        f.final_read.checked,
        f.keys,
        f.final_read.unreadable.len()
    );
    for (k, why) in f.final_read.unreadable.iter().take(5) {
        println!("  unreadable {k}: {why}");
    }
    if !examples.is_empty() {
        println!("first anomalies:");
        for e in &examples {
            println!("{e}");
        }
    }

    let failed_events = f.records.iter().filter(|r| r.result.is_err()).count();
    println!("events: {} ({} failed)", f.records.len(), failed_events);
    for r in f.records {
        match &r.result {
            Ok(what) => println!("  t={:>5.1}s {}: ok: {what}", r.at.as_secs_f64(), r.name),
            Err(why) => println!("  t={:>5.1}s {}: FAILED: {why}", r.at.as_secs_f64(), r.name),
        }
    }
    for c in f.crashes {
        println!("  process crash: {c}");
    }
    for n in f.notes {
        println!("  note: {n}");
    }

    let mut between_staying = 0;
    let moves: Vec<&EventRecord> = f.records.iter().filter(|r| r.moves.is_some()).collect();
    if moves.is_empty() {
        println!("keys moved: no membership change took effect");
    } else {
        println!(
            "keys moved (owner by RING LOCATE before and after, {} keys):",
            f.keys
        );
        for r in moves {
            match &r.moves {
                Some(Ok(m)) => {
                    between_staying += m.between_staying;
                    println!(
                        "  {} ({} shards before): moved {} = {:.2} x expected {:.0}; between staying shards {}",
                        r.name,
                        m.members_before,
                        m.moved,
                        m.moved as f64 / m.expected.max(1.0),
                        m.expected,
                        m.between_staying
                    );
                }
                Some(Err(e)) => println!("  {}: not measured: {e}", r.name),
                None => {}
            }
        }
    }
    let migrations: Vec<String> = f
        .records
        .iter()
        .filter_map(|r| {
            r.migration.as_ref().map(|m| match m {
                Ok(d) => format!("  {}: {:.2}s", r.name, d.as_secs_f64()),
                Err(e) => format!("  {}: {e}", r.name),
            })
        })
        .collect();
    if migrations.is_empty() {
        println!("migration time: no migration ran");
    } else {
        println!("migration time (RING JOIN/LEAVE +OK until migrating:0):");
        for m in migrations {
            println!("{m}");
        }
    }
    // Every change's time until all running routers served its epoch, and the worst.
    let mut spread_max: Option<Duration> = None;
    let mut spread_failed = 0;
    let spreads: Vec<&EventRecord> = f
        .records
        .iter()
        .filter(|r| r.epoch_spread.is_some())
        .collect();
    if !spreads.is_empty() {
        println!(
            "epoch spread (RING JOIN/LEAVE +OK until every running router reports the new epoch, {} router{}):",
            f.routers,
            if f.routers == 1 { "" } else { "s" }
        );
        for r in spreads {
            match &r.epoch_spread {
                Some(Ok(d)) => {
                    spread_max = spread_max.max(Some(*d));
                    println!("  {}: {} ms", r.name, d.as_millis());
                }
                Some(Err(e)) => {
                    spread_failed += 1;
                    println!("  {}: {e}", r.name);
                }
                None => {}
            }
        }
        match spread_max {
            Some(d) => println!("  max: {} ms", d.as_millis()),
            None => println!("  max: n/a (no change measured)"),
        }
    }
    // A change some router never followed counts as the bound (a lower bound on its spread).
    let spread_max_ms = if spread_failed > 0 {
        SPREAD_BOUND.as_millis()
    } else {
        spread_max.map_or(0, |d| d.as_millis())
    };
    match &f.final_migration {
        Ok(_) => {}
        Err(e) => println!("before the final check: {e}"),
    }
    println!("latency per request (pipelined batches, through the router; requests while a fault was in progress, or during a move with a fault injected, or during the harness's own RING LOCATE sweeps, apart):");
    let mut during = f.lat_migrating;
    let mut outside = f.lat_steady;
    during.sort_unstable();
    outside.sort_unstable();
    let outside_p99 = percentile(&outside, 99);
    let ratio = match (percentile(&during, 99), outside_p99) {
        (Some(d), Some(o)) if o > 0.0 => format!("{:.2}", d / o),
        _ => "n/a".to_string(),
    };
    println!(
        "  {}",
        latency_line("during migration (graceful changes)", during)
    );
    println!("  {}", latency_line("outside migration", outside));
    println!("  {}", latency_line("during a fault", f.lat_fault));
    println!(
        "  {}",
        latency_line("during the harness's RING LOCATE sweeps", f.lat_sweep)
    );
    println!("  p99 during / outside migration: {ratio}");
    let follows: Vec<followed::Followed> = f
        .records
        .iter()
        .flat_map(|r| r.followed.iter().copied())
        .collect();
    let just_learnt = followed::followed_latencies(&follows, &f.timed);
    let (followed_line, followed_fields) =
        followed::figure(f.routers, follows.len(), &just_learnt, outside_p99);
    println!("  {followed_line}");

    let mut reasons = Vec::new();
    if total(Kind::Lost, false) > 0 {
        reasons.push("acknowledged writes lost outside any fault");
    }
    if total(Kind::Stale, false) > 0 {
        reasons.push("stale reads outside any fault");
    }
    if total(Kind::Resurrected, false) > 0 {
        reasons.push("deleted keys came back outside any fault");
    }
    if others(false) > 0 {
        reasons.push("duplicated, phantom, reordered writes or unexpected replies");
    }
    if between_staying > 0 {
        reasons.push("keys moved between shards that both stay");
    }
    if !f.crashes.is_empty() {
        reasons.push("a process exited on its own");
    }
    if ops_ok == 0 {
        reasons.push("no operation succeeded");
    }
    // What the run could not check counts against it: an unread key may be lost or stale.
    if !f.final_read.unreadable.is_empty() {
        reasons.push("keys unreadable at the end, so their state is unverified");
    }
    if f.final_migration.is_err() {
        reasons.push("migrations had not finished before the final check");
    }
    if f.workers_unfinished > 0 {
        reasons.push("load workers panicked or did not finish");
    }
    if f.routers > 1 && stale_router_graceful > 0 {
        reasons.push(
            "a router answered by an old ring outside any fault (WRONGSHARD/TRYAGAIN errors)",
        );
    }
    if f.routers > 1 && spread_failed > 0 {
        reasons.push("not every router followed a membership change within the bound");
    }
    if !f.records.is_empty() && failed_events == f.records.len() {
        reasons.push("every membership event failed: nothing was tested");
    }
    let pass = reasons.is_empty();
    println!("seed: {}", f.seed);
    println!(
        "churn-result seed={} schedule={} backend={} ops={ops} ops_ok={ops_ok} ops_failed={ops_failed} ops_indeterminate={ops_indet} \
         lost_graceful={} lost_crash={} stale_graceful={} stale_crash={} resurrected_graceful={} resurrected_crash={} \
         other_graceful={} other_crash={} replica_lagged={lagged} unreadable={} events={} events_failed={failed_events} \
         routers={} stale_router_errors={stale_router_errors} stale_router_errors_graceful={stale_router_graceful} epoch_spread_max_ms={spread_max_ms} epoch_spread_failed={spread_failed} {followed_fields} verdict={}",
        f.seed,
        f.schedule,
        f.backend,
        total(Kind::Lost, false),
        total(Kind::Lost, true),
        total(Kind::Stale, false),
        total(Kind::Stale, true),
        total(Kind::Resurrected, false),
        total(Kind::Resurrected, true),
        others(false),
        others(true),
        f.final_read.unreadable.len(),
        f.records.len(),
        f.routers,
        if pass { "pass" } else { "fail" }
    );
    if pass && failed_events > 0 {
        println!(
            "RESULT: PASS, but {failed_events} of {} events failed (see above): what they would test was not tested",
            f.records.len()
        );
    } else if pass {
        println!("RESULT: PASS");
    } else {
        println!("RESULT: FAIL: {}", reasons.join("; "));
    }
    pass
}

/// Seconds since `start`, for log lines.
pub fn since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
