//! Replies onto Lua's stack, converted as Redis converts a command's reply for a script: status
//! `{ok = s}`, error `{err = s}`, nil `false` (RESP2) or `nil` (RESP3), RESP3's maps, sets and
//! doubles as `{map = t}`, `{set = t}`, `{double = n}`.

use bytes::Bytes;
use mlua::ffi;
use ringcache_protocol::Reply;

/// Nesting past this is answered `false` (no command's reply nests anywhere near it).
const MAX_DEPTH: usize = 64;

/// Pushes `s` as a Lua string.
#[allow(unsafe_code)]
unsafe fn string(state: *mut ffi::lua_State, s: &[u8]) {
    // SAFETY: the caller made room; Lua copies the bytes.
    unsafe { ffi::lua_pushlstring_(state, s.as_ptr().cast(), s.len()) }
}

/// Pushes a table `{[field] = <the value on top>}` in place of that value.
#[allow(unsafe_code)]
unsafe fn wrap(state: *mut ffi::lua_State, field: &str) {
    // SAFETY: the caller made room for two more slots; the value is on top.
    unsafe {
        ffi::lua_createtable(state, 0, 1);
        ffi::lua_insert(state, -2);
        string(state, field.as_bytes());
        ffi::lua_insert(state, -2);
        ffi::lua_rawset(state, -3);
    }
}

/// Pushes `{err = text}`.
#[allow(unsafe_code)]
pub(crate) unsafe fn error_table(state: *mut ffi::lua_State, text: &str) {
    // SAFETY: room for the table, key and value is made here.
    unsafe {
        ffi::lua_checkstack(state, 4);
        string(state, text.as_bytes());
        wrap(state, "err");
    }
}

/// Pushes the strings as a Lua array.
#[allow(unsafe_code)]
pub(crate) unsafe fn strings(state: *mut ffi::lua_State, items: &[Bytes]) {
    // SAFETY: the caller made room for the table and one item.
    unsafe {
        ffi::lua_createtable(state, items.len().min(i32::MAX as usize) as i32, 0);
        for (i, b) in items.iter().enumerate() {
            string(state, b);
            ffi::lua_rawseti(state, -2, i as ffi::lua_Integer + 1);
        }
    }
}

/// Pushes `reply` as one Lua value (`resp3`: the script chose RESP3 with `redis.setresp`).
#[allow(unsafe_code)]
pub(crate) unsafe fn reply(state: *mut ffi::lua_State, r: Reply, resp3: bool, depth: usize) {
    // SAFETY (for the block): room for this level is made first; each arm leaves exactly one
    // value more than it found.
    unsafe {
        ffi::lua_checkstack(state, 4);
        if depth > MAX_DEPTH {
            ffi::lua_pushboolean(state, 0);
            return;
        }
        match r {
            Reply::Status(s) => {
                string(state, s.as_bytes());
                wrap(state, "ok");
            }
            Reply::StatusOwned(s) => {
                string(state, s.as_bytes());
                wrap(state, "ok");
            }
            Reply::Error(e) => {
                string(state, e.as_bytes());
                wrap(state, "err");
            }
            Reply::Int(n) => ffi::lua_pushnumber(state, n as f64),
            Reply::Bulk(b) | Reply::Verbatim(b) => string(state, &b),
            Reply::Nil | Reply::NilArray => nil(state, resp3),
            Reply::Array(items) => sequence(state, items, resp3, depth),
            Reply::Set(items) if !resp3 => sequence(state, items, resp3, depth),
            Reply::Set(items) => {
                ffi::lua_createtable(state, 0, items.len().min(i32::MAX as usize) as i32);
                for item in items {
                    reply(state, item, resp3, depth + 1);
                    ffi::lua_pushboolean(state, 1);
                    set_field(state);
                }
                wrap(state, "set");
            }
            Reply::Map(pairs) if !resp3 => {
                ffi::lua_createtable(state, (pairs.len() * 2).min(i32::MAX as usize) as i32, 0);
                let mut i: ffi::lua_Integer = 1;
                for (k, v) in pairs {
                    element(state, k, resp3, depth);
                    ffi::lua_rawseti(state, -2, i);
                    element(state, v, resp3, depth);
                    ffi::lua_rawseti(state, -2, i + 1);
                    i += 2;
                }
            }
            Reply::Map(pairs) => {
                ffi::lua_createtable(state, 0, pairs.len().min(i32::MAX as usize) as i32);
                for (k, v) in pairs {
                    reply(state, k, resp3, depth + 1);
                    reply(state, v, resp3, depth + 1);
                    set_field(state);
                }
                wrap(state, "map");
            }
            Reply::Double(d) if resp3 => {
                ffi::lua_pushnumber(state, d);
                wrap(state, "double");
            }
            Reply::Double(d) => {
                string(state, ringcache_protocol::resp::format_double(d).as_bytes())
            }
            Reply::Raw(bytes) => match parse_frame(&bytes) {
                Some((r, _)) => reply(state, r, resp3, depth + 1),
                None => ffi::lua_pushboolean(state, 0),
            },
        }
    }
}

#[allow(unsafe_code)]
unsafe fn nil(state: *mut ffi::lua_State, resp3: bool) {
    // SAFETY: the caller made room for one value.
    unsafe {
        if resp3 {
            ffi::lua_pushnil(state);
        } else {
            ffi::lua_pushboolean(state, 0);
        }
    }
}

/// Pushes an array's element: a nil becomes `false` in both modes (a Lua array cannot hold nil).
#[allow(unsafe_code)]
unsafe fn element(state: *mut ffi::lua_State, item: Reply, resp3: bool, depth: usize) {
    // SAFETY: as `reply`.
    unsafe {
        reply(state, item, resp3, depth + 1);
        if ffi::lua_type(state, -1) == ffi::LUA_TNIL {
            ffi::lua_pop(state, 1);
            ffi::lua_pushboolean(state, 0);
        }
    }
}

#[allow(unsafe_code)]
unsafe fn sequence(state: *mut ffi::lua_State, items: Vec<Reply>, resp3: bool, depth: usize) {
    // SAFETY: as `reply`.
    unsafe {
        ffi::lua_createtable(state, items.len().min(i32::MAX as usize) as i32, 0);
        for (i, item) in items.into_iter().enumerate() {
            element(state, item, resp3, depth);
            ffi::lua_rawseti(state, -2, i as ffi::lua_Integer + 1);
        }
    }
}

/// `t[k] = v` for the table under a key and a value on top; a nil key (which a raw set would
/// raise on) is dropped with its value.
#[allow(unsafe_code)]
unsafe fn set_field(state: *mut ffi::lua_State) {
    // SAFETY: the stack holds table, key, value on top.
    unsafe {
        if ffi::lua_type(state, -2) == ffi::LUA_TNIL {
            ffi::lua_pop(state, 2);
        } else {
            ffi::lua_rawset(state, -3);
        }
    }
}

/// A pre-encoded reply (Redis's own COMMAND replies) read back into a [`Reply`], with the bytes
/// after it.
fn parse_frame(b: &[u8]) -> Option<(Reply, &[u8])> {
    let end = memchr::memmem::find(b, b"\r\n")?;
    let (head, rest) = (&b[..end], &b[end + 2..]);
    let text = std::str::from_utf8(head.get(1..)?).ok()?;
    match head.first()? {
        b'+' => Some((Reply::StatusOwned(text.into()), rest)),
        b'-' => Some((Reply::Error(text.into()), rest)),
        b':' => Some((Reply::Int(text.parse().ok()?), rest)),
        b'_' => Some((Reply::Nil, rest)),
        b'#' => Some((Reply::Int(i64::from(text == "t")), rest)),
        b',' => Some((Reply::Double(text.parse().ok()?), rest)),
        b'$' | b'=' | b'(' if text.starts_with('-') => Some((Reply::Nil, rest)),
        b'(' => Some((Reply::Bulk(Bytes::copy_from_slice(text.as_bytes())), rest)),
        b'$' | b'=' => {
            let n: usize = text.parse().ok()?;
            let body = rest.get(..n)?;
            Some((
                Reply::Bulk(Bytes::copy_from_slice(body)),
                rest.get(n + 2..)?,
            ))
        }
        kind @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
            let n: i64 = text.parse().ok()?;
            if n < 0 {
                return Some((Reply::NilArray, rest));
            }
            let count = if matches!(kind, b'%' | b'|') {
                n as usize * 2
            } else {
                n as usize
            };
            let mut items = Vec::with_capacity(count.min(1024));
            let mut rest = rest;
            for _ in 0..count {
                let (item, r) = parse_frame(rest)?;
                items.push(item);
                rest = r;
            }
            let reply = match kind {
                b'%' | b'|' => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Reply::Map(pairs)
                }
                b'~' => Reply::Set(items),
                _ => Reply::Array(items),
            };
            Some((reply, rest))
        }
        _ => None,
    }
}
