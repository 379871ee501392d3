//! Lua scripts and functions through the router.
//!
//! EVAL, EVALSHA and FCALL go to the shard of their keys like any command (keys on several
//! shards: CROSSSHARD; no keys: the shard of the empty key). SCRIPT LOAD and FUNCTION LOAD reach
//! every shard, and the router keeps its own copy of every script and library it has seen: a
//! shard that answers an EVALSHA with NOSCRIPT, or an FCALL with an unknown function (it joined
//! after the load, or restarted empty), is given the script or the libraries and asked again,
//! so the client never sees it. The other SCRIPT and FUNCTION subcommands reach every shard
//! (FLUSH, DELETE, RESTORE, KILL) or the first (LIST, DUMP, STATS).
//!
//! A script that touches a key it did not declare, owned by another shard, before changing
//! anything, is stopped by its node with `-SCRIPTSHARD <epoch> <owner>` and run again on that
//! owner ([`follow`]): a script naming one key of its own (`EVAL "redis.call('get','x')" 0`)
//! runs as on Redis; one whose keys live on several shards gets CROSSSHARD.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::Reply;
use tokio::sync::oneshot;

use crate::clients::{lock, Who};
use crate::merge::Slot;
use crate::pools::View;
use crate::route::{FanOut, Plan};
use crate::send::{send_as, send_plan};
use crate::session::Session;
use crate::state::Router;

/// Scripts the router remembers, at most (Redis keeps every one until SCRIPT FLUSH; a router
/// must not grow without bound): past it the oldest are forgotten, and a shard missing one of
/// those answers NOSCRIPT as Redis would.
const MAX_SCRIPTS: usize = 100_000;

/// The router's copies of the scripts and function libraries its clients loaded.
#[derive(Debug, Default)]
pub struct Scripts {
    /// By SHA1 (lowercase hex), with the order they came in (to forget the oldest).
    bodies: Mutex<(HashMap<String, Bytes>, std::collections::VecDeque<String>)>,
    /// Library code by library name.
    libraries: Mutex<BTreeMap<String, Bytes>>,
}

/// A script's SHA1 as Redis names it: 40 lowercase hex digits.
pub fn sha1_hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

impl Scripts {
    fn remember(&self, body: &Bytes) -> String {
        let sha = sha1_hex(body);
        let mut g = lock(&self.bodies);
        let (map, order) = &mut *g;
        if !map.contains_key(&sha) {
            map.insert(sha.clone(), Bytes::copy_from_slice(body));
            order.push_back(sha.clone());
            while order.len() > MAX_SCRIPTS {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        sha
    }

    pub(crate) fn body(&self, sha: &[u8]) -> Option<Bytes> {
        let sha = std::str::from_utf8(sha).ok()?.to_ascii_lowercase();
        lock(&self.bodies).0.get(&sha).cloned()
    }

    fn flush(&self) {
        *lock(&self.bodies) = Default::default();
    }

    /// Whether the function `name`, as a library loaded through this router registers it,
    /// declares `no-writes`; `None` when no library here is seen registering it.
    pub(crate) fn function_no_writes(&self, name: &[u8]) -> Option<bool> {
        let name = std::str::from_utf8(name).ok()?;
        lock(&self.libraries)
            .values()
            .find_map(|code| registered_no_writes(&String::from_utf8_lossy(code), name))
    }
}

/// Reads `redis.register_function` calls in a library's code the way they are usually
/// written: `{function_name='f', callback=..., flags={'no-writes'}}` or `('f', callback)` (no
/// flags). Code that builds its names or flags otherwise is not understood: `None`.
fn registered_no_writes(code: &str, name: &str) -> Option<bool> {
    /// The text between matching quotes ('f' or "f").
    fn unquoted(s: &str) -> Option<&str> {
        ['\'', '"']
            .into_iter()
            .find_map(|q| s.strip_prefix(q).and_then(|r| r.strip_suffix(q)))
    }
    let mut rest = code;
    while let Some(at) = rest.find("register_function") {
        rest = rest[at + "register_function".len()..].trim_start();
        if let Some(args) = rest.strip_prefix('(') {
            // Positional: the name first, no flags.
            let first = args.split(',').next().unwrap_or("").trim();
            if unquoted(first) == Some(name) {
                return Some(false);
            }
            continue;
        }
        let Some(table) = rest.strip_prefix('{') else {
            continue;
        };
        let mut depth = 1;
        let end = table.char_indices().find_map(|(i, c)| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        })?;
        let table = &table[..end];
        let named = table
            .split(',')
            .filter_map(|field| field.trim().strip_prefix("function_name"))
            .filter_map(|v| v.trim_start().strip_prefix('='))
            .map(str::trim)
            .any(|v| unquoted(v) == Some(name));
        if named {
            return Some(table.contains("'no-writes'") || table.contains("\"no-writes\""));
        }
    }
    None
}

/// The library name in a FUNCTION LOAD's code (`#!lua name=<lib>` on its first line).
fn library_name(code: &[u8]) -> Option<String> {
    let first = code.split(|&b| b == b'\n').next()?;
    let first = std::str::from_utf8(first).ok()?;
    let rest = first.strip_prefix("#!")?;
    rest.split_whitespace()
        .find_map(|w| w.strip_prefix("name="))
        .map(str::to_string)
}

/// The script and function commands that are not routed by their keys; `None` for those that
/// are (EVAL remembers its script first).
#[allow(clippy::too_many_arguments)]
pub fn dispatch(
    router: &Router,
    topo: &View,
    s: &Session,
    spec: &'static CommandSpec,
    a: &[Bytes],
    raw: &Bytes,
    cmd: u16,
    start: Instant,
) -> Option<Slot> {
    let fan = |how: FanOut| {
        Some(send_plan(
            topo,
            s.who(),
            Plan::FanOut(how),
            a,
            raw.clone(),
            cmd,
            start,
        ))
    };
    // The shard keyless scripts run on, so FUNCTION STATS shows the function running there.
    let home = topo
        .owner(b"", s.pool)
        .and_then(|i| topo.shards.get(i))
        .unwrap_or(&topo.shards[0]);
    let first = || {
        Some(Slot::Forward(crate::send::send(
            home,
            s,
            raw.clone(),
            cmd,
            start,
        )))
    };
    let sub = a.get(1).map(|x| x.to_ascii_lowercase()).unwrap_or_default();
    match (spec.name, &sub[..]) {
        ("eval" | "eval_ro", _) => {
            router.scripts.remember(&a[1]);
            None
        }
        ("script", b"load") => {
            router.scripts.remember(&a[2]);
            fan(FanOut::First)
        }
        ("script", b"flush") => {
            router.scripts.flush();
            fan(FanOut::AllOk)
        }
        ("script", b"exists") => Some(script_exists(router, topo, s, a, raw, cmd, start)),
        ("script" | "function", b"kill") => Some(kill(router, topo, s, raw)),
        ("function", b"load") => {
            let code = a.last()?;
            if let Some(name) = library_name(code) {
                lock(&router.scripts.libraries).insert(name, Bytes::copy_from_slice(code));
            }
            fan(FanOut::First)
        }
        ("function", b"delete") => {
            let name = String::from_utf8_lossy(a.get(2)?).into_owned();
            lock(&router.scripts.libraries).remove(&name);
            fan(FanOut::AllOk)
        }
        ("function", b"flush") => {
            lock(&router.scripts.libraries).clear();
            fan(FanOut::AllOk)
        }
        ("function", b"restore") => fan(FanOut::AllOk),
        // LIST, DUMP, STATS, and the subcommands a shard answers with its own error.
        ("function" | "script", _) => first(),
        _ => None,
    }
}

/// SCRIPT KILL and FUNCTION KILL, on connections of their own: the busy script's node answers
/// nothing else on the multiplexed connection that carried the script, and the kill must not
/// queue behind it there. OK if some shard stopped a script, else a shard's refusal (BUSY: the
/// other kind of script runs; UNKILLABLE), else NOTBUSY.
fn kill(router: &Router, topo: &View, s: &Session, raw: &Bytes) -> Slot {
    let mut waits = Vec::new();
    for shard in &topo.shards {
        match crate::dedicated::Dedicated::open(router, shard, s.who()) {
            Ok(link) => {
                waits.push(link.send(raw.clone(), Vec::new(), Some(router.config.request_timeout)))
            }
            Err(text) => return Slot::error(&text),
        }
    }
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut best: Option<Bytes> = None;
        for w in waits {
            let bytes = crate::merge::received(w.await);
            let rank = |b: &[u8]| match b {
                b if !crate::frame::is_error(b) => 0,
                b if b.starts_with(b"-NOTBUSY") => 2,
                _ => 1,
            };
            if best.as_deref().is_none_or(|cur| rank(&bytes) < rank(cur)) {
                best = Some(bytes);
            }
        }
        let reply = best.unwrap_or_else(|| crate::merge::error_bytes("ERR the ring has no shards"));
        let _ = tx.send(Ok(reply));
    });
    Slot::Forward(rx)
}

/// `Some` for a script command: `Some(true)` for those a shard lacking the script or library
/// can be healed for (EVALSHA, FCALL), `Some(false)` for EVAL.
pub fn is_script(spec: &CommandSpec) -> Option<bool> {
    match spec.name {
        "evalsha" | "evalsha_ro" | "fcall" | "fcall_ro" => Some(true),
        "eval" | "eval_ro" => Some(false),
        _ => None,
    }
}

/// How long a script runs before the router counts it as long (see [`watch`]).
pub const LONG_SCRIPT: std::time::Duration = std::time::Duration::from_millis(100);

/// Passes a script's reply through, counting the script in `shard`'s long scripts while it runs
/// past [`LONG_SCRIPT`].
pub fn watch(
    shard: &crate::shard::Shard,
    rx: oneshot::Receiver<crate::upstream::UpResult>,
) -> oneshot::Receiver<crate::upstream::UpResult> {
    let (tx, out) = oneshot::channel();
    let long = shard.long_scripts.clone();
    tokio::spawn(async move {
        let mut rx = rx;
        let reply = tokio::select! {
            r = &mut rx => r,
            _ = tokio::time::sleep(LONG_SCRIPT) => {
                long.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let r = rx.await;
                long.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                r
            }
        };
        if let Ok(reply) = reply {
            let _ = tx.send(reply);
        }
    });
    out
}

/// PING while a script of this router's runs long on some shard: that shard's answer (BUSY
/// once its script passed `busy-reply-threshold`, as Redis answers), on a connection of its own.
pub fn ping_busy(router: &Router, topo: &View, s: &Session, a: &[Bytes]) -> Option<Slot> {
    let shard = topo
        .shards
        .iter()
        .find(|sh| sh.long_scripts.load(std::sync::atomic::Ordering::Relaxed) > 0)?;
    let link = crate::dedicated::Dedicated::open(router, shard, s.who()).ok()?;
    let args: Vec<&[u8]> = a.iter().map(|x| &x[..]).collect();
    let wait = link.send(
        request(&args),
        Vec::new(),
        Some(router.config.request_timeout),
    );
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(Ok(crate::merge::received(wait.await)));
    });
    Some(Slot::Forward(rx))
}

/// SCRIPT EXISTS: a script exists if the router can run it (it has its copy) or a shard has it.
fn script_exists(
    router: &Router,
    topo: &View,
    s: &Session,
    a: &[Bytes],
    raw: &Bytes,
    cmd: u16,
    start: Instant,
) -> Slot {
    let known: Vec<bool> = a[2..]
        .iter()
        .map(|sha| router.scripts.body(sha).is_some())
        .collect();
    let waits: Vec<_> = topo
        .shards
        .iter()
        .map(|shard| crate::send::send(shard, s, raw.clone(), cmd, start))
        .collect();
    let proto = s.proto;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut found = known;
        for w in waits {
            let bytes = match w.await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                Err(_) => return,
            };
            if crate::frame::is_error(&bytes) {
                let _ = tx.send(Ok(bytes));
                return;
            }
            for (i, part) in crate::frame::elements(&bytes)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                if crate::frame::integer(&bytes[part]) == Some(1) {
                    if let Some(f) = found.get_mut(i) {
                        *f = true;
                    }
                }
            }
        }
        let reply = Reply::Array(found.into_iter().map(|f| Reply::Int(f as i64)).collect());
        let _ = tx.send(Ok(reply.to_bytes(proto)));
    });
    Slot::Forward(rx)
}

/// Whether a shard's `reply` to an EVALSHA or FCALL says it lacks the script or function.
pub fn missing(reply: &[u8]) -> bool {
    reply.starts_with(b"-NOSCRIPT") || (reply.starts_with(b"-ERR Function not found"))
}

/// Runs again an EVALSHA or FCALL (`raw`, as the client sent it) that its shard could not
/// run for lack of the script or library, after giving the shard the router's copies.
pub fn heal(router: &Router, who: Who, raw: Bytes, first_reply: Bytes) -> Slot {
    let Some(me) = router.me() else {
        return Slot::Ready(first_reply);
    };
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let reply = heal_and_retry(&me, who, raw).await.unwrap_or(first_reply);
        let _ = tx.send(Ok(reply));
    });
    Slot::Forward(rx)
}

async fn heal_and_retry(router: &Router, who: Who, raw: Bytes) -> Option<Bytes> {
    let (spec, args) = decode(router, &raw)?;
    let topo = router.view();
    let Plan::Forward(shard) =
        crate::route::plan(spec, &args, |k| topo.owner(k, who.pool).unwrap_or(0))
    else {
        return None;
    };
    let shard = topo.shards.get(shard)?;
    load_and_retry(router, shard, who, spec, &args, raw).await
}

/// Gives `shard` the router's copy of the script (EVALSHA) or every library (FCALL), then sends
/// `raw` again.
async fn load_and_retry(
    router: &Router,
    shard: &crate::shard::Shard,
    who: Who,
    spec: &'static CommandSpec,
    args: &[Bytes],
    raw: Bytes,
) -> Option<Bytes> {
    let cmd = crate::shard_metrics::command_index(Some(spec));
    let start = Instant::now();
    let mut loads = Vec::new();
    if spec.name.starts_with("evalsha") {
        let body = router.scripts.body(args.get(1)?)?;
        loads.push(request(&[b"SCRIPT", b"LOAD", &body]));
    } else {
        for code in lock(&router.scripts.libraries).values() {
            loads.push(request(&[b"FUNCTION", b"LOAD", code]));
        }
    }
    for load in loads {
        // A library the shard has already answers an error; the retry tells.
        send_as(shard, who, load, cmd, start).await.ok()?.ok()?;
    }
    run_on(shard, who, raw, cmd, start).await.ok()?.ok()
}

/// Sends the script `raw` to `shard`, whose connection waits for it past the request timeout.
pub fn run_on(
    shard: &crate::shard::Shard,
    who: Who,
    raw: Bytes,
    cmd: u16,
    start: Instant,
) -> oneshot::Receiver<crate::upstream::UpResult> {
    let (req, rx) = crate::upstream::UpRequest::new(raw, cmd, start);
    shard.pool.send(who.io, who.proto, who.id, req.patient());
    rx
}

/// The request `raw` (as the client sent it, decoded and planned once already) again.
pub(crate) fn decode(router: &Router, raw: &Bytes) -> Option<(&'static CommandSpec, Vec<Bytes>)> {
    let mut buf = BytesMut::from(&raw[..]);
    let mut args = Vec::new();
    let mut decoder = ringcache_protocol::RequestDecoder::new(router.config.limits, true);
    decoder.decode_into(&mut buf, &mut args).ok()??;
    let spec = ringcache_protocol::table::lookup(args.first()?)?;
    Some((spec, args))
}

/// How many shards a script is sent on to before the router gives up on it.
const MAX_HOPS: usize = 3;

/// `-SCRIPTSHARD <epoch> <owner>`: the node stopped the script at a key `owner` holds, before it
/// changed anything.
pub fn elsewhere(reply: &[u8]) -> Option<(u64, String)> {
    let rest = reply.strip_prefix(b"-SCRIPTSHARD ")?;
    let text = std::str::from_utf8(rest).ok()?.trim_end();
    let (epoch, owner) = text.split_once(' ')?;
    Some((epoch.parse().ok()?, owner.to_string()))
}

/// Runs a script again on the shard its node named (see the module's notes), as often as its
/// keys lead elsewhere, up to [`MAX_HOPS`].
pub fn follow(router: &Router, who: Who, raw: Bytes, first_reply: Bytes) -> Slot {
    let Some(me) = router.me() else {
        return Slot::Ready(first_reply);
    };
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let reply = follow_hops(&me, who, raw, first_reply).await;
        let _ = tx.send(Ok(reply));
    });
    Slot::Forward(rx)
}

async fn follow_hops(router: &Router, who: Who, raw: Bytes, mut reply: Bytes) -> Bytes {
    let Some((spec, args)) = decode(router, &raw) else {
        return reply;
    };
    let cmd = crate::shard_metrics::command_index(Some(spec));
    for _ in 0..MAX_HOPS {
        let Some((epoch, owner)) = elsewhere(&reply) else {
            return reply;
        };
        let topo = router.view();
        // The named owner's pool; a shard this router does not know yet: the first key's.
        let pool = topo.pool_of_id(&owner).unwrap_or_else(|| {
            spec.keys(&args)
                .next()
                .map_or(who.pool, |i| topo.pool_of(&args[i], who.pool))
        });
        let mine = topo.pools.get(pool).map_or(0, |t| t.ring.epoch());
        if epoch != mine {
            return crate::rebalance::divert::tryagain(epoch, &owner, mine);
        }
        let Some(shard) = topo.shards.iter().find(|s| s.id == owner) else {
            return reply;
        };
        // A connection error is neither NOSCRIPT nor SCRIPTSHARD: it ends the hops as the reply.
        reply = crate::merge::received(run_on(shard, who, raw.clone(), cmd, Instant::now()).await);
        if missing(&reply) {
            if let Some(healed) = load_and_retry(router, shard, who, spec, &args, raw.clone()).await
            {
                reply = healed;
            }
        }
    }
    if elsewhere(&reply).is_some() {
        return crate::merge::error_bytes(
            "CROSSSHARD the script touches keys of more than one shard (declare them, on one shard)",
        );
    }
    reply
}

fn request(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    ringcache_protocol::resp::encode_request(&mut out, args);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_flags_as_libraries_usually_declare_them() {
        let code = "#!lua name=lib\nredis.register_function{\n  function_name='ro',\n  callback=function() return 1 end,\n  flags={'no-writes'}\n}\nredis.register_function{function_name=\"rw\", callback=function() return {1} end}\nredis.register_function('old', function() return 2 end)\n";
        assert_eq!(registered_no_writes(code, "ro"), Some(true));
        assert_eq!(registered_no_writes(code, "rw"), Some(false));
        assert_eq!(registered_no_writes(code, "old"), Some(false));
        assert_eq!(registered_no_writes(code, "missing"), None);
        // Odd text does not trip the reader.
        let odd = "-- register_function('é\nredis.register_function{function_name='é\"}";
        assert_eq!(registered_no_writes(odd, "f"), None);
        assert_eq!(registered_no_writes("register_function('", "f"), None);
    }

    #[test]
    fn sha1_and_library_names_as_redis_reads_them() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            library_name(b"#!lua name=mylib\nredis.register_function('f', function() end)"),
            Some("mylib".to_string())
        );
        assert_eq!(library_name(b"#!lua\nreturn 1"), None);
        assert!(missing(
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
        ));
        assert!(missing(b"-ERR Function not found\r\n"));
        assert_eq!(
            elsewhere(b"-SCRIPTSHARD 4 s2\r\n"),
            Some((4, "s2".to_string()))
        );
        assert_eq!(elsewhere(b"-WRONGSHARD 4 s2\r\n"), None);
        assert!(!missing(b"+OK\r\n"));
    }
}
