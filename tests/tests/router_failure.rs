#![allow(clippy::unwrap_used)]
//! A shard going down: its keys get a prompt error naming the shard (within the router's request
//! timeout), keys on the other shards keep working, and once a node is back on the same address
//! the router uses it again.

use std::time::{Duration, Instant};

use tests::*;

/// Slack on top of the router's request timeout for a loaded test machine.
const MARGIN: Duration = Duration::from_millis(1500);

/// Runs one command and returns its reply and how long it took.
fn timed(c: &mut Raw, args: &[&str]) -> (Reply, Duration) {
    let t = Instant::now();
    let r = c.cmd(args);
    (r, t.elapsed())
}

#[test]
fn a_killed_node_fails_its_keys_only_then_comes_back() {
    let mut cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    let alpha = cl.keys_on("alpha", "k", 20);
    let bravo = cl.keys_on("bravo", "k", 20);
    let charlie = cl.keys_on("charlie", "k", 20);
    for k in alpha.iter().chain(&bravo).chain(&charlie) {
        assert_eq!(c.cmd(&["SET", k, k]), ok());
    }

    cl.kill_shard("bravo");
    let limit = ROUTER_REQUEST_TIMEOUT + MARGIN;
    // The first requests may meet the dead connection, later ones a refused reconnect: all of
    // them must get an error naming the shard, promptly, on this same client connection.
    for k in &bravo {
        for cmd in [vec!["GET", k.as_str()], vec!["SET", k.as_str(), "x"]] {
            let (r, took) = timed(&mut c, &cmd);
            let e = r
                .error_text()
                .unwrap_or_else(|| panic!("{cmd:?} on dead shard bravo: {r:?}"));
            assert!(
                e.contains("bravo"),
                "{cmd:?}: error should name shard bravo: {e}"
            );
            assert!(
                took < limit,
                "{cmd:?}: error took {took:?} (limit {limit:?})"
            );
        }
    }
    // The other shards are unaffected, and quick.
    for k in alpha.iter().chain(&charlie) {
        let (r, took) = timed(&mut c, &["GET", k]);
        assert_eq!(r, bulk(k), "{k} on a live shard");
        assert!(took < Duration::from_secs(1), "GET {k} took {took:?}");
    }
    let mut mget = vec!["MGET"];
    mget.extend(alpha.iter().chain(&charlie).map(String::as_str));
    let r = c.cmd(&mget);
    assert_eq!(r.items().len(), 40, "MGET over live shards: {r:?}");
    // A multi-key command touching the dead shard fails as a whole, naming it.
    let (r, took) = timed(&mut c, &["MGET", &alpha[0], &bravo[0], &charlie[0]]);
    let e = r
        .error_text()
        .unwrap_or_else(|| panic!("MGET with a dead shard: {r:?}"));
    assert!(e.contains("bravo"), "{e}");
    assert!(took < limit, "MGET took {took:?}");
    // Commands sent to every shard fail rather than answer for part of the keyspace.
    for cmd in [vec!["DBSIZE"], vec!["KEYS", "*"]] {
        let (r, took) = timed(&mut c, &cmd);
        let e = r
            .error_text()
            .unwrap_or_else(|| panic!("{cmd:?} with shard bravo down: {r:?}"));
        assert!(e.contains("bravo"), "{cmd:?}: {e}");
        assert!(took < limit, "{cmd:?} took {took:?}");
    }
    // In a pipeline the error takes the dead key's place and the order holds.
    let mut batch = encode(&["GET", &alpha[1]]);
    batch.extend(encode(&["GET", &bravo[1]]));
    batch.extend(encode(&["GET", &charlie[1]]));
    c.send(&batch);
    assert_eq!(c.reply(), bulk(&alpha[1]));
    assert!(c.reply().is_error());
    assert_eq!(c.reply(), bulk(&charlie[1]));
    // New clients see the same.
    let mut fresh = cl.raw();
    assert_eq!(fresh.cmd(&["GET", &charlie[2]]), bulk(&charlie[2]));
    assert!(fresh.cmd(&["GET", &bravo[2]]).is_error());
    // The router itself stays up and says so.
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
    assert!(cl.router_mut().proc_.is_alive());

    // A node back on the same address: the router reconnects by itself (its data is gone).
    cl.restart_shard("bravo");
    assert_eventually!(
        c.cmd(&["GET", &bravo[0]]) == nil(),
        Duration::from_secs(15),
        "the router did not use the restarted bravo node; router log:\n{}",
        cl.router_log()
    );
    for k in &bravo {
        assert_eq!(c.cmd(&["SET", k, "again"]), ok());
        assert_eq!(c.cmd(&["GET", k]), bulk("again"));
    }
    assert_eq!(
        cl.shard("bravo").primary.raw().cmd(&["DBSIZE"]),
        int(20),
        "writes reached the new node"
    );
    assert_eq!(c.cmd(&["GET", &alpha[0]]), bulk(&alpha[0]));
    let mut fresh = cl.raw();
    assert_eq!(fresh.cmd(&["GET", &bravo[3]]), bulk("again"));
}

#[test]
fn a_stopped_node_times_out_within_the_request_timeout() {
    // SIGSTOP: connections stay open but nothing answers, so only the router's timeout helps.
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    let charlie = cl.keys_on("charlie", "s", 2);
    let alpha = cl.keys_on("alpha", "s", 2);
    assert_eq!(c.cmd(&["SET", &charlie[0], "1"]), ok());
    assert_eq!(c.cmd(&["SET", &alpha[0], "1"]), ok());
    cl.shard("charlie").primary.server().signal(SIGSTOP);
    let (r, took) = timed(&mut c, &["GET", &charlie[0]]);
    cl.shard("charlie").primary.server().signal(SIGCONT);
    let e = r
        .error_text()
        .unwrap_or_else(|| panic!("GET on a stopped shard: {r:?}"));
    assert!(
        e.contains("charlie"),
        "error should name shard charlie: {e}"
    );
    assert!(
        took < ROUTER_REQUEST_TIMEOUT + MARGIN,
        "error took {took:?}, more than the request timeout + {MARGIN:?}"
    );
    // After SIGCONT the shard answers again. The late reply to the timed-out GET must be
    // dropped, not handed to the next request: charlie[1] does not exist, so it must read nil.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.cmd(&["GET", &charlie[1]]);
        if !r.is_error() {
            assert_eq!(
                r,
                nil(),
                "a reply that timed out was delivered to a later request"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shard charlie did not come back after SIGCONT ({r:?}); router log:\n{}",
            cl.router_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.cmd(&["GET", &charlie[0]]), bulk("1"));
    assert_eq!(c.cmd(&["GET", &alpha[0]]), bulk("1"));
}
