//! The libraries run from Lua, through `register`, as a script uses them.

mod bit;
mod cjson;
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

#[test]
fn globals_are_set() {
    let kinds: Vec<String> = eval("return {type(cjson), type(cmsgpack), type(bit), type(struct)}");
    assert_eq!(kinds, ["table", "table", "table", "table"]);
}

#[test]
fn argument_errors_name_the_function_as_called() {
    // Called by its field name, through a local, through pcall, and in tail position.
    assert_eq!(
        error_of("cjson.encode(1, 2)"),
        "bad argument #1 to 'encode' (expected 1 argument)"
    );
    assert_eq!(
        error_of("local enc = cjson.encode; enc(1, 2)"),
        "bad argument #1 to 'enc' (expected 1 argument)"
    );
    assert_eq!(
        eval::<String>("local ok, e = pcall(cjson.encode, 1, 2) return e"),
        "bad argument #1 to '?' (expected 1 argument)"
    );
    // A tail call to the wrapper loses the caller's frame: the name is the function's own and
    // the position is missing (the C function would have both).
    assert_eq!(
        raw_error_of("return cjson.decode()"),
        "bad argument #1 to 'decode' (expected 1 argument)"
    );
}

#[test]
fn errors_carry_the_callers_position() {
    assert_eq!(
        raw_error_of("local x = 1\n cjson.decode('x')"),
        "user_script:2: Expected value but found invalid token at character 1"
    );
    // Called by pcall (a C function) there is no position; nor for Lua API errors.
    assert_eq!(
        eval::<String>("local ok, e = pcall(cjson.decode, 'x') return e"),
        "Expected value but found invalid token at character 1"
    );
    assert_eq!(
        raw_error_of("cmsgpack.unpack('\\129\\192\\1')"),
        "table index is nil"
    );
}

#[test]
fn uncaught_errors_reach_rust_as_the_message() {
    let lua = vm();
    let err = lua.load("cjson.decode('[')").exec().expect_err("must fail");
    assert!(
        err.to_string()
            .contains("Expected value but found T_END at character 2"),
        "{err}"
    );
}
