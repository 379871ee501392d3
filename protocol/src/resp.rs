//! Replies and their RESP2 / RESP3 encoding.
//!
//! The node builds a [`Reply`] per command and encodes it for the protocol version the client chose
//! with `HELLO`; RESP3-only shapes (maps, sets, doubles, booleans, verbatim strings) fall back to their
//! RESP2 equivalents exactly as Redis does.

use bytes::{BufMut, Bytes, BytesMut};

/// Protocol version negotiated with `HELLO` (2 until a client asks for 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    pub fn number(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply to a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+text`
    Status(&'static str),
    /// `+text` with owned text
    StatusOwned(String),
    /// `-text`; the text includes the error code (`ERR ...`, `WRONGTYPE ...`).
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n\r\n...`
    Bulk(Bytes),
    /// `$-1` in RESP2, `_` in RESP3
    Nil,
    /// `*-1` in RESP2, `_` in RESP3
    NilArray,
    /// `*n`
    Array(Vec<Reply>),
    /// `%n` in RESP3, a flat array of key, value in RESP2
    Map(Vec<(Reply, Reply)>),
    /// `~n` in RESP3, an array in RESP2
    Set(Vec<Reply>),
    /// `,x` in RESP3, a bulk string in RESP2 (Redis formats with `%.17g`)
    Double(f64),
    /// `=n\r\ntxt:...` in RESP3, a bulk string in RESP2
    Verbatim(Bytes),
    /// Bytes already encoded as one RESP frame (e.g. Redis's own COMMAND DOCS entries).
    Raw(Bytes),
}

impl Reply {
    pub const OK: Reply = Reply::Status("OK");

    /// Lines of text as an array of status replies (the HELP subcommands' shape).
    pub fn status_lines(lines: &[&str]) -> Reply {
        Reply::Array(
            lines
                .iter()
                .map(|l| Reply::StatusOwned((*l).to_string()))
                .collect(),
        )
    }

    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    pub fn bulk_str(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends this reply, encoded for `proto`, to `out`.
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        match self {
            Reply::Status(s) => line(out, b'+', s.as_bytes()),
            Reply::StatusOwned(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(s) => line(out, b'-', s.as_bytes()),
            Reply::Int(n) => int_line(out, b':', *n),
            Reply::Bulk(b) => bulk(out, b),
            Reply::Nil => match proto {
                Protocol::Resp2 => out.put_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::NilArray => match proto {
                Protocol::Resp2 => out.put_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                int_line(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(proto, out);
                }
            }
            Reply::Map(pairs) => {
                match proto {
                    Protocol::Resp2 => int_line(out, b'*', pairs.len() as i64 * 2),
                    Protocol::Resp3 => int_line(out, b'%', pairs.len() as i64),
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Set(items) => {
                let tag = if proto == Protocol::Resp3 { b'~' } else { b'*' };
                int_line(out, tag, items.len() as i64);
                for item in items {
                    item.encode(proto, out);
                }
            }
            Reply::Double(d) => {
                let text = format_double(*d);
                match proto {
                    Protocol::Resp2 => bulk(out, text.as_bytes()),
                    Protocol::Resp3 => line(out, b',', text.as_bytes()),
                }
            }
            Reply::Verbatim(b) => match proto {
                Protocol::Resp2 => bulk(out, b),
                Protocol::Resp3 => {
                    int_line(out, b'=', b.len() as i64 + 4);
                    out.put_slice(b"txt:");
                    out.put_slice(b);
                    out.put_slice(b"\r\n");
                }
            },
            Reply::Raw(b) => out.put_slice(b),
        }
    }

    /// Encodes into a fresh buffer (tests and one-off replies).
    pub fn to_bytes(&self, proto: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(proto, &mut out);
        out.freeze()
    }
}

fn line(out: &mut BytesMut, tag: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(tag);
    // A status or error line must not contain CR or LF; Redis replaces them with spaces.
    if memchr::memchr2(b'\r', b'\n', text).is_some() {
        out.extend(
            text.iter()
                .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
        );
    } else {
        out.put_slice(text);
    }
    out.put_slice(b"\r\n");
}

fn int_line(out: &mut BytesMut, tag: u8, n: i64) {
    let mut buf = itoa::Buffer::new();
    let s = buf.format(n);
    out.reserve(s.len() + 3);
    out.put_u8(tag);
    out.put_slice(s.as_bytes());
    out.put_slice(b"\r\n");
}

/// Appends `$len\r\nbytes\r\n`.
pub fn bulk(out: &mut BytesMut, b: &[u8]) {
    int_line(out, b'$', b.len() as i64);
    out.reserve(b.len() + 2);
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// Appends a request in RESP (an array of bulk strings), as clients and the router send them.
pub fn encode_request<I, A>(out: &mut BytesMut, args: I)
where
    I: IntoIterator<Item = A>,
    I::IntoIter: ExactSizeIterator,
    A: AsRef<[u8]>,
{
    let args = args.into_iter();
    int_line(out, b'*', args.len() as i64);
    for a in args {
        bulk(out, a.as_ref());
    }
}

/// Formats a double the way Redis 7.0 replies with one (`addReplyDouble`): C's `%.17g`, i.e.
/// 17 significant digits without trailing zeros, exponent form below 1e-4 or from 1e17 on,
/// and `inf` / `-inf`.
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d.is_nan() {
        return "nan".into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:.16e}` rounds exactly to 17 significant digits: `d.dddddddddddddddde<exp>`.
    let sci = format!("{:.16e}", d.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if d < 0.0 { "-" } else { "" };
    if !(-4..17).contains(&exp) {
        let digits = digits.trim_end_matches('0');
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.unsigned_abs());
    }
    let text = if exp >= 0 {
        let (int, frac) = digits.split_at((exp as usize + 1).min(digits.len()));
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        }
    } else {
        let zeros = "0".repeat(exp.unsigned_abs() as usize - 1);
        format!("0.{zeros}{}", digits.trim_end_matches('0'))
    };
    format!("{sign}{text}")
}

/// TIME's reply: seconds and microseconds since the Unix epoch, as bulk strings.
pub fn time_reply() -> Reply {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    Reply::Array(vec![
        Reply::Bulk(Bytes::from((us / 1_000_000).to_string())),
        Reply::Bulk(Bytes::from((us % 1_000_000).to_string())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_percent_17g() {
        for (d, text) in [
            (1.1, "1.1000000000000001"),
            (0.1, "0.10000000000000001"),
            (3.0000000000000004, "3.0000000000000004"),
            (2.0, "2"),
            (-2.5, "-2.5"),
            (1e20, "1e+20"),
            (1e17, "1e+17"),
            (1e16, "10000000000000000"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e-5, "1.0000000000000001e-05"),
            (1e-4, "0.0001"),
            (0.00012, "0.00012"),
            (1e-310, "9.9999999999999694e-311"),
            (f64::MAX, "1.7976931348623157e+308"),
            (-0.0, "-0"),
            (0.0, "0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (1e100, "1e+100"),
        ] {
            assert_eq!(format_double(d), text, "{d:e}");
        }
    }

    #[test]
    fn resp2_and_resp3_shapes() {
        let m = Reply::Map(vec![(Reply::bulk_str("a"), Reply::Int(1))]);
        assert_eq!(&m.to_bytes(Protocol::Resp2)[..], b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(&m.to_bytes(Protocol::Resp3)[..], b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(&Reply::Nil.to_bytes(Protocol::Resp2)[..], b"$-1\r\n");
        assert_eq!(&Reply::Nil.to_bytes(Protocol::Resp3)[..], b"_\r\n");
        assert_eq!(
            &Reply::error("ERR x\r\ny").to_bytes(Protocol::Resp2)[..],
            b"-ERR x  y\r\n"
        );
    }
}
