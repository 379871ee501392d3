#![allow(clippy::unwrap_used)]
//! SORT and SORT_RO: numeric and ALPHA order, DESC, LIMIT, BY and GET patterns (strings and hash
//! fields), BY nosort, STORE into a list, and Redis's errors.

use tests::*;

#[test]
fn sort_orders_limits_patterns_and_store() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["RPUSH", "l", "3", "1", "2", "10"]), int(4));
    assert_eq!(c.cmd(&["SORT", "l"]), bulks(&["1", "2", "3", "10"]));
    assert_eq!(
        c.cmd(&["SORT", "l", "DESC", "LIMIT", "1", "2"]),
        bulks(&["3", "2"])
    );
    assert_eq!(
        c.cmd(&["SORT", "l", "ALPHA"]),
        bulks(&["1", "10", "2", "3"])
    );
    assert_eq!(
        c.cmd(&["SORT", "l", "BY", "nosort", "DESC"]),
        bulks(&["10", "2", "1", "3"])
    );
    assert_eq!(c.cmd(&["SORT", "l", "LIMIT", "5", "2"]), bulks(&[]));
    assert_eq!(
        c.cmd(&["MSET", "w_1", "3", "w_2", "2", "w_3", "1", "o_1", "one"]),
        ok()
    );
    assert_eq!(c.cmd(&["HSET", "h_2", "f", "two"]), int(1));
    // A missing weight counts as 0.
    assert_eq!(
        c.cmd(&["SORT", "l", "BY", "w_*"]),
        bulks(&["10", "3", "2", "1"])
    );
    assert_eq!(
        c.cmd(&["SORT", "l", "BY", "w_*", "GET", "#", "GET", "o_*", "GET", "h_*->f"]),
        arr(vec![
            bulk("10"),
            nil(),
            nil(),
            bulk("3"),
            nil(),
            nil(),
            bulk("2"),
            nil(),
            bulk("two"),
            bulk("1"),
            bulk("one"),
            nil(),
        ])
    );
    assert_eq!(c.cmd(&["SORT", "l", "STORE", "dst"]), int(4));
    assert_eq!(
        c.cmd(&["LRANGE", "dst", "0", "-1"]),
        bulks(&["1", "2", "3", "10"])
    );
    assert_eq!(c.cmd(&["SORT", "l", "GET", "o_*", "STORE", "dst"]), int(4));
    assert_eq!(
        c.cmd(&["LRANGE", "dst", "0", "-1"]),
        bulks(&["one", "", "", ""])
    );
    assert_eq!(c.cmd(&["SORT", "missing", "STORE", "dst"]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "dst"]), int(0));
    assert_eq!(
        c.cmd(&["SORT_RO", "l", "DESC"]),
        bulks(&["10", "3", "2", "1"])
    );

    assert_eq!(c.cmd(&["SADD", "s", "5", "-1", "2"]), int(3));
    assert_eq!(c.cmd(&["SORT", "s"]), bulks(&["-1", "2", "5"]));
    assert_eq!(c.cmd(&["ZADD", "z", "1", "b", "2", "a"]), int(2));
    assert_eq!(c.cmd(&["SORT", "z", "ALPHA"]), bulks(&["a", "b"]));
    assert_eq!(c.cmd(&["SORT", "z", "BY", "nosort"]), bulks(&["b", "a"]));

    assert_eq!(c.cmd(&["RPUSH", "words", "a", "1"]), int(2));
    assert_eq!(
        c.cmd(&["SORT", "words"]),
        err("ERR One or more scores can't be converted into double")
    );
    assert_eq!(c.cmd(&["SORT", "l", "LIMIT", "x", "1"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["SORT", "l", "BOGUS"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SORT_RO", "l", "STORE", "d"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SET", "str", "x"]), ok());
    assert_eq!(c.cmd(&["SORT", "str"]), err(WRONGTYPE));
}
