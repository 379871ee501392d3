//! LATENCY HISTOGRAM through the router: every shard's per-command distributions summed into
//! one, as if one server had run all the calls.
//!
//! Each shard answers, per command, its calls and cumulative counts at µs points (1, 2, 4, …,
//! only where its count grew). A shard's count at any point is its count at its last point at or
//! below it, so the cluster's cumulative count at a point is the sum of those; it is reported at
//! every point some shard reported, where it grows.

use std::collections::BTreeMap;

use bytes::Bytes;
use ringcache_protocol::{Protocol, Reply};

use crate::frame;
use crate::merge::error_bytes;

/// One command's merged histogram: calls, and each shard's (µs, cumulative count) points.
#[derive(Default)]
struct Merged {
    calls: i64,
    shards: Vec<Vec<(i64, i64)>>,
}

fn unexpected() -> Bytes {
    error_bytes("ERR a shard sent an unexpected reply to LATENCY HISTOGRAM")
}

/// `[(key, value)]` of a map reply (RESP3 `%`, or RESP2's flat array of keys and values).
fn pairs(raw: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let (_, els) = frame::aggregate(raw)?;
    if !els.len().is_multiple_of(2) {
        return None;
    }
    Some(
        els.chunks(2)
            .map(|kv| (&raw[kv[0].clone()], &raw[kv[1].clone()]))
            .collect(),
    )
}

fn text(raw: &[u8]) -> Option<&[u8]> {
    frame::bulk_payload(raw).or_else(|| raw.strip_prefix(b"+")?.strip_suffix(b"\r\n"))
}

/// The shards' LATENCY HISTOGRAM replies combined, in the order commands first appear.
pub fn merge_histograms(parts: &[Bytes]) -> Result<Bytes, Bytes> {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut by_name: BTreeMap<Vec<u8>, Merged> = BTreeMap::new();
    let resp3 = parts.first().is_some_and(|p| p.first() == Some(&b'%'));
    for raw in parts {
        for (name, value) in pairs(raw).ok_or_else(unexpected)? {
            let name = text(name).ok_or_else(unexpected)?.to_vec();
            let mut calls = None;
            let mut points = Vec::new();
            for (k, v) in pairs(value).ok_or_else(unexpected)? {
                match text(k) {
                    Some(b"calls") => calls = frame::integer(v),
                    Some(b"histogram_usec") => {
                        for (usec, count) in pairs(v).ok_or_else(unexpected)? {
                            let (Some(u), Some(c)) = (frame::integer(usec), frame::integer(count))
                            else {
                                return Err(unexpected());
                            };
                            points.push((u, c));
                        }
                    }
                    _ => {}
                }
            }
            let m = by_name.entry(name.clone()).or_insert_with(|| {
                order.push(name);
                Merged::default()
            });
            m.calls += calls.ok_or_else(unexpected)?;
            m.shards.push(points);
        }
    }
    let entries = order
        .iter()
        .filter_map(|name| by_name.get(name).map(|m| (name, m)))
        .map(|(name, m)| {
            ringcache_protocol::latency::histogram_entry(
                Bytes::copy_from_slice(name),
                m.calls,
                cumulative(&m.shards),
            )
        })
        .collect();
    let proto = if resp3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    };
    Ok(Reply::Map(entries).to_bytes(proto))
}

/// The sum of the shards' cumulative counts at every point any of them reported, where it grows.
fn cumulative(shards: &[Vec<(i64, i64)>]) -> Vec<(i64, i64)> {
    let mut at: Vec<i64> = shards.iter().flatten().map(|&(u, _)| u).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut previous = 0;
    for u in at {
        let total: i64 = shards
            .iter()
            .map(|pts| {
                pts.iter()
                    .take_while(|(p, _)| *p <= u)
                    .last()
                    .map_or(0, |&(_, c)| c)
            })
            .sum();
        if total > previous {
            out.push((u, total));
            previous = total;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A command's name, calls and (µs, cumulative count) points.
    type Entry<'a> = (&'a str, i64, &'a [(i64, i64)]);

    fn histogram(entries: &[Entry], proto: Protocol) -> Bytes {
        let map = entries
            .iter()
            .map(|(name, calls, points)| {
                (
                    Reply::bulk_str(name),
                    Reply::Map(vec![
                        (Reply::bulk_str("calls"), Reply::Int(*calls)),
                        (
                            Reply::bulk_str("histogram_usec"),
                            Reply::Map(
                                points
                                    .iter()
                                    .map(|&(u, c)| (Reply::Int(u), Reply::Int(c)))
                                    .collect(),
                            ),
                        ),
                    ]),
                )
            })
            .collect();
        Reply::Map(map).to_bytes(proto)
    }

    #[test]
    fn shards_histograms_add_up() {
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            let a = histogram(
                &[("get", 10, &[(1, 8), (4, 10)]), ("set", 2, &[(8, 2)])],
                proto,
            );
            let b = histogram(&[("get", 5, &[(2, 1), (4, 3), (16, 5)])], proto);
            let got = merge_histograms(&[a, b]).unwrap();
            let want = histogram(
                &[
                    ("get", 15, &[(1, 8), (2, 9), (4, 13), (16, 15)]),
                    ("set", 2, &[(8, 2)]),
                ],
                proto,
            );
            assert_eq!(got, want, "{proto:?}");
        }
        assert!(frame::is_error(
            &merge_histograms(&[Bytes::from_static(b":1\r\n")]).unwrap_err()
        ));
    }
}
