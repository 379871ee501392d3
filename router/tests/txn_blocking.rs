#![allow(clippy::unwrap_used)]
//! Transactions and blocking commands through the router, end to end: real nodes on 127.0.0.1
//! port 0 and a router in front. Each such client gets a connection of its own to its keys'
//! shard; these tests check the replies a Redis client expects, that one blocked client holds up
//! no other, the cap on such connections and its release, and what happens when the keys' arc
//! moves while a client blocks or queues a transaction.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache_client::Client as Conn;
use ringcache_protocol::Reply;

mod support;

use support::{eventually, name_on, text, wait_no_change, Cluster, NodeRuntime, Timeouts, T};

fn key_on(ids: &[&str], shard: &str) -> String {
    name_on(ids, shard, "key:")
}

async fn conn(cl: &Cluster) -> Conn {
    Conn::connect(&cl.router.to_string(), T).await.unwrap()
}

async fn call(c: &mut Conn, words: &[&str]) -> Reply {
    c.call(words, T).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_run_whole_on_their_keys_shard() {
    let ids = ["a", "b", "c"];
    let cl = Cluster::builder(&ids).start(|_| {}).await;
    let mut c = conn(&cl).await;
    let (ka, kb) = (key_on(&ids, "a"), key_on(&ids, "b"));

    // Keyless commands queued before the first key are replayed on its shard.
    assert_eq!(text(&call(&mut c, &["MULTI"]).await), "OK");
    assert_eq!(text(&call(&mut c, &["PING"]).await), "QUEUED");
    assert_eq!(text(&call(&mut c, &["SET", &ka, "1"]).await), "QUEUED");
    assert_eq!(text(&call(&mut c, &["INCRBY", &ka, "41"]).await), "QUEUED");
    assert_eq!(text(&call(&mut c, &["GET", &ka]).await), "QUEUED");
    let exec = call(&mut c, &["EXEC"]).await;
    let Reply::Array(v) = &exec else {
        panic!("EXEC: {exec:?}")
    };
    assert_eq!(
        v.iter().map(text).collect::<Vec<_>>(),
        ["PONG", "OK", "42", "42"]
    );
    // The writes went to a's node, where the key lives.
    let mut on_a = Conn::connect(&cl.addr("a"), T).await.unwrap();
    assert_eq!(text(&call(&mut on_a, &["GET", &ka]).await), "42");

    // A key on another shard cannot join the transaction: it aborts, as Redis aborts one with a
    // command it could not queue.
    assert_eq!(text(&call(&mut c, &["MULTI"]).await), "OK");
    assert_eq!(text(&call(&mut c, &["SET", &ka, "x"]).await), "QUEUED");
    let cross = call(&mut c, &["SET", &kb, "y"]).await;
    assert!(text(&cross).starts_with("CROSSSHARD"), "{cross:?}");
    let exec = call(&mut c, &["EXEC"]).await;
    assert!(text(&exec).starts_with("EXECABORT"), "{exec:?}");
    assert_eq!(text(&call(&mut c, &["GET", &ka]).await), "42");

    // Errors as Redis words them.
    assert!(text(&call(&mut c, &["EXEC"]).await).contains("EXEC without MULTI"));
    assert!(text(&call(&mut c, &["DISCARD"]).await).contains("DISCARD without MULTI"));
    assert_eq!(text(&call(&mut c, &["MULTI"]).await), "OK");
    assert!(text(&call(&mut c, &["MULTI"]).await).contains("can not be nested"));
    assert!(text(&call(&mut c, &["NOSUCHCMD"]).await).contains("unknown command"));
    let exec = call(&mut c, &["EXEC"]).await;
    assert!(text(&exec).starts_with("EXECABORT"), "{exec:?}");

    // DISCARD drops what was queued.
    assert_eq!(text(&call(&mut c, &["MULTI"]).await), "OK");
    assert_eq!(text(&call(&mut c, &["SET", &kb, "gone"]).await), "QUEUED");
    assert_eq!(text(&call(&mut c, &["DISCARD"]).await), "OK");
    assert_eq!(call(&mut c, &["GET", &kb]).await, Reply::Nil);
    // An empty transaction runs somewhere and answers an empty array.
    assert_eq!(text(&call(&mut c, &["MULTI"]).await), "OK");
    assert_eq!(call(&mut c, &["EXEC"]).await, Reply::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_aborts_when_another_client_changes_the_key() {
    let ids = ["a", "b"];
    let cl = Cluster::builder(&ids).start(|_| {}).await;
    let (mut c, mut other) = (conn(&cl).await, conn(&cl).await);
    let k = key_on(&ids, "b");
    assert_eq!(text(&call(&mut c, &["SET", &k, "1"]).await), "OK");

    assert_eq!(text(&call(&mut c, &["WATCH", &k]).await), "OK");
    assert_eq!(text(&call(&mut c, &["GET", &k]).await), "1");
    assert_eq!(text(&call(&mut other, &["SET", &k, "2"]).await), "OK");
    assert_eq!(text(&call(&mut c, &["MULTI"]).await), "OK");
    assert_eq!(text(&call(&mut c, &["SET", &k, "3"]).await), "QUEUED");
    assert_eq!(call(&mut c, &["EXEC"]).await, Reply::Nil);
    assert_eq!(text(&call(&mut c, &["GET", &k]).await), "2");

    // Unchanged, the transaction runs; UNWATCH releases the watch.
    assert_eq!(text(&call(&mut c, &["WATCH", &k]).await), "OK");
    assert_eq!(text(&call(&mut c, &["MULTI"]).await), "OK");
    assert_eq!(text(&call(&mut c, &["INCR", &k]).await), "QUEUED");
    assert_eq!(
        call(&mut c, &["EXEC"]).await,
        Reply::Array(vec![Reply::Int(3)])
    );
    assert_eq!(text(&call(&mut c, &["WATCH", &k]).await), "OK");
    assert_eq!(text(&call(&mut c, &["UNWATCH"]).await), "OK");
    assert_eq!(text(&call(&mut other, &["SET", &k, "9"]).await), "OK");
    assert_eq!(text(&call(&mut c, &["MULTI"]).await), "OK");
    assert_eq!(text(&call(&mut c, &["INCR", &k]).await), "QUEUED");
    assert_eq!(
        call(&mut c, &["EXEC"]).await,
        Reply::Array(vec![Reply::Int(10)])
    );

    // WATCH over two shards is refused, and inside MULTI as Redis refuses it.
    let k_a = key_on(&ids, "a");
    let cross = call(&mut c, &["WATCH", &k, &k_a]).await;
    assert!(text(&cross).starts_with("CROSSSHARD"), "{cross:?}");
    assert_eq!(text(&call(&mut c, &["MULTI"]).await), "OK");
    assert!(text(&call(&mut c, &["WATCH", &k]).await).contains("WATCH inside MULTI"));
    assert_eq!(text(&call(&mut c, &["DISCARD"]).await), "OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_client_holds_up_no_other_and_is_served_by_a_push() {
    let ids = ["a", "b"];
    let cl = Cluster::builder(&ids).start(|_| {}).await;
    let q = key_on(&ids, "a");
    let mut blocked = conn(&cl).await;
    let q2 = q.clone();
    let waiter = tokio::spawn(async move { blocked.call(&["BLPOP", &q2, "10"], T).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Other clients, on the same router and the same shard, go on meanwhile.
    let mut c = conn(&cl).await;
    for i in 0..50 {
        let k = format!("other:{i}");
        assert_eq!(text(&call(&mut c, &["SET", &k, "v"]).await), "OK");
    }
    assert!(!waiter.is_finished());
    assert_eq!(call(&mut c, &["RPUSH", &q, "job"]).await, Reply::Int(1));
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(
        got,
        Reply::Array(vec![
            Reply::Bulk(q.clone().into()),
            Reply::Bulk("job".into())
        ])
    );

    // A timeout answers the command's own null.
    let t0 = Instant::now();
    assert_eq!(call(&mut c, &["BLPOP", &q, "0.2"]).await, Reply::Nil);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    // Keys on two shards cannot block together.
    let other = key_on(&ids, "b");
    let cross = call(&mut c, &["BLPOP", &q, &other, "1"]).await;
    assert!(text(&cross).starts_with("CROSSSHARD"), "{cross:?}");
    // BLMOVE within one shard.
    let dst = format!("{{{q}}}:dst");
    assert_eq!(call(&mut c, &["RPUSH", &q, "x"]).await, Reply::Int(1));
    let moved = call(&mut c, &["BLMOVE", &q, &dst, "LEFT", "RIGHT", "1"]).await;
    assert_eq!(text(&moved), "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_connections_are_capped_and_released_when_a_client_leaves() {
    let ids = ["a"];
    let cl = Cluster::builder(&ids)
        .start(|c| c.max_dedicated_connections = 2)
        .await;
    let mut waiters = Vec::new();
    for i in 0..2 {
        let mut b = conn(&cl).await;
        let q = format!("cap:{i}");
        waiters.push(tokio::spawn(async move {
            b.call(&["BLPOP", &q, "30"], Duration::from_secs(60)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = conn(&cl).await;
    let over = call(&mut c, &["BLPOP", "cap:x", "1"]).await;
    assert!(
        text(&over).contains("max_dedicated_connections"),
        "{over:?}"
    );
    let refused = call(&mut c, &["WATCH", "cap:x"]).await;
    assert!(
        text(&refused).contains("max_dedicated_connections"),
        "{refused:?}"
    );
    // A blocked client that disconnects gives its connection back.
    waiters.remove(0).abort();
    let got = eventually(T, || async {
        let mut c = conn(&cl).await;
        let r = c.call(&["BLPOP", "cap:x", "0.1"], T).await.ok()?;
        (r == Reply::Nil).then_some(r)
    })
    .await;
    assert_eq!(got, Reply::Nil);
    // The node no longer holds the gone client blocked: a push reaches the one left.
    assert_eq!(call(&mut c, &["RPUSH", "cap:0", "a"]).await, Reply::Int(1));
    assert_eq!(call(&mut c, &["RPUSH", "cap:1", "b"]).await, Reply::Int(1));
    let served = waiters.remove(0).await.unwrap().unwrap();
    assert_eq!(
        served,
        Reply::Array(vec![Reply::Bulk("cap:1".into()), Reply::Bulk("b".into())])
    );
    assert_eq!(call(&mut c, &["LLEN", "cap:0"]).await, Reply::Int(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_pop_follows_its_key_to_the_shard_that_joined() {
    let cl = Cluster::builder(&["a", "b", "c"])
        .members(2)
        .timeouts(Timeouts::MIGRATION)
        .node_runtime(NodeRuntime::Own)
        .start(|_| {})
        .await;
    // A key the join gives to c.
    let q = key_on(&["a", "b", "c"], "c");
    let mut blocked = conn(&cl).await;
    let q2 = q.clone();
    let waiter = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = blocked
            .call(&["BLPOP", &q2, "20"], Duration::from_secs(30))
            .await;
        (r, t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut admin = conn(&cl).await;
    let join = call(&mut admin, &["RING", "JOIN", "c", &cl.addr("c")]).await;
    assert_eq!(text(&join), "OK", "{join:?}");
    wait_no_change(cl.router).await;
    assert!(!waiter.is_finished(), "the waiter was answered by the move");
    assert_eq!(
        call(&mut admin, &["RPUSH", &q, "after"]).await,
        Reply::Int(1)
    );
    let (got, waited) = waiter.await.unwrap();
    assert_eq!(
        got.unwrap(),
        Reply::Array(vec![
            Reply::Bulk(q.clone().into()),
            Reply::Bulk("after".into())
        ])
    );
    assert!(
        waited < Duration::from_secs(19),
        "served by its timeout: {waited:?}"
    );
    // The push went to c, the key's new owner, and nothing is left there.
    let mut on_c = Conn::connect(&cl.addr("c"), T).await.unwrap();
    assert_eq!(call(&mut on_c, &["LLEN", &q]).await, Reply::Int(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_racing_a_join_run_once_each_on_the_keys_owner() {
    let cl = Cluster::builder(&["a", "b", "c"])
        .members(2)
        .timeouts(Timeouts::MIGRATION)
        .node_runtime(NodeRuntime::Own)
        .start(|c| {
            // Small, paused batches: the join lasts long enough for transactions to race it.
            c.ring.migration_batch = 10;
            c.ring.migration_pause = Duration::from_millis(10);
        })
        .await;
    let mut admin = conn(&cl).await;
    const KEYS: usize = 40;
    for i in 0..2_000 {
        let k = format!("fill:{i}");
        assert_eq!(text(&call(&mut admin, &["SET", &k, "v"]).await), "OK");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (stop, done, addr) = (stop.clone(), done.clone(), cl.router.to_string());
        workers.push(tokio::spawn(async move {
            let mut c = Conn::connect(&addr, T).await.unwrap();
            let mut counts = vec![0i64; KEYS];
            let mut tryagain = 0u64;
            let mut i = w;
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let k = format!("ctr:{}", i % KEYS);
                let log = format!("{{{k}}}:log");
                i += 1;
                let replies = c
                    .pipeline(
                        &[
                            vec!["MULTI".to_string()],
                            vec!["INCR".to_string(), k.clone()],
                            vec!["RPUSH".to_string(), log.clone(), "x".to_string()],
                            vec!["EXEC".to_string()],
                        ],
                        T,
                    )
                    .await
                    .unwrap();
                match &replies[3] {
                    Reply::Array(v) => {
                        assert_eq!(v.len(), 2, "{replies:?}");
                        // INCR and RPUSH ran together: the counter equals the log's length.
                        assert_eq!(v[0], v[1], "{replies:?}");
                        counts[(i - 1) % KEYS] += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Reply::Error(e) if e.starts_with("TRYAGAIN") => tryagain += 1,
                    other => panic!("EXEC: {other:?} ({replies:?})"),
                }
            }
            (counts, tryagain)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let join = call(&mut admin, &["RING", "JOIN", "c", &cl.addr("c")]).await;
    assert_eq!(text(&join), "OK", "{join:?}");
    wait_no_change(cl.router).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut totals = vec![0i64; KEYS];
    let mut tryagain = 0;
    for w in workers {
        let (counts, t) = w.await.unwrap();
        tryagain += t;
        for (total, n) in totals.iter_mut().zip(counts) {
            *total += n;
        }
    }
    eprintln!(
        "{} transactions ran, {tryagain} answered TRYAGAIN",
        done.load(Ordering::Relaxed)
    );
    assert!(done.load(Ordering::Relaxed) > 100);
    // Every transaction that answered ran exactly once, and nothing else touched the keys.
    for (i, total) in totals.iter().enumerate() {
        let k = format!("ctr:{i}");
        let log = format!("{{{k}}}:log");
        let v = call(&mut admin, &["GET", &k]).await;
        let got = if v == Reply::Nil {
            0
        } else {
            text(&v).parse::<i64>().unwrap()
        };
        assert_eq!(got, *total, "{k}");
        assert_eq!(call(&mut admin, &["LLEN", &log]).await, Reply::Int(*total));
    }
}
