#![allow(clippy::unwrap_used)]
//! Pools, key-prefix routes and pool listeners end to end, in process: real nodes on 127.0.0.1
//! port 0, a router whose config has a `default` pool, a second pool and routes to it. Keys land
//! only on their pool's nodes, multi-key commands split across pools, and a pool changes its
//! membership without touching the other's epoch or keys.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_client::Client as NodeConn;
use ringcache_protocol::Reply;

mod support;

use support::{
    conn, keys_on, reads_back, set_keys, start_router, text, two_pools, words, Node, NodeRuntime, T,
};

const KEYS: usize = 300;

struct Pools {
    /// `default` pool nodes a1, a2; pool `s` nodes s1, s2; a spare s3.
    a: Vec<Node>,
    s: Vec<Node>,
    spare: Node,
    router: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    /// The router's config, for a second router over the same cluster.
    config: ringcache_router::RouterConfig,
}

/// Starts the nodes and a router with `extra` appended to its config (routes, listeners).
async fn start(extra: &str) -> Pools {
    let routes = "[[route]]\nprefix = \"sess:\"\npool = \"s\"\n\
         [[route]]\nprefix = \"User:\"\npool = \"s\"\nignore_case = true\n";
    let (a, s, config) = two_pools("s", &format!("{routes}{extra}")).await;
    let spare = Node::start(0, NodeRuntime::Own).await;
    let (router, stop) = start_router(config.clone()).await;
    // Every member has its pool's ring at epoch 1 before the test sends keys.
    support::wait_epoch_one(a.iter().chain(&s)).await;
    Pools {
        a,
        s,
        spare,
        router,
        _stop: stop,
        config,
    }
}

fn field(status: &str, name: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

async fn wait_migrated(c: &mut NodeConn, pool: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = text(&c.call(&["RING", "STATUS", "POOL", pool], T).await.unwrap());
        if field(&st, "migrating").as_deref() == Some("0") {
            return st;
        }
        assert!(Instant::now() < deadline, "still migrating:\n{st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routes_keep_each_prefix_on_its_pool_and_commands_span_pools() {
    let p = start("").await;
    let mut c = conn(p.router).await;
    set_keys(&mut c, "sess:", KEYS).await;
    set_keys(&mut c, "user:", KEYS).await;
    set_keys(&mut c, "other:", KEYS).await;

    let on_s = keys_on(&[&p.s[0], &p.s[1]]).await;
    let on_a = keys_on(&[&p.a[0], &p.a[1]]).await;
    assert_eq!(on_s.len(), 2 * KEYS, "pool s holds sess: and user: keys");
    assert!(on_s
        .iter()
        .all(|k| k.starts_with("sess:") || k.starts_with("user:")));
    assert_eq!(on_a.len(), KEYS);
    assert!(on_a.iter().all(|k| k.starts_with("other:")));
    // Both pools' rings spread their keys over both of their shards.
    for n in p.a.iter().chain(&p.s) {
        assert!(!keys_on(&[n]).await.is_empty());
    }

    // Multi-key commands split per pool and per shard.
    let r = c
        .call(
            &["MGET", "sess:1", "other:1", "USER:2", "user:2", "none"],
            T,
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        Reply::Array(vec![
            Reply::Bulk("v1".into()),
            Reply::Bulk("v1".into()),
            Reply::Nil,
            Reply::Bulk("v2".into()),
            Reply::Nil,
        ])
    );
    let r = c
        .call(&["MSET", "sess:x", "1", "other:x", "2"], T)
        .await
        .unwrap();
    assert_eq!(text(&r), "OK");
    assert!(keys_on(&[&p.s[0], &p.s[1]])
        .await
        .contains(&"sess:x".to_string()));
    let r = c
        .call(&["DEL", "sess:x", "other:x", "sess:1"], T)
        .await
        .unwrap();
    assert_eq!(r, Reply::Int(3));
    let r = c.call(&["DBSIZE"], T).await.unwrap();
    assert_eq!(r, Reply::Int(3 * KEYS as i64 - 1));

    // The routes and the pools are visible.
    let r = c.call(&["RING", "LOCATE", "USER:7"], T).await.unwrap();
    // A map, flattened to pairs in RESP2.
    let Reply::Array(m) = r else {
        panic!("LOCATE: {r:?}")
    };
    let get = |name: &str| {
        m.chunks(2)
            .find(|kv| text(&kv[0]) == name)
            .map(|kv| text(&kv[1]))
    };
    assert_eq!(get("pool").as_deref(), Some("s"));
    assert_eq!(get("route").as_deref(), Some("User:"));
    assert!(matches!(get("shard").as_deref(), Some("s1" | "s2")));
    let r = c.call(&["RING", "ROUTES"], T).await.unwrap();
    assert!(matches!(&r, Reply::Array(v) if v.len() == 2), "{r:?}");
    let r = c.call(&["RING", "NODES", "POOL", "s"], T).await.unwrap();
    let Reply::Array(nodes) = r else {
        panic!("NODES: {r:?}")
    };
    assert_eq!(nodes.len(), 2);
    let r = c
        .call(&["RING", "STATUS", "POOL", "nope"], T)
        .await
        .unwrap();
    assert_eq!(r, Reply::Error("ERR no pool named 'nope'".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_changes_membership_without_touching_the_other() {
    let p = start("").await;
    let mut c = conn(p.router).await;
    set_keys(&mut c, "sess:", KEYS).await;
    set_keys(&mut c, "other:", KEYS).await;
    let before_a = keys_on(&[&p.a[0], &p.a[1]]).await;

    // A shard joins pool s: only pool s's epoch moves, and only sess: keys move to it.
    let spare = p.spare.addr.to_string();
    let r = c
        .call(&["RING", "JOIN", "s3", &spare, "POOL", "s"], T)
        .await
        .unwrap();
    assert_eq!(text(&r), "OK");
    let st = wait_migrated(&mut c, "s").await;
    assert_eq!(field(&st, "epoch").as_deref(), Some("2"), "{st}");
    let st = text(&c.call(&["RING", "STATUS"], T).await.unwrap());
    assert_eq!(field(&st, "epoch").as_deref(), Some("1"), "{st}");
    let moved = keys_on(&[&p.spare]).await;
    assert!(!moved.is_empty());
    assert!(moved.iter().all(|k| k.starts_with("sess:")));
    assert_eq!(keys_on(&[&p.a[0], &p.a[1]]).await, before_a);
    // An id is unique across pools: pool `default` cannot take s3's id.
    let r = c
        .call(&["RING", "JOIN", "s3", "127.0.0.1:1"], T)
        .await
        .unwrap();
    assert!(r.is_error(), "{r:?}");

    // Every key reads back through the router.
    for prefix in ["sess:", "other:"] {
        reads_back(&mut c, prefix, KEYS).await;
    }

    // And leaves it again.
    let r = c
        .call(&["RING", "LEAVE", "s1", "POOL", "s"], T)
        .await
        .unwrap();
    assert_eq!(text(&r), "OK");
    wait_migrated(&mut c, "s").await;
    assert!(keys_on(&[&p.s[0]]).await.is_empty());
    let on_s = keys_on(&[&p.s[1], &p.spare]).await;
    assert_eq!(on_s.len(), KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listener_gives_its_clients_another_default_pool() {
    // A free port for the listener (the router binds it at start).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = start(&format!(
        "[[listener]]\nlisten = \"127.0.0.1:{port}\"\npool = \"s\"\n"
    ))
    .await;
    let mut c = support::eventually(T, || async {
        NodeConn::connect(&format!("127.0.0.1:{port}"), T)
            .await
            .ok()
    })
    .await;
    set_keys(&mut c, "plain:", KEYS).await;
    let on_s = keys_on(&[&p.s[0], &p.s[1]]).await;
    assert_eq!(
        on_s.len(),
        KEYS,
        "keys no route matches go to the listener's pool"
    );
    assert!(keys_on(&[&p.a[0], &p.a[1]]).await.is_empty());
    // The routes still apply; the main listener's clients default to `default`.
    let mut main = conn(p.router).await;
    assert_eq!(main.call(&["GET", "plain:1"], T).await.unwrap(), Reply::Nil);
    assert_eq!(text(&main.call(&["SET", "x", "1"], T).await.unwrap()), "OK");
    assert_eq!(keys_on(&[&p.a[0], &p.a[1]]).await, vec!["x".to_string()]);
}

/// A route's counters and mirror as `RING ROUTES` lists them (first route with `prefix`).
async fn route_stats(c: &mut NodeConn, prefix: &str) -> Vec<(String, String)> {
    let Reply::Array(routes) = c.call(&["RING", "ROUTES"], T).await.unwrap() else {
        panic!("RING ROUTES")
    };
    routes
        .iter()
        .filter_map(|r| match r {
            Reply::Array(flat) => Some(
                flat.chunks(2)
                    .map(|kv| (text(&kv[0]), text(&kv[1])))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .find(|f| f.iter().any(|(k, v)| k == "prefix" && v == prefix))
        .unwrap()
}

fn stat(fields: &[(String, String)], name: &str) -> u64 {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.parse().unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mirror_gets_a_copy_of_the_writes_and_fan_outs_count_keys_once() {
    let m = Node::start(0, NodeRuntime::Own).await;
    let p = start(&format!(
        "[[pool]]\nname = \"m\"\n[[pool.shard]]\nid = \"m1\"\nprimary = \"{}\"\n\
         [[route]]\nprefix = \"shop:\"\npool = \"default\"\n\
         mirror = {{ pool = \"m\", percent = 100, writes_only = true }}\n",
        m.addr
    ))
    .await;
    let mut c = conn(p.router).await;
    set_keys(&mut c, "shop:", KEYS).await;
    // Reads are not mirrored (writes_only); they are answered by the route's own pool.
    assert_eq!(
        c.call(&["GET", "shop:3"], T).await.unwrap(),
        Reply::Bulk("v3".into())
    );
    let copies = support::eventually(T, || async {
        let k = keys_on(&[&m]).await;
        (k.len() == KEYS).then_some(k)
    })
    .await;
    assert!(copies.iter().all(|k| k.starts_with("shop:")));
    assert_eq!(keys_on(&[&p.a[0], &p.a[1]]).await.len(), KEYS);
    // The mirror pool holds copies: DBSIZE and KEYS through the router count each key once.
    assert_eq!(
        c.call(&["DBSIZE"], T).await.unwrap(),
        Reply::Int(KEYS as i64)
    );
    let st = route_stats(&mut c, "shop:").await;
    assert_eq!(stat(&st, "requests"), KEYS as u64 + 1);
    assert_eq!(stat(&st, "mirrored"), KEYS as u64);
    assert_eq!(stat(&st, "mirror_drops"), 0);
    // A command on keys of several routes is not copied (the mirror would get `other:y`); the
    // next copy, on the same client's connection to the mirror, arrives after it would have.
    let r = c
        .call(&["MSET", "shop:x", "1", "other:y", "2"], T)
        .await
        .unwrap();
    assert_eq!(text(&r), "OK");
    assert_eq!(
        text(&c.call(&["SET", "shop:z", "1"], T).await.unwrap()),
        "OK"
    );
    let copies = support::eventually(T, || async {
        let k = keys_on(&[&m]).await;
        k.contains(&"shop:z".to_string()).then_some(k)
    })
    .await;
    assert!(!copies.contains(&"other:y".to_string()) && !copies.contains(&"shop:x".to_string()));
    // FLUSHALL reaches the mirror as well.
    assert_eq!(text(&c.call(&["FLUSHALL"], T).await.unwrap()), "OK");
    assert!(keys_on(&[&m]).await.is_empty());
    assert!(keys_on(&[&p.a[0], &p.a[1]]).await.is_empty());
    // RING MIRROR turns the mirror off and on again live; the counters carry on.
    assert_eq!(
        text(
            &c.call(&["RING", "MIRROR", "shop:", "OFF"], T)
                .await
                .unwrap()
        ),
        "OK"
    );
    assert_eq!(
        text(&c.call(&["SET", "shop:off", "1"], T).await.unwrap()),
        "OK"
    );
    let st = route_stats(&mut c, "shop:").await;
    assert_eq!(
        st.iter()
            .find(|(k, _)| k == "mirror")
            .map(|(_, v)| v.as_str()),
        Some("Nil")
    );
    let r = c
        .call(&["RING", "MIRROR", "shop:", "m", "100"], T)
        .await
        .unwrap();
    assert_eq!(text(&r), "OK");
    assert_eq!(
        text(&c.call(&["SET", "shop:on", "1"], T).await.unwrap()),
        "OK"
    );
    support::eventually(T, || async {
        keys_on(&[&m])
            .await
            .contains(&"shop:on".to_string())
            .then_some(())
    })
    .await;
    assert!(!keys_on(&[&m]).await.contains(&"shop:off".to_string()));
    assert!(stat(&route_stats(&mut c, "shop:").await, "mirrored") > KEYS as u64);
    for (args, e) in [
        (
            vec!["RING", "MIRROR", "nope:", "OFF"],
            "no route with prefix 'nope:'",
        ),
        (
            vec!["RING", "MIRROR", "shop:", "default", "10"],
            "the route's own pool",
        ),
        (
            vec!["RING", "MIRROR", "shop:", "m", "101"],
            "percent must be an integer",
        ),
        (
            vec!["RING", "MIRROR", "shop:", "q", "10"],
            "no pool named 'q'",
        ),
    ] {
        let got = text(&c.call(&args, T).await.unwrap());
        assert!(got.contains(e), "{args:?}: {got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mirror_that_never_answers_slows_and_fails_no_client() {
    // A mirror that accepts connections and never replies (as a SIGSTOPped node).
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let held = std::thread::spawn(move || {
        let mut socks = Vec::new();
        hole.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            match hole.accept() {
                Ok((s, _)) => socks.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        drop(socks);
    });
    let p = start(&format!(
        "[[pool]]\nname = \"m\"\n[[pool.shard]]\nid = \"m1\"\nprimary = \"{hole_addr}\"\n\
         [[route]]\nprefix = \"shop:\"\npool = \"default\"\nmirror = {{ pool = \"m\" }}\n"
    ))
    .await;
    let mut c = conn(p.router).await;
    const N: usize = 6000;
    let cmds: Vec<Vec<Bytes>> = (0..N)
        .map(|i| words(&["SET", &format!("shop:{i}"), "v"]))
        .collect();
    for chunk in cmds.chunks(500) {
        for r in c.pipeline(chunk, T).await.unwrap() {
            assert_eq!(text(&r), "OK");
        }
    }
    let st = route_stats(&mut c, "shop:").await;
    assert_eq!(stat(&st, "requests"), N as u64);
    assert_eq!(stat(&st, "mirrored") + stat(&st, "mirror_drops"), N as u64);
    assert!(stat(&st, "mirror_drops") > 0, "{st:?}");
    assert_eq!(keys_on(&[&p.a[0], &p.a[1]]).await.len(), N);
    drop(p);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = held.join();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_fails_its_dead_primary_over_on_its_own() {
    // Pool `s` gets a third shard with a replica; its primary is then stopped.
    let primary = Node::start(0, NodeRuntime::Own).await;
    let of = primary.addr.to_string();
    let tune: support::NodeTune = std::sync::Arc::new(move |c: &mut ringcache_node::NodeConfig| {
        c.replica_of = Some(of.clone());
    });
    let replica = Node::start_tuned(0, NodeRuntime::Own, Some(tune)).await;
    let p = start("").await;
    let mut c = conn(p.router).await;
    let r = c
        .call(
            &[
                "RING",
                "JOIN",
                "s3",
                &primary.addr.to_string(),
                &replica.addr.to_string(),
                "POOL",
                "s",
            ],
            T,
        )
        .await
        .unwrap();
    assert_eq!(text(&r), "OK");
    wait_migrated(&mut c, "s").await;
    set_keys(&mut c, "sess:", KEYS).await;
    let epoch_s = |st: &str| field(st, "epoch").unwrap();
    let before = text(&c.call(&["RING", "STATUS", "POOL", "s"], T).await.unwrap());
    // The replica has every key of s3 before its primary goes.
    let on_primary = keys_on(&[&primary]).await;
    assert!(!on_primary.is_empty());
    support::eventually(T, || async {
        (keys_on(&[&replica]).await == on_primary).then_some(())
    })
    .await;
    let mut primary = primary;
    primary.kill().await;
    // The health checker promotes the replica: pool s's epoch moves, default's does not.
    let promoted = replica.addr.to_string();
    support::eventually(Duration::from_secs(20), || async {
        let r = conn(p.router)
            .await
            .call(&["RING", "NODES", "POOL", "s"], T)
            .await
            .ok()?;
        let Reply::Array(nodes) = r else { return None };
        nodes
            .iter()
            .any(|n| matches!(n, Reply::Array(f) if f.chunks(2).any(|kv| text(&kv[0]) == "primary" && text(&kv[1]) == promoted)))
            .then_some(())
    })
    .await;
    let after = text(&c.call(&["RING", "STATUS", "POOL", "s"], T).await.unwrap());
    assert!(epoch_s(&after).parse::<u64>().unwrap() > epoch_s(&before).parse::<u64>().unwrap());
    let st = text(&c.call(&["RING", "STATUS"], T).await.unwrap());
    assert_eq!(field(&st, "epoch").as_deref(), Some("1"), "{st}");
    // Every key still reads back through the router.
    reads_back(&mut c, "sess:", KEYS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_router_follows_a_pool_change_made_through_the_first() {
    let p = start("").await;
    let (second, _stop2) = start_router(p.config.clone()).await;
    let mut c = conn(p.router).await;
    set_keys(&mut c, "sess:", KEYS).await;
    let spare = p.spare.addr.to_string();
    let r = c
        .call(&["RING", "JOIN", "s3", &spare, "POOL", "s"], T)
        .await
        .unwrap();
    assert_eq!(text(&r), "OK");
    // The second router learns pool s's new ring from its nodes, and only pool s's.
    let mut c2 = conn(second).await;
    support::eventually(T, || async {
        let st = text(
            &conn(second)
                .await
                .call(&["RING", "STATUS", "POOL", "s"], T)
                .await
                .ok()?,
        );
        (field(&st, "epoch").as_deref() == Some("2")).then_some(())
    })
    .await;
    let st = text(&c2.call(&["RING", "STATUS"], T).await.unwrap());
    assert_eq!(field(&st, "epoch").as_deref(), Some("1"), "{st}");
    let Reply::Array(nodes) = c2.call(&["RING", "NODES", "POOL", "s"], T).await.unwrap() else {
        panic!("RING NODES")
    };
    assert_eq!(nodes.len(), 3);
    // Through the second router, every key reads back while and after the keys move.
    wait_migrated(&mut c, "s").await;
    reads_back(&mut c2, "sess:", KEYS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_to_both_pools_during_a_pool_change_are_all_kept() {
    const WORKERS: usize = 4;
    const PER_WORKER: usize = 250;
    let p = start("").await;
    let mut c = conn(p.router).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Each worker owns its keys in both pools and writes unique values, one request at a time
    // (a cross-pool MSET every tenth); the ledger keeps the last acknowledged value of each key
    // and the values whose outcome is unknown (an error reply).
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (router, stop) = (p.router, stop.clone());
            tokio::spawn(async move {
                let mut c = conn(router).await;
                let mut acked: std::collections::HashMap<String, String> = Default::default();
                let mut unknown: Vec<(String, String)> = Vec::new();
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
                    n += 1;
                    let i = n % PER_WORKER;
                    let (a, b) = (format!("sess:{w}:{i}"), format!("other:{w}:{i}"));
                    let v = format!("{w}-{n}");
                    let writes: Vec<&String> = if n.is_multiple_of(10) {
                        vec![&a, &b]
                    } else {
                        vec![&a]
                    };
                    let r = if writes.len() == 2 {
                        c.call(&["MSET", &a, &v, &b, &v], T).await
                    } else {
                        c.call(&["SET", &a, &v], T).await
                    };
                    for k in writes {
                        match &r {
                            Ok(r) if text(r) == "OK" => {
                                acked.insert(k.clone(), v.clone());
                            }
                            _ => unknown.push((k.clone(), v.clone())),
                        }
                    }
                }
                (acked, unknown)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let spare = p.spare.addr.to_string();
    let r = c
        .call(&["RING", "JOIN", "s3", &spare, "POOL", "s"], T)
        .await
        .unwrap();
    assert_eq!(text(&r), "OK");
    wait_migrated(&mut c, "s").await;
    let r = c
        .call(&["RING", "LEAVE", "s1", "POOL", "s"], T)
        .await
        .unwrap();
    assert_eq!(text(&r), "OK");
    wait_migrated(&mut c, "s").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut checked = 0;
    for w in workers {
        let (acked, unknown) = w.await.unwrap();
        for (k, v) in &acked {
            let got = text(&c.call(&["GET", k], T).await.unwrap());
            let pending = unknown.iter().any(|(uk, uv)| uk == k && *uv == got);
            assert!(
                got == *v || pending,
                "{k}: {got:?}, last acknowledged {v:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > WORKERS * PER_WORKER, "{checked} keys checked");
    assert!(
        keys_on(&[&p.s[0]]).await.is_empty(),
        "s1 left: it holds nothing"
    );
}
