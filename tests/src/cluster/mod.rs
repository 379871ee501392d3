//! A test cluster: shards (a primary and its replicas each, our nodes or redis-servers), spare
//! shards left out of the ring, and a `ringcache router` in front, all processes on 127.0.0.1
//! with ports picked at start. [`Cluster::builder`] says what to start ([`builder`]); [`router`]
//! holds the router process and the cluster file it reads; [`routed`] what the command-family
//! tests talk to.
//!
//! Nodes are named after the role they started in, `<shard>-primary` and `<shard>-replica`
//! (`-replica2`, … for more), and keep their name through failovers.

pub mod builder;
pub mod routed;
pub mod router;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use ringcache_protocol::ring::{Ring, ShardSpec};

use crate::procs::{send_signal, try_start_node_on_port, Proc, Target};
use crate::raw::Raw;
use crate::replies::ReplyExt;
use builder::ClusterBuilder;
use router::{RouterProc, RouterSettings, RouterShard};

/// Shard ids the test clusters use: whole words, so an error naming a shard is unambiguous.
pub const SHARD_IDS: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];

/// The `i`-th shard id: [`SHARD_IDS`], then `shard8`, `shard9`, ….
pub fn shard_id(i: usize) -> String {
    SHARD_IDS
        .get(i)
        .map_or_else(|| format!("shard{i}"), |s| (*s).to_string())
}

/// One server of a shard and the address it serves on (kept while it is down, to restart it
/// there).
pub struct Node {
    /// `<shard>-primary`, `<shard>-replica`, …: the role it started in.
    pub name: String,
    pub addr: SocketAddr,
    /// `None` while down.
    pub proc_: Option<Proc>,
    /// The shard it serves (its `--shard-id`).
    shard: String,
    /// The builder's extra flags, for restarts.
    args: Vec<String>,
}

impl Node {
    /// The running process; fails the test if the node is down.
    pub fn server(&self) -> &Proc {
        self.proc_
            .as_ref()
            .unwrap_or_else(|| panic!("{} is down", self.name))
    }

    pub fn server_mut(&mut self) -> &mut Proc {
        let name = &self.name;
        self.proc_
            .as_mut()
            .unwrap_or_else(|| panic!("{name} is down"))
    }

    /// A new raw connection to the node.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr)
    }

    pub fn is_up(&self) -> bool {
        self.proc_.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc_.as_ref().map(Proc::pid)
    }

    /// SIGKILL and reap; the node is then down until restarted.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc_.take() {
            p.kill();
        }
    }
}

/// One shard: its id and its servers as started.
pub struct Shard {
    pub id: String,
    pub primary: Node,
    pub replicas: Vec<Node>,
    /// In the router's ring at the start (spares are not).
    pub member: bool,
}

impl Shard {
    fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.primary).chain(&self.replicas)
    }

    fn nodes_mut(&mut self) -> impl Iterator<Item = &mut Node> {
        std::iter::once(&mut self.primary).chain(&mut self.replicas)
    }
}

/// A router in front of shards (see the module doc). Dropping it kills the router, then every
/// server.
pub struct Cluster {
    /// `None` while stopped or found dead.
    router: Option<RouterProc>,
    /// Where the router serves (kept while it is down, to restart it there).
    router_addr: SocketAddr,
    pub shards: Vec<Shard>,
    settings: RouterSettings,
    backend: Target,
    start_timeout: Duration,
    /// Built on first use (building one takes milliseconds in a debug build).
    ring: OnceLock<Ring>,
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The running router; fails the test if it is down.
    pub fn router(&self) -> &RouterProc {
        self.router
            .as_ref()
            .unwrap_or_else(|| panic!("the router is down"))
    }

    pub fn router_mut(&mut self) -> &mut RouterProc {
        self.router
            .as_mut()
            .unwrap_or_else(|| panic!("the router is down"))
    }

    /// The router's RESP address (its last one while it is down).
    pub fn router_addr(&self) -> SocketAddr {
        self.router_addr
    }

    pub fn router_is_up(&self) -> bool {
        self.router.is_some()
    }

    /// A new raw connection to the router.
    pub fn raw(&self) -> Raw {
        self.router().raw()
    }

    /// The router's log tail, for failure messages.
    pub fn router_log(&self) -> String {
        self.router().proc_.log_tail()
    }

    /// The member shards' ids, in order.
    pub fn ids(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter(|s| s.member)
            .map(|s| s.id.clone())
            .collect()
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

    /// The node named `name` (`alpha-primary`, …).
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.shards
            .iter()
            .flat_map(Shard::nodes)
            .find(|n| n.name == name)
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.shards
            .iter_mut()
            .flat_map(Shard::nodes_mut)
            .find(|n| n.name == name)
    }

    /// The member shards as the router's `[[shard]]` tables name them (addresses as started).
    pub fn members(&self) -> Vec<RouterShard> {
        self.shards
            .iter()
            .filter(|s| s.member)
            .map(|s| RouterShard {
                id: s.id.clone(),
                primary: s.primary.addr.to_string(),
                replicas: s.replicas.iter().map(|r| r.addr.to_string()).collect(),
            })
            .collect()
    }

    /// The ring the router should build from the member shards (same ids, weights, vnodes).
    pub fn ring(&self) -> &Ring {
        self.ring.get_or_init(|| {
            let specs = self
                .shards
                .iter()
                .filter(|s| s.member)
                .map(|s| ShardSpec::new(s.id.clone(), 1))
                .collect();
            Ring::new(0, self.settings.vnodes, specs).unwrap()
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

    /// Sum of DBSIZE over every member shard's primary, asked directly.
    pub fn backend_dbsize(&self) -> i64 {
        self.shards
            .iter()
            .filter(|s| s.member)
            .map(|s| s.primary.raw().cmd(&["DBSIZE"]).int())
            .sum()
    }

    /// Kills shard `id`'s primary (SIGKILL) and waits for it.
    pub fn kill_shard(&mut self, id: &str) {
        self.shard_mut(id).primary.kill();
    }

    /// Starts shard `id`'s primary again on the port it had.
    pub fn restart_shard(&mut self, id: &str) {
        let name = self.shard(id).primary.name.clone();
        self.restart_node(&name, None)
            .unwrap_or_else(|e| panic!("restarting {id}: {e}"));
    }

    /// Starts node `name` again (killing it first if it runs), empty, on the port it had, as a
    /// replica of `replica_of` if given; retries for a while if the port is not yet free.
    pub fn restart_node(
        &mut self,
        name: &str,
        replica_of: Option<SocketAddr>,
    ) -> Result<(), String> {
        if self.backend != Target::Node {
            return Err(format!(
                "restarting {name}: restarts work for our nodes only"
            ));
        }
        let timeout = self.start_timeout;
        let node = self
            .node_mut(name)
            .ok_or_else(|| format!("no node {name}"))?;
        node.kill();
        let of = replica_of.map(|a| a.to_string());
        let mut args: Vec<&str> = node.args.iter().map(String::as_str).collect();
        args.extend(["--shard-id", node.shard.as_str()]);
        if let Some(of) = &of {
            args.extend(["--replica-of", of.as_str()]);
        }
        let p = try_start_node_on_port(node.addr.port(), &args, timeout)
            .map_err(|e| format!("restarting node {name} on {}: {e}", node.addr))?;
        node.proc_ = Some(p);
        Ok(())
    }

    /// The cluster file text for a router on 127.0.0.1 `port` (0: any) over `members`.
    fn router_toml(&self, port: u16, members: &[RouterShard]) -> String {
        router::router_toml(
            &format!("127.0.0.1:{port}"),
            Some("127.0.0.1:0"),
            &self.settings,
            members,
        )
    }

    /// Another router over the member shards, with its own `settings` (not the cluster's).
    pub fn spawn_router(&self, settings: &RouterSettings) -> RouterProc {
        let toml = router::router_toml(
            "127.0.0.1:0",
            Some("127.0.0.1:0"),
            settings,
            &self.members(),
        );
        RouterProc::try_start(&toml, settings)
            .unwrap_or_else(|e| panic!("starting the router with\n{toml}\n{e}"))
    }

    /// SIGTERM, then waits up to `timeout` for the router to exit; SIGKILL if it does not. Says
    /// how it went.
    pub fn stop_router(&mut self, timeout: Duration) -> Result<String, String> {
        let Some(mut r) = self.router.take() else {
            return Ok("router was not running".into());
        };
        send_signal(r.proc_.pid(), "TERM")?;
        match r.proc_.wait_exit(timeout) {
            Some(status) => Ok(format!("exited on SIGTERM ({status})")),
            None => {
                r.proc_.kill();
                Ok(format!(
                    "did not exit within {timeout:?} of SIGTERM; killed"
                ))
            }
        }
    }

    /// Starts the router (stopping a running one) with `members` in its config: on its last
    /// port (retrying while it is busy, bounded), else on any. Returns its address.
    pub fn start_router(&mut self, members: &[RouterShard]) -> Result<SocketAddr, String> {
        self.router = None;
        let port = self.router_addr.port();
        let mut last = String::from("not tried");
        for _ in 0..20 {
            match self.try_start_router(port, members) {
                Ok(a) => return Ok(a),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        self.try_start_router(0, members)
            .map_err(|e| format!("port {port}: {last}; any port: {e}"))
    }

    fn try_start_router(
        &mut self,
        port: u16,
        members: &[RouterShard],
    ) -> Result<SocketAddr, String> {
        let r = RouterProc::try_start(&self.router_toml(port, members), &self.settings)
            .map_err(|e| format!("starting the router: {e}"))?;
        self.router_addr = r.addr();
        self.router = Some(r);
        Ok(self.router_addr)
    }

    /// Every running process by name (`router`, then the nodes), for signals and log copies.
    pub fn running_mut(&mut self) -> Vec<(String, &mut Proc)> {
        let mut out = Vec::new();
        if let Some(r) = self.router.as_mut() {
            out.push(("router".to_string(), &mut r.proc_));
        }
        for n in self.shards.iter_mut().flat_map(Shard::nodes_mut) {
            if let Some(p) = n.proc_.as_mut() {
                out.push((n.name.clone(), p));
            }
        }
        out
    }

    /// Processes (`router`, nodes by name) found exited without the test stopping them, with
    /// the end of their log; they count as down from now on.
    pub fn take_exited(&mut self) -> Vec<(String, String)> {
        let mut dead = Vec::new();
        for (name, p) in self.running_mut() {
            if !p.is_alive() {
                dead.push((name, p.log_tail()));
            }
        }
        for (name, _) in &dead {
            if name == "router" {
                self.router = None;
            } else if let Some(n) = self.node_mut(name) {
                n.proc_ = None;
            }
        }
        dead
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Router first, so it does not log every backend going away.
        self.router = None;
    }
}
