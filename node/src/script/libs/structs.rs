//! `struct`: lua-struct 0.2's `pack`, `unpack` and `size`, with its format language and errors,
//! for the platform Redis runs on (little endian; `short` 2, `int` 4, `long` and `size_t` 8
//! bytes; maximum alignment 8).
//!
//! Format: `>` `<` endianness, `![n]` alignment, `x` a pad byte, `b`/`B` `h`/`H` `l`/`L` `T`
//! `i[n]`/`I[n]` integers (signed lower case), `c[n]` characters, `s` a zero-terminated string,
//! `f` float, `d` double, space ignored. A NUL ends the format, as in C.

use mlua::{Lua, Table, Value};

use super::call::{
    arg, as_number, text, to_lua_integer, Args, Binder, Outcome, Raise, MAX_C_STACK,
};
use super::spill::Results;

/// Largest `i[n]`/`I[n]`.
const MAX_INT_SIZE: usize = 32;
/// Alignment of `!` without a number.
const MAX_ALIGN: i64 = 8;

pub(crate) fn module(lua: &Lua, binder: &Binder) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    binder.bind(lua, &t, "pack", pack)?;
    binder.bind(lua, &t, "unpack", unpack)?;
    binder.bind(lua, &t, "size", size)?;
    Ok(t)
}

#[derive(Clone, Copy, PartialEq)]
enum Endian {
    Big,
    Little,
}

/// The reader of a format and its current options.
struct Format {
    fmt: Vec<u8>,
    at: usize,
    endian: Endian,
    align: usize,
}

impl Format {
    fn new(fmt: &[u8]) -> Self {
        let end = memchr::memchr(0, fmt).unwrap_or(fmt.len());
        Format {
            fmt: fmt[..end].to_vec(),
            at: 0,
            endian: Endian::Little,
            align: 1,
        }
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.fmt.get(self.at).copied();
        self.at += usize::from(c.is_some());
        c
    }

    /// A decimal number at the cursor, or `default` when there is none.
    fn number(&mut self, default: i64) -> Result<i64, Raise> {
        let mut a: i64 = 0;
        let mut any = false;
        while let Some(&c) = self.fmt.get(self.at).filter(|c| c.is_ascii_digit()) {
            let d = i64::from(c - b'0');
            if a > i64::from(i32::MAX) / 10 || a * 10 > i64::from(i32::MAX) - d {
                return Err(text("integral size overflow"));
            }
            a = a * 10 + d;
            self.at += 1;
            any = true;
        }
        Ok(if any { a } else { default })
    }

    /// The size of option `opt` (reading its number), 0 for options without one.
    fn size_of(&mut self, opt: u8) -> Result<usize, Raise> {
        Ok(match opt {
            b'B' | b'b' | b'x' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'c' => self.number(1)? as usize,
            b'i' | b'I' => {
                let size = self.number(4)?;
                if size > MAX_INT_SIZE as i64 {
                    return Err(text(format!(
                        "integral size {size} is larger than limit of {MAX_INT_SIZE}"
                    )));
                }
                size as usize
            }
            _ => 0,
        })
    }

    /// Padding before an item of `size` at offset `len` (C's arithmetic, sizes that are not
    /// powers of two included).
    fn padding(&self, len: usize, opt: u8, size: usize) -> usize {
        if size == 0 || opt == b'c' {
            return 0;
        }
        let size = size.min(self.align);
        (size.wrapping_sub(len & size.wrapping_sub(1))) & size.wrapping_sub(1)
    }

    /// Endianness, alignment and spaces; anything else is an invalid option.
    fn control(&mut self, opt: u8) -> Result<(), Raise> {
        match opt {
            b' ' => {}
            b'>' => self.endian = Endian::Big,
            b'<' => self.endian = Endian::Little,
            b'!' => {
                let a = self.number(MAX_ALIGN)?;
                if a <= 0 || a & (a - 1) != 0 {
                    return Err(text(format!("alignment {a} is not a power of 2")));
                }
                self.align = a as usize;
            }
            _ => {
                return Err(arg(
                    1,
                    [&b"invalid format option '"[..], &[opt], &b"'"[..]].concat(),
                ));
            }
        }
        Ok(())
    }
}

fn is_integer_option(opt: u8) -> bool {
    matches!(
        opt,
        b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I'
    )
}

/// The bytes of a C `double` → `unsigned long` conversion as x86-64 code does it.
fn to_unsigned(n: f64) -> u64 {
    if n.is_nan() {
        1 << 63
    } else if n < 0.0 {
        to_lua_integer(n) as u64
    } else if n < 9_223_372_036_854_775_808.0 {
        n as u64
    } else {
        // The compiler's path for large values: (n - 2^63) converted, then the top bit flipped.
        (to_lua_integer(n - 9_223_372_036_854_775_808.0) as u64) ^ (1 << 63)
    }
}

fn pack(lua: &Lua, mut a: Args) -> Outcome {
    let mut f = Format::new(&a.string(lua, 1)?.as_bytes());
    // lua-struct pushes a nil after its arguments: a missing one reads as that nil.
    a.push_nil();
    let mut next = 2;
    let mut out: Vec<u8> = Vec::new();
    while let Some(opt) = f.next() {
        let mut size = f.size_of(opt)?;
        let pad = f.padding(out.len(), opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            _ if is_integer_option(opt) => {
                let mut value = to_unsigned(a.number(lua, next)?);
                next += 1;
                let start = out.len();
                out.resize(start + size, 0);
                let bytes = &mut out[start..];
                for i in 0..size {
                    let at = if f.endian == Endian::Little {
                        i
                    } else {
                        size - 1 - i
                    };
                    bytes[at] = value as u8;
                    value >>= 8;
                }
            }
            b'x' => out.push(0),
            b'f' => {
                let v = a.number(lua, next)? as f32;
                next += 1;
                match f.endian {
                    Endian::Little => out.extend_from_slice(&v.to_le_bytes()),
                    Endian::Big => out.extend_from_slice(&v.to_be_bytes()),
                }
            }
            b'd' => {
                let v = a.number(lua, next)?;
                next += 1;
                match f.endian {
                    Endian::Little => out.extend_from_slice(&v.to_le_bytes()),
                    Endian::Big => out.extend_from_slice(&v.to_be_bytes()),
                }
            }
            b'c' | b's' => {
                let s = a.string(lua, next)?;
                let s = s.as_bytes();
                next += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // lua-struct reports the argument after the string.
                    return Err(arg(next as i64, "string too short"));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => f.control(opt)?,
        }
    }
    super::call::one(Value::String(lua.create_string(&out)?))
}

/// An integer of `size` bytes, sign-extended as lua-struct does it in an `unsigned long`.
fn read_integer(bytes: &[u8], endian: Endian, signed: bool) -> f64 {
    let mut l: u64 = 0;
    let mut push = |b: u8| l = (l << 8) | u64::from(b);
    match endian {
        Endian::Big => bytes.iter().for_each(|&b| push(b)),
        Endian::Little => bytes.iter().rev().for_each(|&b| push(b)),
    }
    if !signed {
        return l as f64;
    }
    // The shift count is taken modulo 64, as the machine does for the C shift.
    let mask = u64::MAX.wrapping_shl((bytes.len() as u32).wrapping_mul(8).wrapping_sub(1));
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

fn unpack(lua: &Lua, a: Args) -> Outcome {
    let mut f = Format::new(&a.string(lua, 1)?.as_bytes());
    let data = a.string(lua, 2)?;
    let data = data.as_bytes();
    let ld = data.len();
    let start = a.opt_integer(lua, 3, 1)? as u64 as usize;
    if start == 0 {
        return Err(arg(3, "offset must be 1 or greater"));
    }
    let mut pos = start - 1;
    let too_short = || arg(2, "data string too short");
    let mut out = Results::new();
    while let Some(opt) = f.next() {
        let mut size = f.size_of(opt)?;
        pos = pos.wrapping_add(f.padding(pos, opt, size));
        if size > ld || pos > ld - size {
            return Err(too_short());
        }
        if a.len() + out.len() + 2 > MAX_C_STACK {
            return Err(text("stack overflow (too many results)"));
        }
        match opt {
            _ if is_integer_option(opt) => {
                let signed = opt.is_ascii_lowercase();
                out.push(
                    lua,
                    Value::Number(read_integer(&data[pos..pos + size], f.endian, signed)),
                )?;
            }
            b'x' => {}
            b'f' => {
                let mut b = [0u8; 4];
                b.copy_from_slice(&data[pos..pos + 4]);
                let v = match f.endian {
                    Endian::Little => f32::from_le_bytes(b),
                    Endian::Big => f32::from_be_bytes(b),
                };
                out.push(lua, Value::Number(f64::from(v)))?;
            }
            b'd' => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[pos..pos + 8]);
                let v = match f.endian {
                    Endian::Little => f64::from_le_bytes(b),
                    Endian::Big => f64::from_be_bytes(b),
                };
                out.push(lua, Value::Number(v))?;
            }
            b'c' => {
                if size == 0 {
                    let previous = match out.last()? {
                        Some(v) => previous_number(lua, &v)?,
                        None => None,
                    };
                    let Some(n) = previous else {
                        return Err(text("format 'c0' needs a previous size"));
                    };
                    out.pop()?;
                    size = to_size(n);
                    if size > ld || pos > ld - size {
                        return Err(too_short());
                    }
                }
                out.push(
                    lua,
                    Value::String(lua.create_string(&data[pos..pos + size])?),
                )?;
            }
            b's' => {
                let Some(len) = memchr::memchr(0, &data[pos..]) else {
                    return Err(text("unfinished string in data"));
                };
                size = len + 1;
                out.push(
                    lua,
                    Value::String(lua.create_string(&data[pos..pos + len])?),
                )?;
            }
            _ => f.control(opt)?,
        }
        pos = pos.wrapping_add(size);
    }
    out.push(lua, Value::Number(pos.wrapping_add(1) as i64 as f64))?;
    Ok(out.into_out())
}

/// The previous result as a number, if Lua sees one in it (`lua_isnumber`).
fn previous_number(lua: &Lua, v: &Value) -> Result<Option<f64>, Raise> {
    match v {
        Value::String(_) => Ok(lua.coerce_number(v.clone())?),
        v => Ok(as_number(v)),
    }
}

/// A double to `size_t` as x86-64 code converts it.
fn to_size(n: f64) -> usize {
    to_unsigned(n) as usize
}

fn size(lua: &Lua, a: Args) -> Outcome {
    let mut f = Format::new(&a.string(lua, 1)?.as_bytes());
    let mut pos: usize = 0;
    while let Some(opt) = f.next() {
        let size = f.size_of(opt)?;
        pos = pos.wrapping_add(f.padding(pos, opt, size));
        if opt == b's' {
            return Err(arg(1, "option 's' has no fixed size"));
        }
        if opt == b'c' && size == 0 {
            return Err(arg(1, "option 'c0' has no fixed size"));
        }
        if !opt.is_ascii_alphanumeric() {
            f.control(opt)?;
        }
        pos = pos.wrapping_add(size);
    }
    super::call::one(Value::Number(pos as i64 as f64))
}
