#![allow(clippy::unwrap_used)]
//! String commands: GET/SET and its options, SETNX/SETEX/PSETEX, GETEX, GETDEL, GETSET, MGET,
//! MSET(NX), APPEND, STRLEN, GETRANGE, SETRANGE, INCR family, INCRBYFLOAT, WRONGTYPE.

use tests::*;

#[test]
fn get_and_set_basics() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd_raw(&["GET", "missing"]), b"$-1\r\n");
    assert_eq!(c.cmd_raw(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(c.cmd_raw(&["GET", "k"]), b"$1\r\nv\r\n");
    assert_eq!(c.cmd(&["SET", "k", ""]), ok());
    assert_eq!(c.cmd_raw(&["GET", "k"]), b"$0\r\n\r\n");
    let binary: &[u8] = b"\x00\x01\r\n\xff binary";
    assert_eq!(c.cmd(&[&b"SET"[..], b"bin", binary]), ok());
    assert_eq!(c.cmd(&["GET", "bin"]), bulk(binary));
    let big = "x".repeat(1 << 20);
    assert_eq!(c.cmd(&["SET", "big", &big]), ok());
    assert_eq!(c.cmd(&["GET", "big"]), bulk(&big));
    assert_eq!(c.cmd(&["SET", "k"]), wrong_args("set"));
    assert_eq!(c.cmd(&["GET"]), wrong_args("get"));
    assert_eq!(c.cmd(&["GET", "a", "b"]), wrong_args("get"));
}

#[test]
fn set_expire_options() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "k", "v", "EX", "100"]), ok());
    assert!((95..=100).contains(&ttl(&mut c, "k")));
    assert_eq!(c.cmd(&["set", "k", "v", "px", "100000"]), ok());
    assert!((95_000..=100_000).contains(&pttl(&mut c, "k")));
    let at = now_ms() / 1000 + 200;
    assert_eq!(c.cmd(&["SET", "k", "v", "EXAT", &at.to_string()]), ok());
    assert_eq!(c.cmd(&["EXPIRETIME", "k"]), int(at));
    let pat = now_ms() + 300_000;
    assert_eq!(c.cmd(&["SET", "k", "v", "PXAT", &pat.to_string()]), ok());
    assert_eq!(c.cmd(&["PEXPIRETIME", "k"]), int(pat));
    // KEEPTTL keeps it; a plain SET clears it.
    assert_eq!(c.cmd(&["SET", "k", "v2", "KEEPTTL"]), ok());
    assert_eq!(c.cmd(&["PEXPIRETIME", "k"]), int(pat));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v2"));
    assert_eq!(c.cmd(&["SET", "k", "v3"]), ok());
    assert_eq!(ttl(&mut c, "k"), -1);
    // An absolute time in the past: OK, and the key is gone.
    assert_eq!(c.cmd(&["SET", "k", "v", "PXAT", "1"]), ok());
    assert_eq!(c.cmd(&["GET", "k"]), nil());
    assert_eq!(c.cmd(&["SET", "k", "v", "EXAT", "1"]), ok());
    assert_eq!(c.cmd(&["EXISTS", "k"]), int(0));

    let invalid = err("ERR invalid expire time in 'set' command");
    for (opt, val) in [
        ("EX", "0"),
        ("EX", "-5"),
        ("PX", "0"),
        ("PX", "-1"),
        ("EXAT", "0"),
        ("PXAT", "-1"),
    ] {
        assert_eq!(c.cmd(&["SET", "k", "v", opt, val]), invalid, "{opt} {val}");
    }
    assert_eq!(
        c.cmd(&["SET", "k", "v", "EX", "9223372036854775807"]),
        invalid
    );
    assert_eq!(c.cmd(&["SET", "k", "v", "EX", "abc"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["SET", "k", "v", "PX", "1.5"]), err(NOT_INTEGER));
    for opts in [
        &["EX", "10", "PX", "10"][..],
        &["PX", "10", "EX", "10"],
        &["EX", "10", "EXAT", "10"],
        &["NX", "XX"],
        &["XX", "NX"],
        &["KEEPTTL", "EX", "10"],
        &["EX", "10", "KEEPTTL"],
        &["PERSIST"],
        &["EX"],
        &["FOO"],
        &["EX", "10", "10"],
        &["GET", "GET", "FOO"],
    ] {
        let mut args = vec!["SET", "k", "v"];
        args.extend_from_slice(opts);
        assert_eq!(c.cmd(&args), err(SYNTAX), "{opts:?}");
    }
    assert_eq!(
        c.cmd(&["EXISTS", "k"]),
        int(0),
        "failed SETs must not write"
    );
}

#[test]
fn set_nx_xx_get() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd_raw(&["SET", "k", "v", "XX"]), b"$-1\r\n");
    assert_eq!(c.cmd(&["EXISTS", "k"]), int(0));
    assert_eq!(c.cmd(&["SET", "k", "v", "NX"]), ok());
    assert_eq!(c.cmd_raw(&["SET", "k", "other", "NX"]), b"$-1\r\n");
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
    assert_eq!(c.cmd(&["SET", "k", "v2", "XX", "EX", "100"]), ok());
    assert!(ttl(&mut c, "k") > 0);
    // GET returns the old value (nil when there was none).
    assert_eq!(c.cmd(&["SET", "k", "v3", "GET"]), bulk("v2"));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v3"));
    assert_eq!(c.cmd(&["SET", "new", "n", "GET"]), nil());
    assert_eq!(c.cmd(&["GET", "new"]), bulk("n"));
    // NX GET on an existing key: old value, no write.
    assert_eq!(c.cmd(&["SET", "k", "v4", "NX", "GET"]), bulk("v3"));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v3"));
    assert_eq!(c.cmd(&["SET", "nx", "1", "NX", "GET"]), nil());
    assert_eq!(c.cmd(&["GET", "nx"]), bulk("1"));
    assert_eq!(c.cmd(&["SET", "xx", "1", "XX", "GET"]), nil());
    assert_eq!(c.cmd(&["EXISTS", "xx"]), int(0));
    assert_eq!(c.cmd(&["SET", "k", "v5", "GET", "EX", "50"]), bulk("v3"));
    assert!((45..=50).contains(&ttl(&mut c, "k")));
    // GET on a hash is a type error and writes nothing.
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["SET", "h", "v", "GET"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["TYPE", "h"]), status("hash"));
    // A plain SET replaces a hash.
    assert_eq!(c.cmd(&["SET", "h", "v"]), ok());
    assert_eq!(c.cmd(&["TYPE", "h"]), status("string"));
}

#[test]
fn setnx_setex_psetex() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SETNX", "k", "1"]), int(1));
    assert_eq!(c.cmd(&["SETNX", "k", "2"]), int(0));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("1"));
    assert_eq!(c.cmd(&["SETNX", "k"]), wrong_args("setnx"));
    assert_eq!(c.cmd(&["SETEX", "k", "100", "v"]), ok());
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
    assert!((95..=100).contains(&ttl(&mut c, "k")));
    assert_eq!(
        c.cmd(&["SETEX", "k", "0", "v"]),
        err("ERR invalid expire time in 'setex' command")
    );
    assert_eq!(
        c.cmd(&["SETEX", "k", "-1", "v"]),
        err("ERR invalid expire time in 'setex' command")
    );
    assert_eq!(c.cmd(&["SETEX", "k", "abc", "v"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["SETEX", "k", "10"]), wrong_args("setex"));
    assert_eq!(c.cmd(&["PSETEX", "p", "100000", "v"]), ok());
    assert!((95_000..=100_000).contains(&pttl(&mut c, "p")));
    assert_eq!(
        c.cmd(&["PSETEX", "p", "0", "v"]),
        err("ERR invalid expire time in 'psetex' command")
    );
    assert_eq!(c.cmd(&["PSETEX", "p", "x", "v"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["GET", "p"]), bulk("v"));
}

#[test]
fn getex() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["GETEX", "missing"]), nil());
    assert_eq!(c.cmd(&["GETEX", "missing", "EX", "10"]), nil());
    assert_eq!(c.cmd(&["EXISTS", "missing"]), int(0));
    assert_eq!(c.cmd(&["SET", "k", "v", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["GETEX", "k"]), bulk("v"));
    assert!(
        (95..=100).contains(&ttl(&mut c, "k")),
        "plain GETEX keeps the TTL"
    );
    assert_eq!(c.cmd(&["GETEX", "k", "EX", "200"]), bulk("v"));
    assert!((195..=200).contains(&ttl(&mut c, "k")));
    assert_eq!(c.cmd(&["GETEX", "k", "px", "300000"]), bulk("v"));
    assert!((295_000..=300_000).contains(&pttl(&mut c, "k")));
    let at = now_ms() / 1000 + 400;
    assert_eq!(c.cmd(&["GETEX", "k", "EXAT", &at.to_string()]), bulk("v"));
    assert_eq!(c.cmd(&["EXPIRETIME", "k"]), int(at));
    let pat = now_ms() + 500_000;
    assert_eq!(c.cmd(&["GETEX", "k", "PXAT", &pat.to_string()]), bulk("v"));
    assert_eq!(c.cmd(&["PEXPIRETIME", "k"]), int(pat));
    assert_eq!(c.cmd(&["GETEX", "k", "PERSIST"]), bulk("v"));
    assert_eq!(ttl(&mut c, "k"), -1);

    let invalid = err("ERR invalid expire time in 'getex' command");
    assert_eq!(c.cmd(&["GETEX", "k", "EX", "0"]), invalid);
    assert_eq!(c.cmd(&["GETEX", "k", "PX", "-1"]), invalid);
    assert_eq!(c.cmd(&["GETEX", "k", "EX", "abc"]), err(NOT_INTEGER));
    for opts in [
        &["EX", "10", "PX", "10"][..],
        &["PERSIST", "EX", "1"],
        &["EX", "1", "PERSIST"],
        &["FOO"],
        &["EX"],
        &["KEEPTTL"],
    ] {
        let mut args = vec!["GETEX", "k"];
        args.extend_from_slice(opts);
        assert_eq!(c.cmd(&args), err(SYNTAX), "{opts:?}");
    }
    assert_eq!(ttl(&mut c, "k"), -1);
    // A time in the past: the value is returned, then the key is gone.
    assert_eq!(c.cmd(&["GETEX", "k", "EXAT", "1"]), bulk("v"));
    assert_eq!(c.cmd(&["GET", "k"]), nil());
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["GETEX", "h"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["GETEX"]), wrong_args("getex"));
}

#[test]
fn getdel_getset() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["GETDEL", "missing"]), nil());
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["GETDEL", "k"]), bulk("v"));
    assert_eq!(c.cmd(&["EXISTS", "k"]), int(0));
    assert_eq!(c.cmd(&["GETSET", "k", "1"]), nil());
    assert_eq!(c.cmd(&["EXPIRE", "k", "100"]), int(1));
    assert_eq!(c.cmd(&["GETSET", "k", "2"]), bulk("1"));
    assert_eq!(ttl(&mut c, "k"), -1, "GETSET clears the TTL");
    assert_eq!(c.cmd(&["GET", "k"]), bulk("2"));
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["GETDEL", "h"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["GETSET", "h", "x"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["TYPE", "h"]), status("hash"));
    assert_eq!(c.cmd(&["GETDEL"]), wrong_args("getdel"));
    assert_eq!(c.cmd(&["GETSET", "k"]), wrong_args("getset"));
}

#[test]
fn mget_mset_msetnx() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["MSET", "a", "1", "b", "2"]), ok());
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    // MGET answers nil for missing keys and for keys of another type.
    assert_eq!(
        c.cmd_raw(&["MGET", "a", "missing", "h", "b", "a"]),
        b"*5\r\n$1\r\n1\r\n$-1\r\n$-1\r\n$1\r\n2\r\n$1\r\n1\r\n"
    );
    assert_eq!(c.cmd(&["MSET", "a", "x", "a", "y"]), ok());
    assert_eq!(c.cmd(&["GET", "a"]), bulk("y"));
    assert_eq!(c.cmd(&["MSET", "a", "1", "h", "now-a-string"]), ok());
    assert_eq!(c.cmd(&["TYPE", "h"]), status("string"));
    assert_eq!(c.cmd(&["MSET", "a"]), wrong_args("mset"));
    assert_eq!(c.cmd(&["MSET", "a", "1", "b"]), wrong_args("mset"));
    assert_eq!(c.cmd(&["MSET"]), wrong_args("mset"));
    assert_eq!(c.cmd(&["MGET"]), wrong_args("mget"));
    assert_eq!(c.cmd(&["MSETNX", "x", "1", "y", "2"]), int(1));
    assert_eq!(c.cmd(&["MSETNX", "y", "3", "z", "4"]), int(0));
    assert_eq!(
        c.cmd(&["MGET", "x", "y", "z"]),
        arr(vec![bulk("1"), bulk("2"), nil()])
    );
    assert_eq!(c.cmd(&["MSETNX", "x", "1", "y"]), wrong_args("msetnx"));
    assert_eq!(c.cmd(&["SET", "t", "v", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["MSET", "t", "w"]), ok());
    assert_eq!(ttl(&mut c, "t"), -1, "MSET clears TTLs");
}

#[test]
fn append_strlen() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["STRLEN", "k"]), int(0));
    assert_eq!(c.cmd(&["APPEND", "k", "Hello"]), int(5));
    assert_eq!(c.cmd(&["APPEND", "k", " World"]), int(11));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("Hello World"));
    assert_eq!(c.cmd(&["STRLEN", "k"]), int(11));
    assert_eq!(c.cmd(&["APPEND", "k", ""]), int(11));
    assert_eq!(c.cmd(&["EXPIRE", "k", "100"]), int(1));
    assert_eq!(c.cmd(&["APPEND", "k", "!"]), int(12));
    assert!(ttl(&mut c, "k") > 0, "APPEND keeps the TTL");
    assert_eq!(c.cmd(&["SET", "n", "10"]), ok());
    assert_eq!(c.cmd(&["APPEND", "n", "5"]), int(3));
    assert_eq!(c.cmd(&["INCR", "n"]), int(106));
    assert_eq!(c.cmd(&["STRLEN", "n"]), int(3));
    assert_eq!(c.cmd(&["APPEND", "e", ""]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "e"]), int(1));
    assert_eq!(c.cmd(&["APPEND", "k"]), wrong_args("append"));
    assert_eq!(c.cmd(&["STRLEN"]), wrong_args("strlen"));
}

#[test]
fn getrange() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "k", "This is a string"]), ok());
    for (start, end, expected) in [
        ("0", "3", "This"),
        ("-3", "-1", "ing"),
        ("0", "-1", "This is a string"),
        ("10", "100", "string"),
        ("5", "3", ""),
        ("-100", "-1", "This is a string"),
        ("-100", "3", "This"),
        ("0", "0", "T"),
        ("15", "15", "g"),
        ("16", "20", ""),
        ("-1", "-5", ""),
        // Redis 7.0 clamps a negative end to 0, so this is the first byte.
        ("0", "-100", "T"),
    ] {
        assert_eq!(
            c.cmd(&["GETRANGE", "k", start, end]),
            bulk(expected),
            "{start} {end}"
        );
    }
    assert_eq!(c.cmd(&["GETRANGE", "missing", "0", "-1"]), bulk(""));
    assert_eq!(c.cmd(&["SET", "empty", ""]), ok());
    assert_eq!(c.cmd(&["GETRANGE", "empty", "0", "-1"]), bulk(""));
    assert_eq!(c.cmd(&["GETRANGE", "k", "0", "abc"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["GETRANGE", "k", "0"]), wrong_args("getrange"));
    assert_eq!(c.cmd(&["SET", "n", "12345"]), ok());
    assert_eq!(c.cmd(&["GETRANGE", "n", "1", "2"]), bulk("23"));
}

#[test]
fn setrange() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "k", "Hello World"]), ok());
    assert_eq!(c.cmd(&["SETRANGE", "k", "6", "Redis"]), int(11));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("Hello Redis"));
    assert_eq!(c.cmd(&["SETRANGE", "k", "11", "!!"]), int(13));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("Hello Redis!!"));
    assert_eq!(c.cmd(&["SETRANGE", "k", "0", ""]), int(13));
    // Padding with zero bytes.
    assert_eq!(c.cmd(&["SETRANGE", "p", "5", "x"]), int(6));
    assert_eq!(c.cmd(&["GET", "p"]), bulk(b"\0\0\0\0\0x"));
    assert_eq!(c.cmd(&["SETRANGE", "k", "15", "z"]), int(16));
    assert_eq!(c.cmd(&["GET", "k"]), bulk(b"Hello Redis!!\0\0z"));
    // Empty value on a missing key: nothing created.
    assert_eq!(c.cmd(&["SETRANGE", "none", "0", ""]), int(0));
    assert_eq!(c.cmd(&["SETRANGE", "none", "10", ""]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "none"]), int(0));
    assert_eq!(
        c.cmd(&["SETRANGE", "k", "-1", "x"]),
        err("ERR offset is out of range")
    );
    assert_eq!(
        c.cmd(&["SETRANGE", "k", "536870912", "x"]),
        err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    );
    assert_eq!(
        c.cmd(&["SETRANGE", "k", "536870911", "xy"]),
        err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    );
    assert_eq!(c.cmd(&["SETRANGE", "k", "abc", "x"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["SETRANGE", "k", "0"]), wrong_args("setrange"));
    assert_eq!(c.cmd(&["EXPIRE", "k", "100"]), int(1));
    assert_eq!(c.cmd(&["SETRANGE", "k", "0", "J"]), int(16));
    assert!(ttl(&mut c, "k") > 0, "SETRANGE keeps the TTL");
}

#[test]
fn incr_decr() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["INCR", "n"]), int(1));
    assert_eq!(c.cmd(&["INCRBY", "n", "10"]), int(11));
    assert_eq!(c.cmd(&["DECR", "n"]), int(10));
    assert_eq!(c.cmd(&["DECRBY", "n", "3"]), int(7));
    assert_eq!(c.cmd(&["INCRBY", "n", "-7"]), int(0));
    assert_eq!(c.cmd(&["DECRBY", "n", "-5"]), int(5));
    assert_eq!(c.cmd(&["DECR", "neg"]), int(-1));
    assert_eq!(c.cmd(&["GET", "n"]), bulk("5"));
    assert_eq!(c.cmd(&["TYPE", "n"]), status("string"));
    assert_eq!(c.cmd(&["SET", "n", "-10"]), ok());
    assert_eq!(c.cmd(&["INCR", "n"]), int(-9));

    for bad in [
        "abc",
        "-0",
        " 1",
        "1 ",
        "1.5",
        "",
        "007",
        "+1",
        "1e3",
        "9223372036854775808",
        "0x10",
    ] {
        assert_eq!(c.cmd(&["SET", "bad", bad]), ok());
        assert_eq!(c.cmd(&["INCR", "bad"]), err(NOT_INTEGER), "value {bad:?}");
    }
    assert_eq!(c.cmd(&["INCRBY", "n", "abc"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["INCRBY", "n", "1.0"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["DECRBY", "n", ""]), err(NOT_INTEGER));

    let overflow = err("ERR increment or decrement would overflow");
    assert_eq!(c.cmd(&["SET", "m", "9223372036854775807"]), ok());
    assert_eq!(c.cmd(&["INCR", "m"]), overflow);
    assert_eq!(c.cmd(&["INCRBY", "m", "1"]), overflow);
    assert_eq!(c.cmd(&["DECRBY", "m", "-1"]), overflow);
    assert_eq!(c.cmd(&["GET", "m"]), bulk("9223372036854775807"));
    assert_eq!(c.cmd(&["SET", "m", "-9223372036854775808"]), ok());
    assert_eq!(c.cmd(&["DECR", "m"]), overflow);
    assert_eq!(c.cmd(&["INCRBY", "m", "-1"]), overflow);
    assert_eq!(c.cmd(&["INCRBY", "m", "9223372036854775807"]), int(-1));
    assert_eq!(c.cmd(&["SET", "m", "1"]), ok());
    assert_eq!(c.cmd(&["INCRBY", "m", "9223372036854775807"]), overflow);
    assert_eq!(
        c.cmd(&["DECRBY", "m", "-9223372036854775808"]),
        err("ERR decrement would overflow")
    );

    assert_eq!(c.cmd(&["SET", "t", "1", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["INCR", "t"]), int(2));
    assert!(ttl(&mut c, "t") > 0, "INCR keeps the TTL");
    assert_eq!(c.cmd(&["INCR"]), wrong_args("incr"));
    assert_eq!(c.cmd(&["INCRBY", "n"]), wrong_args("incrby"));
    assert_eq!(c.cmd(&["DECRBY", "n", "1", "2"]), wrong_args("decrby"));
}

#[test]
fn incrbyfloat() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "k", "10.50"]), ok());
    assert_eq!(c.cmd(&["INCRBYFLOAT", "k", "0.1"]), bulk("10.6"));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "k", "-5"]), bulk("5.6"));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("5.6"));
    assert_eq!(c.cmd(&["SET", "k", "5.0e3"]), ok());
    assert_eq!(c.cmd(&["INCRBYFLOAT", "k", "2.0e2"]), bulk("5200"));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "new", "3.0e3"]), bulk("3000"));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "x", "0.1"]), bulk("0.1"));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "x", "0.2"]), bulk("0.3"));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "y", "-0.25"]), bulk("-0.25"));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "y", "0.25"]), bulk("0"));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "z", "1"]), bulk("1"));
    assert_eq!(c.cmd(&["INCR", "z"]), int(2));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "z", "1.5"]), bulk("3.5"));
    assert_eq!(
        c.cmd(&["INCRBYFLOAT", "big", "1e17"]),
        bulk("100000000000000000")
    );

    let not_float = err("ERR value is not a valid float");
    assert_eq!(c.cmd(&["INCRBYFLOAT", "k", "abc"]), not_float);
    assert_eq!(c.cmd(&["INCRBYFLOAT", "k", ""]), not_float);
    assert_eq!(c.cmd(&["INCRBYFLOAT", "k", "1.0x"]), not_float);
    assert_eq!(c.cmd(&["SET", "f", "abc"]), ok());
    assert_eq!(c.cmd(&["INCRBYFLOAT", "f", "1"]), not_float);
    assert_eq!(c.cmd(&["SET", "f", ""]), ok());
    assert_eq!(c.cmd(&["INCRBYFLOAT", "f", "1"]), not_float);
    assert_eq!(c.cmd(&["SET", "f", " 1"]), ok());
    assert_eq!(c.cmd(&["INCRBYFLOAT", "f", "1"]), not_float);
    let nan_inf = err("ERR increment would produce NaN or Infinity");
    assert_eq!(c.cmd(&["INCRBYFLOAT", "k", "inf"]), nan_inf);
    assert_eq!(c.cmd(&["INCRBYFLOAT", "k", "-inf"]), nan_inf);
    assert_eq!(c.cmd(&["GET", "k"]), bulk("5200"));
    assert_eq!(c.cmd(&["SET", "t", "1", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["INCRBYFLOAT", "t", "0.5"]), bulk("1.5"));
    assert!(ttl(&mut c, "t") > 0, "INCRBYFLOAT keeps the TTL");
    assert_eq!(c.cmd(&["INCRBYFLOAT", "k"]), wrong_args("incrbyfloat"));
}

/// Redis adds in `long double` (80-bit on x86-64) and prints with `%.17Lf`, trailing zeros trimmed,
/// so some sums show digits an `f64` computation would not produce; ours must print the same.
#[test]
fn incrbyfloat_long_double_formatting() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["INCRBYFLOAT", "a", "3000"]), bulk("3000"));
    assert_eq!(
        c.cmd(&["INCRBYFLOAT", "a", "0.1"]),
        bulk("3000.10000000000000009")
    );
    for (start, incr, expected) in [
        ("1000", "0.1", "1000.09999999999999998"),
        ("10000", "0.3", "10000.29999999999999982"),
        ("100", "-99.99", "0.01"),
        ("1.5", "0.1", "1.6"),
        ("1.1", "2.2", "3.3"),
        ("123.456", "0.001", "123.457"),
        ("1e20", "1", "100000000000000000000"),
        ("1e30", "0", "1000000000000000000024696061952"),
        ("0x10", "0x1.8p1", "19"),
        ("-1", "1", "0"),
    ] {
        assert_eq!(c.cmd(&["SET", "b", start]), ok());
        assert_eq!(
            c.cmd(&["INCRBYFLOAT", "b", incr]),
            bulk(expected),
            "{start} + {incr}"
        );
        c.cmd(&["DEL", "hf"]);
        assert_eq!(c.cmd(&["HSET", "hf", "f", start]), int(1));
        assert_eq!(
            c.cmd(&["HINCRBYFLOAT", "hf", "f", incr]),
            bulk(expected),
            "HINCRBYFLOAT {start} + {incr}"
        );
    }
}

#[test]
fn wrongtype_on_string_commands() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["HSET", "h", "f", "1"]), int(1));
    for cmd in [
        vec!["GET", "h"],
        vec!["APPEND", "h", "x"],
        vec!["STRLEN", "h"],
        vec!["GETRANGE", "h", "0", "1"],
        vec!["SETRANGE", "h", "0", "x"],
        vec!["INCR", "h"],
        vec!["DECRBY", "h", "2"],
        vec!["INCRBYFLOAT", "h", "1.5"],
        vec!["GETDEL", "h"],
        vec!["GETEX", "h", "PERSIST"],
        vec!["SET", "h", "v", "GET"],
    ] {
        assert_eq!(c.cmd(&cmd), err(WRONGTYPE), "{cmd:?}");
    }
    assert_eq!(c.cmd(&["HGET", "h", "f"]), bulk("1"));
}
