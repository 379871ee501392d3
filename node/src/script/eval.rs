//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT: scripts compiled once and cached by their
//! SHA1 until SCRIPT FLUSH.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use mlua::Function;
use ringcache_protocol::table::{self, CommandSpec};
use ringcache_protocol::Reply;

use super::host::with_engine;
use super::run::{invoke, Invocation};
use super::shebang::{eval_shebang, Flags};
use super::Engine;
use crate::cmd::args::{arity_error, is, unknown_subcommand};
use crate::cmd::ctx::Ctx;
use crate::state::Shared;

/// A compiled EVAL script.
pub struct Script {
    pub func: Function,
    pub flags: Flags,
    /// Its source's length (INFO's used_memory_scripts_eval).
    pub len: usize,
}

/// Memory a cached script is counted for besides its body (Redis's per-script overhead).
const SCRIPT_OVERHEAD: usize = 64;

/// Off the script thread (never for a client: see `host::wants_script_thread`).
fn no_engine() -> Reply {
    Reply::error("ERR scripts run on the script thread")
}

/// The number of keys of an EVAL or FCALL: `Err` with Redis's error.
pub fn numkeys(a: &[Bytes]) -> Result<usize, Reply> {
    let n = crate::cmd::args::int_arg(&a[2])?;
    if n < 0 {
        return Err(Reply::error("ERR Number of keys can't be negative"));
    }
    if n as usize > a.len() - 3 {
        return Err(Reply::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    Ok(n as usize)
}

impl Engine {
    /// Compiles and caches `body` (if not cached yet); its SHA.
    pub fn load_script(&mut self, shared: &Shared, body: &[u8]) -> Result<[u8; 40], Reply> {
        let sha = super::sha1::hex(body);
        if self.scripts.contains_key(&sha) {
            return Ok(sha);
        }
        let (flags, shebang_len) = eval_shebang(body).map_err(Reply::Error)?;
        let func = if shebang_len > 0 {
            // The shebang line is not Lua: compile an empty line in its place.
            let mut code = Vec::with_capacity(body.len());
            code.extend_from_slice(&body[shebang_len..]);
            self.vm.compile(&code, super::vm::EVAL_SOURCE)
        } else {
            self.vm.compile(body, super::vm::EVAL_SOURCE)
        }
        .map_err(|e| {
            Reply::Error(format!(
                "ERR Error compiling script (new function): {}",
                super::convert::one_line(&e)
            ))
        })?;
        let len = body.len();
        self.scripts.insert(sha, Script { func, flags, len });
        let s = &shared.scripts;
        s.cached_scripts.store(self.scripts.len(), Relaxed);
        s.scripts_memory.fetch_add(len + SCRIPT_OVERHEAD, Relaxed);
        Ok(sha)
    }

    /// Forgets every cached script.
    pub fn flush_scripts(&mut self, shared: &Shared) {
        self.scripts.clear();
        self.short.clear();
        self.publishers.clear();
        let s = &shared.scripts;
        s.cached_scripts.store(0, Relaxed);
        s.scripts_memory.store(0, Relaxed);
        if let Err(e) = self.reset_vm() {
            tracing::warn!(error = %e, "SCRIPT FLUSH: cannot build a new Lua VM; keeping the old one");
            let _ = self.vm.lua.gc_collect();
        }
        s.vm_memory.store(self.vm.used_memory(), Relaxed);
    }
}

/// A SHA argument in the cache's form (lowercase), if it can be one.
fn sha_arg(a: &[u8]) -> Option<[u8; 40]> {
    let mut sha = [0u8; 40];
    if a.len() != 40 {
        return None;
    }
    for (d, s) in sha.iter_mut().zip(a) {
        *d = s.to_ascii_lowercase();
    }
    Some(sha)
}

/// EVAL, EVALSHA and their read-only variants.
pub fn eval(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    let n = match numkeys(a) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let by_sha = spec.name.starts_with("evalsha");
    let read_only = spec.name.ends_with("_ro");
    with_engine(|eng| {
        let sha = if by_sha {
            match sha_arg(&a[1]).filter(|s| eng.scripts.contains_key(s)) {
                Some(s) => s,
                None => return Reply::error("NOSCRIPT No matching script. Please use EVAL."),
            }
        } else {
            match eng.load_script(ctx.shared, &a[1]) {
                Ok(s) => s,
                Err(e) => return e,
            }
        };
        let Some(script) = eng.scripts.get(&sha) else {
            return Reply::error("NOSCRIPT No matching script. Please use EVAL.");
        };
        let name = std::str::from_utf8(&sha).unwrap_or_default();
        let inv = Invocation {
            func: &script.func,
            flags: script.flags,
            read_only,
            is_function: false,
            name,
            keys: &a[3..3 + n],
            argv: &a[3 + n..],
        };
        invoke(&eng.vm, ctx, inv, a)
    })
    .unwrap_or_else(no_engine)
}

/// SCRIPT LOAD | EXISTS | FLUSH | KILL | DEBUG | HELP.
pub fn script(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = table::lookup_sub(b"script", &sub) else {
        return unknown_subcommand(&a[1], "script");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    match &sub[..] {
        b"kill" => kill(ctx.shared, false),
        b"help" => help(),
        b"debug" => Reply::error("ERR SCRIPT DEBUG is not supported by this server"),
        b"flush" => {
            if a.len() > 3 || (a.len() == 3 && !is(&a[2], "async") && !is(&a[2], "sync")) {
                return Reply::error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            }
            with_engine(|eng| {
                eng.flush_scripts(ctx.shared);
                Reply::OK
            })
            .unwrap_or_else(no_engine)
        }
        b"exists" => with_engine(|eng| {
            Reply::Array(
                a[2..]
                    .iter()
                    .map(|s| {
                        let known = sha_arg(s).is_some_and(|s| eng.scripts.contains_key(&s));
                        Reply::Int(i64::from(known))
                    })
                    .collect(),
            )
        })
        .unwrap_or_else(no_engine),
        b"load" => with_engine(|eng| match eng.load_script(ctx.shared, &a[2]) {
            Ok(sha) => Reply::Bulk(Bytes::copy_from_slice(&sha)),
            Err(e) => e,
        })
        .unwrap_or_else(no_engine),
        _ => unknown_subcommand(&a[1], "script"),
    }
}

/// SCRIPT KILL (`function` false) and FUNCTION KILL: run on the caller's thread while the
/// script thread is busy.
pub fn kill(shared: &Shared, function: bool) -> Reply {
    let scripts = &shared.scripts;
    let Some(running) = scripts.running().filter(|_| scripts.active()) else {
        return Reply::error("NOTBUSY No scripts in execution right now.");
    };
    if scripts.wrote.load(Relaxed) {
        return Reply::error(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
        );
    }
    if running.is_function != function {
        return Reply::error(if running.is_function {
            "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
        } else {
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        });
    }
    scripts
        .kill
        .store(true, std::sync::atomic::Ordering::SeqCst);
    Reply::OK
}

fn help() -> Reply {
    let lines = [
        "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "DEBUG (YES|SYNC|NO)",
        "    Set the debug mode for subsequent scripts executed.",
        "EXISTS <sha1> [<sha1> ...]",
        "    Return information about the existence of the scripts in the script cache.",
        "FLUSH [ASYNC|SYNC]",
        "    Flush the Lua scripts cache. Very dangerous on replicas.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the scripts cache.",
        "    * SYNC: Synchronously flush the scripts cache.",
        "KILL",
        "    Kill the currently executing Lua script.",
        "LOAD <script>",
        "    Load a script into the scripts cache without executing it.",
        "HELP",
        "    Prints this help.",
    ];
    Reply::Array(
        lines
            .iter()
            .map(|l| Reply::StatusOwned((*l).into()))
            .collect(),
    )
}
