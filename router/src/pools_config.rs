//! The config of pools, key-prefix routes and extra listeners; `config` calls [`validate`] once
//! the top-level shards (the `default` pool) are checked.
//!
//! ```toml
//! [[pool]]
//! name = "sessions"
//! vnodes = 512                   # optional: [ring] vnodes
//! read_from = "primary"          # optional: [ring] read_from
//! [[pool.shard]]
//! id = "s1"                      # shard ids are unique across pools
//! primary = "127.0.0.1:7101"
//!
//! [[route]]
//! prefix = "session:"
//! pool = "sessions"
//! ignore_case = false            # optional: match the prefix case-insensitively (ASCII)
//! # optional: copy this share of the route's commands to another pool, fire-and-forget
//! mirror = { pool = "shadow", percent = 100, writes_only = true }
//! # optional: send this share of the route's keys (by key hash) to another pool; the live
//! # share changes with `RING SPLIT <prefix> <percent>` (this is the share a new cluster starts at)
//! split = { pool = "canary", percent = 10 }
//! # optional: the pool's nodes hold the keys without the prefix (`session:42` is `42` there);
//! # the pool then serves this route alone (no other route, listener, split or mirror uses it)
//! remove_prefix = false
//!
//! [[listener]]
//! listen = "127.0.0.1:7001"      # clients here go to `pool` when no route matches
//! pool = "sessions"
//! ```

use ringcache_protocol::ring::Ring;
use serde::Deserialize;

use crate::config::{
    check_addr, check_id, parse_read_from, validate_shards, ConfigError, RawShard, ReadFrom,
    ShardConfig,
};

/// The pool of the top-level `[[shard]]` list, and of keys no route matches.
pub const DEFAULT_POOL: &str = "default";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPoolTable {
    name: Option<String>,
    vnodes: Option<u32>,
    read_from: Option<String>,
    #[serde(default)]
    shard: Vec<RawShard>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    prefix: Option<String>,
    pool: Option<String>,
    ignore_case: Option<bool>,
    mirror: Option<RawMirror>,
    split: Option<RawSplit>,
    remove_prefix: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSplit {
    pool: Option<String>,
    percent: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMirror {
    pool: Option<String>,
    percent: Option<i64>,
    writes_only: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    listen: Option<String>,
    pool: Option<String>,
}

/// A pool: a ring of its own, with its own epochs and membership.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub vnodes: u32,
    pub read_from: ReadFrom,
    /// Sorted by id, as the ring orders shards.
    pub shards: Vec<ShardConfig>,
}

/// Keys starting with `prefix` go to `pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    pub prefix: String,
    pub pool: String,
    /// Match the prefix ASCII-case-insensitively.
    pub ignore_case: bool,
    /// A copy of some of its commands to another pool.
    pub mirror: Option<MirrorConfig>,
    /// Some of its keys go to another pool instead.
    pub split: Option<SplitConfig>,
    /// Its pool's nodes hold its keys without the prefix (see `crate::key_prefix`).
    pub remove_prefix: bool,
}

/// Sends `percent` of a route's keys (those whose hash falls in the lowest `percent` of the
/// hash space: sticky, the same in every router) to `pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitConfig {
    pub pool: String,
    pub percent: u8,
}

/// Copies `percent` of a route's commands (chosen by key hash: a key is always or never
/// mirrored) to `pool`, fire-and-forget; with `writes_only`, writes alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    pub pool: String,
    pub percent: u8,
    pub writes_only: bool,
}

/// A second client address whose keys go to `pool` when no route matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub listen: String,
    pub pool: String,
}

/// A percent field, 0 to 100.
fn percent_field(field: String, percent: i64) -> Result<u8, ConfigError> {
    u8::try_from(percent)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| ConfigError::invalid(field, format!("{percent} is out of range (0 to 100)")))
}

type Validated = (Vec<PoolConfig>, Vec<RouteConfig>, Vec<ListenerConfig>);

/// Checks the pools, routes and listeners against each other and the default pool's `shards`;
/// `vnodes` and `read_from` are `[ring]`'s, the pools' defaults.
pub(crate) fn validate(
    raw_pools: Vec<RawPoolTable>,
    raw_routes: Vec<RawRoute>,
    raw_listeners: Vec<RawListener>,
    shards: &[ShardConfig],
    vnodes: u32,
    read_from: ReadFrom,
) -> Result<Validated, ConfigError> {
    let mut pools: Vec<PoolConfig> = Vec::with_capacity(raw_pools.len());
    for (i, p) in raw_pools.into_iter().enumerate() {
        let field = |name: &str| format!("pool[{i}].{name}");
        let name = p
            .name
            .ok_or_else(|| ConfigError::invalid(field("name"), "missing"))?;
        check_id(&field("name"), &name)?;
        if name == DEFAULT_POOL {
            return Err(ConfigError::invalid(
                field("name"),
                "'default' is the pool of the top-level [[shard]] list",
            ));
        }
        if pools.iter().any(|o| o.name == name) {
            return Err(ConfigError::invalid(
                field("name"),
                format!("'{name}' names two pools"),
            ));
        }
        let vnodes = p.vnodes.unwrap_or(vnodes);
        if vnodes == 0 {
            return Err(ConfigError::invalid(field("vnodes"), "must be at least 1"));
        }
        let read_from = match p.read_from.as_deref() {
            None => read_from,
            v => parse_read_from(&field("read_from"), v)?,
        };
        if p.shard.is_empty() {
            return Err(ConfigError::invalid(
                field("shard"),
                "no [[pool.shard]] tables: a pool needs at least one shard",
            ));
        }
        let pool_shards = validate_shards(&format!("pool[{i}].shard"), p.shard)?;
        for (j, s) in pool_shards.iter().enumerate() {
            let others = shards.iter().chain(pools.iter().flat_map(|o| &o.shards));
            for o in others {
                if o.id == s.id {
                    return Err(ConfigError::invalid(
                        format!("pool[{i}].shard[{j}].id"),
                        format!(
                            "'{}' is already the id of a shard (ids are unique across pools)",
                            s.id
                        ),
                    ));
                }
                if o.primary == s.primary {
                    return Err(ConfigError::invalid(
                        format!("pool[{i}].shard[{j}].primary"),
                        format!("{} is already the primary of shard '{}'", s.primary, o.id),
                    ));
                }
            }
        }
        Ring::new(
            1,
            vnodes,
            pool_shards
                .iter()
                .map(|s| ringcache_protocol::ring::ShardSpec::new(s.id.clone(), s.weight))
                .collect(),
        )
        .map_err(|e| ConfigError::invalid(field("shard"), e.to_string()))?;
        pools.push(PoolConfig {
            name,
            vnodes,
            read_from,
            shards: pool_shards,
        });
    }
    let known = |field: String, name: &str| -> Result<(), ConfigError> {
        if name == DEFAULT_POOL || pools.iter().any(|p| p.name == name) {
            Ok(())
        } else {
            Err(ConfigError::invalid(
                field,
                format!("unknown pool '{name}' (no [[pool]] has this name)"),
            ))
        }
    };
    let mut routes: Vec<RouteConfig> = Vec::with_capacity(raw_routes.len());
    for (i, r) in raw_routes.into_iter().enumerate() {
        let field = |name: &str| format!("route[{i}].{name}");
        let prefix = r
            .prefix
            .ok_or_else(|| ConfigError::invalid(field("prefix"), "missing"))?;
        let pool = r
            .pool
            .ok_or_else(|| ConfigError::invalid(field("pool"), "missing"))?;
        known(field("pool"), &pool)?;
        let ignore_case = r.ignore_case.unwrap_or(false);
        // Two routes the same key would match at the same length: which one wins is unclear.
        let same = |o: &RouteConfig| {
            if o.ignore_case || ignore_case {
                o.prefix.eq_ignore_ascii_case(&prefix)
            } else {
                o.prefix == prefix
            }
        };
        if let Some(o) = routes.iter().position(same) {
            return Err(ConfigError::invalid(
                field("prefix"),
                format!("duplicate prefix '{prefix}' (route[{o}] has it)"),
            ));
        }
        let mirror = match r.mirror {
            None => None,
            Some(m) => {
                let mpool = m
                    .pool
                    .ok_or_else(|| ConfigError::invalid(field("mirror.pool"), "missing"))?;
                known(field("mirror.pool"), &mpool)?;
                if mpool == pool {
                    return Err(ConfigError::invalid(
                        field("mirror.pool"),
                        format!("'{mpool}' is the route's own pool"),
                    ));
                }
                let percent = percent_field(field("mirror.percent"), m.percent.unwrap_or(100))?;
                Some(MirrorConfig {
                    pool: mpool,
                    percent,
                    writes_only: m.writes_only.unwrap_or(false),
                })
            }
        };
        let split = match r.split {
            None => None,
            Some(s) => {
                let spool = s
                    .pool
                    .ok_or_else(|| ConfigError::invalid(field("split.pool"), "missing"))?;
                known(field("split.pool"), &spool)?;
                if spool == pool {
                    return Err(ConfigError::invalid(
                        field("split.pool"),
                        format!("'{spool}' is the route's own pool"),
                    ));
                }
                if mirror.as_ref().is_some_and(|m| m.pool == spool) {
                    // The split's keys would be written there twice (INCR, LPUSH ... twice).
                    return Err(ConfigError::invalid(
                        field("split.pool"),
                        format!("'{spool}' is the route's mirror pool too"),
                    ));
                }
                if ignore_case {
                    // The nodes fence a split's keys by their exact prefix.
                    return Err(ConfigError::invalid(
                        field("split"),
                        "a split route matches its prefix exactly (ignore_case = false)",
                    ));
                }
                let percent = s
                    .percent
                    .ok_or_else(|| ConfigError::invalid(field("split.percent"), "missing"))?;
                Some(SplitConfig {
                    pool: spool,
                    percent: percent_field(field("split.percent"), percent)?,
                })
            }
        };
        let remove_prefix = r.remove_prefix.unwrap_or(false);
        if remove_prefix {
            let refused = if prefix.is_empty() {
                Some("the prefix is empty (nothing to remove)")
            } else if ignore_case {
                Some("a route removing its prefix matches it exactly (ignore_case = false): the name could not be given back")
            } else if split.is_some() {
                Some("a split route keeps its prefix (the nodes fence a split's keys by it)")
            } else if mirror.is_some() {
                Some("a route removing its prefix has no mirror")
            } else if pool == DEFAULT_POOL {
                Some("the pool is 'default', which holds the keys no route matches")
            } else {
                None
            };
            if let Some(why) = refused {
                return Err(ConfigError::invalid(field("remove_prefix"), why));
            }
        }
        routes.push(RouteConfig {
            prefix,
            pool,
            ignore_case,
            mirror,
            split,
            remove_prefix,
        });
    }
    // The nodes fence a split's keys by prefix: a longer route inside it would be fenced too.
    for (i, r) in routes.iter().enumerate() {
        for (j, o) in routes.iter().enumerate() {
            if i != j && r.split.is_some() && o.prefix.len() > r.prefix.len() {
                let inside = if o.ignore_case {
                    o.prefix.as_bytes()[..r.prefix.len()].eq_ignore_ascii_case(r.prefix.as_bytes())
                } else {
                    o.prefix.starts_with(&r.prefix)
                };
                if inside {
                    return Err(ConfigError::invalid(
                        format!("route[{j}].prefix"),
                        format!(
                            "'{}' lies inside route[{i}]'s prefix '{}', which has a split (a split route holds no other route)",
                            o.prefix, r.prefix
                        ),
                    ));
                }
            }
        }
    }
    let mut listeners = Vec::with_capacity(raw_listeners.len());
    for (i, l) in raw_listeners.into_iter().enumerate() {
        let listen = l
            .listen
            .ok_or_else(|| ConfigError::invalid(format!("listener[{i}].listen"), "missing"))?;
        check_addr(&format!("listener[{i}].listen"), &listen)?;
        let pool = l
            .pool
            .ok_or_else(|| ConfigError::invalid(format!("listener[{i}].pool"), "missing"))?;
        known(format!("listener[{i}].pool"), &pool)?;
        listeners.push(ListenerConfig { listen, pool });
    }
    // A pool holding names without a prefix holds nothing else: keys of another route or
    // listener there could not be told apart from them (nor named back in KEYS or SCAN).
    for (i, r) in routes.iter().enumerate().filter(|(_, r)| r.remove_prefix) {
        let other = routes.iter().enumerate().find_map(|(j, o)| {
            let uses = (j != i && o.pool == r.pool)
                || o.split.as_ref().is_some_and(|s| s.pool == r.pool)
                || o.mirror.as_ref().is_some_and(|m| m.pool == r.pool);
            uses.then(|| format!("route[{j}]"))
        });
        let other = other.or_else(|| {
            listeners
                .iter()
                .position(|l| l.pool == r.pool)
                .map(|j| format!("listener[{j}]"))
        });
        if let Some(other) = other {
            return Err(ConfigError::invalid(
                format!("route[{i}].remove_prefix"),
                format!(
                    "pool '{}' would hold this route's keys without their prefix and {other}'s keys too (a pool removing a prefix serves that route alone)",
                    r.pool
                ),
            ));
        }
    }
    Ok((pools, routes, listeners))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::parse_config;

    const BASE: &str = "[[shard]]\nid = \"a\"\nprimary = \"127.0.0.1:7001\"\n";

    fn err(extra: &str) -> String {
        match parse_config(&format!("{BASE}{extra}")) {
            Ok(_) => panic!("accepted:\n{extra}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn pools_routes_and_listeners_load() {
        let c = parse_config(&format!(
            "{BASE}[[pool]]\nname = \"s\"\nvnodes = 64\n[[pool.shard]]\nid = \"s2\"\nprimary = \"127.0.0.1:7102\"\n\
             [[pool.shard]]\nid = \"s1\"\nprimary = \"127.0.0.1:7101\"\n\
             [[route]]\nprefix = \"sess:\"\npool = \"s\"\n\
             [[route]]\nprefix = \"Other:\"\npool = \"default\"\nignore_case = true\n\
             [[listener]]\nlisten = \"127.0.0.1:7005\"\npool = \"s\"\n"
        ))
        .unwrap();
        assert_eq!(c.pools.len(), 1);
        assert_eq!(c.pools[0].vnodes, 64);
        let ids: Vec<_> = c.pools[0].shards.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s1", "s2"]);
        assert!(!c.routes[0].ignore_case && c.routes[1].ignore_case);
        assert_eq!(c.listeners[0].pool, "s");
    }

    #[test]
    fn errors_name_the_field() {
        let pool =
            "[[pool]]\nname = \"s\"\n[[pool.shard]]\nid = \"s1\"\nprimary = \"127.0.0.1:7101\"\n";
        assert!(err("[[route]]\nprefix = \"x\"\npool = \"nope\"\n")
            .starts_with("route[0].pool: unknown pool 'nope'"));
        assert!(err(&format!(
            "{pool}[[route]]\nprefix = \"x\"\npool = \"s\"\n[[route]]\nprefix = \"X\"\npool = \"s\"\nignore_case = true\n"
        ))
        .starts_with("route[1].prefix: duplicate prefix"));
        assert!(err("[[pool]]\nname = \"default\"\n").starts_with("pool[0].name:"));
        assert!(err("[[pool]]\nname = \"s\"\n").starts_with("pool[0].shard:"));
        assert!(err(
            "[[pool]]\nname = \"s\"\n[[pool.shard]]\nid = \"a\"\nprimary = \"127.0.0.1:7101\"\n"
        )
        .starts_with("pool[0].shard[0].id:"));
        assert!(err(&format!(
            "{pool}[[route]]\nprefix = \"x\"\npool = \"default\"\nmirror = {{ pool = \"s\", percent = 101 }}\n"
        ))
        .starts_with("route[0].mirror.percent: 101 is out of range"));
        assert!(
            err("[[route]]\nprefix = \"x\"\npool = \"default\"\nmirror = { pool = \"q\" }\n")
                .starts_with("route[0].mirror.pool: unknown pool 'q'")
        );
        assert!(err(&format!(
            "{pool}[[l4]]\nlisten = \"127.0.0.1:7444\"\npool = \"replicas:s/zz\"\n"
        ))
        .starts_with("l4[0].pool: 'replicas:s/zz': pool 's' has no shard 'zz'"));
        parse_config(&format!(
            "{BASE}{pool}[[l4]]\nlisten = \"127.0.0.1:7444\"\npool = \"replicas:s/s1\"\n"
        ))
        .unwrap();
        assert!(
            err("[[listener]]\nlisten = \"127.0.0.1:7005\"\npool = \"q\"\n")
                .starts_with("listener[0].pool: unknown pool")
        );
    }

    #[test]
    fn splits_are_checked() {
        let pool =
            "[[pool]]\nname = \"s\"\n[[pool.shard]]\nid = \"s1\"\nprimary = \"127.0.0.1:7101\"\n";
        let route =
            |extra: &str| format!("{pool}[[route]]\nprefix = \"u:\"\npool = \"default\"\n{extra}");
        let c = parse_config(&format!(
            "{BASE}{}",
            route("split = { pool = \"s\", percent = 10 }\n")
        ))
        .unwrap();
        let split = c.routes[0].split.as_ref().unwrap();
        assert_eq!((split.pool.as_str(), split.percent), ("s", 10));
        assert!(err(&route("split = { pool = \"s\", percent = 101 }\n"))
            .starts_with("route[0].split.percent: 101 is out of range"));
        assert!(err(&route("split = { pool = \"s\" }\n"))
            .starts_with("route[0].split.percent: missing"));
        assert!(err(&route("split = { pool = \"q\", percent = 1 }\n"))
            .starts_with("route[0].split.pool: unknown pool 'q'"));
        assert!(err(&route("split = { pool = \"default\", percent = 1 }\n"))
            .starts_with("route[0].split.pool: 'default' is the route's own pool"));
        assert!(err(&route(
            "ignore_case = true\nsplit = { pool = \"s\", percent = 1 }\n"
        ))
        .starts_with("route[0].split: a split route matches its prefix exactly"));
        assert!(err(&route(
            "split = { pool = \"s\", percent = 1 }\n[[route]]\nprefix = \"u:vip:\"\npool = \"s\"\n"
        ))
        .starts_with("route[1].prefix: 'u:vip:' lies inside route[0]'s prefix 'u:'"));
        assert!(err(&route(
            "mirror = { pool = \"s\" }\nsplit = { pool = \"s\", percent = 1 }\n"
        ))
        .starts_with("route[0].split.pool: 's' is the route's mirror pool too"));
    }

    #[test]
    fn a_route_removing_its_prefix_has_its_pool_alone() {
        let pools = "[[pool]]\nname = \"s\"\n[[pool.shard]]\nid = \"s1\"\nprimary = \"127.0.0.1:7101\"\n[[pool]]\nname = \"t\"\n[[pool.shard]]\nid = \"t1\"\nprimary = \"127.0.0.1:7102\"\n";
        let route = |extra: &str| {
            format!(
                "{pools}[[route]]\nprefix = \"u:\"\npool = \"s\"\nremove_prefix = true\n{extra}"
            )
        };
        let c = parse_config(&format!("{BASE}{}", route(""))).unwrap();
        assert!(c.routes[0].remove_prefix);
        let refused = |extra: &str, want: &str| {
            let e = err(&route(extra));
            assert!(e.starts_with(want), "{e}");
        };
        refused(
            "ignore_case = true\n",
            "route[0].remove_prefix: a route removing its prefix matches it exactly",
        );
        refused(
            "split = { pool = \"t\", percent = 5 }\n",
            "route[0].remove_prefix: a split route keeps its prefix",
        );
        refused(
            "mirror = { pool = \"t\" }\n",
            "route[0].remove_prefix: a route removing its prefix has no mirror",
        );
        refused("[[route]]\nprefix = \"v:\"\npool = \"s\"\n", "route[0].remove_prefix: pool 's' would hold this route's keys without their prefix and route[1]'s");
        refused(
            "[[route]]\nprefix = \"v:\"\npool = \"default\"\nmirror = { pool = \"s\" }\n",
            "route[0].remove_prefix: pool 's' would hold",
        );
        refused("[[listener]]\nlisten = \"127.0.0.1:7005\"\npool = \"s\"\n", "route[0].remove_prefix: pool 's' would hold this route's keys without their prefix and listener[0]'s");
        let e = err(&format!(
            "{pools}[[route]]\nprefix = \"u:\"\npool = \"default\"\nremove_prefix = true\n"
        ));
        assert!(
            e.starts_with("route[0].remove_prefix: the pool is 'default'"),
            "{e}"
        );
        let e = err(&format!(
            "{pools}[[route]]\nprefix = \"\"\npool = \"s\"\nremove_prefix = true\n"
        ));
        assert!(
            e.starts_with("route[0].remove_prefix: the prefix is empty"),
            "{e}"
        );
    }
}
