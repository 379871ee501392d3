#![allow(clippy::unwrap_used)]
//! MONITOR on a node (or redis-server with `RINGCACHE_TEST_TARGET=redis`): every command run
//! shown as Redis's status line, arguments quoted, secrets redacted, administrative commands
//! left out, and RESET ending it.

use std::time::Duration;

use tests::*;

/// The part of a monitor line after its timestamp: `[0 <client>] "arg" ...`.
fn shown(r: Reply) -> String {
    let t = r.text();
    let (ts, rest) = t.split_once(' ').unwrap();
    assert!(ts.parse::<f64>().unwrap() > 1.6e9, "a unix time: {t}");
    rest.to_string()
}

#[test]
fn monitor_shows_each_command() {
    let s = start_target(&[]);
    let mut m = s.raw();
    assert_eq!(m.cmd(&["MONITOR"]), ok());
    let mut c = s.raw();
    let me = c.local_addr().to_string();
    assert_eq!(c.cmd(&["SET", "k", "a \"b\"\n"]), ok());
    assert_eq!(c.cmd(&["GET", "k"]), bulk("a \"b\"\n"));
    // Administrative commands are not shown.
    let _ = c.cmd(&["CONFIG", "GET", "maxmemory"]);
    assert!(c.cmd(&["AUTH", "nobody", "secret"]).is_error());
    assert_eq!(
        shown(m.reply()),
        format!("[0 {me}] \"SET\" \"k\" \"a \\\"b\\\"\\n\"")
    );
    assert_eq!(shown(m.reply()), format!("[0 {me}] \"GET\" \"k\""));
    assert_eq!(
        shown(m.reply()),
        format!("[0 {me}] \"AUTH\" \"(redacted)\" \"(redacted)\"")
    );
    // RESET ends monitoring: nothing more arrives.
    assert_eq!(m.cmd(&["RESET"]), status("RESET"));
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert!(m.read(Duration::from_millis(300)).is_none());
    assert_eq!(m.cmd(&["PING"]), status("PONG"));
}

/// A transaction's commands are shown as EXEC runs them, between MULTI and EXEC, as Redis.
#[test]
fn monitor_shows_a_transactions_commands() {
    let s = start_target(&[]);
    let mut m = s.raw();
    assert_eq!(m.cmd(&["MONITOR"]), ok());
    let mut c = s.raw();
    let me = c.local_addr().to_string();
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["SET", "a", "1"]), status("QUEUED"));
    assert_eq!(c.cmd(&["EXEC"]), arr(vec![ok()]));
    for want in ["\"MULTI\"", "\"SET\" \"a\" \"1\"", "\"EXEC\""] {
        assert_eq!(shown(m.reply()), format!("[0 {me}] {want}"));
    }
}
