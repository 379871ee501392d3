//! What the router-side command-family tests talk to: our router over 3 nodes or, with
//! `RINGCACHE_TEST_TARGET=redis`, one redis-server (to check the expected replies against Redis).

use std::net::SocketAddr;

use super::Cluster;
use crate::procs::{start_redis, target, Proc, Target};
use crate::raw::Raw;

pub enum RoutedTarget {
    Router(Box<Cluster>),
    Redis(Proc),
}

impl RoutedTarget {
    pub fn addr(&self) -> SocketAddr {
        match self {
            RoutedTarget::Router(c) => c.router_addr(),
            RoutedTarget::Redis(p) => p.addr,
        }
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr())
    }
}

/// Our router over 3 nodes, or one redis-server with `RINGCACHE_TEST_TARGET=redis`.
pub fn start_routed_target() -> RoutedTarget {
    match target() {
        Target::Node => RoutedTarget::Router(Box::new(Cluster::builder().shards(3).start())),
        Target::Redis => RoutedTarget::Redis(start_redis(&[])),
    }
}
