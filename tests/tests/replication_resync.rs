#![allow(clippy::unwrap_used)]
//! Replication through disruption, end to end with real `ringcache node` processes on 127.0.0.1
//! port 0: writes racing the snapshot, reconnects and resyncs, promotion and demotion, the
//! lost-write counters. The steady state (full sync, the write stream, expiry, read-only
//! replicas, AUTH) is in `replication.rs`; "in sync" is defined in `tests/src/replicas.rs`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ringcache_protocol::hash::{bucket_of, key_hash, BUCKETS};
use tests::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

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
            pipeline_ok(&mut c, &cmds);
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
    wait_replicas(&mut pc, 1, SYNC_TIMEOUT);
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
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    let n = assert_same_data(&mut pc, &mut rc, "after writes racing the snapshot");
    assert_eq!(n, 50_000 + 300 * 3 + 30);
    // The counters on the replica hold exactly what the primary counted.
    let sum = |c: &mut Raw| -> i64 {
        let cmds: Vec<Vec<String>> = (0..300)
            .map(|i| vec!["GET".to_string(), format!("hot:cnt:{i}")])
            .collect();
        pipeline_ok(c, &cmds)
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
    wait_replicas(&mut pc, 1, SYNC_TIMEOUT);
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
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
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
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
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
                    pipeline_ok(&mut c, &cmds);
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
        wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
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
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_same_data(&mut pc, &mut rc, "first sync");

    // The replica dies; the primary keeps taking writes; a new replica process full-syncs.
    r.kill();
    assert_eq!(pc.cmd(&["SET", "while-down", "1"]), ok());
    assert_eq!(pc.cmd(&["DEL", "k:1"]), int(1));
    assert_eq!(pc.cmd(&["HSET", "h", "f", "v"]), int(1));
    let r = start_replica_of(p.addr, &[]);
    let mut rc = r.raw();
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(
        assert_same_data(&mut pc, &mut rc, "after the replica restarted"),
        501
    );
    let mut last: BTreeMap<String, String>;
    let rport = r.addr.port().to_string();
    assert_eventually!(
        {
            last = replication_info(&mut pc);
            num(&last, "connected_slaves") == 1
                && info_value(&last, "slave0").contains(&format!("port={rport},"))
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
            ri = replication_info(&mut rc);
            info_value(&ri, "master_link_status") == "down"
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
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
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
    wait_synced(&mut ac, &mut bc, SYNC_TIMEOUT);

    // B becomes a primary: it keeps its data and takes writes.
    assert_eq!(bc.cmd(&["REPLICAOF", "NO", "ONE"]), ok());
    assert_eq!(bc.cmd(&["ROLE"]).items()[0], bulk("master"));
    assert_eq!(info_value(&replication_info(&mut bc), "role"), "master");
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
    wait_synced(&mut bc, &mut ac, SYNC_TIMEOUT);
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
    let bi = replication_info(&mut bc);
    assert_eq!(num(&bi, "connected_slaves"), 1, "{bi:?}");
    assert!(
        info_value(&bi, "slave0").contains(&format!("port={},", a.addr.port())),
        "{bi:?}"
    );

    // The new stream flows.
    assert_eq!(bc.cmd(&["INCR", "counter"]), int(2));
    assert_eq!(bc.cmd(&["HSET", "h", "g", "w"]), int(1));
    wait_synced(&mut bc, &mut ac, SYNC_TIMEOUT);
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
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    let base = num(&replication_info(&mut pc), "ringcache_repl_writes");
    assert_eq!(num(&replication_info(&mut rc), "ringcache_repl_writes"), 0);

    let progress = Arc::new(AtomicU64::new(0));
    let total = 6_000;
    let writer = hot_writer(p.addr, total, progress.clone());
    let mut samples = 0;
    while !writer.is_finished() && samples < 5_000 {
        // Replica first: what it applied by then is at most what the primary had propagated.
        let applied = num(&replication_info(&mut rc), "ringcache_repl_writes");
        let propagated = num(&replication_info(&mut pc), "ringcache_repl_writes");
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
                num(&replication_info(&mut pc), "ringcache_repl_writes"),
                num(&replication_info(&mut rc), "ringcache_repl_writes"),
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
            ri = replication_info(&mut rc);
            num(&ri, "ringcache_repl_lag_bytes") == 0
                && num(&ri, "master_repl_offset")
                    == num(&replication_info(&mut pc), "master_repl_offset")
        },
        Duration::from_secs(10),
        "replica lag never reached 0: {ri:?}"
    );
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_same_data(&mut pc, &mut rc, "after the steady writer");
}
