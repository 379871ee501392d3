//! `cjson.encode`: a Lua value as JSON text, as lua-cjson writes it.
//!
//! A table is an array when every key is a positive integer (index k written at place k, holes
//! as null), unless it is "excessively sparse" (see [`shape`]); any other table, the empty
//! one included, is an object with number or string keys. Numbers are written with `%.14g`
//! (the precision setting), strings with `"`, `\`, `/`, DEL and control characters escaped.
//! Nesting is walked with a stack of our own; the depth limit is the setting, and the Lua stack
//! lua-cjson would need (`LUAI_MAXCSTACK`) bounds it as it bounds the C version.

use mlua::{Lua, Table, Value};

use super::super::call::{as_number, check_output, text, to_c_int, type_name, Raise, MAX_C_STACK};
use super::super::spill::{Deep, Spillable};
use super::number::write_g;
use super::{cannot_serialise, Config};

/// Where the writing of an open table is.
enum Frame {
    Array {
        len: i32,
        next: i32,
    },
    /// `count` pairs, in `next` order, in the [`Open`]'s items.
    Object {
        count: usize,
        next: usize,
    },
}

/// An open table and, for an object, its pairs: in Rust when there are few, else its keys in a
/// Lua table (values are looked up).
struct Open {
    table: Table,
    items: Items,
}

enum Items {
    None,
    Pairs(Vec<(Value, Value)>),
    Keys(Table),
}

/// Objects with up to this many pairs keep them in Rust while written (with at most 32 open
/// tables in Rust, a bounded number of mlua references).
const PAIRS_IN_RUST: usize = 32;

impl Spillable for Open {
    fn spill(self, lua: &Lua) -> mlua::Result<(Value, Value)> {
        let items = match self.items {
            Items::None => Value::Nil,
            Items::Keys(keys) => Value::Table(keys),
            Items::Pairs(pairs) => {
                let keys = lua.create_table()?;
                for (i, (k, _)) in pairs.into_iter().enumerate() {
                    keys.raw_set(i + 1, k)?;
                }
                Value::Table(keys)
            }
        };
        Ok((Value::Table(self.table), items))
    }

    fn unspill(table: Value, items: Value) -> Option<Self> {
        let Value::Table(table) = table else {
            return None;
        };
        let items = match items {
            Value::Table(keys) => Items::Keys(keys),
            _ => Items::None,
        };
        Some(Open { table, items })
    }
}

/// What lua-cjson makes of a table.
enum Shape {
    Array(i32),
    Object(Items, usize),
}

pub(crate) fn encode(lua: &Lua, cfg: &Config, root: Value) -> Result<Vec<u8>, Raise> {
    let mut out = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut open: Deep<Open> = Deep::new();
    // Lua stack slots lua-cjson holds: the argument, one per open array (the element being
    // written) and two per open object (key and value).
    let mut slots = 1usize;
    let mut pending = Some(root);
    loop {
        check_output(out.len())?;
        if let Some(v) = pending.take() {
            match v {
                Value::Table(table) => {
                    let depth = frames.len() as i64 + 1;
                    if depth > i64::from(cfg.encode_max_depth) || slots + 3 > MAX_C_STACK {
                        return Err(text(format!(
                            "Cannot serialise, excessive nesting ({depth})"
                        )));
                    }
                    match shape(lua, cfg, &table)? {
                        Shape::Array(len) => {
                            out.push(b'[');
                            frames.push(Frame::Array { len, next: 1 });
                            open.push(
                                lua,
                                Open {
                                    table,
                                    items: Items::None,
                                },
                            )?;
                            slots += 1;
                        }
                        Shape::Object(items, count) => {
                            out.push(b'{');
                            frames.push(Frame::Object { count, next: 1 });
                            open.push(lua, Open { table, items })?;
                            slots += 2;
                        }
                    }
                }
                v => scalar(cfg, &mut out, &v)?,
            }
        }
        let (Some(frame), Some(o)) = (frames.last_mut(), open.last_mut()) else {
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
                if *next <= *count {
                    if *next > 1 {
                        out.push(b',');
                    }
                    let (k, v) = match &mut o.items {
                        Items::Pairs(pairs) => {
                            std::mem::replace(&mut pairs[*next - 1], (Value::Nil, Value::Nil))
                        }
                        Items::Keys(keys) => {
                            let k: Value = keys.raw_get(*next)?;
                            let v: Value = o.table.raw_get(k.clone())?;
                            (k, v)
                        }
                        Items::None => (Value::Nil, Value::Nil),
                    };
                    *next += 1;
                    key(cfg, &mut out, &k)?;
                    pending = Some(v);
                    continue;
                }
                out.push(b'}');
                slots -= 2;
            }
        }
        // The innermost table is written: its parent is open again.
        frames.pop();
        open.pop()?;
    }
}

/// An object's key and the colon.
fn key(cfg: &Config, out: &mut Vec<u8>, k: &Value) -> Result<(), Raise> {
    match k {
        Value::Integer(_) | Value::Number(_) => {
            out.push(b'"');
            number(cfg, out, k)?;
            out.extend_from_slice(b"\":");
        }
        Value::String(s) => {
            string(out, &s.as_bytes());
            out.push(b':');
        }
        other => {
            return Err(cannot_serialise(
                type_name(Some(other)),
                "table key must be a number or string",
            ))
        }
    }
    Ok(())
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
    write_g(out, n, cfg.precision.clamp(1, 14) as usize);
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
    let mut pairs = Vec::new();
    let mut keys: Option<Table> = None;
    let mut count = 0usize;
    t.for_each(|k: Value, v: Value| {
        count += 1;
        if let Some(keys) = &keys {
            return keys.raw_set(count, k);
        }
        if count <= PAIRS_IN_RUST {
            pairs.push((k, v));
            return Ok(());
        }
        // Past the few kept in Rust: every key to a Lua table.
        let t = lua.create_table()?;
        for (i, (k, _)) in pairs.drain(..).enumerate() {
            t.raw_set(i + 1, k)?;
        }
        t.raw_set(count, k)?;
        keys = Some(t);
        Ok(())
    })?;
    let items = match keys {
        Some(keys) => Items::Keys(keys),
        None => Items::Pairs(pairs),
    };
    Ok(Shape::Object(items, count))
}
