//! `cmsgpack`: lua-cmsgpack 0.4.0's `pack`, `unpack`, `unpack_one` and `unpack_limit`.
//!
//! Packing: a table whose keys are exactly 1..n is an array (an empty table too), any other
//! table a map; tables nested 16 deep pack as nil (that is how cycles end); a number that is an
//! int64 packs as the smallest integer encoding, else as a float32 when that is exact, else a
//! double; strings are str8/16/32; values with no MessagePack form pack as nil.
//!
//! Unpacking reads the formats lua-cmsgpack reads (no bin or ext types). Nothing is allocated
//! from a declared length before the bytes are there, and the nesting is walked with a stack of
//! our own, bounded as the C version's Lua stack is.

use mlua::{Lua, Table, Value};

use super::call::{
    arg, as_number, check_output, one, text, Args, Binder, Outcome, Raise, MAX_C_STACK,
};
use super::spill::{Deep, Results, Spillable};

/// Tables nested deeper than this pack as nil.
const MAX_NESTING: usize = 16;

pub(crate) fn module(lua: &Lua, binder: &Binder) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    binder.bind(lua, &t, "pack", pack)?;
    binder.bind(lua, &t, "unpack", |lua, a| {
        let s = a.string(lua, 1)?;
        unpack(lua, &s.as_bytes(), a.len(), 0, 0)
    })?;
    binder.bind(lua, &t, "unpack_one", |lua, a| {
        let offset = a.opt_integer(lua, 2, 0)?;
        let s = a.string(lua, 1)?;
        unpack(lua, &s.as_bytes(), 1, 1, offset)
    })?;
    binder.bind(lua, &t, "unpack_limit", |lua, a| {
        let limit = a.integer(lua, 2)?;
        let offset = a.opt_integer(lua, 3, 0)?;
        let s = a.string(lua, 1)?;
        unpack(lua, &s.as_bytes(), 1, limit, offset)
    })?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}

// ---- packing ----

fn pack(lua: &Lua, a: Args) -> Outcome {
    if a.len() == 0 {
        return Err(arg(0, "MessagePack pack needs input."));
    }
    // lua-cmsgpack first makes room for a copy of every argument on the C stack.
    if 2 * a.len() > MAX_C_STACK {
        return Err(arg(0, "Too many arguments for MessagePack pack."));
    }
    let mut buf = Vec::new();
    for n in 1..=a.len() {
        encode(&mut buf, &a.get(n)?.unwrap_or(Value::Nil), 0)?;
    }
    one(Value::String(lua.create_string(&buf)?))
}

/// One value; tables recurse, at most `MAX_NESTING` deep.
fn encode(buf: &mut Vec<u8>, v: &Value, level: usize) -> Result<(), Raise> {
    check_output(buf.len())?;
    match v {
        Value::String(s) => encode_bytes(buf, &s.as_bytes()),
        Value::Boolean(b) => buf.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => encode_number(buf, *i as f64),
        Value::Number(n) => encode_number(buf, *n),
        Value::Table(t) if level < MAX_NESTING => encode_table(buf, t, level)?,
        _ => buf.push(0xc0),
    }
    Ok(())
}

fn encode_bytes(buf: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    if len < 32 {
        buf.push(0xa0 | len as u8);
    } else if len <= 0xff {
        buf.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        buf.push(0xda);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(0xdb);
        buf.extend_from_slice(&(len as u32).to_be_bytes());
    }
    buf.extend_from_slice(s);
}

/// A number that converts to int64 and back unchanged is an integer.
fn encode_number(buf: &mut Vec<u8>, n: f64) {
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&n)
        && (n as i64) as f64 == n
    {
        encode_int(buf, n as i64);
    } else if f64::from(n as f32) == n {
        buf.push(0xca);
        buf.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        buf.push(0xcb);
        buf.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_int(buf: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        if n <= 127 {
            buf.push(n as u8);
        } else if n <= 0xff {
            buf.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            buf.push(0xcd);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            buf.push(0xce);
            buf.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            buf.push(0xcf);
            buf.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        buf.push(n as i8 as u8);
    } else if n >= -128 {
        buf.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        buf.push(0xd1);
        buf.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        buf.push(0xd2);
        buf.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        buf.push(0xd3);
        buf.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_header(buf: &mut Vec<u8>, n: usize, fix: u8, b16: u8, b32: u8) {
    if n <= 15 {
        buf.push(fix | n as u8);
    } else if n <= 0xffff {
        buf.push(b16);
        buf.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        buf.push(b32);
        buf.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// A table: first a pass to count its keys and see whether they are exactly 1..n, then the
/// encoding, walking the pairs again (nothing of the table is kept in Rust).
fn encode_table(buf: &mut Vec<u8>, t: &Table, level: usize) -> Result<(), Raise> {
    let mut count: usize = 0;
    let mut array = true;
    let mut max: f64 = 0.0;
    t.for_each(|k: Value, _: Value| {
        count += 1;
        if array {
            // An index: a number that is a positive C int.
            match as_number(&k) {
                Some(n) if n > 0.0 && n < 2_147_483_648.0 && n.fract() == 0.0 => max = max.max(n),
                _ => array = false,
            }
        }
        Ok(())
    })?;
    if array && max == count as f64 {
        encode_header(buf, count, 0x90, 0xdc, 0xdd);
        for i in 1..=count {
            encode(buf, &t.raw_get::<Value>(i)?, level + 1)?;
        }
    } else {
        encode_header(buf, count, 0x80, 0xde, 0xdf);
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            encode(buf, &k, level + 1)?;
            encode(buf, &v, level + 1)?;
        }
    }
    Ok(())
}

// ---- unpacking ----

/// Why decoding stopped.
enum Stop {
    /// The input ended inside a value.
    Eof,
    /// A byte that starts no value lua-cmsgpack knows.
    BadFormat,
    /// Any other error, raised as is.
    Raise(Raise),
}

impl From<Raise> for Stop {
    fn from(r: Raise) -> Self {
        Stop::Raise(r)
    }
}

impl From<mlua::Error> for Stop {
    fn from(e: mlua::Error) -> Self {
        Stop::Raise(Raise::Lua(e))
    }
}

/// `lua_checkstack` as lua-cmsgpack calls it through `luaL_checkstack`.
fn check_stack(top: usize, what: &str) -> Result<(), Stop> {
    if top + 1 > MAX_C_STACK {
        return Err(Stop::Raise(text(format!("stack overflow ({what})"))));
    }
    Ok(())
}

const TOO_MANY: &str = "too many return values at once; use unpack_one or unpack_limit instead.";

/// lua-cmsgpack's `mp_unpack_full`: `base` is how many arguments stay on the Lua stack under the
/// results; a zero limit and offset decode everything and return no offset.
fn unpack(lua: &Lua, s: &[u8], base: usize, limit: i64, offset: i64) -> Outcome {
    let decode_all = limit == 0 && offset == 0;
    let len = s.len();
    if offset < 0 || limit < 0 {
        return Err(text(format!(
            "Invalid request to unpack with offset of {} and limit of {}.",
            offset as i32, len as i32
        )));
    }
    if offset as u64 > len as u64 {
        return Err(text(format!(
            "Start offset {} greater than input length {}.",
            offset as i32, len as i32
        )));
    }
    let limit = if decode_all {
        i64::from(i32::MAX)
    } else {
        limit
    };
    let mut c = Cursor {
        s,
        at: offset as usize,
    };
    let mut out = Results::new();
    while c.at < len && (out.len() as i64) < limit {
        match decode(lua, &mut c, base + out.len()) {
            Ok(v) => out.push(lua, v)?,
            Err(Stop::Eof) => return Err(text("Missing bytes in input.")),
            Err(Stop::BadFormat) => return Err(text("Bad data format in input.")),
            Err(Stop::Raise(r)) => return Err(r),
        }
    }
    if !decode_all {
        if let Err(Stop::Raise(r)) = check_stack(base + out.len(), "in function mp_unpack_full") {
            return Err(r);
        }
        let next = if c.at == len { -1 } else { c.at as i64 };
        out.push_front(lua, Value::Integer(next))?;
    }
    Ok(out.into_out())
}

struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    /// The next `n` bytes, consumed.
    fn take(&mut self, n: usize) -> Result<&[u8], Stop> {
        if self.s.len() - self.at < n {
            return Err(Stop::Eof);
        }
        let b = &self.s[self.at..self.at + n];
        self.at += n;
        Ok(b)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        Ok(b)
    }
}

/// What the bytes at the cursor start.
enum Start {
    Value(Value),
    Array(usize),
    Map(usize),
}

/// What is left to fill in an open table (the table itself is an [`Open`]).
enum Frame {
    Array {
        left: usize,
        index: i64,
    },
    /// `keyed`: its next key is decoded, its value not yet.
    Map {
        left: usize,
        keyed: bool,
    },
}

/// An open table, with the key decoded for it (a map's, when keyed).
struct Open {
    table: Table,
    key: Value,
}

impl Spillable for Open {
    fn spill(self, _: &Lua) -> mlua::Result<(Value, Value)> {
        Ok((Value::Table(self.table), self.key))
    }

    fn unspill(a: Value, key: Value) -> Option<Self> {
        match a {
            Value::Table(table) => Some(Open { table, key }),
            _ => None,
        }
    }
}

/// One value, nested tables included; `top` is how many Lua stack slots lua-cmsgpack would have
/// in use before pushing it (an array holds two while its elements decode, a map one while a
/// key decodes and two while a value does).
fn decode(lua: &Lua, c: &mut Cursor, mut top: usize) -> Result<Value, Stop> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut open: Deep<Open> = Deep::new();
    loop {
        let (len, frame) = match start(lua, c, top)? {
            Start::Value(v) => match close(v, &mut frames, &mut open, &mut top)? {
                Some(v) => return Ok(v),
                None => continue,
            },
            Start::Array(len) => (
                len,
                Frame::Array {
                    left: len,
                    index: 1,
                },
            ),
            Start::Map(len) => (
                len,
                Frame::Map {
                    left: len,
                    keyed: false,
                },
            ),
        };
        let table = lua.create_table()?;
        if let Frame::Array { .. } = frame {
            check_stack(top + 1, "in function mp_decode_to_lua_array")?;
        }
        if len == 0 {
            match close(Value::Table(table), &mut frames, &mut open, &mut top)? {
                Some(v) => return Ok(v),
                None => continue,
            }
        }
        top += match frame {
            Frame::Array { .. } => 2,
            Frame::Map { .. } => 1,
        };
        frames.push(frame);
        open.push(
            lua,
            Open {
                table,
                key: Value::Nil,
            },
        )?;
    }
}

/// Stores a decoded value in the innermost open table, closing each table it completes; the
/// value itself when no table is open, `None` when the table wants more.
fn close(
    mut value: Value,
    frames: &mut Vec<Frame>,
    open: &mut Deep<Open>,
    top: &mut usize,
) -> Result<Option<Value>, Stop> {
    loop {
        let (Some(frame), Some(o)) = (frames.last_mut(), open.last_mut()) else {
            return Ok(Some(value));
        };
        let done = match frame {
            Frame::Array { left, index } => {
                o.table.raw_set(*index, value)?;
                *index += 1;
                *left -= 1;
                *left == 0
            }
            Frame::Map { left, keyed } => {
                if !*keyed {
                    o.key = value;
                    *keyed = true;
                    *top += 1;
                    return Ok(None);
                }
                let key = std::mem::replace(&mut o.key, Value::Nil);
                match &key {
                    Value::Nil => {
                        return Err(Stop::Raise(Raise::Bare(b"table index is nil".to_vec())))
                    }
                    Value::Number(n) if n.is_nan() => {
                        return Err(Stop::Raise(Raise::Bare(b"table index is NaN".to_vec())));
                    }
                    _ => {}
                }
                o.table.raw_set(key, value)?;
                *keyed = false;
                *top -= 1;
                *left -= 1;
                *left == 0
            }
        };
        if !done {
            return Ok(None);
        }
        *top -= match frames.pop() {
            Some(Frame::Array { .. }) => 2,
            _ => 1,
        };
        let Some(finished) = open.pop()? else {
            return Ok(None);
        };
        value = Value::Table(finished.table);
    }
}

/// Reads the header of the value at the cursor (the whole value unless it is a table).
fn start(lua: &Lua, c: &mut Cursor, top: usize) -> Result<Start, Stop> {
    let b = c.be::<1>()?[0];
    check_stack(top, TOO_MANY)?;
    let int = |i: i64| Ok(Start::Value(Value::Integer(i)));
    match b {
        0xcc => int(i64::from(c.be::<1>()?[0])),
        0xd0 => int(i64::from(c.be::<1>()?[0] as i8)),
        0xcd => int(i64::from(u16::from_be_bytes(c.be()?))),
        0xd1 => int(i64::from(i16::from_be_bytes(c.be()?))),
        0xce => int(i64::from(u32::from_be_bytes(c.be()?))),
        0xd2 => int(i64::from(i32::from_be_bytes(c.be()?))),
        // Pushed as a lua_Integer: the top half of the range comes out negative.
        0xcf => int(u64::from_be_bytes(c.be()?) as i64),
        0xd3 => int(i64::from_be_bytes(c.be()?)),
        0xc0 => Ok(Start::Value(Value::Nil)),
        0xc3 => Ok(Start::Value(Value::Boolean(true))),
        0xc2 => Ok(Start::Value(Value::Boolean(false))),
        0xca => Ok(Start::Value(Value::Number(f64::from(f32::from_be_bytes(
            c.be()?,
        ))))),
        0xcb => Ok(Start::Value(Value::Number(f64::from_be_bytes(c.be()?)))),
        0xd9 => {
            let len = usize::from(c.be::<1>()?[0]);
            string(lua, c, len)
        }
        0xda => {
            let len = usize::from(u16::from_be_bytes(c.be()?));
            string(lua, c, len)
        }
        0xdb => {
            let len = u32::from_be_bytes(c.be()?) as usize;
            string(lua, c, len)
        }
        0xdc => Ok(Start::Array(usize::from(u16::from_be_bytes(c.be()?)))),
        0xdd => Ok(Start::Array(u32::from_be_bytes(c.be()?) as usize)),
        0xde => Ok(Start::Map(usize::from(u16::from_be_bytes(c.be()?)))),
        0xdf => Ok(Start::Map(u32::from_be_bytes(c.be()?) as usize)),
        _ if b & 0x80 == 0 => int(i64::from(b)),
        _ if b & 0xe0 == 0xe0 => int(i64::from(b as i8)),
        _ if b & 0xe0 == 0xa0 => string(lua, c, usize::from(b & 0x1f)),
        _ if b & 0xf0 == 0x90 => Ok(Start::Array(usize::from(b & 0x0f))),
        _ if b & 0xf0 == 0x80 => Ok(Start::Map(usize::from(b & 0x0f))),
        _ => Err(Stop::BadFormat),
    }
}

fn string(lua: &Lua, c: &mut Cursor, len: usize) -> Result<Start, Stop> {
    let bytes = c.take(len)?;
    Ok(Start::Value(Value::String(lua.create_string(bytes)?)))
}
