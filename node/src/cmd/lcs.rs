//! LCS: the longest common subsequence of two strings, by the classic dynamic-programming table
//! (as Redis computes it, so ties resolve the same way), with its length or the matching ranges.

use bytes::Bytes;
use ringcache_protocol::Reply;

/// Bound on the transient table, as Redis bounds it by `proto-max-bulk-len` (512 MiB).
const MAX_TABLE_BYTES: u64 = 512 * 1024 * 1024;

/// The LCS reply for strings `x` and `y` with LCS's options.
pub fn reply(x: &[u8], y: &[u8], len_only: bool, idx: bool, with_len: bool, min: usize) -> Reply {
    let (n, m) = (x.len(), y.len());
    let cells = (n as u64 + 1) * (m as u64 + 1);
    if cells * 4 > MAX_TABLE_BYTES {
        return Reply::error(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
    }
    let w = m + 1;
    // table[i * w + j]: LCS length of x[..i] and y[..j].
    let mut table = vec![0u32; (n + 1) * w];
    for i in 1..=n {
        for j in 1..=m {
            table[i * w + j] = if x[i - 1] == y[j - 1] {
                table[(i - 1) * w + j - 1] + 1
            } else {
                table[(i - 1) * w + j].max(table[i * w + j - 1])
            };
        }
    }
    let total = table[n * w + m];
    if len_only {
        return Reply::Int(i64::from(total));
    }
    // Walk back from the end, collecting the common bytes and the contiguous ranges.
    let mut common = vec![0u8; total as usize];
    let mut left = total as usize;
    let mut matches = Vec::new();
    // The range being grown backwards: (x start, x end, y start, y end).
    let mut range: Option<(usize, usize, usize, usize)> = None;
    let (mut i, mut j) = (n, m);
    while i > 0 && j > 0 {
        let mut emit = false;
        if x[i - 1] == y[j - 1] {
            common[left - 1] = x[i - 1];
            range = match range {
                None => Some((i - 1, i - 1, j - 1, j - 1)),
                Some((xs, xe, ys, ye)) if xs == i && ys == j => Some((xs - 1, xe, ys - 1, ye)),
                Some(r) => {
                    emit = true;
                    Some(r)
                }
            };
            if let Some((xs, _, ys, _)) = range {
                if xs == 0 || ys == 0 {
                    emit = true;
                }
            }
            left -= 1;
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * w + j] > table[i * w + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = range.is_some();
        }
        if emit {
            if let Some((xs, xe, ys, ye)) = range.take() {
                let len = xe - xs + 1;
                if min == 0 || len >= min {
                    let mut entry = vec![
                        Reply::Array(vec![Reply::Int(xs as i64), Reply::Int(xe as i64)]),
                        Reply::Array(vec![Reply::Int(ys as i64), Reply::Int(ye as i64)]),
                    ];
                    if with_len {
                        entry.push(Reply::Int(len as i64));
                    }
                    matches.push(Reply::Array(entry));
                }
            }
        }
    }
    if idx {
        return Reply::Map(vec![
            (Reply::bulk_str("matches"), Reply::Array(matches)),
            (Reply::bulk_str("len"), Reply::Int(i64::from(total))),
        ]);
    }
    Reply::Bulk(Bytes::from(common))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_string_and_length() {
        let (a, b) = (b"ohmytext", b"mynewtext");
        assert_eq!(
            reply(a, b, false, false, false, 0),
            Reply::Bulk(Bytes::from_static(b"mytext"))
        );
        assert_eq!(reply(a, b, true, false, false, 0), Reply::Int(6));
        assert_eq!(
            reply(b"", b"abc", false, false, false, 0),
            Reply::Bulk(Bytes::new())
        );
    }

    #[test]
    fn lcs_ranges_from_the_end() {
        let r = reply(b"ohmytext", b"mynewtext", false, true, false, 0);
        let Reply::Map(m) = r else { panic!("not a map") };
        let Reply::Array(matches) = &m[0].1 else { panic!("no matches") };
        // "text" at 4..7 / 5..8 first, then "my" at 2..3 / 0..1.
        assert_eq!(
            matches[0],
            Reply::Array(vec![
                Reply::Array(vec![Reply::Int(4), Reply::Int(7)]),
                Reply::Array(vec![Reply::Int(5), Reply::Int(8)]),
            ])
        );
        assert_eq!(
            matches[1],
            Reply::Array(vec![
                Reply::Array(vec![Reply::Int(2), Reply::Int(3)]),
                Reply::Array(vec![Reply::Int(0), Reply::Int(1)]),
            ])
        );
        assert_eq!(m[1].1, Reply::Int(6));
    }
}
