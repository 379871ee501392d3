//! The router's configuration, in two stages: raw serde structs mirroring `cluster.toml` (unknown
//! keys rejected) → a validated [`RouterConfig`] whose errors name the offending field.
//!
//! ```toml
//! [router]
//! listen = "127.0.0.1:7000"
//! metrics = "127.0.0.1:9121"     # optional: Prometheus text at GET /metrics
//! connect_timeout_ms = 1000      # optional tuning, defaults shown
//! request_timeout_ms = 2000
//! upstream_connections = 2
//! max_clients = 10000
//! io_threads = 1                 # default: half the CPUs, 1 to 4; 0 = the caller's runtime
//! l4_threads = 2                 # threads for [[l4]] connections (default: the CPUs, 1 to 4;
//!                                # 0 = the IO threads above)
//! max_dedicated_connections = 1024   # connections of one client's own (transactions, blocking)
//! # requirepass = "secret"       # clients' password (env RINGCACHE_REQUIREPASS)
//! # node_user = "ringcache"      # how the router authenticates to nodes
//! # node_password = "secret"     # (env RINGCACHE_NODE_PASSWORD; RINGCACHE_PASSWORD sets all)
//! # aclfile = "users.acl"        # ACL users (Redis's aclfile format); reloaded on SIGHUP
//! # auth_failure_limit = 20      # failed AUTHs per client address in a burst (0: no limit)
//! # tls_listen = "127.0.0.1:7443"   # a TLS client listener (tls_cert, tls_key; tls_ca:
//! # tls_cert = "router.crt"         # client certificates required)
//! # tls_key = "router.key"
//! # node_tls = true                 # links to the nodes over TLS (node_tls_ca; node_tls_cert
//! # node_tls_ca = "ca.crt"          # and node_tls_key for nodes that require client certs;
//! #                                 # node_tls_server_name)
//!
//! [ring]
//! vnodes = 2048
//! migration_batch = 1000         # keys per background migration batch (1 to 10000)
//! migration_pause_ms = 0         # pause between batches, to throttle a rebalance
//! migration_rate = 0             # keys per second one change (a join, leave or split) may move (0: no cap)
//!
//! [[shard]]
//! id = "a"
//! primary = "127.0.0.1:7001"
//! replicas = []
//! weight = 1
//! ```

use std::path::Path;
use std::time::Duration;

use ringcache_client::{Credentials, LinkSpec};
use ringcache_protocol::ring::{Ring, ShardSpec, DEFAULT_VNODES};
use ringcache_protocol::Limits;
use serde::Deserialize;

/// Why a configuration could not be loaded; the message names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cause is in the message, not chained as a source, so it is printed once.
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{0}")]
    Parse(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw, as written in the file
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    router: RawRouter,
    #[serde(default)]
    ring: RawRing,
    #[serde(default)]
    shard: Vec<RawShard>,
    #[serde(default)]
    l4: Vec<RawL4>,
    #[serde(default)]
    pool: Vec<crate::pools_config::RawPoolTable>,
    #[serde(default)]
    route: Vec<crate::pools_config::RawRoute>,
    #[serde(default)]
    listener: Vec<crate::pools_config::RawListener>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    listen: Option<String>,
    metrics: Option<String>,
    connect_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    upstream_connections: Option<u32>,
    max_clients: Option<u32>,
    io_threads: Option<u32>,
    l4_threads: Option<u32>,
    max_dedicated_connections: Option<u32>,
    requirepass: Option<String>,
    tls_listen: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_ca: Option<String>,
    node_tls: Option<bool>,
    node_tls_ca: Option<String>,
    node_tls_cert: Option<String>,
    node_tls_key: Option<String>,
    node_tls_server_name: Option<String>,
    node_user: Option<String>,
    node_password: Option<String>,
    aclfile: Option<String>,
    auth_failure_limit: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRing {
    vnodes: Option<u32>,
    read_from: Option<String>,
    max_replica_lag: Option<RawLag>,
    migration_batch: Option<u32>,
    migration_pause_ms: Option<u64>,
    migration_rate: Option<u64>,
}

/// `max_replica_lag` as milliseconds (`500`) or a duration string (`"500ms"`, `"2s"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawLag {
    Millis(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShard {
    id: Option<String>,
    primary: Option<String>,
    #[serde(default)]
    replicas: Vec<String>,
    weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawL4 {
    listen: Option<String>,
    pool: Option<RawPool>,
    balance: Option<String>,
}

/// An L4 pool named by one string (e.g. `"a.replicas"`) or listed as addresses.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPool {
    Name(String),
    Addrs(Vec<String>),
}

// ---------------------------------------------------------------------------------------------
// Validated
// ---------------------------------------------------------------------------------------------

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7000";
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(2000);
pub const DEFAULT_UPSTREAM_CONNECTIONS: usize = 2;
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// A dedicated connection costs a socket on the router and a client on the node.
pub const DEFAULT_MAX_DEDICATED_CONNECTIONS: usize = 1024;
/// Keys per background `MIGRATE-ARC` batch (`[ring] migration_batch`).
pub const DEFAULT_MIGRATION_BATCH: usize = 1000;
/// More multiplexed connections per backend than this only adds contention.
const MAX_UPSTREAM_CONNECTIONS: u32 = 64;
const MAX_IO_THREADS: u32 = 64;

/// One IO thread per two CPUs, 1 to 4: a proxy's work is mostly the kernel's TCP path, and on a
/// 2-core box one thread costs less CPU per request than two (fewer, fuller upstream batches:
/// 9.3 vs 13.3 us per GET at -P 1 over 2 redis-servers, 1.0 vs 1.3 at -P 16) and leaves the other
/// core to the clients and nodes it shares the machine with; beyond 4 threads mostly wait.
pub fn default_io_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4))
}

/// One L4 thread per CPU, 1 to 4, as haproxy's default `nbthread`: an L4 connection has its own
/// upstream connection, so there are no shared upstream batches for fewer threads to fill (the
/// reason `io_threads` is half the CPUs). On 2 cores 1 and 2 threads measured within noise of
/// each other; on more cores one thread would cap the listeners at one core.
pub fn default_l4_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

/// A thread-count setting: `default()` when absent, else 0 to `MAX_IO_THREADS`.
fn thread_count(
    value: Option<u32>,
    default: fn() -> usize,
    field: &'static str,
) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default()),
        Some(n) if n <= MAX_IO_THREADS => Ok(n as usize),
        Some(n) => Err(ConfigError::invalid(
            field,
            format!("{n} is out of range (0 to {MAX_IO_THREADS})"),
        )),
    }
}

/// Everything the router needs to run, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    /// Client-facing address, `HOST:PORT` (port 0 picks a free one).
    pub listen: String,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Multiplexed connections per backend (per RESP version in use).
    pub upstream_connections: usize,
    pub max_clients: usize,
    /// Threads owning client and upstream connections (0 = run on the caller's runtime).
    pub io_threads: usize,
    /// Threads owning L4 connections (0 = the IO threads); started only when there are listeners.
    pub l4_threads: usize,
    /// Connections the router opens for one client alone (a transaction, a blocking command),
    /// all clients together.
    pub max_dedicated_connections: usize,
    pub requirepass: Option<String>,
    /// What the router's links to nodes send in `AUTH` (data, control, health checks).
    pub node_link: LinkSpec,
    /// ACL users for the router's clients (Redis's aclfile format).
    pub aclfile: Option<std::path::PathBuf>,
    /// Failed AUTHs a client address may make in a burst (then a quarter of it a second).
    pub auth_failure_limit: u64,
    /// Request decoding limits for clients (Redis's defaults).
    pub limits: Limits,
    pub ring: RingConfig,
    /// The `default` pool's shards, sorted by id, as the ring orders shards.
    pub shards: Vec<ShardConfig>,
    /// The other pools (`[[pool]]`), each a ring of its own.
    pub pools: Vec<crate::pools_config::PoolConfig>,
    /// Key-prefix routes to pools (`[[route]]`).
    pub routes: Vec<crate::pools_config::RouteConfig>,
    /// More client listeners, each with its own default pool (`[[listener]]`).
    pub listeners: Vec<crate::pools_config::ListenerConfig>,
    /// L4 listeners: whole connections spliced to a pool.
    pub l4: Vec<L4Config>,
    /// A TLS client listener (`tls_listen`).
    pub tls: Option<crate::tls_config::ListenTls>,
    /// TLS on every link to the nodes (`node_tls`).
    pub node_tls: Option<ringcache_protocol::tls::ClientFiles>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RingConfig {
    pub vnodes: u32,
    /// Where reads go (kept for the read-replica release; every read goes to the primary now).
    pub read_from: ReadFrom,
    /// Staleness bound for replica reads (kept for the read-replica release).
    pub max_replica_lag: Option<Duration>,
    /// Keys per `MIGRATE-ARC` call of the background mover.
    pub migration_batch: usize,
    /// Pause between the mover's batches (throttle; 0 = none).
    pub migration_pause: Duration,
    /// Keys per second the background mover may move, all its streams together (0: no cap).
    pub migration_rate: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    #[default]
    Primary,
    /// Healthy, in-sync replicas, the one with the fewest outstanding requests first.
    ReplicaLeastConnections,
    ReplicaRoundRobin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardConfig {
    pub id: String,
    /// `HOST:PORT`; a host name is resolved at each (re)connect, so containers can move.
    pub primary: String,
    pub replicas: Vec<String>,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4Config {
    pub listen: String,
    pub pool: L4Pool,
    pub balance: crate::l4::pool::Policy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4Pool {
    /// A shard's replicas (`"replicas:a"`), following the topology through failovers.
    Replicas(String),
    /// Fixed addresses, each with a weight (`"host:port@3"`).
    Addrs(Vec<crate::l4::pool::Member>),
}

impl RouterConfig {
    /// The shards as the ring sees them.
    pub fn shard_specs(&self) -> Vec<ShardSpec> {
        self.shards
            .iter()
            .map(|s| ShardSpec::new(s.id.clone(), s.weight))
            .collect()
    }

    /// A config for `shards` (`(id, primary)`, weight 1) listening on `listen`, all else default:
    /// tests and tools that build a router without a file.
    pub fn with_shards(listen: &str, shards: &[(&str, &str)]) -> Result<RouterConfig, ConfigError> {
        let mut text = format!("[router]\nlisten = {listen:?}\n");
        for (id, primary) in shards {
            text.push_str(&format!("[[shard]]\nid = {id:?}\nprimary = {primary:?}\n"));
        }
        parse_config(&text)
    }
}

/// Reads and validates a TOML file, with the secrets given in the environment.
pub fn load_config(path: impl AsRef<Path>) -> Result<RouterConfig, ConfigError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.display().to_string(),
        error,
    })?;
    parse_config_with_env(&text, |name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    })
}

/// The one secret of a password-protected cluster (`ringcache up`, compose): the clients'
/// password and the password of `CLUSTER_USER`, the user the router and nodes use between them.
pub const ENV_PASSWORD: &str = "RINGCACHE_PASSWORD";
/// The user nodes grant the cluster's own commands when `RINGCACHE_PASSWORD` is set.
pub const CLUSTER_USER: &str = "ringcache";

/// Parses TOML text and applies secrets from `env`, which `ps` does not show:
/// `RINGCACHE_PASSWORD` sets the clients' password and the nodes' (as `CLUSTER_USER`);
/// `RINGCACHE_REQUIREPASS` and `RINGCACHE_NODE_PASSWORD` set one each and win over it and the
/// file.
pub fn parse_config_with_env(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<RouterConfig, ConfigError> {
    let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let r = &mut raw.router;
    if let Some(pw) = env(ENV_PASSWORD) {
        r.requirepass = Some(pw.clone());
        if r.node_password.is_none() {
            r.node_user.get_or_insert_with(|| CLUSTER_USER.to_string());
            r.node_password = Some(pw);
        }
    }
    if let Some(pw) = env("RINGCACHE_REQUIREPASS") {
        r.requirepass = Some(pw);
    }
    if let Some(pw) = env("RINGCACHE_NODE_PASSWORD") {
        r.node_password = Some(pw);
    }
    validate(raw)
}

/// `node_user` without `node_password` is a mistake; a password alone authenticates as
/// `default`.
fn node_credentials(
    user: Option<String>,
    password: Option<String>,
) -> Result<Option<Credentials>, ConfigError> {
    match (
        user.filter(|u| !u.is_empty()),
        password.filter(|p| !p.is_empty()),
    ) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::invalid(
            "router.node_password",
            "node_user is set but no node_password (or RINGCACHE_NODE_PASSWORD)",
        )),
        (user, Some(password)) => Ok(Some(Credentials { user, password })),
    }
}

/// Parses and validates TOML text.
pub fn parse_config(text: &str) -> Result<RouterConfig, ConfigError> {
    parse_config_with_env(text, |_| None)
}

fn validate(raw: RawConfig) -> Result<RouterConfig, ConfigError> {
    let r = raw.router;
    let listen = r.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    check_addr("router.listen", &listen)?;
    if let Some(m) = &r.metrics {
        check_addr("router.metrics", m)?;
    }
    let connect_timeout = positive_ms(
        "router.connect_timeout_ms",
        r.connect_timeout_ms,
        DEFAULT_CONNECT_TIMEOUT,
    )?;
    let request_timeout = positive_ms(
        "router.request_timeout_ms",
        r.request_timeout_ms,
        DEFAULT_REQUEST_TIMEOUT,
    )?;
    let upstream_connections = match r.upstream_connections {
        None => DEFAULT_UPSTREAM_CONNECTIONS,
        Some(n) if (1..=MAX_UPSTREAM_CONNECTIONS).contains(&n) => n as usize,
        Some(n) => {
            return Err(ConfigError::invalid(
                "router.upstream_connections",
                format!("{n} is out of range (1 to {MAX_UPSTREAM_CONNECTIONS})"),
            ))
        }
    };
    let max_clients = match r.max_clients {
        None => DEFAULT_MAX_CLIENTS,
        Some(0) => {
            return Err(ConfigError::invalid(
                "router.max_clients",
                "must be at least 1",
            ))
        }
        Some(n) => n as usize,
    };
    let io_threads = thread_count(r.io_threads, default_io_threads, "router.io_threads")?;
    let l4_threads = thread_count(r.l4_threads, default_l4_threads, "router.l4_threads")?;
    let max_dedicated_connections = match r.max_dedicated_connections {
        None => DEFAULT_MAX_DEDICATED_CONNECTIONS,
        Some(0) => {
            return Err(ConfigError::invalid(
                "router.max_dedicated_connections",
                "must be at least 1",
            ))
        }
        Some(n) => n as usize,
    };
    let requirepass = r.requirepass.filter(|p| !p.is_empty());
    let raw_tls = crate::tls_config::RawTls {
        tls_listen: r.tls_listen,
        tls_cert: r.tls_cert,
        tls_key: r.tls_key,
        tls_ca: r.tls_ca,
        node_tls: r.node_tls,
        node_tls_ca: r.node_tls_ca,
        node_tls_cert: r.node_tls_cert,
        node_tls_key: r.node_tls_key,
        node_tls_server_name: r.node_tls_server_name,
    };
    let tls = crate::tls_config::listener(&raw_tls)?;
    let (node_tls, node_tls_client) = crate::tls_config::links(&raw_tls)?.unzip();
    let node_link = LinkSpec::with_auth(node_credentials(r.node_user, r.node_password)?)
        .with_tls(node_tls_client);

    let vnodes = raw.ring.vnodes.unwrap_or(DEFAULT_VNODES);
    if vnodes == 0 {
        return Err(ConfigError::invalid("ring.vnodes", "must be at least 1"));
    }
    let read_from = parse_read_from("ring.read_from", raw.ring.read_from.as_deref())?;
    let max_replica_lag = match raw.ring.max_replica_lag {
        None => None,
        Some(RawLag::Millis(ms)) => Some(Duration::from_millis(ms)),
        Some(RawLag::Text(t)) => Some(parse_duration(&t).ok_or_else(|| {
            ConfigError::invalid(
                "ring.max_replica_lag",
                format!("'{t}' is not a duration (e.g. 500, \"500ms\", \"2s\")"),
            )
        })?),
    };

    if raw.shard.is_empty() {
        return Err(ConfigError::invalid(
            "shard",
            "no [[shard]] tables: the ring needs at least one shard",
        ));
    }
    let shards = validate_shards("shard", raw.shard)?;
    let (pools, routes, listeners) = crate::pools_config::validate(
        raw.pool,
        raw.route,
        raw.listener,
        &shards,
        vnodes,
        read_from,
    )?;

    let mut l4 = Vec::with_capacity(raw.l4.len());
    for (i, t) in raw.l4.into_iter().enumerate() {
        let listen = t
            .listen
            .ok_or_else(|| ConfigError::invalid(format!("l4[{i}].listen"), "missing"))?;
        check_addr(&format!("l4[{i}].listen"), &listen)?;
        let pool = match t.pool {
            None => return Err(ConfigError::invalid(format!("l4[{i}].pool"), "missing")),
            Some(RawPool::Name(n)) => {
                // "replicas:a" (or "a.replicas"): shard a's replicas, followed through failovers.
                let shard = n
                    .strip_prefix("replicas:")
                    .or_else(|| n.strip_suffix(".replicas"))
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            format!("l4[{i}].pool"),
                            format!("'{n}' is neither \"replicas:<shard>\" nor a list of \"host:port[@weight]\""),
                        )
                    })?;
                // "replicas:<pool>/<shard>" names the pool too (shard ids are unique across pools).
                let shard = match shard.split_once('/') {
                    None => shard,
                    Some((pool, id)) => {
                        let members = if pool == crate::pools_config::DEFAULT_POOL {
                            Some(&shards)
                        } else {
                            pools.iter().find(|p| p.name == pool).map(|p| &p.shards)
                        };
                        if !members.is_some_and(|m| m.iter().any(|s| s.id == id)) {
                            return Err(ConfigError::invalid(
                                format!("l4[{i}].pool"),
                                format!("'{n}': pool '{pool}' has no shard '{id}'"),
                            ));
                        }
                        id
                    }
                };
                L4Pool::Replicas(shard.to_string())
            }
            Some(RawPool::Addrs(addrs)) if addrs.is_empty() => {
                return Err(ConfigError::invalid(format!("l4[{i}].pool"), "is empty"))
            }
            Some(RawPool::Addrs(addrs)) => {
                let mut members = Vec::with_capacity(addrs.len());
                for (j, a) in addrs.iter().enumerate() {
                    let m: crate::l4::pool::Member = a.parse().map_err(|e: String| {
                        ConfigError::invalid(format!("l4[{i}].pool[{j}]"), e)
                    })?;
                    check_addr(&format!("l4[{i}].pool[{j}]"), &m.addr)?;
                    members.push(m);
                }
                L4Pool::Addrs(members)
            }
        };
        let balance = match t.balance.as_deref() {
            None => crate::l4::pool::Policy::default(),
            Some(b) => b
                .parse()
                .map_err(|e: String| ConfigError::invalid(format!("l4[{i}].balance"), e))?,
        };
        l4.push(L4Config {
            listen,
            pool,
            balance,
        });
    }

    // The node caps one MIGRATE-ARC call at 10,000 keys.
    let migration_batch = match raw.ring.migration_batch {
        None => DEFAULT_MIGRATION_BATCH,
        Some(n) if (1..=10_000).contains(&n) => n as usize,
        Some(n) => {
            return Err(ConfigError::invalid(
                "ring.migration_batch",
                format!("{n} is out of range (1 to 10000)"),
            ))
        }
    };
    let migration_pause = match raw.ring.migration_pause_ms {
        Some(ms) if ms > 60_000 => {
            return Err(ConfigError::invalid(
                "ring.migration_pause_ms",
                "more than a minute between batches",
            ))
        }
        ms => Duration::from_millis(ms.unwrap_or(0)),
    };
    let migration_rate = raw.ring.migration_rate.unwrap_or(0);
    let config = RouterConfig {
        listen,
        metrics: r.metrics,
        connect_timeout,
        request_timeout,
        upstream_connections,
        max_clients,
        io_threads,
        l4_threads,
        max_dedicated_connections,
        requirepass,
        node_link,
        aclfile: r.aclfile.map(std::path::PathBuf::from),
        auth_failure_limit: r
            .auth_failure_limit
            .unwrap_or(ringcache_protocol::acl::limit::DEFAULT_BURST),
        limits: Limits::default(),
        ring: RingConfig {
            vnodes,
            read_from,
            max_replica_lag,
            migration_batch,
            migration_pause,
            migration_rate,
        },
        shards,
        pools,
        routes,
        listeners,
        l4,
        tls,
        node_tls,
    };
    // Build the ring once here so a config that cannot make one (too many points) fails to load.
    Ring::new(1, config.ring.vnodes, config.shard_specs())
        .map_err(|e| ConfigError::invalid("ring", e.to_string()))?;
    Ok(config)
}

/// Checks the `[[shard]]` entries of one table (`table`: the field name errors give); sorted by
/// id, as the ring orders shards.
pub(crate) fn validate_shards(
    table: &str,
    raw: Vec<RawShard>,
) -> Result<Vec<ShardConfig>, ConfigError> {
    let mut shards = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("{table}[{i}].{name}");
        let id =
            s.id.ok_or_else(|| ConfigError::invalid(field("id"), "missing"))?;
        check_id(&field("id"), &id)?;
        let primary = s
            .primary
            .ok_or_else(|| ConfigError::invalid(field("primary"), "missing"))?;
        check_addr(&field("primary"), &primary)?;
        for (j, replica) in s.replicas.iter().enumerate() {
            check_addr(&format!("{table}[{i}].replicas[{j}]"), replica)?;
        }
        let weight = s.weight.unwrap_or(1);
        if weight == 0 {
            return Err(ConfigError::invalid(
                field("weight"),
                "must be at least 1 (remove the shard to give it no keys)",
            ));
        }
        if let Some(other) = shards.iter().position(|o: &ShardConfig| o.id == id) {
            return Err(ConfigError::invalid(
                field("id"),
                format!("'{id}' is already the id of {table}[{other}]"),
            ));
        }
        if let Some(other) = shards
            .iter()
            .position(|o: &ShardConfig| o.primary == primary)
        {
            return Err(ConfigError::invalid(
                field("primary"),
                format!("{primary} is already the primary of {table}[{other}]"),
            ));
        }
        shards.push(ShardConfig {
            id,
            primary,
            replicas: s.replicas,
            weight,
        });
    }
    shards.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(shards)
}

/// `read_from` (of `[ring]` or a pool) as written.
pub(crate) fn parse_read_from(field: &str, v: Option<&str>) -> Result<ReadFrom, ConfigError> {
    Ok(match v {
        None | Some("primary") => ReadFrom::Primary,
        Some("replica-least-connections" | "replica" | "replicas" | "prefer-replica") => {
            ReadFrom::ReplicaLeastConnections
        }
        Some("replica-round-robin") => ReadFrom::ReplicaRoundRobin,
        Some(other) => {
            return Err(ConfigError::invalid(
                field,
                format!(
                "'{other}' is not one of primary, replica-least-connections, replica-round-robin"
            ),
            ))
        }
    })
}

fn positive_ms(field: &str, v: Option<u64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(0) => Err(ConfigError::invalid(field, "must be at least 1")),
        Some(ms) if ms > 24 * 3600 * 1000 => Err(ConfigError::invalid(field, "more than a day")),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

/// `HOST:PORT` with a non-empty host (a name, an IPv4 address or a bracketed IPv6 address).
pub(crate) fn check_addr(field: &str, addr: &str) -> Result<(), ConfigError> {
    let bad = || {
        ConfigError::invalid(
            field,
            format!("'{addr}' is not HOST:PORT (e.g. \"127.0.0.1:7001\")"),
        )
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad());
    }
    Ok(())
}

/// Ids appear in errors, metrics labels and RING replies: printable ASCII without quotes,
/// backslashes or spaces keeps all of them unambiguous.
pub(crate) fn check_id(field: &str, id: &str) -> Result<(), ConfigError> {
    if id.is_empty() {
        return Err(ConfigError::invalid(field, "is empty"));
    }
    if id.len() > 64 {
        return Err(ConfigError::invalid(field, "is longer than 64 characters"));
    }
    if let Some(c) = id
        .chars()
        .find(|&c| !c.is_ascii_graphic() || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(ConfigError::invalid(
            field,
            format!("'{id}' holds {c:?}; use letters, digits and -_.:"),
        ));
    }
    Ok(())
}

/// `"250ms"`, `"2s"`, or a bare number of milliseconds.
fn parse_duration(t: &str) -> Option<Duration> {
    let t = t.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return ms.trim().parse().ok().map(Duration::from_millis);
    }
    if let Some(s) = t.strip_suffix('s') {
        return s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
    }
    t.parse().ok().map(Duration::from_millis)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [router]
        listen = "127.0.0.1:0"
        [[shard]]
        id = "b"
        primary = "127.0.0.1:7002"
        [[shard]]
        id = "a"
        primary = "127.0.0.1:7001"
    "#;

    #[test]
    fn defaults_and_shard_order() {
        let c = parse_config(MINIMAL).unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.metrics, None);
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(c.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(c.upstream_connections, 2);
        assert_eq!(c.ring.vnodes, DEFAULT_VNODES);
        assert_eq!(c.ring.read_from, ReadFrom::Primary);
        let ids: Vec<&str> = c.shards.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(c.shards[0].weight, 1);
    }

    #[test]
    fn full_file_with_later_sections() {
        let c = parse_config(
            r#"
            [router]
            listen = "0.0.0.0:7000"
            metrics = "127.0.0.1:9121"
            connect_timeout_ms = 300
            request_timeout_ms = 5000
            upstream_connections = 4
            io_threads = 1
            l4_threads = 3
            requirepass = "pw"
            [ring]
            vnodes = 64
            read_from = "replica"
            max_replica_lag = "500ms"
            migration_rate = 50000
            [[shard]]
            id = "a"
            primary = "node-a:7001"
            replicas = ["node-a2:7001", "[::1]:7004"]
            weight = 2
            [[l4]]
            listen = "127.0.0.1:7100"
            pool = "replicas:a"
            balance = "round-robin"
            [[l4]]
            listen = "127.0.0.1:7101"
            pool = ["127.0.0.1:7001", "127.0.0.1:7002@3"]
            "#,
        )
        .unwrap();
        assert_eq!(c.metrics.as_deref(), Some("127.0.0.1:9121"));
        assert_eq!(c.connect_timeout, Duration::from_millis(300));
        assert_eq!(c.upstream_connections, 4);
        assert_eq!(c.io_threads, 1);
        assert_eq!(c.l4_threads, 3);
        assert_eq!(c.requirepass.as_deref(), Some("pw"));
        assert_eq!(c.ring.vnodes, 64);
        assert_eq!(c.ring.read_from, ReadFrom::ReplicaLeastConnections);
        assert_eq!(c.ring.max_replica_lag, Some(Duration::from_millis(500)));
        assert_eq!(c.ring.migration_rate, 50_000);
        assert_eq!(c.shards[0].replicas.len(), 2);
        assert_eq!(c.shards[0].weight, 2);
        assert_eq!(c.l4.len(), 2);
        assert_eq!(c.l4[0].balance, crate::l4::pool::Policy::RoundRobin);
        assert_eq!(c.l4[0].pool, L4Pool::Replicas("a".into()));
        assert_eq!(c.l4[1].balance, crate::l4::pool::Policy::LeastConnections);
        let L4Pool::Addrs(members) = &c.l4[1].pool else {
            panic!("address pool expected");
        };
        assert_eq!(members[1].weight, 3);
    }

    fn err(text: &str) -> String {
        parse_config(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = err("[router]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n");
        assert!(e.contains("unknown field `lisen`"), "{e}");
        let e = err("[[shard]]\nid = \"a\"\nprimary = \"h:1\"\nwieght = 1\n");
        assert!(e.contains("unknown field `wieght`"), "{e}");
        let e = err("[rings]\n");
        assert!(e.contains("unknown field `rings`"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let shard = "[[shard]]\nid = \"a\"\nprimary = \"127.0.0.1:7001\"\n";
        let cases = [
            (
                format!("[router]\nlisten = \"nope\"\n{shard}"),
                "router.listen:",
            ),
            (
                format!("[router]\nmetrics = \"1.2.3.4:99999\"\n{shard}"),
                "router.metrics:",
            ),
            (
                format!("[router]\nupstream_connections = 0\n{shard}"),
                "router.upstream_connections:",
            ),
            (
                format!("[router]\nrequest_timeout_ms = 0\n{shard}"),
                "router.request_timeout_ms:",
            ),
            (format!("[ring]\nvnodes = 0\n{shard}"), "ring.vnodes:"),
            (
                format!("[router]\nio_threads = 1000\n{shard}"),
                "router.io_threads:",
            ),
            (
                format!("[router]\nl4_threads = 65\n{shard}"),
                "router.l4_threads:",
            ),
            (
                format!("[ring]\nread_from = \"nearest\"\n{shard}"),
                "ring.read_from:",
            ),
            (
                "[[shard]]\nprimary = \"h:1\"\n".to_string(),
                "shard[0].id: missing",
            ),
            (
                "[[shard]]\nid = \"a\"\n".to_string(),
                "shard[0].primary: missing",
            ),
            (
                format!("{shard}weight = 0\n"),
                "shard[0].weight: must be at least 1",
            ),
            (
                format!("{shard}[[shard]]\nid = \"a\"\nprimary = \"h:2\"\n"),
                "shard[1].id: 'a' is already the id of shard[0]",
            ),
            (
                format!("{shard}[[shard]]\nid = \"b\"\nprimary = \"127.0.0.1:7001\"\n"),
                "shard[1].primary:",
            ),
            (
                "[[shard]]\nid = \"a b\"\nprimary = \"h:1\"\n".to_string(),
                "shard[0].id:",
            ),
            (
                format!("{shard}replicas = [\"x\"]\n"),
                "shard[0].replicas[0]:",
            ),
            (
                format!("{shard}[[l4]]\nlisten = \"h:1\"\npool = \"replicas:a\"\nbalance = \"fastest\"\n"),
                "l4[0].balance:",
            ),
            (String::new(), "no [[shard]] tables"),
            (
                format!("[ring]\nvnodes = 100000000\n{shard}"),
                "ring: the ring would hold",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn with_shards_builds_a_valid_config() {
        let c = RouterConfig::with_shards("127.0.0.1:0", &[("x", "127.0.0.1:1")]).unwrap();
        assert_eq!(c.shards.len(), 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("10"), Some(Duration::from_millis(10)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn node_credentials_from_the_file_and_the_environment() {
        let shard = "[[shard]]\nid = \"a\"\nprimary = \"h:1\"\n";
        let creds = |user: Option<&str>, pw: &str| {
            Some(Credentials {
                user: user.map(String::from),
                password: pw.to_string(),
            })
        };
        let c = parse_config(&format!(
            "[router]\nnode_user = \"svc\"\nnode_password = \"p1\"\n{shard}"
        ))
        .unwrap();
        assert_eq!(c.node_link.auth, creds(Some("svc"), "p1"));
        // A user without a password is refused, naming the field.
        let e = parse_config(&format!("[router]\nnode_user = \"svc\"\n{shard}")).unwrap_err();
        assert!(e.to_string().starts_with("router.node_password:"), "{e}");
        // ... unless the environment gives the password.
        let env = |want: &'static str, v: &'static str| {
            move |name: &str| (name == want).then(|| v.to_string())
        };
        let text = format!("[router]\nnode_user = \"svc\"\n{shard}");
        let c = parse_config_with_env(&text, env("RINGCACHE_NODE_PASSWORD", "p2")).unwrap();
        assert_eq!(c.node_link.auth, creds(Some("svc"), "p2"));
        assert_eq!(c.requirepass, None);
        // The one cluster secret: the clients' password and the cluster user's.
        let c = parse_config_with_env(shard, env(ENV_PASSWORD, "s")).unwrap();
        assert_eq!(c.requirepass.as_deref(), Some("s"));
        assert_eq!(c.node_link.auth, creds(Some(CLUSTER_USER), "s"));
        // Credentials never reach a log line.
        let shown = format!("{:?}", c.node_link);
        assert!(
            shown.contains("<redacted>") && !shown.contains("\"s\""),
            "{shown}"
        );
    }
}
