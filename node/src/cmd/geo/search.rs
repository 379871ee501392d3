//! GEORADIUS, GEORADIUSBYMEMBER (and their `_RO` forms), GEOSEARCH and GEOSEARCHSTORE: one
//! parser and one search, as on Redis, so the same arguments fail with the same error at the
//! same point (the source key's type first, then each argument left to right).
//!
//! The search reads the 9 cells [`Shape::cells`] picks, each as a score range of the sorted set,
//! in Redis's order, keeps the points inside the shape, and sorts by distance when asked (or
//! when COUNT needs the nearest); with COUNT ANY it stops at the first COUNT points found.

use bytes::Bytes;
use ringcache_protocol::Reply;

use super::partial_sort::sort_prefix;
use super::{distance_reply, float, lon_lat, position_reply, unit};
use crate::cmd::args::{int_arg, is, syntax_error};
use crate::cmd::ctx::Ctx;
use crate::keyspace::Entry;
use crate::types::geohash::{score_position, Shape, ShapeKind};
use crate::types::{Value, ZSet};

/// What a command form accepts.
#[derive(Clone, Copy)]
struct Form {
    /// GEORADIUS: centre and radius at fixed positions.
    coords: bool,
    /// GEORADIUSBYMEMBER: a member and a radius at fixed positions.
    member: bool,
    /// The `_RO` forms: no STORE / STOREDIST.
    no_store: bool,
    /// GEOSEARCH / GEOSEARCHSTORE: FROM* and BY* options.
    search: bool,
    /// GEOSEARCHSTORE: the destination first, STOREDIST as a flag.
    search_store: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// A point found by a search.
struct Hit<'a> {
    member: &'a [u8],
    lon: f64,
    lat: f64,
    /// Metres from the centre until the reply, then in the request's unit.
    dist: f64,
    score: f64,
}

const NO_MEMBER: &str = "ERR could not decode requested zset member";

pub fn run(ctx: &mut Ctx, name: &str, a: &[Bytes]) -> Reply {
    let form = Form {
        coords: matches!(name, "georadius" | "georadius_ro"),
        member: matches!(name, "georadiusbymember" | "georadiusbymember_ro"),
        no_store: name.ends_with("_ro"),
        search: name.starts_with("geosearch"),
        search_store: name == "geosearchstore",
    };
    let src = if form.search_store { 2 } else { 1 };
    match search(ctx, a, src, form) {
        Ok(r) | Err(r) => r,
    }
}

/// The position of `member` in the sorted set.
fn member_position(z: &ZSet, member: &[u8]) -> Result<(f64, f64), Reply> {
    z.score(member)
        .and_then(score_position)
        .ok_or_else(|| Reply::error(NO_MEMBER))
}

/// A radius and its unit.
fn radius_arg(r: &[u8], u: &[u8]) -> Result<(f64, f64), Reply> {
    let r = float(r, Some("need numeric radius"))?;
    if r < 0.0 {
        return Err(Reply::error("ERR radius cannot be negative"));
    }
    Ok((r, unit(u)?))
}

/// A box's width and height, and their unit.
fn box_arg(w: &[u8], h: &[u8], u: &[u8]) -> Result<(ShapeKind, f64), Reply> {
    let width = float(w, Some("need numeric width"))?;
    let height = float(h, Some("need numeric height"))?;
    if height < 0.0 || width < 0.0 {
        return Err(Reply::error("ERR height or width cannot be negative"));
    }
    Ok((ShapeKind::Box { width, height }, unit(u)?))
}

fn search(ctx: &mut Ctx, a: &[Bytes], src: usize, form: Form) -> Result<Reply, Reply> {
    let proto = ctx.session.proto;
    let limits = ctx.db.limits();
    let zset = ctx.db.read::<ZSet>(&a[src]).map_err(Reply::from)?;

    let mut center: Option<(f64, f64)> = None;
    let mut kind: Option<ShapeKind> = None;
    let mut to_m = 1.0;
    let mut store: Option<&Bytes> = None;
    let base = if form.coords {
        center = Some(lon_lat(&a[2], &a[3])?);
        let (r, u) = radius_arg(&a[4], &a[5])?;
        (kind, to_m) = (Some(ShapeKind::Radius(r)), u);
        6
    } else if form.member {
        // Without a source key nothing is decoded: the options are still parsed for the reply.
        if let Some(z) = zset {
            center = Some(member_position(z, &a[2])?);
            let (r, u) = radius_arg(&a[3], &a[4])?;
            (kind, to_m) = (Some(ShapeKind::Radius(r)), u);
        }
        5
    } else if form.search_store {
        store = Some(&a[1]);
        3
    } else {
        2
    };

    let (mut with_dist, mut with_hash, mut with_coord) = (false, false, false);
    let (mut from_member, mut from_lonlat, mut by_radius, mut by_box) =
        (false, false, false, false);
    let mut sort = Sort::None;
    let mut any = false;
    let mut count: usize = 0;
    let mut store_dist = false;
    let mut i = base;
    while let Some(arg) = a.get(i) {
        // How many arguments follow this one.
        let left = a.len() - i - 1;
        if is(arg, "withdist") {
            with_dist = true;
        } else if is(arg, "withhash") {
            with_hash = true;
        } else if is(arg, "withcoord") {
            with_coord = true;
        } else if is(arg, "any") {
            any = true;
        } else if is(arg, "asc") {
            sort = Sort::Asc;
        } else if is(arg, "desc") {
            sort = Sort::Desc;
        } else if is(arg, "count") && left >= 1 {
            let n = int_arg(&a[i + 1])?;
            if n <= 0 {
                return Err(Reply::error("ERR COUNT must be > 0"));
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
            i += 1;
        } else if (is(arg, "store") || is(arg, "storedist"))
            && left >= 1
            && !form.no_store
            && !form.search
        {
            store = Some(&a[i + 1]);
            store_dist = is(arg, "storedist");
            i += 1;
        } else if is(arg, "storedist") && form.search_store {
            store_dist = true;
        } else if is(arg, "frommember") && left >= 1 && form.search && !from_lonlat {
            if let Some(z) = zset {
                center = Some(member_position(z, &a[i + 1])?);
            }
            from_member = true;
            i += 1;
        } else if is(arg, "fromlonlat") && left >= 2 && form.search && !from_member {
            center = Some(lon_lat(&a[i + 1], &a[i + 2])?);
            from_lonlat = true;
            i += 2;
        } else if is(arg, "byradius") && left >= 2 && form.search && !by_box {
            let (r, u) = radius_arg(&a[i + 1], &a[i + 2])?;
            (kind, to_m) = (Some(ShapeKind::Radius(r)), u);
            by_radius = true;
            i += 2;
        } else if is(arg, "bybox") && left >= 3 && form.search && !by_radius {
            let (k, u) = box_arg(&a[i + 1], &a[i + 2], &a[i + 3])?;
            (kind, to_m) = (Some(k), u);
            by_box = true;
            i += 3;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }

    if store.is_some() && (with_dist || with_hash || with_coord) {
        let what = if form.search_store {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(Reply::error(format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    let typed = String::from_utf8_lossy(&a[0]);
    if form.search && !(from_member || from_lonlat) {
        return Err(Reply::error(format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {typed}"
        )));
    }
    if form.search && !(by_radius || by_box) {
        return Err(Reply::error(format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {typed}"
        )));
    }
    if any && count == 0 {
        return Err(Reply::error("ERR the ANY argument requires COUNT argument"));
    }

    let (Some(z), Some((lon, lat)), Some(kind)) = (zset, center, kind) else {
        // No source key: an empty reply, or the destination deleted.
        return Ok(match store {
            Some(dest) => {
                ctx.db.remove(dest);
                Reply::Int(0)
            }
            None => Reply::Array(Vec::new()),
        });
    };
    // COUNT alone wants the nearest points.
    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }
    let shape = Shape {
        lon,
        lat,
        kind,
        unit: to_m,
    };
    let mut hits = collect(z, &shape, if any { count } else { 0 });
    let keep = if count == 0 {
        hits.len()
    } else {
        count.min(hits.len())
    };
    if sort != Sort::None {
        let by = |x: &Hit, y: &Hit| {
            let asc = nearer(x.dist, y.dist);
            if sort == Sort::Desc {
                asc.reverse()
            } else {
                asc
            }
        };
        if keep == hits.len() {
            // A stable sort, as glibc's qsort (a merge sort) is.
            hits.sort_by(by);
        } else {
            sort_prefix(&mut hits, keep, &by);
        }
    }
    hits.truncate(keep);
    hits.iter_mut().for_each(|h| h.dist /= to_m);

    let Some(dest) = store else {
        let nested = with_dist || with_hash || with_coord;
        let replies = hits.iter().map(|h| {
            if !nested {
                return Reply::Bulk(Bytes::copy_from_slice(h.member));
            }
            let mut item = vec![Reply::Bulk(Bytes::copy_from_slice(h.member))];
            if with_dist {
                item.push(distance_reply(h.dist));
            }
            if with_hash {
                // Scores found by a cell's range are 52-bit integers.
                item.push(Reply::Int(h.score as i64));
            }
            if with_coord {
                item.push(position_reply(proto, (h.lon, h.lat)));
            }
            Reply::Array(item)
        });
        return Ok(Reply::Array(replies.collect()));
    };
    let stored = hits.len() as i64;
    let mut out = ZSet::default();
    for h in &hits {
        out.insert(h.member, if store_dist { h.dist } else { h.score }, &limits);
    }
    drop(hits);
    if stored == 0 {
        ctx.db.remove(dest);
    } else {
        ctx.db.insert(Entry::object(dest, Value::ZSet(out), None));
    }
    Ok(Reply::Int(stored))
}

/// Redis's distance comparison: greater, equal, or else less (NaN included).
fn nearer(a: f64, b: f64) -> std::cmp::Ordering {
    if a > b {
        std::cmp::Ordering::Greater
    } else if a == b {
        std::cmp::Ordering::Equal
    } else {
        std::cmp::Ordering::Less
    }
}

/// The points of `z` inside `shape`, cell by cell in Redis's order (a cell equal to the one read
/// just before it is skipped: huge radiuses wrap neighbours onto each other); with `limit`,
/// no more than that many.
fn collect<'a>(z: &'a ZSet, shape: &Shape, limit: usize) -> Vec<Hit<'a>> {
    let cells = shape.cells();
    let mut hits = Vec::new();
    let full = |hits: &Vec<Hit>| limit != 0 && hits.len() >= limit;
    let mut last = 0;
    for (i, cell) in cells.iter().enumerate() {
        if cell.is_none() || (last != 0 && *cell == cells[last]) {
            continue;
        }
        if full(&hits) {
            break;
        }
        let (min, max) = cell.score_range();
        let (min, max) = (min as f64, max as f64);
        for (member, score) in z.range_by_score(min, max) {
            // A cell's range excludes its upper bound (the next cell's first score).
            if score >= max {
                break;
            }
            if let Some((lon, lat)) = score_position(score) {
                if let Some(dist) = shape.contains(lon, lat) {
                    hits.push(Hit {
                        member,
                        lon,
                        lat,
                        dist,
                        score,
                    });
                }
            }
            if full(&hits) {
                break;
            }
        }
        last = i;
    }
    hits
}
