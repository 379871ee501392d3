#![allow(clippy::unwrap_used)]
//! Pub/sub and scripts through routers, end to end: real nodes on 127.0.0.1 port 0 and one or
//! two routers in front. A subscriber on one router hears what is published through another;
//! subscriptions follow a channel to the shard that joined; a subscriber that does not read is
//! cut off, one that pauses loses nothing; a script or function library loaded before a shard joined runs on it after; a script
//! runs on the shard of a key it did not declare; PING answers BUSY while a script runs long; a
//! script may run past the request timeout.

use std::time::Duration;

use ringcache_client::Client as Conn;
use ringcache_protocol::Reply;
use ringcache_router::RouterConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

use support::{
    eventually, frame, name_on, raw_expect, req, start_router, text, wait_no_change, Cluster,
    NodeRuntime, Timeouts, T,
};

/// A RESP2 (un)subscribe confirmation.
fn confirm(what: &str, name: &str, count: usize) -> String {
    format!(
        "*3\r\n${}\r\n{what}\r\n${}\r\n{name}\r\n:{count}\r\n",
        what.len(),
        name.len()
    )
}

async fn two_routers(cl: &Cluster, ids: &[&str]) -> std::net::SocketAddr {
    let shards: Vec<(&str, String)> = ids.iter().map(|id| (*id, cl.addr(id))).collect();
    let pairs: Vec<(&str, &str)> = shards.iter().map(|(i, a)| (*i, a.as_str())).collect();
    let mut config = RouterConfig::with_shards("127.0.0.1:0", &pairs).unwrap();
    Timeouts::FAST.apply(&mut config);
    let (addr, stop) = start_router(config).await;
    // The router runs for the rest of the test.
    std::mem::forget(stop);
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_router_hears_a_publish_through_another() {
    let ids = ["a", "b", "c"];
    let cl = Cluster::builder(&ids).start(|_| {}).await;
    let other = two_routers(&cl, &ids).await;
    let ch = name_on(&ids, "b", "news:");

    let mut sub = TcpStream::connect(cl.router).await.unwrap();
    sub.write_all(&req(&["SUBSCRIBE", &ch])).await.unwrap();
    raw_expect(&mut sub, &confirm("subscribe", &ch, 1)).await;
    let mut psub = TcpStream::connect(cl.router).await.unwrap();
    psub.write_all(&req(&["PSUBSCRIBE", "news:*"]))
        .await
        .unwrap();
    raw_expect(&mut psub, &confirm("psubscribe", "news:*", 1)).await;

    let mut p = Conn::connect(&other.to_string(), T).await.unwrap();
    // The node counts the first router's one subscription connection per name.
    let n = p.call(&["PUBLISH", &ch, "hello"], T).await.unwrap();
    assert_eq!(n, Reply::Int(2), "one channel and one pattern subscription");
    raw_expect(&mut sub, &frame('*', &["message", &ch, "hello"])).await;
    raw_expect(
        &mut psub,
        &frame('*', &["pmessage", "news:*", &ch, "hello"]),
    )
    .await;

    // Through the subscribers' own router, counts are its clients.
    let mut c = Conn::connect(&cl.router.to_string(), T).await.unwrap();
    assert_eq!(
        c.call(&["PUBLISH", &ch, "again"], T).await.unwrap(),
        Reply::Int(2)
    );
    raw_expect(&mut sub, &frame('*', &["message", &ch, "again"])).await;
    let numsub = c.call(&["PUBSUB", "NUMSUB", &ch, "none"], T).await.unwrap();
    assert_eq!(
        numsub,
        Reply::Array(vec![
            Reply::Bulk(ch.clone().into()),
            Reply::Int(1),
            Reply::Bulk("none".into()),
            Reply::Int(0)
        ])
    );
    assert_eq!(
        c.call(&["PUBSUB", "NUMPAT"], T).await.unwrap(),
        Reply::Int(1)
    );
    let chans = c.call(&["PUBSUB", "CHANNELS", "news:*"], T).await.unwrap();
    assert_eq!(chans, Reply::Array(vec![Reply::Bulk(ch.clone().into())]));

    // RESP2 subscribed mode refuses other commands; PING answers in its own shape.
    sub.write_all(&req(&["GET", "x"])).await.unwrap();
    raw_expect(&mut sub, "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n").await;
    sub.write_all(&req(&["PING"])).await.unwrap();
    raw_expect(&mut sub, &frame('*', &["pong", ""])).await;
    sub.write_all(&req(&["UNSUBSCRIBE"])).await.unwrap();
    raw_expect(&mut sub, &confirm("unsubscribe", &ch, 0)).await;
    // Out of subscribed mode, commands run again.
    sub.write_all(&req(&["PING"])).await.unwrap();
    raw_expect(&mut sub, "+PONG\r\n").await;

    // RESP3: messages are pushes, and other commands run while subscribed.
    let mut s3 = TcpStream::connect(cl.router).await.unwrap();
    s3.write_all(&req(&["HELLO", "3"])).await.unwrap();
    let mut hello = vec![0u8; 4096];
    let _ = tokio::time::timeout(T, s3.read(&mut hello))
        .await
        .unwrap()
        .unwrap();
    s3.write_all(&req(&["SUBSCRIBE", &ch])).await.unwrap();
    raw_expect(
        &mut s3,
        &format!(">3\r\n$9\r\nsubscribe\r\n${}\r\n{ch}\r\n:1\r\n", ch.len()),
    )
    .await;
    assert_eq!(
        p.call(&["PUBLISH", &ch, "p3"], T).await.unwrap(),
        Reply::Int(2)
    );
    raw_expect(&mut s3, &frame('>', &["message", &ch, "p3"])).await;
    s3.write_all(&req(&["ECHO", "still here"])).await.unwrap();
    raw_expect(&mut s3, "$10\r\nstill here\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_a_channel_to_the_shard_that_joined() {
    let cl = Cluster::builder(&["a", "b", "c"])
        .members(2)
        .timeouts(Timeouts::MIGRATION)
        .node_runtime(NodeRuntime::Own)
        .start(|_| {})
        .await;
    let ch = name_on(&["a", "b", "c"], "c", "chan:");
    let mut sub = TcpStream::connect(cl.router).await.unwrap();
    sub.write_all(&req(&["SUBSCRIBE", &ch])).await.unwrap();
    raw_expect(&mut sub, &confirm("subscribe", &ch, 1)).await;
    let mut c = Conn::connect(&cl.router.to_string(), T).await.unwrap();
    let join = c
        .call(&["RING", "JOIN", "c", &cl.addr("c")], T)
        .await
        .unwrap();
    assert_eq!(text(&join), "OK");
    wait_no_change(cl.router).await;
    // PUBLISH now goes to c; the router subscribed there within its 100 ms follow.
    let got = eventually(T, || async {
        let mut c = Conn::connect(&cl.router.to_string(), T).await.ok()?;
        let n = c.call(&["PUBLISH", &ch, "moved"], T).await.ok()?;
        (n == Reply::Int(1)).then_some(n)
    })
    .await;
    assert_eq!(got, Reply::Int(1));
    raw_expect(&mut sub, &frame('*', &["message", &ch, "moved"])).await;
    // And c's node itself counts the router's subscription.
    let mut on_c = Conn::connect(&cl.addr("c"), T).await.unwrap();
    let numsub = on_c.call(&["PUBSUB", "NUMSUB", &ch], T).await.unwrap();
    assert_eq!(
        numsub,
        Reply::Array(vec![Reply::Bulk(ch.clone().into()), Reply::Int(1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_cut_off() {
    let cl = Cluster::builder(&["a"]).start(|_| {}).await;
    let mut slow = TcpStream::connect(cl.router).await.unwrap();
    slow.write_all(&req(&["SUBSCRIBE", "firehose"]))
        .await
        .unwrap();
    raw_expect(&mut slow, &confirm("subscribe", "firehose", 1)).await;
    let mut p = Conn::connect(&cl.router.to_string(), T).await.unwrap();
    let big = "x".repeat(1 << 20);
    // 48 MiB published, more than the 32 MiB hard limit plus what the sockets hold.
    let mut receivers = Vec::new();
    for _ in 0..48 {
        receivers.push(p.call(&["PUBLISH", "firehose", &big], T).await.unwrap());
    }
    assert_eq!(receivers.first(), Some(&Reply::Int(1)));
    assert_eq!(
        receivers.last(),
        Some(&Reply::Int(0)),
        "the subscriber is gone"
    );
    // Its connection ends: reading drains what the kernel held, then EOF.
    let mut buf = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the slow subscriber was not disconnected");
    // Others go on.
    assert_eq!(
        p.call(&["PUBLISH", "firehose", "x"], T).await.unwrap(),
        Reply::Int(0)
    );
}

/// A subscriber that stops reading for a while, under its output limit, gets every message once
/// it reads again, in order: the router's writes to it wait (the socket full) across the
/// requests to park it makes to idle connections, and none of them drops what was being written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_pauses_gets_every_message() {
    let cl = Cluster::builder(&["a"]).start(|_| {}).await;
    let mut sub = TcpStream::connect(cl.router).await.unwrap();
    sub.write_all(&req(&["SUBSCRIBE", "pauses"])).await.unwrap();
    raw_expect(&mut sub, &confirm("subscribe", "pauses", 1)).await;
    let mut p = Conn::connect(&cl.router.to_string(), T).await.unwrap();
    // 4 MiB in 64 messages: more than the sockets hold, less than the 8 MiB soft limit.
    let payload = |i: usize| format!("{i:05}{}", "y".repeat((64 << 10) - 5));
    for i in 0..64 {
        assert_eq!(
            p.call(&["PUBLISH", "pauses", &payload(i)], T)
                .await
                .unwrap(),
            Reply::Int(1)
        );
    }
    // Idle connections are asked to park every second or so, the subscriber's among them.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for i in 0..64 {
        raw_expect(&mut sub, &frame('*', &["message", "pauses", &payload(i)])).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_and_functions_loaded_before_a_join_run_on_the_shard_that_joined() {
    let cl = Cluster::builder(&["a", "b", "c"])
        .members(2)
        .timeouts(Timeouts::MIGRATION)
        .node_runtime(NodeRuntime::Own)
        .start(|_| {})
        .await;
    let mut c = Conn::connect(&cl.router.to_string(), T).await.unwrap();
    let body = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    let sha = text(&c.call(&["SCRIPT", "LOAD", body], T).await.unwrap());
    assert_eq!(sha.len(), 40, "{sha}");
    let lib = "#!lua name=counters\nredis.register_function('bump', function(keys, args) return redis.call('INCR', keys[1]) end)";
    assert_eq!(
        text(&c.call(&["FUNCTION", "LOAD", lib], T).await.unwrap()),
        "counters"
    );
    // Every member has them.
    for id in ["a", "b"] {
        let mut n = Conn::connect(&cl.addr(id), T).await.unwrap();
        let exists = n.call(&["SCRIPT", "EXISTS", &sha], T).await.unwrap();
        assert_eq!(exists, Reply::Array(vec![Reply::Int(1)]), "{id}");
    }
    let join = c
        .call(&["RING", "JOIN", "c", &cl.addr("c")], T)
        .await
        .unwrap();
    assert_eq!(text(&join), "OK");
    wait_no_change(cl.router).await;
    let k = name_on(&["a", "b", "c"], "c", "ctr:");
    let r = c.call(&["EVALSHA", &sha, "1", &k, "5"], T).await.unwrap();
    assert_eq!(r, Reply::Int(5), "EVALSHA on the shard that joined");
    let r = c.call(&["FCALL", "bump", "1", &k], T).await.unwrap();
    assert_eq!(r, Reply::Int(6), "FCALL on the shard that joined");
    let mut on_c = Conn::connect(&cl.addr("c"), T).await.unwrap();
    assert_eq!(text(&on_c.call(&["GET", &k], T).await.unwrap()), "6");
    // Keys on two shards cannot run in one script.
    let other = name_on(&["a", "b", "c"], "a", "ctr:");
    let cross = c
        .call(&["EVAL", "return 1", "2", &k, &other], T)
        .await
        .unwrap();
    assert!(text(&cross).starts_with("CROSSSHARD"), "{cross:?}");
    assert_eq!(
        c.call(
            &[
                "SCRIPT",
                "EXISTS",
                &sha,
                "0123456789012345678901234567890123456789"
            ],
            T
        )
        .await
        .unwrap(),
        Reply::Array(vec![Reply::Int(1), Reply::Int(0)])
    );
}

/// Three shards, each node on a runtime of its own (a script that loops holds only its node).
async fn three_shards() -> Cluster {
    Cluster::builder(&["a", "b", "c"])
        .members(3)
        .node_runtime(NodeRuntime::Own)
        .start(|_| {})
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_runs_where_the_key_it_did_not_declare_lives() {
    let cl = three_shards().await;
    let mut c = Conn::connect(&cl.router.to_string(), T).await.unwrap();
    let ids = ["a", "b", "c"];
    let on: Vec<String> = ids.iter().map(|id| name_on(&ids, id, "loose:")).collect();
    for (k, id) in on.iter().zip(ids) {
        assert_eq!(text(&c.call(&["SET", k, id], T).await.unwrap()), "OK");
    }
    // No keys declared: wherever the router first sends it, it ends on the key's shard.
    for (k, id) in on.iter().zip(ids) {
        let script = format!("return redis.call('GET', '{k}')");
        let r = c.call(&["EVAL", &script, "0"], T).await.unwrap();
        assert_eq!(text(&r), id, "{k}");
        let wrote = format!("redis.call('SET', '{k}', 'w') return redis.call('GET', '{k}')");
        assert_eq!(text(&c.call(&["EVAL", &wrote, "0"], T).await.unwrap()), "w");
        let mut node = Conn::connect(&cl.addr(id), T).await.unwrap();
        assert_eq!(
            text(&node.call(&["GET", k], T).await.unwrap()),
            "w",
            "{k} on {id}"
        );
    }
    // A caught refusal counts as touching the key: the pcall runs where the key lives.
    let caught = format!("return redis.pcall('SET', '{}', 'p')", on[1]);
    assert_eq!(
        text(&c.call(&["EVAL", &caught, "0"], T).await.unwrap()),
        "OK"
    );
    assert_eq!(text(&c.call(&["GET", &on[1]], T).await.unwrap()), "p");
    // Keys of two shards: refused, and nothing written anywhere.
    let two = format!(
        "redis.call('GET', '{}') redis.call('GET', '{}') return redis.call('SET', '{}', 'x')",
        on[0], on[2], on[0]
    );
    let r = c.call(&["EVAL", &two, "0"], T).await.unwrap();
    assert!(text(&r).starts_with("CROSSSHARD"), "{r:?}");
    assert_eq!(text(&c.call(&["GET", &on[0]], T).await.unwrap()), "w");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answers_busy_while_a_script_runs_long_and_script_kill_stops_it() {
    let cl = three_shards().await;
    for id in ["a", "b", "c"] {
        let mut n = Conn::connect(&cl.addr(id), T).await.unwrap();
        let r = n
            .call(&["CONFIG", "SET", "busy-reply-threshold", "50"], T)
            .await
            .unwrap();
        assert_eq!(text(&r), "OK");
    }
    let mut c = Conn::connect(&cl.router.to_string(), T).await.unwrap();
    assert_eq!(text(&c.call(&["PING"], T).await.unwrap()), "PONG");
    let mut looping = TcpStream::connect(cl.router).await.unwrap();
    looping
        .write_all(&req(&["EVAL", "while true do end", "0"]))
        .await
        .unwrap();
    let mut busy = String::new();
    for _ in 0..100 {
        busy = text(&c.call(&["PING"], T).await.unwrap());
        if busy.starts_with("BUSY") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        busy.starts_with("BUSY") && busy.contains("SCRIPT KILL"),
        "{busy}"
    );
    assert_eq!(text(&c.call(&["SCRIPT", "KILL"], T).await.unwrap()), "OK");
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), looping.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let killed = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(killed.contains("Script killed by user"), "{killed}");
    // The killed script's shard answers again, and PING is the router's own once more.
    let mut pong = String::new();
    for _ in 0..100 {
        pong = text(&c.call(&["PING"], T).await.unwrap());
        if pong == "PONG" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pong, "PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_may_run_past_the_request_timeout() {
    let cl = Cluster::builder(&["a", "b"])
        .members(2)
        .node_runtime(NodeRuntime::Own)
        .start(|c: &mut RouterConfig| c.request_timeout = Duration::from_millis(300))
        .await;
    let mut c = Conn::connect(&cl.router.to_string(), T).await.unwrap();
    let slow = "local s = redis.call('TIME') \
                repeat local n = redis.call('TIME') \
                until (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 900000 \
                return 'done'";
    assert_eq!(
        text(&c.call(&["EVAL", slow, "0"], T).await.unwrap()),
        "done"
    );
    // The connection that carried it still serves others.
    assert_eq!(
        text(&c.call(&["SET", "after", "1"], T).await.unwrap()),
        "OK"
    );
    assert_eq!(text(&c.call(&["GET", "after"], T).await.unwrap()), "1");
}
