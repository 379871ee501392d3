//! The docker compose backend: the cluster of `docker-compose.yml`, already up under a project
//! name, driven with the docker CLI. Faults are `docker kill` (SIGKILL), `docker pause` /
//! `unpause` (the cgroup freezer), `docker network disconnect` / `connect` (a node cut off from
//! the router and its peers) and `docker restart` of the router; spare shards (profile `spare`)
//! are started with `up -d` and joined by service name.
//!
//! The harness reaches the routers (services `router`, `router2`) through their published ports
//! and the nodes only through a router (`RING NODES` says who is primary) or the docker CLI.
//! Both routers mount the same config; a restarted router reads the
//! config mounted at [`ROUTER_CONFIG_IN_CONTAINER`]; the harness rewrites that host file with the
//! current membership first, unless it is the repository's own `deploy/cluster.compose.toml`
//! (`RINGCACHE_ROUTER_CONFIG` in docker-compose.yml picks another file; scripts/compose-test
//! mounts a copy).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ringcache_client::blocking;

use super::backend::{
    router_index, router_name, shard_tables, Backend, RouterShard, ShardState, Verbs,
};
use super::client::RingNode;

pub const ROUTER_SERVICE: &str = "router";
pub const ROUTER_CONFIG_IN_CONTAINER: &str = "/etc/ringcache/cluster.toml";
const DOCKER_TIMEOUT: Duration = Duration::from_secs(30);
const UP_TIMEOUT: Duration = Duration::from_secs(300);
const HEALTHY_WAIT: Duration = Duration::from_secs(90);
const ROUTER_WAIT: Duration = Duration::from_secs(30);
/// Grace `docker restart` gives the router between SIGTERM and SIGKILL.
const ROUTER_STOP_GRACE_S: u32 = 10;

/// What the harness needs to find the project.
#[derive(Debug, Clone)]
pub struct ComposeOpts {
    pub project: String,
    pub file: PathBuf,
    /// The routers' published RESP addresses on this host: `router`'s, then `router2`'s, ….
    pub routers: Vec<SocketAddr>,
}

pub struct Compose {
    cli: Vec<String>,
    opts: ComposeOpts,
    /// Services by name; a spare's appear when it is started.
    containers: HashMap<String, String>,
    /// Every service in the compose file (spare profile included).
    services: BTreeSet<String>,
    initial: Vec<ShardState>,
    /// The port nodes listen on inside the network (`a-primary:7001`).
    node_port: u16,
    /// Host path of the router's mounted config, when the harness may rewrite it.
    config: Result<PathBuf, String>,
    /// The router config without its `[[shard]]` tables.
    config_base: String,
    /// How stale a replica read may be (`None`: the router reads from primaries).
    read_bound: Option<Duration>,
    down: HashSet<String>,
    paused: HashSet<String>,
    /// Cut nodes and the networks they were on.
    cut: HashMap<String, Vec<String>>,
}

/// `docker compose` (v2 plugin) or `docker-compose` (v1, ≥ 1.28 for profiles), whichever answers:
/// the same choice scripts/compose-test makes.
pub fn compose_cli() -> Result<Vec<String>> {
    for cli in [vec!["docker", "compose"], vec!["docker-compose"]] {
        let mut argv: Vec<String> = cli.iter().map(|s| (*s).to_string()).collect();
        argv.push("version".into());
        if run(&argv, Duration::from_secs(20)).is_ok() {
            argv.pop();
            return Ok(argv);
        }
    }
    bail!("neither 'docker compose' nor 'docker-compose' answers")
}

/// Runs `argv` (bounded by `timeout`, then SIGKILLed); its stdout, or an error with its stderr.
pub fn run(argv: &[String], timeout: Duration) -> Result<String> {
    let (prog, args) = argv.split_first().context("empty command")?;
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {prog}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let shown = argv.join(" ");
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let err: String = err.trim().chars().take(600).collect();
            bail!("`{shown}` exited with {}: {err}", out.status)
        }
        Ok(Err(e)) => Err(anyhow!("`{shown}`: {e}")),
        Err(_) => {
            let _ = ::tests::send_signal(pid, "KILL");
            bail!("`{shown}` did not finish within {timeout:?}")
        }
    }
}

fn docker(args: &[&str], timeout: Duration) -> Result<String> {
    let mut argv = vec!["docker".to_string()];
    argv.extend(args.iter().map(|a| (*a).to_string()));
    run(&argv, timeout)
}

/// Compose's project-name normalisation (lower case; letters, digits, `-` and `_`).
pub fn normalize_project(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The host part of `host:port`.
fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// `text` without the key lines of its `[[shard]]` tables (comments and blank lines stay), and
/// where the first one was (as a byte offset), to put the current ones there.
pub fn strip_shard_tables(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut in_shard = false;
    let mut at = None;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_shard = t.starts_with("[[shard]]");
            if in_shard {
                at.get_or_insert(out.len());
                continue;
            }
        }
        if in_shard && !(t.is_empty() || t.starts_with('#')) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let at = at.unwrap_or(out.len());
    (out, at)
}

/// How far behind its writes a read through the router may be: `None` when it reads from
/// primaries; else the config's `max_replica_lag` (the router's default when unset) plus one
/// health-check interval, the age of the lag figure the router goes by.
pub fn replica_read_bound(config: &str) -> Result<Option<Duration>> {
    use ringcache_router::config::ReadFrom;
    let c = ringcache_router::parse_config(config).map_err(|e| anyhow!("{e}"))?;
    if c.ring.read_from == ReadFrom::Primary {
        return Ok(None);
    }
    let probe = ringcache_router::l4::HealthSettings::default().interval;
    Ok(Some(
        c.ring
            .max_replica_lag
            .unwrap_or(ringcache_router::proxy::DEFAULT_MAX_REPLICA_LAG)
            + probe,
    ))
}

/// Sends PING to the router on `addr` from the host; true on `+PONG`.
fn router_pongs(addr: SocketAddr) -> bool {
    let t = Duration::from_millis(800);
    let Ok(mut c) = blocking::Client::connect(&addr.to_string(), t) else {
        return false;
    };
    if c.send_cmd(&["PING"]).is_err() {
        return false;
    }
    c.read(t).is_ok_and(|r| r.raw.starts_with(b"+PONG"))
}

impl Compose {
    /// Finds the project's containers and the membership the router reports (`ring`, from RING
    /// NODES), and the spare shards the compose file has beyond it.
    pub fn connect(opts: ComposeOpts, ring: &[RingNode]) -> Result<Compose> {
        if ring.is_empty() {
            bail!(
                "the router on {} lists no shard (RING NODES)",
                opts.routers
                    .first()
                    .map_or_else(|| "?".into(), |a| a.to_string())
            );
        }
        let cli = compose_cli()?;
        let mut c = Compose {
            cli,
            opts,
            containers: HashMap::new(),
            services: BTreeSet::new(),
            initial: Vec::new(),
            node_port: 7001,
            config: Err("not looked up".into()),
            config_base: String::new(),
            read_bound: None,
            down: HashSet::new(),
            paused: HashSet::new(),
            cut: HashMap::new(),
        };
        c.services = c
            .compose(
                &["--profile", "spare", "config", "--services"],
                DOCKER_TIMEOUT,
            )?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        c.refresh_containers()?;
        for i in 0..c.opts.routers.len() {
            let service = router_name(i);
            if !c.containers.contains_key(&service) {
                bail!(
                    "no '{service}' container in compose project '{}' (is it up? --compose-project / COMPOSE_PROJECT; --routers {} needs a router service per router)",
                    c.opts.project,
                    c.opts.routers.len()
                );
            }
        }
        if let Some(port) = ring
            .first()
            .and_then(|n| n.primary.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
        {
            c.node_port = port;
        }
        // Members as the router has them (a failover may have swapped a shard's roles).
        for n in ring {
            let primary = host_of(&n.primary).to_string();
            let replica = n
                .replicas
                .iter()
                .map(|r| host_of(r).to_string())
                .find(|r| c.services.contains(r));
            for node in std::iter::once(&primary).chain(replica.as_ref()) {
                if !c.services.contains(node) {
                    bail!("shard {}'s node {node} is not a service of the compose file: the router's config and docker-compose.yml disagree", n.id);
                }
            }
            c.initial.push(ShardState {
                id: n.id.clone(),
                primary,
                replica,
                member: true,
                ever_member: true,
            });
        }
        // Spares: `<id>-primary` services of shards not in the ring.
        let spares: Vec<String> = c
            .services
            .iter()
            .filter_map(|s| s.strip_suffix("-primary"))
            .filter(|id| !ring.iter().any(|n| n.id == *id))
            .map(str::to_string)
            .collect();
        for id in spares {
            let mut s = ShardState::new(&id, false);
            if s.replica.as_ref().is_some_and(|r| !c.services.contains(r)) {
                s.replica = None;
            }
            c.initial.push(s);
        }
        // Nodes of the ring that are not running (a killed primary the router keeps listed).
        let states = c.states()?;
        for s in c.initial.iter().filter(|s| s.member) {
            for node in std::iter::once(&s.primary).chain(s.replica.as_ref()) {
                if states.get(node).map(String::as_str) != Some("running") {
                    c.down.insert(node.clone());
                }
            }
        }
        match c.find_config() {
            Ok((path, writable)) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the router's config {}", path.display()))?;
                c.read_bound = replica_read_bound(&text)
                    .with_context(|| format!("the router's config {}", path.display()))?;
                let (base, at) = strip_shard_tables(&text);
                c.config_base = base;
                c.config_base.insert_str(at, "@SHARDS@");
                c.config = writable.map(|()| path);
            }
            Err(e) => c.config = Err(e),
        }
        Ok(c)
    }

    /// Where the router's config lives on this host, and whether the harness may rewrite it.
    fn find_config(&self) -> Result<(PathBuf, Result<(), String>), String> {
        let id = self.id(ROUTER_SERVICE).map_err(|e| format!("{e:#}"))?;
        let fmt = format!(
            "{{{{range .Mounts}}}}{{{{if eq .Destination \"{ROUTER_CONFIG_IN_CONTAINER}\"}}}}{{{{.Source}}}}{{{{end}}}}{{{{end}}}}"
        );
        let src =
            docker(&["inspect", "-f", &fmt, &id], DOCKER_TIMEOUT).map_err(|e| format!("{e:#}"))?;
        let src = PathBuf::from(src.trim());
        if src.as_os_str().is_empty() {
            return Err(format!(
                "the router container mounts nothing at {ROUTER_CONFIG_IN_CONTAINER}"
            ));
        }
        let tracked = ::tests::workspace_root().join("deploy/cluster.compose.toml");
        let same = match (src.canonicalize(), tracked.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let writable = if same {
            Err(format!(
                "the router reads the repository's {} (not rewritten by the harness): start the cluster with RINGCACHE_ROUTER_CONFIG naming a copy of it, as scripts/compose-test does",
                tracked.display()
            ))
        } else {
            Ok(())
        };
        Ok((src, writable))
    }

    /// Where the harness may write the router's config (or why not).
    pub fn config_note(&self) -> String {
        match &self.config {
            Ok(p) => format!("router config {} (rewritten before a restart)", p.display()),
            Err(e) => format!("router restarts will be skipped: {e}"),
        }
    }

    /// Project, CLI and file, for the header.
    pub fn describe(&self) -> String {
        format!(
            "compose project {} via '{}' ({})",
            self.opts.project,
            self.cli.join(" "),
            self.opts.file.display()
        )
    }

    fn compose(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let mut argv = self.cli.clone();
        argv.extend([
            "-f".to_string(),
            self.opts.file.to_string_lossy().into_owned(),
            "-p".to_string(),
            self.opts.project.clone(),
        ]);
        argv.extend(args.iter().map(|a| (*a).to_string()));
        run(&argv, timeout)
    }

    /// The project's containers by service, from their compose labels.
    fn refresh_containers(&mut self) -> Result<()> {
        let project = normalize_project(&self.opts.project);
        let out = docker(
            &[
                "ps",
                "-a",
                "--filter",
                &format!("label=com.docker.compose.project={project}"),
                "--format",
                "{{.ID}} {{.Label \"com.docker.compose.service\"}}",
            ],
            DOCKER_TIMEOUT,
        )?;
        for line in out.lines() {
            if let Some((id, service)) = line.trim().split_once(' ') {
                self.containers
                    .insert(service.trim().to_string(), id.to_string());
            }
        }
        Ok(())
    }

    fn id(&self, service: &str) -> Result<String> {
        self.containers.get(service).cloned().ok_or_else(|| {
            anyhow!(
                "no container for service {service} in project {}",
                self.opts.project
            )
        })
    }

    /// `State.Status` (running, paused, exited, …) of every known container, by service.
    fn states(&self) -> Result<HashMap<String, String>> {
        let mut services: Vec<&String> = self.containers.keys().collect();
        services.sort();
        let mut args = vec!["inspect", "-f", "{{.State.Status}}"];
        let ids: Vec<String> = services
            .iter()
            .map(|s| self.containers[*s].clone())
            .collect();
        args.extend(ids.iter().map(String::as_str));
        let out = docker(&args, DOCKER_TIMEOUT)?;
        Ok(services
            .into_iter()
            .cloned()
            .zip(out.lines().map(|l| l.trim().to_string()))
            .collect())
    }

    fn health(&self, service: &str) -> String {
        let Ok(id) = self.id(service) else {
            return "no container".into();
        };
        docker(
            &[
                "inspect",
                "-f",
                "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
                &id,
            ],
            DOCKER_TIMEOUT,
        )
        .map_or_else(|e| format!("{e:#}"), |s| s.trim().to_string())
    }

    /// Starts the spare shards' containers (`up -d` with the spare profile; already running ones
    /// stay as they are) and waits, bounded, until they are healthy.
    pub fn start_spares(&mut self, ids: &[String]) -> Result<()> {
        let mut services = Vec::new();
        for s in self.initial.iter().filter(|s| ids.contains(&s.id)) {
            services.push(s.primary.clone());
            services.extend(s.replica.clone());
        }
        if services.is_empty() {
            return Ok(());
        }
        let mut args = vec!["--profile", "spare", "up", "-d", "--no-recreate"];
        args.extend(services.iter().map(String::as_str));
        self.compose(&args, UP_TIMEOUT)?;
        self.refresh_containers()?;
        let deadline = Instant::now() + HEALTHY_WAIT;
        let mut waiting = services.clone();
        while !waiting.is_empty() {
            waiting.retain(|s| self.health(s) != "running/healthy");
            if waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let states: Vec<String> = waiting
                    .iter()
                    .map(|s| format!("{s}: {}", self.health(s)))
                    .collect();
                bail!(
                    "spare containers not healthy within {HEALTHY_WAIT:?}: {}",
                    states.join(", ")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for s in &services {
            self.down.remove(s);
        }
        Ok(())
    }

    fn write_config(&self, members: &[RouterShard]) -> Result<()> {
        let path = self.config.as_ref().map_err(|e| anyhow!("{e}"))?;
        let text = self
            .config_base
            .replacen("@SHARDS@", shard_tables(members).trim_start(), 1);
        // In place (same inode): the container sees the file through a bind mount.
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Router `i`'s published address.
    fn router_at(&self, i: usize) -> Result<SocketAddr> {
        self.opts
            .routers
            .get(i)
            .copied()
            .ok_or_else(|| anyhow!("no {} in this run", router_name(i)))
    }

    /// Bounded wait until router `i` answers PING through its published port.
    fn wait_router(&self, i: usize) -> Result<Duration> {
        let addr = self.router_at(i)?;
        let start = Instant::now();
        while !router_pongs(addr) {
            if start.elapsed() >= ROUTER_WAIT {
                bail!(
                    "{} on {addr} did not answer PING within {ROUTER_WAIT:?}",
                    router_name(i)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(start.elapsed())
    }
}

impl Backend for Compose {
    fn name(&self) -> &'static str {
        "compose"
    }

    fn replica_read_bound(&self) -> Option<Duration> {
        self.read_bound
    }

    fn verbs(&self) -> Verbs {
        Verbs {
            kill: "docker kill",
            pause: "docker pause",
            restart_router: "docker restart",
        }
    }

    fn initial_shards(&self) -> Vec<ShardState> {
        self.initial.clone()
    }

    fn addr(&self, node: &str) -> Option<String> {
        self.services
            .contains(node)
            .then(|| format!("{node}:{}", self.node_port))
    }

    fn routers(&self) -> usize {
        self.opts.routers.len()
    }

    fn router_addr(&self, i: usize) -> SocketAddr {
        self.opts
            .routers
            .get(i)
            .or_else(|| self.opts.routers.first())
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7000)))
    }

    fn is_up(&self, node: &str) -> bool {
        self.containers.contains_key(node) && !self.down.contains(node)
    }

    fn kill(&mut self, node: &str) -> Result<()> {
        let id = self.id(node)?;
        docker(&["kill", &id], DOCKER_TIMEOUT)?;
        self.down.insert(node.to_string());
        self.paused.remove(node);
        Ok(())
    }

    /// `docker start` (the container's command is fixed: a restarted replica follows the primary
    /// the compose file names until the router re-points it).
    fn start(&mut self, node: &str, _replica_of: Option<&str>) -> Result<()> {
        match self.id(node) {
            Ok(id) => {
                docker(&["start", &id], DOCKER_TIMEOUT)?;
            }
            Err(_) => {
                self.compose(
                    &["--profile", "spare", "up", "-d", "--no-recreate", node],
                    UP_TIMEOUT,
                )?;
                self.refresh_containers()?;
            }
        }
        self.down.remove(node);
        Ok(())
    }

    fn pause(&mut self, node: &str) -> Result<()> {
        let id = self.id(node)?;
        docker(&["pause", &id], DOCKER_TIMEOUT)?;
        self.paused.insert(node.to_string());
        Ok(())
    }

    fn resume(&mut self, node: &str) -> Result<()> {
        let id = self.id(node)?;
        docker(&["unpause", &id], DOCKER_TIMEOUT)?;
        self.paused.remove(node);
        Ok(())
    }

    fn cut(&mut self, node: &str) -> Result<()> {
        let id = self.id(node)?;
        let nets = docker(
            &[
                "inspect",
                "-f",
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}\n{{end}}",
                &id,
            ],
            DOCKER_TIMEOUT,
        )?;
        let nets: Vec<String> = nets
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if nets.is_empty() {
            bail!("{node} is on no network");
        }
        let mut done = Vec::new();
        let mut result = Ok(());
        for net in &nets {
            match docker(&["network", "disconnect", net, &id], DOCKER_TIMEOUT) {
                Ok(_) => done.push(net.clone()),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if !done.is_empty() {
            self.cut.insert(node.to_string(), done);
        }
        result
    }

    /// Reconnects with the service name as alias, so the router and replicas find it again.
    fn heal(&mut self, node: &str) -> Result<()> {
        let Some(nets) = self.cut.remove(node) else {
            return Ok(());
        };
        let id = self.id(node)?;
        let mut failed = Vec::new();
        for net in &nets {
            if let Err(e) = docker(
                &["network", "connect", "--alias", node, net, &id],
                DOCKER_TIMEOUT,
            ) {
                failed.push(format!("{e:#}"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("reconnecting {node}: {}", failed.join("; "))
        }
    }

    fn restart_router(&mut self, i: usize, members: &[RouterShard]) -> Result<String> {
        // Without the current membership a new router would serve the compose file's ring.
        self.write_config(members)
            .context("not restarted: its config cannot be brought up to date")?;
        let service = router_name(i);
        let id = self.id(&service)?;
        let start = Instant::now();
        let grace = ROUTER_STOP_GRACE_S.to_string();
        docker(&["restart", "-t", &grace, &id], DOCKER_TIMEOUT * 2)?;
        let restarted = start.elapsed();
        let answered = self.wait_router(i)?;
        Ok(format!(
            "docker restart -t {grace} took {:.1}s; PING answered {:.1}s later on {}",
            restarted.as_secs_f64(),
            answered.as_secs_f64(),
            self.router_at(i)?
        ))
    }

    fn start_router(&mut self, i: usize, members: &[RouterShard]) -> Result<()> {
        self.write_config(members)?;
        let service = router_name(i);
        let id = self.id(&service)?;
        docker(&["start", &id], DOCKER_TIMEOUT)?;
        self.down.remove(&service);
        self.wait_router(i).map(|_| ())
    }

    fn kill_router(&mut self, i: usize) -> Result<()> {
        let service = router_name(i);
        let id = self.id(&service)?;
        docker(&["kill", &id], DOCKER_TIMEOUT)?;
        self.down.insert(service);
        Ok(())
    }

    fn router_up(&self, i: usize) -> bool {
        !self.down.contains(&router_name(i))
    }

    fn exited(&mut self) -> Vec<(String, String)> {
        let states = match self.states() {
            Ok(s) => s,
            Err(e) => {
                println!("compose: cannot inspect the containers: {e:#}");
                return Vec::new();
            }
        };
        let mut dead = Vec::new();
        for (service, state) in states {
            let watched = router_index(&service).is_some_and(|i| i < self.opts.routers.len())
                || self
                    .initial
                    .iter()
                    .any(|s| s.primary == service || s.replica.as_ref() == Some(&service));
            if !watched || self.down.contains(&service) {
                continue;
            }
            if state == "running" || state == "paused" {
                continue;
            }
            let tail = self
                .id(&service)
                .and_then(|id| docker(&["logs", "--tail", "30", &id], DOCKER_TIMEOUT))
                .unwrap_or_else(|e| format!("(no log: {e:#})"));
            dead.push((service, format!("container {state}; log tail:\n{tail}")));
        }
        for (service, _) in &dead {
            self.down.insert(service.clone());
        }
        dead
    }

    fn heal_faults(&mut self) {
        let cut: Vec<String> = self.cut.keys().cloned().collect();
        for node in cut {
            if let Err(e) = self.heal(&node) {
                println!("compose: {e:#}");
            }
        }
        let paused: Vec<String> = self.paused.iter().cloned().collect();
        for node in paused {
            if let Err(e) = self.resume(&node) {
                println!("compose: unpausing {node}: {e:#}");
            }
        }
    }

    fn keep_logs(&mut self, to: &Path) -> Result<()> {
        std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
        for (service, id) in &self.containers {
            let mut argv = vec!["docker".to_string(), "logs".into(), id.clone()];
            argv.push("--timestamps".into());
            // `docker logs` writes the container's stderr to its own stderr: both are wanted.
            let out = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .with_context(|| format!("docker logs {service}"))?;
            let mut text = out.stdout;
            text.extend_from_slice(&out.stderr);
            std::fs::write(to.join(format!("{service}.log")), text)
                .with_context(|| format!("writing {service}.log"))?;
        }
        Ok(())
    }
}

impl Drop for Compose {
    /// Never leaves a container paused or off the network.
    fn drop(&mut self) {
        self.heal_faults();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_tables_are_replaced_and_the_rest_kept() {
        let text = "[router]\nlisten = \"0.0.0.0:7000\"\n\n[ring]\nvnodes = 2048\n\n[[shard]]\nid = \"a\"\nprimary = \"a-primary:7001\"\n\n# spares d and e\n\n[[shard]]\nid = \"b\"\nprimary = \"b-primary:7001\"\n\n[[l4]]\nlisten = \"0.0.0.0:7401\"\n";
        let (base, at) = strip_shard_tables(text);
        assert!(!base.contains("a-primary") && !base.contains("b-primary"));
        assert!(base.contains("# spares d and e") && base.contains("[[l4]]"));
        assert!(base[..at].contains("vnodes = 2048"));
        assert!(!base[..at].contains("[[l4]]"));
        assert_eq!(normalize_project("RingCache CI.1"), "ringcacheci1");
        assert_eq!(host_of("a-primary:7001"), "a-primary");
    }

    #[test]
    fn the_replica_read_bound_follows_the_router_config() {
        let shard = "[[shard]]\nid = \"a\"\nprimary = \"a-primary:7001\"\n";
        let bound = |ring: &str| {
            replica_read_bound(&format!("[ring]\n{ring}\n{shard}"))
                .unwrap_or_else(|e| panic!("{e:#}"))
        };
        assert_eq!(bound(""), None);
        assert_eq!(
            bound("read_from = \"prefer-replica\"\nmax_replica_lag = \"500ms\""),
            Some(Duration::from_millis(1000))
        );
        // The compose cluster's own config reads from replicas.
        let deploy = ::tests::workspace_root().join("deploy/cluster.compose.toml");
        let text = std::fs::read_to_string(&deploy).unwrap_or_else(|e| panic!("{e}"));
        assert!(replica_read_bound(&text).is_ok_and(|b| b.is_some()));
    }
}
