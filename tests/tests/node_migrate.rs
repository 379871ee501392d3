#![allow(clippy::unwrap_used)]
//! MIGRATE from a node to another server (a node, or redis-server with `RINGCACHE_TEST_TARGET=
//! redis`): keys move with their TTL, COPY and REPLACE, the KEYS form, AUTH and AUTH2 on the
//! target, and Redis's replies for a missing key, a refusing target and an unreachable one.

use tests::*;

fn port(p: &Proc) -> String {
    p.addr.port().to_string()
}

/// `MIGRATE 127.0.0.1 <to> <args...>` on `c`.
fn migrate(c: &mut Raw, to: &str, args: &[&str]) -> Reply {
    let mut v = vec!["MIGRATE", "127.0.0.1", to];
    v.extend_from_slice(args);
    c.cmd(&v)
}

#[test]
fn migrate_moves_keys_with_their_ttl() {
    let (src, dst) = (start_target(&[]), start_target(&[]));
    let (mut s, mut d) = (src.raw(), dst.raw());
    let to = port(&dst);
    assert_eq!(s.cmd(&["SET", "k", "v", "EX", "100"]), ok());
    assert_eq!(s.cmd(&["RPUSH", "l", "a", "b"]), int(2));
    assert_eq!(migrate(&mut s, &to, &["k", "0", "5000"]), ok());
    assert_eq!(s.cmd(&["EXISTS", "k"]), int(0));
    assert_eq!(d.cmd(&["GET", "k"]), bulk("v"));
    let Reply::Int(ttl) = d.cmd(&["TTL", "k"]) else {
        panic!("TTL answers an integer");
    };
    assert!((1..=100).contains(&ttl), "ttl {ttl}");
    assert_eq!(
        migrate(&mut s, &to, &["missing", "0", "5000"]),
        status("NOKEY")
    );
    // The KEYS form: missing keys are skipped.
    assert_eq!(s.cmd(&["SET", "a", "1"]), ok());
    assert_eq!(
        migrate(&mut s, &to, &["", "0", "5000", "KEYS", "a", "l", "nope"]),
        ok()
    );
    assert_eq!(s.cmd(&["DBSIZE"]), int(0));
    assert_eq!(d.cmd(&["LRANGE", "l", "0", "-1"]), bulks(&["a", "b"]));
    assert_eq!(d.cmd(&["GET", "a"]), bulk("1"));
    assert_eq!(
        migrate(&mut s, &to, &["k", "0", "5000", "KEYS", "a"]),
        err("ERR When using MIGRATE KEYS option, the key argument must be set to the empty string")
    );
    assert_eq!(
        migrate(&mut s, &to, &["k", "0", "5000", "SOON"]),
        err("ERR syntax error")
    );
}

#[test]
fn migrate_copy_replace_and_refusals() {
    let (src, dst) = (start_target(&[]), start_target(&[]));
    let (mut s, mut d) = (src.raw(), dst.raw());
    let to = port(&dst);
    assert_eq!(s.cmd(&["SET", "k", "new"]), ok());
    assert_eq!(d.cmd(&["SET", "k", "old"]), ok());
    // The target refuses to overwrite: the key stays here.
    assert_eq!(
        migrate(&mut s, &to, &["k", "0", "5000"]),
        err("ERR Target instance replied with error: BUSYKEY Target key name already exists.")
    );
    assert_eq!(s.cmd(&["GET", "k"]), bulk("new"));
    assert_eq!(
        migrate(&mut s, &to, &["k", "0", "5000", "COPY", "REPLACE"]),
        ok()
    );
    assert_eq!(s.cmd(&["GET", "k"]), bulk("new"));
    assert_eq!(d.cmd(&["GET", "k"]), bulk("new"));

    // Nothing listens on a port just freed: refused at once, which Redis finds at its write.
    let closed = free_port().to_string();
    assert_eq!(
        migrate(&mut s, &closed, &["k", "0", "500"]),
        err("IOERR error or timeout writing to target instance")
    );
    assert_eq!(s.cmd(&["GET", "k"]), bulk("new"));
}

#[test]
fn migrate_authenticates_to_the_target() {
    let src = start_target(&[]);
    let dst = start_target(&["--requirepass", "pw"]);
    let mut s = src.raw();
    let mut d = dst.raw();
    assert_eq!(d.cmd(&["AUTH", "pw"]), ok());
    assert_eq!(
        d.cmd(&["ACL", "SETUSER", "mover", "on", ">mpw", "+@all", "~*"]),
        ok()
    );
    let to = port(&dst);
    assert_eq!(s.cmd(&["SET", "a", "1"]), ok());
    assert_eq!(s.cmd(&["SET", "b", "2"]), ok());
    assert_eq!(
        migrate(&mut s, &to, &["a", "0", "5000"]),
        err("ERR Target instance replied with error: NOAUTH Authentication required.")
    );
    assert_eq!(
        migrate(&mut s, &to, &["a", "0", "5000", "AUTH", "nope"]),
        err("ERR Target instance replied with error: WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(s.cmd(&["EXISTS", "a"]), int(1));
    assert_eq!(
        migrate(&mut s, &to, &["a", "0", "5000", "AUTH", "pw"]),
        ok()
    );
    assert_eq!(
        migrate(
            &mut s,
            &to,
            &["", "0", "5000", "AUTH2", "mover", "mpw", "KEYS", "b"]
        ),
        ok()
    );
    assert_eq!(s.cmd(&["DBSIZE"]), int(0));
    assert_eq!(d.cmd(&["MGET", "a", "b"]), bulks(&["1", "2"]));
}

/// A MIGRATE aimed at the node itself never loses the key (Redis times out on itself; the node
/// sees its own RESTORE write the key and keeps it).
#[test]
fn migrate_to_itself_keeps_the_key() {
    let src = start_target(&[]);
    let mut s = src.raw();
    let me = port(&src);
    assert_eq!(s.cmd(&["SET", "k", "v"]), ok());
    let r = migrate(&mut s, &me, &["k", "0", "500", "REPLACE"]);
    assert!(
        r == ok() || r == err("IOERR error or timeout reading to target instance"),
        "{r:?}"
    );
    assert_eq!(s.cmd(&["GET", "k"]), bulk("v"));
}
