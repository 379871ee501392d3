#![allow(clippy::unwrap_used)]
//! Every data type through the router over 3 nodes: single-key commands reach their key's shard
//! wherever it is, multi-key commands on keys of one `{tag}` work (counted keys, STORE targets,
//! source and destination), and the same commands over keys of different shards get CROSSSHARD.

use tests::*;

/// Keys `<prefix>:<i>` spread over every shard.
fn spread(prefix: &str) -> Vec<String> {
    (0..24).map(|i| format!("{prefix}:{i}")).collect()
}

/// Two keys the ring puts on different shards.
fn two_shards(cl: &Cluster, c: &mut Raw) -> (String, String) {
    let ids = cl.ids();
    let first = "cross:0".to_string();
    let home = ring_locate(c, &first, &ids);
    for i in 1..1000 {
        let k = format!("cross:{i}");
        if ring_locate(c, &k, &ids) != home {
            return (first, k);
        }
    }
    panic!("1000 keys all on one shard");
}

fn assert_cross_shard(r: &Reply, what: &str) {
    assert!(
        r.error_text().is_some_and(|e| e.starts_with("CROSSSHARD ")),
        "{what}: {r:?}"
    );
}

#[test]
fn sets_through_the_router() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    for k in spread("s") {
        assert_eq!(c.cmd(&["SADD", &k, "a", "b", "1"]), int(3));
        assert_eq!(c.cmd(&["SCARD", &k]), int(3));
        assert_eq!(c.cmd(&["TYPE", &k]), status("set"));
    }
    assert_eq!(c.cmd(&["SADD", "{u}a", "x", "y"]), int(2));
    assert_eq!(c.cmd(&["SADD", "{u}b", "y", "z"]), int(2));
    assert_eq!(c.cmd(&["SUNIONSTORE", "{u}d", "{u}a", "{u}b"]), int(3));
    assert_eq!(c.cmd(&["SINTER", "{u}a", "{u}b"]).sorted(), ["y"]);
    assert_eq!(c.cmd(&["SINTERCARD", "2", "{u}a", "{u}b"]), int(1));
    assert_eq!(c.cmd(&["SMOVE", "{u}a", "{u}b", "x"]), int(1));
    let (k1, k2) = two_shards(&cl, &mut c);
    for cmd in [
        vec!["SUNIONSTORE", &k1, &k1, &k2],
        vec!["SINTER", &k1, &k2],
        vec!["SINTERCARD", "2", &k1, &k2],
        vec!["SMOVE", &k1, &k2, "x"],
    ] {
        assert_cross_shard(&c.cmd(&cmd), cmd[0]);
    }
}

#[test]
fn lists_through_the_router() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    for k in spread("l") {
        assert_eq!(c.cmd(&["RPUSH", &k, "a", "b", "c"]), int(3));
        assert_eq!(c.cmd(&["LRANGE", &k, "0", "-1"]), bulks(&["a", "b", "c"]));
        assert_eq!(c.cmd(&["LPOP", &k]), bulk("a"));
    }
    assert_eq!(c.cmd(&["RPUSH", "{q}a", "1", "2"]), int(2));
    assert_eq!(
        c.cmd(&["LMOVE", "{q}a", "{q}b", "LEFT", "RIGHT"]),
        bulk("1")
    );
    assert_eq!(
        c.cmd(&["LMPOP", "2", "{q}x", "{q}b", "LEFT"]),
        arr(vec![bulk("{q}b"), bulks(&["1"])])
    );
    // Blocking commands run on a connection of the client's own.
    assert_eq!(
        c.cmd(&["BLPOP", "{q}a", "0"]),
        arr(vec![bulk("{q}a"), bulk("2")])
    );
    let (k1, k2) = two_shards(&cl, &mut c);
    assert_cross_shard(&c.cmd(&["BLPOP", &k1, &k2, "1"]), "BLPOP");
    assert_cross_shard(&c.cmd(&["LMOVE", &k1, &k2, "LEFT", "RIGHT"]), "LMOVE");
    assert_cross_shard(&c.cmd(&["RPOPLPUSH", &k1, &k2]), "RPOPLPUSH");
    assert_cross_shard(&c.cmd(&["LMPOP", "2", &k1, &k2, "LEFT"]), "LMPOP");
}

#[test]
fn sorted_sets_through_the_router() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    for k in spread("z") {
        assert_eq!(c.cmd(&["ZADD", &k, "1", "a", "2", "b"]), int(2));
        assert_eq!(c.cmd(&["ZRANGE", &k, "0", "-1"]), bulks(&["a", "b"]));
        assert_eq!(c.cmd(&["ZSCORE", &k, "b"]), bulk("2"));
    }
    assert_eq!(c.cmd(&["ZADD", "{r}a", "1", "x", "2", "y"]), int(2));
    assert_eq!(c.cmd(&["ZADD", "{r}b", "5", "y"]), int(1));
    assert_eq!(c.cmd(&["ZUNIONSTORE", "{r}d", "2", "{r}a", "{r}b"]), int(2));
    assert_eq!(c.cmd(&["ZSCORE", "{r}d", "y"]), bulk("7"));
    assert_eq!(c.cmd(&["ZINTERCARD", "2", "{r}a", "{r}b"]), int(1));
    assert_eq!(c.cmd(&["ZRANGESTORE", "{r}e", "{r}a", "0", "0"]), int(1));
    let (k1, k2) = two_shards(&cl, &mut c);
    assert_cross_shard(&c.cmd(&["ZUNIONSTORE", &k1, "2", &k1, &k2]), "ZUNIONSTORE");
    assert_cross_shard(&c.cmd(&["ZINTER", "2", &k1, &k2]), "ZINTER");
    assert_cross_shard(&c.cmd(&["ZRANGESTORE", &k1, &k2, "0", "-1"]), "ZRANGESTORE");
}

#[test]
fn bitmaps_hyperloglog_and_geo_through_the_router() {
    let cl = Cluster::builder().shards(3).start();
    let mut c = cl.raw();
    for k in spread("b") {
        assert_eq!(c.cmd(&["SETBIT", &k, "7", "1"]), int(0));
        assert_eq!(c.cmd(&["BITCOUNT", &k]), int(1));
    }
    for k in spread("p") {
        assert_eq!(c.cmd(&["PFADD", &k, "a", "b", "c"]), int(1));
        assert_eq!(c.cmd(&["PFCOUNT", &k]), int(3));
    }
    for k in spread("g") {
        assert_eq!(
            c.cmd(&["GEOADD", &k, "13.361389", "38.115556", "Palermo"]),
            int(1)
        );
        assert_eq!(c.cmd(&["GEOHASH", &k, "Palermo"]), bulks(&["sqc8b49rny0"]));
    }
    assert_eq!(c.cmd(&["SETBIT", "{b}x", "1", "1"]), int(0));
    assert_eq!(c.cmd(&["BITOP", "OR", "{b}d", "{b}x", "{b}y"]), int(1));
    assert_eq!(c.cmd(&["PFADD", "{h}x", "1", "2"]), int(1));
    assert_eq!(c.cmd(&["PFMERGE", "{h}d", "{h}x", "{h}y"]), ok());
    assert_eq!(c.cmd(&["PFCOUNT", "{h}d", "{h}x"]), int(2));
    let (k1, k2) = two_shards(&cl, &mut c);
    assert_cross_shard(&c.cmd(&["BITOP", "OR", &k1, &k1, &k2]), "BITOP");
    assert_cross_shard(&c.cmd(&["PFMERGE", &k1, &k2]), "PFMERGE");
    assert_cross_shard(&c.cmd(&["PFCOUNT", &k1, &k2]), "PFCOUNT");
    let r = c.cmd(&["GEORADIUS", &k1, "13", "38", "100", "km", "STORE", &k2]);
    assert_cross_shard(&r, "GEORADIUS STORE");
}
