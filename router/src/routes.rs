//! Key-prefix routes: which pool a key goes to. The longest matching prefix wins (a route may
//! match case-insensitively); a key no route matches goes to the listener's default pool. Two
//! byte tries (exact and ASCII-lowercased) make a lookup cost one step per byte of the longest
//! prefix, not one comparison per route: a router with 50 routes routes as fast as one with 1.

use std::sync::atomic::Ordering::Relaxed;

use crate::pools_config::{MirrorConfig, RouteConfig};

/// Where a key goes: the route that matched (if any) and its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// Index in [`Routes::list`]; `None`: no route matched (the default pool).
    pub route: Option<usize>,
    /// Index of the pool in the router's pools.
    pub pool: usize,
    /// The route's split sent the key to its pool (see [`crate::split`]).
    pub split: bool,
    /// Bytes of the key its pool's nodes do not see (the prefix of a `remove_prefix` route):
    /// the ring places the rest.
    pub cut: usize,
}

impl Routed {
    /// The name `key` has on its pool's nodes (the ring places it by that name).
    #[inline]
    pub fn stored<'a>(&self, key: &'a [u8]) -> &'a [u8] {
        key.get(self.cut..).unwrap_or(key)
    }
}

/// The routes of a router, compiled for lookup.
#[derive(Debug, Default)]
pub struct Routes {
    pub list: Vec<RouteConfig>,
    /// Pool index of each route in `list`.
    pools: Vec<usize>,
    /// Each route's prefix length if it removes it, else 0.
    cuts: Vec<usize>,
    /// Each route's mirror: its pool's index, percent, writes only.
    pub mirrors: Vec<Option<(usize, u8, bool)>>,
    /// Each route's counters (kept when a route's mirror changes).
    pub stats: std::sync::Arc<Vec<crate::mirror::RouteStats>>,
    /// The `[[listener]]`s' default pools.
    pub listeners: Vec<usize>,
    /// Pools some client's keys go to: `default`, the routes' and the listeners'. The others
    /// are mirrors only, left out of fan-out commands (DBSIZE, KEYS, SCAN count each key once).
    served: Vec<usize>,
    exact: Trie,
    folded: Trie,
}

#[derive(Debug, Default, Clone)]
struct Trie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Default, Clone)]
struct TrieNode {
    /// Children sorted by byte.
    next: Vec<(u8, u32)>,
    /// The route whose prefix ends here.
    route: Option<u32>,
}

impl Trie {
    fn insert(&mut self, prefix: &[u8], route: usize) {
        if self.nodes.is_empty() {
            self.nodes.push(TrieNode::default());
        }
        let mut at = 0usize;
        for &b in prefix {
            let found = self.nodes[at].next.binary_search_by_key(&b, |&(c, _)| c);
            at = match found {
                Ok(i) => self.nodes[at].next[i].1 as usize,
                Err(i) => {
                    let n = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[at].next.insert(i, (b, n as u32));
                    n
                }
            };
        }
        self.nodes[at].route = Some(route as u32);
    }

    /// The route of the longest prefix of `key` in the trie, with the prefix's length.
    fn longest(&self, key: &[u8], fold: bool) -> Option<(usize, usize)> {
        let mut node = self.nodes.first()?;
        let mut best = node.route.map(|r| (r as usize, 0));
        for (depth, &b) in key.iter().enumerate() {
            let b = if fold { b.to_ascii_lowercase() } else { b };
            let Ok(i) = node.next.binary_search_by_key(&b, |&(c, _)| c) else {
                break;
            };
            node = &self.nodes[node.next[i].1 as usize];
            if let Some(r) = node.route {
                best = Some((r as usize, depth + 1));
            }
        }
        best
    }
}

impl Routes {
    /// Compiles `list`; `pool_index` names each route's pool's index (the config was validated,
    /// so every pool exists); `listeners`: the listeners' pools.
    pub fn new(
        list: Vec<RouteConfig>,
        listeners: &[usize],
        pool_index: impl Fn(&str) -> usize,
    ) -> Routes {
        let mut exact = Trie::default();
        let mut folded = Trie::default();
        for (i, r) in list.iter().enumerate() {
            if r.ignore_case {
                folded.insert(r.prefix.to_ascii_lowercase().as_bytes(), i);
            } else {
                exact.insert(r.prefix.as_bytes(), i);
            }
        }
        let pools: Vec<usize> = list.iter().map(|r| pool_index(&r.pool)).collect();
        let cuts = list
            .iter()
            .map(|r| if r.remove_prefix { r.prefix.len() } else { 0 })
            .collect();
        let mut served = vec![0];
        served.extend(pools.iter().chain(listeners).copied());
        served.extend(
            list.iter()
                .filter_map(|r| r.split.as_ref().map(|s| pool_index(&s.pool))),
        );
        served.sort_unstable();
        served.dedup();
        let mirrors = list
            .iter()
            .map(|r| {
                r.mirror
                    .as_ref()
                    .map(|m| (pool_index(&m.pool), m.percent, m.writes_only))
            })
            .collect();
        let stats = std::sync::Arc::new(list.iter().map(|_| Default::default()).collect());
        Routes {
            list,
            pools,
            cuts,
            mirrors,
            stats,
            listeners: listeners.to_vec(),
            served,
            exact,
            folded,
        }
    }

    /// These routes with route `r`'s mirror replaced by `mirror` (`pool`: the mirror pool's
    /// index); the counters carry on.
    pub fn with_mirror(&self, r: usize, mirror: Option<(MirrorConfig, usize)>) -> Routes {
        let mut list = self.list.clone();
        let mut mirrors = self.mirrors.clone();
        if let (Some(route), Some(m)) = (list.get_mut(r), mirrors.get_mut(r)) {
            *m = mirror
                .as_ref()
                .map(|(c, pool)| (*pool, c.percent, c.writes_only));
            route.mirror = mirror.map(|(c, _)| c);
        }
        Routes {
            list,
            pools: self.pools.clone(),
            cuts: self.cuts.clone(),
            mirrors,
            stats: self.stats.clone(),
            listeners: self.listeners.clone(),
            served: self.served.clone(),
            exact: self.exact.clone(),
            folded: self.folded.clone(),
        }
    }

    /// Routes `list` for the same listeners, each route's counters carried over by prefix.
    pub fn rebuilt(&self, list: Vec<RouteConfig>, pool_index: impl Fn(&str) -> usize) -> Routes {
        let next = Routes::new(list, &self.listeners, pool_index);
        for (r, st) in next.list.iter().zip(next.stats.iter()) {
            let Some(old) = self.list.iter().position(|o| o.prefix == r.prefix) else {
                continue;
            };
            let from = &self.stats[old];
            let copy = |a: &std::sync::atomic::AtomicU64, b: &std::sync::atomic::AtomicU64| {
                a.store(b.load(Relaxed), Relaxed)
            };
            copy(&st.requests, &from.requests);
            copy(&st.mirrored, &from.mirrored);
            copy(&st.mirror_drops, &from.mirror_drops);
            copy(&st.mirror_errors, &from.mirror_errors);
        }
        next
    }

    /// Whether pool `name` holds a `remove_prefix` route's keys (and so nothing else).
    pub fn strips(&self, name: &str) -> bool {
        self.list.iter().any(|r| r.remove_prefix && r.pool == name)
    }

    /// The pool of route `r`.
    pub fn pool_of_route(&self, r: usize) -> usize {
        self.pools[r]
    }

    /// Whether pool `p` holds keys clients reach (see `served`).
    pub fn serves(&self, p: usize) -> bool {
        self.served.binary_search(&p).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The route matching `key` by its longest prefix (exact and case-insensitive routes
    /// together), else `default` with no route.
    #[inline]
    pub fn route(&self, key: &[u8], default: usize) -> Routed {
        if self.list.is_empty() {
            return Routed {
                route: None,
                pool: default,
                split: false,
                cut: 0,
            };
        }
        let a = self.exact.longest(key, false);
        let b = self.folded.longest(key, true);
        let best = match (a, b) {
            (Some(x), Some(y)) => Some(if y.1 > x.1 { y } else { x }),
            (x, y) => x.or(y),
        };
        match best {
            Some((r, _)) => Routed {
                route: Some(r),
                pool: self.pools[r],
                split: false,
                cut: self.cuts[r],
            },
            None => Routed {
                route: None,
                pool: default,
                split: false,
                cut: 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, pool: &str, ignore_case: bool) -> RouteConfig {
        RouteConfig {
            prefix: prefix.into(),
            pool: pool.into(),
            ignore_case,
            mirror: None,
            split: None,
            remove_prefix: false,
        }
    }

    fn routes(list: Vec<RouteConfig>) -> Routes {
        Routes::new(list, &[], |p| match p {
            "a" => 1,
            "b" => 2,
            _ => 3,
        })
    }

    #[test]
    fn the_longest_prefix_wins() {
        let r = routes(vec![
            route("user:", "a", false),
            route("user:vip:", "b", false),
            route("u", "c", false),
        ]);
        assert_eq!(r.route(b"user:vip:1", 0).pool, 2);
        assert_eq!(r.route(b"user:1", 0).pool, 1);
        assert_eq!(r.route(b"us", 0).pool, 3);
        assert_eq!(
            r.route(b"x", 0),
            Routed {
                route: None,
                pool: 0,
                split: false,
                cut: 0
            }
        );
        assert_eq!(r.route(b"", 7).pool, 7);
    }

    #[test]
    fn case_insensitive_routes_fold_ascii() {
        let r = routes(vec![route("Sess:", "a", true), route("SESS:X", "b", false)]);
        assert_eq!(r.route(b"sess:1", 0).pool, 1);
        assert_eq!(r.route(b"SESS:1", 0).pool, 1);
        assert_eq!(r.route(b"SESS:X1", 0).pool, 2);
        // The exact route is longer but does not match this case: the folded one does.
        assert_eq!(r.route(b"sess:x1", 0).pool, 1);
        assert_eq!(r.route(b"ses", 0).route, None);
    }

    #[test]
    fn an_empty_prefix_catches_every_key() {
        let r = routes(vec![route("", "a", false), route("k", "b", false)]);
        assert_eq!(r.route(b"zzz", 0).pool, 1);
        assert_eq!(r.route(b"key", 0).pool, 2);
    }

    #[test]
    fn many_routes_match_as_one() {
        let list = (0..50)
            .map(|i| route(&format!("p{i}:"), "a", false))
            .collect();
        let r = routes(list);
        assert_eq!(r.route(b"p17:x", 0).route, Some(17));
        assert_eq!(r.route(b"p1:x", 0).route, Some(1));
        assert_eq!(r.route(b"p5", 0).route, None);
    }
}
