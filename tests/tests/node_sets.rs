#![allow(clippy::unwrap_used)]
//! Set commands, RESP2 and RESP3 shapes, encodings (OBJECT ENCODING) and replication of the
//! random ones. Member order is not part of Redis's contract (except an intset's, ascending), so
//! most replies are compared sorted.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use tests::*;

fn set_of(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn sadd(c: &mut Raw, key: &str, members: impl IntoIterator<Item = String>) -> i64 {
    let mut args = vec!["SADD".to_string(), key.to_string()];
    args.extend(members);
    c.cmd(&args).int()
}

fn encoding(c: &mut Raw, key: &str) -> String {
    c.cmd(&["OBJECT", "ENCODING", key]).text()
}

#[test]
fn sadd_srem_scard_sismember_smismember() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SADD", "s", "a", "b", "a"]), int(2));
    assert_eq!(c.cmd(&["SADD", "s", "b", "c", "C"]), int(2));
    assert_eq!(c.cmd(&["SCARD", "s"]), int(4));
    assert_eq!(c.cmd(&["SCARD", "missing"]), int(0));
    assert_eq!(c.cmd(&["SISMEMBER", "s", "C"]), int(1));
    assert_eq!(c.cmd(&["SISMEMBER", "s", "x"]), int(0));
    assert_eq!(c.cmd(&["SISMEMBER", "missing", "a"]), int(0));
    assert_eq!(
        c.cmd(&["SMISMEMBER", "s", "a", "x", "c"]),
        arr(vec![int(1), int(0), int(1)])
    );
    assert_eq!(
        c.cmd(&["SMISMEMBER", "missing", "a", "b"]),
        arr(vec![int(0), int(0)])
    );
    assert_eq!(
        c.cmd(&["SMEMBERS", "s"]).sorted(),
        set_of(&["C", "a", "b", "c"])
    );
    assert_eq!(c.cmd_raw(&["SMEMBERS", "missing"]), b"*0\r\n");
    // Binary and empty members.
    let binary: &[u8] = b"\x00\r\n\xff";
    assert_eq!(c.cmd(&[&b"SADD"[..], b"bin", binary, b""]), int(2));
    assert_eq!(c.cmd(&[&b"SISMEMBER"[..], b"bin", binary]), int(1));
    assert_eq!(c.cmd(&["SISMEMBER", "bin", ""]), int(1));

    assert_eq!(c.cmd(&["SREM", "s", "a", "a", "x"]), int(1));
    assert_eq!(c.cmd(&["SREM", "s", "a"]), int(0));
    assert_eq!(c.cmd(&["SREM", "missing", "a"]), int(0));
    // Removing the last member deletes the key (and its TTL with it).
    assert_eq!(c.cmd(&["EXPIRE", "s", "100"]), int(1));
    assert_eq!(c.cmd(&["SREM", "s", "b", "c", "C", "zz"]), int(3));
    assert_eq!(c.cmd(&["EXISTS", "s"]), int(0));
    assert_eq!(c.cmd(&["SADD", "s", "x"]), int(1));
    assert_eq!(c.cmd(&["TTL", "s"]), int(-1));
    assert_eq!(c.cmd(&["TYPE", "s"]), status("set"));

    assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
    for cmd in [
        &["SADD", "str", "a"][..],
        &["SREM", "str", "a"],
        &["SCARD", "str"],
        &["SISMEMBER", "str", "a"],
        &["SMISMEMBER", "str", "a"],
        &["SMEMBERS", "str"],
        &["SRANDMEMBER", "str"],
        &["SPOP", "str"],
    ] {
        assert_eq!(c.cmd(cmd), err(WRONGTYPE), "{cmd:?}");
    }
    assert_eq!(c.cmd(&["SADD", "s"]), wrong_args("sadd"));
    assert_eq!(c.cmd(&["SREM", "s"]), wrong_args("srem"));
    assert_eq!(c.cmd(&["SCARD"]), wrong_args("scard"));
    assert_eq!(c.cmd(&["SISMEMBER", "s"]), wrong_args("sismember"));
    assert_eq!(c.cmd(&["SMISMEMBER", "s"]), wrong_args("smismember"));
    assert_eq!(c.cmd(&["SMEMBERS", "s", "x"]), wrong_args("smembers"));
}

#[test]
fn intset_encoding_follows_redis() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SADD", "i", "17", "-3", "0"]), int(3));
    assert_eq!(encoding(&mut c, "i"), "intset");
    // An intset answers in ascending order.
    assert_eq!(c.cmd(&["SMEMBERS", "i"]), bulks(&["-3", "0", "17"]));
    assert_eq!(
        c.cmd(&["SSCAN", "i", "0"]),
        arr(vec![bulk("0"), bulks(&["-3", "0", "17"])])
    );
    // The widest integers fit; anything else (not canonical, too big) converts.
    assert_eq!(
        c.cmd(&["SADD", "i", "9223372036854775807", "-9223372036854775808"]),
        int(2)
    );
    assert_eq!(encoding(&mut c, "i"), "intset");
    assert_eq!(c.cmd(&["SISMEMBER", "i", "-9223372036854775808"]), int(1));
    assert_eq!(c.cmd(&["SISMEMBER", "i", "+17"]), int(0));
    assert_eq!(c.cmd(&["SISMEMBER", "i", "017"]), int(0));
    for (key, member) in [
        ("plus", "+1"),
        ("zero", "01"),
        ("space", " 1"),
        ("negzero", "-0"),
        ("big", "9223372036854775808"),
        ("huge", "213244124402402314402033402"),
        ("float", "1.0"),
    ] {
        assert_eq!(c.cmd(&["SADD", key, member]), int(1));
        assert_eq!(encoding(&mut c, key), "hashtable", "{member:?}");
        assert_eq!(c.cmd(&["SISMEMBER", key, member]), int(1));
    }
    assert_eq!(c.cmd(&["SADD", "i", "a"]), int(1));
    assert_eq!(encoding(&mut c, "i"), "hashtable");
    assert_eq!(c.cmd(&["SREM", "i", "a"]), int(1));
    assert_eq!(encoding(&mut c, "i"), "hashtable", "never converts back");
    assert_eq!(c.cmd(&["SISMEMBER", "i", "17"]), int(1));

    // set-max-intset-entries: the entry past it converts, a member already there does not.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "set-max-intset-entries", "4"]),
        ok()
    );
    assert_eq!(c.cmd(&["SADD", "l", "1", "2", "3", "4"]), int(4));
    assert_eq!(encoding(&mut c, "l"), "intset");
    assert_eq!(c.cmd(&["SADD", "l", "4"]), int(0));
    assert_eq!(encoding(&mut c, "l"), "intset");
    assert_eq!(c.cmd(&["SADD", "l", "5"]), int(1));
    assert_eq!(encoding(&mut c, "l"), "hashtable");
    assert_eq!(
        c.cmd(&["SMEMBERS", "l"]).sorted(),
        set_of(&["1", "2", "3", "4", "5"])
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "set-max-intset-entries", "0"]),
        ok()
    );
    assert_eq!(c.cmd(&["SADD", "z", "1"]), int(1));
    assert_eq!(encoding(&mut c, "z"), "hashtable");
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "set-max-intset-entries", "512"]),
        ok()
    );
    assert_eq!(sadd(&mut c, "m", (0..512).map(|i| i.to_string())), 512);
    assert_eq!(encoding(&mut c, "m"), "intset");
    assert_eq!(c.cmd(&["SADD", "m", "512"]), int(1));
    assert_eq!(encoding(&mut c, "m"), "hashtable");
    assert_eq!(c.cmd(&["SCARD", "m"]), int(513));
    for m in ["0", "255", "511", "512"] {
        assert_eq!(c.cmd(&["SISMEMBER", "m", m]), int(1));
    }

    // Store results and a moved member take the encoding their members allow.
    assert_eq!(c.cmd(&["SADD", "a", "1", "2", "3"]), int(3));
    assert_eq!(c.cmd(&["SADD", "b", "2", "3", "x"]), int(3));
    assert_eq!(c.cmd(&["SINTERSTORE", "r", "a", "b"]), int(2));
    assert_eq!(encoding(&mut c, "r"), "intset");
    assert_eq!(c.cmd(&["SDIFFSTORE", "r", "b", "a"]), int(1));
    assert_eq!(encoding(&mut c, "r"), "hashtable");
    assert_eq!(c.cmd(&["SUNIONSTORE", "r", "a", "a"]), int(3));
    assert_eq!(encoding(&mut c, "r"), "intset");
    assert_eq!(c.cmd(&["SMOVE", "b", "new", "2"]), int(1));
    assert_eq!(encoding(&mut c, "new"), "intset");
    assert_eq!(c.cmd(&["SMOVE", "b", "a", "x"]), int(1));
    assert_eq!(encoding(&mut c, "a"), "hashtable");
}

#[test]
fn large_and_long_member_sets() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let long = "x".repeat(100);
    assert_eq!(c.cmd(&["SADD", "s", "a", &long]), int(2));
    assert_eq!(encoding(&mut c, "s"), "hashtable");
    assert_eq!(c.cmd(&["SISMEMBER", "s", &long]), int(1));
    assert_eq!(
        sadd(&mut c, "big", (0..2000).map(|i| format!("m:{i}"))),
        2000
    );
    assert_eq!(
        sadd(&mut c, "big", (1990..2010).map(|i| format!("m:{i}"))),
        10
    );
    assert_eq!(c.cmd(&["SCARD", "big"]), int(2010));
    assert_eq!(
        c.cmd(&["SREM", "big", "m:0", "m:1999", "m:2009", "nope"]),
        int(3)
    );
    assert_eq!(c.cmd(&["SCARD", "big"]), int(2007));
    let members: HashSet<String> = c.cmd(&["SMEMBERS", "big"]).strings().into_iter().collect();
    assert_eq!(members.len(), 2007);
    assert!(!members.contains("m:0") && members.contains("m:1"));
    // Drain most of it: what is left stays right.
    let drop: Vec<String> = (1..1990).map(|i| format!("m:{i}")).collect();
    let mut args = vec!["SREM".to_string(), "big".into()];
    args.extend(drop);
    assert_eq!(c.cmd(&args), int(1989));
    let left = c.cmd(&["SMEMBERS", "big"]).sorted();
    let want: BTreeSet<String> = (1990..2009)
        .filter(|&i| i != 1999)
        .map(|i| format!("m:{i}"))
        .collect();
    assert_eq!(left, want.into_iter().collect::<Vec<_>>());
}

#[test]
fn smembers_sinter_sunion_sdiff_resp2_and_resp3() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SADD", "a", "1", "2", "3", "x", "y"]), int(5));
    assert_eq!(c.cmd(&["SADD", "b", "2", "3", "4", "y"]), int(4));
    assert_eq!(c.cmd(&["SADD", "c", "3", "y", "z"]), int(3));
    assert_eq!(
        c.cmd(&["SINTER", "a", "b"]).sorted(),
        set_of(&["2", "3", "y"])
    );
    assert_eq!(
        c.cmd(&["SINTER", "a", "b", "c"]).sorted(),
        set_of(&["3", "y"])
    );
    assert_eq!(
        c.cmd(&["SINTER", "a", "a", "a"]).sorted(),
        c.cmd(&["SMEMBERS", "a"]).sorted()
    );
    assert_eq!(c.cmd_raw(&["SINTER", "a", "missing"]), b"*0\r\n");
    assert_eq!(
        c.cmd(&["SUNION", "a", "missing", "b"]).sorted(),
        set_of(&["1", "2", "3", "4", "x", "y"])
    );
    assert_eq!(c.cmd(&["SDIFF", "a", "b"]).sorted(), set_of(&["1", "x"]));
    assert_eq!(
        c.cmd(&["SDIFF", "a", "b", "c", "missing"]).sorted(),
        set_of(&["1", "x"])
    );
    assert_eq!(c.cmd(&["SDIFF", "a", "a"]), arr(vec![]));
    assert_eq!(c.cmd(&["SDIFF", "missing", "a"]), arr(vec![]));
    // An intset and a table holding the same integers intersect on them.
    assert_eq!(c.cmd(&["SADD", "ints", "1", "2", "3"]), int(3));
    assert_eq!(c.cmd(&["SADD", "mixed", "1", "2", "3", "q"]), int(4));
    assert_eq!(c.cmd(&["SREM", "mixed", "q"]), int(1));
    assert_eq!(
        c.cmd(&["SINTER", "ints", "mixed"]).sorted(),
        set_of(&["1", "2", "3"])
    );
    assert_eq!(c.cmd(&["SDIFF", "ints", "mixed"]), arr(vec![]));

    // Every key is checked, missing ones included, before anything is answered.
    assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
    for cmd in ["SINTER", "SUNION", "SDIFF"] {
        assert_eq!(c.cmd(&[cmd, "missing", "str"]), err(WRONGTYPE), "{cmd}");
        assert_eq!(c.cmd(&[cmd, "str", "a"]), err(WRONGTYPE), "{cmd}");
        assert_eq!(c.cmd(&[cmd, "a", "str"]), err(WRONGTYPE), "{cmd}");
        assert_eq!(c.cmd(&[cmd]), wrong_args(&cmd.to_lowercase()));
    }

    // RESP3: set replies.
    let mut c3 = s.raw();
    c3.hello3(&[]);
    assert_eq!(
        c3.cmd_raw(&["SMEMBERS", "c"]).get(..4),
        Some(&b"~3\r\n"[..])
    );
    assert_eq!(c3.cmd_raw(&["SMEMBERS", "missing"]), b"~0\r\n");
    assert_eq!(c3.cmd_raw(&["SINTER", "a", "missing"]), b"~0\r\n");
    assert_eq!(
        c3.cmd_raw(&["SINTER", "ints", "ints"]),
        b"~3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );
    assert_eq!(c3.cmd_raw(&["SUNION", "missing"]), b"~0\r\n");
    assert_eq!(
        c3.cmd_raw(&["SDIFF", "ints", "missing"]),
        b"~3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        c3.cmd_raw(&["SMISMEMBER", "ints", "1", "9"]),
        b"*2\r\n:1\r\n:0\r\n"
    );
}

#[test]
fn store_commands_overwrite_delete_and_drop_the_ttl() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SADD", "a", "1", "2", "x"]), int(3));
    assert_eq!(c.cmd(&["SADD", "b", "2", "x", "y"]), int(3));
    assert_eq!(c.cmd(&["SET", "dst", "string"]), ok());
    assert_eq!(c.cmd(&["EXPIRE", "dst", "1000"]), int(1));
    assert_eq!(c.cmd(&["SINTERSTORE", "dst", "a", "b"]), int(2));
    assert_eq!(c.cmd(&["TYPE", "dst"]), status("set"));
    assert_eq!(c.cmd(&["TTL", "dst"]), int(-1));
    assert_eq!(c.cmd(&["SMEMBERS", "dst"]).sorted(), set_of(&["2", "x"]));
    assert_eq!(c.cmd(&["EXPIRE", "dst", "1000"]), int(1));
    assert_eq!(c.cmd(&["SUNIONSTORE", "dst", "a", "b"]), int(4));
    assert_eq!(c.cmd(&["TTL", "dst"]), int(-1));
    assert_eq!(c.cmd(&["SDIFFSTORE", "dst", "a", "b"]), int(1));
    assert_eq!(c.cmd(&["SMEMBERS", "dst"]), bulks(&["1"]));
    // The destination may be a source.
    assert_eq!(c.cmd(&["SUNIONSTORE", "a", "a", "b"]), int(4));
    assert_eq!(
        c.cmd(&["SMEMBERS", "a"]).sorted(),
        set_of(&["1", "2", "x", "y"])
    );
    assert_eq!(c.cmd(&["SDIFFSTORE", "a", "a", "b"]), int(1));
    assert_eq!(c.cmd(&["SMEMBERS", "a"]), bulks(&["1"]));
    // An empty result deletes the destination, whatever it held.
    for cmd in ["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"] {
        assert_eq!(c.cmd(&["SET", "dst", "x"]), ok());
        assert_eq!(
            c.cmd(&[cmd, "dst", "missing1", "missing2"]),
            int(0),
            "{cmd}"
        );
        assert_eq!(c.cmd(&["EXISTS", "dst"]), int(0), "{cmd}");
    }
    assert_eq!(c.cmd(&["SADD", "dst", "e"]), int(1));
    assert_eq!(c.cmd(&["SINTERSTORE", "dst", "a", "missing"]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "dst"]), int(0));
    assert_eq!(c.cmd(&["SADD", "dst", "e"]), int(1));
    assert_eq!(c.cmd(&["SDIFFSTORE", "dst", "a", "a"]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "dst"]), int(0));
    // A source of the wrong type leaves the destination alone.
    assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
    assert_eq!(c.cmd(&["SADD", "dst", "e"]), int(1));
    for cmd in ["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"] {
        assert_eq!(
            c.cmd(&[cmd, "dst", "missing", "str"]),
            err(WRONGTYPE),
            "{cmd}"
        );
        assert_eq!(c.cmd(&[cmd, "dst", "b", "str"]), err(WRONGTYPE), "{cmd}");
        assert_eq!(c.cmd(&["SMEMBERS", "dst"]), bulks(&["e"]), "{cmd}");
        assert_eq!(c.cmd(&[cmd, "dst"]), wrong_args(&cmd.to_lowercase()));
    }
    // A destination of another type is simply replaced.
    assert_eq!(c.cmd(&["SUNIONSTORE", "str", "b"]), int(3));
    assert_eq!(c.cmd(&["TYPE", "str"]), status("set"));
}

#[test]
fn sintercard_arguments_and_limit() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(sadd(&mut c, "a", (0..200).map(|i| i.to_string())), 200);
    assert_eq!(sadd(&mut c, "b", (195..400).map(|i| i.to_string())), 205);
    assert_eq!(c.cmd(&["SADD", "a", "foo"]), int(1));
    assert_eq!(c.cmd(&["SADD", "b", "foo"]), int(1));
    assert_eq!(c.cmd(&["SINTERCARD", "2", "a", "b"]), int(6));
    assert_eq!(c.cmd(&["SINTERCARD", "2", "a", "b", "LIMIT", "0"]), int(6));
    assert_eq!(c.cmd(&["SINTERCARD", "2", "a", "b", "limit", "3"]), int(3));
    assert_eq!(c.cmd(&["SINTERCARD", "2", "a", "b", "LIMIT", "10"]), int(6));
    assert_eq!(
        c.cmd(&["SINTERCARD", "2", "a", "b", "LIMIT", "9", "LIMIT", "2"]),
        int(2)
    );
    assert_eq!(c.cmd(&["SINTERCARD", "1", "a"]), int(201));
    assert_eq!(c.cmd(&["SINTERCARD", "2", "a", "missing"]), int(0));
    assert_eq!(c.cmd(&["SINTERCARD", "1", "missing", "LIMIT", "5"]), int(0));

    let numkeys = "ERR numkeys should be greater than 0";
    assert_eq!(c.cmd(&["SINTERCARD", "0", "a"]), err(numkeys));
    assert_eq!(c.cmd(&["SINTERCARD", "-1", "a"]), err(numkeys));
    assert_eq!(c.cmd(&["SINTERCARD", "x", "a"]), err(numkeys));
    let too_many = "ERR Number of keys can't be greater than number of args";
    assert_eq!(c.cmd(&["SINTERCARD", "2", "a"]), err(too_many));
    assert_eq!(c.cmd(&["SINTERCARD", "3", "a", "b"]), err(too_many));
    assert_eq!(c.cmd(&["SINTERCARD", "1", "a", "b"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SINTERCARD", "1", "a", "LIMIT"]), err(SYNTAX));
    let limit = "ERR LIMIT can't be negative";
    assert_eq!(c.cmd(&["SINTERCARD", "1", "a", "LIMIT", "-1"]), err(limit));
    assert_eq!(c.cmd(&["SINTERCARD", "1", "a", "LIMIT", "x"]), err(limit));
    assert_eq!(c.cmd(&["SINTERCARD", "1"]), wrong_args("sintercard"));
    assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
    assert_eq!(c.cmd(&["SINTERCARD", "1", "str"]), err(WRONGTYPE));
    assert_eq!(
        c.cmd(&["SINTERCARD", "2", "missing", "str"]),
        err(WRONGTYPE)
    );
}

#[test]
fn srandmember_counts_and_shapes() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd_raw(&["SRANDMEMBER", "missing"]), b"$-1\r\n");
    assert_eq!(c.cmd_raw(&["SRANDMEMBER", "missing", "5"]), b"*0\r\n");
    assert_eq!(c.cmd_raw(&["SRANDMEMBER", "missing", "-5"]), b"*0\r\n");
    for (key, members) in [
        ("ints", (0..30).map(|i| i.to_string()).collect::<Vec<_>>()),
        ("strs", (0..30).map(|i| format!("s{i}")).collect()),
        ("big", (0..300).map(|i| format!("b{i}")).collect()),
    ] {
        let all: HashSet<String> = members.iter().cloned().collect();
        assert_eq!(sadd(&mut c, key, members.clone()), members.len() as i64);
        assert!(all.contains(&c.cmd(&["SRANDMEMBER", key]).text()));
        assert_eq!(c.cmd_raw(&["SRANDMEMBER", key, "0"]), b"*0\r\n");
        for n in [1usize, 5, 29] {
            let got = c.cmd(&["SRANDMEMBER", key, &n.to_string()]).strings();
            assert_eq!(got.len(), n, "{key} {n}");
            assert_eq!(
                got.iter().collect::<HashSet<_>>().len(),
                n,
                "distinct: {got:?}"
            );
            assert!(got.iter().all(|m| all.contains(m)));
        }
        let whole = c.cmd(&["SRANDMEMBER", key, "100000"]).strings();
        assert_eq!(whole.into_iter().collect::<HashSet<_>>(), all);
        let mut seen = HashSet::new();
        for _ in 0..20 {
            let got = c.cmd(&["SRANDMEMBER", key, "-100"]).strings();
            assert_eq!(got.len(), 100);
            assert!(got.iter().all(|m| all.contains(m)));
            seen.extend(got);
        }
        assert!(
            seen.len() > 1,
            "{key}: a negative count repeats one member only"
        );
        assert_eq!(
            c.cmd(&["SCARD", key]),
            int(members.len() as i64),
            "read-only"
        );
    }
    let mut c3 = s.raw();
    c3.hello3(&[]);
    assert_eq!(c3.cmd_raw(&["SRANDMEMBER", "missing"]), b"_\r\n");
    assert_eq!(c3.cmd_raw(&["SRANDMEMBER", "missing", "3"]), b"*0\r\n");
    assert_eq!(c3.cmd_raw(&["SADD", "one", "m"]), b":1\r\n");
    assert_eq!(
        c3.cmd_raw(&["SRANDMEMBER", "one", "2"]),
        b"*1\r\n$1\r\nm\r\n"
    );
    assert_eq!(
        c3.cmd_raw(&["SRANDMEMBER", "one", "-2"]),
        b"*2\r\n$1\r\nm\r\n$1\r\nm\r\n"
    );

    assert_eq!(c.cmd(&["SRANDMEMBER", "ints", "1", "2"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SRANDMEMBER", "ints", "x"]), err(NOT_INTEGER));
    assert_eq!(
        c.cmd(&["SRANDMEMBER", "ints", "-9223372036854775808"]),
        err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
    );
    assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
    assert_eq!(c.cmd(&["SRANDMEMBER", "str", "3"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["SRANDMEMBER"]), wrong_args("srandmember"));
}

#[test]
fn spop_with_and_without_count() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd_raw(&["SPOP", "missing"]), b"$-1\r\n");
    assert_eq!(c.cmd_raw(&["SPOP", "missing", "3"]), b"*0\r\n");
    for (key, members) in [
        ("ints", (1..=26).map(|i| i.to_string()).collect::<Vec<_>>()),
        (
            "strs",
            (b'a'..=b'z').map(|b| (b as char).to_string()).collect(),
        ),
        ("big", (0..500).map(|i| format!("m{i}")).collect()),
    ] {
        let all: BTreeSet<String> = members.iter().cloned().collect();
        assert_eq!(sadd(&mut c, key, members.clone()), members.len() as i64);
        let mut popped = vec![c.cmd(&["SPOP", key]).text()];
        for n in ["11", "0", "4", "1"] {
            let got = c.cmd(&["SPOP", key, n]).strings();
            assert_eq!(got.len(), n.parse::<usize>().unwrap(), "{key} SPOP {n}");
            popped.extend(got);
        }
        let left = c.cmd(&["SMEMBERS", key]).strings();
        assert_eq!(left.len(), members.len() - 17);
        popped.extend(left.iter().cloned());
        let distinct: BTreeSet<String> = popped.iter().cloned().collect();
        assert_eq!(distinct.len(), popped.len(), "{key}: a member popped twice");
        assert_eq!(distinct, all, "{key}");
        // Asking for more than is left takes the rest and deletes the key.
        let rest = c.cmd(&["SPOP", key, "100000"]).sorted();
        let mut want = left;
        want.sort();
        assert_eq!(rest, want);
        assert_eq!(c.cmd(&["EXISTS", key]), int(0));
    }
    assert_eq!(c.cmd(&["SADD", "one", "m"]), int(1));
    assert_eq!(c.cmd(&["EXPIRE", "one", "100"]), int(1));
    assert_eq!(c.cmd(&["SPOP", "one"]), bulk("m"));
    assert_eq!(c.cmd(&["EXISTS", "one"]), int(0));

    let mut c3 = s.raw();
    c3.hello3(&[]);
    assert_eq!(c3.cmd_raw(&["SPOP", "missing"]), b"_\r\n");
    assert_eq!(c3.cmd_raw(&["SPOP", "missing", "2"]), b"~0\r\n");
    assert_eq!(c3.cmd_raw(&["SADD", "s", "7"]), b":1\r\n");
    assert_eq!(c3.cmd_raw(&["SPOP", "s", "0"]), b"~0\r\n");
    assert_eq!(c3.cmd_raw(&["SPOP", "s", "5"]), b"~1\r\n$1\r\n7\r\n");

    let positive = "ERR value is out of range, must be positive";
    assert_eq!(c.cmd(&["SADD", "s", "a", "b"]), int(2));
    assert_eq!(c.cmd(&["SPOP", "s", "-1"]), err(positive));
    assert_eq!(c.cmd(&["SPOP", "s", "x"]), err(positive));
    assert_eq!(c.cmd(&["SPOP", "s", "1", "2"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SCARD", "s"]), int(2));
    assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
    assert_eq!(c.cmd(&["SPOP", "str", "0"]), err(WRONGTYPE));
    assert_eq!(
        c.cmd(&["SPOP", "str", "x"]),
        err(positive),
        "the count is checked first"
    );
    assert_eq!(c.cmd(&["SPOP"]), wrong_args("spop"));
}

#[test]
fn smove_cases() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let setup = |c: &mut Raw| {
        c.cmd(&["DEL", "s1", "s2", "s3"]);
        assert_eq!(c.cmd(&["SADD", "s1", "1", "a", "b"]), int(3));
        assert_eq!(c.cmd(&["SADD", "s2", "2", "3", "4"]), int(3));
    };
    setup(&mut c);
    assert_eq!(c.cmd(&["SMOVE", "s1", "s2", "a"]), int(1));
    assert_eq!(c.cmd(&["SMEMBERS", "s1"]).sorted(), set_of(&["1", "b"]));
    assert_eq!(
        c.cmd(&["SMEMBERS", "s2"]).sorted(),
        set_of(&["2", "3", "4", "a"])
    );
    setup(&mut c);
    assert_eq!(c.cmd(&["SMOVE", "s1", "s2", "nope"]), int(0));
    assert_eq!(c.cmd(&["SMOVE", "s1", "s1", "nope"]), int(0));
    assert_eq!(c.cmd(&["SMOVE", "s1", "s1", "a"]), int(1));
    assert_eq!(
        c.cmd(&["SMEMBERS", "s1"]).sorted(),
        set_of(&["1", "a", "b"])
    );
    assert_eq!(c.cmd(&["SMOVE", "missing", "s2", "a"]), int(0));
    assert_eq!(c.cmd(&["SMOVE", "s2", "s3", "2"]), int(1));
    assert_eq!(c.cmd(&["SMEMBERS", "s3"]), bulks(&["2"]));
    // Moving a member the destination has: the source loses it, the destination is unchanged.
    assert_eq!(c.cmd(&["SADD", "s1", "3"]), int(1));
    assert_eq!(c.cmd(&["SMOVE", "s1", "s2", "3"]), int(1));
    assert_eq!(c.cmd(&["SISMEMBER", "s1", "3"]), int(0));
    assert_eq!(c.cmd(&["SMEMBERS", "s2"]).sorted(), set_of(&["3", "4"]));
    // The last member moved deletes the source.
    assert_eq!(c.cmd(&["SMOVE", "s3", "s2", "2"]), int(1));
    assert_eq!(c.cmd(&["EXISTS", "s3"]), int(0));

    assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
    assert_eq!(c.cmd(&["SMOVE", "str", "s2", "a"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["SMOVE", "s1", "str", "a"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["SMOVE", "s1", "str", "nope"]), err(WRONGTYPE));
    // A missing source answers 0 before the destination's type is looked at.
    assert_eq!(c.cmd(&["SMOVE", "missing", "str", "a"]), int(0));
    assert_eq!(
        c.cmd(&["SMEMBERS", "s1"]).sorted(),
        set_of(&["1", "a", "b"])
    );
    assert_eq!(c.cmd(&["SMOVE", "s1", "s2"]), wrong_args("smove"));
}

#[test]
fn smove_touches_the_destination_only_when_it_adds() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let mut other = s.raw();
    assert_eq!(c.cmd(&["SADD", "src", "a", "b"]), int(2));
    assert_eq!(c.cmd(&["SADD", "dst", "a"]), int(1));
    assert_eq!(c.cmd(&["WATCH", "dst"]), ok());
    assert_eq!(other.cmd(&["SMOVE", "src", "dst", "a"]), int(1));
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SADD", "dst", "c"]), status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), arr(vec![int(1)]));
    assert_eq!(c.cmd(&["WATCH", "dst"]), ok());
    assert_eq!(other.cmd(&["SMOVE", "src", "dst", "b"]), int(1));
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SADD", "dst", "d"]), status("QUEUED"));
    assert_eq!(c.cmd_raw(&["EXEC"]), b"*-1\r\n");
    assert_eq!(
        c.cmd(&["SMEMBERS", "dst"]).sorted(),
        set_of(&["a", "b", "c"])
    );
}

fn sscan_all(c: &mut Raw, key: &str, extra: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    for _ in 0..100_000 {
        let mut args = vec!["SSCAN", key, cursor.as_str()];
        args.extend_from_slice(extra);
        let r = c.cmd(&args);
        let items = r.items();
        assert_eq!(items.len(), 2, "{r:?}");
        seen.extend(items[1].strings());
        cursor = items[0].text();
        if cursor == "0" {
            return seen;
        }
    }
    panic!("SSCAN did not finish in 100000 calls");
}

#[test]
fn sscan() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["SSCAN", "missing", "0"]),
        arr(vec![bulk("0"), arr(vec![])])
    );
    // Options are only looked at when the key holds a set.
    assert_eq!(
        c.cmd(&["SSCAN", "missing", "0", "COUNT", "0"]),
        arr(vec![bulk("0"), arr(vec![])])
    );
    assert_eq!(c.cmd(&["SADD", "small", "a", "b", "c"]), int(3));
    assert_eq!(sscan_all(&mut c, "small", &[]).len(), 3);
    assert_eq!(c.cmd(&["SADD", "ints", "3", "1", "12", "2"]), int(4));
    assert_eq!(
        c.cmd(&["SSCAN", "ints", "0", "MATCH", "1*"]),
        arr(vec![bulk("0"), bulks(&["1", "12"])])
    );
    assert_eq!(
        sadd(&mut c, "big", (0..1000).map(|i| format!("m:{i}"))),
        1000
    );
    let want: HashSet<String> = (0..1000).map(|i| format!("m:{i}")).collect();
    for extra in [&[][..], &["COUNT", "7"][..], &["COUNT", "5000"][..]] {
        let got: HashSet<String> = sscan_all(&mut c, "big", extra).into_iter().collect();
        assert_eq!(got, want, "SSCAN {extra:?}");
    }
    let got: HashSet<String> = sscan_all(&mut c, "big", &["MATCH", "m:1?", "COUNT", "50"])
        .into_iter()
        .collect();
    assert_eq!(got, (10..20).map(|i| format!("m:{i}")).collect());

    // Removing members during a scan never hides one that stays.
    let mut cursor = "0".to_string();
    let mut seen = HashSet::new();
    let mut removed = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.cmd(&["SSCAN", "big", &cursor, "COUNT", "20"]);
        let items = r.items();
        seen.extend(items[1].strings());
        cursor = items[0].text();
        if cursor == "0" {
            break;
        }
        for _ in 0..5 {
            if c.cmd(&["SREM", "big", &format!("m:{removed}")]).int() == 1 {
                removed += 1;
            }
        }
        assert!(Instant::now() < deadline, "SSCAN did not finish");
    }
    for i in removed..1000 {
        assert!(
            seen.contains(&format!("m:{i}")),
            "m:{i} stayed but was never returned"
        );
    }

    assert_eq!(c.cmd(&["SSCAN", "big", "x"]), err("ERR invalid cursor"));
    assert_eq!(c.cmd(&["SSCAN", "big", "0", "COUNT", "0"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SSCAN", "big", "0", "FOO"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SSCAN", "big", "0", "COUNT"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
    assert_eq!(c.cmd(&["SSCAN", "str", "0"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["SSCAN", "big"]), wrong_args("sscan"));
}

#[test]
fn dump_restore_keeps_members_and_encoding() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SADD", "ints", "5", "-70000", "3"]), int(3));
    assert_eq!(c.cmd(&["SADD", "strs", "a", "b", "1"]), int(3));
    assert_eq!(sadd(&mut c, "big", (0..700).map(|i| i.to_string())), 700);
    for key in ["ints", "strs", "big"] {
        let payload = c.cmd(&["DUMP", key]);
        let Reply::Bulk(bytes) = payload else {
            panic!("DUMP {key}: {payload:?}")
        };
        let copy = format!("{key}:copy");
        assert_eq!(
            c.cmd(&[&b"RESTORE"[..], copy.as_bytes(), b"0", &bytes]),
            ok()
        );
        assert_eq!(
            c.cmd(&["SMEMBERS", &copy]).sorted(),
            c.cmd(&["SMEMBERS", key]).sorted()
        );
        assert_eq!(encoding(&mut c, &copy), encoding(&mut c, key), "{key}");
    }
}

/// The replica of the target: a node replicating the node, or redis-server replicating redis.
fn start_replica(primary: &Proc) -> Proc {
    if is_redis() {
        let port = primary.addr.port().to_string();
        start_redis(&["--replicaof", "127.0.0.1", &port])
    } else {
        start_replica_of(primary.addr, &[])
    }
}

#[test]
fn random_pops_reach_the_replica_as_their_effect() {
    let p = start_target(&[]);
    let r = start_replica(&p);
    let (mut pc, mut rc) = (p.raw(), r.raw());
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(sadd(&mut pc, "ints", (0..40).map(|i| i.to_string())), 40);
    assert_eq!(sadd(&mut pc, "strs", (0..40).map(|i| format!("s{i}"))), 40);
    assert_eq!(sadd(&mut pc, "big", (0..400).map(|i| format!("b{i}"))), 400);
    for key in ["ints", "strs", "big"] {
        pc.cmd(&["SPOP", key]);
        assert_eq!(pc.cmd(&["SPOP", key, "3"]).items().len(), 3);
        assert_eq!(pc.cmd(&["SPOP", key, "30"]).items().len(), 30);
        assert_eq!(pc.cmd(&["SPOP", key, "0"]), arr(vec![]));
    }
    assert_eq!(pc.cmd(&["SADD", "gone", "x", "y"]), int(2));
    assert_eq!(pc.cmd(&["SPOP", "gone", "5"]).items().len(), 2);
    assert_eq!(pc.cmd(&["SADD", "gone1", "x"]), int(1));
    assert_eq!(pc.cmd(&["SPOP", "gone1"]), bulk("x"));
    // s1 may have been popped: the move then does nothing, on both sides.
    pc.cmd(&["SMOVE", "strs", "moved", "s1"]);
    pc.cmd(&["SMOVE", "strs", "moved", "s2"]);
    assert_eq!(pc.cmd(&["SINTERSTORE", "inter", "big", "big"]).int(), 366);
    assert_eq!(pc.cmd(&["SDIFFSTORE", "diff", "ints", "strs"]).int(), 6);
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    for key in ["ints", "strs", "big", "moved", "inter", "diff"] {
        assert_eq!(
            rc.cmd(&["SMEMBERS", key]).sorted(),
            pc.cmd(&["SMEMBERS", key]).sorted(),
            "{key}"
        );
    }
    assert_eq!(rc.cmd(&["EXISTS", "gone", "gone1"]), int(0));
}
