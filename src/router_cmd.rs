//! `ringcache router`: flags, config, bind, then `ringcache_router::run`.

use std::future::Future;
use std::path::PathBuf;

use anyhow::{Context, Result};

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
    ringcache_router::run(config, listener, shutdown).await?;
    Ok(())
}
