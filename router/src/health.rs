//! Health checks and failover of the shards' primaries and replicas.
//!
//! Every `interval` the checker asks each primary and replica for `INFO replication` (which is
//! also the liveness probe). `fall` failures in a row mark a primary down; the checker then
//! promotes the replica with the highest replication offset (`REPLICAOF NO ONE`), points the
//! other replicas at it, publishes the shard with its new primary at the next epoch, and counts
//! the writes the old primary acknowledged that the new one never received. A node that answers
//! as a primary while the topology lists it as a replica (a former primary coming back) is told
//! to replicate from the current primary, which drops its old data.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use ringcache_client::{Client, ClientError, LinkSpec};
use ringcache_protocol::wire::reply_text;
use ringcache_protocol::Reply;
use tokio::sync::watch;

use crate::pools::PoolState;
use crate::rebalance::lease::Lease;
use crate::rebalance::sync::sync_nodes;
use crate::shard::Shard;
use crate::state::Router;

/// Probe timing, shared with the L4 health checks: with the defaults (PING every 500 ms, 3
/// failures) a dead primary is replaced in about 2 s, inside the 5 s the design promises.
pub use crate::l4::health::HealthSettings;

/// What `INFO replication` told us about a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplInfo {
    pub role_primary: bool,
    pub primary_host: Option<String>,
    pub link_up: bool,
    pub offset: u64,
    pub writes: u64,
    pub lag_ms: i64,
}

impl ReplInfo {
    pub fn parse(text: &str) -> ReplInfo {
        let mut r = ReplInfo::default();
        let mut host = None;
        let mut port = None;
        for line in text.lines() {
            let Some((k, v)) = line.trim_end().split_once(':') else {
                continue;
            };
            match k {
                "role" => r.role_primary = v == "master",
                "master_host" => host = Some(v.to_string()),
                "master_port" => port = Some(v.to_string()),
                "master_link_status" => r.link_up = v == "up",
                "slave_repl_offset" => r.offset = v.parse().unwrap_or(0),
                "master_repl_offset" if r.role_primary => r.offset = v.parse().unwrap_or(0),
                "ringcache_repl_writes" => r.writes = v.parse().unwrap_or(0),
                "ringcache_repl_lag_ms" => r.lag_ms = v.parse().unwrap_or(i64::MAX),
                _ => {}
            }
        }
        if let (Some(h), Some(p)) = (host, port) {
            r.primary_host = Some(format!("{h}:{p}"));
        }
        r
    }
}

/// Sends one command and reads its reply as text (status, error as `-ERR...`, or bulk), within
/// `timeout`.
pub async fn call(addr: &str, args: &[&str], timeout: Duration, link: &LinkSpec) -> Option<String> {
    let attempt = async {
        let mut c = match Client::open(addr, timeout, link).await {
            Ok(c) => c,
            // Alive but refusing our credentials: an answer (never a reason to fail over).
            Err(ClientError::Auth { reason, .. }) => return Some(format!("-{reason}")),
            Err(_) => return None,
        };
        let reply = c.call(args, timeout).await.ok()?;
        Some(match reply {
            Reply::Error(e) => format!("-{e}"),
            other => reply_text(&other).unwrap_or_else(|| format!("{other:?}")),
        })
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

async fn repl_info(addr: &str, timeout: Duration, link: &LinkSpec) -> Option<ReplInfo> {
    let text = call(addr, &["INFO", "replication"], timeout, link).await?;
    // A node that refuses the router's credentials is alive: not a reason to fail it over.
    let refused = ["-NOAUTH", "-WRONGPASS", "-NOPERM"];
    if text.starts_with('-') && !refused.iter().any(|p| text.starts_with(p)) {
        return None;
    }
    Some(ReplInfo::parse(&text))
}

/// Per-shard memory of the checker.
#[derive(Default)]
struct ShardState {
    fails: u32,
    /// The primary's write count at its last successful probe, and how many writes the router
    /// had seen it acknowledge by then (for lost-write accounting).
    last_primary_writes: u64,
    acked_at_probe: u64,
}

/// Checks every shard until `stop`, failing over dead primaries.
pub async fn run(router: Arc<Router>, settings: HealthSettings, mut stop: watch::Receiver<bool>) {
    let mut states: HashMap<String, ShardState> = HashMap::new();
    let mut tick = tokio::time::interval(settings.interval);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let link = &router.config.node_link;
        let shards: Vec<(Arc<PoolState>, Arc<Shard>)> = router
            .pools
            .iter()
            .flat_map(|p| {
                let topo = p.topology.load_full();
                topo.shards
                    .iter()
                    .map(|s| (p.clone(), s.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let checks = shards.into_iter().map(|(pool, shard)| async move {
            let primary = repl_info(&shard.primary, settings.timeout, link).await;
            let replicas = futures::future::join_all(
                shard
                    .replica_links
                    .iter()
                    .map(|r| repl_info(&r.addr, settings.timeout, link)),
            )
            .await;
            (pool, shard, primary, replicas)
        });
        for (pool, shard, primary, replicas) in futures::future::join_all(checks).await {
            let state = states.entry(shard.id.clone()).or_default();
            update_replicas(&router, &pool, &shard, &replicas, settings).await;
            match primary {
                Some(info) => {
                    state.fails = 0;
                    state.last_primary_writes = info.writes;
                    state.acked_at_probe = shard.metrics.acked_writes();
                }
                None => {
                    state.fails += 1;
                    let due = state.fails >= settings.fall && !shard.replica_links.is_empty();
                    // Writes it acknowledged after the last probe count too: the probe is up to
                    // one interval old when the primary dies.
                    let acked_since = shard
                        .metrics
                        .acked_writes()
                        .saturating_sub(state.acked_at_probe);
                    let primary_writes = state.last_primary_writes + acked_since;
                    if due
                        && failover(&router, &pool, &shard, &replicas, primary_writes, settings)
                            .await
                    {
                        state.fails = 0;
                    }
                }
            }
        }
    }
}

/// Marks replicas usable for reads, and re-points any that follow the wrong primary (or a former
/// primary that came back as a primary).
async fn update_replicas(
    router: &Arc<Router>,
    pool: &Arc<PoolState>,
    shard: &Shard,
    infos: &[Option<ReplInfo>],
    settings: HealthSettings,
) {
    for (link, info) in shard.replica_links.iter().zip(infos) {
        let Some(info) = info else {
            link.healthy.store(false, Relaxed);
            continue;
        };
        let follows = info.primary_host.as_deref() == Some(shard.primary.as_str());
        // A replica whose primary just died keeps serving reads while its data is still within
        // max_replica_lag (its lag grows from the last time it heard the primary).
        let in_sync = !info.role_primary && follows && (info.link_up || info.lag_ms < i64::MAX);
        link.healthy.store(in_sync, Relaxed);
        link.lag_ms
            .store(if in_sync { info.lag_ms } else { i64::MAX }, Relaxed);
        if info.role_primary || !follows {
            repoint(router, pool, &shard.id, &link.addr, settings).await;
        }
    }
}

/// Tells `replica` to replicate from its shard's primary, unless another router has just made
/// it that primary: under the change lease, after following the nodes' ring, and only if the
/// shard's primary is still another node.
async fn repoint(
    router: &Arc<Router>,
    pool: &Arc<PoolState>,
    shard: &str,
    replica: &str,
    settings: HealthSettings,
) {
    let what = format!("re-pointing a replica of {shard}");
    let Ok(lease) = Lease::take(router, pool, &what).await else {
        return;
    };
    sync_nodes(router, pool).await;
    let topo = pool.topology.load_full();
    if let Some(s) = topo.shard_by_id(shard).filter(|s| s.primary != replica) {
        let (host, port) = s.primary.rsplit_once(':').unwrap_or((&s.primary, "0"));
        tracing::info!(shard = %s.id, %replica, primary = %s.primary, "pointing replica at its primary");
        let _ = call(
            replica,
            &["REPLICAOF", host, port],
            settings.timeout,
            &router.config.node_link,
        )
        .await;
    }
    lease.release().await;
}

/// Promotes the most up-to-date reachable replica; true if the topology now has a new primary.
async fn failover(
    router: &Arc<Router>,
    pool: &Arc<PoolState>,
    shard: &Arc<Shard>,
    infos: &[Option<ReplInfo>],
    last_primary_writes: u64,
    settings: HealthSettings,
) -> bool {
    let Some((best, info)) = shard
        .replica_links
        .iter()
        .zip(infos)
        .filter_map(|(l, i)| i.as_ref().map(|i| (l, i)))
        .max_by_key(|(_, i)| i.offset)
    else {
        tracing::error!(shard = %shard.id, primary = %shard.primary, "primary down and no replica reachable; cannot fail over");
        return false;
    };
    // One router at a time: two routers' health checks never promote two replicas.
    let lease = match Lease::take(router, pool, &format!("failover of {}", shard.id)).await {
        Ok(l) => l,
        Err(e) => {
            let reason = crate::rebalance::ChangeError::from(e);
            tracing::info!(shard = %shard.id, %reason, "failover deferred");
            return false;
        }
    };
    // Another router may have failed the shard over already: follow it instead.
    sync_nodes(router, pool).await;
    let current = pool.topology.load_full();
    if current
        .shard_by_id(&shard.id)
        .is_none_or(|s| s.primary != shard.primary)
    {
        lease.release().await;
        return true;
    }
    let new_primary = best.addr.clone();
    if call(
        &new_primary,
        &["REPLICAOF", "NO", "ONE"],
        settings.timeout,
        &router.config.node_link,
    )
    .await
    .is_none_or(|r| r.starts_with('-'))
    {
        tracing::error!(shard = %shard.id, candidate = %new_primary, "promotion failed");
        return false;
    }
    let lost = last_primary_writes.saturating_sub(info.writes);
    router.failover.failovers.fetch_add(1, Relaxed);
    router.failover.lost_writes.fetch_add(lost, Relaxed);
    tracing::warn!(
        shard = %shard.id,
        old_primary = %shard.primary,
        new_primary = %new_primary,
        lost_writes = lost,
        "failover: promoted the most up-to-date replica"
    );
    // The old primary stays listed as a replica: when it returns, update_replicas demotes it.
    let mut replicas: Vec<String> = shard
        .replicas
        .iter()
        .filter(|r| **r != new_primary)
        .cloned()
        .collect();
    replicas.push(shard.primary.clone());
    let (host, port) = new_primary.rsplit_once(':').unwrap_or((&new_primary, "0"));
    for r in &replicas {
        let _ = call(
            r,
            &["REPLICAOF", host, port],
            settings.timeout,
            &router.config.node_link,
        )
        .await;
    }
    // A membership change publishes topologies too: one change at a time, or one overwrites
    // the other.
    let _change = pool.rebalance.change_lock.lock().await;
    let topo = pool.topology.load_full();
    let Some(index) = topo.shards.iter().position(|s| s.id == shard.id) else {
        return false;
    };
    let next =
        Arc::new(router.start_shard(&pool.name, &shard.id, &new_primary, &replicas, shard.weight));
    let published = match topo.with_shard_replaced(index, next) {
        Ok(t) => {
            router.store_topology(pool, Arc::new(t));
            // The nodes learn the new epoch (and the new primary its shard id) before the lease
            // is given back, so no other router promotes another replica meanwhile.
            sync_nodes(router, pool).await;
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot publish the failover");
            false
        }
    };
    lease.release().await;
    published
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_replication() {
        let r = ReplInfo::parse("# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7001\r\nmaster_link_status:up\r\nslave_repl_offset:42\r\nringcache_repl_writes:7\r\nringcache_repl_lag_ms:12\r\n");
        assert!(!r.role_primary);
        assert_eq!(r.primary_host.as_deref(), Some("127.0.0.1:7001"));
        assert!(r.link_up);
        assert_eq!((r.offset, r.writes, r.lag_ms), (42, 7, 12));
        let p =
            ReplInfo::parse("role:master\r\nmaster_repl_offset:9\r\nringcache_repl_writes:3\r\n");
        assert!(p.role_primary);
        assert_eq!((p.offset, p.writes), (9, 3));
    }
}
