//! Pools and the request path's view of them. Each pool is a ring of its own ([`PoolState`]: its
//! topology, epochs and membership changes); the [`View`] puts every pool's shards in one index
//! space, so the request path plans a command once, a multi-key command splitting per pool and
//! per shard as it splits per shard. A pool's topology changes only through
//! [`Router::store_topology`], which publishes a new view with a higher generation.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use ringcache_protocol::hash::key_hash;

use crate::clients::lock;
use crate::config::ReadFrom;
use crate::rebalance::{MovingArc, Rebalancer};
use crate::routes::{Routed, Routes};
use crate::shard::Shard;
use crate::split::{on_split_side, Splits};
use crate::state::Router;
use crate::topology::Topology;

/// One pool of the router: a ring of its own.
#[derive(Debug)]
pub struct PoolState {
    /// Its index in [`Router::pools`] and [`View::pools`] (0: `default`).
    pub index: usize,
    pub name: String,
    pub read_from: ReadFrom,
    /// Its ring and shards, swapped whole when its membership changes.
    pub topology: ArcSwap<Topology>,
    /// Its membership changes: RING JOIN/LEAVE/CANCEL/STATUS ... POOL, its epochs.
    pub rebalance: Rebalancer,
}

impl PoolState {
    pub fn new(index: usize, name: &str, read_from: ReadFrom, topology: Topology) -> PoolState {
        PoolState {
            index,
            name: name.to_string(),
            read_from,
            topology: ArcSwap::from_pointee(topology),
            rebalance: Rebalancer::default(),
        }
    }
}

/// What the request path plans on: every pool's topology at one instant.
#[derive(Debug)]
pub struct View {
    /// Raised by every topology change of any pool (clients publish the generation they plan
    /// on; a change waits until none is busy on an older one).
    pub generation: u64,
    pub pools: Vec<Arc<Topology>>,
    /// Index in `shards` of each pool's first shard.
    pub bases: Vec<usize>,
    /// Every pool's ring shards, pool after pool.
    pub shards: Vec<Arc<Shard>>,
    pub routes: Arc<Routes>,
    /// The routes' splits at their live percents.
    pub splits: Arc<Splits>,
    /// Some split is marked moving (the request path looks no further otherwise).
    split_marked: bool,
}

impl View {
    pub fn new(
        generation: u64,
        pools: Vec<Arc<Topology>>,
        routes: Arc<Routes>,
        splits: Arc<Splits>,
    ) -> View {
        let mut bases = Vec::with_capacity(pools.len());
        let mut shards = Vec::new();
        for t in &pools {
            bases.push(shards.len());
            shards.extend(t.shards.iter().cloned());
        }
        let split_marked = splits.by_route.iter().flatten().any(|s| s.moving.is_some());
        View {
            generation,
            pools,
            bases,
            shards,
            routes,
            splits,
            split_marked,
        }
    }

    /// Where `key` goes for a client whose default pool is `default`: its route, and its
    /// route's split.
    #[inline]
    pub fn route(&self, key: &[u8], default: usize) -> Routed {
        let mut routed = self.routes.route(key, default);
        if let Some(Some(s)) = routed.route.and_then(|r| self.splits.by_route.get(r)) {
            if on_split_side(key_hash(key), s.percent) {
                routed.pool = s.pool;
                routed.split = true;
            }
        }
        routed
    }

    /// The pool of `key` for a client whose default pool is `default`.
    #[inline]
    pub fn pool_of(&self, key: &[u8], default: usize) -> usize {
        self.route(key, default).pool
    }

    /// Index in `shards` of the shard owning `key` (`default`: the client's default pool);
    /// `None` only for an empty ring.
    #[inline]
    pub fn owner(&self, key: &[u8], default: usize) -> Option<usize> {
        self.owner_routed(key, self.route(key, default))
    }

    /// [`View::owner`] for a key already routed.
    #[inline]
    pub fn owner_routed(&self, key: &[u8], routed: Routed) -> Option<usize> {
        let topo = self.pools.get(routed.pool)?;
        Some(self.bases[routed.pool] + topo.owner(routed.stored(key))?)
    }

    /// The pool of the shard at `index` in `shards`.
    pub fn pool_of_shard(&self, index: usize) -> usize {
        self.bases
            .partition_point(|&b| b <= index)
            .saturating_sub(1)
    }

    /// Every shard holding keys clients reach: each served pool's ring, then its shards outside
    /// the ring that a migration is still emptying (fan-out commands ask them all).
    pub fn serving_shards(&self) -> impl Iterator<Item = &Arc<Shard>> {
        // Pools only mirrored to hold copies: a fan-out leaves them out.
        self.pools
            .iter()
            .enumerate()
            .filter(|(p, _)| self.routes.serves(*p))
            .flat_map(|(_, t)| t.shards.iter().chain(t.migrating.outside()))
    }

    /// Every shard of every pool, mirrors' too, with those a migration is still emptying.
    pub fn all_shards(&self) -> impl Iterator<Item = &Arc<Shard>> {
        self.pools
            .iter()
            .flat_map(|t| t.shards.iter().chain(t.migrating.outside()))
    }

    /// A serving shard by id (ids are unique across pools).
    pub fn shard_by_id(&self, id: &str) -> Option<&Arc<Shard>> {
        self.pools.iter().find_map(|t| t.shard_by_id(id))
    }

    /// The pool holding shard `id` in its ring or its migration.
    pub fn pool_of_id(&self, id: &str) -> Option<usize> {
        self.pools.iter().position(|t| t.shard_by_id(id).is_some())
    }

    /// Whether any pool, or any split, is moving arcs.
    pub fn migrating(&self) -> bool {
        self.pools.iter().any(|t| !t.migrating.is_empty())
            || (self.split_marked && self.splits.moving())
    }

    /// The moving arc holding `key` in its pool or its route's split, if it moves.
    pub fn moving(&self, key: &[u8], default: usize) -> Option<&MovingArc> {
        let routed = self.route(key, default);
        if let Some(Some(s)) = routed.route.and_then(|r| self.splits.by_route.get(r)) {
            if let Some(m) = s.moving_arc(key_hash(key)) {
                return Some(m);
            }
        }
        let t = self.pools.get(routed.pool)?;
        if t.migrating.is_empty() {
            return None;
        }
        t.migrating.find(key_hash(routed.stored(key)))
    }

    /// Whether `key`'s arc is moving (reads then go to the primaries).
    #[inline]
    pub fn is_migrating(&self, key: &[u8], default: usize) -> bool {
        self.moving(key, default).is_some()
    }
}

/// Serializes view rebuilds, so generations go up in the order topologies were stored.
#[derive(Debug, Default)]
pub struct ViewLock(Mutex<()>);

impl Router {
    /// The pool named `name`.
    pub fn pool_named(&self, name: &str) -> Option<&Arc<PoolState>> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The `default` pool.
    pub fn default_pool(&self) -> &Arc<PoolState> {
        &self.pools[0]
    }

    /// Notes that clients connecting to `addr` default to pool `pool` (a `[[listener]]`).
    pub fn note_listener(&self, addr: std::net::SocketAddr, pool: usize) {
        lock(&self.listener_pools).push((addr, pool));
    }

    /// The default pool of a client connected to local address `laddr`.
    pub fn listener_pool(&self, laddr: std::net::SocketAddr) -> usize {
        if self.config.listeners.is_empty() {
            return 0;
        }
        lock(&self.listener_pools)
            .iter()
            .find(|(a, _)| {
                a.port() == laddr.port() && (a.ip().is_unspecified() || a.ip() == laddr.ip())
            })
            .map_or(0, |&(_, p)| p)
    }

    /// The request path's current view.
    #[inline]
    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Makes `topo` pool `pool`'s topology and publishes the view with it; returns the view's
    /// generation (what a change quiesces on).
    pub fn store_topology(&self, pool: &PoolState, topo: Arc<Topology>) -> u64 {
        let _g = lock(&self.view_lock.0);
        pool.topology.store(topo);
        self.rebuild_view(None, None)
    }

    /// Makes `splits` the live splits and publishes the view with them; returns the view's
    /// generation.
    pub fn store_splits(&self, splits: Splits) -> u64 {
        let _g = lock(&self.view_lock.0);
        self.rebuild_view(None, Some(Arc::new(splits)))
    }

    /// Replaces the routes by `change` of the current ones (a mirror changed) and publishes the
    /// view with them.
    pub fn update_routes(&self, change: impl FnOnce(&Routes) -> Routes) -> u64 {
        let _g = lock(&self.view_lock.0);
        let routes = change(&self.view.load().routes);
        self.rebuild_view(Some(Arc::new(routes)), None)
    }

    /// Replaces the routes and the splits together (a route added or removed live).
    pub fn store_routes(&self, routes: Routes, splits: Splits) -> u64 {
        let _g = lock(&self.view_lock.0);
        self.rebuild_view(Some(Arc::new(routes)), Some(Arc::new(splits)))
    }

    /// Publishes a view of every pool's current topology, with `routes` and `splits` or the
    /// current ones (under `view_lock`).
    fn rebuild_view(&self, routes: Option<Arc<Routes>>, splits: Option<Arc<Splits>>) -> u64 {
        let old = self.view.load();
        let generation = old.generation + 1;
        let pools = self.pools.iter().map(|p| p.topology.load_full()).collect();
        let routes = routes.unwrap_or_else(|| old.routes.clone());
        let splits = splits.unwrap_or_else(|| old.splits.clone());
        self.view
            .store(Arc::new(View::new(generation, pools, routes, splits)));
        generation
    }
}
