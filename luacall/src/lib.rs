//! `redis.call` and `redis.pcall` as plain Lua C functions, and a script's run with its KEYS and
//! ARGV built on Lua's stack.
//!
//! mlua's safe API gives every Lua value crossing into Rust a handle of its own (a slot on an
//! auxiliary thread, moved there and back) and protects every table write with a `pcall`: for a
//! script making three calls that was a third of the instructions of the whole EVALSHA. Here the
//! arguments are read straight off the stack and the reply is pushed onto it; the node's
//! [`Handler`] sees only bytes in and a [`Reply`] out.
//!
//! A call raises its error as Redis 7 does, a table `{err = "CODE message"}`; `redis.pcall`
//! returns that table instead.

use std::cell::Cell;
use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use mlua::{ffi, Function, Lua, Table, Value};
use ringcache_protocol::Reply;

mod push;

/// Why a call's arguments could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgError {
    /// No arguments at all.
    Empty,
    /// An argument neither a string nor a number.
    NotStringOrNumber,
}

/// What a call returns to the script.
pub enum Outcome {
    /// The command's reply, converted as Redis converts it; `resp3` after `redis.setresp(3)`.
    Reply { reply: Reply, resp3: bool },
    /// An error reply's text, code included: raised by `redis.call`, returned by `redis.pcall`.
    Error(String),
}

/// Runs one call of the running script: its arguments (or why there are none to run).
pub type Handler<'h> = dyn FnMut(Result<Vec<Bytes>, ArgError>) -> Outcome + 'h;

/// What a call outside a script raises.
const OUTSIDE: &str = "ERR redis.call can only be called inside a script invocation";

thread_local! {
    // The running script's handler, erased to a raw pointer for the C functions: set only by
    // `with_handler`, for the time its borrow lasts.
    static HANDLER: Cell<Option<*mut Handler<'static>>> = const { Cell::new(None) };
}

/// Runs `f` with `handler` answering this thread's `redis.call`s and `redis.pcall`s.
pub fn with_handler<R>(handler: &mut Handler<'_>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<*mut Handler<'static>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            HANDLER.set(self.0);
        }
    }
    let erased: *mut Handler<'_> = handler;
    // SAFETY: only the lifetime is erased; the pointer is cleared (by `Restore`, on unwinding
    // too) before `handler`'s borrow ends, and read only on this thread while it lasts.
    #[allow(unsafe_code)]
    let erased: *mut Handler<'static> = unsafe { std::mem::transmute(erased) };
    let _restore = Restore(HANDLER.replace(Some(erased)));
    f()
}

/// The `redis.call` and `redis.pcall` functions of `lua`.
pub fn functions(lua: &Lua) -> mlua::Result<(Function, Function)> {
    // SAFETY: both are C functions of the shape Lua expects; see `entry`.
    #[allow(unsafe_code)]
    unsafe {
        Ok((
            lua.create_c_function(redis_call)?,
            lua.create_c_function(redis_pcall)?,
        ))
    }
}

#[allow(unsafe_code)]
unsafe extern "C-unwind" fn redis_call(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls it with a live state.
    unsafe { entry(state, true) }
}

#[allow(unsafe_code)]
unsafe extern "C-unwind" fn redis_pcall(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls it with a live state.
    unsafe { entry(state, false) }
}

/// One call: everything with a destructor lives and dies in `step`, so the `lua_error` below
/// (a longjmp) skips no Rust frame that owns anything.
#[allow(unsafe_code)]
unsafe fn entry(state: *mut ffi::lua_State, raise: bool) -> c_int {
    let raised = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `state` is the live state Lua called us with.
        unsafe { step(state, raise) }
    }));
    let raised = match raised {
        Ok(r) => r,
        Err(_) => {
            // SAFETY: as above; the stack holds at least what `step` left, room checked there.
            unsafe { push::error_table(state, "ERR a command panicked inside the script") };
            true
        }
    };
    if raised {
        // SAFETY: the error table is on top; nothing in this frame needs dropping.
        unsafe { ffi::lua_error(state) }
    }
    1
}

/// Runs the call; true when the error table it pushed is to be raised.
#[allow(unsafe_code)]
unsafe fn step(state: *mut ffi::lua_State, raise: bool) -> bool {
    // SAFETY (for the block): `state` is live; reads stay within `lua_gettop`, pushes within the
    // room `lua_checkstack` made.
    unsafe {
        let Some(handler) = HANDLER.get() else {
            push::error_table(state, OUTSIDE);
            return true;
        };
        let args = read_args(state);
        ffi::lua_settop(state, 0);
        // SAFETY: set by `with_handler` for the time its `&mut` lasts; calls do not nest (no
        // command a script runs calls back into Lua).
        let outcome = (*handler)(args);
        match outcome {
            Outcome::Reply { reply, resp3 } => {
                push::reply(state, reply, resp3, 0);
                false
            }
            Outcome::Error(text) => {
                push::error_table(state, &text);
                raise
            }
        }
    }
}

/// The call's arguments as bytes: strings as they are, numbers as Redis prints them.
#[allow(unsafe_code)]
unsafe fn read_args(state: *mut ffi::lua_State) -> Result<Vec<Bytes>, ArgError> {
    // SAFETY (for the block): indexes 1..=top are valid; a string's pointer and length are read
    // and copied before anything else touches the stack.
    unsafe {
        let n = ffi::lua_gettop(state);
        if n == 0 {
            return Err(ArgError::Empty);
        }
        let mut argv = Vec::with_capacity(n as usize);
        for i in 1..=n {
            match ffi::lua_type(state, i) {
                ffi::LUA_TSTRING => {
                    let mut len = 0usize;
                    let p = ffi::lua_tolstring(state, i, &mut len);
                    argv.push(Bytes::copy_from_slice(std::slice::from_raw_parts(
                        p.cast::<u8>(),
                        len,
                    )));
                }
                ffi::LUA_TNUMBER => argv.push(number_arg(ffi::lua_tonumber(state, i))),
                _ => return Err(ArgError::NotStringOrNumber),
            }
        }
        Ok(argv)
    }
}

/// A number argument as Redis passes it: integral values without a fraction, others in their
/// shortest form.
fn number_arg(n: f64) -> Bytes {
    if n.fract() == 0.0 && n.abs() < 1e17 {
        Bytes::copy_from_slice(itoa::Buffer::new().format(n as i64).as_bytes())
    } else {
        Bytes::from(format!("{n}"))
    }
}

/// How a script is called.
pub enum Call<'c> {
    /// An EVAL script: KEYS and ARGV become globals of `globals`, the runner gets the script.
    Script { globals: &'c Table },
    /// A function: the runner gets the function, KEYS and ARGV.
    Function,
}

/// Calls `runner` (a Lua wrapper returning `ok, result`) on `func` with `keys` and `argv`,
/// their tables built on the stack.
pub fn run(
    lua: &Lua,
    runner: &Function,
    func: &Function,
    call: Call,
    keys: &[Bytes],
    argv: &[Bytes],
) -> mlua::Result<(bool, Value)> {
    let globals = match call {
        Call::Script { globals } => Value::Table(globals.clone()),
        Call::Function => Value::Nil,
    };
    // SAFETY: `exec_raw` runs the closure protected, with (runner, func, globals) at 1..=3; the
    // closure leaves exactly `ok, result` on the stack.
    #[allow(unsafe_code)]
    unsafe {
        lua.exec_raw::<(bool, Value)>((runner, func, globals), |state| {
            ffi::lua_checkstack(state, 8);
            push::strings(state, keys);
            push::strings(state, argv);
            // 1 runner, 2 func, 3 globals, 4 keys, 5 argv
            let nargs = if ffi::lua_type(state, 3) == ffi::LUA_TTABLE {
                ffi::lua_pushstring(state, c"ARGV".as_ptr());
                ffi::lua_insert(state, -2);
                ffi::lua_rawset(state, 3);
                ffi::lua_pushstring(state, c"KEYS".as_ptr());
                ffi::lua_insert(state, -2);
                ffi::lua_rawset(state, 3);
                ffi::lua_pushvalue(state, 1);
                ffi::lua_pushvalue(state, 2);
                1
            } else {
                ffi::lua_pushvalue(state, 1);
                ffi::lua_insert(state, 4);
                ffi::lua_pushvalue(state, 2);
                ffi::lua_insert(state, 5);
                3
            };
            ffi::lua_call(state, nargs, 2);
            ffi::lua_remove(state, 1);
            ffi::lua_remove(state, 1);
            ffi::lua_remove(state, 1);
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Runs `code` with every `redis.call` / `redis.pcall` answered by `outcome`.
    fn with_calls<R: mlua::FromLuaMulti>(code: &str, outcome: impl Fn() -> Outcome) -> R {
        let lua = Lua::new();
        let (call, pcall) = functions(&lua).unwrap();
        let redis = lua.create_table().unwrap();
        redis.raw_set("call", call).unwrap();
        redis.raw_set("pcall", pcall).unwrap();
        lua.globals().raw_set("redis", redis).unwrap();
        let f = lua.load(code).into_function().unwrap();
        with_handler(&mut |_| outcome(), || f.call::<R>(())).unwrap()
    }

    fn reply(r: Reply, resp3: bool) -> impl Fn() -> Outcome {
        move || Outcome::Reply {
            reply: r.clone(),
            resp3,
        }
    }

    #[test]
    fn replies_become_lua_values() {
        let check = |r: Reply, resp3: bool, test: &str| {
            let ok: bool = with_calls(
                &format!("local v = redis.call('X') return {test}"),
                reply(r, resp3),
            );
            assert!(ok, "{test}");
        };
        check(Reply::Int(5), false, "v == 5");
        check(Reply::Nil, false, "v == false");
        check(Reply::Nil, true, "v == nil");
        check(Reply::OK, false, "v.ok == 'OK'");
        check(Reply::error("ERR x"), false, "v.err == 'ERR x'");
        let map = Reply::Map(vec![(
            Reply::Bulk(Bytes::from_static(b"f")),
            Reply::Bulk(Bytes::from_static(b"v")),
        )]);
        check(map.clone(), false, "v[1] == 'f' and v[2] == 'v'");
        check(map, true, "v.map.f == 'v'");
        check(Reply::Double(2.5), true, "v.double == 2.5");
        check(Reply::Double(2.5), false, "v == '2.5'");
        check(
            Reply::Array(vec![Reply::Int(1), Reply::Nil]),
            false,
            "v[1] == 1 and v[2] == false",
        );
        check(
            Reply::Set(vec![Reply::Bulk(Bytes::from_static(b"m"))]),
            true,
            "v.set.m == true",
        );
        check(
            Reply::Raw(Bytes::from_static(b"*2\r\n$3\r\nabc\r\n:4\r\n")),
            false,
            "v[1] == 'abc' and v[2] == 4",
        );
    }

    #[test]
    fn call_raises_a_table_and_pcall_returns_it() {
        let fail = || Outcome::Error("ERR no".into());
        let (ok, err): (bool, String) = with_calls(
            "local ok, e = pcall(redis.call, 'X') return ok, e.err",
            fail,
        );
        assert!(!ok);
        assert_eq!(err, "ERR no");
        let err: String = with_calls("return redis.pcall('X').err", fail);
        assert_eq!(err, "ERR no");
    }

    #[test]
    fn arguments_arrive_as_redis_passes_them() {
        let lua = Lua::new();
        let (call, _) = functions(&lua).unwrap();
        lua.globals().raw_set("call", call).unwrap();
        let mut seen = Vec::new();
        let f = lua
            .load("call('SET', 'k', 10, 1.5) call() call({})")
            .into_function()
            .unwrap();
        let _ = with_handler(
            &mut |args| {
                seen.push(args);
                Outcome::Reply {
                    reply: Reply::OK,
                    resp3: false,
                }
            },
            || f.call::<()>(()),
        );
        let strs = |v: &[&str]| v.iter().map(|s| Bytes::from(s.to_string())).collect();
        assert_eq!(
            seen,
            vec![
                Ok(strs(&["SET", "k", "10", "1.5"])),
                Err(ArgError::Empty),
                Err(ArgError::NotStringOrNumber),
            ]
        );
    }

    #[test]
    fn a_call_outside_a_script_fails() {
        let lua = Lua::new();
        let (call, _) = functions(&lua).unwrap();
        lua.globals().raw_set("call", call).unwrap();
        let err: String = lua
            .load("local ok, e = pcall(call, 'GET', 'k') return e.err")
            .eval()
            .unwrap();
        assert_eq!(err, OUTSIDE);
    }

    #[test]
    fn keys_and_argv_reach_scripts_and_functions() {
        let lua = Lua::new();
        let runner: Function = lua
            .load("return function(f, ...) return true, f(...) end")
            .eval()
            .unwrap();
        let keys = [Bytes::from_static(b"k1"), Bytes::from_static(b"k2")];
        let argv = [Bytes::from_static(b"a")];
        let script: Function = lua
            .load("return function() return KEYS[2] .. ARGV[1] end")
            .eval()
            .unwrap();
        let globals = lua.globals();
        let (ok, v) = run(
            &lua,
            &runner,
            &script,
            Call::Script { globals: &globals },
            &keys,
            &argv,
        )
        .unwrap();
        assert!(ok);
        assert_eq!(v.as_string().unwrap().to_str().unwrap(), "k2a");
        let func: Function = lua
            .load("return function(k, a) return #k + #a end")
            .eval()
            .unwrap();
        let (_, v) = run(&lua, &runner, &func, Call::Function, &keys, &argv).unwrap();
        assert_eq!(
            v.as_number().or(v.as_integer().map(|n| n as f64)),
            Some(3.0)
        );
    }
}
