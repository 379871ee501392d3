//! What the driver keeps of each event, and of each membership change the keys that moved.

use std::time::{Duration, Instant};

use crate::churn::followed::Followed;
use crate::churn::routers::Spread;

/// A window in which a fault could have lost writes on `shards` (`None`: every shard).
#[derive(Debug, Clone)]
pub struct Fault {
    pub start: Instant,
    pub end: Instant,
    pub shards: Option<Vec<String>>,
}

/// Keys whose owner changed across one membership change.
#[derive(Debug, Clone)]
pub struct MoveStats {
    pub members_before: usize,
    pub moved: usize,
    /// Moved between two shards that are in the ring before and after: must be 0.
    pub between_staying: usize,
    /// K/(n+1) for a join, K/n for a leave.
    pub expected: f64,
}

pub struct EventRecord {
    /// Offset from the start of the load.
    pub at: Duration,
    pub name: String,
    /// What happened, or why the event failed.
    pub result: Result<String, String>,
    pub moves: Option<Result<MoveStats, String>>,
    /// From RING JOIN/LEAVE +OK until `migrating:0`.
    pub migration: Option<Result<Duration, String>>,
    /// From RING JOIN/LEAVE +OK until every running router reports the new epoch.
    pub epoch_spread: Option<Result<Duration, String>>,
    /// When each router other than the change's own first reported its epoch (with
    /// `epoch_spread`).
    pub followed: Vec<Followed>,
    /// Measuring `epoch_spread` in the background (collected after the load).
    pub spread_task: Option<tokio::task::JoinHandle<Spread>>,
}

impl EventRecord {
    /// An event without a membership change.
    pub fn plain(at: Duration, name: String, result: Result<String, String>) -> EventRecord {
        EventRecord {
            at,
            name,
            result,
            moves: None,
            migration: None,
            epoch_spread: None,
            followed: Vec::new(),
            spread_task: None,
        }
    }
}

/// Keys moved by a change from `before` to `after` owners (one entry per test key); `changed` is
/// the joining or leaving shard, `members_before` the ring's size before the change.
pub fn move_stats(
    before: &[String],
    after: &[String],
    changed: &str,
    members_before: usize,
    join: bool,
) -> MoveStats {
    let moved = before.iter().zip(after).filter(|(b, a)| b != a).count();
    let between_staying = before
        .iter()
        .zip(after)
        .filter(|(b, a)| b != a && b.as_str() != changed && a.as_str() != changed)
        .count();
    let keys = before.len();
    let expected = if join {
        keys as f64 / (members_before + 1) as f64
    } else {
        keys as f64 / members_before.max(1) as f64
    };
    MoveStats {
        members_before,
        moved,
        between_staying,
        expected,
    }
}

#[cfg(test)]
mod tests {
    use ringcache_protocol::ring::{Ring, ShardSpec};

    use super::*;
    use crate::churn::local::VNODES;
    use crate::churn::model::Keys;

    fn owners(ids: &[&str], keys: &[String]) -> Vec<String> {
        let specs = ids.iter().map(|id| ShardSpec::new(*id, 1)).collect();
        let ring = match Ring::new(1, VNODES, specs) {
            Ok(r) => r,
            Err(e) => panic!("ring: {e:?}"),
        };
        keys.iter()
            .map(|k| {
                ring.locate(k.as_bytes())
                    .map_or_else(String::new, |s| s.id.clone())
            })
            .collect()
    }

    #[test]
    fn a_join_moves_about_a_share_and_nothing_between_staying_shards() {
        let keys = Keys::new(10_000).all();
        let before = owners(&["alpha", "bravo", "charlie"], &keys);
        let after = owners(&["alpha", "bravo", "charlie", "delta"], &keys);
        let m = move_stats(&before, &after, "delta", 3, true);
        assert_eq!(m.between_staying, 0);
        let ratio = m.moved as f64 / m.expected;
        assert!(
            (0.8..1.2).contains(&ratio),
            "moved {} vs {}",
            m.moved,
            m.expected
        );
        let left = owners(&["alpha", "charlie", "delta"], &keys);
        let m = move_stats(&after, &left, "bravo", 4, false);
        assert_eq!(m.between_staying, 0);
        // A wrong ring (a different shard set) shows up as moves between staying shards.
        let m = move_stats(
            &before,
            &owners(&["alpha", "bravo", "echo"], &keys),
            "delta",
            3,
            true,
        );
        assert!(m.between_staying > 0);
    }
}
