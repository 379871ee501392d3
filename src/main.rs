//! `ringcache`: one binary for the cache node, the router, the local cluster launcher and the admin
//! tool. This file only parses flags, sets up tracing and calls the libraries' `run`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

// mimalloc (measured faster than glibc for the small buffers requests allocate), counting what
// it hands out: a node's used_memory and maxmemory are the allocator's own figures.
#[global_allocator]
static GLOBAL: ringcache_alloc::Counting = ringcache_alloc::Counting;

#[derive(Parser)]
#[command(
    name = "ringcache",
    version,
    about = "A distributed, Redis-compatible cache cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

mod ctl;
mod fd_limit;
mod health;
mod router_cmd;
mod up;
mod up_tls;

#[derive(Subcommand)]
enum Command {
    /// Run a cache node (a Redis-compatible server).
    // Boxed: its TLS flags make it much larger than the other variants.
    Node(Box<NodeArgs>),
    /// Run the router: the consistent-hash RESP proxy, L4 listeners and admin, from cluster.toml.
    Router(router_cmd::RouterArgs),
    /// Start the local cluster cluster.toml describes (nodes, then the router) and wait for Ctrl-C.
    Up(up::UpArgs),
    /// Exit 0 if a node or router answers PING (container health checks).
    Health(health::HealthArgs),
    /// Membership changes through a router (join, leave, status, cancel), with a progress bar.
    Ctl(ctl::CtlArgs),
}

#[derive(clap::Args)]
struct NodeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Port to listen on (0 picks a free port and prints it).
    #[arg(long, default_value_t = 7001)]
    port: u16,
    /// Bytes the keyspace may hold, e.g. 256mb or 1gb; 0 means no limit.
    #[arg(long, default_value = "0")]
    maxmemory: String,
    /// Password clients must give with AUTH (better from the environment, which `ps` does not
    /// show; RINGCACHE_PASSWORD sets it and the cluster user's at once).
    #[arg(long, env = "RINGCACHE_REQUIREPASS", hide_env_values = true)]
    requirepass: Option<String>,
    /// User this node's links to other nodes (to its primary, to migration targets)
    /// authenticate as: Redis's masteruser.
    #[arg(long, env = "RINGCACHE_PRIMARY_USER")]
    primary_user: Option<String>,
    /// Password of those links: Redis's masterauth.
    #[arg(long, env = "RINGCACHE_PRIMARY_AUTH", hide_env_values = true)]
    primary_auth: Option<String>,
    /// ACL users file (Redis's aclfile format), loaded at start and by ACL LOAD, written by ACL
    /// SAVE. A `user default ...` line in it replaces --requirepass.
    #[arg(long, value_name = "PATH")]
    aclfile: Option<std::path::PathBuf>,
    /// Failed AUTHs a client address may make in a burst (then a quarter of this a second);
    /// 0 = no limit.
    #[arg(long, default_value_t = ringcache_protocol::acl::limit::DEFAULT_BURST)]
    auth_failure_limit: u64,
    /// Maximum number of connected clients.
    #[arg(long, default_value_t = 10000)]
    maxclients: usize,
    /// Close clients idle for this many seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    timeout: u64,
    /// Largest bulk string a client may send, in bytes (Redis's proto-max-bulk-len).
    #[arg(long, default_value = "512mb")]
    proto_max_bulk_len: String,
    /// Start as a replica of this primary (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    replica_of: Option<String>,
    /// The shard id this node serves in a cluster.
    #[arg(long)]
    shard_id: Option<String>,
    /// Threads that serve client connections, each owning its connections (0 = the runtime's
    /// shared worker pool). One runs commands in arrival order, as Redis's one thread does.
    #[arg(long, default_value_t = 1)]
    io_threads: usize,
    /// Port of the TLS listener (0 = none). With it, `--port 0` means no plain listener, as in
    /// Redis.
    #[arg(long, default_value_t = 0)]
    tls_port: u16,
    /// The TLS listener's certificate chain (PEM).
    #[arg(long)]
    tls_cert_file: Option<String>,
    /// The TLS listener's private key (PEM).
    #[arg(long)]
    tls_key_file: Option<String>,
    /// CA (PEM) that clients' certificates, and the peers of this node's TLS links, are checked
    /// against.
    #[arg(long)]
    tls_ca_cert_file: Option<String>,
    /// yes: clients must present a certificate (with --tls-ca-cert-file); no; optional.
    #[arg(long, default_value = "yes")]
    tls_auth_clients: String,
    /// yes: a replica's link to its primary uses TLS.
    #[arg(long, default_value = "no")]
    tls_replication: String,
    /// yes: migration links to other nodes use TLS.
    #[arg(long, default_value = "no")]
    tls_cluster: String,
}

/// A Redis yes/no flag.
fn yes_no(flag: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => anyhow::bail!("{flag}: '{v}' is not yes or no"),
    }
}

fn node_config(a: NodeArgs) -> Result<ringcache_node::NodeConfig> {
    use ringcache_node::config::parse_memory;
    let maxmemory = parse_memory(&a.maxmemory)
        .with_context(|| format!("--maxmemory: '{}' is not a memory size", a.maxmemory))?;
    let bulk = parse_memory(&a.proto_max_bulk_len).with_context(|| {
        format!(
            "--proto-max-bulk-len: '{}' is not a size",
            a.proto_max_bulk_len
        )
    })?;
    let cluster_password = std::env::var(ringcache_router::config::ENV_PASSWORD)
        .ok()
        .filter(|p| !p.is_empty());
    let mut c = ringcache_node::NodeConfig {
        bind: a.bind,
        port: a.port,
        maxmemory,
        requirepass: a
            .requirepass
            .filter(|p| !p.is_empty())
            .or_else(|| cluster_password.clone()),
        link: node_link(a.primary_user, a.primary_auth, cluster_password.as_deref())?,
        cluster_user: cluster_password.map(|password| ringcache_client::Credentials {
            user: Some(ringcache_router::config::CLUSTER_USER.into()),
            password,
        }),
        aclfile: a.aclfile,
        auth_failure_limit: a.auth_failure_limit,
        maxclients: fd_limit::fit(a.maxclients),
        timeout: a.timeout,
        replica_of: a.replica_of,
        shard_id: a.shard_id,
        ..Default::default()
    };
    c.limits.max_bulk_len = i64::try_from(bulk).context("--proto-max-bulk-len too large")?;
    c.tls = ringcache_node::config::TlsSettings {
        port: a.tls_port,
        cert_file: a.tls_cert_file,
        key_file: a.tls_key_file,
        ca_cert_file: a.tls_ca_cert_file,
        auth_clients: ringcache_protocol::tls::ClientAuth::parse(&a.tls_auth_clients)
            .with_context(|| {
                format!(
                    "--tls-auth-clients: '{}' is not yes, no or optional",
                    a.tls_auth_clients
                )
            })?,
        replication: yes_no("--tls-replication", &a.tls_replication)?,
        cluster: yes_no("--tls-cluster", &a.tls_cluster)?,
        client: None,
    };
    if c.tls.replication || c.tls.cluster {
        let files = c.tls.client_files().map_err(anyhow::Error::msg)?;
        c.tls.client =
            Some(ringcache_protocol::tls::TlsClient::new(&files).map_err(anyhow::Error::msg)?);
    }
    Ok(c)
}

/// Credentials of a node's links to other nodes: `--primary-user`/`--primary-auth`, else the
/// cluster user when RINGCACHE_PASSWORD is set.
fn node_link(
    user: Option<String>,
    auth: Option<String>,
    cluster_password: Option<&str>,
) -> Result<ringcache_client::LinkSpec> {
    use ringcache_client::{Credentials, LinkSpec};
    let user = user.filter(|u| !u.is_empty());
    let auth = match (auth.filter(|p| !p.is_empty()), cluster_password) {
        (Some(password), _) => Some(Credentials { user, password }),
        (None, Some(pw)) => Some(Credentials {
            user: Some(user.unwrap_or_else(|| ringcache_router::config::CLUSTER_USER.into())),
            password: pw.to_string(),
        }),
        (None, None) if user.is_some() => {
            anyhow::bail!("--primary-user needs --primary-auth (or RINGCACHE_PRIMARY_AUTH)")
        }
        (None, None) => None,
    };
    Ok(LinkSpec::with_auth(auth))
}

/// Resolves on SIGINT or SIGTERM (`docker stop` sends SIGTERM). The handlers are installed when
/// this is called, not when the future is first polled: a SIGTERM right after the "listening"
/// line must not find the default action (death by the signal) still in place.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            tracing::info!("shutdown signal received");
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown signal received");
        }
    }
}

async fn run_node(args: NodeArgs) -> Result<()> {
    // Before the "listening" line: a signal from then on stops the node gracefully.
    let shutdown = shutdown_signal();
    let io_threads = args.io_threads;
    let config = node_config(args)?;
    if let Some(path) = &config.aclfile {
        // A bad aclfile refuses to start, before the node is reachable.
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--aclfile: reading {}", path.display()))?;
        ringcache_protocol::acl::file::parse(path, &text)
            .map_err(|e| anyhow::anyhow!("--aclfile: {e}"))?;
    }
    if io_threads > 0 {
        ringcache_node::server::start_io_threads(io_threads)?;
    }
    let tls = match config.tls.server_files().map_err(anyhow::Error::msg)? {
        Some(files) => {
            Some(ringcache_protocol::tls::TlsServer::new(files).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    // As in Redis, port 0 with a TLS port means no plain listener.
    let plain = if tls.is_some() && config.port == 0 {
        None
    } else {
        Some(
            ringcache_node::bind(&config)
                .await
                .with_context(|| format!("binding {}:{}", config.bind, config.port))?,
        )
    };
    let tls_listener = ringcache_node::server::bind_tls(&config)
        .await
        .with_context(|| format!("binding {}:{}", config.bind, config.tls.port))?;
    let plain_addr = plain.as_ref().map(|l| l.local_addr()).transpose()?;
    let tls_addr = tls_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let port = plain_addr.map_or(0, |a| a.port());
    let shared = ringcache_node::state::Shared::new(config, port, ringcache_node::cmd::apply);
    // Before the listening lines: a node with a bad aclfile never looks started.
    ringcache_node::server::load_users(&shared)?;
    if let Some(tls) = &tls {
        tokio::spawn(reload_tls_on_sighup(tls.clone()));
    }
    if let Some(addr) = tls_addr {
        println!("ringcache node listening for TLS on {addr}");
        tracing::info!(%addr, "node listening for TLS");
    }
    if let Some(addr) = plain_addr {
        // Tests and `ringcache up` read this line to learn the port.
        println!("ringcache node listening on {addr}");
        tracing::info!(%addr, "node listening");
    }
    let listeners = ringcache_node::server::Listeners {
        plain,
        tls: tls_listener.zip(tls),
    };
    ringcache_node::server::serve_listeners(shared, listeners, shutdown).await?;
    Ok(())
}

/// Reads the TLS certificates again on every SIGHUP (new handshakes use them; a bad file keeps
/// the old ones). Only a node with TLS watches SIGHUP.
///
/// The handler is installed when this is called, not when the future first runs: a SIGHUP right
/// after the "listening" line must not find the default action (death) still in place.
fn reload_tls_on_sighup(
    tls: std::sync::Arc<ringcache_protocol::tls::TlsServer>,
) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup());
    async move {
        let mut hup = match hup {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; TLS certificates not reloadable");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                Err(e) => tracing::warn!(error = %e, "SIGHUP: TLS certificates not reloaded"),
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Parked idle connections free their tasks; this hands the pages back to the OS.
    ringcache_protocol::park::set_release_hook(ringcache_alloc::release_free_pages);
    let mut builder = if std::env::var("RINGCACHE_THREADS").as_deref() == Ok("1") {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringcache: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Node(a) => run_node(*a).await,
            Command::Router(a) => router_cmd::run(a, shutdown_signal()).await,
            Command::Up(a) => up::run(a, shutdown_signal()).await,
            Command::Health(a) => health::run(a),
            Command::Ctl(a) => ctl::run(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringcache: {e:#}");
            ExitCode::FAILURE
        }
    }
}
