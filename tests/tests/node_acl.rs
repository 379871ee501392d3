#![allow(clippy::unwrap_used)]
//! ACL users on a node: AUTH as a user, NOPERM for commands, keys and channels (Redis 7.0's exact
//! errors), %R~/%W~ key permissions, selectors, the ACL LOG, DELUSER disconnecting, the aclfile
//! (at start, ACL LOAD, ACL SAVE), the cluster-commands rule and the failed-AUTH limit.

use std::time::Duration;

use tests::*;

const NOPERM_KEY: &str =
    "NOPERM this user has no permissions to access one of the keys used as arguments";
const NOPERM_CHANNEL: &str =
    "NOPERM this user has no permissions to access one of the channels used as arguments";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

fn noperm_cmd(cmd: &str) -> Reply {
    err(&format!(
        "NOPERM this user has no permissions to run the '{cmd}' command"
    ))
}

#[test]
fn wrong_password_and_disabled_user() {
    let s = start_target(&[]);
    let mut admin = s.raw();
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "alice", "on", ">pw1", "~*", "&*", "+@all"]),
        ok()
    );
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "bob", "off", ">pw2", "+@all"]),
        ok()
    );
    let mut c = s.raw();
    assert_eq!(c.cmd(&["AUTH", "alice", "nope"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["AUTH", "bob", "pw2"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["AUTH", "nobody", "x"]), err(WRONGPASS));
    assert_eq!(c.cmd(&["AUTH", "alice", "pw1"]), ok());
    assert_eq!(c.cmd(&["ACL", "WHOAMI"]), bulk("alice"));
    let info = c.cmd(&["CLIENT", "INFO"]).text();
    assert!(info.contains(" user=alice "), "{info}");
    // HELLO AUTH too.
    let mut h = s.raw();
    assert_eq!(
        h.cmd(&["HELLO", "2", "AUTH", "alice", "bad"]),
        err(WRONGPASS)
    );
    assert!(h
        .cmd(&["HELLO", "2", "AUTH", "alice", "pw1"])
        .get("proto")
        .is_some());
    let stats = admin.cmd(&["INFO", "stats"]).text();
    if !is_redis() {
        assert!(stats.contains("acl_access_denied_auth:4\r\n"), "{stats}");
    }
    let log = admin.cmd(&["ACL", "LOG", "1"]).items();
    assert_eq!(log[0].get("reason").unwrap().text(), "auth");
    // The object is the command as typed (HELLO here).
    assert_eq!(log[0].get("object").unwrap().text(), "HELLO");
    assert_eq!(log[0].get("username").unwrap().text(), "alice");
}

#[test]
fn command_key_and_channel_permissions() {
    let s = start_target(&[]);
    let mut admin = s.raw();
    assert_eq!(
        admin.cmd(&[
            "ACL",
            "SETUSER",
            "u",
            "on",
            ">pw",
            "~k*",
            "&ch*",
            "+get",
            "+set",
            "+publish",
            "+subscribe",
            "+client|id",
            "+multi",
            "+exec",
        ]),
        ok()
    );
    let mut c = s.raw();
    assert_eq!(c.cmd(&["AUTH", "u", "pw"]), ok());
    assert_eq!(c.cmd(&["SET", "k1", "v"]), ok());
    assert_eq!(c.cmd(&["GET", "k1"]), bulk("v"));
    assert_eq!(c.cmd(&["GET", "other"]), err(NOPERM_KEY));
    assert_eq!(c.cmd(&["DEL", "k1"]), noperm_cmd("del"));
    assert_eq!(c.cmd(&["CLIENT", "LIST"]), noperm_cmd("client|list"));
    assert!(matches!(c.cmd(&["CLIENT", "ID"]), Reply::Int(_)));
    assert_eq!(c.cmd(&["PUBLISH", "ch1", "x"]), int(0));
    assert_eq!(c.cmd(&["PUBLISH", "news", "x"]), err(NOPERM_CHANNEL));
    assert_eq!(c.cmd(&["SUBSCRIBE", "ch1", "zz"]), err(NOPERM_CHANNEL));
    // Inside MULTI the refusal aborts the transaction.
    assert_eq!(c.cmd(&["MULTI"]), ok());
    assert_eq!(c.cmd(&["GET", "zz"]), err(NOPERM_KEY));
    assert_eq!(
        c.cmd(&["EXEC"]),
        err("EXECABORT Transaction discarded because of previous errors.")
    );
    let log = admin.cmd(&["ACL", "LOG"]).items();
    assert_eq!(log[0].get("context").unwrap().text(), "multi");
    assert_eq!(log[0].get("object").unwrap().text(), "zz");
    assert_eq!(log[0].get("reason").unwrap().text(), "key");
    let reasons: Vec<String> = log
        .iter()
        .map(|e| e.get("reason").unwrap().text())
        .collect();
    assert!(reasons.contains(&"channel".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"command".to_string()), "{reasons:?}");
    assert_eq!(admin.cmd(&["ACL", "LOG", "RESET"]), ok());
    assert_eq!(admin.cmd(&["ACL", "LOG"]), arr(vec![]));
}

#[test]
fn read_write_key_patterns_and_selectors() {
    let s = start_target(&[]);
    let mut admin = s.raw();
    assert_eq!(
        admin.cmd(&[
            "ACL",
            "SETUSER",
            "rw",
            "on",
            "nopass",
            "%R~r*",
            "%W~w*",
            "+@all",
            "(~sel* +get)",
        ]),
        ok()
    );
    assert_eq!(admin.cmd(&["ACL", "DRYRUN", "rw", "GET", "r1"]), ok());
    assert_eq!(
        admin.cmd(&["ACL", "DRYRUN", "rw", "SET", "r1", "v"]),
        bulk("This user has no permissions to access the 'r1' key")
    );
    // SET reads its key only with GET (its key spec's flags vary with the arguments).
    assert_eq!(admin.cmd(&["ACL", "DRYRUN", "rw", "SET", "w1", "v"]), ok());
    assert_eq!(
        admin.cmd(&["ACL", "DRYRUN", "rw", "SET", "w1", "v", "GET"]),
        bulk("This user has no permissions to access the 'w1' key")
    );
    assert_eq!(
        admin.cmd(&["ACL", "DRYRUN", "rw", "GET", "w1"]),
        bulk("This user has no permissions to access the 'w1' key")
    );
    // LMOVE reads and deletes from its source, inserts into its destination.
    assert_eq!(
        admin.cmd(&["ACL", "DRYRUN", "rw", "LMOVE", "r1", "w1", "LEFT", "LEFT"]),
        bulk("This user has no permissions to access the 'r1' key")
    );
    // The selector allows GET of sel*, the root selector nothing under that name.
    assert_eq!(admin.cmd(&["ACL", "DRYRUN", "rw", "GET", "sel1"]), ok());
    assert_eq!(
        admin.cmd(&["ACL", "DRYRUN", "rw", "SET", "sel1", "v"]),
        bulk("This user has no permissions to access the 'sel1' key")
    );
    assert_eq!(
        admin
            .cmd(&["ACL", "GETUSER", "rw"])
            .get("keys")
            .unwrap()
            .text(),
        "%R~r* %W~w*"
    );
    let list = admin.cmd(&["ACL", "LIST"]).strings();
    assert!(
        list.contains(
            &"user rw on nopass %R~r* %W~w* resetchannels +@all (~sel* resetchannels -@all +get)"
                .to_string()
        ),
        "{list:?}"
    );
    let mut c = s.raw();
    assert_eq!(c.cmd(&["AUTH", "rw", "any"]), ok());
    assert_eq!(c.cmd(&["SET", "w1", "v"]), ok());
    assert_eq!(c.cmd(&["GET", "w1"]), err(NOPERM_KEY));
}

#[test]
fn setuser_errors_match_redis() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let cases: &[(&[&str], &str)] = &[
        (&["foo"], "ERR Error in ACL SETUSER modifier 'foo': Syntax error"),
        (
            &["+nosuch"],
            "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL",
        ),
        (&["(~x"], "ERR Unmatched parenthesis in acl selector starting at '(~x'."),
        (
            &["#abc"],
            "ERR Error in ACL SETUSER modifier '#abc': The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters",
        ),
        (
            &["<x"],
            "ERR Error in ACL SETUSER modifier '<x': The password you are trying to remove from the user does not exist",
        ),
        (
            &["~*", "~b"],
            "ERR Error in ACL SETUSER modifier '~b': Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns",
        ),
    ];
    for (ops, want) in cases {
        let mut args = vec!["ACL", "SETUSER", "e"];
        args.extend_from_slice(ops);
        assert_eq!(c.cmd(&args), err(want), "{ops:?}");
    }
    assert_eq!(
        c.cmd(&["ACL", "DELUSER", "default"]),
        err("ERR The 'default' user cannot be removed")
    );
    assert_eq!(c.cmd(&["ACL", "GETUSER", "nobody"]), nil());
    assert_eq!(c.cmd(&["ACL", "GENPASS", "5"]).text().len(), 2);
    assert_eq!(c.cmd(&["ACL", "GENPASS"]).text().len(), 64);
}

#[test]
fn deluser_disconnects_its_clients() {
    let s = start_target(&[]);
    let mut admin = s.raw();
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "gone", "on", ">pw", "+@all", "~*"]),
        ok()
    );
    let mut c = s.raw();
    assert_eq!(c.cmd(&["AUTH", "gone", "pw"]), ok());
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
    assert_eq!(admin.cmd(&["ACL", "DELUSER", "gone", "never"]), int(1));
    assert!(c.is_closed(Duration::from_secs(5)));
    assert_eq!(admin.cmd(&["ACL", "USERS"]), bulks(&["default"]));
}

/// Narrowing a user's channels disconnects only its clients subscribed to something the new
/// rules refuse (patterns compared as written), as Redis does.
#[test]
fn narrowed_channels_disconnect_only_the_subscribers_they_refuse() {
    let s = start_target(&[]);
    let mut admin = s.raw();
    let user = ["ACL", "SETUSER", "sub", "on", ">pw", "+@all", "~*"];
    let with = |channels: &[&'static str]| {
        let mut v = user.to_vec();
        v.push("resetchannels");
        v.extend_from_slice(channels);
        v
    };
    assert_eq!(admin.cmd(&with(&["&news.*", "&sports"])), ok());
    let subscriber = |cmd: &str, name: &str| {
        let mut c = s.raw();
        assert_eq!(c.cmd(&["AUTH", "sub", "pw"]), ok());
        assert_eq!(c.cmd(&[cmd, name]).items().len(), 3);
        c
    };
    let mut channel = subscriber("SUBSCRIBE", "news.1");
    let mut sports = subscriber("SUBSCRIBE", "sports");
    let mut pattern = subscriber("PSUBSCRIBE", "news.*");
    assert_eq!(admin.cmd(&with(&["&news.*"])), ok());
    assert!(sports.is_closed(Duration::from_secs(5)));
    assert_eq!(admin.cmd(&["PUBLISH", "news.1", "a"]), int(2));
    assert_eq!(admin.cmd(&with(&["&news.1"])), ok());
    assert!(pattern.is_closed(Duration::from_secs(5)));
    assert_eq!(admin.cmd(&["PUBLISH", "news.1", "b"]), int(1));
    assert_eq!(
        channel.reply(),
        arr(vec![bulk("message"), bulk("news.1"), bulk("a")])
    );
    assert_eq!(
        channel.reply(),
        arr(vec![bulk("message"), bulk("news.1"), bulk("b")])
    );
}

/// `acllog-max-len` bounds the ACL log; a lower value takes effect at the next refusal.
#[test]
fn acllog_max_len_bounds_the_log() {
    let s = start_target(&[]);
    let mut admin = s.raw();
    assert_eq!(
        admin.cmd(&["CONFIG", "GET", "acllog-max-len"]),
        arr(vec![bulk("acllog-max-len"), bulk("128")])
    );
    assert_eq!(
        admin.cmd(&["ACL", "SETUSER", "few", "on", ">pw", "+get", "~a*"]),
        ok()
    );
    let mut c = s.raw();
    assert_eq!(c.cmd(&["AUTH", "few", "pw"]), ok());
    for key in ["b1", "b2", "b3"] {
        assert_eq!(c.cmd(&["GET", key]), err(NOPERM_KEY));
    }
    assert_eq!(admin.cmd(&["ACL", "LOG"]).items().len(), 3);
    assert_eq!(admin.cmd(&["CONFIG", "SET", "acllog-max-len", "2"]), ok());
    assert_eq!(admin.cmd(&["ACL", "LOG"]).items().len(), 3);
    assert_eq!(c.cmd(&["GET", "b4"]), err(NOPERM_KEY));
    assert_eq!(admin.cmd(&["ACL", "LOG"]).items().len(), 2);
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "acllog-max-len", "-1"]),
        err("ERR CONFIG SET failed (possibly related to argument 'acllog-max-len') - argument must be between 0 and 9223372036854775807 inclusive")
    );
}

#[test]
fn scripts_are_checked_per_call() {
    let s = start_target(&[]);
    let mut admin = s.raw();
    assert_eq!(
        admin.cmd(&[
            "ACL",
            "SETUSER",
            "lua",
            "on",
            ">pw",
            "~x*",
            "+@scripting",
            "+get"
        ]),
        ok()
    );
    let mut c = s.raw();
    assert_eq!(c.cmd(&["AUTH", "lua", "pw"]), ok());
    let r = c.cmd(&["EVAL", "return redis.call('get','y')", "0"]);
    assert!(
        r.error_text().unwrap().starts_with("ERR The user executing the script can't access at least one of the keys mentioned in the command arguments"),
        "{r:?}"
    );
    assert_eq!(
        c.cmd(&["EVAL", "return redis.acl_check_cmd('get','x1')", "0"]),
        int(1)
    );
    assert_eq!(
        c.cmd(&["EVAL", "return redis.acl_check_cmd('set','x1','v')", "0"]),
        nil()
    );
    let log = admin.cmd(&["ACL", "LOG", "1"]).items();
    assert_eq!(log[0].get("context").unwrap().text(), "lua");
}

#[test]
fn requirepass_sets_the_default_password() {
    let s = start_target(&[]);
    let mut admin = s.raw();
    assert_eq!(admin.cmd(&["CONFIG", "SET", "requirepass", "pw"]), ok());
    let line = admin.cmd(&["ACL", "LIST"]).strings()[0].clone();
    assert!(line.starts_with("user default on #"), "{line}");
    let mut c = s.raw();
    assert_eq!(c.cmd(&["GET", "k"]), err("NOAUTH Authentication required."));
    assert_eq!(c.cmd(&["AUTH", "pw"]), ok());
    assert_eq!(admin.cmd(&["CONFIG", "SET", "requirepass", ""]), ok());
    assert_eq!(
        admin.cmd(&["ACL", "LIST"]).strings()[0],
        "user default on nopass ~* &* +@all"
    );
}

fn write_aclfile(text: &str) -> std::path::PathBuf {
    let dir = scratch_dir("acl");
    let path = dir.join("users.acl");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn aclfile_at_start_load_and_save() {
    let path =
        write_aclfile("user alice on >pw ~a* +get +set\nuser default on nopass ~* &* +@all\n");
    let s = start_node(&["--aclfile", path.to_str().unwrap()]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["ACL", "USERS"]), bulks(&["alice", "default"]));
    let mut a = s.raw();
    assert_eq!(a.cmd(&["AUTH", "alice", "pw"]), ok());
    assert_eq!(a.cmd(&["GET", "b"]), err(NOPERM_KEY));
    // ACL LOAD: bob appears, alice goes (her connection with her).
    std::fs::write(&path, "user bob on >pw2 ~* +@all\n").unwrap();
    assert_eq!(c.cmd(&["ACL", "LOAD"]), ok());
    assert_eq!(c.cmd(&["ACL", "USERS"]), bulks(&["bob", "default"]));
    assert!(a.is_closed(Duration::from_secs(5)));
    // A bad file changes nothing and names its line.
    std::fs::write(&path, "user carol on +get\nuser dave +nosuch\n").unwrap();
    let e = c.cmd(&["ACL", "LOAD"]).error_text().unwrap();
    assert!(
        e.contains("users.acl:2: Error in applying operation '+nosuch'"),
        "{e}"
    );
    assert_eq!(c.cmd(&["ACL", "USERS"]), bulks(&["bob", "default"]));
    // ACL SAVE writes what ACL LIST shows; loading it back gives the same users.
    assert_eq!(
        c.cmd(&[
            "ACL",
            "SETUSER",
            "erin",
            "on",
            "#0000000000000000000000000000000000000000000000000000000000000001",
            "%R~e*",
            "&n*",
            "+@read",
            "(~s* +set)"
        ]),
        ok()
    );
    let before = c.cmd(&["ACL", "LIST"]);
    assert_eq!(c.cmd(&["ACL", "SAVE"]), ok());
    let saved = std::fs::read_to_string(&path).unwrap();
    assert_eq!(saved.lines().count(), 3, "{saved}");
    assert_eq!(c.cmd(&["ACL", "LOAD"]), ok());
    assert_eq!(c.cmd(&["ACL", "LIST"]), before);
}

#[test]
fn bad_aclfile_refuses_to_start() {
    let path = write_aclfile("user ok on +get\nnot a user line\n");
    let e = try_start_node(
        0,
        &["--aclfile", path.to_str().unwrap()],
        Duration::from_secs(10),
    )
    .err()
    .unwrap();
    assert!(e.contains("users.acl:2"), "{e}");
}

#[test]
fn cluster_commands_need_a_cluster_user() {
    let path =
        write_aclfile("user default on >pw ~* &* +@all\nuser ringcache on >cpw ~* &* +@all\n");
    let s = start_node(&["--aclfile", path.to_str().unwrap()]);
    let mut d = s.raw();
    assert_eq!(d.cmd(&["AUTH", "pw"]), ok());
    assert_eq!(d.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(d.cmd(&["TOPOLOGY", "GET"]), noperm_cmd("topology"));
    assert_eq!(
        d.cmd(&["REPLCONF", "listening-port", "1"]),
        noperm_cmd("replconf")
    );
    assert_eq!(d.cmd(&["SYNC"]), noperm_cmd("sync"));
    let mut r = s.raw();
    assert_eq!(r.cmd(&["AUTH", "ringcache", "cpw"]), ok());
    let t = r.cmd(&["TOPOLOGY", "GET"]);
    assert!(
        t.error_text().is_none_or(|e| !e.starts_with("NOPERM")),
        "{t:?}"
    );
    // A node with no password keeps everything for `default`.
    let open = start_node(&[]);
    let t = open.raw().cmd(&["TOPOLOGY", "GET"]);
    assert!(
        t.error_text().is_none_or(|e| !e.starts_with("NOPERM")),
        "{t:?}"
    );
}

#[test]
fn failed_auth_is_rate_limited_per_address() {
    let s = start_node(&["--requirepass", "pw", "--auth-failure-limit", "3"]);
    let mut admin = s.raw();
    assert_eq!(admin.cmd(&["AUTH", "pw"]), ok());
    let mut c = s.raw();
    for _ in 0..3 {
        assert_eq!(c.cmd(&["AUTH", "wrong"]), err(WRONGPASS));
    }
    let limited = c.cmd(&["AUTH", "pw"]).error_text().unwrap();
    assert!(limited.contains("auth-failure-limit 3"), "{limited}");
    // The limit is per address, not per connection.
    let mut other = s.raw();
    let e = other.cmd(&["HELLO", "3", "AUTH", "default", "pw"]);
    assert!(
        e.error_text().unwrap().contains("too many failed AUTH"),
        "{e:?}"
    );
    assert_eq!(
        admin
            .cmd(&["CONFIG", "GET", "auth-failure-limit"])
            .strings()[1],
        "3"
    );
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "auth-failure-limit", "0"]),
        ok()
    );
    assert_eq!(other.cmd(&["AUTH", "pw"]), ok());
}

/// ACL replies whose content Redis fixes (no random passwords, at most one single command per
/// selector, whose order in Redis follows its hash table), byte for byte, in RESP2 and RESP3.
#[test]
fn acl_replies_match_redis_byte_for_byte() {
    let script: &[&[&str]] = &[
        &[
            "ACL", "SETUSER", "a", "on", ">pw", "~k*", "%R~r*", "%W~w*", "&c*", "+@hash", "-hset",
        ],
        &[
            "ACL",
            "SETUSER",
            "b",
            "reset",
            "+@all",
            "-@dangerous",
            "(~x* &y +@read)",
            "(%RW~z* +get)",
        ],
        &[
            "ACL",
            "SETUSER",
            "c",
            "nopass",
            "allkeys",
            "allchannels",
            "+client|id",
        ],
        &["ACL", "SETUSER", "d", "+select|0"],
        &[
            "ACL",
            "SETUSER",
            "e",
            "on",
            "#5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
            "<pw",
        ],
        &["ACL", "GETUSER", "a"],
        &["ACL", "GETUSER", "b"],
        &["ACL", "GETUSER", "c"],
        &["ACL", "GETUSER", "d"],
        &["ACL", "GETUSER", "default"],
        &["ACL", "GETUSER", "none"],
        &["ACL", "LIST"],
        &["ACL", "USERS"],
        &["ACL", "WHOAMI"],
        &["ACL", "CAT"],
        &["ACL", "CAT", "nosuch"],
        &["ACL", "CAT", "a", "b"],
        &["ACL", "DRYRUN", "a", "hget", "k1", "f"],
        &["ACL", "DRYRUN", "a", "hset", "k1", "f", "v"],
        &["ACL", "DRYRUN", "a", "hget", "w1", "f"],
        &["ACL", "DRYRUN", "b", "get", "z1"],
        &["ACL", "DRYRUN", "b", "flushall"],
        &["ACL", "DRYRUN", "c", "get", "k"],
        &["ACL", "DRYRUN", "c", "client", "id"],
        &["ACL", "DRYRUN", "none", "get", "k"],
        &["ACL", "DRYRUN", "a", "nocmd"],
        &["ACL", "DRYRUN", "a", "get"],
        &["ACL", "SETUSER", "bad name"],
        &["ACL", "SETUSER", "x", "+get|"],
        &["ACL", "SETUSER", "x", "+client|nosuch"],
        &["ACL", "SETUSER", "x", "(+get", "(~x)"],
        &["ACL", "SETUSER", "x", "&*", "&b"],
        &["ACL", "DELUSER", "a", "b", "nobody"],
        &["ACL", "LOG", "x"],
        &["ACL", "GENPASS", "0"],
        &["ACL", "LOAD"],
        &["ACL", "SAVE"],
        &["ACL", "HELP"],
        &["ACL", "NOSUCH"],
        &["ACL", "GETUSER"],
        &["AUTH", "x"],
        &["AUTH", "c", "anything"],
        &["ACL", "WHOAMI"],
    ];
    for resp3 in [false, true] {
        let node = start_node(&[]);
        let redis = start_redis(&[]);
        let (mut a, mut b) = (node.raw(), redis.raw());
        if resp3 {
            assert!(!a.hello3(&[]).is_error());
            assert!(!b.hello3(&[]).is_error());
        }
        for cmd in script {
            let (ours, theirs) = (a.cmd_raw(cmd), b.cmd_raw(cmd));
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{cmd:?} (resp3: {resp3})"
            );
        }
    }
}
