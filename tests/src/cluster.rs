//! A router in front of shards (our nodes or redis-servers), all processes on 127.0.0.1, and what
//! the router-side command-family tests talk to ([`RoutedTarget`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::procs::{
    scratch_dir, start_node, start_redis, target, try_spawn_ringcache_lines, Proc, Target,
    NODE_LISTENING,
};
use crate::raw::Raw;
use crate::replies::ReplyExt;

/// The router prints this once bound (then the address).
pub const ROUTER_LISTENING: &str = "ringcache router listening on ";
/// The router prints this once its metrics endpoint is bound (then the address).
pub const ROUTER_METRICS: &str = "ringcache router metrics on ";
/// The router's default per-request timeout: a reply about a dead backend must come within it.
pub const ROUTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Shard ids the test clusters use: whole words, so an error naming a shard is unambiguous.
pub const SHARD_IDS: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];

/// One shard of a test cluster: its id and the server behind it (our node or redis-server).
pub struct Shard {
    pub id: String,
    pub server: Proc,
}

/// A router in front of shards, all on 127.0.0.1 with ports picked at start. Dropping it kills
/// the router and every server.
pub struct Cluster {
    pub router: Proc,
    /// The router's metrics endpoint (`[router] metrics = "127.0.0.1:0"`).
    pub metrics: SocketAddr,
    pub shards: Vec<Shard>,
    /// The cluster file the router reads.
    pub config: PathBuf,
    dir: PathBuf,
    /// Built on first use (building one takes milliseconds in a debug build).
    ring: OnceLock<ringcache_protocol::ring::Ring>,
}

/// `cluster.toml` text for a router on `listen` (and `metrics`) over `shards` (id, primary address),
/// weight 1 each, no replicas, default vnodes.
pub fn cluster_toml(listen: &str, metrics: Option<&str>, shards: &[(&str, SocketAddr)]) -> String {
    let mut t = format!("[router]\nlisten = \"{listen}\"\n");
    if let Some(m) = metrics {
        t.push_str(&format!("metrics = \"{m}\"\n"));
    }
    t.push_str(&format!(
        "\n[ring]\nvnodes = {}\n",
        ringcache_protocol::ring::DEFAULT_VNODES
    ));
    for (id, addr) in shards {
        t.push_str(&format!(
            "\n[[shard]]\nid = \"{id}\"\nprimary = \"{addr}\"\nreplicas = []\nweight = 1\n"
        ));
    }
    t
}

/// Starts `ringcache router --config <file with toml>` and waits for its listening and metrics
/// lines. Returns the router (its `addr` is the RESP address) and the metrics address.
pub fn start_router(toml: &str, dir: &Path) -> (Proc, SocketAddr) {
    let config = dir.join("cluster.toml");
    std::fs::write(&config, toml).unwrap();
    let config_s = config.to_str().unwrap().to_string();
    let (router, lines) = try_spawn_ringcache_lines(
        &["router", "--config", &config_s],
        &[ROUTER_LISTENING, ROUTER_METRICS],
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("starting the router: {e}"));
    let metrics = lines[1]
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap_or_else(|e| panic!("bad metrics address {:?}: {e}", lines[1]));
    (router, metrics)
}

/// Starts a router over already running servers, named by `ids` in order.
pub fn start_router_over(servers: Vec<Proc>, ids: &[&str]) -> Cluster {
    assert_eq!(servers.len(), ids.len(), "one id per server");
    let dir = scratch_dir("cluster");
    let shard_addrs: Vec<(&str, SocketAddr)> = ids
        .iter()
        .copied()
        .zip(servers.iter().map(|s| s.addr))
        .collect();
    let toml = cluster_toml("127.0.0.1:0", Some("127.0.0.1:0"), &shard_addrs);
    let (router, metrics) = start_router(&toml, &dir);
    let shards = ids
        .iter()
        .zip(servers)
        .map(|(id, server)| Shard {
            id: id.to_string(),
            server,
        })
        .collect();
    Cluster {
        router,
        metrics,
        shards,
        config: dir.join("cluster.toml"),
        dir,
        ring: OnceLock::new(),
    }
}

/// Starts `n` of our nodes (shard ids [`SHARD_IDS`]) and a router over them.
pub fn start_cluster(n: usize) -> Cluster {
    assert!(
        (1..=SHARD_IDS.len()).contains(&n),
        "1 to {} shards",
        SHARD_IDS.len()
    );
    let ids = &SHARD_IDS[..n];
    let nodes = ids
        .iter()
        .map(|id| start_node(&["--shard-id", id]))
        .collect();
    start_router_over(nodes, ids)
}

/// Starts `n` redis-servers (shard ids [`SHARD_IDS`]) and our router over them.
pub fn start_redis_cluster(n: usize) -> Cluster {
    assert!(
        (1..=SHARD_IDS.len()).contains(&n),
        "1 to {} shards",
        SHARD_IDS.len()
    );
    let ids = &SHARD_IDS[..n];
    let servers = ids.iter().map(|_| start_redis(&[])).collect();
    start_router_over(servers, ids)
}

impl Cluster {
    /// A new raw connection to the router.
    pub fn raw(&self) -> Raw {
        self.router.raw()
    }

    pub fn ids(&self) -> Vec<String> {
        self.shards.iter().map(|s| s.id.clone()).collect()
    }

    pub fn shard(&self, id: &str) -> &Shard {
        self.shards
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no shard {id}"))
    }

    pub fn shard_mut(&mut self, id: &str) -> &mut Shard {
        self.shards
            .iter_mut()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no shard {id}"))
    }

    /// The ring the router should build from this cluster's file (same ids, weights, vnodes).
    pub fn ring(&self) -> &ringcache_protocol::ring::Ring {
        self.ring.get_or_init(|| {
            let specs = self
                .shards
                .iter()
                .map(|s| ringcache_protocol::ring::ShardSpec::new(s.id.clone(), 1))
                .collect();
            ringcache_protocol::ring::Ring::new(0, ringcache_protocol::ring::DEFAULT_VNODES, specs)
                .unwrap()
        })
    }

    /// The shard that owns `key`, computed here with the shared ring code.
    pub fn owner(&self, key: &str) -> String {
        self.ring().locate(key.as_bytes()).unwrap().id.clone()
    }

    /// `n` distinct keys `<prefix>:<i>` owned by shard `id`.
    pub fn keys_on(&self, id: &str, prefix: &str, n: usize) -> Vec<String> {
        let ring = self.ring();
        let mut keys = Vec::with_capacity(n);
        for i in 0..(n as u64 * 1000 + 10_000) {
            if keys.len() == n {
                break;
            }
            let k = format!("{prefix}:{i}");
            if ring.locate(k.as_bytes()).unwrap().id == id {
                keys.push(k);
            }
        }
        assert_eq!(keys.len(), n, "could not find {n} keys on {id}");
        keys
    }

    /// Sum of DBSIZE over every shard's server, asked directly.
    pub fn backend_dbsize(&self) -> i64 {
        self.shards
            .iter()
            .map(|s| s.server.raw().cmd(&["DBSIZE"]).int())
            .sum()
    }

    /// Kills shard `id`'s server (SIGKILL) and waits for it.
    pub fn kill_shard(&mut self, id: &str) {
        self.shard_mut(id).server.kill();
    }

    /// Starts a new node for shard `id` on the port its killed node had (retrying for a few
    /// seconds while the port is not yet free).
    pub fn restart_shard(&mut self, id: &str) {
        let shard = self.shard_mut(id);
        assert_eq!(
            shard.server.target,
            Target::Node,
            "restart works for our nodes"
        );
        let port = shard.server.addr.port().to_string();
        let id_s = shard.id.clone();
        let args = [
            "node",
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--shard-id",
            &id_s,
        ];
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match try_spawn_ringcache_lines(&args, &[NODE_LISTENING], Duration::from_secs(10)) {
                Ok((p, _)) => {
                    shard.server = p;
                    return;
                }
                Err(e) if Instant::now() >= deadline => panic!("restarting {id}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The router's log tail, for failure messages.
    pub fn router_log(&self) -> String {
        self.router.log_tail()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Router first, so it does not log every backend going away.
        self.router.kill();
        if std::thread::panicking() {
            eprintln!(
                "router {} log tail:\n{}\ncluster file kept in {}",
                self.router.addr,
                self.router.log_tail(),
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What the router-side family tests talk to: our router over 3 nodes or, with
/// `RINGCACHE_TEST_TARGET=redis`, one redis-server (to check the expected replies against Redis).
pub enum RoutedTarget {
    Router(Box<Cluster>),
    Redis(Proc),
}

impl RoutedTarget {
    pub fn addr(&self) -> SocketAddr {
        match self {
            RoutedTarget::Router(c) => c.router.addr,
            RoutedTarget::Redis(p) => p.addr,
        }
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr())
    }
}

/// Our router over 3 nodes, or one redis-server with `RINGCACHE_TEST_TARGET=redis`.
pub fn start_routed_target() -> RoutedTarget {
    match target() {
        Target::Node => RoutedTarget::Router(Box::new(start_cluster(3))),
        Target::Redis => RoutedTarget::Redis(start_redis(&[])),
    }
}
