//! The script thread: one OS thread per node runs every command that needs the Lua VM and that
//! does not run inline on its connection's IO thread ([`super::inline`]): EVAL and its family,
//! FCALL, SCRIPT and FUNCTION but KILL, STATS and HELP, and EXEC when a queued command is one of
//! them, one at a time, as Redis runs scripts. A connection hands its command and session over
//! and awaits the reply without holding its IO thread. While a script runs, other clients'
//! commands wait for it to end; past `busy-reply-threshold` they get BUSY.
//!
//! The VM lives in the node's engine slot (`ScriptState::engine`); whichever thread runs a
//! script takes it from there for the run and puts it back.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringcache_protocol::table::{self, flags};
use ringcache_protocol::Reply;

use super::Engine;
use crate::cmd::args::is;
use crate::state::script::Job;
use crate::state::session::Session;
use crate::state::Shared;

thread_local! {
    /// The VM, while this thread runs scripts with it.
    static ENGINE: RefCell<Option<Box<Engine>>> = const { RefCell::new(None) };
}

/// The engine out of its slot (`None` while another thread has it, or if none was built).
pub(super) fn take_engine(slot: &mut Option<Box<dyn Any + Send>>) -> Option<Box<Engine>> {
    slot.take()?.downcast::<Engine>().ok()
}

/// Makes `engine` this thread's for the runs that follow.
pub(super) fn install(engine: Box<Engine>) {
    ENGINE.with_borrow_mut(|e| *e = Some(engine));
}

/// Takes this thread's engine back, to return it to its slot.
pub(super) fn uninstall() -> Option<Box<Engine>> {
    ENGINE.with_borrow_mut(Option::take)
}

/// Runs `f` with the engine: `None` on a thread that does not hold it (or while it is in use).
pub fn with_engine<R>(f: impl FnOnce(&mut Engine) -> R) -> Option<R> {
    ENGINE.with(|cell| {
        let mut guard = cell.try_borrow_mut().ok()?;
        guard.as_deref_mut().map(f)
    })
}

/// True while this thread holds the VM (the script thread running a command, an IO thread
/// running a script inline).
pub fn on_script_thread() -> bool {
    ENGINE.with(|cell| cell.try_borrow().map_or(true, |e| e.is_some()))
}

/// The script thread's stack (address space; pages are touched only as deep as it goes).
pub const SCRIPT_STACK: usize = 256 * 1024 * 1024;

/// Starts the script thread of `shared` and returns its queue.
fn start(shared: &Shared) -> std::sync::mpsc::Sender<Job> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let kill = shared.scripts.kill.clone();
    let node = Arc::downgrade(&shared.self_arc());
    let spawned = std::thread::Builder::new()
        .name("ringcache-script".into())
        // Deep Lua tables become deep replies, converted recursively (bounded at a depth that
        // needs more than the default 2 MiB).
        .stack_size(SCRIPT_STACK)
        .spawn(move || {
            match Engine::new(kill) {
                Ok(engine) => {
                    if let Some(shared) = node.upgrade() {
                        *crate::keyspace::lock(&shared.scripts.engine) = Some(Box::new(engine));
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot build the Lua VM"),
            }
            while let Ok(job) = rx.recv() {
                let shared = node.upgrade();
                // Held for the job: an IO thread finds the VM taken and hands its script over.
                let mut slot = shared.as_ref().map(|s| {
                    // A std mutex is not fair: an IO thread's next inline script would win.
                    s.scripts.thread_waiting.store(true, SeqCst);
                    let slot = crate::keyspace::lock(&s.scripts.engine);
                    s.scripts.thread_waiting.store(false, SeqCst);
                    slot
                });
                if let Some(engine) = slot.as_mut().and_then(|s| take_engine(s)) {
                    install(engine);
                }
                // A bug in one command must not take scripting down for the node: its caller
                // gets an error (its reply channel is dropped) and the thread goes on.
                let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err();
                if let (Some(slot), Some(engine)) = (slot.as_mut(), uninstall()) {
                    **slot = Some(engine);
                }
                drop(slot);
                if failed {
                    tracing::error!("bug: a command panicked on the script thread");
                    // A script it interrupted is over: other clients must not wait for it.
                    if let Some(shared) = &shared {
                        if shared.scripts.active() {
                            shared.scripts.end();
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the script thread");
    }
    tx
}

/// Queues `job` on the script thread.
fn submit(shared: &Shared, job: Job) -> bool {
    shared.scripts.submit(job, || start(shared)).is_ok()
}

/// Commands that run on the script thread.
fn needs_vm(args: &[Bytes]) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    if [
        "eval",
        "evalsha",
        "eval_ro",
        "evalsha_ro",
        "fcall",
        "fcall_ro",
    ]
    .iter()
    .any(|n| is(name, n))
    {
        return true;
    }
    if is(name, "script") || is(name, "function") {
        return !args
            .get(1)
            .is_some_and(|s| is(s, "kill") || is(s, "stats") || is(s, "help"));
    }
    false
}

/// Whether the connection hands this request to the script thread: a script command that runs
/// now (not queued inside MULTI), or an EXEC whose transaction holds one.
pub fn wants_script_thread(session: &Session, args: &[Bytes]) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    match &session.multi {
        None => needs_vm(args),
        Some(m) => is(name, "exec") && m.queued.iter().any(|q| needs_vm(q)),
    }
}

/// Runs the request on the script thread with the connection's session, and gives the session
/// back with the reply.
pub async fn hand_off(shared: &Arc<Shared>, session: &mut Session, args: &[Bytes]) -> Reply {
    let stand_in = Session::new(session.id, session.client.clone(), session.authenticated);
    let moved = std::mem::replace(session, stand_in);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sh = shared.clone();
    let args = args.to_vec();
    let job: Job = Box::new(move || {
        let mut s = moved;
        let started = std::time::Instant::now();
        let reply = crate::cmd::execute(&sh, &mut s, &args);
        super::inline::learn(&args, started.elapsed());
        let _ = tx.send((s, reply));
    });
    if crate::tick::is_hooked() {
        // An IO thread: its scripts go over in one batch at the end of its tick (one wake of
        // the script thread per tick rather than per script).
        defer(shared, job);
    } else if !submit(shared, job) {
        return Reply::error("ERR the script thread is not running");
    }
    match rx.await {
        Ok((s, reply)) => {
            *session = s;
            reply
        }
        Err(_) => Reply::error("ERR the script failed"),
    }
}

thread_local! {
    /// This IO thread's scripts waiting for the end of its tick, with the node each is for.
    static BATCH: RefCell<Vec<(Arc<Shared>, Job)>> = const { RefCell::new(Vec::new()) };
}

/// Adds `job` to this IO thread's batch, sent to the script thread when the tick ends.
fn defer(shared: &Arc<Shared>, job: Job) {
    let first = BATCH.with_borrow_mut(|b| {
        b.push((shared.clone(), job));
        b.len() == 1
    });
    if first {
        crate::tick::at_park(send_batch);
    }
}

/// Sends this IO thread's batch, one job per node (a process may run several).
fn send_batch() {
    let mut pending = BATCH.with_borrow_mut(std::mem::take);
    while let Some((shared, _)) = pending.first() {
        let shared = shared.clone();
        let (mine, rest): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(s, _)| Arc::ptr_eq(s, &shared));
        pending = rest;
        let jobs: Vec<Job> = mine.into_iter().map(|(_, j)| j).collect();
        let batch: Job = Box::new(move || jobs.into_iter().for_each(|j| j()));
        if !submit(&shared, batch) {
            // The jobs are dropped with their reply channels: their connections answer with an
            // error.
            tracing::error!("the script thread is not running");
        }
    }
}

/// Runs a script or function command from a thread that is not the script thread (a replica
/// applying FUNCTION LOAD from its primary), waiting for it. Only for commands without keys:
/// the caller may hold locks the script thread would wait for.
pub fn run_elsewhere(shared: &Shared, session: &Session, args: &[Bytes]) -> Reply {
    if on_script_thread() {
        // It would wait for itself.
        return crate::cmd::execute(shared, &mut clone_session(session), args);
    }
    let mut copy = clone_session(session);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let sh = shared.self_arc();
    let args = args.to_vec();
    let job: Job = Box::new(move || {
        let reply = crate::cmd::execute(&sh, &mut copy, &args);
        let _ = tx.send(reply);
    });
    if !submit(shared, job) {
        return Reply::error("ERR the script thread is not running");
    }
    rx.recv()
        .unwrap_or_else(|_| Reply::error("ERR the script failed"))
}

/// A session standing in for `session` on another thread.
fn clone_session(session: &Session) -> Session {
    let mut copy = Session::new(session.id, session.client.clone(), true);
    copy.from_primary = session.from_primary;
    copy.user = session.user.clone();
    copy.proto = session.proto;
    copy
}

/// How long a script may run before other clients get BUSY (`busy-reply-threshold`).
fn threshold(shared: &Shared) -> Duration {
    Duration::from_millis(
        shared
            .scripts
            .busy_ms
            .load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// Commands a client may run while a script is busy (Redis's `allow-busy` flag).
pub fn allowed_while_busy(args: &[Bytes]) -> bool {
    let Some(spec) = args.first().and_then(|n| table::lookup(n)) else {
        return false;
    };
    let spec = match args.get(1) {
        Some(sub) => table::subcommand(spec, sub).unwrap_or(spec),
        None => spec,
    };
    spec.has(flags::ALLOW_BUSY)
}

/// The BUSY error for the running script.
fn busy(shared: &Shared, args: &[Bytes]) -> Reply {
    if let Some(spec) = args.first().and_then(|n| table::lookup(n)) {
        shared.stats.rejected(spec);
    }
    let function = shared.scripts.running().is_some_and(|r| r.is_function);
    Reply::error(if function {
        "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    } else {
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    })
}

/// BUSY if a script has run past the threshold (for a request about to be queued behind it).
pub fn busy_reply(shared: &Shared, args: &[Bytes]) -> Option<Reply> {
    let elapsed = shared.scripts.elapsed()?;
    (elapsed >= threshold(shared) && !allowed_while_busy(args)).then(|| busy(shared, args))
}

/// Waits while the script running now runs (its keys are locked): `None` once it ended, BUSY
/// once it runs past the threshold.
pub async fn wait_turn(shared: &Shared, args: &[Bytes]) -> Option<Reply> {
    let scripts = &shared.scripts;
    let waited_on = scripts.seq();
    let limit = threshold(shared);
    loop {
        let ended = scripts.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if !scripts.active() || scripts.seq() != waited_on {
            return None;
        }
        let elapsed = scripts.elapsed()?;
        if elapsed >= limit {
            return Some(busy(shared, args));
        }
        tokio::select! {
            _ = &mut ended => {}
            _ = tokio::time::sleep(limit - elapsed) => {}
        }
    }
}
