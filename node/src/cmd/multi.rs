//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! Commands after MULTI are checked (arity, AUTH, ownership) and queued; EXEC takes the locks of
//! every key the queued commands and the WATCHed keys name (every bucket if one of them sees the
//! whole keyspace), checks that no WATCHed key changed and that the keys are still this node's,
//! and runs them all under those locks: no other client and no migration sees the keys between
//! two of them. Replicas get the writes wrapped in MULTI/EXEC.

use std::sync::atomic::Ordering::SeqCst;

use bytes::Bytes;
use ringcache_protocol::table::{self, flags, CommandSpec};
use ringcache_protocol::Reply;

use super::ctx::Ctx;
use crate::keyspace::Db;
use crate::replication::propagation;
use crate::state::session::{Multi, Session};
use crate::state::Shared;

/// Commands that run at once inside MULTI instead of being queued.
pub fn runs_now(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
    )
}

/// A command failed to queue: EXEC will answer EXECABORT.
pub fn queue_failed(session: &mut Session) {
    if let Some(m) = &mut session.multi {
        m.failed = true;
    }
}

/// A command refused before it could run or queue (BUSY while a script runs): inside MULTI the
/// transaction fails, and a refused EXEC ends it with the refusal's reason, as Redis answers.
pub fn rejected(shared: &Shared, session: &mut Session, args: &[Bytes], refusal: Reply) -> Reply {
    if session.multi.is_none() {
        return refusal;
    }
    let is_exec = args
        .first()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"exec"));
    if !is_exec {
        queue_failed(session);
        return refusal;
    }
    session.multi = None;
    unwatch_all(shared, session);
    match refusal {
        Reply::Error(e) => Reply::Error(format!("EXECABORT Transaction discarded because of: {e}")),
        other => other,
    }
}

pub fn queue(session: &mut Session, spec: &CommandSpec, args: &[Bytes]) -> Reply {
    if spec.has(flags::NO_MULTI) {
        queue_failed(session);
        return Reply::error("ERR Command not allowed inside a transaction");
    }
    if let Some(m) = &mut session.multi {
        m.queued.push(args.to_vec());
    }
    Reply::Status("QUEUED")
}

pub fn multi(ctx: &mut Ctx) -> Reply {
    if ctx.session.multi.is_some() {
        return Reply::error("ERR MULTI calls can not be nested");
    }
    ctx.session.multi = Some(Multi::default());
    Reply::OK
}

pub fn discard(ctx: &mut Ctx) -> Reply {
    if ctx.session.multi.take().is_none() {
        return Reply::error("ERR DISCARD without MULTI");
    }
    unwatch_all(ctx.shared, ctx.session);
    Reply::OK
}

/// RESET's part: no transaction, nothing watched.
pub fn reset(ctx: &mut Ctx) {
    ctx.session.multi = None;
    unwatch_all(ctx.shared, ctx.session);
}

pub fn watch(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if ctx.session.multi.is_some() {
        return Reply::error("ERR WATCH inside MULTI is not allowed");
    }
    for key in &a[1..] {
        // A key already past its deadline goes now (as a read would): its later deletion must
        // not fail the transaction.
        ctx.db.exists(key);
        if ctx.session.watch.keys.contains(key) {
            continue;
        }
        ctx.shared.watches.watch(key, &ctx.session.watch.flag);
        ctx.shared.keyspace.add_interest();
        ctx.session.watch.keys.push(key.clone());
    }
    Reply::OK
}

pub fn unwatch(ctx: &mut Ctx) -> Reply {
    unwatch_all(ctx.shared, ctx.session);
    Reply::OK
}

/// Forgets every key `session` watches (EXEC, DISCARD, UNWATCH, RESET, a closed connection).
pub fn unwatch_all(shared: &Shared, session: &mut Session) {
    let w = &mut session.watch;
    if !w.keys.is_empty() {
        shared.watches.unwatch(&w.keys, &w.flag);
        for _ in 0..w.keys.len() {
            shared.keyspace.remove_interest();
        }
        w.keys.clear();
    }
    w.flag.store(false, SeqCst);
}

pub fn exec(ctx: &mut Ctx) -> Reply {
    let Some(multi) = ctx.session.multi.take() else {
        return Reply::error("ERR EXEC without MULTI");
    };
    if multi.failed {
        unwatch_all(ctx.shared, ctx.session);
        return Reply::error("EXECABORT Transaction discarded because of previous errors.");
    }
    let queued: Vec<(&'static CommandSpec, Vec<Bytes>)> = multi
        .queued
        .into_iter()
        .filter_map(|args| Some((super::subcommand(table::lookup(&args[0])?, &args), args)))
        .collect();
    let ks = &ctx.shared.keyspace;
    let (now, expiry) = (ctx.db.now, ctx.db.expiry);
    ctx.db = if queued
        .iter()
        .any(|(s, a)| super::is_keyspace_wide(s) || super::reads_any_key(s, a))
    {
        Db::all(ks, now, expiry)
    } else {
        let mut keys: Vec<&Bytes> = ctx.session.watch.keys.iter().collect();
        for (spec, args) in &queued {
            keys.extend(spec.keys(args).map(|i| &args[i]));
        }
        Db::for_keys(ks, keys, now, expiry)
    };
    if queued.iter().any(|(s, _)| s.is_write()) {
        crate::replication::before_write(ctx.shared, &mut ctx.db);
    }
    if ctx.session.watch.flag.load(SeqCst) {
        unwatch_all(ctx.shared, ctx.session);
        return Reply::NilArray;
    }
    // The keys may have moved to another node since they were queued.
    for (spec, args) in &queued {
        if let Some(e) = crate::topology::check_owner(ctx.shared, ctx.session, spec, args) {
            unwatch_all(ctx.shared, ctx.session);
            return e;
        }
    }
    let mut replies = Vec::with_capacity(queued.len());
    let mut effects: Vec<Vec<Bytes>> = Vec::new();
    let mut dirty = 0;
    ctx.session.in_exec = true;
    for (spec, args) in &queued {
        if let Some(user) = ctx.session.user.as_deref() {
            if let Err(d) = user.check(spec, args) {
                let client = ctx.session.client.info_line();
                ringcache_protocol::acl::command::record_refusal(
                    &ctx.shared.acl,
                    user,
                    client,
                    &d,
                    spec,
                    args,
                    ringcache_protocol::acl::log::MULTI,
                );
                replies.push(Reply::Error(format!(
                    "NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {}",
                    d.exec_reason()
                )));
                continue;
            }
        }
        let started = std::time::Instant::now();
        let reply = super::run(ctx, spec, args);
        // Each command of a transaction counts in commandstats, as Redis counts it.
        let micros = started.elapsed().as_micros() as u64;
        let counted = ringcache_protocol::table::counted_as(spec, args);
        ctx.shared.stats.ran(counted, reply.is_error(), micros);
        if ctx.shared.monitors.active() {
            super::pubsub::feed_monitors(ctx.shared, ctx.session, spec, args);
        }
        if !ctx.db.effects.notes.is_empty() {
            super::notify::command(ctx.shared, &mut ctx.db, spec.name, args);
        }
        dirty += ctx.db.effects.dirty;
        effects.extend(propagation(&mut ctx.db, Some((spec, args))));
        replies.push(reply);
    }
    ctx.session.in_exec = false;
    unwatch_all(ctx.shared, ctx.session);
    // One write replays as itself; several as one transaction (as Redis propagates them).
    if effects.len() > 1 {
        effects.insert(0, vec![Bytes::from_static(b"MULTI")]);
        effects.push(vec![Bytes::from_static(b"EXEC")]);
    }
    ctx.db.effects.dirty = dirty;
    ctx.db.effects.rewrite = Some(effects);
    Reply::Array(replies)
}
