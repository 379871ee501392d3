#![allow(clippy::unwrap_used)]
//! `ringcache up`: starts the nodes of a cluster file and the router, serves through it, and
//! leaves no process behind when it is stopped (SIGTERM), when a node dies, or when it cannot
//! start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::*;

const UP_ROUTER: &str = "ringcache up: router listening on ";
const UP_METRICS: &str = "ringcache up: router metrics on ";

/// Kills (SIGKILL) the listed pids when dropped, so a failing test leaves nothing running even
/// though `up`'s children live in their own process groups.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            if pid_alive(*pid) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

fn cluster_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("ringcache-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Three node addresses on ports that were free a moment ago.
fn node_addrs() -> Vec<SocketAddr> {
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
        .into_iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
        .collect()
}

fn three_shards(addrs: &[SocketAddr]) -> Vec<(&'static str, SocketAddr)> {
    vec![("a", addrs[0]), ("b", addrs[1]), ("c", addrs[2])]
}

/// Starts `ringcache up --config path` and waits for its router line; returns the process, the
/// router address and the metrics address.
fn start_up(config: &Path) -> (Proc, SocketAddr, String) {
    let path = config.to_str().unwrap();
    let (up, lines) = try_spawn_ringcache_lines(
        &["up", "--config", path],
        &[UP_ROUTER, UP_METRICS],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("ringcache up: {e}"));
    let router = up.addr;
    (up, router, lines[1].clone())
}

/// `up`'s children, once all `n` are there (bounded: 5 s).
fn children_of(up: &Proc, n: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = child_pids(up.pid());
        if pids.len() >= n {
            return pids;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} children of up, found {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn up_serves_through_the_router_and_sigterm_stops_everything() {
    let addrs = node_addrs();
    let config = cluster_file(
        "up-sigterm",
        &cluster_toml("127.0.0.1:0", Some("127.0.0.1:0"), &three_shards(&addrs)),
    );
    let (mut up, router, metrics) = start_up(&config);
    let pids = children_of(&up, 4);
    let _guard = KillOnDrop(pids.clone());
    assert_eq!(pids.len(), 4, "3 nodes and the router: {pids:?}");
    let cmds: Vec<String> = pids.iter().map(|p| cmdline(*p)).collect();
    assert_eq!(
        cmds.iter().filter(|c| c.contains(" node ")).count(),
        3,
        "{cmds:?}"
    );
    assert_eq!(
        cmds.iter().filter(|c| c.contains(" router ")).count(),
        1,
        "{cmds:?}"
    );
    for (id, addr) in three_shards(&addrs) {
        assert!(
            cmds.iter()
                .any(|c| c.contains(&format!("--port {}", addr.port()))
                    && c.contains(&format!("--shard-id {id}"))),
            "no node for shard {id} on {addr}: {cmds:?}"
        );
    }
    assert!(metrics.contains("/metrics"), "metrics URL {metrics:?}");

    let mut c = Raw::connect(router);
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
    assert_eq!(c.cmd(&["SET", "hello", "world"]), ok());
    assert_eq!(c.cmd(&["GET", "hello"]), bulk("world"));
    for i in 0..100 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), ok());
    }
    assert_eq!(c.cmd(&["DBSIZE"]), int(101));
    // The keys really are spread over the nodes `up` started.
    let spread = addrs
        .iter()
        .filter(|a| Raw::connect(**a).cmd(&["DBSIZE"]).int() > 0)
        .count();
    assert_eq!(spread, 3, "every node got keys");
    drop(c);

    up.signal(SIGTERM);
    let status = up
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("up did not exit after SIGTERM; log:\n{}", up.log_tail()));
    assert!(
        status.success(),
        "up exited with {status}; log:\n{}",
        up.log_tail()
    );
    assert_eventually!(
        pids.iter().all(|p| !pid_alive(*p)),
        Duration::from_secs(5),
        "children still alive after up exited: {:?}",
        pids.iter().filter(|p| pid_alive(**p)).collect::<Vec<_>>()
    );
    for addr in addrs.iter().chain([&router]) {
        assert!(!accepts(*addr), "{addr} still accepts connections");
    }
    let _ = std::fs::remove_file(&config);
}

#[test]
fn up_stops_the_cluster_when_a_node_dies() {
    let addrs = node_addrs();
    let config = cluster_file(
        "up-node-dies",
        &cluster_toml("127.0.0.1:0", None, &three_shards(&addrs)),
    );
    let path = config.to_str().unwrap();
    let mut up = spawn_ringcache(&["up", "--config", path], UP_ROUTER);
    let router = up.addr;
    let pids = children_of(&up, 4);
    let _guard = KillOnDrop(pids.clone());
    let node = *pids
        .iter()
        .find(|p| cmdline(**p).contains(&format!("--port {}", addrs[1].port())))
        .unwrap_or_else(|| panic!("no node on {}", addrs[1]));
    assert_eq!(Raw::connect(router).cmd(&["PING"]), status("PONG"));

    let killed = Command::new("kill")
        .arg("-KILL")
        .arg(node.to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = up
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("up kept running after a node died; log:\n{}", up.log_tail()));
    assert!(!status.success(), "a dead node is a failure: {status}");
    let log = up.log_tail();
    assert!(
        log.contains("node b"),
        "up should say which child died:\n{log}"
    );
    assert_eventually!(
        pids.iter().all(|p| !pid_alive(*p)),
        Duration::from_secs(5),
        "children still alive: {:?}",
        pids.iter().filter(|p| pid_alive(**p)).collect::<Vec<_>>()
    );
    assert!(!accepts(router), "the router still accepts connections");
    let _ = std::fs::remove_file(&config);
}

#[test]
fn up_refuses_a_taken_port_clearly_and_leaves_nothing_running() {
    let addrs = node_addrs();
    // Something else already listens where shard b's node should go.
    let taken = std::net::TcpListener::bind(addrs[1]).unwrap();
    let config = cluster_file(
        "up-port-taken",
        &cluster_toml("127.0.0.1:0", None, &three_shards(&addrs)),
    );
    let dir = std::env::temp_dir().join("ringcache-tests");
    let stderr_path = dir.join(format!("up-port-taken-{}.stderr", std::process::id()));
    let mut child = Command::new(ringcache_bin())
        .args(["up", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let up_pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen_children = Vec::new();
    let status = loop {
        for p in child_pids(up_pid) {
            if !seen_children.contains(&p) {
                seen_children.push(p);
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "up still running 30 s after failing to bind {}:\n{}",
                addrs[1],
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _guard = KillOnDrop(seen_children.clone());
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(!status.success(), "up must fail: {status}\n{stderr}");
    assert!(
        stderr.contains(&addrs[1].to_string()) && stderr.contains("in use"),
        "the error should name the taken address {}:\n{stderr}",
        addrs[1]
    );
    assert!(
        seen_children.iter().all(|p| !pid_alive(*p)),
        "children left running: {seen_children:?}"
    );
    for a in [addrs[0], addrs[2]] {
        assert!(!accepts(a), "{a} still accepts connections");
    }
    drop(taken);
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&stderr_path);
}

#[test]
fn the_default_cluster_file_is_what_the_readme_says() {
    let text = std::fs::read_to_string(workspace_root().join("cluster.toml")).unwrap();
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    // What the README tells a newcomer to connect to, and where cluster.toml puts it.
    for (told, configured) in [
        ("redis-cli -p 7000", "listen = \"127.0.0.1:7000\""),
        (
            "curl -s http://127.0.0.1:9121/metrics",
            "metrics = \"127.0.0.1:9121\"",
        ),
        ("redis-cli -p 7401", "listen = \"127.0.0.1:7401\""),
    ] {
        assert!(readme.contains(told), "README.md no longer says {told}");
        assert!(
            text.contains(configured),
            "README.md says {told}, but cluster.toml lacks {configured}"
        );
    }
    for needle in [
        "listen = \"127.0.0.1:7000\"",
        "metrics = \"127.0.0.1:9121\"",
        "primary = \"127.0.0.1:7001\"",
        "primary = \"127.0.0.1:7002\"",
        "primary = \"127.0.0.1:7003\"",
    ] {
        assert!(text.contains(needle), "cluster.toml lacks {needle}");
    }
}

/// `up --tls`: certificates made in `--tls-dir`, nodes listening for TLS only, the router's
/// clients on TLS at the file's address, and the keys spread over the nodes on TLS links.
#[test]
fn up_tls_puts_every_listener_and_link_on_tls() {
    use ringcache_protocol::tls::{ClientFiles, TlsClient};
    let addrs = node_addrs();
    let config = cluster_file(
        "up-tls",
        &cluster_toml("127.0.0.1:0", None, &three_shards(&addrs)),
    );
    let dir = scratch_dir("up-tls");
    let (mut up, lines) = try_spawn_ringcache_lines(
        &[
            "up",
            "--config",
            config.to_str().unwrap(),
            "--tls",
            "--tls-dir",
            dir.to_str().unwrap(),
        ],
        &["ringcache up: router listening for TLS on ", UP_ROUTER],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("ringcache up --tls: {e}"));
    let pids = children_of(&up, 4);
    let _guard = KillOnDrop(pids.clone());
    let tls_addr = lines[0].trim().to_string();
    let client = TlsClient::new(&ClientFiles {
        ca: dir.join("ca.crt"),
        cert: None,
        key: None,
        server_name: None,
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = Duration::from_secs(5);
    rt.block_on(async {
        let mut c = ringcache_client::Client::connect_with(&tls_addr, t, Some(&client))
            .await
            .unwrap();
        for i in 0..60 {
            let k = format!("k{i}");
            assert_eq!(c.call(&["SET", &k, "v"], t).await.unwrap(), ok());
            assert_eq!(c.call(&["GET", &k], t).await.unwrap(), bulk("v"));
        }
        for addr in &addrs {
            let a = addr.to_string();
            let mut n = ringcache_client::Client::connect_with(&a, t, Some(&client))
                .await
                .unwrap();
            let keys = n.call(&["DBSIZE"], t).await.unwrap().int();
            assert!(keys > 0, "node {a} got no keys over TLS");
            // A node speaks TLS only: a plain PING gets no answer.
            let mut plain = ringcache_client::Client::connect(&a, t).await.unwrap();
            assert!(plain
                .call(&["PING"], Duration::from_millis(500))
                .await
                .is_err());
        }
    });
    up.signal(SIGTERM);
    assert!(up
        .wait_exit(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    let _ = std::fs::remove_file(&config);
}
