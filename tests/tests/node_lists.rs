#![allow(clippy::unwrap_used)]
//! List commands, RESP2 and RESP3 shapes, and the blocking pops (served in the order clients
//! blocked, BLMOVE chains, timeouts, transactions).

use std::time::Duration;

use tests::*;

/// Waits until `n` clients are blocked (INFO's `blocked_clients`).
fn wait_blocked(c: &mut Raw, n: u64) {
    assert_eventually!(
        num(&info(c, "clients"), "blocked_clients") == n,
        Duration::from_secs(10)
    );
}

fn range(c: &mut Raw, key: &str) -> Vec<String> {
    c.cmd(&["LRANGE", key, "0", "-1"]).strings()
}

#[test]
fn push_pop_len_index() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["LPUSH", "l", "a", "b"]), int(2));
    assert_eq!(c.cmd(&["RPUSH", "l", "c", "d"]), int(4));
    assert_eq!(range(&mut c, "l"), ["b", "a", "c", "d"]);
    assert_eq!(c.cmd(&["LPUSHX", "l", "x"]), int(5));
    assert_eq!(c.cmd(&["RPUSHX", "l", "y", "z"]), int(7));
    assert_eq!(c.cmd(&["LPUSHX", "missing", "x"]), int(0));
    assert_eq!(c.cmd(&["RPUSHX", "missing", "x"]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "missing"]), int(0));
    assert_eq!(c.cmd(&["LLEN", "l"]), int(7));
    assert_eq!(c.cmd(&["LLEN", "missing"]), int(0));
    assert_eq!(c.cmd(&["LINDEX", "l", "0"]), bulk("x"));
    assert_eq!(c.cmd(&["LINDEX", "l", "-1"]), bulk("z"));
    assert_eq!(c.cmd(&["LINDEX", "l", "7"]), nil());
    assert_eq!(c.cmd(&["LINDEX", "l", "-8"]), nil());
    assert_eq!(c.cmd(&["LINDEX", "missing", "notanumber"]), nil());
    assert_eq!(c.cmd(&["LINDEX", "l", "x"]), err(NOT_INTEGER));

    assert_eq!(c.cmd(&["LPOP", "l"]), bulk("x"));
    assert_eq!(c.cmd(&["RPOP", "l"]), bulk("z"));
    assert_eq!(c.cmd(&["LPOP", "l", "2"]), bulks(&["b", "a"]));
    assert_eq!(c.cmd(&["RPOP", "l", "2"]), bulks(&["y", "d"]));
    assert_eq!(c.cmd(&["LPOP", "l", "0"]), arr(vec![]));
    assert_eq!(c.cmd(&["RPOP", "l", "10"]), bulks(&["c"]));
    assert_eq!(c.cmd(&["EXISTS", "l"]), int(0));
    assert_eq!(c.cmd_raw(&["LPOP", "l"]), b"$-1\r\n");
    assert_eq!(c.cmd_raw(&["LPOP", "l", "0"]), b"*-1\r\n");
    assert_eq!(c.cmd_raw(&["RPOP", "l", "3"]), b"*-1\r\n");
    let positive = err("ERR value is out of range, must be positive");
    assert_eq!(c.cmd(&["LPOP", "l", "-1"]), positive);
    assert_eq!(c.cmd(&["LPOP", "l", "x"]), positive);
    assert_eq!(c.cmd(&["LPOP", "l", "1", "2"]), wrong_args("lpop"));
    assert_eq!(c.cmd(&["RPUSH", "l"]), wrong_args("rpush"));

    let binary: &[u8] = b"\x00\r\n\xff";
    assert_eq!(c.cmd(&[&b"RPUSH"[..], b"bin", binary, b""]), int(2));
    assert_eq!(c.cmd(&["LPOP", "bin"]), bulk(binary));
    assert_eq!(c.cmd(&["LPOP", "bin"]), bulk(""));

    let mut c3 = s.raw();
    c3.hello3(&[]);
    assert_eq!(c3.cmd_raw(&["LPOP", "l"]), b"_\r\n");
    assert_eq!(c3.cmd_raw(&["LPOP", "l", "2"]), b"_\r\n");
    assert_eq!(c3.cmd_raw(&["LINDEX", "l", "0"]), b"_\r\n");
    c3.cmd(&["RPUSH", "l", "v"]);
    assert_eq!(c3.cmd_raw(&["LPOP", "l", "0"]), b"*0\r\n");
}

#[test]
fn wrong_types() {
    let s = start_target(&[]);
    let mut c = s.raw();
    c.cmd(&["SET", "s", "v"]);
    c.cmd(&["RPUSH", "l", "a"]);
    for args in [
        vec!["LPUSH", "s", "a"],
        vec!["RPUSHX", "s", "a"],
        vec!["LLEN", "s"],
        vec!["LINDEX", "s", "0"],
        vec!["LSET", "s", "0", "a"],
        vec!["LRANGE", "s", "0", "-1"],
        vec!["LTRIM", "s", "0", "-1"],
        vec!["LPOS", "s", "a"],
        vec!["LREM", "s", "0", "a"],
        vec!["LINSERT", "s", "BEFORE", "a", "b"],
        vec!["LPOP", "s"],
        vec!["RPOP", "s", "2"],
        vec!["LMOVE", "s", "l", "LEFT", "LEFT"],
        vec!["LMOVE", "l", "s", "LEFT", "LEFT"],
        vec!["RPOPLPUSH", "l", "s"],
        vec!["LMPOP", "2", "missing", "s", "LEFT"],
        vec!["BLPOP", "missing", "s", "0"],
        vec!["BLMPOP", "0", "2", "missing", "s", "LEFT"],
    ] {
        assert_eq!(c.cmd(&args), err(WRONGTYPE), "{args:?}");
    }
    // Nothing moved when the destination was the wrong type.
    assert_eq!(range(&mut c, "l"), ["a"]);
    assert_eq!(c.cmd(&["GET", "s"]), bulk("v"));
}

#[test]
fn lrange_ltrim_lset() {
    let s = start_target(&[]);
    let mut c = s.raw();
    c.cmd(&["RPUSH", "l", "0", "1", "2", "3", "4", "5"]);
    assert_eq!(
        c.cmd(&["LRANGE", "l", "1", "-2"]),
        bulks(&["1", "2", "3", "4"])
    );
    assert_eq!(c.cmd(&["LRANGE", "l", "-100", "100"]).strings().len(), 6);
    assert_eq!(c.cmd(&["LRANGE", "l", "4", "2"]), arr(vec![]));
    assert_eq!(c.cmd(&["LRANGE", "l", "0", "-7"]), arr(vec![]));
    assert_eq!(c.cmd(&["LRANGE", "missing", "0", "-1"]), arr(vec![]));
    assert_eq!(c.cmd(&["LRANGE", "l", "a", "1"]), err(NOT_INTEGER));

    assert_eq!(c.cmd(&["LSET", "l", "1", "one"]), ok());
    assert_eq!(c.cmd(&["LSET", "l", "-1", "five"]), ok());
    assert_eq!(
        c.cmd(&["LSET", "l", "6", "x"]),
        err("ERR index out of range")
    );
    assert_eq!(
        c.cmd(&["LSET", "missing", "0", "x"]),
        err("ERR no such key")
    );
    assert_eq!(c.cmd(&["LSET", "l", "x", "x"]), err(NOT_INTEGER));

    assert_eq!(c.cmd(&["LTRIM", "l", "1", "-2"]), ok());
    assert_eq!(range(&mut c, "l"), ["one", "2", "3", "4"]);
    assert_eq!(c.cmd(&["LTRIM", "l", "-100", "100"]), ok());
    assert_eq!(c.cmd(&["LLEN", "l"]), int(4));
    assert_eq!(c.cmd(&["LTRIM", "missing", "0", "1"]), ok());
    assert_eq!(c.cmd(&["LTRIM", "l", "2", "1"]), ok());
    assert_eq!(c.cmd(&["EXISTS", "l"]), int(0));
}

#[test]
fn linsert_lrem_lpos() {
    let s = start_target(&[]);
    let mut c = s.raw();
    c.cmd(&["RPUSH", "l", "a", "b", "c", "b"]);
    assert_eq!(c.cmd(&["LINSERT", "l", "BEFORE", "b", "x"]), int(5));
    assert_eq!(c.cmd(&["LINSERT", "l", "after", "b", "y"]), int(6));
    assert_eq!(c.cmd(&["LINSERT", "l", "AFTER", "nope", "y"]), int(-1));
    assert_eq!(c.cmd(&["LINSERT", "missing", "AFTER", "a", "y"]), int(0));
    assert_eq!(c.cmd(&["LINSERT", "l", "middle", "a", "y"]), err(SYNTAX));
    assert_eq!(range(&mut c, "l"), ["a", "x", "b", "y", "c", "b"]);

    assert_eq!(c.cmd(&["LPOS", "l", "b"]), int(2));
    assert_eq!(c.cmd(&["LPOS", "l", "b", "RANK", "2"]), int(5));
    assert_eq!(c.cmd(&["LPOS", "l", "b", "RANK", "-1"]), int(5));
    assert_eq!(c.cmd(&["LPOS", "l", "b", "RANK", "3"]), nil());
    assert_eq!(
        c.cmd(&["LPOS", "l", "b", "COUNT", "0"]),
        arr(vec![int(2), int(5)])
    );
    assert_eq!(
        c.cmd(&["LPOS", "l", "b", "COUNT", "0", "RANK", "-1"]),
        arr(vec![int(5), int(2)])
    );
    assert_eq!(
        c.cmd(&["LPOS", "l", "b", "COUNT", "0", "MAXLEN", "3"]),
        arr(vec![int(2)])
    );
    assert_eq!(c.cmd(&["LPOS", "l", "z", "COUNT", "1"]), arr(vec![]));
    assert_eq!(c.cmd(&["LPOS", "missing", "z", "COUNT", "1"]), arr(vec![]));
    assert_eq!(c.cmd(&["LPOS", "missing", "z"]), nil());
    assert_eq!(
        c.cmd(&["LPOS", "l", "b", "RANK", "0"]),
        err("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")
    );
    assert_eq!(
        c.cmd(&["LPOS", "l", "b", "COUNT", "-1"]),
        err("ERR COUNT can't be negative")
    );
    assert_eq!(
        c.cmd(&["LPOS", "l", "b", "MAXLEN", "-1"]),
        err("ERR MAXLEN can't be negative")
    );
    assert_eq!(c.cmd(&["LPOS", "l", "b", "RANK"]), err(SYNTAX));

    c.cmd(&["RPUSH", "l", "b", "a", "b"]);
    assert_eq!(c.cmd(&["LREM", "l", "-2", "b"]), int(2));
    assert_eq!(range(&mut c, "l"), ["a", "x", "b", "y", "c", "b", "a"]);
    assert_eq!(c.cmd(&["LREM", "l", "1", "a"]), int(1));
    assert_eq!(c.cmd(&["LREM", "l", "0", "b"]), int(2));
    assert_eq!(c.cmd(&["LREM", "l", "0", "nope"]), int(0));
    assert_eq!(c.cmd(&["LREM", "missing", "0", "b"]), int(0));
    assert_eq!(c.cmd(&["LREM", "l", "x", "b"]), err(NOT_INTEGER));
    assert_eq!(range(&mut c, "l"), ["x", "y", "c", "a"]);
}

#[test]
fn lmove_rpoplpush_lmpop() {
    let s = start_target(&[]);
    let mut c = s.raw();
    c.cmd(&["RPUSH", "src", "a", "b", "c"]);
    assert_eq!(c.cmd(&["RPOPLPUSH", "src", "dst"]), bulk("c"));
    assert_eq!(c.cmd(&["LMOVE", "src", "dst", "LEFT", "RIGHT"]), bulk("a"));
    assert_eq!(range(&mut c, "dst"), ["c", "a"]);
    assert_eq!(c.cmd(&["LMOVE", "src", "dst", "left", "up"]), err(SYNTAX));
    assert_eq!(c.cmd(&["LMOVE", "src", "src", "LEFT", "RIGHT"]), bulk("b"));
    // The last element rotated onto its own list: the key (and its deadline) stays.
    c.cmd(&["EXPIRE", "src", "100"]);
    assert_eq!(c.cmd(&["RPOPLPUSH", "src", "src"]), bulk("b"));
    assert!(c.cmd(&["TTL", "src"]).int() > 0);
    assert_eq!(c.cmd(&["LMOVE", "src", "dst", "RIGHT", "LEFT"]), bulk("b"));
    assert_eq!(c.cmd(&["EXISTS", "src"]), int(0));
    assert_eq!(c.cmd(&["RPOPLPUSH", "src", "dst"]), nil());

    c.cmd(&["RPUSH", "a", "1", "2", "3"]);
    assert_eq!(
        c.cmd(&["LMPOP", "2", "none", "a", "RIGHT", "COUNT", "2"]),
        arr(vec![bulk("a"), bulks(&["3", "2"])])
    );
    assert_eq!(
        c.cmd(&["LMPOP", "1", "a", "LEFT"]),
        arr(vec![bulk("a"), bulks(&["1"])])
    );
    assert_eq!(c.cmd_raw(&["LMPOP", "1", "a", "LEFT"]), b"*-1\r\n");
    assert_eq!(
        c.cmd(&["LMPOP", "0", "a", "LEFT"]),
        err("ERR numkeys should be greater than 0")
    );
    assert_eq!(c.cmd(&["LMPOP", "3", "a", "LEFT"]), err(SYNTAX));
    assert_eq!(
        c.cmd(&["LMPOP", "1", "a", "LEFT", "COUNT", "0"]),
        err("ERR count should be greater than 0")
    );
    assert_eq!(
        c.cmd(&["LMPOP", "1", "a", "LEFT", "COUNT", "1", "COUNT", "1"]),
        err(SYNTAX)
    );
    assert_eq!(c.cmd(&["LMPOP", "1", "a"]), wrong_args("lmpop"));
}

#[test]
fn long_lists_across_chunks() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "list-max-listpack-size", "4"]),
        ok()
    );
    let n = 500;
    let mut model: Vec<String> = Vec::new();
    for i in 0..n {
        let v = if i % 50 == 0 {
            "x".repeat(10_000)
        } else {
            i.to_string()
        };
        if i % 3 == 0 {
            c.cmd(&["LPUSH", "l", &v]);
            model.insert(0, v);
        } else {
            c.cmd(&["RPUSH", "l", &v]);
            model.push(v);
        }
    }
    assert_eq!(range(&mut c, "l"), model);
    for i in [0usize, 1, 7, 250, 498, 499] {
        assert_eq!(c.cmd(&["LINDEX", "l", &i.to_string()]), bulk(&model[i]));
        let neg = format!("-{}", n - i);
        assert_eq!(c.cmd(&["LINDEX", "l", &neg]), bulk(&model[i]));
    }
    c.cmd(&["LINSERT", "l", "BEFORE", "101", "ins"]);
    let at = model.iter().position(|v| v == "101").unwrap();
    model.insert(at, "ins".into());
    c.cmd(&["LSET", "l", "10", &"y".repeat(9000)]);
    model[10] = "y".repeat(9000);
    c.cmd(&["LTRIM", "l", "3", "-4"]);
    model = model[3..model.len() - 3].to_vec();
    assert_eq!(range(&mut c, "l"), model);
    assert_eq!(
        c.cmd(&["LRANGE", "l", "100", "110"]).strings(),
        model[100..=110].to_vec()
    );
    c.cmd(&["CONFIG", "SET", "list-max-listpack-size", "-2"]);
}

#[test]
fn blocking_pops_serve_in_order() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let (mut b1, mut b2, mut b3) = (s.raw(), s.raw(), s.raw());
    b1.send_cmd(&["BLPOP", "q1", "q2", "0"]);
    wait_blocked(&mut c, 1);
    b2.send_cmd(&["BRPOP", "q2", "0"]);
    wait_blocked(&mut c, 2);
    b3.send_cmd(&["BLMPOP", "0", "2", "q1", "q2", "RIGHT", "COUNT", "5"]);
    wait_blocked(&mut c, 3);

    assert_eq!(c.cmd(&["RPUSH", "q2", "a", "b", "c", "d"]), int(4));
    assert_eq!(b1.reply(), bulks(&["q2", "a"]));
    assert_eq!(b2.reply(), bulks(&["q2", "d"]));
    assert_eq!(b3.reply(), arr(vec![bulk("q2"), bulks(&["c", "b"])]));
    assert_eq!(c.cmd(&["EXISTS", "q2"]), int(0));

    // Data already there: no blocking.
    c.cmd(&["RPUSH", "q1", "x"]);
    assert_eq!(b1.cmd(&["BLPOP", "q0", "q1", "0"]), bulks(&["q1", "x"]));

    // Timeouts: a null array in RESP2, a null in RESP3, for every blocking list pop.
    assert_eq!(b1.cmd_raw(&["BLPOP", "q1", "0.01"]), b"*-1\r\n");
    assert_eq!(
        b1.cmd_raw(&["BLMOVE", "q1", "d", "LEFT", "LEFT", "0.01"]),
        b"*-1\r\n"
    );
    assert_eq!(
        b1.cmd_raw(&["BLMPOP", "0.01", "1", "q1", "LEFT"]),
        b"*-1\r\n"
    );
    b2.hello3(&[]);
    assert_eq!(b2.cmd_raw(&["BRPOP", "q1", "0.01"]), b"_\r\n");
    assert_eq!(b2.cmd_raw(&["BRPOPLPUSH", "q1", "d", "0.01"]), b"_\r\n");

    assert_eq!(
        b1.cmd(&["BLPOP", "q1", "-1"]),
        err("ERR timeout is negative")
    );
    assert_eq!(
        b1.cmd(&["BLPOP", "q1", "x"]),
        err("ERR timeout is not a float or out of range")
    );
}

#[test]
fn blmove_chains_and_wrong_destinations() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let (mut b1, mut b2) = (s.raw(), s.raw());
    // A chain: l1 -> l2 -> l3.
    b1.send_cmd(&["BLMOVE", "l1", "l2", "RIGHT", "LEFT", "0"]);
    wait_blocked(&mut c, 1);
    b2.send_cmd(&["BLMOVE", "l2", "l3", "LEFT", "RIGHT", "0"]);
    wait_blocked(&mut c, 2);
    c.cmd(&["RPUSH", "l1", "foo"]);
    assert_eq!(b1.reply(), bulk("foo"));
    assert_eq!(b2.reply(), bulk("foo"));
    assert_eq!(c.cmd(&["EXISTS", "l1", "l2"]), int(0));
    assert_eq!(range(&mut c, "l3"), ["foo"]);

    // A circle: each client's push serves the other, and the element comes back.
    b1.send_cmd(&["BRPOPLPUSH", "c1", "c2", "0"]);
    wait_blocked(&mut c, 1);
    b2.send_cmd(&["BRPOPLPUSH", "c2", "c1", "0"]);
    wait_blocked(&mut c, 2);
    c.cmd(&["RPUSH", "c1", "x"]);
    assert_eq!(b1.reply(), bulk("x"));
    assert_eq!(b2.reply(), bulk("x"));
    assert_eq!(range(&mut c, "c1"), ["x"]);

    // The destination became a string while blocked: the client gets the error, nothing moves,
    // and the next client is served.
    c.cmd(&["SET", "bad", "v"]);
    b1.send_cmd(&["BRPOPLPUSH", "src", "bad", "0"]);
    wait_blocked(&mut c, 1);
    b2.send_cmd(&["BRPOPLPUSH", "src", "good", "0"]);
    wait_blocked(&mut c, 2);
    c.cmd(&["LPUSH", "src", "e"]);
    assert_eq!(b1.reply(), err(WRONGTYPE));
    assert_eq!(b2.reply(), bulk("e"));
    assert_eq!(range(&mut c, "good"), ["e"]);
}

#[test]
fn blocking_pops_in_transactions() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let mut b = s.raw();
    c.cmd(&["RPUSH", "x", "a"]);
    c.cmd(&["MULTI"]);
    c.cmd(&["BLPOP", "x", "0"]);
    c.cmd(&["BLPOP", "x", "0"]);
    c.cmd(&["BLMOVE", "x", "y", "LEFT", "LEFT", "0"]);
    c.cmd(&["BLMPOP", "0", "1", "x", "LEFT"]);
    assert_eq!(
        c.cmd_raw(&["EXEC"]),
        b"*4\r\n*2\r\n$1\r\nx\r\n$1\r\na\r\n*-1\r\n$-1\r\n*-1\r\n"
    );

    // Pushes inside a transaction serve a blocked client once it ran, with its last state.
    b.send_cmd(&["BLPOP", "t", "0"]);
    wait_blocked(&mut c, 1);
    c.cmd(&["MULTI"]);
    c.cmd(&["LPUSH", "t", "1"]);
    c.cmd(&["DEL", "t"]);
    c.cmd(&["LPUSH", "t", "2", "3"]);
    c.cmd(&["EXEC"]);
    assert_eq!(b.reply(), bulks(&["t", "3"]));
    assert_eq!(range(&mut c, "t"), ["2"]);
}
