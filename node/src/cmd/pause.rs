//! Which commands a pause (CLIENT PAUSE, `ringcache_protocol::pause`) holds back on a node.

use bytes::Bytes;
use ringcache_protocol::pause::{self, PauseMode};
use ringcache_protocol::table;

use crate::state::session::Session;
use crate::state::Shared;

/// Whether `args` waits under a pause of `mode`: every command a client may run under ALL;
/// under WRITE the ones that write or may replicate (PUBLISH, PFCOUNT, a script not declared
/// `no-writes`, EXEC of such commands; in MULTI too, before they are queued, as in Redis). A
/// request refused anyway (unknown, wrong arity, not authenticated) is answered at once, as
/// Redis answers it.
pub fn held_back(shared: &Shared, mode: PauseMode, session: &Session, args: &[Bytes]) -> bool {
    if session.from_primary || !session.authenticated {
        return false;
    }
    pause::holds(mode, args, |spec| match (spec.name, &session.multi) {
        ("exec", Some(m)) => m.queued.iter().any(|q| may_write(shared, q)),
        ("exec", None) => false,
        _ => may_write(shared, args),
    })
}

/// Whether a command may write or replicate something.
fn may_write(shared: &Shared, args: &[Bytes]) -> bool {
    let Some(spec) = args.first().and_then(|n| table::lookup(n)) else {
        return false;
    };
    match spec.name {
        // Held unless the cached script or the function is known to declare `no-writes`.
        "evalsha" | "fcall" => crate::script::declared_no_writes(shared, args) != Some(true),
        "eval" => pause::eval_may_write(args.get(1)),
        _ => pause::writes(spec, args),
    }
}

/// The pause `args` must wait out now, if any.
pub fn must_wait(shared: &Shared, session: &Session, args: &[Bytes]) -> bool {
    shared
        .pause
        .current()
        .is_some_and(|(_, mode)| held_back(shared, mode, session, args))
}
