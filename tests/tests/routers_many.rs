#![allow(clippy::unwrap_used)]
//! Several routers over one cluster, end to end with real processes on 127.0.0.1 port 0: a
//! primary killed under two routers' health checks is replaced once (one replica promoted, one
//! failover counted across both routers), and both routers then send its keys to the promoted
//! replica.
use std::time::{Duration, Instant};

use tests::*;

/// The failover promise, as in the single-router test.
const FAILOVER_BOUND: Duration = Duration::from_secs(10);

fn failovers(metrics: std::net::SocketAddr) -> f64 {
    metric(metrics, "ringcache_failovers_total").unwrap_or(0.0)
}

#[test]
fn two_routers_fail_a_shard_over_once_and_both_follow() {
    let mut cl = Cluster::builder()
        .shard("alpha", 1)
        .shard("bravo", 0)
        .start();
    let r2 = cl.spawn_router(&RouterSettings::default());
    let alpha = cl.shard("alpha");
    let promoted = alpha.replicas[0].addr;
    let keys = cl.keys_on("alpha", "k", 50);
    let mut c1 = cl.raw();
    let mut c2 = r2.raw();
    for k in &keys {
        assert_eq!(c1.cmd(&["SET", k, "before"]), ok());
    }
    // Both routers see the replica in sync before the kill.
    let mut p = alpha.primary.raw();
    let mut r = alpha.replicas[0].raw();
    wait_synced(&mut p, &mut r, Duration::from_secs(20));
    drop((p, r));

    cl.kill_shard("alpha");
    let killed = Instant::now();
    // Writes to alpha's keys succeed through both routers once the replica is promoted.
    for (name, c) in [("router 1", &mut c1), ("router 2", &mut c2)] {
        let mut last;
        let ok_through = loop {
            last = c.cmd(&["SET", &keys[0], name]);
            if last == ok() {
                break true;
            }
            if killed.elapsed() > FAILOVER_BOUND {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(ok_through, "{name}: writes to alpha still fail: {last:?}");
    }
    eprintln!(
        "both routers write to alpha again {} ms after the kill",
        killed.elapsed().as_millis()
    );
    // Both name the promoted replica as alpha's primary.
    for (name, c) in [("router 1", &mut c1), ("router 2", &mut c2)] {
        // alpha's entry comes first (ring order), its primary right after its id.
        let nodes = format!("{:?}", c.cmd(&["RING", "NODES"]));
        let primary = format!("\"alpha\"), Bulk(b\"primary\"), Bulk(b\"{promoted}\")");
        assert!(
            nodes.contains(&primary),
            "{name}'s RING NODES lacks the promoted {promoted}: {nodes}"
        );
    }
    // One promotion: the other router followed instead of promoting.
    let total = failovers(cl.router().metrics) + failovers(r2.metrics);
    assert_eq!(total, 1.0, "failovers counted across both routers");
    for k in &keys[1..] {
        assert_eq!(c2.cmd(&["GET", k]), bulk("before"));
    }
}
