#![allow(clippy::unwrap_used)]
//! CLIENT UNBLOCK: a blocked pop answers its timeout reply, or an UNBLOCKED error, at once; a
//! client that is not blocked is left alone.

use std::time::{Duration, Instant};

use tests::*;

fn blocked_client_id(c: &mut Raw) -> String {
    match c.cmd(&["CLIENT", "ID"]) {
        Reply::Int(id) => id.to_string(),
        other => panic!("CLIENT ID answered {other:?}"),
    }
}

/// Waits until the server counts `n` blocked clients.
fn wait_blocked(c: &mut Raw, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while num(&info(c, "clients"), "blocked_clients") != n {
        assert!(Instant::now() < deadline, "never {n} blocked clients");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn client_unblock_with_timeout_and_error() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let mut b = s.raw();
    let id = blocked_client_id(&mut b);
    assert_eq!(c.cmd(&["CLIENT", "UNBLOCK", &id]), int(0));

    b.send_cmd(&["BLPOP", "q", "0"]);
    wait_blocked(&mut c, 1);
    assert_eq!(c.cmd(&["CLIENT", "UNBLOCK", &id]), int(1));
    assert_eq!(b.read_reply(Duration::from_secs(5)).unwrap(), b"*-1\r\n");
    wait_blocked(&mut c, 0);

    b.send_cmd(&["BZPOPMIN", "z", "0"]);
    wait_blocked(&mut c, 1);
    assert_eq!(c.cmd(&["CLIENT", "UNBLOCK", &id, "ERROR"]), int(1));
    assert_eq!(
        b.reply(),
        err("UNBLOCKED client unblocked via CLIENT UNBLOCK")
    );
    // The key then reaches no one: the client is gone from the queue.
    assert_eq!(c.cmd(&["ZADD", "z", "1", "a"]), int(1));
    assert_eq!(c.cmd(&["ZCARD", "z"]), int(1));

    assert_eq!(
        c.cmd(&["CLIENT", "UNBLOCK", &id, "BOGUS"]),
        err("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    );
    assert_eq!(c.cmd(&["CLIENT", "UNBLOCK", "x"]), err(NOT_INTEGER));
}
