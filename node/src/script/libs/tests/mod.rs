//! The libraries run from Lua, through `register`, as a script uses them.

mod bit;
mod cmsgpack;
mod structs;

use mlua::{FromLuaMulti, Lua};

/// A Lua VM with the libraries registered.
fn vm() -> Lua {
    let lua = Lua::new();
    super::register(&lua).expect("register");
    lua
}

/// Runs `code` (a chunk that returns something) on a fresh VM, as the chunk "user_script".
fn eval<T: FromLuaMulti>(code: &str) -> T {
    let lua = vm();
    lua.load(code)
        .set_name("=user_script")
        .eval::<T>()
        .unwrap_or_else(|e| panic!("{code}: {e}"))
}

/// The error `code` raises, caught by `pcall` inside Lua: it must be a string.
fn raw_error_of(code: &str) -> String {
    let wrapped = format!(
        "local ok, e = pcall(function() {code} end)\n\
         assert(not ok, 'no error')\n\
         assert(type(e) == 'string', 'error is a ' .. type(e))\n\
         return e"
    );
    eval::<String>(&wrapped)
}

/// The error `code` raises, without the position every library error starts with (the line
/// of the Lua code calling the library function, as `luaL_error` writes it).
fn error_of(code: &str) -> String {
    let e = raw_error_of(code);
    match e.strip_prefix("user_script:1: ") {
        Some(rest) => rest.to_owned(),
        None => panic!("no position in {e:?}"),
    }
}

/// Bytes as lower-case hex.
fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

