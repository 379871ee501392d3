#![allow(clippy::unwrap_used)]
//! Every command family of the node, through the router in front of 3 nodes: strings, keys,
//! hashes, expiry and connection commands, with Redis's own replies. Keys are spread over the
//! shards; commands naming several keys use keys of one `{tag}` where Redis Cluster would need it.
//!
//! `RINGCACHE_TEST_TARGET=redis` runs the same expectations against one redis-server (no router),
//! which checks that they are Redis's.

use std::collections::HashSet;
use std::time::Duration;

use tests::*;

#[test]
fn strings_get_set_and_options() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(c.cmd_raw(&["GET", "missing"]), b"$-1\r\n");
    assert_eq!(c.cmd_raw(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(c.cmd_raw(&["GET", "k"]), b"$1\r\nv\r\n");
    assert_eq!(c.cmd_raw(&["SET", "k", ""]), b"+OK\r\n");
    assert_eq!(c.cmd_raw(&["GET", "k"]), b"$0\r\n\r\n");
    let binary: &[u8] = b"\x00\x01\r\n\xff binary";
    assert_eq!(c.cmd(&[&b"SET"[..], b"bin\r\nkey", binary]), ok());
    assert_eq!(c.cmd(&[&b"GET"[..], b"bin\r\nkey"]), bulk(binary));
    let big = "x".repeat(1 << 20);
    assert_eq!(c.cmd(&["SET", "big", &big]), ok());
    assert_eq!(c.cmd(&["GET", "big"]), bulk(&big));
    // Options.
    assert_eq!(c.cmd_raw(&["SET", "nx", "1", "XX"]), b"$-1\r\n");
    assert_eq!(c.cmd(&["SET", "nx", "1", "NX"]), ok());
    assert_eq!(c.cmd_raw(&["SET", "nx", "2", "NX"]), b"$-1\r\n");
    assert_eq!(c.cmd(&["SET", "nx", "3", "XX", "GET"]), bulk("1"));
    assert_eq!(c.cmd(&["SET", "ex", "v", "EX", "100"]), ok());
    assert!((95..=100).contains(&ttl(&mut c, "ex")));
    assert_eq!(c.cmd(&["SET", "ex", "v", "KEEPTTL"]), ok());
    assert!(ttl(&mut c, "ex") > 0);
    assert_eq!(c.cmd(&["SET", "px", "v", "PX", "100000"]), ok());
    assert!((95_000..=100_000).contains(&pttl(&mut c, "px")));
    // Errors come back with Redis's wording.
    assert_eq!(c.cmd(&["SET", "k", "v", "NX", "XX"]), err(SYNTAX));
    assert_eq!(
        c.cmd(&["SET", "k", "v", "EX", "0"]),
        err("ERR invalid expire time in 'set' command")
    );
    assert_eq!(c.cmd(&["SET", "k", "v", "EX", "abc"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["SET", "k"]), wrong_args("set"));
    assert_eq!(c.cmd(&["GET"]), wrong_args("get"));
    assert_eq!(c.cmd(&["GET", "a", "b"]), wrong_args("get"));
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["GET", "h"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["SET", "h", "v", "GET"]), err(WRONGTYPE));
}

#[test]
fn strings_setnx_setex_getex_getdel_getset() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(c.cmd(&["SETNX", "k", "1"]), int(1));
    assert_eq!(c.cmd(&["SETNX", "k", "2"]), int(0));
    assert_eq!(c.cmd(&["SETEX", "se", "100", "v"]), ok());
    assert!((95..=100).contains(&ttl(&mut c, "se")));
    assert_eq!(
        c.cmd(&["SETEX", "se", "0", "v"]),
        err("ERR invalid expire time in 'setex' command")
    );
    assert_eq!(c.cmd(&["PSETEX", "pse", "100000", "v"]), ok());
    assert!((95_000..=100_000).contains(&pttl(&mut c, "pse")));
    assert_eq!(c.cmd(&["GETEX", "missing", "EX", "10"]), nil());
    assert_eq!(c.cmd(&["GETEX", "se", "EX", "200"]), bulk("v"));
    assert!((195..=200).contains(&ttl(&mut c, "se")));
    assert_eq!(c.cmd(&["GETEX", "se", "PERSIST"]), bulk("v"));
    assert_eq!(ttl(&mut c, "se"), -1);
    assert_eq!(c.cmd(&["GETDEL", "se"]), bulk("v"));
    assert_eq!(c.cmd(&["GETDEL", "se"]), nil());
    assert_eq!(c.cmd(&["GETSET", "gs", "1"]), nil());
    assert_eq!(c.cmd(&["GETSET", "gs", "2"]), bulk("1"));
    assert_eq!(c.cmd(&["GETEX"]), wrong_args("getex"));
}

#[test]
fn strings_mget_mset_across_shards() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(
        c.cmd(&["MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5"]),
        ok()
    );
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    // Missing keys and keys of another type are nil; a key named twice comes back twice.
    assert_eq!(
        c.cmd(&["MGET", "e", "missing", "a", "h", "c", "a", "b", "d"]),
        arr(vec![
            bulk("5"),
            nil(),
            bulk("1"),
            nil(),
            bulk("3"),
            bulk("1"),
            bulk("2"),
            bulk("4"),
        ])
    );
    assert_eq!(
        c.cmd_raw(&["MGET", "missing"]),
        b"*1\r\n$-1\r\n",
        "one missing key"
    );
    // The last value of a key named twice wins.
    assert_eq!(c.cmd(&["MSET", "a", "x", "b", "q", "a", "y"]), ok());
    assert_eq!(c.cmd(&["MGET", "a", "b"]), bulks(&["y", "q"]));
    assert_eq!(c.cmd(&["MSET", "a"]), wrong_args("mset"));
    assert_eq!(c.cmd(&["MSET", "a", "1", "b"]), wrong_args("mset"));
    assert_eq!(c.cmd(&["MGET"]), wrong_args("mget"));
    // MSETNX on keys of one tag (one shard).
    assert_eq!(c.cmd(&["MSETNX", "{u}x", "1", "{u}y", "2"]), int(1));
    assert_eq!(c.cmd(&["MSETNX", "{u}y", "3", "{u}z", "4"]), int(0));
    assert_eq!(
        c.cmd(&["MGET", "{u}x", "{u}y", "{u}z"]),
        arr(vec![bulk("1"), bulk("2"), nil()])
    );
}

#[test]
fn strings_append_ranges_counters() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(c.cmd(&["APPEND", "k", "Hello"]), int(5));
    assert_eq!(c.cmd(&["APPEND", "k", " World"]), int(11));
    assert_eq!(c.cmd(&["STRLEN", "k"]), int(11));
    assert_eq!(c.cmd(&["GETRANGE", "k", "0", "4"]), bulk("Hello"));
    assert_eq!(c.cmd(&["GETRANGE", "k", "-5", "-1"]), bulk("World"));
    assert_eq!(c.cmd(&["SETRANGE", "k", "6", "Redis"]), int(11));
    assert_eq!(c.cmd(&["GET", "k"]), bulk("Hello Redis"));
    assert_eq!(c.cmd(&["SETRANGE", "pad", "3", "x"]), int(4));
    assert_eq!(c.cmd(&["GET", "pad"]), bulk("\0\0\0x"));
    assert_eq!(c.cmd(&["INCR", "n"]), int(1));
    assert_eq!(c.cmd(&["INCRBY", "n", "41"]), int(42));
    assert_eq!(c.cmd(&["DECR", "n"]), int(41));
    assert_eq!(c.cmd(&["DECRBY", "n", "50"]), int(-9));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "f", "10.5"]), bulk("10.5"));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "f", "0.1"]), bulk("10.6"));
    assert_eq!(c.cmd(&["INCRBYFLOAT", "f", "-5.6"]), bulk("5"));
    assert_eq!(c.cmd(&["INCR", "k"]), err(NOT_INTEGER));
    assert_eq!(
        c.cmd(&["INCRBYFLOAT", "k", "1"]),
        err("ERR value is not a valid float")
    );
    assert_eq!(c.cmd(&["SET", "max", "9223372036854775807"]), ok());
    assert_eq!(
        c.cmd(&["INCR", "max"]),
        err("ERR increment or decrement would overflow")
    );
    assert_eq!(c.cmd(&["INCR"]), wrong_args("incr"));
}

#[test]
fn keys_del_exists_touch_type() {
    let t = start_routed_target();
    let mut c = t.raw();
    for k in ["a", "b", "c", "d", "e", "f"] {
        assert_eq!(c.cmd(&["SET", k, "1"]), ok());
    }
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["EXISTS", "a", "a", "a"]), int(3));
    assert_eq!(c.cmd(&["EXISTS", "a", "missing", "h", "f", "e"]), int(4));
    assert_eq!(c.cmd(&["TYPE", "a"]), status("string"));
    assert_eq!(c.cmd(&["TYPE", "h"]), status("hash"));
    assert_eq!(c.cmd(&["TYPE", "missing"]), status("none"));
    assert_eq!(c.cmd(&["TOUCH", "a", "b", "missing", "h"]), int(3));
    // A key named twice is deleted once.
    assert_eq!(c.cmd(&["DEL", "a", "a", "b", "missing", "f"]), int(3));
    assert_eq!(c.cmd(&["EXISTS", "a", "b", "f"]), int(0));
    assert_eq!(c.cmd(&["UNLINK", "c", "c", "h", "missing", "e"]), int(3));
    assert_eq!(c.cmd(&["EXISTS", "c", "h", "d", "e"]), int(1));
    assert_eq!(c.cmd(&["DEL"]), wrong_args("del"));
    assert_eq!(c.cmd(&["EXISTS"]), wrong_args("exists"));
    assert_eq!(c.cmd(&["TYPE", "a", "b"]), wrong_args("type"));
}

#[test]
fn keys_expire_family_and_expiry() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(c.cmd(&["EXPIRE", "k", "100"]), int(0));
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["TTL", "k"]), int(-1));
    assert_eq!(c.cmd(&["PTTL", "k"]), int(-1));
    assert_eq!(c.cmd(&["TTL", "missing"]), int(-2));
    assert_eq!(c.cmd(&["EXPIRETIME", "k"]), int(-1));
    assert_eq!(c.cmd(&["EXPIRE", "k", "100", "NX"]), int(1));
    assert_eq!(c.cmd(&["EXPIRE", "k", "200", "GT"]), int(1));
    assert!((195..=200).contains(&ttl(&mut c, "k")));
    assert_eq!(c.cmd(&["PEXPIRE", "k", "50000", "LT"]), int(1));
    assert!((45_000..=50_000).contains(&pttl(&mut c, "k")));
    let at = now_ms() / 1000 + 300;
    assert_eq!(c.cmd(&["EXPIREAT", "k", &at.to_string()]), int(1));
    assert_eq!(c.cmd(&["EXPIRETIME", "k"]), int(at));
    let pat = now_ms() + 400_000;
    assert_eq!(c.cmd(&["PEXPIREAT", "k", &pat.to_string()]), int(1));
    assert_eq!(c.cmd(&["PEXPIRETIME", "k"]), int(pat));
    assert_eq!(c.cmd(&["PERSIST", "k"]), int(1));
    assert_eq!(c.cmd(&["PERSIST", "k"]), int(0));
    assert_eq!(
        c.cmd(&["EXPIRE", "k", "10", "NX", "XX"]),
        err("ERR NX and XX, GT or LT options at the same time are not compatible")
    );
    assert_eq!(c.cmd(&["EXPIRE", "k", "abc"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["EXPIRE", "k"]), wrong_args("expire"));
    // Keys do expire, on every shard, and expired keys are never returned.
    let keys: Vec<String> = (0..30).map(|i| format!("short:{i}")).collect();
    for k in &keys {
        assert_eq!(c.cmd(&["SET", k, "v", "PX", "150"]), ok());
    }
    assert_eq!(c.cmd(&["SET", "keep", "v"]), ok());
    std::thread::sleep(Duration::from_millis(300));
    for k in &keys {
        assert_eq!(c.cmd(&["GET", k]), nil(), "{k} expired");
    }
    let mut exists = vec!["EXISTS"];
    exists.extend(keys.iter().map(String::as_str));
    assert_eq!(c.cmd(&exists), int(0));
    assert_eq!(
        c.cmd(&["EXPIRE", "keep", "-1"]),
        int(1),
        "negative TTL deletes"
    );
    assert_eq!(c.cmd(&["EXISTS", "keep"]), int(0));
}

#[test]
fn keys_rename_copy_same_tag() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(c.cmd(&["SET", "{t}a", "1", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["RENAME", "{t}a", "{t}b"]), ok());
    assert_eq!(c.cmd(&["GET", "{t}b"]), bulk("1"));
    assert!(ttl(&mut c, "{t}b") > 0, "RENAME keeps the TTL");
    assert_eq!(c.cmd(&["EXISTS", "{t}a"]), int(0));
    assert_eq!(c.cmd(&["RENAME", "{t}a", "{t}c"]), err("ERR no such key"));
    assert_eq!(c.cmd(&["SET", "{t}c", "2"]), ok());
    assert_eq!(c.cmd(&["RENAMENX", "{t}b", "{t}c"]), int(0));
    assert_eq!(c.cmd(&["RENAMENX", "{t}b", "{t}d"]), int(1));
    assert_eq!(c.cmd(&["COPY", "{t}d", "{t}e"]), int(1));
    assert_eq!(c.cmd(&["COPY", "{t}d", "{t}c"]), int(0));
    assert_eq!(c.cmd(&["COPY", "{t}d", "{t}c", "REPLACE"]), int(1));
    assert_eq!(
        c.cmd(&["MGET", "{t}c", "{t}d", "{t}e"]),
        bulks(&["1", "1", "1"])
    );
    // A key renamed onto itself is left alone.
    assert_eq!(c.cmd(&["RENAME", "{t}c", "{t}c"]), ok());
    assert_eq!(c.cmd(&["RENAME", "{t}c"]), wrong_args("rename"));
}

#[test]
fn keys_keys_scan_randomkey_dbsize_flush() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    assert_eq!(c.cmd(&["RANDOMKEY"]), nil());
    assert_eq!(c.cmd(&["KEYS", "*"]), arr(vec![]));
    let mut all = HashSet::new();
    for i in 0..200 {
        let k = format!("user:{i}");
        assert_eq!(c.cmd(&["SET", &k, "v"]), ok());
        all.insert(k);
    }
    for i in 0..20 {
        let k = format!("hash:{i}");
        assert_eq!(c.cmd(&["HSET", &k, "f", "v"]), int(1));
        all.insert(k);
    }
    assert_eq!(c.cmd(&["DBSIZE"]), int(220));
    let keys: HashSet<String> = c.cmd(&["KEYS", "*"]).strings().into_iter().collect();
    assert_eq!(keys, all);
    assert_eq!(
        c.cmd(&["KEYS", "user:1?"]).sorted(),
        (10..20).map(|i| format!("user:{i}")).collect::<Vec<_>>()
    );
    assert_eq!(c.cmd(&["KEYS", "nomatch*"]), arr(vec![]));
    let scanned = scan_all(&mut c, &["COUNT", "17"]);
    let set: HashSet<String> = scanned.iter().cloned().collect();
    assert_eq!(set, all);
    assert_eq!(
        scan_all(&mut c, &["MATCH", "hash:*"]).len(),
        20,
        "SCAN MATCH"
    );
    assert_eq!(
        scan_all(&mut c, &["TYPE", "hash", "COUNT", "50"]).len(),
        20,
        "SCAN TYPE"
    );
    let mut random = HashSet::new();
    for _ in 0..50 {
        let k = c.cmd(&["RANDOMKEY"]).text();
        assert!(all.contains(&k), "RANDOMKEY {k}");
        random.insert(k);
    }
    assert!(random.len() > 1, "RANDOMKEY always returned the same key");
    assert_eq!(c.cmd(&["FLUSHALL"]), ok());
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    assert_eq!(c.cmd(&["SET", "x", "1"]), ok());
    assert_eq!(c.cmd(&["FLUSHDB"]), ok());
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    assert_eq!(c.cmd(&["SCAN", "0"]), arr(vec![bulk("0"), arr(vec![])]));
    assert_eq!(c.cmd(&["SCAN", "abc"]), err("ERR invalid cursor"));
    assert_eq!(c.cmd(&["SCAN"]), wrong_args("scan"));
    assert_eq!(c.cmd(&["KEYS"]), wrong_args("keys"));
}

#[test]
fn hashes() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(c.cmd(&["HSET", "h", "a", "1", "b", "2"]), int(2));
    assert_eq!(c.cmd(&["HSET", "h", "a", "x", "c", "3"]), int(1));
    assert_eq!(c.cmd(&["HSETNX", "h", "a", "y"]), int(0));
    assert_eq!(c.cmd(&["HSETNX", "h", "d", "4"]), int(1));
    assert_eq!(c.cmd(&["HMSET", "h", "e", "5"]), ok());
    assert_eq!(c.cmd(&["HGET", "h", "a"]), bulk("x"));
    assert_eq!(c.cmd(&["HGET", "h", "zz"]), nil());
    assert_eq!(
        c.cmd(&["HMGET", "h", "a", "zz", "b"]),
        arr(vec![bulk("x"), nil(), bulk("2")])
    );
    assert_eq!(c.cmd(&["HLEN", "h"]), int(5));
    assert_eq!(c.cmd(&["HEXISTS", "h", "c"]), int(1));
    assert_eq!(c.cmd(&["HSTRLEN", "h", "a"]), int(1));
    assert_eq!(c.cmd(&["HKEYS", "h"]).sorted(), ["a", "b", "c", "d", "e"]);
    assert_eq!(c.cmd(&["HVALS", "h"]).sorted(), ["2", "3", "4", "5", "x"]);
    let mut pairs: Vec<(String, String)> = c
        .cmd(&["HGETALL", "h"])
        .pairs()
        .into_iter()
        .map(|(k, v)| (k, v.text()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        [("a", "x"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(c.cmd(&["HINCRBY", "h", "n", "5"]), int(5));
    assert_eq!(c.cmd(&["HINCRBYFLOAT", "h", "fl", "1.5"]), bulk("1.5"));
    assert_eq!(
        c.cmd(&["HINCRBY", "h", "a", "1"]),
        err("ERR hash value is not an integer")
    );
    assert_eq!(c.cmd(&["HDEL", "h", "a", "b", "zz"]), int(2));
    let r = c.cmd(&["HRANDFIELD", "h", "2"]);
    assert_eq!(r.items().len(), 2, "{r:?}");
    let r = c.cmd(&["HSCAN", "h", "0", "COUNT", "100"]);
    let items = r.items();
    assert_eq!(items[0], bulk("0"));
    assert_eq!(items[1].items().len(), 10, "5 fields and values: {r:?}");
    assert_eq!(c.cmd_raw(&["HGETALL", "missing"]), b"*0\r\n");
    assert_eq!(c.cmd(&["SET", "s", "v"]), ok());
    assert_eq!(c.cmd(&["HGET", "s", "a"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["HSET", "h", "a"]), wrong_args("hset"));
}

#[test]
fn connection_commands() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(c.cmd_raw(&["PING"]), b"+PONG\r\n");
    assert_eq!(c.cmd_raw(&["ping", "hello"]), b"$5\r\nhello\r\n");
    assert_eq!(c.cmd(&["PING", "a", "b"]), wrong_args("ping"));
    assert_eq!(c.cmd_raw(&["ECHO", "x y"]), b"$3\r\nx y\r\n");
    assert_eq!(c.cmd(&["ECHO"]), wrong_args("echo"));
    assert_eq!(c.cmd(&["SELECT", "0"]), ok());
    assert_eq!(c.cmd(&["SELECT", "abc"]), err(NOT_INTEGER));
    assert_eq!(
        c.cmd(&["AUTH", "x"]),
        err(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?"
        )
    );
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "tester"]), ok());
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), bulk("tester"));
    assert_eq!(
        c.cmd(&["NOSUCHCMD", "a"]),
        err("ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' ")
    );
    // Redis counts its ~240 commands; ringcache counts the ones it serves (84 today).
    let n = c.cmd(&["COMMAND", "COUNT"]).int();
    assert!(n > 50, "COMMAND COUNT {n}");
    let info = c.cmd(&["COMMAND", "INFO", "get"]).items();
    let get = info[0].items();
    assert_eq!(
        (get[0].clone(), get[1].clone()),
        (bulk("get"), int(2)),
        "{get:?}"
    );
    for (parent, first) in [
        ("CONFIG", "CONFIG <subcommand>"),
        ("COMMAND", "COMMAND <subcommand>"),
    ] {
        let help = c.cmd(&[parent, "HELP"]).strings();
        assert!(help[0].starts_with(first), "{parent} HELP: {help:?}");
    }
    let info = c.cmd(&["INFO"]).text();
    assert!(info.contains("# Server"), "INFO: {info}");
    // Inline commands and pipelines work as on one server.
    c.send(b"PING\r\nECHO \"hello world\"\r\n");
    assert_eq!(c.reply(), status("PONG"));
    assert_eq!(c.reply(), bulk("hello world"));
    assert_eq!(c.cmd_raw(&["QUIT"]), b"+OK\r\n");
    assert!(c.is_closed(Duration::from_secs(5)));
    assert_eq!(c.pending(), "");
}

#[test]
fn hello_resp2_and_resp3() {
    let t = start_routed_target();
    let mut c = t.raw();
    let r = c.cmd(&["HELLO", "2"]);
    let keys: Vec<String> = r.pairs().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        ["server", "version", "proto", "id", "mode", "role", "modules"],
        "{r:?}"
    );
    assert_eq!(r.get("proto"), Some(int(2)));
    let r = c.hello3(&[]);
    assert_eq!(r.get("proto"), Some(int(3)), "{r:?}");
    assert_eq!(r.get("role"), Some(bulk("master")));
    assert_eq!(c.cmd_raw(&["GET", "missing"]), b"_\r\n");
    assert_eq!(c.cmd_raw(&["HGETALL", "missing"]), b"%0\r\n");
    assert_eq!(c.cmd(&["HSET", "h", "f1", "v1", "f2", "v2"]), int(2));
    let raw = c.cmd_raw(&["HGETALL", "h"]);
    assert!(
        raw.starts_with(b"%2\r\n"),
        "HGETALL in RESP3 is a map: {raw:?}"
    );
    let r = c.cmd(&["HGETALL", "h"]);
    assert!(matches!(r, Reply::Map(_)), "{r:?}");
    assert_eq!(r.get("f1"), Some(bulk("v1")));
    assert_eq!(r.get("f2"), Some(bulk("v2")));
    assert_eq!(
        c.cmd(&["HELLO", "4"]),
        err("NOPROTO unsupported protocol version")
    );
    let r = c.cmd(&["HELLO", "2"]);
    c.set_proto(Protocol::Resp2);
    assert_eq!(r.get("proto"), Some(int(2)));
    assert_eq!(c.cmd_raw(&["GET", "missing"]), b"$-1\r\n");
}

/// SLOWLOG through the router: every shard's slow commands, newest first; LEN summed; RESET
/// everywhere. Against one redis-server the same expectations hold.
#[test]
fn slowlog_over_every_shard() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        ok()
    );
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), ok());
    for i in 0..30 {
        assert_eq!(c.cmd(&["SET", &format!("slow:{i}"), "v"]), ok());
    }
    // Every SET was slow enough; the log also holds what else reached the shards (the SLOWLOG
    // commands themselves, a router's health checks).
    assert!(c.cmd(&["SLOWLOG", "LEN"]).int() >= 30);
    let got = c.cmd(&["SLOWLOG", "GET", "5"]).items();
    assert_eq!(got.len(), 5);
    let times: Vec<i64> = got.iter().map(|e| e.items()[1].int()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let all = c.cmd(&["SLOWLOG", "GET", "-1"]).items();
    let sets = all
        .iter()
        .filter(|e| e.items()[3].items()[0].text() == "SET")
        .count();
    assert_eq!(sets, 30);
    assert_eq!(
        c.cmd(&["SLOWLOG", "GET", "x"]),
        err("ERR count should be greater than or equal to -1")
    );
    assert_eq!(c.cmd(&["SLOWLOG", "HELP"]).items().len(), 12);
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "10000"]),
        ok()
    );
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), ok());
    assert!(c.cmd(&["SLOWLOG", "LEN"]).int() < 30);
}

/// MONITOR through the router shows the requests its clients send, as Redis shows the
/// commands it runs; administrative ones left out, secrets redacted.
#[test]
fn monitor_shows_requests() {
    let t = start_routed_target();
    let mut m = t.raw();
    assert_eq!(m.cmd(&["MONITOR"]), ok());
    let mut c = t.raw();
    let me = c.local_addr().to_string();
    assert_eq!(c.cmd(&["SET", "mon:1", "a b"]), ok());
    let _ = c.cmd(&["CONFIG", "GET", "maxmemory"]);
    assert_eq!(
        c.cmd(&["MGET", "mon:1", "mon:2"]),
        arr(vec![bulk("a b"), nil()])
    );
    assert!(c.cmd(&["AUTH", "nobody", "pw"]).is_error());
    for want in [
        format!("[0 {me}] \"SET\" \"mon:1\" \"a b\""),
        format!("[0 {me}] \"MGET\" \"mon:1\" \"mon:2\""),
        format!("[0 {me}] \"AUTH\" \"(redacted)\" \"(redacted)\""),
    ] {
        let line = m.reply().text();
        let (ts, rest) = line.split_once(' ').unwrap();
        assert!(ts.parse::<f64>().unwrap() > 1.6e9, "{line}");
        assert_eq!(rest, want);
    }
    assert_eq!(m.cmd(&["RESET"]), status("RESET"));
    assert_eq!(c.cmd(&["SET", "mon:1", "b"]), ok());
    assert!(m.read(Duration::from_millis(300)).is_none());
}

/// LATENCY HISTOGRAM through the router sums the shards' distributions (every call counted
/// once); INFO latencystats has the command's line; RESET reaches every shard.
#[test]
fn latency_histograms_add_up_over_the_shards() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_eq!(c.cmd(&["CONFIG", "RESETSTAT"]), ok());
    for i in 0..300 {
        assert_eq!(c.cmd(&["SET", &format!("lat:{i}"), "v"]), ok());
    }
    let h = c.cmd(&["LATENCY", "HISTOGRAM", "set"]).pairs();
    assert_eq!(h.len(), 1, "{h:?}");
    let fields = h[0].1.pairs();
    assert_eq!(fields[0], ("calls".to_string(), int(300)));
    let points: Vec<i64> = fields[1].1.items().iter().map(ReplyExt::int).collect();
    let counts: Vec<i64> = points.iter().skip(1).step_by(2).copied().collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{points:?}");
    assert_eq!(counts.last(), Some(&300));
    let info = c.cmd(&["INFO", "latencystats"]).text();
    assert!(info.contains("latency_percentiles_usec_set:p50="), "{info}");
    assert_eq!(c.cmd(&["LATENCY", "RESET"]), int(0));
    assert_eq!(c.cmd(&["LATENCY", "LATEST"]), arr(vec![]));
}
