//! ringcache's cache node: a Redis-compatible server whose keyspace is a moka cache bounded by
//! bytes, with per-key deadlines, Redis 7's replies, replication and cluster topology.
//!
//! Layout: [`server`] accepts connections and runs requests through [`cmd::dispatch`]; commands
//! live in [`cmd`] by family and act on the [`store::Store`].

pub mod clients;
pub mod cmd;
pub mod config;
pub mod replication;
pub mod server;
pub mod store;
pub mod topology;

pub use config::NodeConfig;
pub use server::{bind, run};
