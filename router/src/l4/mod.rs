//! The L4 forwarder: whole TCP connections spliced to a pool of backends (by default a shard's
//! replicas), the backend picked by a balancing policy among the healthy ones.
//!
//! Each accepted connection gets one backend for its whole life; bytes are copied both ways
//! (`forward::one_way`, a buffer taken only while bytes are in flight), an EOF from one side is
//! passed on as a half-close to the other, and an error on either side closes both. Backends are
//! health-checked with PING in the background.
//!
//! [`pool`] holds the backends and the balancing policies, [`forward`] accepts and splices
//! connections, [`health`] checks the backends, [`listen`] starts the config's listeners.

pub mod forward;
pub mod health;
pub mod listen;
pub mod pool;

pub use forward::{bound, serve};
pub use health::{health_loop, ping, HealthSettings, MemberSource};
pub use pool::{Backend, Member, Policy, Pool};
