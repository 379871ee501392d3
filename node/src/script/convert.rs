//! Redis's conversion of a script's return value into the reply its caller gets, and the error
//! shapes scripts raise (a command's reply into a Lua value is `ringcache_luacall`'s).

use bytes::Bytes;
use mlua::{Lua, Table, Value};
use ringcache_protocol::{Protocol, Reply};

/// An error Rust raises into a script (`redis.call`, the kill hook): its text, code included,
/// which the script's error handler reads back as the error reply.
#[derive(Debug)]
pub struct Raised(pub String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

pub fn raise(text: String) -> mlua::Error {
    mlua::Error::external(Raised(text))
}

/// `{err = text}`: how Lua holds an error reply.
pub fn err_table(lua: &Lua, text: &str) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 1)?;
    t.raw_set("err", text)?;
    Ok(t)
}

/// A script's return value as its caller's reply: `resp3` is the script's RESP version
/// (`redis.setresp`), `proto` the caller's.
pub fn lua_to_reply(v: &Value, resp3: bool, proto: Protocol) -> Reply {
    lua_to_reply_depth(v, resp3, proto, 0)
}

/// Tables nest at most this deep in a reply (a table holding itself must not loop forever).
const MAX_DEPTH: usize = 1000;

fn lua_to_reply_depth(v: &Value, resp3: bool, proto: Protocol, depth: usize) -> Reply {
    if depth > MAX_DEPTH {
        return Reply::error("ERR reached lua stack limit");
    }
    match v {
        Value::Nil => Reply::Nil,
        Value::Boolean(b) => boolean(*b, resp3, proto),
        // Numbers become integers, truncated, as in Redis.
        Value::Integer(n) => Reply::Int(*n),
        Value::Number(n) => Reply::Int(*n as i64),
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Table(t) => table_to_reply(t, resp3, proto, depth),
        _ => Reply::Nil,
    }
}

fn boolean(b: bool, resp3: bool, proto: Protocol) -> Reply {
    match (resp3, proto) {
        (false, _) if b => Reply::Int(1),
        (false, _) => Reply::Nil,
        (true, Protocol::Resp3) => {
            Reply::Raw(Bytes::from_static(if b { b"#t\r\n" } else { b"#f\r\n" }))
        }
        (true, Protocol::Resp2) => Reply::Int(i64::from(b)),
    }
}

fn field(t: &Table, name: &str) -> Value {
    t.raw_get::<Value>(name).unwrap_or(Value::Nil)
}

fn table_to_reply(t: &Table, resp3: bool, proto: Protocol, depth: usize) -> Reply {
    if let Value::String(e) = field(t, "err") {
        return Reply::Error(error_text(&e.to_string_lossy()));
    }
    if let Value::String(s) = field(t, "ok") {
        return Reply::StatusOwned(one_line(&s.to_string_lossy()));
    }
    match field(t, "double") {
        Value::Number(d) => return Reply::Double(d),
        Value::Integer(n) => return Reply::Double(n as f64),
        _ => {}
    }
    if let Value::String(s) = field(t, "big_number") {
        let text = one_line(&s.to_string_lossy());
        return match proto {
            Protocol::Resp3 => Reply::Raw(Bytes::from(format!("({text}\r\n"))),
            Protocol::Resp2 => Reply::Bulk(Bytes::from(text)),
        };
    }
    if let Value::Table(m) = field(t, "map") {
        let mut pairs = Vec::new();
        for (k, v) in m.pairs::<Value, Value>().flatten() {
            pairs.push((
                lua_to_reply_depth(&k, resp3, proto, depth + 1),
                lua_to_reply_depth(&v, resp3, proto, depth + 1),
            ));
        }
        return Reply::Map(pairs);
    }
    if let Value::Table(s) = field(t, "set") {
        let mut items = Vec::new();
        for (k, _) in s.pairs::<Value, Value>().flatten() {
            items.push(lua_to_reply_depth(&k, resp3, proto, depth + 1));
        }
        return Reply::Set(items);
    }
    if let Value::Table(v) = field(t, "verbatim_string") {
        if let (Value::String(fmt), Value::String(s)) = (field(&v, "format"), field(&v, "string")) {
            let body = s.as_bytes();
            return match proto {
                Protocol::Resp3 => {
                    let fmt = fmt.to_string_lossy();
                    let mut out = format!("={}\r\n{}:", body.len() + 4, fmt).into_bytes();
                    out.extend_from_slice(&body);
                    out.extend_from_slice(b"\r\n");
                    Reply::Raw(Bytes::from(out))
                }
                Protocol::Resp2 => Reply::Bulk(Bytes::copy_from_slice(&body)),
            };
        }
    }
    // An array: up to the first nil.
    let mut items = Vec::new();
    let mut i = 1;
    loop {
        let v: Value = t.raw_get(i).unwrap_or(Value::Nil);
        if v.is_nil() {
            break;
        }
        items.push(lua_to_reply_depth(&v, resp3, proto, depth + 1));
        i += 1;
    }
    Reply::Array(items)
}

/// An error text as one line (a reply cannot hold a newline).
pub fn one_line(s: &str) -> String {
    s.trim_end_matches(['\r', '\n']).replace(['\r', '\n'], " ")
}

/// An `{err = ...}` text as an error reply's text: one line, never empty.
pub fn error_text(s: &str) -> String {
    let t = one_line(s);
    let t = t.trim_end();
    if t.is_empty() {
        "ERR".into()
    } else {
        t.to_string()
    }
}

/// An error text in Redis's `-CODE message` form for `redis.error_reply` and errors raised from
/// Rust: a leading `-` is dropped, and a text without a code gets `ERR`.
pub fn coded_error(text: &str) -> String {
    match text.strip_prefix('-') {
        Some(rest) => match rest.split_once(' ') {
            Some((code, msg)) => format!("{code} {}", one_line(msg)),
            None => format!("ERR {}", one_line(rest)),
        },
        None => format!("ERR {}", one_line(text)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lua_value(lua: &Lua, code: &str) -> Value {
        lua.load(code).eval().unwrap()
    }

    #[test]
    fn lua_values_become_redis_replies() {
        let lua = Lua::new();
        let r = |code: &str| lua_to_reply(&lua_value(&lua, code), false, Protocol::Resp2);
        assert_eq!(r("return 100.5"), Reply::Int(100));
        assert_eq!(r("return -3.9"), Reply::Int(-3));
        assert_eq!(r("return 'x'"), Reply::Bulk(Bytes::from_static(b"x")));
        assert_eq!(r("return true"), Reply::Int(1));
        assert_eq!(r("return false"), Reply::Nil);
        assert_eq!(r("return nil"), Reply::Nil);
        assert_eq!(r("return {ok='fine'}"), Reply::StatusOwned("fine".into()));
        assert_eq!(r("return {err='ERR bad'}"), Reply::error("ERR bad"));
        assert_eq!(
            r("return {1,'a',{2},nil,5}"),
            Reply::Array(vec![
                Reply::Int(1),
                Reply::Bulk(Bytes::from_static(b"a")),
                Reply::Array(vec![Reply::Int(2)]),
            ])
        );
        assert_eq!(r("return {double=1.5}"), Reply::Double(1.5));
        let big = lua_to_reply(
            &lua_value(&lua, "return {big_number='123'}"),
            true,
            Protocol::Resp3,
        );
        assert_eq!(big, Reply::Raw(Bytes::from_static(b"(123\r\n")));
        let t = lua_to_reply(&lua_value(&lua, "return true"), true, Protocol::Resp3);
        assert_eq!(t, Reply::Raw(Bytes::from_static(b"#t\r\n")));
        let f = lua_to_reply(&lua_value(&lua, "return false"), true, Protocol::Resp2);
        assert_eq!(f, Reply::Int(0));
    }

    #[test]
    fn error_codes() {
        assert_eq!(coded_error("-MY_ERR custom msg"), "MY_ERR custom msg");
        assert_eq!(coded_error("-"), "ERR ");
        assert_eq!(error_text("ERR "), "ERR");
        assert_eq!(coded_error("plain"), "ERR plain");
    }
}
