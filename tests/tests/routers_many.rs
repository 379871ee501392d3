#![allow(clippy::unwrap_used)]
//! Several routers over one cluster, end to end with real processes on 127.0.0.1 port 0: a
//! primary killed under two routers' health checks is replaced once (one replica promoted, one
//! failover counted across both routers), and both routers then send its keys to the promoted
//! replica; SIGHUP on one router with an edited `cluster.toml` changes the cluster for both, its
//! membership and its splits.
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

/// SIGHUP on one router, after adding a shard to its `cluster.toml`, joins the shard; the other
/// router (whose file still lists the old shards) follows, and every key reads back through both.
#[test]
fn sighup_on_one_router_changes_the_cluster_for_all() {
    let cl = Cluster::builder().shards(2).spares(1).start();
    let r2 = cl.spawn_router(&RouterSettings::default());
    let spare = cl.shards.iter().find(|s| !s.member).unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("hup:{i}")).collect();
    let mut c2 = r2.raw();
    for k in &keys {
        assert_eq!(c2.cmd(&["SET", k, k]), ok());
    }
    let mut members = cl.members();
    members.push(RouterShard {
        id: spare.id.clone(),
        primary: spare.primary.addr.to_string(),
        replicas: spare.replicas.iter().map(|r| r.addr.to_string()).collect(),
    });
    let toml = router_toml(
        "127.0.0.1:0",
        Some("127.0.0.1:0"),
        &RouterSettings::default(),
        &members,
    );
    std::fs::write(&cl.router().config, toml).unwrap();
    cl.router().proc_.signal("HUP");
    let mut status: String;
    assert_eventually!(
        {
            status = c2.cmd(&["RING", "STATUS"]).text();
            status.contains("shards:3\r\n") && status.contains("migrating:0\r\n")
        },
        Duration::from_secs(20),
        "router 2 never followed the join: {status}"
    );
    assert!(
        spare.primary.raw().cmd(&["DBSIZE"]) != int(0),
        "no key moved to the new shard"
    );
    let mut c1 = cl.raw();
    for k in &keys {
        assert_eq!(c1.cmd(&["GET", k]), bulk(k));
        assert_eq!(c2.cmd(&["GET", k]), bulk(k));
    }
}

/// A second pool and a route whose split sends `percent` of its keys there.
fn split_tables(pool: &[&Proc], percent: u8) -> String {
    let mut t = "[[pool]]\nname = \"b\"\n".to_string();
    for (i, n) in pool.iter().enumerate() {
        t.push_str(&format!(
            "[[pool.shard]]\nid = \"b{i}\"\nprimary = \"{}\"\n",
            n.addr
        ));
    }
    t.push_str(&format!(
        "[[route]]\nprefix = \"ab:\"\npool = \"default\"\nsplit = {{ pool = \"b\", percent = {percent} }}\n"
    ));
    t
}

/// SIGHUP after the split's percent changed in `cluster.toml` changes it live on every router:
/// the share of keys on the split's pool follows, and every key reads back through both.
#[test]
fn sighup_applies_a_split_percent_changed_in_the_file() {
    let b = [start_node(&[]), start_node(&[])];
    let b_refs: Vec<&Proc> = b.iter().collect();
    let settings = |percent| RouterSettings {
        tables: split_tables(&b_refs, percent),
        ..RouterSettings::default()
    };
    let cl = Cluster::builder().shards(2).router(settings(0)).start();
    let r2 = cl.spawn_router(&settings(0));
    let keys: Vec<String> = (0..2000).map(|i| format!("ab:{i}")).collect();
    let mut c1 = cl.raw();
    for k in &keys {
        assert_eq!(c1.cmd(&["SET", k, k]), ok());
    }
    let on_b = |b: &[Proc]| -> i64 {
        b.iter()
            .map(|n| match n.raw().cmd(&["DBSIZE"]) {
                Reply::Int(n) => n,
                other => panic!("DBSIZE: {other:?}"),
            })
            .sum()
    };
    assert_eq!(on_b(&b), 0);
    let toml = router_toml(
        "127.0.0.1:0",
        Some("127.0.0.1:0"),
        &settings(30),
        &cl.members(),
    );
    std::fs::write(&cl.router().config, toml).unwrap();
    cl.router().proc_.signal("HUP");
    let mut c2 = r2.raw();
    let mut routes: String;
    assert_eventually!(
        {
            routes = format!("{:?}", c2.cmd(&["RING", "ROUTES"]));
            routes.contains("Bulk(b\"split_percent\"), Int(30)")
                && routes.contains("Bulk(b\"split_moving_from\"), Nil")
        },
        Duration::from_secs(30),
        "router 2 never followed the split: {routes}"
    );
    let share = on_b(&b) as f64 * 100.0 / keys.len() as f64;
    assert!(
        (25.0..=35.0).contains(&share),
        "{share}% of the keys on the split's pool"
    );
    for k in &keys {
        assert_eq!(c1.cmd(&["GET", k]), bulk(k));
        assert_eq!(c2.cmd(&["GET", k]), bulk(k));
    }
}

/// SIGHUP after routes were added to and removed from `cluster.toml`: a route added with a
/// split at 100% to another pool moves its prefix's keys there; a router not reloaded yet
/// answers those keys with an error, never a stale miss, and follows once reloaded; a removed
/// route that sent keys where they go anyway is gone.
#[test]
fn sighup_adds_and_removes_routes() {
    let b = [start_node(&[]), start_node(&[])];
    let b_refs: Vec<&Proc> = b.iter().collect();
    let pool_only = |route: &str| {
        let mut t = split_tables(&b_refs, 0);
        let cut = t.find("[[route]]").unwrap();
        t.truncate(cut);
        t.push_str(route);
        RouterSettings {
            tables: t,
            ..RouterSettings::default()
        }
    };
    let before = pool_only("[[route]]\nprefix = \"old:\"\npool = \"default\"\n");
    let after = pool_only(
        "[[route]]\nprefix = \"mv:\"\npool = \"default\"\nsplit = { pool = \"b\", percent = 100 }\n",
    );
    let cl = Cluster::builder().shards(2).router(before.clone()).start();
    let r2 = cl.spawn_router(&before);
    let keys: Vec<String> = (0..2000).map(|i| format!("mv:{i}")).collect();
    let mut c1 = cl.raw();
    for k in &keys {
        assert_eq!(c1.cmd(&["SET", k, k]), ok());
    }
    let toml = |r: &RouterProc| {
        let t = router_toml("127.0.0.1:0", Some("127.0.0.1:0"), &after, &cl.members());
        std::fs::write(&r.config, t).unwrap();
        r.proc_.signal("HUP");
    };
    toml(cl.router());
    let mut routes: String;
    assert_eventually!(
        {
            routes = format!("{:?}", c1.cmd(&["RING", "ROUTES"]));
            routes.contains("Bulk(b\"split_percent\"), Int(100)")
                && routes.contains("Bulk(b\"split_moving_from\"), Nil")
                && !routes.contains("old:")
        },
        Duration::from_secs(30),
        "router 1 never applied the routes: {routes}"
    );
    let on_b: i64 = b
        .iter()
        .map(|n| match n.raw().cmd(&["DBSIZE"]) {
            Reply::Int(n) => n,
            other => panic!("DBSIZE: {other:?}"),
        })
        .sum();
    assert_eq!(on_b, keys.len() as i64, "every mv: key moved to pool b");
    let mut c2 = r2.raw();
    match c2.cmd(&["GET", &keys[0]]) {
        Reply::Error(e) => assert!(e.starts_with("TRYAGAIN"), "{e}"),
        other => panic!("router 2 without the route answered {other:?}"),
    }
    toml(&r2);
    assert_eventually!(
        c2.cmd(&["GET", &keys[0]]) == bulk(&keys[0]),
        Duration::from_secs(30),
        "router 2 never took the route"
    );
    for k in &keys {
        assert_eq!(c1.cmd(&["GET", k]), bulk(k));
        assert_eq!(c2.cmd(&["GET", k]), bulk(k));
    }
}
