//! The Lua VM: built once on the script thread with Redis 7.0's sandbox (no `os`, `io`,
//! `loadfile`, `dofile`, `print`; globals and library tables read-only; reading a missing global
//! fails), the `redis` table, and the runners that turn a script's error into Redis's error
//! shape.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value, VmState};

use super::convert::raise;

/// The source names chunks are compiled under (what error positions show).
pub const EVAL_SOURCE: &str = "@user_script";
pub const FUNCTION_SOURCE: &str = "@user_function";
/// Chunks of ours: error positions skip them to find the script's own line.
const OWN_SOURCES: [&str; 3] = ["=redis", "=sandbox", "=functions"];

/// Runs between two garbage collection steps.
const GC_PERIOD: u32 = 50;

/// Instructions between two checks of the kill flag (and of an inline run's budget: about a
/// tenth of a millisecond of Lua).
const HOOK_EVERY: u32 = 10_000;

/// Library tables scripts may read but not change.
const LIBRARIES: [&str; 9] = [
    "redis",
    "string",
    "math",
    "table",
    "cjson",
    "cmsgpack",
    "bit",
    "struct",
    "coroutine",
];

/// The VM and what running a script needs from it.
pub struct Vm {
    pub lua: Lua,
    /// The globals scripts see (a read-only view of the real ones).
    pub env: Table,
    /// The real globals (KEYS and ARGV are set here, raw).
    pub globals: Table,
    /// Calls an EVAL script: `ok, result`.
    pub run: Function,
    /// Calls a function with KEYS and ARGV: `ok, result`.
    pub run_with: Function,
    /// Makes a read-only view of a table (a library's API at load time).
    pub protect: Function,
    /// The real `redis` table.
    pub redis: Table,
    /// The RESP version `redis.setresp` chose for the running script.
    pub resp: Arc<AtomicU8>,
    /// The globals of function libraries (see `functions.lua`).
    pub lib_env: Table,
    /// Switches `lib_env` between the library API (true, while loading) and the sandbox.
    pub set_loading: Function,
    /// The functions `redis.register_function` registered while a library loads.
    pub registered: Arc<Mutex<Option<Vec<super::functions::Registered>>>>,
    /// A library's code must finish loading by then (FUNCTION LOAD timeout).
    pub deadline: Arc<Mutex<Option<Instant>>>,
    /// Raised by SCRIPT KILL / FUNCTION KILL.
    kill: Arc<AtomicBool>,
    /// The hook fires on every line since a kill (see [`Vm::reset_hook`]).
    hook_escalated: Arc<AtomicBool>,
    /// Runs since the last garbage collection step.
    runs: Cell<u32>,
}

impl Vm {
    pub fn new(kill: Arc<AtomicBool>) -> mlua::Result<Vm> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        super::libs::register(&lua)?;
        let globals = lua.globals();
        let resp = Arc::new(AtomicU8::new(2));
        let redis = super::api::redis_table(&lua, &resp)?;
        globals.raw_set("redis", redis.clone())?;
        // Answered by the running script (`script::call`); outside one they fail.
        let (call, pcall) = ringcache_luacall::functions(&lua)?;
        redis.raw_set("call", call)?;
        redis.raw_set("pcall", pcall)?;
        lua.load(include_str!("redis.lua"))
            .set_name("=redis")
            .call::<()>((redis.clone(), globals.get::<Function>("error")?))?;
        let where_fn = lua.create_function(error_position)?;
        let libraries = lua.create_sequence_from(LIBRARIES)?;
        let (env, run, run_with, protect): (Table, Function, Function, Function) = lua
            .load(include_str!("sandbox.lua"))
            .set_name("=sandbox")
            .call((where_fn, libraries))?;
        let registered = Arc::new(Mutex::new(None));
        let register = super::functions::register_fn(&lua, &registered)?;
        let log: Function = redis.raw_get("log")?;
        let constants = lua.create_table()?;
        for name in [
            "LOG_DEBUG",
            "LOG_VERBOSE",
            "LOG_NOTICE",
            "LOG_WARNING",
            "REDIS_VERSION",
            "REDIS_VERSION_NUM",
        ] {
            constants.raw_set(name, redis.raw_get::<Value>(name)?)?;
        }
        let (lib_env, set_loading): (Table, Function) = lua
            .load(include_str!("functions.lua"))
            .set_name("=functions")
            .call((env.clone(), protect.clone(), register, log, constants))?;
        // What building the VM left behind goes now: the collector's first cycle would otherwise
        // wait for the heap to double from here, garbage included (Redis's own test bounds a
        // VM's memory after 10,000 scripts).
        lua.gc_collect()?;
        let vm = Vm {
            lua,
            env,
            globals,
            run,
            run_with,
            protect,
            redis,
            resp,
            lib_env,
            set_loading,
            registered,
            deadline: Arc::new(Mutex::new(None)),
            kill,
            hook_escalated: Arc::new(AtomicBool::new(false)),
            runs: Cell::new(0),
        };
        vm.set_hook(false)?;
        Ok(vm)
    }

    /// Checks the kill flag (a library load's deadline, an inline run's budget) every
    /// [`HOOK_EVERY`] instructions; once stopped, on every line, so a script catching the error
    /// with `pcall` cannot go on.
    fn set_hook(&self, escalated: bool) -> mlua::Result<()> {
        let triggers = if escalated {
            HookTriggers::new().every_line().every_nth_instruction(1)
        } else {
            HookTriggers::new().every_nth_instruction(HOOK_EVERY)
        };
        self.hook_escalated.store(escalated, Relaxed);
        let kill = self.kill.clone();
        let escalate = self.hook_escalated.clone();
        let deadline = self.deadline.clone();
        self.lua.set_hook(triggers, move |lua, debug| {
            let load_deadline = *crate::keyspace::lock(&deadline);
            if load_deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(raise("ERR FUNCTION LOAD timeout".into()));
            }
            let stop = || kill.load(Relaxed) || super::inline::must_stop();
            if !stop() {
                return Ok(VmState::Continue);
            }
            if debug
                .source()
                .source
                .is_some_and(|s| OWN_SOURCES.contains(&s.as_ref()))
            {
                return Ok(VmState::Continue);
            }
            if !escalate.load(Relaxed) {
                escalate.store(true, Relaxed);
                let kill = kill.clone();
                lua.set_hook(
                    HookTriggers::new().every_line().every_nth_instruction(1),
                    move |_, debug| {
                        // Not inside our own chunks: the error handler must finish its work.
                        let ours = debug
                            .source()
                            .source
                            .is_some_and(|s| OWN_SOURCES.contains(&s.as_ref()));
                        if (kill.load(Relaxed) || super::inline::must_stop()) && !ours {
                            return Err(raise(format!("ERR {KILLED}")));
                        }
                        Ok(VmState::Continue)
                    },
                )?;
            }
            Err(raise(format!("ERR {KILLED}")))
        })
    }

    /// After each run: every [`GC_PERIOD`] runs, a step of garbage collection, so the garbage
    /// scripts leave (argument tables, replies) does not pile up between the collector's own
    /// cycles.
    pub fn after_run(&self) {
        self.reset_hook();
        let n = self.runs.get() + 1;
        if n < GC_PERIOD {
            self.runs.set(n);
            return;
        }
        self.runs.set(0);
        let _ = self.lua.gc_step_kbytes(GC_PERIOD as i32);
    }

    /// Back to the cheap hook after a killed script.
    pub fn reset_hook(&self) {
        if self.hook_escalated.load(Relaxed) {
            if let Err(e) = self.set_hook(false) {
                tracing::warn!(error = %e, "cannot reset the script hook");
            }
        }
    }

    /// Compiles `body` in the sandbox under `source` (text only: bytecode is refused).
    pub fn compile(&self, body: &[u8], source: &str) -> Result<Function, String> {
        self.lua
            .load(body)
            .set_name(source)
            .set_mode(mlua::ChunkMode::Text)
            .set_environment(self.env.clone())
            .into_function()
            .map_err(|e| match e {
                mlua::Error::SyntaxError { message, .. } => message,
                other => other.to_string(),
            })
    }

    /// The flag SCRIPT KILL raises, for a VM built in this one's place.
    pub fn kill_flag(&self) -> Arc<AtomicBool> {
        self.kill.clone()
    }

    /// Memory the VM uses (INFO's used_memory_lua).
    pub fn used_memory(&self) -> usize {
        self.lua.used_memory()
    }
}

/// What a killed script's caller gets (after Redis's "ERR " and position).
pub const KILLED: &str = "Script killed by user with SCRIPT KILL...";

/// The source and line of the script code an error was raised in: the first frame up the
/// stack that is Lua code of the script's own (not a C function, not our wrappers).
fn error_position(lua: &Lua, _: ()) -> mlua::Result<(Value, Value)> {
    // 0: this function, 1: the error handler, 2: where the error was raised.
    for level in 2..32 {
        let found = lua.inspect_stack(level, |d| {
            let s = d.source();
            let what = s.what;
            let source = s.source.map(|c| c.into_owned());
            let line = d.current_line();
            (what, source, line)
        });
        let Some((what, source, line)) = found else {
            break;
        };
        let Some(source) = source else { continue };
        if what == "C" || OWN_SOURCES.contains(&source.as_str()) {
            continue;
        }
        let line = line.map_or(Value::Nil, |l| Value::Integer(l as i64));
        return Ok((Value::String(lua.create_string(&source)?), line));
    }
    Ok((Value::Nil, Value::Nil))
}
