//! Finding where one RESP2/RESP3 reply ends, without building it.
//!
//! The router forwards most upstream replies byte for byte, so decoding them into values (as
//! `ClientCodec` does) would be wasted work on the hot path. [`FrameScanner`] only measures a
//! frame: it counts the frames still owed (an aggregate of `n` adds `n`, a map `2n`), so nesting
//! needs no stack, and it resumes where it stopped when a large reply arrives in pieces. Merges
//! (MGET, DEL sums, SCAN) then slice the few replies they need with [`elements`] and [`integer`].

use std::ops::Range;

use ringcache_protocol::num::parse_i64;

/// A reply the scanner cannot frame: the upstream is not speaking RESP (or speaks a streamed
/// RESP3 form Redis never sends), so the connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FrameError(pub &'static str);

/// Longest header line accepted (type byte, length, CRLF); real ones are a few bytes.
const MAX_LINE: usize = 64 * 1024;
/// Largest aggregate length or bulk length accepted from an upstream.
const MAX_LEN: i64 = 1 << 32;

/// Resumable measurement of the next reply in a buffer.
#[derive(Debug, Default, Clone)]
pub struct FrameScanner {
    /// Offset (from the buffer start) scanned so far for the frame in progress.
    pos: usize,
    /// Frames still owed by the frame in progress (0 = none started).
    owed: u64,
    /// The frame in progress is an out-of-band push (`>`), not a reply.
    push: bool,
}

/// A complete top-level frame at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub len: usize,
    /// RESP3 push (`>`): not the reply to any request.
    pub push: bool,
}

impl FrameScanner {
    /// Measures the frame at the start of `buf`: `Ok(None)` until it is complete. Call again with
    /// the same buffer (grown) to resume; after `Some`, the caller removes `len` bytes from the
    /// front and the scanner starts afresh.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<Frame>, FrameError> {
        if self.owed == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            self.pos = 0;
            self.owed = 1;
            self.push = buf[0] == b'>';
        }
        while self.owed > 0 {
            let Some(step) = header(buf, self.pos)? else {
                return Ok(None);
            };
            let (end, adds) = match step {
                Header::Line { end } => (end, 0),
                Header::Bulk { end, len } => {
                    let body_end = end + len + 2;
                    if buf.len() < body_end {
                        return Ok(None);
                    }
                    if &buf[body_end - 2..body_end] != b"\r\n" {
                        return Err(FrameError("bulk string not followed by CRLF"));
                    }
                    (body_end, 0)
                }
                Header::Aggregate { end, count } => (end, count),
            };
            self.pos = end;
            // checked: a hostile count could otherwise wrap the frames owed
            self.owed = (self.owed - 1)
                .checked_add(adds)
                .ok_or(FrameError("aggregate too large"))?;
        }
        let frame = Frame {
            len: self.pos,
            push: self.push,
        };
        self.pos = 0;
        Ok(Some(frame))
    }
}

enum Header {
    /// A one-line frame ending (CRLF included) at `end`.
    Line { end: usize },
    /// A length-prefixed body of `len` bytes starting at `end`.
    Bulk { end: usize, len: usize },
    /// An aggregate owing `count` more frames, its header ending at `end`.
    Aggregate { end: usize, count: u64 },
}

/// Reads the header line at `pos`.
fn header(buf: &[u8], pos: usize) -> Result<Option<Header>, FrameError> {
    if pos >= buf.len() {
        return Ok(None);
    }
    let rest = &buf[pos..];
    let Some(cr) = memchr(b'\r', rest, MAX_LINE) else {
        if rest.len() > MAX_LINE {
            return Err(FrameError("header line too long"));
        }
        return Ok(None);
    };
    if cr + 1 >= rest.len() {
        return Ok(None);
    }
    if rest[cr + 1] != b'\n' {
        return Err(FrameError("header line not ended by CRLF"));
    }
    let end = pos + cr + 2;
    let body = &rest[1..cr];
    let len = || -> Result<i64, FrameError> {
        parse_i64(body)
            .filter(|&n| (-1..=MAX_LEN).contains(&n))
            .ok_or(FrameError("invalid length"))
    };
    Ok(Some(match rest[0] {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Header::Line { end },
        b'$' | b'!' | b'=' => match len()? {
            -1 => Header::Line { end },
            n => Header::Bulk {
                end,
                len: n as usize,
            },
        },
        b'*' | b'~' | b'>' => match len()? {
            -1 => Header::Line { end },
            n => Header::Aggregate {
                end,
                count: n as u64,
            },
        },
        // an attribute (`|`) is followed by the reply it describes: one more frame owed
        b'%' | b'|' => match len()? {
            -1 => Header::Line { end },
            n => Header::Aggregate {
                end,
                count: n as u64 * 2 + u64::from(rest[0] == b'|'),
            },
        },
        _ => return Err(FrameError("unknown reply type")),
    }))
}

fn memchr(needle: u8, hay: &[u8], limit: usize) -> Option<usize> {
    let hay = &hay[..hay.len().min(limit + 2)];
    hay.iter().position(|&b| b == needle)
}

/// Length of the complete frame at the start of `buf`, or an error if it is incomplete or invalid.
pub fn frame_len(buf: &[u8]) -> Result<usize, FrameError> {
    match FrameScanner::default().next(buf)? {
        Some(f) => Ok(f.len),
        None => Err(FrameError("incomplete reply")),
    }
}

/// The error text of an error reply (`-ERR x` or RESP3 `!`), without the type byte and CRLF.
pub fn error_text(raw: &[u8]) -> Option<&[u8]> {
    match raw.first()? {
        b'-' => Some(raw.get(1..raw.len().saturating_sub(2))?),
        b'!' => {
            let eol = raw.iter().position(|&b| b == b'\r')?;
            raw.get(eol + 2..raw.len().saturating_sub(2))
        }
        _ => None,
    }
}

pub fn is_error(raw: &[u8]) -> bool {
    matches!(raw.first(), Some(b'-' | b'!'))
}

/// Whether the reply is a null (`$-1`, `*-1`, `_`).
pub fn is_null(raw: &[u8]) -> bool {
    raw == b"$-1\r\n" || raw == b"*-1\r\n" || raw == b"_\r\n"
}

/// The value of an integer reply `:n`.
pub fn integer(raw: &[u8]) -> Option<i64> {
    let body = raw.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    parse_i64(body)
}

/// The payload of a bulk (`$`) or verbatim (`=`, without its `txt:` format) string reply.
pub fn bulk_payload(raw: &[u8]) -> Option<&[u8]> {
    let kind = *raw.first()?;
    if kind != b'$' && kind != b'=' {
        return None;
    }
    let eol = raw.iter().position(|&b| b == b'\r')?;
    let body = raw.get(eol + 2..raw.len().checked_sub(2)?)?;
    if kind == b'=' {
        return body.get(4..);
    }
    Some(body)
}

/// The byte ranges of the elements of an array (or set) reply, in order; `None` if `raw` is not
/// an aggregate of that kind or is malformed.
pub fn elements(raw: &[u8]) -> Option<Vec<Range<usize>>> {
    if !matches!(raw.first(), Some(b'*' | b'~')) {
        return None;
    }
    aggregate(raw).map(|(_, els)| els)
}

/// The length of an array, set or map reply's header and the byte ranges of its elements (a
/// map's keys and values in turn; none for a null array); `None` for anything else.
pub fn aggregate(raw: &[u8]) -> Option<(usize, Vec<Range<usize>>)> {
    let kind = *raw.first()?;
    if !matches!(kind, b'*' | b'~' | b'%') {
        return None;
    }
    let eol = raw.iter().position(|&b| b == b'\r')?;
    let head = eol + 2;
    let count = parse_i64(&raw[1..eol])?;
    if count < 0 {
        return Some((head, Vec::new()));
    }
    let count = (count as usize).saturating_mul(if kind == b'%' { 2 } else { 1 });
    let mut out = Vec::with_capacity(count.min(1 << 16));
    let mut pos = head;
    for _ in 0..count {
        let len = frame_len(raw.get(pos..)?).ok()?;
        out.push(pos..pos + len);
        pos += len;
    }
    (pos == raw.len()).then_some((head, out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use ringcache_protocol::codec::ClientCodec;
    use ringcache_protocol::Protocol;
    use tokio_util::codec::Decoder;

    const SAMPLES: &[&[u8]] = &[
        b"+OK\r\n",
        b"-ERR no\r\n",
        b":42\r\n",
        b"$3\r\nabc\r\n",
        b"$0\r\n\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n",
        b"$5\r\na\r\nbc\r\n",
    ];

    const SAMPLES3: &[&[u8]] = &[
        b"_\r\n",
        b",1.5\r\n",
        b"#t\r\n",
        b"(12345678901234567890\r\n",
        b"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n%1\r\n+x\r\n~1\r\n:2\r\n",
        b"~2\r\n$1\r\na\r\n$1\r\nb\r\n",
        b"=8\r\ntxt:abcd\r\n",
        b"!5\r\nERR x\r\n",
    ];

    #[test]
    fn measures_every_sample_like_client_codec() {
        for (samples, proto) in [(SAMPLES, Protocol::Resp2), (SAMPLES3, Protocol::Resp3)] {
            for s in samples {
                assert_eq!(
                    frame_len(s).unwrap(),
                    s.len(),
                    "{:?}",
                    String::from_utf8_lossy(s)
                );
                let mut buf = BytesMut::from(*s);
                let decoded = ClientCodec::new(proto).decode(&mut buf).unwrap().unwrap();
                assert_eq!(decoded.raw.len(), s.len());
            }
        }
    }

    #[test]
    fn resumes_at_every_split_point() {
        let mut all = Vec::new();
        for s in SAMPLES.iter().chain(SAMPLES3) {
            all.extend_from_slice(s);
        }
        for cut in 0..all.len() {
            let mut scanner = FrameScanner::default();
            let mut buf = all[..cut].to_vec();
            let mut got = Vec::new();
            let mut fed = cut;
            loop {
                match scanner.next(&buf).unwrap() {
                    Some(f) => {
                        got.push(buf[..f.len].to_vec());
                        buf.drain(..f.len);
                    }
                    None if fed < all.len() => {
                        buf.push(all[fed]);
                        fed += 1;
                    }
                    None => break,
                }
            }
            let want: Vec<Vec<u8>> = SAMPLES.iter().chain(SAMPLES3).map(|s| s.to_vec()).collect();
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn pushes_and_attributes() {
        let mut s = FrameScanner::default();
        let push = b">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n";
        assert_eq!(
            s.next(push).unwrap(),
            Some(Frame {
                len: push.len(),
                push: true
            })
        );
        let attr = b"|1\r\n+key\r\n:1\r\n$1\r\nv\r\n";
        assert_eq!(frame_len(attr).unwrap(), attr.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        assert!(frame_len(b"hello\r\n").is_err());
        assert!(frame_len(b"$abc\r\n").is_err());
        assert!(frame_len(b"*-5\r\n").is_err());
        assert!(frame_len(b"$1\r\nab\r\n").is_err());
        assert!(frame_len(b"*99999999999\r\n").is_err());
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(FrameScanner::default().next(&long).is_err());
        // a deeply nested reply needs no stack
        let mut deep = Vec::new();
        for _ in 0..100_000 {
            deep.extend_from_slice(b"*1\r\n");
        }
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(frame_len(&deep).unwrap(), deep.len());
    }

    #[test]
    fn helpers() {
        assert_eq!(integer(b":-7\r\n"), Some(-7));
        assert_eq!(integer(b"+7\r\n"), None);
        assert_eq!(error_text(b"-ERR x\r\n"), Some(&b"ERR x"[..]));
        assert_eq!(error_text(b"!5\r\nERR x\r\n"), Some(&b"ERR x"[..]));
        assert!(is_null(b"_\r\n") && is_null(b"$-1\r\n") && !is_null(b"$0\r\n\r\n"));
        assert_eq!(bulk_payload(b"$3\r\nabc\r\n"), Some(&b"abc"[..]));
        assert_eq!(bulk_payload(b"=8\r\ntxt:abcd\r\n"), Some(&b"abcd"[..]));
        let raw = b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:1\r\n";
        let els = elements(raw).unwrap();
        assert_eq!(els.len(), 3);
        assert_eq!(&raw[els[1].clone()], b"$-1\r\n");
        assert_eq!(&raw[els[2].clone()], b"*1\r\n:1\r\n");
        assert_eq!(elements(b"*2\r\n:1\r\n"), None);
        assert_eq!(elements(b":1\r\n"), None);
    }
}
