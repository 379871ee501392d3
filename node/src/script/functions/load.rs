//! Loading a library: its `#!lua name=<lib>` metadata, its code run once with the library API
//! (`redis.register_function`, positional or with named arguments and flags), and Redis's
//! errors for each way that goes wrong.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mlua::{Function, Lua, MultiValue, Table, Value};

use super::{FunctionDef, Library, Registered};
use crate::script::convert::{coded_error, err_table, error_text};
use crate::script::shebang::Flags;
use crate::script::vm::{Vm, FUNCTION_SOURCE};

/// How long a library's code may run while it loads.
const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The library name from the code's first line, and where that line ends (its newline, or
/// the end of the code).
pub fn metadata(code: &[u8]) -> Result<(String, usize), String> {
    let Some(first) = code.strip_prefix(b"#!") else {
        return Err("ERR Missing library metadata".into());
    };
    let end = memchr::memchr(b'\n', first).unwrap_or(first.len());
    let line = String::from_utf8_lossy(&first[..end]);
    let line = line.trim_end_matches('\r');
    let (engine, rest) = line.split_once(' ').unwrap_or((line, ""));
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("ERR Engine '{engine}' not found"));
    }
    let mut name = None;
    for part in rest.split(' ').filter(|p| !p.is_empty()) {
        // A quoted value is the text inside the quotes (Redis splits the line as arguments).
        let part = part.replace('"', "");
        match part.strip_prefix("name=") {
            Some(_) if name.is_some() => {
                return Err(
                    "ERR Invalid metadata value, name argument was given multiple times".into(),
                )
            }
            Some(n) => name = Some(n.to_string()),
            None => return Err(format!("ERR Invalid metadata value given: {part}")),
        }
    }
    let Some(name) = name else {
        return Err("ERR Library name was not given".into());
    };
    if !valid_name(&name) {
        return Err(format!("ERR {BAD_NAME}"));
    }
    Ok((name, 2 + end))
}

/// Compiles and runs a library's code; the library with the functions it registered.
pub fn load(vm: &Vm, code: &Bytes) -> Result<Library, String> {
    let (name, line_end) = metadata(code)?;
    // The metadata line is not Lua: an empty line in its place keeps the line numbers.
    let body = code.get(line_end..).unwrap_or_default();
    let func = vm
        .lua
        .load(body)
        .set_name(FUNCTION_SOURCE)
        .set_mode(mlua::ChunkMode::Text)
        .set_environment(vm.lib_env.clone())
        .into_function()
        .map_err(|e| {
            let text = match e {
                mlua::Error::SyntaxError { message, .. } => message,
                other => other.to_string(),
            };
            format!(
                "ERR Error compiling function: {}",
                crate::script::convert::one_line(&text)
            )
        })?;
    *crate::keyspace::lock(&vm.registered) = Some(Vec::new());
    *crate::keyspace::lock(&vm.deadline) = Some(Instant::now() + LOAD_TIMEOUT);
    let ran = vm
        .set_loading
        .call::<()>(true)
        .and_then(|()| vm.run.call::<(bool, Value)>(func));
    *crate::keyspace::lock(&vm.deadline) = None;
    let _ = vm.set_loading.call::<()>(false);
    let registered = crate::keyspace::lock(&vm.registered)
        .take()
        .unwrap_or_default();
    match ran {
        Ok((true, _)) => {}
        Ok((false, Value::Table(t))) => {
            let text = match t.raw_get::<Value>("err") {
                Ok(Value::String(s)) => error_text(&s.to_string_lossy()),
                _ => "ERR unknown error".into(),
            };
            return Err(text);
        }
        Ok((false, _)) => return Err("ERR Error registering functions".into()),
        Err(e) => {
            return Err(format!(
                "ERR {}",
                crate::script::convert::one_line(&e.to_string())
            ))
        }
    }
    if registered.is_empty() {
        return Err("ERR No functions registered".into());
    }
    let mut functions = BTreeMap::new();
    for r in registered {
        let key = r.name.to_ascii_lowercase();
        if functions.contains_key(&key) {
            return Err("ERR Function already exists in the library".into());
        }
        functions.insert(
            key,
            FunctionDef {
                name: r.name,
                func: r.func,
                flags: r.flags,
                description: r.description,
            },
        );
    }
    Ok(Library {
        name,
        code: code.clone(),
        functions,
    })
}

type Outcome = mlua::Result<(Value, bool)>;

fn fail(lua: &Lua, text: &str) -> Outcome {
    Ok((Value::Table(err_table(lua, &coded_error(text))?), true))
}

/// `redis.register_function`, collecting into `into` while a library loads.
pub fn register_fn(
    lua: &Lua,
    into: &Arc<Mutex<Option<Vec<Registered>>>>,
) -> mlua::Result<Function> {
    let into = into.clone();
    lua.create_function(move |lua, args: MultiValue| {
        let mut guard = crate::keyspace::lock(&into);
        let Some(list) = guard.as_mut() else {
            return fail(
                lua,
                "redis.register_function can only be called on FUNCTION LOAD command",
            );
        };
        match registration(args) {
            Ok(r) => {
                list.push(r);
                Ok((Value::Nil, false))
            }
            Err(text) => fail(lua, &text),
        }
    })
}

/// The function one `redis.register_function` call registers, or its error.
fn registration(args: MultiValue) -> Result<Registered, String> {
    let (name, func, flags, description) = match args.len() {
        1 => {
            let Some(Value::Table(t)) = args.front() else {
                return Err("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).".into());
            };
            named(t)?
        }
        2 => {
            let Value::String(name) = &args[0] else {
                return Err("first argument to redis.register_function must be a string".into());
            };
            let Value::Function(f) = &args[1] else {
                return Err("second argument to redis.register_function must be a function".into());
            };
            (name.to_string_lossy(), f.clone(), Flags::default(), None)
        }
        _ => return Err("wrong number of arguments to redis.register_function".into()),
    };
    if !valid_name(&name) {
        return Err(BAD_NAME.into());
    }
    Ok(Registered {
        name,
        func,
        flags: Flags {
            declared: true,
            ..flags
        },
        description,
    })
}

type Named = (String, Function, Flags, Option<String>);

/// `redis.register_function{function_name=..., callback=..., flags={...}, description=...}`.
fn named(t: &Table) -> Result<Named, String> {
    let (mut name, mut func, mut flags, mut description) = (None, None, Flags::default(), None);
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            _ => {
                return Err(
                    "named argument key given to redis.register_function is not a string".into(),
                )
            }
        };
        match (key.as_str(), v) {
            ("function_name", Value::String(s)) => name = Some(s.to_string_lossy()),
            ("function_name", _) => {
                return Err("function_name argument given to redis.register_function must be a string".into())
            }
            ("callback", Value::Function(f)) => func = Some(f),
            ("callback", _) => {
                return Err("callback argument given to redis.register_function must be a function".into())
            }
            ("description", Value::String(s)) => description = Some(s.to_string_lossy()),
            ("description", _) => {
                return Err("description argument given to redis.register_function must be a string".into())
            }
            ("flags", Value::Table(list)) => {
                for f in list.sequence_values::<Value>() {
                    let ok = match f {
                        Ok(Value::String(s)) => flags.set(&s.to_string_lossy()),
                        _ => false,
                    };
                    if !ok {
                        return Err("unknown flag given".into());
                    }
                }
            }
            ("flags", _) => {
                return Err("flags argument to redis.register_function must be a table representing function flags".into())
            }
            _ => return Err("unknown argument given to redis.register_function".into()),
        }
    }
    let Some(name) = name else {
        return Err("redis.register_function must get a function name argument".into());
    };
    let Some(func) = func else {
        return Err("redis.register_function must get a callback argument".into());
    };
    Ok((name, func, flags, description))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn library_metadata() {
        assert_eq!(
            metadata(b"#!lua name=mylib\nreturn 1").unwrap(),
            ("mylib".into(), 16)
        );
        assert_eq!(metadata(b"#!LUA name=x").unwrap().0, "x");
        assert_eq!(
            metadata(b"#!bad_engine name=x").unwrap_err(),
            "ERR Engine 'bad_engine' not found"
        );
        assert_eq!(
            metadata(b"#! name=x").unwrap_err(),
            "ERR Engine '' not found"
        );
        assert_eq!(
            metadata(b"#!lua foo=bar").unwrap_err(),
            "ERR Invalid metadata value given: foo=bar"
        );
        assert_eq!(
            metadata(b"#!lua").unwrap_err(),
            "ERR Library name was not given"
        );
        assert!(metadata(b"#!lua name=a name=b")
            .unwrap_err()
            .contains("multiple times"));
        assert!(metadata(b"#!lua name=bad\0name")
            .unwrap_err()
            .contains("Library names"));
        assert_eq!(
            metadata(b"return 1").unwrap_err(),
            "ERR Missing library metadata"
        );
        assert_eq!(metadata(b"#!lua name=\"foo\"\n").unwrap().0, "foo");
    }
}
