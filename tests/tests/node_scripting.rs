#![allow(clippy::unwrap_used)]
//! Lua scripting on a node: EVAL and EVALSHA with Redis's conversions and error texts, the
//! script cache (SCRIPT LOAD / EXISTS / FLUSH), the sandbox, read-only scripts, busy scripts
//! answered with BUSY and stopped with SCRIPT KILL, scripts inside MULTI, and a script's writes
//! reaching a replica as their effects.

use std::thread;
use std::time::Duration;

use tests::*;

fn error_text(r: &Reply) -> String {
    match r {
        Reply::Error(e) => e.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn eval_conversions_and_keys() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["EVAL", "return 'hello'", "0"]), bulk("hello"));
    assert_eq!(c.cmd(&["EVAL", "return 100.5", "0"]), int(100));
    assert_eq!(c.cmd(&["EVAL", "return true", "0"]), int(1));
    assert_eq!(c.cmd(&["EVAL", "return false", "0"]), nil());
    assert_eq!(c.cmd(&["EVAL", "return {ok='fine'}", "0"]), status("fine"));
    assert_eq!(
        c.cmd(&["EVAL", "return {err='ERR this is an error'}", "0"]),
        err("ERR this is an error")
    );
    assert_eq!(
        c.cmd(&["EVAL", "return {1,2,3,'ciao',{1,2}}", "0"]),
        arr(vec![
            int(1),
            int(2),
            int(3),
            bulk("ciao"),
            arr(vec![int(1), int(2)])
        ])
    );
    // A table stops at its first nil.
    assert_eq!(c.cmd(&["EVAL", "return {1,nil,3}", "0"]), arr(vec![int(1)]));
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "return {KEYS[1],KEYS[2],ARGV[1],ARGV[2]}",
            "2",
            "a{t}",
            "b{t}",
            "c",
            "d"
        ]),
        bulks(&["a{t}", "b{t}", "c", "d"])
    );
    assert_eq!(c.cmd(&["SET", "mykey", "myval"]), ok());
    assert_eq!(
        c.cmd(&["EVAL", "return redis.call('get',KEYS[1])", "1", "mykey"]),
        bulk("myval")
    );
    // Replies as Lua values.
    assert_eq!(c.cmd(&["SET", "x", "0"]), ok());
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "local v = redis.pcall('incr',KEYS[1]) return {type(v),v}",
            "1",
            "x"
        ]),
        arr(vec![bulk("number"), int(1)])
    );
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "local v = redis.pcall('set',KEYS[1],'v') return {type(v),v['ok']}",
            "1",
            "x"
        ]),
        bulks(&["table", "OK"])
    );
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "local v = redis.pcall('incr',KEYS[1]) return v['err']",
            "1",
            "mykey"
        ]),
        bulk("ERR value is not an integer or out of range")
    );
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "return redis.pcall('get',KEYS[1]) == false",
            "1",
            "missing"
        ]),
        int(1)
    );
    assert_eq!(
        c.cmd(&["EVAL", "return redis.sha1hex('Pizza & Mandolino')", "0"]),
        bulk("74822d82031af7493c20eefa13bd07ec4fada82f")
    );
    assert_eq!(
        c.cmd(&["EVAL", "return redis.error_reply('MY_ERR custom msg')", "0"]),
        err("MY_ERR custom msg")
    );
    assert_eq!(
        c.cmd(&["EVAL", "return redis.status_reply('MY_OK')", "0"]),
        status("MY_OK")
    );
    assert_eq!(
        c.cmd(&["EVAL", "return 'x'", "-1"]),
        err("ERR Number of keys can't be negative")
    );
    assert_eq!(
        c.cmd(&["EVAL", "return 'x'", "2", "a"]),
        err("ERR Number of keys can't be greater than number of args")
    );
}

#[test]
fn resp3_conversions() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    let flat = c.cmd(&[
        "EVAL",
        "redis.setresp(3); return redis.call('hgetall', KEYS[1])",
        "1",
        "h",
    ]);
    assert_eq!(flat, bulks(&["f", "v"]));
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "redis.setresp(3); local m = redis.call('hgetall', KEYS[1]) return m.map.f",
            "1",
            "h"
        ]),
        bulk("v")
    );
    c.hello3(&[]);
    let map = c.cmd_raw(&[
        "EVAL",
        "redis.setresp(3); return redis.call('hgetall', KEYS[1])",
        "1",
        "h",
    ]);
    assert_eq!(map, b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(
        c.cmd_raw(&["EVAL", "redis.setresp(3); return {double=3.5}", "0"]),
        b",3.5\r\n"
    );
    assert_eq!(
        c.cmd_raw(&["EVAL", "redis.setresp(3); return true", "0"]),
        b"#t\r\n"
    );
    assert_eq!(
        c.cmd_raw(&["EVAL", "redis.setresp(3); return nil", "0"]),
        b"_\r\n"
    );
    assert_eq!(
        c.cmd_raw(&[
            "EVAL",
            "redis.setresp(3); return {big_number='1234567999999999999999999999999999999'}",
            "0"
        ]),
        b"(1234567999999999999999999999999999999\r\n"
    );
}

#[test]
fn script_cache() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let sha = "b534286061d4b9e4026607613b95c06c06015ae8";
    assert_eq!(c.cmd(&["SCRIPT", "LOAD", "return 'loaded'"]), bulk(sha));
    assert_eq!(c.cmd(&["EVALSHA", sha, "0"]), bulk("loaded"));
    assert_eq!(
        c.cmd(&["EVALSHA", &sha.to_uppercase(), "0"]),
        bulk("loaded")
    );
    assert_eq!(
        c.cmd(&[
            "SCRIPT",
            "EXISTS",
            sha,
            "ffd632c7d33e571e9f24556ebed26c3479a87130"
        ]),
        arr(vec![int(1), int(0)])
    );
    assert_eq!(c.cmd(&["EVAL", "return 1+1", "0"]), int(2));
    assert_eq!(
        c.cmd(&[
            "SCRIPT",
            "EXISTS",
            "a27e7e8a43702b7046d4f6a7ccf5b60cef6b9bd9"
        ]),
        arr(vec![int(1)])
    );
    assert_eq!(num(&info(&mut c, "memory"), "number_of_cached_scripts"), 2);
    assert_eq!(c.cmd(&["SCRIPT", "FLUSH", "ASYNC"]), ok());
    assert_eq!(
        c.cmd(&["EVALSHA", sha, "0"]),
        err("NOSCRIPT No matching script. Please use EVAL.")
    );
    assert_eq!(
        c.cmd(&["EVALSHA", "NotValidShaSUM", "0"]),
        err("NOSCRIPT No matching script. Please use EVAL.")
    );
    assert_eq!(num(&info(&mut c, "memory"), "number_of_cached_scripts"), 0);
    assert_eq!(
        c.cmd(&["SCRIPT", "FLUSH", "bad"]),
        err("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
    );
    assert_eq!(
        c.cmd(&["SCRIPT", "KILL"]),
        err("NOTBUSY No scripts in execution right now.")
    );
}

#[test]
fn errors_carry_redis_wording() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "foo", "bar"]), ok());
    let e = error_text(&c.cmd(&["EVAL", "redis.call('lpush',KEYS[1],'val')", "1", "foo"]));
    assert!(
        e.starts_with("WRONGTYPE Operation against a key holding the wrong kind of value script: "),
        "{e}"
    );
    assert!(e.ends_with(", on @user_script:1."), "{e}");
    let e = error_text(&c.cmd(&["EVAL", "redis.call('nosuchcommand')", "0"]));
    assert!(
        e.starts_with("ERR Unknown Redis command called from script"),
        "{e}"
    );
    let e = error_text(&c.cmd(&["EVAL", "redis.call('get','a','b','c')", "0"]));
    assert!(
        e.starts_with("ERR Wrong number of args calling Redis command from script"),
        "{e}"
    );
    let e = error_text(&c.cmd(&["EVAL", "return redis.call()", "0"]));
    assert!(e.contains("one argument"), "{e}");
    let e = error_text(&c.cmd(&["EVAL", "return redis.call('ping', {})", "0"]));
    assert!(
        e.starts_with("ERR Lua redis lib command arguments must be strings or integers"),
        "{e}"
    );
    let e = error_text(&c.cmd(&["EVAL", "return redis.pcall('blpop','x',0)", "0"]));
    assert!(
        e.contains("This Redis command is not allowed from script"),
        "{e}"
    );
    let e = error_text(&c.cmd(&["EVAL", "return a", "0"]));
    assert!(
        e.starts_with("ERR Script attempted to access nonexistent global variable 'a'"),
        "{e}"
    );
    let e = error_text(&c.cmd(&["EVAL", "a = 10", "0"]));
    assert!(e.contains("Attempt to modify a readonly table"), "{e}");
    for trick in [
        "setmetatable(_G, {})",
        "local g = getmetatable(_G) g.__index = {}",
        "redis = function() return 1 end",
        "_G = {}",
        "redis.call = function() return 1 end",
    ] {
        let e = error_text(&c.cmd(&["EVAL", trick, "0"]));
        assert!(
            e.contains("Attempt to modify a readonly table"),
            "{trick}: {e}"
        );
    }
    for missing in ["loadfile", "dofile", "print", "os", "io", "require"] {
        let e = error_text(&c.cmd(&["EVAL", &format!("return {missing}('x')"), "0"]));
        assert!(
            e.contains(&format!("nonexistent global variable '{missing}'")),
            "{missing}: {e}"
        );
    }
    let e = error_text(&c.cmd(&[
        "EVAL",
        "return loadstring(string.dump(function() return 1 end))()",
        "0",
    ]));
    assert!(e.contains("attempt to call a nil value"), "{e}");
    let e = error_text(&c.cmd(&["EVAL", "this is not lua", "0"]));
    assert!(
        e.starts_with("ERR Error compiling script (new function): user_script:1:"),
        "{e}"
    );
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "local ok, r = pcall(function() return foo end) return tostring(ok) .. ' ' .. r",
            "0"
        ]),
        bulk("false Script attempted to access nonexistent global variable 'foo'")
    );
    assert_eq!(
        c.cmd(&["EVAL", "#!not-lua\nreturn 1", "0"]),
        err("ERR Unexpected engine in script shebang")
    );
    assert_eq!(c.cmd(&["EVAL", "#!lua\nreturn 1", "0"]), int(1));
}

#[test]
fn read_only_scripts_refuse_writes() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "foo", "bar"]), ok());
    assert_eq!(
        c.cmd(&["EVAL_RO", "return redis.call('get', KEYS[1])", "1", "foo"]),
        bulk("bar")
    );
    let e = error_text(&c.cmd(&["EVAL_RO", "redis.call('del', KEYS[1])", "1", "foo"]));
    assert!(
        e.starts_with("ERR Write commands are not allowed from read-only scripts."),
        "{e}"
    );
    let e = error_text(&c.cmd(&[
        "EVAL",
        "#!lua flags=no-writes\nredis.call('set', KEYS[1], 1)",
        "1",
        "foo",
    ]));
    assert!(
        e.starts_with("ERR Write commands are not allowed from read-only scripts."),
        "{e}"
    );
    assert_eq!(c.cmd(&["GET", "foo"]), bulk("bar"));
    assert_eq!(
        c.cmd(&["EVAL_RO", "#!lua\nreturn 1", "0"]),
        err("ERR Can not execute a script with write flag using *_ro command.")
    );
}

#[test]
fn scripts_touch_undeclared_keys_and_run_inside_multi() {
    let s = start_target(&[]);
    let mut c = s.raw();
    // Outside cluster mode Redis lets a script touch keys it did not declare.
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "redis.call('set','undeclared','1') return redis.call('incr','undeclared')",
            "0"
        ]),
        int(2)
    );
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(
        c.cmd(&["EVAL", "return redis.call('incr', KEYS[1])", "1", "counter"]),
        status("QUEUED")
    );
    assert_eq!(c.cmd(&["INCR", "counter"]), status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), arr(vec![int(1), int(2)]));
    // A script's commands run as one: the loop below sees no other client's write.
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "for i=1,100 do redis.call('rpush', KEYS[1], i) end return redis.call('llen', KEYS[1])",
            "1",
            "list"
        ]),
        int(100)
    );
}

#[test]
fn busy_script_gets_busy_replies_and_is_killed() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "50"]),
        ok()
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "lua-time-limit"]),
        bulks(&["lua-time-limit", "50"])
    );
    let mut runner = s.raw();
    runner.send_cmd(&["EVAL", "while true do end", "0"]);
    thread::sleep(Duration::from_millis(300));
    let busy = c.cmd(&["PING"]);
    assert_eq!(
        busy,
        err("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.")
    );
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), ok());
    let killed = error_text(&runner.reply());
    assert!(
        killed.contains("Script killed by user with SCRIPT KILL"),
        "{killed}"
    );
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
    // A script caught in pcall cannot go on once killed.
    runner.send_cmd(&[
        "EVAL",
        "local f = function() while 1 do redis.call('ping') end end while 1 do pcall(f) end",
        "0",
    ]);
    thread::sleep(Duration::from_millis(300));
    assert!(error_text(&c.cmd(&["PING"])).starts_with("BUSY"));
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), ok());
    assert!(error_text(&runner.reply()).contains("killed by user"));
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
    // One that wrote cannot be killed.
    runner.send_cmd(&[
        "EVAL",
        "redis.call('set',KEYS[1],'y') while true do end",
        "1",
        "x",
    ]);
    thread::sleep(Duration::from_millis(300));
    assert!(error_text(&c.cmd(&["SCRIPT", "KILL"]))
        .starts_with("UNKILLABLE Sorry the script already executed write commands"));
    assert!(error_text(&c.cmd(&["GET", "x"])).starts_with("BUSY"));
}

/// A script that ran short before (on a node: run on its connection's IO thread) and now loops
/// without having written: other clients still get BUSY, SCRIPT KILL still stops it, and its
/// commands count once; likewise one that publishes before it loops.
#[test]
fn a_short_script_turning_long_is_still_busy_and_killable() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "50"]),
        ok()
    );
    let sha = c
        .cmd(&[
            "SCRIPT",
            "LOAD",
            "local v = redis.call('get', KEYS[1]) if ARGV[1] == 'spin' then while true do end end return v",
        ])
        .text();
    assert_eq!(c.cmd(&["SET", "k", "v1"]), ok());
    assert_eq!(c.cmd(&["CONFIG", "RESETSTAT"]), ok());
    for _ in 0..3 {
        assert_eq!(c.cmd(&["EVALSHA", &sha, "1", "k", "go"]), bulk("v1"));
    }
    let mut runner = s.raw();
    runner.send_cmd(&["EVALSHA", &sha, "1", "k", "spin"]);
    thread::sleep(Duration::from_millis(300));
    assert!(error_text(&c.cmd(&["GET", "k"])).starts_with("BUSY"));
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), ok());
    assert!(error_text(&runner.reply()).contains("Script killed by user with SCRIPT KILL"));
    assert_eq!(c.cmd(&["EVALSHA", &sha, "1", "k", "go"]), bulk("v1"));
    let info = c.cmd(&["INFO", "commandstats"]).text();
    assert!(
        info.contains("cmdstat_evalsha:calls=5,"),
        "every EVALSHA counted once: {info}"
    );
    assert!(
        info.contains("cmdstat_get:calls=5,"),
        "every GET the scripts ran counted once: {info}"
    );
    let stats = c.cmd(&["INFO", "stats"]).text();
    assert!(stats.contains("keyspace_hits:5\r\n"), "{stats}");

    // One that publishes before it loops can be killed too, and its message goes out once.
    let publisher = c
        .cmd(&[
            "SCRIPT",
            "LOAD",
            "redis.call('publish', 'news', ARGV[1]) if ARGV[1] == 'spin' then while true do end end return 1",
        ])
        .text();
    let mut sub = s.raw();
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "news"]),
        arr(vec![bulk("subscribe"), bulk("news"), int(1)])
    );
    for word in ["a", "b", "c"] {
        assert_eq!(c.cmd(&["EVALSHA", &publisher, "0", word]), int(1));
        assert_eq!(
            sub.reply(),
            arr(vec![bulk("message"), bulk("news"), bulk(word)])
        );
    }
    runner.send_cmd(&["EVALSHA", &publisher, "0", "spin"]);
    thread::sleep(Duration::from_millis(300));
    assert!(error_text(&c.cmd(&["PING"])).starts_with("BUSY"));
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), ok());
    assert!(error_text(&runner.reply()).contains("Script killed by user with SCRIPT KILL"));
    assert_eq!(
        sub.reply(),
        arr(vec![bulk("message"), bulk("news"), bulk("spin")])
    );
    assert_eq!(c.cmd(&["EVALSHA", &publisher, "0", "d"]), int(1));
    assert_eq!(
        sub.reply(),
        arr(vec![bulk("message"), bulk("news"), bulk("d")]),
        "each message once, in order"
    );
}

#[test]
fn script_writes_reach_a_replica_as_effects() {
    let p = start_node(&[]);
    let mut pc = p.raw();
    let r = start_replica_of(p.addr, &[]);
    let mut rc = r.raw();
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    // A random value: replaying the script on the replica would draw another.
    let value = pc.cmd(&[
        "EVAL",
        "local v = tostring(math.random()) redis.call('set', KEYS[1], v) redis.call('expire', KEYS[1], 100) redis.call('rpush', KEYS[2], v, 'b') return v",
        "2",
        "k{t}",
        "l{t}",
    ]);
    let Reply::Bulk(v) = value else {
        panic!("{value:?}")
    };
    assert_eq!(pc.cmd(&["SADD", "s", "a", "b", "c"]), int(3));
    let popped = pc.cmd(&["EVAL", "return redis.call('spop', KEYS[1])", "1", "s"]);
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(rc.cmd(&["GET", "k{t}"]), Reply::Bulk(v.clone()));
    assert!(matches!(rc.cmd(&["TTL", "k{t}"]), Reply::Int(t) if t > 0 && t <= 100));
    assert_eq!(
        rc.cmd(&["LRANGE", "l{t}", "0", "-1"]),
        arr(vec![Reply::Bulk(v), bulk("b")])
    );
    assert_eq!(rc.cmd(&["SCARD", "s"]), int(2));
    assert_eq!(rc.cmd(&["SISMEMBER", "s", &flat_text(&popped)]), int(0));
    // The replica refuses a script's writes, and read-only scripts run there.
    let e = error_text(&rc.cmd(&["EVAL", "return redis.call('set', KEYS[1], 1)", "1", "k{t}"]));
    assert!(
        e.starts_with("READONLY You can't write against a read only replica."),
        "{e}"
    );
    assert_eq!(
        rc.cmd(&[
            "EVAL",
            "#!lua flags=no-writes\nreturn redis.call('llen', KEYS[1])",
            "1",
            "l{t}"
        ]),
        int(2)
    );
    assert_same_data(&mut pc, &mut rc, "after scripts");
}

#[test]
fn many_connections_running_scripts_at_once_each_get_their_own_replies() {
    // An IO thread sends its tick's scripts to the script thread in one batch and gets the
    // replies back in one: each reply and session must reach its own connection.
    let s = start_target(&[]);
    let body = "redis.call('INCR', KEYS[1]) return redis.call('GET', KEYS[1])";
    let sha = match s.raw().cmd(&["SCRIPT", "LOAD", body]) {
        Reply::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("SCRIPT LOAD: {other:?}"),
    };
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let mut c = s.raw();
            let sha = sha.clone();
            thread::spawn(move || {
                // Half the connections speak RESP3: a session that came back to the wrong
                // connection would show in the double's encoding.
                let resp3 = i % 2 == 0;
                if resp3 {
                    c.hello3(&[]);
                }
                let key = format!("counter:{i}");
                for n in 1..=40 {
                    let got = c.cmd(&["EVALSHA", sha.as_str(), "1", key.as_str()]);
                    assert_eq!(got, bulk(n.to_string()), "connection {i}");
                    let double = c.cmd_raw(&["EVAL", "return {double=1.5}", "0"]);
                    let want: &[u8] = if resp3 { b",1.5\r\n" } else { b"$3\r\n1.5\r\n" };
                    assert_eq!(double, want, "connection {i}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}
