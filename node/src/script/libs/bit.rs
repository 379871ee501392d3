//! `bit`: LuaBitOp 1.0.2's 32-bit operations on Lua numbers.
//!
//! An argument becomes 32 bits the way LuaBitOp does it: the double plus 2^52 + 2^51, whose low
//! 32 mantissa bits are the number rounded to an integer modulo 2^32. Results are signed 32-bit
//! values as numbers.

use mlua::{Lua, Table, Value};

use super::call::{one, Args, Binder, Outcome, Raise};

pub(crate) fn module(lua: &Lua, binder: &Binder) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    binder.bind(lua, &t, "tobit", |lua, a| ret(arg(lua, &a, 1)?))?;
    binder.bind(lua, &t, "bnot", |lua, a| ret(!arg(lua, &a, 1)?))?;
    binder.bind(lua, &t, "band", |lua, a| fold(lua, &a, |x, y| x & y))?;
    binder.bind(lua, &t, "bor", |lua, a| fold(lua, &a, |x, y| x | y))?;
    binder.bind(lua, &t, "bxor", |lua, a| fold(lua, &a, |x, y| x ^ y))?;
    binder.bind(lua, &t, "lshift", |lua, a| shift(lua, &a, |b, n| b << n))?;
    binder.bind(lua, &t, "rshift", |lua, a| shift(lua, &a, |b, n| b >> n))?;
    binder.bind(lua, &t, "arshift", |lua, a| {
        shift(lua, &a, |b, n| ((b as i32) >> n) as u32)
    })?;
    binder.bind(lua, &t, "rol", |lua, a| {
        shift(lua, &a, |b, n| b.rotate_left(n))
    })?;
    binder.bind(lua, &t, "ror", |lua, a| {
        shift(lua, &a, |b, n| b.rotate_right(n))
    })?;
    binder.bind(
        lua,
        &t,
        "bswap",
        |lua, a| ret(arg(lua, &a, 1)?.swap_bytes()),
    )?;
    binder.bind(lua, &t, "tohex", tohex)?;
    Ok(t)
}

/// The 32 bits of a double, as LuaBitOp's `barg` takes them.
pub(crate) fn bits_of(n: f64) -> u32 {
    (n + 6_755_399_441_055_744.0).to_bits() as u32
}

/// Argument `n` as 32 bits; anything Lua cannot make a number of is an argument error.
fn arg(lua: &Lua, a: &Args, n: usize) -> Result<u32, Raise> {
    a.number(lua, n).map(bits_of)
}

fn ret(b: u32) -> Outcome {
    one(Value::Number(f64::from(b as i32)))
}

/// `band`/`bor`/`bxor`: the first argument, then the others from the last one down, as LuaBitOp
/// reads them (which decides which bad argument is reported).
fn fold(lua: &Lua, a: &Args, op: fn(u32, u32) -> u32) -> Outcome {
    let mut b = arg(lua, a, 1)?;
    for n in (2..=a.len()).rev() {
        b = op(b, arg(lua, a, n)?);
    }
    ret(b)
}

fn shift(lua: &Lua, a: &Args, op: fn(u32, u32) -> u32) -> Outcome {
    let b = arg(lua, a, 1)?;
    let n = arg(lua, a, 2)? & 31;
    ret(op(b, n))
}

fn tohex(lua: &Lua, a: Args) -> Outcome {
    let mut b = arg(lua, &a, 1)?;
    let mut n = if a.get(2)?.is_none() {
        8
    } else {
        arg(lua, &a, 2)? as i32
    };
    let digits: &[u8; 16] = if n < 0 {
        n = n.wrapping_neg();
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    // -i32::MIN overflows; the compiled C takes it as a large count, so 8 digits.
    let n = if n < 0 { 8 } else { n.min(8) as usize };
    let mut buf = [0u8; 8];
    for slot in buf[..n].iter_mut().rev() {
        *slot = digits[(b & 15) as usize];
        b >>= 4;
    }
    one(Value::String(lua.create_string(&buf[..n])?))
}
