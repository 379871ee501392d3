//! The Lua libraries a Redis script finds as globals: `cjson`, `cmsgpack`, `bit` and `struct`,
//! written on mlua's API to behave as the C versions Redis 7.0 bundles (lua-cjson 2.1.0,
//! lua-cmsgpack 0.4.0, LuaBitOp 1.0.2, lua-struct 0.2): the same results and the same error texts.
//!
//! Every library function is a Rust function wrapped by `call::Binder` so that its errors reach
//! the script as plain strings, as the C functions raise them (mlua alone raises userdata).

mod bit;
mod call;
mod cjson;
mod cmsgpack;
mod spill;
mod structs;

#[cfg(test)]
mod tests;

use mlua::Lua;

/// Sets the globals `cjson`, `cmsgpack`, `bit` and `struct` on `lua` (plain tables: making them
/// read-only is the caller's part, as for the other globals).
pub fn register(lua: &Lua) -> mlua::Result<()> {
    let binder = call::Binder::new(lua)?;
    let globals = lua.globals();
    globals.raw_set("cjson", cjson::module(lua, &binder)?)?;
    globals.raw_set("cmsgpack", cmsgpack::module(lua, &binder)?)?;
    globals.raw_set("bit", bit::module(lua, &binder)?)?;
    globals.raw_set("struct", structs::module(lua, &binder)?)?;
    Ok(())
}
