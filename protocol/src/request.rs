//! Client requests: RESP multibulk and inline commands, decoded incrementally with Redis's limits.
//!
//! Incomplete input is not an error: `decode` returns `Ok(None)` until a whole request is buffered,
//! remembers how far it got (so a large request arriving slowly is not rescanned), validates every
//! header before trusting it, and consumes exactly one request.

use bytes::{Buf, Bytes, BytesMut};

use crate::num::parse_len;

/// Redis's defaults: `proto-max-bulk-len` 512 MB, multibulk count up to `INT_MAX`, 64 KB inline
/// requests and header lines, and much tighter caps before a required AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bulk_len: i64,
    pub max_multibulk_len: i64,
    pub max_inline_len: usize,
    pub unauth_max_multibulk_len: i64,
    pub unauth_max_bulk_len: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: i32::MAX as i64,
            max_inline_len: 64 * 1024,
            unauth_max_multibulk_len: 10,
            unauth_max_bulk_len: 16384,
        }
    }
}

/// Arguments preallocated before their bytes arrive (Redis allocates at most 1024 argv slots).
const MAX_PREALLOC_ARGS: usize = 1024;

/// A protocol violation; the connection answers `-ERR Protocol error: ...` and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: {0}")]
    Invalid(&'static str),
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
}

impl ProtocolError {
    /// The error reply Redis sends before closing the connection.
    pub fn reply_text(&self) -> String {
        format!("ERR {self}")
    }
}

/// One decoded request: its arguments (`args[0]` is the command name) and the exact RESP bytes of
/// the request, which a proxy forwards without re-encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub args: Vec<Bytes>,
    pub raw: Bytes,
}

impl Request {
    /// Builds a request from arguments, encoding its RESP form.
    pub fn from_args<I, A>(args: I) -> Request
    where
        I: IntoIterator<Item = A>,
        A: Into<Bytes>,
    {
        let args: Vec<Bytes> = args.into_iter().map(Into::into).collect();
        let mut raw = BytesMut::new();
        crate::resp::encode_request(&mut raw, args.iter());
        Request {
            args,
            raw: raw.freeze(),
        }
    }

    /// The command name as sent (any case).
    pub fn name(&self) -> &[u8] {
        self.args.first().map(|a| &a[..]).unwrap_or(b"")
    }
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    /// Inside a multibulk request: `pos` is the scan offset in the buffer, `remaining` the
    /// arguments still to read, `bulk` the length of the next argument once its header is read.
    Multibulk {
        pos: usize,
        remaining: usize,
        bulk: Option<usize>,
        ranges: Vec<(usize, usize)>,
    },
}

/// Incremental request decoder with Redis's limits.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    pub limits: Limits,
    /// False while a password is required and not yet given: the tighter pre-AUTH caps apply.
    pub authenticated: bool,
    state: State,
    /// Argument ranges of the request being read, reused across requests.
    ranges: Vec<(usize, usize)>,
}

impl RequestDecoder {
    pub fn new(limits: Limits, authenticated: bool) -> Self {
        RequestDecoder {
            limits,
            authenticated,
            state: State::Idle,
            ranges: Vec::new(),
        }
    }

    /// Decodes the next whole request from `buf`, consuming exactly its bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        let mut args = Vec::new();
        Ok(self
            .decode_into(buf, &mut args)?
            .map(|raw| Request { args, raw }))
    }

    /// Like [`decode`](Self::decode), but fills `args` (cleared first) and returns the raw
    /// request bytes, so a server loop reuses one argument vector for every request.
    pub fn decode_into(
        &mut self,
        buf: &mut BytesMut,
        args: &mut Vec<Bytes>,
    ) -> Result<Option<Bytes>, ProtocolError> {
        loop {
            if let State::Idle = self.state {
                if buf.is_empty() {
                    return Ok(None);
                }
                if buf[0] != b'*' {
                    match self.decode_inline(buf)? {
                        Inline::Incomplete => return Ok(None),
                        Inline::Empty => continue,
                        Inline::Request(r) => {
                            *args = r.args;
                            return Ok(Some(r.raw));
                        }
                    }
                }
                let Some(eol) = find_header_end(buf, 0, self.limits.max_inline_len)
                    .map_err(|_| ProtocolError::Invalid("too big mbulk count string"))?
                else {
                    return Ok(None);
                };
                let count = parse_len(&buf[1..eol])
                    .filter(|&n| n <= self.limits.max_multibulk_len)
                    .ok_or(ProtocolError::Invalid("invalid multibulk length"))?;
                if count > self.limits.unauth_max_multibulk_len && !self.authenticated {
                    return Err(ProtocolError::Invalid("unauthenticated multibulk length"));
                }
                if count <= 0 {
                    // `*0` and negative counts are skipped, as Redis does.
                    buf.advance(eol + 2);
                    continue;
                }
                let count = count as usize;
                self.state = State::Multibulk {
                    pos: eol + 2,
                    remaining: count,
                    bulk: None,
                    ranges: std::mem::take(&mut self.ranges),
                };
                if let State::Multibulk { ranges, .. } = &mut self.state {
                    ranges.clear();
                    ranges.reserve(count.min(MAX_PREALLOC_ARGS));
                }
            }
            return self.continue_multibulk(buf, args);
        }
    }

    fn continue_multibulk(
        &mut self,
        buf: &mut BytesMut,
        out: &mut Vec<Bytes>,
    ) -> Result<Option<Bytes>, ProtocolError> {
        let State::Multibulk {
            pos,
            remaining,
            bulk,
            ranges: args,
        } = &mut self.state
        else {
            return Ok(None);
        };
        while *remaining > 0 {
            match *bulk {
                Some(len) => {
                    if buf.len() < *pos + len + 2 {
                        // Grow once for a large argument instead of doubling repeatedly.
                        if len >= 32 * 1024 {
                            buf.reserve(*pos + len + 2 - buf.len());
                        }
                        return Ok(None);
                    }
                    args.push((*pos, *pos + len));
                    *pos += len + 2;
                    *remaining -= 1;
                    *bulk = None;
                }
                None => {
                    let Some(eol) = find_header_end(buf, *pos, self.limits.max_inline_len)
                        .map_err(|_| ProtocolError::Invalid("too big bulk count string"))?
                    else {
                        return Ok(None);
                    };
                    if buf[*pos] != b'$' {
                        return Err(ProtocolError::ExpectedBulk(buf[*pos] as char));
                    }
                    let len = parse_len(&buf[*pos + 1..eol])
                        .filter(|&n| n >= 0 && n <= self.limits.max_bulk_len)
                        .ok_or(ProtocolError::Invalid("invalid bulk length"))?;
                    if len > self.limits.unauth_max_bulk_len && !self.authenticated {
                        return Err(ProtocolError::Invalid("unauthenticated bulk length"));
                    }
                    *pos = eol + 2;
                    *bulk = Some(len as usize);
                }
            }
        }
        let raw = buf.split_to(*pos).freeze();
        out.clear();
        out.extend(args.iter().map(|&(s, e)| raw.slice(s..e)));
        if let State::Multibulk { ranges, .. } = std::mem::take(&mut self.state) {
            // Keep the allocation for the next request.
            self.ranges = ranges;
        }
        Ok(Some(raw))
    }

    fn decode_inline(&mut self, buf: &mut BytesMut) -> Result<Inline, ProtocolError> {
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::Invalid("too big inline request"));
            }
            return Ok(Inline::Incomplete);
        };
        if nl > self.limits.max_inline_len {
            return Err(ProtocolError::Invalid("too big inline request"));
        }
        let line = buf.split_to(nl + 1);
        let mut text = &line[..nl];
        if text.last() == Some(&b'\r') {
            text = &text[..text.len() - 1];
        }
        let args =
            split_args(text).ok_or(ProtocolError::Invalid("unbalanced quotes in request"))?;
        if args.is_empty() {
            return Ok(Inline::Empty);
        }
        if args.len() as i64 > self.limits.unauth_max_multibulk_len && !self.authenticated {
            return Err(ProtocolError::Invalid("unauthenticated multibulk length"));
        }
        Ok(Inline::Request(Request::from_args(args)))
    }
}

enum Inline {
    Incomplete,
    Empty,
    Request(Request),
}

/// The first `\r` in `buf`. RESP headers (`*2`, `$3`) are a few bytes, where a plain loop beats
/// memchr's SIMD setup (memchr was 7% of a node's instructions under pipelined GETs); longer
/// runs fall back to it.
#[inline]
pub(crate) fn find_cr(buf: &[u8]) -> Option<usize> {
    const SHORT: usize = 16;
    let head = buf.len().min(SHORT);
    if let Some(i) = buf[..head].iter().position(|&c| c == b'\r') {
        return Some(i);
    }
    if buf.len() <= SHORT {
        return None;
    }
    memchr::memchr(b'\r', &buf[SHORT..]).map(|i| i + SHORT)
}

/// Finds the `\r\n` ending a header line starting at `start`; `Err` if no line end is within
/// `max` bytes (the header can never be valid), `Ok(None)` if more input is needed.
fn find_header_end(buf: &[u8], start: usize, max: usize) -> Result<Option<usize>, ()> {
    match find_cr(&buf[start..]) {
        // A header longer than the limit is refused however the bytes arrived.
        Some(off) if off > max => Err(()),
        Some(off) => {
            let eol = start + off;
            if eol + 1 >= buf.len() {
                Ok(None)
            } else {
                Ok(Some(eol))
            }
        }
        None if buf.len() - start > max => Err(()),
        None => Ok(None),
    }
}

/// Splits an inline command line like Redis's `sdssplitargs`: spaces separate, `"..."` takes
/// `\n \r \t \b \a \\ \" \xHH` escapes, `'...'` takes `\'`; a closing quote must be followed by a
/// space or the end. `None` on unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        // Redis splits a C string: a NUL ends the line.
        if i >= n || line[i] == 0 {
            return Some(out);
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit()
                {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    // The closing quote ends the argument.
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(Bytes::from(cur));
    }
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn find_cr_before_at_and_past_the_short_scan() {
        for at in [0usize, 1, 15, 16, 17, 40] {
            let mut buf = vec![b'x'; at];
            buf.extend_from_slice(b"\r\nrest\r");
            assert_eq!(find_cr(&buf), Some(at), "\\r at {at}");
            assert_eq!(find_cr(&buf[..at]), None, "no \\r in {at} bytes");
        }
        assert_eq!(find_cr(b""), None);
    }

    fn dec() -> RequestDecoder {
        RequestDecoder::new(Limits::default(), true)
    }

    fn args(r: &Request) -> Vec<&[u8]> {
        r.args.iter().map(|a| &a[..]).collect()
    }

    #[test]
    fn multibulk_and_pipelining() {
        let mut d = dec();
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n"[..]);
        let r = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(args(&r), vec![&b"GET"[..], b"k"]);
        assert_eq!(&r.raw[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        let r = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(args(&r), vec![&b"PING"[..]]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn every_split_point_gives_the_same_request() {
        let whole = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\nPING\r\n";
        for cut in 0..whole.len() {
            let mut d = dec();
            let mut buf = BytesMut::from(&whole[..cut]);
            let first = d.decode(&mut buf).unwrap();
            buf.extend_from_slice(&whole[cut..]);
            let r = match first {
                Some(r) => r,
                None => d.decode(&mut buf).unwrap().unwrap(),
            };
            assert_eq!(args(&r), vec![&b"SET"[..], b"key", b"va\r\nl"]);
            let r = d.decode(&mut buf).unwrap().unwrap();
            assert_eq!(args(&r), vec![&b"PING"[..]]);
        }
    }

    #[test]
    fn limits_and_garbage() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"*3000000000\r\n",
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*1\r\n$2000000000\r\n",
                "Protocol error: invalid bulk length",
            ),
            (b"*1\r\n$blabla\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\nfoo\r\n", "Protocol error: expected '$', got 'f'"),
            (b"*abc\r\n", "Protocol error: invalid multibulk length"),
            (
                b"set \"a b\"c\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"set 'a\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
        ];
        for (input, want) in cases {
            let mut buf = BytesMut::from(*input);
            let err = dec().decode(&mut buf).unwrap_err();
            assert_eq!(
                err.to_string(),
                *want,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let mut buf = BytesMut::from(&b"*-10\r\n*1\r\n$4\r\nPING\r\n"[..]);
        assert_eq!(
            args(&dec().decode(&mut buf).unwrap().unwrap()),
            vec![&b"PING"[..]]
        );
    }

    #[test]
    fn header_without_line_end_is_bounded() {
        let mut buf = BytesMut::from(&vec![b'*'; 70 * 1024][..]);
        assert!(dec().decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&vec![b'a'; 70 * 1024][..]);
        assert_eq!(
            dec().decode(&mut buf).unwrap_err().to_string(),
            "Protocol error: too big inline request"
        );
    }

    #[test]
    fn unauthenticated_caps() {
        let mut d = RequestDecoder::new(Limits::default(), false);
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        assert!(d.decode(&mut buf).is_err());
        let mut d = RequestDecoder::new(Limits::default(), false);
        let mut buf = BytesMut::from(&b"*1\r\n$20000\r\n"[..]);
        assert_eq!(
            d.decode(&mut buf).unwrap_err().to_string(),
            "Protocol error: unauthenticated bulk length"
        );
    }

    #[test]
    fn inline_commands() {
        let mut buf = BytesMut::from(&b"set k \"a\\x41\\n\" 'it\\'s'\r\n\r\nPING\n"[..]);
        let mut d = dec();
        let r = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(args(&r), vec![&b"set"[..], b"k", b"aA\n", b"it's"]);
        assert_eq!(&r.raw[..4], b"*4\r\n");
        let r = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(args(&r), vec![&b"PING"[..]]);
    }

    #[test]
    fn nul_ends_an_inline_line() {
        assert_eq!(split_args(b"\0 *x").unwrap(), Vec::<Bytes>::new());
        assert_eq!(
            split_args(b"get\0k").unwrap(),
            vec![Bytes::from_static(b"get")]
        );
    }
}
