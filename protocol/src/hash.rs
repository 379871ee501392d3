//! The one key hash the router and every node use to place keys on the ring.

use xxhash_rust::xxh3::xxh3_64;

/// The part of a key that is hashed: the content of the first non-empty `{tag}`, otherwise the
/// whole key (Redis Cluster's rule, so `{user1}.name` and `{user1}.mail` live on one shard).
///
/// ```
/// use ringcache_protocol::hash::hash_tag;
/// assert_eq!(hash_tag(b"{user1}.name"), b"user1");
/// assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
/// assert_eq!(hash_tag(b"plain"), b"plain");
/// ```
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = memchr::memchr(b'{', key) {
        if let Some(len) = memchr::memchr(b'}', &key[open + 1..]) {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// 64-bit position of a key on the ring (xxh3 of its hash tag).
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(hash_tag(key))
}

/// 64-bit hash of raw bytes with no tag rule (ring points use it for `"{id}#{i}"`).
pub fn raw_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// Number of hash buckets the nodes index keys by; a bucket is the top bits of the key hash, so
/// every ring arc `(start, end]` covers a contiguous run of buckets.
pub const BUCKET_BITS: u32 = 14;
pub const BUCKETS: usize = 1 << BUCKET_BITS;

/// The index bucket of a key hash.
pub fn bucket_of(hash: u64) -> usize {
    (hash >> (64 - BUCKET_BITS)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Placement is a wire contract between routers and nodes of different builds: these values
    /// must never change (a new hash would need a migration of every key).
    #[test]
    fn hash_values_are_pinned() {
        // Expected values from an independent xxh3 (Python's `xxhash.xxh3_64_intdigest`).
        let pinned: [(&[u8], u64); 4] = [
            (b"", 0x2D06_8005_38D3_94C2),
            (b"user:42", 0x9FC1_E605_FA71_74AA),
            (b"a#0", 0x6C9D_A71F_2832_F85E),
            (b"key:000000012345", 0xF2FC_F373_7471_7A0C),
        ];
        for (bytes, hash) in pinned {
            assert_eq!(
                raw_hash(bytes),
                hash,
                "raw_hash({:?}) = {:#x}",
                String::from_utf8_lossy(bytes),
                raw_hash(bytes)
            );
        }
        assert_eq!(key_hash(b"{user:42}.name"), raw_hash(b"user:42"));
        assert_eq!(bucket_of(raw_hash(b"user:42")), 10224);
    }

    #[test]
    fn tags_colocate() {
        assert_eq!(key_hash(b"{u1}.a"), key_hash(b"{u1}.b"));
        assert_ne!(key_hash(b"u1.a"), key_hash(b"u1.b"));
        assert_eq!(hash_tag(b"{}x"), b"{}x");
        assert_eq!(hash_tag(b"a{b"), b"a{b");
        assert_eq!(hash_tag(b"a{b}{c}"), b"b");
    }

    #[test]
    fn buckets_follow_hash_order() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }
}
