#![allow(clippy::unwrap_used)]
//! Idle client connections hold no buffers: each costs the node and the router a small fixed
//! amount of memory, far below the 16 KiB read buffer every connection used to keep.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tests::*;

/// Connections opened per server: inside a default open-file limit of 1024.
const CONNS: usize = 400;
/// RSS growth per idle connection allowed (a debug build's tasks are larger than a release's).
const MAX_BYTES_PER_CONN: u64 = 6 * 1024;

/// Opens `CONNS` connections to `addr`, every tenth sending a PING, and returns them with the
/// RSS growth per connection of `proc_`.
fn idle_growth(proc_: &Proc, addr: SocketAddr) -> (Vec<TcpStream>, u64) {
    std::thread::sleep(Duration::from_millis(200));
    let before = proc_.rss_kib().unwrap();
    let mut conns = Vec::with_capacity(CONNS);
    for i in 0..CONNS {
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
    let mut last = conns.pop().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    last.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 7];
    last.read_exact(&mut buf).unwrap();
    conns.push(last);
    std::thread::sleep(Duration::from_millis(300));
    let after = proc_.rss_kib().unwrap();
    let per_conn = after.saturating_sub(before) * 1024 / CONNS as u64;
    eprintln!("{CONNS} idle connections: RSS {before} -> {after} KiB, {per_conn} B each");
    (conns, per_conn)
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
