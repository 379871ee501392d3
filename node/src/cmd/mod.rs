//! Command dispatch: one function per command, looked up through the shared command table
//! (arity, flags, key positions), each parsing its own arguments and answering with Redis 7's
//! replies.
//!
//! [`execute`] checks a request (arity, AUTH, a replica refusing writes, a key this node does not
//! own), queues it inside MULTI, or runs it: it locks the buckets of the command's keys in a
//! [`Db`], runs the command against it, and then [`effects::finish`] hands on what the command
//! changed (replicas, WATCH, clients blocked on those keys) before the locks are released.

pub mod args;
pub mod bitfield;
pub mod bitmaps;
pub mod blocking;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod ctx;
pub mod effects;
pub mod geo;
pub mod hashes;
pub mod hyperloglog;
pub mod keys;
pub mod latency;
pub mod lcs;
pub mod lists;
pub mod migrate;
pub mod multi;
pub mod notify;
pub mod pause;
pub mod pubsub;
pub mod replication;
pub mod server;
pub mod sets;
pub mod sort;
pub mod streams;
pub mod strings;
pub mod zsets;

use bytes::Bytes;
use ringcache_protocol::acl::log as acl_log;
use ringcache_protocol::table::{self, flags, CommandSpec};
use ringcache_protocol::Reply;

use crate::keyspace::{now_ms, Db, Expiry};
use crate::state::pubsub::Kind;
use crate::state::session::{Flow, Session};
use crate::state::Shared;
use args::{arity_error, int_arg, is, unknown_command};
use ctx::Ctx;

/// Runs one request from a client: the node's whole request path after decoding.
pub fn execute(shared: &Shared, session: &mut Session, args: &[Bytes]) -> Reply {
    let Some(name) = args.first() else {
        return Reply::NilArray;
    };
    let Some(spec) = table::lookup(name).map(|s| subcommand(s, args)) else {
        if is(name, "post") || is(name, "host:") {
            tracing::warn!(
                "possible cross-protocol attack (HTTP request on the RESP port); closing"
            );
            session.flow = Flow::CloseNow;
            return Reply::Nil;
        }
        multi::queue_failed(session);
        return unknown_command(args);
    };
    session.last_cmd = spec.name;
    if let Some(refused) = refusal(shared, session, spec, args) {
        multi::queue_failed(session);
        shared.stats.rejected(table::counted_as(spec, args));
        return refused;
    }
    if session.multi.is_some() && !multi::runs_now(spec) {
        return multi::queue(session, spec, args);
    }
    // Redis shows a script's EVAL or FCALL before the calls it makes, anything else once it ran.
    let script = ringcache_protocol::monitor::is_script(spec);
    if script && shared.monitors.active() {
        pubsub::feed_monitors(shared, session, spec, args);
    }
    let started = std::time::Instant::now();
    let reply = run_command(shared, session, spec, args);
    if script && crate::script::inline::moving() {
        // It runs again on the script thread: that run is the one counted.
        return reply;
    }
    let micros = started.elapsed().as_micros() as u64;
    shared
        .stats
        .ran(table::counted_as(spec, args), reply.is_error(), micros);
    if !script && shared.monitors.active() {
        pubsub::feed_monitors(shared, session, spec, args);
    }
    // A command that blocked is logged when it is served (`server::serve_session`), as Redis
    // logs it then.
    if session.blocked.is_none() {
        log_if_slow(shared, session, spec, args, micros);
    }
    reply
}

/// Keeps the command in SLOWLOG if it ran past `slowlog-log-slower-than`.
pub fn log_if_slow(
    shared: &Shared,
    session: &Session,
    spec: &CommandSpec,
    args: &[Bytes],
    micros: u64,
) {
    if shared.slowlog.is_slow(micros) && !spec.has(flags::SKIP_SLOWLOG) {
        let client = &session.client;
        let name = ringcache_protocol::clients::lock(&client.name).clone();
        shared
            .slowlog
            .add(micros, args, client.addr.to_string(), name);
    }
}

/// Container commands whose subcommands run as commands of their own (their flags, arity and
/// key positions): XGROUP CREATE writes, XINFO STREAM reads a key.
pub(crate) fn subcommand(spec: &'static CommandSpec, args: &[Bytes]) -> &'static CommandSpec {
    match (spec.name, args.get(1)) {
        ("xgroup" | "xinfo", Some(sub)) => table::lookup_sub(&args[0], sub).unwrap_or(spec),
        _ => spec,
    }
}

/// Why a command may not run now: arity, AUTH, a replica refusing writes, a key this node does
/// not own, memory past `maxmemory` with nothing left to evict, RESP2's subscribed mode.
fn refusal(
    shared: &Shared,
    session: &Session,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> Option<Reply> {
    if !spec.arity_ok(args.len()) {
        return Some(arity_error(spec.name));
    }
    if !session.authenticated && !spec.has(flags::NO_AUTH) && spec.name != "quit" {
        return Some(Reply::error("NOAUTH Authentication required."));
    }
    let context = if session.multi.is_some() {
        acl_log::MULTI
    } else {
        acl_log::TOPLEVEL
    };
    if let Some(reply) = acl_check(shared, session, spec, args, context) {
        return Some(reply);
    }
    if let Some(reply) = crate::replication::check_write(shared, session, spec) {
        return Some(reply);
    }
    if let Some(reply) = crate::topology::check_owner(shared, session, spec, args) {
        return Some(reply);
    }
    if pubsub::in_resp2_subscribed_mode(session) && !pubsub::allowed_while_subscribed(spec.name) {
        return Some(pubsub::subscribed_refusal(spec, args));
    }
    if !session.from_primary && shared.keyspace.over_limit() && !evict(shared) {
        let may_grow = spec.has(flags::DENYOOM)
            || (spec.name == "exec"
                && session.multi.as_ref().is_some_and(|m| {
                    m.queued
                        .iter()
                        .any(|c| table::lookup(&c[0]).is_some_and(|s| s.has(flags::DENYOOM)))
                }));
        if may_grow {
            return Some(Reply::error(
                "OOM command not allowed when used memory > 'maxmemory'.",
            ));
        }
    }
    None
}

/// The session's user's permission for the request (`None`: it may run), as
/// [`ringcache_protocol::acl::command::check`].
pub fn acl_check(
    shared: &Shared,
    session: &Session,
    spec: &'static CommandSpec,
    args: &[Bytes],
    context: &'static str,
) -> Option<Reply> {
    let user = session.user.as_deref()?;
    ringcache_protocol::acl::command::check(
        &shared.acl,
        user,
        || session.client.info_line(),
        spec,
        args,
        context,
    )
}

/// Evicts keys by the policy until the keyspace is under `maxmemory`; false if it cannot (no
/// policy, nothing evictable).
pub fn evict(shared: &Shared) -> bool {
    let ks = &shared.keyspace;
    // Bounded per command, as Redis bounds its eviction effort; the next command goes on.
    for _ in 0..10_000 {
        if !ks.over_limit() {
            return true;
        }
        let now = now_ms();
        let Some(key) = ks.eviction_candidate(now) else {
            return false;
        };
        let mut db = Db::for_keys(ks, [&key[..]], now, Expiry::Delete);
        if db.remove(&key).is_some() {
            ks.stats
                .evicted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if !db.effects.notes.is_empty() {
                db.effects.notes.clear();
                notify::evicted(shared, &key);
            }
            db.propagate_as(vec![
                Bytes::from_static(b"DEL"),
                Bytes::copy_from_slice(&key),
            ]);
        }
        let _ = crate::replication::release(shared, db, None);
    }
    !ks.over_limit()
}

/// How a session's commands treat keys past their deadline.
pub fn expiry(shared: &Shared, session: &Session) -> Expiry {
    if session.from_primary {
        Expiry::Keep
    } else if shared.repl.is_replica() || shared.pause.writes_paused() {
        // Under CLIENT PAUSE nothing is deleted either: it would reach the replicas.
        Expiry::Hide
    } else {
        Expiry::Delete
    }
}

/// Commands that see the whole keyspace and must hold every bucket inside a transaction.
/// Whether the command reads keys its arguments do not name (SORT ... BY/GET pattern).
pub fn reads_any_key(spec: &CommandSpec, args: &[Bytes]) -> bool {
    matches!(spec.name, "sort" | "sort_ro") && sort::needs_every_key(args)
}

pub fn is_keyspace_wide(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "flushall" | "flushdb" | "keys" | "scan" | "randomkey" | "dbsize"
    )
}

/// Locks the command's keys, runs it and hands its effects on.
fn run_command(
    shared: &Shared,
    session: &mut Session,
    spec: &'static CommandSpec,
    args: &[Bytes],
) -> Reply {
    let ks = &shared.keyspace;
    let now = now_ms();
    let exp = expiry(shared, session);
    let mut db = if matches!(spec.name, "flushall" | "flushdb") || reads_any_key(spec, args) {
        // Atomic: no write may land between a bucket's clear and the flush's propagation; a
        // SORT with patterns reads keys its arguments do not name.
        Db::all(ks, now, exp)
    } else {
        Db::for_keys(ks, spec.keys(args).map(|i| &args[i]), now, exp)
    };
    if spec.is_write() {
        crate::replication::before_write(shared, &mut db);
    }
    let mut ctx = Ctx {
        shared,
        session,
        db,
    };
    let reply = run(&mut ctx, spec, args);
    effects::finish(ctx.shared, ctx.db, spec, args);
    reply
}

/// Runs one command no client sent (a replica applying its primary's stream; the reply goes
/// nowhere): the node's [`crate::state::Apply`], given to its state when the node is built.
pub fn apply(shared: &Shared, session: &mut Session, args: &[Bytes]) {
    let _ = execute(shared, session, args);
}

/// The command itself, against the locks already taken.
pub fn run(ctx: &mut Ctx, spec: &'static CommandSpec, a: &[Bytes]) -> Reply {
    use cluster as cl;
    use connection as c;
    use keys as k;
    use replication as r;
    use server as s;
    use strings as st;
    let name = spec.name;
    match name {
        "get" => st::get(ctx, a),
        "set" => st::set(ctx, a),
        "setnx" => st::setnx(ctx, a),
        "setex" => st::setex(ctx, a, 1000, "setex"),
        "psetex" => st::setex(ctx, a, 1, "psetex"),
        "getex" => st::getex(ctx, a),
        "getdel" => st::getdel(ctx, a),
        "getset" => st::getset(ctx, a),
        "mget" => st::mget(ctx, a),
        "mset" => st::mset(ctx, a, false),
        "msetnx" => st::mset(ctx, a, true),
        "append" => st::append(ctx, a),
        "strlen" => st::strlen(ctx, a),
        "getrange" | "substr" => st::getrange(ctx, a),
        "setrange" => st::setrange(ctx, a),
        "incr" => st::incrby(ctx, a, 1),
        "decr" => st::incrby(ctx, a, -1),
        "incrby" => match int_arg(&a[2]) {
            Ok(n) => st::incrby(ctx, a, n),
            Err(e) => e,
        },
        "decrby" => match int_arg(&a[2]) {
            Ok(i64::MIN) => Reply::error("ERR decrement would overflow"),
            Ok(n) => st::incrby(ctx, a, -n),
            Err(e) => e,
        },
        "incrbyfloat" => st::incrbyfloat(ctx, a),
        "lcs" => st::lcs(ctx, a),
        "del" | "unlink" => k::del(ctx, a),
        "exists" => k::exists(ctx, a),
        "touch" => k::touch(ctx, a),
        "type" => k::type_(ctx, a),
        "expire" => k::expire(ctx, a, 1000, false, "expire"),
        "pexpire" => k::expire(ctx, a, 1, false, "pexpire"),
        "expireat" => k::expire(ctx, a, 1000, true, "expireat"),
        "pexpireat" => k::expire(ctx, a, 1, true, "pexpireat"),
        "ttl" => k::ttl(ctx, a, 1000, false),
        "pttl" => k::ttl(ctx, a, 1, false),
        "expiretime" => k::ttl(ctx, a, 1000, true),
        "pexpiretime" => k::ttl(ctx, a, 1, true),
        "persist" => k::persist(ctx, a),
        "rename" => k::rename(ctx, a, false),
        "renamenx" => k::rename(ctx, a, true),
        "copy" => k::copy(ctx, a),
        "keys" => k::keys(ctx, a),
        "scan" => k::scan(ctx, a),
        "randomkey" => k::randomkey(ctx),
        "dbsize" => Reply::Int(ctx.db.keyspace().len() as i64),
        "flushdb" | "flushall" => k::flush(ctx, a),
        "object" => k::object(ctx, a),
        "dump" => k::dump(ctx, a),
        "restore" => k::restore(ctx, a),
        "migrate" => migrate::migrate(ctx, a),
        "slowlog" => server::slowlog(ctx, a),
        "multi" => multi::multi(ctx),
        "exec" => multi::exec(ctx),
        "discard" => multi::discard(ctx),
        "watch" => multi::watch(ctx, a),
        "unwatch" => multi::unwatch(ctx),
        "ping" => c::ping(ctx, a),
        "echo" => Reply::Bulk(a[1].clone()),
        "hello" => c::hello(ctx, a),
        "auth" => c::auth(ctx, a),
        "select" => c::select(a),
        "acl" => ringcache_protocol::acl::command::acl(ctx, a),
        "quit" => {
            ctx.session.flow = Flow::CloseAfterReply;
            Reply::OK
        }
        "reset" => {
            multi::reset(ctx);
            pubsub::unsubscribe_all(ctx.shared, ctx.session);
            ctx.session.reply = crate::state::session::ReplyMode::On;
            c::reset(ctx)
        }
        "monitor" => pubsub::monitor(ctx),
        "subscribe" => pubsub::subscribe(ctx, a, Kind::Channel),
        "psubscribe" => pubsub::subscribe(ctx, a, Kind::Pattern),
        "ssubscribe" => pubsub::subscribe(ctx, a, Kind::Shard),
        "unsubscribe" => pubsub::unsubscribe(ctx, a, Kind::Channel),
        "punsubscribe" => pubsub::unsubscribe(ctx, a, Kind::Pattern),
        "sunsubscribe" => pubsub::unsubscribe(ctx, a, Kind::Shard),
        "publish" => pubsub::publish(ctx, a),
        "spublish" => pubsub::spublish(ctx, a),
        "pubsub" => pubsub::pubsub(ctx, a),
        "client" if a.len() > 1 && is(&a[1], "reply") => c::client_reply(ctx, a),
        "client" if a.len() > 1 && is(&a[1], "pause") => {
            ringcache_protocol::pause::client_pause(&ctx.shared.pause, a)
        }
        "client" if a.len() > 1 && is(&a[1], "unpause") => {
            ringcache_protocol::pause::client_unpause(&ctx.shared.pause, a)
        }
        // UNBLOCK needs the node's blocked clients; the rest is shared with the router.
        "client" if a.len() > 1 && is(&a[1], "unblock") => {
            blocking::client_unblock(ctx.shared, a)
        }
        "client" => c::client(ctx, a),
        "info" => s::info(ctx, a),
        "command" => s::command(ctx, a),
        "config" => s::config(ctx, a),
        "memory" => s::memory(ctx, a),
        "latency" => latency::latency(ctx, a),
        "function" => crate::script::functions::function(ctx, a),
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" => crate::script::eval::eval(ctx, spec, a),
        "fcall" | "fcall_ro" => crate::script::functions::fcall(ctx, spec, a),
        "script" => crate::script::eval::script(ctx, a),
        "time" => ringcache_protocol::resp::time_reply(),
        // A node stops on SIGTERM; a client must not be able to stop a cache shard.
        "shutdown" => Reply::error(
            "ERR SHUTDOWN is not supported: stop a ringcache node with SIGTERM",
        ),
        "save" | "bgsave" => Reply::error(
            "ERR persistence is not supported: ringcache nodes are an in-memory cache (keep data durable in your system of record)",
        ),
        "lastsave" => Reply::Int(ctx.shared.started_unix),
        "role" => r::role(ctx),
        "replicaof" | "slaveof" => r::replicaof(ctx, a),
        "sync" | "psync" => r::sync(ctx),
        "replconf" => r::replconf(ctx, a),
        "wait" => r::wait(ctx, a),
        "topology" => cl::topology(ctx, a),
        "migrate-keys" => cl::migrate_keys(ctx, a),
        "migrate-arc" => cl::migrate_arc(ctx, a),
        _ if hashes::NAMES.contains(&name) => hashes::run(ctx, spec, a),
        _ if sort::NAMES.contains(&name) => sort::run(ctx, spec, a),
        _ if lists::NAMES.contains(&name) => lists::run(ctx, spec, a),
        _ if sets::NAMES.contains(&name) => sets::run(ctx, spec, a),
        _ if zsets::NAMES.contains(&name) => zsets::run(ctx, spec, a),
        _ if bitmaps::NAMES.contains(&name) => bitmaps::run(ctx, spec, a),
        _ if hyperloglog::NAMES.contains(&name) => hyperloglog::run(ctx, spec, a),
        _ if geo::NAMES.contains(&name) => geo::run(ctx, spec, a),
        _ if streams::NAMES.contains(&name) => streams::run(ctx, spec, a),
        _ => unknown_command(a),
    }
}
