//! The node's shared state: what every connection, command and engine of a node reads and
//! changes. It sits below the engines (`crate::replication`, `crate::topology`), the commands
//! (`crate::cmd`) and the accept loop (`crate::server`), and names none of them.
//!
//! [`Shared`] holds the keyspace, the configuration, the client registry, the counters and the
//! replication and topology state, the pub/sub subscriptions; [`session::Session`] is one connection's state.

pub mod blocking;
pub mod latency;
pub mod monitor;
pub use ringcache_protocol::pause;
pub mod pubsub;
pub mod replication;
pub mod script;
pub mod session;
pub mod slowlog;
pub mod topology;
pub mod watch;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use ringcache_protocol::table;

use crate::clients::Clients;
use crate::config::NodeConfig;
use crate::keyspace::{now_ms, Keyspace};
use blocking::Blocked;
use replication::Replication;
use session::Session;
use topology::NodeTopology;
use watch::Watches;

/// Runs one command that came from no client (a replica applying its primary's stream): the
/// command layer's dispatch, handed to [`Shared::new`] by the layer that builds the node, since
/// this state and the engines sit below the commands and do not name them.
pub type Apply = fn(&Shared, &mut Session, &[Bytes]);

/// Server-wide counters for INFO stats.
#[derive(Debug)]
pub struct ServerStats {
    pub commands: AtomicU64,
    pub net_input: AtomicU64,
    pub net_output: AtomicU64,
    /// Error replies, by their first word (INFO errorstats), and in all.
    pub errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    pub error_replies: AtomicU64,
    /// Per command (by `table::position`): calls, calls refused before running, calls that failed.
    calls: Box<[AtomicU64]>,
    /// Microseconds spent running each command.
    usec: Box<[AtomicU64]>,
    rejected: Box<[AtomicU64]>,
    failed: Box<[AtomicU64]>,
    /// Each command's run-time distribution (INFO latencystats, LATENCY HISTOGRAM).
    pub latency: latency::LatencyStats,
}

impl Default for ServerStats {
    fn default() -> Self {
        let counters = || (0..table::count()).map(|_| AtomicU64::new(0)).collect();
        ServerStats {
            commands: AtomicU64::new(0),
            net_input: AtomicU64::new(0),
            net_output: AtomicU64::new(0),
            errors: Default::default(),
            error_replies: AtomicU64::new(0),
            calls: counters(),
            usec: counters(),
            rejected: counters(),
            failed: counters(),
            latency: latency::LatencyStats::default(),
        }
    }
}

impl ServerStats {
    /// CONFIG RESETSTAT.
    pub fn reset(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        for c in [
            &self.commands,
            &self.net_input,
            &self.net_output,
            &self.error_replies,
        ]
        .into_iter()
        .chain(self.calls.iter())
        .chain(self.usec.iter())
        .chain(self.rejected.iter())
        .chain(self.failed.iter())
        {
            c.store(0, Relaxed);
        }
        crate::keyspace::lock(&self.errors).clear();
        self.latency.reset();
    }

    /// Counts one call of `spec` that ran for `micros`, failed or not.
    pub fn ran(&self, spec: &table::CommandSpec, failed: bool, micros: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let i = table::position(spec);
        let bump = |v: &[AtomicU64], n: u64| {
            if let Some(c) = v.get(i) {
                c.fetch_add(n, Relaxed);
            }
        };
        bump(&self.calls, 1);
        bump(&self.usec, micros);
        self.latency.record(i, micros);
        if failed {
            bump(&self.failed, 1);
        }
    }

    /// Counts one call of `spec` refused before it ran.
    pub fn rejected(&self, spec: &table::CommandSpec) {
        if let Some(c) = self.rejected.get(table::position(spec)) {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// A call already counted failed after all (a blocked command answered with an error).
    pub fn failed_later(&self, spec: &table::CommandSpec) {
        if let Some(c) = self.failed.get(table::position(spec)) {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// INFO commandstats lines.
    pub fn commandstats(&self, out: &mut String) {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering::Relaxed;
        for (i, spec) in table::all().enumerate() {
            let get = |v: &[AtomicU64]| v.get(i).map_or(0, |c| c.load(Relaxed));
            let (calls, rejected, failed) =
                (get(&self.calls), get(&self.rejected), get(&self.failed));
            if calls + rejected == 0 {
                continue;
            }
            let usec = get(&self.usec);
            let per_call = if calls > 0 {
                usec as f64 / calls as f64
            } else {
                0.0
            };
            let _ = write!(
                out,
                "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls={rejected},failed_calls={failed}\r\n",
                spec.name
            );
        }
    }

    /// Counts an error reply under its code (`ERR`, `WRONGTYPE`, ...).
    pub fn error(&self, text: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        self.error_replies.fetch_add(1, Relaxed);
        let code = text.split(' ').next().unwrap_or("ERR");
        let mut m = crate::keyspace::lock(&self.errors);
        // Bounded: Redis stops adding codes past 128 too.
        if m.len() < 128 || m.contains_key(code) {
            *m.entry(code.to_string()).or_default() += 1;
        }
    }
}

/// State shared by every connection of a node.
pub struct Shared {
    pub keyspace: Keyspace,
    /// Clients WATCHing keys.
    pub watches: Watches,
    /// Clients blocked on keys.
    pub blocked: Blocked,
    /// Pub/sub subscriptions and keyspace-notification settings.
    pub pubsub: pubsub::PubSub,
    pub config: RwLock<NodeConfig>,
    pub clients: Clients,
    /// ACL users, the ACL log and the failed-AUTH limit.
    pub acl: ringcache_protocol::acl::Acl,
    pub stats: ServerStats,
    /// Commands slower than `slowlog-log-slower-than` (SLOWLOG).
    pub slowlog: slowlog::SlowLog,
    /// Connections in MONITOR mode.
    pub monitors: monitor::Monitors,
    /// CLIENT PAUSE.
    pub pause: pause::Pause,
    pub started: Instant,
    pub started_unix: i64,
    pub run_id: String,
    pub port: u16,
    pub repl: Replication,
    pub topology: NodeTopology,
    /// How this node runs a command no client sent (see [`Apply`]).
    pub apply: Apply,
    /// The script thread's queue and the running script.
    pub scripts: script::ScriptState,
    /// Lets code holding `&Shared` start tasks that need an `Arc` of it.
    me: std::sync::Weak<Shared>,
}

impl Shared {
    pub fn new(config: NodeConfig, port: u16, apply: Apply) -> Arc<Shared> {
        use rand::Rng;
        let run_id: String = {
            let mut rng = rand::thread_rng();
            (0..40)
                .map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)]))
                .collect()
        };
        Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            keyspace: {
                let ks = Keyspace::new();
                let mut ev = ks.eviction();
                ev.maxmemory = config.maxmemory;
                ks.set_eviction(ev);
                ks
            },
            watches: Watches::default(),
            blocked: Blocked::default(),
            pubsub: pubsub::PubSub::default(),
            slowlog: slowlog::SlowLog::default(),
            monitors: monitor::Monitors::default(),
            pause: pause::Pause::default(),
            repl: Replication::new(&run_id),
            topology: NodeTopology::new(config.shard_id.clone()),
            apply,
            scripts: script::ScriptState::default(),
            acl: {
                let acl = ringcache_protocol::acl::Acl::new(true);
                acl.set_requirepass(config.requirepass.as_deref());
                if let Some(u) = &config.cluster_user {
                    let pass = format!(">{}", u.password);
                    // A user name with a space is refused: the node then has no cluster user.
                    let _ =
                        acl.pin_user(u.user_name(), &["reset", "on", &pass, "~*", "&*", "+@all"]);
                }
                *ringcache_protocol::clients::lock(&acl.file) = config.aclfile.clone();
                acl.limiter.burst.store(
                    config.auth_failure_limit,
                    std::sync::atomic::Ordering::Relaxed,
                );
                acl
            },
            config: RwLock::new(config),
            clients: Clients::default(),
            stats: ServerStats::default(),
            started: Instant::now(),
            started_unix: now_ms() / 1000,
            run_id,
            port,
        })
    }

    /// An owning handle to this state (it always lives in an `Arc`).
    pub fn self_arc(&self) -> Arc<Shared> {
        self.me
            .upgrade()
            .expect("Shared lives in the Arc that created it")
    }

    pub fn config(&self) -> std::sync::RwLockReadGuard<'_, NodeConfig> {
        self.config.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The percentiles INFO latencystats shows (`latency-tracking-info-percentiles`).
    pub fn latency_percentiles(&self) -> Vec<f64> {
        let c = self.config();
        let text = c
            .params
            .get("latency-tracking-info-percentiles")
            .map_or("50 99 99.9", String::as_str);
        latency::parse_percentiles(text).unwrap_or_default()
    }

    pub fn config_mut(&self) -> std::sync::RwLockWriteGuard<'_, NodeConfig> {
        self.config.write().unwrap_or_else(|e| e.into_inner())
    }
}
