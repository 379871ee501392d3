//! The membership-churn harness (`cargo run --release -p tests --bin churn -- --duration 60s
//! --seed 7`): starts shards (primary + replica each), spares and a router on 127.0.0.1, drives
//! a bounded, checked load through the router while a seeded schedule joins and leaves shards and
//! injects faults, then reads the final state back and prints what was lost, stale, moved.
//! With `--compose` the same schedule, load and checks run against the docker compose cluster of
//! `docker-compose.yml`, already up (`--profile spare` for the shards to join).
//! With `--routers N` the load is spread over N routers, each change goes through a random one,
//! and the full schedule also kills a router with its change in flight.
//!
//! Layout: [`backend`] is what the schedule needs from a cluster, [`local`] (local processes)
//! and [`compose`] (containers) its two kinds; [`workload`] the load and the shared counters;
//! [`model`] what was written and the checks; [`schedule`] the events; [`check`] the final read;
//! [`report`] the per-second line and the summary; [`client`] a small pipelined RESP client;
//! [`routers`] the routers the load spreads over and how fast they follow a change;
//! [`followed`] the latency through a router that has just followed one.

pub mod backend;
pub mod check;
pub mod client;
pub mod compose;
pub mod followed;
pub mod local;
pub mod model;
pub mod report;
pub mod routers;
pub mod schedule;
pub mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use backend::Backend;
use client::{cmd, Conn};
use compose::{Compose, ComposeOpts};
use local::Local;
use model::{Keys, Model};
use schedule::{Driver, ScheduleKind};
use workload::{Counters, Shared, WorkerStats};

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "churn",
    about = "Membership-churn test: joins, leaves and faults under a checked load through the ringcache router"
)]
pub struct Args {
    /// How long the load runs (e.g. 60s, 500ms, 2m; a bare number is seconds).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Seeds the schedule (events, their order and targets) and the load's choices.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Shards in the ring at the start (each a primary and one replica). Compose mode takes the
    /// ring the router has.
    #[arg(long, default_value_t = 3)]
    pub shards: usize,
    /// Test keys (60% SET/DEL/GET, 20% counters, 20% APPEND).
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,
    /// Requests per second, all workers together.
    #[arg(long, default_value_t = 6000)]
    pub rate: u32,
    #[arg(long, value_enum, default_value_t = ScheduleKind::Full)]
    pub schedule: ScheduleKind,
    /// Run against the docker compose cluster of docker-compose.yml (already up, spares too)
    /// instead of local processes: faults become docker kill, docker pause, docker network
    /// disconnect and docker restart of the router.
    #[arg(long)]
    pub compose: bool,
    /// The compose project (default: $COMPOSE_PROJECT, else $COMPOSE_PROJECT_NAME, else the
    /// repository directory's name, as compose itself picks).
    #[arg(long, value_name = "NAME")]
    pub compose_project: Option<String>,
    /// The compose file (default: docker-compose.yml at the repository's top).
    #[arg(long, value_name = "PATH")]
    pub compose_file: Option<PathBuf>,
    /// Routers serving the cluster: the load is spread over them, each change goes through a
    /// random running one, and the full schedule also kills one with its change in flight (2+).
    /// Compose mode: services `router`, `router2`, ….
    #[arg(long, default_value_t = 1)]
    pub routers: usize,
    /// Compose mode: a router's published RESP address, once per router in order (default:
    /// 127.0.0.1 and $RINGCACHE_ROUTER_PORT, else $RINGCACHE_PORT, else 7000; the second's
    /// $RINGCACHE_ROUTER2_PORT, else $RINGCACHE_PORT2, else 7010).
    #[arg(long, value_name = "ADDR")]
    pub router: Vec<SocketAddr>,
    /// Load tasks, each with its own connection to the router.
    #[arg(long, default_value_t = 6)]
    pub workers: usize,
    /// The `ringcache` binary (default: $RINGCACHE_BIN, else built with cargo in this build's
    /// profile).
    #[arg(long, value_name = "PATH")]
    pub ringcache_bin: Option<PathBuf>,
    /// Password-protect the cluster: routers and nodes get RINGCACHE_PASSWORD (taken from this
    /// environment, else made up), so clients authenticate to the routers and every link
    /// between routers and nodes and between nodes authenticates as the cluster user. Compose
    /// mode: the cluster must have been started with the same RINGCACHE_PASSWORD.
    #[arg(long)]
    pub auth: bool,
    /// Every listener and link over TLS: nodes serve TLS only (replication and migration links
    /// over TLS), routers take clients on TLS (client certificates required) and reach the nodes
    /// over TLS; the certificates are made by the harness. Local cluster only.
    #[arg(long)]
    pub tls: bool,
    /// A second pool (`canary`, two nodes) and a route splitting every test key to it, at 0% to
    /// start with: the schedule adds two live `RING SPLIT`s under the load (0 → 20% → 50%), each
    /// checked to move the keys changing side, and only those. Local cluster only.
    #[arg(long)]
    pub split: bool,
}

/// `60s`, `500ms`, `2m`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 60s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{s:?}: between 0 and 24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Finds (or builds) the `ringcache` binary and exports it as `RINGCACHE_BIN` for the process
/// helpers. Must run before any thread starts.
fn resolve_ringcache(args: &Args) -> Result<PathBuf> {
    let bin = if let Some(p) = &args.ringcache_bin {
        p.clone()
    } else if let Some(p) = std::env::var_os("RINGCACHE_BIN").filter(|p| !p.is_empty()) {
        PathBuf::from(p)
    } else {
        // Build it in the profile this binary was built in, into the same target directory.
        let exe = std::env::current_exe().context("locating the churn binary")?;
        let dir = exe
            .parent()
            .context("the churn binary has no directory")?
            .to_path_buf();
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_string();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "--quiet", "--bin", "ringcache"])
            .current_dir(tests::workspace_root())
            .stdin(std::process::Stdio::null());
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        if let Some(target) = dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        println!("churn: building ringcache ({profile}) ...");
        let status = cmd
            .status()
            .context("running cargo build --bin ringcache")?;
        if !status.success() {
            bail!("cargo build --bin ringcache failed: {status}");
        }
        dir.join("ringcache")
    };
    if !bin.is_file() {
        bail!("ringcache binary {} not found", bin.display());
    }
    std::env::set_var("RINGCACHE_BIN", &bin);
    Ok(bin)
}

/// Compose mode's settings from the flags and the environment scripts/compose-test exports.
fn compose_opts(args: &Args) -> Result<ComposeOpts> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let root = tests::workspace_root();
    let project = match args
        .compose_project
        .clone()
        .or_else(|| env("COMPOSE_PROJECT"))
        .or_else(|| env("COMPOSE_PROJECT_NAME"))
    {
        Some(p) => p,
        None => root
            .file_name()
            .and_then(|n| n.to_str())
            .map(compose::normalize_project)
            .context("no compose project: pass --compose-project NAME")?,
    };
    // Router k's port: its variables, else the compose file's default.
    let port_of = |k: usize| -> Result<u16> {
        let vars = match k {
            0 => vec!["RINGCACHE_ROUTER_PORT".to_string(), "RINGCACHE_PORT".into()],
            k => vec![
                format!("RINGCACHE_ROUTER{}_PORT", k + 1),
                format!("RINGCACHE_PORT{}", k + 1),
            ],
        };
        match vars.iter().find_map(|v| env(v)) {
            Some(p) => p
                .trim()
                .parse::<u16>()
                .with_context(|| format!("router port {p:?}")),
            None => Ok(7000 + 10 * k as u16),
        }
    };
    let mut routers = Vec::with_capacity(args.routers);
    for k in 0..args.routers {
        routers.push(match args.router.get(k) {
            Some(a) => *a,
            None => SocketAddr::from(([127, 0, 0, 1], port_of(k)?)),
        });
    }
    Ok(ComposeOpts {
        project,
        file: args
            .compose_file
            .clone()
            .unwrap_or_else(|| root.join("docker-compose.yml")),
        routers,
    })
}

/// The compose cluster: the ring from the router's RING NODES, the spare shards the plan joins
/// started (and healthy) before the load.
fn start_compose(
    args: &Args,
    rt: &tokio::runtime::Runtime,
    plan: &schedule::Plan,
) -> Result<Compose> {
    let opts = compose_opts(args)?;
    let router = opts.routers[0];
    let ring = rt
        .block_on(async {
            let mut c = Conn::connect(router, Duration::from_secs(2)).await?;
            c.call(cmd(&["RING", "NODES"]), Duration::from_secs(5))
                .await
        })
        .map(|r| client::parse_ring_nodes(&r))
        .map_err(|e| anyhow::anyhow!("asking the router on {router} for RING NODES: {e}"))?;
    let mut c = Compose::connect(opts, &ring)?;
    println!("churn: {}", c.describe());
    println!("churn: {}", c.config_note());
    let ids: Vec<String> = c
        .initial_shards()
        .into_iter()
        .filter(|s| !s.member)
        .map(|s| s.id)
        .take(plan.spares)
        .collect();
    if ids.len() < plan.joins {
        println!(
            "churn: the compose file has {} spare shards for {} joins: later joins will fail",
            ids.len(),
            plan.joins
        );
    } else if ids.len() < plan.spares {
        println!(
            "churn: the compose file has {} spare shards, as many as the joins: the router kill's change will be a leave",
            ids.len()
        );
    }
    if !ids.is_empty() {
        println!(
            "churn: starting spare shards {} (--profile spare up -d)",
            ids.join(", ")
        );
        c.start_spares(&ids)?;
    }
    Ok(c)
}

/// Runs the whole harness; `Ok(true)` when every check passed.
pub fn run(args: Args) -> Result<bool> {
    if !args.compose && (args.shards == 0 || args.shards > 6) {
        bail!("--shards must be 1 to 6");
    }
    if args.keys < 10 || args.keys > 1_000_000 {
        bail!("--keys must be 10 to 1000000");
    }
    if args.rate == 0 || args.rate > 1_000_000 {
        bail!("--rate must be 1 to 1000000");
    }
    if args.workers == 0 || args.workers > 64 {
        bail!("--workers must be 1 to 64");
    }
    if args.routers == 0 || args.routers > 8 {
        bail!("--routers must be 1 to 8");
    }
    if args.compose && args.router.len() > args.routers {
        bail!(
            "{} --router addresses for --routers {}",
            args.router.len(),
            args.routers
        );
    }
    if args.duration < Duration::from_secs(1) {
        bail!("--duration must be at least 1s");
    }
    if args.auth {
        let password = std::env::var("RINGCACHE_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("churn-{:016x}", rand::random::<u64>()));
        tests::set_child_env("RINGCACHE_PASSWORD", &password);
        client::set_password(&password);
    }
    // Before any thread starts: it may set RINGCACHE_BIN.
    let bin = if args.compose {
        None
    } else {
        Some(resolve_ringcache(&args)?)
    };

    if args.tls {
        if args.compose {
            bail!("--tls runs the local cluster only (not --compose)");
        }
        let dir = tests::scratch_dir("churn-tls");
        let pki = tests::tls::Pki::create(&dir).map_err(|e| anyhow::anyhow!(e))?;
        println!("churn: TLS everywhere, certificates in {}", dir.display());
        tests::tls::enable(pki);
    }

    if args.split && args.compose {
        bail!("--split runs the local cluster only (not --compose)");
    }
    let mut plan = schedule::plan(
        args.schedule,
        args.seed,
        args.duration,
        args.compose,
        args.routers,
    );
    if args.split {
        schedule::plan::add_splits(&mut plan, args.duration);
    }
    let keys = Keys::new(args.keys);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;

    // The local cluster's router config, for the run's header.
    let (backend, config): (Box<dyn Backend>, Option<PathBuf>) = match &bin {
        None => (Box::new(start_compose(&args, &rt, &plan)?), None),
        Some(_) => {
            let local = Local::start(args.shards, plan.spares, args.routers, args.split)?;
            let config = local.config();
            (Box::new(local), Some(config))
        }
    };
    let initial = backend.initial_shards();
    let shards = initial.iter().filter(|s| s.member).count();
    let spares = initial.len() - shards;
    println!(
        "churn: seed {} | schedule {} | {} | {} shards + {} spare | {} keys | rate {}/s | {:?}",
        args.seed,
        args.schedule.name(),
        backend.name(),
        shards,
        spares,
        keys.total(),
        args.rate,
        args.duration,
    );
    if args.auth {
        println!("churn: auth on: clients, routers and nodes authenticate on every link");
    }
    for (at, kind) in &plan.events {
        println!("churn: planned at t={:.1}s: {kind:?}", at.as_secs_f64());
    }
    for s in &initial {
        let addr = |n: &String| backend.addr(n).unwrap_or_else(|| n.clone());
        println!(
            "churn: shard {} primary {} replica {}{}",
            s.id,
            addr(&s.primary),
            s.replica.as_ref().map_or_else(|| "-".to_string(), addr),
            if s.member { "" } else { " (spare)" }
        );
    }
    let routers = backend.routers();
    for i in 0..routers {
        println!(
            "churn: {} {}",
            backend::router_name(i),
            backend.router_addr(i)
        );
    }
    if let (Some(bin), Some(config)) = (&bin, &config) {
        println!(
            "churn: ringcache {}, router config {}",
            bin.display(),
            config.display()
        );
    }

    let mut model = Model::new(keys);
    model.replica_lag = backend.replica_read_bound();
    if let Some(b) = model.replica_lag {
        println!(
            "churn: the router reads from replicas: reads up to {} ms behind the writes they miss are allowed (max_replica_lag + one health-check interval)",
            b.as_millis()
        );
    }

    // Preload, then start the clock.
    let mut shared = Shared {
        routers: routers::Routers::new((0..routers).map(|i| backend.router_addr(i)).collect()),
        model,
        counters: Counters::default(),
        anomalies: Mutex::new(Vec::new()),
        stale_router_examples: Mutex::new(Vec::new()),
        losses: Mutex::new(Default::default()),
        start: Instant::now(),
        end: Instant::now(),
        stop: AtomicBool::new(false),
        in_migration: AtomicBool::new(false),
        in_fault: AtomicUsize::new(0),
        in_sweep: AtomicUsize::new(0),
        watching: AtomicUsize::new(0),
        workers: args.workers,
    };
    rt.block_on(workload::preload(&shared))
        .map_err(|e| anyhow::anyhow!("preloading the SET keys through the router: {e}"))?;
    shared.start = Instant::now();
    shared.end = shared.start + args.duration;
    let shared = Arc::new(shared);

    let rate = f64::from(args.rate) / args.workers as f64;
    let workers: Vec<_> = (0..args.workers)
        .map(|w| rt.spawn(workload::worker(w, shared.clone(), rate, args.seed)))
        .collect();
    let ticker_done = Arc::new(AtomicBool::new(false));
    let max_secs = args.duration.as_secs() + 600;
    let ticker = rt.spawn(report::ticker(
        shared.clone(),
        ticker_done.clone(),
        max_secs,
    ));
    let ctrl_c = {
        let shared = shared.clone();
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                println!("churn: interrupted; stopping the load and cleaning up");
                shared.stop.store(true, Ordering::Relaxed);
            }
        })
    };

    let handle = rt.handle().clone();
    let mut driver = Driver::new(&handle, &shared, backend, args.seed);
    driver.run_plan(&plan);

    // The load ends on its own at `end`; bounded wait for the tasks.
    let mut lat_migrating = Vec::new();
    let mut lat_steady = Vec::new();
    let mut lat_fault = Vec::new();
    let mut lat_sweep = Vec::new();
    let mut timed = Vec::new();
    let started_workers = workers.len();
    let joined: Vec<WorkerStats> = rt.block_on(async {
        let mut out = Vec::new();
        let limit = shared.end + workload::OP_TIMEOUT * 2 + Duration::from_secs(10);
        for w in workers {
            let left = limit.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, w).await {
                Ok(Ok(s)) => out.push(s),
                Ok(Err(e)) => println!("a load worker failed: {e}"),
                Err(_) => println!("a load worker did not finish in time"),
            }
        }
        out
    });
    let workers_unfinished = started_workers - joined.len();
    for s in joined {
        lat_migrating.extend(s.lat_migrating);
        lat_steady.extend(s.lat_steady);
        lat_fault.extend(s.lat_fault);
        lat_sweep.extend(s.lat_sweep);
        timed.extend(s.timed);
    }
    shared.model.settle(Instant::now());
    if shared.stopping() {
        // Ctrl-C reaches local nodes too (same process group); containers are resumed and
        // reconnected. No final state to check.
        ticker_done.store(true, Ordering::Relaxed);
        ticker.abort();
        driver.backend.heal_faults();
        drop(driver);
        rt.shutdown_timeout(Duration::from_secs(2));
        bail!("interrupted before the final check; no verdict");
    }
    println!(
        "[t={:.1}s] load done; healing and waiting for migrations",
        report::since(shared.start)
    );

    driver.heal_all();
    let final_migration = driver.wait_migrations(Instant::now(), Duration::from_secs(30));
    let final_read = rt.block_on(check::final_state(&shared));
    driver.finish_spreads();
    ticker_done.store(true, Ordering::Relaxed);
    ticker.abort();
    ctrl_c.abort();

    let pass = report::summarize(report::RunFacts {
        seed: args.seed,
        schedule: args.schedule.name(),
        backend: driver.backend.name(),
        shards,
        spares,
        keys: keys.total(),
        rate: args.rate,
        workers: args.workers,
        routers,
        duration: args.duration,
        shared: &shared,
        records: &driver.records,
        history: &driver.history,
        faults: &driver.faults,
        crashes: &driver.crashes,
        notes: &driver.notes,
        final_read: &final_read,
        final_migration,
        lat_migrating,
        lat_steady,
        lat_fault,
        lat_sweep,
        timed,
        workers_unfinished,
    });
    if !pass {
        let logs = std::env::temp_dir().join(format!(
            "ringcache-churn-seed{}-{}",
            args.seed,
            std::process::id()
        ));
        match driver.backend.keep_logs(&logs) {
            Ok(()) => println!("logs kept in {}", logs.display()),
            Err(e) => println!("could not keep the logs: {e:#}"),
        }
    }
    // Dropping a local cluster kills every process; containers stay for their owner.
    drop(driver);
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(pass)
}
