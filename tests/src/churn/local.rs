//! The local backend: the cluster of one churn run as processes on 127.0.0.1 ([`tests::Cluster`]:
//! shards of a primary and one replica each, spare shards for joins, the router, whose
//! `cluster.toml` the harness writes from the membership it asked for). With `--routers N` the
//! other N-1 routers are started here, from the same config on ports of their own. With
//! `--split` two more nodes make the pool `canary`, and the route [`SPLIT_PREFIX`] (every test
//! key) splits to it, at 0% to start with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::backend::{router_name, Backend, RouterShard, ShardState, Verbs};
use anyhow::{anyhow, bail, Context, Result};
use tests::{router_toml, send_signal, Cluster, RouterProc, RouterSettings};

pub const VNODES: u32 = ringcache_protocol::ring::DEFAULT_VNODES;
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Grace a stopped router gets between SIGTERM and SIGKILL.
const ROUTER_STOP_GRACE: Duration = Duration::from_secs(10);

/// The prefix of the split route (`--split`): every test key has it.
pub const SPLIT_PREFIX: &str = "churn-";
/// The shard ids of the split's pool.
pub const CANARY: [&str; 2] = ["canary1", "canary2"];

/// A router beyond the cluster's own (`router2`, …).
struct ExtraRouter {
    /// `None` while stopped or found dead.
    proc_: Option<RouterProc>,
    /// Where it serves (kept while it is down, to restart it there).
    addr: SocketAddr,
}

/// The local cluster and the shards as the driver first sees them.
pub struct Local {
    /// Routers 2..=N (router 1 is the cluster's); first, so they are dropped before the nodes.
    extra: Vec<ExtraRouter>,
    cluster: Cluster,
    initial: Vec<ShardState>,
    /// The routers' settings (the split's pool and route with `--split`).
    settings: RouterSettings,
    /// The split's pool (`--split`).
    _canary: Vec<tests::Proc>,
}

/// Starts a router like the cluster's (`settings`, metrics on any port) on `port` (0: any)
/// over `members`.
fn spawn_router(
    port: u16,
    members: &[RouterShard],
    settings: &RouterSettings,
) -> Result<RouterProc> {
    let toml = router_toml(
        &format!("127.0.0.1:{port}"),
        Some("127.0.0.1:0"),
        settings,
        members,
    );
    RouterProc::try_start(&toml, settings).map_err(|e| anyhow!(e))
}

impl Local {
    /// Starts `initial` member shards and `spares` more (not in the ring), then `routers`
    /// routers over the members.
    pub fn start(initial: usize, spares: usize, routers: usize, split: bool) -> Result<Local> {
        let mut settings = RouterSettings::default();
        let mut canary = Vec::new();
        if split {
            settings.tables = "[[pool]]\nname = \"canary\"\n".to_string();
            for id in CANARY {
                let node = tests::try_start_node(0, &[], START_TIMEOUT)
                    .map_err(|e| anyhow!(e))
                    .with_context(|| format!("starting {id}"))?;
                settings.tables.push_str(&format!(
                    "[[pool.shard]]\nid = \"{id}\"\nprimary = \"{}\"\n",
                    node.addr
                ));
                canary.push(node);
            }
            settings.tables.push_str(&format!(
                "[[route]]\nprefix = \"{SPLIT_PREFIX}\"\npool = \"default\"\nsplit = {{ pool = \"canary\", percent = 0 }}\n"
            ));
        }
        let cluster = Cluster::builder()
            .shards(initial)
            .replicas(1)
            .spares(spares)
            .start_timeout(START_TIMEOUT)
            .router(settings.clone())
            .try_start()
            .map_err(|e| anyhow!(e))?;
        let initial = cluster
            .shards
            .iter()
            .map(|s| ShardState::new(&s.id, s.member))
            .collect();
        let members = cluster.members();
        let mut extra = Vec::new();
        for i in 1..routers {
            let r = spawn_router(0, &members, &settings)
                .with_context(|| format!("starting {}", router_name(i)))?;
            extra.push(ExtraRouter {
                addr: r.addr(),
                proc_: Some(r),
            });
        }
        Ok(Local {
            extra,
            cluster,
            initial,
            settings,
            _canary: canary,
        })
    }

    fn extra(&mut self, i: usize) -> Result<&mut ExtraRouter> {
        i.checked_sub(1)
            .and_then(|j| self.extra.get_mut(j))
            .ok_or_else(|| anyhow!("no router {}", i + 1))
    }

    /// Stops extra router `i`: SIGTERM, then SIGKILL after the grace. Says how it went.
    fn stop_extra(&mut self, i: usize) -> Result<String> {
        let Some(mut r) = self.extra(i)?.proc_.take() else {
            return Ok(format!("{} was not running", router_name(i)));
        };
        send_signal(r.proc_.pid(), "TERM").map_err(|e| anyhow!(e))?;
        Ok(match r.proc_.wait_exit(ROUTER_STOP_GRACE) {
            Some(status) => format!("exited on SIGTERM ({status})"),
            None => {
                r.proc_.kill();
                format!("did not exit within {ROUTER_STOP_GRACE:?} of SIGTERM; killed")
            }
        })
    }

    /// Starts extra router `i` on its last port (retrying while it is busy, bounded), else on
    /// any; returns its address.
    fn start_extra(&mut self, i: usize, members: &[RouterShard]) -> Result<SocketAddr> {
        let settings = self.settings.clone();
        let r = self.extra(i)?;
        r.proc_ = None;
        let port = r.addr.port();
        let mut last = anyhow!("not tried");
        for _ in 0..20 {
            match spawn_router(port, members, &settings) {
                Ok(p) => {
                    r.addr = p.addr();
                    r.proc_ = Some(p);
                    return Ok(r.addr);
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let p = spawn_router(0, members, &settings)
            .with_context(|| format!("port {port}: {last:#}; any port"))?;
        r.addr = p.addr();
        r.proc_ = Some(p);
        Ok(r.addr)
    }

    /// The cluster file the router reads.
    pub fn config(&self) -> PathBuf {
        self.cluster.router().config.clone()
    }

    fn running_pid(&self, node: &str) -> Result<u32> {
        self.cluster
            .node(node)
            .and_then(tests::Node::pid)
            .ok_or_else(|| anyhow!("{node} is not running"))
    }
}

impl Backend for Local {
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
        self.cluster.node(node).map(|n| n.addr.to_string())
    }

    fn routers(&self) -> usize {
        1 + self.extra.len()
    }

    fn router_addr(&self, i: usize) -> SocketAddr {
        match i.checked_sub(1).and_then(|j| self.extra.get(j)) {
            Some(r) => r.addr,
            None => self.cluster.router_addr(),
        }
    }

    fn is_up(&self, node: &str) -> bool {
        self.cluster.node(node).is_some_and(tests::Node::is_up)
    }

    fn kill(&mut self, node: &str) -> Result<()> {
        let n = self
            .cluster
            .node_mut(node)
            .ok_or_else(|| anyhow!("no node {node}"))?;
        if !n.is_up() {
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
        self.cluster.restart_node(node, of).map_err(|e| anyhow!(e))
    }

    fn pause(&mut self, node: &str) -> Result<()> {
        send_signal(self.running_pid(node)?, "STOP").map_err(|e| anyhow!(e))
    }

    fn resume(&mut self, node: &str) -> Result<()> {
        send_signal(self.running_pid(node)?, "CONT").map_err(|e| anyhow!(e))
    }

    fn restart_router(&mut self, i: usize, members: &[RouterShard]) -> Result<String> {
        if i > 0 {
            let stopped = self.stop_extra(i).context("stopping")?;
            let addr = self
                .start_extra(i, members)
                .with_context(|| format!("old router {stopped}; new router"))?;
            return Ok(format!("old router {stopped}; new router on {addr}"));
        }
        let stopped = self
            .cluster
            .stop_router(ROUTER_STOP_GRACE)
            .map_err(|e| anyhow!(e))
            .context("stopping")?;
        let addr = self
            .cluster
            .start_router(members)
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("old router {stopped}; new router"))?;
        Ok(format!("old router {stopped}; new router on {addr}"))
    }

    fn start_router(&mut self, i: usize, members: &[RouterShard]) -> Result<()> {
        if i > 0 {
            return self.start_extra(i, members).map(|_| ());
        }
        self.cluster
            .start_router(members)
            .map(|_| ())
            .map_err(|e| anyhow!(e))
    }

    fn kill_router(&mut self, i: usize) -> Result<()> {
        if i > 0 {
            let r = self.extra(i)?;
            let Some(mut p) = r.proc_.take() else {
                bail!("{} is not running", router_name(i));
            };
            p.proc_.kill();
            return Ok(());
        }
        if !self.cluster.router_is_up() {
            bail!("the router is not running");
        }
        let pid = self.cluster.router().proc_.pid();
        send_signal(pid, "KILL").map_err(|e| anyhow!(e))?;
        // Not reaped yet, so the SIGTERM of stop_router reaches the zombie and it is reaped.
        self.cluster
            .stop_router(Duration::from_secs(2))
            .map(|_| ())
            .map_err(|e| anyhow!(e))
    }

    fn router_up(&self, i: usize) -> bool {
        match i.checked_sub(1) {
            None => self.cluster.router_is_up(),
            Some(j) => self.extra.get(j).is_some_and(|r| r.proc_.is_some()),
        }
    }

    fn exited(&mut self) -> Vec<(String, String)> {
        let mut dead = self.cluster.take_exited();
        for (j, r) in self.extra.iter_mut().enumerate() {
            let gone = r.proc_.as_mut().is_some_and(|p| !p.proc_.is_alive());
            if let Some(p) = r.proc_.take_if(|_| gone) {
                dead.push((router_name(j + 1), p.proc_.log_tail()));
            }
        }
        dead
    }

    fn heal_faults(&mut self) {
        for (_, p) in self.cluster.running_mut() {
            // A stray SIGCONT is harmless; a node left stopped would hang the final check.
            let _ = send_signal(p.pid(), "CONT");
        }
    }

    /// Copies each process's log into `to` (the processes delete their own scratch dirs).
    fn keep_logs(&mut self, to: &Path) -> Result<()> {
        std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        for (name, p) in self.cluster.running_mut() {
            let from = p.dir.join("stderr.log");
            if from.exists() {
                std::fs::copy(&from, to.join(format!("{name}.log")))
                    .with_context(|| format!("copying {}", from.display()))?;
            }
        }
        for (j, r) in self.extra.iter().enumerate() {
            let Some(p) = &r.proc_ else { continue };
            let from = p.proc_.dir.join("stderr.log");
            if from.exists() {
                std::fs::copy(&from, to.join(format!("{}.log", router_name(j + 1))))
                    .with_context(|| format!("copying {}", from.display()))?;
            }
        }
        Ok(())
    }
}
