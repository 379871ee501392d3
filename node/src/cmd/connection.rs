//! Connection commands: PING, HELLO, AUTH, SELECT, RESET, CLIENT.

use bytes::Bytes;
use ringcache_protocol::{Protocol, Reply};

use super::{arity_error, int_arg, is, syntax_error, unknown_subcommand, Ctx, Flow};
use crate::store::lock;

pub use ringcache_protocol::errors::REDIS_COMPAT_VERSION;

pub fn ping(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    match a.len() {
        1 => Reply::Status("PONG"),
        2 => Reply::Bulk(a[1].clone()),
        _ => {
            let _ = ctx;
            arity_error("ping")
        }
    }
}

fn wrongpass() -> Reply {
    Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
}

/// Checks a username/password pair against the only user, `default`.
fn check_auth(ctx: &Ctx, user: &[u8], pass: &[u8]) -> bool {
    if user != b"default" {
        return false;
    }
    match &ctx.shared.config().requirepass {
        Some(p) => p.as_bytes() == pass,
        // The default user has no password: any password is accepted, as with Redis's `nopass`.
        None => true,
    }
}

pub fn auth(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (user, pass) = match a.len() {
        2 => {
            if ctx.shared.config().requirepass.is_none() {
                return Reply::error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
            }
            (&b"default"[..], &a[1][..])
        }
        3 => (&a[1][..], &a[2][..]),
        _ => return syntax_error(),
    };
    if check_auth(ctx, user, pass) {
        ctx.session.authenticated = true;
        Reply::OK
    } else {
        wrongpass()
    }
}

fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn set_name(ctx: &mut Ctx, name: &Bytes) -> Result<(), Reply> {
    if !valid_client_name(name) {
        return Err(Reply::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    *lock(&ctx.session.client.name) = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
    Ok(())
}

pub fn hello(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut proto = None;
    if a.len() >= 2 {
        match int_arg(&a[1]) {
            Ok(2) => proto = Some(Protocol::Resp2),
            Ok(3) => proto = Some(Protocol::Resp3),
            Ok(_) => return Reply::error("NOPROTO unsupported protocol version"),
            Err(_) => {
                return Reply::error("ERR Protocol version is not an integer or out of range")
            }
        }
    }
    let mut auth: Option<(Bytes, Bytes)> = None;
    let mut name: Option<Bytes> = None;
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - i - 1;
        if is(&a[i], "auth") && more >= 2 {
            auth = Some((a[i + 1].clone(), a[i + 2].clone()));
            i += 3;
        } else if is(&a[i], "setname") && more >= 1 {
            name = Some(a[i + 1].clone());
            i += 2;
        } else {
            return Reply::Error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&a[i])
            ));
        }
    }
    if let Some((user, pass)) = &auth {
        if !check_auth(ctx, user, pass) {
            return wrongpass();
        }
        ctx.session.authenticated = true;
    }
    if !ctx.session.authenticated {
        return Reply::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(n) = &name {
        if let Err(e) = set_name(ctx, n) {
            return e;
        }
    }
    if let Some(p) = proto {
        ctx.session.proto = p;
    }
    let role = if ctx.shared.repl.is_replica() {
        "replica"
    } else {
        "master"
    };
    Reply::Map(vec![
        (Reply::bulk_str("server"), Reply::bulk_str("redis")),
        (
            Reply::bulk_str("version"),
            Reply::bulk_str(REDIS_COMPAT_VERSION),
        ),
        (
            Reply::bulk_str("proto"),
            Reply::Int(ctx.session.proto.number()),
        ),
        (Reply::bulk_str("id"), Reply::Int(ctx.session.id as i64)),
        (Reply::bulk_str("mode"), Reply::bulk_str("standalone")),
        (Reply::bulk_str("role"), Reply::bulk_str(role)),
        (Reply::bulk_str("modules"), Reply::Array(Vec::new())),
    ])
}

/// Only database 0 exists: a ring shards keys, not databases (as in Redis Cluster).
pub fn select(a: &[Bytes]) -> Reply {
    match int_arg(&a[1]) {
        Ok(0) => Reply::OK,
        Ok(n) if (0..16).contains(&n) => Reply::error("ERR SELECT is not allowed in cluster mode"),
        Ok(_) => Reply::error("ERR DB index is out of range"),
        Err(e) => e,
    }
}

pub fn reset(ctx: &mut Ctx) -> Reply {
    ctx.session.proto = Protocol::Resp2;
    *lock(&ctx.session.client.name) = None;
    if ctx.shared.config().requirepass.is_some() {
        ctx.session.authenticated = false;
    }
    Reply::Status("RESET")
}

pub fn client(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = ringcache_protocol::table::lookup_sub(b"client", &sub) else {
        if sub == b"help" {
            return client_help();
        }
        return unknown_subcommand(&a[1], "client");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    match &sub[..] {
        b"id" => Reply::Int(ctx.session.id as i64),
        b"setname" => match set_name(ctx, &a[2]) {
            Ok(()) => Reply::OK,
            Err(e) => e,
        },
        b"getname" => lock(&ctx.session.client.name)
            .clone()
            .map(Reply::Bulk)
            .unwrap_or(Reply::Nil),
        b"list" => client_list(ctx, a),
        b"info" => Reply::Verbatim(Bytes::from(ctx.session.client.info_line())),
        b"kill" => client_kill(ctx, a),
        b"no-evict" if a.len() == 3 && (is(&a[2], "on") || is(&a[2], "off")) => Reply::OK,
        b"no-evict" => syntax_error(),
        _ => unknown_subcommand(&a[1], "client"),
    }
}

fn client_help() -> Reply {
    let lines = [
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are: ID <client-id>, ADDR <ip:port>, LADDR <ip:port>, SKIPME (YES|NO).",
        "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <client-id> ...]",
        "    Return information about client connections.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "HELP",
        "    Print this help.",
    ];
    Reply::Array(
        lines
            .iter()
            .map(|l| Reply::StatusOwned((*l).to_string()))
            .collect(),
    )
}

fn client_list(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < a.len() {
        if is(&a[i], "type") && i + 1 < a.len() {
            let t = &a[i + 1];
            if !(is(t, "normal")
                || is(t, "master")
                || is(t, "replica")
                || is(t, "pubsub")
                || is(t, "slave"))
            {
                return Reply::Error(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(t)
                ));
            }
            if !is(t, "normal") {
                return Reply::Verbatim(Bytes::new());
            }
            i += 2;
        } else if is(&a[i], "id") && i + 1 < a.len() {
            let mut v = Vec::new();
            for id in &a[i + 1..] {
                match int_arg(id) {
                    Ok(n) if n > 0 => v.push(n as u64),
                    _ => return Reply::error("ERR Invalid client ID"),
                }
            }
            ids = Some(v);
            i = a.len();
        } else {
            return syntax_error();
        }
    }
    let mut text = String::new();
    for c in ctx.shared.clients.all() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id)) {
            continue;
        }
        text.push_str(&c.info_line());
    }
    Reply::Verbatim(Bytes::from(text))
}

fn client_kill(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let all = ctx.shared.clients.all();
    if a.len() == 3 {
        // Old form: CLIENT KILL ip:port, replies OK or an error.
        let addr = String::from_utf8_lossy(&a[2]);
        return match all.iter().find(|c| c.addr.to_string() == addr) {
            Some(c) => {
                kill(ctx, c);
                Reply::OK
            }
            None => Reply::error("ERR No such client"),
        };
    }
    if !a.len().is_multiple_of(2) {
        return syntax_error();
    }
    let (mut id, mut addr, mut laddr, mut skipme) = (None, None, None, true);
    for pair in a[2..].chunks(2) {
        let v = String::from_utf8_lossy(&pair[1]).into_owned();
        if is(&pair[0], "id") {
            match int_arg(&pair[1]) {
                Ok(n) if n > 0 => id = Some(n as u64),
                _ => return Reply::error("ERR client-id should be greater than 0"),
            }
        } else if is(&pair[0], "addr") {
            addr = Some(v);
        } else if is(&pair[0], "laddr") {
            laddr = Some(v);
        } else if is(&pair[0], "skipme") {
            if is(&pair[1], "yes") {
                skipme = true;
            } else if is(&pair[1], "no") {
                skipme = false;
            } else {
                return syntax_error();
            }
        } else if is(&pair[0], "type") || is(&pair[0], "user") || is(&pair[0], "maxage") {
            // Every client is a normal client of the default user: accept the filter as is.
        } else {
            return syntax_error();
        }
    }
    let mut killed = 0;
    for c in &all {
        if id.is_some_and(|id| id != c.id)
            || addr.as_ref().is_some_and(|a| *a != c.addr.to_string())
            || laddr.as_ref().is_some_and(|a| *a != c.laddr.to_string())
            || (skipme && c.id == ctx.session.id)
        {
            continue;
        }
        kill(ctx, c);
        killed += 1;
    }
    Reply::Int(killed)
}

fn kill(ctx: &mut Ctx, c: &crate::clients::ClientHandle) {
    if c.id == ctx.session.id {
        ctx.session.flow = Flow::CloseAfterReply;
    } else {
        c.kill();
    }
}
