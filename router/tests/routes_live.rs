#![allow(clippy::unwrap_used)]
//! Routes added and removed live (`RING ROUTE ADD | DEL`), in process on real nodes: a change
//! that would leave keys in another pool than their route's is refused; keys change pool
//! through a route added with a split at 0% and raised to 100%, with nothing lost; a router
//! that lacks the route meanwhile answers an error for those keys rather than a stale miss,
//! and changes no split until it has the route.

use ringcache_client::Client as NodeConn;
use ringcache_protocol::Reply;

mod support;

use support::{
    conn, keys_on, reads_back, route_on, set_keys, start_router, text, two_pools, two_pools_config,
    wait_split_settled, T,
};

const KEYS: usize = 2_000;
/// The route every router here starts with.
const SESS: &str = "[[route]]\nprefix = \"sess:\"\npool = \"s\"\n";

async fn call(c: &mut NodeConn, args: &[&str]) -> Reply {
    c.call(args, T).await.unwrap()
}

fn err_starts(r: &Reply, want: &str) {
    match r {
        Reply::Error(e) => assert!(e.starts_with(want), "{e}"),
        other => panic!("not an error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routes_change_live_only_where_no_key_changes_pool() {
    let (a, s, config) = two_pools("s", SESS).await;
    let (router, _stop) = start_router(config).await;
    let mut c = conn(router).await;
    set_keys(&mut c, "tmp:", KEYS).await;
    set_keys(&mut c, "sess:", KEYS).await;

    // Routes that send every key where it is now: made.
    assert_eq!(
        text(&call(&mut c, &["RING", "ROUTE", "ADD", "x:", "default"]).await),
        "OK"
    );
    assert_eq!(
        text(&call(&mut c, &["RING", "ROUTE", "ADD", "sess:vip:", "s"]).await),
        "OK"
    );
    assert!(route_on(&mut c, "sess:vip:").await.is_some());
    assert_eq!(
        text(&call(&mut c, &["RING", "ROUTE", "DEL", "x:"]).await),
        "OK"
    );
    assert_eq!(
        text(&call(&mut c, &["RING", "ROUTE", "DEL", "sess:vip:"]).await),
        "OK"
    );
    assert!(route_on(&mut c, "x:").await.is_none());

    // Ones that would leave keys behind in their old pool: refused, saying how.
    let r = call(&mut c, &["RING", "ROUTE", "ADD", "tmp:", "s"]).await;
    err_starts(&r, "ERR keys under 'tmp:' are in pool 'default' now");
    let r = call(&mut c, &["RING", "ROUTE", "DEL", "sess:"]).await;
    err_starts(
        &r,
        "ERR without route 'sess:' its keys would go to pool 'default'",
    );
    let r = call(&mut c, &["RING", "ROUTE", "ADD", "sess:", "s"]).await;
    err_starts(&r, "ERR a route with prefix 'sess:' exists");
    let r = call(&mut c, &["RING", "ROUTE", "ADD", "y:", "nope"]).await;
    err_starts(&r, "ERR no pool named 'nope'");
    let r = call(&mut c, &["RING", "ROUTE", "ADD", "y:"]).await;
    err_starts(&r, "ERR usage: RING ROUTE");

    // Moving tmp: keys to pool s: a route on their pool with a split, raised to 100%.
    let r = call(
        &mut c,
        &["RING", "ROUTE", "ADD", "tmp:", "default", "SPLIT", "s"],
    )
    .await;
    assert_eq!(text(&r), "OK");
    let m = route_on(&mut c, "tmp:").await.unwrap();
    assert_eq!(
        (m["split"].as_str(), m["split_percent"].as_str()),
        ("s", "0")
    );
    let r = call(&mut c, &["RING", "ROUTE", "ADD", "tmp:x:", "default"]).await;
    err_starts(&r, "ERR 'tmp:x:' lies inside 'tmp:', which has a split");
    assert_eq!(
        text(&call(&mut c, &["RING", "SPLIT", "tmp:", "100"]).await),
        "OK"
    );
    wait_split_settled(&mut c, "tmp:", 100).await;
    reads_back(&mut c, "tmp:", KEYS).await;
    reads_back(&mut c, "sess:", KEYS).await;
    assert_eq!(
        keys_on(&[&s[0], &s[1]])
            .await
            .iter()
            .filter(|k| k.starts_with("tmp:"))
            .count(),
        KEYS
    );
    assert!(
        keys_on(&[&a[0], &a[1]]).await.is_empty(),
        "every key left default"
    );
    let r = call(&mut c, &["RING", "ROUTE", "DEL", "tmp:"]).await;
    err_starts(
        &r,
        "ERR route 'tmp:' sends 100% of its keys to its split's pool",
    );

    // A second router whose config lacks tmp: (and has a split route of its own, at 0%).
    let own =
        "[[route]]\nprefix = \"ab:\"\npool = \"default\"\nsplit = { pool = \"s\", percent = 0 }\n";
    let config2 = two_pools_config(&a, &s, "s", &format!("{SESS}{own}"));
    let (second, _stop2) = start_router(config2).await;
    let mut c2 = conn(second).await;
    // Its tmp: requests go to `default`, whose nodes refuse them: an error, never a stale miss.
    let r = call(&mut c2, &["GET", "tmp:1"]).await;
    err_starts(&r, "TRYAGAIN");
    let r = call(&mut c2, &["SET", "tmp:1", "stale"]).await;
    assert!(matches!(r, Reply::Error(_)), "{r:?}");
    // It changes no split while the cluster has one it has no route for.
    let r = call(&mut c2, &["RING", "SPLIT", "ab:", "0"]).await;
    err_starts(&r, "ERR the cluster splits 'tmp:' at 100%");
    // Given the route, it takes the cluster's percent at once.
    let r = call(
        &mut c2,
        &["RING", "ROUTE", "ADD", "tmp:", "default", "SPLIT", "s"],
    )
    .await;
    assert_eq!(text(&r), "OK");
    let m = route_on(&mut c2, "tmp:").await.unwrap();
    assert_eq!(m["split_percent"], "100");
    reads_back(&mut c2, "tmp:", KEYS).await;
    assert_eq!(
        text(&call(&mut c2, &["RING", "SPLIT", "ab:", "0"]).await),
        "OK"
    );
}
