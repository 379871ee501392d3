//! The keys of the requests waiting in a read buffer, found without decoding them: a server
//! pulls their tables into cache for the whole batch before it runs the first request, so a
//! pipeline's lookups wait on memory together instead of one after another.

use crate::num::parse_len;

/// Calls `f` with the second argument (the key, for most commands) of each whole multibulk
/// request at the front of `buf`, at most `max` requests; stops at the first it cannot read
/// whole or that is not multibulk. A hint only: nothing is validated beyond what it reads.
pub fn for_each_key<'a>(buf: &'a [u8], max: usize, mut f: impl FnMut(&'a [u8])) {
    let mut pos = 0;
    for _ in 0..max {
        let Some((count, mut at)) = header(buf, pos, b'*') else {
            return;
        };
        let mut key = None;
        for i in 0..count {
            let Some((len, start)) = header(buf, at, b'$') else {
                return;
            };
            let Some(end) = start.checked_add(len).filter(|&e| e + 2 <= buf.len()) else {
                return;
            };
            if i == 1 {
                key = Some(&buf[start..end]);
            }
            at = end + 2;
        }
        if let Some(k) = key {
            f(k);
        }
        pos = at;
    }
}

/// `<kind><decimal>\r\n` at `pos`: the number and the position after the line.
fn header(buf: &[u8], pos: usize, kind: u8) -> Option<(usize, usize)> {
    if *buf.get(pos)? != kind {
        return None;
    }
    let digits = buf.get(pos + 1..)?;
    // An i64 takes at most 20 characters: a longer line is not a header worth reading.
    let cr = crate::request::find_cr(&digits[..digits.len().min(21)])?;
    let n = usize::try_from(parse_len(&digits[..cr])?).ok()?;
    (*digits.get(cr + 1)? == b'\n').then_some((n, pos + 1 + cr + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(buf: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for_each_key(buf, max, |k| v.push(k.to_vec()));
        v
    }

    #[test]
    fn finds_the_key_of_each_whole_request() {
        let buf = b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$2\r\nk2\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$2\r\nk3\r\n";
        assert_eq!(
            keys(buf, 10),
            [b"k1".to_vec(), b"k2".to_vec(), b"k3".to_vec()]
        );
        assert_eq!(keys(buf, 1), [b"k1".to_vec()]);
    }

    #[test]
    fn stops_at_a_partial_or_inline_request() {
        let whole = b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n";
        for cut in 0..whole.len() {
            let mut buf = whole.to_vec();
            buf.extend_from_slice(&whole[..cut]);
            assert_eq!(keys(&buf, 10), [b"k1".to_vec()], "cut at {cut}");
        }
        assert!(keys(b"GET k1\r\n", 10).is_empty());
        assert!(keys(b"*2\r\n$99999999999\r\nGET\r\n", 10).is_empty());
        assert!(keys(b"*2\r\n$18446744073709551615\r\n", 10).is_empty());
    }
}
