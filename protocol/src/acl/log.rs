//! The ACL log: recent refusals, similar ones (same reason, context, object and user within a
//! minute) folded into one entry with a count, newest first, as `ACL LOG` shows them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use super::Reason;
use crate::resp::Reply;

/// Entries kept unless `acllog-max-len` says otherwise (Redis's default).
pub const DEFAULT_MAX_LEN: usize = 128;
/// Refusals this close to a like entry add to its count.
const GROUPING_MS: u128 = 60_000;

#[derive(Debug)]
struct Entry {
    count: u64,
    reason: Reason,
    context: &'static str,
    object: String,
    username: String,
    at: Instant,
    client_info: String,
}

#[derive(Debug)]
pub struct AclLog {
    entries: Mutex<VecDeque<Entry>>,
    /// `acllog-max-len`: entries kept; a lower value trims at the next refusal, as in Redis.
    max_len: AtomicUsize,
}

impl Default for AclLog {
    fn default() -> Self {
        AclLog {
            entries: Mutex::default(),
            max_len: AtomicUsize::new(DEFAULT_MAX_LEN),
        }
    }
}

/// Where a refused command was: `toplevel`, `multi` (queued or run by EXEC) or `lua` (a script).
pub const TOPLEVEL: &str = "toplevel";
pub const MULTI: &str = "multi";
pub const LUA: &str = "lua";

impl AclLog {
    pub fn max_len(&self) -> usize {
        self.max_len.load(Relaxed)
    }

    pub fn set_max_len(&self, n: usize) {
        self.max_len.store(n, Relaxed);
    }

    pub fn add(
        &self,
        reason: Reason,
        context: &'static str,
        object: String,
        username: &str,
        client_info: String,
    ) {
        let mut v = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let like = v.iter().position(|e| {
            e.reason == reason
                && e.context == context
                && e.object == object
                && e.username == username
                && now.duration_since(e.at).as_millis() < GROUPING_MS
        });
        if let Some(i) = like {
            if let Some(mut e) = v.remove(i) {
                e.count += 1;
                e.at = now;
                e.client_info = client_info;
                v.push_front(e);
            }
            return;
        }
        v.push_front(Entry {
            count: 1,
            reason,
            context,
            object,
            username: username.to_string(),
            at: now,
            client_info,
        });
        v.truncate(self.max_len());
    }

    pub fn reset(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Up to `count` newest entries.
    pub fn reply(&self, count: usize) -> Reply {
        let v = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let s = |t: &str| Reply::bulk_str(t);
        Reply::Array(
            v.iter()
                .take(count)
                .map(|e| {
                    let age_ms = e.at.elapsed().as_millis() as f64;
                    Reply::Map(vec![
                        (s("count"), Reply::Int(e.count as i64)),
                        (s("reason"), s(e.reason.name())),
                        (s("context"), s(e.context)),
                        (s("object"), s(&e.object)),
                        (s("username"), s(&e.username)),
                        (s("age-seconds"), Reply::Double(age_ms / 1000.0)),
                        (s("client-info"), s(e.client_info.trim_end_matches('\n'))),
                    ])
                })
                .collect(),
        )
    }
}
