#![allow(clippy::unwrap_used)]
//! Replication end to end: real `ringcache node` processes on 127.0.0.1 port 0, a primary and a
//! replica started `--replica-of` (or turned by `REPLICAOF`). Full sync, the write stream (every
//! write command), expiry agreement, read-only replicas, ROLE / INFO replication, AUTH. Writes
//! racing the snapshot, resyncs, promotion and the lost-write counters are in
//! `replication_resync.rs`; "in sync" is defined in `tests/src/replicas.rs`.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use tests::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A connection to `p`, authenticated when `password` is given.
fn conn(p: &Proc, password: Option<&str>) -> Raw {
    let mut c = p.raw();
    if let Some(pw) = password {
        assert_eq!(c.cmd(&["AUTH", pw]), ok(), "AUTH on {}", p.addr);
    }
    c
}

// ---------------------------------------------------------------------------------------------
// 1. Full sync
// ---------------------------------------------------------------------------------------------

#[test]
fn full_sync_copies_strings_hashes_and_absolute_deadlines() {
    let p = start_node(&[]);
    let mut pc = p.raw();
    preload(&mut pc, "s", 300, 20);
    assert_eq!(pc.cmd(&["SET", "empty", ""]), ok());
    assert_eq!(pc.cmd(&["SET", "crlf", "a\r\nb c\0d"]), ok());
    assert_eq!(
        pc.cmd(&["HSET", "small", "f1", "v1", "f2", "v2", "f3", ""]),
        int(3)
    );
    let mut big = vec!["HSET".to_string(), "big".to_string()];
    for i in 0..300 {
        big.push(format!("field:{i}"));
        big.push(format!("value:{i}"));
    }
    big.push("long".into());
    big.push("x".repeat(500));
    assert_eq!(pc.cmd(&big), int(301));
    // TTLs of several sizes and units, on strings and hashes.
    assert_eq!(pc.cmd(&["SET", "ttl:ex", "v", "EX", "100"]), ok());
    assert_eq!(pc.cmd(&["SET", "ttl:px", "v", "PX", "50000"]), ok());
    assert_eq!(pc.cmd(&["SETEX", "ttl:setex", "300", "v"]), ok());
    assert_eq!(pc.cmd(&["PEXPIRE", "small", "80000"]), int(1));
    assert_eq!(pc.cmd(&["EXPIRE", "big", "90"]), int(1));
    for i in 0..50 {
        let k = format!("ttl:many:{i}");
        assert_eq!(
            pc.cmd(&["SET", &k, "v", "PX", &(60_000 + i * 100).to_string()]),
            ok()
        );
    }

    let r = start_replica_of(p.addr, &[]);
    let mut rc = r.raw();
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    let n = assert_same_data(&mut pc, &mut rc, "after a full sync");
    assert_eq!(n, 300 + 2 + 2 + 3 + 50, "keys after the full sync");
    assert_eq!(
        pc.cmd(&["KEYS", "*"]).sorted(),
        rc.cmd(&["KEYS", "*"]).sorted()
    );
    assert_eq!(rc.cmd(&["HLEN", "big"]), int(301));
    assert_eq!(rc.cmd(&["HGET", "big", "field:299"]), bulk("value:299"));
    assert_eq!(rc.cmd(&["HGET", "big", "long"]), bulk("x".repeat(500)));
    assert_eq!(
        rc.cmd(&["HGETALL", "small"]),
        bulks(&["f1", "v1", "f2", "v2", "f3", ""])
    );
    assert_eq!(rc.cmd(&["GET", "crlf"]), bulk("a\r\nb c\0d"));
    assert_eq!(rc.cmd(&["GET", "empty"]), bulk(""));
    assert_eq!(rc.cmd(&["TTL", "s:1"]), int(-1));
    // Deadlines are absolute: the remaining time agrees, however long the sync took.
    for k in [
        "ttl:ex",
        "ttl:px",
        "ttl:setex",
        "small",
        "big",
        "ttl:many:49",
    ] {
        let pt = pc.cmd(&["PTTL", k]).int();
        let rt = rc.cmd(&["PTTL", k]).int();
        assert!(pt > 0 && rt > 0, "{k}: PTTL primary {pt}, replica {rt}");
        assert!(
            (pt - rt).abs() <= 1000,
            "{k}: PTTL primary {pt} vs replica {rt}"
        );
        assert_eq!(
            pc.cmd(&["PEXPIRETIME", k]),
            rc.cmd(&["PEXPIRETIME", k]),
            "{k}: deadline"
        );
    }
    // Nothing was written while the replica was attached: both write counters are still zero.
    let (pi, ri) = (replication_info(&mut pc), replication_info(&mut rc));
    assert_eq!(num(&pi, "ringcache_repl_writes"), 0, "{pi:?}");
    assert_eq!(num(&ri, "ringcache_repl_writes"), 0, "{ri:?}");
}

// ---------------------------------------------------------------------------------------------
// 2. The write stream: every write command
// ---------------------------------------------------------------------------------------------

#[test]
fn every_write_command_reaches_the_replica() {
    let p = start_node(&[]);
    let r = start_replica_of(p.addr, &[]);
    let (mut pc, mut rc) = (p.raw(), r.raw());
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    let now = now_ms();
    let c = &mut pc;
    let mut run = |args: &[&str], want: Reply| {
        assert_eq!(c.cmd(args), want, "primary: {args:?}");
    };

    // SET and its options.
    run(&["SET", "a", "1"], ok());
    run(&["SET", "b", "2", "EX", "100"], ok());
    run(&["SET", "c", "3", "PX", "100000"], ok());
    run(&["SET", "b", "22", "KEEPTTL"], ok());
    run(&["SET", "a", "11", "XX"], ok());
    run(&["SET", "nx:new", "v", "NX"], ok());
    run(&["SET", "a", "nope", "NX"], nil());
    run(&["SET", "xx:missing", "v", "XX"], nil());
    run(&["SET", "a", "111", "GET"], bulk("11"));
    let exat = ((now + 200_000) / 1000).to_string();
    let pxat = (now + 300_000).to_string();
    run(&["SET", "exat", "v", "EXAT", &exat], ok());
    run(&["SET", "pxat", "v", "PXAT", &pxat], ok());
    run(&["SET", "getnx", "v1", "NX", "GET"], nil());
    run(&["SETNX", "setnx", "v"], int(1));
    run(&["SETNX", "setnx", "other"], int(0));
    run(&["SETEX", "setex", "100", "v"], ok());
    run(&["PSETEX", "psetex", "100000", "v"], ok());
    // GETEX, GETDEL, GETSET.
    run(&["GETEX", "c", "EX", "500"], bulk("3"));
    run(&["GETEX", "b", "PERSIST"], bulk("22"));
    run(&["GETEX", "setex", "PXAT", &pxat], bulk("v"));
    run(&["GETEX", "a"], bulk("111"));
    run(&["GETDEL", "nx:new"], bulk("v"));
    run(&["GETSET", "a", "1111"], bulk("111"));
    run(&["SET", "getset:ttl", "v", "EX", "100"], ok());
    run(&["GETSET", "getset:ttl", "w"], bulk("v"));
    // MSET, MSETNX.
    run(&["MSET", "m1", "1", "m2", "2", "m3", "3"], ok());
    run(&["MSETNX", "m4", "4", "m5", "5", "m6", "6"], int(1));
    run(&["MSETNX", "m1", "x", "m7", "7"], int(0));
    // APPEND, SETRANGE (a TTL is kept).
    run(&["APPEND", "ap", "hello"], int(5));
    run(&["APPEND", "ap", " world"], int(11));
    run(&["SET", "ap:ttl", "x", "EX", "100"], ok());
    run(&["APPEND", "ap:ttl", "yz"], int(3));
    run(&["SETRANGE", "sr", "5", "abc"], int(8));
    run(&["SETRANGE", "a", "0", "Z"], int(4));
    run(&["SET", "sr:ttl", "hello", "PX", "100000"], ok());
    run(&["SETRANGE", "sr:ttl", "1", "EL"], int(5));
    // Counters (a TTL is kept).
    run(&["INCR", "n"], int(1));
    run(&["INCR", "n"], int(2));
    run(&["DECR", "n"], int(1));
    run(&["INCRBY", "n", "10"], int(11));
    run(&["DECRBY", "n", "3"], int(8));
    run(&["SET", "n:ttl", "5", "EX", "100"], ok());
    run(&["INCR", "n:ttl"], int(6));
    run(&["INCRBYFLOAT", "f", "1.5"], bulk("1.5"));
    run(&["INCRBYFLOAT", "f", "0.1"], bulk("1.6"));
    run(&["INCRBYFLOAT", "f", "1e3"], bulk("1001.59999999999999998"));
    // DEL, UNLINK.
    run(&["SET", "d1", "x"], ok());
    run(&["SET", "d2", "x"], ok());
    run(&["SET", "d3", "x"], ok());
    run(&["DEL", "d1", "missing"], int(1));
    run(&["UNLINK", "d2", "d3"], int(2));
    // The EXPIRE family with NX/XX/GT/LT; PERSIST; an expiry in the past deletes.
    run(&["EXPIRE", "m1", "100"], int(1));
    run(&["PEXPIRE", "m2", "200000"], int(1));
    let at_s = ((now + 300_000) / 1000).to_string();
    let at_ms = (now + 400_000).to_string();
    run(&["EXPIREAT", "m3", &at_s], int(1));
    run(&["PEXPIREAT", "m4", &at_ms], int(1));
    run(&["EXPIRE", "m5", "100", "NX"], int(1));
    run(&["EXPIRE", "m5", "200", "NX"], int(0));
    run(&["EXPIRE", "m5", "200", "XX"], int(1));
    run(&["EXPIRE", "m5", "150", "GT"], int(0));
    run(&["EXPIRE", "m5", "300", "GT"], int(1));
    run(&["EXPIRE", "m5", "400", "LT"], int(0));
    run(&["EXPIRE", "m5", "250", "LT"], int(1));
    run(&["EXPIRE", "m6", "100", "XX"], int(0));
    run(&["PERSIST", "m1"], int(1));
    run(&["PERSIST", "m6"], int(0));
    run(&["SET", "gone", "x"], ok());
    run(&["EXPIRE", "gone", "-1"], int(1));
    run(&["SET", "gone2", "x"], ok());
    run(&["PEXPIREAT", "gone2", "1000"], int(1));
    // RENAME, RENAMENX (the deadline moves with the value), COPY.
    run(&["RENAME", "m2", "m2:renamed"], ok());
    run(&["RENAMENX", "m3", "m3:renamed"], int(1));
    run(&["RENAMENX", "m4", "a"], int(0));
    run(&["SET", "rn:dst", "old", "EX", "100"], ok());
    run(&["RENAME", "m5", "rn:dst"], ok());
    run(&["COPY", "ap", "ap:copy"], int(1));
    run(&["COPY", "ap", "a", "REPLACE"], int(1));
    run(&["COPY", "m4", "m4:copy"], int(1));
    // Hashes.
    run(&["HSET", "h", "f1", "v1", "f2", "v2"], int(2));
    run(&["HSETNX", "h", "f1", "x"], int(0));
    run(&["HSETNX", "h", "f3", "v3"], int(1));
    run(&["HMSET", "h", "f4", "v4", "f5", "v5"], ok());
    run(&["HDEL", "h", "f2", "missing"], int(1));
    run(&["HINCRBY", "h", "cnt", "5"], int(5));
    run(&["HINCRBY", "h", "cnt", "-2"], int(3));
    run(&["HINCRBYFLOAT", "h", "fl", "2.5"], bulk("2.5"));
    run(&["HINCRBYFLOAT", "h", "fl", "0.25"], bulk("2.75"));
    run(&["EXPIRE", "h", "1000"], int(1));
    run(&["COPY", "h", "h:copy"], int(1));
    run(&["HSET", "h", "after-copy", "1"], int(1));
    run(&["HSET", "hd", "a", "1", "b", "2"], int(2));
    run(&["HDEL", "hd", "a", "b"], int(2));
    run(&["RENAME", "h:copy", "h:renamed"], ok());

    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    let n = assert_same_data(&mut pc, &mut rc, "after every write command");
    assert!(n >= 25, "only {n} keys left: the test lost its writes");
    // A few spot checks on the replica itself.
    assert_eq!(rc.cmd(&["GET", "a"]), bulk("hello world"));
    assert_eq!(rc.cmd(&["TTL", "b"]), int(-1), "GETEX PERSIST");
    assert_eq!(rc.cmd(&["GET", "sr"]), bulk("\0\0\0\0\0abc"));
    assert_eq!(rc.cmd(&["GET", "n"]), bulk("8"));
    assert_eq!(rc.cmd(&["GET", "f"]), bulk("1001.59999999999999998"));
    assert_eq!(
        rc.cmd(&["EXISTS", "nx:new", "d1", "d2", "gone", "hd", "m2"]),
        int(0)
    );
    assert_eq!(rc.cmd(&["GET", "rn:dst"]), bulk("5"));
    assert_eq!(rc.cmd(&["HGET", "h", "cnt"]), bulk("3"));
    assert_eq!(rc.cmd(&["HEXISTS", "h:renamed", "after-copy"]), int(0));
    assert_eq!(rc.cmd(&["PEXPIRETIME", "pxat"]), int(now + 300_000));
    assert!(
        rc.cmd(&["TTL", "ap:ttl"]).int() > 90,
        "APPEND keeps the TTL"
    );
    assert!(rc.cmd(&["TTL", "n:ttl"]).int() > 90, "INCR keeps the TTL");

    // FLUSHALL / FLUSHDB, then new writes.
    assert_eq!(pc.cmd(&["FLUSHALL"]), ok());
    assert_eq!(pc.cmd(&["SET", "after-flush", "1"]), ok());
    assert_eq!(pc.cmd(&["HSET", "after-flush:h", "f", "v"]), int(1));
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(assert_same_data(&mut pc, &mut rc, "after FLUSHALL"), 2);
    assert_eq!(rc.cmd(&["DBSIZE"]), int(2));
    assert_eq!(pc.cmd(&["FLUSHDB", "ASYNC"]), ok());
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(rc.cmd(&["DBSIZE"]), int(0));
    assert_eq!(rc.cmd(&["KEYS", "*"]), arr(vec![]));
}

// ---------------------------------------------------------------------------------------------
// 3. Expiry agreement
// ---------------------------------------------------------------------------------------------

#[test]
fn replica_expires_keys_on_its_own_at_the_primary_deadline() {
    let mut p = start_node(&[]);
    let r = start_replica_of(p.addr, &[]);
    let (mut pc, mut rc) = (p.raw(), r.raw());
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    let mut keys = Vec::new();
    for i in 0..10 {
        let k = format!("short:{i}");
        assert_eq!(pc.cmd(&["SET", &k, "v", "PX", "200"]), ok());
        keys.push(k);
    }
    assert_eq!(pc.cmd(&["HSET", "short:h", "f", "v"]), int(1));
    assert_eq!(pc.cmd(&["PEXPIRE", "short:h", "200"]), int(1));
    keys.push("short:h".into());
    for i in 0..3 {
        let k = format!("mid:{i}");
        assert_eq!(pc.cmd(&["SET", &k, "v", "PX", "2000"]), ok());
        keys.push(k);
    }
    assert_eq!(pc.cmd(&["SET", "stay", "v"]), ok());
    let deadlines: Vec<i64> = keys
        .iter()
        .map(|k| pc.cmd(&["PEXPIRETIME", k]).int())
        .collect();
    let last_deadline = *deadlines.iter().max().unwrap();
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);

    // From here the primary streams nothing (not even a DEL): the replica must hide expired keys
    // by itself, at the same absolute deadline.
    p.signal(SIGSTOP);
    let mut seen_live = vec![false; keys.len()];
    let give_up = Instant::now() + Duration::from_secs(4);
    loop {
        let mut all_gone = true;
        for (i, k) in keys.iter().enumerate() {
            let asked_at = now_ms();
            let cmd = if k.ends_with(":h") { "HGET" } else { "GET" };
            let args: Vec<&str> = if cmd == "HGET" {
                vec![cmd, k, "f"]
            } else {
                vec![cmd, k]
            };
            match rc.cmd(&args) {
                Reply::Nil => {}
                Reply::Bulk(_) => {
                    assert!(
                        asked_at <= deadlines[i],
                        "replica served {k} {} ms after its deadline",
                        asked_at - deadlines[i]
                    );
                    seen_live[i] = true;
                    all_gone = false;
                }
                other => panic!("{cmd} {k} on the replica: {other:?}"),
            }
        }
        if all_gone && now_ms() > last_deadline {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "keys still on the replica after their deadlines"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // The 2 s keys were surely replicated before they expired.
    assert!(
        seen_live[keys.len() - 3..].iter().all(|s| *s),
        "the replica never served the PX 2000 keys: {seen_live:?}"
    );
    assert_eq!(rc.cmd(&["KEYS", "*"]), bulks(&["stay"]));
    assert_eq!(rc.cmd(&["EXISTS", "short:0", "short:h", "mid:0"]), int(0));
    assert_eq!(rc.cmd(&["PTTL", "mid:0"]), int(-2));
    assert_eq!(
        rc.cmd(&["MGET", "short:1", "stay"]),
        arr(vec![nil(), bulk("v")])
    );
    p.signal(SIGCONT);
    // The primary agrees, and the two stay in sync.
    for k in &keys {
        assert_eq!(pc.cmd(&["EXISTS", k]), int(0), "{k} on the primary");
    }
    assert_eq!(pc.cmd(&["KEYS", "*"]), bulks(&["stay"]));
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(assert_same_data(&mut pc, &mut rc, "after expiry"), 1);
    assert!(p.is_alive());
}

// ---------------------------------------------------------------------------------------------
// 4. Read-only replica, ROLE, INFO replication
// ---------------------------------------------------------------------------------------------

#[test]
fn replica_is_read_only_and_reports_its_role() {
    let p = start_node(&[]);
    let r = start_replica_of(p.addr, &[]);
    let (mut pc, mut rc) = (p.raw(), r.raw());
    assert_eq!(pc.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(pc.cmd(&["HSET", "h", "f", "v"]), int(1));
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);

    for args in [
        vec!["SET", "k", "x"],
        vec!["SET", "new", "x"],
        vec!["MSET", "a", "1"],
        vec!["INCR", "n"],
        vec!["APPEND", "k", "x"],
        vec!["DEL", "k"],
        vec!["EXPIRE", "k", "10"],
        vec!["PERSIST", "k"],
        vec!["HSET", "h", "f", "x"],
        vec!["HDEL", "h", "f"],
        vec!["RENAME", "k", "k2"],
        vec!["GETDEL", "k"],
        vec!["FLUSHALL"],
    ] {
        assert_eq!(rc.cmd(&args), err(READONLY), "{args:?} on the replica");
    }
    assert_eq!(rc.cmd(&["GET", "k"]), bulk("v"));
    assert_eq!(rc.cmd(&["HGETALL", "h"]), bulks(&["f", "v"]));
    assert_eq!(rc.cmd(&["EXISTS", "k", "h", "new"]), int(2));
    assert_eq!(rc.cmd(&["DBSIZE"]), int(2));
    assert_eq!(rc.cmd(&["TTL", "k"]), int(-1));
    assert_eq!(rc.cmd(&["PING"]), status("PONG"));
    // A refused write changed nothing and propagated nothing.
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_same_data(&mut pc, &mut rc, "after refused writes");

    // ROLE on both sides; the replica's acknowledged offset reaches the primary's.
    let (pport, rport) = (p.addr.port(), r.addr.port());
    let mut last: Reply;
    assert_eventually!(
        {
            last = pc.cmd(&["ROLE"]);
            let items = last.items();
            let offset = items[1].int();
            let replicas = items[2].items();
            items[0] == bulk("master")
                && replicas.len() == 1
                && replicas[0] == bulks(&["127.0.0.1", &rport.to_string(), &offset.to_string()])
        },
        Duration::from_secs(10),
        "primary ROLE: {last:?}"
    );
    let role = rc.cmd(&["ROLE"]);
    let items = role.items();
    assert_eq!(items.len(), 5, "replica ROLE: {role:?}");
    assert_eq!(items[0], bulk("slave"));
    assert_eq!(items[1], bulk("127.0.0.1"));
    assert_eq!(items[2], int(i64::from(pport)));
    assert_eq!(items[3], bulk("connected"));
    let master_offset = pc.cmd(&["ROLE"]).items()[1].int();
    assert_eq!(items[4], int(master_offset), "replica ROLE offset");

    // INFO replication on both sides.
    let pi = replication_info(&mut pc);
    assert_eq!(info_value(&pi, "role"), "master");
    assert_eq!(num(&pi, "connected_slaves"), 1);
    let slave0 = info_value(&pi, "slave0");
    let slave0: BTreeMap<&str, &str> = slave0
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert_eq!(slave0.get("ip"), Some(&"127.0.0.1"), "{pi:?}");
    assert_eq!(
        slave0.get("port"),
        Some(&rport.to_string().as_str()),
        "{pi:?}"
    );
    assert_eq!(slave0.get("state"), Some(&"online"), "{pi:?}");
    assert_eq!(
        slave0.get("offset"),
        Some(&master_offset.to_string().as_str()),
        "{pi:?}"
    );
    assert!(slave0.contains_key("lag"), "{pi:?}");
    for f in [
        "master_repl_offset",
        "ringcache_repl_writes",
        "ringcache_repl_lag_bytes",
        "ringcache_repl_lag_ms",
    ] {
        num(&pi, f);
    }
    assert_eq!(num(&pi, "master_repl_offset"), master_offset as u64);
    let ri = replication_info(&mut rc);
    assert_eq!(info_value(&ri, "role"), "slave");
    assert_eq!(info_value(&ri, "master_host"), "127.0.0.1");
    assert_eq!(num(&ri, "master_port"), u64::from(pport));
    assert_eq!(info_value(&ri, "master_link_status"), "up");
    assert_eq!(num(&ri, "slave_repl_offset"), master_offset as u64);
    for f in [
        "master_repl_offset",
        "ringcache_repl_writes",
        "ringcache_repl_lag_bytes",
        "ringcache_repl_lag_ms",
        "connected_slaves",
    ] {
        num(&ri, f);
    }
    // A replica does not serve as a primary for others.
    let mut chained = r.raw();
    let reply = chained.cmd(&["SYNC"]);
    assert!(reply.is_error(), "SYNC against a replica: {reply:?}");
}

// ---------------------------------------------------------------------------------------------
// 9. AUTH
// ---------------------------------------------------------------------------------------------

/// An aclfile for a primary: `default` with `pw`, and `repl` (password `repl-pw`) granted every
/// command, the cluster's own (SYNC) included, which `default` never gets once it has a password.
fn primary_aclfile(pw: &str) -> String {
    let path = scratch_dir("acl").join("users.acl");
    std::fs::write(
        &path,
        format!("user default on >{pw} ~* &* +@all\nuser repl on >repl-pw ~* &* +@all\n"),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn replica_authenticates_as_a_user_granted_sync() {
    let pw = "s3cret-pw";
    let acl = primary_aclfile(pw);
    let p = start_node(&["--aclfile", &acl]);
    let mut pc = conn(&p, Some(pw));
    preload(&mut pc, "k", 200, 10);
    assert_eq!(pc.cmd(&["HSET", "h", "f", "v"]), int(1));
    let r = start_replica_of(
        p.addr,
        &[
            "--requirepass",
            pw,
            "--primary-user",
            "repl",
            "--primary-auth",
            "repl-pw",
        ],
    );
    let mut rc = conn(&r, Some(pw));
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(assert_same_data(&mut pc, &mut rc, "as user repl"), 201);
    assert_eq!(pc.cmd(&["SET", "later", "1"]), ok());
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(rc.cmd(&["GET", "later"]), bulk("1"));
    // The replica still asks its own clients for the password.
    let mut anon = r.raw();
    let reply = anon.cmd(&["GET", "later"]);
    assert!(
        reply.error_text().is_some_and(|e| e.starts_with("NOAUTH")),
        "{reply:?}"
    );

    // The default user, password and all, may not SYNC: the replica is refused and says so.
    let wrong = start_replica_of(p.addr, &["--requirepass", pw]);
    let mut wc = conn(&wrong, Some(pw));
    assert_eventually!(
        wrong.log_tail().contains("primary refused") && wrong.log_tail().contains("NOPERM"),
        SYNC_TIMEOUT,
        "a replica authenticating as default was not refused with NOPERM:\n{}",
        wrong.log_tail()
    );
    assert_eq!(
        info_value(&replication_info(&mut wc), "master_link_status"),
        "down"
    );
    assert_eq!(wc.cmd(&["DBSIZE"]), int(0));
}

#[test]
fn replica_authenticates_with_primary_auth_and_is_refused_without_it() {
    let pw = "primary-only-pw";
    let acl = primary_aclfile(pw);
    let p = start_node(&["--aclfile", &acl]);
    let mut pc = conn(&p, Some(pw));
    preload(&mut pc, "k", 100, 10);
    // The replica has no password of its own: its link uses --primary-user/--primary-auth
    // (Redis's masteruser/masterauth).
    let r = start_replica_of(
        p.addr,
        &["--primary-user", "repl", "--primary-auth", "repl-pw"],
    );
    let mut rc = conn(&r, None);
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(assert_same_data(&mut pc, &mut rc, "with primary-auth"), 100);
    assert_eq!(rc.cmd(&["GET", "k:1"]), pc.cmd(&["GET", "k:1"]));

    // Without them the primary answers NOAUTH, and the replica says so and holds nothing.
    let bare = start_replica_of(p.addr, &[]);
    let mut bc = conn(&bare, None);
    assert_eventually!(
        bare.log_tail().contains("primary refused"),
        SYNC_TIMEOUT,
        "replica without the primary's password did not log the refusal:\n{}",
        bare.log_tail()
    );
    assert_eq!(
        info_value(&replication_info(&mut bc), "master_link_status"),
        "down"
    );
    assert_eq!(bc.cmd(&["DBSIZE"]), int(0));
}

#[test]
fn a_primary_short_of_good_replicas_refuses_writes() {
    const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";
    let p = start_node(&[]);
    let mut pc = p.raw();
    assert_eq!(pc.cmd(&["SET", "x", "v"]), ok());
    assert_eq!(
        pc.cmd(&["CONFIG", "SET", "min-replicas-to-write", "1"]),
        ok()
    );
    assert_eq!(pc.cmd(&["SET", "x", "w"]), err(NOREPLICAS));
    assert_eq!(pc.cmd(&["INCR", "n"]), err(NOREPLICAS));
    // Reads still run, and a script that only reads; a write inside a script is refused, and
    // a script declaring that it may write is refused before it runs.
    assert_eq!(pc.cmd(&["GET", "x"]), bulk("v"));
    assert_eq!(
        pc.cmd(&["EVAL", "return redis.call('get', KEYS[1])", "1", "x"]),
        bulk("v")
    );
    assert_eq!(
        pc.cmd(&[
            "EVAL",
            "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])",
            "1",
            "x"
        ]),
        bulk("v")
    );
    let refused = pc.cmd(&["EVAL", "return redis.call('set', KEYS[1], 1)", "1", "x"]);
    assert!(
        matches!(&refused, Reply::Error(e) if e.starts_with(NOREPLICAS)),
        "{refused:?}"
    );
    assert_eq!(
        pc.cmd(&["EVAL", "#!lua\nreturn redis.call('get', KEYS[1])", "1", "x"]),
        err(NOREPLICAS)
    );
    // A lag bound of 0 checks nothing, as in Redis.
    assert_eq!(
        pc.cmd(&["CONFIG", "SET", "min-replicas-max-lag", "0"]),
        ok()
    );
    assert_eq!(pc.cmd(&["SET", "x", "w"]), ok());
    assert_eq!(
        pc.cmd(&["CONFIG", "SET", "min-replicas-max-lag", "10"]),
        ok()
    );
    assert_eq!(pc.cmd(&["SET", "x", "v"]), err(NOREPLICAS));
    // With a replica attached and acknowledging, writes go through again.
    let r = start_replica_of(p.addr, &[]);
    let mut rc = r.raw();
    let mut last: Reply;
    assert_eventually!(
        {
            last = pc.cmd(&["SET", "x", "v"]);
            last == ok()
        },
        Duration::from_secs(10),
        "SET with a replica attached: {last:?}"
    );
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(rc.cmd(&["GET", "x"]), bulk("v"));
}

#[test]
fn wait_counts_the_replicas_that_acknowledged_a_clients_writes() {
    let p = start_node(&[]);
    let mut pc = p.raw();
    // Without replicas WAIT counts none, after its timeout when it asks for one.
    assert_eq!(pc.cmd(&["SET", "k", "v0"]), ok());
    assert_eq!(pc.cmd(&["WAIT", "0", "0"]), int(0));
    assert_eq!(pc.cmd(&["WAIT", "1", "50"]), int(0));
    assert_eq!(
        pc.cmd(&["WAIT", "x", "0"]),
        err("ERR value is not an integer or out of range")
    );
    assert_eq!(
        pc.cmd(&["WAIT", "1", "1.5"]),
        err("ERR timeout is not an integer or out of range")
    );
    assert_eq!(pc.cmd(&["WAIT", "1", "-1"]), err("ERR timeout is negative"));
    assert_eq!(pc.cmd(&["WAIT", "1"]), wrong_args("wait"));

    let r = start_replica_of(p.addr, &[]);
    let mut rc = r.raw();
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    // A write, then WAIT for one replica: answered once the replica acknowledged the write.
    assert_eq!(pc.cmd(&["SET", "k", "v1"]), ok());
    assert_eq!(pc.cmd(&["WAIT", "1", "10000"]), int(1));
    assert_eq!(rc.cmd(&["GET", "k"]), bulk("v1"));
    // Pipelined behind its write, the same.
    let replies = pipeline(
        &mut pc,
        &[
            vec!["INCR".into(), "n".into()],
            vec!["WAIT".into(), "1".into(), "10000".into()],
        ],
    );
    assert_eq!(replies, vec![int(1), int(1)]);
    assert_eq!(rc.cmd(&["GET", "n"]), bulk("1"));
    // Two asked for, one attached: the timeout ends the wait with the count.
    assert_eq!(pc.cmd(&["SET", "k", "v2"]), ok());
    assert_eq!(pc.cmd(&["WAIT", "2", "300"]), int(1));
    // A client that wrote nothing has nothing to wait for: every replica counts.
    assert_eq!(p.raw().cmd(&["WAIT", "1", "0"]), int(1));
    // In a transaction WAIT does not block: it answers the count at once.
    assert_eq!(pc.cmd(&["MULTI"]), ok());
    assert_eq!(pc.cmd(&["WAIT", "5", "0"]), status("QUEUED"));
    assert_eq!(pc.cmd(&["EXEC"]), Reply::Array(vec![int(1)]));
    // A replica refuses it, as Redis's do.
    let refused = rc.cmd(&["WAIT", "1", "0"]);
    assert!(
        matches!(&refused, Reply::Error(e) if e.starts_with("ERR WAIT cannot be used with replica instances")),
        "{refused:?}"
    );
}
