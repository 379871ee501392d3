//! The seeded schedule of membership changes and faults ([`plan`]), and the driver that carries
//! it out on a plain thread (process control is blocking; admin commands run on the load's
//! runtime): [`admin`] its commands to the router, [`events`] each event, [`recovery`] what it
//! restarts, [`record`] what it keeps of each event for the summary, [`routers`] the events on
//! routers (a restart mid-move, a kill with the change in flight).
//!
//! An event that the cluster refuses (today: `RING JOIN`/`LEAVE` before the router supports
//! them) is recorded as failed with the error, and the run goes on.

mod admin;
mod events;
pub mod plan;
pub mod record;
mod recovery;
mod routers;
mod split;

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Handle;

use super::backend::{router_name, Backend, RouterShard, ShardState};
use super::client::Conn;
use super::workload::Shared;

pub use plan::{is_join, plan, EventKind, Plan, ScheduleKind};
pub use record::{move_stats, EventRecord, Fault};

pub struct Driver<'a> {
    rt: &'a Handle,
    shared: &'a Arc<Shared>,
    pub backend: Box<dyn Backend>,
    /// Every shard, members and spares, and which node is its primary now.
    pub shards: Vec<ShardState>,
    rng: StdRng,
    /// Picks the router of each event; apart from `rng`, so one router draws nothing from it
    /// and a seed plans the same events as before `--routers`.
    router_rng: StdRng,
    /// Admin connections, one per router.
    admins: Vec<Option<Conn>>,
    /// The router the current event goes through.
    pub via: usize,
    /// The epoch the last membership change published (as its router said after +OK).
    change_epoch: Option<u64>,
    /// Joins the plan has after the current event: each needs a spare of its own.
    joins_ahead: usize,
    pub records: Vec<EventRecord>,
    /// Every membership the harness put in place, in order (to know which shards a key had).
    pub history: Vec<Vec<String>>,
    pub faults: Vec<Fault>,
    /// Processes found dead that the harness did not kill.
    pub crashes: Vec<String>,
    /// Failovers the harness did not cause (or wait for), for the summary.
    pub notes: Vec<String>,
    /// The split's percent the last split step set (`--split`).
    split_percent: u8,
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// RING JOIN/LEAVE reply once the new epoch is in effect (keys move afterwards).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
const MIGRATION_WAIT: Duration = Duration::from_secs(30);
const FAILOVER_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

impl<'a> Driver<'a> {
    pub fn new(
        rt: &'a Handle,
        shared: &'a Arc<Shared>,
        backend: Box<dyn Backend>,
        seed: u64,
    ) -> Driver<'a> {
        let shards = backend.initial_shards();
        let mut d = Driver {
            rt,
            shared,
            backend,
            shards,
            // Distinct from the plan's stream, still fixed by the seed.
            rng: StdRng::seed_from_u64(seed.wrapping_add(0x5eed)),
            router_rng: StdRng::seed_from_u64(seed.wrapping_add(0x7007e5)),
            admins: Vec::new(),
            via: 0,
            change_epoch: None,
            joins_ahead: 0,
            records: Vec::new(),
            history: Vec::new(),
            faults: Vec::new(),
            crashes: Vec::new(),
            notes: Vec::new(),
            split_percent: 0,
        };
        d.history.push(d.members());
        d
    }

    fn elapsed(&self) -> Duration {
        self.shared.start.elapsed()
    }

    /// A random running router (the first when at most one runs).
    fn pick_router(&mut self) -> usize {
        let live = self.shared.routers.live();
        match live.len() {
            0 => 0,
            1 => live[0],
            n => live[self.router_rng.gen_range(0..n)],
        }
    }

    /// ` via router2` for event names, with several routers only.
    fn via_note(&self) -> String {
        if self.shared.routers.count() > 1 {
            format!(" via {}", router_name(self.via))
        } else {
            String::new()
        }
    }

    fn log(&self, msg: &str) {
        println!("[t={:.1}s] {msg}", self.elapsed().as_secs_f64());
    }

    pub fn members(&self) -> Vec<String> {
        self.shards
            .iter()
            .filter(|s| s.member)
            .map(|s| s.id.clone())
            .collect()
    }

    fn shard_mut(&mut self, id: &str) -> Option<&mut ShardState> {
        self.shards.iter_mut().find(|s| s.id == id)
    }

    fn addr(&self, node: &str) -> String {
        self.backend
            .addr(node)
            .unwrap_or_else(|| format!("{node}:?"))
    }

    /// The router's `[[shard]]` list for the current membership.
    fn router_members(&self) -> Vec<RouterShard> {
        self.shards
            .iter()
            .filter(|s| s.member)
            .map(|s| RouterShard {
                id: s.id.clone(),
                primary: self.addr(&s.primary),
                replicas: s.replica.iter().map(|r| self.addr(r)).collect(),
            })
            .collect()
    }
}
