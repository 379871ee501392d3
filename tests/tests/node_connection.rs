#![allow(clippy::unwrap_used)]
//! Connection-level commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET, CLIENT, unknown
//! commands and arity errors, inline commands and pipelining. Exact Redis 7 replies.

use std::time::Duration;

use tests::*;

const PW: &str = "s3cret";

#[test]
fn ping_and_echo() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd_raw(&["PING"]), b"+PONG\r\n");
    assert_eq!(c.cmd_raw(&["ping", "hello"]), b"$5\r\nhello\r\n");
    assert_eq!(c.cmd_raw(&["PING", ""]), b"$0\r\n\r\n");
    assert_eq!(c.cmd(&["PING", "a", "b"]), wrong_args("ping"));
    assert_eq!(c.cmd_raw(&["ECHO", "x y"]), b"$3\r\nx y\r\n");
    assert_eq!(c.cmd(&["ECHO", ""]), bulk(""));
    let binary: &[u8] = b"a\x00b\r\n\xffc";
    assert_eq!(c.cmd(&[&b"ECHO"[..], binary]), bulk(binary));
    assert_eq!(c.cmd(&["echo"]), wrong_args("echo"));
    assert_eq!(c.cmd(&["ECHO", "a", "b"]), wrong_args("echo"));
}

#[test]
fn inline_commands() {
    let s = start_target(&[]);
    let mut c = s.raw();
    c.send(b"PING\r\n");
    assert_eq!(c.read_reply(CMD_TIMEOUT).unwrap(), b"+PONG\r\n");
    // Bare LF, surrounding blanks, empty lines (ignored, no reply).
    c.send(b"ping\n");
    assert_eq!(c.read_reply(CMD_TIMEOUT).unwrap(), b"+PONG\r\n");
    c.send(b"   PING   \r\n");
    assert_eq!(c.read_reply(CMD_TIMEOUT).unwrap(), b"+PONG\r\n");
    c.send(b"\r\n\r\n\n");
    c.send(b"ECHO \"hello world\"\r\n");
    assert_eq!(c.reply(), bulk("hello world"));
    c.send(b"ECHO \"a\\x41b\\n\"\r\n");
    assert_eq!(c.reply(), bulk("aAb\n"));
    c.send(b"ECHO 'single quoted'\r\n");
    assert_eq!(c.reply(), bulk("single quoted"));
    c.send(b"SET k \"v 1\"\r\nGET k\r\n");
    assert_eq!(c.reply(), ok());
    assert_eq!(c.reply(), bulk("v 1"));
    c.send(b"ECHO a b\r\n");
    assert_eq!(c.reply(), wrong_args("echo"));
    // Nothing left over from the empty lines.
    assert_eq!(c.cmd(&["ECHO", "end"]), bulk("end"));
}

#[test]
fn pipelining_keeps_order() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let mut batch = Vec::new();
    for i in 0..300 {
        match i % 3 {
            0 => batch.extend_from_slice(&encode(&["ECHO", &i.to_string()])),
            1 => batch.extend_from_slice(format!("ECHO {i}\r\n").as_bytes()),
            _ => batch.extend_from_slice(&encode(&["INCR", "counter"])),
        }
    }
    c.send(&batch);
    let mut incrs = 0;
    for i in 0..300 {
        let r = c.reply();
        if i % 3 == 2 {
            incrs += 1;
            assert_eq!(r, int(incrs));
        } else {
            assert_eq!(r, bulk(i.to_string()));
        }
    }
}

/// A batch far longer than the node pulls into cache at once (the keys of every 32 requests are
/// warmed before they run), with keys sharing a bucket (one hash tag) and keys repeated inside
/// the batch: every reply is the one its own position calls for.
#[test]
fn deep_pipeline_reads_its_own_writes() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let key = |i: usize| match i % 4 {
        0 => format!("{{tag}}:{}", i % 50),
        1 => format!("plain:{}", i % 70),
        2 => "same".to_string(),
        _ => format!("k:{i}"),
    };
    let mut batch = Vec::new();
    for i in 0..600 {
        batch.extend_from_slice(&encode(&["SET", &key(i), &i.to_string()]));
        batch.extend_from_slice(&encode(&["GET", &key(i)]));
    }
    c.send(&batch);
    for i in 0..600 {
        assert_eq!(c.reply(), ok(), "SET #{i}");
        assert_eq!(c.reply(), bulk(i.to_string()), "GET #{i} of {}", key(i));
    }
}

#[test]
fn hello_resp2() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let id = c.cmd(&["CLIENT", "ID"]).int();
    for args in [vec!["HELLO"], vec!["HELLO", "2"], vec!["hello", "2"]] {
        let r = c.cmd(&args);
        let Reply::Array(items) = &r else {
            panic!("HELLO in RESP2 is a flat array: {r:?}")
        };
        assert_eq!(items.len(), 14, "{r:?}");
        let pairs = r.pairs();
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["server", "version", "proto", "id", "mode", "role", "modules"]
        );
        let server = pairs[0].1.text();
        if is_redis() {
            assert_eq!(server, "redis");
        } else {
            assert!(!server.is_empty());
        }
        let version = pairs[1].1.text();
        assert!(
            version.starts_with(|c: char| c.is_ascii_digit()) && version.contains('.'),
            "version {version:?}"
        );
        assert_eq!(pairs[2].1, int(2));
        assert_eq!(pairs[3].1, int(id));
        assert_eq!(pairs[4].1, bulk("standalone"));
        assert_eq!(pairs[5].1, bulk("master"));
        assert_eq!(pairs[6].1, arr(vec![]));
    }
}

#[test]
fn hello_resp3_and_back() {
    let s = start_target(&[]);
    let mut c = s.raw();
    c.send_cmd(&["HELLO", "3"]);
    c.set_proto(Protocol::Resp3);
    let raw = c.read(CMD_TIMEOUT).unwrap();
    assert!(
        raw.raw.starts_with(b"%7\r\n$6\r\nserver\r\n"),
        "{:?}",
        raw.raw
    );
    // (RESP3 maps decode unordered; the RESP2 test checks the field order.)
    let r = raw.reply;
    assert_eq!(r.pairs().len(), 7, "{r:?}");
    assert_eq!(r.get("proto"), Some(int(3)));
    assert_eq!(r.get("mode"), Some(bulk("standalone")));
    assert_eq!(r.get("role"), Some(bulk("master")));
    assert_eq!(r.get("modules"), Some(arr(vec![])));
    assert!(matches!(r.get("id"), Some(Reply::Int(n)) if n > 0), "{r:?}");
    assert!(
        r.get("server").is_some() && r.get("version").is_some(),
        "{r:?}"
    );
    // RESP3 null and map shapes.
    assert_eq!(c.cmd_raw(&["GET", "missing"]), b"_\r\n");
    assert_eq!(c.cmd_raw(&["HGETALL", "missing"]), b"%0\r\n");
    assert_eq!(c.cmd_raw(&["PING"]), b"+PONG\r\n");
    assert_eq!(c.cmd_raw(&["SET", "k", "v"]), b"+OK\r\n");
    // Back to RESP2.
    let r = c.cmd(&["HELLO", "2"]);
    c.set_proto(Protocol::Resp2);
    assert_eq!(r.pairs()[2].1, int(2));
    assert_eq!(c.cmd_raw(&["GET", "missing"]), b"$-1\r\n");
    assert_eq!(c.cmd_raw(&["HGETALL", "missing"]), b"*0\r\n");
}

#[test]
fn hello_errors() {
    let s = start_target(&[]);
    let mut c = s.raw();
    for v in ["4", "1", "0", "-1", "100"] {
        assert_eq!(
            c.cmd(&["HELLO", v]),
            err("NOPROTO unsupported protocol version"),
            "HELLO {v}"
        );
    }
    assert_eq!(
        c.cmd(&["HELLO", "abc"]),
        err("ERR Protocol version is not an integer or out of range")
    );
    assert_eq!(
        c.cmd(&["HELLO", "3", "AUTH", "default"]),
        err("ERR Syntax error in HELLO option 'AUTH'")
    );
    assert_eq!(
        c.cmd(&["HELLO", "3", "SETNAME"]),
        err("ERR Syntax error in HELLO option 'SETNAME'")
    );
    assert_eq!(
        c.cmd(&["HELLO", "3", "FOO"]),
        err("ERR Syntax error in HELLO option 'FOO'")
    );
    // None of the failures switched the protocol.
    assert_eq!(c.cmd_raw(&["GET", "missing"]), b"$-1\r\n");
    // Without a configured password, HELLO AUTH with any password for `default` succeeds.
    let r = c.hello3(&["AUTH", "default", "whatever", "SETNAME", "named"]);
    assert_eq!(r.get("proto"), Some(int(3)), "{r:?}");
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), bulk("named"));
}

#[test]
fn hello_auth_setname_with_requirepass() {
    let s = start_target(&["--requirepass", PW]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["HELLO", "3"]),
        err(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO AUTH <user> <pass> option can be used to authenticate the client and select \
             the RESP protocol version at the same time"
        )
    );
    assert_eq!(
        c.cmd(&["HELLO", "3", "AUTH", "default", "wrong"]),
        err("WRONGPASS invalid username-password pair or user is disabled.")
    );
    assert_eq!(c.cmd(&["GET", "k"]), err("NOAUTH Authentication required."));
    let r = c.hello3(&["AUTH", "default", PW, "SETNAME", "myname"]);
    assert_eq!(r.get("proto"), Some(int(3)), "{r:?}");
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), bulk("myname"));
    assert_eq!(c.cmd_raw(&["GET", "k"]), b"_\r\n");

    let mut c2 = s.raw();
    let r = c2.cmd(&["HELLO", "2", "AUTH", "default", PW]);
    assert_eq!(r.pairs()[2].1, int(2));
    assert_eq!(c2.cmd(&["CLIENT", "GETNAME"]), nil());
    assert_eq!(c2.cmd(&["GET", "k"]), nil());
}

#[test]
fn auth_without_password_configured() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["AUTH", "x"]),
        err(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?"
        )
    );
    assert_eq!(c.cmd(&["AUTH", "a", "b", "c"]), err(SYNTAX));
    assert_eq!(c.cmd(&["AUTH"]), wrong_args("auth"));
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
}

#[test]
fn auth_with_requirepass() {
    let s = start_target(&["--requirepass", PW]);
    let mut c = s.raw();
    let noauth = err("NOAUTH Authentication required.");
    for cmd in [
        vec!["GET", "k"],
        vec!["PING"],
        vec!["ECHO", "x"],
        vec!["CLIENT", "ID"],
        vec!["SET", "k", "v"],
        vec!["SELECT", "0"],
    ] {
        assert_eq!(c.cmd(&cmd), noauth, "{cmd:?}");
    }
    // Unknown commands and wrong arity are reported before authentication is checked.
    assert_eq!(
        c.cmd(&["FOO"]),
        err("ERR unknown command 'FOO', with args beginning with: ")
    );
    assert_eq!(c.cmd(&["GET"]), wrong_args("get"));
    let wrongpass = err("WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(c.cmd(&["AUTH", "wrong"]), wrongpass);
    assert_eq!(c.cmd(&["AUTH", "default", "wrong"]), wrongpass);
    assert_eq!(c.cmd(&["AUTH", "someone", PW]), wrongpass);
    assert_eq!(c.cmd(&["GET", "k"]), noauth);
    assert_eq!(c.cmd(&["AUTH", PW]), ok());
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
    // A failed AUTH after success keeps the connection authenticated.
    assert_eq!(c.cmd(&["AUTH", "wrong"]), wrongpass);
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));

    let mut c2 = s.raw();
    assert_eq!(c2.cmd(&["AUTH", "default", PW]), ok());
    assert_eq!(c2.cmd(&["GET", "k"]), bulk("v"));

    // QUIT needs no authentication.
    let mut c3 = s.raw();
    assert_eq!(c3.cmd(&["QUIT"]), ok());
    assert!(c3.is_closed(Duration::from_secs(5)));
}

#[test]
fn select() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SELECT", "0"]), ok());
    assert_eq!(c.cmd(&["SELECT", "abc"]), err(NOT_INTEGER));
    assert_eq!(c.cmd(&["SELECT"]), wrong_args("select"));
    assert_eq!(c.cmd(&["SET", "k", "db0"]), ok());
    if is_redis() {
        assert_eq!(
            c.cmd(&["SELECT", "16"]),
            err("ERR DB index is out of range")
        );
        assert_eq!(
            c.cmd(&["SELECT", "-1"]),
            err("ERR DB index is out of range")
        );
        assert_eq!(c.cmd(&["SELECT", "1"]), ok());
        assert_eq!(c.cmd(&["GET", "k"]), nil());
        assert_eq!(c.cmd(&["SELECT", "0"]), ok());
    } else {
        // Our node has a single database: any other index is refused and db 0 stays selected.
        for db in ["1", "15", "16", "-1"] {
            let r = c.cmd(&["SELECT", db]);
            let e = r
                .error_text()
                .unwrap_or_else(|| panic!("SELECT {db}: {r:?}"));
            assert!(e.starts_with("ERR "), "SELECT {db}: {e}");
        }
    }
    assert_eq!(c.cmd(&["GET", "k"]), bulk("db0"));
}

#[test]
fn quit_closes_after_reply() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
    assert_eq!(c.cmd_raw(&["QUIT"]), b"+OK\r\n");
    assert!(c.is_closed(Duration::from_secs(5)));
    assert_eq!(c.pending(), "");

    // Commands pipelined after QUIT are not executed.
    let mut c = s.raw();
    let mut batch = encode(&["QUIT"]);
    batch.extend_from_slice(&encode(&["SET", "after-quit", "1"]));
    c.send(&batch);
    assert_eq!(c.read_reply(CMD_TIMEOUT).unwrap(), b"+OK\r\n");
    assert!(c.is_closed(Duration::from_secs(5)));
    assert_eq!(c.pending(), "");
    let mut c = s.raw();
    assert_eq!(c.cmd(&["EXISTS", "after-quit"]), int(0));
}

#[test]
fn reset_restores_connection_defaults() {
    let s = start_target(&[]);
    let mut c = s.raw();
    c.hello3(&["SETNAME", "before"]);
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), bulk("before"));
    assert_eq!(c.cmd_raw(&["RESET"]), b"+RESET\r\n");
    c.set_proto(Protocol::Resp2);
    assert_eq!(c.cmd_raw(&["GET", "missing"]), b"$-1\r\n");
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), nil());
    assert_eq!(c.cmd(&["RESET", "x"]), wrong_args("reset"));
}

#[test]
fn reset_deauthenticates() {
    let s = start_target(&["--requirepass", PW]);
    let mut c = s.raw();
    assert_eq!(c.cmd_raw(&["RESET"]), b"+RESET\r\n");
    assert_eq!(c.cmd(&["AUTH", PW]), ok());
    assert_eq!(c.cmd(&["GET", "k"]), nil());
    assert_eq!(c.cmd(&["RESET"]), status("RESET"));
    assert_eq!(c.cmd(&["GET", "k"]), err("NOAUTH Authentication required."));
}

#[test]
fn client_id_and_names() {
    let s = start_target(&[]);
    let mut a = s.raw();
    let mut b = s.raw();
    let ida = a.cmd(&["CLIENT", "ID"]).int();
    let idb = b.cmd(&["CLIENT", "ID"]).int();
    assert!(ida > 0 && idb > ida, "ids {ida} {idb}");
    assert_eq!(a.cmd(&["CLIENT", "ID"]), int(ida));
    assert_eq!(a.cmd(&["client", "id", "x"]), wrong_args("client|id"));

    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), nil());
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "alpha"]), ok());
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), bulk("alpha"));
    assert_eq!(b.cmd(&["CLIENT", "GETNAME"]), nil());
    let bad = err("ERR Client names cannot contain spaces, newlines or special characters.");
    for name in ["a b", "a\nb", "a\x01b", "é"] {
        assert_eq!(a.cmd(&["CLIENT", "SETNAME", name]), bad, "{name:?}");
    }
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), bulk("alpha"));
    assert_eq!(a.cmd(&["CLIENT", "SETNAME"]), wrong_args("client|setname"));
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", ""]), ok());
    assert_eq!(a.cmd(&["CLIENT", "GETNAME"]), nil());
    assert_eq!(
        a.cmd(&["CLIENT", "foo"]),
        err("ERR unknown subcommand 'foo'. Try CLIENT HELP.")
    );
    assert_eq!(a.cmd(&["CLIENT"]), wrong_args("client"));
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

#[test]
fn client_list_and_info() {
    let s = start_target(&[]);
    let mut a = s.raw();
    let mut b = s.raw();
    assert_eq!(a.cmd(&["CLIENT", "SETNAME", "alpha"]), ok());
    let ida = a.cmd(&["CLIENT", "ID"]).int();
    let idb = b.cmd(&["CLIENT", "ID"]).int();

    let mut text;
    assert_eventually!(
        {
            text = a.cmd(&["CLIENT", "LIST"]).text();
            text.lines().count() == 2
        },
        Duration::from_secs(5),
        "CLIENT LIST should list exactly our 2 connections: {text:?}"
    );
    assert!(text.ends_with('\n'), "{text:?}");
    let line_a = text
        .lines()
        .find(|l| field(l, "id") == Some(&ida.to_string()))
        .unwrap();
    let line_b = text
        .lines()
        .find(|l| field(l, "id") == Some(&idb.to_string()))
        .unwrap();
    assert_eq!(
        field(line_a, "addr"),
        Some(a.local_addr().to_string().as_str())
    );
    assert_eq!(
        field(line_b, "addr"),
        Some(b.local_addr().to_string().as_str())
    );
    assert_eq!(field(line_a, "name"), Some("alpha"));
    assert_eq!(field(line_b, "name"), Some(""));
    if is_redis() {
        let names: Vec<&str> = line_a
            .split(' ')
            .map(|kv| kv.split('=').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "id",
                "addr",
                "laddr",
                "fd",
                "name",
                "age",
                "idle",
                "flags",
                "db",
                "sub",
                "psub",
                "ssub",
                "multi",
                "qbuf",
                "qbuf-free",
                "argv-mem",
                "multi-mem",
                "rbs",
                "rbp",
                "obl",
                "oll",
                "omem",
                "tot-mem",
                "events",
                "cmd",
                "user",
                "redir",
                "resp"
            ]
        );
        assert_eq!(field(line_a, "cmd"), Some("client|list"));
        assert_eq!(field(line_b, "cmd"), Some("client|id"));
        assert_eq!(field(line_a, "laddr"), Some(s.addr.to_string().as_str()));
    }

    // Filtering by ID.
    let only_b = a.cmd(&["CLIENT", "LIST", "ID", &idb.to_string()]).text();
    assert_eq!(only_b.lines().count(), 1, "{only_b:?}");
    assert_eq!(
        field(only_b.lines().next().unwrap(), "id"),
        Some(idb.to_string().as_str())
    );
    let none = a.cmd(&["CLIENT", "LIST", "ID", "999999"]).text();
    assert_eq!(none, "");
    let normal = a.cmd(&["CLIENT", "LIST", "TYPE", "normal"]).text();
    assert_eq!(normal.lines().count(), 2, "{normal:?}");

    // CLIENT INFO describes the calling connection only.
    let info = a.cmd(&["CLIENT", "INFO"]).text();
    assert!(info.ends_with('\n'), "{info:?}");
    assert_eq!(info.lines().count(), 1, "{info:?}");
    assert_eq!(field(&info, "id"), Some(ida.to_string().as_str()));
    assert_eq!(field(&info, "name"), Some("alpha"));
    assert_eq!(
        field(&info, "addr"),
        Some(a.local_addr().to_string().as_str())
    );
    let info_b = b.cmd(&["CLIENT", "INFO"]).text();
    assert_eq!(field(&info_b, "id"), Some(idb.to_string().as_str()));
}

#[test]
fn client_kill() {
    let s = start_target(&[]);
    let mut a = s.raw();
    let mut b = s.raw();
    let mut c = s.raw();
    let mut d = s.raw();
    let ida = a.cmd(&["CLIENT", "ID"]).int();
    let idb = b.cmd(&["CLIENT", "ID"]).int();
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
    assert_eq!(d.cmd(&["PING"]), status("PONG"));

    // New form: number of clients killed.
    assert_eq!(a.cmd(&["CLIENT", "KILL", "ID", &idb.to_string()]), int(1));
    assert!(
        b.is_closed(Duration::from_secs(5)),
        "killed client stays open"
    );
    assert_eq!(a.cmd(&["CLIENT", "KILL", "ID", &idb.to_string()]), int(0));
    assert_eq!(a.cmd(&["CLIENT", "KILL", "ID", "99999999"]), int(0));
    // SKIPME defaults to yes.
    assert_eq!(a.cmd(&["CLIENT", "KILL", "ID", &ida.to_string()]), int(0));
    let c_addr = c.local_addr().to_string();
    assert_eq!(a.cmd(&["CLIENT", "KILL", "ADDR", &c_addr]), int(1));
    assert!(c.is_closed(Duration::from_secs(5)));
    assert_eq!(a.cmd(&["CLIENT", "KILL", "ADDR", &c_addr]), int(0));

    // Old form: OK or an error.
    let d_addr = d.local_addr().to_string();
    assert_eq!(a.cmd(&["CLIENT", "KILL", &d_addr]), ok());
    assert!(d.is_closed(Duration::from_secs(5)));
    assert_eq!(
        a.cmd(&["CLIENT", "KILL", &d_addr]),
        err("ERR No such client")
    );
    assert_eq!(
        a.cmd(&["CLIENT", "KILL", "1.2.3.4:5"]),
        err("ERR No such client")
    );
    assert_eq!(
        a.cmd(&["CLIENT", "KILL", "ID", "1", "FOO", "bar"]),
        err(SYNTAX)
    );
    assert_eq!(a.cmd(&["CLIENT", "KILL"]), wrong_args("client|kill"));

    // Killing oneself with SKIPME no: the reply still arrives, then the connection closes.
    assert_eq!(
        a.cmd(&["CLIENT", "KILL", "ID", &ida.to_string(), "SKIPME", "no"]),
        int(1)
    );
    assert!(a.is_closed(Duration::from_secs(5)));
    let mut e = s.raw();
    assert_eq!(e.cmd(&["PING"]), status("PONG"));
}

#[test]
fn unknown_command_errors() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["foo", "a", "b"]),
        err("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
    );
    assert_eq!(
        c.cmd(&["FOO"]),
        err("ERR unknown command 'FOO', with args beginning with: ")
    );
    assert_eq!(
        c.cmd(&[""]),
        err("ERR unknown command '', with args beginning with: ")
    );
    assert_eq!(
        c.cmd(&["", ""]),
        err("ERR unknown command '', with args beginning with: '' ")
    );
    // Newlines in the echoed arguments become spaces (an error is one line).
    assert_eq!(
        c.cmd(&["foo", "a\r\nb"]),
        err("ERR unknown command 'foo', with args beginning with: 'a  b' ")
    );
    // The arguments shown stop once 128 characters have been echoed; each is cut to fit.
    let a100 = "a".repeat(100);
    let b100 = "b".repeat(100);
    let expected = format!(
        "ERR unknown command 'foo', with args beginning with: '{a100}' '{}' ",
        "b".repeat(25)
    );
    assert_eq!(c.cmd(&["foo", &a100, &b100, "c"]), err(&expected));
    // The command name is cut at 128 characters.
    let long = "x".repeat(200);
    assert_eq!(
        c.cmd(&[long.as_str()]),
        err(&format!(
            "ERR unknown command '{}', with args beginning with: ",
            "x".repeat(128)
        ))
    );
    assert_eq!(
        c.cmd(&["CONFIG", "foo"]),
        err("ERR unknown subcommand 'foo'. Try CONFIG HELP.")
    );
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
}

#[test]
fn wrong_arity_errors() {
    let s = start_target(&[]);
    let mut c = s.raw();
    for (cmd, name) in [
        (vec!["GET"], "get"),
        (vec!["get", "a", "b"], "get"),
        (vec!["SET", "k"], "set"),
        (vec!["HGET", "h"], "hget"),
        (vec!["HSET", "h", "f"], "hset"),
        (vec!["MSET", "a"], "mset"),
        (vec!["DEL"], "del"),
        (vec!["EXPIRE", "k"], "expire"),
        (vec!["INCRBY", "k"], "incrby"),
        (vec!["ECHO"], "echo"),
        (vec!["CONFIG", "GET"], "config|get"),
        (vec!["CLIENT", "SETNAME"], "client|setname"),
    ] {
        assert_eq!(c.cmd(&cmd), wrong_args(name), "{cmd:?}");
    }
}

#[tokio::test]
async fn redis_rs_client_works() {
    let s = start_target(&[]);
    let mut con = client(s.addr).await;
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    let v: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    let vs: Vec<Option<String>> = redis::cmd("MGET")
        .arg("k")
        .arg("missing")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(vs, vec![Some("v".to_string()), None]);
    let e = redis::cmd("GET")
        .query_async::<Option<String>>(&mut con)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("wrong number of arguments for 'get' command"),
        "{e}"
    );
    let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
    assert_eq!(pong, "PONG");
}
