//! `redis.call` and `redis.pcall`: one command from a running script, checked as Redis checks
//! it (no NOSCRIPT command, no write from a read-only script, a replica's and `maxmemory`'s
//! refusals, the node's ownership of every key), run through the script's one [`Db`] view so
//! the script is atomic, its effect collected for the replicas.
//!
//! [`Db`]: crate::keyspace::Db

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use ringcache_luacall::{ArgError, Outcome};
use ringcache_protocol::acl::Reason;
use ringcache_protocol::table::{self, flags, CommandSpec};
use ringcache_protocol::{Protocol, Reply};

use super::convert::coded_error;
use crate::cmd::ctx::Ctx;

/// One running script's state, which each of its commands reads and adds to.
pub struct RunState<'r, 'a> {
    pub ctx: &'r mut Ctx<'a>,
    /// Writes are refused (EVAL_RO, FCALL_RO, `no-writes`).
    pub read_only: bool,
    /// Writes may grow memory past `maxmemory` (`allow-oom`).
    pub allow_oom: bool,
    pub resp: std::sync::Arc<std::sync::atomic::AtomicU8>,
    /// What the script's writes propagate as, in order.
    pub effects: Vec<Vec<Bytes>>,
    pub dirty: u64,
    /// Error replies its commands gave: counted in INFO errorstats once the script's own reply
    /// is known (an error the script passes on is counted once, as its reply).
    pub errors: Vec<String>,
    /// `<epoch> <owner>` of the first key it touched that another shard owns, while it had
    /// changed nothing: the script can run again there (see [`ELSEWHERE`]).
    pub elsewhere: Option<String>,
    /// It ran a command with an effect (a write, a publish): it cannot run again elsewhere.
    pub acted: bool,
    /// Its commands' stats, while it runs inline and may still run again (see `inline`).
    pub uncounted: Vec<(&'static CommandSpec, Counted)>,
}

/// How one of a script's commands counts in INFO commandstats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Ran,
    Failed,
    Rejected,
}

impl RunState<'_, '_> {
    /// Counts a command now, or once the script cannot run again.
    fn count(&mut self, spec: &'static CommandSpec, how: Counted) {
        if super::inline::attempting() {
            self.uncounted.push((spec, how));
        } else {
            record(self.ctx.shared, spec, how);
        }
    }
}

/// Counts a script's command in INFO commandstats (not timed: the EVAL or FCALL around it is).
pub fn record(shared: &crate::state::Shared, spec: &'static CommandSpec, how: Counted) {
    match how {
        Counted::Rejected => shared.stats.rejected(spec),
        _ => shared.stats.ran(spec, how == Counted::Failed, 0),
    }
}

/// The reply that sends a script to another shard: it touched a key it did not declare, owned
/// by shard `<owner>` under ring `<epoch>`, before changing anything, so a router can run it
/// there instead (Redis runs whatever keys a script names; a router places only declared ones).
pub const ELSEWHERE: &str = "SCRIPTSHARD";

/// A failed call: the error reply's text, code included.
type Failed = String;

/// How long a script retries the lock of a key it did not declare before the call fails.
const LOCK_RETRIES: u32 = 200;
const LOCK_PAUSE: Duration = Duration::from_micros(20);

/// Answers one `redis.call` or `redis.pcall` of the running script (`ringcache_luacall` raises
/// or returns the error).
pub fn redis_call(st: &mut RunState, args: Result<Vec<Bytes>, ArgError>) -> Outcome {
    match dispatch(st, args) {
        Ok(reply) => Outcome::Reply {
            reply,
            resp3: st.resp.load(Relaxed) == 3,
        },
        Err(text) => {
            st.errors.push(text.clone());
            Outcome::Error(text)
        }
    }
}

fn dispatch(st: &mut RunState, args: Result<Vec<Bytes>, ArgError>) -> Result<Reply, Failed> {
    let fail = |text: &str| Err(coded_error(text));
    let argv = match args {
        Ok(argv) => argv,
        Err(ArgError::Empty) => {
            return fail("Please specify at least one argument for this redis lib call")
        }
        Err(ArgError::NotStringOrNumber) => {
            return fail("Lua redis lib command arguments must be strings or integers")
        }
    };
    let shared = st.ctx.shared;
    if shared.scripts.kill.load(Relaxed) || super::inline::must_stop() {
        return fail(super::vm::KILLED);
    }
    let Some(spec) = table::lookup(&argv[0]) else {
        return fail("Unknown Redis command called from script");
    };
    if !spec.arity_ok(argv.len()) {
        return fail("Wrong number of args calling Redis command from script");
    }
    let effective = match argv.get(1) {
        Some(sub) => table::subcommand(spec, sub).unwrap_or(spec),
        None => spec,
    };
    if effective.has(flags::NOSCRIPT) || spec.has(flags::NOSCRIPT) {
        return fail("This Redis command is not allowed from script");
    }
    if let Some(refused) = refusal(st, spec, effective, &argv) {
        st.count(effective, Counted::Rejected);
        return fail(&format!("-{refused}"));
    }
    let writes = spec.is_write() || effective.is_write();
    if !writes && spec.has(flags::PUBSUB) && super::inline::move_before_publish() {
        return fail(super::vm::KILLED);
    }
    if writes || spec.has(flags::PUBSUB) {
        st.acted = true;
        // Run again, it would write twice: it finishes here.
        super::inline::acted();
    }
    let reply = run(st, spec, &argv);
    // Not timed: the EVAL or FCALL around it is.
    st.count(
        effective,
        if reply.is_error() {
            Counted::Failed
        } else {
            Counted::Ran
        },
    );
    match reply {
        Reply::Error(e) => Err(e),
        reply => Ok(reply),
    }
}

/// Why this command may not run in this script (the error text, code included).
fn refusal(
    st: &mut RunState,
    spec: &'static CommandSpec,
    effective: &CommandSpec,
    argv: &[Bytes],
) -> Option<String> {
    let shared = st.ctx.shared;
    if let Some(user) = st.ctx.session.user.as_deref() {
        if let Err(d) = user.check(spec, argv) {
            let info = st.ctx.session.client.info_line();
            ringcache_protocol::acl::command::record_refusal(
                &shared.acl,
                user,
                info,
                &d,
                spec,
                argv,
                ringcache_protocol::acl::log::LUA,
            );
            return Some(
                match d.reason {
                    Reason::Command => "ERR The user executing the script can't run this command or subcommand",
                    Reason::Key => "ERR The user executing the script can't access at least one of the keys mentioned in the command arguments",
                    Reason::Channel => "ERR The user executing the script can't publish to the channel mentioned in the command",
                    Reason::Auth => "ERR The user executing the script is lacking the permissions for the command",
                }
                .into(),
            );
        }
    }
    if st.read_only && ringcache_protocol::pause::may_replicate(spec) {
        // Redis 7.0 counts PUBLISH and PFCOUNT as writes here (so CLIENT PAUSE WRITE may let
        // read-only scripts run).
        return Some("ERR Write commands are not allowed from read-only scripts.".into());
    }
    let write = spec.is_write() || effective.is_write();
    if write {
        if st.read_only {
            return Some("ERR Write commands are not allowed from read-only scripts.".into());
        }
        if let Some(refused) = crate::replication::write_refusal(shared, st.ctx.session) {
            return Some(refused.into());
        }
    }
    let grows = spec.has(flags::DENYOOM) || effective.has(flags::DENYOOM);
    if grows
        && !st.allow_oom
        && !st.ctx.session.from_primary
        && shared.keyspace.over_limit()
        && !crate::cmd::evict(shared)
    {
        return Some("OOM command not allowed when used memory > 'maxmemory'.".into());
    }
    if let Some(Reply::Error(e)) = crate::topology::check_owner(shared, st.ctx.session, spec, argv)
    {
        if !st.acted && st.elsewhere.is_none() {
            st.elsewhere = e.strip_prefix("WRONGSHARD ").map(str::to_string);
        }
        return Some(e);
    }
    if crate::cmd::is_keyspace_wide(spec) || crate::cmd::reads_any_key(spec, argv) {
        // Every bucket: one at a time while the script holds none; all at once, without
        // waiting, once it holds some (out of order otherwise).
        let db = &mut st.ctx.db;
        if db.held_buckets().is_empty() || db.holds_all() {
            return None;
        }
        for _ in 0..LOCK_RETRIES {
            if db.try_add_all() {
                return None;
            }
            std::thread::sleep(LOCK_PAUSE);
        }
        return Some("ERR keys the script needs are held by other commands; try again".into());
    }
    for i in spec.keys(argv) {
        if !lock_key(st, &argv[i]) {
            return Some(format!(
                "ERR the key '{}' is held by another command; try the script again",
                String::from_utf8_lossy(&argv[i])
            ));
        }
    }
    None
}

/// Adds `key`'s bucket to the script's held set, retrying briefly while another command has it.
fn lock_key(st: &mut RunState, key: &[u8]) -> bool {
    for _ in 0..LOCK_RETRIES {
        if st.ctx.db.try_add_key(key) {
            return true;
        }
        std::thread::sleep(LOCK_PAUSE);
    }
    false
}

/// Runs the command against the script's view, collecting what it changed.
fn run(st: &mut RunState, spec: &'static CommandSpec, argv: &[Bytes]) -> Reply {
    let shared = st.ctx.shared;
    if spec.is_write() {
        crate::replication::before_write(shared, &mut st.ctx.db);
    }
    let session = &mut *st.ctx.session;
    let (proto, in_exec) = (session.proto, session.in_exec);
    session.in_script = true;
    session.proto = if st.resp.load(Relaxed) == 3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    };
    // Blocking commands never block inside a script.
    session.in_exec = true;
    let reply = crate::cmd::run(st.ctx, spec, argv);
    if shared.monitors.active() {
        // Shown as Redis shows a script's calls: from `lua`.
        crate::cmd::pubsub::feed_monitors(shared, st.ctx.session, spec, argv);
    }
    let session = &mut *st.ctx.session;
    session.proto = proto;
    session.in_exec = in_exec;
    session.in_script = false;
    let db = &mut st.ctx.db;
    if db.effects.dirty > 0 {
        shared.scripts.wrote.store(true, Relaxed);
    }
    st.dirty += db.effects.dirty;
    if shared.repl.has_replicas() {
        st.effects
            .extend(crate::replication::propagation(db, Some((spec, argv))));
    } else {
        let e = &mut db.effects;
        e.before.clear();
        e.rewrite = None;
        e.dirty = 0;
    }
    reply
}
