//! [`ClusterBuilder`]: how many shards, replicas and spares, which server backs them, extra node
//! flags, the router's settings; [`ClusterBuilder::start`] starts every process.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use super::router::{RouterProc, RouterSettings};
use super::{shard_id, Cluster, Node, Shard};
use crate::procs::{start_redis, try_start_node, Target};

/// What [`Cluster::builder`] starts. By default: 3 shards (ids from [`super::SHARD_IDS`]), each
/// one `ringcache node` without replicas, no spares, the router with default settings.
pub struct ClusterBuilder {
    count: usize,
    /// Explicit shards (id, replicas); when set, `count` and `replicas` do not apply to them.
    named: Vec<(String, usize)>,
    replicas: usize,
    spares: usize,
    backend: Target,
    node_args: Vec<String>,
    start_timeout: Duration,
    settings: RouterSettings,
}

impl Default for ClusterBuilder {
    fn default() -> ClusterBuilder {
        ClusterBuilder {
            count: 3,
            named: Vec::new(),
            replicas: 0,
            spares: 0,
            backend: Target::Node,
            node_args: Vec::new(),
            start_timeout: Duration::from_secs(10),
            settings: RouterSettings::default(),
        }
    }
}

impl ClusterBuilder {
    /// `n` member shards, named `alpha`, `bravo`, … in order.
    pub fn shards(mut self, n: usize) -> ClusterBuilder {
        self.count = n;
        self
    }

    /// A member shard `id` with `replicas` replicas; once called, only such shards are members.
    pub fn shard(mut self, id: &str, replicas: usize) -> ClusterBuilder {
        self.named.push((id.to_string(), replicas));
        self
    }

    /// Replicas per shard (started `--replica-of` its primary) for [`ClusterBuilder::shards`] and
    /// the spares.
    pub fn replicas(mut self, n: usize) -> ClusterBuilder {
        self.replicas = n;
        self
    }

    /// Shards started but left out of the router's ring, for joins.
    pub fn spares(mut self, n: usize) -> ClusterBuilder {
        self.spares = n;
        self
    }

    /// Our nodes (default) or redis-servers behind the router.
    pub fn backend(mut self, backend: Target) -> ClusterBuilder {
        self.backend = backend;
        self
    }

    /// Extra flags for every server (the node's spelling, see [`crate::start_node`]).
    pub fn node_args(mut self, args: &[&str]) -> ClusterBuilder {
        self.node_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// How long a node may take to print its listening line (default 10 s).
    pub fn start_timeout(mut self, timeout: Duration) -> ClusterBuilder {
        self.start_timeout = timeout;
        self
    }

    /// The router's `[ring]` settings and L4 listeners.
    pub fn router(mut self, settings: RouterSettings) -> ClusterBuilder {
        self.settings = settings;
        self
    }

    /// Starts the shards' servers (each primary, then its replicas), then the router over the
    /// member shards, waiting for each to print its listening line. On an error every process
    /// started so far is killed.
    pub fn try_start(self) -> Result<Cluster, String> {
        let mut layout: Vec<(String, usize, bool)> = if self.named.is_empty() {
            (0..self.count)
                .map(|i| (shard_id(i), self.replicas, true))
                .collect()
        } else {
            self.named
                .iter()
                .map(|(id, r)| (id.clone(), *r, true))
                .collect()
        };
        if layout.is_empty() {
            return Err("a cluster needs at least one shard".into());
        }
        let first_spare = layout.len();
        layout.extend((0..self.spares).map(|j| (shard_id(first_spare + j), self.replicas, false)));
        let mut shards = Vec::with_capacity(layout.len());
        for (id, replicas, member) in layout {
            shards.push(self.start_shard(&id, replicas, member)?);
        }
        let mut cluster = Cluster {
            router: None,
            router_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            shards,
            settings: self.settings,
            backend: self.backend,
            start_timeout: self.start_timeout,
            ring: OnceLock::new(),
        };
        let members = cluster.members();
        let router = RouterProc::try_start(&cluster.router_toml(0, &members), &cluster.settings)
            .map_err(|e| format!("starting the router: {e}"))?;
        cluster.router_addr = router.addr();
        cluster.router = Some(router);
        Ok(cluster)
    }

    /// [`ClusterBuilder::try_start`], failing the test on an error.
    pub fn start(self) -> Cluster {
        self.try_start()
            .unwrap_or_else(|e| panic!("starting the cluster: {e}"))
    }

    fn start_shard(&self, id: &str, replicas: usize, member: bool) -> Result<Shard, String> {
        let primary = self.start_server(&format!("{id}-primary"), id, None)?;
        let replicas = (0..replicas)
            .map(|i| {
                let name = match i {
                    0 => format!("{id}-replica"),
                    _ => format!("{id}-replica{}", i + 1),
                };
                self.start_server(&name, id, Some(primary.addr))
            })
            .collect::<Result<_, _>>()?;
        Ok(Shard {
            id: id.to_string(),
            primary,
            replicas,
            member,
        })
    }

    fn start_server(
        &self,
        name: &str,
        id: &str,
        replica_of: Option<SocketAddr>,
    ) -> Result<Node, String> {
        let node_args: Vec<&str> = self.node_args.iter().map(String::as_str).collect();
        let proc_ = match self.backend {
            Target::Redis if replica_of.is_some() => {
                return Err("replicas run on our nodes only, not on redis-server".into())
            }
            Target::Redis => start_redis(&node_args),
            Target::Node => {
                let mut args = node_args.clone();
                args.extend(["--shard-id", id]);
                let of = replica_of.map(|a| a.to_string());
                if let Some(of) = &of {
                    args.extend(["--replica-of", of.as_str()]);
                }
                try_start_node(0, &args, self.start_timeout)
                    .map_err(|e| format!("starting node {name}: {e}"))?
            }
        };
        Ok(Node {
            name: name.to_string(),
            addr: proc_.addr,
            proc_: Some(proc_),
            shard: id.to_string(),
            args: node_args.iter().map(|a| a.to_string()).collect(),
        })
    }
}
