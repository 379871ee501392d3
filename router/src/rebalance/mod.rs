//! Membership changes that move only the affected key ranges: `RING JOIN`, `RING LEAVE`,
//! `RING CANCEL`, `RING STATUS`, the epochs pushed to the nodes, and the request path while
//! arcs migrate.
//!
//! # One change, step by step ([`begin`])
//! 1. Under [`Rebalancer::change_lock`] (failover takes it too, so two changes never pick the same
//!    epoch): the next ring is `ring.with_shard` / `ring.without_shard` at epoch
//!    `max(router, nodes) + 1`, and `diff` gives the moves (a join moves arcs only *to* the new
//!    shard, a leave only *from* the leaving one).
//! 2. The new ring is pushed (`TOPOLOGY SETMAP`) to every node at once: sources refuse the arcs
//!    they lost with `-WRONGSHARD` before any key of them moves, so no router (this one or one
//!    not yet following) writes a key at its source after it left; a refused request is run again
//!    at the new owner. If a shard that *gains* arcs cannot take it, the change is abandoned (the
//!    old membership is republished at a later epoch) before anything moved.
//! 3. The router swaps in the new [`Topology`](crate::topology::Topology) with the moving arcs
//!    marked [`Migrating`], then *quiesces*: it waits until every client's requests planned on
//!    the old ring have been answered (connections hold new requests while old ones are
//!    outstanding; see `proxy::connection`), so a client's requests keep their order; then the
//!    mover starts.
//! 4. Request path: a command touching a key of a moving arc first asks the source
//!    `MIGRATE-KEYS <target> key...` (atomic per key: copy, confirm, delete), then goes to the
//!    target. A client's such requests run one after another, in order, on its own chain (and
//!    so do its later requests while the chain is busy), so a pipeline keeps its order.
//! 5. The background mover runs one worker per `(from, to)` pair: `MIGRATE-ARC <target> start
//!    end <batch>` on the source until a call reports `more = 0` (every key of the arc it held
//!    has moved, and no new one can appear there); then the arc is done and requests for it take
//!    the fast path again. Progress (keys, bytes, arcs, rate, ETA) is in
//!    `RING STATUS` and the metrics. When every arc is done the marks are dropped (same epoch:
//!    nodes never knew about them) and a leaving shard's pools are closed.
//!
//! # Cancel
//! `RING CANCEL` stops the mover after the batches in flight, then rolls back: the old
//! membership is published at the next epoch (pushed to every node at once, the shards that get
//! their arcs back must take it), with every arc of the cancelled change marked moving in the *reverse* direction, and
//! the mover brings back whatever had moved (request path likewise). Every arc always has one
//! owner, and keys only ever travel by the nodes' atomic per-key migration, so none is lost or
//! duplicated; a deleted key is not resurrected because a moved key no longer exists at its
//! source. A rollback cannot itself be cancelled; it is done when its arcs are empty.
//!
//! # Several routers, stale epochs
//! Nodes fence: a node that is a member of its ring refuses keys it does not own
//! (`-WRONGSHARD <epoch> <owner>`). A router never pushes a ring at an epoch a node already has
//! (equal epochs are accepted by nodes, so that would silently replace another router's ring); a
//! change goes to `max + 1`. Every ring goes out with its map (the shards' addresses), so a
//! router whose epoch sync sees a newer epoch follows it ([`follow`]), and a fast-path request
//! a node refused is retried once the router caught up ([`divert::retry_fenced`]). Changes and
//! failovers take the change lease on the primaries first ([`lease`]), so two routers never run
//! two at once, and a change whose router died is taken over when its lease lapses.
//!
//! # Files
//! Under the router's state ([`crate::state`] holds a [`Rebalancer`], [`crate::topology`] a
//! [`Migrating`]): [`migrating`] (the moving-arcs map), [`plan`] (pure planning, `RING JOIN`
//! arguments), [`outcome`] (what a change request comes to), [`progress`] (what `RING STATUS`
//! and the metrics report), [`rebalancer`] (the state itself), [`chain`] (a client's queue on
//! the request path), [`node_conn`] (control links to nodes on the shared client), [`lease`]
//! (one change at a time across routers). Above it, acting on the
//! [`Router`](crate::state::Router): [`publish`] (pushing epochs), [`mover`] (the background
//! mover, completion, rollback), [`sync`] (epoch sync, resuming a change), [`follow`] (adopting
//! another router's ring), [`change`] (`RING JOIN`/`LEAVE`/`CANCEL`), [`divert`](mod@divert)
//! (the request path).

pub mod chain;
pub mod change;
pub mod divert;
pub mod follow;
pub mod lease;
pub mod migrating;
pub mod mover;
pub mod node_conn;
pub mod outcome;
pub mod plan;
pub mod progress;
pub mod publish;
pub mod rebalancer;
pub mod sync;

pub use chain::Chain;
pub use change::{begin, cancel};
pub use divert::divert;
pub use migrating::{Migrating, MigrationMap, MovingArc};
pub use outcome::{ChangeError, ChangeOutcome, GainersRefused};
pub use plan::{parse_join, plan_change, plan_rollback, Change, ChangePlan};
pub use progress::MigrationCounters;
pub use publish::topology_set;
pub use rebalancer::Rebalancer;
pub use sync::start;
