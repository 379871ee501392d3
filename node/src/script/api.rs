//! The `redis` table scripts see, except `redis.call` and `redis.pcall` (see `super::call`):
//! `sha1hex`, `error_reply`, `status_reply`, `log`, `setresp`, `set_repl`,
//! `replicate_commands`, `breakpoint`, `debug`, `acl_check_cmd` and the constants. Functions
//! that can fail return `(value, failed)`; the Lua wrappers in `redis.lua` raise the error.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use mlua::{Lua, MultiValue, Table, Value};

use super::convert::{coded_error, err_table};

type Outcome = mlua::Result<(Value, bool)>;

fn fail(lua: &Lua, text: &str) -> Outcome {
    Ok((Value::Table(err_table(lua, &coded_error(text))?), true))
}

fn ok(v: Value) -> Outcome {
    Ok((v, false))
}

pub fn redis_table(lua: &Lua, resp: &Arc<AtomicU8>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("sha1hex", lua.create_function(sha1hex)?)?;
    t.raw_set("error_reply", lua.create_function(error_reply)?)?;
    t.raw_set("status_reply", lua.create_function(status_reply)?)?;
    t.raw_set("log", lua.create_function(log)?)?;
    let r = resp.clone();
    t.raw_set(
        "setresp",
        lua.create_function(move |lua, args: MultiValue| setresp(lua, args, &r))?,
    )?;
    t.raw_set("set_repl", lua.create_function(set_repl)?)?;
    t.raw_set("acl_check_cmd", lua.create_function(acl_check_cmd)?)?;
    t.raw_set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    t.raw_set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
    t.raw_set("debug", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    for (name, v) in [
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
        ("REDIS_VERSION_NUM", 0x07_00_0f),
    ] {
        t.raw_set(name, v)?;
    }
    t.raw_set("REDIS_VERSION", "7.0.15")?;
    Ok(t)
}

fn sha1hex(lua: &Lua, args: MultiValue) -> Outcome {
    if args.len() != 1 {
        return fail(lua, "wrong number of arguments");
    }
    let data = match &args[0] {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(n) => n.to_string().into_bytes(),
        Value::Number(n) => n.to_string().into_bytes(),
        _ => Vec::new(),
    };
    ok(Value::String(lua.create_string(super::sha1::hex(&data))?))
}

fn one_string(args: &MultiValue) -> Option<String> {
    match (args.len(), args.front()) {
        (1, Some(Value::String(s))) => Some(s.to_string_lossy()),
        _ => None,
    }
}

fn error_reply(lua: &Lua, args: MultiValue) -> Outcome {
    let Some(text) = one_string(&args) else {
        return fail(lua, "wrong number or type of arguments");
    };
    let text = if text.starts_with('-') {
        text
    } else {
        format!("-{text}")
    };
    ok(Value::Table(err_table(lua, &coded_error(&text))?))
}

fn status_reply(lua: &Lua, args: MultiValue) -> Outcome {
    let Some(text) = one_string(&args) else {
        return fail(lua, "wrong number or type of arguments");
    };
    let t = lua.create_table_with_capacity(0, 1)?;
    t.raw_set("ok", text)?;
    ok(Value::Table(t))
}

fn log(lua: &Lua, args: MultiValue) -> Outcome {
    if args.len() < 2 {
        return fail(lua, "redis.log() requires two arguments or more.");
    }
    let level = match &args[0] {
        Value::Integer(n) => *n,
        Value::Number(n) => *n as i64,
        _ => return fail(lua, "First argument must be a number (log level)."),
    };
    if !(0..=3).contains(&level) {
        return fail(lua, "Invalid debug level.");
    }
    let mut text = String::new();
    for (i, v) in args.iter().skip(1).enumerate() {
        if i > 0 {
            text.push(' ');
        }
        match v {
            Value::String(s) => text.push_str(&s.to_string_lossy()),
            Value::Integer(n) => text.push_str(&n.to_string()),
            Value::Number(n) => text.push_str(&n.to_string()),
            _ => {}
        }
    }
    match level {
        0 => tracing::debug!(target: "script", "{text}"),
        1 | 2 => tracing::info!(target: "script", "{text}"),
        _ => tracing::warn!(target: "script", "{text}"),
    }
    ok(Value::Nil)
}

fn setresp(lua: &Lua, args: MultiValue, resp: &AtomicU8) -> Outcome {
    if args.len() != 1 {
        return fail(lua, "redis.setresp() requires one argument.");
    }
    let v = match &args[0] {
        Value::Integer(n) => *n,
        Value::Number(n) => *n as i64,
        _ => 0,
    };
    if v != 2 && v != 3 {
        return fail(lua, "RESP version must be 2 or 3.");
    }
    resp.store(v as u8, Relaxed);
    ok(Value::Nil)
}

fn set_repl(lua: &Lua, args: MultiValue) -> Outcome {
    if args.len() != 1 {
        return fail(lua, "redis.set_repl() requires one argument.");
    }
    let v = match &args[0] {
        Value::Integer(n) => *n,
        Value::Number(n) => *n as i64,
        _ => -1,
    };
    if !(0..=3).contains(&v) {
        return fail(
            lua,
            "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
        );
    }
    ok(Value::Nil)
}

fn acl_check_cmd(lua: &Lua, args: MultiValue) -> Outcome {
    let name = match args.front() {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        _ => {
            return fail(
                lua,
                "Please specify at least one argument for this redis lib call",
            )
        }
    };
    let Some(spec) = ringcache_protocol::table::lookup(&name) else {
        return fail(lua, "Invalid command passed to redis.acl_check_cmd()");
    };
    let mut argv = Vec::with_capacity(args.len());
    for v in &args {
        match v {
            Value::String(s) => argv.push(bytes::Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(n) => argv.push(bytes::Bytes::from(n.to_string())),
            Value::Number(n) => argv.push(bytes::Bytes::from(n.to_string())),
            _ => {
                return fail(
                    lua,
                    "Lua redis lib command arguments must be strings or integers",
                )
            }
        }
    }
    let allowed = SCRIPT_USER.with(|u| match &*u.borrow() {
        Some(user) => user.check(spec, &argv).is_ok(),
        None => true,
    });
    ok(Value::Boolean(allowed))
}

thread_local! {
    /// The user the running script's client is authenticated as (`redis.acl_check_cmd`).
    static SCRIPT_USER: std::cell::RefCell<Option<std::sync::Arc<ringcache_protocol::acl::User>>> =
        const { std::cell::RefCell::new(None) };
}

/// Sets (or, with `None`, clears) the running script's user.
pub fn set_script_user(u: Option<std::sync::Arc<ringcache_protocol::acl::User>>) {
    SCRIPT_USER.with(|s| *s.borrow_mut() = u);
}
