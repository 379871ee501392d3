//! How a library function is called and raises errors, the same for the four libraries.
//!
//! A C library function raises a string (`luaL_error`, `luaL_argerror`), which a script's
//! `pcall` receives as is. An mlua callback raises userdata instead, so each Rust function here
//! returns `true, results...` or `false, message` to a small Lua wrapper that returns the results
//! or raises the message with `error(message, 0)`. The message already starts with the position
//! `luaL_error` would write (the calling Lua function's source and line), found here through the
//! debug API. Argument helpers follow `luaL_check*`: the same conversions and the same texts.

use mlua::{Function, Lua, MultiValue, Table, Value};

pub(crate) use super::spill::Out;

/// The Lua API's stack limit for a C function (`LUAI_MAXCSTACK`): the C libraries fail with
/// their own errors when a result or a nesting would pass it, and so do these.
pub(crate) const MAX_C_STACK: usize = 8000;

/// The largest string an encoder builds. Past it the encoder fails as a Lua allocation does
/// ("not enough memory") instead of taking the node's memory: a table shared many times over
/// (a cycle within cmsgpack's 16 levels, a DAG for cjson) encodes to exponentially much text.
/// (Unit tests run with a small one.)
pub(crate) const MAX_OUTPUT: usize = if cfg!(test) { 1 << 22 } else { 1 << 30 };

/// `Err` once `len` bytes pass [`MAX_OUTPUT`].
pub(crate) fn check_output(len: usize) -> Result<(), Raise> {
    if len > MAX_OUTPUT {
        return Err(Raise::Bare(b"not enough memory".to_vec()));
    }
    Ok(())
}

/// An error a library function raises. Texts are bytes: a format option or a setting name in
/// one is the script's byte, UTF-8 or not.
pub(crate) enum Raise {
    /// `luaL_error`: the text after the caller's position.
    Text(Vec<u8>),
    /// `luaL_argerror`: "bad argument #n to 'name' (text)", after the caller's position.
    Arg(i64, Vec<u8>),
    /// An error of the Lua API itself (`table index is nil`): the text alone.
    Bare(Vec<u8>),
    /// An error of the Lua runtime (memory), passed on unchanged.
    Lua(mlua::Error),
}

impl From<mlua::Error> for Raise {
    fn from(e: mlua::Error) -> Self {
        Raise::Lua(e)
    }
}

/// A `Raise::Text`.
pub(crate) fn text(message: impl Into<Vec<u8>>) -> Raise {
    Raise::Text(message.into())
}

/// A `Raise::Arg`.
pub(crate) fn arg(n: i64, message: impl Into<Vec<u8>>) -> Raise {
    Raise::Arg(n, message.into())
}

/// What a library function returns.
pub(crate) type Outcome = Result<Out, Raise>;

/// One value as a function's results.
pub(crate) fn one(v: Value) -> Outcome {
    Ok(Out::Values(MultiValue::from_vec(vec![v])))
}

/// Values as a function's results.
pub(crate) fn values(v: Vec<Value>) -> Outcome {
    Ok(Out::Values(MultiValue::from_vec(v)))
}

/// The wrapper around each Rust function. The Rust function answers `true, results...`, or
/// `false, message`, or `nil, list, n` for results too many to return from a callback (mlua
/// returns about 7900, the C libraries up to 7999; `unpack` here returns up to that). Calls
/// with many arguments pass them in a table behind `marker`, for the same reason.
const SHIM: &str = r#"
local error, unpack, select, marker = ...
local function finish(ok, ...)
  if ok then return ... end
  if ok == false then error((...), 0) end
  local list, n = ...
  if n < 3 then return unpack(list, 1, n) end
  return list[1], list[2], unpack(list, 3, n)
end
return function(raw)
  return function(...)
    local n = select('#', ...)
    if n > 32 then return finish(raw(marker, n, {...})) end
    return finish(raw(...))
  end
end
"#;

/// Makes library functions out of Rust functions (see the module comment).
#[derive(Clone)]
pub(crate) struct Binder {
    wrap: Function,
    marker: Table,
}

impl Binder {
    pub(crate) fn new(lua: &Lua) -> mlua::Result<Self> {
        let globals = lua.globals();
        let error: Function = globals.raw_get("error")?;
        let unpack: Function = globals.raw_get("unpack")?;
        let select: Function = globals.raw_get("select")?;
        let marker = lua.create_table()?;
        let wrap = lua.load(SHIM).set_name("=[C]").call::<Function>((
            error,
            unpack,
            select,
            marker.clone(),
        ))?;
        Ok(Binder { wrap, marker })
    }

    /// Sets `table[name]` to a function running `f`.
    pub(crate) fn bind<F>(
        &self,
        lua: &Lua,
        table: &Table,
        name: &'static str,
        f: F,
    ) -> mlua::Result<()>
    where
        F: Fn(&Lua, Args) -> Outcome + mlua::MaybeSend + 'static,
    {
        let marker = self.marker.to_pointer() as usize;
        let raw = lua.create_function(move |lua, args: MultiValue| {
            let out = match f(lua, Args::new(args.into_vec(), marker)) {
                Ok(out) => out,
                Err(Raise::Lua(e)) => return Err(e),
                Err(Raise::Bare(message)) => return failed(lua, message),
                Err(Raise::Text(message)) => return failed(lua, [position(lua), message].concat()),
                Err(Raise::Arg(n, message)) => {
                    return failed(
                        lua,
                        [position(lua), arg_error(lua, name, n, &message)].concat(),
                    )
                }
            };
            Ok(match out {
                Out::Values(mut v) => {
                    v.push_front(Value::Boolean(true));
                    v
                }
                Out::List(t, n) => MultiValue::from_vec(vec![
                    Value::Nil,
                    Value::Table(t),
                    Value::Integer(n as i64),
                ]),
            })
        })?;
        table.raw_set(name, self.wrap.call::<Function>(raw)?)
    }
}

fn failed(lua: &Lua, message: Vec<u8>) -> mlua::Result<MultiValue> {
    Ok(MultiValue::from_vec(vec![
        Value::Boolean(false),
        Value::String(lua.create_string(message)?),
    ]))
}

/// `luaL_where(L, 1)` as the C function would see it: "source:line: " of the Lua function that
/// called the wrapper (level 2 from this callback), empty when that is a C function (`pcall`)
/// or lost to a tail call.
fn position(lua: &Lua) -> Vec<u8> {
    let found = lua.inspect_stack(2, |d| {
        let line = d.current_line();
        let src = d.source().short_src.map(|s| s.into_owned());
        (line, src)
    });
    match found {
        Some((Some(line), Some(src))) if line > 0 => format!("{src}:{line}: ").into_bytes(),
        _ => Vec::new(),
    }
}

/// `luaL_argerror`'s text. The name is the one the caller used for the wrapper (level 1 from
/// this callback), as Lua 5.1's `getfuncname` finds it; a wrapper reached by a tail call has
/// lost it, where the C function would still have its own, so that case takes `own`.
fn arg_error(lua: &Lua, own: &str, mut n: i64, message: &[u8]) -> Vec<u8> {
    let found = lua.inspect_stack(1, |d| {
        let names = d.names();
        (names.name.map(|s| s.into_owned()), names.name_what)
    });
    let (name, what) = found.unwrap_or((None, None));
    if what == Some("method") {
        n -= 1;
        if n == 0 {
            let name = name.unwrap_or_else(|| "?".to_owned());
            return [
                format!("calling '{name}' on bad self (").as_bytes(),
                message,
                &b")"[..],
            ]
            .concat();
        }
    }
    let name = match name {
        Some(name) => name,
        None if lua
            .inspect_stack(2, |d| d.source().what == "tail")
            .unwrap_or(false) =>
        {
            own.to_owned()
        }
        None => "?".to_owned(),
    };
    [
        format!("bad argument #{n} to '{name}' (").as_bytes(),
        message,
        &b")"[..],
    ]
    .concat()
}

/// A Lua type's name as `luaL_typename` gives it; `None` is an absent argument.
pub(crate) fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        None => "no value",
        Some(Value::Nil) => "nil",
        Some(Value::Boolean(_)) => "boolean",
        Some(Value::Integer(_) | Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Table(_)) => "table",
        Some(Value::Function(_)) => "function",
        Some(Value::Thread(_)) => "thread",
        Some(_) => "userdata",
    }
}

/// A Lua number's value, for a value that is a number (not a string).
pub(crate) fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

/// A double to `lua_Integer` as Lua 5.1 on x86-64 converts it (`cvttsd2si`: truncation, and
/// the "integer indefinite" i64::MIN for NaN and out of range).
pub(crate) fn to_lua_integer(n: f64) -> i64 {
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// A double to C `int` the same way (i32::MIN when out of range).
pub(crate) fn to_c_int(n: f64) -> i32 {
    if n.is_nan() || n >= 2_147_483_648.0 || n <= -2_147_483_649.0 {
        i32::MIN
    } else {
        n as i32
    }
}

/// A function's arguments, numbered from 1 as in Lua: as mlua passed them, or in the table the
/// wrapper packed them in.
pub(crate) enum Args {
    Direct(Vec<Value>),
    Packed(Table, usize),
}

impl Args {
    /// `marker` is the wrapper's marker table, as a pointer.
    fn new(v: Vec<Value>, marker: usize) -> Self {
        if let [Value::Table(m), n, Value::Table(t)] = &v[..] {
            if m.to_pointer() as usize == marker {
                let n = as_number(n)
                    .filter(|n| *n >= 0.0 && *n < 1e9)
                    .unwrap_or(0.0) as usize;
                return Args::Packed(t.clone(), n);
            }
        }
        Args::Direct(v)
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Args::Direct(v) => v.len(),
            Args::Packed(_, n) => *n,
        }
    }

    /// One more argument, nil (what a C function pushing a nil on its stack then reads there).
    pub(crate) fn push_nil(&mut self) {
        match self {
            Args::Direct(v) => v.push(Value::Nil),
            Args::Packed(_, n) => *n += 1,
        }
    }

    /// Argument `n`, `None` when absent.
    pub(crate) fn get(&self, n: usize) -> Result<Option<Value>, Raise> {
        if n == 0 || n > self.len() {
            return Ok(None);
        }
        match self {
            Args::Direct(v) => Ok(v.get(n - 1).cloned()),
            Args::Packed(t, _) => Ok(Some(t.raw_get(n)?)),
        }
    }

    /// Absent or nil (`lua_isnoneornil`).
    pub(crate) fn is_none_or_nil(&self, n: usize) -> Result<bool, Raise> {
        Ok(matches!(self.get(n)?, None | Some(Value::Nil)))
    }

    fn type_error(&self, n: usize, expected: &str) -> Raise {
        let found = self.get(n).ok().flatten();
        arg(
            n as i64,
            format!("{expected} expected, got {}", type_name(found.as_ref())),
        )
    }

    /// `lua_tonumber`: numbers, and strings Lua converts; `None` otherwise.
    pub(crate) fn to_number(&self, lua: &Lua, n: usize) -> Result<Option<f64>, Raise> {
        match self.get(n)? {
            Some(v @ (Value::Integer(_) | Value::Number(_))) => Ok(as_number(&v)),
            Some(v @ Value::String(_)) => Ok(lua.coerce_number(v)?),
            _ => Ok(None),
        }
    }

    /// `luaL_checknumber`.
    pub(crate) fn number(&self, lua: &Lua, n: usize) -> Result<f64, Raise> {
        self.to_number(lua, n)?
            .ok_or_else(|| self.type_error(n, "number"))
    }

    /// `luaL_checkinteger`.
    pub(crate) fn integer(&self, lua: &Lua, n: usize) -> Result<i64, Raise> {
        self.number(lua, n).map(to_lua_integer)
    }

    /// `luaL_optinteger`.
    pub(crate) fn opt_integer(&self, lua: &Lua, n: usize, default: i64) -> Result<i64, Raise> {
        if self.is_none_or_nil(n)? {
            Ok(default)
        } else {
            self.integer(lua, n)
        }
    }

    /// `luaL_checklstring`: a string, or a number as Lua turns it into one.
    pub(crate) fn string(&self, lua: &Lua, n: usize) -> Result<mlua::String, Raise> {
        match self.get(n)? {
            Some(Value::String(s)) => Ok(s),
            Some(v @ (Value::Integer(_) | Value::Number(_))) => lua
                .coerce_string(v)?
                .ok_or_else(|| self.type_error(n, "string")),
            _ => Err(self.type_error(n, "string")),
        }
    }
}
