//! ringcache's cache node: a Redis-compatible server with Redis 7's data types and replies, a
//! compact keyspace sharded by ring hash bucket, eviction under `maxmemory`, replication and
//! cluster topology.
//!
//! Layout: [`server`] accepts connections and runs requests through [`cmd::execute`]; commands
//! live in [`cmd`] by family and act on the [`keyspace`] through a [`keyspace::Db`]. Layers,
//! bottom to top (a file names files of its own layer or below, never above):
//! - [`types`] (lists, hashes, sets, sorted sets), [`keyspace`] (buckets, entries, expiry,
//!   eviction, the `Db` view a command runs against), [`dump`] (values as DUMP payloads),
//!   [`config`], [`clients`] (the client registry);
//! - [`state`]: the node's shared state ([`state::Shared`]: replication and topology state,
//!   WATCHes and blocked clients included) and a connection's ([`state::session::Session`]);
//! - the engines: [`replication`] (follow a primary, stream to replicas, propagate writes) and
//!   [`topology`] (the ownership check, key moves);
//! - [`cmd`]: the dispatch and the commands, a file per family, calling into the engines, and
//!   [`script`], Lua scripting on its own thread, whose `redis.call` runs commands through
//!   [`cmd::run`] (the two call each other);
//! - [`server`]: the accept loop, the connection loop and the IO threads.

pub mod clients;
pub mod cmd;
pub mod config;
pub mod dump;
pub mod keyspace;
pub mod replication;
pub mod script;
pub mod server;
pub mod state;
pub mod tick;
pub mod topology;
pub mod types;

pub use config::NodeConfig;
pub use server::{bind, run};
