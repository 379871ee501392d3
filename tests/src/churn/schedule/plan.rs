//! The seeded plan of one run: which events, at which offsets from the start of the load.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleKind {
    /// Joins, leaves and faults (kills, a kill mid-move, a pause, a router restart; in compose
    /// mode also a node cut off the network; with several routers also a router killed with its
    /// change in flight).
    Full,
    /// Joins and leaves only.
    Graceful,
    /// No membership change, no fault.
    None,
}

impl ScheduleKind {
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Full => "full",
            ScheduleKind::Graceful => "graceful",
            ScheduleKind::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Join,
    Leave,
    KillPrimary,
    /// Join a spare, then SIGKILL the move's source or target right after +OK.
    KillMidMove,
    /// Freeze a primary (SIGSTOP, `docker pause`) for 1–2 s.
    Pause,
    /// Cut a node off the network for 2–4 s, then reconnect it (backends that can: compose).
    Cut,
    RestartRouter,
    /// A join or leave through one router, which is SIGKILLed right after +OK; the others must
    /// finish the change, then it is started again (several routers only).
    KillRouter,
    /// `RING SPLIT` raises the split's percent (`--split`): 0 → 20% the first time, then 50%.
    Split,
}

pub struct Plan {
    /// Offsets from the start of the load, increasing.
    pub events: Vec<(Duration, EventKind)>,
    /// Spare shards the plan can use: one per join, and one for a router kill's change.
    pub spares: usize,
    /// Spare shards the plan needs (its joins); a router kill's change joins only with a spare
    /// beyond those of the joins still to come, else leaves.
    pub joins: usize,
}

/// Spreads the events over 10%..70% of the run, seeded, so the tail of the run sees the cluster
/// settle under load. `cut`: the full schedule also cuts a node off the network; with `routers`
/// above 1 it also kills a router mid-change.
pub fn plan(kind: ScheduleKind, seed: u64, duration: Duration, cut: bool, routers: usize) -> Plan {
    use EventKind::*;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kinds = match kind {
        ScheduleKind::Full => vec![Join, Leave, KillPrimary, KillMidMove, Pause, RestartRouter],
        ScheduleKind::Graceful => vec![Join, Leave, Join, Leave],
        ScheduleKind::None => Vec::new(),
    };
    if kind == ScheduleKind::Full {
        if cut {
            kinds.push(Cut);
        }
        if routers > 1 {
            kinds.push(KillRouter);
        }
        kinds.shuffle(&mut rng);
    }
    let spares = kinds
        .iter()
        // A router kill's change may be a join.
        .filter(|k| matches!(k, Join | KillMidMove | KillRouter))
        .count();
    let joins = kinds.iter().filter(|k| is_join(**k)).count();
    let first = duration.mul_f64(0.1);
    let slot = duration.mul_f64(0.6) / (kinds.len().max(1) as u32);
    let jitter_ms = (slot.as_millis() as u64 / 4).max(1);
    let events = kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let at = first + slot * i as u32 + Duration::from_millis(rng.gen_range(0..jitter_ms));
            (at, k)
        })
        .collect();
    Plan {
        events,
        spares,
        joins,
    }
}

/// Adds the two split steps (`--split`) at 15% and 45% of the run, between the other events.
pub fn add_splits(plan: &mut Plan, duration: Duration) {
    for at in [0.15, 0.45] {
        plan.events.push((duration.mul_f64(at), EventKind::Split));
    }
    plan.events.sort_by_key(|(at, _)| *at);
}

/// An event that takes a spare shard whatever happens (a router kill's change may be a leave).
pub fn is_join(kind: EventKind) -> bool {
    matches!(kind, EventKind::Join | EventKind::KillMidMove)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_seeded_and_bounded() {
        let d = Duration::from_secs(60);
        let a = plan(ScheduleKind::Full, 7, d, false, 1);
        let b = plan(ScheduleKind::Full, 7, d, false, 1);
        assert_eq!(a.events, b.events);
        assert_eq!(a.events.len(), 6);
        assert_eq!(a.spares, 2);
        assert_eq!(a.joins, 2);
        assert!(a.events.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(a
            .events
            .iter()
            .all(|(at, _)| *at >= d / 10 && *at <= d.mul_f64(0.75)));
        let c = plan(ScheduleKind::Full, 7, d, true, 1);
        assert_eq!(c.events.len(), 7);
        assert_eq!(
            c.events
                .iter()
                .filter(|(_, k)| *k == EventKind::Cut)
                .count(),
            1
        );
        assert!(!a.events.iter().any(|(_, k)| *k == EventKind::Cut));
        let g = plan(ScheduleKind::Graceful, 7, d, true, 3);
        assert!(g
            .events
            .iter()
            .all(|(_, k)| matches!(k, EventKind::Join | EventKind::Leave)));
        assert!(plan(ScheduleKind::None, 7, d, true, 3).events.is_empty());
        // Several routers add one router kill (and a spare for it) to the full schedule only.
        let r = plan(ScheduleKind::Full, 7, d, true, 3);
        assert_eq!(r.events.len(), 8);
        assert_eq!(r.spares, 3);
        assert_eq!(r.joins, 2);
        assert_eq!(
            r.events
                .iter()
                .filter(|(_, k)| *k == EventKind::KillRouter)
                .count(),
            1
        );
    }
}
