#![allow(clippy::unwrap_used)]
//! Sorted set commands: replies, errors, RESP2 and RESP3 shapes, both encodings (small sets and,
//! with `zset-max-listpack-entries 0`, large ones), blocking pops. Every reply here is what
//! redis-server 7.0 answers (`RINGCACHE_TEST_TARGET=redis` runs the same file against it).

use std::collections::BTreeMap;
use std::time::Duration;

use tests::*;

/// The exact bytes of a reply, as text.
fn raw(c: &mut Raw, args: &[&str]) -> String {
    String::from_utf8_lossy(&c.cmd_raw(args)).into_owned()
}

fn e(s: &str) -> Reply {
    err(s)
}

/// Runs `f` once with small sets and once with every set large.
fn both_encodings(c: &mut Raw, mut f: impl FnMut(&mut Raw)) {
    for entries in ["128", "0"] {
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "zset-max-listpack-entries", entries]),
            ok()
        );
        assert_eq!(c.cmd(&["FLUSHALL"]), ok());
        f(c);
    }
    c.cmd(&["CONFIG", "SET", "zset-max-listpack-entries", "128"]);
}

#[test]
fn zadd_options_and_errors() {
    let s = start_target(&[]);
    let mut c = s.raw();
    both_encodings(&mut c, |c| {
        assert_eq!(
            c.cmd(&["ZADD", "z", "10", "x", "20", "y", "30", "z"]),
            int(3)
        );
        assert_eq!(c.cmd(&["ZADD", "z", "1", "y"]), int(0));
        assert_eq!(c.cmd(&["ZRANGE", "z", "0", "-1"]), bulks(&["y", "x", "z"]));
        assert_eq!(
            c.cmd(&["ZADD", "z", "CH", "1", "y", "11", "x", "5", "n"]),
            int(2)
        );
        assert_eq!(c.cmd(&["ZADD", "z", "XX", "2", "y", "3", "new"]), int(0));
        assert_eq!(c.cmd(&["ZSCORE", "z", "y"]), bulk("2"));
        assert_eq!(c.cmd(&["ZSCORE", "z", "new"]), nil());
        assert_eq!(c.cmd(&["ZADD", "z", "NX", "100", "y", "7", "m"]), int(1));
        assert_eq!(c.cmd(&["ZSCORE", "z", "y"]), bulk("2"));
        assert_eq!(
            c.cmd(&["ZADD", "z", "GT", "CH", "1", "y", "12", "x", "1", "g"]),
            int(2)
        );
        assert_eq!(c.cmd(&["ZSCORE", "z", "y"]), bulk("2"));
        assert_eq!(
            c.cmd(&["ZADD", "z", "LT", "XX", "CH", "0", "y", "99", "x"]),
            int(1)
        );
        assert_eq!(c.cmd(&["ZSCORE", "z", "y"]), bulk("0"));
        assert_eq!(c.cmd(&["ZADD", "z", "INCR", "5", "y"]), bulk("5"));
        assert_eq!(c.cmd(&["ZADD", "z", "GT", "INCR", "-1", "y"]), nil());
        assert_eq!(c.cmd(&["ZADD", "z", "NX", "INCR", "1", "y"]), nil());
        assert_eq!(c.cmd(&["ZADD", "z", "XX", "INCR", "1", "nope"]), nil());
        assert_eq!(c.cmd(&["ZINCRBY", "z", "2.5", "y"]), bulk("7.5"));
        assert_eq!(c.cmd(&["ZINCRBY", "z", "-2.5", "fresh"]), bulk("-2.5"));
        assert_eq!(c.cmd(&["ZADD", "missing", "XX", "1", "a"]), int(0));
        assert_eq!(c.cmd(&["EXISTS", "missing"]), int(0));
        assert_eq!(c.cmd(&["ZCARD", "z"]), int(7));

        assert_eq!(c.cmd(&["ZADD", "z", "1"]), wrong_args("zadd"));
        assert_eq!(c.cmd(&["ZADD", "z", "CH", "1"]), e(SYNTAX));
        assert_eq!(c.cmd(&["ZADD", "z", "XX", "1", "a", "2"]), e(SYNTAX));
        assert_eq!(c.cmd(&["ZADD", "z", "NX"]), wrong_args("zadd"));
        assert_eq!(c.cmd(&["ZADD", "z", "NX", "CH"]), e(SYNTAX));
        assert_eq!(
            c.cmd(&["ZADD", "z", "NX", "XX", "1", "a"]),
            e("ERR XX and NX options at the same time are not compatible")
        );
        for opts in [["GT", "LT"], ["NX", "GT"], ["LT", "NX"]] {
            assert_eq!(
                c.cmd(&["ZADD", "z", opts[0], opts[1], "1", "a"]),
                e("ERR GT, LT, and/or NX options at the same time are not compatible")
            );
        }
        assert_eq!(
            c.cmd(&["ZADD", "z", "INCR", "1", "a", "2", "b"]),
            e("ERR INCR option supports a single increment-element pair")
        );
        // A bad score anywhere adds nothing.
        assert_eq!(
            c.cmd(&["ZADD", "z2", "1", "a", "x", "b"]),
            e("ERR value is not a valid float")
        );
        assert_eq!(c.cmd(&["EXISTS", "z2"]), int(0));
        assert_eq!(
            c.cmd(&["ZINCRBY", "z", "1", "a", "2"]),
            wrong_args("zincrby")
        );
        assert_eq!(c.cmd(&["ZINCRBY", "z", "+inf", "inf"]), bulk("inf"));
        assert_eq!(
            c.cmd(&["ZINCRBY", "z", "-inf", "inf"]),
            e("ERR resulting score is not a number (NaN)")
        );
        assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
        assert_eq!(c.cmd(&["ZADD", "str", "1", "a"]), e(WRONGTYPE));
        assert_eq!(c.cmd(&["ZINCRBY", "str", "1", "a"]), e(WRONGTYPE));
    });
}

#[test]
fn scores_parse_and_print_as_redis() {
    let s = start_target(&[]);
    let mut c = s.raw();
    both_encodings(&mut c, |c| {
        for bad in ["nan", "", " 1", "1 ", "abc", "1e400", "(1", "1.2.3"] {
            assert_eq!(
                c.cmd(&["ZADD", "z", bad, "m"]),
                e("ERR value is not a valid float"),
                "{bad:?}"
            );
        }
        let added = c.cmd(&[
            "ZADD",
            "z",
            "1.1",
            "a",
            "0x10",
            "b",
            "1e20",
            "c",
            "1e-5",
            "d",
            "+inf",
            "e",
            "-inf",
            "f",
            "3.0000000000000004",
            "g",
            "123456789012345678",
            "h",
            "1e-310",
            "i",
        ]);
        assert_eq!(added, int(9));
        let want = [
            ("f", "-inf"),
            ("i", "9.9999999999999694e-311"),
            ("d", "1.0000000000000001e-05"),
            ("a", "1.1000000000000001"),
            ("g", "3.0000000000000004"),
            ("b", "16"),
            ("h", "1.2345678901234568e+17"),
            ("c", "1e+20"),
            ("e", "inf"),
        ];
        let flat: Vec<&str> = want.iter().flat_map(|(m, s)| [*m, *s]).collect();
        assert_eq!(
            c.cmd(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
            bulks(&flat)
        );
        assert_eq!(
            raw(c, &["ZSCORE", "z", "a"]),
            "$18\r\n1.1000000000000001\r\n"
        );
        c.hello3(&[]);
        assert_eq!(raw(c, &["ZSCORE", "z", "a"]), ",1.1000000000000001\r\n");
        assert_eq!(raw(c, &["ZSCORE", "z", "e"]), ",inf\r\n");
        assert_eq!(raw(c, &["ZSCORE", "z", "nope"]), "_\r\n");
        assert_eq!(
            raw(c, &["ZRANGE", "z", "0", "1", "WITHSCORES"]),
            "*2\r\n*2\r\n$1\r\nf\r\n,-inf\r\n*2\r\n$1\r\ni\r\n,9.9999999999999694e-311\r\n"
        );
        c.cmd(&["HELLO", "2"]);
        c.set_proto(Protocol::Resp2);
    });
    // -0: a small set keeps no sign on zero (as a listpack), a large one does.
    c.cmd(&["ZADD", "small", "-0", "a"]);
    assert_eq!(c.cmd(&["ZSCORE", "small", "a"]), bulk("0"));
    c.cmd(&["CONFIG", "SET", "zset-max-listpack-entries", "0"]);
    c.cmd(&["ZADD", "large", "-0", "a", "0", "b"]);
    assert_eq!(c.cmd(&["ZSCORE", "large", "a"]), bulk("-0"));
    assert_eq!(
        c.cmd(&["ZRANGE", "large", "0", "-1", "WITHSCORES"]),
        bulks(&["a", "-0", "b", "0"])
    );
    assert_eq!(
        c.cmd(&["ZRANGEBYSCORE", "large", "0", "0"]),
        bulks(&["a", "b"])
    );
    c.cmd(&["CONFIG", "SET", "zset-max-listpack-entries", "128"]);
}

#[test]
fn zrem_zcard_zscore_zmscore_zrank() {
    let s = start_target(&[]);
    let mut c = s.raw();
    both_encodings(&mut c, |c| {
        c.cmd(&["ZADD", "z", "1", "a", "2", "b", "3", "c", "3", "d"]);
        assert_eq!(c.cmd(&["ZRANK", "z", "a"]), int(0));
        assert_eq!(c.cmd(&["ZRANK", "z", "d"]), int(3));
        assert_eq!(c.cmd(&["ZREVRANK", "z", "d"]), int(0));
        assert_eq!(c.cmd(&["ZREVRANK", "z", "a"]), int(3));
        assert_eq!(c.cmd(&["ZRANK", "z", "x"]), nil());
        assert_eq!(c.cmd(&["ZRANK", "missing", "x"]), nil());
        assert_eq!(
            c.cmd(&["ZMSCORE", "z", "a", "x", "d"]),
            arr(vec![bulk("1"), nil(), bulk("3")])
        );
        assert_eq!(
            c.cmd(&["ZMSCORE", "missing", "a", "b"]),
            arr(vec![nil(), nil()])
        );
        assert_eq!(c.cmd(&["ZMSCORE", "z"]), wrong_args("zmscore"));
        assert_eq!(c.cmd(&["ZREM", "z", "a", "x", "b", "a"]), int(2));
        assert_eq!(c.cmd(&["ZCARD", "z"]), int(2));
        assert_eq!(c.cmd(&["ZCARD", "missing"]), int(0));
        assert_eq!(c.cmd(&["ZREM", "z", "c", "d", "e"]), int(2));
        assert_eq!(c.cmd(&["EXISTS", "z"]), int(0));
        assert_eq!(c.cmd(&["ZREM", "z", "c"]), int(0));
        c.cmd(&["SET", "str", "v"]);
        for cmd in [
            &["ZREM", "str", "a"][..],
            &["ZCARD", "str"],
            &["ZSCORE", "str", "a"],
            &["ZMSCORE", "str", "a"],
            &["ZRANK", "str", "a"],
            &["ZREVRANK", "str", "a"],
        ] {
            assert_eq!(c.cmd(cmd), e(WRONGTYPE), "{cmd:?}");
        }
    });
}

#[test]
fn zrange_family() {
    let s = start_target(&[]);
    let mut c = s.raw();
    both_encodings(&mut c, |c| {
        c.cmd(&[
            "ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e",
        ]);
        let r = |c: &mut Raw, args: &[&str]| c.cmd(args);
        assert_eq!(r(c, &["ZRANGE", "z", "1", "-2"]), bulks(&["b", "c", "d"]));
        assert_eq!(r(c, &["ZRANGE", "z", "-9", "1"]), bulks(&["a", "b"]));
        assert_eq!(r(c, &["ZRANGE", "z", "3", "1"]), bulks(&[]));
        assert_eq!(r(c, &["ZRANGE", "z", "0", "0", "REV"]), bulks(&["e"]));
        assert_eq!(r(c, &["ZREVRANGE", "z", "1", "2"]), bulks(&["d", "c"]));
        assert_eq!(
            r(c, &["ZREVRANGE", "z", "0", "1", "WITHSCORES"]),
            bulks(&["e", "5", "d", "4"])
        );
        assert_eq!(
            r(c, &["ZRANGE", "z", "(1", "3", "BYSCORE"]),
            bulks(&["b", "c"])
        );
        assert_eq!(
            r(
                c,
                &["ZRANGE", "z", "+inf", "(3", "BYSCORE", "REV", "LIMIT", "1", "5"]
            ),
            bulks(&["d"])
        );
        assert_eq!(
            r(
                c,
                &[
                    "ZRANGEBYSCORE",
                    "z",
                    "-inf",
                    "+inf",
                    "LIMIT",
                    "1",
                    "2",
                    "WITHSCORES"
                ]
            ),
            bulks(&["b", "2", "c", "3"])
        );
        assert_eq!(
            r(c, &["ZRANGEBYSCORE", "z", "2", "4", "LIMIT", "0", "-1"]),
            bulks(&["b", "c", "d"])
        );
        assert_eq!(
            r(c, &["ZRANGEBYSCORE", "z", "2", "4", "LIMIT", "-1", "2"]),
            bulks(&[])
        );
        assert_eq!(r(c, &["ZRANGEBYSCORE", "z", "4", "2"]), bulks(&[]));
        assert_eq!(r(c, &["ZRANGEBYSCORE", "z", "(2", "(2"]), bulks(&[]));
        assert_eq!(
            r(c, &["ZREVRANGEBYSCORE", "z", "4", "(2"]),
            bulks(&["d", "c"])
        );
        // LIMIT with a rank range is refused, except that Redis lets `LIMIT x -1` pass.
        assert_eq!(
            r(c, &["ZRANGE", "z", "0", "-1", "LIMIT", "1", "1"]),
            e("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")
        );
        assert_eq!(
            r(c, &["ZRANGE", "z", "0", "1", "LIMIT", "3", "-1"]),
            bulks(&["a", "b"])
        );
        assert_eq!(r(c, &["ZREVRANGE", "z", "0", "-1", "BYSCORE"]), e(SYNTAX));
        assert_eq!(r(c, &["ZRANGEBYSCORE", "z", "0", "-1", "REV"]), e(SYNTAX));
        assert_eq!(r(c, &["ZRANGE", "z", "0", "-1", "BOGUS"]), e(SYNTAX));
        assert_eq!(r(c, &["ZRANGE", "z", "0", "-1", "LIMIT", "1"]), e(SYNTAX));
        assert_eq!(r(c, &["ZRANGE", "z", "x", "1"]), e(NOT_INTEGER));
        assert_eq!(
            r(c, &["ZRANGE", "z", "0", "x", "BYSCORE"]),
            e("ERR min or max is not a float")
        );
        assert_eq!(
            r(c, &["ZRANGE", "z", "(nan", "1", "BYSCORE"]),
            e("ERR min or max is not a float")
        );
        assert_eq!(r(c, &["ZRANGE", "missing", "0", "-1"]), bulks(&[]));

        c.cmd(&["ZADD", "l", "0", "a", "0", "b", "0", "c", "0", "d"]);
        assert_eq!(
            r(c, &["ZRANGE", "l", "[b", "(d", "BYLEX"]),
            bulks(&["b", "c"])
        );
        assert_eq!(
            r(c, &["ZRANGE", "l", "+", "(b", "BYLEX", "REV"]),
            bulks(&["d", "c"])
        );
        assert_eq!(
            r(c, &["ZRANGEBYLEX", "l", "-", "+", "LIMIT", "1", "2"]),
            bulks(&["b", "c"])
        );
        assert_eq!(
            r(c, &["ZREVRANGEBYLEX", "l", "[c", "-"]),
            bulks(&["c", "b", "a"])
        );
        assert_eq!(r(c, &["ZRANGEBYLEX", "l", "+", "-"]), bulks(&[]));
        assert_eq!(
            r(c, &["ZRANGEBYLEX", "l", "a", "+"]),
            e("ERR min or max not valid string range item")
        );
        assert_eq!(
            r(c, &["ZRANGE", "l", "-", "+", "BYLEX", "WITHSCORES"]),
            e("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
        );
        c.cmd(&["SET", "str", "v"]);
        assert_eq!(r(c, &["ZRANGE", "str", "0", "-1"]), e(WRONGTYPE));

        c.hello3(&[]);
        assert_eq!(
            raw(c, &["ZRANGE", "z", "0", "1", "WITHSCORES"]),
            "*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,2\r\n"
        );
        assert_eq!(
            raw(c, &["ZRANGE", "z", "0", "1"]),
            "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        c.cmd(&["HELLO", "2"]);
        c.set_proto(Protocol::Resp2);
    });
}

#[test]
fn zrangestore_and_zremrange() {
    let s = start_target(&[]);
    let mut c = s.raw();
    both_encodings(&mut c, |c| {
        c.cmd(&["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d"]);
        assert_eq!(c.cmd(&["ZRANGESTORE", "dst", "z", "1", "2"]), int(2));
        assert_eq!(
            c.cmd(&["ZRANGE", "dst", "0", "-1", "WITHSCORES"]),
            bulks(&["b", "2", "c", "3"])
        );
        assert_eq!(
            c.cmd(&[
                "ZRANGESTORE",
                "dst",
                "z",
                "5",
                "0",
                "BYSCORE",
                "REV",
                "LIMIT",
                "0",
                "2"
            ]),
            int(2)
        );
        assert_eq!(c.cmd(&["ZRANGE", "dst", "0", "-1"]), bulks(&["c", "d"]));
        c.cmd(&["SET", "str", "v"]);
        assert_eq!(
            c.cmd(&["ZRANGESTORE", "dst", "str", "0", "-1"]),
            e(WRONGTYPE)
        );
        assert_eq!(c.cmd(&["ZRANGE", "dst", "0", "-1"]), bulks(&["c", "d"]));
        // An empty result deletes the destination, whatever it held.
        assert_eq!(c.cmd(&["ZRANGESTORE", "str", "z", "7", "9"]), int(0));
        assert_eq!(c.cmd(&["EXISTS", "str"]), int(0));
        assert_eq!(c.cmd(&["ZRANGESTORE", "dst", "missing", "0", "-1"]), int(0));
        assert_eq!(c.cmd(&["EXISTS", "dst"]), int(0));
        assert_eq!(
            c.cmd(&["ZRANGESTORE", "dst", "z", "0", "-1", "WITHSCORES"]),
            e(SYNTAX)
        );

        assert_eq!(c.cmd(&["ZREMRANGEBYRANK", "z", "1", "-2"]), int(2));
        assert_eq!(c.cmd(&["ZRANGE", "z", "0", "-1"]), bulks(&["a", "d"]));
        assert_eq!(c.cmd(&["ZREMRANGEBYRANK", "z", "5", "9"]), int(0));
        assert_eq!(c.cmd(&["ZREMRANGEBYSCORE", "z", "(1", "+inf"]), int(1));
        assert_eq!(
            c.cmd(&["ZREMRANGEBYSCORE", "z", "x", "1"]),
            e("ERR min or max is not a float")
        );
        assert_eq!(c.cmd(&["ZREMRANGEBYRANK", "z", "0", "x"]), e(NOT_INTEGER));
        assert_eq!(c.cmd(&["ZREMRANGEBYSCORE", "z", "-inf", "1"]), int(1));
        assert_eq!(c.cmd(&["EXISTS", "z"]), int(0));
        c.cmd(&["ZADD", "l", "0", "a", "0", "b", "0", "c", "0", "d"]);
        assert_eq!(c.cmd(&["ZREMRANGEBYLEX", "l", "(a", "[c"]), int(2));
        assert_eq!(c.cmd(&["ZRANGE", "l", "0", "-1"]), bulks(&["a", "d"]));
        assert_eq!(
            c.cmd(&["ZREMRANGEBYLEX", "l", "a", "c"]),
            e("ERR min or max not valid string range item")
        );
        assert_eq!(c.cmd(&["ZREMRANGEBYLEX", "missing", "-", "+"]), int(0));
    });
}

#[test]
fn zcount_and_zlexcount() {
    let s = start_target(&[]);
    let mut c = s.raw();
    both_encodings(&mut c, |c| {
        c.cmd(&[
            "ZADD", "z", "-inf", "a", "1", "b", "2", "c", "3", "d", "+inf", "e",
        ]);
        assert_eq!(c.cmd(&["ZCOUNT", "z", "-inf", "+inf"]), int(5));
        assert_eq!(c.cmd(&["ZCOUNT", "z", "(1", "3"]), int(2));
        assert_eq!(c.cmd(&["ZCOUNT", "z", "(-inf", "(inf"]), int(3));
        assert_eq!(c.cmd(&["ZCOUNT", "z", "3", "1"]), int(0));
        // strtod's rules: an empty bound is 0, leading spaces are fine, overflow is infinity.
        assert_eq!(c.cmd(&["ZCOUNT", "z", "", "2"]), int(2));
        assert_eq!(c.cmd(&["ZCOUNT", "z", " 1", "1e400"]), int(4));
        assert_eq!(c.cmd(&["ZCOUNT", "z", "0x1", "0x2"]), int(2));
        assert_eq!(
            c.cmd(&["ZCOUNT", "z", "nan", "1"]),
            e("ERR min or max is not a float")
        );
        assert_eq!(
            c.cmd(&["ZCOUNT", "z", "1", "2x"]),
            e("ERR min or max is not a float")
        );
        assert_eq!(c.cmd(&["ZCOUNT", "missing", "1", "2"]), int(0));
        c.cmd(&["ZADD", "l", "0", "a", "0", "b", "0", "c"]);
        assert_eq!(c.cmd(&["ZLEXCOUNT", "l", "-", "+"]), int(3));
        assert_eq!(c.cmd(&["ZLEXCOUNT", "l", "(a", "[c"]), int(2));
        assert_eq!(c.cmd(&["ZLEXCOUNT", "l", "[c", "(a"]), int(0));
        assert_eq!(c.cmd(&["ZLEXCOUNT", "l", "-", "-"]), int(0));
        assert_eq!(
            c.cmd(&["ZLEXCOUNT", "l", "", "+"]),
            e("ERR min or max not valid string range item")
        );
        assert_eq!(
            c.cmd(&["ZLEXCOUNT", "l", "-", "+x"]),
            e("ERR min or max not valid string range item")
        );
    });
}

#[test]
fn union_inter_diff() {
    let s = start_target(&[]);
    let mut c = s.raw();
    both_encodings(&mut c, |c| {
        c.cmd(&["ZADD", "a", "1", "x", "2", "y", "3", "z"]);
        c.cmd(&["ZADD", "b", "10", "y", "20", "z", "30", "w"]);
        assert_eq!(
            c.cmd(&["ZUNION", "2", "a", "b", "WITHSCORES"]),
            bulks(&["x", "1", "y", "12", "z", "23", "w", "30"])
        );
        assert_eq!(
            c.cmd(&[
                "ZUNION",
                "2",
                "a",
                "b",
                "WEIGHTS",
                "2",
                "-1",
                "AGGREGATE",
                "MAX",
                "WITHSCORES"
            ]),
            bulks(&["w", "-30", "x", "2", "y", "4", "z", "6"])
        );
        assert_eq!(
            c.cmd(&["ZINTER", "2", "a", "b", "AGGREGATE", "min", "WITHSCORES"]),
            bulks(&["y", "2", "z", "3"])
        );
        assert_eq!(c.cmd(&["ZINTER", "3", "a", "b", "missing"]), bulks(&[]));
        assert_eq!(
            c.cmd(&["ZINTER", "2", "a", "a", "WITHSCORES"]),
            bulks(&["x", "2", "y", "4", "z", "6"])
        );
        assert_eq!(c.cmd(&["ZDIFF", "2", "a", "b"]), bulks(&["x"]));
        assert_eq!(c.cmd(&["ZDIFF", "2", "a", "a"]), bulks(&[]));
        assert_eq!(
            c.cmd(&["ZDIFF", "1", "b", "WITHSCORES"]),
            bulks(&["y", "10", "z", "20", "w", "30"])
        );
        assert_eq!(c.cmd(&["ZINTERCARD", "2", "a", "b"]), int(2));
        assert_eq!(c.cmd(&["ZINTERCARD", "2", "a", "b", "LIMIT", "1"]), int(1));
        assert_eq!(
            c.cmd(&["ZINTERCARD", "2", "a", "b", "LIMIT", "-1"]),
            e("ERR LIMIT can't be negative")
        );
        // inf * 0 is taken as 0; inf + -inf sums to 0.
        c.cmd(&["ZADD", "inf", "inf", "x", "-inf", "y"]);
        c.cmd(&["ZADD", "ninf", "-inf", "x", "inf", "y"]);
        assert_eq!(
            c.cmd(&["ZUNION", "2", "inf", "ninf", "WITHSCORES"]),
            bulks(&["x", "0", "y", "0"])
        );
        assert_eq!(
            c.cmd(&["ZUNION", "1", "inf", "WEIGHTS", "0", "WITHSCORES"]),
            bulks(&["x", "0", "y", "0"])
        );

        assert_eq!(c.cmd(&["ZUNIONSTORE", "dst", "2", "a", "b"]), int(4));
        assert_eq!(
            c.cmd(&["ZRANGE", "dst", "0", "-1"]),
            bulks(&["x", "y", "z", "w"])
        );
        assert_eq!(
            c.cmd(&["ZINTERSTORE", "dst", "2", "a", "b", "WEIGHTS", "1", "0.5"]),
            int(2)
        );
        assert_eq!(c.cmd(&["ZSCORE", "dst", "z"]), bulk("13"));
        assert_eq!(c.cmd(&["ZDIFFSTORE", "dst", "2", "a", "a"]), int(0));
        assert_eq!(c.cmd(&["EXISTS", "dst"]), int(0));

        assert_eq!(
            c.cmd(&["ZUNION", "0", "a"]),
            e("ERR at least 1 input key is needed for 'zunion' command")
        );
        assert_eq!(
            c.cmd(&["ZINTERSTORE", "d", "0", "a"]),
            e("ERR at least 1 input key is needed for 'zinterstore' command")
        );
        assert_eq!(
            c.cmd(&["ZINTERCARD", "0", "a"]),
            e("ERR at least 1 input key is needed for 'zintercard' command")
        );
        assert_eq!(c.cmd(&["ZUNION", "x", "a"]), e(NOT_INTEGER));
        assert_eq!(c.cmd(&["ZUNION", "3", "a", "b"]), e(SYNTAX));
        assert_eq!(c.cmd(&["ZUNION", "2", "a", "b", "WEIGHTS", "1"]), e(SYNTAX));
        assert_eq!(
            c.cmd(&["ZUNION", "2", "a", "b", "WEIGHTS", "1", "nan"]),
            e("ERR weight value is not a float")
        );
        assert_eq!(
            c.cmd(&["ZUNION", "2", "a", "b", "AGGREGATE", "avg"]),
            e(SYNTAX)
        );
        assert_eq!(
            c.cmd(&["ZUNIONSTORE", "d", "2", "a", "b", "WITHSCORES"]),
            e(SYNTAX)
        );
        assert_eq!(
            c.cmd(&["ZDIFF", "2", "a", "b", "WEIGHTS", "1", "1"]),
            e(SYNTAX)
        );
        assert_eq!(c.cmd(&["ZINTERCARD", "1", "a", "WITHSCORES"]), e(SYNTAX));
        c.cmd(&["SET", "str", "v"]);
        // The type check comes before the options are read.
        assert_eq!(c.cmd(&["ZUNION", "2", "a", "str", "BOGUS"]), e(WRONGTYPE));
        assert_eq!(c.cmd(&["ZINTERCARD", "2", "str", "a"]), e(WRONGTYPE));

        c.hello3(&[]);
        assert_eq!(
            raw(c, &["ZINTER", "2", "a", "b", "WITHSCORES"]),
            "*2\r\n*2\r\n$1\r\ny\r\n,12\r\n*2\r\n$1\r\nz\r\n,23\r\n"
        );
        c.cmd(&["HELLO", "2"]);
        c.set_proto(Protocol::Resp2);

        // Sets take part with every member scoring 1 (when this server has sets).
        if c.cmd(&["SADD", "s", "x", "q"]) == int(2) {
            assert_eq!(
                c.cmd(&["ZUNION", "2", "a", "s", "WEIGHTS", "1", "5", "WITHSCORES"]),
                bulks(&["y", "2", "z", "3", "q", "5", "x", "6"])
            );
            assert_eq!(c.cmd(&["ZINTER", "2", "s", "a"]), bulks(&["x"]));
            assert_eq!(c.cmd(&["ZDIFF", "2", "s", "a"]), bulks(&["q"]));
        }
    });
}

#[test]
fn pops() {
    let s = start_target(&[]);
    let mut c = s.raw();
    both_encodings(&mut c, |c| {
        c.cmd(&[
            "ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e",
        ]);
        assert_eq!(c.cmd(&["ZPOPMIN", "z"]), bulks(&["a", "1"]));
        assert_eq!(c.cmd(&["ZPOPMAX", "z", "2"]), bulks(&["e", "5", "d", "4"]));
        assert_eq!(c.cmd(&["ZPOPMIN", "z", "0"]), bulks(&[]));
        assert_eq!(c.cmd(&["ZPOPMIN", "missing"]), bulks(&[]));
        assert_eq!(c.cmd(&["ZPOPMIN", "missing", "3"]), bulks(&[]));
        assert_eq!(
            c.cmd(&["ZPOPMIN", "z", "-1"]),
            e("ERR value is out of range, must be positive")
        );
        assert_eq!(c.cmd(&["ZPOPMIN", "z", "1", "2"]), e(SYNTAX));
        assert_eq!(
            c.cmd(&["ZMPOP", "2", "missing", "z", "MAX", "COUNT", "10"]),
            arr(vec![
                bulk("z"),
                arr(vec![bulks(&["c", "3"]), bulks(&["b", "2"])])
            ])
        );
        assert_eq!(c.cmd(&["EXISTS", "z"]), int(0));
        assert_eq!(raw(c, &["ZMPOP", "1", "z", "MIN"]), "*-1\r\n");
        assert_eq!(
            c.cmd(&["ZMPOP", "0", "z", "MIN"]),
            e("ERR numkeys should be greater than 0")
        );
        assert_eq!(
            c.cmd(&["ZMPOP", "1", "z", "MIN", "COUNT", "0"]),
            e("ERR count should be greater than 0")
        );
        assert_eq!(c.cmd(&["ZMPOP", "1", "z", "LEFT"]), e(SYNTAX));
        assert_eq!(c.cmd(&["ZMPOP", "5", "z", "MIN"]), e(SYNTAX));
        assert_eq!(
            c.cmd(&["ZMPOP", "1", "z", "MIN", "COUNT", "1", "COUNT", "1"]),
            e(SYNTAX)
        );
        c.cmd(&["SET", "str", "v"]);
        assert_eq!(c.cmd(&["ZPOPMIN", "str", "0"]), e(WRONGTYPE));
        assert_eq!(
            c.cmd(&["ZMPOP", "2", "missing", "str", "MIN"]),
            e(WRONGTYPE)
        );

        c.cmd(&["ZADD", "z", "1", "a", "2", "b"]);
        c.hello3(&[]);
        assert_eq!(raw(c, &["ZPOPMIN", "z"]), "*2\r\n$1\r\na\r\n,1\r\n");
        c.cmd(&["ZADD", "z", "1", "a"]);
        assert_eq!(
            raw(c, &["ZPOPMAX", "z", "1"]),
            "*1\r\n*2\r\n$1\r\nb\r\n,2\r\n"
        );
        assert_eq!(
            raw(c, &["ZMPOP", "1", "z", "MIN"]),
            "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\na\r\n,1\r\n"
        );
        assert_eq!(raw(c, &["ZMPOP", "1", "z", "MIN"]), "_\r\n");
        c.cmd(&["HELLO", "2"]);
        c.set_proto(Protocol::Resp2);
    });
}

#[test]
fn blocking_pops() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let mut w = s.raw();
    // Served at once when there is something.
    c.cmd(&["ZADD", "z", "1", "a", "2", "b"]);
    assert_eq!(
        c.cmd(&["BZPOPMIN", "none", "z", "0"]),
        bulks(&["z", "a", "1"])
    );
    assert_eq!(
        c.cmd(&["BZMPOP", "0", "2", "none", "z", "MAX", "COUNT", "5"]),
        arr(vec![bulk("z"), arr(vec![bulks(&["b", "2"])])])
    );
    // Waits, then a write to the key serves it (whichever arrives first, the reply is this).
    w.send_cmd(&["BZPOPMAX", "k1", "k2", "0"]);
    assert_eq!(c.cmd(&["ZADD", "k2", "1", "x", "3", "y"]), int(2));
    assert_eq!(w.reply(), bulks(&["k2", "y", "3"]));
    w.send_cmd(&["BZMPOP", "0", "1", "k3", "MIN", "COUNT", "2"]);
    assert_eq!(c.cmd(&["ZADD", "k3", "5", "p", "6", "q", "7", "r"]), int(3));
    assert_eq!(
        w.reply(),
        arr(vec![
            bulk("k3"),
            arr(vec![bulks(&["p", "5"]), bulks(&["q", "6"])])
        ])
    );
    assert_eq!(c.cmd(&["ZCARD", "k3"]), int(1));
    // A timeout answers a null array.
    assert_eq!(
        String::from_utf8_lossy(&w.cmd_raw(&["BZPOPMIN", "empty", "0.01"])),
        "*-1\r\n"
    );
    // Inside MULTI a blocking pop on nothing answers at once.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["BZPOPMIN", "empty", "0"]), status("QUEUED"));
    assert_eq!(raw(&mut c, &["EXEC"]), "*1\r\n*-1\r\n");
    // Errors come before blocking.
    c.cmd(&["SET", "str", "v"]);
    assert_eq!(c.cmd(&["BZPOPMIN", "empty", "str", "0"]), e(WRONGTYPE));
    assert_eq!(
        c.cmd(&["BZPOPMIN", "z", "-1"]),
        e("ERR timeout is negative")
    );
    assert_eq!(
        c.cmd(&["BZPOPMIN", "z", "x"]),
        e("ERR timeout is not a float or out of range")
    );
    assert_eq!(
        c.cmd(&["BZMPOP", "0", "0", "z", "MIN"]),
        e("ERR numkeys should be greater than 0")
    );
    assert_eq!(
        c.cmd(&["BZMPOP", "x", "1", "z", "MIN"]),
        e("ERR timeout is not a float or out of range")
    );
    assert_eq!(c.cmd(&["BZMPOP", "0", "1", "z", "UP"]), e(SYNTAX));
    // A key turning into another type does not serve a waiting client; a sorted set does.
    w.send_cmd(&["BZPOPMIN", "later", "0"]);
    assert_eventually!(
        info(&mut c, "clients")["blocked_clients"] == "1",
        Duration::from_secs(5)
    );
    c.cmd(&["SET", "later", "v"]);
    c.cmd(&["DEL", "later"]);
    c.cmd(&["ZADD", "later", "9", "m"]);
    assert_eq!(w.reply(), bulks(&["later", "m", "9"]));
}

#[test]
fn zrandmember_and_zscan() {
    let s = start_target(&[]);
    let mut c = s.raw();
    both_encodings(&mut c, |c| {
        c.cmd(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]);
        let one = c.cmd(&["ZRANDMEMBER", "z"]).text();
        assert!(["a", "b", "c"].contains(&one.as_str()));
        assert_eq!(c.cmd(&["ZRANDMEMBER", "missing"]), nil());
        assert_eq!(c.cmd(&["ZRANDMEMBER", "missing", "5"]), bulks(&[]));
        assert_eq!(c.cmd(&["ZRANDMEMBER", "z", "0"]), bulks(&[]));
        // All of them (highest first, as Redis walks them).
        assert_eq!(
            c.cmd(&["ZRANDMEMBER", "z", "10", "WITHSCORES"]),
            bulks(&["c", "3", "b", "2", "a", "1"])
        );
        let two = c.cmd(&["ZRANDMEMBER", "z", "2"]).strings();
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1]);
        let many = c.cmd(&["ZRANDMEMBER", "z", "-20", "WITHSCORES"]).strings();
        assert_eq!(many.len(), 40);
        for p in many.chunks(2) {
            let want = match p[0].as_str() {
                "a" => "1",
                "b" => "2",
                _ => "3",
            };
            assert_eq!(p[1], want);
        }
        assert_eq!(c.cmd(&["ZRANDMEMBER", "z", "1", "BAD"]), e(SYNTAX));
        assert_eq!(c.cmd(&["ZRANDMEMBER", "z", "x"]), e(NOT_INTEGER));
        assert_eq!(
            c.cmd(&["ZRANDMEMBER", "z", "-9223372036854775808"]),
            e("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        );
        assert_eq!(
            c.cmd(&["ZRANDMEMBER", "z", "-9223372036854770000", "WITHSCORES"]),
            e("ERR value is out of range")
        );
        c.hello3(&[]);
        let r = c.cmd(&["ZRANDMEMBER", "z", "2", "WITHSCORES"]);
        assert_eq!(r.items().len(), 2);
        assert_eq!(r.items()[0].items().len(), 2);
        c.cmd(&["HELLO", "2"]);
        c.set_proto(Protocol::Resp2);

        let mut members = Vec::new();
        for i in 0..300 {
            members.push(format!("{}", i % 17));
            members.push(format!("m{i}"));
        }
        let mut args = vec!["ZADD", "big"];
        args.extend(members.iter().map(String::as_str));
        assert_eq!(c.cmd(&args), int(300));
        let mut seen = BTreeMap::new();
        let mut cursor = "0".to_string();
        loop {
            let r = c.cmd(&["ZSCAN", "big", &cursor, "COUNT", "20"]);
            let items = r.items();
            cursor = items[0].text();
            for p in items[1].strings().chunks(2) {
                seen.insert(p[0].clone(), p[1].clone());
            }
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 300);
        assert_eq!(seen["m20"], "3");
        assert_eq!(
            c.cmd(&["ZSCAN", "z", "0", "MATCH", "b*"]),
            arr(vec![bulk("0"), bulks(&["b", "2"])])
        );
        assert_eq!(
            c.cmd(&["ZSCAN", "missing", "0"]),
            arr(vec![bulk("0"), bulks(&[])])
        );
        assert_eq!(c.cmd(&["ZSCAN", "z", "x"]), e("ERR invalid cursor"));
    });
}

/// A large set against a model: ranks, ranges and removals stay right through conversions.
#[test]
fn large_sets_match_a_model() {
    let s = start_target(&[]);
    let mut c = s.raw();
    c.cmd(&["CONFIG", "SET", "zset-max-listpack-entries", "16"]);
    let mut model: BTreeMap<String, i64> = BTreeMap::new();
    let mut x: u64 = 12345;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..40 {
        let mut args = vec!["ZADD".to_string(), "z".to_string()];
        for _ in 0..50 {
            let m = format!("m{}", next() % 3000);
            let score = (next() % 200) as i64 - 100;
            args.push(score.to_string());
            args.push(m.clone());
            model.insert(m, score);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        c.cmd(&refs);
        for _ in 0..5 {
            let m = format!("m{}", next() % 3000);
            let removed = c.cmd(&["ZREM", "z", &m]);
            assert_eq!(removed, int(i64::from(model.remove(&m).is_some())));
        }
    }
    let mut sorted: Vec<(i64, String)> = model.iter().map(|(m, s)| (*s, m.clone())).collect();
    sorted.sort();
    assert_eq!(c.cmd(&["ZCARD", "z"]), int(sorted.len() as i64));
    let all = c.cmd(&["ZRANGE", "z", "0", "-1"]).strings();
    let want: Vec<String> = sorted.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(all, want);
    for i in (0..sorted.len()).step_by(97) {
        assert_eq!(c.cmd(&["ZRANK", "z", &sorted[i].1]), int(i as i64));
        let got = c
            .cmd(&["ZRANGE", "z", &i.to_string(), &(i + 4).to_string()])
            .strings();
        assert_eq!(got, want[i..(i + 5).min(want.len())].to_vec());
    }
    let in_range = sorted
        .iter()
        .filter(|(s, _)| (-10..=10).contains(s))
        .count();
    assert_eq!(c.cmd(&["ZCOUNT", "z", "-10", "10"]), int(in_range as i64));
    assert_eq!(
        c.cmd(&["ZREMRANGEBYSCORE", "z", "-10", "10"]),
        int(in_range as i64)
    );
    assert_eq!(
        c.cmd(&["ZCARD", "z"]),
        int((sorted.len() - in_range) as i64)
    );
    c.cmd(&["CONFIG", "SET", "zset-max-listpack-entries", "128"]);
}
