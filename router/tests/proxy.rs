#![allow(clippy::unwrap_used)]
//! The router end to end, in process: real ringcache nodes on 127.0.0.1 port 0 as shards, a
//! router in front, and a byte-exact RESP client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_protocol::codec::ClientCodec;
use ringcache_protocol::{Protocol, Reply};
use ringcache_router::RouterConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::Decoder;

mod support;

use support::{start_router, Cluster, Node, NodeRuntime, T};

impl Cluster {
    async fn client(&self) -> Client {
        Client::connect(self.router).await
    }
}

struct Client {
    sock: TcpStream,
    buf: BytesMut,
    codec: ClientCodec,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            sock: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            codec: ClientCodec::new(Protocol::Resp2),
        }
    }

    async fn send(&mut self, args: &[&str]) {
        let mut out = BytesMut::new();
        ringcache_protocol::resp::encode_request(&mut out, args.iter());
        self.sock.write_all(&out).await.unwrap();
    }

    /// The next reply's exact bytes.
    async fn raw(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + T;
        loop {
            if let Some(r) = self.codec.decode(&mut self.buf).unwrap() {
                return r.raw.to_vec();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.sock.read_buf(&mut self.buf))
                .await
                .expect("reply timed out")
                .unwrap();
            assert!(n > 0, "connection closed");
        }
    }

    async fn reply(&mut self) -> Reply {
        let raw = self.raw().await;
        let mut b = BytesMut::from(&raw[..]);
        self.codec.decode(&mut b).unwrap().unwrap().reply
    }

    async fn cmd(&mut self, args: &[&str]) -> Reply {
        self.send(args).await;
        self.reply().await
    }

    async fn hello3(&mut self) -> Reply {
        self.send(&["HELLO", "3"]).await;
        self.codec = ClientCodec::new(Protocol::Resp3);
        self.reply().await
    }
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn ok() -> Reply {
    Reply::StatusOwned("OK".into())
}

fn err_text(r: &Reply) -> &str {
    match r {
        Reply::Error(e) => e,
        other => panic!("not an error: {other:?}"),
    }
}

/// Keys `prefix0..` until each shard of the ring owns at least one, as RING LOCATE reports.
async fn keys_on_every_shard(c: &mut Client, shards: usize) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for i in 0..1000 {
        let key = format!("key:{i}");
        let Reply::Array(pairs) = c.cmd(&["RING", "LOCATE", &key]).await else {
            panic!("RING LOCATE not a map");
        };
        let Reply::Bulk(shard) = &pairs[1] else {
            panic!("no shard id");
        };
        let shard = String::from_utf8_lossy(shard).into_owned();
        if !found.iter().any(|(_, s)| *s == shard) {
            found.push((key, shard));
        }
        if found.len() == shards {
            break;
        }
    }
    assert_eq!(found.len(), shards);
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_and_multi_key_commands_route_and_merge() {
    let cluster = Cluster::builder(&["a", "b", "c"]).start(|_| {}).await;
    let mut c = cluster.client().await;
    assert_eq!(c.cmd(&["PING"]).await, Reply::StatusOwned("PONG".into()));
    for i in 0..100 {
        let k = format!("k{i}");
        assert_eq!(c.cmd(&["SET", &k, &format!("v{i}")]).await, ok());
    }
    assert_eq!(c.cmd(&["GET", "k7"]).await, bulk("v7"));
    assert_eq!(c.cmd(&["DBSIZE"]).await, Reply::Int(100));

    // every node holds some keys, none holds all
    for (_, n) in &cluster.nodes {
        let mut direct = Client::connect(n.addr).await;
        let Reply::Int(size) = direct.cmd(&["DBSIZE"]).await else {
            panic!()
        };
        assert!(size > 0 && size < 100, "node holds {size}");
    }

    let spread = keys_on_every_shard(&mut c, 3).await;
    let (k0, k1, k2) = (&spread[0].0, &spread[1].0, &spread[2].0);
    assert_eq!(c.cmd(&["MSET", k0, "x0", k1, "x1", k2, "x2"]).await, ok());
    assert_eq!(
        c.cmd(&["MGET", k2, "missing", k0, k1, k2]).await,
        Reply::Array(vec![
            bulk("x2"),
            Reply::Nil,
            bulk("x0"),
            bulk("x1"),
            bulk("x2")
        ])
    );
    assert_eq!(
        c.cmd(&["EXISTS", k0, k1, "missing", k2, k0]).await,
        Reply::Int(4)
    );
    assert_eq!(c.cmd(&["TOUCH", k0, k1]).await, Reply::Int(2));
    assert_eq!(c.cmd(&["DEL", k0, k1, "missing", k2]).await, Reply::Int(3));
    assert_eq!(c.cmd(&["UNLINK", "k1", "k2", "k3"]).await, Reply::Int(3));

    // unsplittable commands: together with a tag, refused across shards
    let cross = c.cmd(&["RENAME", k0, k1]).await;
    assert_eq!(
        err_text(&cross),
        "CROSSSHARD Keys in request don't hash to the same shard (use a {hash tag} to keep them together)"
    );
    let r = c.cmd(&["MSETNX", k0, "1", k1, "2"]).await;
    assert!(err_text(&r).starts_with("CROSSSHARD"));
    assert_eq!(
        c.cmd(&["MSETNX", "{u}.a", "1", "{u}.b", "2"]).await,
        Reply::Int(1)
    );
    assert_eq!(c.cmd(&["RENAME", "{u}.a", "{u}.c"]).await, ok());
    assert_eq!(c.cmd(&["GET", "{u}.c"]).await, bulk("1"));

    assert_eq!(
        err_text(&c.cmd(&["MSET", k0, "1", k1]).await),
        "ERR wrong number of arguments for 'mset' command"
    );

    // KEYS concatenates every shard's keys
    let Reply::Array(keys) = c.cmd(&["KEYS", "k*"]).await else {
        panic!()
    };
    assert_eq!(keys.len(), 100 - 3);

    // errors keep Redis's wording
    assert_eq!(
        err_text(&c.cmd(&["GET"]).await),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err_text(&c.cmd(&["NOSUCH", "a"]).await),
        "ERR unknown command 'NOSUCH', with args beginning with: 'a' "
    );
    assert!(
        err_text(&c.cmd(&["RING", "BOGUS"]).await).starts_with("ERR unknown subcommand 'BOGUS'")
    );

    assert_eq!(c.cmd(&["FLUSHALL"]).await, ok());
    assert_eq!(c.cmd(&["DBSIZE"]).await, Reply::Int(0));
    assert_eq!(c.cmd(&["RANDOMKEY"]).await, Reply::Nil);
    assert_eq!(c.cmd(&["SET", "only", "1"]).await, ok());
    assert_eq!(c.cmd(&["RANDOMKEY"]).await, bulk("only"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_walks_every_shard_once() {
    let cluster = Cluster::builder(&["a", "b", "c"]).start(|_| {}).await;
    let mut c = cluster.client().await;
    let mut want = std::collections::BTreeSet::new();
    for i in 0..500 {
        let k = format!("s:{i}");
        c.send(&["SET", &k, "1"]).await;
        want.insert(k);
    }
    for _ in 0..500 {
        assert_eq!(c.reply().await, ok());
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 10_000, "SCAN never ended");
        let Reply::Array(parts) = c.cmd(&["SCAN", &cursor, "COUNT", "50"]).await else {
            panic!()
        };
        let (Reply::Bulk(next), Reply::Array(keys)) = (&parts[0], &parts[1]) else {
            panic!()
        };
        for k in keys {
            let Reply::Bulk(k) = k else { panic!() };
            seen.insert(String::from_utf8_lossy(k).into_owned());
        }
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen, want);
    assert!(err_text(&c.cmd(&["SCAN", "x"]).await).contains("invalid cursor"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_replies_keep_request_order() {
    let cluster = Cluster::builder(&["a", "b", "c"]).start(|_| {}).await;
    let mut c = cluster.client().await;
    let mut batch = BytesMut::new();
    let n = 3000;
    for i in 0..n {
        let k = format!("p{i}");
        let v = format!("{i}");
        ringcache_protocol::resp::encode_request(&mut batch, ["SET", k.as_str(), v.as_str()]);
        ringcache_protocol::resp::encode_request(&mut batch, ["GET", k.as_str()]);
        if i % 7 == 0 {
            ringcache_protocol::resp::encode_request(&mut batch, ["MGET", "p0", k.as_str()]);
        }
        if i % 11 == 0 {
            ringcache_protocol::resp::encode_request(&mut batch, ["PING"]);
        }
    }
    c.sock.write_all(&batch).await.unwrap();
    for i in 0..n {
        assert_eq!(c.reply().await, ok(), "SET {i}");
        assert_eq!(c.reply().await, bulk(&i.to_string()), "GET {i}");
        if i % 7 == 0 {
            assert_eq!(
                c.reply().await,
                Reply::Array(vec![bulk("0"), bulk(&i.to_string())])
            );
        }
        if i % 11 == 0 {
            assert_eq!(c.reply().await, Reply::StatusOwned("PONG".into()));
        }
    }
}

/// CLIENT REPLY OFF and SKIP drop replies as Redis does (SKIP while off changes nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reply_off_and_skip_drop_replies() {
    let cluster = Cluster::builder(&["a", "b"]).start(|_| {}).await;
    let mut c = cluster.client().await;
    let mut batch = BytesMut::new();
    for cmd in [
        &["CLIENT", "REPLY", "OFF"][..],
        &["SET", "r", "1"],
        &["CLIENT", "REPLY", "SKIP"],
        &["GET", "r"],
        &["CLIENT", "REPLY", "ON"],
        &["CLIENT", "REPLY", "SKIP"],
        &["INCR", "r"],
        &["GET", "r"],
    ] {
        ringcache_protocol::resp::encode_request(&mut batch, cmd.iter().copied());
    }
    c.sock.write_all(&batch).await.unwrap();
    assert_eq!(c.reply().await, ok(), "CLIENT REPLY ON");
    assert_eq!(c.reply().await, bulk("2"), "the GET after the skipped INCR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_clients_get_resp3_replies() {
    let cluster = Cluster::builder(&["a", "b"]).start(|_| {}).await;
    let mut c = cluster.client().await;
    let Reply::Map(hello) = c.hello3().await else {
        panic!("HELLO 3 is not a map")
    };
    assert!(hello.contains(&(bulk("proto"), Reply::Int(3))));
    assert_eq!(
        c.cmd(&["HSET", "h", "f1", "v1", "f2", "v2"]).await,
        Reply::Int(2)
    );
    let Reply::Map(fields) = c.cmd(&["HGETALL", "h"]).await else {
        panic!("HGETALL is not a map for a RESP3 client")
    };
    assert_eq!(fields.len(), 2);
    assert_eq!(c.cmd(&["GET", "nope"]).await, Reply::Nil);
    let raw = {
        c.send(&["GET", "nope"]).await;
        c.raw().await
    };
    assert_eq!(raw, b"_\r\n");
    // back to RESP2 on the same connection
    c.send(&["HELLO", "2"]).await;
    c.codec = ClientCodec::new(Protocol::Resp2);
    let _ = c.reply().await;
    c.send(&["HGETALL", "h"]).await;
    assert!(c.raw().await.starts_with(b"*4\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shard_fails_fast_and_comes_back() {
    let mut cluster = Cluster::builder(&["a", "b", "c"]).start(|_| {}).await;
    let mut c = cluster.client().await;
    let spread = keys_on_every_shard(&mut c, 3).await;
    for (k, _) in &spread {
        assert_eq!(c.cmd(&["SET", k, "v"]).await, ok());
    }
    let b_addr = cluster.node("b").addr;
    cluster.kill_node("b").await;
    let (kb, _) = spread.iter().find(|(_, s)| s == "b").unwrap().clone();
    let (ka, _) = spread.iter().find(|(_, s)| s == "a").unwrap().clone();
    let started = Instant::now();
    let r = c.cmd(&["GET", &kb]).await;
    let text = err_text(&r).to_string();
    assert!(
        text.starts_with(&format!("ERR shard 'b' ({b_addr}) ")),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // other shards keep working
    assert_eq!(c.cmd(&["GET", &ka]).await, bulk("v"));
    // a split over the dead shard names it too
    let r = c.cmd(&["MGET", &ka, &kb]).await;
    assert!(err_text(&r).contains("shard 'b'"));

    // restart on the same port: used again within the reconnect backoff
    cluster.restart_node("b").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.cmd(&["SET", &kb, "again"]).await;
        if r == ok() {
            break;
        }
        assert!(Instant::now() < deadline, "shard b never came back: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.cmd(&["GET", &kb]).await, bulk("again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_backend_times_out_instead_of_hanging() {
    // accepts connections and never answers
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut config = RouterConfig::with_shards("127.0.0.1:0", &[("mute", &silent_addr)]).unwrap();
    config.request_timeout = Duration::from_millis(300);
    let (router, _stop) = start_router(config).await;
    let mut c = Client::connect(router).await;
    let started = Instant::now();
    let r = c.cmd(&["GET", "x"]).await;
    assert_eq!(
        err_text(&r),
        format!("ERR shard 'mute' ({silent_addr}) timed out: no reply within 300 ms")
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(c.cmd(&["PING"]).await, Reply::StatusOwned("PONG".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_admin_and_connection_commands() {
    let cluster = Cluster::builder(&["a", "b", "c"]).start(|_| {}).await;
    let mut c = cluster.client().await;
    let Reply::Array(nodes) = c.cmd(&["RING", "NODES"]).await else {
        panic!()
    };
    assert_eq!(nodes.len(), 3);
    let Reply::Array(first) = &nodes[0] else {
        panic!()
    };
    assert_eq!(first[0], bulk("id"));
    assert_eq!(first[1], bulk("a"));
    assert_eq!(first[3], bulk(&cluster.addr("a")));
    // RING STATUS is INFO-style `key:value` lines (tools poll it for `migrating:0`).
    let Reply::Bulk(status) = c.cmd(&["RING", "STATUS"]).await else {
        panic!()
    };
    let status = String::from_utf8_lossy(&status).into_owned();
    for line in [
        "epoch:1\r\n",
        "vnodes:2048\r\n",
        "migrating:0\r\n",
        "share_a:",
    ] {
        assert!(status.contains(line), "{line:?} not in {status}");
    }
    let Reply::Array(loc) = c.cmd(&["RING", "LOCATE", "{user1}.name"]).await else {
        panic!()
    };
    assert!(loc.contains(&bulk("user1")));
    assert!(err_text(&c.cmd(&["RING", "LOCATE"]).await).contains("wrong number of arguments"));

    assert_eq!(c.cmd(&["ECHO", "hi"]).await, bulk("hi"));
    assert_eq!(c.cmd(&["SELECT", "0"]).await, ok());
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "me"]).await, ok());
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]).await, bulk("me"));
    let Reply::Bulk(list) = c.cmd(&["CLIENT", "LIST"]).await else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&list).contains("name=me"));
    let Reply::Bulk(info) = c.cmd(&["INFO"]).await else {
        panic!()
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(info.contains("# Router\r\nring_epoch:1\r\n"), "{info}");
    assert!(info.contains("# Keyspace"), "{info}");
    let Reply::Int(count) = c.cmd(&["COMMAND", "COUNT"]).await else {
        panic!()
    };
    assert!(count > 50);
    assert_eq!(c.cmd(&["QUIT"]).await, ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirepass_is_enforced() {
    let cluster = Cluster::builder(&["a", "b"])
        .start(|c| {
            c.requirepass = Some("pw".into());
        })
        .await;
    let mut c = cluster.client().await;
    assert!(err_text(&c.cmd(&["GET", "k"]).await).starts_with("NOAUTH"));
    assert!(err_text(&c.cmd(&["AUTH", "bad"]).await).starts_with("WRONGPASS"));
    assert_eq!(c.cmd(&["AUTH", "pw"]).await, ok());
    assert_eq!(c.cmd(&["SET", "k", "v"]).await, ok());
    assert_eq!(c.cmd(&["GET", "k"]).await, bulk("v"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_over_http() {
    let node = Node::start(0, NodeRuntime::Shared).await;
    let config =
        RouterConfig::with_shards("127.0.0.1:0", &[("a", &node.addr.to_string())]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = ringcache_router::Router::new(config, addr.port()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(ringcache_router::proxy::serve(
        router.clone(),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    tokio::spawn(ringcache_router::metrics::serve(
        router.clone(),
        metrics,
        router.stop_signal(),
    ));

    let mut c = Client::connect(addr).await;
    assert_eq!(c.cmd(&["SET", "k", "v"]).await, ok());
    assert_eq!(c.cmd(&["GET", "k"]).await, bulk("v"));
    assert_eq!(c.cmd(&["PING"]).await, Reply::StatusOwned("PONG".into()));
    assert!(matches!(c.cmd(&["RENAME", "k"]).await, Reply::Error(_)));

    let mut http = TcpStream::connect(metrics_addr).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tokio::time::timeout(T, http.read_to_string(&mut body))
        .await
        .unwrap()
        .unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    for line in [
        "# TYPE ringcache_requests_total counter",
        "ringcache_requests_total{command=\"get\",shard=\"a\"} 1",
        "ringcache_requests_total{command=\"set\",shard=\"a\"} 1",
        "ringcache_requests_total{command=\"ping\",shard=\"router\"} 1",
        "ringcache_errors_total{command=\"rename\",shard=\"router\"} 1",
        "ringcache_errors_total{command=\"get\",shard=\"a\"} 0",
        "# TYPE ringcache_request_duration_seconds histogram",
        "ringcache_request_duration_seconds_bucket{command=\"get\",shard=\"a\",le=\"+Inf\"} 1",
        "ringcache_request_duration_seconds_count{command=\"get\",shard=\"a\"} 1",
        "ringcache_upstream_connections{shard=\"a\"} 2",
        "ringcache_client_connections 1",
    ] {
        assert!(body.contains(line), "{line:?} missing:\n{body}");
    }
    let mut http = TcpStream::connect(metrics_addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 404"));
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_runtime_mode_keeps_order_too() {
    let cluster = Cluster::builder(&["a", "b"])
        .start(|c| c.io_threads = 0)
        .await;
    let mut c = cluster.client().await;
    let mut batch = BytesMut::new();
    for i in 0..500 {
        let k = format!("q{i}");
        ringcache_protocol::resp::encode_request(&mut batch, ["SET", k.as_str(), "x"]);
        ringcache_protocol::resp::encode_request(&mut batch, ["EXISTS", k.as_str(), "q0", "nope"]);
    }
    c.sock.write_all(&batch).await.unwrap();
    for _ in 0..500 {
        assert_eq!(c.reply().await, ok());
        assert_eq!(c.reply().await, Reply::Int(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_limit_and_protocol_errors() {
    let cluster = Cluster::builder(&["a"]).start(|c| c.max_clients = 1).await;
    let mut first = cluster.client().await;
    assert_eq!(
        first.cmd(&["PING"]).await,
        Reply::StatusOwned("PONG".into())
    );
    let mut second = cluster.client().await;
    let mut text = String::new();
    tokio::time::timeout(T, second.sock.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, "-ERR max number of clients reached\r\n");

    // a protocol error gets Redis's reply, then the connection closes
    first.sock.write_all(b"*1\r\n$x\r\n").await.unwrap();
    let r = first.reply().await;
    assert_eq!(err_text(&r), "ERR Protocol error: invalid bulk length");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(T, first.sock.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands_and_quit_after_pipeline() {
    let cluster = Cluster::builder(&["a", "b"]).start(|_| {}).await;
    let mut c = cluster.client().await;
    c.sock
        .write_all(b"SET inline \"a b\"\r\nGET inline\r\nQUIT\r\nGET inline\r\n")
        .await
        .unwrap();
    assert_eq!(c.reply().await, ok());
    assert_eq!(c.reply().await, bulk("a b"));
    assert_eq!(c.reply().await, ok());
    let mut rest = Vec::new();
    tokio::time::timeout(T, c.sock.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty(), "nothing after QUIT: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_owed_replies_then_returns() {
    let node = Node::start(0, NodeRuntime::Shared).await;
    let config =
        RouterConfig::with_shards("127.0.0.1:0", &[("a", &node.addr.to_string())]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let router = tokio::spawn(ringcache_router::run(config, listener, async {
        let _ = stopped.await;
    }));
    let mut c = Client::connect(addr).await;
    assert_eq!(c.cmd(&["SET", "k", "v"]).await, ok());
    let mut batch = BytesMut::new();
    for _ in 0..200 {
        ringcache_protocol::resp::encode_request(&mut batch, ["GET", "k"]);
    }
    c.sock.write_all(&batch).await.unwrap();
    // wait until the router has read the batch: the first reply is back
    assert_eq!(c.reply().await, bulk("v"));
    let _ = stop.send(());
    for _ in 1..200 {
        assert_eq!(c.reply().await, bulk("v"));
    }
    let done = tokio::time::timeout(Duration::from_secs(5), router).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    // the listener is closed
    assert!(TcpStream::connect(addr).await.is_err());
}

/// A backend that answers PING at once and GETs only when told: each read's GET keys go to
/// `reads`, and `release(n)` answers the oldest n GETs (the value is the key).
struct HeldBackend {
    addr: String,
    reads: tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
    release: tokio::sync::mpsc::UnboundedSender<usize>,
}

impl HeldBackend {
    async fn start() -> HeldBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (reads_tx, reads) = tokio::sync::mpsc::unbounded_channel();
        let (release, release_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(release_rx));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (reads_tx, release_rx) = (reads_tx.clone(), release_rx.clone());
                tokio::spawn(async move {
                    let mut pending = std::collections::VecDeque::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let mut releases = release_rx.lock().await;
                        tokio::select! {
                            n = s.read(&mut buf) => {
                                let Ok(n @ 1..) = n else { return };
                                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                                let pings = text.matches("PING").count();
                                for _ in 0..pings {
                                    s.write_all(b"+PONG\r\n").await.unwrap();
                                }
                                let keys: Vec<String> = text
                                    .split("GET\r\n$1\r\n")
                                    .skip(1)
                                    .map(|rest| rest[..1].to_string())
                                    .collect();
                                if !keys.is_empty() {
                                    pending.extend(keys.iter().cloned());
                                    let _ = reads_tx.send(keys);
                                }
                            }
                            Some(n) = releases.recv(), if !pending.is_empty() => {
                                for key in pending.drain(..n.min(pending.len())) {
                                    s.write_all(format!("$1\r\n{key}\r\n").as_bytes()).await.unwrap();
                                }
                            }
                        }
                    }
                });
            }
        });
        HeldBackend {
            addr,
            reads,
            release,
        }
    }

    /// The next `n` GET keys it reads, over however many reads.
    async fn received(&mut self, n: usize) -> Vec<String> {
        let mut keys = Vec::new();
        while keys.len() < n {
            keys.extend(self.next_read().await);
        }
        keys
    }

    async fn next_read(&mut self) -> Vec<String> {
        tokio::time::timeout(T, self.reads.recv())
            .await
            .expect("the backend read nothing")
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arriving_while_a_batch_is_unanswered_go_out_together() {
    let mut backend = HeldBackend::start().await;
    let mut config = RouterConfig::with_shards("127.0.0.1:0", &[("held", &backend.addr)]).unwrap();
    // One connection carries every client's requests.
    config.io_threads = 1;
    config.upstream_connections = 1;
    let (router, _stop) = start_router(config).await;
    let (mut a, mut b, mut c) = (
        Client::connect(router).await,
        Client::connect(router).await,
        Client::connect(router).await,
    );
    // A few requests on their way: the next one goes out at once.
    a.send(&["GET", "a"]).await;
    assert_eq!(backend.received(1).await, ["a"]);
    b.send(&["GET", "b"]).await;
    assert_eq!(backend.received(1).await, ["b"]);
    backend.release.send(2).unwrap();
    assert_eq!(a.reply().await, bulk("a"));
    assert_eq!(b.reply().await, bulk("b"));

    // Many on their way (a pipeline of 20): the next ones wait for a reply, then go together.
    let mut pipeline = BytesMut::new();
    for _ in 0..20 {
        ringcache_protocol::resp::encode_request(&mut pipeline, ["GET", "a"]);
    }
    a.sock.write_all(&pipeline).await.unwrap();
    assert_eq!(backend.received(20).await.len(), 20);
    b.send(&["GET", "b"]).await;
    c.send(&["GET", "c"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        backend.reads.try_recv().is_err(),
        "sent before a reply came"
    );
    backend.release.send(1).unwrap();
    assert_eq!(a.reply().await, bulk("a"));
    let mut together = backend.next_read().await;
    together.sort();
    assert_eq!(together, ["b", "c"]);
    backend.release.send(21).unwrap();
    for _ in 1..20 {
        assert_eq!(a.reply().await, bulk("a"));
    }
    assert_eq!(b.reply().await, bulk("b"));
    assert_eq!(c.reply().await, bulk("c"));
}
