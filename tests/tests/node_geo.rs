#![allow(clippy::unwrap_used)]
//! GEO commands: replies compared as text renderings of the RESP2 reply (`[a, b]` arrays, `nil`,
//! `!` before an error), every expectation taken from redis-server 7.0.15; RESP3 shapes byte by
//! byte. Coordinates, distances and hashes are exact: the node computes them as Redis does.

use tests::*;

/// A reply as text: arrays as `[a, b]`, nulls as `nil`, errors as `!text`.
fn show(r: &Reply) -> String {
    match r {
        Reply::Bulk(b) | Reply::Verbatim(b) => String::from_utf8_lossy(b).into_owned(),
        Reply::Status(s) => s.to_string(),
        Reply::StatusOwned(s) => s.clone(),
        Reply::Error(e) => format!("!{e}"),
        Reply::Int(n) => n.to_string(),
        Reply::Double(d) => d.to_string(),
        Reply::Nil | Reply::NilArray => "nil".into(),
        Reply::Array(v) | Reply::Set(v) => {
            let items: Vec<String> = v.iter().map(show).collect();
            format!("[{}]", items.join(", "))
        }
        other => format!("{other:?}"),
    }
}

/// Runs each whitespace-separated command line and compares its rendered reply.
fn check(c: &mut Raw, cases: &[(&str, &str)]) {
    for (line, want) in cases {
        let args: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(show(&c.cmd(&args)), *want, "{line}");
    }
}

const SICILY: &str = "geoadd Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania";

#[test]
fn geoadd_options_and_coordinates() {
    let s = start_target(&[]);
    let mut c = s.raw();
    check(
        &mut c,
        &[
        ("geoadd g -73.9454966 40.747533 a", "1"),
        ("geoadd g -73.9454966 40.747533 a", "0"),
        ("geoadd g CH 40.747533 -73.9454966 a", "1"),
        ("geoadd g NX -73.9454966 40.747533 a", "0"),
        ("geoadd g NX CH -73.9454966 40.747533 a 1 1 b", "1"),
        ("geoadd g XX CH 1 1 b 2 2 c", "0"),
        ("geoadd g CH 3 3 b 3 3 b 4 4 b", "2"),
        ("geopos g a b c", "[[40.7475319504737854, -73.94549769039056741], [4.00000244379043579, 3.99999910393250957], nil]"),
        ("geoadd nokey XX 1 1 x", "0"),
        ("exists nokey", "0"),
        ("geoadd g XX NX 1 1 x", "!ERR syntax error"),
        ("geoadd g CH XX foo 1 1 x", "!ERR syntax error"),
        ("geoadd g 1 1", "!ERR wrong number of arguments for 'geoadd' command"),
        ("geoadd g CH NX CH", "!ERR syntax error"),
        ("geoadd g 1 1 x foo 1 y", "!ERR value is not a valid float"),
        ("geoadd g 1 1 x 1 bar y", "!ERR value is not a valid float"),
        ("geoadd g 180.5 1 x", "!ERR invalid longitude,latitude pair 180.500000,1.000000"),
        ("geoadd g 1 -85.06 x", "!ERR invalid longitude,latitude pair 1.000000,-85.060000"),
        ("geoadd g 0x10 0x1p3 hex", "1"),
        ("geopos g hex", "[[16.00000172853469849, 7.99999947522560007]]"),
        ],
    );
}

#[test]
fn positions_hashes_distances_and_searches() {
    let s = start_target(&[]);
    let mut c = s.raw();
    check(
        &mut c,
        &[
        ("geoadd Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania", "2"),
        ("geoadd Sicily 12.758489 38.788135 edge1 17.241510 38.788135 edge2", "2"),
        ("geopos Sicily Palermo nope Catania", "[[13.36138933897018433, 38.11555639549629859], nil, [15.08726745843887329, 37.50266842333162032]]"),
        ("geohash Sicily Palermo Catania edge1 nope", "[sqc8b49rny0, sqdtr74hyu0, sqchdm4mq20, nil]"),
        ("geodist Sicily Palermo Catania", "166274.1516"),
        ("geodist Sicily Palermo Catania km", "166.2742"),
        ("geodist Sicily Palermo Catania mi", "103.3182"),
        ("geodist Sicily Palermo Catania ft", "545518.8700"),
        ("geodist Sicily Palermo Palermo", "0.0000"),
        ("georadius Sicily 15 37 200 km", "[Palermo, Catania]"),
        ("georadius Sicily 15 37 200 km WITHDIST", "[[Palermo, 190.4424], [Catania, 56.4413]]"),
        ("georadius Sicily 15 37 200 km WITHCOORD WITHDIST WITHHASH ASC", "[[Catania, 56.4413, 3479447370796909, [15.08726745843887329, 37.50266842333162032]], [Palermo, 190.4424, 3479099956230698, [13.36138933897018433, 38.11555639549629859]]]"),
        ("georadius Sicily 15 37 300 km DESC COUNT 3", "[edge1, edge2, Palermo]"),
        ("georadius Sicily 15 37 300 km COUNT 2 ANY", "[Palermo, edge1]"),
        ("georadiusbymember Sicily Palermo 200 km WITHDIST", "[[Palermo, 0.0000], [edge1, 91.4007], [Catania, 166.2742]]"),
        ("georadiusbymember_ro Sicily Palermo 200 km WITHDIST", "[[Palermo, 0.0000], [edge1, 91.4007], [Catania, 166.2742]]"),
        ("geosearch Sicily FROMLONLAT 15 37 BYBOX 400 400 km ASC WITHDIST", "[[Catania, 56.4413], [Palermo, 190.4424], [edge2, 279.7403], [edge1, 279.7405]]"),
        ("geosearch Sicily FROMMEMBER Catania BYRADIUS 250 km DESC", "[edge1, edge2, Palermo, Catania]"),
        ("georadius Sicily 15 37 100 mi", "[Catania]"),
        ("geosearch Sicily FROMLONLAT 0 0 BYRADIUS 1 km", "[]"),
        ],
    );
}

#[test]
fn argument_errors_in_redis_order() {
    let s = start_target(&[]);
    let mut c = s.raw();
    check(&mut c, &[("geoadd g -73.9454966 40.747533 a", "1")]);
    check(
        &mut c,
        &[
        ("set s v", "OK"),
        ("geoadd s 1 1 x", "!WRONGTYPE Operation against a key holding the wrong kind of value"),
        ("geopos s x", "!WRONGTYPE Operation against a key holding the wrong kind of value"),
        ("geohash s x", "!WRONGTYPE Operation against a key holding the wrong kind of value"),
        ("geodist s x y", "!WRONGTYPE Operation against a key holding the wrong kind of value"),
        ("georadius s 0 0 1 km", "!WRONGTYPE Operation against a key holding the wrong kind of value"),
        ("geosearchstore d s FROMLONLAT 0 0 BYRADIUS 1 km", "!WRONGTYPE Operation against a key holding the wrong kind of value"),
        ("geodist g a b parsec", "!ERR unsupported unit provided. please use M, KM, FT, MI"),
        ("geodist g a b km extra", "!ERR syntax error"),
        ("geodist missing a b", "nil"),
        ("geopos missing a b", "[nil, nil]"),
        ("geohash missing a", "[nil]"),
        ("georadius g 0 0 -1 km", "!ERR radius cannot be negative"),
        ("georadius g 0 0 x km", "!ERR need numeric radius"),
        ("georadius g 0 0 1 parsec", "!ERR unsupported unit provided. please use M, KM, FT, MI"),
        ("georadius g 200 0 1 km", "!ERR invalid longitude,latitude pair 200.000000,0.000000"),
        ("georadius g 0 0 1 km COUNT 0", "!ERR COUNT must be > 0"),
        ("georadius g 0 0 1 km COUNT abc", "!ERR value is not an integer or out of range"),
        ("georadius g 0 0 1 km COUNT", "!ERR syntax error"),
        ("georadius g 0 0 1 km ANY", "!ERR the ANY argument requires COUNT argument"),
        ("georadius g 0 0 1 km BOGUS", "!ERR syntax error"),
        ("georadius g 0 0 1 km WITHDIST STORE d", "!ERR STORE option in GEORADIUS is not compatible with WITHDIST, WITHHASH and WITHCOORD options"),
        ("georadiusbymember g nope 1 km", "!ERR could not decode requested zset member"),
        ("georadiusbymember g a x km", "!ERR need numeric radius"),
        ("georadius_ro g 0 0 1 km STORE d", "!ERR syntax error"),
        ("georadiusbymember_ro g a 1 km STOREDIST d", "!ERR syntax error"),
        ("geosearch g FROMLONLAT 0 0 FROMMEMBER a BYRADIUS 1 km", "!ERR syntax error"),
        ("geosearch g FROMMEMBER a FROMLONLAT 0 0 BYRADIUS 1 km", "!ERR syntax error"),
        ("geosearch g BYRADIUS 1 km", "!ERR wrong number of arguments for 'geosearch' command"),
        ("geosearch g FROMLONLAT 0 0", "!ERR wrong number of arguments for 'geosearch' command"),
        ("geosearch g FROMLONLAT 0 0 BYRADIUS 1 km BYBOX 1 1 km", "!ERR syntax error"),
        ("geosearch g FROMLONLAT 0 0 BYRADIUS 1 km STOREDIST", "!ERR syntax error"),
        ("geosearch g FROMLONLAT 0 0 BYRADIUS 1 km STORE d", "!ERR syntax error"),
        ("geosearch g FROMLONLAT 0 0 BYBOX -1 1 km", "!ERR height or width cannot be negative"),
        ("geosearch g FROMLONLAT 0 0 BYBOX x 1 km", "!ERR need numeric width"),
        ("geosearch g FROMLONLAT 0 0 BYBOX 1 y km", "!ERR need numeric height"),
        ("geosearch g FROMLONLAT 0 0 BYRADIUS r km", "!ERR need numeric radius"),
        ("geosearch g FROMMEMBER nope BYRADIUS 1 km", "!ERR could not decode requested zset member"),
        ("geosearchstore d g FROMLONLAT 0 0 BYRADIUS 1 km WITHCOORD", "!ERR GEOSEARCHSTORE is not compatible with WITHDIST, WITHHASH and WITHCOORD options"),
        ("gEoSeArCh g FROMLONLAT 0 0 ASC", "!ERR wrong number of arguments for 'geosearch' command"),
        ("geosearch missing FROMMEMBER nope BYRADIUS 1 km", "[]"),
        ("georadiusbymember missing nope x km", "[]"),
        ("gEoSeArCh g FROMLONLAT 0 0 ASC DESC", "!ERR exactly one of BYRADIUS and BYBOX can be specified for gEoSeArCh"),
        ("GEOSEARCH g FROMMEMBER x ASC DESC", "!ERR wrong number of arguments for 'geosearch' command"),
        ],
    );
}

#[test]
fn store_and_storedist() {
    let s = start_target(&[]);
    let mut c = s.raw();
    check(
        &mut c,
        &[
        ("geoadd Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania", "2"),
        ("set d x EX 100", "OK"),
        ("georadius Sicily 15 37 200 km STORE d", "2"),
        ("type d", "zset"),
        ("ttl d", "-1"),
        ("geopos d Palermo Catania", "[[13.36138933897018433, 38.11555639549629859], [15.08726745843887329, 37.50266842333162032]]"),
        ("georadius Sicily 15 37 200 km STOREDIST d COUNT 1", "1"),
        ("geosearch d FROMLONLAT -180 -85 BYRADIUS 100 km WITHHASH", "[[Catania, 56]]"),
        ("georadiusbymember Sicily Palermo 200 km STOREDIST d", "2"),
        ("geosearch d FROMLONLAT -180 -85 BYRADIUS 100 km WITHHASH", "[[Palermo, 0], [Catania, 166]]"),
        ("geosearchstore d Sicily FROMMEMBER Palermo BYRADIUS 10 km", "1"),
        ("geohash d Palermo Catania", "[sqc8b49rny0, nil]"),
        ("geosearchstore d Sicily FROMLONLAT 15 37 BYBOX 400 400 km DESC COUNT 1 STOREDIST", "1"),
        ("geosearch d FROMLONLAT -180 -85 BYRADIUS 100 km WITHHASH", "[[Palermo, 190]]"),
        ("geosearchstore d Sicily FROMLONLAT 0 0 BYRADIUS 1 km", "0"),
        ("exists d", "0"),
        ("set d x", "OK"),
        ("georadius missing 0 0 1 km STORE d", "0"),
        ("exists d", "0"),
        ("georadius Sicily 15 37 200 km STORE Sicily", "2"),
        ("geopos Sicily Palermo Catania", "[[13.36138933897018433, 38.11555639549629859], [15.08726745843887329, 37.50266842333162032]]"),
        ],
    );
}

/// Points at the same distance: a full sort keeps the found order, COUNT's partial sort leaves
/// them as Redis's does.
#[test]
fn tied_distances_order_as_redis() {
    let s = start_target(&[]);
    let mut c = s.raw();
    check(
        &mut c,
        &[
        ("geoadd t 10 20 a0 10 20 a1 10 20 a2 10 20 a3 10 20 a4 10 20 a5 10 20 a6 10 20 a7 10 20 a8 10 20 a9 10.001 20 b0 10.001 20 b1 10.001 20 b2 10.001 20 b3 10.001 20 b4 10.001 20 b5 10.001 20 b6 10.001 20 b7 10.001 20 b8 10.001 20 b9", "20"),
        ("georadius t 10 20 10 km COUNT 4", "[a0, a2, a3, a4]"),
        ("georadius t 10 20 10 km COUNT 4 DESC", "[b9, b0, b1, b2]"),
        ("georadius t 10 20 10 km COUNT 12", "[a0, a2, a3, a4, a5, a6, a7, a8, a9, a1, b9, b0]"),
        ("georadius t 10 20 10 km ASC", "[a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9]"),
        ("georadius t 10 20 10 km COUNT 3 ANY", "[a0, a1, a2]"),
        ("georadius t 10 20 10 km DESC", "[b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9]"),
        ],
    );
}

#[test]
fn resp3_coordinates_are_doubles() {
    let s = start_target(&[]);
    let mut c = s.raw();
    check(&mut c, &[(SICILY, "2")]);
    c.hello3(&[]);
    assert_eq!(
        c.cmd_raw(&["GEOPOS", "Sicily", "Palermo", "nope"]),
        b"*2\r\n*2\r\n,13.36138933897018433\r\n,38.11555639549629859\r\n_\r\n"
    );
    let with_all = [
        "GEORADIUS",
        "Sicily",
        "15",
        "37",
        "200",
        "km",
        "WITHCOORD",
        "WITHDIST",
        "WITHHASH",
        "COUNT",
        "1",
    ];
    assert_eq!(
        c.cmd_raw(&with_all),
        &b"*1\r\n*4\r\n$7\r\nCatania\r\n$7\r\n56.4413\r\n:3479447370796909\r\n*2\r\n\
           ,15.08726745843887329\r\n,37.50266842333162032\r\n"[..]
    );
    assert_eq!(
        c.cmd_raw(&["GEODIST", "Sicily", "Palermo", "Catania"]),
        b"$11\r\n166274.1516\r\n"
    );
    assert_eq!(c.cmd_raw(&["GEODIST", "Sicily", "Palermo", "x"]), b"_\r\n");
    assert_eq!(c.cmd_raw(&["GEOHASH", "Sicily", "x"]), b"*1\r\n_\r\n");
}

/// Pseudo-random points (a fixed LCG): every search finds exactly the points whose distance from
/// the centre, as the same server reports it, is within the radius, so the cells a search reads
/// always cover its whole area (near the poles and the date line too).
#[test]
fn searches_find_every_point_within_the_radius() {
    let s = start_target(&[]);
    let mut c = s.raw();
    let mut seed: u64 = 0x9E37_79B9;
    let mut next = move |lo: f64, hi: f64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (hi - lo) * ((seed >> 11) as f64 / (1u64 << 53) as f64)
    };
    let mut args = vec!["GEOADD".to_string(), "pts".to_string()];
    for i in 0..1500 {
        let (lon, lat) = match i % 3 {
            0 => (next(-180.0, 180.0), next(-85.0, 85.0)),
            1 => (next(170.0, 180.0), next(75.0, 85.05)),
            _ => (next(9.0, 11.0), next(44.0, 46.0)),
        };
        args.extend([lon.to_string(), lat.to_string(), format!("p{i}")]);
    }
    assert_eq!(c.cmd(&args), int(1500));
    let searches = [
        ("p0", 300.0),
        ("p1", 500.0),
        ("p2", 80.0),
        ("p4", 150.0),
        ("p7", 2500.0),
    ];
    for (centre, radius_km) in searches {
        // Every point with its distance from the centre (4 decimals: edge points are skipped).
        let all = c.cmd(&[
            "GEORADIUSBYMEMBER",
            "pts",
            centre,
            "25000",
            "km",
            "WITHDIST",
        ]);
        let mut want = Vec::new();
        let mut edge = Vec::new();
        for item in all.items() {
            let pair = item.items();
            let d: f64 = pair[1].text().parse().unwrap();
            if (d - radius_km).abs() < 0.001 {
                edge.push(pair[0].text());
            } else if d <= radius_km {
                want.push(pair[0].text());
            }
        }
        want.sort();
        let r = radius_km.to_string();
        let got: Vec<String> = c
            .cmd(&["GEORADIUSBYMEMBER", "pts", centre, &r, "km"])
            .sorted()
            .into_iter()
            .filter(|m| !edge.contains(m))
            .collect();
        assert!(
            want.len() > 1,
            "centre {centre}: too few points to mean anything"
        );
        assert_eq!(got, want, "centre {centre} radius {radius_km} km");
    }
}
