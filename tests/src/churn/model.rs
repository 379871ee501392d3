//! What the harness wrote and what came back: per key, the log of every write issued (in order,
//! with its outcome), and the checks that compare a read or the final state with that log.
//!
//! Each key has exactly one writer task, so a key's writes are issued one at a time and their
//! order is known. Readers may be any task: a read captures the key's *floor* (its last
//! acknowledged write) just before it is sent, and the value that comes back must be at least
//! that new.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent, no answer yet.
    Pending,
    /// Acknowledged: it must be visible from now on.
    Ok,
    /// Refused with an error that says it did not run: it must never be visible.
    Failed,
    /// Timeout, dropped connection or an ambiguous error: it may or may not have run.
    Indeterminate,
}

#[derive(Debug, Clone, Copy)]
pub struct Write {
    pub outcome: Outcome,
    /// When it was sent.
    pub sent: Instant,
    /// When the acknowledgement (or the error) arrived.
    pub done: Option<Instant>,
    /// For SET keys: this write is a DEL.
    pub del: bool,
}

impl Write {
    fn pending(del: bool) -> Write {
        Write {
            outcome: Outcome::Pending,
            sent: Instant::now(),
            done: None,
            del,
        }
    }

    /// May have taken effect (acknowledged, pending or indeterminate).
    fn may_have_run(&self) -> bool {
        self.outcome != Outcome::Failed
    }
}

/// The test keys: `set` keys get SET/DEL/GET, `ctr` keys GET-then-INCR, `app` keys APPEND.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    pub n_set: usize,
    pub n_ctr: usize,
    pub n_app: usize,
}

/// Fixed width of one APPEND token: 8 hex digits of the per-key sequence number and a `;`.
pub const TOKEN_LEN: usize = 9;

impl Keys {
    /// Splits `total` keys 60% / 20% / 20%.
    pub fn new(total: usize) -> Keys {
        let n_set = (total * 6 / 10).max(1);
        let n_ctr = (total * 2 / 10).max(1);
        let n_app = total.saturating_sub(n_set + n_ctr).max(1);
        Keys {
            n_set,
            n_ctr,
            n_app,
        }
    }

    pub fn total(&self) -> usize {
        self.n_set + self.n_ctr + self.n_app
    }

    pub fn set_key(i: usize) -> String {
        format!("churn-s-{i}")
    }

    pub fn ctr_key(i: usize) -> String {
        format!("churn-c-{i}")
    }

    pub fn app_key(i: usize) -> String {
        format!("churn-a-{i}")
    }

    /// Every test key, SET keys first, then counters, then APPEND keys.
    pub fn all(&self) -> Vec<String> {
        (0..self.n_set)
            .map(Keys::set_key)
            .chain((0..self.n_ctr).map(Keys::ctr_key))
            .chain((0..self.n_app).map(Keys::app_key))
            .collect()
    }
}

/// The value of version `version` of SET key `i`, written by worker `writer`: it names all three,
/// so a value showing up under the wrong key, or from nowhere, is caught.
pub fn set_value(i: usize, writer: usize, version: usize) -> String {
    format!(
        "{}|w{writer}|v{version}|payload-0123456789",
        Keys::set_key(i)
    )
}

/// The version a SET key's value claims, if the value is one of ours for key `i`.
pub fn parse_set_value(i: usize, value: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split('|');
    if parts.next()? != Keys::set_key(i) {
        return None;
    }
    parts.next()?.strip_prefix('w')?;
    parts.next()?.strip_prefix('v')?.parse().ok()
}

pub fn token(seq: usize) -> String {
    format!("{seq:08x};")
}

/// The sequence numbers in an APPEND key's value, or `None` if it is not a list of tokens.
pub fn parse_tokens(value: &[u8]) -> Option<Vec<usize>> {
    if !value.len().is_multiple_of(TOKEN_LEN) {
        return None;
    }
    value
        .chunks(TOKEN_LEN)
        .map(|t| {
            if t[TOKEN_LEN - 1] != b';' {
                return None;
            }
            let hex = std::str::from_utf8(&t[..TOKEN_LEN - 1]).ok()?;
            usize::from_str_radix(hex, 16).ok()
        })
        .collect()
}

/// What went wrong, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An acknowledged write is missing from the final state.
    Lost,
    /// A read returned a value older than a write acknowledged before the read was sent.
    Stale,
    /// A key whose DEL was acknowledged showed an older value again.
    Resurrected,
    /// A write took effect more than once (counter too high, APPEND token twice).
    Duplicated,
    /// A value that was never written, or written by a write that failed.
    Phantom,
    /// APPEND tokens out of issue order.
    Reordered,
    /// A reply of the wrong type for the command.
    Unexpected,
    /// A stale read (or a deleted key's old value) that misses only writes acknowledged within
    /// the router's bound on replica lag: what reading from asynchronous replicas allows.
    Lagged,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Lost => "lost",
            Kind::Stale => "stale",
            Kind::Resurrected => "resurrected",
            Kind::Duplicated => "duplicated",
            Kind::Phantom => "phantom",
            Kind::Reordered => "reordered",
            Kind::Unexpected => "unexpected",
            Kind::Lagged => "replica-lag",
        }
    }
}

/// One finding. `since` is the earliest instant a fault could have caused it (when the missing
/// write was sent: a write in flight while a primary is failed over may be acknowledged by the
/// old primary just after the fault and lost with it), `at` when it was seen.
#[derive(Debug, Clone)]
pub struct Anomaly {
    pub kind: Kind,
    pub key: String,
    /// How many writes it concerns (e.g. increments lost).
    pub count: u64,
    pub since: Instant,
    pub at: Instant,
    pub detail: String,
    /// Seen by the final check (else by a read or write reply during the run).
    pub final_check: bool,
    /// For SET keys: the 1-based position of the acknowledged write found missing (0: n/a).
    pub write: usize,
}

/// Counts lost writes once each: a SET key's missing write by its position, a counter's or
/// APPEND key's by the largest shortfall seen (later replies show the same loss again).
#[derive(Default)]
pub struct LossTracker {
    set_writes: HashSet<(String, usize)>,
    deficits: HashMap<String, u64>,
}

impl LossTracker {
    /// How many lost writes `a` adds to those already known (0 if it shows nothing new).
    pub fn add(&mut self, a: &Anomaly) -> u64 {
        if !matches!(a.kind, Kind::Lost | Kind::Stale) {
            return 0;
        }
        if a.key.starts_with("churn-s-") {
            u64::from(self.set_writes.insert((a.key.clone(), a.write)))
        } else {
            let known = self.deficits.entry(a.key.clone()).or_default();
            let new = a.count.saturating_sub(*known);
            *known = (*known).max(a.count);
            new
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every write issued, per key.
pub struct Model {
    pub keys: Keys,
    /// How far behind its writes a read may be when the router reads from replicas (`None`:
    /// reads go to primaries, any stale read is one).
    pub replica_lag: Option<Duration>,
    sets: Vec<Mutex<Vec<Write>>>,
    ctrs: Vec<Mutex<Vec<Write>>>,
    apps: Vec<Mutex<Vec<Write>>>,
}

/// The last acknowledged write of a key when a read was sent: its 1-based position in the
/// key's log (0: none), whether it was a DEL, when it was sent.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub pos: usize,
    pub del: bool,
    pub sent: Option<Instant>,
}

fn floor_of(log: &[Write]) -> Floor {
    match log.iter().rposition(|w| w.outcome == Outcome::Ok) {
        Some(i) => Floor {
            pos: i + 1,
            del: log[i].del,
            sent: Some(log[i].sent),
        },
        None => Floor {
            pos: 0,
            del: false,
            sent: None,
        },
    }
}

/// For `missing` acknowledged writes of unknown identity (counter increments, APPEND tokens seen
/// only by count): a fault can explain them only if at least that many were sent before it
/// ended, i.e. if it ended after the `missing`-th acknowledged write was sent. Returns that
/// instant.
fn explained_since(log: &[Write], missing: usize, run_start: Instant) -> Instant {
    log.iter()
        .filter(|w| w.outcome == Outcome::Ok)
        .nth(missing.saturating_sub(1))
        .map_or(run_start, |w| w.sent)
}

/// The first acknowledged write a read of a SET key misses when it returned `version` (`None`:
/// nil, i.e. the key as the last DEL before the floor left it, or never written).
fn first_missed(log: &[Write], floor: Floor, version: Option<usize>) -> Option<&Write> {
    let from = match version {
        Some(v) => v,
        None => log[..floor.pos.min(log.len())]
            .iter()
            .rposition(|w| w.del && w.may_have_run())
            .map_or(0, |d| d + 1),
    };
    log.iter().skip(from).find(|w| w.outcome == Outcome::Ok)
}

/// Notes how long before the reply the first write a stale answer misses was acknowledged, and
/// makes a stale read (or resurrection) within `bound` a [`Kind::Lagged`] one.
fn mark_lag(a: &mut Anomaly, missed: Option<&Write>, bound: Option<Duration>) {
    if !matches!(a.kind, Kind::Stale | Kind::Resurrected | Kind::Lost) {
        return;
    }
    let Some(done) = missed.and_then(|w| w.done) else {
        return;
    };
    let age = a.at.saturating_duration_since(done);
    a.detail.push_str(&format!(
        "; it misses a write acknowledged {} ms before the reply",
        age.as_millis()
    ));
    if matches!(a.kind, Kind::Stale | Kind::Resurrected) && bound.is_some_and(|b| age <= b) {
        a.kind = Kind::Lagged;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Set,
    Ctr,
    App,
}

impl Model {
    pub fn new(keys: Keys) -> Model {
        let mk = |n: usize| (0..n).map(|_| Mutex::new(Vec::new())).collect();
        Model {
            keys,
            replica_lag: None,
            sets: mk(keys.n_set),
            ctrs: mk(keys.n_ctr),
            apps: mk(keys.n_app),
        }
    }

    fn logs(&self, f: Family) -> &[Mutex<Vec<Write>>] {
        match f {
            Family::Set => &self.sets,
            Family::Ctr => &self.ctrs,
            Family::App => &self.apps,
        }
    }

    /// Registers a write about to be sent; returns its 1-based position in the key's log (the
    /// SET version, the APPEND token's sequence number, the INCR's ordinal).
    pub fn issue(&self, f: Family, i: usize, del: bool) -> usize {
        let mut log = lock(&self.logs(f)[i]);
        log.push(Write::pending(del));
        log.len()
    }

    pub fn resolve(&self, f: Family, i: usize, pos: usize, outcome: Outcome, at: Instant) {
        let mut log = lock(&self.logs(f)[i]);
        if let Some(w) = log.get_mut(pos.wrapping_sub(1)) {
            w.outcome = outcome;
            w.done = Some(at);
        }
    }

    pub fn floor(&self, f: Family, i: usize) -> Floor {
        floor_of(&lock(&self.logs(f)[i]))
    }

    /// How many writes of the key were acknowledged (for counters: the least value it can hold).
    pub fn acked(&self, f: Family, i: usize) -> usize {
        lock(&self.logs(f)[i])
            .iter()
            .filter(|w| w.outcome == Outcome::Ok)
            .count()
    }

    /// Marks writes still pending as indeterminate (their task stopped waiting).
    pub fn settle(&self, at: Instant) {
        for logs in [&self.sets, &self.ctrs, &self.apps] {
            for m in logs.iter() {
                for w in lock(m).iter_mut() {
                    if w.outcome == Outcome::Pending {
                        w.outcome = Outcome::Indeterminate;
                        w.done = Some(at);
                    }
                }
            }
        }
    }

    /// Checks a GET of SET key `i` that was sent with `floor` and returned `value`; a stale
    /// answer within [`Model::replica_lag`] is [`Kind::Lagged`].
    pub fn check_set_read(
        &self,
        i: usize,
        floor: Floor,
        value: Option<&[u8]>,
        at: Instant,
        run_start: Instant,
    ) -> Option<Anomaly> {
        let mut a = self.set_read(i, floor, value, at, run_start)?;
        let version = value.and_then(|v| parse_set_value(i, v));
        if value.is_none() || version.is_some() {
            let log = lock(&self.sets[i]);
            mark_lag(&mut a, first_missed(&log, floor, version), self.replica_lag);
        }
        Some(a)
    }

    fn set_read(
        &self,
        i: usize,
        floor: Floor,
        value: Option<&[u8]>,
        at: Instant,
        run_start: Instant,
    ) -> Option<Anomaly> {
        let log = lock(&self.sets[i]);
        let key = Keys::set_key(i);
        let since = floor.sent.unwrap_or(run_start);
        let mk = |kind, detail: String| Anomaly {
            kind,
            key: key.clone(),
            count: 1,
            since,
            at,
            detail,
            final_check: false,
            write: floor.pos,
        };
        match value {
            None => {
                let later_del = log
                    .iter()
                    .skip(floor.pos.saturating_sub(1))
                    .any(|w| w.del && w.may_have_run());
                if floor.pos == 0 || floor.del || later_del {
                    None
                } else {
                    Some(mk(
                        Kind::Stale,
                        format!(
                            "GET returned nil after version {} was acknowledged",
                            floor.pos
                        ),
                    ))
                }
            }
            Some(v) => {
                let Some(version) = parse_set_value(i, v) else {
                    return Some(mk(
                        Kind::Phantom,
                        format!("GET returned a value never written: {:?}", lossy(v)),
                    ));
                };
                match log.get(version.wrapping_sub(1)) {
                    None => Some(mk(
                        Kind::Phantom,
                        format!("GET returned version {version}, never issued"),
                    )),
                    Some(w) if w.del => Some(mk(
                        Kind::Phantom,
                        format!("GET returned version {version}, which was a DEL"),
                    )),
                    Some(w) if w.outcome == Outcome::Failed => Some(mk(
                        Kind::Phantom,
                        format!("GET returned version {version}, whose SET failed"),
                    )),
                    Some(_) if version >= floor.pos => None,
                    // An older write that timed out may have been applied late, after the floor:
                    // a fault from the moment it was sent on can explain what is seen.
                    Some(w) if w.outcome != Outcome::Ok => {
                        let mut a = mk(
                            if floor.del { Kind::Resurrected } else { Kind::Stale },
                            format!(
                                "GET returned version {version} ({:?}, older) after version {} was acknowledged",
                                w.outcome,
                                floor.pos
                            ),
                        );
                        a.since = a.since.min(w.sent);
                        Some(a)
                    }
                    Some(_) if floor.del => Some(mk(
                        Kind::Resurrected,
                        format!(
                            "GET returned version {version} after the DEL at version {} was acknowledged",
                            floor.pos
                        ),
                    )),
                    Some(_) => Some(mk(
                        Kind::Stale,
                        format!(
                            "GET returned version {version} after version {} was acknowledged",
                            floor.pos
                        ),
                    )),
                }
            }
        }
    }

    /// Checks a counter's value (GET, or INCR's reply minus one) against the increments
    /// acknowledged before the request was sent (`floor_count`) and those that may have run.
    /// `kind_low` is what a too-low value means (a stale read, or a loss the reply reveals).
    pub fn check_counter(
        &self,
        i: usize,
        floor_count: usize,
        value: u64,
        kind_low: Kind,
        at: Instant,
        run_start: Instant,
    ) -> Option<Anomaly> {
        let log = lock(&self.ctrs[i]);
        let ceiling = log.iter().filter(|w| w.may_have_run()).count() as u64;
        let key = Keys::ctr_key(i);
        if value < floor_count as u64 {
            let mut a = Anomaly {
                kind: kind_low,
                key,
                count: floor_count as u64 - value,
                since: explained_since(&log, floor_count - value as usize, run_start),
                at,
                detail: format!(
                    "counter read {value} after {floor_count} increments were acknowledged"
                ),
                final_check: false,
                write: 0,
            };
            // The first increment past `value` (one writer sends them one at a time, in order).
            let missed = log
                .iter()
                .filter(|w| w.outcome == Outcome::Ok)
                .nth(value as usize);
            let bound = self.replica_lag.filter(|_| kind_low == Kind::Stale);
            mark_lag(&mut a, missed, bound);
            return Some(a);
        }
        if value > ceiling {
            return Some(Anomaly {
                kind: Kind::Duplicated,
                key,
                count: value - ceiling,
                since: run_start,
                at,
                detail: format!("counter read {value}, but only {ceiling} increments may have run"),
                final_check: false,
                write: 0,
            });
        }
        None
    }

    /// Checks APPEND's reply (the new length) for token `seq`: every token acknowledged before it
    /// was sent must be in the string, and no more tokens than may have run.
    pub fn check_append_reply(
        &self,
        i: usize,
        floor_count: usize,
        len: u64,
        at: Instant,
        run_start: Instant,
    ) -> Option<Anomaly> {
        let log = lock(&self.apps[i]);
        let key = Keys::app_key(i);
        let tokens = len / TOKEN_LEN as u64;
        let ceiling = log.iter().filter(|w| w.may_have_run()).count() as u64;
        if !len.is_multiple_of(TOKEN_LEN as u64) {
            return Some(Anomaly {
                kind: Kind::Phantom,
                key,
                count: 1,
                since: run_start,
                at,
                detail: format!("APPEND returned length {len}, not a whole number of tokens"),
                final_check: false,
                write: 0,
            });
        }
        // This APPEND itself is one of the tokens, hence the + 1.
        if tokens < floor_count as u64 + 1 {
            return Some(Anomaly {
                kind: Kind::Lost,
                key,
                count: floor_count as u64 + 1 - tokens,
                since: explained_since(&log, floor_count + 1 - tokens as usize, run_start),
                at,
                detail: format!(
                    "APPEND returned {tokens} tokens after {floor_count} were acknowledged"
                ),
                final_check: false,
                write: 0,
            });
        }
        if tokens > ceiling {
            return Some(Anomaly {
                kind: Kind::Duplicated,
                key,
                count: tokens - ceiling,
                since: run_start,
                at,
                detail: format!("APPEND returned {tokens} tokens, only {ceiling} may have run"),
                final_check: false,
                write: 0,
            });
        }
        None
    }

    /// The final value of SET key `i` must be its last acknowledged write, or a later one that
    /// may have run.
    pub fn final_set(
        &self,
        i: usize,
        value: Option<&[u8]>,
        at: Instant,
        start: Instant,
    ) -> Vec<Anomaly> {
        let log = lock(&self.sets[i]);
        let floor = floor_of(&log);
        drop(log);
        let mut out: Vec<Anomaly> = self
            .set_read(i, floor, value, at, start)
            .into_iter()
            .collect();
        for a in &mut out {
            a.final_check = true;
            if a.kind == Kind::Stale {
                a.kind = Kind::Lost;
                a.detail = format!("final state: {}", a.detail.replace("GET returned", "holds"));
            } else {
                a.detail = format!("final state: {}", a.detail);
            }
        }
        out
    }

    /// The final counter must lie between the acknowledged increments and those that may have run.
    pub fn final_counter(&self, i: usize, value: u64, at: Instant, start: Instant) -> Vec<Anomaly> {
        let log = lock(&self.ctrs[i]);
        let acked = log.iter().filter(|w| w.outcome == Outcome::Ok).count();
        let ceiling = log.iter().filter(|w| w.may_have_run()).count() as u64;
        let key = Keys::ctr_key(i);
        let mut out = Vec::new();
        if value < acked as u64 {
            out.push(Anomaly {
                kind: Kind::Lost,
                key,
                count: acked as u64 - value,
                since: explained_since(&log, acked - value as usize, start),
                at,
                detail: format!("final state: counter {value}, {acked} increments acknowledged"),
                final_check: true,
                write: 0,
            });
        } else if value > ceiling {
            out.push(Anomaly {
                kind: Kind::Duplicated,
                key,
                count: value - ceiling,
                since: start,
                at,
                detail: format!(
                    "final state: counter {value}, only {ceiling} increments may have run ({acked} acknowledged)"
                ),
                final_check: true,
                write: 0,
            });
        }
        out
    }

    /// Every acknowledged APPEND token exactly once and in order, no failed token, nothing else.
    pub fn final_append(
        &self,
        i: usize,
        value: Option<&[u8]>,
        at: Instant,
        start: Instant,
    ) -> Vec<Anomaly> {
        let log = lock(&self.apps[i]);
        let key = Keys::app_key(i);
        let mk = |kind, count, since, detail: String| Anomaly {
            kind,
            key: key.clone(),
            count,
            since,
            at,
            detail: format!("final state: {detail}"),
            final_check: true,
            write: 0,
        };
        let Some(seqs) = parse_tokens(value.unwrap_or_default()) else {
            return vec![mk(
                Kind::Phantom,
                1,
                start,
                format!(
                    "not a list of tokens: {:?}",
                    lossy(value.unwrap_or_default())
                ),
            )];
        };
        let mut out = Vec::new();
        let mut seen = vec![false; log.len()];
        let (mut phantom, mut dup, mut reordered) = (0u64, 0u64, 0u64);
        let mut last = 0usize;
        for &s in &seqs {
            match log.get(s.wrapping_sub(1)) {
                None => phantom += 1,
                Some(w) if w.outcome == Outcome::Failed => phantom += 1,
                Some(_) => {
                    if seen[s - 1] {
                        dup += 1;
                    }
                    seen[s - 1] = true;
                }
            }
            if s <= last {
                reordered += 1;
            }
            last = last.max(s);
        }
        let missing: Vec<usize> = log
            .iter()
            .enumerate()
            .filter(|(j, w)| w.outcome == Outcome::Ok && !seen[*j])
            .map(|(j, _)| j)
            .collect();
        if let (Some(&first), Some(&last)) = (missing.first(), missing.last()) {
            // A fault explains the loss only if it outlasted the last missing token's ack.
            out.push(mk(
                Kind::Lost,
                missing.len() as u64,
                log[last].done.unwrap_or(start),
                format!(
                    "{} acknowledged APPEND tokens missing (first: #{})",
                    missing.len(),
                    first + 1
                ),
            ));
        }
        if phantom > 0 {
            out.push(mk(
                Kind::Phantom,
                phantom,
                start,
                format!("{phantom} tokens never written or from failed APPENDs"),
            ));
        }
        if dup > 0 {
            out.push(mk(
                Kind::Duplicated,
                dup,
                start,
                format!("{dup} tokens appear twice"),
            ));
        }
        if reordered > 0 {
            out.push(mk(
                Kind::Reordered,
                reordered,
                start,
                format!("{reordered} tokens out of order"),
            ));
        }
        out
    }
}

fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(&v[..v.len().min(120)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_tokens_round_trip() {
        assert_eq!(parse_set_value(3, set_value(3, 1, 42).as_bytes()), Some(42));
        assert_eq!(parse_set_value(4, set_value(3, 1, 42).as_bytes()), None);
        let v = format!("{}{}{}", token(1), token(2), token(0x1f));
        assert_eq!(parse_tokens(v.as_bytes()), Some(vec![1, 2, 0x1f]));
        assert_eq!(parse_tokens(b"0000001;x"), None);
    }

    #[test]
    fn set_reads_follow_the_floor() {
        let m = Model::new(Keys::new(10));
        let t = Instant::now();
        let v1 = m.issue(Family::Set, 0, false);
        m.resolve(Family::Set, 0, v1, Outcome::Ok, t);
        let v2 = m.issue(Family::Set, 0, false);
        m.resolve(Family::Set, 0, v2, Outcome::Ok, t);
        let f = m.floor(Family::Set, 0);
        assert_eq!(f.pos, 2);
        let old = set_value(0, 0, 1);
        let new = set_value(0, 0, 2);
        assert!(m.check_set_read(0, f, Some(new.as_bytes()), t, t).is_none());
        let a = m.check_set_read(0, f, Some(old.as_bytes()), t, t);
        assert_eq!(a.map(|a| a.kind), Some(Kind::Stale));
        let d = m.issue(Family::Set, 0, true);
        m.resolve(Family::Set, 0, d, Outcome::Ok, t);
        let f = m.floor(Family::Set, 0);
        assert!(m.check_set_read(0, f, None, t, t).is_none());
        let a = m.check_set_read(0, f, Some(new.as_bytes()), t, t);
        assert_eq!(a.map(|a| a.kind), Some(Kind::Resurrected));
        // An indeterminate SET after the DEL may show up in the final state.
        let v4 = m.issue(Family::Set, 0, false);
        m.resolve(Family::Set, 0, v4, Outcome::Indeterminate, t);
        let v4s = set_value(0, 0, 4);
        assert!(m.final_set(0, Some(v4s.as_bytes()), t, t).is_empty());
        assert!(m.final_set(0, None, t, t).is_empty());
    }

    #[test]
    fn replica_reads_may_lag_within_the_bound_only() {
        let mut m = Model::new(Keys::new(10));
        m.replica_lag = Some(Duration::from_millis(1000));
        let t0 = Instant::now();
        let v1 = m.issue(Family::Set, 0, false);
        m.resolve(Family::Set, 0, v1, Outcome::Ok, t0);
        let v2 = m.issue(Family::Set, 0, false);
        m.resolve(Family::Set, 0, v2, Outcome::Ok, t0);
        let f = m.floor(Family::Set, 0);
        let old = set_value(0, 0, 1);
        let kind = |value: Option<&[u8]>, after_ms: u64| {
            let at = t0 + Duration::from_millis(after_ms);
            m.check_set_read(0, f, value, at, t0).map(|a| a.kind)
        };
        assert_eq!(kind(Some(old.as_bytes()), 5), Some(Kind::Lagged));
        assert_eq!(kind(Some(old.as_bytes()), 1500), Some(Kind::Stale));
        assert_eq!(kind(None, 5), Some(Kind::Lagged));
        assert_eq!(kind(None, 1500), Some(Kind::Stale));
        // The final state is read after the load: no lag is allowed there.
        let fin = m.final_set(0, Some(old.as_bytes()), t0, t0);
        assert_eq!(fin.first().map(|a| a.kind), Some(Kind::Lost));
        // Counters: a GET may lag, an INCR's reply (from the primary) may not.
        let c = m.issue(Family::Ctr, 0, false);
        m.resolve(Family::Ctr, 0, c, Outcome::Ok, t0);
        let soon = t0 + Duration::from_millis(5);
        let read = m.check_counter(0, 1, 0, Kind::Stale, soon, t0);
        assert_eq!(read.map(|a| a.kind), Some(Kind::Lagged));
        let incr = m.check_counter(0, 1, 0, Kind::Lost, soon, t0);
        assert_eq!(incr.map(|a| a.kind), Some(Kind::Lost));
        // Reads from primaries only: any stale read is one.
        m.replica_lag = None;
        assert_eq!(
            m.check_set_read(0, f, Some(old.as_bytes()), soon, t0)
                .map(|a| a.kind),
            Some(Kind::Stale)
        );
    }

    #[test]
    fn appends_catch_loss_duplication_and_order() {
        let m = Model::new(Keys::new(10));
        let t = Instant::now();
        for outcome in [
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Failed,
            Outcome::Indeterminate,
        ] {
            let s = m.issue(Family::App, 0, false);
            m.resolve(Family::App, 0, s, outcome, t);
        }
        let ok = format!("{}{}", token(1), token(2));
        assert!(m.final_append(0, Some(ok.as_bytes()), t, t).is_empty());
        let with_indet = format!("{}{}{}", token(1), token(2), token(4));
        assert!(m
            .final_append(0, Some(with_indet.as_bytes()), t, t)
            .is_empty());
        let kinds = |v: String| -> Vec<Kind> {
            m.final_append(0, Some(v.as_bytes()), t, t)
                .into_iter()
                .map(|a| a.kind)
                .collect()
        };
        assert_eq!(kinds(token(1)), vec![Kind::Lost]);
        assert_eq!(
            kinds(format!("{}{}{}", token(1), token(2), token(3))),
            vec![Kind::Phantom]
        );
        assert_eq!(
            kinds(format!("{}{}{}", token(1), token(2), token(2))),
            vec![Kind::Duplicated, Kind::Reordered]
        );
        assert_eq!(
            kinds(format!("{}{}", token(2), token(1))),
            vec![Kind::Reordered]
        );
    }

    #[test]
    fn counters_between_acked_and_possible() {
        let m = Model::new(Keys::new(10));
        let t = Instant::now();
        for outcome in [
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Indeterminate,
            Outcome::Failed,
        ] {
            let s = m.issue(Family::Ctr, 0, false);
            m.resolve(Family::Ctr, 0, s, outcome, t);
        }
        assert!(m.final_counter(0, 2, t, t).is_empty());
        assert!(m.final_counter(0, 3, t, t).is_empty());
        assert_eq!(m.final_counter(0, 1, t, t)[0].kind, Kind::Lost);
        assert_eq!(m.final_counter(0, 4, t, t)[0].kind, Kind::Duplicated);
    }
}
