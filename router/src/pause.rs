//! CLIENT PAUSE and CLIENT UNPAUSE through the router: for a while, this router's clients'
//! commands (all of them, or those that write or may replicate) wait here before they are sent,
//! each client's in its order, as Redis holds its own clients. The nodes are not paused: their
//! other routers, replicas, migrations and health checks go on.

use bytes::Bytes;
use ringcache_protocol::pause::{self, PauseMode};
use ringcache_protocol::table;

use crate::session::Session;
use crate::state::Router;

/// A request a pause holds back, with what deciding whether it still must wait needs.
#[derive(Debug)]
pub struct Held {
    pub args: Vec<Bytes>,
    pub raw: Bytes,
    authenticated: bool,
    /// An EXEC's transaction.
    queued: Vec<Bytes>,
}

/// The request `args` (`raw` as sent), held back if the pause in force holds it.
pub fn hold(
    router: &Router,
    s: &Session,
    args: Vec<Bytes>,
    raw: Bytes,
) -> Result<Held, (Vec<Bytes>, Bytes)> {
    let Some((_, mode)) = router.pause.current() else {
        return Err((args, raw));
    };
    let held = Held {
        queued: match args.first() {
            Some(name) if name.eq_ignore_ascii_case(b"exec") => {
                crate::txn::queued(s).cloned().collect()
            }
            _ => Vec::new(),
        },
        authenticated: s.authenticated,
        args,
        raw,
    };
    if held.holds(router, mode) {
        Ok(held)
    } else {
        Err((held.args, held.raw))
    }
}

impl Held {
    /// Waits until no pause holds the request back, counted as a blocked client meanwhile
    /// (until the wait ends or is dropped: the connection's loop drops it for other events).
    pub async fn wait(&self, router: &Router) {
        router.pause.over(|mode| self.holds(router, mode)).await;
    }

    fn holds(&self, router: &Router, mode: PauseMode) -> bool {
        self.authenticated && held_back(router, mode, &self.queued, &self.args)
    }
}

/// Whether `args` waits under a pause of `mode`: every command under ALL; under WRITE those
/// that write or may replicate (PUBLISH, PFCOUNT, a script not known to declare `no-writes`,
/// EXEC of a transaction holding such commands; in MULTI too, before they are queued, as in
/// Redis; `queued` is an EXEC's transaction). A request refused anyway (unknown, wrong arity,
/// not authenticated) is answered at once, as Redis answers it.
fn held_back(router: &Router, mode: PauseMode, queued: &[Bytes], args: &[Bytes]) -> bool {
    pause::holds(mode, args, |spec| match spec.name {
        "exec" => queued.iter().any(|raw| {
            crate::scripts::decode(router, raw).is_some_and(|(_, q)| may_write(router, &q))
        }),
        _ => may_write(router, args),
    })
}

/// Whether a command may write or replicate something.
fn may_write(router: &Router, args: &[Bytes]) -> bool {
    let Some(spec) = args.first().and_then(|n| table::lookup(n)) else {
        return false;
    };
    match spec.name {
        "eval" => pause::eval_may_write(args.get(1)),
        // The body, when this router has seen it: its shebang tells.
        "evalsha" => pause::eval_may_write(
            args.get(1)
                .and_then(|sha| router.scripts.body(sha))
                .as_ref(),
        ),
        // Its flags, as the library loaded through this router declares them; unknown ones may
        // write.
        "fcall" => {
            args.get(1)
                .and_then(|f| router.scripts.function_no_writes(f))
                != Some(true)
        }
        _ => pause::writes(spec, args),
    }
}
