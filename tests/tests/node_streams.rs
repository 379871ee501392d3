#![allow(clippy::unwrap_used)]
//! Streams: XADD ids and trimming, ranges, XDEL/XTRIM/XSETID, blocking XREAD served by an XADD
//! from another client, consumer groups (delivery, acknowledgement, pending, claiming), XINFO,
//! and a stream moved whole by DUMP/RESTORE and by an arc migration.

use std::time::Duration;

use tests::*;

fn wait_blocked(c: &mut Raw, n: u64) {
    assert_eventually!(
        num(&info(c, "clients"), "blocked_clients") == n,
        Duration::from_secs(10)
    );
}

/// `[id, [field, value, ...]]`
fn entry(id: &str, fields: &[&str]) -> Reply {
    arr(vec![bulk(id), bulks(fields)])
}

fn ids(r: &Reply) -> Vec<String> {
    r.items().iter().map(|e| e.items()[0].text()).collect()
}

#[test]
fn xadd_ids_ranges_and_errors() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["XADD", "s", "1-1", "a", "1", "b", "2"]),
        bulk("1-1")
    );
    assert_eq!(c.cmd(&["XADD", "s", "1-*", "c", "3"]), bulk("1-2"));
    assert_eq!(c.cmd(&["XADD", "s", "5", "d", "4"]), bulk("5-0"));
    assert_eq!(
        c.cmd(&["XADD", "s", "5-0", "x", "y"]),
        err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
    );
    assert_eq!(
        c.cmd(&["XADD", "e", "0-0", "x", "y"]),
        err("ERR The ID specified in XADD must be greater than 0-0")
    );
    assert_eq!(c.cmd(&["XADD", "s", "6", "odd"]), wrong_args("xadd"));
    assert_eq!(
        c.cmd(&["XADD", "s", "bad-id", "f", "v"]),
        err("ERR Invalid stream ID specified as stream command argument")
    );
    let auto = c.cmd(&["XADD", "s", "*", "e", "5"]).text();
    assert!(
        auto.split('-').next().unwrap().parse::<u64>().unwrap() > 5,
        "{auto}"
    );
    assert_eq!(c.cmd(&["XLEN", "s"]), int(4));
    assert_eq!(c.cmd(&["XADD", "none", "NOMKSTREAM", "*", "f", "v"]), nil());
    assert_eq!(c.cmd(&["EXISTS", "none"]), int(0));

    assert_eq!(
        c.cmd(&["XRANGE", "s", "-", "5"]),
        arr(vec![
            entry("1-1", &["a", "1", "b", "2"]),
            entry("1-2", &["c", "3"]),
            entry("5-0", &["d", "4"]),
        ])
    );
    assert_eq!(ids(&c.cmd(&["XRANGE", "s", "(1-1", "(5-0"])), ["1-2"]);
    assert_eq!(
        ids(&c.cmd(&["XREVRANGE", "s", "5", "-", "COUNT", "2"])),
        ["5-0", "1-2"]
    );
    assert_eq!(c.cmd(&["XRANGE", "missing", "-", "+"]), arr(vec![]));
    assert_eq!(
        c.cmd(&["XRANGE", "s", "-", "(0-0"]),
        err("ERR invalid end ID for the interval")
    );
    assert_eq!(c.cmd(&["TYPE", "s"]), status("stream"));
    assert_eq!(c.cmd(&["OBJECT", "ENCODING", "s"]), bulk("stream"));
    c.cmd(&["SET", "str", "v"]);
    assert_eq!(c.cmd(&["XADD", "str", "*", "f", "v"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["XLEN", "str"]), err(WRONGTYPE));
}

#[test]
fn xdel_xtrim_and_xsetid() {
    let s = start_target(&[]);
    let mut c = s.raw();
    for i in 1..=10 {
        c.cmd(&["XADD", "s", &format!("{i}"), "f", "v"]);
    }
    assert_eq!(c.cmd(&["XDEL", "s", "2", "3", "99"]), int(2));
    assert_eq!(c.cmd(&["XLEN", "s"]), int(8));
    assert_eq!(c.cmd(&["XTRIM", "s", "MAXLEN", "5"]), int(3));
    assert_eq!(
        ids(&c.cmd(&["XRANGE", "s", "-", "+", "COUNT", "1"])),
        ["6-0"]
    );
    assert_eq!(c.cmd(&["XTRIM", "s", "MINID", "8"]), int(2));
    assert_eq!(
        c.cmd(&["XTRIM", "s", "MAXLEN", "1", "LIMIT", "1"]),
        err("ERR syntax error, LIMIT cannot be used without the special ~ option")
    );
    // Emptied, the stream stays, keeping its last id.
    assert_eq!(c.cmd(&["XTRIM", "s", "MAXLEN", "0"]), int(3));
    assert_eq!(c.cmd(&["EXISTS", "s"]), int(1));
    assert_eq!(
        c.cmd(&["XADD", "s", "10", "f", "v"]),
        err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
    );
    assert_eq!(c.cmd(&["XSETID", "s", "100-0"]), ok());
    assert_eq!(c.cmd(&["XADD", "s", "100-*", "f", "v"]), bulk("100-1"));
    assert_eq!(
        c.cmd(&["XSETID", "s", "50"]),
        err("ERR The ID specified in XSETID is smaller than the target stream top item")
    );
    assert_eq!(c.cmd(&["XSETID", "nokey", "1"]), err("ERR no such key"));

    // Approximate trimming removes whole nodes only.
    c.cmd(&["CONFIG", "SET", "stream-node-max-entries", "10"]);
    for i in 1..=35 {
        c.cmd(&["XADD", "t", "MAXLEN", "~", "12", &format!("{i}"), "f", "v"]);
    }
    let len = c.cmd(&["XLEN", "t"]).int();
    assert!((12..=22).contains(&len), "{len}");
    c.cmd(&["CONFIG", "SET", "stream-node-max-entries", "100"]);

    // DEL, RENAME, COPY and EXPIRE treat a stream as any other value.
    assert_eq!(c.cmd(&["RENAME", "t", "u"]), ok());
    assert_eq!(c.cmd(&["COPY", "u", "v"]), int(1));
    assert_eq!(c.cmd(&["XLEN", "v"]), int(len));
    assert_eq!(c.cmd(&["PEXPIRE", "v", "1"]), int(1));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(c.cmd(&["EXISTS", "v"]), int(0));
    assert_eq!(c.cmd(&["DEL", "u"]), int(1));
}

#[test]
fn blocked_xread_is_served_by_an_xadd_from_another_client() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let mut b = s.raw();
    c.cmd(&["XADD", "s", "1", "old", "x"]);
    b.send_cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    wait_blocked(&mut c, 1);
    assert_eq!(c.cmd(&["XADD", "s", "2", "new", "y"]), bulk("2-0"));
    assert_eq!(
        b.reply(),
        arr(vec![arr(vec![
            bulk("s"),
            arr(vec![entry("2-0", &["new", "y"])])
        ])])
    );
    // A timeout answers a null array; a plain read past the end answers at once.
    assert_eq!(
        b.cmd_raw(&["XREAD", "BLOCK", "20", "STREAMS", "s", "$"]),
        b"*-1\r\n"
    );
    assert_eq!(
        ids(&b.cmd(&["XREAD", "COUNT", "5", "STREAMS", "s", "0"]).items()[0].items()[1]),
        ["1-0", "2-0"]
    );
    // Inside MULTI a BLOCK read does not block.
    c.cmd(&["MULTI"]);
    c.cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    assert_eq!(c.cmd_raw(&["EXEC"]), b"*1\r\n*-1\r\n");
    // RESP3: a map of key to entries, blocked or not.
    let mut b3 = s.raw();
    b3.hello3(&[]);
    b3.send_cmd(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    wait_blocked(&mut c, 1);
    c.cmd(&["XADD", "s", "3", "k", "v"]);
    assert_eq!(
        b3.reply().pairs(),
        vec![("s".to_string(), arr(vec![entry("3-0", &["k", "v"])]))]
    );
}

#[test]
fn consumer_groups_deliver_ack_pending_and_claim() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["XGROUP", "CREATE", "s", "g", "$"]),
        err("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.")
    );
    assert_eq!(
        c.cmd(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]),
        ok()
    );
    assert_eq!(
        c.cmd(&["XGROUP", "CREATE", "s", "g", "$"]),
        err("BUSYGROUP Consumer Group name already exists")
    );
    // Subcommands run inside a transaction too.
    c.cmd(&["MULTI"]);
    c.cmd(&["XGROUP", "CREATECONSUMER", "s", "g", "zed"]);
    c.cmd(&["XINFO", "GROUPS", "s"]);
    let r = c.cmd(&["EXEC"]).items();
    assert_eq!(r[0], int(1));
    assert_eq!(r[1].items()[0].get("consumers"), Some(int(1)));
    assert_eq!(c.cmd(&["XGROUP", "DELCONSUMER", "s", "g", "zed"]), int(0));
    for i in 1..=3 {
        c.cmd(&["XADD", "s", &format!("{i}"), "n", &format!("{i}")]);
    }
    let r = c.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "alice",
        "COUNT",
        "2",
        "STREAMS",
        "s",
        ">",
    ]);
    assert_eq!(ids(&r.items()[0].items()[1]), ["1-0", "2-0"]);
    let r = c.cmd(&["XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">"]);
    assert_eq!(ids(&r.items()[0].items()[1]), ["3-0"]);
    assert_eq!(
        c.cmd_raw(&["XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">"]),
        b"*-1\r\n"
    );
    // History: what alice has pending.
    let r = c.cmd(&["XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "0"]);
    assert_eq!(ids(&r.items()[0].items()[1]), ["1-0", "2-0"]);

    assert_eq!(
        c.cmd(&["XPENDING", "s", "g"]),
        arr(vec![
            int(3),
            bulk("1-0"),
            bulk("3-0"),
            arr(vec![bulks(&["alice", "2"]), bulks(&["bob", "1"])]),
        ])
    );
    assert_eq!(c.cmd(&["XACK", "s", "g", "1", "9"]), int(1));
    let ext = c.cmd(&["XPENDING", "s", "g", "-", "+", "10", "alice"]);
    let row = ext.items()[0].items();
    assert_eq!(
        (row[0].text(), row[1].text(), row[3].int()),
        ("2-0".into(), "alice".into(), 2)
    );

    // Bob claims alice's entry; JUSTID leaves the delivery count.
    assert_eq!(
        c.cmd(&["XCLAIM", "s", "g", "bob", "0", "2", "JUSTID"]),
        bulks(&["2-0"])
    );
    let r = c.cmd(&["XAUTOCLAIM", "s", "g", "carol", "0", "0", "COUNT", "10"]);
    assert_eq!(r.items()[0], bulk("0-0"));
    assert_eq!(ids(&r.items()[1]), ["2-0", "3-0"]);
    assert_eq!(
        c.cmd(&["XPENDING", "s", "g", "-", "+", "10", "carol"])
            .items()
            .len(),
        2
    );
    assert_eq!(c.cmd(&["XGROUP", "DELCONSUMER", "s", "g", "carol"]), int(2));
    assert_eq!(c.cmd(&["XPENDING", "s", "g"]).items()[0], int(0));

    let groups = c.cmd(&["XINFO", "GROUPS", "s"]).items();
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(g.get("name"), Some(bulk("g")));
    assert_eq!(g.get("last-delivered-id"), Some(bulk("3-0")));
    assert_eq!(g.get("entries-read"), Some(int(3)));
    assert_eq!(g.get("lag"), Some(int(0)));
    let info = c.cmd(&["XINFO", "STREAM", "s"]);
    assert_eq!(info.get("length"), Some(int(3)));
    assert_eq!(info.get("entries-added"), Some(int(3)));
    assert_eq!(info.get("groups"), Some(int(1)));
    assert_eq!(
        c.cmd(&["XREADGROUP", "GROUP", "nope", "x", "STREAMS", "s", ">"]),
        err("NOGROUP No such key 's' or consumer group 'nope' in XREADGROUP with GROUP option")
    );
}

#[test]
fn blocked_xreadgroup_is_served_and_told_when_its_group_goes() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let mut b = s.raw();
    c.cmd(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]);
    b.send_cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "alice",
        "BLOCK",
        "0",
        "STREAMS",
        "s",
        ">",
    ]);
    wait_blocked(&mut c, 1);
    c.cmd(&["XADD", "s", "1", "f", "v"]);
    assert_eq!(
        b.reply(),
        arr(vec![arr(vec![
            bulk("s"),
            arr(vec![entry("1-0", &["f", "v"])])
        ])])
    );
    assert_eq!(c.cmd(&["XPENDING", "s", "g"]).items()[0], int(1));
    b.send_cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "alice",
        "BLOCK",
        "0",
        "STREAMS",
        "s",
        ">",
    ]);
    wait_blocked(&mut c, 1);
    c.cmd(&["XGROUP", "DESTROY", "s", "g"]);
    assert!(b.reply().error_text().unwrap().starts_with("NOGROUP"));
}

#[test]
fn a_stream_with_groups_survives_dump_and_restore() {
    let s = start_target(&[]);
    let mut c = s.raw();
    for i in 1..=5 {
        c.cmd(&["XADD", "s", &format!("{i}"), "f", &format!("v{i}")]);
    }
    c.cmd(&["XDEL", "s", "2"]);
    c.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
    c.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "alice",
        "COUNT",
        "2",
        "STREAMS",
        "s",
        ">",
    ]);
    let Reply::Bulk(payload) = c.cmd(&["DUMP", "s"]) else {
        panic!("DUMP answered no payload");
    };
    assert_eq!(c.cmd(&[&b"RESTORE"[..], b"copy", b"0", &payload]), ok());
    assert_eq!(
        c.cmd(&["XRANGE", "copy", "-", "+"]),
        c.cmd(&["XRANGE", "s", "-", "+"])
    );
    assert_eq!(
        c.cmd(&["XINFO", "GROUPS", "copy"]),
        c.cmd(&["XINFO", "GROUPS", "s"])
    );
    assert_eq!(
        c.cmd(&["XPENDING", "copy", "g", "-", "+", "10"])
            .items()
            .len(),
        2
    );
    let a = c.cmd(&["XINFO", "STREAM", "s"]);
    let b = c.cmd(&["XINFO", "STREAM", "copy"]);
    for field in [
        "length",
        "last-generated-id",
        "max-deleted-entry-id",
        "entries-added",
    ] {
        assert_eq!(a.get(field), b.get(field), "{field}");
    }
}

#[test]
fn a_stream_survives_an_arc_migration() {
    let source = start_node(&[]);
    let target = start_node(&[]);
    let mut c = source.raw();
    for i in 1..=300 {
        c.cmd(&["XADD", "s", &format!("{i}"), "f", &format!("v{i}")]);
    }
    c.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
    c.cmd(&[
        "XREADGROUP",
        "GROUP",
        "g",
        "alice",
        "COUNT",
        "7",
        "STREAMS",
        "s",
        ">",
    ]);
    let before = c.cmd(&["XINFO", "STREAM", "s", "FULL", "COUNT", "0"]);
    match c.cmd(&["MIGRATE-ARC", &target.addr.to_string(), "0", "0", "1000"]) {
        Reply::Array(r) => assert_eq!(r[0], int(1), "{r:?}"),
        other => panic!("MIGRATE-ARC answered {other:?}"),
    }
    assert_eq!(c.cmd(&["EXISTS", "s"]), int(0));
    let mut t = target.raw();
    assert_eq!(
        t.cmd(&["XINFO", "STREAM", "s", "FULL", "COUNT", "0"]),
        before
    );
    assert_eq!(t.cmd(&["XLEN", "s"]), int(300));
}
