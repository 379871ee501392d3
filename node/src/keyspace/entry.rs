//! One key of the keyspace: its name, metadata and, for strings, its value, in one allocation.
//!
//! `head` is `[flags][access: 3 bytes][deadline: 8 bytes, only with F_DEADLINE][key length]
//! [key][string value]`. A key without a deadline pays nothing for deadlines; a string costs one
//! allocation with its key. Other types live in `obj` (a list, hash, set or sorted set), and their
//! `head` ends after the key.

use crate::types::Value;

/// The entry has a deadline (8 bytes after the access field).
const F_DEADLINE: u8 = 1;
/// A string grown in place (APPEND, SETRANGE, SETBIT): Redis reports such strings as `raw`.
const F_RAW: u8 = 2;
/// A string stored as given, never as an integer (INCRBYFLOAT's result): `embstr` or `raw`.
const F_PLAIN: u8 = 4;

const ACCESS_AT: usize = 1;
const DEADLINE_AT: usize = 4;
/// Key lengths up to this fit in one byte; longer ones take `0xFF` and four more bytes.
const SHORT_KEY: usize = 254;

/// A string value, or the object holding any other type.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Str(&'a [u8]),
    Obj(&'a Value),
}

impl ValueRef<'_> {
    /// The name `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            ValueRef::Str(_) => "string",
            ValueRef::Obj(v) => v.type_name(),
        }
    }
}

#[derive(Debug)]
pub struct Entry {
    head: Box<[u8]>,
    obj: Option<Box<Value>>,
}

fn build(flags: u8, access: u32, deadline: Option<i64>, key: &[u8], value: &[u8]) -> Box<[u8]> {
    let klen = if key.len() <= SHORT_KEY { 1 } else { 5 };
    let dlen = if deadline.is_some() { 8 } else { 0 };
    let mut h = Vec::with_capacity(4 + dlen + klen + key.len() + value.len());
    let flags = (flags & !F_DEADLINE) | if deadline.is_some() { F_DEADLINE } else { 0 };
    h.push(flags);
    h.extend_from_slice(&access.to_le_bytes()[..3]);
    if let Some(t) = deadline {
        h.extend_from_slice(&t.to_le_bytes());
    }
    if key.len() <= SHORT_KEY {
        h.push(key.len() as u8);
    } else {
        h.push(0xFF);
        h.extend_from_slice(&(key.len() as u32).to_le_bytes());
    }
    h.extend_from_slice(key);
    h.extend_from_slice(value);
    h.into_boxed_slice()
}

impl Entry {
    /// A string entry.
    pub fn string(key: &[u8], value: &[u8], deadline: Option<i64>) -> Entry {
        Entry {
            head: build(0, 0, deadline, key, value),
            obj: None,
        }
    }

    /// An entry holding a non-string value.
    pub fn object(key: &[u8], value: Value, deadline: Option<i64>) -> Entry {
        Entry {
            head: build(0, 0, deadline, key, &[]),
            obj: Some(Box::new(value)),
        }
    }

    fn flags(&self) -> u8 {
        self.head[0]
    }

    /// Where the key-length field starts.
    fn klen_at(&self) -> usize {
        if self.flags() & F_DEADLINE != 0 {
            DEADLINE_AT + 8
        } else {
            DEADLINE_AT
        }
    }

    /// The key's byte range in `head`.
    fn key_range(&self) -> std::ops::Range<usize> {
        let at = self.klen_at();
        let h = &self.head;
        match h[at] {
            0xFF => {
                let mut n = [0u8; 4];
                n.copy_from_slice(&h[at + 1..at + 5]);
                let len = u32::from_le_bytes(n) as usize;
                at + 5..at + 5 + len
            }
            len => at + 1..at + 1 + len as usize,
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.head[self.key_range()]
    }

    /// Reads the entry's table slot without following it to the heap (cache warming).
    pub fn slot_word(&self) -> usize {
        self.head.len()
    }

    /// The absolute deadline in ms since the Unix epoch, if the key has one.
    pub fn deadline(&self) -> Option<i64> {
        if self.flags() & F_DEADLINE == 0 {
            return None;
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.head[DEADLINE_AT..DEADLINE_AT + 8]);
        Some(i64::from_le_bytes(t))
    }

    pub fn is_expired(&self, now: i64) -> bool {
        matches!(self.deadline(), Some(t) if t <= now)
    }

    /// Sets or clears the deadline (rebuilds the head: deadlines change far less often than
    /// values are read).
    pub fn set_deadline(&mut self, deadline: Option<i64>) {
        if deadline == self.deadline() {
            return;
        }
        let value_at = self.key_range().end;
        self.head = build(
            self.flags(),
            self.access(),
            deadline,
            self.key(),
            &self.head[value_at..],
        );
    }

    /// The 24-bit access field (LRU clock or LFU counter, by the eviction policy).
    pub fn access(&self) -> u32 {
        let h = &self.head;
        u32::from_le_bytes([h[ACCESS_AT], h[ACCESS_AT + 1], h[ACCESS_AT + 2], 0])
    }

    pub fn set_access(&mut self, v: u32) {
        self.head[ACCESS_AT..ACCESS_AT + 3].copy_from_slice(&v.to_le_bytes()[..3]);
    }

    pub fn value(&self) -> ValueRef<'_> {
        match &self.obj {
            Some(o) => ValueRef::Obj(o),
            None => ValueRef::Str(&self.head[self.key_range().end..]),
        }
    }

    /// The string value, if this is a string.
    pub fn str(&self) -> Option<&[u8]> {
        match self.obj {
            Some(_) => None,
            None => Some(&self.head[self.key_range().end..]),
        }
    }

    pub fn obj(&self) -> Option<&Value> {
        self.obj.as_deref()
    }

    pub fn obj_mut(&mut self) -> Option<&mut Value> {
        self.obj.as_deref_mut()
    }

    /// Whether the string was grown in place (reported as `raw`).
    pub fn is_raw(&self) -> bool {
        self.flags() & F_RAW != 0
    }

    /// Reports the string as `raw`: Redis builds the strings of SETBIT, BITOP, BITFIELD and
    /// the HyperLogLog commands as raw strings.
    pub fn mark_raw(&mut self) {
        if let Some(f) = self.head.first_mut() {
            *f |= F_RAW;
        }
    }

    /// Whether the string is kept as given even when it reads as an integer.
    pub fn is_plain(&self) -> bool {
        self.flags() & F_PLAIN != 0
    }

    /// Keeps the string as given: Redis stores INCRBYFLOAT's result without integer encoding.
    pub fn mark_plain(&mut self) {
        if let Some(f) = self.head.first_mut() {
            *f |= F_PLAIN;
        }
    }

    /// Makes this a string entry holding `value` (the deadline and access field stay).
    pub fn set_str(&mut self, value: &[u8]) {
        self.head = build(
            self.flags() & !(F_RAW | F_PLAIN),
            self.access(),
            self.deadline(),
            self.key(),
            value,
        );
        self.obj = None;
    }

    /// Resizes the string value to `len` bytes (zero-filled past the old end) and lets `edit`
    /// change it in place: SETRANGE, SETBIT, APPEND. The entry must be a string.
    pub fn edit_str<R>(&mut self, len: usize, edit: impl FnOnce(&mut [u8]) -> R) -> R {
        let value_at = self.key_range().end;
        let mut h = std::mem::take(&mut self.head).into_vec();
        h.resize(value_at + len, 0);
        h[0] |= F_RAW;
        let r = edit(&mut h[value_at..]);
        self.head = h.into_boxed_slice();
        r
    }

    /// Makes this entry hold `value` (the deadline and access field stay).
    pub fn set_obj(&mut self, value: Value) {
        if self.obj.is_none() {
            let value_at = self.key_range().end;
            if value_at < self.head.len() {
                let mut h = std::mem::take(&mut self.head).into_vec();
                h.truncate(value_at);
                self.head = h.into_boxed_slice();
            }
        }
        self.obj = Some(Box::new(value));
    }

    /// The same value under another key (RENAME, COPY), keeping the deadline.
    pub fn with_key(&self, key: &[u8], value: Option<Value>) -> Entry {
        let value_at = self.key_range().end;
        Entry {
            head: build(
                self.flags(),
                self.access(),
                self.deadline(),
                key,
                &self.head[value_at..],
            ),
            obj: value.map(Box::new),
        }
    }

    /// Moves the value out under another key (RENAME), keeping the deadline.
    pub fn rekey(self, key: &[u8]) -> Entry {
        let mut e = self.with_key(key, None);
        e.obj = self.obj;
        e
    }

    /// Bytes this entry holds (head, object and what the object owns), for MEMORY USAGE and
    /// eviction.
    pub fn mem_usage(&self) -> usize {
        self.head.len()
            + std::mem::size_of::<Entry>()
            + self
                .obj
                .as_ref()
                .map_or(0, |o| std::mem::size_of::<Value>() + o.mem_usage())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn string_entry_layout() {
        let mut e = Entry::string(b"user:1", b"hello", None);
        assert_eq!(e.key(), b"user:1");
        assert_eq!(e.str(), Some(&b"hello"[..]));
        assert_eq!(e.deadline(), None);
        e.set_deadline(Some(1_700_000_000_123));
        assert_eq!(e.deadline(), Some(1_700_000_000_123));
        assert_eq!(e.key(), b"user:1");
        assert_eq!(e.str(), Some(&b"hello"[..]));
        e.set_access(0xABCDEF);
        e.set_str(b"bye");
        assert_eq!(e.access(), 0xABCDEF);
        assert_eq!(e.deadline(), Some(1_700_000_000_123));
        assert!(e.is_expired(1_700_000_000_123));
        assert!(!e.is_expired(1_700_000_000_122));
        e.set_deadline(None);
        assert_eq!(e.str(), Some(&b"bye"[..]));
        assert!(!e.is_raw());
        e.edit_str(6, |v| v[3..].copy_from_slice(b"!!!"));
        assert_eq!(e.str(), Some(&b"bye!!!"[..]));
        assert!(e.is_raw());
    }

    #[test]
    fn long_keys_and_rekey() {
        let key = vec![b'k'; 1000];
        let e = Entry::string(&key, b"v", Some(5));
        assert_eq!(e.key(), &key[..]);
        let r = e.rekey(b"short");
        assert_eq!(r.key(), b"short");
        assert_eq!(r.str(), Some(&b"v"[..]));
        assert_eq!(r.deadline(), Some(5));
    }
}
