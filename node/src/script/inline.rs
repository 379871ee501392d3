//! Scripts run on the connection's own IO thread when the VM is free: handing one to the script
//! thread costs two thread wakes, more than a short script itself (an EVALSHA of three commands
//! took 27 µs of node CPU that way against 18 µs in redis-server).
//!
//! A script that runs inline stalls the other clients of its IO thread, who could then neither
//! get BUSY nor send SCRIPT KILL. So only a script seen to end well within [`BUDGET`] on the
//! script thread runs inline (a script's first run is always there), and an inline run has that
//! budget: a script past it that has written nothing stops and runs again, from the start, on
//! the script thread, where it may run as long as it likes. The first attempt is not counted,
//! timed or shown (its `redis.call`s' stats and keyspace hits are taken back; a `redis.log` line
//! or an ACL log entry it made stays), and it never publishes: a PUBLISH moves the script first,
//! so a script that published can still be killed, as in Redis. A script past its budget goes
//! to the script thread from then on, until it is seen short there again. One that has written
//! finishes inline, as it would in Redis's single thread (its IO thread's other clients wait for
//! it without BUSY replies: the one difference, for a script once short that now writes and then
//! runs long; SCRIPT KILL could not stop it in Redis either).

use std::cell::Cell;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_protocol::Reply;

use crate::cmd::args::is;
use crate::state::session::Session;
use crate::state::Shared;

/// How long a script may run inline before it moves to the script thread.
const BUDGET: Duration = Duration::from_millis(2);

/// Scripts remembered as short, at most (past it, a new one stays on the script thread).
const MAX_SHORT: usize = 4096;

thread_local! {
    /// While a script runs inline and may still move: when its budget ends.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The inline script is stopping, to run again on the script thread.
    static MOVING: Cell<bool> = const { Cell::new(false) };
    /// It is stopping to publish: it stays on the script thread from now on.
    static PUBLISHED: Cell<bool> = const { Cell::new(false) };
}

/// True once the inline script on this thread must stop (its budget spent, nothing changed);
/// always false on the script thread.
pub fn must_stop() -> bool {
    if MOVING.get() {
        return true;
    }
    match DEADLINE.get() {
        Some(d) if Instant::now() >= d => {
            MOVING.set(true);
            true
        }
        _ => false,
    }
}

/// The running script wrote: run again, it would write twice, so it stays.
pub fn acted() {
    DEADLINE.set(None);
}

/// True while an inline script may still move: its `redis.call`s' stats wait for its end.
pub fn attempting() -> bool {
    DEADLINE.get().is_some() || MOVING.get()
}

/// The inline script is about to publish: true if it moves to the script thread instead (it
/// has written nothing), so that a script that published runs where SCRIPT KILL reaches it.
pub fn move_before_publish() -> bool {
    if DEADLINE.get().is_some() {
        MOVING.set(true);
        PUBLISHED.set(true);
        return true;
    }
    false
}

/// SCRIPT KILL reached the script while it was moving: it ends killed, not run again.
pub fn killed() {
    MOVING.set(false);
}

/// The command just run was an inline script that stopped to move (its reply means nothing).
pub fn moving() -> bool {
    MOVING.get()
}

/// What a script is remembered by: its SHA, or `f:` and a function's name.
pub fn script_id(args: &[Bytes]) -> Option<Vec<u8>> {
    let name = args.first()?;
    let arg = args.get(1)?;
    if is(name, "evalsha") || is(name, "evalsha_ro") {
        Some(arg.to_ascii_lowercase())
    } else if is(name, "eval") || is(name, "eval_ro") {
        Some(super::sha1::hex(arg).to_vec())
    } else if is(name, "fcall") || is(name, "fcall_ro") {
        Some([b"f:".as_slice(), arg].concat())
    } else {
        None
    }
}

/// Runs `args` on this IO thread if it is a script (EVAL, EVALSHA, FCALL and their read-only
/// forms, outside MULTI) known to be short and the VM is free; `None` sends it to the script
/// thread instead. MONITOR is fed as the command starts, so with monitors a script is never
/// tried inline (a moved one would show twice).
pub fn run(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Option<Reply> {
    // Only a node IO thread has the stack deep replies need (not a runtime's worker with
    // `--io-threads 0`); and the script thread, once waiting for the VM, goes first.
    if session.multi.is_some()
        || shared.monitors.active()
        || !crate::tick::is_hooked()
        || shared
            .scripts
            .thread_waiting
            .load(std::sync::atomic::Ordering::SeqCst)
    {
        return None;
    }
    let id = script_id(args)?;
    let mut slot = shared.scripts.engine.try_lock().ok()?;
    let engine = super::host::take_engine(&mut slot)?;
    if !engine.short.contains(id.as_slice()) {
        *slot = Some(engine);
        return None;
    }
    super::host::install(engine);
    let ks = &shared.keyspace.stats;
    let (hits, misses) = (ks.hits.load(Relaxed), ks.misses.load(Relaxed));
    let started = Instant::now();
    DEADLINE.set(Some(started + BUDGET));
    MOVING.set(false);
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::cmd::execute(shared, session, args)
    }));
    DEADLINE.set(None);
    let moved = MOVING.replace(false);
    let published = PUBLISHED.replace(false);
    if moved {
        // Counted again by the run that counts (other commands wait while a script runs).
        ks.hits
            .fetch_sub(ks.hits.load(Relaxed).saturating_sub(hits), Relaxed);
        ks.misses
            .fetch_sub(ks.misses.load(Relaxed).saturating_sub(misses), Relaxed);
    }
    if let Some(mut engine) = super::host::uninstall() {
        if moved || started.elapsed() > BUDGET {
            engine.short.remove(id.as_slice());
        }
        if published && engine.publishers.len() < MAX_SHORT {
            engine.publishers.insert(id.into_boxed_slice());
        }
        *slot = Some(engine);
    }
    match ran {
        Ok(_) if moved => None,
        Ok(reply) => Some(reply),
        Err(_) => {
            tracing::error!("bug: a script panicked on an IO thread");
            if shared.scripts.active() {
                shared.scripts.end();
            }
            Some(Reply::error("ERR the script failed"))
        }
    }
}

/// After a command ran on the script thread for `elapsed`: a script that ended well within the
/// budget (a quarter: one near it could pass it inline and run twice each time) may run inline
/// from now on.
pub fn learn(args: &[Bytes], elapsed: Duration) {
    let Some(id) = script_id(args) else {
        return;
    };
    super::host::with_engine(|engine| {
        if elapsed > BUDGET / 4 || engine.publishers.contains(id.as_slice()) {
            engine.short.remove(id.as_slice());
        } else if engine.short.len() < MAX_SHORT {
            engine.short.insert(id.into_boxed_slice());
        }
    });
}

/// Function libraries changed: a function by a known name may now be another.
pub fn forget_functions(engine: &mut super::Engine) {
    engine.short.retain(|id| !id.starts_with(b"f:"));
    engine.publishers.retain(|id| !id.starts_with(b"f:"));
}
