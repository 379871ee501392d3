//! ringcache's cache node: a Redis-compatible server whose keyspace is a moka cache bounded by
//! bytes, with per-key deadlines, Redis 7's replies, replication and cluster topology.
//!
//! Layout: [`server`] accepts connections and runs requests through [`cmd::dispatch`]; commands
//! live in [`cmd`] by family and act on the [`store::Store`]. Layers, bottom to top (a file
//! names files of its own layer or below, never above):
//! - [`store`] (the keyspace), [`config`], [`clients`] (the client registry);
//! - [`state`]: the node's shared state ([`state::Shared`]: replication and topology state
//!   included) and a connection's ([`state::session::Session`]);
//! - the engines: [`replication`] (follow a primary, stream to replicas, propagate writes) and
//!   [`topology`] (the ownership check, key moves);
//! - [`cmd`]: the dispatch and the commands, a file per family, calling into the engines;
//! - [`server`]: the accept loop, the connection loop and the IO threads.

pub mod clients;
pub mod cmd;
pub mod config;
pub mod replication;
pub mod server;
pub mod state;
pub mod store;
pub mod topology;

pub use config::NodeConfig;
pub use server::{bind, run};
