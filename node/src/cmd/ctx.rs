//! What a command runs against: the node's shared state, its connection's session, and the
//! keyspace view holding its keys' locks.

use crate::keyspace::Db;
use crate::state::session::Session;
use crate::state::Shared;

/// Everything a command runs against.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    pub session: &'a mut Session,
    pub db: Db<'a>,
}
