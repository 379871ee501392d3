//! Requests through a router that has just learnt of a membership change: for each change and
//! each router other than the one it went through, the requests the load sent through that router
//! within [`FOLLOW_WINDOW`] of the moment it first reported the change's epoch (the epoch-spread
//! poller's reply time, so up to one poll late), outside faults and sweeps. A reported figure
//! only: timing on shared machines is too noisy to fail a run on it.

use std::time::{Duration, Instant};

/// How long after following a change a router's requests count as "just learnt".
pub const FOLLOW_WINDOW: Duration = Duration::from_secs(1);

/// A request the load sent while a change was being followed (no fault, no sweep).
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub sent: Instant,
    /// Latency in microseconds.
    pub us: u32,
    pub router: usize,
}

/// When `router` (not the change's own) first reported a change's epoch.
#[derive(Debug, Clone, Copy)]
pub struct Followed {
    pub router: usize,
    pub at: Instant,
}

/// Latencies (µs, sorted) of the requests sent through a router within [`FOLLOW_WINDOW`] after
/// it followed a change; a request in two windows counts once.
pub fn followed_latencies(follows: &[Followed], timed: &[Timed]) -> Vec<u32> {
    let mut out: Vec<u32> = timed
        .iter()
        .filter(|t| {
            follows
                .iter()
                .any(|f| f.router == t.router && t.sent >= f.at && t.sent < f.at + FOLLOW_WINDOW)
        })
        .map(|t| t.us)
        .collect();
    out.sort_unstable();
    out
}

/// The summary line and the `churn-result` fields (`followed_p99_ms=… followed_p99_ratio=…
/// followed_requests=…`) for the requests of `sorted` (µs, sorted), against `outside_p99` (ms).
pub fn figure(
    routers: usize,
    follows: usize,
    sorted: &[u32],
    outside_p99: Option<f64>,
) -> (String, String) {
    let name = "requests through a router in the first second after it followed a change (not through the change's own router)";
    let na = |why: &str| {
        (
            format!("{name}: n/a ({why})"),
            "followed_p99_ms=n/a followed_p99_ratio=n/a followed_requests=0".to_string(),
        )
    };
    if routers < 2 {
        return na("one router");
    }
    let (Some(p50), Some(p99)) = (pct(sorted, 50), pct(sorted, 99)) else {
        return na(&format!(
            "no request outside faults and sweeps; {follows} router follows"
        ));
    };
    let ratio = match outside_p99 {
        Some(o) if o > 0.0 => format!("{:.2}", p99 / o),
        _ => "n/a".to_string(),
    };
    (
        format!(
            "{name}: p50 {p50:.2} ms, p99 {p99:.2} ms ({} requests, {follows} router follows); p99 / outside migration: {ratio}",
            sorted.len()
        ),
        format!(
            "followed_p99_ms={p99:.2} followed_p99_ratio={ratio} followed_requests={}",
            sorted.len()
        ),
    )
}

/// The `p`th percentile of `sorted` (µs) in ms, as the summary's other latency figures.
fn pct(sorted: &[u32], p: usize) -> Option<f64> {
    let i = sorted.len().checked_sub(1)? * p / 100;
    sorted.get(i).map(|v| f64::from(*v) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_in_the_first_second_of_their_own_router() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let req = |at: u64, us: u32, router: usize| Timed {
            sent: ms(at),
            us,
            router,
        };
        let timed = [
            req(0, 1, 1),    // before the follow
            req(100, 2, 1),  // in router 1's window
            req(100, 3, 0),  // another router
            req(1099, 4, 1), // in both windows: once
            req(1100, 5, 1), // just after the first window, in the second
            req(3000, 6, 1), // after both
        ];
        let follows = [
            Followed {
                router: 1,
                at: ms(100),
            },
            Followed {
                router: 1,
                at: ms(1000),
            },
        ];
        assert_eq!(followed_latencies(&follows, &timed), vec![2, 4, 5]);
        let (line, fields) = figure(2, 2, &[1000, 2000, 4000], Some(2.0));
        assert!(
            line.contains("p99 2.00 ms") && line.ends_with(": 1.00"),
            "{line}"
        );
        assert_eq!(
            fields,
            "followed_p99_ms=2.00 followed_p99_ratio=1.00 followed_requests=3"
        );
        assert!(figure(1, 0, &[], None).0.ends_with("n/a (one router)"));
        assert!(figure(3, 2, &[], Some(1.0))
            .1
            .contains("followed_p99_ms=n/a"));
    }
}
