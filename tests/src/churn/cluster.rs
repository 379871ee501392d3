//! The processes of one churn run: shards (a primary and one replica each, all `ringcache node`
//! on 127.0.0.1 port 0), spare shards for joins, and the router, whose `cluster.toml` the harness
//! writes from the membership it asked for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::backend::{shard_tables, Backend, RouterShard, ShardState, Verbs};
use anyhow::{anyhow, bail, Context, Result};
use tests::{
    try_spawn_ringcache_lines, Proc, NODE_LISTENING, ROUTER_LISTENING, ROUTER_METRICS, SHARD_IDS,
};

pub const VNODES: u32 = ringcache_protocol::ring::DEFAULT_VNODES;
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One server process and the address it serves on (kept after it is killed, to restart it there).
pub struct Node {
    pub proc_: Option<Proc>,
    pub addr: SocketAddr,
}

impl Node {
    fn new(p: Proc) -> Node {
        Node {
            addr: p.addr,
            proc_: Some(p),
        }
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

/// The local cluster: every node by name (`alpha-primary`, …), the router and its config file.
pub struct Cluster {
    nodes: Vec<(String, Node)>,
    initial: Vec<ShardState>,
    pub router: Option<Proc>,
    pub router_addr: SocketAddr,
    pub config: PathBuf,
}

pub fn shard_id(i: usize) -> String {
    SHARD_IDS
        .get(i)
        .map_or_else(|| format!("shard{i}"), |s| (*s).to_string())
}

/// `ringcache node --port PORT --shard-id ID [--replica-of ADDR]` on 127.0.0.1.
pub fn spawn_node(id: &str, port: u16, replica_of: Option<SocketAddr>) -> Result<Proc> {
    let port_s = port.to_string();
    let of = replica_of.map(|a| a.to_string());
    let mut args = vec![
        "node",
        "--bind",
        "127.0.0.1",
        "--port",
        &port_s,
        "--shard-id",
        id,
    ];
    if let Some(of) = &of {
        args.extend(["--replica-of", of.as_str()]);
    }
    try_spawn_ringcache_lines(&args, &[NODE_LISTENING], START_TIMEOUT)
        .map(|(p, _)| p)
        .map_err(|e| anyhow!("starting node {id}: {e}"))
}

/// Starts a node on the port a killed one had, retrying (bounded) while the port is not free.
pub fn respawn_node(id: &str, addr: SocketAddr, replica_of: Option<SocketAddr>) -> Result<Proc> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last = anyhow!("not tried");
    for _ in 0..100 {
        match spawn_node(id, addr.port(), replica_of) {
            Ok(p) => return Ok(p),
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last.context(format!("restarting node {id} on {addr}")))
}

/// Sends `sig` (`STOP`, `CONT`, `TERM`, `KILL`) to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{sig} {pid}: {status}");
    }
    Ok(())
}

impl Cluster {
    /// Starts `initial` member shards and `spares` more (not in the ring), then the router.
    pub fn start(initial: usize, spares: usize, dir: &Path) -> Result<Cluster> {
        let mut nodes = Vec::with_capacity(2 * (initial + spares));
        let mut shards = Vec::with_capacity(initial + spares);
        for i in 0..initial + spares {
            let state = ShardState::new(&shard_id(i), i < initial);
            let primary = spawn_node(&state.id, 0, None)?;
            let replica = spawn_node(&state.id, 0, Some(primary.addr))?;
            nodes.push((state.primary.clone(), Node::new(primary)));
            if let Some(r) = &state.replica {
                nodes.push((r.clone(), Node::new(replica)));
            }
            shards.push(state);
        }
        let mut c = Cluster {
            nodes,
            initial: shards,
            router: None,
            router_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            config: dir.join("cluster.toml"),
        };
        let members: Vec<RouterShard> = c
            .initial
            .iter()
            .filter(|s| s.member)
            .map(|s| RouterShard {
                id: s.id.clone(),
                primary: c.addr(&s.primary).unwrap_or_default(),
                replicas: s.replica.iter().filter_map(|r| c.addr(r)).collect(),
            })
            .collect();
        c.spawn_router(0, &members)?;
        Ok(c)
    }

    fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|(n, _)| n == name).map(|(_, n)| n)
    }

    fn node_mut(&mut self, name: &str) -> Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, n)| n)
            .ok_or_else(|| anyhow!("no node {name}"))
    }

    /// The router's `cluster.toml` for `members`, listening on `port`.
    pub fn toml(port: u16, members: &[RouterShard]) -> String {
        format!(
            "[router]\nlisten = \"127.0.0.1:{port}\"\nmetrics = \"127.0.0.1:0\"\n\n[ring]\nvnodes = {VNODES}\n{}",
            shard_tables(members)
        )
    }

    /// Writes the config and starts the router on `port` (0: any).
    fn spawn_router(&mut self, port: u16, members: &[RouterShard]) -> Result<SocketAddr> {
        std::fs::write(&self.config, Self::toml(port, members))
            .with_context(|| format!("writing {}", self.config.display()))?;
        let config = self.config.to_string_lossy().into_owned();
        let (p, _) = try_spawn_ringcache_lines(
            &["router", "--config", &config],
            &[ROUTER_LISTENING, ROUTER_METRICS],
            Duration::from_secs(20),
        )
        .map_err(|e| anyhow!("starting the router: {e}"))?;
        self.router_addr = p.addr;
        self.router = Some(p);
        Ok(self.router_addr)
    }

    /// Starts the router on its last port (retrying while it is busy, bounded), else on any.
    fn respawn_router(&mut self, members: &[RouterShard]) -> Result<SocketAddr> {
        let port = self.router_addr.port();
        let mut last = anyhow!("not tried");
        for _ in 0..20 {
            match self.spawn_router(port, members) {
                Ok(a) => return Ok(a),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        self.spawn_router(0, members)
            .map_err(|e| anyhow!("port {port}: {last:#}; any port: {e:#}"))
    }

    /// SIGTERM, then waits (bounded) for the router to exit; SIGKILL if it does not.
    fn stop_router(&mut self, timeout: Duration) -> Result<String> {
        let Some(mut p) = self.router.take() else {
            return Ok("router was not running".into());
        };
        signal(p.pid(), "TERM")?;
        match p.wait_exit(timeout) {
            Some(status) => Ok(format!("exited on SIGTERM ({status})")),
            None => {
                p.kill();
                Ok(format!(
                    "did not exit within {timeout:?} of SIGTERM; killed"
                ))
            }
        }
    }

    /// Every running process, named, for liveness checks and log copies.
    fn procs_mut(&mut self) -> Vec<(String, &mut Proc)> {
        let mut out = Vec::new();
        if let Some(r) = self.router.as_mut() {
            out.push(("router".to_string(), r));
        }
        for (name, n) in &mut self.nodes {
            if let Some(p) = n.proc_.as_mut() {
                out.push((name.clone(), p));
            }
        }
        out
    }

    fn running_pid(&self, node: &str) -> Result<u32> {
        self.node(node)
            .and_then(Node::pid)
            .ok_or_else(|| anyhow!("{node} is not running"))
    }
}

impl Backend for Cluster {
    fn name(&self) -> &'static str {
        "local"
    }

    fn verbs(&self) -> Verbs {
        Verbs {
            kill: "SIGKILL",
            pause: "SIGSTOP",
            restart_router: "SIGTERM",
        }
    }

    fn initial_shards(&self) -> Vec<ShardState> {
        self.initial.clone()
    }

    fn addr(&self, node: &str) -> Option<String> {
        self.node(node).map(|n| n.addr.to_string())
    }

    fn router_addr(&self) -> SocketAddr {
        self.router_addr
    }

    fn is_up(&self, node: &str) -> bool {
        self.node(node).is_some_and(|n| n.proc_.is_some())
    }

    fn kill(&mut self, node: &str) -> Result<()> {
        let n = self.node_mut(node)?;
        if n.proc_.is_none() {
            bail!("{node} is not running");
        }
        n.kill();
        Ok(())
    }

    fn start(&mut self, node: &str, replica_of: Option<&str>) -> Result<()> {
        let of = match replica_of {
            Some(a) => Some(
                a.parse::<SocketAddr>()
                    .with_context(|| format!("replica of {a:?}"))?,
            ),
            None => None,
        };
        let id = node.rsplit_once('-').map_or(node, |(id, _)| id).to_string();
        let n = self.node_mut(node)?;
        n.kill();
        let p = respawn_node(&id, n.addr, of)?;
        n.proc_ = Some(p);
        Ok(())
    }

    fn pause(&mut self, node: &str) -> Result<()> {
        signal(self.running_pid(node)?, "STOP")
    }

    fn resume(&mut self, node: &str) -> Result<()> {
        signal(self.running_pid(node)?, "CONT")
    }

    fn restart_router(&mut self, members: &[RouterShard]) -> Result<String> {
        let stopped = self
            .stop_router(Duration::from_secs(10))
            .context("stopping")?;
        let addr = self
            .respawn_router(members)
            .with_context(|| format!("old router {stopped}; new router"))?;
        Ok(format!("old router {stopped}; new router on {addr}"))
    }

    fn start_router(&mut self, members: &[RouterShard]) -> Result<()> {
        self.router = None;
        self.respawn_router(members).map(|_| ())
    }

    fn router_up(&self) -> bool {
        self.router.is_some()
    }

    fn exited(&mut self) -> Vec<(String, String)> {
        let mut dead = Vec::new();
        for (name, p) in self.procs_mut() {
            if !p.is_alive() {
                dead.push((name, p.log_tail()));
            }
        }
        for (name, _) in &dead {
            if name == "router" {
                self.router = None;
            } else if let Ok(n) = self.node_mut(name) {
                n.proc_ = None;
            }
        }
        dead
    }

    fn heal_faults(&mut self) {
        for (_, p) in self.procs_mut() {
            // A stray SIGCONT is harmless; a node left stopped would hang the final check.
            let _ = signal(p.pid(), "CONT");
        }
    }

    /// Copies each process's log into `to` (the processes delete their own scratch dirs).
    fn keep_logs(&mut self, to: &Path) -> Result<()> {
        std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        for (name, p) in self.procs_mut() {
            let from = p.dir.join("stderr.log");
            if from.exists() {
                std::fs::copy(&from, to.join(format!("{name}.log")))
                    .with_context(|| format!("copying {}", from.display()))?;
            }
        }
        Ok(())
    }
}
