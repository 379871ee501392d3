#![allow(clippy::unwrap_used)]
//! CLIENT PAUSE and UNPAUSE through the router in front of 3 nodes (or against redis-server with
//! `RINGCACHE_TEST_TARGET=redis`): writes wait while reads run, a client's pipeline stays in
//! order behind its held write, transactions and scripts are held by what they may do, and a
//! pause ends by itself.

use std::time::Duration;

use tests::*;

/// Asserts `c` gets no reply for a while: its request is held.
fn assert_held(c: &mut Raw, what: &str) {
    assert!(
        c.read(Duration::from_millis(200)).is_none(),
        "{what} ran under the pause"
    );
}

#[test]
fn writes_wait_out_a_pause_in_order_and_reads_do_not() {
    let t = start_routed_target();
    let mut admin = t.raw();
    assert_eq!(admin.cmd(&["SET", "k", "before"]), ok());
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "100000", "WRITE"]), ok());

    let mut reader = t.raw();
    assert_eq!(reader.cmd(&["GET", "k"]), bulk("before"));
    assert_eq!(reader.cmd(&["PING"]), status("PONG"));
    // A request refused anyway is answered at once.
    assert_eq!(reader.cmd(&["SET", "k"]), wrong_args("set"));

    // One client's pipeline: the read before the write is answered, the read after it waits.
    let mut writer = t.raw();
    writer.send_cmd(&["GET", "k"]);
    writer.send_cmd(&["SET", "k", "during"]);
    writer.send_cmd(&["GET", "k"]);
    assert_eq!(writer.reply(), bulk("before"));
    assert_held(&mut writer, "SET");
    let mut publisher = t.raw();
    publisher.send_cmd(&["PUBLISH", "ch", "m"]);
    assert_held(&mut publisher, "PUBLISH");
    assert_eq!(blocked_clients(&mut admin, 2), 2);
    assert_eq!(reader.cmd(&["GET", "k"]), bulk("before"));
    // A client that leaves while held: its write never runs.
    let mut leaver = t.raw();
    leaver.send_cmd(&["SET", "gone", "1"]);
    assert_held(&mut leaver, "SET");
    assert_eq!(blocked_clients(&mut admin, 3), 3);
    drop(leaver);
    assert_eq!(blocked_clients(&mut admin, 2), 2);

    assert_eq!(admin.cmd(&["CLIENT", "UNPAUSE"]), ok());
    assert_eq!(writer.reply(), ok());
    assert_eq!(writer.reply(), bulk("during"));
    assert_eq!(publisher.reply(), int(0));
    assert_eq!(blocked_clients(&mut admin, 0), 0);
    assert_eq!(admin.cmd(&["EXISTS", "gone"]), int(0));
}

#[test]
fn transactions_and_scripts_wait_by_what_they_may_do() {
    let t = start_routed_target();
    let mut admin = t.raw();
    let lib = "#!lua name=plib\n\
        redis.register_function{function_name='pro', callback=function(keys) \
        return redis.call('get', keys[1]) end, flags={'no-writes'}}\n\
        redis.register_function('prw', function(keys) \
        return redis.call('set', keys[1], 'f') end)";
    assert_eq!(admin.cmd(&["FUNCTION", "LOAD", lib]), bulk("plib"));
    let mut c = t.raw();
    // A transaction queued before the pause: its EXEC waits if it writes.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "{t}a", "1"]), status("QUEUED"));
    let mut r = t.raw();
    assert_eq!(r.cmd(&["MULTI"]), ok());
    assert_eq!(r.cmd(&["GET", "{t}a"]), status("QUEUED"));
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "100000", "WRITE"]), ok());
    assert_eq!(r.cmd(&["EXEC"]), Reply::Array(vec![nil()]));
    c.send_cmd(&["EXEC"]);
    assert_held(&mut c, "EXEC of a SET");

    // Scripts: a read-only one (declared, or run with EVAL_RO) runs; one that may write waits.
    let ro = "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])";
    let mut s = t.raw();
    assert_eq!(s.cmd(&["EVAL", ro, "1", "{t}a"]), nil());
    let sha = match s.cmd(&["SCRIPT", "LOAD", ro]) {
        Reply::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("SCRIPT LOAD: {other:?}"),
    };
    assert_eq!(s.cmd(&["EVALSHA", &sha, "1", "{t}a"]), nil());
    assert_eq!(
        s.cmd(&["EVAL_RO", "return redis.call('get', KEYS[1])", "1", "{t}a"]),
        nil()
    );
    let mut w = t.raw();
    w.send_cmd(&[
        "EVAL",
        "return redis.call('set', KEYS[1], 'x')",
        "1",
        "{t}b",
    ]);
    assert_held(&mut w, "EVAL without a shebang");
    // Functions: by the flags their library declares.
    assert_eq!(s.cmd(&["FCALL", "pro", "1", "{t}a"]), nil());
    let mut f = t.raw();
    f.send_cmd(&["FCALL", "prw", "1", "{t}c"]);
    assert_held(&mut f, "FCALL of a function without no-writes");

    assert_eq!(admin.cmd(&["CLIENT", "UNPAUSE"]), ok());
    assert_eq!(c.reply(), Reply::Array(vec![ok()]));
    assert_eq!(w.reply(), ok());
    assert_eq!(f.reply(), ok());
    assert_eq!(
        s.cmd(&["MGET", "{t}a", "{t}b", "{t}c"]),
        Reply::Array(vec![bulk("1"), bulk("x"), bulk("f")])
    );
}

#[test]
fn a_pause_of_everything_ends_by_itself_and_arguments_are_checked() {
    let t = start_routed_target();
    let mut c = t.raw();
    assert_pause_arguments_checked(&mut c);

    if !is_redis() {
        // Queued on a node it would pause that node for every router: refused in MULTI.
        assert_eq!(c.cmd(&["MULTI"]), ok());
        assert!(matches!(
            c.cmd(&["CLIENT", "PAUSE", "100"]),
            Reply::Error(_)
        ));
        assert_eq!(
            c.cmd(&["EXEC"]),
            err("EXECABORT Transaction discarded because of previous errors.")
        );
    }

    // ALL holds reads too, until the pause's end.
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["CLIENT", "PAUSE", "400", "ALL"]), ok());
    let mut r = t.raw();
    r.send_cmd(&["GET", "k"]);
    assert_held(&mut r, "GET under ALL");
    assert_eq!(r.reply(), bulk("v"));
}
