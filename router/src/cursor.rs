//! SCAN through the router walks the shards one after another, each with its own cursor.
//!
//! The router's cursor packs both: `cursor = shard_cursor × shards + shard_index`. Cursor 0 is
//! shard 0 from its start; when a shard's own walk ends (it returns 0) the router moves on to the
//! next shard's start (`cursor = index + 1`), and returns 0 after the last shard. Every shard's walk
//! keeps Redis's guarantee, so the whole walk does too: a key present from start to end is
//! returned at least once. The cursor stays a plain unsigned 64-bit number, as clients expect.

/// Where a router cursor points: a shard (by ring index) and that shard's own cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanPosition {
    pub shard: usize,
    pub cursor: u64,
}

/// Splits a router cursor for a ring of `shards` shards (at least 1).
pub fn decode(cursor: u64, shards: usize) -> ScanPosition {
    let n = shards.max(1) as u64;
    ScanPosition {
        shard: (cursor % n) as usize,
        cursor: cursor / n,
    }
}

/// The router cursor to hand back after shard `shard` answered with its own cursor `next`:
/// `Some(0)` when the walk is complete, `None` if the shard's cursor is too large to pack.
pub fn encode_next(shard: usize, next: u64, shards: usize) -> Option<u64> {
    let n = shards.max(1) as u64;
    if next == 0 {
        let following = shard as u64 + 1;
        return Some(if following >= n { 0 } else { following });
    }
    next.checked_mul(n)?.checked_add(shard as u64)
}

/// Parses a cursor argument as Redis does (an unsigned decimal number).
pub fn parse(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(arg).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for shards in 1..6usize {
            for shard in 0..shards {
                for c in [1u64, 2, 17, 16383, 1 << 40] {
                    let packed = encode_next(shard, c, shards);
                    assert_eq!(
                        packed.map(|p| decode(p, shards)),
                        Some(ScanPosition { shard, cursor: c })
                    );
                }
            }
        }
    }

    #[test]
    fn walk_moves_shard_by_shard_and_ends_at_zero() {
        assert_eq!(
            decode(0, 3),
            ScanPosition {
                shard: 0,
                cursor: 0
            }
        );
        assert_eq!(encode_next(0, 0, 3), Some(1));
        assert_eq!(
            decode(1, 3),
            ScanPosition {
                shard: 1,
                cursor: 0
            }
        );
        assert_eq!(encode_next(1, 0, 3), Some(2));
        assert_eq!(encode_next(2, 0, 3), Some(0));
        assert_eq!(encode_next(0, 0, 1), Some(0));
        assert_eq!(encode_next(0, 5, 1), Some(5));
        assert_eq!(encode_next(2, u64::MAX / 2, 3), None);
    }

    /// A simulated walk over shards whose cursors step through buckets returns every key.
    #[test]
    fn full_walk_visits_every_shard_bucket() {
        let buckets = [3u64, 1, 5];
        let mut seen = Vec::new();
        let mut cursor = 0u64;
        for _ in 0..100 {
            let pos = decode(cursor, buckets.len());
            seen.push((pos.shard, pos.cursor));
            let next = if pos.cursor + 1 >= buckets[pos.shard] {
                0
            } else {
                pos.cursor + 1
            };
            cursor = encode_next(pos.shard, next, buckets.len()).unwrap_or(0);
            if cursor == 0 {
                break;
            }
        }
        let want: Vec<(usize, u64)> = buckets
            .iter()
            .enumerate()
            .flat_map(|(s, &n)| (0..n).map(move |b| (s, b)))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn parse_rules() {
        assert_eq!(parse(b"0"), Some(0));
        assert_eq!(parse(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse(b"18446744073709551616"), None);
        assert_eq!(parse(b"-1"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"1x"), None);
    }
}
