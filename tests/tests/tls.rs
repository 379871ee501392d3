#![allow(clippy::unwrap_used)]
//! TLS end to end: a node's and a router's TLS listeners (rustls clients and redis-cli), failed
//! handshakes, client certificates, certificate reload on SIGHUP, and a router over TLS-only
//! nodes moving keys by RING JOIN with a replica following over TLS.

use std::io::{Read, Write};
use std::time::Duration;

use ringcache_client::Client;
use ringcache_protocol::tls::TlsClient;
use tests::tls::Pki;
use tests::*;

const T: Duration = Duration::from_secs(5);
const TLS_LISTENING: &str = "ringcache node listening for TLS on ";
const ROUTER_TLS_LISTENING: &str = "ringcache router listening for TLS on ";

/// A node with only a TLS listener (`--port 0 --tls-port P`), plus `extra` flags.
fn tls_node(pki: &Pki, extra: &[&str]) -> Proc {
    let port = free_port().to_string();
    let mut args: Vec<String> = ["node", "--bind", "127.0.0.1", "--port", "0", "--tls-port"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(port);
    args.extend(pki.node_flags());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    try_spawn_ringcache_lines(&args, &[TLS_LISTENING], Duration::from_secs(10))
        .unwrap()
        .0
}

fn pki(name: &str) -> Pki {
    Pki::create(&scratch_dir(name)).unwrap()
}

async fn call(addr: &str, tls: &TlsClient, args: &[&str]) -> Result<Reply, String> {
    let mut c = Client::connect_with(addr, T, Some(tls))
        .await
        .map_err(|e| e.to_string())?;
    c.call(args, T).await.map_err(|e| e.to_string())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A reply as text: simple strings, bulks and integers as themselves, arrays space-joined.
fn text(r: &Reply) -> String {
    match r {
        Reply::Status(s) => s.to_string(),
        Reply::StatusOwned(s) => s.clone(),
        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Reply::Int(n) => n.to_string(),
        Reply::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        other => format!("{other:?}"),
    }
}

async fn call_text(addr: &str, tls: &TlsClient, args: &[&str]) -> Result<String, String> {
    call(addr, tls, args).await.map(|r| text(&r))
}

fn has_redis_cli_tls() -> bool {
    std::process::Command::new("redis-cli")
        .arg("--help")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).contains("--tls")
                || String::from_utf8_lossy(&o.stderr).contains("--tls")
        })
        .unwrap_or(false)
}

fn redis_cli(port: u16, pki: &Pki, cert: bool, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new("redis-cli");
    cmd.args(["-p", &port.to_string(), "--tls", "--cacert"])
        .arg(pki.ca());
    if cert {
        cmd.arg("--cert")
            .arg(pki.cert())
            .arg("--key")
            .arg(pki.key());
    }
    let out = cmd.args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_node_serves_tls_only_and_reports_its_settings() {
    let pki = pki("tls-node");
    let node = tls_node(&pki, &["--tls-auth-clients", "no"]);
    let addr = node.addr.to_string();
    runtime().block_on(async {
        let tls = pki.client();
        let t = |args: &'static [&'static str]| call_text(&addr, &tls, args);
        assert_eq!(t(&["SET", "k", "hello"]).await.unwrap(), "OK");
        assert_eq!(t(&["GET", "k"]).await.unwrap(), "hello");
        let port = node.addr.port();
        assert_eq!(
            t(&["CONFIG", "GET", "tls-port"]).await.unwrap(),
            format!("tls-port {port}")
        );
        assert_eq!(
            t(&["CONFIG", "GET", "tls-auth-clients"]).await.unwrap(),
            "tls-auth-clients no"
        );
        // --port 0 with --tls-port: no plain listener, as in Redis.
        assert_eq!(t(&["CONFIG", "GET", "port"]).await.unwrap(), "port 0");
    });
    if has_redis_cli_tls() {
        assert_eq!(
            redis_cli(node.addr.port(), &pki, false, &["GET", "k"]),
            "hello"
        );
    }
}

#[test]
fn a_plain_client_on_a_tls_port_is_closed_and_a_wrong_ca_refused() {
    let pki = pki("tls-refuse");
    let other = Pki::create(&scratch_dir("tls-other-ca")).unwrap();
    let node = tls_node(&pki, &["--tls-auth-clients", "no"]);
    // Plain RESP on the TLS port: no PONG, the connection ends.
    let mut s = std::net::TcpStream::connect(node.addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("PONG"),
        "a plain client was answered: {got:?}"
    );
    let addr = node.addr.to_string();
    runtime().block_on(async {
        let err = call(&addr, &other.client(), &["PING"]).await.unwrap_err();
        assert!(err.to_lowercase().contains("certificate"), "{err}");
        // The node still serves the right clients.
        assert_eq!(
            call_text(&addr, &pki.client(), &["PING"]).await.unwrap(),
            "PONG"
        );
    });
}

#[test]
fn client_certificates_are_required_with_a_ca_unless_told_otherwise() {
    let pki = pki("tls-client-cert");
    let node = tls_node(&pki, &[]);
    let addr = node.addr.to_string();
    runtime().block_on(async {
        assert!(call(&addr, &pki.client(), &["PING"]).await.is_err());
        assert_eq!(
            call_text(&addr, &pki.client_with_cert(), &["PING"])
                .await
                .unwrap(),
            "PONG"
        );
    });
    if has_redis_cli_tls() {
        assert_eq!(redis_cli(node.addr.port(), &pki, true, &["PING"]), "PONG");
        assert_ne!(redis_cli(node.addr.port(), &pki, false, &["PING"]), "PONG");
    }
}

#[test]
fn sighup_reloads_the_node_certificates_for_new_handshakes() {
    let pki = pki("tls-reload");
    let node = tls_node(&pki, &["--tls-auth-clients", "no"]);
    let addr = node.addr.to_string();
    let old = pki.client();
    // A new CA and certificate in the same files.
    let renewed = Pki::create(&pki.dir).unwrap();
    let new = renewed.client();
    node.signal("HUP");
    let rt = runtime();
    assert_eventually!(
        rt.block_on(call_text(&addr, &new, &["PING"])).as_deref() == Ok("PONG"),
        Duration::from_secs(10)
    );
    assert!(rt.block_on(call(&addr, &old, &["PING"])).is_err());
}

#[test]
fn a_router_over_tls_to_tls_nodes_moves_keys_and_a_replica_follows_over_tls() {
    let pki = pki("tls-cluster");
    let links = ["--tls-replication", "yes", "--tls-cluster", "yes"];
    let a = tls_node(&pki, &links);
    let b = tls_node(&pki, &links);
    let mut replica_args = links.to_vec();
    let primary = a.addr.to_string();
    replica_args.extend(["--replica-of", primary.as_str()]);
    let replica = tls_node(&pki, &replica_args);
    let dir = scratch_dir("tls-router");
    let config = dir.join("cluster.toml");
    let p = |p: std::path::PathBuf| p.display().to_string();
    std::fs::write(
        &config,
        format!(
            "[router]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n\
             tls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\n\
             node_tls = true\nnode_tls_ca = {:?}\nnode_tls_cert = {:?}\nnode_tls_key = {:?}\n\n\
             [[shard]]\nid = \"a\"\nprimary = \"{}\"\nreplicas = [\"{}\"]\n",
            p(pki.cert()),
            p(pki.key()),
            p(pki.ca()),
            p(pki.ca()),
            p(pki.cert()),
            p(pki.key()),
            a.addr,
            replica.addr
        ),
    )
    .unwrap();
    let config_s = config.display().to_string();
    let (router, lines) = try_spawn_ringcache_lines(
        &["router", "--config", &config_s],
        &[ROUTER_LISTENING, ROUTER_TLS_LISTENING],
        Duration::from_secs(10),
    )
    .unwrap();
    let router_tls = lines[1].clone();
    let plain = router.addr.to_string();
    let with_cert = pki.client_with_cert();
    let rt = runtime();
    rt.block_on(async {
        // Clients of the router's TLS listener need a certificate (tls_ca is set).
        assert!(call(&router_tls, &pki.client(), &["PING"]).await.is_err());
        let mut c = Client::connect_with(&router_tls, T, Some(&with_cert))
            .await
            .unwrap();
        for i in 0..200 {
            let (k, v) = (format!("key:{i}"), format!("v{i}"));
            let r = c.call(&["SET", k.as_str(), v.as_str()], T).await.unwrap();
            assert_eq!(text(&r), "OK");
        }
        let b_addr = b.addr.to_string();
        let r = call(&plain, &pki.client(), &["PING"]).await;
        assert!(r.is_err(), "the plain listener does not speak TLS");
        let mut admin = Client::connect(&plain, T).await.unwrap();
        let r = admin
            .call(
                &["RING", "JOIN", "b", b_addr.as_str()],
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(text(&r), "OK", "RING JOIN");
        for i in 0..200 {
            let k = format!("key:{i}");
            let r = c.call(&["GET", k.as_str()], T).await.unwrap();
            assert_eq!(text(&r), format!("v{i}"), "{k} after the join");
        }
    });
    let dbsize = |addr: &str| match rt.block_on(call(addr, &with_cert, &["DBSIZE"])) {
        Ok(Reply::Int(n)) => n,
        other => panic!("DBSIZE at {addr}: {other:?}"),
    };
    let (a_s, b_s) = (a.addr.to_string(), b.addr.to_string());
    // The keys moved over the nodes' TLS migration links, and the replica follows its primary
    // over TLS (the moved keys' deletes included).
    assert_eventually!(dbsize(&a_s) + dbsize(&b_s) == 200, Duration::from_secs(20));
    assert!(dbsize(&b_s) > 0, "no key moved to b");
    let r_s = replica.addr.to_string();
    assert_eventually!(dbsize(&r_s) == dbsize(&a_s), Duration::from_secs(20));
    if has_redis_cli_tls() {
        let port: u16 = router_tls.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(redis_cli(port, &pki, true, &["GET", "key:7"]), "v7");
    }
}
