#![allow(clippy::unwrap_used)]
//! Keyspace commands: DEL, UNLINK, EXISTS, TOUCH, TYPE, the EXPIRE family, TTL, PERSIST, expiry,
//! RENAME, COPY, KEYS, SCAN, RANDOMKEY, DBSIZE, FLUSHDB / FLUSHALL. Exact Redis 7 replies.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tests::*;

#[test]
fn del_unlink_exists_touch_type() {
    let s = start_target(&[]);
    let mut c = s.raw();
    for k in ["a", "b", "c", "d"] {
        assert_eq!(c.cmd(&["SET", k, "1"]), ok());
    }
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["EXISTS", "a"]), int(1));
    assert_eq!(c.cmd(&["EXISTS", "a", "a", "a"]), int(3));
    assert_eq!(c.cmd(&["EXISTS", "a", "missing", "h"]), int(2));
    assert_eq!(c.cmd(&["EXISTS", "missing"]), int(0));
    assert_eq!(c.cmd(&["TYPE", "a"]), status("string"));
    assert_eq!(c.cmd(&["TYPE", "h"]), status("hash"));
    assert_eq!(c.cmd(&["TYPE", "missing"]), status("none"));
    assert_eq!(c.cmd(&["TOUCH", "a", "b", "missing", "h"]), int(3));
    assert_eq!(c.cmd(&["TOUCH", "missing"]), int(0));
    // A key named twice is deleted once.
    assert_eq!(c.cmd(&["DEL", "a", "a", "b", "missing"]), int(2));
    assert_eq!(c.cmd(&["EXISTS", "a", "b"]), int(0));
    assert_eq!(c.cmd(&["UNLINK", "c", "c", "h", "missing"]), int(2));
    assert_eq!(c.cmd(&["DEL", "missing"]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "c", "h", "d"]), int(1));
    assert_eq!(c.cmd(&["TYPE", "h"]), status("none"));
    assert_eq!(c.cmd(&["DEL"]), wrong_args("del"));
    assert_eq!(c.cmd(&["UNLINK"]), wrong_args("unlink"));
    assert_eq!(c.cmd(&["EXISTS"]), wrong_args("exists"));
    assert_eq!(c.cmd(&["TOUCH"]), wrong_args("touch"));
    assert_eq!(c.cmd(&["TYPE"]), wrong_args("type"));
    assert_eq!(c.cmd(&["TYPE", "a", "b"]), wrong_args("type"));
}

#[test]
fn expire_options() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["EXPIRE", "k", "100"]), int(0));
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    // No TTL counts as an infinite TTL for GT / LT.
    assert_eq!(c.cmd(&["EXPIRE", "k", "100", "XX"]), int(0));
    assert_eq!(c.cmd(&["EXPIRE", "k", "100", "GT"]), int(0));
    assert_eq!(c.cmd(&["TTL", "k"]), int(-1));
    assert_eq!(c.cmd(&["EXPIRE", "k", "100", "lt"]), int(1));
    assert_eq!(c.cmd(&["EXPIRE", "k", "300", "NX"]), int(0));
    assert_eq!(c.cmd(&["EXPIRE", "k", "200", "GT"]), int(1));
    let ttl = c.cmd(&["TTL", "k"]).int();
    assert!((195..=200).contains(&ttl), "ttl {ttl}");
    assert_eq!(c.cmd(&["EXPIRE", "k", "50", "GT"]), int(0));
    assert_eq!(c.cmd(&["EXPIRE", "k", "50", "LT"]), int(1));
    assert_eq!(c.cmd(&["EXPIRE", "k", "60", "XX"]), int(1));
    assert_eq!(c.cmd(&["EXPIRE", "k", "70", "XX", "GT"]), int(1));
    let ttl = c.cmd(&["TTL", "k"]).int();
    assert!((65..=70).contains(&ttl), "ttl {ttl}");
    assert_eq!(c.cmd(&["SET", "n", "v"]), ok());
    assert_eq!(c.cmd(&["EXPIRE", "n", "100", "NX"]), int(1));

    let nx_xx = err("ERR NX and XX, GT or LT options at the same time are not compatible");
    assert_eq!(c.cmd(&["EXPIRE", "k", "10", "NX", "XX"]), nx_xx);
    assert_eq!(c.cmd(&["EXPIRE", "k", "10", "NX", "GT"]), nx_xx);
    assert_eq!(c.cmd(&["PEXPIRE", "k", "10", "LT", "NX"]), nx_xx);
    assert_eq!(
        c.cmd(&["EXPIRE", "k", "10", "GT", "LT"]),
        err("ERR GT and LT options at the same time are not compatible")
    );
    assert_eq!(
        c.cmd(&["EXPIRE", "k", "10", "foo"]),
        err("ERR Unsupported option foo")
    );
    assert_eq!(c.cmd(&["EXPIRE", "k", "abc"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["EXPIRE", "k", "1.5"]), err(NOT_INTEGER));
    assert_eq!(
        c.cmd(&["EXPIRE", "k", "99999999999999999"]),
        err("ERR invalid expire time in 'expire' command")
    );
    assert_eq!(
        c.cmd(&["PEXPIRE", "k", "9223372036854775807"]),
        err("ERR invalid expire time in 'pexpire' command")
    );
    assert_eq!(
        c.cmd(&["EXPIREAT", "k", "9223372036854775807"]),
        err("ERR invalid expire time in 'expireat' command")
    );
    // The failed calls left the TTL alone.
    let ttl = c.cmd(&["TTL", "k"]).int();
    assert!((65..=70).contains(&ttl), "ttl {ttl}");
    // A TTL in the past deletes the key and counts as set.
    assert_eq!(c.cmd(&["EXPIRE", "k", "-1"]), int(1));
    assert_eq!(c.cmd(&["EXISTS", "k"]), int(0));
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["PEXPIRE", "k", "0"]), int(1));
    assert_eq!(c.cmd(&["GET", "k"]), nil());
}

#[test]
fn ttl_pttl_expiretime_persist() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["TTL", "missing"]), int(-2));
    assert_eq!(c.cmd(&["PTTL", "missing"]), int(-2));
    assert_eq!(c.cmd(&["EXPIRETIME", "missing"]), int(-2));
    assert_eq!(c.cmd(&["PEXPIRETIME", "missing"]), int(-2));
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["TTL", "k"]), int(-1));
    assert_eq!(c.cmd(&["PTTL", "k"]), int(-1));
    assert_eq!(c.cmd(&["EXPIRETIME", "k"]), int(-1));
    assert_eq!(c.cmd(&["PEXPIRETIME", "k"]), int(-1));
    assert_eq!(c.cmd(&["PERSIST", "k"]), int(0));

    assert_eq!(c.cmd(&["PEXPIRE", "k", "100000"]), int(1));
    let pttl = c.cmd(&["PTTL", "k"]).int();
    assert!((95_000..=100_000).contains(&pttl), "pttl {pttl}");
    let ttl = c.cmd(&["TTL", "k"]).int();
    assert!((95..=100).contains(&ttl), "ttl {ttl}");

    let at = now_ms() / 1000 + 1000;
    assert_eq!(c.cmd(&["EXPIREAT", "k", &at.to_string()]), int(1));
    assert_eq!(c.cmd(&["EXPIRETIME", "k"]), int(at));
    assert_eq!(c.cmd(&["PEXPIRETIME", "k"]), int(at * 1000));
    let ttl = c.cmd(&["TTL", "k"]).int();
    assert!((995..=1000).contains(&ttl), "ttl {ttl}");
    assert_eq!(
        c.cmd(&["EXPIREAT", "k", &(at - 10).to_string(), "GT"]),
        int(0)
    );
    assert_eq!(
        c.cmd(&["EXPIREAT", "k", &(at + 10).to_string(), "GT"]),
        int(1)
    );

    let pat = now_ms() + 500_000;
    assert_eq!(c.cmd(&["PEXPIREAT", "k", &pat.to_string()]), int(1));
    assert_eq!(c.cmd(&["PEXPIRETIME", "k"]), int(pat));
    // EXPIRETIME rounds to the nearest second.
    assert_eq!(c.cmd(&["EXPIRETIME", "k"]), int((pat + 500) / 1000));
    assert_eq!(c.cmd(&["PEXPIREAT", "k", &pat.to_string(), "NX"]), int(0));

    assert_eq!(c.cmd(&["PERSIST", "k"]), int(1));
    assert_eq!(c.cmd(&["TTL", "k"]), int(-1));
    assert_eq!(c.cmd(&["PERSIST", "k"]), int(0));
    assert_eq!(c.cmd(&["PERSIST", "missing"]), int(0));

    // EXPIREAT in the past deletes.
    assert_eq!(c.cmd(&["EXPIREAT", "k", "1"]), int(1));
    assert_eq!(c.cmd(&["EXISTS", "k"]), int(0));
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["PEXPIREAT", "k", "1000"]), int(1));
    assert_eq!(c.cmd(&["TTL", "k"]), int(-2));
    assert_eq!(c.cmd(&["TTL"]), wrong_args("ttl"));
    assert_eq!(c.cmd(&["PERSIST"]), wrong_args("persist"));
}

#[test]
fn expired_keys_are_never_returned() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "k1", "v", "PX", "50"]), ok());
    assert_eq!(c.cmd(&["SET", "k2", "v", "PX", "50"]), ok());
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["PEXPIRE", "h", "50"]), int(1));
    assert_eq!(c.cmd(&["SET", "keep", "v"]), ok());
    assert_eventually!(
        c.cmd(&["EXISTS", "k1", "k2", "h"]) == int(0),
        Duration::from_secs(5)
    );
    assert_eq!(c.cmd(&["GET", "k1"]), nil());
    assert_eq!(
        c.cmd(&["MGET", "k1", "k2", "keep"]),
        arr(vec![nil(), nil(), bulk("v")])
    );
    assert_eq!(c.cmd(&["HGET", "h", "f"]), nil());
    assert_eq!(c.cmd(&["HGETALL", "h"]), arr(vec![]));
    assert_eq!(c.cmd(&["TTL", "k2"]), int(-2));
    assert_eq!(c.cmd(&["TYPE", "k2"]), status("none"));
    assert_eq!(c.cmd(&["STRLEN", "k2"]), int(0));
    assert_eq!(c.cmd(&["KEYS", "*"]), bulks(&["keep"]));
    assert_eq!(c.cmd(&["RANDOMKEY"]), bulk("keep"));
    assert_eq!(
        c.cmd(&["SCAN", "0", "COUNT", "1000"]),
        arr(vec![bulk("0"), bulks(&["keep"])])
    );
    assert_eq!(c.cmd(&["RENAME", "k1", "x"]), err("ERR no such key"));
    assert_eq!(c.cmd(&["APPEND", "k2", "new"]), int(3));
    assert_eq!(c.cmd(&["TTL", "k2"]), int(-1));
    assert_eq!(c.cmd(&["SET", "k1", "1", "PX", "50"]), ok());
    assert_eventually!(c.cmd(&["GET", "k1"]) == nil(), Duration::from_secs(5));
    assert_eq!(c.cmd(&["INCR", "k1"]), int(1));
    assert_eq!(c.cmd(&["DBSIZE"]), int(3));

    // Expired keys nobody reads are eventually gone from DBSIZE and INFO keyspace too.
    let mut many = vec!["MSET".to_string()];
    for i in 0..50 {
        many.push(format!("t{i}"));
        many.push("v".into());
    }
    assert_eq!(c.cmd(&many), ok());
    for i in 0..50 {
        assert_eq!(c.cmd(&["PEXPIRE", &format!("t{i}"), "100"]), int(1));
    }
    assert_eventually!(c.cmd(&["DBSIZE"]) == int(3), Duration::from_secs(10));
}

#[test]
fn rename_and_renamenx() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["RENAME", "missing", "x"]), err("ERR no such key"));
    assert_eq!(c.cmd(&["RENAMENX", "missing", "x"]), err("ERR no such key"));
    assert_eq!(c.cmd(&["SET", "a", "1", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["RENAME", "a", "b"]), ok());
    assert_eq!(c.cmd(&["GET", "a"]), nil());
    assert_eq!(c.cmd(&["GET", "b"]), bulk("1"));
    let ttl = c.cmd(&["TTL", "b"]).int();
    assert!((95..=100).contains(&ttl), "TTL moves with the key: {ttl}");
    assert_eq!(c.cmd(&["RENAME", "b", "b"]), ok());
    assert_eq!(c.cmd(&["GET", "b"]), bulk("1"));
    // Overwrites a key of another type, and the destination's TTL is replaced.
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["SET", "plain", "p"]), ok());
    assert_eq!(c.cmd(&["RENAME", "plain", "h"]), ok());
    assert_eq!(c.cmd(&["TYPE", "h"]), status("string"));
    assert_eq!(c.cmd(&["TTL", "h"]), int(-1));
    assert_eq!(c.cmd(&["HSET", "h2", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["RENAME", "h2", "moved"]), ok());
    assert_eq!(c.cmd(&["HGET", "moved", "f"]), bulk("v"));

    assert_eq!(c.cmd(&["SET", "c", "3"]), ok());
    assert_eq!(c.cmd(&["RENAMENX", "b", "c"]), int(0));
    assert_eq!(c.cmd(&["GET", "c"]), bulk("3"));
    assert_eq!(c.cmd(&["RENAMENX", "b", "d"]), int(1));
    assert_eq!(c.cmd(&["GET", "d"]), bulk("1"));
    assert_eq!(c.cmd(&["EXISTS", "b"]), int(0));
    assert_eq!(c.cmd(&["RENAMENX", "d", "d"]), int(0));
    assert_eq!(c.cmd(&["RENAME", "d"]), wrong_args("rename"));
    assert_eq!(c.cmd(&["RENAMENX", "d"]), wrong_args("renamenx"));
}

#[test]
fn copy() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "s", "v", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["COPY", "s", "d"]), int(1));
    assert_eq!(c.cmd(&["GET", "d"]), bulk("v"));
    let ttl = c.cmd(&["TTL", "d"]).int();
    assert!((95..=100).contains(&ttl), "COPY keeps the TTL: {ttl}");
    assert_eq!(c.cmd(&["SET", "s", "v2"]), ok());
    assert_eq!(c.cmd(&["COPY", "s", "d"]), int(0));
    assert_eq!(c.cmd(&["GET", "d"]), bulk("v"));
    assert_eq!(c.cmd(&["COPY", "s", "d", "REPLACE"]), int(1));
    assert_eq!(c.cmd(&["GET", "d"]), bulk("v2"));
    assert_eq!(c.cmd(&["TTL", "d"]), int(-1));
    assert_eq!(c.cmd(&["COPY", "missing", "x"]), int(0));
    assert_eq!(c.cmd(&["EXISTS", "x"]), int(0));
    assert_eq!(
        c.cmd(&["COPY", "s", "s"]),
        err("ERR source and destination objects are the same")
    );
    assert_eq!(c.cmd(&["COPY", "s", "d", "FOO"]), err(SYNTAX));
    assert_eq!(c.cmd(&["COPY", "s"]), wrong_args("copy"));

    // A copied hash is independent of its source.
    assert_eq!(c.cmd(&["HSET", "h", "f1", "a", "f2", "b"]), int(2));
    assert_eq!(c.cmd(&["COPY", "h", "h2"]), int(1));
    assert_eq!(c.cmd(&["HSET", "h2", "f1", "changed"]), int(0));
    assert_eq!(c.cmd(&["HGET", "h", "f1"]), bulk("a"));
    assert_eq!(c.cmd(&["HGET", "h2", "f1"]), bulk("changed"));
    assert_eq!(c.cmd(&["HLEN", "h2"]), int(2));
    // REPLACE across types.
    assert_eq!(c.cmd(&["COPY", "h", "d", "REPLACE"]), int(1));
    assert_eq!(c.cmd(&["TYPE", "d"]), status("hash"));

    if is_redis() {
        assert_eq!(c.cmd(&["COPY", "s", "other", "DB", "1"]), int(1));
        assert_eq!(c.cmd(&["EXISTS", "other"]), int(0));
    } else {
        // One database only: copying to another one is refused.
        let r = c.cmd(&["COPY", "s", "other", "DB", "1"]);
        assert!(
            r.error_text().is_some_and(|e| e.starts_with("ERR ")),
            "{r:?}"
        );
        assert_eq!(c.cmd(&["EXISTS", "other"]), int(0));
    }
}

#[test]
fn keys_patterns() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["KEYS", "*"]), arr(vec![]));
    let keys = [
        "hello", "hallo", "hxllo", "hllo", "heeeello", "a*b", "axb", "a?b", "a\\b", "x[y", "ab",
        "abc", "bcd", "caT",
    ];
    for k in keys {
        assert_eq!(c.cmd(&["SET", k, "1"]), ok());
    }
    let mut all: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    all.sort();
    assert_eq!(c.cmd(&["KEYS", "*"]).sorted(), all);
    for (pattern, expected) in [
        ("h?llo", vec!["hallo", "hello", "hxllo"]),
        ("h*llo", vec!["hallo", "heeeello", "hello", "hllo", "hxllo"]),
        ("h[ae]llo", vec!["hallo", "hello"]),
        ("h[^e]llo", vec!["hallo", "hxllo"]),
        ("h[a-b]llo", vec!["hallo"]),
        ("a\\*b", vec!["a*b"]),
        ("a\\?b", vec!["a?b"]),
        ("a\\\\b", vec!["a\\b"]),
        ("a*b", vec!["a*b", "a?b", "a\\b", "ab", "axb"]),
        (
            "[a-c]*",
            vec!["a*b", "a?b", "a\\b", "ab", "abc", "axb", "bcd", "caT"],
        ),
        ("x\\[y", vec!["x[y"]),
        ("cat", vec![]),
        ("ca[A-Z]", vec!["caT"]),
        ("abc", vec!["abc"]),
        ("nomatch*", vec![]),
        ("?", vec![]),
        ("??", vec!["ab"]),
    ] {
        assert_eq!(
            c.cmd(&["KEYS", pattern]).sorted(),
            expected,
            "KEYS {pattern}"
        );
    }
    assert_eq!(c.cmd(&["KEYS"]), wrong_args("keys"));
}

/// Runs a full SCAN iteration (bounded) and returns every key seen, with how often.
fn scan_all(c: &mut Raw, extra: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..100_000 {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let r = c.cmd(&args);
        let items = r.items();
        assert_eq!(items.len(), 2, "{r:?}");
        let next = items[0].text();
        seen.extend(items[1].strings());
        if next == "0" {
            return seen;
        }
        assert!(next.parse::<u64>().is_ok(), "cursor {next:?}");
        assert!(Instant::now() < deadline, "SCAN did not finish");
        cursor = next;
    }
    panic!("SCAN did not finish in 100000 calls");
}

#[test]
fn scan_full_iteration() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SCAN", "0"]), arr(vec![bulk("0"), arr(vec![])]));
    let mut expected_strings = HashSet::new();
    for chunk in 0..10 {
        let mut mset = vec!["MSET".to_string()];
        for i in chunk * 100..(chunk + 1) * 100 {
            mset.push(format!("key:{i}"));
            mset.push(i.to_string());
            expected_strings.insert(format!("key:{i}"));
        }
        assert_eq!(c.cmd(&mset), ok());
    }
    let mut expected_hashes = HashSet::new();
    for i in 0..20 {
        assert_eq!(c.cmd(&["HSET", &format!("hash:{i}"), "f", "v"]), int(1));
        expected_hashes.insert(format!("hash:{i}"));
    }
    let all: HashSet<String> = expected_strings.union(&expected_hashes).cloned().collect();

    for extra in [&[][..], &["COUNT", "7"][..], &["COUNT", "1000"][..]] {
        let seen = scan_all(&mut c, extra);
        let set: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(set, all, "SCAN {extra:?}");
        assert!(seen.len() >= all.len());
    }
    let m: HashSet<String> = scan_all(&mut c, &["MATCH", "key:1*", "COUNT", "50"])
        .into_iter()
        .collect();
    let expected: HashSet<String> = expected_strings
        .iter()
        .filter(|k| k.starts_with("key:1"))
        .cloned()
        .collect();
    assert_eq!(expected.len(), 111);
    assert_eq!(m, expected);
    let h: HashSet<String> = scan_all(&mut c, &["TYPE", "hash"]).into_iter().collect();
    assert_eq!(h, expected_hashes);
    let st: HashSet<String> =
        scan_all(&mut c, &["MATCH", "*:1?", "TYPE", "string", "COUNT", "100"])
            .into_iter()
            .collect();
    let expected: HashSet<String> = (10..20).map(|i| format!("key:{i}")).collect();
    assert_eq!(st, expected);
    let none: HashSet<String> = scan_all(&mut c, &["TYPE", "list"]).into_iter().collect();
    assert!(none.is_empty());

    assert_eq!(c.cmd(&["SCAN", "abc"]), err("ERR invalid cursor"));
    assert_eq!(c.cmd(&["SCAN", "1x"]), err("ERR invalid cursor"));
    assert_eq!(c.cmd(&["SCAN", "0", "COUNT", "abc"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["SCAN", "0", "COUNT", "0"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SCAN", "0", "FOO"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SCAN", "0", "MATCH"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SCAN"]), wrong_args("scan"));
}

#[test]
fn randomkey_dbsize_flush() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["RANDOMKEY"]), nil());
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    assert_eq!(c.cmd(&["SET", "only", "1"]), ok());
    assert_eq!(c.cmd(&["RANDOMKEY"]), bulk("only"));
    for i in 0..20 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), "1"]), ok());
    }
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["DBSIZE"]), int(22));
    let mut seen = HashSet::new();
    for _ in 0..50 {
        let k = c.cmd(&["RANDOMKEY"]).text();
        assert!(k == "only" || k == "h" || k.starts_with('k'), "{k}");
        seen.insert(k);
    }
    assert!(seen.len() > 1, "RANDOMKEY always returned the same key");
    assert_eq!(c.cmd(&["FLUSHDB"]), ok());
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    assert_eq!(c.cmd(&["RANDOMKEY"]), nil());
    assert_eq!(c.cmd(&["SET", "a", "1"]), ok());
    assert_eq!(c.cmd(&["FLUSHDB", "ASYNC"]), ok());
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    assert_eq!(c.cmd(&["SET", "a", "1"]), ok());
    assert_eq!(c.cmd(&["FLUSHDB", "sync"]), ok());
    assert_eq!(c.cmd(&["EXISTS", "a"]), int(0));
    assert_eq!(c.cmd(&["SET", "a", "1"]), ok());
    assert_eq!(c.cmd(&["FLUSHALL"]), ok());
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    assert_eq!(c.cmd(&["SET", "a", "1", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["FLUSHALL", "ASYNC"]), ok());
    assert_eq!(c.cmd(&["GET", "a"]), nil());
    assert_eq!(c.cmd(&["FLUSHDB", "foo"]), err(SYNTAX));
    assert_eq!(c.cmd(&["FLUSHALL", "foo"]), err(SYNTAX));
    assert_eq!(c.cmd(&["DBSIZE", "x"]), wrong_args("dbsize"));
    assert_eq!(c.cmd(&["RANDOMKEY", "x"]), wrong_args("randomkey"));
}

/// A payload large enough to be decoded off the IO thread restores like a small one, and a
/// corrupted one is refused the same way.
#[test]
fn dump_and_restore_of_a_large_value() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let cmds: Vec<Vec<String>> = (0..300)
        .map(|i| {
            let mut cmd = vec!["SADD".to_string(), "big".to_string()];
            cmd.extend((0..200).map(|j| format!("member:{i}:{j}")));
            cmd
        })
        .collect();
    pipeline_ok(&mut c, &cmds);
    assert_eq!(c.cmd(&["SCARD", "big"]), int(60_000));
    let Reply::Bulk(payload) = c.cmd(&["DUMP", "big"]) else {
        panic!("DUMP answered no payload");
    };
    assert!(payload.len() > 256 * 1024, "{} bytes", payload.len());
    assert_eq!(c.cmd(&[&b"RESTORE"[..], b"copy", b"0", &payload]), ok());
    assert_eq!(c.cmd(&["SCARD", "copy"]), int(60_000));
    assert_eq!(c.cmd(&["SISMEMBER", "copy", "member:299:199"]), int(1));
    assert_eq!(
        c.cmd(&[&b"RESTORE"[..], b"copy", b"0", &payload]),
        err("BUSYKEY Target key name already exists.")
    );
    let mut bad = payload.to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    assert_eq!(
        c.cmd(&[&b"RESTORE"[..], b"broken", b"0", &bad]),
        err("ERR DUMP payload version or checksum are wrong")
    );
    assert_eq!(c.cmd(&["EXISTS", "broken"]), int(0));
}
