//! `ringcache up`: runs the local cluster cluster.toml describes. It starts every node the file
//! lists (each shard's primary and its replicas) as child processes of this executable, waits until
//! each answers PING, then starts `ringcache router --config <same file>` the same way (so the
//! router's code and config validation stay in one place), prints how to connect, and supervises:
//! Ctrl-C / SIGTERM, or any child dying, stops the router first and then the nodes (SIGTERM, then
//! SIGKILL after a grace period).
//!
//! Children run in their own process groups so a terminal's Ctrl-C reaches only `up`, which then
//! stops them in order; they are also `kill_on_drop`, so no error path leaves one behind (only a
//! SIGKILL of `up` itself, which nothing can catch, would orphan them).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ringcache_protocol::tls::TlsClient;
use ringcache_router::RouterConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::up_tls::UpTls;

/// How long each node, and then the router, gets to print its listening line and answer PING.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of a child's output kept to explain why it failed.
const RECENT_LINES: usize = 20;

const NODE_LISTENING: &str = "ringcache node listening on ";
const NODE_LISTENING_TLS: &str = "ringcache node listening for TLS on ";
const ROUTER_LISTENING_TLS: &str = "ringcache router listening for TLS on ";
const ROUTER_LISTENING: &str = "ringcache router listening on ";
const ROUTER_METRICS: &str = "ringcache router metrics on ";

#[derive(clap::Args)]
pub struct UpArgs {
    /// The cluster description.
    #[arg(long, default_value = "cluster.toml")]
    pub config: PathBuf,
    /// Every listener and link on TLS: certificates made in --tls-dir (kept for the next
    /// start), nodes TLS-only, the router's clients on TLS at the file's `listen` address.
    #[arg(long)]
    pub tls: bool,
    /// Where --tls keeps its CA, certificate and key.
    #[arg(long, default_value = "ringcache-tls")]
    pub tls_dir: PathBuf,
}

/// One node process to start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodePlan {
    shard: String,
    /// `None` for the primary, the primary's address for a replica.
    replica_of: Option<String>,
    host: String,
    port: u16,
}

impl NodePlan {
    fn addr(&self) -> String {
        join_host_port(&self.host, self.port)
    }

    /// "node a" for a primary, "replica a/1" for a shard's first replica.
    fn name(&self, replica_no: usize) -> String {
        match self.replica_of {
            None => format!("node {}", self.shard),
            Some(_) => format!("replica {}/{}", self.shard, replica_no),
        }
    }

    fn args(&self, tls: Option<&UpTls>) -> Vec<String> {
        let mut args = vec!["node".to_string(), "--bind".to_string(), self.host.clone()];
        match tls {
            Some(tls) => args.extend(tls.node_args(self.port)),
            None => args.extend(["--port".to_string(), self.port.to_string()]),
        }
        args.extend(["--shard-id".to_string(), self.shard.clone()]);
        if let Some(primary) = &self.replica_of {
            args.push("--replica-of".to_string());
            args.push(primary.clone());
        }
        args
    }
}

/// What `up` starts, in order: the nodes, then the router.
#[derive(Debug)]
struct Plan {
    /// (display name, node) in file order: each shard's primary, then its replicas.
    nodes: Vec<(String, NodePlan)>,
    router_listen: String,
    metrics: Option<String>,
    shards: usize,
}

/// What `up` starts for a validated cluster file. The router's own loader has checked the whole
/// file (unknown fields, ids, weights, addresses); `up` adds what only matters for starting nodes.
fn plan(config: &RouterConfig) -> Result<Plan> {
    let mut addrs = HashSet::new();
    let mut nodes = Vec::new();
    // Every pool's shards: the top-level list (`default`), then each `[[pool]]`'s.
    let all = config
        .shards
        .iter()
        .chain(config.pools.iter().flat_map(|p| &p.shards));
    for shard in all {
        let what = format!("shard `{}` primary", shard.id);
        let (host, port) = node_host_port(&shard.primary, &what)?;
        let primary = NodePlan {
            shard: shard.id.clone(),
            replica_of: None,
            host,
            port,
        };
        let primary_addr = primary.addr();
        nodes.push((primary.name(0), primary));
        for (r, replica) in shard.replicas.iter().enumerate() {
            let what = format!("shard `{}` replica {}", shard.id, r + 1);
            let (host, port) = node_host_port(replica, &what)?;
            let node = NodePlan {
                shard: shard.id.clone(),
                replica_of: Some(primary_addr.clone()),
                host,
                port,
            };
            nodes.push((node.name(r + 1), node));
        }
    }
    if nodes.is_empty() {
        bail!("no [[shard]] table: the cluster needs at least one shard");
    }
    for (name, node) in &nodes {
        if !addrs.insert(node.addr()) {
            bail!("{name}: address {} is used twice", node.addr());
        }
    }
    for (what, addr) in [
        ("listen", Some(&config.listen)),
        ("metrics", config.metrics.as_ref()),
    ] {
        if let Some(addr) = addr {
            if addrs.contains(addr) {
                bail!("[router] {what} = {addr:?} is also a node's address");
            }
        }
    }
    Ok(Plan {
        nodes,
        router_listen: config.listen.clone(),
        metrics: config.metrics.clone(),
        shards: config.shards.len() + config.pools.iter().map(|p| p.shards.len()).sum::<usize>(),
    })
}

/// `host:port` or `[v6]:port` → (host without brackets, port).
fn split_host_port(addr: &str) -> Result<(String, u16)> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("expected HOST:PORT, e.g. 127.0.0.1:7001"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("expected HOST:PORT, the host is empty");
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| anyhow!("`{port}` is not a port number (0-65535)"))?;
    Ok((host.to_string(), port))
}

fn node_host_port(addr: &str, what: &str) -> Result<(String, u16)> {
    let (host, port) = split_host_port(addr).with_context(|| format!("{what} {addr:?}"))?;
    if port == 0 {
        // The router finds nodes by the addresses in the file, so they must be fixed.
        bail!("{what} {addr:?}: port 0 is not allowed for a node; the router needs a fixed port");
    }
    Ok((host, port))
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// A process `up` started: its output goes to our stderr prefixed with `[name]`; stdout lines also
/// arrive on `lines` so we can read the listening line.
struct ChildProc {
    name: String,
    process: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    recent: Arc<Mutex<VecDeque<String>>>,
    /// Set once we reaped it.
    status: Option<ExitStatus>,
}

impl ChildProc {
    fn spawn(name: &str, exe: &Path, args: &[String]) -> Result<ChildProc> {
        let mut cmd = tokio::process::Command::new(exe);
        if !std::io::stderr().is_terminal() {
            // Their logs end up in a file or pipe through ours: no colour escapes there.
            cmd.env("NO_COLOR", "1");
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut process = cmd.spawn().with_context(|| {
            format!("{name}: cannot start {} {}", exe.display(), args.join(" "))
        })?;
        let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT_LINES)));
        let (tx, lines) = mpsc::unbounded_channel();
        if let Some(out) = process.stdout.take() {
            tokio::spawn(pump(name.to_string(), out, recent.clone(), Some(tx)));
        }
        if let Some(err) = process.stderr.take() {
            tokio::spawn(pump(name.to_string(), err, recent.clone(), None));
        }
        Ok(ChildProc {
            name: name.to_string(),
            process,
            lines,
            recent,
            status: None,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    fn recent_output(&self) -> String {
        let recent = match self.recent.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        if recent.is_empty() {
            return "  (no output)".to_string();
        }
        recent
            .iter()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The error for a child that exited while we waited for it to become ready.
    async fn exited_early(&mut self, what: &str) -> anyhow::Error {
        let status = tokio::time::timeout(Duration::from_secs(2), self.process.wait()).await;
        let status = match status {
            Ok(Ok(s)) => {
                self.status = Some(s);
                s.to_string()
            }
            Ok(Err(e)) => format!("status unknown: {e}"),
            Err(_) => "closed its output".to_string(),
        };
        // Let the output pumps flush the last lines before we quote them.
        tokio::time::sleep(Duration::from_millis(50)).await;
        anyhow!(
            "{} exited before {what} ({status}); its last output:\n{}",
            self.name,
            self.recent_output()
        )
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest. Fails if the child
    /// exits or `deadline` passes first.
    async fn wait_line(&mut self, prefix: &str, deadline: Instant) -> Result<String> {
        loop {
            tokio::select! {
                line = self.lines.recv() => match line {
                    Some(line) => {
                        if let Some(rest) = line.strip_prefix(prefix) {
                            return Ok(rest.trim().to_string());
                        }
                    }
                    None => return Err(self.exited_early("it was ready").await),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    bail!(
                        "{} did not print `{prefix}ADDR` within {:?}; its last output:\n{}",
                        self.name,
                        READY_TIMEOUT,
                        self.recent_output()
                    );
                }
            }
        }
    }

    /// Retries PING on `addr` (over TLS with `tls`) until it is answered; fails if the child
    /// exits or `deadline` passes.
    async fn wait_ping(
        &mut self,
        addr: &str,
        tls: Option<&TlsClient>,
        deadline: Instant,
    ) -> Result<()> {
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return Err(self.exited_early("it answered PING").await);
            }
            match ping(addr, tls).await {
                Ok(()) => return Ok(()),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "{} on {addr} did not answer PING within {:?} (last attempt: {last})",
            self.name,
            READY_TIMEOUT
        )
    }

    fn exited(&mut self) -> bool {
        if self.status.is_some() {
            return true;
        }
        if let Ok(Some(s)) = self.process.try_wait() {
            self.status = Some(s);
        }
        self.status.is_some()
    }

    /// Asks the child to stop (SIGTERM) without waiting.
    async fn terminate(&mut self) {
        if self.exited() {
            return;
        }
        #[cfg(unix)]
        if let Some(pid) = self.pid() {
            let sent = tokio::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success());
            if sent {
                return;
            }
        }
        let _ = self.process.start_kill();
    }

    /// Waits until `deadline` for the child to exit, then kills it (SIGKILL) and reaps it.
    async fn reap(&mut self, deadline: Instant) {
        if self.status.is_some() {
            return;
        }
        match tokio::time::timeout_at(deadline, self.process.wait()).await {
            Ok(Ok(s)) => self.status = Some(s),
            Ok(Err(_)) => {}
            Err(_) => {
                eprintln!(
                    "ringcache up: {} did not stop within {STOP_GRACE:?} of SIGTERM; killing it",
                    self.name
                );
                let _ = self.process.start_kill();
                if let Ok(Ok(s)) =
                    tokio::time::timeout(Duration::from_secs(5), self.process.wait()).await
                {
                    self.status = Some(s);
                }
            }
        }
    }
}

/// Copies a child's output to our stderr, `[name] line`, keeps the last lines, and hands stdout
/// lines to `tx`.
async fn pump(
    name: String,
    out: impl AsyncRead + Unpin,
    recent: Arc<Mutex<VecDeque<String>>>,
    tx: Option<mpsc::UnboundedSender<String>>,
) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{name}] {line}");
        {
            let mut recent = match recent.lock() {
                Ok(r) => r,
                Err(poisoned) => poisoned.into_inner(),
            };
            if recent.len() == RECENT_LINES {
                recent.pop_front();
            }
            recent.push_back(line.clone());
        }
        if let Some(tx) = &tx {
            let _ = tx.send(line);
        }
    }
}

/// One PING on a fresh connection; any reply (even `-NOAUTH`) means the server is up and
/// speaking RESP.
async fn ping(addr: &str, tls: Option<&TlsClient>) -> Result<()> {
    let timeout = Duration::from_secs(1);
    let mut c = ringcache_client::Client::connect_with(addr, timeout, tls).await?;
    c.call(&["PING"], timeout).await?;
    Ok(())
}

/// Fails if something already accepts connections on `addr`: then our node would fail to bind,
/// or, worse, an old process would answer in its place.
async fn ensure_free(addr: &str, what: &str, config: &Path) -> Result<()> {
    if let Ok((_, 0)) = split_host_port(addr) {
        return Ok(());
    }
    let connected = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr))
        .await
        .is_ok_and(|r| r.is_ok());
    if connected {
        bail!(
            "{what}: {addr} is already in use (something accepts connections there; an earlier \
             `ringcache up` still running?). Stop it or change the port in {}",
            config.display()
        );
    }
    Ok(())
}

/// Everything `up` started, in start order (nodes, then the router).
#[derive(Default)]
struct Children {
    nodes: Vec<ChildProc>,
    router: Option<ChildProc>,
}

impl Children {
    fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.router.is_none()
    }

    /// Resolves with the first child that exits, and its exit status.
    async fn first_exit(&mut self) -> (String, String) {
        let mut all: Vec<&mut ChildProc> =
            self.nodes.iter_mut().chain(self.router.as_mut()).collect();
        std::future::poll_fn(|cx| {
            for child in all.iter_mut() {
                // `Child::wait` is cancel safe: a fresh future per poll keeps the registration.
                let wait = child.process.wait();
                tokio::pin!(wait);
                if let Poll::Ready(r) = wait.as_mut().poll(cx) {
                    let status = match r {
                        Ok(s) => {
                            child.status = Some(s);
                            s.to_string()
                        }
                        Err(e) => format!("wait failed: {e}"),
                    };
                    return Poll::Ready((child.name.clone(), status));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Stops the router, then every node: SIGTERM, then SIGKILL after [`STOP_GRACE`].
    async fn stop_all(&mut self) {
        if let Some(router) = self.router.as_mut() {
            router.terminate().await;
            router.reap(Instant::now() + STOP_GRACE).await;
        }
        for node in &mut self.nodes {
            node.terminate().await;
        }
        let deadline = Instant::now() + STOP_GRACE;
        for node in &mut self.nodes {
            node.reap(deadline).await;
        }
    }
}

/// Where the cluster ended up listening.
struct Ready {
    router: String,
    /// The router's TLS listener (`--tls`), which clients use then.
    router_tls: Option<String>,
    metrics: Option<String>,
    nodes: usize,
}

async fn start(
    plan: &Plan,
    exe: &Path,
    config: &Path,
    tls: Option<&UpTls>,
    children: &mut Children,
) -> Result<Ready> {
    for (name, node) in &plan.nodes {
        ensure_free(&node.addr(), name, config).await?;
    }
    ensure_free(&plan.router_listen, "router listen", config).await?;
    if let Some(m) = &plan.metrics {
        ensure_free(m, "router metrics", config).await?;
    }

    for (name, node) in &plan.nodes {
        let child = ChildProc::spawn(name, exe, &node.args(tls))?;
        children.nodes.push(child);
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    for (child, (_, node)) in children.nodes.iter_mut().zip(&plan.nodes) {
        let listening = if tls.is_some() {
            NODE_LISTENING_TLS
        } else {
            NODE_LISTENING
        };
        let addr = child.wait_line(listening, deadline).await?;
        child
            .wait_ping(&addr, tls.map(UpTls::client), deadline)
            .await?;
        let role = match &node.replica_of {
            None => "primary".to_string(),
            Some(p) => format!("replica of {p}"),
        };
        println!("ringcache up: {} ({role}) listening on {addr}", child.name);
    }

    let config_arg = match tls {
        Some(tls) => tls.router_config(config, &plan.router_listen)?,
        None => config.to_path_buf(),
    }
    .display()
    .to_string();
    let router = children.router.insert(ChildProc::spawn(
        "router",
        exe,
        &["router".to_string(), "--config".to_string(), config_arg],
    )?);
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut listening = None;
    let mut metrics = None;
    let mut listening_tls = None;
    // The lines may come in any order; the metrics line only when metrics is configured, the
    // TLS one with --tls.
    while listening.is_none()
        || (plan.metrics.is_some() && metrics.is_none())
        || (tls.is_some() && listening_tls.is_none())
    {
        let wait_more = if listening.is_some() {
            // The listening line is the contract; give the metrics line a short while after it.
            deadline.min(Instant::now() + Duration::from_secs(3))
        } else {
            deadline
        };
        let line = tokio::select! {
            line = router.lines.recv() => line,
            _ = tokio::time::sleep_until(wait_more) => {
                if listening.is_some() {
                    break;
                }
                bail!(
                    "the router did not print `{ROUTER_LISTENING}ADDR` within {READY_TIMEOUT:?}; \
                     its last output:\n{}",
                    router.recent_output()
                );
            }
        };
        let Some(line) = line else {
            return Err(router.exited_early("it was ready").await);
        };
        if let Some(rest) = line.strip_prefix(ROUTER_LISTENING) {
            listening = Some(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix(ROUTER_METRICS) {
            metrics = Some(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix(ROUTER_LISTENING_TLS) {
            listening_tls = Some(rest.trim().to_string());
        }
    }
    let router_addr = listening.ok_or_else(|| anyhow!("the router printed no listening line"))?;
    router.wait_ping(&router_addr, None, deadline).await?;
    if let (Some(tls), Some(addr)) = (tls, &listening_tls) {
        router.wait_ping(addr, Some(tls.client()), deadline).await?;
    } else if tls.is_some() {
        bail!("the router printed no `{ROUTER_LISTENING_TLS}ADDR` line");
    }
    let metrics = metrics.or_else(|| {
        let configured = plan.metrics.clone()?;
        eprintln!(
            "ringcache up: the router did not print `{ROUTER_METRICS}ADDR`; assuming {configured}"
        );
        Some(configured)
    });
    Ok(Ready {
        router: router_addr,
        router_tls: listening_tls,
        metrics,
        nodes: plan.nodes.len(),
    })
}

/// `redis-cli` arguments reaching `addr` (just `-p PORT` for the local host).
fn redis_cli_args(addr: &str) -> String {
    match split_host_port(addr) {
        Ok((host, port))
            if matches!(
                host.as_str(),
                "127.0.0.1" | "localhost" | "0.0.0.0" | "::" | "::1"
            ) =>
        {
            format!("-p {port}")
        }
        Ok((host, port)) => format!("-h {host} -p {port}"),
        Err(_) => addr.to_string(),
    }
}

fn metrics_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return addr.to_string();
    }
    let addr = match split_host_port(addr) {
        Ok((host, port)) if host == "0.0.0.0" || host == "::" => join_host_port("127.0.0.1", port),
        _ => addr.to_string(),
    };
    format!("http://{addr}/metrics")
}

fn print_banner(plan: &Plan, ready: &Ready, tls: Option<&UpTls>) {
    let cli = match (&ready.router_tls, tls) {
        (Some(addr), Some(tls)) => format!(
            "--tls --cacert {} {}",
            tls.ca().display(),
            redis_cli_args(addr)
        ),
        _ => redis_cli_args(&ready.router),
    };
    if let (Some(addr), Some(_)) = (&ready.router_tls, tls) {
        println!("ringcache up: router listening for TLS on {addr}");
    }
    if let Some(m) = &ready.metrics {
        println!("ringcache up: router metrics on {}", metrics_url(m));
    }
    // Tests read this line to learn the router's address.
    println!("ringcache up: router listening on {}", ready.router);
    println!(
        "ringcache up: ready: {} shard(s), {} node(s). Try:",
        plan.shards, ready.nodes
    );
    println!("    redis-cli {cli}");
    println!("    redis-cli {cli} RING STATUS");
    println!("    redis-cli {cli} RING NODES");
    println!("    redis-cli {cli} RING LOCATE somekey");
    if let Some(m) = &ready.metrics {
        println!("    curl -s {}", metrics_url(m));
    }
    println!("ringcache up: Ctrl-C (or SIGTERM) stops the router and every node.");
}

pub async fn run(args: UpArgs, shutdown: impl Future<Output = ()>) -> Result<()> {
    let config = &args.config;
    let cluster = ringcache_router::load_config(config).with_context(|| {
        format!(
            "invalid cluster file {} (run from the repository root, or pass --config PATH)",
            config.display()
        )
    })?;
    let plan = plan(&cluster).with_context(|| format!("{}", config.display()))?;
    let exe = std::env::current_exe().context("cannot find the ringcache executable")?;
    let tls = match args.tls {
        true => {
            let mut hosts: Vec<String> = plan.nodes.iter().map(|(_, n)| n.host.clone()).collect();
            // Clients check the router's certificate against the name they dial.
            if let Ok((host, _)) = split_host_port(&plan.router_listen) {
                hosts.push(host);
            }
            Some(UpTls::prepare(&args.tls_dir, &hosts)?)
        }
        false => None,
    };

    tokio::pin!(shutdown);
    let mut children = Children::default();
    let started = tokio::select! {
        r = start(&plan, &exe, config, tls.as_ref(), &mut children) => Some(r),
        _ = &mut shutdown => None,
    };
    let ready = match started {
        Some(Ok(ready)) => ready,
        Some(Err(e)) if children.is_empty() => return Err(e),
        Some(Err(e)) => {
            children.stop_all().await;
            return Err(e.context("the cluster did not start; stopped what had started"));
        }
        None => {
            println!("ringcache up: interrupted while starting; stopping");
            children.stop_all().await;
            return Ok(());
        }
    };
    print_banner(&plan, &ready, tls.as_ref());

    let died = tokio::select! {
        _ = &mut shutdown => None,
        exit = children.first_exit() => Some(exit),
    };
    match died {
        None => {
            println!("ringcache up: stopping the router and the nodes");
            children.stop_all().await;
            println!("ringcache up: stopped");
            Ok(())
        }
        Some((name, status)) => {
            eprintln!("ringcache up: {name} exited unexpectedly ({status}); stopping the rest");
            children.stop_all().await;
            bail!("{name} exited unexpectedly ({status}); the cluster was stopped")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan_of(text: &str) -> Result<Plan> {
        plan(&ringcache_router::parse_config(text)?)
    }

    #[test]
    fn default_cluster_file_parses() {
        let plan = plan_of(include_str!("../cluster.toml")).unwrap();
        assert_eq!(plan.router_listen, "127.0.0.1:7000");
        assert_eq!(plan.metrics.as_deref(), Some("127.0.0.1:9121"));
        let addrs: Vec<String> = plan.nodes.iter().map(|(_, n)| n.addr()).collect();
        assert_eq!(
            addrs,
            [
                "127.0.0.1:7001",
                "127.0.0.1:7011",
                "127.0.0.1:7002",
                "127.0.0.1:7012",
                "127.0.0.1:7003",
                "127.0.0.1:7013"
            ]
        );
        assert_eq!(plan.nodes[1].0, "replica a/1");
        assert_eq!(plan.nodes[2].0, "node b");
        assert_eq!(
            plan.nodes[0].1.args(None),
            [
                "node",
                "--bind",
                "127.0.0.1",
                "--port",
                "7001",
                "--shard-id",
                "a"
            ]
        );
    }

    #[test]
    fn replicas_get_replica_of() {
        let plan = plan_of(
            r#"
            [router]
            listen = "127.0.0.1:0"
            [[shard]]
            id = "a"
            primary = "127.0.0.1:7101"
            replicas = ["127.0.0.1:7102", "[::1]:7103"]
            "#,
        )
        .unwrap();
        assert_eq!(plan.nodes.len(), 3);
        assert_eq!(plan.nodes[2].0, "replica a/2");
        let args = plan.nodes[2].1.args(None);
        assert_eq!(&args[1..5], ["--bind", "::1", "--port", "7103"]);
        assert_eq!(&args[7..], ["--replica-of", "127.0.0.1:7101"]);
        assert_eq!(plan.metrics, None);
    }

    #[test]
    fn bad_files_are_explained() {
        let head = "[router]\nlisten = \"127.0.0.1:0\"\n";
        let cases = [
            (format!("{head}bogus = 1\n[[shard]]\nid = \"a\"\nprimary = \"127.0.0.1:1\"\n"), "bogus"),
            (head.to_string(), "shard"),
            (
                format!("{head}[[shard]]\nid = \"a\"\nprimary = \"127.0.0.1:0\"\n"),
                "port 0 is not allowed",
            ),
            (
                format!("{head}[[shard]]\nid = \"a\"\nprimary = \"127.0.0.1:1\"\nreplicas = [\"127.0.0.1:1\"]\n"),
                "used twice",
            ),
            (
                "[router]\nlisten = \"127.0.0.1:7001\"\n[[shard]]\nid = \"a\"\nprimary = \"127.0.0.1:7001\"\n"
                    .to_string(),
                "also a node's address",
            ),
        ];
        for (text, want) in cases {
            let e = format!("{:#}", plan_of(&text).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn connect_hints() {
        assert_eq!(redis_cli_args("127.0.0.1:7000"), "-p 7000");
        assert_eq!(redis_cli_args("10.0.0.5:7000"), "-h 10.0.0.5 -p 7000");
        assert_eq!(
            metrics_url("127.0.0.1:9121"),
            "http://127.0.0.1:9121/metrics"
        );
        assert_eq!(metrics_url("0.0.0.0:9121"), "http://127.0.0.1:9121/metrics");
    }
}
