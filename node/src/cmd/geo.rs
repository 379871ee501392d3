//! GEO commands: points are sorted set members whose score is their 52-bit geohash
//! (`crate::types::geohash`), so every geo key is a plain sorted set to the Z* commands.
//! GEOADD, GEOPOS, GEODIST and GEOHASH live here; the searches (GEORADIUS*, GEOSEARCH*) in
//! [`search`].

mod partial_sort;
mod search;

use bytes::Bytes;
use ringcache_protocol::table::CommandSpec;
use ringcache_protocol::{Protocol, Reply};

use super::args::{bulk, is, syntax_error, unknown_command, NOT_FLOAT};
use super::ctx::Ctx;
use crate::types::geohash::{self, LAT_MAX, LAT_MIN, LON_MAX, LON_MIN};
use crate::types::ZSet;

pub const NAMES: &[&str] = &[
    "geoadd",
    "geopos",
    "geodist",
    "geohash",
    "georadius",
    "georadius_ro",
    "georadiusbymember",
    "georadiusbymember_ro",
    "geosearch",
    "geosearchstore",
];

pub fn run(ctx: &mut Ctx, spec: &CommandSpec, a: &[Bytes]) -> Reply {
    match spec.name {
        "geoadd" => geoadd(ctx, a),
        "geopos" => geopos(ctx, a),
        "geodist" => geodist(ctx, a),
        "geohash" => geohash_cmd(ctx, a),
        "georadius"
        | "georadius_ro"
        | "georadiusbymember"
        | "georadiusbymember_ro"
        | "geosearch"
        | "geosearchstore" => search::run(ctx, spec.name, a),
        _ => unknown_command(a),
    }
}

/// A float argument; `msg` replaces Redis's generic "not a valid float" where Redis names the
/// argument ("need numeric radius").
fn float(a: &[u8], msg: Option<&str>) -> Result<f64, Reply> {
    ringcache_protocol::num::parse_f64(a).ok_or_else(|| match msg {
        Some(m) => Reply::error(format!("ERR {m}")),
        None => Reply::error(NOT_FLOAT),
    })
}

/// A longitude and a latitude inside the limits points can be stored at.
fn lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), Reply> {
    let (x, y) = (float(lon, None)?, float(lat, None)?);
    if !(LON_MIN..=LON_MAX).contains(&x) || !(LAT_MIN..=LAT_MAX).contains(&y) {
        return Err(Reply::error(format!(
            "ERR invalid longitude,latitude pair {x:.6},{y:.6}"
        )));
    }
    Ok((x, y))
}

/// Metres per unit (m, km, ft, mi, any case).
fn unit(a: &[u8]) -> Result<f64, Reply> {
    Ok(if is(a, "m") {
        1.0
    } else if is(a, "km") {
        1000.0
    } else if is(a, "ft") {
        0.3048
    } else if is(a, "mi") {
        1609.34
    } else {
        return Err(Reply::error(
            "ERR unsupported unit provided. please use M, KM, FT, MI",
        ));
    })
}

/// A distance as Redis prints one: rounded to 4 decimals (ties to even), as a bulk string.
fn distance_reply(d: f64) -> Reply {
    Reply::Bulk(Bytes::from(fixed4(d)))
}

fn fixed4(d: f64) -> String {
    if d == 0.0 {
        return "0.0000".into();
    }
    // `llrint`: round half to even; out of range (or NaN) gives i64::MIN, as on x86-64.
    let n = geohash::c_double_to_i64((d * 10000.0).round_ties_even());
    let v = n.unsigned_abs();
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}.{:04}", v / 10000, v % 10000)
}

/// A coordinate as Redis prints one (`%.17Lf` less trailing zeros); a RESP3 double carries the
/// same text.
fn coord_reply(proto: Protocol, d: f64) -> Reply {
    let text = human(d);
    match proto {
        Protocol::Resp2 => Reply::Bulk(Bytes::from(text)),
        Protocol::Resp3 => Reply::Raw(Bytes::from(format!(",{text}\r\n"))),
    }
}

fn human(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.into();
    }
    let mut s = format!("{d:.17}");
    if s.contains('.') {
        let kept = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(kept);
    }
    if s == "-0" {
        s = "0".into();
    }
    s
}

/// A `[longitude, latitude]` pair reply.
fn position_reply(proto: Protocol, (lon, lat): (f64, f64)) -> Reply {
    Reply::Array(vec![coord_reply(proto, lon), coord_reply(proto, lat)])
}

/// GEOADD key [NX|XX] [CH] lon lat member ...: ZADD of the members with their geohashes.
fn geoadd(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let (mut nx, mut xx, mut ch) = (false, false, false);
    let mut at = 2;
    while let Some(opt) = a.get(at) {
        if is(opt, "nx") {
            nx = true;
        } else if is(opt, "xx") {
            xx = true;
        } else if is(opt, "ch") {
            ch = true;
        } else {
            break;
        }
        at += 1;
    }
    let rest = a.get(at..).unwrap_or_default();
    if rest.is_empty() || rest.len() % 3 != 0 || (nx && xx) {
        return syntax_error();
    }
    let mut points = Vec::with_capacity(rest.len() / 3);
    for t in rest.chunks_exact(3) {
        let (lon, lat) = match lon_lat(&t[0], &t[1]) {
            Ok(p) => p,
            Err(e) => return e,
        };
        // In range, so it encodes.
        let Some(cell) = geohash::encode_point(lon, lat) else {
            return Reply::error(format!(
                "ERR invalid longitude,latitude pair {lon:.6},{lat:.6}"
            ));
        };
        points.push((cell.align52() as f64, &t[2]));
    }
    let r = ctx.db.update::<ZSet, _>(&a[1], !xx, |z, limits| {
        let (mut added, mut updated) = (0i64, 0i64);
        for (score, member) in &points {
            match z.score(member) {
                None if xx => {}
                None => {
                    z.insert(member, *score, limits);
                    added += 1;
                }
                Some(_) if nx => {}
                Some(old) if old == *score => {}
                Some(_) => {
                    z.insert(member, *score, limits);
                    updated += 1;
                }
            }
        }
        (
            if ch { added + updated } else { added },
            added + updated > 0,
        )
    });
    match r {
        Ok(n) => Reply::Int(n.unwrap_or(0)),
        Err(e) => e.into(),
    }
}

/// GEOPOS key member ...: each member's cell centre, or a null array.
fn geopos(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let proto = ctx.session.proto;
    per_member(ctx, a, Reply::NilArray, |score| {
        geohash::score_position(score).map(|p| position_reply(proto, p))
    })
}

/// One reply per member of `a[2..]` from its score (`missing` for a member that is not there or
/// whose score `f` cannot read): GEOPOS and GEOHASH.
fn per_member(
    ctx: &mut Ctx,
    a: &[Bytes],
    missing: Reply,
    f: impl Fn(f64) -> Option<Reply>,
) -> Reply {
    let z = match ctx.db.read::<ZSet>(&a[1]) {
        Ok(z) => z,
        Err(e) => return e.into(),
    };
    Reply::Array(
        a[2..]
            .iter()
            .map(|m| {
                z.and_then(|z| z.score(m))
                    .and_then(&f)
                    .unwrap_or_else(|| missing.clone())
            })
            .collect(),
    )
}

/// GEODIST key m1 m2 [unit]: null unless both members exist.
fn geodist(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    let to_m = match a.len() {
        4 => 1.0,
        5 => match unit(&a[4]) {
            Ok(u) => u,
            Err(e) => return e,
        },
        _ => return syntax_error(),
    };
    let z = match ctx.db.read::<ZSet>(&a[1]) {
        Ok(Some(z)) => z,
        Ok(None) => return Reply::Nil,
        Err(e) => return e.into(),
    };
    let pos = |m: &[u8]| z.score(m).and_then(geohash::score_position);
    match (pos(&a[2]), pos(&a[3])) {
        (Some((x1, y1)), Some((x2, y2))) => {
            distance_reply(geohash::distance(x1, y1, x2, y2) / to_m)
        }
        _ => Reply::Nil,
    }
}

/// GEOHASH key member ...: 11-character geohash strings, or nulls.
fn geohash_cmd(ctx: &mut Ctx, a: &[Bytes]) -> Reply {
    per_member(ctx, a, Reply::Nil, |score| {
        geohash::geohash_string(score).map(|h| bulk(&h))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_print_like_redis() {
        assert_eq!(fixed4(0.0), "0.0000");
        assert_eq!(fixed4(0.775), "0.7750");
        assert_eq!(fixed4(0.00004), "0.0000");
        assert_eq!(fixed4(0.0001), "0.0001");
        assert_eq!(fixed4(166274.1516), "166274.1516");
        assert_eq!(fixed4(-1.5), "-1.5000");
        assert_eq!(fixed4(f64::NAN), "-922337203685477.5808");
    }

    #[test]
    fn coordinates_print_like_redis() {
        assert_eq!(human(13.361389338970184), "13.36138933897018433");
        assert_eq!(human(10.0), "10");
        assert_eq!(human(-0.0), "0");
        assert_eq!(human(-1e-30), "0");
        assert_eq!(human(0.5), "0.5");
        assert_eq!(human(f64::NEG_INFINITY), "-inf");
    }
}
