//! A/B splits: a route's `split = { pool, percent }` sends the keys whose hash lies in the
//! lowest `percent` of the hash space to another pool. A key's side depends on its hash alone,
//! so it is the same in every router and a key stays on its side until the percent changes;
//! a change from p to q moves exactly the keys whose hash lies between the two cuts.
//!
//! The live percents are the cluster's, kept by the nodes: every node of a pool that a split
//! involves holds the **split fences** (`TOPOLOGY FENCE <version> <record> ...`): a node of the
//! route's own pool refuses the route's keys below the cut, one of the split's pool those above
//! it (`-WRONGSHARD <epoch> split:<version>`), so a router on older percents never writes a key
//! on the side it left. The record (this file's format, opaque to nodes) lists each split's
//! percent and, while keys move, the percent it moves from; routers adopt a newer version from
//! it, as they follow a newer ring. [`crate::split_change`] changes, follows and moves them.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use ringcache_protocol::ring::{Arc as RingArc, Move, Ring};
use ringcache_protocol::wire::SplitFence;

use crate::rebalance::{MigrationMap, MovingArc};
use crate::routes::Routes;

/// The hash space: 2^64 hashes.
pub const CIRCLE: u128 = 1 << 64;

/// The first hash past a split of `percent`: keys hashing below it go to the split's pool.
pub fn cut(percent: u8) -> u128 {
    (u128::from(percent.min(100)) << 64) / 100
}

/// Whether a key hashing to `hash` is on the split's side at `percent`.
#[inline]
pub fn on_split_side(hash: u64, percent: u8) -> bool {
    u128::from(hash) < cut(percent)
}

/// One route's split as the request path sees it.
#[derive(Debug, Clone)]
pub struct LiveSplit {
    pub prefix: String,
    /// The route's own pool and the split's pool (indexes in the router's pools).
    pub home: usize,
    pub pool: usize,
    pub percent: u8,
    /// While keys move after a change of percent: the percent they move from, and the arcs
    /// (between the two cuts, cut by both pools' rings) still to empty.
    pub moving: Option<(u8, Arc<MigrationMap>)>,
    /// The epochs of the two pools' rings the moving arcs were cut on (a router adopts the move
    /// only once its rings are at least these: cut on older rings, the arcs would name the wrong
    /// shards).
    pub rings: (u64, u64),
}

impl LiveSplit {
    /// The arc holding `hash`, if the change moves it and it is not empty yet.
    #[inline]
    pub fn moving_arc(&self, hash: u64) -> Option<&MovingArc> {
        let (_, map) = self.moving.as_ref()?;
        if map.live() == 0 {
            return None;
        }
        map.find(hash)
    }
}

/// Every route's split at one version.
#[derive(Debug, Clone, Default)]
pub struct Splits {
    /// The nodes' fences are at this version (0: none pushed yet).
    pub version: u64,
    /// By route index: the route's split.
    pub by_route: Vec<Option<LiveSplit>>,
    /// Set while a mover of this router drives a change (shared by later versions).
    pub driving: Arc<AtomicBool>,
    /// Splits the nodes' record has at a percent above 0 (or moving) on prefixes this router
    /// has no split route for (its config is older or newer than another router's): it cannot
    /// write their fences, so it publishes no version while there are any.
    pub foreign: Vec<RecordedSplit>,
    /// The version and record last adopted from the nodes (a route added live adopts its line).
    pub adopted: Option<(u64, Bytes)>,
}

impl Splits {
    /// The splits of `routes` at their configured percents, version 0 (before the nodes are
    /// asked).
    pub fn from_routes(routes: &Routes, pool_index: impl Fn(&str) -> usize) -> Splits {
        let by_route = routes
            .list
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.split.as_ref().map(|s| LiveSplit {
                    prefix: r.prefix.clone(),
                    home: routes.pool_of_route(i),
                    pool: pool_index(&s.pool),
                    percent: s.percent,
                    moving: None,
                    rings: (0, 0),
                })
            })
            .collect();
        Splits {
            version: 0,
            by_route,
            driving: Arc::new(AtomicBool::new(false)),
            foreign: Vec::new(),
            adopted: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_route.iter().all(Option::is_none)
    }

    /// Whether some split is moving keys.
    pub fn moving(&self) -> bool {
        self.by_route
            .iter()
            .flatten()
            .any(|s| s.moving.as_ref().is_some_and(|(_, m)| m.live() > 0))
    }

    /// The route index of the split on `prefix`.
    pub fn index_of(&self, prefix: &[u8]) -> Option<usize> {
        self.by_route
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.prefix.as_bytes() == prefix))
    }

    /// Whether a split touches pool `p` (as its route's pool or as the split's).
    pub fn involves(&self, p: usize) -> bool {
        self.by_route
            .iter()
            .flatten()
            .any(|s| s.home == p || s.pool == p)
    }

    /// The fences a node of pool `p` holds: below the cut for the route's own pool, above it
    /// for the split's.
    pub fn fences_for(&self, p: usize) -> Vec<SplitFence> {
        let mut out = Vec::new();
        for s in self.by_route.iter().flatten() {
            let c = cut(s.percent);
            let (lo, hi) = if s.home == p {
                (0, c)
            } else if s.pool == p {
                (c, CIRCLE)
            } else {
                continue;
            };
            if lo < hi {
                out.push(SplitFence {
                    prefix: Bytes::copy_from_slice(s.prefix.as_bytes()),
                    lo,
                    hi,
                });
            }
        }
        out
    }

    /// The record the nodes keep: a line per split, `<percent> <from percent or -> <prefix in
    /// hex> <home ring epoch> <split pool ring epoch>`.
    pub fn record(&self) -> Bytes {
        let mut out = String::new();
        for s in self.by_route.iter().flatten() {
            // While marked moving, even with every arc emptied: a record pushed later to a node
            // behind must be the one pushed at the change (its version is the same).
            let from = s
                .moving
                .as_ref()
                .map_or("-".to_string(), |(f, _)| f.to_string());
            out.push_str(&format!(
                "{} {from} {} {} {}\n",
                s.percent,
                hex(s.prefix.as_bytes()),
                s.rings.0,
                s.rings.1
            ));
        }
        Bytes::from(out)
    }
}

/// A split as a record lists it: its prefix, percent and the percent keys move from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSplit {
    pub prefix: Vec<u8>,
    pub percent: u8,
    pub from: Option<u8>,
    /// The ring epochs the move was cut on (see [`LiveSplit::rings`]).
    pub rings: (u64, u64),
}

/// Reads a record written by [`Splits::record`]; lines it cannot read are skipped (a newer
/// router's).
pub fn decode_record(raw: &[u8]) -> Vec<RecordedSplit> {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let percent = parts.next()?.parse::<u8>().ok().filter(|p| *p <= 100)?;
            let from = match parts.next()? {
                "-" => None,
                f => Some(f.parse::<u8>().ok().filter(|p| *p <= 100)?),
            };
            let prefix = unhex(parts.next().unwrap_or(""))?;
            let mut epoch = || {
                parts
                    .next()
                    .and_then(|e| e.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let rings = (epoch(), epoch());
            Some(RecordedSplit {
                prefix,
                percent,
                from,
                rings,
            })
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The arcs a change of a split from `from` to `to` percent moves, each with its source and
/// target shard: the hashes between the two cuts, cut where either pool's ring changes owner.
/// Keys go from the route's pool (`home`) to the split's (`pool`) when the percent grows, back
/// when it shrinks.
pub fn moves(home: &Ring, pool: &Ring, from: u8, to: u8) -> Vec<Move> {
    let (lo, hi) = (cut(from.min(to)), cut(from.max(to)));
    if lo == hi {
        return Vec::new();
    }
    let (src, dst) = if to > from {
        (home, pool)
    } else {
        (pool, home)
    };
    // Shard ids are unique across pools, so the diff of the two rings is every arc of the
    // circle with its owner in each.
    let mut out = Vec::new();
    for m in src.diff(dst) {
        for (a, b) in linear(m.arc) {
            let (a, b) = (a.max(lo), b.min(hi));
            if a < b {
                out.push(Move {
                    arc: from_linear(a, b),
                    from: m.from.clone(),
                    to: m.to.clone(),
                });
            }
        }
    }
    out
}

/// The hashes of `arc` (`(start, end]`, wrapping) as one or two half-open ranges `[a, b)`.
fn linear(arc: RingArc) -> Vec<(u128, u128)> {
    let (s, e) = (u128::from(arc.start) + 1, u128::from(arc.end) + 1);
    match arc.start.cmp(&arc.end) {
        std::cmp::Ordering::Less => vec![(s, e)],
        std::cmp::Ordering::Greater => vec![(s, CIRCLE), (0, e)],
        std::cmp::Ordering::Equal => vec![(0, CIRCLE)],
    }
}

/// The arc of the hashes `[a, b)` (`a < b <= 2^64`).
fn from_linear(a: u128, b: u128) -> RingArc {
    RingArc {
        start: (a as u64).wrapping_sub(1),
        end: (b - 1) as u64,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ringcache_protocol::ring::ShardSpec;

    fn ring(ids: &[&str]) -> Ring {
        Ring::new(1, 64, ids.iter().map(|i| ShardSpec::new(*i, 1)).collect()).unwrap()
    }

    #[test]
    fn cuts_cover_the_circle() {
        assert_eq!(cut(0), 0);
        assert_eq!(cut(100), CIRCLE);
        assert!(on_split_side(0, 1) && !on_split_side(0, 0));
        assert!(on_split_side(u64::MAX, 100) && !on_split_side(u64::MAX, 99));
        // 10% of evenly spread hashes.
        let n = (0..10_000u64)
            .filter(|i| on_split_side(i.wrapping_mul(0x9E37_79B9_7F4A_7C15), 10))
            .count();
        assert!((900..=1100).contains(&n), "{n}");
    }

    #[test]
    fn moves_span_exactly_the_hashes_between_the_cuts() {
        let (a, b) = (ring(&["a1", "a2", "a3"]), ring(&["b1", "b2"]));
        for (from, to) in [(10, 20), (20, 10), (0, 100), (100, 0), (0, 1), (99, 100)] {
            let ms = moves(&a, &b, from, to);
            let width: u128 = ms.iter().map(|m| m.arc.width()).sum();
            assert_eq!(width, cut(from.max(to)) - cut(from.min(to)), "{from}->{to}");
            for m in &ms {
                let (src, dst) = if to > from { (&a, &b) } else { (&b, &a) };
                let h = m.arc.end;
                assert_eq!(src.owner(h).unwrap().id, m.from);
                assert_eq!(dst.owner(h).unwrap().id, m.to);
                assert!(u128::from(h) < cut(from.max(to)) && u128::from(h) >= cut(from.min(to)));
            }
        }
        assert!(moves(&a, &b, 30, 30).is_empty());
    }

    #[test]
    fn records_round_trip() {
        let map = Arc::new(MigrationMap::new(
            vec![Move {
                arc: RingArc { start: 1, end: 5 },
                from: "a".into(),
                to: "b".into(),
            }],
            Vec::new(),
        ));
        let s = Splits {
            version: 3,
            by_route: vec![
                None,
                Some(LiveSplit {
                    prefix: "u: x".into(),
                    home: 0,
                    pool: 1,
                    percent: 20,
                    moving: Some((10, map)),
                    rings: (4, 7),
                }),
                Some(LiveSplit {
                    prefix: String::new(),
                    home: 1,
                    pool: 2,
                    percent: 100,
                    moving: None,
                    rings: (0, 0),
                }),
            ],
            driving: Arc::default(),
            foreign: Vec::new(),
            adopted: None,
        };
        assert_eq!(
            decode_record(&s.record()),
            vec![
                RecordedSplit {
                    prefix: b"u: x".to_vec(),
                    percent: 20,
                    from: Some(10),
                    rings: (4, 7)
                },
                RecordedSplit {
                    prefix: Vec::new(),
                    percent: 100,
                    from: None,
                    rings: (0, 0)
                }
            ]
        );
        assert_eq!(s.fences_for(0)[0].hi, cut(20));
        // Pool 1 is the first split's target (above 20%) and the second's home (below 100%).
        let f1 = s.fences_for(1);
        assert_eq!((f1[0].lo, f1[1].lo, f1[1].hi), (cut(20), 0, CIRCLE));
        assert!(s.fences_for(2).is_empty());
        assert!(decode_record(b"x y z\n101 - 00\n").is_empty());
    }
}
