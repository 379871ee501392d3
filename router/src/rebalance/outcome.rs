//! What a membership change request comes to: a [`ChangeOutcome`], or a [`ChangeError`] whose
//! text is the client's error reply, byte for byte. `local.rs` (`RING` handling) turns either
//! into the reply, in one place.

use ringcache_protocol::ring::{Epoch, RingError};

/// A `RING JOIN`, `LEAVE` or `CANCEL` that went through (the client sees `+OK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// The change's epoch is in effect; its arcs move in the background.
    Moving,
    /// The change's epoch is in effect and no arc changed owner: it is complete.
    Done,
    /// `RING CANCEL`: the rollback's epoch is in effect; moved keys go back in the background.
    RollingBack,
}

/// Why a membership change request was refused, or failed before its epoch took effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("ERR wrong number of arguments for 'ring|join' command")]
    JoinArity,
    #[error("ERR invalid shard id '{0}': use 1 to 64 letters, digits and -_.:")]
    InvalidId(String),
    #[error("ERR '{0}' is not HOST:PORT")]
    InvalidAddr(String),
    #[error("ERR WEIGHT must be an integer from 1 to 1000")]
    InvalidWeight,
    #[error("ERR shard '{0}' is already in the ring")]
    AlreadyInRing(String),
    #[error("ERR no shard '{0}' in the ring (RING NODES)")]
    NotInRing(String),
    #[error("ERR '{0}' is the last shard: a ring needs at least one")]
    LastShard(String),
    #[error("ERR the epoch is exhausted")]
    EpochExhausted,
    #[error("ERR {0}")]
    Ring(#[from] RingError),
    #[error("ERR a membership change is in progress (RING STATUS)")]
    InProgress,
    /// Another router holds the change lease, or drives the change this router follows.
    #[error("ERR another router's membership change is in progress: {0} (RING STATUS)")]
    Elsewhere(String),
    /// A route's split with keys in this pool is moving keys (RING ROUTES).
    #[error("ERR the split of route '{0}' is moving keys in this pool: change membership once that is done (RING ROUTES)")]
    SplitMoving(String),
    #[error("ERR no node answered to take the change lease")]
    NoLease,
    /// A shard of the ring already has the joining shard's id or its primary's address.
    #[error("ERR shard '{shard}' already uses id '{id}' or address {primary}")]
    Taken {
        shard: String,
        id: String,
        primary: String,
    },
    /// The joining primary cannot be connected to (`{0}` names it and why).
    #[error("ERR cannot reach the new primary {0}")]
    Unreachable(String),
    /// The joining primary did not answer `TOPOLOGY GET` (`{0}` names it and why).
    #[error("ERR the new primary {0}")]
    NoTopology(String),
    #[error("ERR {primary} already serves shard '{serves}' (epoch {epoch})")]
    ServesAnother {
        primary: String,
        serves: String,
        epoch: Epoch,
    },
    #[error("ERR {primary} holds {keys} keys; a joining node must be empty (FLUSHALL it first)")]
    NotEmpty { primary: String, keys: i64 },
    /// The nodes are ahead of this router with a ring this change would not lead to.
    #[error("ERR the nodes are at epoch {epoch} with another membership than this router's {change} would give ({reason}); make this router's membership match theirs first (RING JOIN/LEAVE as on the router that changed it, or fix cluster.toml and restart)")]
    Diverged {
        epoch: Epoch,
        change: String,
        reason: String,
    },
    #[error("ERR {change} abandoned: {reason}")]
    Abandoned {
        change: String,
        reason: GainersRefused,
    },
    #[error("ERR no membership change in progress")]
    NothingToCancel,
    #[error("ERR already rolling back (RING STATUS)")]
    AlreadyRollingBack,
    /// The change ended (`done`, `failed`...) before its rollback could start.
    #[error("ERR the change ended ({0}) before it could be cancelled")]
    EndedAs(&'static str),
    #[error("ERR the change ended before it could be cancelled")]
    Ended,
}

/// The shards gaining arcs did not all take a change's ring: nothing moved yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shards gaining arcs could not take epoch {epoch}: {}", .failed.join("; "))]
pub struct GainersRefused {
    pub epoch: Epoch,
    /// Each failed push, naming the node and why.
    pub failed: Vec<String>,
}

impl From<crate::rebalance::lease::Refused> for ChangeError {
    fn from(r: crate::rebalance::lease::Refused) -> ChangeError {
        use crate::rebalance::lease::Refused;
        match r {
            Refused::Busy { what, .. } => ChangeError::Elsewhere(what),
            Refused::NoNode => ChangeError::NoLease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients and tools match these texts: each is the reply the router gave before the errors
    /// were typed, byte for byte.
    #[test]
    fn error_texts_are_the_replies() {
        let s = String::from;
        let cases = [
            (
                ChangeError::JoinArity,
                "ERR wrong number of arguments for 'ring|join' command",
            ),
            (
                ChangeError::InvalidId(s("d d")),
                "ERR invalid shard id 'd d': use 1 to 64 letters, digits and -_.:",
            ),
            (ChangeError::InvalidAddr(s("nope")), "ERR 'nope' is not HOST:PORT"),
            (
                ChangeError::InvalidWeight,
                "ERR WEIGHT must be an integer from 1 to 1000",
            ),
            (
                ChangeError::AlreadyInRing(s("a")),
                "ERR shard 'a' is already in the ring",
            ),
            (
                ChangeError::NotInRing(s("x")),
                "ERR no shard 'x' in the ring (RING NODES)",
            ),
            (
                ChangeError::LastShard(s("a")),
                "ERR 'a' is the last shard: a ring needs at least one",
            ),
            (ChangeError::EpochExhausted, "ERR the epoch is exhausted"),
            (
                ChangeError::Ring(RingError::ZeroVnodes),
                "ERR vnodes must be at least 1",
            ),
            (
                ChangeError::InProgress,
                "ERR a membership change is in progress (RING STATUS)",
            ),
            (
                ChangeError::Taken {
                    shard: s("a"),
                    id: s("d"),
                    primary: s("h:1"),
                },
                "ERR shard 'a' already uses id 'd' or address h:1",
            ),
            (
                ChangeError::Unreachable(s("h:1: connect timed out")),
                "ERR cannot reach the new primary h:1: connect timed out",
            ),
            (
                ChangeError::NoTopology(s("h:1: odd TOPOLOGY GET reply")),
                "ERR the new primary h:1: odd TOPOLOGY GET reply",
            ),
            (
                ChangeError::ServesAnother {
                    primary: s("h:1"),
                    serves: s("b"),
                    epoch: 7,
                },
                "ERR h:1 already serves shard 'b' (epoch 7)",
            ),
            (
                ChangeError::NotEmpty {
                    primary: s("h:1"),
                    keys: 3,
                },
                "ERR h:1 holds 3 keys; a joining node must be empty (FLUSHALL it first)",
            ),
            (
                ChangeError::Diverged {
                    epoch: 9,
                    change: s("join d"),
                    reason: s("why"),
                },
                "ERR the nodes are at epoch 9 with another membership than this router's join d would give (why); make this router's membership match theirs first (RING JOIN/LEAVE as on the router that changed it, or fix cluster.toml and restart)",
            ),
            (
                ChangeError::Abandoned {
                    change: s("join d"),
                    reason: GainersRefused {
                        epoch: 4,
                        failed: vec![s("h:1: x"), s("h:2: y")],
                    },
                },
                "ERR join d abandoned: the shards gaining arcs could not take epoch 4: h:1: x; h:2: y",
            ),
            (
                ChangeError::NothingToCancel,
                "ERR no membership change in progress",
            ),
            (
                ChangeError::AlreadyRollingBack,
                "ERR already rolling back (RING STATUS)",
            ),
            (
                ChangeError::EndedAs("done"),
                "ERR the change ended (done) before it could be cancelled",
            ),
            (
                ChangeError::Ended,
                "ERR the change ended before it could be cancelled",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
