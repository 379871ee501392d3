//! FUNCTION and FCALL: libraries of named functions (`#!lua name=<lib>` code calling
//! `redis.register_function`), kept until deleted or flushed, and sent to replicas as the
//! FUNCTION command that changed them.

mod dump;
mod load;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use mlua::Function;
use ringcache_protocol::table::{self, CommandSpec};
use ringcache_protocol::{glob, Reply};

pub use load::register_fn;

use super::host::with_engine;
use super::run::{invoke, Invocation};
use super::shebang::Flags;
use super::vm::Vm;
use super::Engine;
use crate::cmd::args::{arity_error, is, unknown_subcommand};
use crate::cmd::ctx::Ctx;
use crate::state::Shared;

/// A function `redis.register_function` registered while its library loaded.
pub struct Registered {
    pub name: String,
    pub func: Function,
    pub flags: Flags,
    pub description: Option<String>,
}

#[derive(Clone)]
pub struct FunctionDef {
    pub name: String,
    pub func: Function,
    pub flags: Flags,
    pub description: Option<String>,
}

#[derive(Clone)]
pub struct Library {
    pub name: String,
    pub code: Bytes,
    /// By lowercased name (FCALL finds functions in any case).
    pub functions: BTreeMap<String, FunctionDef>,
}

/// Every loaded library, and which library each function belongs to.
#[derive(Clone, Default)]
pub struct Registry {
    libs: BTreeMap<String, Library>,
    index: HashMap<String, String>,
}

impl Registry {
    /// Adds `lib` (replacing the library of its name when `replace`); Redis's error otherwise.
    /// `quoted`: FUNCTION LOAD's wording (the name in quotes) rather than RESTORE's.
    fn add(&mut self, lib: Library, replace: bool, quoted: bool) -> Result<(), String> {
        if self.libs.contains_key(&lib.name) && !replace {
            return Err(if quoted {
                format!("ERR Library '{}' already exists", lib.name)
            } else {
                format!("ERR Library {} already exists", lib.name)
            });
        }
        for (key, f) in &lib.functions {
            if self.index.get(key).is_some_and(|owner| owner != &lib.name) {
                return Err(format!("ERR Function {} already exists", f.name));
            }
        }
        self.remove(&lib.name);
        for key in lib.functions.keys() {
            self.index.insert(key.clone(), lib.name.clone());
        }
        self.libs.insert(lib.name.clone(), lib);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Option<Library> {
        let lib = self.libs.remove(name)?;
        for key in lib.functions.keys() {
            self.index.remove(key);
        }
        Some(lib)
    }

    /// The same libraries loaded into `vm` (a VM replacing the one they were loaded in).
    pub fn reload(&self, vm: &Vm) -> Result<Registry, String> {
        let mut fresh = Registry::default();
        for lib in self.libs.values() {
            fresh.add(load::load(vm, &lib.code)?, false, true)?;
        }
        Ok(fresh)
    }

    pub fn function(&self, name: &[u8]) -> Option<&FunctionDef> {
        let key = String::from_utf8_lossy(name).to_ascii_lowercase();
        let lib = self.index.get(&key)?;
        self.libs.get(lib)?.functions.get(&key)
    }

    fn function_count(&self) -> usize {
        self.index.len()
    }

    fn code_bytes(&self) -> usize {
        self.libs.values().map(|l| l.code.len()).sum()
    }
}

fn publish_counts(shared: &Shared, eng: &mut Engine) {
    crate::script::inline::forget_functions(eng);
    // What a library change left behind (a replaced library, compiling's garbage) goes now:
    // libraries change rarely, and the VM's memory in INFO should not carry it (Redis keeps
    // functions in a VM of their own).
    let _ = eng.vm.lua.gc_collect();
    let s = &shared.scripts;
    s.functions.store(eng.functions.function_count(), Relaxed);
    s.libraries.store(eng.functions.libs.len(), Relaxed);
    s.functions_memory
        .store(eng.functions.code_bytes(), Relaxed);
    s.vm_memory.store(eng.vm.used_memory(), Relaxed);
    s.set_library_codes(
        eng.functions
            .libs
            .values()
            .map(|l| l.code.clone())
            .collect(),
    );
}

fn no_engine() -> Reply {
    Reply::error("ERR scripts run on the script thread")
}

/// `ERR unknown subcommand or wrong number of arguments for '<sub>'. Try FUNCTION HELP.`
fn sub_syntax(sub: &[u8]) -> Reply {
    Reply::Error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
        String::from_utf8_lossy(sub)
    ))
}

/// FCALL and FCALL_RO.
pub fn fcall(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    let read_only = spec.name == "fcall_ro";
    with_engine(|eng| {
        let Some(def) = eng.functions.function(&a[1]) else {
            return Reply::error("ERR Function not found");
        };
        let n = match ringcache_protocol::num::parse_i64(&a[2]) {
            None => return Reply::error("ERR Bad number of keys provided"),
            Some(n) if n < 0 => return Reply::error("ERR Number of keys can't be negative"),
            Some(n) if n as usize > a.len() - 3 => {
                return Reply::error("ERR Number of keys can't be greater than number of args")
            }
            Some(n) => n as usize,
        };
        let inv = Invocation {
            func: &def.func,
            flags: def.flags,
            read_only,
            is_function: true,
            name: &def.name,
            keys: &a[3..3 + n],
            argv: &a[3 + n..],
        };
        invoke(&eng.vm, ctx, inv, a)
    })
    .unwrap_or_else(no_engine)
}

/// FUNCTION LOAD | LIST | DELETE | FLUSH | DUMP | RESTORE | STATS | KILL | HELP.
pub fn function(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = table::lookup_sub(b"function", &sub) else {
        return unknown_subcommand(&a[1], "function");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    // The container's table entry carries no flags: the subcommand's WRITE refuses here.
    if let Some(refused) = crate::replication::check_write(ctx.shared, ctx.session, spec) {
        return refused;
    }
    match &sub[..] {
        b"kill" => super::eval::kill(ctx.shared, true),
        b"stats" => stats(ctx.shared),
        b"help" => help(),
        _ if !super::host::on_script_thread() => {
            super::host::run_elsewhere(ctx.shared, ctx.session, a)
        }
        b"load" => with_engine(|eng| load_cmd(ctx, eng, a)).unwrap_or_else(no_engine),
        b"delete" => with_engine(|eng| {
            let name = String::from_utf8_lossy(&a[2]);
            if eng.functions.remove(&name).is_none() {
                return Reply::error("ERR Library not found");
            }
            publish_counts(ctx.shared, eng);
            ctx.db.propagate_as(a.to_vec());
            Reply::OK
        })
        .unwrap_or_else(no_engine),
        b"flush" => {
            if a.len() > 3 {
                return sub_syntax(&a[1]);
            }
            if a.len() == 3 && !is(&a[2], "async") && !is(&a[2], "sync") {
                return Reply::error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
            }
            with_engine(|eng| {
                eng.functions = Registry::default();
                publish_counts(ctx.shared, eng);
                ctx.db.propagate_as(a.to_vec());
                Reply::OK
            })
            .unwrap_or_else(no_engine)
        }
        b"dump" => with_engine(|eng| {
            Reply::Bulk(dump::encode(eng.functions.libs.values().map(|l| &l.code)))
        })
        .unwrap_or_else(no_engine),
        b"restore" => with_engine(|eng| restore(ctx, eng, a)).unwrap_or_else(no_engine),
        b"list" => with_engine(|eng| list(eng, a)).unwrap_or_else(no_engine),
        _ => unknown_subcommand(&a[1], "function"),
    }
}

/// Refuses a command that may grow memory while the node is past `maxmemory`.
fn oom(ctx: &Ctx) -> Option<Reply> {
    let shared = ctx.shared;
    (!ctx.session.from_primary && shared.keyspace.over_limit() && !crate::cmd::evict(shared))
        .then(|| Reply::error("OOM command not allowed when used memory > 'maxmemory'."))
}

fn load_cmd(ctx: &mut Ctx, eng: &mut Engine, a: &[Bytes]) -> Reply {
    let mut replace = false;
    for opt in &a[2..a.len() - 1] {
        if is(opt, "replace") {
            replace = true;
        } else {
            return Reply::Error(format!(
                "ERR Unknown option given: {}",
                String::from_utf8_lossy(opt)
            ));
        }
    }
    if let Some(refused) = oom(ctx) {
        return refused;
    }
    let code = &a[a.len() - 1];
    let lib = match load::load(&eng.vm, code) {
        Ok(lib) => lib,
        Err(e) => return Reply::Error(e),
    };
    let name = lib.name.clone();
    if let Err(e) = eng.functions.add(lib, replace, true) {
        return Reply::Error(e);
    }
    publish_counts(ctx.shared, eng);
    // REPLACE: a replica that already has the library (from its snapshot) takes it again.
    ctx.db.propagate_as(vec![
        Bytes::from_static(b"FUNCTION"),
        Bytes::from_static(b"LOAD"),
        Bytes::from_static(b"REPLACE"),
        code.clone(),
    ]);
    Reply::Bulk(Bytes::from(name))
}

fn restore(ctx: &mut Ctx, eng: &mut Engine, a: &[Bytes]) -> Reply {
    if a.len() > 4 {
        return sub_syntax(&a[1]);
    }
    #[derive(PartialEq)]
    enum Policy {
        Append,
        Replace,
        Flush,
    }
    let policy =
        match a.get(3) {
            None => Policy::Append,
            Some(p) if is(p, "append") => Policy::Append,
            Some(p) if is(p, "replace") => Policy::Replace,
            Some(p) if is(p, "flush") => Policy::Flush,
            Some(_) => return Reply::error(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            ),
        };
    let Some(codes) = dump::decode(&a[2]) else {
        return Reply::error("ERR payload version or checksum are wrong");
    };
    if let Some(refused) = oom(ctx) {
        return refused;
    }
    // All or nothing: the new set is built aside and kept only if every library loads.
    let mut next = if policy == Policy::Flush {
        Registry::default()
    } else {
        eng.functions.clone()
    };
    for code in &codes {
        let lib = match load::load(&eng.vm, code) {
            Ok(lib) => lib,
            Err(e) => return Reply::Error(e),
        };
        if let Err(e) = next.add(lib, policy == Policy::Replace, false) {
            return Reply::Error(e);
        }
    }
    eng.functions = next;
    publish_counts(ctx.shared, eng);
    ctx.db.propagate_as(a.to_vec());
    Reply::OK
}

fn list(eng: &Engine, a: &[Bytes]) -> Reply {
    let (mut with_code, mut pattern): (bool, Option<&Bytes>) = (false, None);
    let mut i = 2;
    while i < a.len() {
        let arg = &a[i];
        if is(arg, "withcode") && !with_code {
            with_code = true;
        } else if is(arg, "libraryname") && pattern.is_none() {
            let Some(p) = a.get(i + 1) else {
                return Reply::error("ERR library name argument was not given");
            };
            pattern = Some(p);
            i += 1;
        } else {
            return Reply::Error(format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(arg)
            ));
        }
        i += 1;
    }
    let key = |s: &str| Reply::bulk_str(s);
    let libs = eng
        .functions
        .libs
        .values()
        .filter(|l| pattern.is_none_or(|p| glob::matches(p, l.name.as_bytes(), false)))
        .map(|l| {
            let functions = l
                .functions
                .values()
                .map(|f| {
                    Reply::Map(vec![
                        (key("name"), key(&f.name)),
                        (
                            key("description"),
                            f.description.as_deref().map_or(Reply::Nil, key),
                        ),
                        (
                            key("flags"),
                            Reply::Set(f.flags.names().into_iter().map(Reply::Status).collect()),
                        ),
                    ])
                })
                .collect();
            let mut fields = vec![
                (key("library_name"), key(&l.name)),
                (key("engine"), key("LUA")),
                (key("functions"), Reply::Array(functions)),
            ];
            if with_code {
                fields.push((key("library_code"), Reply::Bulk(l.code.clone())));
            }
            Reply::Map(fields)
        })
        .collect();
    Reply::Array(libs)
}

/// FUNCTION STATS: answered on the caller's thread, from the shared counts.
fn stats(shared: &Shared) -> Reply {
    let s = &shared.scripts;
    let key = |k: &str| Reply::bulk_str(k);
    let running = match s.running().filter(|r| r.is_function && s.active()) {
        Some(r) => Reply::Map(vec![
            (key("name"), key(&r.name)),
            (
                key("command"),
                Reply::Array(r.command.iter().cloned().map(Reply::Bulk).collect()),
            ),
            (
                key("duration_ms"),
                Reply::Int(r.started.elapsed().as_millis() as i64),
            ),
        ]),
        None => Reply::Nil,
    };
    Reply::Map(vec![
        (key("running_script"), running),
        (
            key("engines"),
            Reply::Map(vec![(
                key("LUA"),
                Reply::Map(vec![
                    (
                        key("libraries_count"),
                        Reply::Int(s.libraries.load(Relaxed) as i64),
                    ),
                    (
                        key("functions_count"),
                        Reply::Int(s.functions.load(Relaxed) as i64),
                    ),
                ]),
            )]),
        ),
    ])
}

fn help() -> Reply {
    let lines = [
        "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "LOAD [REPLACE] <FUNCTION CODE>",
        "    Create a new library with the given library name and code.",
        "DELETE <LIBRARY NAME>",
        "    Delete the given library.",
        "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
        "    Return general information on all the libraries:",
        "    * Library name",
        "    * The engine used to run the Library",
        "    * Library description",
        "    * Functions list",
        "    * Library code (if WITHCODE is given)",
        "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
        "STATS",
        "    Return information about the current function running:",
        "    * Function name",
        "    * Command used to run the function",
        "    * Duration in MS that the function is running",
        "    If no function is running, return nil",
        "    In addition, returns a list of available engines.",
        "KILL",
        "    Kill the current running function.",
        "FLUSH [ASYNC|SYNC]",
        "    Delete all the libraries.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the libraries.",
        "    * SYNC: Synchronously flush the libraries.",
        "DUMP",
        "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
        "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
        "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
        "    control how to handle existing libraries (default APPEND):",
        "    * FLUSH: delete all existing libraries.",
        "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
        "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
        "      libraries with the new libraries (notice that even on this option there is a chance of failure",
        "      in case of functions name collision with another library).",
        "HELP",
        "    Print this help.",
    ];
    Reply::Array(
        lines
            .iter()
            .map(|l| Reply::StatusOwned((*l).into()))
            .collect(),
    )
}
