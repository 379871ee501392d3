//! What MONITOR shows of a command, on the node and the router: Redis's status line
//! (`+<unix time> [0 <client>] "arg" ...`, arguments quoted as `sdscatrepr` does), secrets
//! redacted (also in the slow log), administrative commands left out.

use bytes::Bytes;

use crate::table::{self, flags, CommandSpec};

/// A script's EVAL or FCALL: flagged `skip-monitor`, because Redis shows it itself before the
/// script runs, ahead of the calls it makes.
pub fn is_script(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    )
}

/// Whether a command is shown to monitors: not an administrative one (a container's flags are
/// its subcommand's: CONFIG GET is administrative), nor one flagged `skip-monitor` other than
/// a script's, as Redis.
pub fn shown(spec: &'static CommandSpec, args: &[Bytes]) -> bool {
    let flags_of = args
        .get(1)
        .and_then(|sub| table::subcommand(spec, &sub.to_ascii_lowercase()))
        .unwrap_or(spec);
    !flags_of.has(flags::ADMIN) && (!flags_of.has(flags::SKIP_MONITOR) || is_script(spec))
}

/// Arguments that carry secrets, shown as `(redacted)` (by MONITOR and in the slow log) as Redis
/// does: AUTH's, HELLO's after AUTH, MIGRATE's after AUTH or AUTH2, CONFIG SET's password values.
pub fn redacted(args: &[Bytes]) -> Vec<bool> {
    let mut hide = vec![false; args.len()];
    let Some(name) = args.first() else {
        return hide;
    };
    let is = |a: &Bytes, w: &str| a.eq_ignore_ascii_case(w.as_bytes());
    if is(name, "config") && args.get(1).is_some_and(|a| is(a, "set")) {
        // Values of the settings Redis marks sensitive.
        for (i, a) in args.iter().enumerate().skip(2).step_by(2) {
            if ["requirepass", "masterauth", "masteruser"]
                .iter()
                .any(|p| is(a, p))
            {
                if let Some(h) = hide.get_mut(i + 1) {
                    *h = true;
                }
            }
        }
    } else if is(name, "auth") {
        hide.iter_mut().skip(1).for_each(|h| *h = true);
    } else if is(name, "hello") || is(name, "migrate") {
        for (i, a) in args.iter().enumerate().skip(1) {
            let n = if is(a, "auth") {
                if is(name, "hello") {
                    2
                } else {
                    1
                }
            } else if is(a, "auth2") && is(name, "migrate") {
                2
            } else {
                continue;
            };
            for h in hide.iter_mut().skip(i + 1).take(n) {
                *h = true;
            }
        }
    }
    hide
}

/// `+<secs>.<micros> [0 <client>] "arg" "arg"\r\n`, arguments quoted as Redis's `sdscatrepr`.
pub fn line(now_us: i64, client: &str, args: &[Bytes]) -> Bytes {
    let mut out = format!(
        "+{}.{:06} [0 {client}]",
        now_us / 1_000_000,
        now_us % 1_000_000
    )
    .into_bytes();
    let hide = redacted(args);
    for (a, hidden) in args.iter().zip(hide) {
        out.extend_from_slice(b" \"");
        let a: &[u8] = if hidden { b"(redacted)" } else { a };
        for &c in a {
            match c {
                b'\\' | b'"' => out.extend_from_slice(&[b'\\', c]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                7 => out.extend_from_slice(b"\\a"),
                8 => out.extend_from_slice(b"\\b"),
                c if c.is_ascii_graphic() || c == b' ' => out.push(c),
                c => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
            }
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// [`line`] at the present time.
pub fn line_now(client: &str, args: &[Bytes]) -> Bytes {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    line(now_us, client, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_quote_as_redis() {
        let args = [
            Bytes::from_static(b"SET"),
            Bytes::from_static(b"k \"q\""),
            Bytes::from_static(b"a\r\n\x01\\"),
        ];
        let l = line(1_700_000_000_000_042, "127.0.0.1:5000", &args);
        assert_eq!(
            &l[..],
            &b"+1700000000.000042 [0 127.0.0.1:5000] \"SET\" \"k \\\"q\\\"\" \"a\\r\\n\\x01\\\\\"\r\n"[..]
        );
        let auth = [Bytes::from_static(b"AUTH"), Bytes::from_static(b"pw")];
        assert!(line(0, "lua", &auth).ends_with(b"[0 lua] \"AUTH\" \"(redacted)\"\r\n"));
    }
}
