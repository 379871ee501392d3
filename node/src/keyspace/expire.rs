//! Active expiry: keys past their deadline are deleted in the background, not only when read
//! (Redis's active expire cycle), so keys nobody reads again do not pile up.
//!
//! Each step walks buckets from where the last one stopped, skipping buckets without keys that
//! have a deadline, and deletes what has expired, within a bound of buckets examined per step.

use std::sync::atomic::Ordering::Relaxed;

use ringcache_protocol::hash::BUCKETS;

use super::{Bucket, Keyspace, Place};

impl Keyspace {
    /// Deletes expired keys from up to `buckets` buckets that hold keys with a deadline,
    /// calling `expired` with each deleted key and its bucket while the bucket is still locked
    /// (the caller propagates the delete there, ordered with the writes of that key). Returns
    /// the keys with a deadline examined and the keys deleted.
    pub fn expire_step(
        &self,
        now: i64,
        buckets: usize,
        mut expired: impl FnMut(&Bucket, &[u8]),
    ) -> (usize, usize) {
        if self.volatile() == 0 {
            return (0, 0);
        }
        let mut checked = 0;
        let mut deleted = 0;
        let mut examined = 0;
        let mut visited = 0;
        let mut b = self.expire_cursor.load(Relaxed) % BUCKETS;
        // Every bucket at most once per step; those without deadlines cost one counter read.
        while examined < buckets && visited < BUCKETS {
            visited += 1;
            let mut g = self.lock_bucket(b);
            if g.volatile > 0 {
                examined += 1;
                checked += g.volatile as usize;
                let dead: Vec<Vec<u8>> = g
                    .iter()
                    .filter(|e| e.is_expired(now))
                    .map(|e| e.key().to_vec())
                    .collect();
                for key in dead {
                    if self.counted_take(&mut g, Place::of(&key), &key).is_some() {
                        deleted += 1;
                        expired(&g, &key);
                    }
                }
                g.maybe_shrink();
            }
            drop(g);
            b = (b + 1) % BUCKETS;
        }
        self.expire_cursor.store(b, Relaxed);
        self.stats.expired.fetch_add(deleted as u64, Relaxed);
        (checked, deleted)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Db, Expiry};
    use super::*;

    #[test]
    fn expire_step_deletes_only_what_expired() {
        let ks = Keyspace::new();
        for i in 0..200 {
            let key = format!("k{i}");
            let mut db = Db::for_keys(&ks, [key.as_bytes()], 0, Expiry::Delete);
            let deadline = if i % 2 == 0 { Some(100) } else { None };
            db.set_str(key.as_bytes(), b"v", deadline);
        }
        assert_eq!(ks.volatile(), 100);
        let mut seen = Vec::new();
        let (checked, n) = ks.expire_step(1000, BUCKETS, |_, k| seen.push(k.to_vec()));
        assert_eq!((checked, n), (100, 100));
        assert_eq!(seen.len(), 100);
        assert_eq!((ks.len(), ks.volatile()), (100, 0));
        assert_eq!(ks.expire_step(1000, BUCKETS, |_, _| {}), (0, 0));
    }
}
