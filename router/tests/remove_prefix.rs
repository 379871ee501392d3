#![allow(clippy::unwrap_used)]
//! A route with `remove_prefix = true`, end to end on real nodes: its pool's nodes hold the
//! keys without the prefix, every command a client sends with the full names works, replies
//! that name keys (KEYS, SCAN, RANDOMKEY, blocking pops, LMPOP, XREAD) name them in full, and
//! the pool changes membership under writes without losing or misplacing a key, and keyspace
//! notifications from its nodes name the keys in full.

use std::time::{Duration, Instant};

use ringcache_protocol::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

mod support;

use support::{
    conn, frame, keys_on, raw_expect, reads_back, req, set_keys, start_router, text, two_pools,
    Node, NodeRuntime, T,
};

const KEYS: usize = 300;

struct Cluster {
    /// `default` pool nodes a1, a2; pool `s` (route `sess:`, prefix removed) nodes s1, s2.
    a: Vec<Node>,
    s: Vec<Node>,
    spare: Node,
    router: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Cluster {
    let route = "[[route]]\nprefix = \"sess:\"\npool = \"s\"\nremove_prefix = true\n";
    let (a, s, config) = two_pools("s", route).await;
    let spare = Node::start(0, NodeRuntime::Own).await;
    let (router, stop) = start_router(config).await;
    support::wait_epoch_one(a.iter().chain(&s)).await;
    Cluster {
        a,
        s,
        spare,
        router,
        _stop: stop,
    }
}

fn sorted(r: Reply) -> Vec<String> {
    let Reply::Array(v) = r else {
        panic!("not an array: {r:?}")
    };
    let mut out: Vec<String> = v.iter().map(text).collect();
    out.sort();
    out
}

fn names(prefix: &str, ids: impl Iterator<Item = usize>) -> Vec<String> {
    let mut out: Vec<String> = ids.map(|i| format!("{prefix}{i}")).collect();
    out.sort();
    out
}

/// A map reply's field (RESP2 flattens maps to pairs).
fn get(r: &Reply, name: &str) -> Option<String> {
    let Reply::Array(m) = r else {
        panic!("not a map: {r:?}")
    };
    m.chunks(2)
        .find(|kv| text(&kv[0]) == name)
        .map(|kv| text(&kv[1]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pool_holds_names_without_the_prefix_and_clients_see_them_whole() {
    let p = start().await;
    let mut c = conn(p.router).await;
    set_keys(&mut c, "sess:", KEYS).await;
    set_keys(&mut c, "other:", KEYS).await;

    // Stored without the prefix, spread over both shards; the other pool untouched.
    assert_eq!(
        keys_on(&[&p.s[0], &p.s[1]]).await,
        names("", 0..KEYS),
        "pool s holds the bare names"
    );
    assert!(!keys_on(&[&p.s[0]]).await.is_empty() && !keys_on(&[&p.s[1]]).await.is_empty());
    assert_eq!(keys_on(&[&p.a[0], &p.a[1]]).await, names("other:", 0..KEYS));
    reads_back(&mut c, "sess:", KEYS).await;
    reads_back(&mut c, "other:", KEYS).await;

    // RING LOCATE names the shard holding the bare name, and the name.
    let r = c.call(&["RING", "LOCATE", "sess:7"], T).await.unwrap();
    assert_eq!(get(&r, "node_key").as_deref(), Some("7"));
    let shard = get(&r, "shard").unwrap();
    let holder = if shard == "s1" { &p.s[0] } else { &p.s[1] };
    assert!(keys_on(&[holder]).await.contains(&"7".to_string()));
    let r = c.call(&["RING", "ROUTES"], T).await.unwrap();
    let Reply::Array(routes) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(get(&routes[0], "remove_prefix").as_deref(), Some("1"));

    // Multi-key commands across the pools split and merge as for any route.
    let r = c
        .call(&["MGET", "sess:1", "other:1", "sess:299", "nope"], T)
        .await
        .unwrap();
    assert_eq!(
        r,
        Reply::Array(vec![
            Reply::Bulk("v1".into()),
            Reply::Bulk("v1".into()),
            Reply::Bulk("v299".into()),
            Reply::Nil,
        ])
    );
    let r = c
        .call(&["EXISTS", "sess:1", "other:2", "sess:x"], T)
        .await
        .unwrap();
    assert_eq!(r, Reply::Int(2));

    // Keyspace commands name keys in full, filtered by the client's pattern.
    assert_eq!(
        sorted(c.call(&["KEYS", "sess:*"], T).await.unwrap()),
        names("sess:", 0..KEYS)
    );
    assert_eq!(
        sorted(c.call(&["KEYS", "sess:1?"], T).await.unwrap()),
        names("sess:", 10..20)
    );
    let mut want = names("sess:", 0..1);
    want.extend(names("other:", 0..1));
    want.sort();
    assert_eq!(sorted(c.call(&["KEYS", "*:0"], T).await.unwrap()), want);
    assert_eq!(
        c.call(&["KEYS", "*"], T).await.unwrap().as_array_len(),
        Some(2 * KEYS)
    );
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    for _ in 0..10_000 {
        let r = c
            .call(&["SCAN", &cursor, "MATCH", "sess:2*", "COUNT", "50"], T)
            .await
            .unwrap();
        let Reply::Array(v) = r else { panic!("SCAN") };
        cursor = text(&v[0]);
        seen.extend(sorted(v[1].clone()));
        if cursor == "0" {
            break;
        }
    }
    seen.sort();
    seen.dedup();
    let mut want = names("sess:", [2].into_iter().chain(20..30).chain(200..300));
    want.sort();
    assert_eq!(seen, want);
    for _ in 0..20 {
        let k = text(&c.call(&["RANDOMKEY"], T).await.unwrap());
        assert!(k.starts_with("sess:") || k.starts_with("other:"), "{k}");
    }
    assert_eq!(
        c.call(&["DBSIZE"], T).await.unwrap(),
        Reply::Int(2 * KEYS as i64)
    );

    // Replies naming keys name them in full.
    c.call(&["RPUSH", "sess:l", "a", "b", "c"], T)
        .await
        .unwrap();
    let r = c
        .call(&["BLPOP", "sess:none", "sess:l", "1"], T)
        .await
        .unwrap();
    assert_eq!(sorted_pair(&r), ("sess:l".into(), "a".into()));
    let r = c
        .call(&["LMPOP", "2", "sess:none", "sess:l", "LEFT"], T)
        .await
        .unwrap();
    let Reply::Array(v) = &r else { panic!("{r:?}") };
    assert_eq!(text(&v[0]), "sess:l");
    c.call(&["ZADD", "sess:z", "1", "m"], T).await.unwrap();
    let r = c.call(&["BZPOPMIN", "sess:z", "1"], T).await.unwrap();
    let Reply::Array(v) = &r else { panic!("{r:?}") };
    assert_eq!(text(&v[0]), "sess:z");
    c.call(&["XADD", "sess:st", "1-1", "f", "v"], T)
        .await
        .unwrap();
    let r = c
        .call(&["XREAD", "COUNT", "1", "STREAMS", "sess:st", "0"], T)
        .await
        .unwrap();
    let Reply::Array(streams) = &r else {
        panic!("{r:?}")
    };
    let Reply::Array(first) = &streams[0] else {
        panic!("{r:?}")
    };
    assert_eq!(text(&first[0]), "sess:st");

    // Transactions, WATCH and scripts see the full names; the node the bare ones.
    for cmd in [
        &["WATCH", "sess:t"][..],
        &["MULTI"],
        &["SET", "sess:t", "1"],
        &["INCR", "sess:t"],
    ] {
        c.call(cmd, T).await.unwrap();
    }
    let r = c.call(&["EXEC"], T).await.unwrap();
    let Reply::Array(v) = &r else { panic!("{r:?}") };
    assert_eq!((text(&v[0]), &v[1]), ("OK".to_string(), &Reply::Int(2)));
    // A reply naming a key inside EXEC's names it in full too.
    for cmd in [
        &["MULTI"][..],
        &["RPUSH", "sess:m", "x"],
        &["LMPOP", "1", "sess:m", "LEFT"],
    ] {
        c.call(cmd, T).await.unwrap();
    }
    let r = c.call(&["EXEC"], T).await.unwrap();
    let Reply::Array(v) = &r else { panic!("{r:?}") };
    let Reply::Array(popped) = &v[1] else {
        panic!("{r:?}")
    };
    assert_eq!(text(&popped[0]), "sess:m");
    let r = c
        .call(
            &["EVAL", "return redis.call('GET', KEYS[1])", "1", "sess:t"],
            T,
        )
        .await
        .unwrap();
    assert_eq!(text(&r), "2");
    let r = c
        .call(&["RENAME", "sess:{g}a", "sess:{g}b"], T)
        .await
        .unwrap();
    assert!(r.is_error(), "no such key: {r:?}");
    c.call(&["SET", "sess:{g}a", "x"], T).await.unwrap();
    let r = c
        .call(&["RENAME", "sess:{g}a", "sess:{g}b"], T)
        .await
        .unwrap();
    assert_eq!(text(&r), "OK");
    let on_s = keys_on(&[&p.s[0], &p.s[1]]).await;
    assert!(on_s.contains(&"t".to_string()) && on_s.contains(&"{g}b".to_string()));
    assert!(on_s.iter().all(|k| !k.starts_with("sess:")), "{on_s:?}");
}

fn sorted_pair(r: &Reply) -> (String, String) {
    let Reply::Array(v) = r else { panic!("{r:?}") };
    (text(&v[0]), text(&v[1]))
}

trait ArrayLen {
    fn as_array_len(&self) -> Option<usize>;
}

impl ArrayLen for Reply {
    fn as_array_len(&self) -> Option<usize> {
        match self {
            Reply::Array(v) => Some(v.len()),
            _ => None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pool_changes_membership_under_writes_and_keeps_every_key() {
    let p = start().await;
    let mut c = conn(p.router).await;
    set_keys(&mut c, "sess:", KEYS).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One writer of its own keys in the pool during the join and the leave (bounded in count).
    let writer = {
        let (router, stop) = (p.router, stop.clone());
        tokio::spawn(async move {
            let mut c = conn(router).await;
            let mut acked = std::collections::HashMap::new();
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 50_000 {
                n += 1;
                let k = format!("sess:w:{}", n % 200);
                let v = n.to_string();
                if let Ok(r) = c.call(&["SET", &k, &v], T).await {
                    assert_eq!(text(&r), "OK", "{k}");
                    acked.insert(k, v);
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let spare = p.spare.addr.to_string();
    for cmd in [
        &["RING", "JOIN", "s3", &spare, "POOL", "s"][..],
        &["RING", "LEAVE", "s1", "POOL", "s"],
    ] {
        let r = c.call(cmd, T).await.unwrap();
        assert_eq!(text(&r), "OK", "{cmd:?}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = text(&c.call(&["RING", "STATUS", "POOL", "s"], T).await.unwrap());
            if st.lines().any(|l| l.trim() == "migrating:0") {
                break;
            }
            assert!(Instant::now() < deadline, "still migrating:\n{st}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = writer.await.unwrap();
    assert!(!acked.is_empty());
    for (k, v) in &acked {
        assert_eq!(text(&c.call(&["GET", k], T).await.unwrap()), *v, "{k}");
    }
    reads_back(&mut c, "sess:", KEYS).await;
    // s1 left with nothing; the others hold bare names only, each on its owner (a GET of every
    // key above went to the owner the router computes from the bare name and found it).
    assert!(keys_on(&[&p.s[0]]).await.is_empty());
    let held = keys_on(&[&p.s[1], &p.spare]).await;
    assert_eq!(held.len(), KEYS + acked.len());
    assert!(held.iter().all(|k| !k.starts_with("sess:")));
    assert!(!keys_on(&[&p.spare]).await.is_empty());
    assert!(keys_on(&[&p.a[0], &p.a[1]]).await.is_empty());
}

/// A raw connection to the router that sent `cmd name` (SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE) and
/// read exactly its confirmation: `[kind, name, 1]`.
async fn subscriber(router: std::net::SocketAddr, cmd: &str, name: &str) -> TcpStream {
    let mut sock = TcpStream::connect(router).await.unwrap();
    sock.write_all(&req(&[cmd, name])).await.unwrap();
    let kind = cmd.to_ascii_lowercase();
    let confirm = format!(
        "*3\r\n${}\r\n{kind}\r\n${}\r\n{name}\r\n:1\r\n",
        kind.len(),
        name.len()
    );
    raw_expect(&mut sock, &confirm).await;
    sock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyspace_notifications_name_the_clients_keys() {
    let p = start().await;
    for n in p.a.iter().chain(&p.s) {
        let r = conn(n.addr)
            .await
            .call(&["CONFIG", "SET", "notify-keyspace-events", "KEA"], T)
            .await
            .unwrap();
        assert_eq!(text(&r), "OK");
    }
    let space = "__keyspace@0__:sess:n";
    let mut sub = subscriber(p.router, "SUBSCRIBE", space).await;
    let pattern = "__keyspace@*__:sess:*";
    let mut psub = subscriber(p.router, "PSUBSCRIBE", pattern).await;
    let event = "__keyevent@0__:set";
    let mut esub = subscriber(p.router, "SUBSCRIBE", event).await;
    let mut c = conn(p.router).await;
    assert_eq!(
        text(&c.call(&["SET", "sess:n", "1"], T).await.unwrap()),
        "OK"
    );
    raw_expect(&mut sub, &frame('*', &["message", space, "set"])).await;
    raw_expect(
        &mut psub,
        &frame('*', &["pmessage", pattern, "__keyspace@0__:sess:n", "set"]),
    )
    .await;
    raw_expect(&mut esub, &frame('*', &["message", event, "sess:n"])).await;
    // A key of the other pool: its own name, and no pattern of this route hears it.
    assert_eq!(
        text(&c.call(&["SET", "other:n", "1"], T).await.unwrap()),
        "OK"
    );
    raw_expect(&mut esub, &frame('*', &["message", event, "other:n"])).await;
    assert_eq!(
        text(&c.call(&["SET", "sess:m", "1"], T).await.unwrap()),
        "OK"
    );
    raw_expect(
        &mut psub,
        &frame('*', &["pmessage", pattern, "__keyspace@0__:sess:m", "set"]),
    )
    .await;

    // Plain pub/sub on channels routed to the pool: patterns as written, shard channels
    // named like keys.
    let mut chat = subscriber(p.router, "PSUBSCRIBE", "sess:room*").await;
    let mut shard = subscriber(p.router, "SSUBSCRIBE", "sess:room").await;
    // PUBSUB lists the client's names and counts each pattern once.
    let r = c.call(&["PUBSUB", "NUMPAT"], T).await.unwrap();
    assert_eq!(r, Reply::Int(2));
    let r = c.call(&["PUBSUB", "CHANNELS"], T).await.unwrap();
    assert_eq!(sorted(r), vec![event.to_string(), space.to_string()]);
    let r = c.call(&["PUBSUB", "CHANNELS", "*sess:*"], T).await.unwrap();
    assert_eq!(sorted(r), vec![space.to_string()]);
    let r = c.call(&["PUBSUB", "SHARDCHANNELS"], T).await.unwrap();
    assert_eq!(sorted(r), vec!["sess:room".to_string()]);
    let r = c
        .call(&["PUBSUB", "SHARDNUMSUB", "sess:room"], T)
        .await
        .unwrap();
    let Reply::Array(v) = &r else { panic!("{r:?}") };
    assert_eq!(
        (text(&v[0]), &v[1]),
        ("sess:room".to_string(), &Reply::Int(1))
    );
    let r = c.call(&["PUBLISH", "sess:room", "hi"], T).await.unwrap();
    assert_eq!(r, Reply::Int(1));
    raw_expect(
        &mut chat,
        &frame('*', &["pmessage", "sess:room*", "sess:room", "hi"]),
    )
    .await;
    let r = c.call(&["SPUBLISH", "sess:room", "yo"], T).await.unwrap();
    assert_eq!(r, Reply::Int(1));
    raw_expect(&mut shard, &frame('*', &["smessage", "sess:room", "yo"])).await;
}
