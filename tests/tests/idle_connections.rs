#![allow(clippy::unwrap_used)]
//! Idle client connections hold no buffers: each costs the node and the router a small fixed
//! amount of memory, far below the 16 KiB read buffer every connection used to keep. Connections
//! idle for a second or two park without a task, and come back as they were.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tests::*;

/// Connections opened per server: with `WARM`, and an L4 backend connection each, inside a
/// default open-file limit of 1024.
const CONNS: usize = 400;
/// Connections opened before measuring: the first ones pay once for each IO thread's heap and
/// the runtime's tables (about 1 MiB), which is no connection's cost.
const WARM: usize = 64;
/// RSS growth per idle connection allowed (a debug build's tasks are larger than a release's).
const MAX_BYTES_PER_CONN: u64 = 6 * 1024;

/// Opens `WARM` then `CONNS` connections to `addr` and returns them with the RSS growth per
/// connection of `proc_` over the `CONNS`.
fn idle_growth(proc_: &Proc, addr: SocketAddr) -> (Vec<TcpStream>, u64) {
    let mut conns = Vec::with_capacity(WARM + CONNS);
    open_idle(addr, WARM, &mut conns);
    std::thread::sleep(Duration::from_millis(200));
    let before = proc_.rss_kib().unwrap();
    open_idle(addr, CONNS, &mut conns);
    std::thread::sleep(Duration::from_millis(300));
    let after = proc_.rss_kib().unwrap();
    let per_conn = after.saturating_sub(before) * 1024 / CONNS as u64;
    eprintln!("{CONNS} idle connections: RSS {before} -> {after} KiB, {per_conn} B each");
    (conns, per_conn)
}

/// Opens `n` connections to `addr` into `conns`, every tenth sending a PING, and waits until the
/// last is served.
fn open_idle(addr: SocketAddr, n: usize, conns: &mut Vec<TcpStream>) {
    for i in 0..n {
        let mut s = TcpStream::connect(addr).unwrap();
        if i % 10 == 0 {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"PING\r\n").unwrap();
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"+PONG\r\n");
        }
        conns.push(s);
    }
    // Every connection accepted and served: one more round trip on the last.
    let Some(last) = conns.last_mut() else { return };
    last.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    last.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 7];
    last.read_exact(&mut buf).unwrap();
}

#[test]
fn an_idle_connection_costs_the_node_no_buffers() {
    let node = start_node(&[]);
    let (_conns, per_conn) = idle_growth(&node, node.addr);
    assert!(
        per_conn <= MAX_BYTES_PER_CONN,
        "node RSS grew {per_conn} B per idle connection"
    );
}

#[test]
fn an_idle_connection_costs_the_router_no_buffers() {
    let cluster = Cluster::builder().shards(1).start();
    let router = cluster.router();
    let (_conns, per_conn) = idle_growth(&router.proc_, router.addr());
    assert!(
        per_conn <= MAX_BYTES_PER_CONN,
        "router RSS grew {per_conn} B per idle connection"
    );
}

#[test]
fn an_idle_l4_connection_costs_the_router_no_buffers() {
    let backend = start_node(&[]);
    let settings =
        RouterSettings::default().l4(L4Pool::Addrs(vec![backend.addr.to_string()]), "round-robin");
    let cluster = Cluster::builder().shards(1).router(settings).start();
    let router = cluster.router();
    let (_conns, per_conn) = idle_growth(&router.proc_, router.l4[0]);
    assert!(
        per_conn <= MAX_BYTES_PER_CONN,
        "router RSS grew {per_conn} B per idle L4 connection"
    );
}

/// Waits until INFO clients on `ctl` reports at least `n` parked connections.
fn wait_parked(ctl: &mut Raw, n: u64) {
    assert_eventually!(
        num(&info(ctl, "clients"), "parked_clients") >= n,
        Duration::from_secs(15),
        "fewer than {n} connections parked: {:?}",
        info(ctl, "clients")
    );
}

/// Connections left idle park, then answer as before: their name, protocol and (`multi`) a
/// transaction queued before parking are kept; one closed by its client while parked is
/// unregistered; one killed while parked is closed at once.
fn parked_connections_keep_their_state(addr: SocketAddr, multi: bool) {
    // `ctl` polls INFO every 10 ms while waiting, so it never goes idle.
    let mut ctl = Raw::connect(addr);
    let mut named = Raw::connect(addr);
    assert_eq!(named.cmd_raw(&["CLIENT", "SETNAME", "sleeper"]), b"+OK\r\n");
    let mut resp3 = Raw::connect(addr);
    assert!(!resp3.hello3(&[]).is_error());
    let mut tx = Raw::connect(addr);
    if multi {
        assert_eq!(tx.cmd_raw(&["MULTI"]), b"+OK\r\n");
        assert_eq!(tx.cmd_raw(&["SET", "parked:k", "v"]), b"+QUEUED\r\n");
    }
    let mut victim = Raw::connect(addr);
    let victim_id = String::from_utf8(victim.cmd_raw(&["CLIENT", "ID"])).unwrap();
    let victim_id = victim_id.trim_start_matches(':').trim_end().to_string();
    let mut quiet: Vec<Raw> = (0..20).map(|_| Raw::connect(addr)).collect();
    let leaver = Raw::connect(addr);
    wait_parked(&mut ctl, 25);
    let connected = num(&info(&mut ctl, "clients"), "connected_clients");

    drop(leaver);
    assert_eventually!(
        num(&info(&mut ctl, "clients"), "connected_clients") == connected - 1,
        Duration::from_secs(5),
        "a connection closed while parked stayed registered"
    );

    assert_eq!(
        ctl.cmd_raw(&["CLIENT", "KILL", "ID", victim_id.as_str()]),
        b":1\r\n"
    );
    assert!(
        victim.is_closed(Duration::from_secs(2)),
        "a parked connection killed by CLIENT KILL stayed open"
    );

    assert_eq!(named.cmd_raw(&["CLIENT", "GETNAME"]), b"$7\r\nsleeper\r\n");
    // A map in RESP3 (an array in RESP2): the protocol HELLO chose before parking.
    assert_eq!(resp3.cmd_raw(&["HGETALL", "parked:nohash"]), b"%0\r\n");
    if multi {
        assert_eq!(tx.cmd_raw(&["EXEC"]), b"*1\r\n+OK\r\n");
        assert_eq!(ctl.cmd_raw(&["GET", "parked:k"]), b"$1\r\nv\r\n");
    }
    for c in &mut quiet {
        assert_eq!(c.cmd_raw(&["PING"]), b"+PONG\r\n");
    }
    // Back at work, then idle again: they park again.
    wait_parked(&mut ctl, 23);
    for c in &mut quiet {
        assert_eq!(c.cmd_raw(&["PING"]), b"+PONG\r\n");
    }
}

#[test]
fn idle_node_connections_park_and_keep_their_state() {
    let node = start_node(&[]);
    parked_connections_keep_their_state(node.addr, true);
}

#[test]
fn idle_router_connections_park_and_keep_their_state() {
    let cluster = Cluster::builder().shards(1).start();
    parked_connections_keep_their_state(cluster.router_addr(), false);
}
