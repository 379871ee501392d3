//! What a command runs against: the node's shared state and its connection's session.

use crate::state::session::Session;
use crate::state::Shared;
use crate::store::Store;

/// Everything a command runs against.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    pub session: &'a mut Session,
}

impl Ctx<'_> {
    pub fn store(&self) -> &Store {
        &self.shared.store
    }
}
