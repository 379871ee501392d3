//! Command dispatch: one function per command, looked up through the shared command table
//! (arity, flags), each parsing its own arguments and answering with Redis 7's replies.

pub mod args;
pub mod cluster;
pub mod connection;
pub mod ctx;
pub mod hashes;
pub mod keys;
pub mod replication;
pub mod server;
pub mod strings;

use bytes::Bytes;
use ringcache_protocol::table::{self, flags, CommandSpec};
use ringcache_protocol::Reply;

use crate::state::session::{Flow, Session};
use crate::state::Shared;
use args::{arity_error, int_arg, is, unknown_command};
use ctx::Ctx;

/// Looks the command up, checks arity and authentication, and runs it.
pub fn dispatch(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let Some(name) = args.first() else {
        return Reply::NilArray;
    };
    let Some(spec) = table::lookup(name) else {
        if is(name, "post") || is(name, "host:") {
            tracing::warn!(
                "possible cross-protocol attack (HTTP request on the RESP port); closing"
            );
            ctx.session.flow = Flow::CloseNow;
            return Reply::Nil;
        }
        return unknown_command(args);
    };
    ctx.session.last_cmd = spec.name;
    if !spec.arity_ok(args.len()) {
        return arity_error(spec.name);
    }
    if !ctx.session.authenticated && !spec.has(flags::NO_AUTH) && spec.name != "quit" {
        return Reply::error("NOAUTH Authentication required.");
    }
    if let Some(reply) = crate::replication::check_write(ctx.shared, ctx.session, spec) {
        return reply;
    }
    if let Some(reply) = crate::topology::check_owner(ctx.shared, ctx.session, spec, args) {
        return reply;
    }
    run(ctx, spec, args)
}

/// Runs one command no client sent (a replica applying its primary's stream; the reply goes
/// nowhere): the node's [`crate::state::Apply`], given to its state when the node is built.
pub fn apply(shared: &Shared, session: &mut Session, args: &[Bytes]) {
    let mut ctx = Ctx { shared, session };
    let _ = dispatch(&mut ctx, args);
}

fn run(ctx: &mut Ctx, spec: &'static CommandSpec, a: &[Bytes]) -> Reply {
    use cluster as cl;
    use connection as c;
    use hashes as h;
    use keys as k;
    use replication as r;
    use server as s;
    use strings as st;
    match spec.name {
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
        "getrange" => st::getrange(ctx, a),
        "setrange" => st::setrange(ctx, a),
        "incr" => st::incrby(ctx, &a[1], 1),
        "decr" => st::incrby(ctx, &a[1], -1),
        "incrby" => match int_arg(&a[2]) {
            Ok(n) => st::incrby(ctx, &a[1], n),
            Err(e) => e,
        },
        "decrby" => match int_arg(&a[2]) {
            Ok(i64::MIN) => Reply::error("ERR decrement would overflow"),
            Ok(n) => st::incrby(ctx, &a[1], -n),
            Err(e) => e,
        },
        "incrbyfloat" => st::incrbyfloat(ctx, a),
        "del" | "unlink" => k::del(ctx, a),
        "exists" => k::exists(ctx, a),
        "touch" => k::exists(ctx, a),
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
        "dbsize" => Reply::Int(ctx.store().len() as i64),
        "flushdb" | "flushall" => k::flush(ctx, a),
        "hset" | "hmset" => h::hset(ctx, a, spec.name == "hmset"),
        "hsetnx" => h::hsetnx(ctx, a),
        "hget" => h::hget(ctx, a),
        "hmget" => h::hmget(ctx, a),
        "hdel" => h::hdel(ctx, a),
        "hexists" => h::hexists(ctx, a),
        "hlen" => h::hlen(ctx, a),
        "hkeys" => h::hgetall(ctx, a, true, false),
        "hvals" => h::hgetall(ctx, a, false, true),
        "hgetall" => h::hgetall(ctx, a, true, true),
        "hincrby" => h::hincrby(ctx, a),
        "hincrbyfloat" => h::hincrbyfloat(ctx, a),
        "hstrlen" => h::hstrlen(ctx, a),
        "hrandfield" => h::hrandfield(ctx, a),
        "hscan" => h::hscan(ctx, a),
        "ping" => c::ping(ctx, a),
        "echo" => Reply::Bulk(a[1].clone()),
        "hello" => c::hello(ctx, a),
        "auth" => c::auth(ctx, a),
        "select" => c::select(a),
        "quit" => {
            ctx.session.flow = Flow::CloseAfterReply;
            Reply::OK
        }
        "reset" => c::reset(ctx),
        "client" => c::client(ctx, a),
        "info" => s::info(ctx, a),
        "command" => s::command(ctx, a),
        "config" => s::config(ctx, a),
        "time" => ringcache_protocol::resp::time_reply(),
        "save" | "bgsave" => Reply::error(
            "ERR persistence is not supported: ringcache nodes are an in-memory cache (keep data durable in your system of record)",
        ),
        "lastsave" => Reply::Int(ctx.shared.started_unix),
        "role" => r::role(ctx),
        "replicaof" | "slaveof" => r::replicaof(ctx, a),
        "sync" | "psync" => r::sync(ctx),
        "replconf" => r::replconf(ctx, a),
        "topology" => cl::topology(ctx, a),
        "migrate-keys" => cl::migrate_keys(ctx, a),
        "migrate-arc" => cl::migrate_arc(ctx, a),
        _ => unknown_command(a),
    }
}
