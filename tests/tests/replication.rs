#![allow(clippy::unwrap_used)]
//! Replication end to end: real `ringcache node` processes on 127.0.0.1 port 0, a primary and a
//! replica started `--replica-of` (or turned by `REPLICAOF`). Full sync, the write stream (every
//! write command), expiry agreement, read-only replicas, ROLE / INFO replication, writes racing
//! the snapshot, reconnects and resyncs, promotion and demotion, the lost-write counters, AUTH.
//!
//! "In sync" means: the replica's link is up and its `slave_repl_offset` equals the primary's
//! `master_repl_offset`; then the whole keyspace (type, value, absolute deadline) must be equal.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ringcache_protocol::hash::{bucket_of, key_hash, BUCKETS};
use tests::*;

/// How long a replica may take to catch up (debug builds on a shared 2-core machine).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const READONLY: &str = "READONLY You can't write against a read only replica.";

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

/// Starts a node replicating from `primary` (an address) from the start.
fn start_replica_of(primary: SocketAddr, extra: &[&str]) -> Proc {
    let target = primary.to_string();
    let mut args = vec!["--replica-of", target.as_str()];
    args.extend_from_slice(extra);
    start_node(&args)
}

/// Starts a node on a given 127.0.0.1 port (a restarted primary), retrying while the port is not
/// yet free.
fn start_node_on_port(port: u16, extra: &[&str]) -> Proc {
    let port_s = port.to_string();
    let mut args = vec!["node", "--bind", "127.0.0.1", "--port", port_s.as_str()];
    args.extend_from_slice(extra);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match try_spawn_ringcache_lines(&args, &[NODE_LISTENING], Duration::from_secs(10)) {
            Ok((p, _)) => return p,
            Err(e) if Instant::now() >= deadline => panic!("restarting a node on {port}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `INFO replication` as field → value.
fn info(c: &mut Raw) -> BTreeMap<String, String> {
    let r = c.cmd(&["INFO", "replication"]);
    let text = match &r {
        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("INFO replication should be a bulk string, got {other:?}"),
    };
    assert!(
        text.starts_with("# Replication\r\n"),
        "INFO replication header: {text:?}"
    );
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn field<'a>(info: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    info.get(name)
        .unwrap_or_else(|| panic!("INFO replication lacks {name}: {info:?}"))
}

fn num(info: &BTreeMap<String, String>, name: &str) -> u64 {
    field(info, name)
        .parse()
        .unwrap_or_else(|e| panic!("INFO replication {name} is not a number ({e}): {info:?}"))
}

/// Whether the replica's link is up and it applied everything the primary propagated; also a
/// description of both sides for failure messages.
fn in_sync(p: &mut Raw, r: &mut Raw) -> (bool, String) {
    let pi = info(p);
    let ri = info(r);
    let ok = ri.get("master_link_status").map(String::as_str) == Some("up")
        && num(&ri, "slave_repl_offset") == num(&pi, "master_repl_offset");
    (ok, format!("primary: {pi:?}\nreplica: {ri:?}"))
}

/// Waits until the replica caught up with the primary (see [`in_sync`]).
fn wait_synced(p: &mut Raw, r: &mut Raw) {
    let mut last: String;
    assert_eventually!(
        {
            let (ok, state) = in_sync(p, r);
            last = state;
            ok
        },
        SYNC_TIMEOUT,
        "replica never caught up with its primary:\n{last}"
    );
}

/// Pipelines `cmds` (in chunks, so neither side's buffers fill up), failing on any error reply.
fn pipeline(c: &mut Raw, cmds: &[Vec<String>]) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(cmds.len());
    for chunk in cmds.chunks(200) {
        let mut buf = Vec::new();
        for cmd in chunk {
            buf.extend_from_slice(&encode(cmd));
        }
        c.send(&buf);
        for cmd in chunk {
            let r = c.reply();
            assert!(!r.is_error(), "{:?}: {r:?}", &cmd[..cmd.len().min(3)]);
            replies.push(r);
        }
    }
    replies
}

/// Stores `n` strings `<prefix>:<i>` of about `value_len` bytes with MSET.
fn preload(c: &mut Raw, prefix: &str, n: usize, value_len: usize) {
    let pad = "v".repeat(value_len);
    let ids: Vec<usize> = (0..n).collect();
    let cmds: Vec<Vec<String>> = ids
        .chunks(200)
        .map(|ids| {
            let mut cmd = vec!["MSET".to_string()];
            for i in ids {
                cmd.push(format!("{prefix}:{i}"));
                cmd.push(format!("{i}:{pad}"));
            }
            cmd
        })
        .collect();
    pipeline(c, &cmds);
}

/// Every key of a node as key → "type value deadline" (hash fields sorted; the deadline is
/// PEXPIRETIME, so it must match exactly between primary and replica).
fn dump(c: &mut Raw) -> BTreeMap<String, String> {
    let keys = c.cmd(&["KEYS", "*"]).strings();
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(250) {
        let mut buf = Vec::new();
        for k in chunk {
            buf.extend_from_slice(&encode(&["TYPE", k]));
            buf.extend_from_slice(&encode(&["PEXPIRETIME", k]));
        }
        c.send(&buf);
        let meta: Vec<(String, i64)> = chunk
            .iter()
            .map(|_| (c.reply().text(), c.reply().int()))
            .collect();
        let mut buf = Vec::new();
        for (k, (t, _)) in chunk.iter().zip(&meta) {
            let cmd = match t.as_str() {
                "string" => "GET",
                "hash" => "HGETALL",
                _ => "EXISTS",
            };
            buf.extend_from_slice(&encode(&[cmd, k]));
        }
        c.send(&buf);
        for (k, (t, exp)) in chunk.iter().zip(&meta) {
            let v = c.reply();
            let value = match t.as_str() {
                "string" => format!("{:?}", v.text()),
                "hash" => {
                    let mut pairs: Vec<(String, String)> =
                        v.pairs().into_iter().map(|(f, v)| (f, v.text())).collect();
                    pairs.sort();
                    format!("{pairs:?}")
                }
                // Expired between KEYS and TYPE: not part of the state.
                _ => continue,
            };
            out.insert(k.clone(), format!("{t} {value} deadline={exp}"));
        }
    }
    out
}

fn clip(s: Option<&String>) -> String {
    match s {
        None => "(missing)".into(),
        Some(s) if s.len() > 160 => format!("{}…", &s[..160]),
        Some(s) => s.clone(),
    }
}

/// Asserts both nodes hold exactly the same keys, values and deadlines; returns the key count.
fn assert_same_data(p: &mut Raw, r: &mut Raw, what: &str) -> usize {
    let a = dump(p);
    let b = dump(r);
    if a != b {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let diffs: Vec<String> = keys
            .into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| {
                format!(
                    "  {k}: primary {} | replica {}",
                    clip(a.get(k)),
                    clip(b.get(k))
                )
            })
            .collect();
        panic!(
            "{what}: replica differs from primary in {} keys (primary {} keys, replica {}); first:\n{}",
            diffs.len(),
            a.len(),
            b.len(),
            diffs[..diffs.len().min(20)].join("\n")
        );
    }
    a.len()
}

/// A TCP relay in front of a primary whose primary → replica direction can be held: the
/// primary's snapshot then stalls on a full socket, so a test can write while it is in progress.
struct Relay {
    addr: SocketAddr,
    hold: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(upstream: SocketAddr, held: bool) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = Arc::new(AtomicBool::new(held));
        let stop = Arc::new(AtomicBool::new(false));
        let (hold2, stop2) = (hold.clone(), stop.clone());
        thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((down, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let Ok(up) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else {
                    continue;
                };
                down.set_nonblocking(false).unwrap();
                let (down2, up2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                let s = stop2.clone();
                thread::spawn(move || pump(down, up, None, s));
                let (h, s) = (hold2.clone(), stop2.clone());
                thread::spawn(move || pump(up2, down2, Some(h), s));
            }
        });
        Relay { addr, hold, stop }
    }

    fn release(&self) {
        self.hold.store(false, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies `from` → `to` until either side closes or `stop`; does not read while `hold` is set.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    hold: Option<Arc<AtomicBool>>,
    stop: Arc<AtomicBool>,
) {
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if hold.as_ref().is_some_and(|h| h.load(Ordering::Relaxed)) {
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// `n` keys `<prefix>:<i>` in the last index buckets, which a snapshot reads last.
fn late_keys(prefix: &str, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..2_000_000)
        .map(|i| format!("{prefix}:{i}"))
        .filter(|k| bucket_of(key_hash(k.as_bytes())) >= BUCKETS - BUCKETS / 64)
        .take(n)
        .collect();
    assert_eq!(keys.len(), n);
    keys
}

/// Whether the primary logged that a snapshot was fully sent (its log is at `info` by default).
fn snapshot_sent(p: &Proc) -> bool {
    p.log_tail().contains("snapshot sent")
}

/// Waits until the primary has `n` replicas attached.
fn wait_replicas(p: &mut Raw, n: u64) {
    let mut last: BTreeMap<String, String>;
    assert_eventually!(
        {
            last = info(p);
            num(&last, "connected_slaves") == n
        },
        SYNC_TIMEOUT,
        "primary never had {n} replicas: {last:?}"
    );
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
    wait_synced(&mut pc, &mut rc);
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
    let (pi, ri) = (info(&mut pc), info(&mut rc));
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
    wait_synced(&mut pc, &mut rc);
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

    wait_synced(&mut pc, &mut rc);
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
    wait_synced(&mut pc, &mut rc);
    assert_eq!(assert_same_data(&mut pc, &mut rc, "after FLUSHALL"), 2);
    assert_eq!(rc.cmd(&["DBSIZE"]), int(2));
    assert_eq!(pc.cmd(&["FLUSHDB", "ASYNC"]), ok());
    wait_synced(&mut pc, &mut rc);
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
    wait_synced(&mut pc, &mut rc);
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
    wait_synced(&mut pc, &mut rc);

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
    wait_synced(&mut pc, &mut rc);
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
    wait_synced(&mut pc, &mut rc);

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
    wait_synced(&mut pc, &mut rc);
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
    let pi = info(&mut pc);
    assert_eq!(field(&pi, "role"), "master");
    assert_eq!(num(&pi, "connected_slaves"), 1);
    let slave0 = field(&pi, "slave0");
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
    let ri = info(&mut rc);
    assert_eq!(field(&ri, "role"), "slave");
    assert_eq!(field(&ri, "master_host"), "127.0.0.1");
    assert_eq!(num(&ri, "master_port"), u64::from(pport));
    assert_eq!(field(&ri, "master_link_status"), "up");
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
// 5. Writes racing the snapshot
// ---------------------------------------------------------------------------------------------

/// Runs `total` writes (INCR, APPEND, SET, HINCRBY over a few hundred keys) pipelined in batches,
/// counting progress; returns the number of INCRs.
fn hot_writer(addr: SocketAddr, total: u64, progress: Arc<AtomicU64>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut c = Raw::connect(addr);
        let mut incrs = 0;
        let mut j = 0u64;
        while j < total {
            let mut cmds = Vec::new();
            for _ in 0..100.min(total - j) {
                // Every kind of write touches all 300 keys.
                let i = (j / 5) % 300;
                cmds.push(match j % 5 {
                    0 => {
                        incrs += 1;
                        vec!["INCR".to_string(), format!("hot:cnt:{i}")]
                    }
                    1 => vec!["APPEND".into(), format!("hot:ap:{i}"), format!("{j},")],
                    2 => vec!["SET".into(), format!("hot:set:{i}"), j.to_string()],
                    3 => vec![
                        "HINCRBY".into(),
                        format!("hot:h:{}", i % 30),
                        format!("f{i}"),
                        "1".into(),
                    ],
                    _ => vec!["INCRBY".into(), format!("hot:cnt:{i}"), "2".into()],
                });
                j += 1;
            }
            pipeline(&mut c, &cmds);
            progress.store(j, Ordering::Relaxed);
        }
        incrs
    })
}

#[test]
fn writes_during_the_snapshot_are_applied_exactly_once() {
    let p = start_node(&[]);
    let mut pc = p.raw();
    // ~15 MB of snapshot: more than the socket buffers hold, so a held relay stalls it.
    preload(&mut pc, "bulk", 50_000, 300);
    let relay = Relay::start(p.addr, true);
    let r = start_replica_of(relay.addr, &[]);
    wait_replicas(&mut pc, 1);
    let progress = Arc::new(AtomicU64::new(0));
    let total = 20_000;
    let writer = hot_writer(p.addr, total, progress.clone());
    assert_eventually!(
        progress.load(Ordering::Relaxed) >= total / 2,
        Duration::from_secs(20),
        "writer stalled at {}",
        progress.load(Ordering::Relaxed)
    );
    assert!(
        !snapshot_sent(&p),
        "test setup: the snapshot finished before the writes; log:\n{}",
        p.log_tail()
    );
    relay.release();
    let incrs = writer.join().unwrap();
    let mut rc = r.raw();
    wait_synced(&mut pc, &mut rc);
    let n = assert_same_data(&mut pc, &mut rc, "after writes racing the snapshot");
    assert_eq!(n, 50_000 + 300 * 3 + 30);
    // The counters on the replica hold exactly what the primary counted.
    let sum = |c: &mut Raw| -> i64 {
        let cmds: Vec<Vec<String>> = (0..300)
            .map(|i| vec!["GET".to_string(), format!("hot:cnt:{i}")])
            .collect();
        pipeline(c, &cmds)
            .iter()
            .map(|r| r.text().parse::<i64>().unwrap())
            .sum()
    };
    let expected = incrs as i64 * 3;
    assert_eq!(sum(&mut pc), expected, "INCR total on the primary");
    assert_eq!(sum(&mut rc), expected, "INCR total on the replica");
}

/// RENAME and COPY ... REPLACE read another key when they run. A replica replays them after the
/// snapshot, so the keys they read must hold what they held on the primary at the time, not
/// what the snapshot captured later.
#[test]
fn multi_key_writes_during_the_snapshot_replay_to_the_same_state() {
    let p = start_node(&[]);
    let mut pc = p.raw();
    // ~20 MB of snapshot: a held relay stalls it long before the last buckets.
    preload(&mut pc, "big", 2_000, 10_000);
    let late = late_keys("late", 8);
    let [ren_src, ren_dst, cp_src, cp_dst, ap, cnt, rnx_src, rnx_dst] =
        <[String; 8]>::try_from(late).unwrap();
    for k in [&ren_src, &cp_src, &cp_dst, &rnx_src] {
        assert_eq!(pc.cmd(&["SET", k, "old"]), ok());
    }
    assert_eq!(pc.cmd(&["SET", &ap, "a"]), ok());
    assert_eq!(pc.cmd(&["SET", &cnt, "10"]), ok());

    let relay = Relay::start(p.addr, true);
    let r = start_replica_of(relay.addr, &[]);
    wait_replicas(&mut pc, 1);
    assert!(!snapshot_sent(&p), "test setup: snapshot already sent");
    // These run after the replica attached and before the snapshot reads their keys.
    assert_eq!(pc.cmd(&["RENAME", &ren_src, &ren_dst]), ok());
    assert_eq!(pc.cmd(&["SET", &ren_src, "new"]), ok());
    assert_eq!(pc.cmd(&["COPY", &cp_src, &cp_dst, "REPLACE"]), int(1));
    assert_eq!(pc.cmd(&["SET", &cp_src, "new"]), ok());
    assert_eq!(pc.cmd(&["RENAMENX", &rnx_src, &rnx_dst]), int(1));
    assert_eq!(pc.cmd(&["SET", &rnx_src, "new"]), ok());
    assert_eq!(pc.cmd(&["APPEND", &ap, "b"]), int(2));
    assert_eq!(pc.cmd(&["INCR", &cnt]), int(11));
    assert!(
        !snapshot_sent(&p),
        "test setup: the snapshot finished before the writes"
    );
    relay.release();
    let mut rc = r.raw();
    wait_synced(&mut pc, &mut rc);
    assert_eq!(pc.cmd(&["GET", &ren_dst]), bulk("old"));
    assert_eq!(pc.cmd(&["GET", &cp_dst]), bulk("old"));
    assert_eq!(rc.cmd(&["GET", &ap]), bulk("ab"));
    assert_eq!(rc.cmd(&["GET", &cnt]), bulk("11"));
    let mut wrong = Vec::new();
    for (role, k) in [
        ("RENAME source", &ren_src),
        ("RENAME destination", &ren_dst),
        ("COPY REPLACE source", &cp_src),
        ("COPY REPLACE destination", &cp_dst),
        ("RENAMENX source", &rnx_src),
        ("RENAMENX destination", &rnx_dst),
    ] {
        let (pv, rv) = (pc.cmd(&["GET", k]), rc.cmd(&["GET", k]));
        if pv != rv {
            wrong.push(format!("{role} {k}: primary {pv:?}, replica {rv:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "replica diverged after replaying writes that raced the snapshot:\n{}",
        wrong.join("\n")
    );
    assert_same_data(
        &mut pc,
        &mut rc,
        "after multi-key writes racing the snapshot",
    );
}

/// FLUSHALL while other clients write: whatever the primary keeps, the replica keeps. Each round
/// runs one FLUSHALL under two pipelining writers, then pauses them and compares the key counts.
#[test]
fn flushall_racing_writes_leaves_the_replica_equal() {
    let p = start_node(&[]);
    let r = start_replica_of(p.addr, &[]);
    let (mut pc, mut rc) = (p.raw(), r.raw());
    wait_synced(&mut pc, &mut rc);
    let stop = Arc::new(AtomicBool::new(false));
    let pause = Arc::new(AtomicBool::new(false));
    let idle: Arc<[AtomicBool; 2]> = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (stop, pause, idle, addr) = (stop.clone(), pause.clone(), idle.clone(), p.addr);
            thread::spawn(move || {
                let mut c = Raw::connect(addr);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 5_000_000 {
                    if pause.load(Ordering::Relaxed) {
                        idle[w].store(true, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    idle[w].store(false, Ordering::Relaxed);
                    let cmds: Vec<Vec<String>> = (n..n + 50)
                        .map(|i| vec!["SET".to_string(), format!("w{w}:{i}"), "v".into()])
                        .collect();
                    pipeline(&mut c, &cmds);
                    n += 50;
                }
            })
        })
        .collect();
    let mut diverged = None;
    let mut raced = 0;
    for round in 0..15 {
        pause.store(false, Ordering::Relaxed);
        assert_eventually!(
            idle.iter().all(|i| !i.load(Ordering::Relaxed)),
            Duration::from_secs(10)
        );
        thread::sleep(Duration::from_millis(5));
        assert_eq!(pc.cmd(&["FLUSHALL"]), ok());
        pause.store(true, Ordering::Relaxed);
        assert_eventually!(
            idle.iter().all(|i| i.load(Ordering::Relaxed)),
            Duration::from_secs(10)
        );
        wait_synced(&mut pc, &mut rc);
        let (pn, rn) = (pc.cmd(&["DBSIZE"]).int(), rc.cmd(&["DBSIZE"]).int());
        // Keys present now were written after the FLUSHALL was sent, so writers were active
        // around it and the flush had writes to interleave with.
        if pn > 0 {
            raced += 1;
        }
        if pn != rn {
            diverged = Some((round, pn, rn));
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let context = match diverged {
        Some((round, pn, rn)) => {
            format!("FLUSHALL round {round} under writes: DBSIZE primary {pn}, replica {rn}")
        }
        None => "after 15 FLUSHALLs under writes".to_string(),
    };
    assert_same_data(&mut pc, &mut rc, &context);
    assert!(
        raced > 0,
        "no FLUSHALL raced a write: the test exercised nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Reconnect and resync
// ---------------------------------------------------------------------------------------------

#[test]
fn replica_and_primary_restarts_resync() {
    let mut p = start_node(&[]);
    let mut pc = p.raw();
    preload(&mut pc, "k", 500, 10);
    let mut r = start_replica_of(p.addr, &[]);
    let mut rc = r.raw();
    wait_synced(&mut pc, &mut rc);
    assert_same_data(&mut pc, &mut rc, "first sync");

    // The replica dies; the primary keeps taking writes; a new replica process full-syncs.
    r.kill();
    assert_eq!(pc.cmd(&["SET", "while-down", "1"]), ok());
    assert_eq!(pc.cmd(&["DEL", "k:1"]), int(1));
    assert_eq!(pc.cmd(&["HSET", "h", "f", "v"]), int(1));
    let r = start_replica_of(p.addr, &[]);
    let mut rc = r.raw();
    wait_synced(&mut pc, &mut rc);
    assert_eq!(
        assert_same_data(&mut pc, &mut rc, "after the replica restarted"),
        501
    );
    let mut last: BTreeMap<String, String>;
    let rport = r.addr.port().to_string();
    assert_eventually!(
        {
            last = info(&mut pc);
            num(&last, "connected_slaves") == 1
                && field(&last, "slave0").contains(&format!("port={rport},"))
        },
        SYNC_TIMEOUT,
        "the dead replica's link was never dropped: {last:?}"
    );

    // The primary dies: the replica notices, keeps its data meanwhile and serves reads.
    let port = p.addr.port();
    p.kill();
    let mut ri: BTreeMap<String, String>;
    assert_eventually!(
        {
            ri = info(&mut rc);
            field(&ri, "master_link_status") == "down"
        },
        SYNC_TIMEOUT,
        "replica never noticed its primary died: {ri:?}"
    );
    let role = rc.cmd(&["ROLE"]);
    assert_eq!(role.items()[0], bulk("slave"), "{role:?}");
    assert!(
        matches!(role.items()[3].text().as_str(), "connect" | "sync"),
        "replica ROLE state with its primary down: {role:?}"
    );
    assert_eq!(rc.cmd(&["GET", "while-down"]), bulk("1"));
    assert_eq!(rc.cmd(&["SET", "x", "1"]), err(READONLY));

    // A new, empty primary on the same port: the replica resyncs and drops what it held.
    let p = start_node_on_port(port, &[]);
    let mut pc = p.raw();
    assert_eq!(pc.cmd(&["SET", "fresh", "1"]), ok());
    assert_eq!(pc.cmd(&["HSET", "fresh:h", "f", "v"]), int(1));
    let mut last: String;
    assert_eventually!(
        {
            let (ok, state) = in_sync(&mut pc, &mut rc);
            last = state;
            ok && rc.cmd(&["DBSIZE"]) == int(2)
        },
        SYNC_TIMEOUT,
        "replica never resynced from the restarted primary:\n{last}"
    );
    assert_eq!(
        assert_same_data(&mut pc, &mut rc, "after the primary restarted"),
        2
    );
    assert_eq!(pc.cmd(&["INCR", "fresh"]), int(2));
    wait_synced(&mut pc, &mut rc);
    assert_eq!(rc.cmd(&["GET", "fresh"]), bulk("2"));
    assert_eq!(rc.cmd(&["EXISTS", "while-down", "k:2"]), int(0));
}

// ---------------------------------------------------------------------------------------------
// 7. Promotion and demotion
// ---------------------------------------------------------------------------------------------

#[test]
fn promoted_replica_takes_writes_and_old_primary_follows_it() {
    let a = start_node(&[]);
    let b = start_replica_of(a.addr, &[]);
    let (mut ac, mut bc) = (a.raw(), b.raw());
    preload(&mut ac, "k", 100, 10);
    assert_eq!(ac.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(ac.cmd(&["SET", "ttl", "v", "EX", "1000"]), ok());
    wait_synced(&mut ac, &mut bc);

    // B becomes a primary: it keeps its data and takes writes.
    assert_eq!(bc.cmd(&["REPLICAOF", "NO", "ONE"]), ok());
    assert_eq!(bc.cmd(&["ROLE"]).items()[0], bulk("master"));
    assert_eq!(field(&info(&mut bc), "role"), "master");
    assert_eq!(bc.cmd(&["DBSIZE"]), int(102));
    assert_eq!(bc.cmd(&["GET", "k:7"]), bulk("7:vvvvvvvvvv"));
    assert!(bc.cmd(&["TTL", "ttl"]).int() > 900);
    assert_eq!(bc.cmd(&["SET", "after-promotion", "b"]), ok());
    assert_eq!(bc.cmd(&["INCR", "counter"]), int(1));
    assert_eq!(bc.cmd(&["DEL", "k:0"]), int(1));

    // A, still a primary, takes writes B never sees.
    assert_eq!(ac.cmd(&["SET", "divergent", "a"]), ok());
    assert_eq!(ac.cmd(&["SET", "k:5", "a-only"]), ok());
    assert_eq!(ac.cmd(&["DEL", "k:6"]), int(1));

    // A follows B: its divergent writes are gone and it mirrors B.
    let bport = b.addr.port().to_string();
    assert_eq!(ac.cmd(&["SLAVEOF", "127.0.0.1", &bport]), ok());
    assert_eq!(
        ac.cmd(&["REPLICAOF", "127.0.0.1", &bport]),
        status("OK Already connected to specified master")
    );
    wait_synced(&mut bc, &mut ac);
    assert_eq!(
        assert_same_data(&mut bc, &mut ac, "old primary following the new one"),
        103
    );
    assert_eq!(ac.cmd(&["GET", "divergent"]), nil());
    assert_eq!(ac.cmd(&["GET", "k:5"]), bulk("5:vvvvvvvvvv"));
    assert_eq!(ac.cmd(&["GET", "k:6"]), bulk("6:vvvvvvvvvv"));
    assert_eq!(ac.cmd(&["GET", "k:0"]), nil());
    assert_eq!(ac.cmd(&["GET", "after-promotion"]), bulk("b"));
    assert_eq!(ac.cmd(&["SET", "x", "1"]), err(READONLY));
    let role = ac.cmd(&["ROLE"]);
    assert_eq!(role.items()[0], bulk("slave"), "{role:?}");
    assert_eq!(role.items()[2], int(i64::from(b.addr.port())), "{role:?}");
    assert_eq!(role.items()[3], bulk("connected"), "{role:?}");
    let bi = info(&mut bc);
    assert_eq!(num(&bi, "connected_slaves"), 1, "{bi:?}");
    assert!(
        field(&bi, "slave0").contains(&format!("port={},", a.addr.port())),
        "{bi:?}"
    );

    // The new stream flows.
    assert_eq!(bc.cmd(&["INCR", "counter"]), int(2));
    assert_eq!(bc.cmd(&["HSET", "h", "g", "w"]), int(1));
    wait_synced(&mut bc, &mut ac);
    assert_eq!(ac.cmd(&["GET", "counter"]), bulk("2"));
    assert_eq!(ac.cmd(&["HGET", "h", "g"]), bulk("w"));
    assert_same_data(&mut bc, &mut ac, "after writes on the new primary");
}

// ---------------------------------------------------------------------------------------------
// 8. Lost-write accounting
// ---------------------------------------------------------------------------------------------

#[test]
fn write_counters_bound_what_a_replica_lacks() {
    let p = start_node(&[]);
    let mut pc = p.raw();
    preload(&mut pc, "pre", 1000, 10);
    let r = start_replica_of(p.addr, &[]);
    let mut rc = r.raw();
    wait_synced(&mut pc, &mut rc);
    let base = num(&info(&mut pc), "ringcache_repl_writes");
    assert_eq!(num(&info(&mut rc), "ringcache_repl_writes"), 0);

    let progress = Arc::new(AtomicU64::new(0));
    let total = 6_000;
    let writer = hot_writer(p.addr, total, progress.clone());
    let mut samples = 0;
    while !writer.is_finished() && samples < 5_000 {
        // Replica first: what it applied by then is at most what the primary had propagated.
        let applied = num(&info(&mut rc), "ringcache_repl_writes");
        let propagated = num(&info(&mut pc), "ringcache_repl_writes");
        assert!(
            applied <= propagated,
            "replica applied {applied} writes, primary propagated only {propagated}"
        );
        samples += 1;
        thread::sleep(Duration::from_millis(5));
    }
    writer.join().unwrap();
    assert!(samples > 0);
    let mut last: (u64, u64);
    assert_eventually!(
        {
            last = (
                num(&info(&mut pc), "ringcache_repl_writes"),
                num(&info(&mut rc), "ringcache_repl_writes"),
            );
            last.0 == last.1
        },
        SYNC_TIMEOUT,
        "write counters (primary, replica) never met: {last:?}"
    );
    assert_eq!(last.0, base + total, "writes propagated");
    // Once a heartbeat announced the primary's offset, the replica reports no lag.
    let mut ri: BTreeMap<String, String>;
    assert_eventually!(
        {
            ri = info(&mut rc);
            num(&ri, "ringcache_repl_lag_bytes") == 0
                && num(&ri, "master_repl_offset") == num(&info(&mut pc), "master_repl_offset")
        },
        Duration::from_secs(10),
        "replica lag never reached 0: {ri:?}"
    );
    wait_synced(&mut pc, &mut rc);
    assert_same_data(&mut pc, &mut rc, "after the steady writer");
}

// ---------------------------------------------------------------------------------------------
// 9. AUTH
// ---------------------------------------------------------------------------------------------

#[test]
fn replica_authenticates_with_its_requirepass() {
    let pw = "s3cret-pw";
    let p = start_node(&["--requirepass", pw]);
    let mut pc = conn(&p, Some(pw));
    preload(&mut pc, "k", 200, 10);
    assert_eq!(pc.cmd(&["HSET", "h", "f", "v"]), int(1));
    let r = start_replica_of(p.addr, &["--requirepass", pw]);
    let mut rc = conn(&r, Some(pw));
    wait_synced(&mut pc, &mut rc);
    assert_eq!(assert_same_data(&mut pc, &mut rc, "with requirepass"), 201);
    assert_eq!(pc.cmd(&["SET", "later", "1"]), ok());
    wait_synced(&mut pc, &mut rc);
    assert_eq!(rc.cmd(&["GET", "later"]), bulk("1"));
    // The replica still asks its own clients for the password.
    let mut anon = r.raw();
    let reply = anon.cmd(&["GET", "later"]);
    assert!(
        reply.error_text().is_some_and(|e| e.starts_with("NOAUTH")),
        "{reply:?}"
    );

    // A replica with another password is refused and says so.
    let wrong = start_replica_of(p.addr, &["--requirepass", "other"]);
    let mut wc = conn(&wrong, Some("other"));
    assert_eventually!(
        wrong.log_tail().contains("primary refused"),
        SYNC_TIMEOUT,
        "replica with a wrong password did not log the refusal:\n{}",
        wrong.log_tail()
    );
    assert_eq!(field(&info(&mut wc), "master_link_status"), "down");
    assert_eq!(wc.cmd(&["DBSIZE"]), int(0));
}
