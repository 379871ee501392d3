//! `cjson.encode`: a Lua value as JSON text, as lua-cjson writes it.
//!
//! A table is an array when every key is a positive integer (index k written at place k, holes
//! as null), unless it is "excessively sparse" (see [`array_length`]); any other table, the empty
//! one included, is an object with number or string keys. Numbers are written with `%.14g`
//! (the precision setting), strings with `"`, `\`, `/`, DEL and control characters escaped.
//! Nesting is walked with a stack of our own; the depth limit is the setting, and the Lua stack
//! lua-cjson would need (`LUAI_MAXCSTACK`) bounds it as it bounds the C version.

use mlua::{Lua, Table, Value};

use super::super::call::{as_number, text, to_c_int, type_name, Raise, MAX_C_STACK};
use super::super::spill::Spill;
use super::number::format_g;
use super::{cannot_serialise, Config};

/// Where the writing of an open table is.
enum Frame {
    Array {
        len: i32,
        next: i32,
    },
    /// Its keys, in `next` order, are in [`Open::keys`].
    Object {
        count: usize,
        next: usize,
    },
}

/// The innermost open table (the others wait in a [`Spill`], table then keys).
struct Open {
    table: Table,
    keys: Option<Table>,
}

/// What lua-cjson makes of a table.
enum Shape {
    Array(i32),
    Object(Table, usize),
}

pub(crate) fn encode(lua: &Lua, cfg: &Config, root: Value) -> Result<Vec<u8>, Raise> {
    let mut out = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut open: Option<Open> = None;
    let mut holder: Option<Spill> = None;
    // Lua stack slots lua-cjson holds: the argument, one per open array (the element being
    // written) and two per open object (key and value).
    let mut slots = 1usize;
    let mut pending = Some(root);
    loop {
        if let Some(v) = pending.take() {
            match v {
                Value::Table(table) => {
                    let depth = frames.len() as i64 + 1;
                    if depth > i64::from(cfg.encode_max_depth) || slots + 3 > MAX_C_STACK {
                        return Err(text(format!(
                            "Cannot serialise, excessive nesting ({depth})"
                        )));
                    }
                    let shape = shape(lua, cfg, &table)?;
                    if let Some(o) = open.take() {
                        let h = match &mut holder {
                            Some(h) => h,
                            None => holder.insert(Spill::new(lua)?),
                        };
                        h.push(Value::Table(o.table))?;
                        h.push(o.keys.map_or(Value::Nil, Value::Table))?;
                    }
                    match shape {
                        Shape::Array(len) => {
                            out.push(b'[');
                            frames.push(Frame::Array { len, next: 1 });
                            open = Some(Open { table, keys: None });
                            slots += 1;
                        }
                        Shape::Object(keys, count) => {
                            out.push(b'{');
                            frames.push(Frame::Object { count, next: 1 });
                            open = Some(Open {
                                table,
                                keys: Some(keys),
                            });
                            slots += 2;
                        }
                    }
                }
                v => scalar(cfg, &mut out, &v)?,
            }
        }
        let (Some(frame), Some(o)) = (frames.last_mut(), open.as_ref()) else {
            return Ok(out);
        };
        match frame {
            Frame::Array { len, next } => {
                if *next <= *len {
                    if *next > 1 {
                        out.push(b',');
                    }
                    pending = Some(o.table.raw_get::<Value>(*next)?);
                    *next += 1;
                    continue;
                }
                out.push(b']');
                slots -= 1;
            }
            Frame::Object { count, next } => {
                if let (true, Some(keys)) = (*next <= *count, &o.keys) {
                    if *next > 1 {
                        out.push(b',');
                    }
                    let k: Value = keys.raw_get(*next)?;
                    *next += 1;
                    match &k {
                        Value::Integer(_) | Value::Number(_) => {
                            out.push(b'"');
                            number(cfg, &mut out, &k)?;
                            out.extend_from_slice(b"\":");
                        }
                        Value::String(s) => {
                            string(&mut out, &s.as_bytes());
                            out.push(b':');
                        }
                        other => {
                            return Err(cannot_serialise(
                                type_name(Some(other)),
                                "table key must be a number or string",
                            ))
                        }
                    }
                    pending = Some(o.table.raw_get::<Value>(k)?);
                    continue;
                }
                out.push(b'}');
                slots -= 2;
            }
        }
        // The innermost table is written: its parent is open again.
        frames.pop();
        open = None;
        if let (false, Some(h)) = (frames.is_empty(), holder.as_mut()) {
            let keys = match h.pop()? {
                Value::Table(t) => Some(t),
                _ => None,
            };
            if let Value::Table(table) = h.pop()? {
                open = Some(Open { table, keys });
            }
        }
    }
}

/// A value that is not a table.
fn scalar(cfg: &Config, out: &mut Vec<u8>, v: &Value) -> Result<(), Raise> {
    match v {
        Value::String(s) => string(out, &s.as_bytes()),
        Value::Integer(_) | Value::Number(_) => number(cfg, out, v)?,
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        other => {
            return Err(cannot_serialise(
                type_name(Some(other)),
                "type not supported",
            ))
        }
    }
    Ok(())
}

fn number(cfg: &Config, out: &mut Vec<u8>, v: &Value) -> Result<(), Raise> {
    let n = match v {
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        _ => 0.0,
    };
    match cfg.encode_invalid_numbers {
        0 if !n.is_finite() => return Err(cannot_serialise("number", "must not be NaN or Inf")),
        1 if n.is_nan() => {
            out.extend_from_slice(b"nan");
            return Ok(());
        }
        2 if !n.is_finite() => {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        _ => {}
    }
    out.extend_from_slice(format_g(n, cfg.precision.clamp(1, 14) as usize).as_bytes());
    Ok(())
}

/// A JSON string, escaped as lua-cjson escapes (other bytes, UTF-8 or not, pass as they are).
fn string(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// lua-cjson's `lua_array_length`: an array of the largest index when every key is an integer
/// of 1 or more, else an object (whose keys, in `next` order, go to a Lua table). An array
/// whose largest index passes both `ratio` times its count and `safe` is excessively sparse:
/// an error, or an object when `sparse_convert` is on. The largest index is a C int (out of
/// range: i32::MIN).
fn shape(lua: &Lua, cfg: &Config, t: &Table) -> Result<Shape, Raise> {
    let mut max: i32 = 0;
    let mut items: i32 = 0;
    let mut array = true;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        match as_number(&k) {
            Some(k) if k != 0.0 && k.floor() == k && k >= 1.0 => {
                if k > f64::from(max) {
                    max = to_c_int(k);
                }
                items = items.wrapping_add(1);
            }
            _ => {
                array = false;
                break;
            }
        }
    }
    if array {
        let sparse = cfg.sparse_ratio > 0
            && max > items.wrapping_mul(cfg.sparse_ratio)
            && max > cfg.sparse_safe;
        if sparse && !cfg.sparse_convert {
            return Err(cannot_serialise("table", "excessively sparse array"));
        }
        if !sparse && max > 0 {
            return Ok(Shape::Array(max));
        }
    }
    let keys = lua.create_table()?;
    let mut count = 0usize;
    t.for_each(|k: Value, _: Value| {
        count += 1;
        keys.raw_set(count, k)
    })?;
    Ok(Shape::Object(keys, count))
}
