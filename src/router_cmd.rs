//! `ringcache router`: flags, config, bind, then `ringcache_router::run`. SIGHUP re-reads the
//! config file and applies each pool's membership difference as `RING JOIN`s and `RING LEAVE`s,
//! one at a time, and each split percent or mirror changed in the file as `RING SPLIT` or
//! `RING MIRROR`, through the router's own admin commands.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ringcache_client::admin::{Admin, RingChange};
use ringcache_router::pools_config::RouteConfig;

#[derive(clap::Args)]
pub struct RouterArgs {
    /// The cluster description (router listen address, ring, shards).
    #[arg(long, default_value = "cluster.toml")]
    pub config: PathBuf,
}

pub async fn run(args: RouterArgs, shutdown: impl Future<Output = ()>) -> Result<()> {
    let mut config = ringcache_router::load_config(&args.config)
        .with_context(|| format!("invalid router config {}", args.config.display()))?;
    config.max_clients = crate::fd_limit::fit(config.max_clients);
    let listener = tokio::net::TcpListener::bind(config.listen.as_str())
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Tests and `ringcache up` read this line to learn the port.
    println!("ringcache router listening on {addr}");
    tracing::info!(%addr, config = %args.config.display(), "router listening");
    let tls = ringcache_router::bind_tls(&config)
        .await
        .context("the TLS listener (router.tls_listen)")?;
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(
        args.config.clone(),
        addr,
        tls.as_ref().map(|t| t.1.clone()),
        config.routes.clone(),
    ));
    ringcache_router::run_listeners(config, listener, tls, shutdown).await?;
    Ok(())
}

/// Applies the config file's membership on every SIGHUP (signals arriving during a reload are
/// coalesced into one more reload), and reloads the TLS listener's certificates.
#[cfg(unix)]
async fn reload_on_sighup(
    path: PathBuf,
    listen: SocketAddr,
    tls: Option<std::sync::Arc<ringcache_protocol::tls::TlsServer>>,
    mut routes: Vec<RouteConfig>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; config reload disabled");
            return;
        }
    };
    while hup.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP: reloading the membership");
        if let Some(tls) = &tls {
            reload_tls(&path, tls);
        }
        match reload(&path, listen, &mut routes).await {
            Ok(done) => tracing::info!(changes = %done, "reload done"),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "reload failed"),
        }
    }
}

/// New handshakes take the certificates the config file names now (the files read again); on an
/// error the old ones stay.
fn reload_tls(path: &Path, tls: &ringcache_protocol::tls::TlsServer) {
    let result = match ringcache_router::load_config(path) {
        Ok(c) => match c.tls {
            Some(t) => tls.reload_from(t.files),
            None => Err(
                "router.tls_listen is gone from the config: a restart removes the listener".into(),
            ),
        },
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
        Err(e) => tracing::warn!(error = %e, "SIGHUP: TLS certificates not reloaded"),
    }
}

/// The router's own address as a client reaches it (a wildcard bind is reached on loopback).
fn local_addr(listen: SocketAddr) -> SocketAddr {
    let mut a = listen;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(500);

/// Re-reads `path` and applies each pool's membership difference: joins first (capacity before
/// removal), then leaves, each waited for until its keys have moved, pool after pool (`default`
/// first); then the routes the file removed or added (`RING ROUTE`: only those moving no key),
/// and each split percent and mirror the file changed since it was last read (`routes`: as read
/// then; a percent changed with `RING SPLIT` stays until the file changes it). Pools the router
/// did not start with, a route's new pool, `ignore_case` or `remove_prefix`, and other settings
/// need a restart.
async fn reload(path: &Path, listen: SocketAddr, routes: &mut Vec<RouteConfig>) -> Result<String> {
    let config = ringcache_router::load_config(path)
        .with_context(|| format!("invalid router config {}", path.display()))?;
    let addr = local_addr(listen).to_string();
    let mut admin = Admin::connect(&addr, config.requirepass.as_deref(), ADMIN_TIMEOUT).await?;
    let mut pools = vec![(None, config.shards.as_slice())];
    pools.extend(
        config
            .pools
            .iter()
            .map(|p| (Some(p.name.clone()), p.shards.as_slice())),
    );
    let mut done = Vec::new();
    for (pool, shards) in pools {
        admin.pool = pool;
        let current = admin.nodes().await?;
        let mut changes = Vec::new();
        for s in shards {
            match current.iter().find(|c| c.id == s.id) {
                Some(c) if c.primary != s.primary || c.weight != s.weight => tracing::warn!(
                    shard = %s.id,
                    "primary or weight changed in the config: not applied (leave and join again under a new id)"
                ),
                Some(_) => {}
                None => changes.push(RingChange::Join {
                    id: s.id.clone(),
                    primary: s.primary.clone(),
                    replicas: s.replicas.clone(),
                    weight: s.weight,
                }),
            }
        }
        for c in &current {
            if !shards.iter().any(|s| s.id == c.id) {
                changes.push(RingChange::Leave { id: c.id.clone() });
            }
        }
        for change in &changes {
            apply(&mut admin, change).await?;
            let what = change.describe();
            done.push(match &admin.pool {
                Some(p) => format!("{what} (pool {p})"),
                None => what,
            });
        }
    }
    admin.pool = None;
    *routes = apply_routes(&mut admin, routes, &config.routes, &mut done).await;
    if done.is_empty() {
        return Ok("none: the membership, routes, splits and mirrors already match".to_string());
    }
    Ok(done.join(", "))
}

/// Sends `RING ROUTE DEL` for each route gone from `before` to `now` and `RING ROUTE ADD` for
/// each new one (routes matched by prefix), then `RING SPLIT` for each split percent and `RING
/// MIRROR` for each mirror that changed; one refused does not stop the others. Returns the
/// routes the router has now: `now`, but a route whose adding was refused left out and one
/// whose removal was refused kept (the next reload tries them again).
async fn apply_routes(
    admin: &mut Admin,
    before: &[RouteConfig],
    now: &[RouteConfig],
    done: &mut Vec<String>,
) -> Vec<RouteConfig> {
    let mut kept = now.to_vec();
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let mut changes: Vec<(Vec<String>, String)> = Vec::new();
    for b in before
        .iter()
        .filter(|b| !now.iter().any(|r| r.prefix == b.prefix))
    {
        let args = words(&["RING", "ROUTE", "DEL", &b.prefix]);
        changes.push((args, format!("route '{}' removed", b.prefix)));
    }
    for r in now {
        let Some(old) = before.iter().find(|b| b.prefix == r.prefix) else {
            let mut args = words(&["RING", "ROUTE", "ADD", &r.prefix, &r.pool]);
            if let Some(s) = &r.split {
                args.extend(words(&["SPLIT", &s.pool]));
            }
            if r.ignore_case || r.remove_prefix {
                tracing::warn!(route = %r.prefix, "reload: a new route with ignore_case or remove_prefix needs a restart");
                kept.retain(|k| k.prefix != r.prefix);
                continue;
            }
            changes.push((args, format!("route '{}' added", r.prefix)));
            continue;
        };
        let split_pool = |c: &RouteConfig| c.split.as_ref().map(|s| s.pool.clone());
        if old.pool != r.pool
            || old.ignore_case != r.ignore_case
            || old.remove_prefix != r.remove_prefix
            || split_pool(old) != split_pool(r)
        {
            tracing::warn!(route = %r.prefix, "reload: a route's pool, split pool, ignore_case or remove_prefix changed: not applied (keys change pool through a split)");
        }
    }
    for (args, what) in changes {
        match admin.command(&args, "RING").await {
            Ok(_) => done.push(what),
            Err(e) => {
                tracing::warn!(route = %args[3], error = %e, "reload: not applied");
                match before.iter().find(|b| b.prefix == args[3]) {
                    Some(b) => kept.push(b.clone()),
                    None => kept.retain(|r| r.prefix != args[3]),
                }
            }
        }
    }
    for r in now
        .iter()
        .filter(|r| kept.iter().any(|k| k.prefix == r.prefix))
    {
        let old = before.iter().find(|b| b.prefix == r.prefix);
        let mut commands: Vec<(Vec<String>, String)> = Vec::new();
        if let Some(s) = &r.split {
            if old
                .and_then(|o| o.split.as_ref())
                .is_none_or(|o| o.percent != s.percent)
            {
                let args = ["RING", "SPLIT", &r.prefix, &s.percent.to_string()].map(String::from);
                commands.push((
                    args.to_vec(),
                    format!("split '{}' to {}%", r.prefix, s.percent),
                ));
            }
        }
        if old.is_none_or(|o| o.mirror != r.mirror) {
            let mut args = vec!["RING".to_string(), "MIRROR".into(), r.prefix.clone()];
            match &r.mirror {
                None => args.push("OFF".into()),
                Some(m) => {
                    args.extend([m.pool.clone(), m.percent.to_string()]);
                    if m.writes_only {
                        args.push("WRITES_ONLY".into());
                    }
                }
            }
            commands.push((args, format!("mirror of '{}' set", r.prefix)));
        }
        for (args, what) in commands {
            match admin.command(&args, "RING").await {
                Ok(_) => done.push(what),
                Err(e) => tracing::warn!(route = %r.prefix, error = %e, "reload: not applied"),
            }
        }
    }
    kept
}

/// Sends one RING JOIN/LEAVE and waits until its keys have moved (logging progress).
async fn apply(admin: &mut Admin, change: &RingChange) -> Result<()> {
    let what = change.describe();
    tracing::info!(change = %what, "reload: starting");
    admin.start(change).await?;
    let mut polls = 0u64;
    let st = admin
        .follow(POLL, |st| {
            polls += 1;
            if polls.is_multiple_of(10) {
                tracing::info!(
                    change = %what,
                    arcs_done = st.field("arcs_done").unwrap_or("?"),
                    arcs_total = st.field("arcs_total").unwrap_or("?"),
                    keys = st.field("keys_moved").unwrap_or("?"),
                    "reload: moving"
                );
            }
        })
        .await?;
    change.outcome(&st)?;
    tracing::info!(
        change = %what,
        keys = st.field("last_keys_moved").unwrap_or("?"),
        secs = st.field("last_elapsed_s").unwrap_or("?"),
        "reload: change done"
    );
    Ok(())
}
