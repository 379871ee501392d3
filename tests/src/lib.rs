#![allow(clippy::unwrap_used)]
//! End-to-end test harness: starts real `ringcache` nodes (or a real `redis-server`, to check the
//! expectations against Redis itself) on 127.0.0.1 port 0, and talks to them with `redis-rs` or
//! with [`Raw`], a byte-exact RESP client.
//!
//! `RINGCACHE_TEST_TARGET=redis` makes [`start_target`] start `redis-server` instead of our node;
//! `RINGCACHE_BIN` names a prebuilt `ringcache` binary (otherwise it is built once per test
//! process); `RINGCACHE_TEST_LOG=1` lets spawned processes write their logs to the test's stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_protocol::codec::{ClientCodec, RawReply};
use tokio_util::codec::Decoder;

pub use ringcache_protocol::{Protocol, Reply};

/// How long a command run through [`Raw::cmd`] may take before the test fails.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `cond` (every 10 ms) until it holds, failing the test after `timeout` (a `Duration`).
/// The loop is bounded both in time and in iterations.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $timeout:expr $(,)?) => {
        $crate::assert_eventually!($cond, $timeout, "condition `{}` never held", stringify!($cond))
    };
    ($cond:expr, $timeout:expr, $($msg:tt)+) => {{
        let timeout: ::std::time::Duration = $timeout;
        let deadline = ::std::time::Instant::now() + timeout;
        let mut polls: u64 = 0;
        loop {
            if $cond {
                break;
            }
            polls += 1;
            if ::std::time::Instant::now() >= deadline || polls > 1_000_000 {
                panic!("after {:?}: {}", timeout, format!($($msg)+));
            }
            ::std::thread::sleep(::std::time::Duration::from_millis(10));
        }
    }};
}

// ---------------------------------------------------------------------------------------------
// Targets and processes
// ---------------------------------------------------------------------------------------------

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

/// A fresh scratch directory for one spawned process (logs, and redis-server's working dir).
fn scratch_dir(kind: &str) -> PathBuf {
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
    assert!(!prefixes.is_empty(), "wait for at least one line");
    let bin = ringcache_bin();
    let dir = scratch_dir("ringcache");
    let stderr_path = dir.join("stderr.log");
    let stderr = if log_inherited() {
        Stdio::inherit()
    } else {
        Stdio::from(std::fs::File::create(&stderr_path).unwrap())
    };
    let mut child = Command::new(&bin)
        .args(args)
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
    spawn_ringcache(&args, "ringcache node listening on ")
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

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// A multiplexed `redis-rs` connection (RESP2).
pub async fn client(addr: SocketAddr) -> redis::aio::MultiplexedConnection {
    let c = redis::Client::open(format!("redis://{addr}/")).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        c.get_multiplexed_async_connection(),
    )
    .await
    .expect("redis-rs connect timed out")
    .expect("redis-rs connect")
}

/// A raw, byte-exact RESP client over a blocking `TcpStream`. Every read is bounded by a timeout.
pub struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    codec: ClientCodec,
    closed: bool,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Raw::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Raw {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        Raw {
            stream,
            buf: BytesMut::new(),
            codec: ClientCodec::new(Protocol::Resp2),
            closed: false,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The protocol replies are decoded with (switch after `HELLO 3`; [`Raw::hello3`] does both).
    pub fn set_proto(&mut self, proto: Protocol) {
        self.codec.proto = proto;
    }

    /// Writes all bytes; panics on error.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Writes all bytes, returning the error (the peer may already have closed).
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Sends one command encoded as a RESP array of bulk strings.
    pub fn send_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.send(&encode(args));
    }

    /// Half-closes the write side.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads more bytes into the buffer, waiting until `deadline`. Returns false on timeout,
    /// EOF or error (marking the connection closed on EOF / error).
    fn fill(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline || self.closed {
            return false;
        }
        self.stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        let mut chunk = vec![0u8; 64 * 1024];
        for _ in 0..1000 {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return false;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => {
                    self.closed = true;
                    return false;
                }
            }
        }
        false
    }

    /// Reads one complete reply (exact bytes and decoded value), or `None` on timeout / close.
    pub fn read(&mut self, timeout: Duration) -> Option<RawReply> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(r)) => return Some(r),
                Ok(None) => {}
                Err(e) => panic!("undecodable reply ({e}); buffered: {:?}", self.pending()),
            }
            if !self.fill(deadline) {
                return None;
            }
        }
    }

    /// The exact bytes of one complete reply, or `None` on timeout / close.
    pub fn read_reply(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        self.read(timeout).map(|r| r.raw.to_vec())
    }

    /// Reads one decoded reply, failing the test if none arrives within [`CMD_TIMEOUT`].
    pub fn reply(&mut self) -> Reply {
        match self.read(CMD_TIMEOUT) {
            Some(r) => r.reply,
            None => panic!(
                "no reply within {CMD_TIMEOUT:?} (closed: {}); buffered: {:?}",
                self.closed,
                self.pending()
            ),
        }
    }

    /// Runs one command and returns its decoded reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        self.send_cmd(args);
        self.reply()
    }

    /// Runs one command and returns the exact bytes of its reply.
    pub fn cmd_raw<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.send_cmd(args);
        match self.read_reply(CMD_TIMEOUT) {
            Some(r) => r,
            None => panic!(
                "no reply within {CMD_TIMEOUT:?}; buffered: {:?}",
                self.pending()
            ),
        }
    }

    /// Sends `HELLO 3` (plus `extra` arguments), switches to RESP3 and returns the HELLO reply.
    pub fn hello3(&mut self, extra: &[&str]) -> Reply {
        let mut args = vec!["HELLO", "3"];
        args.extend_from_slice(extra);
        self.send_cmd(&args);
        self.set_proto(Protocol::Resp3);
        let r = self.reply();
        if r.is_error() {
            self.set_proto(Protocol::Resp2);
        }
        r
    }

    /// Whether the peer closes the connection within `timeout`; bytes arriving meanwhile are
    /// buffered (see [`Raw::pending`]).
    pub fn is_closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for _ in 0..100_000 {
            if self.closed || (!self.fill(deadline) && Instant::now() >= deadline) {
                break;
            }
        }
        self.closed
    }

    /// Bytes received but not yet consumed as a reply.
    pub fn pending(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    pub fn pending_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = BytesMut::new();
    ringcache_protocol::resp::encode_request(&mut out, args.iter());
    out.to_vec()
}

// ---------------------------------------------------------------------------------------------
// Expected replies and reply accessors
// ---------------------------------------------------------------------------------------------

pub fn ok() -> Reply {
    status("OK")
}

pub fn status(s: &str) -> Reply {
    Reply::StatusOwned(s.to_string())
}

pub fn err(s: &str) -> Reply {
    Reply::Error(s.to_string())
}

pub fn int(n: i64) -> Reply {
    Reply::Int(n)
}

pub fn bulk(s: impl AsRef<[u8]>) -> Reply {
    Reply::Bulk(bytes::Bytes::copy_from_slice(s.as_ref()))
}

pub fn nil() -> Reply {
    Reply::Nil
}

pub fn arr(items: Vec<Reply>) -> Reply {
    Reply::Array(items)
}

/// An array of bulk strings.
pub fn bulks(items: &[&str]) -> Reply {
    Reply::Array(items.iter().map(bulk).collect())
}

/// `ERR wrong number of arguments for '<cmd>' command`
pub fn wrong_args(cmd: &str) -> Reply {
    err(&format!(
        "ERR wrong number of arguments for '{cmd}' command"
    ))
}

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const SYNTAX: &str = "ERR syntax error";

/// Convenience accessors on decoded replies; each panics with the reply when the shape is wrong.
pub trait ReplyExt {
    /// Bulk, status or verbatim text.
    fn text(&self) -> String;
    fn int(&self) -> i64;
    fn items(&self) -> Vec<Reply>;
    /// Items of an array/set as text, in order.
    fn strings(&self) -> Vec<String>;
    /// Items as text, sorted.
    fn sorted(&self) -> Vec<String>;
    /// A RESP2 flat array or RESP3 map as (text, reply) pairs.
    fn pairs(&self) -> Vec<(String, Reply)>;
    /// The value under `key` in a RESP2 flat array or RESP3 map (RESP3 maps decode unordered).
    fn get(&self, key: &str) -> Option<Reply>;
    /// The error text, if an error.
    fn error_text(&self) -> Option<String>;
}

impl ReplyExt for Reply {
    fn text(&self) -> String {
        match self {
            Reply::Bulk(b) | Reply::Verbatim(b) => String::from_utf8_lossy(b).into_owned(),
            Reply::Status(s) => s.to_string(),
            Reply::StatusOwned(s) => s.clone(),
            Reply::Double(d) => ringcache_protocol::resp::format_double(*d),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    fn items(&self) -> Vec<Reply> {
        match self {
            Reply::Array(v) | Reply::Set(v) => v.clone(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    fn strings(&self) -> Vec<String> {
        self.items().iter().map(ReplyExt::text).collect()
    }

    fn sorted(&self) -> Vec<String> {
        let mut v = self.strings();
        v.sort();
        v
    }

    fn pairs(&self) -> Vec<(String, Reply)> {
        match self {
            Reply::Map(m) => m.iter().map(|(k, v)| (k.text(), v.clone())).collect(),
            Reply::Array(v) => {
                assert!(v.len() % 2 == 0, "odd-length array is not a map: {self:?}");
                v.chunks(2).map(|p| (p[0].text(), p[1].clone())).collect()
            }
            other => panic!("expected a map reply, got {other:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<Reply> {
        self.pairs()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn error_text(&self) -> Option<String> {
        match self {
            Reply::Error(e) => Some(e.clone()),
            _ => None,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// Router and cluster
// ---------------------------------------------------------------------------------------------

/// The router prints this once bound (then the address).
pub const ROUTER_LISTENING: &str = "ringcache router listening on ";
/// The router prints this once its metrics endpoint is bound (then the address).
pub const ROUTER_METRICS: &str = "ringcache router metrics on ";
/// A node prints this once bound (then the address).
pub const NODE_LISTENING: &str = "ringcache node listening on ";
/// The router's default per-request timeout: a reply about a dead backend must come within it.
pub const ROUTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Shard ids the test clusters use: whole words, so an error naming a shard is unambiguous.
pub const SHARD_IDS: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];

/// One shard of a test cluster: its id and the server behind it (our node or redis-server).
pub struct Shard {
    pub id: String,
    pub server: Proc,
}

/// A router in front of shards, all on 127.0.0.1 with ports picked at start. Dropping it kills
/// the router and every server.
pub struct Cluster {
    pub router: Proc,
    /// The router's metrics endpoint (`[router] metrics = "127.0.0.1:0"`).
    pub metrics: SocketAddr,
    pub shards: Vec<Shard>,
    /// The cluster file the router reads.
    pub config: PathBuf,
    dir: PathBuf,
    /// Built on first use (building one takes milliseconds in a debug build).
    ring: OnceLock<ringcache_protocol::ring::Ring>,
}

/// `cluster.toml` text for a router on `listen` (and `metrics`) over `shards` (id, primary address),
/// weight 1 each, no replicas, default vnodes.
pub fn cluster_toml(listen: &str, metrics: Option<&str>, shards: &[(&str, SocketAddr)]) -> String {
    let mut t = format!("[router]\nlisten = \"{listen}\"\n");
    if let Some(m) = metrics {
        t.push_str(&format!("metrics = \"{m}\"\n"));
    }
    t.push_str(&format!(
        "\n[ring]\nvnodes = {}\n",
        ringcache_protocol::ring::DEFAULT_VNODES
    ));
    for (id, addr) in shards {
        t.push_str(&format!(
            "\n[[shard]]\nid = \"{id}\"\nprimary = \"{addr}\"\nreplicas = []\nweight = 1\n"
        ));
    }
    t
}

/// Starts `ringcache router --config <file with toml>` and waits for its listening and metrics
/// lines. Returns the router (its `addr` is the RESP address) and the metrics address.
pub fn start_router(toml: &str, dir: &Path) -> (Proc, SocketAddr) {
    let config = dir.join("cluster.toml");
    std::fs::write(&config, toml).unwrap();
    let config_s = config.to_str().unwrap().to_string();
    let (router, lines) = try_spawn_ringcache_lines(
        &["router", "--config", &config_s],
        &[ROUTER_LISTENING, ROUTER_METRICS],
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("starting the router: {e}"));
    let metrics = lines[1]
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap_or_else(|e| panic!("bad metrics address {:?}: {e}", lines[1]));
    (router, metrics)
}

/// Starts a router over already running servers, named by `ids` in order.
pub fn start_router_over(servers: Vec<Proc>, ids: &[&str]) -> Cluster {
    assert_eq!(servers.len(), ids.len(), "one id per server");
    let dir = scratch_dir("cluster");
    let shard_addrs: Vec<(&str, SocketAddr)> = ids
        .iter()
        .copied()
        .zip(servers.iter().map(|s| s.addr))
        .collect();
    let toml = cluster_toml("127.0.0.1:0", Some("127.0.0.1:0"), &shard_addrs);
    let (router, metrics) = start_router(&toml, &dir);
    let shards = ids
        .iter()
        .zip(servers)
        .map(|(id, server)| Shard {
            id: id.to_string(),
            server,
        })
        .collect();
    Cluster {
        router,
        metrics,
        shards,
        config: dir.join("cluster.toml"),
        dir,
        ring: OnceLock::new(),
    }
}

/// Starts `n` of our nodes (shard ids [`SHARD_IDS`]) and a router over them.
pub fn start_cluster(n: usize) -> Cluster {
    assert!(
        (1..=SHARD_IDS.len()).contains(&n),
        "1 to {} shards",
        SHARD_IDS.len()
    );
    let ids = &SHARD_IDS[..n];
    let nodes = ids
        .iter()
        .map(|id| start_node(&["--shard-id", id]))
        .collect();
    start_router_over(nodes, ids)
}

/// Starts `n` redis-servers (shard ids [`SHARD_IDS`]) and our router over them.
pub fn start_redis_cluster(n: usize) -> Cluster {
    assert!(
        (1..=SHARD_IDS.len()).contains(&n),
        "1 to {} shards",
        SHARD_IDS.len()
    );
    let ids = &SHARD_IDS[..n];
    let servers = ids.iter().map(|_| start_redis(&[])).collect();
    start_router_over(servers, ids)
}

impl Cluster {
    /// A new raw connection to the router.
    pub fn raw(&self) -> Raw {
        self.router.raw()
    }

    pub fn ids(&self) -> Vec<String> {
        self.shards.iter().map(|s| s.id.clone()).collect()
    }

    pub fn shard(&self, id: &str) -> &Shard {
        self.shards
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no shard {id}"))
    }

    pub fn shard_mut(&mut self, id: &str) -> &mut Shard {
        self.shards
            .iter_mut()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no shard {id}"))
    }

    /// The ring the router should build from this cluster's file (same ids, weights, vnodes).
    pub fn ring(&self) -> &ringcache_protocol::ring::Ring {
        self.ring.get_or_init(|| {
            let specs = self
                .shards
                .iter()
                .map(|s| ringcache_protocol::ring::ShardSpec::new(s.id.clone(), 1))
                .collect();
            ringcache_protocol::ring::Ring::new(0, ringcache_protocol::ring::DEFAULT_VNODES, specs)
                .unwrap()
        })
    }

    /// The shard that owns `key`, computed here with the shared ring code.
    pub fn owner(&self, key: &str) -> String {
        self.ring().locate(key.as_bytes()).unwrap().id.clone()
    }

    /// `n` distinct keys `<prefix>:<i>` owned by shard `id`.
    pub fn keys_on(&self, id: &str, prefix: &str, n: usize) -> Vec<String> {
        let ring = self.ring();
        let mut keys = Vec::with_capacity(n);
        for i in 0..(n as u64 * 1000 + 10_000) {
            if keys.len() == n {
                break;
            }
            let k = format!("{prefix}:{i}");
            if ring.locate(k.as_bytes()).unwrap().id == id {
                keys.push(k);
            }
        }
        assert_eq!(keys.len(), n, "could not find {n} keys on {id}");
        keys
    }

    /// Sum of DBSIZE over every shard's server, asked directly.
    pub fn backend_dbsize(&self) -> i64 {
        self.shards
            .iter()
            .map(|s| s.server.raw().cmd(&["DBSIZE"]).int())
            .sum()
    }

    /// Kills shard `id`'s server (SIGKILL) and waits for it.
    pub fn kill_shard(&mut self, id: &str) {
        self.shard_mut(id).server.kill();
    }

    /// Starts a new node for shard `id` on the port its killed node had (retrying for a few
    /// seconds while the port is not yet free).
    pub fn restart_shard(&mut self, id: &str) {
        let shard = self.shard_mut(id);
        assert_eq!(
            shard.server.target,
            Target::Node,
            "restart works for our nodes"
        );
        let port = shard.server.addr.port().to_string();
        let id_s = shard.id.clone();
        let args = [
            "node",
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--shard-id",
            &id_s,
        ];
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match try_spawn_ringcache_lines(&args, &[NODE_LISTENING], Duration::from_secs(10)) {
                Ok((p, _)) => {
                    shard.server = p;
                    return;
                }
                Err(e) if Instant::now() >= deadline => panic!("restarting {id}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The router's log tail, for failure messages.
    pub fn router_log(&self) -> String {
        self.router.log_tail()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Router first, so it does not log every backend going away.
        self.router.kill();
        if std::thread::panicking() {
            eprintln!(
                "router {} log tail:\n{}\ncluster file kept in {}",
                self.router.addr,
                self.router.log_tail(),
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What the router-side family tests talk to: our router over 3 nodes or, with
/// `RINGCACHE_TEST_TARGET=redis`, one redis-server (to check the expected replies against Redis).
pub enum RoutedTarget {
    Router(Box<Cluster>),
    Redis(Proc),
}

impl RoutedTarget {
    pub fn addr(&self) -> SocketAddr {
        match self {
            RoutedTarget::Router(c) => c.router.addr,
            RoutedTarget::Redis(p) => p.addr,
        }
    }

    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr())
    }
}

/// Our router over 3 nodes, or one redis-server with `RINGCACHE_TEST_TARGET=redis`.
pub fn start_routed_target() -> RoutedTarget {
    match target() {
        Target::Node => RoutedTarget::Router(Box::new(start_cluster(3))),
        Target::Redis => RoutedTarget::Redis(start_redis(&[])),
    }
}

/// Every string and integer in a reply, flattened and joined by spaces (for shape-agnostic
/// checks such as "RING NODES names every shard").
pub fn flat_text(r: &Reply) -> String {
    fn walk(r: &Reply, out: &mut Vec<String>) {
        match r {
            Reply::Bulk(b) | Reply::Verbatim(b) => out.push(String::from_utf8_lossy(b).into()),
            Reply::Status(s) => out.push(s.to_string()),
            Reply::StatusOwned(s) | Reply::Error(s) => out.push(s.clone()),
            Reply::Int(n) => out.push(n.to_string()),
            Reply::Double(d) => out.push(d.to_string()),
            Reply::Array(v) | Reply::Set(v) => v.iter().for_each(|x| walk(x, out)),
            Reply::Map(m) => m.iter().for_each(|(k, v)| {
                walk(k, out);
                walk(v, out);
            }),
            Reply::Raw(b) => out.push(String::from_utf8_lossy(b).into()),
            Reply::Nil | Reply::NilArray => {}
        }
    }
    let mut out = Vec::new();
    walk(r, &mut out);
    out.join(" ")
}

/// The shard `RING LOCATE key` names: its `shard` field (a map, or a flat array in RESP2), else
/// the one of `ids` that appears as a whole word in the reply.
pub fn ring_locate(c: &mut Raw, key: &str, ids: &[String]) -> String {
    let r = c.cmd(&["RING", "LOCATE", key]);
    assert!(!r.is_error(), "RING LOCATE {key}: {r:?}");
    let is_map = match &r {
        Reply::Map(_) => true,
        Reply::Array(v) => v.len() % 2 == 0,
        _ => false,
    };
    if is_map {
        if let Some(shard) = r.get("shard") {
            let shard = shard.text();
            assert!(
                ids.contains(&shard),
                "RING LOCATE {key}: unknown shard {shard:?}: {r:?}"
            );
            return shard;
        }
    }
    let text = flat_text(&r);
    let words: Vec<&str> = text
        .split(|ch: char| ch.is_whitespace() || ",;=:()[]{}\"'".contains(ch))
        .collect();
    let named: Vec<&String> = ids
        .iter()
        .filter(|id| words.contains(&id.as_str()))
        .collect();
    assert_eq!(
        named.len(),
        1,
        "RING LOCATE {key} should name one shard of {ids:?}: {r:?}"
    );
    named[0].clone()
}

/// A full SCAN iteration (bounded: 100,000 calls, 60 s) with extra arguments (`MATCH p`,
/// `COUNT n`, `TYPE t`); every key returned, in order, duplicates kept.
pub fn scan_all(c: &mut Raw, extra: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..100_000 {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let r = c.cmd(&args);
        let items = r.items();
        assert_eq!(items.len(), 2, "SCAN reply is [cursor, keys]: {r:?}");
        keys.extend(items[1].strings());
        cursor = items[0].text();
        if cursor == "0" {
            return keys;
        }
        assert!(Instant::now() < deadline, "SCAN did not finish in 60 s");
    }
    panic!("SCAN did not finish in 100000 calls");
}

/// One HTTP/1.1 GET on 127.0.0.1; returns (status code, headers text, body). Bounded by 10 s.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ringcache-tests\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the HTTP response from {addr}: {e}"),
        }
        // Stop at Content-Length too, in case the server keeps the connection open.
        if let Some(end) = find(&raw, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            if let Some(len) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                if raw.len() >= end + 4 + len {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "HTTP response from {addr} not finished in 10 s"
        );
    }
    let end = find(&raw, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut body = raw[end + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP status line in {head:?}"));
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(b, b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
    out
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
