#![allow(clippy::unwrap_used)]
//! Server commands: INFO, COMMAND, CONFIG, TIME, SAVE/BGSAVE, OBJECT/DEBUG.

use std::time::Duration;

use tests::*;

fn info(c: &mut Raw, args: &[&str]) -> String {
    let mut cmd = vec!["INFO"];
    cmd.extend_from_slice(args);
    match c.cmd(&cmd) {
        Reply::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
        other => panic!("INFO {args:?} should be a bulk string in RESP2, got {other:?}"),
    }
}

fn info_field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::to_string))
}

#[test]
fn info_sections() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let all = info(&mut c, &[]);
    for marker in [
        "# Server\r\n",
        "\r\nredis_version:",
        "# Clients\r\n",
        "\r\nconnected_clients:",
        "# Memory\r\n",
        "\r\nused_memory:",
        "# Stats\r\n",
        "# Keyspace\r\n",
    ] {
        assert!(all.contains(marker), "INFO lacks {marker:?}:\n{all}");
    }
    assert!(all.ends_with("\r\n"), "{all:?}");
    assert!(
        !all.contains("\n\n") && !all.replace("\r\n", "").contains('\n'),
        "CRLF lines"
    );
    let used: u64 = info_field(&all, "used_memory").unwrap().parse().unwrap();
    assert!(used > 0);
    let version = info_field(&all, "redis_version").unwrap();
    assert!(
        version.starts_with(|ch: char| ch.is_ascii_digit()),
        "{version}"
    );
    // Empty keyspace section.
    assert_eq!(info(&mut c, &["keyspace"]), "# Keyspace\r\n");

    assert_eq!(c.cmd(&["SET", "a", "1"]), ok());
    assert_eq!(c.cmd(&["SET", "b", "2", "EX", "100"]), ok());
    assert_eq!(c.cmd(&["HSET", "h", "f", "v"]), int(1));
    let ks = info(&mut c, &["keyspace"]);
    assert!(
        ks.starts_with("# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl="),
        "{ks:?}"
    );
    let avg_ttl = info_field(&ks, "db0").unwrap();
    let avg_ttl: u64 = avg_ttl.rsplit('=').next().unwrap().parse().unwrap();
    assert!(avg_ttl <= 100_000, "avg_ttl is in ms: {avg_ttl}");
    assert!(info(&mut c, &[]).contains("\r\ndb0:keys=3,expires=1,avg_ttl="));

    let server = info(&mut c, &["server"]);
    assert!(server.starts_with("# Server\r\n"), "{server}");
    assert!(server.contains("\r\nredis_version:"));
    assert!(!server.contains("# Clients"));
    assert!(!server.contains("# Keyspace"));
    let server_upper = info(&mut c, &["SERVER"]);
    assert!(server_upper.starts_with("# Server\r\n"));
    let two = info(&mut c, &["server", "clients"]);
    assert!(
        two.contains("# Server\r\n") && two.contains("# Clients\r\n"),
        "{two}"
    );
    assert!(!two.contains("# Memory"));
    for section in ["all", "everything", "default"] {
        let text = info(&mut c, &[section]);
        assert!(
            text.contains("# Server\r\n") && text.contains("# Keyspace\r\n"),
            "{section}"
        );
    }
    assert_eq!(info(&mut c, &["nosuchsection"]), "");
    let mem = info(&mut c, &["memory"]);
    assert!(
        mem.starts_with("# Memory\r\n") && mem.contains("\r\nused_memory:"),
        "{mem}"
    );
    let stats = info(&mut c, &["stats"]);
    assert!(stats.starts_with("# Stats\r\n"), "{stats}");
}

#[test]
fn info_connected_clients_and_resp3() {
    let s = start_target(&[]);
    let mut a = s.raw();
    let mut b = s.raw();
    assert_eq!(b.cmd(&["PING"]), status("PONG"));
    assert_eventually!(
        info_field(&info(&mut a, &["clients"]), "connected_clients").as_deref() == Some("2"),
        Duration::from_secs(5)
    );
    drop(b);
    assert_eventually!(
        info_field(&info(&mut a, &["clients"]), "connected_clients").as_deref() == Some("1"),
        Duration::from_secs(5)
    );
    // RESP3: INFO is a verbatim string.
    let mut c3 = s.raw();
    c3.hello3(&[]);
    c3.send_cmd(&["INFO", "server"]);
    let r = c3.read(CMD_TIMEOUT).unwrap();
    assert!(r.raw.starts_with(b"="), "{:?}", r.raw);
    assert!(
        r.raw[..20].windows(6).any(|w| w == b"\r\ntxt:"),
        "{:?}",
        r.raw
    );
    assert!(r.reply.text().starts_with("# Server\r\n"), "{:?}", r.reply);
}

/// CONFIG, COMMAND and CLIENT HELP answer their help texts (an error telling the client to try
/// CONFIG HELP must not come from CONFIG HELP itself), and COMMAND LIST shows them.
#[test]
fn help_subcommands() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let config = c.cmd(&["CONFIG", "HELP"]).strings();
    assert_eq!(
        config.first().map(String::as_str),
        Some("CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
    );
    assert!(config.contains(&"RESETSTAT".to_string()), "{config:?}");
    let command = c.cmd(&["command", "help"]).strings();
    assert_eq!(
        command.first().map(String::as_str),
        Some("COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
    );
    assert!(
        command.contains(&"GETKEYSANDFLAGS <full-command>".to_string()),
        "{command:?}"
    );
    let client = c.cmd(&["CLIENT", "HELP"]).strings();
    assert_eq!(
        client.first().map(String::as_str),
        Some("CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
    );
    for (parent, name) in [
        ("CONFIG", "config|help"),
        ("COMMAND", "command|help"),
        ("CLIENT", "client|help"),
    ] {
        assert_eq!(c.cmd(&[parent, "HELP", "x"]), wrong_args(name));
    }
    let listed = c
        .cmd(&["COMMAND", "LIST", "FILTERBY", "PATTERN", "c*|help"])
        .sorted();
    for name in ["client|help", "command|help", "config|help"] {
        assert!(listed.contains(&name.to_string()), "{listed:?}");
    }
    let info = c.cmd(&["COMMAND", "INFO", "client|unblock"]).items();
    assert_eq!(&info[0].items()[..2], &[bulk("client|unblock"), int(-3)]);
}

#[test]
fn command_count_info_docs() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let count = c.cmd(&["COMMAND", "COUNT"]).int();
    assert!(count > 50, "COMMAND COUNT {count}");
    let all = c.cmd(&["COMMAND"]).items();
    assert_eq!(all.len() as i64, count);

    let r = c.cmd(&["COMMAND", "INFO", "get"]);
    let entries = r.items();
    assert_eq!(entries.len(), 1);
    let get = entries[0].items();
    assert_eq!(get.len(), 10, "Redis 7 entries have 10 fields: {get:?}");
    assert_eq!(get[0], bulk("get"));
    assert_eq!(get[1], int(2));
    let flags = get[2].strings();
    assert!(flags.contains(&"readonly".to_string()) && flags.contains(&"fast".to_string()));
    assert_eq!(&get[3..6], &[int(1), int(1), int(1)]);
    let cats = get[6].strings();
    for cat in ["@read", "@string", "@fast"] {
        assert!(cats.contains(&cat.to_string()), "{cats:?}");
    }
    assert_eq!(c.cmd(&["COMMAND", "INFO", "GET"]), r, "case-insensitive");
    let r = c.cmd(&["COMMAND", "INFO", "set", "mset", "nosuch", "hset"]);
    let entries = r.items();
    assert_eq!(entries.len(), 4);
    assert_eq!(&entries[0].items()[..2], &[bulk("set"), int(-3)]);
    assert_eq!(&entries[0].items()[3..6], &[int(1), int(1), int(1)]);
    assert_eq!(&entries[1].items()[..2], &[bulk("mset"), int(-3)]);
    assert_eq!(&entries[1].items()[3..6], &[int(1), int(-1), int(2)]);
    assert_eq!(entries[2], nil());
    assert_eq!(&entries[3].items()[..2], &[bulk("hset"), int(-4)]);
    // An unknown command is a nil bulk string (not a nil array).
    assert_eq!(c.cmd_raw(&["COMMAND", "INFO", "nosuch"]), b"*1\r\n$-1\r\n");

    let docs = c.cmd(&["COMMAND", "DOCS", "get"]);
    let items = docs.items();
    assert_eq!(items.len(), 2, "{docs:?}");
    assert_eq!(items[0], bulk("get"));
    let doc = &items[1];
    assert!(!doc.items().is_empty());
    assert!(!doc.get("summary").unwrap().text().is_empty());
    assert_eq!(doc.get("group"), Some(bulk("string")));

    let list = c.cmd(&["COMMAND", "LIST"]).strings();
    for name in [
        "get",
        "set",
        "hset",
        "ping",
        "client",
        "config",
        "client|list",
    ] {
        assert!(
            list.contains(&name.to_string()),
            "COMMAND LIST lacks {name}"
        );
    }
    let filtered = |c: &mut Raw, kind: &str, value: &str| {
        let mut names = c
            .cmd(&["COMMAND", "LIST", "FILTERBY", kind, value])
            .strings();
        names.sort();
        names
    };
    assert_eq!(filtered(&mut c, "pattern", "set"), ["set"]);
    assert_eq!(
        filtered(&mut c, "pattern", "config|*re*"),
        ["config|resetstat", "config|rewrite"]
    );
    assert!(filtered(&mut c, "pattern", "nosuch*").is_empty());
    let scripting = filtered(&mut c, "aclcat", "scripting");
    assert!(
        scripting.contains(&"eval".to_string()) && scripting.contains(&"script|kill".to_string())
    );
    assert!(!scripting.contains(&"set".to_string()));
    assert!(filtered(&mut c, "aclcat", "nosuch").is_empty());
    assert!(filtered(&mut c, "module", "nosuch").is_empty());
    for bad in [
        &["COMMAND", "LIST", "x"][..],
        &["COMMAND", "LIST", "FILTERBY", "x", "y"],
    ] {
        assert_eq!(c.cmd(bad), err("ERR syntax error"), "{bad:?}");
    }
}

#[test]
fn command_getkeys() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "SET", "a", "b"]),
        bulks(&["a"])
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"]),
        bulks(&["a", "b"])
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "del", "x", "y", "z"]),
        bulks(&["x", "y", "z"])
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "HSET", "h", "f", "v"]),
        bulks(&["h"])
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "GET", "a", "b"]),
        err("ERR Invalid number of arguments specified for command")
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "PING", "x"]),
        err("ERR The command has no key arguments")
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "nosuch", "x"]),
        err("ERR Invalid command specified")
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "GET"]),
        wrong_args("command|getkeys")
    );
}

/// `COMMAND GETKEYSANDFLAGS`'s answer: each key with its flags, as `key:FLAG,flag` strings.
fn keys_and_flags(c: &mut Raw, cmd: &[&str]) -> Reply {
    let mut args = vec!["COMMAND", "GETKEYSANDFLAGS"];
    args.extend_from_slice(cmd);
    c.cmd(&args)
}

/// Keys with their flags' names.
type Flagged<'a> = &'a [(&'a str, &'a [&'a str])];

fn flagged(keys: Flagged) -> Reply {
    arr(keys
        .iter()
        .map(|(k, flags)| {
            arr(vec![
                bulk(k),
                arr(flags.iter().map(|f| status(f)).collect()),
            ])
        })
        .collect())
}

#[test]
fn command_getkeysandflags() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let cases: &[(&[&str], Flagged)] = &[
        (&["SET", "k1", "v1"], &[("k1", &["OW", "update"])]),
        (
            &["SET", "k1", "v1", "GET"],
            &[("k1", &["RW", "access", "update"])],
        ),
        (
            &["MSET", "k1", "v1", "k2", "v2"],
            &[("k1", &["OW", "update"]), ("k2", &["OW", "update"])],
        ),
        (
            &["LMOVE", "k1", "k2", "left", "right"],
            &[
                ("k1", &["RW", "access", "delete"]),
                ("k2", &["RW", "insert"]),
            ],
        ),
        (
            &["SORT", "k1", "STORE", "k2"],
            &[("k1", &["RO", "access"]), ("k2", &["OW", "update"])],
        ),
        (&["GET", "k"], &[("k", &["RO", "access"])]),
        (
            &["DEL", "a", "b"],
            &[("a", &["RM", "delete"]), ("b", &["RM", "delete"])],
        ),
        (&["EXISTS", "a"], &[("a", &["RO"])]),
        (
            &["ZUNIONSTORE", "d", "2", "a", "b"],
            &[
                ("d", &["OW", "update"]),
                ("a", &["RO", "access"]),
                ("b", &["RO", "access"]),
            ],
        ),
        (
            &["BITFIELD", "k", "GET", "u8", "0"],
            &[("k", &["RO", "access"])],
        ),
        (
            &["BITFIELD", "k", "SET", "u8", "0", "1"],
            &[("k", &["RW", "access", "update"])],
        ),
    ];
    for (cmd, keys) in cases {
        assert_eq!(keys_and_flags(&mut c, cmd), flagged(keys), "{cmd:?}");
    }
    assert_eq!(
        keys_and_flags(&mut c, &["PING", "x"]),
        err("ERR The command has no key arguments")
    );
    // Keys named by a subcommand; none where none are required; none where some are.
    assert_eq!(
        keys_and_flags(&mut c, &["XGROUP", "CREATE", "s", "g", "$"]),
        flagged(&[("s", &["RW", "insert"])])
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "EVAL", "return 1", "0"]),
        arr(vec![])
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "ZUNIONSTORE", "d", "0", "a"]),
        err("ERR Invalid arguments specified for command")
    );
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "XGROUP", "NOSUCH", "s"]),
        err("ERR Invalid command specified")
    );
    assert_eq!(
        keys_and_flags(&mut c, &["GET"]),
        wrong_args("command|getkeysandflags")
    );
}

#[test]
fn object_idletime_and_freq_follow_the_eviction_policy() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let lfu_not = "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";
    let lfu_is = "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]),
        ok()
    );
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    match c.cmd(&["OBJECT", "IDLETIME", "k"]) {
        Reply::Int(n) => assert!((0..=1).contains(&n), "idle {n} s just after SET"),
        other => panic!("OBJECT IDLETIME: {other:?}"),
    }
    assert_eq!(c.cmd(&["OBJECT", "FREQ", "k"]), err(lfu_not));
    assert_eq!(c.cmd(&["OBJECT", "IDLETIME", "nosuch"]), Reply::Nil);

    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lfu"]),
        ok()
    );
    assert_eq!(c.cmd(&["SET", "f", "v"]), ok());
    // A new key starts at 5; the first read always counts.
    assert_eq!(c.cmd(&["OBJECT", "FREQ", "f"]), int(5));
    assert_eq!(c.cmd(&["GET", "f"]), bulk("v"));
    assert_eq!(c.cmd(&["OBJECT", "FREQ", "f"]), int(6));
    assert_eq!(c.cmd(&["OBJECT", "IDLETIME", "f"]), err(lfu_is));
}

#[test]
fn config_get_set() {
    let s = start_target(&["--maxmemory", "256mb", "--timeout", "0"]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxmemory"]),
        bulks(&["maxmemory", "268435456"])
    );
    // An exact (non-glob) name is echoed back as given.
    assert_eq!(
        c.cmd(&["config", "get", "MAXMEMORY"]),
        bulks(&["MAXMEMORY", "268435456"])
    );
    assert_eq!(c.cmd(&["CONFIG", "SET", "maxmemory", "100mb"]), ok());
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxmemory"]),
        bulks(&["maxmemory", "104857600"])
    );
    assert_eq!(c.cmd(&["CONFIG", "SET", "maxmemory", "12345"]), ok());
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxmemory"]),
        bulks(&["maxmemory", "12345"])
    );
    assert_eq!(c.cmd(&["CONFIG", "SET", "maxmemory", "1gb"]), ok());
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxmemory"]),
        bulks(&["maxmemory", "1073741824"])
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxmemory", "abc"]),
        err(
            "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be \
             a memory value"
        )
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxmemory"]),
        bulks(&["maxmemory", "1073741824"])
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "nosuch", "x"]),
        err("ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'")
    );
    assert_eq!(c.cmd(&["CONFIG", "GET", "nosuch"]), arr(vec![]));
    assert_eq!(c.cmd(&["CONFIG", "GET"]), wrong_args("config|get"));
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxmemory"]),
        wrong_args("config|set")
    );

    // Several parameters / globs: a map, in no promised order.
    let r = c.cmd(&["CONFIG", "GET", "maxmemory", "timeout"]);
    assert_eq!(r.pairs().len(), 2, "{r:?}");
    assert_eq!(r.get("maxmemory"), Some(bulk("1073741824")));
    assert_eq!(r.get("timeout"), Some(bulk("0")));
    let r = c.cmd(&["CONFIG", "GET", "maxmemory*"]);
    assert_eq!(r.get("maxmemory"), Some(bulk("1073741824")));
    assert!(r.get("maxmemory-policy").is_some(), "{r:?}");
    for (k, _) in r.pairs() {
        assert!(k.starts_with("maxmemory"), "{k}");
    }
    let r = c.cmd(&["CONFIG", "GET", "maxmemory", "maxmemory*", "nosuch*"]);
    let keys: Vec<String> = r.pairs().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys.iter().filter(|k| *k == "maxmemory").count(),
        1,
        "no duplicates: {keys:?}"
    );
    let r = c.cmd(&["CONFIG", "GET", "*"]);
    assert!(r.pairs().len() >= 3, "{r:?}");
    assert!(r.get("maxmemory").is_some() && r.get("timeout").is_some());
    assert_eq!(c.cmd(&["CONFIG", "SET", "timeout", "5"]), ok());
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "timeout"]),
        bulks(&["timeout", "5"])
    );
}

#[test]
fn config_reflects_startup_flags() {
    let s = start_target(&[
        "--maxclients",
        "77",
        "--timeout",
        "30",
        "--requirepass",
        "pw",
    ]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["AUTH", "pw"]), ok());
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxclients"]),
        bulks(&["maxclients", "77"])
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "timeout"]),
        bulks(&["timeout", "30"])
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "requirepass"]),
        bulks(&["requirepass", "pw"])
    );
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxmemory"]),
        bulks(&["maxmemory", "0"])
    );
}

#[test]
fn time() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let r = c.cmd(&["TIME"]);
    let parts = r.strings();
    assert_eq!(parts.len(), 2, "{r:?}");
    let secs: i64 = parts[0].parse().unwrap();
    let micros: i64 = parts[1].parse().unwrap();
    assert!((secs - now_ms() / 1000).abs() <= 5, "TIME {secs}");
    assert!((0..1_000_000).contains(&micros), "{micros}");
    assert_eq!(c.cmd(&["TIME", "x"]), wrong_args("time"));
}

#[test]
fn save_bgsave() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    if is_redis() {
        assert_eq!(c.cmd(&["SAVE"]), ok());
        assert_eq!(c.cmd(&["BGSAVE"]), status("Background saving started"));
    } else {
        for cmd in ["SAVE", "BGSAVE"] {
            let r = c.cmd(&[cmd]);
            let e = r.error_text().unwrap_or_else(|| panic!("{cmd}: {r:?}"));
            assert!(
                e.starts_with("ERR ") && e.contains("not supported"),
                "{cmd}: {e}"
            );
        }
    }
    assert_eq!(c.cmd(&["GET", "k"]), bulk("v"));
}

#[test]
fn object_and_debug() {
    let s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    let debug = c.cmd(&["DEBUG", "SLEEP", "0"]);
    assert!(
        debug.error_text().is_some_and(|e| e.starts_with("ERR ")),
        "{debug:?}"
    );
    assert_eq!(c.cmd(&["OBJECT", "ENCODING", "k"]), bulk("embstr"));
    assert_eq!(c.cmd(&["SET", "n", "12"]), ok());
    assert_eq!(c.cmd(&["OBJECT", "ENCODING", "n"]), bulk("int"));
    assert_eq!(c.cmd(&["SET", "long", &"x".repeat(45)]), ok());
    assert_eq!(c.cmd(&["OBJECT", "ENCODING", "long"]), bulk("raw"));
    assert_eq!(c.cmd(&["APPEND", "k", "w"]), int(2));
    assert_eq!(c.cmd(&["OBJECT", "ENCODING", "k"]), bulk("raw"));
    assert_eq!(c.cmd(&["OBJECT", "ENCODING", "missing"]), Reply::Nil);
    assert_eq!(c.cmd(&["PING"]), status("PONG"));
}

#[test]
fn sigstop_sigcont_and_sigterm() {
    let mut s = start_target(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["SET", "k", "v"]), ok());
    s.signal(SIGSTOP);
    c.send_cmd(&["GET", "k"]);
    assert_eq!(
        c.read_reply(Duration::from_millis(300)),
        None,
        "a stopped server answered"
    );
    s.signal(SIGCONT);
    assert_eq!(c.reply(), bulk("v"));
    // SIGTERM: a graceful, successful exit.
    s.signal(SIGTERM);
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("no exit within 10 s of SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(c.is_closed(Duration::from_secs(5)));
}

/// Writes far past `maxmemory` under allkeys-lru: keys are evicted, used memory (the allocator's
/// count) stays near the bound, the process's RSS does not follow the data, and recent keys
/// survive.
#[test]
fn maxmemory_bounds_used_memory_and_rss_under_eviction() {
    const MAXMEMORY: u64 = 16 << 20;
    let s = start_target(&[]);
    let mut c = s.raw();
    let base_kib = s.rss_kib().unwrap();
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]),
        ok()
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxmemory", &MAXMEMORY.to_string()]),
        ok()
    );
    // 128 MiB of values: eight times the bound.
    let value = "v".repeat(1024);
    let keys = 128 * 1024;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let cmds: Vec<Vec<String>> = chunk
            .iter()
            .map(|i| vec!["SET".into(), format!("key:{i}"), value.clone()])
            .collect();
        pipeline_ok(&mut c, &cmds);
    }
    let all = info(&mut c, &[]);
    let used: u64 = info_field(&all, "used_memory").unwrap().parse().unwrap();
    let evicted: u64 = info_field(&all, "evicted_keys").unwrap().parse().unwrap();
    assert!(evicted > keys / 2, "evicted_keys {evicted} of {keys}");
    // Within the bound plus one write's worth (a key is evicted before the write that needs it).
    assert!(used <= MAXMEMORY + 64 * 1024, "used_memory {used}");
    let rss = s.rss_kib().unwrap() * 1024;
    assert!(
        rss <= base_kib * 1024 + MAXMEMORY * 2,
        "RSS {rss} from a base of {} KiB, maxmemory {MAXMEMORY}",
        base_kib
    );
    // What the RSS guard holds back from keys is reported and bounded.
    let reserve: u64 = info_field(&all, "maxmemory_rss_reserve")
        .unwrap()
        .parse()
        .unwrap();
    assert!(reserve <= MAXMEMORY / 4, "maxmemory_rss_reserve {reserve}");
    // The newest key is there.
    assert_eq!(c.cmd(&["STRLEN", &format!("key:{}", keys - 1)]), int(1024));
    // The allocator answers for itself, as Redis's MEMORY subcommands do.
    assert_eq!(c.cmd(&["MEMORY", "PURGE"]), ok());
    match c.cmd(&["MEMORY", "MALLOC-STATS"]) {
        Reply::Bulk(text) => {
            let text = String::from_utf8_lossy(&text);
            assert!(text.contains("committed"), "{text}");
        }
        other => panic!("MEMORY MALLOC-STATS: {other:?}"),
    }
}
