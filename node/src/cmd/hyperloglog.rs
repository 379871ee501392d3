//! HyperLogLog commands over string values in Redis's HLL representation
//! (`crate::types::hll`).
//!
//! Replication: PFADD, PFMERGE and a converting PFDEBUG are sent as they came (they replay to
//! the same bytes). PFCOUNT of one key stores the cardinality it computed in the header, a change
//! of the string: like Redis, it then propagates itself, so a replica's bytes stay the primary's.

use bytes::Bytes;
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::Reply;

use super::args::{is, unknown_command};
use super::ctx::Ctx;
use crate::keyspace::{Db, WrongType};
use crate::types::hll::{self, Encoding};

pub const NAMES: &[&str] = &["pfadd", "pfcount", "pfmerge", "pfdebug", "pfselftest"];

pub fn run(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    match spec.name {
        "pfadd" => pfadd(ctx, a),
        "pfcount" => pfcount(ctx, a),
        "pfmerge" => pfmerge(ctx, a),
        "pfdebug" => pfdebug(ctx, a),
        "pfselftest" => match hll::selftest(ctx.db.limits().hll_sparse_max_bytes) {
            Ok(()) => Reply::OK,
            Err(e) => Reply::Error(e),
        },
        _ => unknown_command(a),
    }
}

fn invalid_obj() -> Reply {
    Reply::error("INVALIDOBJ Corrupted HLL object detected")
}

fn not_hll() -> Reply {
    Reply::error("WRONGTYPE Key is not a valid HyperLogLog string value.")
}

/// The HLL string at `key`: `Ok(None)` if missing; WRONGTYPE for another type or a string that
/// is no HLL. `read` counts a keyspace hit or miss (Redis's read lookups do).
fn hll_at<'d>(db: &'d mut Db, key: &[u8], read: bool) -> Result<Option<&'d [u8]>, Reply> {
    let e = if read { db.lookup(key) } else { db.get(key) };
    let Some(e) = e else {
        return Ok(None);
    };
    let s = e.str().ok_or_else(|| Reply::from(WrongType))?;
    hll::encoding(s).map_err(|_| not_hll())?;
    Ok(Some(s))
}

/// Replaces the string at `key` (which exists) with `h`, keeping its deadline.
fn store(db: &mut Db, key: &[u8], h: &[u8]) {
    db.edit_str(key, h.len(), |s| s.copy_from_slice(h));
}

fn pfadd(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let key = &a[1];
    let regs: Vec<(usize, u8)> = a[2..].iter().map(|e| hll::register_of(e)).collect();
    let max_bytes = ctx.db.limits().hll_sparse_max_bytes;
    let db = &mut ctx.db;
    let (mut h, existed) = match hll_at(db, key, false) {
        Err(e) => return e,
        Ok(None) => (hll::new_sparse(), false),
        Ok(Some(s)) if hll::encoding(s) == Ok(Encoding::Dense) => {
            // Dense: change the registers in place, and only if one rises.
            let regs_of = &s[hll::HDR..];
            if !regs.iter().any(|&(i, c)| c > hll::get_reg(regs_of, i)) {
                return Reply::Int(0);
            }
            db.edit_str(key, hll::DENSE_SIZE, |s| {
                for &(i, c) in &regs {
                    let r = &mut s[hll::HDR..];
                    if c > hll::get_reg(r, i) {
                        hll::set_reg(r, i, c);
                    }
                }
                hll::invalidate(s);
            });
            return Reply::Int(1);
        }
        Ok(Some(s)) => (s.to_vec(), true),
    };
    let mut updated = !existed;
    for &(i, c) in &regs {
        match hll::add(&mut h, i, c, max_bytes) {
            Ok(u) => updated |= u,
            // Left as it was: a corrupt HLL is not half-updated.
            Err(_) => return invalid_obj(),
        }
    }
    if !updated {
        return Reply::Int(0);
    }
    hll::invalidate(&mut h);
    if existed {
        store(db, key, &h);
    } else {
        db.set_raw_str(key, &h, None);
    }
    Reply::Int(1)
}

fn pfcount(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    if a.len() > 2 {
        // The cardinality of the union, merged in a temporary.
        let mut max = vec![0u8; hll::REGISTERS];
        for key in &a[1..] {
            match hll_at(&mut ctx.db, key, true) {
                Err(e) => return e,
                Ok(None) => {}
                Ok(Some(s)) => {
                    if hll::merge_into(&mut max, s).is_err() {
                        return invalid_obj();
                    }
                }
            }
        }
        return Reply::Int(hll::estimate(&hll::raw_histogram(&max)) as i64);
    }
    let key = &a[1];
    let (card, len) = match hll_at(&mut ctx.db, key, true) {
        Err(e) => return e,
        Ok(None) => return Reply::Int(0),
        Ok(Some(s)) => {
            if let Some(card) = hll::cached(s) {
                return Reply::Int(card as i64);
            }
            match hll::histogram(s) {
                Ok(h) => (hll::estimate(&h), s.len()),
                Err(_) => return invalid_obj(),
            }
        }
    };
    ctx.db.edit_str(key, len, |s| hll::set_cached(s, card));
    ctx.db.propagate_as(a.to_vec());
    Reply::Int(card as i64)
}

fn pfmerge(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let mut max = vec![0u8; hll::REGISTERS];
    let mut dense = false;
    // The destination is one of the inputs.
    for key in &a[1..] {
        match hll_at(&mut ctx.db, key, true) {
            Err(e) => return e,
            Ok(None) => {}
            Ok(Some(s)) => {
                dense |= hll::encoding(s) == Ok(Encoding::Dense);
                if hll::merge_into(&mut max, s).is_err() {
                    return invalid_obj();
                }
            }
        }
    }
    let dest = &a[1];
    let max_bytes = ctx.db.limits().hll_sparse_max_bytes;
    let (h, existed) = match hll_at(&mut ctx.db, dest, false) {
        Err(e) => return e,
        Ok(None) => (hll::new_sparse(), false),
        Ok(Some(s)) => (s.to_vec(), true),
    };
    let mut h = if dense {
        match hll::to_dense(&h) {
            Ok(d) => d,
            Err(_) => return invalid_obj(),
        }
    } else {
        h
    };
    for (i, &v) in max.iter().enumerate() {
        if v > 0 {
            // The inputs were checked: a failure here cannot happen, and Redis ignores it too.
            let _ = hll::add(&mut h, i, v, max_bytes);
        }
    }
    hll::invalidate(&mut h);
    if existed {
        store(&mut ctx.db, dest, &h);
    } else {
        ctx.db.set_raw_str(dest, &h, None);
    }
    Reply::OK
}

/// PFDEBUG GETREG|DECODE|ENCODING|TODENSE key.
fn pfdebug(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let sub = &a[1];
    let key = &a[2];
    let name = String::from_utf8_lossy(sub).replace(['\r', '\n'], " ");
    let h = match hll_at(&mut ctx.db, key, false) {
        Err(e) => return e,
        Ok(None) => return Reply::error("ERR The specified key does not exist"),
        Ok(Some(s)) => s.to_vec(),
    };
    let Ok(enc) = hll::encoding(&h) else {
        return not_hll();
    };
    let known = ["getreg", "decode", "encoding", "todense"];
    if !known.iter().any(|k| is(sub, k)) {
        return Reply::Error(format!("ERR Unknown PFDEBUG subcommand '{name}'"));
    }
    if a.len() != 3 {
        return Reply::Error(format!(
            "ERR Wrong number of arguments for the '{name}' subcommand"
        ));
    }
    if is(sub, "encoding") {
        return Reply::Status(enc.name());
    }
    if is(sub, "decode") {
        if enc != Encoding::Sparse {
            return Reply::error("ERR HLL encoding is not sparse");
        }
        return Reply::Bulk(Bytes::from(hll::decode(&h)));
    }
    // GETREG and TODENSE turn a sparse HLL dense (a write, propagated).
    let dense = if enc == Encoding::Sparse {
        match hll::to_dense(&h) {
            Ok(d) => {
                store(&mut ctx.db, key, &d);
                d
            }
            Err(_) => return invalid_obj(),
        }
    } else {
        h
    };
    if is(sub, "todense") {
        return Reply::Int(i64::from(enc == Encoding::Sparse));
    }
    let regs = &dense[hll::HDR..];
    Reply::Array(
        (0..hll::REGISTERS)
            .map(|i| Reply::Int(i64::from(hll::get_reg(regs, i))))
            .collect(),
    )
}
