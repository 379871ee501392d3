//! `cjson.decode`: JSON text as Lua values, with lua-cjson's tokenizer and error texts
//! (`Expected <what> but found <token> at character <n>`).
//!
//! The text ends at its first NUL byte, as the C string it is to lua-cjson. Numbers are read by
//! `strtod`, so with `decode_invalid_numbers` on (the default) `+1`, `0x10`, `inf`, `nan` and
//! leading zeros are accepted. Null is `cjson.null`. Nesting is walked with a stack of our own,
//! bounded by `decode_max_depth` and by the Lua stack the C version would need.

use mlua::{Lua, Table, Value};

use super::super::call::{text, Raise, MAX_C_STACK};
use super::super::spill::{Deep, Spillable};
use super::number::strtod;
use super::{null, Config};

#[derive(PartialEq)]
enum Kind {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    /// Its bytes are the lexer's `scratch`.
    String,
    Number(f64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    /// A token that could not be read, with lua-cjson's description of it.
    Error(&'static str),
}

struct Token {
    kind: Kind,
    /// Where it starts (0-based).
    index: usize,
}

/// A token's name in errors.
fn name(kind: &Kind) -> &'static str {
    match kind {
        Kind::ObjBegin => "T_OBJ_BEGIN",
        Kind::ObjEnd => "T_OBJ_END",
        Kind::ArrBegin => "T_ARR_BEGIN",
        Kind::ArrEnd => "T_ARR_END",
        Kind::String => "T_STRING",
        Kind::Number(_) => "T_NUMBER",
        Kind::Boolean(_) => "T_BOOLEAN",
        Kind::Null => "T_NULL",
        Kind::Colon => "T_COLON",
        Kind::Comma => "T_COMMA",
        Kind::End => "T_END",
        Kind::Error(what) => what,
    }
}

fn expected(what: &str, token: &Token) -> Raise {
    text(format!(
        "Expected {what} but found {} at character {}",
        name(&token.kind),
        token.index + 1
    ))
}

struct Lexer<'a> {
    data: &'a [u8],
    ptr: usize,
    invalid_numbers: bool,
    /// The last string token's bytes.
    scratch: Vec<u8>,
}

impl Lexer<'_> {
    /// The byte at `i`; 0 past the end, as the C string's terminator reads.
    fn at(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }

    fn error(&self, what: &'static str) -> Token {
        Token {
            kind: Kind::Error(what),
            index: self.ptr,
        }
    }

    fn next(&mut self) -> Token {
        while matches!(self.at(self.ptr), b' ' | b'\t' | b'\n' | b'\r') {
            self.ptr += 1;
        }
        let index = self.ptr;
        let ch = self.at(index);
        let single = match ch {
            b'{' => Some(Kind::ObjBegin),
            b'}' => Some(Kind::ObjEnd),
            b'[' => Some(Kind::ArrBegin),
            b']' => Some(Kind::ArrEnd),
            b',' => Some(Kind::Comma),
            b':' => Some(Kind::Colon),
            _ => None,
        };
        if let Some(kind) = single {
            self.ptr += 1;
            return Token { kind, index };
        }
        match ch {
            0 => Token {
                kind: Kind::End,
                index,
            },
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => {
                if !self.invalid_numbers && self.is_invalid_number() {
                    return self.error("invalid number");
                }
                self.number()
            }
            b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'+' => {
                let rest = &self.data[index..];
                if rest.starts_with(b"true") {
                    self.ptr += 4;
                    Token {
                        kind: Kind::Boolean(true),
                        index,
                    }
                } else if rest.starts_with(b"false") {
                    self.ptr += 5;
                    Token {
                        kind: Kind::Boolean(false),
                        index,
                    }
                } else if rest.starts_with(b"null") {
                    self.ptr += 4;
                    Token {
                        kind: Kind::Null,
                        index,
                    }
                } else if self.invalid_numbers && self.is_invalid_number() {
                    self.number()
                } else {
                    self.error("invalid token")
                }
            }
            _ => self.error("invalid token"),
        }
    }

    /// lua-cjson's `json_is_invalid_number`: what `strtod` takes but JSON does not (a leading
    /// `+`, hex, leading zeros, inf, nan).
    fn is_invalid_number(&self) -> bool {
        let mut p = self.ptr;
        if self.at(p) == b'+' {
            return true;
        }
        if self.at(p) == b'-' {
            p += 1;
        }
        let c = self.at(p);
        if c == b'0' {
            let c2 = self.at(p + 1);
            return (c2 | 0x20) == b'x' || c2.is_ascii_digit();
        }
        // A signed char compare in C: bytes from 0x80 count as "ordinary".
        if c <= b'9' || c >= 0x80 {
            return false;
        }
        let rest = self.data.get(p..).unwrap_or(&[]);
        let starts = |w: &[u8]| rest.get(..3).is_some_and(|r| r.eq_ignore_ascii_case(w));
        starts(b"inf") || starts(b"nan")
    }

    fn number(&mut self) -> Token {
        let index = self.ptr;
        let (value, used) = strtod(&self.data[index..]);
        if used == 0 {
            return self.error("invalid number");
        }
        self.ptr += used;
        Token {
            kind: Kind::Number(value),
            index,
        }
    }

    fn string(&mut self) -> Token {
        let index = self.ptr;
        self.ptr += 1;
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let token = self.string_into(&mut out, index);
        self.scratch = out;
        token
    }

    fn string_into(&mut self, out: &mut Vec<u8>, index: usize) -> Token {
        loop {
            // Plain bytes up to the next quote or backslash go in one copy.
            let rest = self.data.get(self.ptr..).unwrap_or(&[]);
            let Some(run) = memchr::memchr2(b'"', b'\\', rest) else {
                out.extend_from_slice(rest);
                self.ptr = self.data.len();
                return self.error("unexpected end of string");
            };
            out.extend_from_slice(&rest[..run]);
            self.ptr += run;
            if self.at(self.ptr) == b'"' {
                break;
            }
            let unescaped = match self.at(self.ptr + 1) {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b't' => b'\t',
                b'n' => b'\n',
                b'f' => 0x0c,
                b'r' => b'\r',
                b'u' => {
                    if !self.unicode_escape(out) {
                        return self.error("invalid unicode escape code");
                    }
                    continue;
                }
                _ => return self.error("invalid escape code"),
            };
            out.push(unescaped);
            self.ptr += 2;
        }
        self.ptr += 1;
        Token {
            kind: Kind::String,
            index,
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        (0..4).try_fold(0u32, |acc, i| {
            Some(acc << 4 | (self.at(at + i) as char).to_digit(16)?)
        })
    }

    /// `\uXXXX` (a surrogate pair as two of them) at the cursor, appended as UTF-8.
    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(mut cp) = self.hex4(self.ptr + 2) else {
            return false;
        };
        let mut len = 6;
        if cp & 0xF800 == 0xD800 {
            if cp & 0x400 != 0 {
                return false;
            }
            if self.at(self.ptr + 6) != b'\\' || self.at(self.ptr + 7) != b'u' {
                return false;
            }
            let Some(low) = self.hex4(self.ptr + 8) else {
                return false;
            };
            if low & 0xFC00 != 0xDC00 {
                return false;
            }
            cp = (((cp & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        utf8(out, cp);
        self.ptr += len;
        true
    }
}

/// A code point as UTF-8 (surrogates included, as lua-cjson writes them).
fn utf8(out: &mut Vec<u8>, cp: u32) {
    if cp <= 0x7F {
        out.push(cp as u8);
    } else if cp <= 0x7FF {
        out.extend_from_slice(&[(cp >> 6) as u8 | 0xC0, (cp & 0x3F) as u8 | 0x80]);
    } else if cp <= 0xFFFF {
        out.extend_from_slice(&[
            (cp >> 12) as u8 | 0xE0,
            ((cp >> 6) & 0x3F) as u8 | 0x80,
            (cp & 0x3F) as u8 | 0x80,
        ]);
    } else {
        out.extend_from_slice(&[
            (cp >> 18) as u8 | 0xF0,
            ((cp >> 12) & 0x3F) as u8 | 0x80,
            ((cp >> 6) & 0x3F) as u8 | 0x80,
            (cp & 0x3F) as u8 | 0x80,
        ]);
    }
}

/// What is being filled: an array's next index, or an object.
enum Frame {
    Array { index: i64 },
    Object,
}

/// An open table and, for an object, the key its next value goes to.
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

pub(crate) fn decode(lua: &Lua, cfg: &Config, input: &[u8]) -> Result<Value, Raise> {
    if input.len() >= 2 && (input[0] == 0 || input[1] == 0) {
        return Err(text("JSON parser does not support UTF-16 or UTF-32"));
    }
    let end = memchr::memchr(0, input).unwrap_or(input.len());
    let mut lx = Lexer {
        data: &input[..end],
        ptr: 0,
        invalid_numbers: cfg.decode_invalid_numbers,
        scratch: Vec::new(),
    };
    let mut frames: Vec<Frame> = Vec::new();
    let mut open: Deep<Open> = Deep::new();
    let mut depth: i64 = 0;
    // Lua stack slots lua-cjson holds: the argument, a table per open array, a table and a key
    // per open object.
    let mut slots = 1usize;
    let mut token = lx.next();
    loop {
        // `token` starts a value.
        let mut value = match token.kind {
            Kind::String => Value::String(lua.create_string(&lx.scratch)?),
            Kind::Number(n) => Value::Number(n),
            Kind::Boolean(b) => Value::Boolean(b),
            Kind::Null => null(),
            Kind::ObjBegin | Kind::ArrBegin => {
                let object = token.kind == Kind::ObjBegin;
                depth += 1;
                let need = if object { 3 } else { 2 };
                if depth > i64::from(cfg.decode_max_depth) || slots + need > MAX_C_STACK {
                    return Err(text(format!(
                        "Found too many nested data structures ({depth}) at character {}",
                        lx.ptr
                    )));
                }
                let table = lua.create_table()?;
                let next = lx.next();
                if next.kind == (if object { Kind::ObjEnd } else { Kind::ArrEnd }) {
                    depth -= 1;
                    Value::Table(table)
                } else {
                    let (frame, key) = if object {
                        (Frame::Object, object_key(lua, &mut lx, next)?)
                    } else {
                        token = next;
                        (Frame::Array { index: 1 }, Value::Nil)
                    };
                    slots += if object { 2 } else { 1 };
                    if object {
                        token = lx.next();
                    }
                    frames.push(frame);
                    open.push(lua, Open { table, key })?;
                    continue;
                }
            }
            _ => return Err(expected("value", &token)),
        };
        // Store the value in the open table; each table it closes is a value in turn.
        loop {
            let (Some(frame), Some(o)) = (frames.last_mut(), open.last_mut()) else {
                let last = lx.next();
                if last.kind != Kind::End {
                    return Err(expected("the end", &last));
                }
                return Ok(value);
            };
            let next = match frame {
                Frame::Array { index } => {
                    o.table.raw_set(*index, value)?;
                    *index += 1;
                    let next = lx.next();
                    match next.kind {
                        Kind::ArrEnd => None,
                        Kind::Comma => Some(lx.next()),
                        _ => return Err(expected("comma or array end", &next)),
                    }
                }
                Frame::Object => {
                    o.table
                        .raw_set(std::mem::replace(&mut o.key, Value::Nil), value)?;
                    let next = lx.next();
                    match next.kind {
                        Kind::ObjEnd => None,
                        Kind::Comma => {
                            let after = lx.next();
                            o.key = object_key(lua, &mut lx, after)?;
                            Some(lx.next())
                        }
                        _ => return Err(expected("comma or object end", &next)),
                    }
                }
            };
            if let Some(t) = next {
                token = t;
                break;
            }
            // The innermost table is complete: it is the value, its parent open again.
            depth -= 1;
            slots -= match frames.pop() {
                Some(Frame::Object) => 2,
                _ => 1,
            };
            value = match open.pop()? {
                Some(o) => Value::Table(o.table),
                None => Value::Nil,
            };
        }
    }
}

/// An object's key token and the colon after it.
fn object_key(lua: &Lua, lx: &mut Lexer, token: Token) -> Result<Value, Raise> {
    if token.kind != Kind::String {
        return Err(expected("object key string", &token));
    }
    let key = Value::String(lua.create_string(&lx.scratch)?);
    let colon = lx.next();
    if colon.kind != Kind::Colon {
        return Err(expected("colon", &colon));
    }
    Ok(key)
}
