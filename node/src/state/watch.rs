//! WATCH: which clients watch which keys, and the flag that fails a client's EXEC once one of
//! them changed.
//!
//! A writer marks watchers while it still holds the locks of the keys it changed, and EXEC
//! checks its flag while holding the locks of the keys it watches, so a change is either seen
//! by EXEC or made after the transaction ran.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::keyspace::lock;

/// One client's "a watched key changed" flag.
pub type WatchFlag = Arc<AtomicBool>;

#[derive(Default)]
pub struct Watches {
    by_key: Mutex<HashMap<Bytes, Vec<WatchFlag>>>,
}

impl Watches {
    /// Registers `flag` on `key` (the caller holds the key's lock and counts the keyspace's
    /// interest up).
    pub fn watch(&self, key: &[u8], flag: &WatchFlag) {
        let mut m = lock(&self.by_key);
        let list = m.entry(Bytes::copy_from_slice(key)).or_default();
        if !list.iter().any(|f| Arc::ptr_eq(f, flag)) {
            list.push(flag.clone());
        }
    }

    /// Removes `flag` from `keys`.
    pub fn unwatch(&self, keys: &[Bytes], flag: &WatchFlag) {
        let mut m = lock(&self.by_key);
        for k in keys {
            if let Some(list) = m.get_mut(k) {
                list.retain(|f| !Arc::ptr_eq(f, flag));
                if list.is_empty() {
                    m.remove(k);
                }
            }
        }
    }

    /// Marks every client watching one of `keys`.
    pub fn touch<K: AsRef<[u8]>>(&self, keys: &[K]) {
        let m = lock(&self.by_key);
        if m.is_empty() {
            return;
        }
        for k in keys {
            if let Some(list) = m.get(k.as_ref()) {
                for f in list {
                    f.store(true, SeqCst);
                }
            }
        }
    }

    /// The watched keys, for FLUSHALL, which touches those that exist.
    pub fn keys(&self) -> Vec<Bytes> {
        lock(&self.by_key).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touch_flags_only_watchers_of_the_key() {
        let w = Watches::default();
        let (a, b) = (WatchFlag::default(), WatchFlag::default());
        w.watch(b"x", &a);
        w.watch(b"y", &b);
        w.touch(&[b"x"]);
        assert!(a.load(SeqCst));
        assert!(!b.load(SeqCst));
        w.unwatch(&[Bytes::from_static(b"y")], &b);
        w.touch(&[b"y"]);
        assert!(!b.load(SeqCst));
        assert_eq!(w.keys(), vec![Bytes::from_static(b"x")]);
    }
}
