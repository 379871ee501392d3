#![allow(clippy::unwrap_used)]
//! Pub/sub on a node: SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE and their UNSUBSCRIBE, PUBLISH and
//! SPUBLISH, PUBSUB introspection, RESP2's subscribed mode and RESP3's pushes, CLIENT REPLY,
//! the pubsub output buffer limit, keyspace notifications, and PUBLISH reaching a replica's
//! subscribers. Exact Redis 7 replies (run with `RINGCACHE_TEST_TARGET=redis` to check them).

use std::time::{Duration, Instant};

use tests::*;

fn push(items: &[&str], count: i64) -> Reply {
    let mut v: Vec<Reply> = items.iter().map(bulk).collect();
    v.push(int(count));
    arr(v)
}

fn message(channel: &str, payload: &str) -> Reply {
    bulks(&["message", channel, payload])
}

/// Sends one command and reads one reply per `n` (SUBSCRIBE a b c answers three).
fn cmd_n(c: &mut Raw, args: &[&str], n: usize) -> Vec<Reply> {
    c.send_cmd(args);
    (0..n).map(|_| c.reply()).collect()
}

#[test]
fn subscribe_publish_unsubscribe() {
    let s = start_target(&[]);
    let mut sub = s.raw();
    let mut c = s.raw();
    assert_eq!(
        cmd_n(&mut sub, &["SUBSCRIBE", "chan1", "chan2", "chan1"], 3),
        vec![
            push(&["subscribe", "chan1"], 1),
            push(&["subscribe", "chan2"], 2),
            push(&["subscribe", "chan1"], 2),
        ]
    );
    assert_eq!(c.cmd(&["PUBLISH", "chan1", "hello"]), int(1));
    assert_eq!(c.cmd(&["PUBLISH", "chan2", "world"]), int(1));
    assert_eq!(c.cmd(&["PUBLISH", "other", "x"]), int(0));
    assert_eq!(
        sub.read_reply(CMD_TIMEOUT).unwrap(),
        b"*3\r\n$7\r\nmessage\r\n$5\r\nchan1\r\n$5\r\nhello\r\n"
    );
    assert_eq!(sub.reply(), message("chan2", "world"));
    // A second subscriber gets its own copy.
    let mut sub2 = s.raw();
    assert_eq!(
        sub2.cmd(&["SUBSCRIBE", "chan1"]),
        push(&["subscribe", "chan1"], 1)
    );
    assert_eq!(c.cmd(&["PUBLISH", "chan1", "both"]), int(2));
    assert_eq!(sub.reply(), message("chan1", "both"));
    assert_eq!(sub2.reply(), message("chan1", "both"));
    assert_eq!(
        sub.cmd(&["UNSUBSCRIBE", "chan1", "nope"]),
        push(&["unsubscribe", "chan1"], 1)
    );
    assert_eq!(sub.reply(), push(&["unsubscribe", "nope"], 1));
    assert_eq!(c.cmd(&["PUBLISH", "chan1", "x"]), int(1));
    assert_eq!(sub2.reply(), message("chan1", "x"));
    // Without arguments: every channel left.
    assert_eq!(
        sub.cmd(&["UNSUBSCRIBE"]),
        push(&["unsubscribe", "chan2"], 0)
    );
    assert_eq!(c.cmd(&["PUBLISH", "chan2", "x"]), int(0));
    // Not subscribed at all: a nil channel and 0, and a normal connection again.
    assert_eq!(
        sub.cmd(&["UNSUBSCRIBE"]),
        arr(vec![bulk("unsubscribe"), nil(), int(0)])
    );
    assert_eq!(
        sub.cmd(&["PUNSUBSCRIBE"]),
        arr(vec![bulk("punsubscribe"), nil(), int(0)])
    );
    assert_eq!(sub.cmd(&["PING"]), status("PONG"));
    assert_eq!(sub.cmd(&["SET", "k", "v"]), ok());
}

#[test]
fn patterns_and_order_of_delivery() {
    let s = start_target(&[]);
    let mut sub = s.raw();
    let mut other = s.raw();
    let mut c = s.raw();
    assert_eq!(
        cmd_n(&mut sub, &["PSUBSCRIBE", "foo.*", "bar.*"], 2),
        vec![
            push(&["psubscribe", "foo.*"], 1),
            push(&["psubscribe", "bar.*"], 2)
        ]
    );
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "foo.bar"]),
        push(&["subscribe", "foo.bar"], 3)
    );
    assert_eq!(
        cmd_n(&mut other, &["PSUBSCRIBE", "foo*", "bar.*"], 2).len(),
        2
    );
    assert_eq!(c.cmd(&["PUBSUB", "NUMPAT"]), int(3));
    assert_eq!(c.cmd(&["PUBLISH", "foo1", "x"]), int(1));
    assert_eq!(other.reply(), bulks(&["pmessage", "foo*", "foo1", "x"]));
    // The channel's subscribers first, then each matching pattern's.
    assert_eq!(c.cmd(&["PUBLISH", "foo.bar", "hi"]), int(3));
    assert_eq!(sub.reply(), message("foo.bar", "hi"));
    assert_eq!(sub.reply(), bulks(&["pmessage", "foo.*", "foo.bar", "hi"]));
    assert_eq!(other.reply(), bulks(&["pmessage", "foo*", "foo.bar", "hi"]));
    assert_eq!(c.cmd(&["PUBLISH", "barfoo.1", "x"]), int(0));
    assert_eq!(
        sub.cmd(&["PUNSUBSCRIBE", "foo.*"]),
        push(&["punsubscribe", "foo.*"], 2)
    );
    assert_eq!(c.cmd(&["PUBLISH", "foo.1", "x"]), int(1));
    assert_eq!(other.reply(), bulks(&["pmessage", "foo*", "foo.1", "x"]));
    // The pattern `bar.*` is still held by `other`.
    assert_eq!(c.cmd(&["PUBSUB", "NUMPAT"]), int(2));
}

#[test]
fn resp2_subscribed_mode_allows_only_pubsub_commands() {
    let s = start_target(&[]);
    let mut sub = s.raw();
    let mut c = s.raw();
    sub.cmd(&["SUBSCRIBE", "ch"]);
    assert_eq!(
        sub.cmd(&["GET", "k"]),
        err("ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
    );
    assert_eq!(
        sub.cmd(&["CLIENT", "ID"]),
        err("ERR Can't execute 'client|id': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
    );
    assert_eq!(sub.cmd(&["PING"]), bulks(&["pong", ""]));
    assert_eq!(sub.cmd(&["PING", "foo"]), bulks(&["pong", "foo"]));
    // RESET leaves subscribed mode and drops the subscriptions.
    assert_eq!(sub.cmd(&["RESET"]), status("RESET"));
    assert_eq!(c.cmd(&["PUBLISH", "ch", "x"]), int(0));
    assert_eq!(
        c.cmd(&["PUBSUB", "NUMSUB", "ch"]),
        arr(vec![bulk("ch"), int(0)])
    );
    assert_eq!(sub.cmd(&["PING"]), status("PONG"));
    // QUIT is allowed too.
    sub.cmd(&["PSUBSCRIBE", "*"]);
    assert_eq!(sub.cmd(&["QUIT"]), ok());
    assert!(sub.is_closed(Duration::from_secs(5)));
}

#[test]
fn resp3_pushes_and_any_command_while_subscribed() {
    let s = start_target(&[]);
    let mut sub = s.raw();
    sub.hello3(&[]);
    sub.send_cmd(&["SUBSCRIBE", "ch"]);
    assert_eq!(
        sub.read_reply(CMD_TIMEOUT).unwrap(),
        b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    );
    assert_eq!(sub.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(sub.cmd(&["PING"]), status("PONG"));
    // Its own publish: the push comes before the publish's reply.
    sub.send_cmd(&["PUBLISH", "ch", "me"]);
    assert_eq!(
        sub.read_reply(CMD_TIMEOUT).unwrap(),
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nme\r\n"
    );
    assert_eq!(sub.reply(), int(1));
    sub.send_cmd(&["UNSUBSCRIBE"]);
    assert_eq!(
        sub.read_reply(CMD_TIMEOUT).unwrap(),
        b">3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n"
    );
    sub.send_cmd(&["PUNSUBSCRIBE"]);
    assert_eq!(
        sub.read_reply(CMD_TIMEOUT).unwrap(),
        b">3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n"
    );
}

#[test]
fn a_blocked_resp3_subscriber_still_gets_messages() {
    let s = start_target(&[]);
    let mut sub = s.raw();
    let mut c = s.raw();
    sub.hello3(&[]);
    sub.cmd(&["SUBSCRIBE", "ch"]);
    sub.send_cmd(&["BLPOP", "q", "0"]);
    assert_eventually!(
        num(&info(&mut c, "clients"), "blocked_clients") == 1,
        Duration::from_secs(5)
    );
    assert_eq!(c.cmd(&["PUBLISH", "ch", "while-blocked"]), int(1));
    assert_eq!(sub.reply(), message("ch", "while-blocked"));
    assert_eq!(c.cmd(&["RPUSH", "q", "v"]), int(1));
    assert_eq!(sub.reply(), bulks(&["q", "v"]));
}

#[test]
fn client_reply_off_still_delivers_pushes() {
    let s = start_target(&[]);
    let mut sub = s.raw();
    let mut c = s.raw();
    sub.hello3(&[]);
    sub.send_cmd(&["CLIENT", "REPLY", "OFF"]);
    sub.send_cmd(&["SET", "k", "v"]);
    assert_eq!(sub.cmd(&["SUBSCRIBE", "ch"]), push(&["subscribe", "ch"], 1));
    assert_eq!(c.cmd(&["PUBLISH", "ch", "x"]), int(1));
    assert_eq!(sub.reply(), message("ch", "x"));
    assert_eq!(sub.cmd(&["CLIENT", "REPLY", "ON"]), ok());
    // SKIP drops the next reply only.
    sub.send_cmd(&["CLIENT", "REPLY", "SKIP"]);
    sub.send_cmd(&["GET", "k"]);
    assert_eq!(sub.cmd(&["ECHO", "after"]), bulk("after"));
    assert_eq!(
        sub.cmd(&["CLIENT", "REPLY", "MAYBE"]),
        err("ERR syntax error")
    );
}

#[test]
fn shard_channels() {
    let s = start_target(&[]);
    let mut sub = s.raw();
    let mut plain = s.raw();
    let mut c = s.raw();
    assert_eq!(
        cmd_n(&mut sub, &["SSUBSCRIBE", "chan1", "chan1"], 2),
        vec![
            push(&["ssubscribe", "chan1"], 1),
            push(&["ssubscribe", "chan1"], 1)
        ]
    );
    assert_eq!(
        sub.cmd(&["SSUBSCRIBE", "chan2"]),
        push(&["ssubscribe", "chan2"], 2)
    );
    plain.cmd(&["SUBSCRIBE", "chan1"]);
    assert_eq!(c.cmd(&["SPUBLISH", "chan1", "hello"]), int(1));
    assert_eq!(sub.reply(), bulks(&["smessage", "chan1", "hello"]));
    assert_eq!(c.cmd(&["PUBLISH", "chan1", "plain"]), int(1));
    assert_eq!(plain.reply(), message("chan1", "plain"));
    assert_eq!(
        c.cmd(&["PUBSUB", "SHARDNUMSUB", "chan1", "none"]),
        arr(vec![bulk("chan1"), int(1), bulk("none"), int(0)])
    );
    assert_eq!(
        c.cmd(&["PUBSUB", "SHARDCHANNELS"]).sorted(),
        ["chan1", "chan2"]
    );
    assert_eq!(
        c.cmd(&["PUBSUB", "SHARDCHANNELS", "*2"]).sorted(),
        ["chan2"]
    );
    assert_eq!(c.cmd(&["PUBSUB", "CHANNELS"]).sorted(), ["chan1"]);
    assert_eq!(
        sub.cmd(&["SUNSUBSCRIBE", "chan1"]),
        push(&["sunsubscribe", "chan1"], 1)
    );
    assert_eq!(c.cmd(&["SPUBLISH", "chan1", "x"]), int(0));
    assert_eq!(
        sub.cmd(&["SUNSUBSCRIBE"]),
        push(&["sunsubscribe", "chan2"], 0)
    );
    assert_eq!(sub.cmd(&["GET", "k"]), nil());
}

#[test]
fn pubsub_introspection() {
    let s = start_target(&[]);
    let mut a = s.raw();
    let mut b = s.raw();
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["PUBSUB", "NUMSUB", "abc", "def"]),
        arr(vec![bulk("abc"), int(0), bulk("def"), int(0)])
    );
    assert_eq!(c.cmd(&["PUBSUB", "NUMSUB"]), arr(vec![]));
    assert_eq!(c.cmd(&["PUBSUB", "CHANNELS"]), arr(vec![]));
    cmd_n(&mut a, &["SUBSCRIBE", "news.1", "news.2", "sport"], 3);
    cmd_n(&mut b, &["SUBSCRIBE", "news.1"], 1);
    assert_eq!(
        c.cmd(&["PUBSUB", "CHANNELS"]).sorted(),
        ["news.1", "news.2", "sport"]
    );
    assert_eq!(
        c.cmd(&["PUBSUB", "CHANNELS", "news.*"]).sorted(),
        ["news.1", "news.2"]
    );
    assert_eq!(
        c.cmd(&["PUBSUB", "NUMSUB", "news.1", "sport"]),
        arr(vec![bulk("news.1"), int(2), bulk("sport"), int(1)])
    );
    assert_eq!(
        c.cmd(&["PUBSUB", "NOPE"]),
        err("ERR unknown subcommand 'NOPE'. Try PUBSUB HELP.")
    );
    assert_eq!(
        c.cmd(&["PUBSUB", "NUMPAT", "x"]),
        wrong_args("pubsub|numpat")
    );
    assert_eq!(c.cmd(&["PUBLISH", "x"]), wrong_args("publish"));
    assert_eq!(c.cmd(&["SUBSCRIBE"]), wrong_args("subscribe"));
    let stats = info(&mut c, "stats");
    assert_eq!(num(&stats, "pubsub_channels"), 3);
    // CLIENT LIST shows the subscribers as pubsub clients, with their counts.
    let listed = c.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]).text();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains(" flags=P ") && listed.contains(" sub=3 psub=0 ssub=0 "),
        "{listed}"
    );
    let normal = c.cmd(&["CLIENT", "LIST", "TYPE", "normal"]).text();
    assert_eq!(normal.lines().count(), 1, "{normal}");
    assert!(
        normal.contains(" flags=N ") && normal.contains(" sub=0 "),
        "{normal}"
    );
    // A closing connection takes its subscriptions with it.
    drop(a);
    assert_eventually!(
        c.cmd(&["PUBSUB", "NUMSUB", "news.1"]) == arr(vec![bulk("news.1"), int(1)]),
        Duration::from_secs(5)
    );
    assert_eq!(c.cmd(&["PUBSUB", "CHANNELS"]).sorted(), ["news.1"]);
}

#[test]
fn a_subscriber_that_does_not_read_is_cut_off() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 0 0"
        ]),
        ok()
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "client-output-buffer-limit"]),
        bulks(&[
            "client-output-buffer-limit",
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 0 0"
        ])
    );
    assert!(c
        .cmd(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 0 60s"
        ])
        .is_error());
    assert!(c
        .cmd(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1mb 0"
        ])
        .is_error());
    let mut slow = s.raw();
    slow.cmd(&["SUBSCRIBE", "firehose"]);
    let mut fast = s.raw();
    fast.cmd(&["SUBSCRIBE", "firehose"]);
    let payload = "x".repeat(64 * 1024);
    let started = Instant::now();
    let mut cut = false;
    // The kernel's socket buffers take some megabytes first; then the queue grows to the limit.
    for i in 0..4000 {
        let n = c.cmd(&["PUBLISH", "firehose", &payload]).int();
        // The reading subscriber keeps up.
        let m = fast.reply();
        assert_eq!(m.items().len(), 3);
        if n == 1 {
            cut = true;
            break;
        }
        assert_eq!(n, 2, "publish {i}");
    }
    assert!(cut, "the subscriber that never reads was never cut off");
    assert!(slow.is_closed(Duration::from_secs(10)));
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(
        c.cmd(&["PUBSUB", "NUMSUB", "firehose"]),
        arr(vec![bulk("firehose"), int(1)])
    );
}

/// Reads one `pmessage` and returns its channel and payload.
fn event(c: &mut Raw) -> (String, String) {
    let m = c.reply().strings();
    assert_eq!(m[0], "pmessage", "{m:?}");
    (m[2].clone(), m[3].clone())
}

fn ev(channel: &str, payload: &str) -> (String, String) {
    (channel.to_string(), payload.to_string())
}

#[test]
fn keyspace_notifications() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let mut sub = s.raw();
    sub.cmd(&["PSUBSCRIBE", "*"]);
    // Off by default: a SET publishes nothing, so the marker comes first.
    c.cmd(&["SET", "foo", "bar"]);
    c.cmd(&["PUBLISH", "marker", "1"]);
    assert_eq!(event(&mut sub), ev("marker", "1"));

    assert_eq!(
        c.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]),
        ok()
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "notify-keyspace-events"]),
        bulks(&["notify-keyspace-events", "AKE"])
    );
    c.cmd(&["SET", "foo", "bar", "EX", "100"]);
    assert_eq!(event(&mut sub), ev("__keyspace@0__:foo", "set"));
    assert_eq!(event(&mut sub), ev("__keyevent@0__:set", "foo"));
    assert_eq!(event(&mut sub), ev("__keyspace@0__:foo", "expire"));
    assert_eq!(event(&mut sub), ev("__keyevent@0__:expire", "foo"));
    c.cmd(&["RENAME", "foo", "foo2"]);
    assert_eq!(event(&mut sub), ev("__keyspace@0__:foo", "rename_from"));
    assert_eq!(event(&mut sub), ev("__keyevent@0__:rename_from", "foo"));
    assert_eq!(event(&mut sub), ev("__keyspace@0__:foo2", "rename_to"));
    assert_eq!(event(&mut sub), ev("__keyevent@0__:rename_to", "foo2"));

    // Only list events, key-space only.
    c.cmd(&["CONFIG", "SET", "notify-keyspace-events", "Kl"]);
    c.cmd(&["SET", "x", "1"]);
    c.cmd(&["RPUSH", "l", "a"]);
    c.cmd(&["LPOP", "l"]);
    assert_eq!(event(&mut sub), ev("__keyspace@0__:l", "rpush"));
    assert_eq!(event(&mut sub), ev("__keyspace@0__:l", "lpop"));

    // Generic: the emptied list's delete; hashes and sets.
    c.cmd(&["CONFIG", "SET", "notify-keyspace-events", "Kgsh"]);
    c.cmd(&["RPUSH", "l", "a"]);
    c.cmd(&["SADD", "s", "a", "b"]);
    c.cmd(&["SREM", "s", "zz"]);
    c.cmd(&["SREM", "s", "a"]);
    c.cmd(&["HSET", "h", "f", "1"]);
    c.cmd(&["HINCRBY", "h", "f", "2"]);
    c.cmd(&["DEL", "s", "h", "missing"]);
    assert_eq!(event(&mut sub), ev("__keyspace@0__:s", "sadd"));
    assert_eq!(event(&mut sub), ev("__keyspace@0__:s", "srem"));
    assert_eq!(event(&mut sub), ev("__keyspace@0__:h", "hset"));
    assert_eq!(event(&mut sub), ev("__keyspace@0__:h", "hincrby"));
    assert_eq!(event(&mut sub), ev("__keyspace@0__:s", "del"));
    assert_eq!(event(&mut sub), ev("__keyspace@0__:h", "del"));

    // New keys, and keys that expire (found by a command or by active expiry).
    c.cmd(&["CONFIG", "SET", "notify-keyspace-events", "Exn"]);
    c.cmd(&["SET", "n1", "v"]);
    c.cmd(&["SET", "n1", "w"]);
    assert_eq!(event(&mut sub), ev("__keyevent@0__:new", "n1"));
    c.cmd(&["PSETEX", "gone", "50", "v"]);
    assert_eq!(event(&mut sub), ev("__keyevent@0__:new", "gone"));
    assert_eq!(event(&mut sub), ev("__keyevent@0__:expired", "gone"));
    assert_eq!(c.cmd(&["EXISTS", "gone"]), int(0));

    // Off again: nothing more.
    c.cmd(&["CONFIG", "SET", "notify-keyspace-events", ""]);
    c.cmd(&["SET", "n2", "v"]);
    c.cmd(&["PUBLISH", "marker", "2"]);
    assert_eq!(event(&mut sub), ev("marker", "2"));
    assert!(c
        .cmd(&["CONFIG", "SET", "notify-keyspace-events", "KQ"])
        .is_error());
}

#[test]
fn publish_reaches_a_replicas_subscribers() {
    if is_redis() {
        return;
    }
    let primary = start_node(&[]);
    let replica = start_replica_of(primary.addr, &[]);
    let mut p = primary.raw();
    let mut r = replica.raw();
    wait_replicas(&mut p, 1, SYNC_TIMEOUT);
    wait_synced(&mut p, &mut r, SYNC_TIMEOUT);
    let mut sub = replica.raw();
    sub.cmd(&["SUBSCRIBE", "ch"]);
    let mut ssub = replica.raw();
    ssub.cmd(&["SSUBSCRIBE", "sch"]);
    assert_eq!(p.cmd(&["PUBLISH", "ch", "hello"]), int(0));
    assert_eq!(sub.reply(), message("ch", "hello"));
    assert_eq!(p.cmd(&["SPUBLISH", "sch", "world"]), int(0));
    assert_eq!(ssub.reply(), bulks(&["smessage", "sch", "world"]));
}
