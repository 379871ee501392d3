pub fn register(_lua: &mlua::Lua) -> mlua::Result<()> {
    Ok(())
}
