#![allow(clippy::unwrap_used)]
//! Key migration from a node (MIGRATE-KEYS) to a scripted target that answers when the test says
//! so: what the source sends, that a write on the source never waits for the target, and that a
//! key written during its move reaches the target before the source deletes it.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use tests::*;

/// The next command the source sent to the target, as text arguments.
/// Whether `cmd` is the RESTORE a move sends for `key` holding the string `value`: the key's
/// DUMP payload, no TTL (0 with ABSTTL), replacing what the target holds.
fn is_restore_of(cmd: &[String], key: &str, value: &str) -> bool {
    cmd.len() == 6
        && cmd[..3] == ["RESTORE", key, "0"]
        && cmd[3].contains(value)
        && cmd[4..] == ["REPLACE", "ABSTTL"]
}

fn next_cmd(t: &mut Raw) -> Vec<String> {
    match t.reply() {
        Reply::Array(args) => args
            .into_iter()
            .map(|a| match a {
                Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("not a bulk string: {other:?}"),
            })
            .collect(),
        other => panic!("not a command: {other:?}"),
    }
}

/// A move of `k` (holding `v1`) under way: the source node, a client of it, the client that sent
/// `MIGRATE-KEYS`, the scripted target's listener and address, and its connection, which has
/// answered the handshake and just received the copy of `k`.
struct MoveUnderWay {
    source: Proc,
    c: Raw,
    mover: Raw,
    target: TcpListener,
    target_addr: String,
    t: Raw,
}

fn begin_move() -> MoveUnderWay {
    let source = start_node(&[]);
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap().to_string();
    let mut c = source.raw();
    assert_eq!(c.cmd(&["SET", "k", "v1"]), ok());

    let mut mover = source.raw();
    mover.send_cmd(&["MIGRATE-KEYS", &target_addr, "k"]);
    let t = accept_import(&target);
    let mut m = MoveUnderWay {
        source,
        c,
        mover,
        target,
        target_addr,
        t,
    };
    let cmd = next_cmd(&mut m.t);
    assert!(is_restore_of(&cmd, "k", "v1"), "{cmd:?}");
    m
}

/// Accepts the source's migration connection and answers its `TOPOLOGY IMPORT`.
fn accept_import(target: &TcpListener) -> Raw {
    let mut t = Raw::from_stream(target.accept().unwrap().0);
    assert_eq!(next_cmd(&mut t), ["TOPOLOGY", "IMPORT"]);
    t.send(b"+OK\r\n");
    t
}

#[test]
fn a_key_written_during_its_move_is_sent_again_and_writers_never_wait_for_the_target() {
    let MoveUnderWay {
        source,
        mut c,
        mut mover,
        target: _target,
        target_addr,
        mut t,
    } = begin_move();

    // The move waits for the target's acknowledgement; a write on the source does not.
    let started = Instant::now();
    assert_eq!(c.cmd(&["SET", "k", "v2"]), ok());
    assert_eq!(c.cmd(&["SET", "other", "x"]), ok());
    assert!(started.elapsed() < Duration::from_secs(1));
    // A second move of the same key waits for the first.
    let mut second = source.raw();
    second.send_cmd(&["MIGRATE-KEYS", &target_addr, "k"]);
    assert!(second.read(Duration::from_millis(300)).is_none());

    // Acknowledged: the source sees `k` changed since the copy and sends it again first.
    t.send(b"+OK\r\n");
    let cmd = next_cmd(&mut t);
    assert!(is_restore_of(&cmd, "k", "v2"), "{cmd:?}");
    t.send(b"+OK\r\n");
    assert_eq!(mover.reply(), int(1));
    // Then the second move finds nothing left to move and asks the target nothing.
    assert_eq!(second.reply(), int(0));
    assert!(t.read(Duration::from_millis(300)).is_none());
    assert_eq!(c.cmd(&["EXISTS", "k"]), int(0));
    assert_eq!(c.cmd(&["GET", "other"]), bulk("x"));
}

#[test]
fn a_refused_move_leaves_the_key_on_the_source_and_removes_the_copy() {
    let MoveUnderWay {
        source: _source,
        mut c,
        mut mover,
        target,
        mut t,
        ..
    } = begin_move();
    t.send(b"-OOM command not allowed when used memory > 'maxmemory'\r\n");
    // The copy the target may hold is removed (over a new connection: one that failed is not
    // reused); the key stays where it is authoritative.
    let mut t2 = accept_import(&target);
    assert_eq!(next_cmd(&mut t2), ["DEL", "k"]);
    t2.send(b":0\r\n");
    match mover.reply() {
        Reply::Error(e) => assert!(e.contains("OOM"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v1"));
}

/// `MIGRATE-KEYS <target>` with no key (the router's warm-up as a change starts) connects to the
/// target ahead of any move and answers 0; the next move on that IO thread goes over one of those
/// connections instead of connecting while a request waits.
#[test]
fn a_keyless_migrate_keys_connects_ahead_and_the_next_move_uses_that_connection() {
    let source = start_node(&["--io-threads", "1"]);
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap().to_string();
    let mut c = source.raw();
    assert_eq!(c.cmd(&["SET", "k", "v1"]), ok());

    let mut warm = source.raw();
    warm.send_cmd(&["MIGRATE-KEYS", &target_addr]);
    let mut ahead = [accept_import(&target), accept_import(&target)];
    assert_eq!(warm.reply(), int(0));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v1"), "nothing moved yet");

    let mut mover = source.raw();
    mover.send_cmd(&["MIGRATE-KEYS", &target_addr, "k"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let used = loop {
        assert!(
            Instant::now() < deadline,
            "the copy of k came over no warmed connection"
        );
        if let Some(i) = ahead.iter_mut().position(|t| {
            t.read(Duration::from_millis(50)).is_some_and(|r| {
                let Reply::Array(args) = r.reply else {
                    return false;
                };
                let cmd: Vec<String> = args.iter().map(Reply::text).collect();
                is_restore_of(&cmd, "k", "v1")
            })
        }) {
            break i;
        }
    };
    ahead[used].send(b"+OK\r\n");
    assert_eq!(mover.reply(), int(1));
    assert_eq!(c.cmd(&["EXISTS", "k"]), int(0));
    // No connection beyond the warmed ones.
    target.set_nonblocking(true).unwrap();
    assert!(target.accept().is_err(), "the move connected anew");
}

/// The mover's batches (`MIGRATE-ARC`) run on their own thread at a lower priority than the IO
/// threads (nice 5), so requests go first when CPU is short; a batch still moves its keys.
#[test]
fn the_mover_runs_on_a_lower_priority_thread_and_still_moves_keys() {
    let source = start_node(&[]);
    let target = start_node(&[]);
    // Field 19 of /proc/<pid>/task/<tid>/stat is the thread's nice value.
    let nice_of = |name: &str| -> Vec<i64> {
        let dir = format!("/proc/{}/task", source.pid());
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|t| {
                let t = t.ok()?.path();
                let comm = std::fs::read_to_string(t.join("comm")).ok()?;
                (comm.trim() == name).then_some(())?;
                let stat = std::fs::read_to_string(t.join("stat")).ok()?;
                let after_comm = &stat[stat.rfind(')')? + 2..];
                after_comm.split(' ').nth(16)?.parse().ok()
            })
            .collect()
    };
    assert_eq!(nice_of("ringcache-bulk"), [5]);
    assert_eq!(nice_of("ringcache-io-0"), [0]);

    let mut c = source.raw();
    for i in 0..50 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "v"]), ok());
    }
    // The whole circle as one arc: every key moves.
    let target_addr = target.addr.to_string();
    // `[moved, bytes sent, more]`
    match c.cmd(&["MIGRATE-ARC", &target_addr, "0", "0", "1000"]) {
        Reply::Array(r) => {
            assert_eq!((&r[0], &r[2]), (&int(50), &int(0)), "{r:?}");
            assert!(matches!(r[1], Reply::Int(b) if b > 0), "{r:?}");
        }
        other => panic!("MIGRATE-ARC answered {other:?}"),
    }
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    assert_eq!(target.raw().cmd(&["DBSIZE"]), int(50));
}

/// `TOPOLOGY SETMOVING` installs a ring with the router's record of the change moving keys;
/// `TOPOLOGY GET` returns it (a router started mid-move resumes from it). A plain `SET` at the
/// same epoch keeps it, a newer ring or `TOPOLOGY DONE` drops it, an older epoch is refused.
#[test]
fn the_change_record_lives_until_done_or_a_newer_ring() {
    let node = start_node(&[]);
    let mut c = node.raw();
    let state = |c: &mut Raw, epoch: i64, record: Reply| {
        assert_eq!(
            c.cmd(&["TOPOLOGY", "GET"]),
            Reply::Array(vec![
                int(epoch),
                bulk(if epoch == 0 { "" } else { "a" }),
                record,
                Reply::Nil
            ])
        );
    };
    state(&mut c, 0, Reply::Nil);
    let moving = |epoch: &str, record: &str| {
        vec![
            "TOPOLOGY",
            "SETMOVING",
            epoch,
            "a",
            "64",
            record,
            "a",
            "1",
            "b",
            "1",
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    assert_eq!(c.cmd(&moving("5", "join b")), ok());
    state(&mut c, 5, bulk("join b"));
    // The epoch sync re-pushes a ring without the record: kept at the same epoch.
    assert_eq!(
        c.cmd(&["TOPOLOGY", "SET", "5", "a", "64", "a", "1", "b", "1"]),
        ok()
    );
    state(&mut c, 5, bulk("join b"));
    let stale = c.cmd(&moving("4", "older"));
    assert!(
        matches!(&stale, Reply::Error(e) if e.starts_with("STALEEPOCH")),
        "{stale:?}"
    );
    // DONE for an older change leaves the newer one's record.
    assert_eq!(c.cmd(&["TOPOLOGY", "DONE", "4"]), ok());
    state(&mut c, 5, bulk("join b"));
    assert_eq!(c.cmd(&["TOPOLOGY", "DONE", "5"]), ok());
    state(&mut c, 5, Reply::Nil);
    assert_eq!(c.cmd(&moving("6", "leave b")), ok());
    state(&mut c, 6, bulk("leave b"));
    assert_eq!(c.cmd(&["TOPOLOGY", "SET", "7", "a", "64", "a", "1"]), ok());
    state(&mut c, 7, Reply::Nil);
    // A record but no ring after it, or an odd shard list: usage errors, nothing changes.
    for bad in [
        &["TOPOLOGY", "SETMOVING", "8", "a", "64"][..],
        &["TOPOLOGY", "SETMOVING", "8", "a", "64", "rec", "a"],
        &["TOPOLOGY", "DONE"],
    ] {
        assert!(
            matches!(c.cmd(bad), Reply::Error(e) if e.starts_with("ERR usage")),
            "{bad:?}"
        );
    }
    state(&mut c, 7, Reply::Nil);
}

/// `TOPOLOGY SETMAP` installs a ring with the router's map of its addresses (and a record when
/// keys move); the map outlives `TOPOLOGY DONE`, so any router can adopt the ring from the node.
/// `TOPOLOGY LEASE` lets one router at a time change the ring.
#[test]
fn the_map_outlives_done_and_the_lease_has_one_holder() {
    let node = start_node(&[]);
    let mut c = node.raw();
    let setmap = |epoch: &str, record: &str| -> Vec<String> {
        [
            "TOPOLOGY", "SETMAP", epoch, "a", "64", "map", record, "a", "1",
        ]
        .into_iter()
        .map(str::to_string)
        .collect()
    };
    let get = |c: &mut Raw| c.cmd(&["TOPOLOGY", "GET"]);
    assert_eq!(c.cmd(&setmap("3", "join a")), ok());
    assert_eq!(
        get(&mut c),
        Reply::Array(vec![int(3), bulk("a"), bulk("join a"), bulk("map")])
    );
    assert_eq!(c.cmd(&["TOPOLOGY", "DONE", "3"]), ok());
    assert_eq!(
        get(&mut c),
        Reply::Array(vec![int(3), bulk("a"), Reply::Nil, bulk("map")])
    );
    // An empty record: no change moving keys.
    assert_eq!(c.cmd(&setmap("4", "")), ok());
    assert_eq!(
        get(&mut c),
        Reply::Array(vec![int(4), bulk("a"), Reply::Nil, bulk("map")])
    );
    assert_eq!(c.cmd(&["TOPOLOGY", "LEASE", "r1", "60000", "join d"]), ok());
    assert_eq!(
        c.cmd(&["TOPOLOGY", "LEASE", "r2", "60000", "leave b"]),
        Reply::Error("CHANGEBUSY r1 join d".into())
    );
    assert_eq!(c.cmd(&["TOPOLOGY", "RELEASE", "r1"]), ok());
    assert_eq!(
        c.cmd(&["TOPOLOGY", "LEASE", "r2", "60000", "leave b"]),
        ok()
    );
    assert!(matches!(
        c.cmd(&["TOPOLOGY", "LEASE", "r2", "0", "x"]),
        Reply::Error(e) if e.starts_with("ERR ttl")
    ));
}
