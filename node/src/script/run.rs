//! Running one script or function: the checks its flags call for before it starts, the run
//! itself (busy state, KEYS and ARGV, `redis.call` bound to this command's keyspace view), its
//! return value or error as the reply, and its writes handed to the replicas as their effects.

use bytes::Bytes;
use mlua::{Function, Value};
use ringcache_luacall::Call;
use ringcache_protocol::Reply;

use super::call::{redis_call, RunState};
use super::convert::{error_text, lua_to_reply};
use super::shebang::Flags;
use super::vm::Vm;
use crate::cmd::ctx::Ctx;
use crate::state::script::Running;

/// What to run and how.
pub struct Invocation<'i> {
    pub func: &'i Function,
    pub flags: Flags,
    /// Called as EVAL_RO / EVALSHA_RO / FCALL_RO.
    pub read_only: bool,
    /// A function (KEYS and ARGV as arguments, FUNCTION KILL) rather than an EVAL script.
    pub is_function: bool,
    /// What errors name: the script's SHA or the function's name.
    pub name: &'i str,
    pub keys: &'i [Bytes],
    pub argv: &'i [Bytes],
}

/// Refusals a script's declared flags call for before it runs.
fn precheck(ctx: &Ctx, inv: &Invocation) -> Option<Reply> {
    let f = inv.flags;
    if !f.declared {
        return None;
    }
    let shared = ctx.shared;
    if !f.no_writes {
        if inv.read_only {
            return Some(Reply::error(
                "ERR Can not execute a script with write flag using *_ro command.",
            ));
        }
        if let Some(refused) = crate::replication::write_refusal(shared, ctx.session) {
            return Some(Reply::error(refused));
        }
        if !f.allow_oom
            && !ctx.session.from_primary
            && shared.keyspace.over_limit()
            && !crate::cmd::evict(shared)
        {
            return Some(Reply::error(
                "OOM command not allowed when used memory > 'maxmemory'.",
            ));
        }
    }
    None
}

/// Runs the script and answers its caller; INFO's `used_memory_vm_eval` follows the VM after it.
pub fn invoke(vm: &Vm, ctx: &mut Ctx, inv: Invocation, command: &[Bytes]) -> Reply {
    let reply = run_invocation(vm, ctx, inv, command);
    ctx.shared
        .scripts
        .vm_memory
        .store(vm.used_memory(), std::sync::atomic::Ordering::Relaxed);
    reply
}

fn run_invocation(vm: &Vm, ctx: &mut Ctx, inv: Invocation, command: &[Bytes]) -> Reply {
    if let Some(refused) = precheck(ctx, &inv) {
        return refused;
    }
    let scripts = &ctx.shared.scripts;
    scripts.start(Running {
        started: std::time::Instant::now(),
        is_function: inv.is_function,
        name: if inv.is_function {
            inv.name.to_string()
        } else {
            String::new()
        },
        // Only FUNCTION STATS shows it: an EVAL does not copy its arguments for nothing.
        command: if inv.is_function {
            command.to_vec()
        } else {
            Vec::new()
        },
    });
    vm.resp.store(2, std::sync::atomic::Ordering::Relaxed);
    let proto = ctx.session.proto;
    // Inside EXEC, the transaction's own MULTI/EXEC wraps these effects.
    let in_exec = ctx.session.in_exec;
    let mut st = RunState {
        ctx,
        read_only: inv.read_only || inv.flags.no_writes,
        allow_oom: inv.flags.allow_oom || inv.flags.no_writes,
        resp: vm.resp.clone(),
        effects: Vec::new(),
        dirty: 0,
        errors: Vec::new(),
        elsewhere: None,
        acted: false,
        uncounted: Vec::new(),
    };
    let result = call(vm, &mut st, &inv);
    let reply = match result {
        Ok((true, v)) => lua_to_reply(
            &v,
            vm.resp.load(std::sync::atomic::Ordering::Relaxed) == 3,
            proto,
        ),
        Ok((false, e)) => error_reply(&e, inv.name),
        Err(e) => Reply::Error(format!(
            "ERR Error running script {}: {}",
            inv.name,
            super::convert::one_line(&e.to_string())
        )),
    };
    let RunState {
        ctx,
        mut effects,
        dirty,
        errors,
        elsewhere,
        acted,
        uncounted,
        ..
    } = st;
    if ctx
        .shared
        .scripts
        .kill
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        // Killed while moving: it ends here, as SCRIPT KILL was told.
        super::inline::killed();
    }
    let moving = super::inline::moving();
    // Whatever it answered: it stopped at a key of another shard having changed nothing here.
    let reply = match elsewhere {
        Some(at) if !acted && dirty == 0 && effects.is_empty() => {
            Reply::Error(format!("{} {at}", super::call::ELSEWHERE))
        }
        _ => reply,
    };
    // Errors the script caught or dropped count now; the one it answers with counts as its
    // reply.
    for (spec, how) in uncounted.into_iter().filter(|_| !moving) {
        super::call::record(ctx.shared, spec, how);
    }
    for e in errors.iter().filter(|_| !moving) {
        let passed_on = matches!(&reply, Reply::Error(r) if r.starts_with(e.as_str()));
        if !passed_on {
            ctx.shared.stats.error(e);
        }
    }
    ctx.shared.scripts.end();
    vm.after_run();
    if effects.len() > 1 && !in_exec {
        effects.insert(0, vec![Bytes::from_static(b"MULTI")]);
        effects.push(vec![Bytes::from_static(b"EXEC")]);
    }
    // Never the EVAL itself: its writes, or nothing.
    ctx.db.effects.dirty = dirty;
    ctx.db.effects.rewrite = Some(effects);
    reply
}

/// Calls the script with `redis.call` answered by this run: `(ok, value)`.
fn call(vm: &Vm, st: &mut RunState, inv: &Invocation) -> mlua::Result<(bool, Value)> {
    let (runner, how) = if inv.is_function {
        (&vm.run_with, Call::Function)
    } else {
        (
            &vm.run,
            Call::Script {
                globals: &vm.globals,
            },
        )
    };
    super::api::set_script_user(st.ctx.session.user.clone());
    let out = ringcache_luacall::with_handler(&mut |args| redis_call(st, args), || {
        ringcache_luacall::run(&vm.lua, runner, inv.func, how, inv.keys, inv.argv)
    });
    super::api::set_script_user(None);
    out
}

/// A script's error (the table its handler built) as the reply: the error, then where it
/// happened, as Redis 7 words it.
fn error_reply(e: &Value, name: &str) -> Reply {
    let Value::Table(t) = e else {
        return Reply::error("ERR unknown error running the script");
    };
    let text = match t.raw_get::<Value>("err") {
        Ok(Value::String(s)) => error_text(&s.to_string_lossy()),
        _ => "ERR unknown error".into(),
    };
    let source = t.raw_get::<Option<String>>("source").ok().flatten();
    let line = t.raw_get::<Option<i64>>("line").ok().flatten();
    match (source, line) {
        (Some(source), Some(line)) => {
            Reply::Error(format!("{text} script: {name}, on {source}:{line}."))
        }
        _ => Reply::Error(text),
    }
}
