#![allow(clippy::unwrap_used)]
//! A/B splits end to end, in process: real nodes on 127.0.0.1 port 0 in two pools, a route whose
//! split sends a share of its keys to the second pool. The share lands where it should, a live
//! change of the percent moves exactly the keys that change side (and loses no write made
//! meanwhile), and other routers, started before or after, route by the nodes' percent.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_client::Client as NodeConn;
use ringcache_protocol::Reply;

mod support;

use support::{conn, fields, start_router, text, words, Node, T};

struct Split {
    /// `default` pool nodes a1, a2; pool `b` nodes b1, b2.
    a: Vec<Node>,
    b: Vec<Node>,
    router: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    config: ringcache_router::RouterConfig,
}

/// Two pools, and the route `u:` on `default` with `percent` of its keys split to `b`.
async fn start(percent: u8) -> Split {
    let route = format!(
        "[[route]]\nprefix = \"u:\"\npool = \"default\"\nsplit = {{ pool = \"b\", percent = {percent} }}\n"
    );
    let (a, b, config) = support::two_pools("b", &route).await;
    let (router, stop) = start_router(config.clone()).await;
    Split {
        a,
        b,
        router,
        _stop: stop,
        config,
    }
}

/// Writes `u:0` .. `u:{n-1}` (value `v<i>`) through `c`.
async fn write_keys(c: &mut NodeConn, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let cmds: Vec<Vec<Bytes>> = chunk
            .iter()
            .map(|i| words(&["SET", &format!("u:{i}"), &format!("v{i}")]))
            .collect();
        for r in c.pipeline(&cmds, T).await.unwrap() {
            assert_eq!(text(&r), "OK");
        }
    }
}

/// Asserts every key `write_keys` wrote reads back through `c`.
async fn read_keys(c: &mut NodeConn, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let cmds: Vec<Vec<Bytes>> = chunk
            .iter()
            .map(|i| words(&["GET", &format!("u:{i}")]))
            .collect();
        for (i, r) in chunk.iter().zip(c.pipeline(&cmds, T).await.unwrap()) {
            assert_eq!(r, Reply::Bulk(format!("v{i}").into()), "u:{i}");
        }
    }
}

/// Every key on `nodes`.
async fn keys_on(nodes: &[Node]) -> HashSet<String> {
    let mut out = HashSet::new();
    for n in nodes {
        match conn(n.addr).await.call(&["KEYS", "*"], T).await.unwrap() {
            Reply::Array(v) => out.extend(v.iter().map(text)),
            other => panic!("KEYS: {other:?}"),
        }
    }
    out
}

/// The `u:` route as `RING ROUTES` shows it through `c`.
async fn route(c: &mut NodeConn) -> HashMap<String, String> {
    support::route_on(c, "u:").await.unwrap()
}

/// Waits until the split's keys stopped moving, as `c`'s router sees it.
async fn wait_settled(c: &mut NodeConn, percent: u8) {
    support::wait_split_settled(c, "u:", percent).await;
}

fn share(n: usize, of: usize) -> f64 {
    n as f64 * 100.0 / of as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_raise_moves_only_the_keys_that_change_side_and_loses_no_write() {
    const KEYS: usize = 100_000;
    let p = start(10).await;
    let mut c = conn(p.router).await;
    write_keys(&mut c, KEYS).await;
    let on_b = keys_on(&p.b).await;
    let on_a = keys_on(&p.a).await;
    assert_eq!(on_a.len() + on_b.len(), KEYS);
    assert!(on_a.is_disjoint(&on_b));
    let at10 = share(on_b.len(), KEYS);
    println!(
        "split 10%: {} of {KEYS} keys on the split's pool ({at10:.2}%)",
        on_b.len()
    );
    assert!((9.0..=11.0).contains(&at10), "{at10}%");
    // RING LOCATE names the side.
    let some_b = on_b.iter().next().unwrap();
    let loc = fields(&c.call(&["RING", "LOCATE", some_b], T).await.unwrap());
    assert_eq!((loc["pool"].as_str(), loc["split"].as_str()), ("b", "1"));

    // A writer keeps writing keys of the route while the percent changes.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (router, stop) = (p.router, stop.clone());
        tokio::spawn(async move {
            let mut c = conn(router).await;
            let mut acked: HashMap<String, String> = HashMap::new();
            let mut unknown: Vec<(String, String)> = Vec::new();
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 50_000 {
                n += 1;
                let (k, v) = (format!("u:w:{}", n % 500), format!("x{n}"));
                match c.call(&["SET", &k, &v], T).await {
                    Ok(r) if text(&r) == "OK" => {
                        acked.insert(k, v);
                    }
                    _ => unknown.push((k, v)),
                }
            }
            (acked, unknown)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = c.call(&["RING", "SPLIT", "u:", "20"], T).await.unwrap();
    assert_eq!(text(&r), "OK");
    wait_settled(&mut c, 20).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, unknown) = writer.await.unwrap();
    for (k, v) in &acked {
        let got = text(&c.call(&["GET", k], T).await.unwrap());
        let pending = unknown.iter().any(|(uk, uv)| uk == k && *uv == got);
        assert!(
            got == *v || pending,
            "{k}: {got:?}, last acknowledged {v:?}"
        );
    }
    assert!(!acked.is_empty());

    let base = |s: &HashSet<String>| -> HashSet<String> {
        s.iter()
            .filter(|k| !k.starts_with("u:w:"))
            .cloned()
            .collect()
    };
    let (on_a2, on_b2) = (base(&keys_on(&p.a).await), base(&keys_on(&p.b).await));
    assert_eq!(on_a2.len() + on_b2.len(), KEYS, "no key lost or doubled");
    assert!(on_a2.is_disjoint(&on_b2));
    assert!(on_b.is_subset(&on_b2), "no key went back");
    let moved = on_b2.len() - on_b.len();
    let pct = share(moved, KEYS);
    println!("split 10% -> 20%: {moved} of {KEYS} keys moved ({pct:.2}%), none the other way");
    assert!((9.0..=11.0).contains(&pct), "{pct}%");
    read_keys(&mut c, KEYS).await;
    let r = route(&mut c).await;
    assert_eq!(r["split"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_routers_follow_the_nodes_split_and_a_stale_one_is_fenced() {
    const KEYS: usize = 3000;
    let p = start(10).await;
    let (second, _stop2) = start_router(p.config.clone()).await;
    let mut c = conn(p.router).await;
    let mut c2 = conn(second).await;
    write_keys(&mut c, KEYS).await;
    let r = c.call(&["RING", "SPLIT", "u:", "50"], T).await.unwrap();
    assert_eq!(text(&r), "OK");
    // The second router has not looked at the nodes yet: its writes by the old percent are
    // fenced off by the side the keys left and run again by the new one, in MULTI as outside.
    for i in 0..20 {
        let k = format!("u:{i}");
        let replies = c2
            .pipeline(
                &[
                    words(&["MULTI"]),
                    words(&["SET", &k, &format!("v{i}")]),
                    words(&["EXEC"]),
                ],
                T,
            )
            .await
            .unwrap();
        let committed =
            matches!(&replies[2], Reply::Array(v) if v.len() == 1 && text(&v[0]) == "OK");
        assert!(committed, "{k}: {replies:?}");
    }
    let cmds: Vec<Vec<Bytes>> = (0..KEYS)
        .map(|i| words(&["SET", &format!("u:{i}"), &format!("v{i}")]))
        .collect();
    for r in c2.pipeline(&cmds, T).await.unwrap() {
        assert_eq!(text(&r), "OK");
    }
    wait_settled(&mut c, 50).await;
    wait_settled(&mut c2, 50).await;
    let (on_a, on_b) = (keys_on(&p.a).await, keys_on(&p.b).await);
    assert_eq!(on_a.len() + on_b.len(), KEYS);
    assert!((40.0..=60.0).contains(&share(on_b.len(), KEYS)));
    read_keys(&mut c2, KEYS).await;
    // A router started now takes the nodes' percent, not its config's 10%.
    let (third, _stop3) = start_router(p.config.clone()).await;
    let mut c3 = conn(third).await;
    assert_eq!(route(&mut c3).await["split_percent"], "50");
    read_keys(&mut c3, KEYS).await;
    // Back to 0% through the second router: every key home again.
    let r = c2.call(&["RING", "SPLIT", "u:", "0"], T).await.unwrap();
    assert_eq!(text(&r), "OK");
    wait_settled(&mut c2, 0).await;
    assert!(keys_on(&p.b).await.is_empty());
    read_keys(&mut c, KEYS).await;
    read_keys(&mut c3, KEYS).await;
    // Bad requests say why.
    let e = text(&c.call(&["RING", "SPLIT", "u:", "101"], T).await.unwrap());
    assert!(
        e.contains("percent must be an integer from 0 to 100"),
        "{e}"
    );
    let e = text(&c.call(&["RING", "SPLIT", "nope:", "5"], T).await.unwrap());
    assert!(
        e.contains("no route with prefix 'nope:' has a split"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_whose_router_stops_is_finished_by_another() {
    const KEYS: usize = 20_000;
    let p = start(0).await;
    // The first router moves slowly (100 keys a batch, 200 ms apart), so it stops mid-move.
    let mut slow = p.config.clone();
    slow.ring.migration_batch = 100;
    slow.ring.migration_pause = Duration::from_millis(200);
    let (first, stop_first) = start_router(slow).await;
    let mut c = conn(p.router).await;
    write_keys(&mut c, KEYS).await;
    let mut c1 = conn(first).await;
    let r = c1.call(&["RING", "SPLIT", "u:", "30"], T).await.unwrap();
    assert_eq!(text(&r), "OK");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moving = route(&mut c1).await;
    assert_ne!(moving["split_moving_from"], "nil", "{moving:?}");
    drop(c1);
    drop(stop_first);
    // The other router takes the move over once the stopped one's leases are gone.
    wait_settled(&mut c, 30).await;
    let (on_a, on_b) = (keys_on(&p.a).await, keys_on(&p.b).await);
    assert_eq!(on_a.len() + on_b.len(), KEYS);
    let pct = share(on_b.len(), KEYS);
    assert!((28.0..=32.0).contains(&pct), "{pct}%");
    read_keys(&mut c, KEYS).await;
}

/// A split's move keeps to `[ring] migration_rate` as a membership change's does: 3,000 keys at
/// 1,000 a second cannot be done in less than about 3 seconds (the bound is one-sided: a slow
/// machine only makes it longer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_move_keeps_to_the_migration_rate() {
    const KEYS: usize = 10_000;
    let p = start(0).await;
    let mut paced = p.config.clone();
    paced.ring.migration_rate = 1000;
    let (router, _stop) = start_router(paced).await;
    let mut c = conn(router).await;
    write_keys(&mut c, KEYS).await;
    let started = Instant::now();
    let r = c.call(&["RING", "SPLIT", "u:", "30"], T).await.unwrap();
    assert_eq!(text(&r), "OK");
    wait_settled(&mut c, 30).await;
    let took = started.elapsed();
    let moved = keys_on(&p.b).await.len();
    assert!((2_800..=3_200).contains(&moved), "{moved} keys moved");
    let floor = Duration::from_secs_f64(moved as f64 / 1000.0) - Duration::from_millis(300);
    assert!(
        took >= floor,
        "{moved} keys moved in {took:?} at 1,000 a second"
    );
    read_keys(&mut c, KEYS).await;
}
