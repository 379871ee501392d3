//! Adding and removing key-prefix routes live (`RING ROUTE ADD | DEL`; SIGHUP sends them for
//! the routes its file added or removed). A change is made only if it sends no key to another
//! pool than the one holding it, so routers that have not made it yet agree with those that
//! have on where every key is, and nothing moves. Keys change pool only through a split: a
//! route added to the pool its keys are in now, with a split to the new pool at 0%, then
//! `RING SPLIT <prefix> 100` moves them with the split's fences (nothing lost, no stale read).

use crate::pools::View;
use crate::pools_config::{RouteConfig, SplitConfig};
use crate::routes::Routes;
use crate::split::Splits;
use crate::state::Router;

/// `RING ROUTE ADD <prefix> <pool> [SPLIT <pool>]`: a route with no split yet (0%).
pub fn add(router: &Router, prefix: &str, pool: &str, split: Option<&str>) -> Result<(), String> {
    let _g = router.split_lock.try_lock().map_err(|_| busy())?;
    let view = router.view();
    quiet(&view)?;
    let routes = &view.routes;
    let same = |o: &&RouteConfig| {
        if o.ignore_case {
            o.prefix.eq_ignore_ascii_case(prefix)
        } else {
            o.prefix == prefix
        }
    };
    if let Some(o) = routes.list.iter().find(same) {
        return Err(format!("ERR a route with prefix '{}' exists", o.prefix));
    }
    let index = pool_index(router, pool)?;
    let mut pools = vec![pool];
    if let Some(s) = split {
        pool_index(router, s)?;
        if s == pool {
            return Err(format!("ERR '{s}' is the route's own pool"));
        }
        pools.push(s);
    }
    if let Some(p) = pools.iter().find(|p| routes.strips(p)) {
        return Err(format!(
            "ERR pool '{p}' serves a route removing its prefix, and that route alone"
        ));
    }
    for o in &routes.list {
        // A split's fences are by prefix: no route inside a split route.
        let inside = |outer: &str, inner: &str| {
            inner.len() > outer.len() && inner.as_bytes().starts_with(outer.as_bytes())
        };
        if o.split.is_some() && inside(&o.prefix, prefix) {
            return Err(format!(
                "ERR '{prefix}' lies inside '{}', which has a split (a split route holds no other route)",
                o.prefix
            ));
        }
        if split.is_some() && inside(prefix, &o.prefix) {
            return Err(format!(
                "ERR route '{}' lies inside '{prefix}' (a split route holds no other route)",
                o.prefix
            ));
        }
    }
    for d in defaults(routes) {
        let now = view.route(prefix.as_bytes(), d);
        if now.pool != index || now.cut > 0 {
            let name = |p: usize| router.pools.get(p).map_or("?", |p| p.name.as_str());
            return Err(format!(
                "ERR keys under '{prefix}' are in pool '{}' now: a route to '{pool}' would leave them behind (add it to '{}' with SPLIT {pool}, then RING SPLIT {prefix} 100 moves them)",
                name(now.pool),
                name(now.pool)
            ));
        }
    }
    let mut list = routes.list.clone();
    list.push(RouteConfig {
        prefix: prefix.to_string(),
        pool: pool.to_string(),
        ignore_case: false,
        mirror: None,
        split: split.map(|s| SplitConfig {
            pool: s.to_string(),
            percent: 0,
        }),
        remove_prefix: false,
    });
    store(router, &view, list);
    tracing::info!(prefix, pool, split, "route added");
    Ok(())
}

/// `RING ROUTE DEL <prefix>`: only if its keys go to the same pool without it.
pub fn remove(router: &Router, prefix: &str) -> Result<(), String> {
    let _g = router.split_lock.try_lock().map_err(|_| busy())?;
    let view = router.view();
    quiet(&view)?;
    let routes = &view.routes;
    let Some(r) = routes.list.iter().position(|o| o.prefix == prefix) else {
        return Err(format!("ERR no route with prefix '{prefix}'"));
    };
    let route = &routes.list[r];
    if route.remove_prefix || route.ignore_case {
        return Err(format!(
            "ERR route '{prefix}' has remove_prefix or ignore_case: its keys' names or matches change without it (restart the router with the new config)"
        ));
    }
    if let Some(Some(s)) = view.splits.by_route.get(r) {
        if s.percent > 0 || s.moving.is_some() {
            return Err(format!(
                "ERR route '{prefix}' sends {}% of its keys to its split's pool: RING SPLIT {prefix} 0 first",
                s.percent
            ));
        }
    }
    let home = routes.pool_of_route(r);
    let mut list = routes.list.clone();
    list.remove(r);
    let next = routes.rebuilt(list.clone(), |n| named(router, n));
    for d in defaults(routes) {
        let then = next.route(prefix.as_bytes(), d);
        if then.pool != home || then.cut > 0 {
            let name = router.pools.get(then.pool).map_or("?", |p| p.name.as_str());
            return Err(format!(
                "ERR without route '{prefix}' its keys would go to pool '{name}' and leave their own behind (move them with a split first)"
            ));
        }
    }
    store(router, &view, list);
    tracing::info!(prefix, "route removed");
    Ok(())
}

fn busy() -> String {
    "ERR a split change is under way: change routes once it is done".to_string()
}

/// Route indexes shift with a change: none while a mover of a split runs.
fn quiet(view: &View) -> Result<(), String> {
    if view.splits.moving()
        || view
            .splits
            .driving
            .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err("ERR a split is moving keys: change routes once it is done".to_string());
    }
    Ok(())
}

fn named(router: &Router, name: &str) -> usize {
    router.pool_named(name).map_or(0, |p| p.index)
}

fn pool_index(router: &Router, name: &str) -> Result<usize, String> {
    router
        .pool_named(name)
        .map(|p| p.index)
        .ok_or_else(|| format!("ERR no pool named '{name}'"))
}

/// The default pools clients may have: `default`'s and every listener's.
fn defaults(routes: &Routes) -> Vec<usize> {
    let mut out = vec![0];
    out.extend(&routes.listeners);
    out.sort_unstable();
    out.dedup();
    out
}

/// Publishes routes `list` with the splits carried over by prefix (a new one at its 0%), then
/// adopts the nodes' record again, so an added split route takes the cluster's percent.
fn store(router: &Router, view: &View, list: Vec<RouteConfig>) {
    let routes = view.routes.rebuilt(list, |n| named(router, n));
    let old = &view.splits;
    // A split route added live is configured at 0%; the others keep their live state.
    let by_route = Splits::from_routes(&routes, |n| named(router, n))
        .by_route
        .into_iter()
        .map(|s| {
            let s = s?;
            let kept = old.by_route.iter().flatten().find(|l| l.prefix == s.prefix);
            Some(kept.cloned().unwrap_or(s))
        })
        .collect();
    let mut splits = Splits {
        by_route,
        ..(**old).clone()
    };
    let foreign = std::mem::take(&mut splits.foreign);
    splits.foreign = foreign
        .into_iter()
        .filter(|f| splits.index_of(&f.prefix).is_none())
        .collect();
    let adopted = splits.adopted.clone();
    let version = splits.version;
    router.store_routes(routes, splits);
    if let Some((v, record)) = adopted.filter(|(v, _)| *v == version) {
        crate::split_change::adopt(router, v, &record);
    }
}
