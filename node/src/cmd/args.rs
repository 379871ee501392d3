//! Argument parsing and error replies every command family shares: keywords, integers, and
//! Redis's standard error texts.

use ringcache_protocol::Reply;

pub use ringcache_protocol::errors::{arity_error, unknown_command, unknown_subcommand};

pub use crate::keyspace::WRONGTYPE;
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const SYNTAX: &str = "ERR syntax error";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";

pub fn wrongtype() -> Reply {
    Reply::error(WRONGTYPE)
}

pub fn syntax_error() -> Reply {
    Reply::error(SYNTAX)
}

pub fn not_integer() -> Reply {
    Reply::error(NOT_INTEGER)
}

/// Parses an integer argument with Redis's rules.
pub fn int_arg(a: &[u8]) -> Result<i64, Reply> {
    ringcache_protocol::num::parse_i64(a).ok_or_else(not_integer)
}

/// Case-insensitive comparison of an argument with an ASCII keyword.
pub fn is(a: &[u8], kw: &str) -> bool {
    a.eq_ignore_ascii_case(kw.as_bytes())
}

/// Parses a float argument with Redis's rules (`inf`, `-inf`, no NaN).
pub fn float_arg(a: &[u8]) -> Result<f64, Reply> {
    ringcache_protocol::num::parse_f64(a).ok_or_else(|| Reply::error(NOT_FLOAT))
}

/// A bulk string reply copied out of the keyspace.
pub fn bulk(b: &[u8]) -> Reply {
    Reply::Bulk(bytes::Bytes::copy_from_slice(b))
}
