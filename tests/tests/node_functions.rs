#![allow(clippy::unwrap_used)]
//! Functions on a node: FUNCTION LOAD / LIST / DELETE / FLUSH / DUMP / RESTORE / STATS / KILL,
//! FCALL and FCALL_RO, Redis's errors for bad libraries, and libraries reaching a replica.

use std::thread;
use std::time::Duration;

use tests::*;

fn lib(name: &str, function: &str, body: &str) -> String {
    format!(
        "#!lua name={name}\nredis.register_function('{function}', function(KEYS, ARGV)\n {body} \nend)"
    )
}

fn error_text(r: &Reply) -> String {
    match r {
        Reply::Error(e) => e.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn load_call_list_delete() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", &lib("test", "test", "return 'hello'")]),
        bulk("test")
    );
    assert_eq!(c.cmd(&["FCALL", "test", "0"]), bulk("hello"));
    assert_eq!(c.cmd(&["FCALL", "TEST", "0"]), bulk("hello"));
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", &lib("test", "test", "return 'x'")]),
        err("ERR Library 'test' already exists")
    );
    assert_eq!(
        c.cmd(&[
            "FUNCTION",
            "LOAD",
            "foo",
            &lib("test", "test", "return 'x'")
        ]),
        err("ERR Unknown option given: foo")
    );
    assert_eq!(
        c.cmd(&[
            "FUNCTION",
            "LOAD",
            &lib("bad_engine", "x", "return 1").replace("lua", "bad_engine")
        ]),
        err("ERR Engine 'bad_engine' not found")
    );
    let e = error_text(&c.cmd(&[
        "FUNCTION",
        "LOAD",
        "REPLACE",
        &lib("test", "test", "bad script"),
    ]));
    assert!(e.starts_with("ERR Error compiling function"), "{e}");
    // A failed REPLACE keeps the old library.
    assert_eq!(c.cmd(&["FCALL", "test", "0"]), bulk("hello"));
    assert_eq!(
        c.cmd(&[
            "FUNCTION",
            "LOAD",
            "REPLACE",
            &lib("test", "test", "return redis.call('set', KEYS[1], ARGV[1])")
        ]),
        bulk("test")
    );
    assert_eq!(c.cmd(&["FCALL", "test", "1", "x", "foo"]), ok());
    assert_eq!(c.cmd(&["GET", "x"]), bulk("foo"));
    assert_eq!(
        c.cmd(&["FCALL", "test", "bad_arg"]),
        err("ERR Bad number of keys provided")
    );
    assert_eq!(
        c.cmd(&["FCALL", "test", "10", "key1"]),
        err("ERR Number of keys can't be greater than number of args")
    );
    assert_eq!(
        c.cmd(&["FCALL", "test", "-1", "key1"]),
        err("ERR Number of keys can't be negative")
    );
    assert_eq!(
        c.cmd(&["FUNCTION", "LIST"]),
        arr(vec![arr(vec![
            bulk("library_name"),
            bulk("test"),
            bulk("engine"),
            bulk("LUA"),
            bulk("functions"),
            arr(vec![arr(vec![
                bulk("name"),
                bulk("test"),
                bulk("description"),
                nil(),
                bulk("flags"),
                arr(vec![]),
            ])]),
        ])])
    );
    assert_eq!(
        c.cmd(&["FUNCTION", "LIST", "LIBRARYNAME", "nomatch*"]),
        arr(vec![])
    );
    assert_eq!(
        c.cmd(&["FUNCTION", "LIST", "bad_argument"]),
        err("ERR Unknown argument bad_argument")
    );
    assert_eq!(c.cmd(&["FUNCTION", "DELETE", "test"]), ok());
    assert_eq!(
        c.cmd(&["FCALL", "test", "0"]),
        err("ERR Function not found")
    );
    assert_eq!(
        c.cmd(&["FUNCTION", "DELETE", "test"]),
        err("ERR Library not found")
    );
    assert_eq!(
        c.cmd(&["FUNCTION", "KILL"]),
        err("NOTBUSY No scripts in execution right now.")
    );
}

#[test]
fn registration_errors_and_load_sandbox() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let load = |c: &mut Raw, code: &str| error_text(&c.cmd(&["FUNCTION", "LOAD", "REPLACE", code]));
    assert!(load(&mut c, "#!lua name=lib\nreturn 1").contains("No functions registered"));
    assert!(load(&mut c, "#!lua name=lib\nreturn math.random()")
        .contains("attempted to access nonexistent global variable 'math'"));
    assert!(load(&mut c, "#!lua name=lib\nreturn redis.call('ping')")
        .contains("attempted to access nonexistent global variable 'call'"));
    assert!(load(&mut c, "#!lua name=lib\na = 1").contains("Attempt to modify a readonly table"));
    assert!(load(
        &mut c,
        "#!lua name=lib\nlocal a = 1 while 1 do a = a + 1 end"
    )
    .contains("FUNCTION LOAD timeout"));
    assert!(
        load(&mut c, "#!lua name=lib\nredis.register_function('f', 1)")
            .contains("second argument to redis.register_function must be a function")
    );
    assert!(load(&mut c, "#!lua name=lib\nredis.register_function{function_name='f', callback=function() end, flags={'bad'}}")
        .contains("unknown flag given"));
    assert!(load(
        &mut c,
        "#!lua name=lib\nredis.register_function{callback=function() end}"
    )
    .contains("redis.register_function must get a function name argument"));
    assert!(load(&mut c, "#!lua name=lib\nredis.register_function('f', function() end) redis.register_function('f', function() end)")
        .contains("Function already exists in the library"));
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", "#!lua name=lib\nredis.register_function('f', function() return redis.register_function('g', function() end) end)"]),
        bulk("lib")
    );
    assert!(error_text(&c.cmd(&["FCALL", "f", "0"]))
        .contains("attempt to call field 'register_function' (a nil value)"));
    assert!(
        error_text(&c.cmd(&["FUNCTION", "LOAD", &lib("other", "f", "return 1")]))
            .contains("Function f already exists")
    );
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", "#!lua name=ro\nredis.register_function{function_name='w', callback=function(KEYS) return redis.call('set', KEYS[1], 1) end, flags={'no-writes'}}"]),
        bulk("ro")
    );
    assert!(error_text(&c.cmd(&["FCALL_RO", "w", "1", "k"]))
        .starts_with("ERR Write commands are not allowed from read-only scripts."));
    assert_eq!(
        c.cmd(&["FCALL_RO", "f", "0"]),
        err("ERR Can not execute a script with write flag using *_ro command.")
    );
    assert_eq!(
        c.cmd(&["FUNCTION", "FLUSH", "bad"]),
        err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
    );
    assert_eq!(c.cmd(&["FUNCTION", "FLUSH", "SYNC"]), ok());
    assert_eq!(c.cmd(&["FUNCTION", "LIST"]), arr(vec![]));
}

#[test]
fn dump_and_restore() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", &lib("lib1", "f1", "return 1")]),
        bulk("lib1")
    );
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", &lib("lib2", "f2", "return 2")]),
        bulk("lib2")
    );
    let Reply::Bulk(payload) = c.cmd(&["FUNCTION", "DUMP"]) else {
        panic!("DUMP gives a bulk string")
    };
    let payload = payload.to_vec();
    assert_eq!(
        c.cmd(&[&b"FUNCTION"[..], b"RESTORE", b"bad_payload"]),
        err("ERR payload version or checksum are wrong")
    );
    assert!(
        error_text(&c.cmd(&[&b"FUNCTION"[..], b"RESTORE", &payload]))
            .contains("Library lib1 already exists")
    );
    assert_eq!(c.cmd(&["FUNCTION", "FLUSH"]), ok());
    assert_eq!(c.cmd(&[&b"FUNCTION"[..], b"RESTORE", &payload]), ok());
    assert_eq!(c.cmd(&["FCALL", "f1", "0"]), int(1));
    assert_eq!(c.cmd(&["FCALL", "f2", "0"]), int(2));
    assert_eq!(
        c.cmd(&[&b"FUNCTION"[..], b"RESTORE", &payload, b"REPLACE"]),
        ok()
    );
    assert_eq!(
        c.cmd(&[
            "FUNCTION",
            "LOAD",
            "REPLACE",
            &lib("lib1", "other", "return 3")
        ]),
        bulk("lib1")
    );
    assert_eq!(
        c.cmd(&[&b"FUNCTION"[..], b"RESTORE", &payload, b"FLUSH"]),
        ok()
    );
    assert_eq!(c.cmd(&["FCALL", "f1", "0"]), int(1));
    assert_eq!(
        c.cmd(&["FCALL", "other", "0"]),
        err("ERR Function not found")
    );
    assert_eq!(
        c.cmd(&[&b"FUNCTION"[..], b"RESTORE", &payload, b"bad"]),
        err("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.")
    );
}

#[test]
fn busy_function_stats_and_kill() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "50"]),
        ok()
    );
    assert_eq!(
        c.cmd(&[
            "FUNCTION",
            "LOAD",
            &lib("test", "test", "local a = 1 while true do a = a + 1 end")
        ]),
        bulk("test")
    );
    let mut runner = s.raw();
    runner.send_cmd(&["FCALL", "test", "0"]);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.cmd(&["PING"]),
        err("BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.")
    );
    let stats = flat_text(&c.cmd(&["FUNCTION", "STATS"]));
    assert!(
        stats.starts_with("running_script name test command FCALL test 0 duration_ms"),
        "{stats}"
    );
    assert!(error_text(&c.cmd(&["SCRIPT", "KILL"])).starts_with("BUSY"));
    assert_eq!(c.cmd(&["FUNCTION", "KILL"]), ok());
    assert!(error_text(&runner.reply()).contains("killed by user"));
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
    let stats = flat_text(&c.cmd(&["FUNCTION", "STATS"]));
    assert!(
        stats.ends_with("engines LUA libraries_count 1 functions_count 1"),
        "{stats}"
    );
}

#[test]
fn libraries_reach_a_replica() {
    let p = start_node(&[]);
    let mut pc = p.raw();
    let r = start_replica_of(p.addr, &[]);
    let mut rc = r.raw();
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    let code = "#!lua name=lib\nredis.register_function{function_name='get', callback=function(KEYS) return redis.call('get', KEYS[1]) end, flags={'no-writes'}}\nredis.register_function('set', function(KEYS, ARGV) return redis.call('set', KEYS[1], ARGV[1]) end)";
    assert_eq!(pc.cmd(&["FUNCTION", "LOAD", code]), bulk("lib"));
    assert_eq!(pc.cmd(&["FCALL", "set", "1", "k", "v"]), ok());
    wait_synced(&mut pc, &mut rc, SYNC_TIMEOUT);
    assert_eq!(rc.cmd(&["FCALL_RO", "get", "1", "k"]), bulk("v"));
    assert_eq!(rc.cmd(&["FUNCTION", "LIST"]), pc.cmd(&["FUNCTION", "LIST"]));
    assert_eq!(
        rc.cmd(&["FUNCTION", "FLUSH"]),
        err("READONLY You can't write against a read only replica.")
    );
    assert_eq!(pc.cmd(&["FUNCTION", "DELETE", "lib"]), ok());
    assert_eventually!(
        rc.cmd(&["FUNCTION", "LIST"]) == arr(vec![]),
        Duration::from_secs(10)
    );
}
