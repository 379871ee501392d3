//! `cjson`: lua-cjson 2.1.0 as Redis 7.0 bundles it: `encode`, `decode`, the configuration
//! functions, `new`, `null` (a NULL light userdata, what JSON null decodes to) and `_NAME`,
//! `_VERSION`. Each module table (the global one and each `cjson.new()`) has its own settings.

mod decode;
mod encode;
mod number;

use std::sync::{Arc, Mutex, MutexGuard};

use mlua::{LightUserData, Lua, Table, Value};

use super::call::{arg, one, text, values, Args, Binder, Raise};

/// One module table's settings, with lua-cjson's defaults.
#[derive(Clone, Copy)]
pub(crate) struct Config {
    pub(crate) sparse_convert: bool,
    pub(crate) sparse_ratio: i32,
    pub(crate) sparse_safe: i32,
    pub(crate) encode_max_depth: i32,
    pub(crate) decode_max_depth: i32,
    /// 0 refuse NaN and Inf, 1 write them (`nan`, `inf`), 2 write them as `null`.
    pub(crate) encode_invalid_numbers: u8,
    pub(crate) decode_invalid_numbers: bool,
    pub(crate) keep_buffer: bool,
    pub(crate) precision: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: true,
            keep_buffer: true,
            precision: 14,
        }
    }
}

type Shared = Arc<Mutex<Config>>;

fn lock(cfg: &Shared) -> MutexGuard<'_, Config> {
    // A Config is plain values: one left by a panicking lock holder is still whole.
    cfg.lock().unwrap_or_else(|e| e.into_inner())
}

/// The value JSON null decodes to, `cjson.null`.
pub(crate) fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

pub(crate) fn module(lua: &Lua, binder: &Binder) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let cfg: Shared = Arc::new(Mutex::new(Config::default()));
    let c = cfg.clone();
    binder.bind(lua, &t, "encode", move |lua, a| {
        if a.len() != 1 {
            return Err(arg(1, "expected 1 argument"));
        }
        let config = *lock(&c);
        let out = encode::encode(lua, &config, a.get(1)?.unwrap_or(Value::Nil))?;
        one(Value::String(lua.create_string(&out)?))
    })?;
    let c = cfg.clone();
    binder.bind(lua, &t, "decode", move |lua, a| {
        if a.len() != 1 {
            return Err(arg(1, "expected 1 argument"));
        }
        let config = *lock(&c);
        let s = a.string(lua, 1)?;
        one(decode::decode(lua, &config, &s.as_bytes())?)
    })?;
    let c = cfg.clone();
    binder.bind(lua, &t, "encode_sparse_array", move |lua, a| {
        let a = options(a, 3)?;
        let mut g = lock(&c);
        let convert = bool_option(lua, &a, 1, &mut g.sparse_convert)?;
        let ratio = int_option(lua, &a, 2, &mut g.sparse_ratio, 0, i32::MAX)?;
        let safe = int_option(lua, &a, 3, &mut g.sparse_safe, 0, i32::MAX)?;
        values(vec![convert, ratio, safe])
    })?;
    let c = cfg.clone();
    binder.bind(lua, &t, "encode_max_depth", move |lua, a| {
        let a = options(a, 1)?;
        one(int_option(
            lua,
            &a,
            1,
            &mut lock(&c).encode_max_depth,
            1,
            i32::MAX,
        )?)
    })?;
    let c = cfg.clone();
    binder.bind(lua, &t, "decode_max_depth", move |lua, a| {
        let a = options(a, 1)?;
        one(int_option(
            lua,
            &a,
            1,
            &mut lock(&c).decode_max_depth,
            1,
            i32::MAX,
        )?)
    })?;
    let c = cfg.clone();
    binder.bind(lua, &t, "encode_number_precision", move |lua, a| {
        let a = options(a, 1)?;
        one(int_option(lua, &a, 1, &mut lock(&c).precision, 1, 14)?)
    })?;
    let c = cfg.clone();
    binder.bind(lua, &t, "encode_keep_buffer", move |lua, a| {
        let a = options(a, 1)?;
        one(bool_option(lua, &a, 1, &mut lock(&c).keep_buffer)?)
    })?;
    let c = cfg.clone();
    binder.bind(lua, &t, "encode_invalid_numbers", move |lua, a| {
        let a = options(a, 1)?;
        let mut g = lock(&c);
        let mut setting = usize::from(g.encode_invalid_numbers);
        let v = enum_option(lua, &a, 1, &mut setting, &["off", "on", "null"])?;
        g.encode_invalid_numbers = setting as u8;
        one(v)
    })?;
    let c = cfg;
    binder.bind(lua, &t, "decode_invalid_numbers", move |lua, a| {
        let a = options(a, 1)?;
        one(bool_option(
            lua,
            &a,
            1,
            &mut lock(&c).decode_invalid_numbers,
        )?)
    })?;
    let b = binder.clone();
    binder.bind(lua, &t, "new", move |lua, _| {
        one(Value::Table(module(lua, &b)?))
    })?;
    t.raw_set("null", null())?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    Ok(t)
}

/// A configuration function's arguments: at most `max` of them.
fn options(a: Args, max: usize) -> Result<Args, Raise> {
    if a.len() > max {
        return Err(arg(max as i64 + 1, "found too many arguments"));
    }
    Ok(a)
}

/// An integer setting: argument `n` (when not nil) must lie in `min..=max`. lua-cjson reports
/// a value out of range against argument 1 whatever `n` is.
fn int_option(
    lua: &Lua,
    a: &Args,
    n: usize,
    setting: &mut i32,
    min: i32,
    max: i32,
) -> Result<Value, Raise> {
    if !a.is_none_or_nil(n)? {
        // lua_Integer stored in a C int: the low 32 bits.
        let value = a.integer(lua, n)? as i32;
        if value < min || value > max {
            return Err(arg(1, format!("expected integer between {min} and {max}")));
        }
        *setting = value;
    }
    Ok(Value::Integer(i64::from(*setting)))
}

/// An on/off setting: a boolean, or "on"/"off".
fn bool_option(lua: &Lua, a: &Args, n: usize, setting: &mut bool) -> Result<Value, Raise> {
    let mut s = usize::from(*setting);
    let v = enum_option(lua, a, n, &mut s, &["off", "on"])?;
    *setting = s != 0;
    Ok(v)
}

/// lua-cjson's enumerated setting: `true`/`false` are options 1 and 0, else one of `names`;
/// returns the setting as a boolean when it is 0 or 1, else as its name.
fn enum_option(
    lua: &Lua,
    a: &Args,
    n: usize,
    setting: &mut usize,
    names: &[&str],
) -> Result<Value, Raise> {
    match a.get(n)? {
        None | Some(Value::Nil) => {}
        Some(Value::Boolean(b)) => *setting = usize::from(b),
        Some(_) => {
            let s = a.string(lua, n)?;
            let s = s.as_bytes();
            match names.iter().position(|name| name.as_bytes() == &s[..]) {
                Some(i) => *setting = i,
                None => {
                    return Err(arg(
                        n as i64,
                        [&b"invalid option '"[..], &s[..], &b"'"[..]].concat(),
                    ))
                }
            }
        }
    }
    if *setting <= 1 {
        Ok(Value::Boolean(*setting == 1))
    } else {
        let name = names.get(*setting).copied().unwrap_or("");
        Ok(Value::String(lua.create_string(name)?))
    }
}

/// `Cannot serialise <type>: <reason>`.
pub(crate) fn cannot_serialise(type_name: &str, reason: &str) -> Raise {
    text(format!("Cannot serialise {type_name}: {reason}"))
}
