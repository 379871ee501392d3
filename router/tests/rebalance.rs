#![allow(clippy::unwrap_used)]
//! Membership changes end to end, in process: real nodes on 127.0.0.1 port 0, a router in front,
//! a paced write load (SET of unique values, INCR, APPEND) while a shard joins and another
//! leaves, then every acknowledged write is read back through the router and every node's keys
//! are checked against the ring.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_client::Client as NodeConn;
use ringcache_protocol::ring::{Ring, ShardSpec};
use ringcache_protocol::Reply;
use ringcache_router::RouterConfig;

const VNODES: u32 = ringcache_protocol::ring::DEFAULT_VNODES;

mod support;

use support::{eventually, start_router, Cluster, NodeRuntime, Timeouts, T};

impl Cluster {
    /// Nodes for `ids` on their own runtimes, the first `members` in the router's config.
    async fn start(ids: &[&str], members: usize, tune: impl FnOnce(&mut RouterConfig)) -> Cluster {
        Cluster::builder(ids)
            .members(members)
            .timeouts(Timeouts::MIGRATION)
            .node_runtime(NodeRuntime::Own)
            .start(tune)
            .await
    }

    async fn client(&self) -> NodeConn {
        NodeConn::connect(&self.router.to_string(), T)
            .await
            .unwrap()
    }
}

fn text(r: &Reply) -> String {
    match r {
        Reply::Bulk(b) | Reply::Verbatim(b) => String::from_utf8_lossy(b).into_owned(),
        Reply::Status(s) => s.to_string(),
        Reply::StatusOwned(s) | Reply::Error(s) => s.clone(),
        Reply::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn field(status: &str, name: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

async fn status_of(router: SocketAddr) -> Option<String> {
    let mut c = NodeConn::connect(&router.to_string(), T).await.ok()?;
    Some(text(&c.call(&["RING", "STATUS"], T).await.ok()?))
}

async fn ring_status(c: &mut NodeConn) -> String {
    text(&c.call(&["RING", "STATUS"], T).await.unwrap())
}

/// Waits for `migrating:0`; returns the final status text.
async fn wait_migrated(c: &mut NodeConn, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let st = ring_status(c).await;
        if field(&st, "migrating").as_deref() == Some("0") {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "still migrating after {timeout:?}:\n{st}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cmd(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

/// The node's `ringcache_keys_migrated` (keys it sent away).
async fn migrated_out(addr: &str) -> u64 {
    let mut c = NodeConn::connect(addr, T).await.unwrap();
    let info = text(&c.call(&["INFO", "cluster"], T).await.unwrap());
    field(&info, "ringcache_keys_migrated")
        .unwrap()
        .parse()
        .unwrap()
}

async fn node_keys(addr: &str) -> Vec<String> {
    let mut c = NodeConn::connect(addr, T).await.unwrap();
    match c.call(&["KEYS", "*"], T).await.unwrap() {
        Reply::Array(v) => v.iter().map(text).collect(),
        other => panic!("KEYS on {addr}: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The data set and the load
// ---------------------------------------------------------------------------------------------

const STRINGS: usize = 12_000;
const COUNTERS: usize = 200;
const LOGS: usize = 200;
const WORKERS: usize = 8;

fn all_keys() -> Vec<String> {
    (0..STRINGS)
        .map(|i| format!("k:{i}"))
        .chain((0..COUNTERS).map(|i| format!("ctr:{i}")))
        .chain((0..LOGS).map(|i| format!("log:{i}")))
        .collect()
}

async fn preload(c: &mut NodeConn) {
    let mut cmds: Vec<Vec<Bytes>> = (0..STRINGS)
        .map(|i| cmd(&["SET", &format!("k:{i}"), &format!("v0-{i}")]))
        .collect();
    cmds.extend((0..COUNTERS).map(|i| cmd(&["SET", &format!("ctr:{i}"), "0"])));
    cmds.extend((0..LOGS).map(|i| cmd(&["SET", &format!("log:{i}"), "start"])));
    for chunk in cmds.chunks(1000) {
        for r in c.pipeline(chunk, T).await.unwrap() {
            assert!(!r.is_error(), "preload: {r:?}");
        }
    }
}

/// What one worker knows it did: for each key it owns, the last acknowledged value and values
/// attempted after it whose outcome is unknown (an error reply or a lost connection).
#[derive(Default)]
struct Ledger {
    strings: HashMap<usize, (String, Vec<String>)>,
    /// (acknowledged INCRs, INCRs with unknown outcome)
    counters: HashMap<usize, (i64, i64)>,
    /// (acknowledged tokens in order, tokens with unknown outcome)
    logs: HashMap<usize, (Vec<String>, Vec<String>)>,
    ops: u64,
    errors: Vec<String>,
}

/// One paced worker: owns keys `i % WORKERS == w`, one request in flight at a time.
async fn worker(router: SocketAddr, w: usize, per_sec: u64, stop: Arc<AtomicBool>) -> Ledger {
    let mut c = NodeConn::connect(&router.to_string(), T).await.unwrap();
    let mut l = Ledger::default();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_sec));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let token = format!("w{w}-{n}");
        match n % 5 {
            0 => {
                let j = (n as usize * 7 + w) % COUNTERS / WORKERS * WORKERS + w;
                let j = j.min(COUNTERS - WORKERS + w);
                let key = format!("ctr:{j}");
                let e = l.counters.entry(j).or_default();
                match c.call(&["INCR", &key], T).await {
                    Ok(Reply::Int(_)) => e.0 += 1,
                    other => {
                        e.1 += 1;
                        l.errors.push(format!("INCR {key}: {other:?}"));
                    }
                }
            }
            1 => {
                let j = (n as usize * 13 + w) % LOGS / WORKERS * WORKERS + w;
                let j = j.min(LOGS - WORKERS + w);
                let key = format!("log:{j}");
                let e = l.logs.entry(j).or_default();
                match c.call(&["APPEND", &key, &format!(",{token}")], T).await {
                    Ok(Reply::Int(_)) => {
                        e.0.push(token);
                    }
                    other => {
                        e.1.push(token);
                        l.errors.push(format!("APPEND {key}: {other:?}"));
                    }
                }
            }
            _ => {
                let i = (n as usize * 31 + w) % STRINGS / WORKERS * WORKERS + w;
                let i = i.min(STRINGS - WORKERS + w);
                let key = format!("k:{i}");
                let e = l
                    .strings
                    .entry(i)
                    .or_insert_with(|| (format!("v0-{i}"), Vec::new()));
                match c.call(&["SET", &key, &token], T).await {
                    Ok(Reply::Status(_) | Reply::StatusOwned(_)) => *e = (token, Vec::new()),
                    other => {
                        e.1.push(token);
                        l.errors.push(format!("SET {key}: {other:?}"));
                    }
                }
            }
        }
        l.ops += 1;
        if l.ops.is_multiple_of(64) {
            // Reconnect if a failure broke the connection (the router may be restarting: the
            // calls until it is back fail and are counted as unknown outcomes).
            if c.call(&["PING"], T).await.is_err() {
                if let Ok(fresh) = NodeConn::connect(&router.to_string(), T).await {
                    c = fresh;
                }
            }
        }
    }
    l
}

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Ledger>>,
    started: Instant,
}

impl Load {
    fn start(router: SocketAddr, ops_per_sec: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..WORKERS)
            .map(|w| {
                tokio::spawn(worker(
                    router,
                    w,
                    ops_per_sec / WORKERS as u64,
                    stop.clone(),
                ))
            })
            .collect();
        Load {
            stop,
            tasks,
            started: Instant::now(),
        }
    }

    async fn finish(self) -> (Vec<Ledger>, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        let mut out = Vec::new();
        for t in self.tasks {
            out.push(t.await.unwrap());
        }
        (out, secs)
    }
}

/// Reads every key back through the router and checks every acknowledged write is there.
async fn check_data(c: &mut NodeConn, ledgers: &[Ledger]) {
    let keys = all_keys();
    let mut values: HashMap<String, Reply> = HashMap::new();
    for chunk in keys.chunks(1000) {
        let cmds: Vec<Vec<Bytes>> = chunk.iter().map(|k| cmd(&["GET", k])).collect();
        for (k, r) in chunk.iter().zip(c.pipeline(&cmds, T).await.unwrap()) {
            values.insert(k.clone(), r);
        }
    }
    let get = |k: &str| text(&values[k]);
    let mut lost = Vec::new();
    for i in 0..STRINGS {
        let k = format!("k:{i}");
        let got = get(&k);
        let owner = ledgers.iter().find_map(|l| l.strings.get(&i));
        let ok = match owner {
            None => got == format!("v0-{i}"),
            Some((acked, unknown)) => got == *acked || unknown.contains(&got),
        };
        if !ok {
            lost.push(format!("{k} = {got:?}, expected {owner:?}"));
        }
    }
    for j in 0..COUNTERS {
        let k = format!("ctr:{j}");
        let got: i64 = get(&k).parse().unwrap_or(-1);
        let (acked, unknown) = ledgers
            .iter()
            .find_map(|l| l.counters.get(&j).copied())
            .unwrap_or((0, 0));
        if got < acked || got > acked + unknown {
            lost.push(format!(
                "{k} = {got}, acknowledged INCRs {acked} (+{unknown} unknown)"
            ));
        }
    }
    for j in 0..LOGS {
        let k = format!("log:{j}");
        let got = get(&k);
        let tokens: Vec<&str> = got.split(',').skip(1).collect();
        let (acked, unknown) = ledgers
            .iter()
            .find_map(|l| l.logs.get(&j).cloned())
            .unwrap_or_default();
        // Every acknowledged token exactly once, in order; unknown ones at most once.
        let kept: Vec<&str> = tokens
            .iter()
            .copied()
            .filter(|t| !unknown.iter().any(|u| u == t))
            .collect();
        if !got.starts_with("start") || kept != acked.iter().map(String::as_str).collect::<Vec<_>>()
        {
            lost.push(format!("{k} = {got:?}, acknowledged {acked:?}"));
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost or wrong, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Every key each node holds is owned by it under `ring`; returns keys per shard.
async fn check_placement(cl: &Cluster, ring: &Ring, ids: &[&str]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut total = 0;
    for id in ids {
        let keys = node_keys(&cl.addr(id)).await;
        let wrong: Vec<&String> = keys
            .iter()
            .filter(|k| ring.locate(k.as_bytes()).map(|s| s.id.as_str()) != Some(*id))
            .collect();
        assert!(
            wrong.is_empty(),
            "{} keys on shard {id} that it does not own, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        total += keys.len();
        counts.insert(id.to_string(), keys.len());
    }
    assert_eq!(
        total,
        STRINGS + COUNTERS + LOGS,
        "keys in the cluster: {counts:?}"
    );
    counts
}

fn ring_of(epoch: u64, ids: &[&str]) -> Ring {
    Ring::new(
        epoch,
        VNODES,
        ids.iter().map(|id| ShardSpec::new(*id, 1)).collect(),
    )
    .unwrap()
}

fn epoch_of(status: &str) -> u64 {
    field(status, "epoch").unwrap().parse().unwrap()
}

/// Keys of the data set whose owner differs between `before` and `after`.
fn changed_owner(before: &Ring, after: &Ring) -> usize {
    all_keys()
        .iter()
        .filter(|k| before.locate(k.as_bytes()) != after.locate(k.as_bytes()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_then_leave_under_load_loses_nothing_and_moves_only_what_changed_owner() {
    let cl = Cluster::start(&["a", "b", "c", "d"], 3, |c| {
        c.ring.migration_batch = 500;
    })
    .await;
    let mut admin = cl.client().await;
    preload(&mut admin).await;
    let before_epoch = epoch_of(&ring_status(&mut admin).await);
    let old_ring = ring_of(before_epoch, &["a", "b", "c"]);

    // --- join d under load ---
    let out_before: Vec<u64> = futures::future::join_all(["a", "b", "c", "d"].map(|id| {
        let addr = cl.addr(id);
        async move { migrated_out(&addr).await }
    }))
    .await;
    let load = Load::start(cl.router, 4_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let join = admin
        .call(&["RING", "JOIN", "d", &cl.addr("d")], T)
        .await
        .unwrap();
    assert_eq!(text(&join), "OK", "RING JOIN: {join:?}");
    // The new epoch is in effect within a few round trips (the quiesce does not wait on the
    // admin connection's own pending RING JOIN).
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "RING JOIN took {:?}",
        asked.elapsed()
    );
    // A second change while this one runs is refused.
    let busy = admin.call(&["RING", "LEAVE", "a"], T).await.unwrap();
    let st = ring_status(&mut admin).await;
    if field(&st, "migrating").as_deref() == Some("1") {
        assert!(text(&busy).contains("in progress"), "{busy:?}");
    }
    let st = wait_migrated(&mut admin, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ledgers, secs) = load.finish().await;
    let ops: u64 = ledgers.iter().map(|l| l.ops).sum();
    let errors: Vec<&String> = ledgers.iter().flat_map(|l| &l.errors).collect();
    eprintln!(
        "join: {ops} ops in {secs:.1}s ({:.0}/s), {} errors; status:\n{st}",
        ops as f64 / secs,
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "errors under load: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert_eq!(field(&st, "last_state").as_deref(), Some("done"), "{st}");
    check_data(&mut admin, &ledgers).await;
    let new_epoch = epoch_of(&st);
    assert!(new_epoch > before_epoch);
    let join_ring = ring_of(new_epoch, &["a", "b", "c", "d"]);
    check_placement(&cl, &join_ring, &["a", "b", "c", "d"]).await;
    let out_after: Vec<u64> = futures::future::join_all(["a", "b", "c", "d"].map(|id| {
        let addr = cl.addr(id);
        async move { migrated_out(&addr).await }
    }))
    .await;
    let moved: Vec<u64> = out_after
        .iter()
        .zip(&out_before)
        .map(|(a, b)| a - b)
        .collect();
    let expected = changed_owner(&old_ring, &join_ring);
    let total = all_keys().len();
    // Each key whose owner changed moved exactly once (background or request path), only to d.
    assert_eq!(moved[3], 0, "d sent keys away: {moved:?}");
    assert_eq!(
        moved[..3].iter().sum::<u64>() as usize,
        expected,
        "{moved:?}"
    );
    let share = expected as f64 / total as f64;
    assert!(
        (0.225..=0.275).contains(&share),
        "a join moved {expected} of {total} keys ({share:.3}), expected about 1/4"
    );

    // --- leave b under load ---
    let before_leave: Vec<u64> = out_after;
    let load = Load::start(cl.router, 4_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let leave = admin.call(&["RING", "LEAVE", "b"], T).await.unwrap();
    assert_eq!(text(&leave), "OK", "RING LEAVE: {leave:?}");
    let st = wait_migrated(&mut admin, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ledgers2, secs) = load.finish().await;
    let ops: u64 = ledgers2.iter().map(|l| l.ops).sum();
    let errors: Vec<&String> = ledgers2.iter().flat_map(|l| &l.errors).collect();
    eprintln!(
        "leave: {ops} ops in {secs:.1}s ({:.0}/s), {} errors; status:\n{st}",
        ops as f64 / secs,
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "errors under load: {:?}",
        &errors[..errors.len().min(5)]
    );
    // The second load's ledgers start from the first's final values.
    let merged = merge_ledgers(ledgers, ledgers2);
    check_data(&mut admin, &merged).await;
    let leave_ring = ring_of(epoch_of(&st), &["a", "c", "d"]);
    check_placement(&cl, &leave_ring, &["a", "c", "d"]).await;
    assert!(
        node_keys(&cl.addr("b")).await.is_empty(),
        "b still holds keys"
    );
    let after_leave: Vec<u64> = futures::future::join_all(["a", "b", "c", "d"].map(|id| {
        let addr = cl.addr(id);
        async move { migrated_out(&addr).await }
    }))
    .await;
    let moved: Vec<u64> = after_leave
        .iter()
        .zip(&before_leave)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(
        (moved[0], moved[2], moved[3]),
        (0, 0, 0),
        "keys moved between shards that stay: {moved:?}"
    );
    assert_eq!(moved[1] as usize, changed_owner(&join_ring, &leave_ring));
    let nodes = text(&admin.call(&["RING", "NODES"], T).await.unwrap());
    let Reply::Array(list) = admin.call(&["RING", "NODES"], T).await.unwrap() else {
        panic!("RING NODES: {nodes}");
    };
    assert_eq!(list.len(), 3, "b is gone from RING NODES");
}

/// The first run's final state, then the second's changes on top.
fn merge_ledgers(first: Vec<Ledger>, second: Vec<Ledger>) -> Vec<Ledger> {
    let mut out: Vec<Ledger> = first;
    for (base, next) in out.iter_mut().zip(second) {
        for (i, v) in next.strings {
            base.strings.insert(i, v);
        }
        for (j, (a, u)) in next.counters {
            let e = base.counters.entry(j).or_default();
            e.0 += a;
            e.1 += u;
        }
        for (j, (a, u)) in next.logs {
            let e = base.logs.entry(j).or_default();
            e.0.extend(a);
            e.1.extend(u);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_moves_everything_back() {
    // Small, paused batches keep the join running long enough to cancel it half-way.
    let cl = Cluster::start(&["a", "b", "c", "d"], 3, |c| {
        c.ring.migration_batch = 20;
        c.ring.migration_pause = Duration::from_millis(5);
    })
    .await;
    let mut admin = cl.client().await;
    preload(&mut admin).await;
    let old_ring = ring_of(1, &["a", "b", "c"]);
    let load = Load::start(cl.router, 2_000);
    join_d(&mut admin, &cl).await;
    // Wait until some keys moved, then cancel.
    eventually(Duration::from_secs(20), || {
        let router = cl.router;
        async move {
            let mut c = NodeConn::connect(&router.to_string(), T).await.ok()?;
            let st = ring_status(&mut c).await;
            let keys: u64 = field(&st, "keys_moved")?.parse().ok()?;
            (keys > 500).then_some(())
        }
    })
    .await;
    let cancel = admin.call(&["RING", "CANCEL"], T).await.unwrap();
    assert_eq!(text(&cancel), "OK", "RING CANCEL: {cancel:?}");
    let st = wait_migrated(&mut admin, Duration::from_secs(40)).await;
    let (ledgers, _) = load.finish().await;
    let errors: Vec<&String> = ledgers.iter().flat_map(|l| &l.errors).collect();
    assert!(
        errors.is_empty(),
        "errors under load: {:?}",
        &errors[..errors.len().min(5)]
    );
    eprintln!("after cancel:\n{st}");
    assert_eq!(
        field(&st, "last_state").as_deref(),
        Some("cancelled"),
        "{st}"
    );
    assert!(field(&st, "last_change")
        .unwrap()
        .starts_with("rollback of join d"));
    check_data(&mut admin, &ledgers).await;
    // The old membership at a later epoch: every key on the node that owned it before the
    // join (checked on the nodes' own key lists), d empty.
    check_placement(&cl, &old_ring, &["a", "b", "c"]).await;
    assert!(
        node_keys(&cl.addr("d")).await.is_empty(),
        "d still holds keys"
    );
    let Reply::Array(list) = admin.call(&["RING", "NODES"], T).await.unwrap() else {
        panic!("RING NODES");
    };
    assert_eq!(list.len(), 3);
    assert!(admin.call(&["RING", "CANCEL"], T).await.unwrap().is_error());
}

/// `RING JOIN d <d's address>`, which must answer +OK.
async fn join_d(admin: &mut NodeConn, cl: &Cluster) {
    let join = admin
        .call(&["RING", "JOIN", "d", &cl.addr("d")], T)
        .await
        .unwrap();
    assert_eq!(text(&join), "OK", "RING JOIN: {join:?}");
}

/// Waits until the change in progress has moved more than `keys` keys.
async fn wait_keys_moved(router: SocketAddr, keys: u64) {
    eventually(Duration::from_secs(20), || async move {
        let st = status_of(router).await?;
        let moved: u64 = field(&st, "keys_moved")?.parse().ok()?;
        (moved > keys).then_some(())
    })
    .await;
}

/// A router stopped mid-move and started again resumes the move from what the nodes record:
/// under a write load nothing acknowledged is lost, every key ends at its owner, the nodes drop
/// the record once done, and a leaving shard missing from the new router's config is still
/// emptied (its address comes from the record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_restarted_mid_move_resumes_it() {
    // Small, paused batches: a join takes a few seconds, so the restart lands mid-move.
    let slow = |c: &mut RouterConfig| {
        c.ring.migration_batch = 10;
        c.ring.migration_pause = Duration::from_millis(20);
    };
    let mut cl = Cluster::start(&["a", "b", "c", "d"], 3, slow).await;
    let mut admin = cl.client().await;
    preload(&mut admin).await;
    let load = Load::start(cl.router, 1_000);

    join_d(&mut admin, &cl).await;
    wait_keys_moved(cl.router, 200).await;
    let st = ring_status(&mut admin).await;
    assert_eq!(field(&st, "migrating").as_deref(), Some("1"), "{st}");
    cl.restart_router(&["a", "b", "c", "d"], slow).await;
    let mut admin = cl.client().await;
    let st = wait_migrated(&mut admin, Duration::from_secs(60)).await;
    eprintln!("after the restart mid-join:\n{st}");
    // A fresh router has no change to report unless it resumed one.
    assert_eq!(field(&st, "last_change").as_deref(), Some("join d"), "{st}");
    assert_eq!(field(&st, "last_state").as_deref(), Some("done"), "{st}");
    let joined = epoch_of(&st);
    check_placement(
        &cl,
        &ring_of(joined, &["a", "b", "c", "d"]),
        &["a", "b", "c", "d"],
    )
    .await;

    let leave = admin.call(&["RING", "LEAVE", "b"], T).await.unwrap();
    assert_eq!(text(&leave), "OK", "RING LEAVE: {leave:?}");
    wait_keys_moved(cl.router, 200).await;
    cl.restart_router(&["a", "c", "d"], slow).await;
    let mut admin = cl.client().await;
    let st = ring_status(&mut admin).await;
    if field(&st, "migrating").as_deref() == Some("1") {
        assert!(field(&st, "leaving_b").is_some(), "{st}");
    }
    let st = wait_migrated(&mut admin, Duration::from_secs(60)).await;
    eprintln!("after the restart mid-leave:\n{st}");
    assert_eq!(
        field(&st, "last_change").as_deref(),
        Some("leave b"),
        "{st}"
    );
    assert_eq!(field(&st, "last_state").as_deref(), Some("done"), "{st}");

    let (ledgers, secs) = load.finish().await;
    let ops: u64 = ledgers.iter().map(|l| l.ops).sum();
    let errors: usize = ledgers.iter().map(|l| l.errors.len()).sum();
    eprintln!("{ops} ops in {secs:.1}s, {errors} failed (the restarts' gaps)");
    check_data(&mut admin, &ledgers).await;
    check_placement(
        &cl,
        &ring_of(epoch_of(&st), &["a", "c", "d"]),
        &["a", "c", "d"],
    )
    .await;
    assert!(
        node_keys(&cl.addr("b")).await.is_empty(),
        "b still holds keys"
    );
    for id in ["a", "b", "c", "d"] {
        let mut c = NodeConn::connect(&cl.addr(id), T).await.unwrap();
        let r = c.call(&["TOPOLOGY", "GET"], T).await.unwrap();
        let Reply::Array(v) = &r else {
            panic!("TOPOLOGY GET on {id}: {r:?}");
        };
        assert_eq!(
            v.get(2),
            Some(&Reply::Nil),
            "{id} still records a change: {r:?}"
        );
    }
}

/// Two routers over one cluster: a change made through one is followed by the other (no restart,
/// no config edit), and requests through it right after the change are never refused; of two
/// changes sent to both at once one runs and the other is refused naming it (or they run one
/// after the other); a router started with an old membership follows the nodes' ring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_follow_each_others_changes() {
    let cl = Cluster::start(&["a", "b", "c", "d", "e"], 3, |_| {}).await;
    let addrs: HashMap<String, String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|id| (id.to_string(), cl.addr(id)))
        .collect();
    let config_of = |ids: &[&str]| {
        let shards: Vec<(&str, &str)> = ids.iter().map(|id| (*id, addrs[*id].as_str())).collect();
        let mut config = RouterConfig::with_shards("127.0.0.1:0", &shards).unwrap();
        Timeouts::MIGRATION.apply(&mut config);
        config
    };
    let (r2, _stop2) = start_router(config_of(&["a", "b", "c"])).await;
    let mut r1 = cl.client().await;
    let mut c2 = NodeConn::connect(&r2.to_string(), T).await.unwrap();
    preload(&mut r1).await;
    let join = r1
        .call(&["RING", "JOIN", "d", &cl.addr("d")], T)
        .await
        .unwrap();
    assert_eq!(text(&join), "OK");
    // Right after the join, through the router that did not make it: multi-key commands split
    // over shards, then single-key writes, all land (a part a node refuses is retried).
    let mut multi: Vec<Vec<Bytes>> = Vec::new();
    for batch in 0..20 {
        let mut mset = vec!["MSET".to_string()];
        let mut mget = vec!["MGET".to_string()];
        for i in 0..20 {
            let k = format!("m:{batch}:{i}");
            mset.extend([k.clone(), k.clone()]);
            mget.push(k);
        }
        let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
        let mget: Vec<&str> = mget.iter().map(String::as_str).collect();
        multi.push(cmd(&mset));
        multi.push(cmd(&mget));
    }
    for (i, r) in c2.pipeline(&multi, T).await.unwrap().iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(text(r), "OK", "MSET {}: {r:?}", i / 2);
        } else {
            let Reply::Array(values) = r else {
                panic!("MGET {}: {r:?}", i / 2);
            };
            for (j, v) in values.iter().enumerate() {
                assert_eq!(text(v), format!("m:{}:{j}", i / 2));
            }
        }
    }
    // The placement check below counts the preloaded keys only.
    let dels: Vec<Vec<Bytes>> = (0..20)
        .map(|b| {
            let keys: Vec<String> = (0..20).map(|i| format!("m:{b}:{i}")).collect();
            let mut del = vec!["DEL"];
            del.extend(keys.iter().map(String::as_str));
            cmd(&del)
        })
        .collect();
    for r in c2.pipeline(&dels, T).await.unwrap() {
        assert!(!r.is_error(), "{r:?}");
    }
    let cmds: Vec<Vec<Bytes>> = (0..2000)
        .map(|i| cmd(&["SET", &format!("k:{i}"), "via-r2"]))
        .collect();
    let replies = c2.pipeline(&cmds, T).await.unwrap();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.is_error()).collect();
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        refused.first()
    );
    let st = wait_migrated(&mut r1, Duration::from_secs(30)).await;
    let epoch = epoch_of(&st);
    let st2 = eventually(T, || async {
        let st = status_of(r2).await?;
        (epoch_of(&st) == epoch && field(&st, "migrating").as_deref() == Some("0")).then_some(st)
    })
    .await;
    assert_eq!(field(&st2, "shards").as_deref(), Some("4"), "{st2}");
    let ring = ring_of(epoch, &["a", "b", "c", "d"]);
    check_placement(&cl, &ring, &["a", "b", "c", "d"]).await;
    let gets: Vec<Vec<Bytes>> = (0..2000)
        .map(|i| cmd(&["GET", &format!("k:{i}")]))
        .collect();
    for r in r1.pipeline(&gets, T).await.unwrap() {
        assert_eq!(text(&r), "via-r2");
    }

    // Two changes at once through the two routers.
    let (mut a1, mut a2) = (
        cl.client().await,
        NodeConn::connect(&r2.to_string(), T).await.unwrap(),
    );
    let e_addr = cl.addr("e");
    let join_e = ["RING", "JOIN", "e", e_addr.as_str()];
    let (x, y) = tokio::join!(a1.call(&join_e, T), a2.call(&["RING", "LEAVE", "d"], T));
    let (x, y) = (x.unwrap(), y.unwrap());
    eprintln!("join e through r1: {x:?}; leave d through r2: {y:?}");
    let ok = [&x, &y].iter().filter(|r| text(r) == "OK").count();
    assert!(ok >= 1, "{x:?} {y:?}");
    for (r, other) in [(&x, "leave d"), (&y, "join e")] {
        if text(r) != "OK" {
            let e = text(r);
            assert!(e.contains("in progress") && e.contains(other), "{e}");
        }
    }
    // If both ran, they ran one after the other; either way both routers end on one ring.
    let mut members: Vec<&str> = vec!["a", "b", "c"];
    if text(&y) != "OK" {
        members.push("d");
    }
    if text(&x) == "OK" {
        members.push("e");
    }
    let epoch = eventually(T, || async {
        let s1 = status_of(cl.router).await?;
        let s2 = status_of(r2).await?;
        let e = epoch_of(&s1);
        (e == epoch_of(&s2)
            && field(&s1, "migrating").as_deref() == Some("0")
            && field(&s2, "migrating").as_deref() == Some("0"))
        .then_some(e)
    })
    .await;
    check_placement(&cl, &ring_of(epoch, &members), &members).await;

    // A router started with an old membership follows the nodes' ring and serves every key.
    let (r3, _stop3) = start_router(config_of(&["a", "b", "c"])).await;
    let st3 = eventually(T, || async {
        let st = status_of(r3).await?;
        (epoch_of(&st) == epoch).then_some(st)
    })
    .await;
    assert!(field(&st3, "conflict").is_none(), "{st3}");
    let mut c3 = NodeConn::connect(&r3.to_string(), T).await.unwrap();
    for r in c3.pipeline(&gets, T).await.unwrap() {
        assert_eq!(text(&r), "via-r2");
    }
}

/// A cluster of a, b, c (d spare) with slow, small migration batches, a second router over it,
/// preloaded keys, and `RING JOIN d` sent through the second router, keys moving: the cluster,
/// the second router (address, stop), clients of the first and of the second.
async fn joining_through_a_second_router() -> (
    Cluster,
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    NodeConn,
    NodeConn,
) {
    let slow = |c: &mut RouterConfig| {
        c.ring.migration_batch = 10;
        c.ring.migration_pause = Duration::from_millis(20);
    };
    let cl = Cluster::start(&["a", "b", "c", "d"], 3, slow).await;
    let addrs: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|id| (id.to_string(), cl.addr(id)))
        .collect();
    let shards: Vec<(&str, &str)> = addrs
        .iter()
        .map(|(i, a)| (i.as_str(), a.as_str()))
        .collect();
    let mut config = RouterConfig::with_shards("127.0.0.1:0", &shards).unwrap();
    Timeouts::MIGRATION.apply(&mut config);
    slow(&mut config);
    let (r2, stop2) = start_router(config).await;
    let mut r1 = cl.client().await;
    preload(&mut r1).await;
    let mut c2 = NodeConn::connect(&r2.to_string(), T).await.unwrap();
    let join = c2
        .call(&["RING", "JOIN", "d", &cl.addr("d")], T)
        .await
        .unwrap();
    assert_eq!(text(&join), "OK");
    wait_keys_moved(r2, 100).await;
    (cl, r2, stop2, r1, c2)
}

/// A router stopped mid-change has its change finished by another running router: the other
/// takes it over once the lease lapses or is given back, and every key ends at its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_router_finishes_a_change_whose_router_stopped() {
    let (cl, _r2, stop2, _r1, _c2) = joining_through_a_second_router().await;
    let _ = stop2.send(());
    // r1 follows the change, then drives it once r2's lease is gone.
    let st = eventually(Duration::from_secs(60), || async {
        let st = status_of(cl.router).await?;
        (field(&st, "last_change").as_deref() == Some("join d")
            && field(&st, "migrating").as_deref() == Some("0"))
        .then_some(st)
    })
    .await;
    eprintln!("r1 after r2 stopped mid-join:\n{st}");
    assert_eq!(field(&st, "last_state").as_deref(), Some("done"), "{st}");
    let ring = ring_of(epoch_of(&st), &["a", "b", "c", "d"]);
    check_placement(&cl, &ring, &["a", "b", "c", "d"]).await;
}

/// `RING CANCEL` sent to a router that only follows the change reaches the router driving it
/// (through the change lease): the change rolls back and both routers end on the old membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_another_router_rolls_the_change_back() {
    let (cl, _r2, _stop2, mut r1, mut c2) = joining_through_a_second_router().await;
    eventually(T, || async {
        let st = status_of(cl.router).await?;
        field(&st, "following").is_some().then_some(())
    })
    .await;
    let cancel = r1.call(&["RING", "CANCEL"], T).await.unwrap();
    assert_eq!(text(&cancel), "OK", "{cancel:?}");
    let st = wait_migrated(&mut c2, Duration::from_secs(60)).await;
    assert_eq!(
        field(&st, "last_change").as_deref(),
        Some("rollback of join d"),
        "{st}"
    );
    let epoch = epoch_of(&st);
    eventually(T, || async {
        let s1 = status_of(cl.router).await?;
        (epoch_of(&s1) == epoch && field(&s1, "migrating").as_deref() == Some("0")).then_some(())
    })
    .await;
    check_placement(&cl, &ring_of(epoch, &["a", "b", "c"]), &["a", "b", "c"]).await;
    assert!(
        node_keys(&cl.addr("d")).await.is_empty(),
        "d still holds keys"
    );
}
