//! The router's end-to-end tests run in process: real ringcache nodes on 127.0.0.1 port 0 as
//! shards and a router in front ([`Cluster`]), each stopped by a oneshot. Shared by `proxy.rs`
//! and `rebalance.rs` (the `tests` crate's process cluster cannot serve here: it depends on this
//! crate, and these tests tune `RouterConfig` and call the router's own functions).

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache_client::Client as NodeConn;
use ringcache_protocol::Reply;
use ringcache_router::RouterConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The bound on every wait of these tests (a reply, a node stopping, a condition).
pub const T: Duration = Duration::from_secs(10);

/// The router's upstream timeouts in a test cluster.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Timeouts {
    /// Short, so a dead shard is reported quickly (the proxy tests).
    pub const FAST: Timeouts = Timeouts {
        connect: Duration::from_millis(300),
        request: Duration::from_millis(800),
    };
    /// Room for migrations under load (the rebalance tests).
    pub const MIGRATION: Timeouts = Timeouts {
        connect: Duration::from_millis(500),
        request: Duration::from_millis(3000),
    };

    pub fn apply(self, config: &mut RouterConfig) {
        config.connect_timeout = self.connect;
        config.request_timeout = self.request;
    }
}

/// Where a node's tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRuntime {
    /// On the test's runtime.
    Shared,
    /// On a runtime thread of its own: migration does blocking I/O to the target node inside a
    /// command, which must not starve the runtime the target (or the router) runs on.
    Own,
}

/// Settings a test gives its nodes (a password, say) on top of the defaults.
pub type NodeTune = Arc<dyn Fn(&mut ringcache_node::NodeConfig) + Send + Sync>;

/// An in-process node; dropping it (or [`Node::kill`]) shuts it down.
pub struct Node {
    pub addr: SocketAddr,
    runtime: NodeRuntime,
    tune: Option<NodeTune>,
    stop: Option<oneshot::Sender<()>>,
    /// Fires once the node has closed its listener and every connection.
    stopped: Option<oneshot::Receiver<()>>,
}

impl Node {
    /// A node on 127.0.0.1 `port` (0: any), its tasks on `runtime`.
    pub async fn start(port: u16, runtime: NodeRuntime) -> Node {
        Node::start_tuned(port, runtime, None).await
    }

    /// Like [`Node::start`], with `tune` applied to the node's settings.
    pub async fn start_tuned(port: u16, runtime: NodeRuntime, tune: Option<NodeTune>) -> Node {
        let (stop, stop_rx) = oneshot::channel::<()>();
        let tuner = tune.clone();
        let (done_tx, stopped) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        let serve = async move {
            let mut config = ringcache_node::NodeConfig {
                port,
                ..Default::default()
            };
            if let Some(t) = &tuner {
                t(&mut config);
            }
            let listener = ringcache_node::bind(&config).await.unwrap();
            let _ = addr_tx.send(listener.local_addr().unwrap());
            let _ = ringcache_node::run(config, listener, async {
                let _ = stop_rx.await;
            })
            .await;
        };
        match runtime {
            NodeRuntime::Shared => {
                tokio::spawn(async move {
                    serve.await;
                    let _ = done_tx.send(());
                });
            }
            NodeRuntime::Own => {
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(serve);
                    drop(rt);
                    let _ = done_tx.send(());
                });
            }
        }
        Node {
            addr: addr_rx.await.unwrap(),
            runtime,
            tune,
            stop: Some(stop),
            stopped: Some(stopped),
        }
    }

    /// Stops the node and waits (bounded) until it has closed its listener and connections.
    pub async fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = tokio::time::timeout(T, stopped).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A router over `config` on `listener`; its stop switch.
pub fn start_router_on(config: RouterConfig, listener: TcpListener) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        ringcache_router::run(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    stop
}

/// A router over `config` on its `listen` address; its address and its stop switch.
pub async fn start_router(config: RouterConfig) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind(config.listen.as_str()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, start_router_on(config, listener))
}

/// What [`Cluster::builder`] starts: nodes for `ids`, the first `members` of them in the router's
/// config (the rest are spares), the router's timeouts, where the nodes run.
pub struct ClusterBuilder<'a> {
    ids: &'a [&'a str],
    members: usize,
    timeouts: Timeouts,
    runtime: NodeRuntime,
    node_tune: Option<NodeTune>,
}

impl ClusterBuilder<'_> {
    /// Only the first `n` shards are in the router's config.
    pub fn members(mut self, n: usize) -> Self {
        self.members = n;
        self
    }

    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    pub fn node_runtime(mut self, runtime: NodeRuntime) -> Self {
        self.runtime = runtime;
        self
    }

    /// Settings every node gets on top of the defaults.
    pub fn node_config(
        mut self,
        tune: impl Fn(&mut ringcache_node::NodeConfig) + Send + Sync + 'static,
    ) -> Self {
        self.node_tune = Some(Arc::new(tune));
        self
    }

    /// Starts the nodes, then the router (`tune` adjusts its config after the timeouts), and
    /// waits until the router has pushed epoch 1 to every member.
    pub async fn start(self, tune: impl FnOnce(&mut RouterConfig)) -> Cluster {
        let mut nodes = Vec::new();
        for id in self.ids {
            let node = Node::start_tuned(0, self.runtime, self.node_tune.clone()).await;
            nodes.push((id.to_string(), node));
        }
        let addrs: Vec<String> = nodes.iter().map(|(_, n)| n.addr.to_string()).collect();
        let shards: Vec<(&str, &str)> = self.ids[..self.members]
            .iter()
            .zip(&addrs)
            .map(|(id, a)| (*id, a.as_str()))
            .collect();
        let mut config = RouterConfig::with_shards("127.0.0.1:0", &shards).unwrap();
        self.timeouts.apply(&mut config);
        tune(&mut config);
        let link = config.node_link.clone();
        let (router, stop) = start_router(config).await;
        let c = Cluster {
            nodes,
            router,
            stop: Some(stop),
            timeouts: self.timeouts,
        };
        for (_, n) in &c.nodes[..self.members] {
            let addr = n.addr.to_string();
            eventually(T, || async {
                let mut conn = NodeConn::open(&addr, T, &link).await.ok()?;
                let r = conn.call(&["TOPOLOGY", "GET"], T).await.ok()?;
                matches!(&r, Reply::Array(v) if v.first() == Some(&Reply::Int(1))).then_some(())
            })
            .await;
        }
        c
    }
}

/// In-process nodes by shard id and a router in front. Dropping it stops them all.
pub struct Cluster {
    /// `(id, node)` in the order given; the first `members` are in the router's config.
    pub nodes: Vec<(String, Node)>,
    pub router: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    timeouts: Timeouts,
}

impl Cluster {
    /// Every id a member, the [`Timeouts::FAST`] timeouts, nodes on the test's runtime.
    pub fn builder<'a>(ids: &'a [&'a str]) -> ClusterBuilder<'a> {
        ClusterBuilder {
            ids,
            members: ids.len(),
            timeouts: Timeouts::FAST,
            runtime: NodeRuntime::Shared,
            node_tune: None,
        }
    }

    pub fn node(&self, id: &str) -> &Node {
        self.nodes
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, n)| n)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|(i, _)| i == id)
            .map(|(_, n)| n)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Node `id`'s address.
    pub fn addr(&self, id: &str) -> String {
        self.node(id).addr.to_string()
    }

    /// Stops node `id` and waits until it is down.
    pub async fn kill_node(&mut self, id: &str) {
        self.node_mut(id).kill().await;
    }

    /// Starts node `id` again (empty) on the port it had.
    pub async fn restart_node(&mut self, id: &str) {
        let node = self.node_mut(id);
        node.kill().await;
        *node = Node::start_tuned(node.addr.port(), node.runtime, node.tune.clone()).await;
    }

    /// Stops the router, then starts a new one on the same address over the shards `ids`.
    pub async fn restart_router(&mut self, ids: &[&str], tune: impl FnOnce(&mut RouterConfig)) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let shards: Vec<(&str, String)> = ids.iter().map(|id| (*id, self.addr(id))).collect();
        let pairs: Vec<(&str, &str)> = shards.iter().map(|(id, a)| (*id, a.as_str())).collect();
        let mut config = RouterConfig::with_shards("127.0.0.1:0", &pairs).unwrap();
        self.timeouts.apply(&mut config);
        tune(&mut config);
        // The old router's listener closes once its accept loop has seen the stop.
        let listener = eventually(T, || async { TcpListener::bind(self.router).await.ok() }).await;
        assert_eq!(listener.local_addr().unwrap(), self.router);
        self.stop = Some(start_router_on(config, listener));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `f` every 20 ms until it gives `Some`, failing after `timeout`.
pub async fn eventually<F, Fut, R>(timeout: Duration, mut f: F) -> R
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<R>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(r) = f().await {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A reply as text (bulk, status, error, integer), for assertions and RING STATUS fields.
/// A client connection to `addr` (a router or a node).
pub async fn conn(addr: impl ToString) -> ringcache_client::Client {
    ringcache_client::Client::connect(&addr.to_string(), T)
        .await
        .unwrap()
}

/// A command's arguments from words.
pub fn words(w: &[&str]) -> Vec<bytes::Bytes> {
    w.iter()
        .map(|s| bytes::Bytes::copy_from_slice(s.as_bytes()))
        .collect()
}

pub fn text(r: &Reply) -> String {
    match r {
        Reply::Bulk(b) | Reply::Verbatim(b) => String::from_utf8_lossy(b).into_owned(),
        Reply::Status(s) => s.to_string(),
        Reply::StatusOwned(s) | Reply::Error(s) => s.clone(),
        Reply::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// The first `<prefix><n>` the ring over `ids` (default vnodes, epoch 1) gives to `shard`.
pub fn name_on(ids: &[&str], shard: &str, prefix: &str) -> String {
    use ringcache_protocol::ring::{Ring, ShardSpec, DEFAULT_VNODES};
    let specs = ids.iter().map(|id| ShardSpec::new(*id, 1)).collect();
    let ring = Ring::new(1, DEFAULT_VNODES, specs).expect("a ring");
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| ring.locate(k.as_bytes()).is_some_and(|s| s.id == shard))
        .expect("a name on every shard")
}

/// Waits (up to 60 s) until the router at `router` reports no change in progress.
pub async fn wait_no_change(router: SocketAddr) {
    eventually(Duration::from_secs(60), || async {
        let mut c = NodeConn::connect(&router.to_string(), T).await.ok()?;
        let st = text(&c.call(&["RING", "STATUS"], T).await.ok()?);
        st.lines().any(|l| l.trim() == "migrating:0").then_some(())
    })
    .await;
}

/// Nodes `a1`, `a2` (the `default` pool) and two more as pool `name` (`<name>1`, `<name>2`),
/// with `extra` (routes, listeners) after them, for a router with room for migrations.
pub async fn two_pools(name: &str, extra: &str) -> (Vec<Node>, Vec<Node>, RouterConfig) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for _ in 0..2 {
        a.push(Node::start(0, NodeRuntime::Own).await);
        b.push(Node::start(0, NodeRuntime::Own).await);
    }
    let config = two_pools_config(&a, &b, name, extra);
    (a, b, config)
}

/// The config [`two_pools`] gives a router over nodes `a` and `b`.
pub fn two_pools_config(a: &[Node], b: &[Node], name: &str, extra: &str) -> RouterConfig {
    let text = format!(
        "[router]\nlisten = \"127.0.0.1:0\"\n\
         [[shard]]\nid = \"a1\"\nprimary = \"{}\"\n[[shard]]\nid = \"a2\"\nprimary = \"{}\"\n\
         [[pool]]\nname = \"{name}\"\n\
         [[pool.shard]]\nid = \"{name}1\"\nprimary = \"{}\"\n[[pool.shard]]\nid = \"{name}2\"\nprimary = \"{}\"\n{extra}",
        a[0].addr, a[1].addr, b[0].addr, b[1].addr
    );
    let mut config = ringcache_router::parse_config(&text).unwrap();
    Timeouts::MIGRATION.apply(&mut config);
    config
}

/// Every key stored on `nodes`, sorted.
pub async fn keys_on(nodes: &[&Node]) -> Vec<String> {
    let mut out = Vec::new();
    for n in nodes {
        match conn(n.addr).await.call(&["KEYS", "*"], T).await.unwrap() {
            Reply::Array(v) => out.extend(v.iter().map(text)),
            other => panic!("KEYS: {other:?}"),
        }
    }
    out.sort();
    out
}

/// Writes `<prefix>0` .. `<prefix><n-1>` (value `v<i>`) through `c`, pipelined.
pub async fn set_keys(c: &mut NodeConn, prefix: &str, n: usize) {
    let cmds: Vec<Vec<bytes::Bytes>> = (0..n)
        .map(|i| words(&["SET", &format!("{prefix}{i}"), &format!("v{i}")]))
        .collect();
    for r in c.pipeline(&cmds, T).await.unwrap() {
        assert_eq!(text(&r), "OK");
    }
}

/// Asserts every key [`set_keys`] wrote reads back through `c`.
pub async fn reads_back(c: &mut NodeConn, prefix: &str, n: usize) {
    let cmds: Vec<Vec<bytes::Bytes>> = (0..n)
        .map(|i| words(&["GET", &format!("{prefix}{i}")]))
        .collect();
    for (i, r) in c.pipeline(&cmds, T).await.unwrap().iter().enumerate() {
        assert_eq!(*r, Reply::Bulk(format!("v{i}").into()), "{prefix}{i}");
    }
}

/// A request's RESP bytes, for a raw connection.
pub fn req(args: &[&str]) -> Vec<u8> {
    frame('*', args).into_bytes()
}

/// An aggregate of bulk strings (`kind`: `*`, `>`, ...) as a node or router writes it.
pub fn frame(kind: char, items: &[&str]) -> String {
    let mut out = format!("{kind}{}\r\n", items.len());
    for i in items {
        out.push_str(&format!("${}\r\n{i}\r\n", i.len()));
    }
    out
}

/// Reads exactly `expect` from a raw connection.
pub async fn raw_expect(sock: &mut tokio::net::TcpStream, expect: &str) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; expect.len()];
    tokio::time::timeout(T, sock.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&buf), expect);
}

/// Waits until each of `nodes` holds its pool's ring at epoch 1 (the router pushed it).
pub async fn wait_epoch_one<'a>(nodes: impl Iterator<Item = &'a Node>) {
    for n in nodes {
        let addr = n.addr.to_string();
        eventually(T, || async {
            let mut c = NodeConn::connect(&addr, T).await.ok()?;
            let r = c.call(&["TOPOLOGY", "GET"], T).await.ok()?;
            matches!(&r, Reply::Array(v) if v.first() == Some(&Reply::Int(1))).then_some(())
        })
        .await;
    }
}

/// A map reply (a flat array of pairs in RESP2) as text, nil values as "nil".
pub fn fields(r: &Reply) -> HashMap<String, String> {
    let Reply::Array(flat) = r else {
        panic!("not a map: {r:?}")
    };
    flat.chunks(2)
        .map(|kv| {
            let v = match &kv[1] {
                Reply::Nil => "nil".to_string(),
                other => text(other),
            };
            (text(&kv[0]), v)
        })
        .collect()
}

/// The route on `prefix` as `RING ROUTES` shows it through `c`, if there is one.
pub async fn route_on(c: &mut NodeConn, prefix: &str) -> Option<HashMap<String, String>> {
    let Reply::Array(routes) = c.call(&["RING", "ROUTES"], T).await.unwrap() else {
        panic!("RING ROUTES")
    };
    routes.iter().map(fields).find(|m| m["prefix"] == prefix)
}

/// Waits until the split of the route on `prefix` is at `percent` with no key moving, as `c`'s
/// router sees it.
pub async fn wait_split_settled(c: &mut NodeConn, prefix: &str, percent: u8) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = route_on(c, prefix).await.unwrap();
        if r["split_percent"] == percent.to_string() && r["split_moving_from"] == "nil" {
            return;
        }
        assert!(Instant::now() < deadline, "still moving: {r:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
