//! Processes a test starts: our `ringcache` binary (nodes, routers, `up`) or a real
//! `redis-server`, each on 127.0.0.1 with its own scratch directory, killed when dropped; and
//! what tests read about processes from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use crate::raw::Raw;
use crate::replies::status;

/// A node prints this once bound (then the address).
pub const NODE_LISTENING: &str = "ringcache node listening on ";

/// Which server the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Our `ringcache node` (default).
    Node,
    /// A real `redis-server` (`RINGCACHE_TEST_TARGET=redis`), to validate expectations.
    Redis,
}

pub fn target() -> Target {
    match std::env::var("RINGCACHE_TEST_TARGET").as_deref() {
        Ok("redis") | Ok("redis-server") => Target::Redis,
        Ok("") | Ok("node") | Ok("ringcache") | Err(_) => Target::Node,
        Ok(other) => panic!("RINGCACHE_TEST_TARGET={other:?}: expected `redis` or `node`"),
    }
}

pub fn is_redis() -> bool {
    target() == Target::Redis
}

/// The workspace root (the directory above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives inside the workspace")
        .to_path_buf()
}

/// The `ringcache` binary: `$RINGCACHE_BIN`, or `cargo build --bin ringcache` (debug) run once per
/// test process.
pub fn ringcache_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("RINGCACHE_BIN").filter(|b| !b.is_empty()) {
            return PathBuf::from(bin);
        }
        let root = workspace_root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--bin", "ringcache"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .status()
            .expect("running cargo build --bin ringcache");
        assert!(
            status.success(),
            "cargo build --bin ringcache failed: {status}"
        );
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target_dir.join("debug").join("ringcache");
        assert!(bin.exists(), "{} missing after cargo build", bin.display());
        bin
    })
    .clone()
}

/// A fresh scratch directory for one spawned process (logs, and redis-server's working dir) or
/// one router's cluster file.
pub fn scratch_dir(kind: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir()
        .join("ringcache-tests")
        .join(format!("{kind}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn log_inherited() -> bool {
    std::env::var("RINGCACHE_TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// Signal names for [`Proc::signal`].
pub const SIGSTOP: &str = "STOP";
pub const SIGCONT: &str = "CONT";
pub const SIGTERM: &str = "TERM";
pub const SIGINT: &str = "INT";
pub const SIGKILL: &str = "KILL";

/// A server process started by a test. Dropping it kills it (SIGKILL) and reaps it.
pub struct Proc {
    pub addr: SocketAddr,
    child: Child,
    /// Scratch directory: `stderr.log` for our binary, `redis.log` and the working dir for redis.
    pub dir: PathBuf,
    pub target: Target,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`"STOP"`, `"CONT"`, `"TERM"`, `"INT"`, `"KILL"`) with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        let sig = sig.trim_start_matches("SIG");
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
        if sig == "STOP" {
            // kill(2) only queues SIGSTOP; a running thread may still answer one more request.
            let pid = self.pid();
            assert_eventually!(all_threads_stopped(pid), Duration::from_secs(5));
        }
    }

    /// Whether the process is still running (not exited, not reaped).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; returns its exit status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident set size in KiB, from `/proc/PID/status` (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The tail of the process's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let file = match self.target {
            Target::Node => "stderr.log",
            Target::Redis => "redis.log",
        };
        tail(&self.dir.join(file), 4000)
    }

    /// A new raw connection to this process.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr)
    }

    /// Asserts the process is alive and answers PING on a fresh connection (used after abuse).
    pub fn assert_alive(&mut self) {
        assert!(
            self.is_alive(),
            "server exited; log tail:\n{}",
            self.log_tail()
        );
        let mut c = self.raw();
        assert_eq!(
            c.cmd(&["PING"]),
            status("PONG"),
            "fresh client PING after abuse"
        );
        assert!(
            self.is_alive(),
            "server exited; log tail:\n{}",
            self.log_tail()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "server {} ({:?}) logs kept in {}",
                self.addr,
                self.target,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Spawns `ringcache <args>` and waits (10 s) for the stdout line `<prefix><addr>`, e.g.
/// `ringcache node listening on 127.0.0.1:PORT`. Stdout keeps being drained by a thread; stderr
/// goes to `<dir>/stderr.log` (or the test's stderr with `RINGCACHE_TEST_LOG=1`).
pub fn spawn_ringcache(args: &[&str], listening_prefix: &str) -> Proc {
    try_spawn_ringcache_lines(args, &[listening_prefix], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// Spawns `ringcache <args>` and waits up to `timeout` for one stdout line starting with each of
/// `prefixes` (in any order). Returns the process, whose `addr` is parsed from the first prefix's
/// line, and the rest of each line, in `prefixes` order. On failure the process is killed and the
/// error carries the tail of its stderr.
pub fn try_spawn_ringcache_lines(
    args: &[&str],
    prefixes: &[&str],
    timeout: Duration,
) -> Result<(Proc, Vec<String>), String> {
    try_spawn_ringcache_env(args, &[], prefixes, timeout)
}

/// The environment variables ringcache reads secrets from: cleared for every process a test
/// starts, so a developer's shell cannot change what a test runs.
pub const SECRET_ENV: [&str; 6] = [
    "RINGCACHE_PASSWORD",
    "RINGCACHE_REQUIREPASS",
    "RINGCACHE_NODE_PASSWORD",
    "RINGCACHE_PRIMARY_USER",
    "RINGCACHE_PRIMARY_AUTH",
    "RINGCACHE_ACLFILE",
];

/// Variables every ringcache process this program starts gets (the churn harness's
/// `--auth` sets the cluster's password here).
static CHILD_ENV: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Sets `name=value` in the environment of every ringcache process started from now on.
pub fn set_child_env(name: &str, value: &str) {
    let mut env = CHILD_ENV.lock().unwrap_or_else(|p| p.into_inner());
    env.retain(|(n, _)| n != name);
    env.push((name.to_string(), value.to_string()));
}

/// `ringcache <args>` with `env` set (see [`try_spawn_ringcache_lines`]), its listening line
/// awaited for 10 s.
pub fn spawn_ringcache_env(args: &[&str], env: &[(&str, &str)], listening_prefix: &str) -> Proc {
    try_spawn_ringcache_env(args, env, &[listening_prefix], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// [`try_spawn_ringcache_lines`] with `env` set in the process's environment.
pub fn try_spawn_ringcache_env(
    args: &[&str],
    env: &[(&str, &str)],
    prefixes: &[&str],
    timeout: Duration,
) -> Result<(Proc, Vec<String>), String> {
    assert!(!prefixes.is_empty(), "wait for at least one line");
    let bin = ringcache_bin();
    let dir = scratch_dir("ringcache");
    let stderr_path = dir.join("stderr.log");
    let stderr = if log_inherited() {
        Stdio::inherit()
    } else {
        Stdio::from(std::fs::File::create(&stderr_path).unwrap())
    };
    let mut cmd = Command::new(&bin);
    for name in SECRET_ENV {
        cmd.env_remove(name);
    }
    cmd.envs(
        CHILD_ENV
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str())),
    );
    let mut child = cmd
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let wanted: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
    std::thread::spawn(move || {
        let mut seen = vec![false; wanted.len()];
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            for (i, prefix) in wanted.iter().enumerate() {
                if let Some(rest) = line.strip_prefix(prefix.as_str()) {
                    if !seen[i] {
                        seen[i] = true;
                        let _ = tx.send((i, rest.trim().to_string()));
                    }
                    break;
                }
            }
        }
    });
    let mut proc_ = Proc {
        addr: "127.0.0.1:0".parse().unwrap(),
        child,
        dir,
        target: Target::Node,
    };
    let deadline = Instant::now() + timeout;
    let mut found: Vec<Option<String>> = vec![None; prefixes.len()];
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, rest)) => found[i] = Some(rest),
            Err(e) => {
                proc_.kill();
                let missing: Vec<&str> = prefixes
                    .iter()
                    .zip(&found)
                    .filter(|(_, f)| f.is_none())
                    .map(|(p, _)| *p)
                    .collect();
                return Err(format!(
                    "`{} {}` did not print {missing:?} + ADDR within {timeout:?} ({e}); stderr:\n{}",
                    bin.display(),
                    args.join(" "),
                    tail(&stderr_path, 4000)
                ));
            }
        }
    }
    let found: Vec<String> = found.into_iter().map(Option::unwrap_or_default).collect();
    let addr = &found[0];
    proc_.addr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            proc_.kill();
            return Err(format!("bad address {addr:?} in listening line: {e}"));
        }
    };
    if !proc_.addr.ip().is_loopback() {
        proc_.kill();
        return Err(format!("listening on non-loopback {}", proc_.addr));
    }
    Ok((proc_, found))
}

/// Starts our cache node on 127.0.0.1 port 0 with extra flags
/// (`--maxmemory 256mb`, `--requirepass PW`, `--maxclients N`, `--timeout SECS`).
pub fn start_node(extra_args: &[&str]) -> Proc {
    let mut args = vec!["node", "--bind", "127.0.0.1", "--port", "0"];
    args.extend_from_slice(extra_args);
    spawn_ringcache(&args, NODE_LISTENING)
}

/// Starts `ringcache node` on 127.0.0.1 `port` (0: any) with extra flags and waits up to `timeout`
/// for its listening line.
/// In TLS mode ([`crate::tls::enable`]) the node serves TLS only, on `port` (its address is the
/// TLS listener's).
pub fn try_start_node(port: u16, extra_args: &[&str], timeout: Duration) -> Result<Proc, String> {
    if let Some(flags) = crate::tls::node_flags(port) {
        let mut args = vec!["node", "--bind", "127.0.0.1", "--port", "0"];
        args.extend(flags.iter().map(String::as_str));
        args.extend_from_slice(extra_args);
        return try_spawn_ringcache_lines(&args, &[crate::tls::NODE_TLS_LISTENING], timeout)
            .map(|(p, _)| p);
    }
    let port_s = port.to_string();
    let mut args = vec!["node", "--bind", "127.0.0.1", "--port", port_s.as_str()];
    args.extend_from_slice(extra_args);
    try_spawn_ringcache_lines(&args, &[NODE_LISTENING], timeout).map(|(p, _)| p)
}

/// Starts a node on a given 127.0.0.1 port (a restarted one), retrying for 15 s while the port is
/// not yet free; each try waits up to `timeout` for the node's listening line.
pub fn try_start_node_on_port(
    port: u16,
    extra_args: &[&str],
    timeout: Duration,
) -> Result<Proc, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match try_start_node(port, extra_args, timeout) {
            Ok(p) => return Ok(p),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// [`try_start_node_on_port`] with a 10 s start, failing the test if the node never starts.
pub fn start_node_on_port(port: u16, extra_args: &[&str]) -> Proc {
    try_start_node_on_port(port, extra_args, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("restarting a node on {port}: {e}"))
}

/// A 127.0.0.1 port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Translates a node flag to redis-server's spelling (today they are all the same:
/// `--maxmemory`, `--requirepass`, `--maxclients`, `--timeout` take the same values).
fn redis_arg(arg: &str) -> &str {
    arg
}

/// Starts `redis-server` on a free 127.0.0.1 port, without persistence, and waits until it
/// answers. `extra_args` use the node's flags (see [`start_node`]).
pub fn start_redis(extra_args: &[&str]) -> Proc {
    let mut last_err = String::new();
    for _attempt in 0..5 {
        let dir = scratch_dir("redis");
        let port = free_port();
        let port_s = port.to_string();
        let log = dir.join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port_s,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(if log_inherited() {
            Path::new("")
        } else {
            log.as_path()
        })
        .args(extra_args.iter().map(|a| redis_arg(a)))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(if log_inherited() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(if log_inherited() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
        let child = cmd
            .spawn()
            .expect("spawning redis-server (is it installed?)");
        let mut p = Proc {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            dir,
            target: Target::Redis,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !p.is_alive() {
                last_err = format!("redis-server exited:\n{}", p.log_tail());
                break;
            }
            if redis_ready(p.addr) {
                return p;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if p.is_alive() {
            panic!(
                "redis-server on {} not answering after 10 s:\n{}",
                p.addr,
                p.log_tail()
            );
        }
    }
    panic!("could not start redis-server: {last_err}");
}

/// Any reply to PING (even NOAUTH) means ready. The probe ends with QUIT and waits for the close,
/// so the probe connection no longer counts against `maxclients` when this returns.
fn redis_ready(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let mut raw = Raw::from_stream(stream);
    raw.send(b"PING\r\n");
    if raw.read(Duration::from_secs(2)).is_none() {
        return false;
    }
    raw.send(b"QUIT\r\n");
    let _ = raw.read(Duration::from_secs(2));
    raw.is_closed(Duration::from_secs(2))
}

/// Starts the server under test: our node, or redis-server with `RINGCACHE_TEST_TARGET=redis`.
pub fn start_target(extra_args: &[&str]) -> Proc {
    match target() {
        Target::Node => start_node(extra_args),
        Target::Redis => start_redis(extra_args),
    }
}

/// Sends `sig` (`STOP`, `CONT`, `TERM`, `KILL`) to `pid` with kill(1), without failing the test
/// (for harnesses that report errors instead).
pub fn send_signal(pid: u32, sig: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("running kill: {e}"))?;
    if !status.success() {
        return Err(format!("kill -{sig} {pid}: {status}"));
    }
    Ok(())
}

/// Whether something accepts TCP connections on `addr` (within 500 ms).
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// The pids whose parent is `pid` (from `/proc/*/stat`).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// True once every thread of `pid` is in the stopped state (`T` in `/proc/PID/task/*/stat`).
pub fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .map(|st| {
                st.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('T')
            })
            .unwrap_or(false)
    })
}
