//! Mirroring: a route's `mirror` copies a share of its commands to another pool, fire-and-forget.
//! The client's reply and latency come from its own pool alone: the copy goes out on the mirror
//! pool's own upstream connections, nobody waits for its reply, and at most
//! [`MAX_IN_FLIGHT`] copies are outstanding at once (a slow or stopped mirror makes the router
//! drop copies, counted, instead of holding memory or delaying anyone). A command whose keys
//! match several routes is not copied, nor is one on an arc either pool is moving (the source's
//! goes through the migration path, the mirror's would be overwritten by the mover).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ringcache_protocol::hash::key_hash;
use ringcache_protocol::table::CommandSpec;

use crate::pools::View;
use crate::route::{self, Plan};
use crate::routes::Routed;
use crate::session::Session;

/// Copies outstanding at once, all mirrors together, before copies are dropped.
pub const MAX_IN_FLIGHT: usize = 4096;

/// Counters of one route (reset when the routes are reloaded).
#[derive(Debug, Default)]
pub struct RouteStats {
    pub requests: AtomicU64,
    pub mirrored: AtomicU64,
    pub mirror_drops: AtomicU64,
    /// Copies the mirror answered with an error (or never answered).
    pub mirror_errors: AtomicU64,
}

/// Copies outstanding now (see [`MAX_IN_FLIGHT`]).
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

/// Whether `key`'s commands are in a mirror's `percent`: by a hash of its own (a key is always
/// or never mirrored), independent of where the ring puts it.
pub fn sampled(key: &[u8], percent: u8) -> bool {
    percent >= 100 || (key_hash(key).rotate_left(29) % 100) < u64::from(percent)
}

/// Counts the request against the route of its first key (`routed`) and sends the copy if the
/// route mirrors it. `plan` is the request's own plan (only commands on keys are mirrored).
#[allow(clippy::too_many_arguments)]
pub fn mirror(
    in_flight: &Arc<InFlight>,
    topo: &View,
    s: &Session,
    routed: Routed,
    spec: &'static CommandSpec,
    plan: &Plan,
    args: &[Bytes],
    raw: &Bytes,
    cmd: u16,
    start: Instant,
) {
    let Some(r) = routed.route else {
        return;
    };
    let Some(key) = spec.keys(args).next().map(|i| &args[i]) else {
        return;
    };
    let stats = &topo.routes.stats[r];
    stats.requests.fetch_add(1, Relaxed);
    let Some((pool, percent, writes_only)) = topo.routes.mirrors[r] else {
        return;
    };
    if !matches!(plan, Plan::Forward(_) | Plan::Split { .. })
        || (writes_only && !spec.is_write())
        || !sampled(key, percent)
    {
        return;
    }
    let (Some(t), Some(&base)) = (topo.pools.get(pool), topo.bases.get(pool)) else {
        return;
    };
    if t.shards.is_empty() {
        return;
    }
    let keys = || spec.keys(args).map(|i| &args[i]);
    // A command on keys of several routes is not copied: the mirror would get the others' keys.
    if keys().any(|k| topo.routes.route(k, s.pool).route != Some(r)) {
        return;
    }
    // A copy to an arc the mirror pool is moving would land at the new owner before the mover
    // brings the old value over it: dropped instead.
    if !t.migrating.is_empty() && keys().any(|k| t.migrating.is_migrating(key_hash(k))) {
        stats.mirror_drops.fetch_add(1, Relaxed);
        return;
    }
    if in_flight.0.fetch_add(1, Relaxed) >= MAX_IN_FLIGHT {
        in_flight.0.fetch_sub(1, Relaxed);
        stats.mirror_drops.fetch_add(1, Relaxed);
        return;
    }
    stats.mirrored.fetch_add(1, Relaxed);
    // Placed on the mirror pool's ring: the copy of a multi-key command splits its own way.
    let copy = route::plan(spec, args, |k| base + t.owner(k).unwrap_or(0));
    let mut slot = crate::send::send_plan(topo, s.who(), copy, args, raw.clone(), cmd, start);
    // The routes (and so this route's counters) live as long as the copy's task.
    let (routes, in_flight) = (topo.routes.clone(), in_flight.clone());
    tokio::spawn(async move {
        let reply = std::future::poll_fn(|cx| slot.poll_take(cx)).await;
        if reply.first() == Some(&b'-') {
            routes.stats[r].mirror_errors.fetch_add(1, Relaxed);
        }
        in_flight.0.fetch_sub(1, Relaxed);
    });
}
