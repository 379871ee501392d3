//! Planning a membership change, pure (no I/O): the next ring, the arcs that move and the shards
//! that gain them, for a change (`RING JOIN`/`LEAVE`) or the rollback of one; and the
//! `RING JOIN` arguments.

use bytes::Bytes;
use ringcache_protocol::ring::{Epoch, Move, Ring, ShardSpec};

use crate::rebalance::outcome::ChangeError;

/// A membership change as the admin asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Join {
        id: String,
        primary: String,
        replicas: Vec<String>,
        weight: u32,
    },
    Leave {
        id: String,
    },
}

impl Change {
    /// The change as `RING STATUS` and the logs name it.
    pub fn describe(&self) -> String {
        match self {
            Change::Join { id, .. } => format!("join {id}"),
            Change::Leave { id } => format!("leave {id}"),
        }
    }
}

/// The next ring and what moves to get there.
#[derive(Debug, Clone)]
pub struct ChangePlan {
    /// The membership the change starts from.
    pub from: Vec<ShardSpec>,
    pub next: Ring,
    pub moves: Vec<Move>,
    /// Shards that gain arcs: the new ring goes to them first.
    pub gainers: Vec<String>,
}

/// Plans `change` from `cur` at epoch `max(cur + 1, min_epoch)`.
pub fn plan_change(
    cur: &Ring,
    change: &Change,
    min_epoch: Epoch,
) -> Result<ChangePlan, ChangeError> {
    let mut specs = cur.shards().to_vec();
    match change {
        Change::Join { id, weight, .. } => {
            if cur.shard_index(id).is_some() {
                return Err(ChangeError::AlreadyInRing(id.clone()));
            }
            specs.push(ShardSpec::new(id.clone(), *weight));
        }
        Change::Leave { id } => {
            let Some(i) = cur.shard_index(id) else {
                return Err(ChangeError::NotInRing(id.clone()));
            };
            if specs.len() == 1 {
                return Err(ChangeError::LastShard(id.clone()));
            }
            specs.remove(i);
        }
    }
    plan_to(cur, specs, min_epoch)
}

/// Plans the way back from `cur` to the membership `old` (a cancelled change's starting point).
pub fn plan_rollback(cur: &Ring, old: &[ShardSpec]) -> Result<ChangePlan, ChangeError> {
    plan_to(cur, old.to_vec(), 0)
}

fn plan_to(cur: &Ring, specs: Vec<ShardSpec>, min_epoch: Epoch) -> Result<ChangePlan, ChangeError> {
    let epoch = cur
        .epoch()
        .checked_add(1)
        .ok_or(ChangeError::EpochExhausted)?
        .max(min_epoch);
    let next = Ring::new(epoch, cur.vnodes(), specs)?;
    let moves = cur.diff(&next);
    let mut gainers: Vec<String> = moves.iter().map(|m| m.to.clone()).collect();
    gainers.sort();
    gainers.dedup();
    Ok(ChangePlan {
        from: cur.shards().to_vec(),
        next,
        moves,
        gainers,
    })
}

/// `RING JOIN <id> <primary> [<replica> ...] [WEIGHT w]`.
pub fn parse_join(a: &[Bytes]) -> Result<Change, ChangeError> {
    if a.len() < 4 {
        return Err(ChangeError::JoinArity);
    }
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let id = text(&a[2]);
    check_id(&id)?;
    let primary = text(&a[3]);
    check_addr(&primary)?;
    let mut replicas = Vec::new();
    let mut weight = 1;
    let mut i = 4;
    while i < a.len() {
        if a[i].eq_ignore_ascii_case(b"weight") {
            let w = a
                .get(i + 1)
                .and_then(|w| std::str::from_utf8(w).ok())
                .and_then(|w| w.parse::<u32>().ok())
                .filter(|w| (1..=1000).contains(w))
                .ok_or(ChangeError::InvalidWeight)?;
            weight = w;
            i += 2;
            continue;
        }
        let r = text(&a[i]);
        check_addr(&r)?;
        replicas.push(r);
        i += 1;
    }
    Ok(Change::Join {
        id,
        primary,
        replicas,
        weight,
    })
}

fn check_id(id: &str) -> Result<(), ChangeError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(ChangeError::InvalidId(id.to_string()))
    }
}

fn check_addr(addr: &str) -> Result<(), ChangeError> {
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) && !host.contains(' ')
    });
    if ok {
        Ok(())
    } else {
        Err(ChangeError::InvalidAddr(addr.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rebalance::migrating::MigrationMap;
    use ringcache_protocol::hash::key_hash;
    use ringcache_protocol::ring::DEFAULT_VNODES;

    fn ring(ids: &[&str]) -> Ring {
        Ring::new(
            3,
            DEFAULT_VNODES,
            ids.iter().map(|id| ShardSpec::new(*id, 1)).collect(),
        )
        .unwrap()
    }

    fn join(id: &str) -> Change {
        Change::Join {
            id: id.into(),
            primary: "127.0.0.1:1".into(),
            replicas: vec![],
            weight: 1,
        }
    }

    fn hashes(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(|i| key_hash(format!("key:{i}").as_bytes()))
    }

    #[test]
    fn a_join_moves_about_a_quarter_only_to_the_new_shard() {
        let cur = ring(&["a", "b", "c"]);
        let plan = plan_change(&cur, &join("d"), 0).unwrap();
        assert_eq!(plan.next.epoch(), 4);
        assert!(plan.moves.iter().all(|m| m.to == "d"));
        assert_eq!(plan.gainers, vec!["d".to_string()]);
        let map = MigrationMap::new(plan.moves.clone(), Vec::new());
        let n = 40_000;
        let mut moved = 0;
        for h in hashes(n) {
            let before = cur.owner(h).unwrap().id.clone();
            let after = plan.next.owner(h).unwrap().id.clone();
            // A key changes owner exactly when a moving arc holds it, and only to the new shard.
            match map.find(h) {
                Some(m) => {
                    assert_eq!((m.from.as_str(), m.to.as_str()), (before.as_str(), "d"));
                    assert_eq!(after, "d");
                    moved += 1;
                }
                None => assert_eq!(before, after),
            }
        }
        let share = moved as f64 / n as f64;
        assert!((0.225..0.275).contains(&share), "moved {share}");
    }

    #[test]
    fn a_leave_moves_only_from_the_leaving_shard() {
        let cur = ring(&["a", "b", "c", "d"]);
        let plan = plan_change(&cur, &Change::Leave { id: "b".into() }, 0).unwrap();
        assert!(plan.moves.iter().all(|m| m.from == "b" && m.to != "b"));
        let mut gainers = plan.gainers.clone();
        gainers.sort();
        assert_eq!(gainers, ["a", "c", "d"]);
        let map = MigrationMap::new(plan.moves.clone(), Vec::new());
        for h in hashes(20_000) {
            let before = cur.owner(h).unwrap().id.clone();
            let after = plan.next.owner(h).unwrap().id.clone();
            assert_eq!(map.find(h).is_some(), before == "b");
            assert_eq!(before != after, before == "b");
        }
        assert!(plan_change(&ring(&["a"]), &Change::Leave { id: "a".into() }, 0).is_err());
        assert!(plan_change(&cur, &Change::Leave { id: "x".into() }, 0).is_err());
        assert!(plan_change(&cur, &join("a"), 0).is_err());
    }

    #[test]
    fn the_epoch_never_goes_below_the_nodes() {
        let cur = ring(&["a", "b"]);
        assert_eq!(plan_change(&cur, &join("c"), 0).unwrap().next.epoch(), 4);
        assert_eq!(plan_change(&cur, &join("c"), 9).unwrap().next.epoch(), 9);
    }

    #[test]
    fn a_rollback_moves_the_same_arcs_back() {
        let old = ring(&["a", "b", "c"]);
        let fwd = plan_change(&old, &join("d"), 0).unwrap();
        let back = plan_rollback(&fwd.next, old.shards()).unwrap();
        assert_eq!(back.next.epoch(), fwd.next.epoch() + 1);
        // Same arcs, reversed; the shards getting their arcs back are published first.
        let mut f: Vec<_> = fwd
            .moves
            .iter()
            .map(|m| (m.arc.start, m.arc.end, m.to.clone(), m.from.clone()))
            .collect();
        let mut b: Vec<_> = back
            .moves
            .iter()
            .map(|m| (m.arc.start, m.arc.end, m.from.clone(), m.to.clone()))
            .collect();
        f.sort();
        b.sort();
        assert_eq!(f, b);
        assert_eq!(back.gainers, ["a", "b", "c"]);
        // Every hash has exactly one owner in the rolled-back ring: the original one.
        for h in hashes(5_000) {
            assert_eq!(old.owner(h), back.next.owner(h));
        }
    }

    #[test]
    fn join_arguments() {
        let a =
            |w: &[&str]| -> Vec<Bytes> { w.iter().map(|s| Bytes::from(s.to_string())).collect() };
        assert_eq!(
            parse_join(&a(&["RING", "JOIN", "d", "h:1", "h:2", "WEIGHT", "2"])).unwrap(),
            Change::Join {
                id: "d".into(),
                primary: "h:1".into(),
                replicas: vec!["h:2".into()],
                weight: 2
            }
        );
        assert!(parse_join(&a(&["RING", "JOIN", "d"])).is_err());
        assert!(parse_join(&a(&["RING", "JOIN", "d", "nope"])).is_err());
        assert!(parse_join(&a(&["RING", "JOIN", "d d", "h:1"])).is_err());
        assert!(parse_join(&a(&["RING", "JOIN", "d", "h:1", "WEIGHT", "0"])).is_err());
    }
}
