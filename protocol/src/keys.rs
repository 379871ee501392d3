//! Which arguments of a request are keys, including commands whose keys move with their
//! arguments (Redis's `movablekeys`: a `numkeys` count, a `STORE` keyword). The router and the
//! nodes both ask here, so they agree on which shard a command touches and which locks it takes.

use bytes::Bytes;

use crate::table::{flags, CommandSpec, KeyPositions};

/// Key argument positions of one request.
#[derive(Debug, Clone)]
pub enum Keys {
    /// First/last/step from the table.
    Fixed(KeyPositions),
    /// Computed from the arguments.
    Listed(std::vec::IntoIter<usize>),
}

impl Iterator for Keys {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Keys::Fixed(k) => k.next(),
            Keys::Listed(k) => k.next(),
        }
    }
}

/// `numkeys` at `at`, the keys right after it: positions, or `None` when the count is not a
/// non-negative integer that fits (the command answers that error itself).
fn counted(args: &[Bytes], at: usize) -> Option<std::ops::Range<usize>> {
    let n: usize = std::str::from_utf8(args.get(at)?).ok()?.parse().ok()?;
    let end = at.checked_add(1)?.checked_add(n)?;
    (end <= args.len()).then_some(at + 1..end)
}

/// The argument after the last `kw` (any case) at or past `from`, if there is one.
fn after_keyword(args: &[Bytes], from: usize, kws: &[&str]) -> Option<usize> {
    (from..args.len().saturating_sub(1))
        .rev()
        .find(|&i| {
            kws.iter()
                .any(|k| args[i].eq_ignore_ascii_case(k.as_bytes()))
        })
        .map(|i| i + 1)
}

/// XREAD's and XREADGROUP's keys: the first half of what follows STREAMS (options before it are
/// skipped with their arguments, as Redis finds them).
fn stream_keys(args: &[Bytes]) -> std::ops::Range<usize> {
    let is = |a: &Bytes, k: &str| a.eq_ignore_ascii_case(k.as_bytes());
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if is(a, "block") || is(a, "count") {
            i += 2;
        } else if is(a, "group") {
            i += 3;
        } else if is(a, "noack") {
            i += 1;
        } else if is(a, "streams") {
            let n = args.len() - i - 1;
            if n == 0 || !n.is_multiple_of(2) {
                return 0..0;
            }
            return i + 1..i + 1 + n / 2;
        } else {
            break;
        }
    }
    0..0
}

impl CommandSpec {
    /// The positions of the key arguments of `args` (the command name at 0).
    pub fn keys(&self, args: &[Bytes]) -> Keys {
        // Container commands whose subcommand takes a key (the table lists containers keyless).
        if matches!(self.name, "xgroup" | "xinfo") && args.len() >= 3 {
            let keyed = [
                "create",
                "destroy",
                "setid",
                "createconsumer",
                "delconsumer",
            ]
            .iter()
            .chain(["stream", "groups", "consumers"].iter())
            .any(|s| args[1].eq_ignore_ascii_case(s.as_bytes()));
            if keyed {
                return Keys::Listed(vec![2].into_iter());
            }
        }
        if matches!(self.name, "object" | "memory") && args.len() >= 3 {
            let sub = &args[1];
            let keyed = ["encoding", "freq", "idletime", "refcount", "usage"]
                .iter()
                .any(|s| sub.eq_ignore_ascii_case(s.as_bytes()));
            if keyed {
                return Keys::Listed(vec![2].into_iter());
            }
        }
        if !self.has(flags::MOVABLEKEYS) {
            return Keys::Fixed(self.key_positions(args.len()));
        }
        let mut out: Vec<usize> = Vec::new();
        match self.name {
            "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" | "lmpop" | "zmpop" => {
                out.extend(counted(args, 1).unwrap_or(0..0));
            }
            "zunionstore" | "zinterstore" | "zdiffstore" => {
                out.push(1);
                out.extend(counted(args, 2).unwrap_or(0..0));
            }
            "blmpop" | "bzmpop" | "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall"
            | "fcall_ro" => out.extend(counted(args, 2).unwrap_or(0..0)),
            "georadius" | "georadiusbymember" | "sort" | "sort_ro" => {
                out.push(1);
                out.extend(after_keyword(args, 2, &["store", "storedist"]));
            }
            "xread" | "xreadgroup" => out.extend(stream_keys(args)),
            "migrate" => out.extend(migrate_keys(args)),
            _ => out.extend(self.key_positions(args.len())),
        }
        out.retain(|&i| i < args.len());
        Keys::Listed(out.into_iter())
    }
}

/// MIGRATE's keys: argument 3, or, when it is empty, the arguments after `KEYS` (passwords after
/// AUTH and AUTH2 skipped, as Redis reads them).
fn migrate_keys(args: &[Bytes]) -> std::ops::Range<usize> {
    let mut i = 6;
    while i < args.len() {
        let a = &args[i];
        if a.eq_ignore_ascii_case(b"auth") {
            i += 1;
        } else if a.eq_ignore_ascii_case(b"auth2") {
            i += 2;
        } else if a.eq_ignore_ascii_case(b"keys") {
            return if args[3].is_empty() {
                i + 1..args.len()
            } else {
                0..0
            };
        }
        i += 1;
    }
    3..4
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::table::lookup;
    use bytes::Bytes;

    fn keys(cmd: &str) -> Vec<String> {
        let args: Vec<Bytes> = cmd
            .split(' ')
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        let spec = lookup(&args[0]).unwrap();
        spec.keys(&args)
            .map(|i| String::from_utf8_lossy(&args[i]).into_owned())
            .collect()
    }

    #[test]
    fn movable_keys() {
        assert_eq!(keys("ZUNIONSTORE d 2 a b WEIGHTS 1 2"), ["d", "a", "b"]);
        assert_eq!(keys("ZUNION 2 a b"), ["a", "b"]);
        assert_eq!(keys("SINTERCARD 3 a b c LIMIT 1"), ["a", "b", "c"]);
        assert_eq!(keys("LMPOP 2 a b LEFT"), ["a", "b"]);
        assert_eq!(keys("BLMPOP 0 2 a b LEFT"), ["a", "b"]);
        assert_eq!(keys("BZMPOP 1.5 1 z MIN"), ["z"]);
        assert_eq!(keys("GEORADIUS g 0 0 1 km STORE dst"), ["g", "dst"]);
        assert_eq!(keys("GEORADIUS g 0 0 1 km"), ["g"]);
        assert_eq!(keys("XREAD COUNT 2 STREAMS a b 0 0"), ["a", "b"]);
        assert_eq!(
            keys("XREADGROUP GROUP g c BLOCK 0 NOACK STREAMS s >"),
            ["s"]
        );
        assert_eq!(keys("XREAD STREAMS a b 0"), Vec::<String>::new());
        assert_eq!(keys("MIGRATE h 1 k 0 5000 COPY"), ["k"]);
        assert_eq!(
            keys("MIGRATE h 1  0 5000 AUTH2 KEYS pw KEYS a b"),
            ["a", "b"]
        );
        // A bad count leaves only what is certain; the command itself answers the error.
        assert_eq!(keys("ZUNIONSTORE d x a b"), ["d"]);
        assert_eq!(keys("LMPOP 5 a LEFT"), Vec::<String>::new());
    }

    #[test]
    fn fixed_keys() {
        assert_eq!(keys("MSET a 1 b 2"), ["a", "b"]);
        assert_eq!(keys("GET k"), ["k"]);
        assert_eq!(keys("LMOVE a b LEFT RIGHT"), ["a", "b"]);
        assert_eq!(keys("BLPOP a b 0"), ["a", "b"]);
        assert_eq!(keys("ZRANGESTORE d s 0 -1"), ["d", "s"]);
        assert_eq!(
            keys("GEOSEARCHSTORE d s FROMLONLAT 0 0 BYRADIUS 1 km"),
            ["d", "s"]
        );
    }

    #[test]
    fn subcommand_keys() {
        assert_eq!(keys("OBJECT ENCODING k"), ["k"]);
        assert_eq!(keys("object freq k"), ["k"]);
        assert_eq!(keys("MEMORY USAGE k SAMPLES 5"), ["k"]);
        assert_eq!(keys("OBJECT HELP"), Vec::<String>::new());
        assert_eq!(keys("XINFO STREAM s FULL"), ["s"]);
        assert_eq!(keys("XGROUP CREATE s g $"), ["s"]);
        assert_eq!(keys("XGROUP HELP"), Vec::<String>::new());
    }
}
