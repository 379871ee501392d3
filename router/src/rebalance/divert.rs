//! The request path while arcs move: a command touching a key of a moving arc (and any request
//! of a client while such a one is outstanding) goes on the client's chain, which first moves
//! the keys (`MIGRATE-KEYS` to their sources), then sends the commands in order; a
//! `-WRONGSHARD` is retried once after catching up, else answered `-TRYAGAIN`. A fast-path
//! request a node fenced off (another router changed the ring) is retried the same way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_protocol::ring::Epoch;
use ringcache_protocol::table::CommandSpec;
use tokio::sync::{mpsc, oneshot};

use crate::clients::Who;
use crate::merge::{error_bytes, Slot};
use crate::pools::{PoolState, View};
use crate::rebalance::chain::{Chain, Job};
use crate::rebalance::publish::{migrate_keys_index, migrate_keys_request};
use crate::rebalance::sync::sync_nodes;
use crate::route::{self, Plan};
use crate::send;
use crate::session::Session;
use crate::state::Router;
use crate::upstream::UpRequest;

/// How long the migration path waits for this router's ring to reach a node's newer epoch: the
/// epoch sync, woken, follows another router's ring within a round trip to every node.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// Runs again a request a node refused with `-WRONGSHARD` on the fast path (`raw`: the request
/// as the client sent it), once this router follows the node's newer ring.
pub fn retry_fenced(router: &Router, who: Who, raw: Bytes) -> Slot {
    let start = Instant::now();
    let Some(me) = router.me() else {
        return Slot::error("ERR the router is shutting down");
    };
    let mut buf = bytes::BytesMut::from(&raw[..]);
    let mut args = Vec::new();
    let mut decoder = ringcache_protocol::RequestDecoder::new(me.config.limits, true);
    let spec = match decoder.decode_into(&mut buf, &mut args) {
        Ok(Some(_)) => args
            .first()
            .and_then(|n| ringcache_protocol::table::lookup(n)),
        _ => None,
    };
    // It was decoded and planned once already: only a bug makes this fail.
    let Some(spec) = spec else {
        return Slot::error("ERR cannot retry a request refused by a node");
    };
    // The first key's pool (run_job then catches up on the pool of the node that refused).
    let pool = spec
        .keys(&args)
        .next()
        .map_or(who.pool, |i| me.view().pool_of(&args[i], who.pool));
    if let Some(p) = me.pools.get(pool) {
        p.rebalance
            .counters
            .wrongshard_retries
            .fetch_add(1, Ordering::Relaxed);
        p.rebalance.sync_soon();
    }
    let (tx, rx) = oneshot::channel();
    let (reply, _) = oneshot::channel();
    let job = Job {
        args,
        raw,
        spec,
        cmd: crate::shard_metrics::command_index(Some(spec)),
        start,
        who,
        reply,
    };
    tokio::spawn(async move {
        let bytes = run_job(&me, &job).await;
        let _ = tx.send(Ok(bytes));
    });
    Slot::Forward(rx)
}

/// The request path's hook: returns the slot if this request goes through the client's chain
/// (it touches a moving arc, or the chain is busy), `None` for the usual fast path.
#[allow(clippy::too_many_arguments)]
pub fn divert(
    router: &Router,
    topo: &View,
    s: &mut Session,
    spec: &'static CommandSpec,
    plan: &Plan,
    args: &[Bytes],
    raw: &Bytes,
    cmd: u16,
    start: Instant,
) -> Option<Slot> {
    if !matches!(
        plan,
        Plan::Forward(_) | Plan::Split { .. } | Plan::FanOut(_) | Plan::Scan
    ) {
        return None;
    }
    let busy = s.chain.as_ref().is_some_and(Chain::busy);
    if !busy {
        if !topo.migrating() {
            return None;
        }
        let moving = matches!(plan, Plan::Forward(_) | Plan::Split { .. })
            && spec.keys(args).any(|i| topo.is_migrating(&args[i], s.pool));
        if !moving {
            return None;
        }
    }
    let Some(me) = router.me() else {
        return Some(Slot::error("ERR the router is shutting down"));
    };
    let who = s.who();
    let chain = s.chain.get_or_insert_with(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(chain_task(me, rx, pending.clone()));
        Chain { tx, pending }
    });
    let (tx, rx) = oneshot::channel();
    chain.pending.fetch_add(1, Ordering::AcqRel);
    let job = Job {
        args: args.to_vec(),
        raw: raw.clone(),
        spec,
        cmd,
        start,
        who,
        reply: tx,
    };
    if let Err(mpsc::error::SendError(job)) = chain.tx.send(job) {
        chain.pending.fetch_sub(1, Ordering::AcqRel);
        let _ = job
            .reply
            .send(Ok(error_bytes("ERR the router is shutting down")));
    }
    Some(Slot::Forward(rx))
}

/// Most requests a chain runs as one batch (a client's pipeline is usually shorter).
const CHAIN_BATCH: usize = 256;

async fn chain_task(
    router: Arc<Router>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    pending: Arc<AtomicUsize>,
) {
    let mut batch = Vec::new();
    while let Some(job) = rx.recv().await {
        batch.push(job);
        while batch.len() < CHAIN_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let replies = run_batch(&router, &batch).await;
        for (job, reply) in batch.drain(..).zip(replies) {
            let _ = job.reply.send(Ok(reply));
            pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Runs the requests a client queued on its chain as one pipeline: first every key of theirs
/// in a moving arc is moved (one `MIGRATE-KEYS` per source and target, in parallel), then
/// all of them are sent in order, as the fast path sends a pipeline, and answered in order.
/// One at a time, each paid two round trips after the previous one's reply. A request
/// refused with `-WRONGSHARD` is run again alone ([`run_job`]); if moving the keys fails,
/// every request runs alone, so only those whose keys could not be moved fail.
async fn run_batch(router: &Arc<Router>, jobs: &[Job]) -> Vec<Bytes> {
    let topo = router.view();
    if topo.shards.is_empty() {
        return jobs
            .iter()
            .map(|_| error_bytes("ERR the ring has no shards"))
            .collect();
    }
    let plans: Vec<Plan> = jobs
        .iter()
        .map(|j| route::plan(j.spec, &j.args, |k| topo.owner(k, j.who.pool).unwrap_or(0)))
        .collect();
    // Each key once (a batch may touch one key many times), in the order first seen.
    let mut seen = std::collections::HashSet::new();
    let mut keys: Vec<&Bytes> = Vec::new();
    for (job, plan) in jobs.iter().zip(&plans) {
        if matches!(plan, Plan::Forward(_) | Plan::Split { .. }) {
            for i in job.spec.keys(&job.args) {
                if seen.insert(&job.args[i]) {
                    keys.push(&job.args[i]);
                }
            }
        }
    }
    if let Some(first) = jobs.first() {
        if migrate_keys(router, &topo, &keys, first.who, first.start)
            .await
            .is_err()
        {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(run_job(router, job).await);
            }
            return out;
        }
    }
    let mut slots: Vec<Slot> = jobs
        .iter()
        .zip(plans)
        .map(|(job, plan)| send_job(&topo, job, plan))
        .collect();
    let mut out = Vec::with_capacity(jobs.len());
    for (job, slot) in jobs.iter().zip(&mut slots) {
        let bytes = std::future::poll_fn(|cx| slot.poll_take(cx)).await;
        if wrongshard(&bytes).is_some() {
            out.push(run_job(router, job).await);
        } else {
            out.push(bytes);
        }
    }
    out
}

fn send_job(topo: &View, job: &Job, plan: Plan) -> Slot {
    send::send_plan(
        topo,
        job.who,
        plan,
        &job.args,
        job.raw.clone(),
        job.cmd,
        job.start,
    )
}

/// Runs one request: moves its keys out of moving arcs at their sources, sends it to the
/// primaries, waits for the reply; on `-WRONGSHARD` catches up and retries once.
async fn run_job(router: &Arc<Router>, job: &Job) -> Bytes {
    let mut retried = false;
    loop {
        let topo = router.view();
        if topo.shards.is_empty() {
            return error_bytes("ERR the ring has no shards");
        }
        let plan = route::plan(job.spec, &job.args, |k| {
            topo.owner(k, job.who.pool).unwrap_or(0)
        });
        if matches!(plan, Plan::Forward(_) | Plan::Split { .. }) {
            let keys: Vec<&Bytes> = job.spec.keys(&job.args).map(|i| &job.args[i]).collect();
            if let Err(e) = migrate_keys(router, &topo, &keys, job.who, job.start).await {
                return error_bytes(&e);
            }
        }
        let mut slot = send_job(&topo, job, plan);
        let bytes = std::future::poll_fn(|cx| slot.poll_take(cx)).await;
        let Some((epoch, owner)) = wrongshard(&bytes) else {
            return bytes;
        };
        // The refusing node's pool: the owner it names, else the pool of the first key (a split
        // fence names no shard).
        let pool = topo.pool_of_id(&owner).unwrap_or_else(|| {
            job.spec
                .keys(&job.args)
                .next()
                .map_or(job.who.pool, |i| topo.pool_of(&job.args[i], job.who.pool))
        });
        let (Some(pool), Some(t)) = (router.pools.get(pool), topo.pools.get(pool)) else {
            return tryagain(epoch, &owner, 0);
        };
        let mine = t.ring.epoch();
        if retried || !catch_up_refusal(router, pool, epoch, &owner, mine).await {
            return tryagain(epoch, &owner, mine);
        }
        retried = true;
    }
}

/// The pool of the shard at `index` of `view`, with that pool's epoch in `view` (what a
/// request planned there routed by).
pub(crate) fn pool_at(
    router: &Router,
    view: &View,
    index: usize,
) -> Option<(Arc<PoolState>, Epoch)> {
    let p = view.pool_of_shard(index);
    Some((
        router.pools.get(p)?.clone(),
        view.pools.get(p)?.ring.epoch(),
    ))
}

/// [`catch_up`], or the split's catch-up when a split fence refused it (`owner` is
/// `split:<version>`).
pub(crate) async fn catch_up_refusal(
    router: &Arc<Router>,
    pool: &Arc<PoolState>,
    epoch: Epoch,
    owner: &str,
    mine: Epoch,
) -> bool {
    match crate::split_change::fenced_version(owner) {
        Some(version) => crate::split_change::catch_up(router, version).await,
        None => catch_up(router, pool, epoch, mine).await,
    }
}

/// After a node refused a request with `-WRONGSHARD <epoch>` while this router routed by
/// `mine`: brings the router and the nodes to one ring, or says a retry cannot succeed.
pub(crate) async fn catch_up(
    router: &Arc<Router>,
    pool: &Arc<PoolState>,
    epoch: Epoch,
    mine: Epoch,
) -> bool {
    pool.rebalance
        .counters
        .wrongshard_retries
        .fetch_add(1, Ordering::Relaxed);
    if epoch > mine {
        // This router's own change may be publishing that epoch, or another router's: wait
        // for it briefly (the epoch sync follows another router's ring).
        pool.rebalance.sync_soon();
        // Read from the view the retry plans on: a pool's topology is stored a moment before the
        // view holding it, so a retry planned in between would still route by the old ring.
        let seen = || {
            router
                .view()
                .pools
                .get(pool.index)
                .map_or(0, |t| t.ring.epoch())
        };
        let deadline = Instant::now() + CATCH_UP_WAIT;
        while seen() < epoch && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen() >= epoch
    } else if epoch < mine {
        // The node missed a push: give every node behind the current ring, then retry.
        sync_nodes(router, pool).await;
        true
    } else {
        // Same epoch, different ring: only another router can have pushed it. Pushing ours
        // would replace it on that node; refuse instead.
        false
    }
}

/// Sends `MIGRATE-KEYS <target> key...` to each source holding some of `keys` in a moving
/// arc, in parallel, and waits for every reply.
pub(crate) async fn migrate_keys(
    router: &Router,
    topo: &View,
    keys: &[&Bytes],
    who: Who,
    start: Instant,
) -> Result<(), String> {
    let mut groups: Vec<(&str, &str, Vec<&Bytes>)> = Vec::new();
    let mut pool = 0;
    for &key in keys {
        if let Some(m) = topo.moving(key, who.pool) {
            pool = topo.pool_of(key, who.pool);
            match groups
                .iter_mut()
                .find(|(f, t, _)| *f == m.from && *t == m.to)
            {
                Some(g) => g.2.push(key),
                None => groups.push((&m.from, &m.to, vec![key])),
            }
        }
    }
    if groups.is_empty() {
        return Ok(());
    }
    let cmd = migrate_keys_index();
    let mut waits = Vec::with_capacity(groups.len());
    for (from, to, keys) in &groups {
        let (Some(src), Some(dst)) = (topo.shard_by_id(from), topo.shard_by_id(to)) else {
            return Err(format!(
                "TRYAGAIN shard '{from}' or '{to}' of a moving arc is gone"
            ));
        };
        // On the side lanes: the source answers only after its own round trip to the target,
        // and the clients sharing a regular connection with this request must not wait on it.
        let (req, rx) = UpRequest::new(migrate_keys_request(&dst.primary, keys), cmd, start);
        src.pool.send_slow(who.io, who.id, req);
        waits.push((src.id.clone(), dst.id.clone(), rx));
    }
    let Some(p) = router.pools.get(pool) else {
        return Err("ERR no such pool".into());
    };
    let rb = &p.rebalance;
    for (from, to, rx) in waits {
        let reply = match rx.await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => return Err(e.reply_text()),
            Err(_) => return Err("ERR the shard connection closed before replying".into()),
        };
        rb.counters
            .request_migrations
            .fetch_add(1, Ordering::Relaxed);
        match reply.first() {
            Some(b':') => {
                let n = std::str::from_utf8(&reply[1..])
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                rb.counters
                    .request_keys_moved
                    .fetch_add(n, Ordering::Relaxed);
            }
            _ => {
                let text = String::from_utf8_lossy(reply.get(1..).unwrap_or_default());
                return Err(format!(
                    "TRYAGAIN moving the key from shard '{from}' to '{to}' failed: {}",
                    text.trim_end()
                ));
            }
        }
    }
    Ok(())
}

/// `-WRONGSHARD <epoch> <owner>` → `(epoch, owner)`.
pub(crate) fn wrongshard(reply: &[u8]) -> Option<(Epoch, String)> {
    let rest = reply.strip_prefix(b"-WRONGSHARD ")?;
    let text = std::str::from_utf8(rest).ok()?.trim_end();
    let (epoch, owner) = text.split_once(' ')?;
    // A script's error that carries a node's refusal of a key it did not declare is the
    // script's answer, not a fencing of the request.
    if owner.contains(' ') {
        return None;
    }
    Some((epoch.parse().ok()?, owner.to_string()))
}

pub(crate) fn tryagain(epoch: Epoch, owner: &str, mine: Epoch) -> Bytes {
    if let Some(version) = crate::split_change::fenced_version(owner) {
        return error_bytes(&format!(
            "TRYAGAIN the node's split fences are at version {version}, which this router has not caught up with (another router changed a split)"
        ));
    }
    error_bytes(&format!(
        "TRYAGAIN the node says shard '{owner}' owns this key at epoch {epoch}; this router routes by epoch {mine} (another router changed membership: give this one the same change)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrongshard_replies_parse() {
        assert_eq!(
            wrongshard(b"-WRONGSHARD 7 d\r\n"),
            Some((7, "d".to_string()))
        );
        assert_eq!(wrongshard(b"-ERR nope\r\n"), None);
        assert_eq!(
            wrongshard(b"-WRONGSHARD 1 c script: f, on @user_function:3.\r\n"),
            None
        );
        assert_eq!(wrongshard(b"+OK\r\n"), None);
        assert!(tryagain(7, "d", 6).starts_with(b"-TRYAGAIN "));
        assert!(tryagain(7, "split:3", 7).starts_with(b"-TRYAGAIN the node's split fences"));
    }
}
