//! CLIENT PAUSE timeout [WRITE|ALL] and CLIENT UNPAUSE (the state is `state::pause`), and which
//! commands a pause holds back.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_protocol::table::{self, flags, CommandSpec};
use ringcache_protocol::Reply;

use super::args::is;
use super::ctx::Ctx;
use crate::state::pause::PauseMode;
use crate::state::session::Session;
use crate::state::Shared;

pub fn client_pause(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if a.len() < 3 || a.len() > 4 {
        return super::args::arity_error("client|pause");
    }
    let ms = match super::args::timeout_ms(&a[2]) {
        Ok(ms) => ms,
        Err(e) => return e,
    };
    let mode = match a.get(3) {
        None => PauseMode::All,
        Some(m) if is(m, "write") => PauseMode::Write,
        Some(m) if is(m, "all") => PauseMode::All,
        Some(_) => return Reply::error("ERR CLIENT PAUSE mode must be WRITE or ALL"),
    };
    // Past a century a deadline is as good as none.
    let until = Instant::now() + Duration::from_millis(ms.min(3_153_600_000_000));
    ctx.shared.pause.start(until, mode);
    Reply::OK
}

pub fn client_unpause(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if a.len() != 2 {
        return super::args::arity_error("client|unpause");
    }
    ctx.shared.pause.stop();
    Reply::OK
}

/// Whether `args` waits under a pause of `mode`: every command a client may run under ALL;
/// under WRITE the ones that write or may replicate (PUBLISH, PFCOUNT, a script not declared
/// `no-writes`, EXEC of such commands; in MULTI too, before they are queued, as in Redis). A request refused anyway (unknown, wrong arity, not
/// authenticated) is answered at once, as Redis answers it.
pub fn held_back(shared: &Shared, mode: PauseMode, session: &Session, args: &[Bytes]) -> bool {
    if session.from_primary || !session.authenticated {
        return false;
    }
    let Some(spec) = args.first().and_then(|n| table::lookup(n)) else {
        return false;
    };
    if !spec.arity_ok(args.len()) {
        return false;
    }
    if mode == PauseMode::All {
        return true;
    }
    if spec.name == "exec" {
        return session
            .multi
            .as_ref()
            .is_some_and(|m| m.queued.iter().any(|q| may_write(shared, q)));
    }
    may_write(shared, args)
}

/// Whether a command may write or replicate something.
fn may_write(shared: &Shared, args: &[Bytes]) -> bool {
    let Some(spec) = args.first().and_then(|n| table::lookup(n)) else {
        return false;
    };
    if matches!(spec.name, "evalsha" | "fcall") {
        // Held unless the cached script or the function is known to declare `no-writes`.
        return crate::script::declared_no_writes(shared, args) != Some(true);
    }
    if matches!(spec.name, "eval") {
        // A script declares `no-writes` in its shebang; without one it may write.
        return args.get(1).is_none_or(|body| {
            crate::script::shebang::eval_shebang(body).map_or(true, |(f, _)| !f.no_writes)
        });
    }
    let sub: &CommandSpec = table::counted_as(spec, args);
    spec.has(flags::WRITE) || sub.has(flags::WRITE) || may_replicate(spec)
}

/// Whether `spec` is one of Redis's `may-replicate` commands.
pub fn may_replicate(spec: &CommandSpec) -> bool {
    MAY_REPLICATE.contains(&spec.name)
}

/// Redis 7.0's `may-replicate` commands (not shown by COMMAND INFO, so not in the table):
/// PFCOUNT may rewrite its sketch, PUBLISH goes down the replication stream, and a script or
/// function may write (EVALSHA and FCALL unless they are known to declare `no-writes`).
const MAY_REPLICATE: [&str; 6] = ["pfcount", "publish", "spublish", "eval", "evalsha", "fcall"];

/// The pause `args` must wait out now, if any.
pub fn must_wait(shared: &Shared, session: &Session, args: &[Bytes]) -> bool {
    shared
        .pause
        .current()
        .is_some_and(|(_, mode)| held_back(shared, mode, session, args))
}
