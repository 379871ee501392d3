#![allow(clippy::unwrap_used)]
//! End-to-end test harness: starts real `ringcache` nodes (or a real `redis-server`, to check the
//! expectations against Redis itself) on 127.0.0.1 port 0, and talks to them with `redis-rs` or
//! with [`Raw`], a byte-exact RESP client.
//!
//! `RINGCACHE_TEST_TARGET=redis` makes [`start_target`] start `redis-server` instead of our node;
//! `RINGCACHE_BIN` names a prebuilt `ringcache` binary (otherwise it is built once per test
//! process); `RINGCACHE_TEST_LOG=1` lets spawned processes write their logs to the test's stderr.
//!
//! Layout: [`procs`] the processes (spawning, signals, `/proc`), [`raw`] the byte-exact client,
//! [`redis_rs`] the `redis-rs` one, [`replies`] expected replies and reply accessors,
//! [`commands`] commands run through a connection (pipelines, SCAN, INFO), [`replicas`] a replica
//! compared with its primary, [`cluster`] the one cluster builder (shards, replicas, spares, a
//! router), [`http`] the metrics endpoint. Everything is re-exported here: tests `use tests::*`.

// First: its macro is used by the modules below.
#[macro_use]
pub mod eventually;

pub mod cluster;
pub mod commands;
pub mod differential;
pub mod http;
pub mod procs;
pub mod raw;
pub mod redis_rs;
pub mod replicas;
pub mod replies;
pub mod tls;

pub use ringcache_protocol::{Protocol, Reply};

pub use cluster::builder::ClusterBuilder;
pub use cluster::routed::{start_routed_target, RoutedTarget};
pub use cluster::router::{
    cluster_toml, router_toml, shard_tables, L4Listener, L4Pool, RouterProc, RouterSettings,
    RouterShard, ROUTER_LISTENING, ROUTER_METRICS, ROUTER_REQUEST_TIMEOUT,
};
pub use cluster::{shard_id, Cluster, Node, Shard, SHARD_IDS};
pub use commands::*;
pub use http::*;
pub use procs::*;
pub use raw::*;
pub use redis_rs::*;
pub use replicas::*;
pub use replies::*;
