#![allow(clippy::unwrap_used)]
//! The router over 3 nodes as a cluster: placement matches the shared ring, multi-key commands
//! split per shard and merge in order, fan-out commands (DBSIZE, KEYS, SCAN, FLUSHALL) cover every
//! shard, cross-shard commands that cannot be split are refused, big pipelines keep their order,
//! and the admin commands, INFO, RESP3 and the metrics endpoint answer. Also over redis-servers.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use tests::*;

/// `n` keys `key:<i>`.
fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key:{i}")).collect()
}

fn mset_args(keys: &[String], value: impl Fn(&str) -> String) -> Vec<String> {
    let mut args = vec!["MSET".to_string()];
    for k in keys {
        args.push(k.clone());
        args.push(value(k));
    }
    args
}

fn with_cmd(cmd: &str, keys: &[String]) -> Vec<String> {
    std::iter::once(cmd.to_string())
        .chain(keys.iter().cloned())
        .collect()
}

/// Whether an error is the router's refusal of a command whose keys live on several shards.
fn is_cross_shard(r: &Reply) -> bool {
    r.error_text()
        .is_some_and(|e| e.starts_with("CROSSSHARD") || e.starts_with("CROSSSLOT"))
}

#[test]
fn pipeline_of_10000_requests_keeps_order() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    const N: usize = 10_000;
    let mut batch = Vec::with_capacity(N * 40);
    let mut expected = Vec::with_capacity(N);
    let mut counters: HashMap<String, i64> = HashMap::new();
    for i in 0..N {
        match i % 5 {
            0 => {
                batch.extend(encode(&["SET", &format!("k_{i}"), &format!("v_{i}")]));
                expected.push(ok());
            }
            1 => {
                // The key the previous request wrote, maybe on another shard than the last GET.
                batch.extend(encode(&["GET", &format!("k_{}", i - 1)]));
                expected.push(bulk(format!("v_{}", i - 1)));
            }
            2 => {
                batch.extend(encode(&["ECHO", &i.to_string()]));
                expected.push(bulk(i.to_string()));
            }
            3 => {
                let ctr = format!("ctr:{}", i % 7);
                batch.extend(encode(&["INCR", &ctr]));
                let n = counters.entry(ctr).or_default();
                *n += 1;
                expected.push(int(*n));
            }
            _ => {
                // A multi-key command in the middle of the pipeline: split, merged, in place.
                // k_{i-4} and k_{i-9} (k_0 at first) were SET earlier in this pipeline.
                let b = i.saturating_sub(9);
                batch.extend(encode(&[
                    "MGET",
                    &format!("k_{}", i - 4),
                    "nope",
                    &format!("k_{b}"),
                ]));
                let b_val = bulk(format!("v_{b}"));
                expected.push(arr(vec![bulk(format!("v_{}", i - 4)), nil(), b_val]));
            }
        }
    }
    // Send everything from another thread while this one reads, so neither side's socket buffer
    // can fill and stall the other; the router sees one long pipeline either way.
    let mut writer = c.stream().try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&batch).map(|_| writer.flush()));
    for (i, want) in expected.iter().enumerate() {
        let got = c.reply();
        assert_eq!(&got, want, "reply #{i} out of order or wrong");
    }
    sender.join().unwrap().unwrap().unwrap();
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
}

#[test]
fn mget_mset_of_1000_keys_across_all_shards() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    let ks = keys(1000);
    let ids = cl.ids();
    // RING LOCATE agrees with the shared ring code and uses every shard.
    let mut per_shard: HashMap<String, usize> = HashMap::new();
    for k in &ks {
        let located = ring_locate(&mut c, k, &ids);
        assert_eq!(located, cl.owner(k), "RING LOCATE {k} vs the ring");
        *per_shard.entry(located).or_default() += 1;
    }
    assert_eq!(
        per_shard.len(),
        3,
        "1000 keys should span 3 shards: {per_shard:?}"
    );
    for (id, n) in &per_shard {
        assert!(
            *n > 200,
            "shard {id} owns only {n} of 1000 keys: {per_shard:?}"
        );
    }

    assert_eq!(c.cmd(&mset_args(&ks, |k| format!("val-{k}"))), ok());
    // Ask for every key plus missing ones in between, in a shuffled but known order.
    let mut asked = Vec::new();
    for (i, k) in ks.iter().enumerate().rev() {
        asked.push(k.clone());
        if i % 100 == 0 {
            asked.push(format!("missing:{i}"));
        }
    }
    let r = c.cmd(&with_cmd("MGET", &asked));
    let got = r.items();
    assert_eq!(got.len(), asked.len());
    for (k, v) in asked.iter().zip(&got) {
        if k.starts_with("missing:") {
            assert_eq!(v, &nil(), "{k}");
        } else {
            assert_eq!(v, &bulk(format!("val-{k}")), "{k}");
        }
    }
    // Each key went to the node that owns it, and only there.
    for shard in &cl.shards {
        let mut direct = shard.primary.raw();
        let owned: Vec<&String> = ks.iter().filter(|k| cl.owner(k) == shard.id).collect();
        assert_eq!(
            direct.cmd(&["DBSIZE"]).int(),
            owned.len() as i64,
            "shard {} holds exactly its keys",
            shard.id
        );
        for k in owned.iter().take(50) {
            assert_eq!(
                direct.cmd(&["GET", k]),
                bulk(format!("val-{k}")),
                "{k} on {}",
                shard.id
            );
        }
    }
}

#[test]
fn del_exists_touch_unlink_sum_over_shards() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    let ks = keys(300);
    assert_eq!(c.cmd(&mset_args(&ks, |_| "1".into())), ok());
    let mut exists = with_cmd("EXISTS", &ks);
    exists.push("missing".into());
    exists.push(ks[0].clone()); // counted twice, like Redis
    assert_eq!(c.cmd(&exists), int(301));
    let mut touch = with_cmd("TOUCH", &ks[..100]);
    touch.push("missing".into());
    assert_eq!(c.cmd(&touch), int(100));
    let mut del = with_cmd("DEL", &ks[..150]);
    del.push(ks[0].clone()); // deleted once
    del.push("missing".into());
    assert_eq!(c.cmd(&del), int(150));
    assert_eq!(c.cmd(&with_cmd("UNLINK", &ks[100..250])), int(100));
    assert_eq!(c.cmd(&with_cmd("EXISTS", &ks)), int(50));
    assert_eq!(c.cmd(&["DBSIZE"]), int(50));
    assert_eq!(cl.backend_dbsize(), 50);
}

#[test]
fn dbsize_is_the_sum_of_the_nodes() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    let ks = keys(777);
    assert_eq!(c.cmd(&mset_args(&ks, |_| "v".into())), ok());
    for i in 0..23 {
        assert_eq!(c.cmd(&["HSET", &format!("h:{i}"), "f", "v"]), int(1));
    }
    let per_node: Vec<i64> = cl
        .shards
        .iter()
        .map(|s| s.primary.raw().cmd(&["DBSIZE"]).int())
        .collect();
    assert!(
        per_node.iter().all(|n| *n > 0),
        "every node got keys: {per_node:?}"
    );
    assert_eq!(per_node.iter().sum::<i64>(), 800);
    assert_eq!(c.cmd(&["DBSIZE"]), int(800));
    assert_eq!(c.cmd(&["FLUSHALL"]), ok());
    assert_eq!(c.cmd(&["DBSIZE"]), int(0));
    assert_eq!(cl.backend_dbsize(), 0, "FLUSHALL reached every node");
}

#[test]
fn scan_walks_every_key_exactly_once() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    let ks = keys(1000);
    assert_eq!(c.cmd(&mset_args(&ks, |_| "v".into())), ok());
    for i in 0..50 {
        assert_eq!(c.cmd(&["HSET", &format!("hash:{i}"), "f", "v"]), int(1));
    }
    for count in ["10", "100", "5000"] {
        let scanned = scan_all(&mut c, &["COUNT", count]);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for k in &scanned {
            *seen.entry(k.as_str()).or_default() += 1;
        }
        let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            dups.is_empty(),
            "COUNT {count}: keys returned twice: {dups:?}"
        );
        assert_eq!(scanned.len(), 1050, "COUNT {count}: every key once");
        for k in &ks {
            assert!(
                seen.contains_key(k.as_str()),
                "COUNT {count}: {k} never returned"
            );
        }
    }
    let matched = scan_all(&mut c, &["MATCH", "key:1??", "COUNT", "30"]);
    let want: HashSet<String> = (100..200).map(|i| format!("key:{i}")).collect();
    assert_eq!(matched.iter().cloned().collect::<HashSet<_>>(), want);
    assert_eq!(matched.len(), 100);
    assert_eq!(scan_all(&mut c, &["TYPE", "hash"]).len(), 50);
    // An empty cluster: one call, cursor 0.
    assert_eq!(c.cmd(&["FLUSHALL"]), ok());
    assert_eq!(c.cmd(&["SCAN", "0"]), arr(vec![bulk("0"), arr(vec![])]));
}

#[test]
fn keys_merges_every_shard() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    let ks = keys(300);
    assert_eq!(c.cmd(&mset_args(&ks, |_| "v".into())), ok());
    let all: HashSet<String> = ks.iter().cloned().collect();
    let got = c.cmd(&["KEYS", "*"]).strings();
    assert_eq!(got.len(), 300, "no duplicates");
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), all);
    assert_eq!(
        c.cmd(&["KEYS", "key:2?"]).sorted(),
        (20..30).map(|i| format!("key:{i}")).collect::<Vec<_>>()
    );
    let k = c.cmd(&["RANDOMKEY"]).text();
    assert!(all.contains(&k), "RANDOMKEY {k}");
}

#[test]
fn cross_shard_commands_are_refused_same_tag_works() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    let a = cl.keys_on("alpha", "x", 1).remove(0);
    let b = cl.keys_on("bravo", "x", 1).remove(0);
    assert_eq!(c.cmd(&["SET", &a, "1"]), ok());

    let r = c.cmd(&["MSETNX", &a, "2", &b, "2"]);
    assert!(is_cross_shard(&r), "MSETNX across shards: {r:?}");
    let r = c.cmd(&["MSETNX", &b, "2", "another-missing-key-on-any-shard", "2"]);
    if cl.owner("another-missing-key-on-any-shard") != "bravo" {
        assert!(is_cross_shard(&r), "MSETNX across shards: {r:?}");
    }
    assert_eq!(
        c.cmd(&["GET", &a]),
        bulk("1"),
        "a refused MSETNX writes nothing"
    );
    assert_eq!(
        c.cmd(&["EXISTS", &b]),
        int(0),
        "a refused MSETNX writes nothing"
    );

    for cmd in ["RENAME", "RENAMENX", "COPY"] {
        let r = c.cmd(&[cmd, &a, &b]);
        assert!(is_cross_shard(&r), "{cmd} across shards: {r:?}");
    }
    assert_eq!(c.cmd(&["GET", &a]), bulk("1"), "the source is untouched");
    assert_eq!(c.cmd(&["EXISTS", &b]), int(0));

    // Keys sharing a {tag} live on one shard, so the same commands work.
    let ids = cl.ids();
    let (t1, t2, t3) = ("{acct:42}.balance", "{acct:42}.owner", "{acct:42}.copy");
    let s1 = ring_locate(&mut c, t1, &ids);
    assert_eq!(ring_locate(&mut c, t2, &ids), s1);
    assert_eq!(ring_locate(&mut c, t3, &ids), s1);
    assert_eq!(
        ring_locate(&mut c, "acct:42", &ids),
        s1,
        "only the tag is hashed"
    );
    assert_eq!(c.cmd(&["MSETNX", t1, "10", t2, "ann"]), int(1));
    assert_eq!(c.cmd(&["COPY", t1, t3]), int(1));
    assert_eq!(c.cmd(&["RENAME", t2, "{acct:42}.name"]), ok());
    assert_eq!(
        c.cmd(&["MGET", t1, t2, t3, "{acct:42}.name"]),
        arr(vec![bulk("10"), nil(), bulk("10"), bulk("ann")])
    );
}

#[test]
fn ring_admin_commands() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    let ids = cl.ids();
    let nodes = c.cmd(&["RING", "NODES"]);
    assert!(!nodes.is_error(), "RING NODES: {nodes:?}");
    let text = flat_text(&nodes);
    for s in &cl.shards {
        assert!(
            text.contains(&s.id),
            "RING NODES lacks shard {}: {nodes:?}",
            s.id
        );
        assert!(
            text.contains(&s.primary.addr.to_string()),
            "RING NODES lacks {} of shard {}: {nodes:?}",
            s.primary.addr,
            s.id
        );
    }
    let st = c.cmd(&["RING", "STATUS"]);
    assert!(!st.is_error(), "RING STATUS: {st:?}");
    let text = flat_text(&st).to_lowercase();
    assert!(
        text.contains("epoch"),
        "RING STATUS names the epoch: {st:?}"
    );
    for id in &ids {
        assert!(
            text.contains(id.as_str()),
            "RING STATUS lacks shard {id}: {st:?}"
        );
    }
    for k in ["a", "user:1", "{user:1}.mail", "", "\u{00e9}t\u{00e9}"] {
        assert_eq!(
            ring_locate(&mut c, k, &ids),
            cl.owner(k),
            "RING LOCATE {k:?}"
        );
    }
    assert!(
        c.cmd(&["RING", "LOCATE"]).is_error(),
        "RING LOCATE needs a key"
    );
    assert!(c.cmd(&["RING", "NOSUCH"]).is_error());
    assert!(c.cmd(&["RING"]).is_error());
    // Lower case works too, like every Redis command.
    assert!(!c.cmd(&["ring", "nodes"]).is_error());
}

#[test]
fn info_has_a_router_section_and_resp3_maps() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    let info = c.cmd(&["INFO"]).text();
    assert!(
        info.to_lowercase().contains("# router"),
        "INFO has a router section: {info}"
    );
    assert_eq!(c.cmd(&["HSET", "h", "a", "1", "b", "2", "c", "3"]), int(3));
    let r = c.hello3(&[]);
    assert_eq!(r.get("proto"), Some(int(3)), "{r:?}");
    let raw = c.cmd_raw(&["HGETALL", "h"]);
    assert!(
        raw.starts_with(b"%3\r\n"),
        "HGETALL after HELLO 3 is a map: {:?}",
        String::from_utf8_lossy(&raw)
    );
    assert_eq!(c.cmd_raw(&["GET", "missing"]), b"_\r\n");
    let r = c.cmd(&["MGET", "h", "missing"]);
    assert_eq!(r, arr(vec![nil(), nil()]));
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    for i in 0..100 {
        assert_eq!(c.cmd(&["SET", &format!("m:{i}"), "v"]), ok());
        assert_eq!(c.cmd(&["GET", &format!("m:{i}")]), bulk("v"));
    }
    let (code, head, body) = http_get(cl.router().metrics, "/metrics");
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(
        head.to_lowercase().contains("content-type: text/plain"),
        "Prometheus text format: {head}"
    );
    assert!(body.contains("ringcache_requests_total"), "{body}");
    // Some sample of the counter is positive after the traffic above.
    let total: f64 = body
        .lines()
        .filter(|l| l.starts_with("ringcache_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        total >= 200.0,
        "ringcache_requests_total sums to {total}:\n{body}"
    );
    for line in body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad sample line {line:?}"
        );
    }
}

#[test]
fn works_over_redis_server_backends() {
    let cl = Cluster::builder().shards(3).backend(Target::Redis).start();
    let mut c = cl.raw();
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
    assert_eq!(c.cmd(&["SET", "a", "1"]), ok());
    assert_eq!(c.cmd(&["GET", "a"]), bulk("1"));
    let ks = keys(500);
    assert_eq!(c.cmd(&mset_args(&ks, |k| format!("v{k}"))), ok());
    let r = c.cmd(&with_cmd("MGET", &ks));
    for (k, v) in ks.iter().zip(r.items()) {
        assert_eq!(v, bulk(format!("v{k}")), "{k}");
    }
    assert_eq!(c.cmd(&["DBSIZE"]), int(501));
    assert_eq!(cl.backend_dbsize(), 501);
    for s in &cl.shards {
        let n = s.primary.raw().cmd(&["DBSIZE"]).int();
        assert!(n > 0, "redis {} got keys", s.id);
    }
    let scanned = scan_all(&mut c, &["COUNT", "50"]);
    assert_eq!(scanned.len(), 501);
    assert_eq!(scanned.iter().collect::<HashSet<_>>().len(), 501);
    assert_eq!(c.cmd(&with_cmd("DEL", &ks[..200])), int(200));
    assert_eq!(c.cmd(&with_cmd("EXISTS", &ks)), int(300));
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    let r = c.hello3(&[]);
    assert_eq!(r.get("proto"), Some(int(3)));
    let r = c.cmd(&["HGETALL", "h"]);
    assert!(
        matches!(r, Reply::Map(_)),
        "HGETALL after HELLO 3 over redis: {r:?}"
    );
    assert_eq!(c.cmd(&["FLUSHALL"]), ok());
    assert_eq!(cl.backend_dbsize(), 0);
}
