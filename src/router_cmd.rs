//! `ringcache router`: flags, config, bind, then `ringcache_router::run`. SIGHUP re-reads the
//! config file and applies its membership difference as `RING JOIN`s and `RING LEAVE`s, one at a
//! time, through the router's own admin commands.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ringcache_protocol::Reply;
use ringcache_router::rebalance::{parse_ring_nodes, reply_text, status_field, NodeConn};

#[derive(clap::Args)]
pub struct RouterArgs {
    /// The cluster description (router listen address, ring, shards).
    #[arg(long, default_value = "cluster.toml")]
    pub config: PathBuf,
}

pub async fn run(args: RouterArgs, shutdown: impl Future<Output = ()>) -> Result<()> {
    let config = ringcache_router::load_config(&args.config)
        .with_context(|| format!("invalid router config {}", args.config.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen.as_str())
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Tests and `ringcache up` read this line to learn the port.
    println!("ringcache router listening on {addr}");
    tracing::info!(%addr, config = %args.config.display(), "router listening");
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(args.config.clone(), addr));
    ringcache_router::run(config, listener, shutdown).await?;
    Ok(())
}

/// Applies the config file's membership on every SIGHUP (signals arriving during a reload are
/// coalesced into one more reload).
#[cfg(unix)]
async fn reload_on_sighup(path: PathBuf, listen: SocketAddr) {
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
        match reload(&path, listen).await {
            Ok(done) => tracing::info!(changes = %done, "reload done"),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "reload failed"),
        }
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
/// A join or leave answers once its epoch is in effect, which takes a few round trips.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Re-reads `path` and applies the membership difference: joins first (capacity before
/// removal), then leaves, each waited for until its keys have moved. Other settings need a
/// restart.
async fn reload(path: &Path, listen: SocketAddr) -> Result<String> {
    let config = ringcache_router::load_config(path)
        .with_context(|| format!("invalid router config {}", path.display()))?;
    let addr = local_addr(listen).to_string();
    let mut conn = NodeConn::connect(&addr, ADMIN_TIMEOUT)
        .await
        .map_err(|e| anyhow!(e))?;
    if let Some(pw) = &config.requirepass {
        let r = conn
            .call(&["AUTH", pw.as_str()], ADMIN_TIMEOUT)
            .await
            .map_err(|e| anyhow!(e))?;
        if let Reply::Error(e) = r {
            bail!("AUTH: {e}");
        }
    }
    let nodes = conn
        .call(&["RING", "NODES"], ADMIN_TIMEOUT)
        .await
        .map_err(|e| anyhow!(e))?;
    let current = parse_ring_nodes(&nodes);
    let mut done = Vec::new();
    for s in &config.shards {
        match current.iter().find(|c| c.id == s.id) {
            Some(c) if c.primary != s.primary || c.weight != s.weight => tracing::warn!(
                shard = %s.id,
                "primary or weight changed in the config: not applied (leave and join again under a new id)"
            ),
            Some(_) => {}
            None => {
                let mut args = vec![
                    "RING".to_string(),
                    "JOIN".into(),
                    s.id.clone(),
                    s.primary.clone(),
                ];
                args.extend(s.replicas.iter().cloned());
                args.extend(["WEIGHT".to_string(), s.weight.to_string()]);
                change(&mut conn, &args).await?;
                done.push(format!("join {}", s.id));
            }
        }
    }
    for c in &current {
        if !config.shards.iter().any(|s| s.id == c.id) {
            let args = ["RING".to_string(), "LEAVE".into(), c.id.clone()];
            change(&mut conn, &args).await?;
            done.push(format!("leave {}", c.id));
        }
    }
    Ok(if done.is_empty() {
        "none: the membership already matches".to_string()
    } else {
        done.join(", ")
    })
}

/// Sends one RING JOIN/LEAVE and waits until its keys have moved (logging progress).
async fn change(conn: &mut NodeConn, args: &[String]) -> Result<()> {
    let what = args[1..].join(" ");
    tracing::info!(change = %what, "reload: starting");
    if let Reply::Error(e) = conn
        .call(args, CHANGE_TIMEOUT)
        .await
        .map_err(|e| anyhow!(e))?
    {
        bail!("RING {what}: {e}");
    }
    let mut polls = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let st = conn
            .call(&["RING", "STATUS"], ADMIN_TIMEOUT)
            .await
            .map_err(|e| anyhow!(e))?;
        let text = reply_text(&st).unwrap_or_default();
        if status_field(&text, "migrating") == Some("0") {
            let state = status_field(&text, "last_state").unwrap_or("unknown");
            if state != "done" {
                bail!("RING {what} ended {state}");
            }
            tracing::info!(
                change = %what,
                keys = status_field(&text, "last_keys_moved").unwrap_or("?"),
                secs = status_field(&text, "last_elapsed_s").unwrap_or("?"),
                "reload: change done"
            );
            return Ok(());
        }
        polls += 1;
        if polls.is_multiple_of(10) {
            tracing::info!(
                change = %what,
                arcs_done = status_field(&text, "arcs_done").unwrap_or("?"),
                arcs_total = status_field(&text, "arcs_total").unwrap_or("?"),
                keys = status_field(&text, "keys_moved").unwrap_or("?"),
                "reload: moving"
            );
        }
    }
}
