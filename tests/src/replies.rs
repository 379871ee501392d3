//! Expected replies (`ok()`, `bulk("v")`, `wrong_args("get")`, Redis's error texts) and
//! [`ReplyExt`], accessors on decoded replies that fail the test when the shape is wrong.

use ringcache_protocol::Reply;

pub fn ok() -> Reply {
    status("OK")
}

pub fn status(s: &str) -> Reply {
    Reply::StatusOwned(s.to_string())
}

pub fn err(s: &str) -> Reply {
    Reply::Error(s.to_string())
}

pub fn int(n: i64) -> Reply {
    Reply::Int(n)
}

pub fn bulk(s: impl AsRef<[u8]>) -> Reply {
    Reply::Bulk(bytes::Bytes::copy_from_slice(s.as_ref()))
}

pub fn nil() -> Reply {
    Reply::Nil
}

pub fn arr(items: Vec<Reply>) -> Reply {
    Reply::Array(items)
}

/// An array of bulk strings.
pub fn bulks(items: &[&str]) -> Reply {
    Reply::Array(items.iter().map(bulk).collect())
}

/// `ERR wrong number of arguments for '<cmd>' command`
pub fn wrong_args(cmd: &str) -> Reply {
    err(&format!(
        "ERR wrong number of arguments for '{cmd}' command"
    ))
}

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const SYNTAX: &str = "ERR syntax error";
pub const READONLY: &str = "READONLY You can't write against a read only replica.";

/// Convenience accessors on decoded replies; each panics with the reply when the shape is wrong.
pub trait ReplyExt {
    /// Bulk, status or verbatim text.
    fn text(&self) -> String;
    fn int(&self) -> i64;
    fn items(&self) -> Vec<Reply>;
    /// Items of an array/set as text, in order.
    fn strings(&self) -> Vec<String>;
    /// Items as text, sorted.
    fn sorted(&self) -> Vec<String>;
    /// A RESP2 flat array or RESP3 map as (text, reply) pairs.
    fn pairs(&self) -> Vec<(String, Reply)>;
    /// The value under `key` in a RESP2 flat array or RESP3 map (RESP3 maps decode unordered).
    fn get(&self, key: &str) -> Option<Reply>;
    /// The error text, if an error.
    fn error_text(&self) -> Option<String>;
}

impl ReplyExt for Reply {
    fn text(&self) -> String {
        match self {
            Reply::Bulk(b) | Reply::Verbatim(b) => String::from_utf8_lossy(b).into_owned(),
            Reply::Status(s) => s.to_string(),
            Reply::StatusOwned(s) => s.clone(),
            Reply::Double(d) => ringcache_protocol::resp::format_double(*d),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    fn items(&self) -> Vec<Reply> {
        match self {
            Reply::Array(v) | Reply::Set(v) => v.clone(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    fn strings(&self) -> Vec<String> {
        self.items().iter().map(ReplyExt::text).collect()
    }

    fn sorted(&self) -> Vec<String> {
        let mut v = self.strings();
        v.sort();
        v
    }

    fn pairs(&self) -> Vec<(String, Reply)> {
        match self {
            Reply::Map(m) => m.iter().map(|(k, v)| (k.text(), v.clone())).collect(),
            Reply::Array(v) => {
                assert!(v.len() % 2 == 0, "odd-length array is not a map: {self:?}");
                v.chunks(2).map(|p| (p[0].text(), p[1].clone())).collect()
            }
            other => panic!("expected a map reply, got {other:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<Reply> {
        self.pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn error_text(&self) -> Option<String> {
        match self {
            Reply::Error(e) => Some(e.clone()),
            _ => None,
        }
    }
}

/// Every string and integer in a reply, flattened and joined by spaces (for shape-agnostic
/// checks such as "RING NODES names every shard").
pub fn flat_text(r: &Reply) -> String {
    fn walk(r: &Reply, out: &mut Vec<String>) {
        match r {
            Reply::Bulk(b) | Reply::Verbatim(b) => out.push(String::from_utf8_lossy(b).into()),
            Reply::Status(s) => out.push(s.to_string()),
            Reply::StatusOwned(s) | Reply::Error(s) => out.push(s.clone()),
            Reply::Int(n) => out.push(n.to_string()),
            Reply::Double(d) => out.push(d.to_string()),
            Reply::Array(v) | Reply::Set(v) => v.iter().for_each(|x| walk(x, out)),
            Reply::Map(m) => m.iter().for_each(|(k, v)| {
                walk(k, out);
                walk(v, out);
            }),
            Reply::Raw(b) => out.push(String::from_utf8_lossy(b).into()),
            Reply::Nil | Reply::NilArray => {}
        }
    }
    let mut out = Vec::new();
    walk(r, &mut out);
    out.join(" ")
}
