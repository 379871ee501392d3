//! Where the cluster under test runs, behind the one interface the schedule drives: local
//! processes ([`super::local::Local`]) or a docker compose project
//! ([`super::compose::Compose`]).
//!
//! Nodes are named after the role they started in, `<shard>-primary` and `<shard>-replica` (in
//! compose mode these are the service names), and keep their name through failovers: which node
//! is a shard's primary now is the driver's business ([`ShardState`]), what a node *is* (a process,
//! a container) the backend's.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

/// The router's `[[shard]]` tables, as the local cluster writes them too.
pub use tests::{shard_tables, RouterShard};

/// One shard as the driver tracks it. `primary` and `replica` are node names.
#[derive(Debug, Clone)]
pub struct ShardState {
    pub id: String,
    pub primary: String,
    pub replica: Option<String>,
    /// In the ring, as far as the harness asked.
    pub member: bool,
    /// Was in the ring at some point (spares that joined, shards that left).
    pub ever_member: bool,
}

impl ShardState {
    /// A shard with its two nodes named after their roles.
    pub fn new(id: &str, member: bool) -> ShardState {
        ShardState {
            id: id.to_string(),
            primary: format!("{id}-primary"),
            replica: Some(format!("{id}-replica")),
            member,
            ever_member: member,
        }
    }
}

/// Router `i`'s name: `router`, then `router2`, `router3`, … (in compose mode the service names).
pub fn router_name(i: usize) -> String {
    match i {
        0 => "router".to_string(),
        i => format!("router{}", i + 1),
    }
}

/// The index of the router named `name` (see [`router_name`]).
pub fn router_index(name: &str) -> Option<usize> {
    match name.strip_prefix("router")? {
        "" => Some(0),
        n => n.parse::<usize>().ok().filter(|n| *n >= 2).map(|n| n - 1),
    }
}

/// How a backend carries out each fault, for event names and log lines.
#[derive(Debug, Clone, Copy)]
pub struct Verbs {
    pub kill: &'static str,
    pub pause: &'static str,
    pub restart_router: &'static str,
}

/// A cluster the driver can hurt and heal. Every call is bounded in time.
pub trait Backend {
    /// `local` or `compose`.
    fn name(&self) -> &'static str;
    fn verbs(&self) -> Verbs;
    /// The shards at the start: members, then the spares the plan may join.
    fn initial_shards(&self) -> Vec<ShardState>;
    /// A node's address as the router knows it (`127.0.0.1:PORT`, `a-primary:7001`).
    fn addr(&self, node: &str) -> Option<String>;
    /// How many routers serve the cluster (all over the same nodes; `--routers`).
    fn routers(&self) -> usize {
        1
    }
    /// Router `i`'s address from this host (its last one while it is down).
    fn router_addr(&self, i: usize) -> SocketAddr;
    /// How stale a read through the router may be: `None` when it reads from primaries only,
    /// else its bound on replica lag.
    fn replica_read_bound(&self) -> Option<Duration> {
        None
    }
    /// Running, as far as the harness knows (not killed, not found dead).
    fn is_up(&self, node: &str) -> bool;
    /// SIGKILL (the node is then down until [`Backend::start`]).
    fn kill(&mut self, node: &str) -> Result<()>;
    /// Starts a node that is down again, empty; as a replica of `replica_of` (an address) when
    /// the backend can choose.
    fn start(&mut self, node: &str, replica_of: Option<&str>) -> Result<()>;
    /// Freezes a node (it keeps its connections but answers nothing) until [`Backend::resume`].
    fn pause(&mut self, node: &str) -> Result<()>;
    fn resume(&mut self, node: &str) -> Result<()>;
    /// Cuts a node off the network (router, replicas, primary) until [`Backend::heal`].
    fn cut(&mut self, node: &str) -> Result<()> {
        bail!("cannot cut {node} off the network: only compose mode can")
    }
    fn heal(&mut self, node: &str) -> Result<()> {
        bail!("cannot reconnect {node}: only compose mode cuts nodes off")
    }
    /// Stops router `i` and starts it again with `members` in its config; says how it went.
    /// Its address may change (see [`Backend::router_addr`]).
    fn restart_router(&mut self, i: usize, members: &[RouterShard]) -> Result<String>;
    /// Starts router `i` (after it was found dead or killed) with `members` in its config.
    fn start_router(&mut self, i: usize, members: &[RouterShard]) -> Result<()>;
    /// SIGKILL router `i` (it is then down until [`Backend::start_router`]).
    fn kill_router(&mut self, i: usize) -> Result<()>;
    fn router_up(&self, i: usize) -> bool;
    /// Nodes and routers (by [`router_name`]) found down that the harness did not stop, with
    /// the end of their log; they count as down from now on.
    fn exited(&mut self) -> Vec<(String, String)>;
    /// Resumes every paused node and reconnects every cut one (end of the run, interrupts).
    fn heal_faults(&mut self);
    /// Copies every node's and the router's log into `to`.
    fn keep_logs(&mut self, to: &Path) -> Result<()>;
}

#[cfg(test)]
mod naming {
    use super::*;

    #[test]
    fn router_names_round_trip() {
        for i in 0..5 {
            assert_eq!(router_index(&router_name(i)), Some(i));
        }
        assert_eq!(router_name(1), "router2");
        assert_eq!(router_index("router1"), None);
        assert_eq!(router_index("a-primary"), None);
    }
}
