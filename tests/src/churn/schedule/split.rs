//! The split steps (`--split`): a live `RING SPLIT` of the route holding every test key, under
//! the load, and what it moved: only keys from the route's pool to the split's, about the share
//! the percent grew by.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ringcache_protocol::Reply;

use super::{Driver, EventRecord, ADMIN_TIMEOUT, CHANGE_TIMEOUT, MIGRATION_WAIT, POLL};
use crate::churn::client::{self, cmd};
use crate::churn::local::{CANARY, SPLIT_PREFIX};

/// How far the share of keys moved may be from the percent the split grew by (10,000 keys:
/// about 0.4 points of standard deviation at 20%).
const SHARE_TOLERANCE: f64 = 2.0;

impl Driver<'_> {
    /// Raises the split: 0 → 20% the first time, then to 50%.
    pub(super) fn split(&mut self) -> EventRecord {
        let at = self.elapsed();
        let from = self.split_percent;
        let to = if from == 0 { 20 } else { 50 };
        let name = format!("split {from}% -> {to}%{}", self.via_note());
        let before = match self.locate_all() {
            Ok(o) => o,
            Err(e) => return self.record(at, name, Err(e)),
        };
        let args = cmd(&["RING", "SPLIT", SPLIT_PREFIX, &to.to_string()]);
        if let Err(e) = self.admin(args, CHANGE_TIMEOUT) {
            return self.record(at, name, Err(format!("RING SPLIT failed: {e}")));
        }
        self.split_percent = to;
        let ok_at = Instant::now();
        self.shared.in_migration.store(true, Ordering::Relaxed);
        let settled = self.wait_split(to, MIGRATION_WAIT);
        self.shared.in_migration.store(false, Ordering::Relaxed);
        let after = match self.locate_all() {
            Ok(o) => o,
            Err(e) => return self.record(at, name, Err(e)),
        };
        let on_canary = |o: &String| CANARY.contains(&o.as_str());
        let changed: Vec<(&String, &String)> =
            before.iter().zip(&after).filter(|(b, a)| b != a).collect();
        // A raise moves keys from the route's pool to the split's, never back or within one.
        let wrong = changed
            .iter()
            .filter(|(b, a)| on_canary(b) || !on_canary(a))
            .count();
        let share = changed.len() as f64 * 100.0 / before.len().max(1) as f64;
        let expected = f64::from(to - from);
        let what = format!(
            "{} of {} keys moved ({share:.2}%, the split grew by {expected}%), {wrong} not from the route's pool to the split's",
            changed.len(),
            before.len()
        );
        let result = if wrong > 0 || (share - expected).abs() > SHARE_TOLERANCE {
            Err(what)
        } else {
            Ok(what)
        };
        let mut rec = self.record(at, name, result);
        rec.migration = Some(settled.map(|()| ok_at.elapsed()));
        rec
    }

    /// Polls `RING ROUTES` on every running router until each routes by `percent` with no key
    /// left to move.
    fn wait_split(&mut self, percent: u8, bound: Duration) -> Result<(), String> {
        let deadline = Instant::now() + bound;
        loop {
            let mut busy = Vec::new();
            for i in self.shared.routers.live() {
                let replies =
                    self.admin_pipeline_on(i, &[cmd(&["RING", "ROUTES"])], ADMIN_TIMEOUT)?;
                let route = match replies.first() {
                    Some(Reply::Array(routes)) => routes.first().cloned(),
                    _ => None,
                };
                let got = |name: &str| route.as_ref().and_then(|r| client::field(r, name));
                let settled = got("split_percent") == Some(Reply::Int(i64::from(percent)))
                    && got("split_moving_from") == Some(Reply::Nil);
                if !settled {
                    busy.push(format!(
                        "router {i}: split_percent {:?}, split_moving_from {:?}",
                        got("split_percent"),
                        got("split_moving_from")
                    ));
                }
            }
            if busy.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline || self.shared.stopping() {
                return Err(format!(
                    "the split still moves after {bound:?} ({})",
                    busy.join(", ")
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}
