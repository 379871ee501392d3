//! The node's shared state: what every connection, command and engine of a node reads and
//! changes. It sits below the engines (`crate::replication`, `crate::topology`), the commands
//! (`crate::cmd`) and the accept loop (`crate::server`), and names none of them.
//!
//! [`Shared`] holds the keyspace, the configuration, the client registry, the counters and the
//! replication and topology state; [`session::Session`] is one connection's state.

pub mod replication;
pub mod session;
pub mod topology;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;

use crate::clients::Clients;
use crate::config::NodeConfig;
use crate::store::{now_ms, Store};
use replication::Replication;
use session::Session;
use topology::NodeTopology;

/// Runs one command that came from no client (a replica applying its primary's stream): the
/// command layer's dispatch, handed to [`Shared::new`] by the layer that builds the node, since
/// this state and the engines sit below the commands and do not name them.
pub type Apply = fn(&Shared, &mut Session, &[Bytes]);

/// Server-wide counters for INFO stats.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub commands: AtomicU64,
    pub net_input: AtomicU64,
    pub net_output: AtomicU64,
}

/// State shared by every connection of a node.
pub struct Shared {
    pub store: Store,
    pub config: RwLock<NodeConfig>,
    pub clients: Clients,
    pub stats: ServerStats,
    pub started: Instant,
    pub started_unix: i64,
    pub run_id: String,
    pub port: u16,
    pub repl: Replication,
    pub topology: NodeTopology,
    /// How this node runs a command no client sent (see [`Apply`]).
    pub apply: Apply,
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
            store: Store::new(config.maxmemory),
            repl: Replication::new(&run_id),
            topology: NodeTopology::new(config.shard_id.clone()),
            apply,
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

    pub fn config_mut(&self) -> std::sync::RwLockWriteGuard<'_, NodeConfig> {
        self.config.write().unwrap_or_else(|e| e.into_inner())
    }
}
