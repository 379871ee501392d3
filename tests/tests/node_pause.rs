#![allow(clippy::unwrap_used)]
//! CLIENT PAUSE and UNPAUSE on a node (or redis-server with `RINGCACHE_TEST_TARGET=redis`):
//! writes wait while reads run, a bad request is answered at once, expired keys stay until the
//! pause ends, and a pause ends by itself.

use std::time::Duration;

use tests::*;

#[test]
fn writes_wait_out_a_pause_and_reads_do_not() {
    let s = start_target(&[]);
    let mut admin = s.raw();
    assert_eq!(admin.cmd(&["SET", "k", "before"]), ok());
    assert_eq!(admin.cmd(&["CLIENT", "PAUSE", "100000", "WRITE"]), ok());

    let mut reader = s.raw();
    assert_eq!(reader.cmd(&["GET", "k"]), bulk("before"));
    assert_eq!(reader.cmd(&["PING"]), status("PONG"));
    // A request refused anyway is answered at once.
    assert_eq!(reader.cmd(&["SET", "k"]), wrong_args("set"));

    let mut writer = s.raw();
    writer.send_cmd(&["SET", "k", "during"]);
    let mut publisher = s.raw();
    publisher.send_cmd(&["PUBLISH", "ch", "m"]);
    assert!(
        writer.read(Duration::from_millis(200)).is_none(),
        "SET ran under the pause"
    );
    assert_eq!(blocked_clients(&mut admin, 2), 2);
    assert_eq!(reader.cmd(&["GET", "k"]), bulk("before"));

    assert_eq!(admin.cmd(&["CLIENT", "UNPAUSE"]), ok());
    assert_eq!(writer.reply(), ok());
    assert_eq!(publisher.reply(), int(0));
    assert_eq!(reader.cmd(&["GET", "k"]), bulk("during"));
    assert_eq!(blocked_clients(&mut admin, 0), 0);
}

#[test]
fn expired_keys_stay_until_the_pause_ends_and_a_pause_ends_by_itself() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "short", "v", "PX", "20"]), ok());
    let expired = num(&info(&mut c, "stats"), "expired_keys");
    assert_eq!(c.cmd(&["CLIENT", "PAUSE", "100000", "WRITE"]), ok());
    std::thread::sleep(Duration::from_millis(150));
    // Gone to readers, but not deleted: a delete would reach the replicas.
    assert_eq!(c.cmd(&["GET", "short"]), nil());
    assert_eq!(num(&info(&mut c, "stats"), "expired_keys"), expired);
    assert_eq!(c.cmd(&["CLIENT", "UNPAUSE"]), ok());
    assert_eq!(c.cmd(&["GET", "short"]), nil());
    assert_eq!(num(&info(&mut c, "stats"), "expired_keys"), expired + 1);

    // A short pause ends on its own: the held write then runs.
    assert_eq!(c.cmd(&["CLIENT", "PAUSE", "200", "ALL"]), ok());
    let mut w = s.raw();
    w.send_cmd(&["SET", "after", "1"]);
    assert_eq!(w.reply(), ok());
    assert_eq!(c.cmd(&["GET", "after"]), bulk("1"));
}

#[test]
fn client_pause_arguments() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_pause_arguments_checked(&mut c);
    assert_eq!(c.cmd(&["CLIENT", "UNPAUSE"]), ok());
}
