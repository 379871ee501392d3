//! The processes of one churn run: shards (a primary and one replica each, all `ringcache node`
//! on 127.0.0.1 port 0), spare shards for joins, and the router, whose `cluster.toml` the harness
//! writes from the membership it asked for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

pub struct ShardNodes {
    pub id: String,
    pub primary: Node,
    pub replica: Option<Node>,
    /// In the ring, as far as the harness asked.
    pub member: bool,
    /// Was in the ring at some point (spares that joined, shards that left).
    pub ever_member: bool,
}

pub struct Cluster {
    pub shards: Vec<ShardNodes>,
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
        let mut shards = Vec::with_capacity(initial + spares);
        for i in 0..initial + spares {
            let id = shard_id(i);
            let primary = spawn_node(&id, 0, None)?;
            let replica = spawn_node(&id, 0, Some(primary.addr))?;
            shards.push(ShardNodes {
                id,
                primary: Node::new(primary),
                replica: Some(Node::new(replica)),
                member: i < initial,
                ever_member: i < initial,
            });
        }
        let mut c = Cluster {
            shards,
            router: None,
            router_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            config: dir.join("cluster.toml"),
        };
        c.start_router(0)?;
        Ok(c)
    }

    pub fn members(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter(|s| s.member)
            .map(|s| s.id.clone())
            .collect()
    }

    pub fn shard_mut(&mut self, id: &str) -> Option<&mut ShardNodes> {
        self.shards.iter_mut().find(|s| s.id == id)
    }

    /// The router's `cluster.toml` for the current membership, listening on `port`.
    pub fn toml(&self, port: u16) -> String {
        let mut t = format!(
            "[router]\nlisten = \"127.0.0.1:{port}\"\nmetrics = \"127.0.0.1:0\"\n\n[ring]\nvnodes = {VNODES}\n"
        );
        for s in self.shards.iter().filter(|s| s.member) {
            let replicas: Vec<String> = s
                .replica
                .iter()
                .map(|r| format!("\"{}\"", r.addr))
                .collect();
            t.push_str(&format!(
                "\n[[shard]]\nid = \"{}\"\nprimary = \"{}\"\nreplicas = [{}]\nweight = 1\n",
                s.id,
                s.primary.addr,
                replicas.join(", ")
            ));
        }
        t
    }

    /// Writes the config and starts the router on `port` (0: any).
    pub fn start_router(&mut self, port: u16) -> Result<SocketAddr> {
        std::fs::write(&self.config, self.toml(port))
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

    /// SIGTERM, then waits (bounded) for the router to exit; SIGKILL if it does not.
    pub fn stop_router(&mut self, timeout: Duration) -> Result<String> {
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
    pub fn procs_mut(&mut self) -> Vec<(String, &mut Proc)> {
        let mut out = Vec::new();
        if let Some(r) = self.router.as_mut() {
            out.push(("router".to_string(), r));
        }
        for s in &mut self.shards {
            if let Some(p) = s.primary.proc_.as_mut() {
                out.push((format!("{}-primary", s.id), p));
            }
            if let Some(p) = s.replica.as_mut().and_then(|r| r.proc_.as_mut()) {
                out.push((format!("{}-replica", s.id), p));
            }
        }
        out
    }

    /// Copies each process's log into `to` (the processes delete their own scratch dirs).
    pub fn copy_logs(&mut self, to: &Path) -> Result<()> {
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
