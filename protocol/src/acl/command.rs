//! The `ACL` command, AUTH's password check (with the failure limit and log), and what a server
//! does when a request is refused, with Redis 7.0's replies; shared by the node and the router
//! through [`Conn`].

use std::sync::Arc;

use bytes::Bytes;

use super::log::TOPLEVEL;
use super::{spec, Acl, Reason, User};
use crate::clients::{lock, Conn};
use crate::errors::{arity_error, unknown_subcommand};
use crate::resp::Reply;
use crate::table::{self, CommandSpec};

fn is(a: &[u8], kw: &str) -> bool {
    a.eq_ignore_ascii_case(kw.as_bytes())
}

fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

/// Makes `u` this connection's user (AUTH, HELLO AUTH, RESET).
pub fn login<C: Conn>(c: &mut C, u: Arc<User>) {
    *lock(&c.client().user) = Arc::from(u.name.as_str());
    c.set_user(u);
}

/// Checks `user`/`pass` for AUTH or HELLO AUTH: the user on success; the error reply otherwise
/// (the failure counted, logged under `cmd` as the client typed it, and charged to the
/// client's address).
pub fn check_credentials<C: Conn>(
    c: &mut C,
    cmd: &[u8],
    user: &[u8],
    pass: &[u8],
) -> Result<Arc<User>, Reply> {
    let ip = c.client().addr.ip();
    let acl = c.acl();
    if !acl.limiter.allows(ip) {
        return Err(Reply::Error(acl.limiter.error()));
    }
    if let Some(u) = acl.authenticate(user, pass) {
        return Ok(u);
    }
    acl.limiter.failed(ip);
    acl.denied.count(Reason::Auth);
    acl.log.add(
        Reason::Auth,
        TOPLEVEL,
        text(cmd),
        &text(user),
        c.client().info_line(),
    );
    Err(Reply::error(
        "WRONGPASS invalid username-password pair or user is disabled.",
    ))
}

/// Counts and logs a refused request (`info`: the client's CLIENT INFO line); the command it
/// ran as, for the error.
pub fn record_refusal(
    acl: &Acl,
    user: &User,
    info: String,
    d: &super::Denied,
    top: &'static CommandSpec,
    args: &[Bytes],
    context: &'static str,
) -> &'static CommandSpec {
    let cmd = spec::effective(top, args);
    acl.denied.count(d.reason);
    acl.log
        .add(d.reason, context, d.object(cmd, args), &user.name, info);
    cmd
}

/// Checks a request of a connection running as `user`: `None` if it may run, else its NOPERM
/// error (counted and logged; `info` gives the client's CLIENT INFO line).
pub fn check(
    acl: &Acl,
    user: &User,
    info: impl FnOnce() -> String,
    top: &'static CommandSpec,
    args: &[Bytes],
    context: &'static str,
) -> Option<Reply> {
    let d = user.check(top, args).err()?;
    let cmd = record_refusal(acl, user, info(), &d, top, args, context);
    Some(Reply::Error(d.error(cmd)))
}

/// Disconnects every client authenticated as one of `names` (this one after its reply).
pub fn kill_users<C: Conn>(c: &mut C, names: &[String]) {
    let me = c.client().id;
    let mut close_me = false;
    for h in c.clients().all() {
        let name = lock(&h.user).clone();
        if names.iter().any(|n| **n == *name) {
            if h.id == me {
                close_me = true;
            } else {
                h.kill();
            }
        }
    }
    if close_me {
        c.close_after_reply();
    }
}

/// Disconnects `name`'s clients subscribed to a channel or pattern its narrowed rules no longer
/// allow, as Redis does; its other subscribers stay.
fn kill_subscribers<C: Conn>(c: &mut C, name: &str) {
    let Some(user) = c.acl().get(name.as_bytes()) else {
        return;
    };
    let rules = user.rules();
    let me = c.client().id;
    let subscribed = c.subscriptions();
    for h in c.clients().all() {
        if h.id == me || **lock(&h.user) != *name {
            continue;
        }
        let Some(subs) = subscribed.get(&h.id) else {
            continue;
        };
        if subs
            .iter()
            .any(|(n, pattern)| !rules.subscription_allowed(n, *pattern))
        {
            h.kill();
        }
    }
}

/// `ACL <subcommand> ...`.
pub fn acl<C: Conn>(c: &mut C, a: &[Bytes]) -> Reply {
    let sub = a[1].to_ascii_lowercase();
    let Some(spec) = table::lookup_sub(b"acl", &sub) else {
        return unknown_subcommand(&a[1], "acl");
    };
    if !spec.arity_ok(a.len()) {
        return arity_error(spec.name);
    }
    // Arities of -2 that take at most one argument more.
    if matches!(&sub[..], b"cat" | b"log" | b"genpass") && a.len() > 3 {
        return Reply::Error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.",
            text(&a[1])
        ));
    }
    match &sub[..] {
        b"cat" => cat(a),
        b"deluser" => {
            let names: Vec<String> = a[2..].iter().map(|n| text(n)).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            match c.acl().deluser(&refs) {
                Ok(n) => {
                    kill_users(c, &names);
                    Reply::Int(n as i64)
                }
                Err(e) => Reply::Error(e),
            }
        }
        b"dryrun" => dryrun(c, a),
        b"genpass" => genpass(a),
        b"getuser" => match c.acl().get(&a[2]) {
            Some(u) => u.rules().getuser_reply(),
            None => Reply::Nil,
        },
        b"list" => Reply::Array(c.acl().list().iter().map(|l| Reply::bulk_str(l)).collect()),
        b"users" => Reply::Array(
            c.acl()
                .usernames()
                .iter()
                .map(|l| Reply::bulk_str(l))
                .collect(),
        ),
        b"whoami" => Reply::bulk_str(&c.user().name),
        b"setuser" => {
            let ops: Vec<String> = a[3..].iter().map(|o| text(o)).collect();
            let name = text(&a[2]);
            match c.acl().setuser(&name, &ops) {
                Ok(narrowed) => {
                    if narrowed {
                        kill_subscribers(c, &name);
                    }
                    Reply::OK
                }
                Err(e) => Reply::Error(e),
            }
        }
        b"load" => match c.acl().load_file() {
            Ok(gone) => {
                kill_users(c, &gone);
                Reply::OK
            }
            Err(e) => Reply::Error(format!("ERR {e}")),
        },
        b"save" => match c.acl().save_file() {
            Ok(()) => Reply::OK,
            Err(e) => Reply::Error(format!("ERR {e}")),
        },
        b"log" => log(c, a),
        b"help" => help(),
        _ => unknown_subcommand(&a[1], "acl"),
    }
}

fn cat(a: &[Bytes]) -> Reply {
    if a.len() == 2 {
        return Reply::Array(
            spec::CATEGORY_NAMES
                .iter()
                .map(|n| Reply::bulk_str(n))
                .collect(),
        );
    }
    let name = text(&a[2]);
    let Some(bit) = spec::category(&name) else {
        return Reply::Error(format!("ERR Unknown category '{name}'"));
    };
    Reply::Array(
        table::all()
            .filter(|c| spec::acl_of(c).categories & bit != 0)
            .map(|c| Reply::bulk_str(c.name))
            .collect(),
    )
}

fn dryrun<C: Conn>(c: &mut C, a: &[Bytes]) -> Reply {
    let Some(u) = c.acl().get(&a[2]) else {
        return Reply::Error(format!("ERR User '{}' not found", text(&a[2])));
    };
    let args = &a[3..];
    let Some(top) = table::lookup(&args[0]) else {
        return Reply::Error(format!("ERR Command '{}' not found", text(&args[0])));
    };
    if !top.arity_ok(args.len()) {
        return arity_error(top.name);
    }
    match u.check(top, args) {
        Ok(()) => Reply::OK,
        Err(d) => Reply::bulk_str(&d.verbose(spec::effective(top, args), args)),
    }
}

fn genpass(a: &[Bytes]) -> Reply {
    use rand::RngCore;
    let bits = match a.get(2) {
        None => 256,
        Some(b) => match crate::num::parse_i64(b) {
            Some(n) if n > 0 && n <= 4096 => n,
            _ => return Reply::error("ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096"),
        },
    };
    let chars = (bits as usize).div_ceil(4);
    let mut raw = vec![0u8; chars.div_ceil(2)];
    rand::thread_rng().fill_bytes(&mut raw);
    let mut hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(chars);
    Reply::bulk_str(&hex)
}

fn log<C: Conn>(c: &mut C, a: &[Bytes]) -> Reply {
    let mut count = 10usize;
    if let Some(arg) = a.get(2) {
        if is(arg, "reset") {
            c.acl().log.reset();
            return Reply::OK;
        }
        match crate::num::parse_i64(arg) {
            Some(n) => count = n.max(0) as usize,
            None => return Reply::error("ERR value is not an integer or out of range"),
        }
    }
    c.acl().log.reply(count)
}

fn help() -> Reply {
    let lines = [
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        "    Returns whether the user can execute the given command without executing the command.",
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bits>]",
        "    Generate a secure 256-bit user password. The optional `bits` argument can",
        "    be used to specify a different size.",
        "LIST",
        "    Show users details in config file format.",
        "LOAD",
        "    Reload users from the ACL file.",
        "LOG [<count> | RESET]",
        "    Show the ACL log entries.",
        "SAVE",
        "    Save the current config to the ACL file.",
        "SETUSER <username> <attribute> [<attribute> ...]",
        "    Create or modify a user with the specified attributes.",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
        "HELP",
        "    Prints this help.",
    ];
    Reply::status_lines(&lines)
}
