#![allow(clippy::unwrap_used)]
//! Hash commands, RESP2 and RESP3 shapes. Field order of HKEYS/HVALS/HGETALL/HSCAN is not part of
//! Redis's contract, so those are compared sorted.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tests::*;

fn sorted_pairs(r: &Reply) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r.pairs().into_iter().map(|(k, v)| (k, v.text())).collect();
    v.sort();
    v
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn hset_hget_hmset_hsetnx() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["HSET", "h", "f1", "v1", "f2", "v2"]), int(2));
    assert_eq!(c.cmd(&["HSET", "h", "f1", "x", "f3", "y"]), int(1));
    assert_eq!(c.cmd(&["HSET", "h", "f1", "a", "f1", "b"]), int(0));
    assert_eq!(c.cmd(&["HGET", "h", "f1"]), bulk("b"));
    assert_eq!(c.cmd(&["HGET", "h", "f3"]), bulk("y"));
    assert_eq!(c.cmd_raw(&["HGET", "h", "nope"]), b"$-1\r\n");
    assert_eq!(c.cmd_raw(&["HGET", "missing", "f"]), b"$-1\r\n");
    assert_eq!(c.cmd(&["HMSET", "h", "f4", "z", "f1", "c"]), ok());
    assert_eq!(c.cmd(&["HGET", "h", "f1"]), bulk("c"));
    assert_eq!(c.cmd(&["HSETNX", "h", "f1", "no"]), int(0));
    assert_eq!(c.cmd(&["HSETNX", "h", "f5", "yes"]), int(1));
    assert_eq!(c.cmd(&["HSETNX", "new", "f", "v"]), int(1));
    assert_eq!(c.cmd(&["HGET", "h", "f1"]), bulk("c"));
    assert_eq!(c.cmd(&["HGET", "h", "f5"]), bulk("yes"));
    assert_eq!(c.cmd(&["HSET", "e", "", ""]), int(1));
    assert_eq!(c.cmd(&["HGET", "e", ""]), bulk(""));
    let binary: &[u8] = b"\x00\r\n\xff";
    assert_eq!(c.cmd(&[&b"HSET"[..], b"b", binary, binary]), int(1));
    assert_eq!(c.cmd(&[&b"HGET"[..], b"b", binary]), bulk(binary));

    assert_eq!(c.cmd(&["HSET", "h", "f"]), wrong_args("hset"));
    assert_eq!(c.cmd(&["HSET", "h"]), wrong_args("hset"));
    assert_eq!(c.cmd(&["HSET", "h", "a", "1", "b"]), wrong_args("hset"));
    assert_eq!(c.cmd(&["HMSET", "h", "f"]), wrong_args("hmset"));
    assert_eq!(c.cmd(&["HSETNX", "h", "f"]), wrong_args("hsetnx"));
    assert_eq!(c.cmd(&["HGET", "h"]), wrong_args("hget"));
}

#[test]
fn hmget_hdel_hexists_hlen_hstrlen() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["HSET", "h", "a", "1", "b", "22", "c", "333"]),
        int(3)
    );
    assert_eq!(
        c.cmd_raw(&["HMGET", "h", "a", "nope", "c", "a"]),
        b"*4\r\n$1\r\n1\r\n$-1\r\n$3\r\n333\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        c.cmd(&["HMGET", "missing", "a", "b"]),
        arr(vec![nil(), nil()])
    );
    assert_eq!(c.cmd(&["HLEN", "h"]), int(3));
    assert_eq!(c.cmd(&["HLEN", "missing"]), int(0));
    assert_eq!(c.cmd(&["HEXISTS", "h", "a"]), int(1));
    assert_eq!(c.cmd(&["HEXISTS", "h", "z"]), int(0));
    assert_eq!(c.cmd(&["HEXISTS", "missing", "a"]), int(0));
    assert_eq!(c.cmd(&["HSTRLEN", "h", "c"]), int(3));
    assert_eq!(c.cmd(&["HSTRLEN", "h", "z"]), int(0));
    assert_eq!(c.cmd(&["HSTRLEN", "missing", "z"]), int(0));
    assert_eq!(c.cmd(&["HDEL", "h", "a", "a", "nope"]), int(1));
    assert_eq!(c.cmd(&["HDEL", "h", "a"]), int(0));
    assert_eq!(c.cmd(&["HDEL", "missing", "a"]), int(0));
    assert_eq!(c.cmd(&["HLEN", "h"]), int(2));
    // Deleting the last field deletes the key.
    assert_eq!(c.cmd(&["EXPIRE", "h", "100"]), int(1));
    assert_eq!(c.cmd(&["HDEL", "h", "b", "c"]), int(2));
    assert_eq!(c.cmd(&["EXISTS", "h"]), int(0));
    assert_eq!(c.cmd(&["TYPE", "h"]), status("none"));
    assert_eq!(c.cmd(&["TTL", "h"]), int(-2));
    assert_eq!(c.cmd(&["HSET", "h", "x", "1"]), int(1));
    assert_eq!(c.cmd(&["TTL", "h"]), int(-1));

    assert_eq!(c.cmd(&["HMGET", "h"]), wrong_args("hmget"));
    assert_eq!(c.cmd(&["HDEL", "h"]), wrong_args("hdel"));
    assert_eq!(c.cmd(&["HLEN"]), wrong_args("hlen"));
    assert_eq!(c.cmd(&["HEXISTS", "h"]), wrong_args("hexists"));
    assert_eq!(c.cmd(&["HSTRLEN", "h"]), wrong_args("hstrlen"));
}

#[test]
fn hkeys_hvals_hgetall_resp2_and_resp3() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["HKEYS", "missing"]), arr(vec![]));
    assert_eq!(c.cmd(&["HVALS", "missing"]), arr(vec![]));
    assert_eq!(c.cmd_raw(&["HGETALL", "missing"]), b"*0\r\n");
    assert_eq!(
        c.cmd(&["HSET", "h", "f1", "v1", "f2", "v2", "f3", "v3"]),
        int(3)
    );
    assert_eq!(c.cmd(&["HKEYS", "h"]).sorted(), ["f1", "f2", "f3"]);
    assert_eq!(c.cmd(&["HVALS", "h"]).sorted(), ["v1", "v2", "v3"]);
    let all = c.cmd(&["HGETALL", "h"]);
    assert!(
        matches!(&all, Reply::Array(v) if v.len() == 6),
        "RESP2 flat array: {all:?}"
    );
    assert_eq!(
        sorted_pairs(&all),
        pairs(&[("f1", "v1"), ("f2", "v2"), ("f3", "v3")])
    );
    // HKEYS and HVALS agree on order with HGETALL.
    let keys = c.cmd(&["HKEYS", "h"]).strings();
    let vals = c.cmd(&["HVALS", "h"]).strings();
    let flat = all.strings();
    let zipped: Vec<String> = keys
        .iter()
        .zip(&vals)
        .flat_map(|(k, v)| [k.clone(), v.clone()])
        .collect();
    assert_eq!(zipped, flat);

    let mut c3 = s.raw();
    c3.hello3(&[]);
    c3.send_cmd(&["HGETALL", "h"]);
    let r = c3.read(CMD_TIMEOUT).unwrap();
    assert!(r.raw.starts_with(b"%3\r\n"), "RESP3 map: {:?}", r.raw);
    assert!(matches!(r.reply, Reply::Map(_)), "{:?}", r.reply);
    assert_eq!(
        sorted_pairs(&r.reply),
        pairs(&[("f1", "v1"), ("f2", "v2"), ("f3", "v3")])
    );
    assert_eq!(c3.cmd_raw(&["HGETALL", "missing"]), b"%0\r\n");
    assert_eq!(c3.cmd(&["HKEYS", "h"]).sorted(), ["f1", "f2", "f3"]);
    assert_eq!(c3.cmd_raw(&["HGET", "h", "nope"]), b"_\r\n");
    assert_eq!(
        c3.cmd(&["HMGET", "h", "f1", "nope"]),
        arr(vec![bulk("v1"), nil()])
    );

    assert_eq!(c.cmd(&["HGETALL"]), wrong_args("hgetall"));
    assert_eq!(c.cmd(&["HKEYS", "h", "x"]), wrong_args("hkeys"));
}

#[tokio::test]
async fn hgetall_with_redis_rs() {
    let s = start_target(&[]);
    let mut con = client(s.addr).await;
    let n: i64 = redis::cmd("HSET")
        .arg("h")
        .arg(&["a", "1", "b", "2"])
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let all: HashMap<String, String> = redis::cmd("HGETALL")
        .arg("h")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["a"], "1");
    assert_eq!(all["b"], "2");
}

#[test]
fn hincrby_hincrbyfloat() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["HINCRBY", "h", "n", "5"]), int(5));
    assert_eq!(c.cmd(&["HINCRBY", "h", "n", "-7"]), int(-2));
    assert_eq!(c.cmd(&["HGET", "h", "n"]), bulk("-2"));
    assert_eq!(
        c.cmd(&[
            "HSET",
            "h",
            "s",
            "abc",
            "big",
            "9223372036854775807",
            "f",
            "10.50"
        ]),
        int(3)
    );
    assert_eq!(
        c.cmd(&["HINCRBY", "h", "s", "1"]),
        err("ERR hash value is not an integer")
    );
    assert_eq!(
        c.cmd(&["HINCRBY", "h", "f", "1"]),
        err("ERR hash value is not an integer")
    );
    assert_eq!(c.cmd(&["HINCRBY", "h", "n", "abc"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["HINCRBY", "h", "n", "1.5"]), err(NOT_INTEGER));
    assert_eq!(
        c.cmd(&["HINCRBY", "h", "big", "1"]),
        err("ERR increment or decrement would overflow")
    );
    assert_eq!(c.cmd(&["HGET", "h", "big"]), bulk("9223372036854775807"));

    assert_eq!(c.cmd(&["HINCRBYFLOAT", "h", "f", "0.1"]), bulk("10.6"));
    assert_eq!(c.cmd(&["HINCRBYFLOAT", "h", "f", "-5"]), bulk("5.6"));
    assert_eq!(c.cmd(&["HINCRBYFLOAT", "h", "new", "2.0e2"]), bulk("200"));
    assert_eq!(c.cmd(&["HINCRBYFLOAT", "h", "n", "1.5"]), bulk("-0.5"));
    assert_eq!(c.cmd(&["HINCRBYFLOAT", "other", "x", "0.1"]), bulk("0.1"));
    assert_eq!(c.cmd(&["HINCRBYFLOAT", "other", "x", "0.2"]), bulk("0.3"));
    assert_eq!(
        c.cmd(&["HINCRBYFLOAT", "h", "s", "1"]),
        err("ERR hash value is not a float")
    );
    assert_eq!(
        c.cmd(&["HINCRBYFLOAT", "h", "f", "abc"]),
        err("ERR value is not a valid float")
    );
    assert_eq!(
        c.cmd(&["HINCRBYFLOAT", "h", "f", "inf"]),
        err("ERR value is NaN or Infinity")
    );
    assert_eq!(c.cmd(&["HGET", "h", "f"]), bulk("5.6"));

    assert_eq!(c.cmd(&["SET", "str", "1"]), ok());
    assert_eq!(c.cmd(&["HINCRBY", "str", "f", "1"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["HINCRBYFLOAT", "str", "f", "1"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["HINCRBY", "h", "n"]), wrong_args("hincrby"));
    assert_eq!(
        c.cmd(&["HINCRBYFLOAT", "h", "n"]),
        wrong_args("hincrbyfloat")
    );
}

#[test]
fn hrandfield() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd_raw(&["HRANDFIELD", "missing"]), b"$-1\r\n");
    assert_eq!(c.cmd_raw(&["HRANDFIELD", "missing", "3"]), b"*0\r\n");
    assert_eq!(
        c.cmd_raw(&["HRANDFIELD", "missing", "-3", "WITHVALUES"]),
        b"*0\r\n"
    );
    let fields: HashMap<String, String> = (1..=5)
        .map(|i| (format!("f{i}"), format!("v{i}")))
        .collect();
    let mut hset = vec!["HSET".to_string(), "h".into()];
    for (f, v) in &fields {
        hset.push(f.clone());
        hset.push(v.clone());
    }
    assert_eq!(c.cmd(&hset), int(5));

    let one = c.cmd(&["HRANDFIELD", "h"]).text();
    assert!(fields.contains_key(&one), "{one}");
    assert_eq!(c.cmd(&["HRANDFIELD", "h", "0"]), arr(vec![]));
    assert_eq!(c.cmd(&["HRANDFIELD", "h", "0", "WITHVALUES"]), arr(vec![]));
    for _ in 0..10 {
        let three = c.cmd(&["HRANDFIELD", "h", "3"]).strings();
        assert_eq!(three.len(), 3);
        assert_eq!(
            three.iter().collect::<HashSet<_>>().len(),
            3,
            "distinct: {three:?}"
        );
        assert!(three.iter().all(|f| fields.contains_key(f)));
    }
    let all = c.cmd(&["HRANDFIELD", "h", "10"]).sorted();
    assert_eq!(all, ["f1", "f2", "f3", "f4", "f5"]);
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let many = c.cmd(&["HRANDFIELD", "h", "-20"]).strings();
        assert_eq!(many.len(), 20);
        assert!(many.iter().all(|f| fields.contains_key(f)));
        seen.extend(many);
    }
    assert!(seen.len() > 1, "negative count repeats a single field only");
    let with = c.cmd(&["HRANDFIELD", "h", "3", "WITHVALUES"]);
    let p = with.pairs();
    assert_eq!(p.len(), 3);
    for (f, v) in &p {
        assert_eq!(fields[f], v.text());
    }
    let with = c.cmd(&["HRANDFIELD", "h", "-7", "withvalues"]);
    assert_eq!(with.items().len(), 14);
    for (f, v) in with.pairs() {
        assert_eq!(fields[&f], v.text());
    }

    // RESP3: WITHVALUES gives an array of [field, value] pairs.
    let mut c3 = s.raw();
    c3.hello3(&[]);
    let r = c3.cmd(&["HRANDFIELD", "h", "2", "WITHVALUES"]);
    let items = r.items();
    assert_eq!(items.len(), 2, "{r:?}");
    for item in items {
        let pair = item.strings();
        assert_eq!(pair.len(), 2, "{item:?}");
        assert_eq!(fields[&pair[0]], pair[1]);
    }
    let r = c3.cmd(&["HRANDFIELD", "h", "-3", "WITHVALUES"]);
    assert_eq!(r.items().len(), 3);
    assert!(r.items().iter().all(|i| i.items().len() == 2), "{r:?}");
    assert_eq!(c3.cmd(&["HRANDFIELD", "h", "2"]).items().len(), 2);

    assert_eq!(c.cmd(&["HRANDFIELD", "h", "1", "FOO"]), err(SYNTAX));
    assert_eq!(c.cmd(&["HRANDFIELD", "h", "abc"]), err(NOT_INTEGER));
    assert_eq!(
        c.cmd(&["HRANDFIELD", "h", "-9223372036854775808"]),
        err(
            "ERR value is out of range, value must between -9223372036854775807 and \
             9223372036854775807"
        )
    );
    assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
    assert_eq!(c.cmd(&["HRANDFIELD", "str"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["HRANDFIELD"]), wrong_args("hrandfield"));
}

fn hscan_all(c: &mut Raw, key: &str, extra: &[&str]) -> Vec<(String, String)> {
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..100_000 {
        let mut args = vec!["HSCAN", key, cursor.as_str()];
        args.extend_from_slice(extra);
        let r = c.cmd(&args);
        let items = r.items();
        assert_eq!(items.len(), 2, "{r:?}");
        for (f, v) in items[1].pairs() {
            seen.push((f, v.text()));
        }
        let next = items[0].text();
        if next == "0" {
            return seen;
        }
        assert!(Instant::now() < deadline, "HSCAN did not finish");
        cursor = next;
    }
    panic!("HSCAN did not finish in 100000 calls");
}

#[test]
fn hscan() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["HSCAN", "missing", "0"]),
        arr(vec![bulk("0"), arr(vec![])])
    );
    assert_eq!(c.cmd(&["HSET", "small", "a", "1", "b", "2"]), int(2));
    let got: HashSet<_> = hscan_all(&mut c, "small", &[]).into_iter().collect();
    assert_eq!(
        got,
        pairs(&[("a", "1"), ("b", "2")])
            .into_iter()
            .collect::<HashSet<_>>()
    );

    let mut hset = vec!["HSET".to_string(), "big".into()];
    for i in 0..300 {
        hset.push(format!("field:{i}"));
        hset.push(format!("value:{i}"));
    }
    assert_eq!(c.cmd(&hset), int(300));
    let expected: HashSet<(String, String)> = (0..300)
        .map(|i| (format!("field:{i}"), format!("value:{i}")))
        .collect();
    for extra in [&[][..], &["COUNT", "5"][..], &["COUNT", "1000"][..]] {
        let seen = hscan_all(&mut c, "big", extra);
        let set: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(set, expected, "HSCAN {extra:?}");
    }
    let m: HashSet<_> = hscan_all(&mut c, "big", &["MATCH", "field:1?", "COUNT", "20"])
        .into_iter()
        .collect();
    let exp: HashSet<_> = (10..20)
        .map(|i| (format!("field:{i}"), format!("value:{i}")))
        .collect();
    assert_eq!(m, exp);

    assert_eq!(c.cmd(&["HSCAN", "big", "abc"]), err("ERR invalid cursor"));
    assert_eq!(c.cmd(&["HSCAN", "big", "0", "COUNT", "0"]), err(SYNTAX));
    assert_eq!(c.cmd(&["HSCAN", "big", "0", "FOO"]), err(SYNTAX));
    assert_eq!(c.cmd(&["SET", "str", "v"]), ok());
    assert_eq!(c.cmd(&["HSCAN", "str", "0"]), err(WRONGTYPE));
    assert_eq!(c.cmd(&["HSCAN", "big"]), wrong_args("hscan"));
}

#[test]
fn wrongtype_on_hash_commands() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "s", "v"]), ok());
    for cmd in [
        vec!["HSET", "s", "f", "v"],
        vec!["HSETNX", "s", "f", "v"],
        vec!["HMSET", "s", "f", "v"],
        vec!["HGET", "s", "f"],
        vec!["HMGET", "s", "f"],
        vec!["HDEL", "s", "f"],
        vec!["HEXISTS", "s", "f"],
        vec!["HLEN", "s"],
        vec!["HKEYS", "s"],
        vec!["HVALS", "s"],
        vec!["HGETALL", "s"],
        vec!["HSTRLEN", "s", "f"],
    ] {
        assert_eq!(c.cmd(&cmd), err(WRONGTYPE), "{cmd:?}");
    }
    assert_eq!(c.cmd(&["GET", "s"]), bulk("v"));
}
