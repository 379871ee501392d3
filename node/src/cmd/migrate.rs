//! MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password]
//! [AUTH2 username password] [KEYS key ...]: Redis's transfer of keys to another server.
//!
//! The command reads its keys under their locks and hands the transfer to the connection, which
//! runs it without holding its IO thread ([`run`]): AUTH and SELECT, then one `RESTORE key ttl
//! payload [REPLACE]` per key, pipelined, as Redis sends them. A key the target took is deleted
//! here (unless COPY) only if nothing wrote it since it was read: a write made meanwhile, or the
//! RESTORE of a MIGRATE aimed at this node itself, keeps it.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_client::{Client, ClientError};
use ringcache_protocol::resp::encode_request;
use ringcache_protocol::Reply;

use super::args::{int_arg, is, syntax_error};
use super::ctx::Ctx;
use crate::dump::dump_entry;
use crate::keyspace::{now_ms, Db, Expiry};
use crate::state::session::Migration;
use crate::state::watch::WatchFlag;
use crate::state::Shared;

/// What MIGRATE sends and to whom.
#[derive(Debug)]
pub struct Transfer {
    target: String,
    db: Bytes,
    timeout: Duration,
    copy: bool,
    /// `AUTH password` or `AUTH user password`, as sent first; empty: no AUTH.
    auth: Vec<Bytes>,
    /// The keys found, each with a flag any write to it sets from the moment it was read (a
    /// WATCH of the transfer's own): a key written meanwhile, by a client or by the RESTORE of
    /// a MIGRATE that reached this node itself, is not deleted.
    keys: Vec<(Bytes, WatchFlag)>,
    /// The RESTORE commands, in the order of `keys`.
    restores: BytesMut,
}

/// Parses MIGRATE and reads its keys; the transfer runs once the command returns.
pub fn migrate(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if ctx.session.in_exec || ctx.session.in_script {
        // The transfer waits on the network after the command returns, which EXEC and a
        // script cannot wait for.
        return Reply::error("ERR MIGRATE cannot run inside MULTI or a script on ringcache");
    }
    let (mut copy, mut replace) = (false, false);
    let mut auth = Vec::new();
    let mut first_key = 3;
    let mut i = 6;
    while i < a.len() {
        if is(&a[i], "copy") {
            copy = true;
        } else if is(&a[i], "replace") {
            replace = true;
        } else if is(&a[i], "auth") && i + 1 < a.len() {
            auth = vec![Bytes::from_static(b"AUTH"), a[i + 1].clone()];
            i += 1;
        } else if is(&a[i], "auth2") && i + 2 < a.len() {
            auth = vec![
                Bytes::from_static(b"AUTH"),
                a[i + 1].clone(),
                a[i + 2].clone(),
            ];
            i += 2;
        } else if is(&a[i], "keys") {
            if !a[3].is_empty() {
                return Reply::error(
                    "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string",
                );
            }
            first_key = i + 1;
            break;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let timeout = match int_arg(&a[5]) {
        Ok(t) if t <= 0 => 1000,
        Ok(t) => t as u64,
        Err(e) => return e,
    };
    if let Err(e) = int_arg(&a[4]) {
        return e;
    }
    let names: &[Bytes] = if first_key == 3 {
        &a[3..4]
    } else {
        &a[first_key..]
    };
    let now = now_ms();
    let mut keys = Vec::new();
    let mut restores = BytesMut::new();
    for k in names {
        let Some(e) = ctx.db.peek(k) else { continue };
        let ttl = match e.deadline() {
            Some(d) if d <= now => continue,
            Some(d) => (d - now).to_string(),
            None => "0".to_string(),
        };
        let payload = dump_entry(e);
        let mut args: Vec<&[u8]> = vec![b"RESTORE", k, ttl.as_bytes(), &payload];
        if replace {
            args.push(b"REPLACE");
        }
        encode_request(&mut restores, args.iter());
        // Under the key's lock, as WATCH registers.
        let flag = WatchFlag::default();
        ctx.shared.watches.watch(k, &flag);
        ctx.shared.keyspace.add_interest();
        keys.push((k.clone(), flag));
    }
    if keys.is_empty() {
        return Reply::Status("NOKEY");
    }
    let target = format!(
        "{}:{}",
        String::from_utf8_lossy(&a[1]),
        String::from_utf8_lossy(&a[2])
    );
    ctx.session.migration = Some(Box::new(Migration::Transfer(Box::new(Transfer {
        target,
        db: a[4].clone(),
        timeout: Duration::from_millis(timeout),
        copy,
        auth,
        keys,
        restores,
    }))));
    // Replaced by the transfer's own reply once it ran.
    Reply::Nil
}

/// Sends the keys and answers as Redis does: OK, the target's first error, or IOERR. Keys the
/// target took are deleted here (unless COPY) even when a later reply never came, as Redis
/// does.
pub async fn run(shared: &Shared, t: Transfer) -> Reply {
    let (taken, reply) = transfer(shared, &t).await;
    if !t.copy && !taken.is_empty() {
        let mut db = Db::for_keys(
            &shared.keyspace,
            taken.iter().map(|(k, _)| k),
            now_ms(),
            Expiry::Delete,
        );
        for (k, written) in &taken {
            if !written.load(SeqCst) && db.remove(k).is_some() {
                db.propagate_as(vec![Bytes::from_static(b"DEL"), k.clone()]);
            }
        }
        crate::replication::release(shared, db, None);
    }
    for (k, flag) in &t.keys {
        shared.watches.unwatch(std::slice::from_ref(k), flag);
        shared.keyspace.remove_interest();
    }
    reply
}

/// The exchange with the target: the keys it took and the reply.
async fn transfer<'t>(shared: &Shared, t: &'t Transfer) -> (Vec<&'t (Bytes, WatchFlag)>, Reply) {
    let tls = shared.config().tls.for_cluster().cloned();
    let mut conn = match Client::connect_with(&t.target, t.timeout, tls.as_ref()).await {
        Ok(c) => c,
        Err(ClientError::ConnectTimeout { .. }) => {
            return (
                Vec::new(),
                Reply::error("IOERR error or timeout connecting to the client"),
            )
        }
        // Redis connects without waiting, so a refused connection shows at its first write.
        Err(_) => return (Vec::new(), write_error()),
    };
    let mut out = BytesMut::new();
    if !t.auth.is_empty() {
        encode_request(&mut out, t.auth.iter());
    }
    encode_request(&mut out, [&b"SELECT"[..], &t.db]);
    let before = usize::from(!t.auth.is_empty()) + 1;
    out.extend_from_slice(&t.restores);
    if conn.send(&out, t.timeout).await.is_err() {
        return (Vec::new(), write_error());
    }
    let refused = |e: &str| Reply::Error(format!("ERR Target instance replied with error: {e}"));
    let mut first_error = None;
    // Each reply within the timeout, as Redis reads them.
    for _ in 0..before {
        match conn.read(t.timeout).await {
            Ok(r) => {
                if let Some(e) = r.error_text() {
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
            Err(_) => return (Vec::new(), read_error()),
        }
    }
    if let Some(e) = first_error {
        // AUTH or SELECT refused: the RESTOREs ran as nobody, or in no database.
        return (Vec::new(), refused(&e));
    }
    let mut taken = Vec::new();
    for key in &t.keys {
        match conn.read(t.timeout).await {
            Ok(r) => match r.error_text() {
                Some(e) => {
                    first_error.get_or_insert_with(|| e.to_string());
                }
                None => taken.push(key),
            },
            Err(_) => return (taken, read_error()),
        }
    }
    match first_error {
        Some(e) => (taken, refused(&e)),
        None => (taken, Reply::OK),
    }
}

fn write_error() -> Reply {
    Reply::error("IOERR error or timeout writing to target instance")
}

fn read_error() -> Reply {
    Reply::error("IOERR error or timeout reading to target instance")
}
