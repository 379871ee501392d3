//! The local backend: the cluster of one churn run as processes on 127.0.0.1 ([`tests::Cluster`]:
//! shards of a primary and one replica each, spare shards for joins, the router, whose
//! `cluster.toml` the harness writes from the membership it asked for).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::backend::{Backend, RouterShard, ShardState, Verbs};
use anyhow::{anyhow, bail, Context, Result};
use tests::{send_signal, Cluster};

pub const VNODES: u32 = ringcache_protocol::ring::DEFAULT_VNODES;
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The local cluster and the shards as the driver first sees them.
pub struct Local {
    cluster: Cluster,
    initial: Vec<ShardState>,
}

impl Local {
    /// Starts `initial` member shards and `spares` more (not in the ring), then the router.
    pub fn start(initial: usize, spares: usize) -> Result<Local> {
        let cluster = Cluster::builder()
            .shards(initial)
            .replicas(1)
            .spares(spares)
            .start_timeout(START_TIMEOUT)
            .try_start()
            .map_err(|e| anyhow!(e))?;
        let initial = cluster
            .shards
            .iter()
            .map(|s| ShardState::new(&s.id, s.member))
            .collect();
        Ok(Local { cluster, initial })
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

    fn router_addr(&self) -> SocketAddr {
        self.cluster.router_addr()
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

    fn restart_router(&mut self, members: &[RouterShard]) -> Result<String> {
        let stopped = self
            .cluster
            .stop_router(Duration::from_secs(10))
            .map_err(|e| anyhow!(e))
            .context("stopping")?;
        let addr = self
            .cluster
            .start_router(members)
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("old router {stopped}; new router"))?;
        Ok(format!("old router {stopped}; new router on {addr}"))
    }

    fn start_router(&mut self, members: &[RouterShard]) -> Result<()> {
        self.cluster
            .start_router(members)
            .map(|_| ())
            .map_err(|e| anyhow!(e))
    }

    fn router_up(&self) -> bool {
        self.cluster.router_is_up()
    }

    fn exited(&mut self) -> Vec<(String, String)> {
        self.cluster.take_exited()
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
        Ok(())
    }
}
