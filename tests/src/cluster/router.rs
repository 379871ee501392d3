//! A router process and the cluster file it reads: `[router]`, `[ring]` settings, `[[shard]]`
//! and `[[l4]]` tables, written as `cluster.toml` spells them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ringcache_protocol::ring::DEFAULT_VNODES;

use crate::procs::{scratch_dir, try_spawn_ringcache_lines, Proc};
use crate::raw::Raw;

/// The router prints this once bound (then the address).
pub const ROUTER_LISTENING: &str = "ringcache router listening on ";
/// The router prints this once its metrics endpoint is bound (then the address).
pub const ROUTER_METRICS: &str = "ringcache router metrics on ";
/// The router's default per-request timeout: a reply about a dead backend must come within it.
pub const ROUTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the test routers' L4 listeners bind (the router names an address pool after it).
const L4_LISTEN: &str = "127.0.0.1:0";

/// One `[[shard]]` table of a cluster file: addresses as the router dials them.
#[derive(Debug, Clone)]
pub struct RouterShard {
    pub id: String,
    pub primary: String,
    pub replicas: Vec<String>,
}

/// `[[shard]]` tables for `members` (weight 1), as cluster.toml spells them.
pub fn shard_tables(members: &[RouterShard]) -> String {
    let mut t = String::new();
    for s in members {
        let replicas: Vec<String> = s.replicas.iter().map(|r| format!("\"{r}\"")).collect();
        t.push_str(&format!(
            "\n[[shard]]\nid = \"{}\"\nprimary = \"{}\"\nreplicas = [{}]\nweight = 1\n",
            s.id,
            s.primary,
            replicas.join(", ")
        ));
    }
    t
}

/// The backends of an `[[l4]]` listener.
#[derive(Debug, Clone)]
pub enum L4Pool {
    /// A shard's replicas (`pool = "replicas:<shard>"`).
    Replicas(String),
    /// Fixed addresses, each `host:port` or `host:port@weight`.
    Addrs(Vec<String>),
}

/// One `[[l4]]` listener on 127.0.0.1 port 0.
#[derive(Debug, Clone)]
pub struct L4Listener {
    pub pool: L4Pool,
    /// `least-connections`, `round-robin`, `weighted-round-robin`, `source-hash`.
    pub balance: String,
}

impl L4Listener {
    /// The pool's name in the router's `ringcache router l4 <name> on ADDR` line.
    fn name(&self) -> String {
        match &self.pool {
            L4Pool::Replicas(shard) => format!("replicas:{shard}"),
            L4Pool::Addrs(_) => L4_LISTEN.to_string(),
        }
    }

    fn table(&self) -> String {
        let pool = match &self.pool {
            L4Pool::Replicas(shard) => format!("\"replicas:{shard}\""),
            L4Pool::Addrs(addrs) => {
                let quoted: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
                format!("[{}]", quoted.join(", "))
            }
        };
        format!(
            "\n[[l4]]\nlisten = \"{L4_LISTEN}\"\npool = {pool}\nbalance = \"{}\"\n",
            self.balance
        )
    }
}

/// The router's `[ring]` settings and L4 listeners; unset ones keep the router's defaults.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    pub vnodes: u32,
    /// `primary`, `replica`, `replica-least-connections`.
    pub read_from: Option<String>,
    pub max_replica_lag: Option<Duration>,
    /// Keys per background migration batch.
    pub migration_batch: Option<u32>,
    /// Pause between migration batches.
    pub migration_pause: Option<Duration>,
    pub l4: Vec<L4Listener>,
    /// More tables, appended as written (pools, routes).
    pub tables: String,
}

impl Default for RouterSettings {
    fn default() -> RouterSettings {
        RouterSettings {
            vnodes: DEFAULT_VNODES,
            read_from: None,
            max_replica_lag: None,
            migration_batch: None,
            migration_pause: None,
            l4: Vec::new(),
            tables: String::new(),
        }
    }
}

impl RouterSettings {
    pub fn vnodes(mut self, vnodes: u32) -> RouterSettings {
        self.vnodes = vnodes;
        self
    }

    pub fn read_from(mut self, read_from: &str) -> RouterSettings {
        self.read_from = Some(read_from.to_string());
        self
    }

    pub fn max_replica_lag(mut self, lag: Duration) -> RouterSettings {
        self.max_replica_lag = Some(lag);
        self
    }

    pub fn migration(mut self, batch: u32, pause: Duration) -> RouterSettings {
        self.migration_batch = Some(batch);
        self.migration_pause = Some(pause);
        self
    }

    /// Adds an L4 listener over `pool` with the `balance` policy.
    pub fn l4(mut self, pool: L4Pool, balance: &str) -> RouterSettings {
        self.l4.push(L4Listener {
            pool,
            balance: balance.to_string(),
        });
        self
    }
}

/// `cluster.toml` text for a router on `listen` (and `metrics`) with `settings` over `members`.
pub fn router_toml(
    listen: &str,
    metrics: Option<&str>,
    settings: &RouterSettings,
    members: &[RouterShard],
) -> String {
    // TLS mode: clients reach the router's TLS listener on `listen`; the plain one takes any port.
    let mut t = match crate::tls::router_keys(listen) {
        Some(keys) => format!("[router]\nlisten = \"127.0.0.1:0\"\n{keys}"),
        None => format!("[router]\nlisten = \"{listen}\"\n"),
    };
    if let Some(m) = metrics {
        t.push_str(&format!("metrics = \"{m}\"\n"));
    }
    t.push_str(&format!("\n[ring]\nvnodes = {}\n", settings.vnodes));
    if let Some(read_from) = &settings.read_from {
        t.push_str(&format!("read_from = \"{read_from}\"\n"));
    }
    if let Some(lag) = settings.max_replica_lag {
        t.push_str(&format!("max_replica_lag = \"{}ms\"\n", lag.as_millis()));
    }
    if let Some(batch) = settings.migration_batch {
        t.push_str(&format!("migration_batch = {batch}\n"));
    }
    if let Some(pause) = settings.migration_pause {
        t.push_str(&format!("migration_pause_ms = {}\n", pause.as_millis()));
    }
    t.push_str(&shard_tables(members));
    for l4 in &settings.l4 {
        t.push_str(&l4.table());
    }
    t.push_str(&settings.tables);
    t
}

/// `cluster.toml` text for a router on `listen` (and `metrics`) over `shards` (id, primary
/// address), weight 1 each, no replicas, default ring settings.
pub fn cluster_toml(listen: &str, metrics: Option<&str>, shards: &[(&str, SocketAddr)]) -> String {
    let members: Vec<RouterShard> = shards
        .iter()
        .map(|(id, addr)| RouterShard {
            id: id.to_string(),
            primary: addr.to_string(),
            replicas: Vec::new(),
        })
        .collect();
    router_toml(listen, metrics, &RouterSettings::default(), &members)
}

/// A router started from a cluster file, with the addresses it printed. Dropping it kills it.
pub struct RouterProc {
    pub proc_: Proc,
    /// The metrics endpoint.
    pub metrics: SocketAddr,
    /// One address per `[[l4]]` listener, in the file's order.
    pub l4: Vec<SocketAddr>,
    /// The cluster file it reads.
    pub config: PathBuf,
    dir: PathBuf,
}

impl RouterProc {
    /// Writes `toml` to a fresh scratch directory, starts `ringcache router --config` on it and
    /// waits (20 s) for its listening and metrics lines and one l4 line per `settings.l4`.
    pub fn try_start(toml: &str, settings: &RouterSettings) -> Result<RouterProc, String> {
        let dir = scratch_dir("router");
        let config = dir.join("cluster.toml");
        std::fs::write(&config, toml).map_err(|e| format!("writing {}: {e}", config.display()))?;
        let l4_lines: Vec<String> = settings
            .l4
            .iter()
            .map(|l| format!("ringcache router l4 {} on ", l.name()))
            .collect();
        // TLS mode: the router's address is its TLS listener's.
        let first = match crate::tls::mode() {
            Some(_) => crate::tls::ROUTER_TLS_LISTENING,
            None => ROUTER_LISTENING,
        };
        let mut prefixes = vec![first, ROUTER_METRICS];
        prefixes.extend(l4_lines.iter().map(String::as_str));
        let config_s = config.to_string_lossy().into_owned();
        let (proc_, lines) = try_spawn_ringcache_lines(
            &["router", "--config", &config_s],
            &prefixes,
            Duration::from_secs(20),
        )?;
        let parse = |s: &str| -> Result<SocketAddr, String> {
            s.trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .parse()
                .map_err(|e| format!("bad address {s:?} printed by the router: {e}"))
        };
        let metrics = parse(&lines[1])?;
        let l4 = lines[2..]
            .iter()
            .map(|l| parse(l))
            .collect::<Result<_, _>>()?;
        Ok(RouterProc {
            proc_,
            metrics,
            l4,
            config,
            dir,
        })
    }

    /// The router's RESP address.
    pub fn addr(&self) -> SocketAddr {
        self.proc_.addr
    }

    /// A new raw connection to the router.
    pub fn raw(&self) -> Raw {
        self.proc_.raw()
    }
}

impl Drop for RouterProc {
    fn drop(&mut self) {
        self.proc_.kill();
        if std::thread::panicking() {
            eprintln!(
                "router {} log tail:\n{}\ncluster file kept in {}",
                self.proc_.addr,
                self.proc_.log_tail(),
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
