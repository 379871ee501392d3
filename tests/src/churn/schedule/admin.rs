//! The driver's admin commands on the routers: RING STATUS / NODES / LOCATE (on the router the
//! current event goes through, [`Driver::via`], unless said), and the waits built on them
//! (migrations done on every router, a failover seen, roles the router changed on its own).

use std::time::{Duration, Instant};

use ringcache_protocol::Reply;

use super::{Driver, ADMIN_TIMEOUT, FAILOVER_WAIT, POLL};
use crate::churn::backend::router_name;
use crate::churn::client::{self, cmd, Answer, Cmd, Conn, RingNode, RingStatus};
use crate::churn::workload::{Mark, Shared};

impl Driver<'_> {
    /// Sends admin commands pipelined on the admin connection to the event's router.
    pub(super) fn admin_pipeline(
        &mut self,
        cmds: &[Cmd],
        timeout: Duration,
    ) -> Result<Vec<Reply>, String> {
        self.admin_pipeline_on(self.via, cmds, timeout)
    }

    /// Sends admin commands pipelined on the admin connection to router `i` (reconnecting to its
    /// current address if needed). `Err` if any got no reply.
    pub(super) fn admin_pipeline_on(
        &mut self,
        i: usize,
        cmds: &[Cmd],
        timeout: Duration,
    ) -> Result<Vec<Reply>, String> {
        let addr = self.shared.routers.addr(i);
        if self.admins.len() <= i {
            self.admins.resize_with(i + 1, || None);
        }
        let mut conn = self.admins[i].take();
        let rt = self.rt;
        let result = rt.block_on(async {
            let mut c = match conn.take() {
                Some(c) if !c.is_broken() => c,
                _ => Conn::connect(addr, Duration::from_secs(2)).await?,
            };
            let answers = c.pipeline(cmds, timeout).await;
            let mut replies = Vec::with_capacity(answers.len());
            for (a, _) in answers {
                match a {
                    Answer::Reply(r) => replies.push(r),
                    Answer::NoReply(why) => return Err(why),
                }
            }
            Ok((c, replies))
        });
        match result {
            Ok((c, replies)) => {
                self.admins[i] = Some(c);
                Ok(replies)
            }
            Err(e) => Err(e),
        }
    }

    /// One admin command; an error reply is an `Err` with its text.
    pub(super) fn admin(&mut self, c: Cmd, timeout: Duration) -> Result<Reply, String> {
        let mut replies = self.admin_pipeline(&[c], timeout)?;
        match replies.pop() {
            Some(Reply::Error(e)) => Err(e),
            Some(r) => Ok(r),
            None => Err("no reply".into()),
        }
    }

    pub fn ring_status(&mut self) -> Result<RingStatus, String> {
        self.ring_status_on(self.via)
    }

    /// `RING STATUS` of router `i`.
    pub(super) fn ring_status_on(&mut self, i: usize) -> Result<RingStatus, String> {
        let mut replies = self.admin_pipeline_on(i, &[cmd(&["RING", "STATUS"])], ADMIN_TIMEOUT)?;
        match replies.pop() {
            Some(Reply::Error(e)) => Err(e),
            Some(r) => Ok(client::parse_ring_status(&r)),
            None => Err("no reply".into()),
        }
    }

    pub(super) fn ring_nodes(&mut self) -> Result<Vec<RingNode>, String> {
        self.admin(cmd(&["RING", "NODES"]), ADMIN_TIMEOUT)
            .map(|r| client::parse_ring_nodes(&r))
    }

    /// Polls RING STATUS on every running router until each says `migrating:0`; returns how
    /// long that took from `since`.
    pub fn wait_migrations(&mut self, since: Instant, bound: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + bound;
        let mut last = String::from("no answer yet");
        let several = self.shared.routers.count() > 1;
        for _ in 0..(bound.as_millis() / POLL.as_millis() + 10) {
            let mut busy = Vec::new();
            let mut live = self.shared.routers.live();
            if live.is_empty() {
                live.push(self.shared.routers.pick(0, 0));
            }
            for i in live {
                // Named only with several routers, so a lone router's messages read as before.
                let who = if several {
                    format!("{}: ", router_name(i))
                } else {
                    String::new()
                };
                match self.ring_status_on(i) {
                    Ok(RingStatus {
                        migrating: Some(0), ..
                    }) => {}
                    Ok(RingStatus {
                        migrating: Some(n), ..
                    }) => busy.push(format!("{who}migrating:{n}")),
                    Ok(RingStatus {
                        migrating: None, ..
                    }) => return Err(format!("{who}RING STATUS reports no `migrating` field")),
                    Err(e) => busy.push(format!("{who}RING STATUS failed: {e}")),
                }
            }
            if busy.is_empty() {
                return Ok(since.elapsed());
            }
            last = busy.join(", ");
            if Instant::now() >= deadline || self.shared.stopping() {
                break;
            }
            std::thread::sleep(POLL);
        }
        Err(format!(
            "migrations not finished after {bound:?} (last: {last})"
        ))
    }

    /// The owner of every test key, by `RING LOCATE`.
    pub(super) fn locate_all(&mut self) -> Result<Vec<String>, String> {
        let shared: &Shared = self.shared;
        let _sweep = Mark::new(&shared.in_sweep);
        let keys = self.shared.model.keys.all();
        let mut owners = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let cmds: Vec<Cmd> = chunk.iter().map(|k| cmd(&["RING", "LOCATE", k])).collect();
            let replies = self.admin_pipeline(&cmds, Duration::from_secs(20))?;
            for (k, r) in chunk.iter().zip(replies) {
                if let Reply::Error(e) = &r {
                    return Err(format!("RING LOCATE {k}: {e}"));
                }
                owners.push(client::parse_locate(&r).ok_or_else(|| {
                    format!("RING LOCATE {k}: no shard in {}", client::brief(&r))
                })?);
            }
        }
        Ok(owners)
    }

    /// Polls RING NODES until shard `id`'s primary is `replica`.
    pub(super) fn wait_failover(&mut self, id: &str, replica: &str) -> Result<Duration, String> {
        let start = Instant::now();
        let mut last = String::from("no answer");
        for _ in 0..(FAILOVER_WAIT.as_millis() / 200 + 10) {
            match self.ring_nodes() {
                Ok(nodes) => match nodes.iter().find(|n| n.id == id) {
                    Some(n) if n.primary == replica => return Ok(start.elapsed()),
                    Some(n) => last = format!("RING NODES names {} as {id}'s primary", n.primary),
                    None => last = format!("RING NODES does not list {id}"),
                },
                Err(e) => last = format!("RING NODES failed: {e}"),
            }
            if start.elapsed() >= FAILOVER_WAIT || self.shared.stopping() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "no failover to {replica} within {FAILOVER_WAIT:?} ({last})"
        ))
    }

    /// Takes every shard's primary from RING NODES: the router fails shards over on its own
    /// (after a pause or a cut, or when it finds a primary unresponsive). Returns the shards that
    /// changed, with a note for each.
    pub(super) fn sync_roles(&mut self) -> Vec<(String, String)> {
        let nodes = match self.ring_nodes() {
            Ok(n) => n,
            Err(e) => {
                self.log(&format!("RING NODES failed: {e}"));
                return Vec::new();
            }
        };
        let mut changed = Vec::new();
        for n in nodes {
            let Some(s) = self.shards.iter().find(|s| s.id == n.id) else {
                continue;
            };
            let Some(replica) = s.replica.clone() else {
                continue;
            };
            if self.backend.addr(&replica).as_deref() != Some(n.primary.as_str()) {
                continue;
            }
            let old = s.primary.clone();
            let old_up = self.backend.is_up(&old);
            if let Some(s) = self.shard_mut(&n.id) {
                s.primary = replica.clone();
                s.replica = old_up.then(|| old.clone());
            }
            changed.push((
                n.id,
                format!("the router failed over to {replica} ({old} is its replica now)"),
            ));
        }
        changed
    }
}
