//! After a command: what it changed goes to keyspace-notification subscribers (when on), to the
//! replicas (the command itself, or what it asked to propagate instead) and to the clients
//! WATCHing its keys while its locks are still held (`crate::replication::release`), then to the
//! clients blocked on those keys.

use bytes::Bytes;
use ringcache_protocol::table::CommandSpec;

use crate::keyspace::Db;
use crate::state::Shared;

/// Hands on the effects of the command that ran against `db`, then releases its locks and
/// serves clients blocked on the keys it changed.
pub fn finish(shared: &Shared, mut db: Db<'_>, spec: &CommandSpec, args: &[Bytes]) {
    if !db.effects.notes.is_empty() {
        super::notify::command(shared, &mut db, spec.name, args);
    }
    let touched = crate::replication::release(shared, db, Some((spec, args)));
    if !touched.is_empty() && !shared.blocked.is_empty() {
        super::blocking::serve_ready(shared, touched);
    }
}
