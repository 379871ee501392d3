//! The slow log: commands that took at least `slowlog-log-slower-than` microseconds, newest
//! first, at most `slowlog-max-len` of them, as SLOWLOG GET shows them (Redis's entry: id, unix
//! time, microseconds, arguments, client address, client name).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use bytes::Bytes;
use ringcache_protocol::Reply;

/// Arguments kept per entry, the last standing for the rest (Redis's SLOWLOG_ENTRY_MAX_ARGC).
const MAX_ARGS: usize = 32;
/// Bytes kept of one argument (SLOWLOG_ENTRY_MAX_STRING).
const MAX_ARG_BYTES: usize = 128;

#[derive(Debug)]
struct Entry {
    id: u64,
    unix_secs: i64,
    micros: u64,
    args: Vec<Bytes>,
    addr: String,
    name: Bytes,
}

#[derive(Debug)]
pub struct SlowLog {
    entries: Mutex<VecDeque<Entry>>,
    next_id: AtomicU64,
    /// `slowlog-log-slower-than` in microseconds; negative: log nothing.
    pub threshold_us: AtomicI64,
    /// `slowlog-max-len`.
    pub max_len: AtomicUsize,
}

impl Default for SlowLog {
    fn default() -> Self {
        SlowLog {
            entries: Mutex::default(),
            next_id: AtomicU64::new(0),
            threshold_us: AtomicI64::new(10_000),
            max_len: AtomicUsize::new(128),
        }
    }
}

/// `a` as the slow log keeps it: at most [`MAX_ARG_BYTES`] bytes, then how many more there were.
fn trimmed(a: &Bytes) -> Bytes {
    if a.len() <= MAX_ARG_BYTES {
        return a.clone();
    }
    let mut v = a[..MAX_ARG_BYTES].to_vec();
    v.extend_from_slice(format!("... ({} more bytes)", a.len() - MAX_ARG_BYTES).as_bytes());
    Bytes::from(v)
}

impl SlowLog {
    /// Whether a command that took `micros` belongs in the log.
    #[inline]
    pub fn is_slow(&self, micros: u64) -> bool {
        let t = self.threshold_us.load(Relaxed);
        t >= 0 && micros >= t as u64
    }

    /// Adds a command that took `micros`, run by the client at `addr` named `name`.
    pub fn add(&self, micros: u64, args: &[Bytes], addr: String, name: Option<Bytes>) {
        let max = self.max_len.load(Relaxed);
        if max == 0 {
            return;
        }
        let hide = ringcache_protocol::monitor::redacted(args);
        let mut kept: Vec<Bytes> = args
            .iter()
            .zip(&hide)
            .take(MAX_ARGS)
            .map(|(a, &h)| {
                if h {
                    Bytes::from_static(b"(redacted)")
                } else {
                    trimmed(a)
                }
            })
            .collect();
        if args.len() > MAX_ARGS {
            kept[MAX_ARGS - 1] = Bytes::from(format!(
                "... ({} more arguments)",
                args.len() - MAX_ARGS + 1
            ));
        }
        let entry = Entry {
            id: self.next_id.fetch_add(1, Relaxed),
            unix_secs: crate::keyspace::now_ms() / 1000,
            micros,
            args: kept,
            addr,
            name: name.unwrap_or_default(),
        };
        let mut v = crate::keyspace::lock(&self.entries);
        v.push_front(entry);
        v.truncate(max);
    }

    pub fn len(&self) -> usize {
        crate::keyspace::lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reset(&self) {
        crate::keyspace::lock(&self.entries).clear();
    }

    /// A shorter `slowlog-max-len` applies at once.
    pub fn set_max_len(&self, n: usize) {
        self.max_len.store(n, Relaxed);
        crate::keyspace::lock(&self.entries).truncate(n);
    }

    /// SLOWLOG GET: the newest `count` entries (all when `None`).
    pub fn reply(&self, count: Option<usize>) -> Reply {
        let v = crate::keyspace::lock(&self.entries);
        Reply::Array(
            v.iter()
                .take(count.unwrap_or(usize::MAX))
                .map(|e| {
                    Reply::Array(vec![
                        Reply::Int(e.id as i64),
                        Reply::Int(e.unix_secs),
                        Reply::Int(e.micros as i64),
                        Reply::Array(e.args.iter().cloned().map(Reply::Bulk).collect()),
                        Reply::bulk_str(&e.addr),
                        Reply::Bulk(e.name.clone()),
                    ])
                })
                .collect(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn long_commands_are_trimmed_and_secrets_hidden() {
        let log = SlowLog::default();
        let many: Vec<Bytes> = (0..40).map(|i| b(&format!("a{i}"))).collect();
        log.add(5, &many, "1.2.3.4:5".into(), None);
        let long = vec![b("SET"), b("k"), Bytes::from(vec![b'x'; 200])];
        log.add(6, &long, "1.2.3.4:5".into(), Some(b("app")));
        log.add(7, &[b("AUTH"), b("user"), b("pw")], String::new(), None);
        let hello = [
            b("HELLO"),
            b("3"),
            b("AUTH"),
            b("u"),
            b("p"),
            b("SETNAME"),
            b("n"),
        ];
        log.add(8, &hello, String::new(), None);
        let Reply::Array(entries) = log.reply(None) else {
            panic!("an array")
        };
        let args = |i: usize| match &entries[i] {
            Reply::Array(e) => match &e[3] {
                Reply::Array(a) => a
                    .iter()
                    .map(|r| match r {
                        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                        _ => String::new(),
                    })
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        assert_eq!(
            args(0),
            [
                "HELLO",
                "3",
                "AUTH",
                "(redacted)",
                "(redacted)",
                "SETNAME",
                "n"
            ]
        );
        assert_eq!(args(1), ["AUTH", "(redacted)", "(redacted)"]);
        assert_eq!(
            args(2)[2],
            format!("{}... (72 more bytes)", "x".repeat(128))
        );
        let first = args(3);
        assert_eq!(first.len(), 32);
        assert_eq!(first[31], "... (9 more arguments)");
        log.set_max_len(2);
        assert_eq!(log.len(), 2);
    }
}
