//! Redis 7's wording for the errors every server answers the same way (node and router alike).

use bytes::Bytes;

use crate::resp::Reply;

/// The Redis version ringcache answers as: clients pick features by it, and the node implements
/// 7.0's replies.
pub const REDIS_COMPAT_VERSION: &str = "7.0.15";

/// `ERR wrong number of arguments for 'get' command` (`'client|id'` for a subcommand).
pub fn arity_error(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// `ERR unknown command 'x', with args beginning with: 'a' 'b' `, as Redis 7 words it: the quoted
/// arguments stop at 128 characters, the last one cut to fit.
pub fn unknown_command(args: &[Bytes]) -> Reply {
    let name = args
        .first()
        .map(|a| String::from_utf8_lossy(a))
        .unwrap_or_default();
    let mut quoted = String::new();
    for a in args.iter().skip(1) {
        let used = quoted.chars().count();
        if used >= 128 {
            break;
        }
        let a = String::from_utf8_lossy(a);
        quoted.push('\'');
        quoted.push_str(truncate(&a, 128 - used));
        quoted.push_str("' ");
    }
    Reply::Error(format!(
        "ERR unknown command '{}', with args beginning with: {quoted}",
        truncate(&name, 128)
    ))
}

/// `ERR unknown subcommand 'x'. Try CLIENT HELP.`
pub fn unknown_subcommand(sub: &[u8], parent: &str) -> Reply {
    Reply::Error(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        truncate(&String::from_utf8_lossy(sub), 128),
        parent.to_ascii_uppercase()
    ))
}

/// The first `n` characters of `s`.
fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_wording() {
        let args = [
            Bytes::from_static(b"foo"),
            Bytes::from_static(b"a"),
            Bytes::new(),
        ];
        assert_eq!(
            unknown_command(&args),
            Reply::error("ERR unknown command 'foo', with args beginning with: 'a' '' ")
        );
        assert_eq!(
            unknown_subcommand(b"x", "client"),
            Reply::error("ERR unknown subcommand 'x'. Try CLIENT HELP.")
        );
        assert_eq!(
            arity_error("get"),
            Reply::error("ERR wrong number of arguments for 'get' command")
        );
    }
}
